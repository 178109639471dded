"""The package builds: ``pip wheel . --no-deps`` with the project venv's own build tools (no download), and the
wheel holds the code, the bundled instances, the report templates and the base map, with the SPDX licence.

``pyproject.toml`` declares ``license = "Apache-2.0"`` (PEP 639), which setuptools reads from 77 on; the
build-system requires that floor, and ``make install`` brings the venv's setuptools up to it (a venv starts with
the setuptools of its Python, 65.5 for 3.11, which rejects the licence string: ``pip wheel .
--no-build-isolation`` failed with it)."""

from __future__ import annotations

import importlib.metadata
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "README.md", "engine", "formulations", "instances", "solvers")


def test_the_venv_build_tools_meet_the_build_system_floor() -> None:
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["build-system"]["requires"]
    for req in map(Requirement, requires):
        assert req.specifier.contains(importlib.metadata.version(req.name)), (req, "run `make install`")
    assert "setuptools>=77" in (ROOT / "Makefile").read_text()  # the install brings a fresh venv up to it


@pytest.mark.slow
def test_pip_wheel_builds_with_the_venvs_setuptools(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name in SOURCES:  # a copy: an in-tree build writes build/ and *.egg-info beside the sources
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, src / name)
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation",
                           "--no-index", "-w", str(tmp_path / "dist")], cwd=src, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [wheel] = (tmp_path / "dist").glob("twinplan-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        meta = z.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        entry = z.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    assert "License-Expression: Apache-2.0" in meta
    assert "twinplan = engine.cli:main" in entry
    for f in ("engine/cli.py", "engine/templates/base.html.j2", "engine/data/natural_earth_countries_50m.topo.json.gz",
              "instances/tiny/instance.yaml", "instances/tiny/scenarios/consolidate.yaml",
              "instances/eu_fba/demand.csv", "solvers/__init__.py", "formulations/network_design.py"):
        assert f in names, f
