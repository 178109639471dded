"""LP warm starts by simplex basis (solvers.basis): the same optimum as a cold solve, far fewer iterations when the
structure is unchanged, matching by label when it is not, and a byte round trip for run stores.

The model is a transportation LP (sources x sinks, supply <= s_i, demand = d_j) with labelled columns
``ship[source, sink]`` and rows ``supply[source]`` / ``demand[sink]``; its optimum is checked against an
independent solve of the same data with scipy's HiGHS interface (``scipy.optimize.linprog``).
"""

from __future__ import annotations

import pickle

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

import solvers
from solvers import Basis, StandardForm
from solvers.basis import BASIC

MAX_SINKS = 1500


def transport(n_src: int, n_snk: int, seed: int, demand_scale: float = 1.0, cost_scale: float = 1.0,
              sink_order: np.ndarray | None = None) -> tuple[StandardForm, dict]:
    """A random balanced-ish transportation LP (supply 30 % above demand) as a labelled standard form."""
    rng = np.random.default_rng(seed)
    sx, sy = rng.uniform(0, 100, (2, n_src))
    tx, ty = rng.uniform(0, 100, (2, MAX_SINKS))[:, :n_snk]  # sink j is the same whatever n_snk
    cost = np.hypot(sx[:, None] - tx[None, :], sy[:, None] - ty[None, :]) * cost_scale
    demand = rng.uniform(10, 50, MAX_SINKS)[:n_snk] * demand_scale
    supply = np.full(n_src, 1.3 * demand.sum() / n_src)
    sinks = np.arange(n_snk) if sink_order is None else np.asarray(sink_order)
    cost, demand = cost[:, sinks], demand[sinks]
    n = n_src * len(sinks)
    rows_supply = sp.kron(sp.eye(n_src), np.ones((1, len(sinks))))
    rows_demand = sp.kron(np.ones((1, n_src)), sp.eye(len(sinks)))
    A = sp.vstack([rows_supply, rows_demand]).tocsr()
    src_names = [f"S{i:02d}" for i in range(n_src)]
    snk_names = [f"T{j:03d}" for j in sinks]
    form = StandardForm.from_arrays(
        A, np.r_[np.full(n_src, -np.inf), demand], np.r_[supply, demand], cost.ravel(), 0.0, np.inf,
        variable_groups={"ship": pd.MultiIndex.from_product([src_names, snk_names], names=["source", "sink"])},
        constraint_groups={"supply": pd.Index(src_names, name="source"), "demand": pd.Index(snk_names, name="sink")},
    )
    return form, {"c": cost.ravel(), "A": A, "supply": supply, "demand": demand, "n": n, "n_src": n_src}


def reference_optimum(data: dict) -> float:
    n_src = data["n_src"]
    res = linprog(data["c"], A_ub=data["A"][:n_src], b_ub=data["supply"], A_eq=data["A"][n_src:],
                  b_eq=data["demand"], bounds=(0, None), method="highs")
    assert res.status == 0
    return float(res.fun)


N_SRC, N_SNK = 20, 400


@pytest.fixture(scope="module")
def base() -> solvers.SolveResult:
    form, data = transport(N_SRC, N_SNK, seed=1)
    res = solvers.solve(form, keep_basis=True)
    assert res.is_optimal and res.objective == pytest.approx(reference_optimum(data), rel=1e-9)
    return res


def test_kept_basis_is_a_square_basis_of_the_model(base: solvers.SolveResult) -> None:
    b = base.basis
    assert isinstance(b, Basis)
    assert len(b.col_status) == base.model.n_cols and len(b.row_status) == base.model.n_rows
    assert b.n_basic == base.model.n_rows
    # every column with a strictly positive flow is basic (non-degenerate part of the vertex)
    x = base.x
    assert np.all(b.col_status[x > 1e-7] == BASIC)
    assert solvers.solve(base.model).basis is None  # only when asked


def test_same_structure_variant_restarts_from_the_basis(base: solvers.SolveResult) -> None:
    form, data = transport(N_SRC, N_SNK, seed=1, demand_scale=1.08, cost_scale=1.15)
    cold = solvers.solve(form)
    warm = solvers.solve(form, warm_start=base.basis)
    expected = reference_optimum(data)
    assert cold.objective == pytest.approx(expected, rel=1e-9)
    assert warm.objective == pytest.approx(expected, rel=1e-9)
    assert warm.basis_start == "same" and cold.basis_start is None
    assert warm.simplex_iterations < 0.5 * cold.simplex_iterations, (warm.simplex_iterations, cold.simplex_iterations)
    again = solvers.solve(form, warm_start=base)  # a result that kept its basis works as the warm start too
    assert again.basis_start == "same" and again.objective == pytest.approx(expected, rel=1e-9)


def test_reordered_and_extended_variant_is_matched_by_label(base: solvers.SolveResult) -> None:
    # the sinks in another order and 8 more of them: column and row numbers all differ, labels still match
    order = np.arange(N_SNK + 8)[::-1]
    form, data = transport(N_SRC, N_SNK + 8, seed=1, sink_order=order)
    cold = solvers.solve(form)
    warm = solvers.solve(form, warm_start=base.basis)
    expected = reference_optimum(data)
    assert warm.basis_start == "mapped"
    assert warm.objective == pytest.approx(expected, rel=1e-9) and cold.objective == pytest.approx(expected, rel=1e-9)
    assert warm.simplex_iterations < cold.simplex_iterations, (warm.simplex_iterations, cold.simplex_iterations)


def test_a_basis_of_another_model_is_not_forced_on_it(base: solvers.SolveResult) -> None:
    form, data = transport(5, 20, seed=9)
    for group in form.variable_groups.values():
        group.relabel(pd.Index([f"other{i}" for i in range(group.size)]))
    res = solvers.solve(form, warm_start=base.basis)
    assert res.basis_start == "unmatched"
    assert res.objective == pytest.approx(reference_optimum(data), rel=1e-9)


def test_bytes_round_trip_keeps_statuses_keys_and_use(base: solvers.SolveResult) -> None:
    data = base.basis.to_bytes()
    back = Basis.from_bytes(data)
    assert np.array_equal(back.col_status, base.basis.col_status)
    assert np.array_equal(back.row_status, base.basis.row_status)
    assert back.fingerprint == base.basis.fingerprint
    assert list(back.keys("col")[:2]) == ["ship[S00, T000]", "ship[S00, T001]"]
    assert back.keys("row")[-1] == f"demand[T{N_SNK - 1:03d}]"
    form, d = transport(N_SRC, N_SNK, seed=1, demand_scale=0.9)
    res = solvers.solve(form, warm_start=back)
    assert res.basis_start == "same" and res.objective == pytest.approx(reference_optimum(d), rel=1e-9)
    with pytest.raises(ValueError, match="not a twinplan basis"):
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        buf = io.BytesIO()
        pq.write_table(pa.table({"x": [1]}), buf)
        Basis.from_bytes(buf.getvalue())


def test_pickled_basis_drops_the_model_but_keeps_its_keys(base: solvers.SolveResult) -> None:
    b = pickle.loads(pickle.dumps(base.basis))
    assert b._form is None
    form, data = transport(N_SRC, N_SNK + 1, seed=1)  # one more sink: mapped by the pickled keys
    res = solvers.solve(form, warm_start=b)
    assert res.basis_start == "mapped" and res.objective == pytest.approx(reference_optimum(data), rel=1e-9)


def test_backend_without_basis_support_ignores_it(base: solvers.SolveResult) -> None:
    if "ortools-glop" not in solvers.available():
        pytest.skip("OR-Tools GLOP is not installed")
    form, data = transport(N_SRC, N_SNK, seed=1, demand_scale=1.05)
    res = solvers.solve(form, solver="ortools-glop", warm_start=base.basis)
    assert res.basis_start == "unsupported"
    assert res.objective == pytest.approx(reference_optimum(data), rel=1e-7)


def test_a_mip_takes_no_basis(base: solvers.SolveResult) -> None:
    form, _ = transport(N_SRC, N_SNK, seed=1)
    form.integrality[:] = 1
    form.row_lower[N_SRC:] = np.floor(form.row_lower[N_SRC:])  # integer flows: demand rows as integer lower bounds
    form.row_upper[N_SRC:] = np.inf
    res = solvers.solve(form, warm_start=base.basis, mip_gap=1e-6, keep_basis=True)
    assert res.basis_start is None and res.basis is None
    assert res.has_solution and np.allclose(res.x, np.round(res.x))


def test_group_sizes_rule_out_a_hopeless_match_before_any_key_is_built(base: solvers.SolveResult) -> None:
    back = Basis.from_bytes(base.basis.to_bytes())
    assert back.sizes == {"col:ship": N_SRC * N_SNK, "row:supply": N_SRC, "row:demand": N_SNK}
    form, data = transport(N_SRC, 3 * N_SNK, seed=1)  # two thirds of the sinks are new: at most 1/3 can match
    back._col_keys = back._row_keys = None  # no keys: the size check alone must decide
    res = solvers.solve(form, warm_start=back)
    assert res.basis_start == "unmatched"
    assert res.objective == pytest.approx(reference_optimum(data), rel=1e-9)
