"""Declared dependencies match the code: every third-party import is declared, and the installed versions
satisfy the declared ranges (so the floors in ``pyproject.toml`` are ones the test suite ran against)."""

from __future__ import annotations

import ast
import importlib.metadata
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "formulations", "instances", "solvers")
IMPORT_TO_DIST = {"yaml": "pyyaml", "distributed": "dask", "pydantic_core": "pydantic", "google": "ortools"}
"""Import names whose distribution is named otherwise (``google.protobuf`` ships with ortools)."""


def _requirements() -> list[Requirement]:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    return [Requirement(r) for r in data["project"]["dependencies"]]


def _imported_top_level() -> set[str]:
    names = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Import):
                    names.update(a.name.split(".")[0] for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - set(PACKAGES) - {"__future__"}


def test_every_third_party_import_is_declared() -> None:
    declared = {r.name.lower() for r in _requirements()}
    undeclared = sorted(n for n in _imported_top_level() if IMPORT_TO_DIST.get(n, n).lower() not in declared)
    assert undeclared == []


def test_installed_versions_satisfy_the_declared_ranges() -> None:
    for req in _requirements():
        installed = importlib.metadata.version(req.name)
        assert req.specifier.contains(installed, prereleases=True), f"{req.name} {installed} not in {req.specifier}"
