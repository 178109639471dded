"""Data files shipped with the engine (see NOTICE.md)."""
