"""Conformance suite for the solver layer: every available backend, filtered by declared capability,
solves the same small models with known optima; plus the linopy and Pyomo front doors, warm starts,
duals, limits and misuse errors.

OR-Library instances run on every backend that takes continuous variables and integers (HiGHS and SCIP
solve cap41/71/101/131 in well under a second each on 2 cores).
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

import solvers
from solvers import StandardForm, Termination
from solvers.backends.base import get_backend
from solvers.examples import (
    FacilityLocationData,
    facility_location_arrays,
    facility_location_linopy,
    facility_location_pyomo,
)
from tests.orlib_data import orlib_dir, published_optima, read_orlib

BACKENDS = solvers.available()
MIP_BACKENDS = [name for name in BACKENDS if solvers.capabilities(name).integers]
MIXED_BACKENDS = [name for name in MIP_BACKENDS if solvers.capabilities(name).continuous]
LP_BACKENDS = [name for name in BACKENDS if solvers.capabilities(name).continuous]
DUAL_BACKENDS = [name for name in BACKENDS if solvers.capabilities(name).duals]
WARM_BACKENDS = [name for name in MIP_BACKENDS if solvers.capabilities(name).warm_start]
# PDLP is a first-order method: optimal to about 1e-4 relative by default.
TOLERANCE = {"ortools-pdlp": 1e-3}
ORLIB_INSTANCES = ["cap41", "cap71", "cap101", "cap131"]


def tol(solver: str) -> float:
    return TOLERANCE.get(solver, 1e-6)


# ------------------------------------------------------------------------------------------- models
def small_lp(sense: str = "min") -> StandardForm:
    """min a + 2b  s.t.  a + b >= 4 (need), a <= 3, b <= 3 (cap)  ->  a=3, b=1, objective 5.

    max a + 2b  s.t.  a + b <= 4 (need), a <= 3, b <= 3           ->  a=1, b=3, objective 7.
    """
    need = (4.0, np.inf) if sense == "min" else (-np.inf, 4.0)
    return StandardForm.from_arrays(
        np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0]]),
        row_lower=[need[0], -np.inf, -np.inf],
        row_upper=[need[1], 3.0, 3.0],
        objective=[1.0, 2.0],
        sense=sense,  # type: ignore[arg-type]
        variable_groups={"amount": pd.Index(["a", "b"], name="item")},
        constraint_groups={"need": 1, "cap": pd.Index(["a", "b"], name="item")},
    )


def knapsack() -> StandardForm:
    """max 10x0 + 13x1 + 7x2 + 8x3  s.t.  4x0 + 6x1 + 3x2 + 5x3 <= 10, x binary  ->  x = (1, 1, 0, 0), 23."""
    return StandardForm.from_arrays(
        np.array([[4.0, 6.0, 3.0, 5.0]]),
        row_lower=-np.inf,
        row_upper=10.0,
        objective=[10.0, 13.0, 7.0, 8.0],
        col_upper=1.0,
        integrality=np.ones(4),
        sense="max",
        variable_groups={"take": pd.Index(["p0", "p1", "p2", "p3"], name="parcel")},
        constraint_groups={"weight": 1},
    )


def general_integer_mip() -> StandardForm:
    """max 2x + 3y  s.t.  3x + 4y <= 12.5,  x - y <= 1.5,  0 <= x, y <= 10 integer; the optimum is found
    by enumeration in the test (the LP optimum is fractional)."""
    return StandardForm.from_arrays(
        np.array([[3.0, 4.0], [1.0, -1.0]]),
        row_lower=-np.inf,
        row_upper=[12.5, 1.5],
        objective=[2.0, 3.0],
        col_upper=10.0,
        integrality=[1, 1],
        sense="max",
    )


def multidimensional_knapsack(n: int = 100, k: int = 5, seed: int = 1) -> StandardForm:
    """A random 0-1 multidimensional knapsack: incumbents come fast, proofs do not."""
    rng = np.random.default_rng(seed)
    weights = rng.integers(1, 1000, (k, n)).astype(float)
    profit = weights.sum(0) / k + rng.integers(0, 500, n)
    return StandardForm.from_arrays(weights, -np.inf, weights.sum(1) * 0.5, profit, 0.0, 1.0, np.ones(n), sense="max")


def single_source_facility_location() -> tuple[StandardForm, float]:
    """Textbook capacitated facility location with single sourcing (pure binary), and its optimum by
    brute force over every assignment of customers to warehouses."""
    fixed = np.array([30.0, 25.0, 35.0])
    capacity = np.array([9.0, 7.0, 12.0])
    demand = np.array([4.0, 3.0, 5.0, 2.0, 3.0])
    cost = np.array([[4.0, 9.0, 6.0, 3.0, 8.0], [7.0, 3.0, 8.0, 6.0, 2.0], [5.0, 6.0, 2.0, 9.0, 5.0]])
    n_w, n_c = cost.shape
    best = np.inf
    for assignment in itertools.product(range(n_w), repeat=n_c):
        load = np.bincount(assignment, weights=demand, minlength=n_w)
        if (load > capacity).any():
            continue
        used = np.unique(assignment)
        best = min(best, fixed[used].sum() + sum(cost[w, j] for j, w in enumerate(assignment)))
    # columns: open (n_w), serve (n_w x n_c); rows: demand (n_c), capacity (n_w), link (n_w x n_c)
    n_cols = n_w + n_w * n_c
    A = np.zeros((n_c + n_w + n_w * n_c, n_cols))
    serve = n_w + np.arange(n_w * n_c).reshape(n_w, n_c)
    for j in range(n_c):
        A[j, serve[:, j]] = 1.0
    for i in range(n_w):
        A[n_c + i, serve[i]] = demand
        A[n_c + i, i] = -capacity[i]
        for j in range(n_c):
            row = n_c + n_w + i * n_c + j
            A[row, serve[i, j]], A[row, i] = 1.0, -1.0
    form = StandardForm.from_arrays(
        A,
        row_lower=np.concatenate([np.ones(n_c), np.full(n_w + n_w * n_c, -np.inf)]),
        row_upper=np.concatenate([np.ones(n_c), np.zeros(n_w + n_w * n_c)]),
        objective=np.concatenate([fixed, cost.ravel()]),
        col_upper=1.0,
        integrality=np.ones(n_cols),
    )
    return form, float(best)


def infeasible_lp() -> StandardForm:
    """x + y >= 10 with x, y <= 3."""
    return StandardForm.from_arrays(np.array([[1.0, 1.0]]), 10.0, np.inf, [1.0, 1.0], 0.0, 3.0)


def unbounded_lp() -> StandardForm:
    """max x + y s.t. x - y <= 1, x, y >= 0."""
    return StandardForm.from_arrays(np.array([[1.0, -1.0]]), -np.inf, 1.0, [1.0, 1.0], sense="max")


# ------------------------------------------------------------------------------------------- conformance
@pytest.mark.parametrize("solver", LP_BACKENDS)
@pytest.mark.parametrize(("sense", "expected", "values"), [("min", 5.0, [3.0, 1.0]), ("max", 7.0, [1.0, 3.0])])
def test_small_lp_optimum(solver: str, sense: str, expected: float, values: list[float]) -> None:
    if not solvers.capabilities(solver).continuous:
        pytest.skip(f"{solver} takes pure-integer models only")
    result = solvers.solve(small_lp(sense), solver=solver)
    assert result.termination is Termination.OPTIMAL
    assert result.has_solution and result.is_optimal
    assert result.objective == pytest.approx(expected, rel=tol(solver))
    np.testing.assert_allclose(result.values["amount"].to_numpy(), values, rtol=tol(solver), atol=tol(solver))
    assert list(result.values["amount"].index) == ["a", "b"]
    assert result.solver == get_backend(solver).name
    assert result.solver_version


@pytest.mark.parametrize("solver", DUAL_BACKENDS)
def test_lp_duals_match_hand_computation(solver: str) -> None:
    # min a + 2b, a + b >= 4, a <= 3: raising "need" by 1 costs 2 (b grows); raising cap[a] by 1 saves 1
    # (a replaces b). Duals are d objective / d rhs.
    result = solvers.solve(small_lp("min"), solver=solver)
    assert result.duals["need"].iloc[0] == pytest.approx(2.0, abs=1e-3)
    assert result.duals["cap"]["a"] == pytest.approx(-1.0, abs=1e-3)
    assert result.duals["cap"]["b"] == pytest.approx(0.0, abs=1e-3)
    np.testing.assert_allclose(result.reduced_costs["amount"].to_numpy(), [0.0, 0.0], atol=1e-3)
    # max a + 2b, a + b <= 4, b <= 3: one more unit of "need" is worth 1, one more unit of cap[b] 1.
    result = solvers.solve(small_lp("max"), solver=solver)
    assert result.duals["need"].iloc[0] == pytest.approx(1.0, abs=1e-3)
    assert result.duals["cap"]["b"] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("solver", MIXED_BACKENDS)
def test_mip_duals_with_integers_fixed(solver: str) -> None:
    # open a door (binary, fixed cost 10) to move x <= 5 open units at 2 each; demand x >= 3.
    # Optimum: open = 1, x = 3, objective 16. With the door fixed open, one more unit of demand costs 2.
    form = StandardForm.from_arrays(
        np.array([[1.0, -5.0], [1.0, 0.0]]),
        row_lower=[-np.inf, 3.0],
        row_upper=[0.0, np.inf],
        objective=[2.0, 10.0],
        col_upper=[np.inf, 1.0],
        integrality=[0, 1],
        variable_groups={"moves": 1, "open_door": 1},
        constraint_groups={"door_capacity": 1, "demand": 1},
    )
    plain = solvers.solve(form, solver=solver, mip_gap=0.0)
    assert plain.objective == pytest.approx(16.0) and not plain.duals.available
    result = solvers.solve(form, solver=solver, mip_gap=0.0, mip_duals=True)
    assert result.objective == pytest.approx(16.0)
    assert result.duals["demand"].iloc[0] == pytest.approx(2.0)
    assert result.duals["door_capacity"].iloc[0] == pytest.approx(0.0)


@pytest.mark.parametrize("solver", MIP_BACKENDS)
def test_knapsack(solver: str) -> None:
    result = solvers.solve(knapsack(), solver=solver, mip_gap=0.0)
    assert result.termination is Termination.OPTIMAL
    assert result.objective == pytest.approx(23.0)
    assert result.bound == pytest.approx(23.0, rel=1e-6)
    assert result.gap == pytest.approx(0.0, abs=1e-9)
    assert result.values["take"].round().to_dict() == {"p0": 1.0, "p1": 1.0, "p2": 0.0, "p3": 0.0}
    assert not result.duals.available


@pytest.mark.parametrize("solver", MIP_BACKENDS)
def test_general_integers(solver: str) -> None:
    best = max(2 * x + 3 * y for x in range(11) for y in range(11) if 3 * x + 4 * y <= 12.5 and x - y <= 1.5)
    result = solvers.solve(general_integer_mip(), solver=solver, mip_gap=0.0)
    assert result.termination is Termination.OPTIMAL
    assert result.objective == pytest.approx(best)
    x, y = result.x
    assert 3 * x + 4 * y <= 12.5 + 1e-6 and x - y <= 1.5 + 1e-6
    assert result.value("x", 0) == pytest.approx(round(x))


@pytest.mark.parametrize("solver", MIP_BACKENDS)
def test_textbook_facility_location_matches_brute_force(solver: str) -> None:
    form, brute_force = single_source_facility_location()
    result = solvers.solve(form, solver=solver, mip_gap=0.0)
    assert result.termination is Termination.OPTIMAL
    assert result.objective == pytest.approx(brute_force, rel=1e-9)


@pytest.mark.parametrize("solver", MIXED_BACKENDS)
@pytest.mark.parametrize("instance", ORLIB_INSTANCES)
def test_orlib_published_optimum(solver: str, instance: str) -> None:
    directory = orlib_dir()
    if directory is None:
        pytest.skip("OR-Library benchmarks not found: set $TWINPLAN_BENCHMARKS or provide ../shared/benchmarks/orlib")
    data = FacilityLocationData(*read_orlib(directory / f"{instance}.txt"))
    result = solvers.solve(facility_location_arrays(data), solver=solver, mip_gap=0.0, time_limit=60)
    assert result.termination is Termination.OPTIMAL
    assert result.objective == pytest.approx(published_optima(directory)[instance], rel=1e-6)


@pytest.mark.parametrize("solver", LP_BACKENDS)
def test_infeasible_is_a_result(solver: str) -> None:
    if not solvers.capabilities(solver).continuous:
        pytest.skip(f"{solver} takes pure-integer models only")
    result = solvers.solve(infeasible_lp(), solver=solver)
    assert result.termination in (Termination.INFEASIBLE, Termination.INFEASIBLE_OR_UNBOUNDED)
    assert not result.has_solution
    with pytest.raises(solvers.NoSolutionError):
        result.values["x"]
    with pytest.raises(solvers.NoOptimalSolutionError) as info:
        solvers.solve(infeasible_lp(), solver=solver, raise_on_nonoptimal=True)
    assert info.value.result.termination is result.termination


@pytest.mark.parametrize("solver", MIP_BACKENDS)
def test_infeasible_mip(solver: str) -> None:
    # 2 x0 + 2 x1 == 3 has no integer solution, though its LP relaxation does.
    form = StandardForm.from_arrays(np.array([[2.0, 2.0]]), 3.0, 3.0, [1.0, 1.0], 0.0, 5.0, [1, 1])
    result = solvers.solve(form, solver=solver)
    assert result.termination in (Termination.INFEASIBLE, Termination.INFEASIBLE_OR_UNBOUNDED)
    assert not result.has_solution


@pytest.mark.parametrize("solver", [s for s in LP_BACKENDS if s != "ortools-pdlp"])
def test_unbounded_is_a_result(solver: str) -> None:
    result = solvers.solve(unbounded_lp(), solver=solver)
    assert result.termination in (Termination.UNBOUNDED, Termination.INFEASIBLE_OR_UNBOUNDED)
    assert not result.has_solution


@pytest.mark.parametrize("solver", MIP_BACKENDS)
def test_time_limit_returns_incumbent(solver: str) -> None:
    result = solvers.solve(multidimensional_knapsack(), solver=solver, time_limit=0.3, threads=1)
    assert result.termination is Termination.TIME_LIMIT
    assert result.has_solution
    assert 40_000 < result.objective <= result.bound
    assert 0 < result.gap < 0.05
    x = result.x
    assert np.all(multidimensional_knapsack().A @ x <= multidimensional_knapsack().row_upper + 1e-6)


WARM_START_MARKERS = {
    "highs": "MIP start solution is feasible",
    "ortools-scip": "feasible solution given by solution candidate storage",
    "ortools-cpsat": "solution hint is complete and is feasible",
}


@pytest.mark.parametrize("solver", WARM_BACKENDS)
def test_warm_start_is_accepted(solver: str) -> None:
    form = multidimensional_knapsack(60, 5, seed=3)
    first = solvers.solve(form, solver="highs", mip_gap=0.0)
    lines: list[str] = []
    again = solvers.solve(form, solver=solver, warm_start=first, log=lines.append, mip_gap=0.0, threads=1)
    assert again.warm_start_entries == form.n_cols
    assert again.objective == pytest.approx(first.objective)
    marker = WARM_START_MARKERS.get(solver)
    if marker is not None:
        assert any(marker in line for line in lines), f"{solver} log does not show the warm start"


@pytest.mark.parametrize("solver", [s for s in WARM_BACKENDS if s in MIXED_BACKENDS])
@pytest.mark.parametrize("instance", ["cap71", "cap101", "cap131"])
def test_a_mip_start_never_yields_a_wrong_optimum(solver: str, instance: str) -> None:
    """OR-Library's uncapacitated instances (capacity = total demand) started from one warehouse serving every
    customer (feasible, far from optimal). HiGHS 1.16 with that start on cap71 reports "optimal" at 631,874 and
    returns the start, which costs 1,248,143 (the published optimum is 932,616); the backend checks the
    objective against what the solution costs and solves again without the start."""
    directory = orlib_dir()
    if directory is None:
        pytest.skip("OR-Library benchmarks not found: set $TWINPLAN_BENCHMARKS or provide ../shared/benchmarks/orlib")
    data = FacilityLocationData(*read_orlib(directory / f"{instance}.txt"))
    assert data.capacity.min() >= data.demand.sum()
    form = facility_location_arrays(data)
    one = int(np.argmin(data.fixed_cost + data.cost.sum(axis=1)))
    is_open = pd.Series(np.arange(len(data.capacity)) == one, index=data.warehouses, dtype=float)
    assign = pd.Series(np.repeat(is_open.to_numpy(), len(data.demand)),
                       index=pd.MultiIndex.from_product([data.warehouses, data.customers]))
    start_cost = float(data.fixed_cost[one] + data.cost[one].sum())
    result = solvers.solve(form, solver=solver, mip_gap=0.0, warm_start={"open": is_open, "assign": assign},
                           time_limit=60)
    assert result.warm_start_entries == form.n_cols
    x = result.values.array
    assert result.objective == pytest.approx(float(form.objective @ x), rel=1e-9)  # what the solution costs
    assert result.termination is Termination.OPTIMAL
    assert result.objective == pytest.approx(published_optima(directory)[instance], rel=1e-6)
    assert result.objective < start_cost
    assert result.bound <= result.objective * (1 + 1e-9)


def test_warm_start_matches_by_label_across_models() -> None:
    small = FacilityLocationData.random(4, 6, seed=2)
    first = solvers.solve(facility_location_linopy(small), mip_gap=0.0)
    # A bigger model: one more customer. Labels of the old ones still match.
    bigger = FacilityLocationData.random(4, 7, seed=2)
    lines: list[str] = []
    result = solvers.solve(facility_location_linopy(bigger), warm_start=first, log=lines.append, mip_gap=0.0)
    assert result.warm_start_entries == 4 + 4 * 6
    assert result.termination is Termination.OPTIMAL
    assert any("MIP start solution is feasible" in line for line in lines), "HiGHS did not complete the start"
    as_dict = {"open": first.values["open"], "assign": first.values["assign"], "nonexistent": pd.Series([1.0])}
    result = solvers.solve(facility_location_linopy(bigger), warm_start=as_dict, mip_gap=0.0)
    assert result.warm_start_entries == 4 + 4 * 6


@pytest.mark.parametrize("solver", MIXED_BACKENDS)
def test_backends_agree_with_highs(solver: str) -> None:
    form = facility_location_arrays(FacilityLocationData.random(6, 12, seed=5))
    reference = solvers.solve(form, solver="highs", mip_gap=0.0)
    result = solvers.solve(form, solver=solver, mip_gap=0.0)
    assert result.objective == pytest.approx(reference.objective, rel=1e-6)


# ------------------------------------------------------------------------------------------- front doors
def test_linopy_front_door_labels_and_masks() -> None:
    import linopy
    import xarray as xr

    sites = pd.Index(["DC_HAM", "DC_MUC"], name="site")
    zones = pd.Index(["pack", "pick"], name="zone")
    weeks = pd.Index(["2026-W47", "2026-W48"], name="week")
    m = linopy.Model()
    flow = m.add_variables(lower=0, coords=[sites, zones, weeks], name="flow")
    mask = xr.DataArray(np.ones((2, 2, 2), dtype=bool), coords=[sites, zones, weeks])
    mask.loc["DC_HAM", "pick", "2026-W48"] = False
    capacity = xr.DataArray([10.0, 20.0], coords=[sites])
    m.add_constraints(flow <= capacity, name="capacity", mask=mask)
    m.add_constraints(flow.sum("site") >= 5, name="demand")
    m.add_objective((flow * xr.DataArray([1.0, 3.0], coords=[sites])).sum())
    result = solvers.solve(m)
    assert result.is_optimal and result.objective == pytest.approx(5.0 * 4)
    values = result.values["flow"]
    assert isinstance(values.index, pd.MultiIndex)
    assert list(values.index.names) == ["site", "zone", "week"]
    assert len(values) == 8
    assert values.loc[("DC_HAM", "pack", "2026-W47")] == pytest.approx(5.0)
    capacity_duals = result.duals["capacity"]
    assert len(capacity_duals) == 7 and ("DC_HAM", "pick", "2026-W48") not in capacity_duals.index
    demand = result.duals["demand"]
    assert list(demand.index.names) == ["zone", "week"]
    assert demand.to_numpy() == pytest.approx([1.0] * 4)
    assert result.model.row_name(0) == "capacity[DC_HAM, pack, 2026-W47]"
    # linopy agrees
    m.solve("highs", output_flag=False)
    assert float(m.objective.value) == pytest.approx(result.objective)


def test_linopy_single_dimension_is_a_plain_index() -> None:
    import linopy

    m = linopy.Model()
    doors = m.add_variables(lower=0, upper=4, integer=True, coords=[pd.Index(["A", "B"], name="dock")], name="doors")
    m.add_constraints(doors.sum() <= 5, name="budget")
    m.add_objective(doors.sum(), sense="max")
    result = solvers.solve(m)
    series = result.values["doors"]
    assert not isinstance(series.index, pd.MultiIndex) and series.index.name == "dock"
    assert series.sum() == pytest.approx(5.0)


def test_linopy_scaling_is_undone() -> None:
    import linopy

    m = linopy.Model()
    x = m.add_variables(lower=0, name="x", scaling=1000.0)
    y = m.add_variables(lower=0, name="y")
    m.add_constraints(x + y >= 2000, name="need", scaling=0.01)
    m.add_constraints(x <= 1500, name="cap")
    m.add_objective(x + 2 * y, scaling=10.0)
    result = solvers.solve(m)
    assert result.objective == pytest.approx(1500 + 2 * 500)
    assert result.value("x") == pytest.approx(1500.0)
    assert result.value("y") == pytest.approx(500.0)
    assert result.duals["need"].iloc[0] == pytest.approx(2.0)
    assert result.duals["cap"].iloc[0] == pytest.approx(-1.0)


def test_pyomo_and_linopy_front_doors_agree() -> None:
    data = FacilityLocationData.random(5, 8, seed=1)
    via_linopy = solvers.solve(facility_location_linopy(data), mip_gap=0.0)
    via_pyomo = solvers.solve(facility_location_pyomo(data), mip_gap=0.0)
    via_arrays = solvers.solve(facility_location_arrays(data), mip_gap=0.0)
    assert via_pyomo.objective == pytest.approx(via_linopy.objective, rel=1e-9)
    assert via_arrays.objective == pytest.approx(via_linopy.objective, rel=1e-9)
    pd.testing.assert_series_equal(
        via_pyomo.values["open"], via_linopy.values["open"], check_names=False, atol=1e-6, check_index_type=False
    )
    assert list(via_pyomo.values["assign"].index.names) == ["warehouse", "customer"]
    assert set(via_pyomo.model.constraint_groups) == {"demand", "capacity", "link"}


def test_pyomo_front_door_details() -> None:
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.I = pyo.Set(initialize=[1, 2, 3])
    m.x = pyo.Var(m.I, bounds=(0, 10))
    m.unused = pyo.Var(bounds=(2, 5))
    m.fixed = pyo.Var(initialize=4.0)
    m.fixed.fix()
    m.ranged = pyo.Constraint(expr=pyo.inequality(1, m.x[1] + m.x[2], 6))
    m.c = pyo.Constraint(m.I, rule=lambda m, i: m.x[i] + m.fixed <= 9)
    m.b = pyo.Block()
    m.b.y = pyo.Var(domain=pyo.NonNegativeIntegers, bounds=(0, 3))
    m.b.k = pyo.Constraint(expr=m.b.y + 2 * m.x[3] <= 4.5)
    m.obj = pyo.Objective(expr=m.x[1] + 2 * m.x[2] + m.x[3] + m.b.y + 3 * m.fixed + 7, sense=pyo.maximize)
    for solver in MIXED_BACKENDS:
        result = solvers.solve(m, solver=solver, mip_gap=0.0)
        # x2 = 5 (c), x1 = 1 (ranged), b.y + 2 x3 <= 4.5 -> y = 3, x3 = 0.75; objective 1 + 10 + 0.75 + 3 + 19
        assert result.objective == pytest.approx(33.75), solver
        assert result.values["x"].to_dict() == pytest.approx({1: 1.0, 2: 5.0, 3: 0.75})
        assert result.value("fixed") == pytest.approx(4.0)
        assert 2.0 <= result.value("unused") <= 5.0
        assert result.value("b.y") == pytest.approx(3.0)
    form = result.model
    assert [form.row_name(i) for i in range(form.n_rows)] == ["ranged", "c[1]", "c[2]", "c[3]", "b.k"]
    assert (form.row_lower[0], form.row_upper[0]) == (1.0, 6.0)


# ------------------------------------------------------------------------------------------- options, logs
@pytest.mark.parametrize("solver", MIP_BACKENDS)
def test_log_to_file_and_threads(solver: str, tmp_path) -> None:
    path = tmp_path / "solver.log"
    result = solvers.solve(knapsack(), solver=solver, log=path, threads=2, time_limit=10)
    assert result.is_optimal
    assert path.exists() and path.stat().st_size > 0


def test_silent_by_default(capfd) -> None:
    solvers.solve(knapsack(), solver="highs")
    solvers.solve(knapsack(), solver="ortools-scip")
    captured = capfd.readouterr()
    assert "Solving" not in captured.out and "SCIP" not in captured.out


def test_highs_options_pass_through() -> None:
    result = solvers.solve(multidimensional_knapsack(), solver="highs", options={"mip_max_improving_sols": 1})
    assert result.termination is Termination.INTERRUPTED and result.has_solution


def test_scip_native_parameter() -> None:
    result = solvers.solve(multidimensional_knapsack(), solver="ortools", options={"limits/nodes": 1}, threads=1)
    assert result.termination is Termination.INTERRUPTED and result.has_solution


# ------------------------------------------------------------------------------------------- misuse
def test_unknown_solver() -> None:
    with pytest.raises(solvers.UnknownSolverError, match="registered solvers are"):
        solvers.solve(knapsack(), solver="gurobi-please")


@pytest.mark.parametrize(
    ("solver", "options"),
    [
        ("highs", {"no_such_option": 1}),
        ("highs", {"presolve": 3.5}),
        ("ortools-scip", {"no_such_option": 1}),
        ("ortools-cpsat", {"num_workers": "many"}),
    ],
)
def test_bad_options(solver: str, options: dict) -> None:
    with pytest.raises(solvers.SolverOptionError):
        solvers.solve(knapsack(), solver=solver, options=options)


@pytest.mark.parametrize(
    "kwargs",
    [{"time_limit": -1}, {"time_limit": "1h"}, {"mip_gap": 1.5}, {"threads": 0}, {"threads": 1.5}],
)
def test_bad_common_parameters(kwargs: dict) -> None:
    with pytest.raises(solvers.SolverOptionError):
        solvers.solve(knapsack(), **kwargs)


def test_conflicting_common_and_native_option() -> None:
    with pytest.raises(solvers.SolverOptionError, match="both given"):
        solvers.solve(knapsack(), time_limit=5, options={"time_limit": 10})


def test_solver_not_available() -> None:
    from solvers.backends import base
    from solvers.backends.highs import HighsBackend

    class MissingBackend(HighsBackend):
        name = "missing-solver"
        package = "surely_not_an_installed_package"
        install_hint = "pip install surely-not-an-installed-package"

    base.register(MissingBackend())
    try:
        assert "missing-solver" not in solvers.available()
        with pytest.raises(solvers.SolverNotAvailableError, match="pip install"):
            solvers.solve(knapsack(), solver="missing-solver")
    finally:
        base._REGISTRY.pop("missing-solver")


def test_capability_mismatch() -> None:
    with pytest.raises(solvers.UnsupportedModelError, match="pure-integer"):
        solvers.solve(small_lp(), solver="ortools-cpsat")
    with pytest.raises(solvers.UnsupportedModelError, match="LPs only"):
        solvers.solve(knapsack(), solver="ortools-glop")
    with pytest.raises(solvers.UnsupportedModelError, match="cannot solve"):
        solvers.solve("not a model")


def test_errors_share_a_base_class() -> None:
    for error in (
        solvers.UnknownSolverError,
        solvers.SolverOptionError,
        solvers.SolverNotAvailableError,
        solvers.NoOptimalSolutionError,
        solvers.UnsupportedModelError,
    ):
        assert issubclass(error, solvers.SolverError)


def test_result_summary_and_timings() -> None:
    result = solvers.solve(facility_location_linopy(FacilityLocationData.random(3, 4)))
    timings = result.wall_time
    assert timings.build > 0 and timings.translate > 0 and timings.solve > 0
    assert timings.total == pytest.approx(timings.build + timings.translate + timings.solve + timings.extract)
    assert "highs optimal" in result.summary()
