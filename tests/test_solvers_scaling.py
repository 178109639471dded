"""Scaling before the solver (:mod:`solvers.scaling`): a badly scaled model -- fixed costs of 1e7 beside
transport costs of 1e-2 per unit, capacities of 1e5 as big-M coefficients -- solves to the same optimum as
when handed over unscaled, with values, duals, reduced costs, objective and bound mapped back; the optimum is
checked against brute force over every set of open sites (scipy's LP solver per set), and HiGHS's warnings
about the model's scaling go away."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linprog

import solvers
from solvers import StandardForm
from solvers.model import INTEGER, Group
from solvers.scaling import COST_TARGET, MAX_EXPONENT, apply_scaling, choose_scaling, coefficient_ranges, scale

N_SITES, N_ZONES = 5, 12


def badly_scaled(seed: int = 0) -> tuple[StandardForm, dict[str, np.ndarray]]:
    """Facility location in units: open[i] in {0, 1}, flow[i, j] in [0, d_j] units.

    min  sum_i F_i open_i + sum_ij c_ij flow_ij              F ~ 1e6..1e7, c ~ 1e-2..1 per unit
    s.t. sum_i flow_ij = d_j                                 (demand, d ~ 1e3..5e4)
         sum_j flow_ij <= s_i open_i                         (capacity, s ~ 1e5: a big-M coefficient)
         flow_ij <= d_j open_i                               (link)
    """
    rng = np.random.default_rng(seed)
    d = np.round(rng.uniform(1e3, 5e4, N_ZONES))
    s = np.full(N_SITES, np.round(0.45 * d.sum()))
    f = np.round(rng.uniform(1e6, 1e7, N_SITES))
    c = np.round(rng.uniform(1e-2, 1.0, (N_SITES, N_ZONES)), 4)
    n_flow = N_SITES * N_ZONES
    flow_col = N_SITES + np.arange(n_flow).reshape(N_SITES, N_ZONES)
    rows, cols, vals = [], [], []
    r = 0
    for j in range(N_ZONES):  # demand
        rows += [r] * N_SITES
        cols += list(flow_col[:, j])
        vals += [1.0] * N_SITES
        r += 1
    for i in range(N_SITES):  # capacity
        rows += [r] * (N_ZONES + 1)
        cols += [*flow_col[i], i]
        vals += [1.0] * N_ZONES + [-s[i]]
        r += 1
    for i, j in itertools.product(range(N_SITES), range(N_ZONES)):  # link
        rows += [r, r]
        cols += [flow_col[i, j], i]
        vals += [1.0, -d[j]]
        r += 1
    A = sp.csr_array((vals, (rows, cols)), shape=(r, N_SITES + n_flow))
    integrality = np.zeros(N_SITES + n_flow, dtype=np.uint8)
    integrality[:N_SITES] = INTEGER
    sites = pd.Index([f"S{i}" for i in range(N_SITES)], name="site")
    zones = pd.Index([f"Z{j}" for j in range(N_ZONES)], name="zone")
    pairs = pd.MultiIndex.from_product([sites, zones])
    form = StandardForm(
        A=A,
        row_lower=np.concatenate([d, np.full(r - N_ZONES, -np.inf)]),
        row_upper=np.concatenate([d, np.zeros(r - N_ZONES)]),
        col_lower=np.zeros(A.shape[1]),
        col_upper=np.concatenate([np.ones(N_SITES), np.tile(d, N_SITES)]),
        integrality=integrality,
        objective=np.concatenate([f, c.ravel()]),
        variable_groups={"open": Group("open", slice(0, N_SITES), sites, N_SITES),
                         "flow": Group("flow", slice(N_SITES, N_SITES + n_flow), pairs, n_flow)},
        constraint_groups={"demand": Group("demand", slice(0, N_ZONES), zones, N_ZONES),
                           "capacity": Group("capacity", slice(N_ZONES, N_ZONES + N_SITES), sites, N_SITES),
                           "link": Group("link", slice(N_ZONES + N_SITES, r), pairs, n_flow)},
    )
    return form, {"d": d, "s": s, "f": f, "c": c}


def brute_force(data: dict[str, np.ndarray]) -> tuple[float, tuple[int, ...]]:
    """Least cost over every non-empty set of open sites: fixed costs + a transportation LP (scipy HiGHS)."""
    d, s, f, c = data["d"], data["s"], data["f"], data["c"]
    best = (np.inf, ())
    for k in range(1, N_SITES + 1):
        for open_set in itertools.combinations(range(N_SITES), k):
            m = len(open_set)
            a_eq = np.zeros((N_ZONES, m * N_ZONES))
            a_ub = np.zeros((m, m * N_ZONES))
            for a, _ in enumerate(open_set):
                a_eq[np.arange(N_ZONES), a * N_ZONES + np.arange(N_ZONES)] = 1.0
                a_ub[a, a * N_ZONES:(a + 1) * N_ZONES] = 1.0
            res = linprog(c[list(open_set)].ravel(), A_ub=a_ub, b_ub=s[list(open_set)], A_eq=a_eq, b_eq=d,
                          bounds=[(0, dj) for _ in open_set for dj in d], method="highs")
            if res.status == 0 and res.fun + f[list(open_set)].sum() < best[0]:
                best = (float(res.fun + f[list(open_set)].sum()), open_set)
    return best


def test_factors_are_powers_of_two_within_limits_and_bring_costs_into_range() -> None:
    form, _ = badly_scaled()
    s = choose_scaling(form)
    assert s.col is not None and s.row is not None
    for v in (s.col, s.row, np.array([s.objective])):
        e = np.log2(v)
        assert np.array_equal(e, np.round(e))  # exact: only exponents change
    assert np.all(np.abs(np.log2(s.col)) <= MAX_EXPONENT) and np.all(np.abs(np.log2(s.row)) <= MAX_EXPONENT)
    assert np.all(s.col[:N_SITES] == 1.0)  # integer columns are never scaled
    before, after = coefficient_ranges(form), coefficient_ranges(apply_scaling(form, s))
    assert before["cost"][1] > 1e6 and after["cost"][1] <= COST_TARGET
    ratio = lambda r: r[1] / r[0]  # noqa: E731
    assert ratio(after["matrix"]) < ratio(before["matrix"]) / 10


def test_badly_scaled_milp_same_optimum_as_unscaled_and_as_brute_force() -> None:
    form, data = badly_scaled()
    want, open_set = brute_force(data)
    plain = solvers.solve(form, mip_gap=0.0, threads=1, scaling=False)
    scaled = solvers.solve(form, mip_gap=0.0, threads=1)
    assert scaled.scaling is not None and not scaled.scaling.is_identity
    assert plain.scaling.is_identity
    assert scaled.objective == pytest.approx(want, rel=1e-9)
    assert plain.objective == pytest.approx(want, rel=1e-9)
    assert scaled.bound == pytest.approx(want, rel=1e-4) and scaled.bound <= scaled.objective * (1 + 1e-12)
    is_open = scaled.values["open"].to_numpy() > 0.5
    assert tuple(np.flatnonzero(is_open)) == open_set
    flow = scaled.values["flow"].to_numpy().reshape(N_SITES, N_ZONES)
    # values in the model's units: demand met, capacity and bounds kept, cost adds up to the objective
    np.testing.assert_allclose(flow.sum(axis=0), data["d"], rtol=1e-7)
    assert np.all(flow >= 0) and np.all(flow <= data["d"][None, :] * is_open[:, None] * (1 + 1e-9))
    assert np.all(flow.sum(axis=1) <= data["s"] * is_open * (1 + 1e-9))
    cost = data["f"][is_open].sum() + float((data["c"] * flow).sum())
    assert cost == pytest.approx(want, rel=1e-9)


def test_badly_scaled_lp_values_duals_and_reduced_costs_mapped_back() -> None:
    form, data = badly_scaled(seed=1)
    form.integrality[:] = 0
    plain = solvers.solve(form, threads=1, scaling=False)
    scaled = solvers.solve(form, threads=1)
    assert scaled.objective == pytest.approx(plain.objective, rel=1e-9)
    np.testing.assert_allclose(scaled.x, plain.x, rtol=1e-6, atol=1e-6 * data["d"].max())
    # duals are unique here only up to degeneracy: compare what they certify -- each one's complementary
    # slackness and the dual objective (b y + bound terms = primal objective)
    y = scaled.duals.array
    rc = scaled.reduced_costs.array
    np.testing.assert_allclose(form.objective - form.A.T @ y, rc, rtol=1e-6, atol=1e-6)
    lo = np.where(np.isfinite(form.row_lower), form.row_lower, 0.0)
    up = np.where(np.isfinite(form.row_upper), form.row_upper, 0.0)
    dual_obj = float(np.where(y > 0, lo, up) @ y + np.where(rc > 0, form.col_lower, form.col_upper) @ rc)
    assert dual_obj == pytest.approx(scaled.objective, rel=1e-7)
    assert np.all(y[~np.isfinite(form.row_lower)] <= 1e-9)  # dual feasible: <= rows have y <= 0 (minimising)
    x = scaled.x
    at_lower, at_upper = x <= form.col_lower + 1e-9, x >= form.col_upper - 1e-9
    assert np.all((np.abs(rc) <= 1e-7) | (rc > 0) & at_lower | (rc < 0) & at_upper)  # complementary slackness


def test_warm_start_and_basis_survive_scaling() -> None:
    form, _ = badly_scaled(seed=2)
    first = solvers.solve(form, mip_gap=0.0, threads=1)
    again = solvers.solve(form, mip_gap=0.0, threads=1, warm_start=first)
    assert again.warm_start_entries == form.n_cols
    assert again.objective == pytest.approx(first.objective, rel=1e-9)
    lp = scale(form)[0]
    assert lp.objective_scale < 1.0
    form.integrality[:] = 0
    cold = solvers.solve(form, threads=1, keep_basis=True)
    warm = solvers.solve(form, threads=1, warm_start=cold.basis)
    assert warm.basis_start == "same" and warm.simplex_iterations == 0
    assert warm.objective == pytest.approx(cold.objective, rel=1e-12)


def test_highs_no_longer_warns_about_scaling() -> None:
    form, _ = badly_scaled()
    logs: dict[bool, list[str]] = {True: [], False: []}
    for on in (False, True):
        solvers.solve(form, mip_gap=0.0, threads=1, scaling=on, log=logs[on].append)
    plain, scaled = "".join(logs[False]), "".join(logs[True])
    assert "excessively large costs" in plain  # the warning the model earns unscaled ...
    assert "WARNING" not in scaled  # ... and none once scaled


def test_dual_bound_holds_for_any_duals_and_is_tight_at_the_optimum() -> None:
    from solvers.bounds import dual_bound

    form, _ = badly_scaled(seed=1)
    form.integrality[:] = 0
    exact = solvers.solve(form, threads=1)
    y = exact.duals.array
    assert dual_bound(form, y) == pytest.approx(exact.objective, rel=1e-9)
    rng = np.random.default_rng(0)
    for k in range(50):  # weak duality: whatever the duals, never above the optimum
        noisy = y * rng.uniform(0.5, 1.5, y.size) + rng.normal(0.0, 1.0 + k, y.size)
        assert dual_bound(form, noisy) <= exact.objective * (1 + 1e-12)
    ipm = solvers.solve(form, threads=1, options={"solver": "ipm", "run_crossover": "off"})
    b = dual_bound(form, ipm.duals.array)
    assert b <= exact.objective * (1 + 1e-12) and b == pytest.approx(exact.objective, rel=1e-6)
    assert dual_bound(form, np.full(form.n_rows, np.nan)) == -np.inf


def test_a_well_scaled_model_is_handed_over_as_it_is() -> None:
    from solvers.scaling import well_scaled

    form, _ = badly_scaled()
    assert not well_scaled(form)
    tame = StandardForm.from_arrays(np.array([[1.0, 2.0], [3.0, 1.0]]), row_lower=[1.0, 1.0],
                                    row_upper=[np.inf, np.inf], objective=[5.0, 40.0])
    assert well_scaled(tame) and choose_scaling(tame).is_identity
    res = solvers.solve(tame, threads=1)
    vertices = (5.0 * 1.0, 40.0 * 1.0, 5.0 * 0.2 + 40.0 * 0.4)  # (1, 0), (0, 1), (0.2, 0.4)
    assert res.scaling.is_identity and res.objective == pytest.approx(min(vertices))


def test_progress_display_reads_the_log_in_the_model_s_units(tmp_path) -> None:
    """The solver's log shows the scaled objective; the CLI's progress lines divide it back."""
    from engine.cli import SolveLog

    form, data = badly_scaled()
    shown: list[str] = []
    log = SolveLog(tmp_path / "solver.log", shown.append, every=0.0)
    res = solvers.solve(form, mip_gap=0.0, threads=1, log=log)
    assert log.scale == res.scaling.objective < 1.0
    assert "Objective values in this log are the model's times" in (tmp_path / "solver.log").read_text()
    best = [float(line.split("best ")[1].split(",  bound")[0].split(", bound")[0].replace(",", ""))
            for line in shown if "best " in line and "inf" not in line.split("best ")[1].split(",")[0]]
    assert best and min(best) == pytest.approx(res.objective, rel=1e-6)
