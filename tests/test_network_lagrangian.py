"""The network Lagrangian relaxation (products, ports with supply, labour, expansion modules; issue 15): each DC's
value is the exact optimum of its subproblem, every bound is below the proven optimum, the subgradient reaches the
per-product LP relaxation, and relax-and-restore uses it."""

from __future__ import annotations

import linopy
import numpy as np
import pytest

import solvers
from formulations import lagrangian, network_design
from formulations import network_lagrangian as nl
from formulations.network_design import NetworkDesignOptions, prepare
from instances.generator import synthetic


def network(seed: int, crews: float | None = None):
    """6 DCs (2 candidates with expansion modules), 2 ports whose supply may bind, 3 products, 2 weeks, labour;
    ``crews``: the headcount of the DCs with modules (large enough, a module adds throughput labour can work)."""
    inst = synthetic(seed=seed, sites=8, zones=10, products=3, periods=2, lanes_per_zone=4, port_share=0.25)
    if crews is not None:
        lab = inst.tables["labor"]
        lab.loc[lab["site_id"].isin(set(inst.expansions["site_id"])), "max_headcount"] = crews
    return inst


def optimum_and_lp(inst) -> tuple[float, float]:
    """The proven MILP optimum (HiGHS, gap 0) and the per-product LP relaxation's optimum."""
    best = network_design.solve(inst, NetworkDesignOptions(strategy="direct", aggregate_products=False), mip_gap=0.0)
    assert best.status == "optimal"
    ctx = prepare(inst, NetworkDesignOptions(aggregate_products=False))
    form = solvers.to_standard_form(network_design.build_model(ctx))
    form.integrality[:] = 0
    return float(best.objective), float(solvers.solve(form).objective) + ctx.objective_constant


def site_subproblem(ctx, fl: nl.NetworkRelaxation, i: int, u: np.ndarray) -> float:
    """v_i(u, mu) from the module docstring's definition, as a MILP solved by HiGHS: DC i's flows to its zones and
    from its ports, its throughput within every stage's capacity (modules integer), its labour hours."""
    site = ctx.sites[i]
    lam, mu = u[:fl.n_cust], u[fl.n_cust:]
    f = ctx.outbound.frame.reset_index(drop=True)
    f = f[f["origin_id"] == site].reset_index(drop=True)
    keys = {"zone_id": ctx.zones, "product_id": ctx.products, "period": ctx.periods}
    from formulations.common import grid_codes

    cust = grid_codes(f.rename(columns={"destination_id": "zone_id"}), keys)
    h = float(ctx.instance.defaults["handling_cost_per_unit"])
    b = ctx.inbound.frame.reset_index(drop=True)
    b = b[b["destination_id"] == site].reset_index(drop=True)
    sup = ctx.supply.reset_index(drop=True)
    row = {(s, p, t): k for k, (s, p, t) in enumerate(zip(sup["site_id"], sup["product_id"], sup["period"]))}
    m = linopy.Model()
    x = m.add_variables(lower=0.0, upper=fl.demand[cust], coords=[range(len(f))], name="x")
    y = m.add_variables(lower=0.0, coords=[range(len(b))], name="inflow")
    obj = (x * (ctx.annual * (f["cost_per_unit"].to_numpy() + h) - lam[cust])).sum()
    obj = obj + (y * (ctx.annual * b["cost_per_unit"].to_numpy()
                      + np.array([mu[row[(s, p, t)]] for s, p, t in zip(b["origin_id"], b["product_id"],
                                                                          b["period"])]))).sum()
    for (p, t), arcs in f.groupby(["product_id", "period"]).groups.items():  # balance per product and period
        ins = b.index[(b["product_id"] == p) & (b["period"] == t)]
        m.add_constraints(y.loc[list(ins)].sum() - x.loc[list(arcs)].sum() == 0) if len(ins) else \
            m.add_constraints(x.loc[list(arcs)].sum() == 0)
    lab = ctx.labor[ctx.labor["site_id"] == site]
    rates = ctx.rates[ctx.rates["site_id"] == site].reset_index(drop=True)
    exp = rates[(rates["max_modules"] > 0) & (rates["module_size"] > 0)].reset_index(drop=True)
    mod = None
    if len(exp):
        mod = m.add_variables(lower=0, upper=exp["max_modules"].to_numpy(dtype=float), coords=[range(len(exp))],
                              name="modules", integer=True)
        obj = obj + (mod * (exp["capex"].to_numpy() * ctx.crf + exp["opex_per_year"].to_numpy())).sum()
    for t in ctx.periods:
        days = float(ctx.days.loc[t])
        thr = x.loc[list(f.index[f["period"] == t])].sum()
        for r in rates.itertuples():
            cap = r.units_per_count_day * days * r.base_count
            k = exp.index[exp["stage"] == r.stage]
            if mod is not None and len(k):
                m.add_constraints(thr - mod.loc[int(k[0])] * (r.units_per_count_day * days * r.module_size) <= cap)
            else:
                m.add_constraints(thr <= cap)
        if len(lab):
            w = lab.iloc[0]
            reg = m.add_variables(lower=0.0, upper=w["max_headcount"] * w["hours_per_person_week"] * days / 7,
                                  name=f"regular_{t}")
            ot = m.add_variables(lower=0.0, upper=w["max_overtime_hours"] * days / 7, name=f"overtime_{t}")
            m.add_constraints(reg + ot - w["hours_per_unit"] * thr >= 0)
            obj = obj + ctx.annual * (w["hourly_rate"] * reg + w["overtime_rate"] * ot)
    m.add_objective(obj)
    return float(solvers.solve(m).objective) + float(fl.fixed[i])


@pytest.mark.parametrize("seed", [5, 11])
def test_each_site_value_is_its_subproblem_optimum(seed):
    """At random multipliers (demand rows up to above the penalty, supply rows >= 0), the greedy knapsack with the
    labour cost's two rates and the module combinations gives each DC exactly its subproblem's MILP optimum."""
    inst = network(seed, crews=40.0)
    ctx = prepare(inst, NetworkDesignOptions(aggregate_products=False))
    fl = nl.relaxation(ctx)
    assert isinstance(fl, nl.NetworkRelaxation) and fl.n_supply > 0 and fl.levels  # the shape this is for
    rng = np.random.default_rng(seed)
    modules_paid = 0
    for low in (0.0, 0.5, 0.9):  # the higher the multipliers, the more throughput is worth (and modules with it)
        u = fl.project(np.concatenate([rng.uniform(low * fl.penalty, 1.3 * fl.penalty, fl.n_cust),
                                       rng.uniform(0, 3, fl.n_supply)]))
        v = fl.site_values(u)[1]
        for i in range(len(ctx.sites)):
            assert v[i] == pytest.approx(site_subproblem(ctx, fl, i, u), rel=1e-7, abs=1e-3)
        plain = nl.relaxation(ctx)
        plain.levels = {}
        modules_paid += int((plain.site_values(u)[1] > v + 1e-3).sum())
    assert modules_paid > 0  # some DC's best value needed its modules: the combinations were exercised


def brute_force(inst) -> float:
    """The optimum by enumeration: every subset of DCs open (the rest closed), each solved with the sites fixed."""
    import itertools

    sites = list(inst.dcs["id"])
    best = np.inf
    for k in range(len(sites) + 1):
        for subset in itertools.combinations(sites, k):
            plan = network_design.solve(inst, NetworkDesignOptions(
                strategy="direct", aggregate_products=False, force_open=list(subset),
                force_closed=[s for s in sites if s not in subset]), mip_gap=0.0)
            if plan.has_solution:
                best = min(best, float(plan.objective))
    return best


def test_proven_optimum_is_the_brute_force_one():
    """The reference optimum of the bound tests (HiGHS, gap 0) is the one enumeration of all 64 site subsets finds."""
    inst = network(5)
    assert optimum_and_lp(inst)[0] == pytest.approx(brute_force(inst), rel=1e-9)


@pytest.mark.parametrize("seed", [5, 11, 23])
def test_bound_below_optimum_and_reaches_the_lp_relaxation(seed):
    """Weak duality at random multipliers; the subgradient's bound never above the proven optimum and within
    0.5 % of the per-product LP relaxation (or above it: modules stay integer in the subproblems)."""
    inst = network(seed)
    best, lp = optimum_and_lp(inst)
    ctx = prepare(inst, NetworkDesignOptions(aggregate_products=False))
    fl = nl.relaxation(ctx)
    rng = np.random.default_rng(seed)
    for _ in range(20):
        u = fl.project(np.concatenate([rng.uniform(0, fl.penalty, fl.n_cust), rng.uniform(0, 5, fl.n_supply)]))
        assert fl.evaluate(u)[0] <= best * (1 + 1e-9)
    res = lagrangian.subgradient(ctx, best * 1.02, max_iter=3000, tol=0.0, fl=fl, overshoot=nl.OVERSHOOT)
    assert res.bound <= best * (1 + 1e-9)
    assert res.bound >= lp - 5e-3 * abs(lp)


@pytest.fixture
def large(monkeypatch):
    """Small networks treated as large ones (whose LP relaxation is too big to solve): they take the network
    relaxation, as the median network does."""
    monkeypatch.setattr(network_design, "LARGE_LP_ARCS", 1)


def test_small_networks_keep_the_lp_relaxation():
    """Below LARGE_LP_ARCS the LP relaxation is cheap and its rounding strong: relax-and-restore keeps it."""
    plan = network_design.solve(network(5), NetworkDesignOptions(strategy="relax_restore"), mip_gap=0.01,
                                time_limit=60)
    assert plan.meta["phases"]["lagrangian"]["status"].startswith("not used")
    assert "lp_relaxation" in plan.meta["phases"]


def test_relax_restore_uses_it_and_returns_a_checked_plan(large):
    """relax-and-restore on the network shape: the bound comes from the network relaxation, the plan passes the
    check, bound <= optimum <= plan, and with a 1 % gap asked the plan is within 1 % of the optimum."""
    inst = network(5)
    best, _ = optimum_and_lp(inst)
    plan = network_design.solve(inst, NetworkDesignOptions(strategy="relax_restore"), mip_gap=0.01, time_limit=60)
    assert plan.meta["phases"]["lagrangian"]["status"] == "bound"
    assert plan.meta["phases"]["lagrangian"]["rounded_plans"] >= 1  # the averaged open shares, rounded, were tried
    assert plan.bound <= best * (1 + 1e-9) <= plan.objective * (1 + 2e-9)
    assert plan.objective <= best * 1.01 + 1e-6


def test_a_later_solve_starts_from_the_plans_multipliers(large):
    """A repair round or a what-if variant warm-started from a plan starts its subgradient from that plan's
    multipliers: its first bound is already the earlier solve's."""
    inst = network(11)
    opts = NetworkDesignOptions(strategy="relax_restore")
    first = network_design.solve(inst, opts, mip_gap=1e-6, time_limit=60)
    assert first.multipliers is not None and first.meta["phases"]["lagrangian"]["start"] == "default"
    again = network_design.solve(inst, opts, mip_gap=1e-6, time_limit=60, warm_start=first)
    lag = again.meta["phases"]["lagrangian"]
    assert lag["start"] == "the warm start's multipliers"
    assert lag["bound"] >= first.meta["phases"]["lagrangian"]["bound"] * (1 - 1e-9)


def test_each_round_records_its_bound_gap_and_first_plan(large, monkeypatch):
    """``twinplan solve``'s loop records per round the plan's bound and gap and when its first plan was in hand
    (the median network benchmark reports the first round's)."""
    from engine.pipeline import plan as run

    monkeypatch.setattr(network_design, "RELAX_RESTORE_MIN_ARCS", 1)
    res = run(network(5), time_limit=60, mip_gap=0.01, threads=1, replications=2)
    first = res.rounds[0]
    assert 0.0 < first["first_plan_s"] <= res.timings["total_s"]
    assert first["bound"] <= first["objective"] and first["gap"] == pytest.approx(
        (first["objective"] - first["bound"]) / abs(first["objective"]))
