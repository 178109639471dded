"""twinplan engine: scenarios, the optimize -> simulate -> repair loop, simulator, KPIs, store, reports, CLI.

The data model re-exported here for convenience lives in :mod:`instances`."""

from instances.instance import Instance, load_instance, validate_instance
from instances.validation import Finding, InstanceValidationError, ValidationReport

__all__ = ["Finding", "Instance", "InstanceValidationError", "ValidationReport", "load_instance",
           "validate_instance"]
