"""The planner notebooks run top to bottom on the bundled instances, each within its time budget.

Each notebook is executed by a real Jupyter kernel (nbclient + ipykernel) in a fresh working directory, so
what it writes (runs, reports, run stores) stays out of the repository; outputs are never saved back.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="nbformat is not installed (pip install '.[test]')")
nbclient = pytest.importorskip("nbclient", reason="nbclient is not installed (pip install '.[test]')")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
BUDGET_S = float(os.environ.get("TWINPLAN_NOTEBOOK_BUDGET_S", "120"))
"""Wall-clock seconds a notebook may take (the issue's promise: under 2 minutes each)."""


def test_the_five_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == ["01_quickstart", "02_port_closure_redistribution", "03_consolidation",
                                           "04_peak_stress_test", "05_sweep_and_compare"]


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path: Path, tmp_path: Path):
    book = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code"), "commit notebooks without outputs"
    client = nbclient.NotebookClient(book, timeout=int(BUDGET_S), kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    t0 = time.perf_counter()
    client.execute()
    seconds = time.perf_counter() - t0
    assert seconds < BUDGET_S, f"{path.name} took {seconds:.0f} s (budget {BUDGET_S:.0f} s)"
    # plots are inline: at least one cell displayed an image
    images = [o for c in book.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if "image/png" in o.get("data", {})]
    assert images, f"{path.name} shows no plot"
