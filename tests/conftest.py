"""Shared fixtures: the bundled ``tiny`` instance, loaded or as a private copy of its folder."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from instances.instance import Instance, bundled_instance_path, load_instance


@pytest.fixture(scope="session")
def tiny() -> Instance:
    """The bundled ``tiny`` instance, loaded once per session; do not mutate its tables."""
    return load_instance(bundled_instance_path("tiny"))


@pytest.fixture
def tiny_copy(tmp_path: Path) -> Path:
    """A private copy of the ``instances/tiny`` folder, free to break."""
    dest = tmp_path / "tiny"
    shutil.copytree(bundled_instance_path("tiny"), dest)
    return dest


@pytest.fixture(scope="session")
def bundled_runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder per test session for run folders of the bundled scenarios: the notebooks write theirs here
    (``TWINPLAN_RUNS_DIR``) and the browser test of the reports reuses any it finds (it solves the rest).
    ``$TWINPLAN_BUNDLED_RUNS`` names a folder kept across sessions instead."""
    d = Path(os.environ.get("TWINPLAN_BUNDLED_RUNS") or tmp_path_factory.getbasetemp() / "bundled-runs")
    d.mkdir(parents=True, exist_ok=True)
    return d
