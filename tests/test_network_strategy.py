"""Network design under a time limit: never drop demand, never return an unchecked plan, anytime best plan,
heuristics checked against brute force (issue 15)."""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest

import solvers
from formulations import lagrangian, network_design
from formulations import network_heuristics as nh
from formulations.check import check_plan
from formulations.network_design import (
    NetworkDesignOptions,
    PlanCheckError,
    _checked,
    prepare,
)
from instances.orlib import orlib_instance


def cflp(seed: int, m: int = 6, n: int = 12, tight: float = 1.6):
    """A small random capacitated facility location instance (total capacity = ``tight`` x total demand)."""
    rng = np.random.default_rng(seed)
    demand = rng.integers(5, 40, n).astype(float)
    cap = np.round(rng.uniform(0.5, 1.5, m) * tight * demand.sum() / m)
    fixed = np.round(rng.uniform(50, 200, m))
    xy_w, xy_c = rng.random((m, 2)), rng.random((n, 2))
    dist = np.sqrt(((xy_w[:, None, :] - xy_c[None, :, :]) ** 2).sum(-1))
    cost = np.round(dist * demand[None, :] * 10, 2)  # c_ij: cost of all of j's demand from i
    return orlib_instance(cap, fixed, demand, cost, f"rand{seed}")


def brute_force(inst, min_open: int = 1, **opts) -> tuple[float, tuple[str, ...]]:
    """Best objective over every subset of at least ``min_open`` open sites, each solved with the sites fixed (an
    LP)."""
    sites = list(inst.dcs["id"])
    best, best_open = np.inf, ()
    for k in range(min_open, len(sites) + 1):
        for subset in itertools.combinations(sites, k):
            closed = [s for s in sites if s not in subset]
            plan = network_design.solve(inst, options=NetworkDesignOptions(
                allow_unmet=False, force_open=list(subset), force_closed=closed, strategy="direct", **opts),
                mip_gap=0.0)
            if plan.has_solution and plan.objective < best:
                best, best_open = plan.objective, subset
    return best, best_open


# --------------------------------------------------------------------------------------------------
# 0. correct before fast
# --------------------------------------------------------------------------------------------------


def test_a_customer_without_a_lane_is_never_dropped():
    """The capc7250 case in small: lanes restricted so that customer C3 has none. Demand must be met, so the
    model is infeasible -- not 'optimal' with C3's demand silently gone; with unmet demand allowed C3 is unmet at
    its penalty and the plan checks."""
    inst = cflp(1)
    lanes = [(w, c) for w in inst.dcs["id"] for c in inst.zones["id"] if c != "C3"]
    strict = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False, allowed_lanes=lanes,
                                                                     strategy="direct"), mip_gap=0.0)
    assert not strict.has_solution and strict.status in ("infeasible", "infeasible_or_unbounded")
    soft = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=True, allowed_lanes=lanes,
                                                                   strategy="direct"), mip_gap=0.0)
    assert soft.status == "optimal"
    unmet = soft.tables["unmet"].set_index("zone_id")["quantity"]
    d3 = float(inst.demand.set_index("zone_id").loc["C3", "quantity"])
    assert list(unmet.index) == ["C3"] and unmet["C3"] == pytest.approx(d3)
    assert soft.cost("unmet_penalty") == pytest.approx(d3 * inst.defaults["unmet_demand_penalty"])
    assert check_plan(inst, soft).empty
    # every closed site of a zone's only lanes: the same
    only = [(w, c) for w, c in lanes] + [("W1", "C3")]
    closed = network_design.solve(inst, options=NetworkDesignOptions(
        allow_unmet=False, allowed_lanes=only, force_closed=["W1"], strategy="direct"), mip_gap=0.0)
    assert not closed.has_solution


def test_uncovered_demand_mask():
    inst = cflp(2, m=3, n=5)
    lanes = [(w, c) for w in inst.dcs["id"] for c in inst.zones["id"] if c not in ("C2", "C5")]
    from formulations.network_design import uncovered_demand

    ctx = prepare(inst, NetworkDesignOptions(allowed_lanes=lanes))
    mask = uncovered_demand(ctx)
    assert sorted(ctx.zones[mask.any(axis=(1, 2))]) == ["C2", "C5"]


def test_a_plan_failing_the_check_is_an_error_not_an_answer():
    inst = cflp(3)
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False), mip_gap=0.0)
    assert plan.status == "optimal" and check_plan(inst, plan).empty
    flows = plan.tables["flows"]
    dropped = flows[flows["destination_id"] != flows["destination_id"].iloc[0]].reset_index(drop=True)
    plan.tables["flows"] = dropped  # one customer's demand neither served nor unmet
    with pytest.raises(PlanCheckError, match="demand"):
        _checked(inst, plan)


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_relax_restore_is_optimal_checked_and_its_bound_below_the_plan(seed):
    inst = cflp(seed)
    best, _ = brute_force(inst)
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False, strategy="relax_restore"),
                                mip_gap=0.0)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(best, rel=1e-7)
    assert plan.bound <= plan.objective
    assert check_plan(inst, plan).empty


# --------------------------------------------------------------------------------------------------
# 1./2. a plan always comes back; anytime best
# --------------------------------------------------------------------------------------------------


def test_the_returned_plan_is_the_best_of_all_phases():
    inst = cflp(7, m=8, n=20, tight=1.3)
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False, strategy="relax_restore"),
                                mip_gap=0.0)
    phases = plan.meta["phases"]
    found = [p["objective"] for p in phases.values() if isinstance(p, dict) and p.get("objective") is not None]
    assert {"start", "lagrangian"} <= set(phases) and phases["lagrangian"]["status"] == "bound"
    assert phases["start"]["objective"] is not None  # a plan exists before any optimisation
    assert plan.objective <= min(found) + 1e-9
    assert plan.bound <= plan.objective


def test_a_good_warm_start_is_never_replaced_by_a_worse_plan():
    """Anytime rule: with almost no time left for the MILP, the plan given as warm start (the optimum) comes
    back, never a worse plan found later."""
    inst = cflp(8, m=8, n=20, tight=1.3)
    opt = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False), mip_gap=0.0)
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False, strategy="relax_restore"),
                                mip_gap=0.0, warm_start=opt, time_limit=0.5)
    assert plan.has_solution
    assert plan.objective == pytest.approx(opt.objective, rel=1e-9)
    assert check_plan(inst, plan).empty


def test_a_small_model_under_a_tiny_time_limit_still_returns_a_checked_plan(tiny):
    """auto on a small model (< RELAX_RESTORE_MIN_ARCS arcs) builds a plan before the MILP: with a limit too short
    for the MILP the greedy network comes back (checked, status time_limit, its cost the greedy network's cost
    solved independently); with time the MILP runs from it to the brute-force optimum; a warm start at the optimum
    is never replaced by a worse plan; the general model (products, modules, labour, sources) too."""
    inst = cflp(70, m=5, n=12, tight=1.6)
    best, _ = brute_force(inst)
    opts = NetworkDesignOptions(allow_unmet=False)
    ctx = prepare(inst, opts)
    assert len(ctx.outbound) < network_design.RELAX_RESTORE_MIN_ARCS
    quick = network_design.solve(inst, options=opts, mip_gap=0.0, time_limit=0.01)
    assert quick.has_solution and quick.status == "time_limit" and check_plan(inst, quick).empty
    assert quick.meta["first_plan"]["source"] == "greedy" and quick.meta["milp"]["status"].startswith("skipped")
    greedy = nh.greedy_sites(ctx)
    alone = network_design.solve(inst, options=replace(opts, strategy="direct", force_open=list(ctx.sites[greedy]),
                                                       force_closed=list(ctx.sites[~greedy])), mip_gap=0.0)
    assert quick.objective == pytest.approx(alone.objective, rel=1e-9) and quick.objective >= best * (1 - 1e-9)
    full = network_design.solve(inst, options=opts, mip_gap=0.0, time_limit=30)
    assert full.status == "optimal" and full.objective == pytest.approx(best, rel=1e-7)
    assert full.objective <= full.meta["first_plan"]["objective"] + 1e-9 and full.bound <= full.objective
    kept = network_design.solve(inst, options=opts, mip_gap=0.0, time_limit=0.01, warm_start=full)
    assert kept.meta["first_plan"]["source"] == "warm_start"
    assert kept.objective == pytest.approx(full.objective, rel=1e-9) and check_plan(inst, kept).empty
    general = network_design.solve(tiny, time_limit=0.01)
    assert general.has_solution and check_plan(tiny, general).empty and general.meta["first_plan"]["source"]


# --------------------------------------------------------------------------------------------------
# 3. heuristics: valid against brute force
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [10, 11, 12, 13])
def test_greedy_and_rounded_sites_cover_demand_and_are_feasible(seed):
    inst = cflp(seed, tight=1.2)
    ctx = prepare(inst, NetworkDesignOptions(allow_unmet=False))
    cap = nh.site_capacity(ctx)
    demand = nh.period_demand(ctx)
    assert cap[:, 0] == pytest.approx(inst.resources.set_index("site_id")["count"].reindex(ctx.sites).to_numpy())
    assert demand[0] == pytest.approx(inst.demand["quantity"].sum())
    rng = np.random.default_rng(seed)
    for is_open in (nh.greedy_sites(ctx), nh.round_sites(ctx, rng.random(len(ctx.sites)) * 0.6)):
        assert cap[is_open].sum() >= demand[0] - 1e-9
        sites = ctx.sites
        plan = network_design.solve(inst, options=NetworkDesignOptions(
            allow_unmet=False, force_open=list(sites[is_open]), force_closed=list(sites[~is_open]),
            strategy="direct"), mip_gap=0.0)
        assert plan.status == "optimal" and check_plan(inst, plan).empty


def test_greedy_sites_keep_forced_decisions():
    inst = cflp(14)
    ctx = prepare(inst, NetworkDesignOptions(allow_unmet=False, force_open=["W2"], force_closed=["W1", "W3"]))
    is_open = nh.greedy_sites(ctx)
    assert is_open[list(ctx.sites).index("W2")]
    assert not is_open[list(ctx.sites).index("W1")] and not is_open[list(ctx.sites).index("W3")]


@pytest.mark.parametrize("seed, allow_unmet", [(20, False), (21, False), (22, True), (23, False)])
def test_lagrangian_bound_and_fixing_are_valid_against_brute_force(seed, allow_unmet):
    """L(u) never exceeds the brute-force optimum; a site fixed closed (open) by the Lagrangian test is closed
    (open) in the optimum; the subproblem's completed site sets are feasible plans."""
    inst = cflp(seed, m=6, n=14, tight=1.3)
    if allow_unmet:  # a penalty low enough that leaving demand unmet is a real option for remote customers
        inst = inst.replace(meta={**inst.meta, "defaults": {**inst.meta["defaults"], "unmet_demand_penalty": 8.0}})
    sites = list(inst.dcs["id"])
    best, best_open = np.inf, ()
    for k in range(0 if allow_unmet else 1, len(sites) + 1):
        for subset in itertools.combinations(sites, k):
            plan = network_design.solve(inst, options=NetworkDesignOptions(
                allow_unmet=allow_unmet, force_open=list(subset), force_closed=[s for s in sites if s not in subset],
                strategy="direct"), mip_gap=0.0)
            if plan.has_solution and plan.objective < best:
                best, best_open = plan.objective, subset
    direct = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=allow_unmet, strategy="direct"),
                                  mip_gap=0.0)
    assert direct.objective == pytest.approx(best, rel=1e-7)
    ctx = prepare(inst, NetworkDesignOptions(allow_unmet=allow_unmet))
    assert lagrangian.applies(ctx)[0]
    res = lagrangian.subgradient(ctx, upper=best * (1 + 1e-6), max_iter=2000, tol=0.0)
    assert res.bound <= best * (1 + 1e-9)
    c = network_design.prepare(inst, NetworkDesignOptions(allow_unmet=allow_unmet))
    m = network_design.build_model(c)
    form = solvers.to_standard_form(m)
    form.integrality[:] = 0
    lp_bound = solvers.solve(form).objective + c.objective_constant
    assert res.bound >= lp_bound - 0.01 * abs(lp_bound)  # as strong as the LP relaxation (up to convergence)
    opened = np.isin(ctx.sites, best_open)
    assert not (opened & res.fixed_closed).any() and not (~opened & res.fixed_open).any()
    # probing fixes more sites (each flip re-optimised) and never the optimum's sites the wrong way, whether
    # measured against the optimum's cost or a worse plan's
    added = 0
    for upper in (best * (1 + 1e-9), best * 1.02, best * 1.05):
        root = lagrangian.subgradient(ctx, upper=upper, max_iter=300, tol=0.0)
        fo, fc, _ = lagrangian.probe(ctx, upper, root)
        assert (fo >= root.fixed_open).all() and (fc >= root.fixed_closed).all()
        assert not (opened & fc).any() and not (~opened & fo).any()
        added += int(fo.sum() + fc.sum() - root.fixed_open.sum() - root.fixed_closed.sum())
    assert added > 0 or seed == 23  # seed 23: the root fixes every site but one already
    # the relax-and-restore strategy with these parts reaches the optimum and proves it
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=allow_unmet, strategy="relax_restore"),
                                mip_gap=0.0)
    assert plan.status == "optimal" and plan.objective == pytest.approx(best, rel=1e-7)
    assert plan.bound <= plan.objective and check_plan(inst, plan).empty


@pytest.mark.parametrize("seed", range(6))
def test_cover_knapsack_is_a_lower_bound_and_exact_on_integral_capacities(seed):
    """The y-problem's knapsack against enumeration of every subset: never above the true minimum, equal to it when
    the capacities are integral (the grid then divides them), and its y meets the row."""
    rng = np.random.default_rng(seed)
    n = 9
    value = np.round(rng.uniform(0, 100, n), 2)
    integral = seed % 2 == 0
    cap = rng.integers(5, 60, n).astype(float) if integral else rng.uniform(5, 60, n)
    need = float(rng.uniform(0.2, 0.8) * cap.sum())
    true = min(value[list(s)].sum() for k in range(n + 1) for s in itertools.combinations(range(n), k)
               if cap[list(s)].sum() >= need)
    for grid in (7, 50, lagrangian.KNAPSACK_GRID):
        got, y = lagrangian.cover_knapsack(value, cap, need, grid=grid)
        assert got <= true + 1e-9
        assert got == pytest.approx(value[y].sum())
        if integral and grid == lagrangian.KNAPSACK_GRID:
            assert got == pytest.approx(true) and cap[y].sum() >= need
    # its LP relaxation (used for fixing with many sites): a lower bound, equal to the LP solved by HiGHS
    import linopy

    m = linopy.Model()
    y = m.add_variables(lower=0.0, upper=1.0, coords=[range(n)], name="y")
    m.add_constraints((y * cap).sum() >= need)
    m.add_objective((y * value).sum())
    frac = lagrangian.fractional_cover(value, cap, need)
    assert frac <= true + 1e-9 and frac == pytest.approx(solvers.solve(m).objective, rel=1e-9, abs=1e-9)
    assert lagrangian.cover_knapsack(value, cap, cap.sum() + 1)[0] == np.inf  # too little capacity: no plan


def test_knapsack_bound_is_above_the_lp_bound_and_fixing_is_valid(monkeypatch):
    """Equal capacities and demand 3.5 sites' worth: the LP relaxation may open 3.5 sites, the y-problem at least
    4 -- the Lagrangian bound ends strictly above the LP bound, never above the brute-force optimum; every site
    fixed against a plan's cost (the optimum's, and a worse plan's) keeps its value in the optimum."""
    rng = np.random.default_rng(60)
    m, n = 6, 14
    demand = rng.integers(5, 40, n).astype(float)
    cap = np.full(m, demand.sum() / 3.5)
    fixed = np.round(rng.uniform(400, 900, m))
    xy_w, xy_c = rng.random((m, 2)), rng.random((n, 2))
    cost = np.round(np.sqrt(((xy_w[:, None, :] - xy_c[None, :, :]) ** 2).sum(-1)) * demand[None, :] * 10, 2)
    inst = orlib_instance(cap, fixed, demand, cost, "equal_caps")
    best, best_open = brute_force(inst, min_open=4)  # fewer than 4 sites cannot cover the demand
    c = network_design.prepare(inst, NetworkDesignOptions(allow_unmet=False))
    form = solvers.to_standard_form(network_design.build_model(c))
    form.integrality[:] = 0
    lp_bound = solvers.solve(form).objective + c.objective_constant
    ctx = prepare(inst, NetworkDesignOptions(allow_unmet=False))
    opened = np.isin(ctx.sites, best_open)
    for upper in (best * (1 + 1e-9), best * 1.05):
        res = lagrangian.subgradient(ctx, upper=upper, max_iter=1500, tol=0.0, fix_every=5)
        assert res.bound <= best * (1 + 1e-9)
        assert not (opened & res.fixed_closed).any() and not (~opened & res.fixed_open).any()
    # fixing with the knapsack's fractional relaxation (the path of models with many sites): valid as well
    monkeypatch.setattr(lagrangian, "EXACT_FIXING_SITES", 0)
    for upper in (best * (1 + 1e-9), best * 1.05):
        res = lagrangian.subgradient(ctx, upper=upper, max_iter=1500, tol=0.0, fix_every=5)
        fo, fc, _ = lagrangian.probe(ctx, upper, res)
        assert res.bound <= best * (1 + 1e-9) and fo.sum() + fc.sum() > 0
        assert not (opened & fc).any() and not (~opened & fo).any()
    monkeypatch.undo()
    res = lagrangian.subgradient(ctx, upper=np.inf, max_iter=1500, tol=0.0)
    assert lp_bound + 1e-6 * abs(lp_bound) < res.bound <= best * (1 + 1e-9)
    assert res.fixed_closed.sum() == res.fixed_open.sum() == 0  # no plan in hand, nothing fixed


def test_lagrangian_refuses_models_of_another_shape(tiny):
    ok, why = lagrangian.applies(prepare(tiny))
    assert not ok and why


@pytest.mark.parametrize("seed", [30, 31])
def test_neighbour_moves_keep_capacity_and_local_search_never_worsens(seed):
    """Every close / swap move keeps the open capacity above demand (checked by solving it: feasible); the
    relax-and-restore answer is never worse than any plan its phases evaluated (local search included)."""
    inst = cflp(seed, m=7, n=15, tight=1.4)
    ctx = prepare(inst, NetworkDesignOptions(allow_unmet=False))
    cap, demand = nh.site_capacity(ctx), nh.period_demand(ctx)
    is_open = nh.greedy_sites(ctx)
    score = np.random.default_rng(seed).random(len(ctx.sites))
    free = np.ones(len(ctx.sites), dtype=bool)
    moves = nh.neighbour_moves(is_open, score, cap, demand, free, free, width=3)
    assert moves and all((m != is_open).sum() in (1, 2) for m in moves)
    for m in moves:
        assert cap[m].sum() >= demand[0] - 1e-9
        plan = network_design.solve(inst, options=NetworkDesignOptions(
            allow_unmet=False, force_open=list(ctx.sites[m]), force_closed=list(ctx.sites[~m]), strategy="direct"),
            mip_gap=0.0)
        assert plan.status == "optimal"
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False, strategy="relax_restore"),
                                mip_gap=0.0)
    phases = plan.meta["phases"]
    assert "local_search" in phases
    seen = [p["objective"] for p in phases.values() if isinstance(p, dict) and p.get("objective") is not None]
    assert plan.objective <= min(seen) + 1e-9 and check_plan(inst, plan).empty


@pytest.mark.parametrize("case", ["cflp", "tiny", "tiny_tight"])
def test_aggregate_capacity_row_is_valid(case, tiny):
    """The aggregate capacity inequality never cuts off the optimum: with and without it the MILP optimum is the
    same (tiny: products, periods, modules, labour, sources; tiny_tight: capacity derated so modules and unmet
    demand come into play; cflp: checked against brute force as well), and its LP relaxation is not weaker."""
    if case == "cflp":
        inst = cflp(40, m=6, n=12, tight=1.2)
        opts = {"allow_unmet": False}
    else:
        inst = tiny
        opts = {}
        if case == "tiny_tight":
            opts["capacity_derate"] = {(s, "pick"): 0.35 for s in ("DC_A", "DC_B", "DC_C")}
    without = network_design.solve(inst, options=NetworkDesignOptions(strategy="direct", **opts), mip_gap=0.0)
    with_cut = network_design.solve(inst, options=NetworkDesignOptions(strategy="direct", capacity_cut=True, **opts),
                                    mip_gap=0.0)
    assert with_cut.status == without.status == "optimal"
    assert with_cut.objective == pytest.approx(without.objective, rel=1e-7)
    assert check_plan(inst, with_cut).empty
    c = network_design.prepare(inst, NetworkDesignOptions(capacity_cut=True, **opts))
    m = network_design.build_model(c)
    assert "aggregate_capacity" in m.constraints
    if case == "cflp":
        assert with_cut.objective == pytest.approx(brute_force(inst)[0], rel=1e-7)


def test_twinplan_solve_time_limit_covers_every_repair_round(tiny):
    """The pipeline's time limit bounds the whole call: once round 1 has used it, no further repair round starts
    (the unexecutable plan of round 1 comes back, checked, with the reason); without a limit the loop repairs."""
    from engine.pipeline import plan
    from engine.scenario import load_scenario
    from tests.test_pipeline import TINY, pack_bound_instance

    inst = pack_bound_instance(tiny)
    scenario = load_scenario("baseline", TINY).with_modifications([{"sla": {"order_to_ship_sla_hours": 12}}])
    limited = plan(inst, scenario, time_limit=1.0, mip_gap=0.0, max_rounds=5, replications=2, seed=3)
    assert len(limited.rounds) == 1 and limited.rounds[0]["outcome"] == "time limit reached: repair stopped"
    assert limited.plan.has_solution and check_plan(limited.instance, limited.plan).empty
    free = plan(inst, scenario, time_limit=None, mip_gap=0.0, max_rounds=5, replications=2, seed=3)
    assert len(free.rounds) >= 2


def test_single_source_relax_restore_matches_direct_and_starts_complete():
    """Single sourcing: the MIP start carries the assignments too (a complete start), and the answer equals the
    direct MILP's optimum."""
    inst = cflp(50, m=6, n=14, tight=1.8)
    opts = NetworkDesignOptions(allow_unmet=False, single_source=True)
    direct = network_design.solve(inst, options=replace(opts, strategy="direct"), mip_gap=0.0)
    plan = network_design.solve(inst, options=replace(opts, strategy="relax_restore"), mip_gap=0.0)
    assert direct.status == plan.status == "optimal"
    assert plan.objective == pytest.approx(direct.objective, rel=1e-7)
    assert check_plan(inst, plan, single_source=True).empty
    ctx = network_design.prepare(inst, opts)
    start = network_design.warm_start_from(ctx, network_design.build_model(ctx), direct)
    assign = start["assign"]
    assert assign.sum() == len(inst.zones) and set(assign.unique()) <= {0.0, 1.0}


@pytest.mark.parametrize("seed", [60, 61])
def test_lagrangian_bound_and_fixing_are_valid_for_single_sourcing(seed):
    """With single sourcing the Lagrangian relaxes the multi-source problem, itself a relaxation: against the
    single-source optimum by brute force (every site subset, its assignments a MILP), L(u) is never above it,
    no fixing or probe sets one of its sites the wrong way, and relax-and-restore (which now takes this path)
    reaches it, proven and checked. The capacities are tight enough that single sourcing costs something."""
    inst = cflp(seed, m=5, n=12, tight=1.3)
    multi = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False), mip_gap=0.0).objective
    best, best_open = brute_force(inst, single_source=True)
    assert best > multi * (1 + 1e-6)  # single sourcing binds here
    ctx = prepare(inst, NetworkDesignOptions(allow_unmet=False, single_source=True))
    assert lagrangian.applies(ctx)[0]
    opened = np.isin(ctx.sites, best_open)
    fixed = 0
    for upper in (best * (1 + 1e-9), best * 1.02):
        root = lagrangian.subgradient(ctx, upper=upper, max_iter=1000, tol=0.0)
        assert root.bound <= best * (1 + 1e-9)
        fo, fc, _ = lagrangian.probe(ctx, upper, root)
        assert not (opened & (fc | root.fixed_closed)).any() and not (~opened & (fo | root.fixed_open)).any()
        fixed += int(fo.sum() + fc.sum())
    assert fixed >= 4  # sites were fixed (seed 60: all five against the optimum's cost), none wrongly
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False, single_source=True,
                                                                   strategy="relax_restore"), mip_gap=0.0)
    assert plan.meta["phases"]["lagrangian"]["status"] == "bound"
    assert plan.status == "optimal" and plan.objective == pytest.approx(best, rel=1e-7)
    assert plan.bound <= plan.objective and check_plan(inst, plan, single_source=True).empty
