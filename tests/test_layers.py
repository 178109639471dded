"""The layers of the code base hold: data flows one way and no modules import each other in a circle.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); this test runs them, and checks on the whole
import graph (imports inside functions included) that no two modules depend on each other, directly or not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx
from importlinter import api

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("tests", "benchmarks", "engine", "formulations", "instances", "solvers")


def test_import_linter_contracts_hold() -> None:
    config = api.read_configuration(str(ROOT / "pyproject.toml"))
    assert len(config["contracts_options"]) >= 2, "the layer contracts are missing from pyproject.toml"
    exe = Path(sys.executable).parent / "lint-imports"
    proc = subprocess.run([str(exe), "--no-cache"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_module_cycles() -> None:
    sys.path.insert(0, str(ROOT))
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    g = nx.DiGraph()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            # a package's __init__ re-exporting its own submodules is not a cycle of the design
            if not (imported.startswith(module + ".") or module.startswith(imported + ".")):
                g.add_edge(module, imported)
    cycles = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    assert not cycles, f"import cycles between modules: {cycles}"


def test_the_layers_are_ordered_as_documented() -> None:
    """The README's layout section names the same layers, in the same order, as the contract."""
    readme = (ROOT / "README.md").read_text()
    assert "tests → benchmarks → engine → formulations → instances → solvers" in readme
