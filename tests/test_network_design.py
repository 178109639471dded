"""Network design MILP: brute force on tiny, hand-computed costs, properties, exact reductions, eu_fba timing."""

from __future__ import annotations

import itertools
import time

import numpy as np
import pandas as pd
import pytest

import solvers
from formulations import network_design
from formulations.check import check_plan
from formulations.network_design import NetworkDesignOptions, products_aggregable
from instances.instance import Instance, bundled_instance_path, load_instance

DCS = ("DC_A", "DC_B", "DC_C")


def solve(inst: Instance, **opts) -> object:
    plan = network_design.solve(inst, options=NetworkDesignOptions(**opts), mip_gap=0.0)
    assert plan.status == "optimal", plan.status
    violations = check_plan(inst, plan)
    assert violations.empty, violations.to_string()
    assert plan.cost() == pytest.approx(plan.objective, rel=1e-9)  # costs table adds up to the objective
    return plan


@pytest.fixture(scope="module")
def optimum(tiny):
    return solve(tiny)


def test_brute_force_over_site_subsets(tiny, optimum):
    """The MILP optimum equals the best of all 2^3 open/closed subsets, each solved with the sites fixed."""
    best, best_open = np.inf, None
    for k in range(len(DCS) + 1):
        for subset in itertools.combinations(DCS, k):
            closed = [s for s in DCS if s not in subset]
            plan = solve(tiny, force_open=list(subset), force_closed=closed)
            if plan.objective < best:
                best, best_open = plan.objective, set(subset)
    assert optimum.objective == pytest.approx(best, rel=1e-9)
    s = optimum.tables["sites"]
    assert set(s.loc[s["open"] & s["site_id"].isin(DCS), "site_id"]) == best_open


def test_cost_of_a_fixed_network_by_hand(tiny):
    """Only DC_A open (enough capacity and regular labour): every cost component computed independently."""
    plan = solve(tiny, force_open=["DC_A"], force_closed=["DC_B", "DC_C"])
    d = tiny.defaults
    annual = d["periods_per_year"] / len(tiny.periods)  # 52 / 2
    lanes = tiny.lanes.set_index(["origin_id", "destination_id"])["cost_per_unit"]
    dem = tiny.demand
    outbound = sum(q * lanes[("DC_A", z)] for z, q in zip(dem["zone_id"], dem["quantity"]))
    inbound = dem["quantity"].sum() * lanes[("PORT_HAM", "DC_A")]
    lab = tiny.labor.set_index("site_id").loc["DC_A"]
    hours_per_unit = sum(1.0 / lab[f"productivity_{s}"] for s in
                         ("inbound_dock", "putaway", "pick", "pack", "outbound_dock"))
    expected = {
        "fixed": 400_000.0,
        "closing": 50_000.0,  # DC_B
        "transport": annual * (outbound + inbound),
        "handling": annual * d["handling_cost_per_unit"] * dem["quantity"].sum(),
        "labour_regular": annual * lab["hourly_rate"] * hours_per_unit * dem["quantity"].sum(),
    }
    for component, value in expected.items():
        assert plan.cost(component) == pytest.approx(value, rel=1e-9), component
    assert plan.objective == pytest.approx(sum(expected.values()), rel=1e-9)
    hours = plan.tables["labor"].set_index(["site_id", "period"])
    for t in (1, 2):
        q = dem.loc[dem["period"] == t, "quantity"].sum()
        assert hours.loc[("DC_A", t), "regular_hours"] == pytest.approx(q * hours_per_unit, rel=1e-9)
    assert plan.tables["unmet"].empty
    # delivery time per zone = its one lane's transit; overall = demand-weighted
    transit = tiny.lanes.set_index(["origin_id", "destination_id"])["transit_days"]
    service = plan.tables["service"].set_index("zone_id")
    for z in service.index:
        assert service.loc[z, "avg_transit_days"] == pytest.approx(transit[("DC_A", z)])
    by_zone = dem.groupby("zone_id")["quantity"].sum()
    weighted = sum(q * transit[("DC_A", z)] for z, q in by_zone.items()) / by_zone.sum()
    assert plan.meta["service_overall"]["avg_transit_days"] == pytest.approx(weighted)
    assert plan.meta["service_overall"]["zone_mean_transit_days"] == pytest.approx(
        np.mean([transit[("DC_A", z)] for z in by_zone.index]))


def test_product_aggregation_is_exact_and_its_condition_is_checked(tiny, optimum):
    ok, why = products_aggregable(tiny)
    assert ok, why
    ctx = network_design.prepare(tiny)
    network_design.build_model(ctx)
    assert ctx.aggregated and len(ctx.products) == 1
    full = solve(tiny, aggregate_products=False)
    assert full.objective == pytest.approx(optimum.objective, rel=1e-9)
    # flows split back per product meet each product's demand (checked by check_plan inside solve())
    assert set(optimum.tables["flows"]["product_id"]) == set(tiny.products["id"])
    # tight supply of one product breaks the condition, and the reason names it
    sup = tiny.supply.copy()
    sup.loc[(sup["product_id"] == "P_BULKY") & (sup["period"] == 2), "capacity"] = 1000.0
    tight = tiny.replace(supply=sup)
    ok, why = products_aggregable(tight)
    assert not ok and "P_BULKY" in why and "PORT_HAM" in why
    with pytest.raises(ValueError, match="not exact"):
        network_design.build_model(network_design.prepare(tight, NetworkDesignOptions(aggregate_products=True)))
    short = solve(tight)
    assert short.cost("unmet_penalty") > 0  # 1,320 bulky units demanded in period 2, 1,000 supplied
    unmet = short.tables["unmet"]
    assert set(unmet["product_id"]) == {"P_BULKY"} and set(unmet["period"]) == {2}
    bulky2 = tiny.demand.query("product_id == 'P_BULKY' and period == 2")["quantity"].sum()
    assert unmet["quantity"].sum() == pytest.approx(bulky2 - 1000.0, rel=1e-6)


def test_relax_restore_matches_direct(tiny, optimum):
    sup = tiny.supply.copy()
    sup.loc[sup["product_id"] == "P_BULKY", "capacity"] = 1200.0  # binds in period 2 only
    inst = tiny.replace(supply=sup)
    direct = solve(inst, aggregate_products=False, strategy="direct")
    plan = network_design.solve(inst, options=NetworkDesignOptions(strategy="relax_restore"), mip_gap=1e-9)
    assert plan.meta["strategy"] == "relax_restore"
    assert plan.objective == pytest.approx(direct.objective, rel=1e-7)
    assert plan.bound <= plan.objective + 1e-6
    assert check_plan(inst, plan).empty


def test_properties(tiny, optimum):
    # adding capacity never raises the optimal cost
    res = tiny.resources.copy()
    res["count"] *= 1.5
    assert solve(tiny.replace(resources=res)).objective <= optimum.objective * (1 + 1e-9)
    # forcing a site closed never lowers it
    for s in DCS:
        assert solve(tiny, force_closed=[s]).objective >= optimum.objective * (1 - 1e-9)
    # doubling every cost doubles the objective
    sites = tiny.sites.copy()
    for c in ("fixed_cost_per_year", "opening_cost", "closing_cost"):
        sites[c] *= 2
    lanes = tiny.lanes.assign(cost_per_unit=tiny.lanes["cost_per_unit"] * 2)
    labor = tiny.labor.assign(hourly_rate=tiny.labor["hourly_rate"] * 2, overtime_rate=tiny.labor["overtime_rate"] * 2)
    exp = tiny.expansions.assign(capex=tiny.expansions["capex"] * 2, opex_per_year=tiny.expansions["opex_per_year"] * 2)
    meta = dict(tiny.meta)
    meta["defaults"] = {**tiny.meta["defaults"], "handling_cost_per_unit": 2 * tiny.defaults["handling_cost_per_unit"],
                        "unmet_demand_penalty": 2 * tiny.defaults["unmet_demand_penalty"]}
    doubled = tiny.replace(meta=meta, sites=sites, lanes=lanes, labor=labor, expansions=exp)
    assert solve(doubled).objective == pytest.approx(2 * optimum.objective, rel=1e-9)


def test_shortfall_is_reported_not_silent(tiny):
    res = tiny.resources.copy()
    res.loc[res["stage"] == "pick", "count"] *= 0.1
    plan = solve(tiny.replace(resources=res))
    unmet = plan.tables["unmet"]["quantity"].sum()
    assert unmet > 0
    assert plan.cost("unmet_penalty") == pytest.approx(
        unmet * tiny.defaults["unmet_demand_penalty"] * 26, rel=1e-9)
    served = plan.tables["flows"].query("leg == 'outbound'")["quantity"].sum()
    assert served + unmet == pytest.approx(tiny.demand["quantity"].sum(), rel=1e-9)
    with pytest.raises(AssertionError):
        solve(tiny.replace(resources=res), allow_unmet=False)  # must be met: infeasible


def test_expansion_budget_and_counts(tiny):
    res = tiny.resources.copy()
    res.loc[(res["site_id"] == "DC_A") & (res["stage"] == "pack"), "count"] = 2.0  # pack becomes the bottleneck
    inst = tiny.replace(resources=res)
    plan = solve(inst, force_open=["DC_A"], force_closed=["DC_B", "DC_C"])
    cap = plan.tables["capacity"].set_index(["site_id", "stage"])
    mods = int(cap.loc[("DC_A", "pack"), "modules"])
    assert mods >= 1
    assert plan.meta["investment"] == pytest.approx(mods * 50_000.0)
    assert plan.cost("capex_annualized") == pytest.approx(mods * 50_000.0 * plan.meta["capital_recovery_factor"])
    no_money = solve(inst, force_open=["DC_A"], force_closed=["DC_B", "DC_C"], capex_budget=0.0)
    assert no_money.tables["capacity"]["modules"].sum() == 0
    assert no_money.objective >= plan.objective
    one = solve(tiny, max_open=1)
    assert one.tables["sites"].query("kind == 'dc'")["open"].sum() == 1
    three = solve(tiny, min_open=3)
    assert three.tables["sites"].query("kind == 'dc'")["open"].sum() == 3


def test_single_sourcing_and_service(tiny, optimum):
    two = solve(tiny, force_open=["DC_A", "DC_B"], single_source=True)
    per_zone = two.tables["flows"].query("leg == 'outbound'").groupby("destination_id")["origin_id"].nunique()
    assert (per_zone == 1).all()
    assert check_plan(tiny, two, single_source=True).empty
    fast = solve(tiny, service_days=0.6, service_share=1.0)
    assert fast.meta["service_overall"]["within_sla_share"] == pytest.approx(1.0)
    assert (fast.tables["service"]["within_sla_share"] >= 1 - 1e-9).all()
    assert fast.objective >= optimum.objective
    near = solve(tiny, max_distance_km=350.0)
    assert near.tables["flows"].query("leg == 'outbound'").merge(
        tiny.lanes, on=["origin_id", "destination_id"])["distance_km"].max() <= 350.0


def test_bad_options_name_the_problem(tiny):
    with pytest.raises(ValueError, match="DC_X"):
        network_design.build_model(network_design.prepare(tiny, NetworkDesignOptions(force_open=["DC_X"])))
    with pytest.raises(ValueError, match="DC_A"):
        network_design.build_model(network_design.prepare(tiny, NetworkDesignOptions(force_open=["DC_A"],
                                                                                     force_closed=["DC_A"])))
    with pytest.raises(ValueError, match="capacity_derate"):
        network_design.build_model(network_design.prepare(
            tiny, NetworkDesignOptions(capacity_derate={("DC_A", "pick"): 1.5})))


def test_derate_tightens_and_warm_start_reuses_a_plan(tiny, optimum):
    derated = solve(tiny, capacity_derate={("DC_A", "pick"): 0.3})
    assert derated.objective >= optimum.objective
    thr = derated.tables["site_throughput"].set_index(["site_id", "period"])["outbound_units"]
    limit = 10 * 40 * 16 * 7 * 0.3
    assert (thr.loc["DC_A"] <= limit + 1e-6).all()
    again = network_design.solve(tiny, warm_start=optimum, mip_gap=0.0)
    assert again.objective == pytest.approx(optimum.objective, rel=1e-9)


@pytest.mark.skipif("ortools-scip" not in solvers.available(), reason="OR-Tools (SCIP) backend not available")
def test_highs_and_ortools_agree(tiny, optimum):
    plan = network_design.solve(tiny, solver="ortools", mip_gap=0.0)
    assert plan.objective == pytest.approx(optimum.objective, rel=1e-6)


@pytest.mark.slow
def test_eu_fba_consolidation_within_one_percent_in_60s():
    inst = load_instance(bundled_instance_path("eu_fba"))
    t0 = time.perf_counter()
    plan = network_design.solve(inst, mip_gap=0.01, time_limit=55)
    seconds = time.perf_counter() - t0
    assert plan.has_solution and plan.gap is not None
    assert plan.gap <= 0.01, (plan.gap, plan.meta.get("phases"))
    assert seconds < 60, seconds
    assert check_plan(inst, plan).empty
    assert isinstance(plan.tables["flows"], pd.DataFrame) and len(plan.tables["flows"]) > 0


def test_absent_tables_are_handled(tiny):
    """No demand: every DC closes (cost = closing costs); no labour/expansions/supply/stock: still solves."""
    empty = tiny.replace(demand=tiny.demand.iloc[0:0])
    plan = solve(empty)
    assert plan.objective == pytest.approx(tiny.sites.loc[tiny.sites["status"] == "existing", "closing_cost"].sum())
    bare = tiny.replace(labor=tiny.labor.iloc[0:0], expansions=tiny.expansions.iloc[0:0],
                        supply=tiny.supply.iloc[0:0], inventory=tiny.inventory.iloc[0:0])
    plan = solve(bare)
    assert plan.tables["labor"].empty and plan.cost("labour_regular") == 0.0


def test_relax_restore_carries_lp_bases_to_a_variant(tiny):
    """Phases 1 and 2 of relax-and-restore keep their LP bases; a demand / cost variant restarted from them reaches
    the optimum of a cold direct solve of the variant, and the warm phases report how the basis was used."""
    sup = tiny.supply.copy()
    sup.loc[sup["product_id"] == "P_BULKY", "capacity"] = 1200.0  # aggregation not exact: product-level restore
    inst = tiny.replace(supply=sup)
    rr = NetworkDesignOptions(strategy="relax_restore")
    base = network_design.solve(inst, options=rr, mip_gap=1e-9)
    assert set(base.bases) == {"lp", "restore"}
    assert all(isinstance(b, solvers.Basis) for b in base.bases.values())
    assert base.meta["solve_seconds_total"] >= base.meta["phases"]["restore"]["solve_seconds"]
    demand = inst.demand.assign(quantity=inst.demand["quantity"] * 1.1)
    lanes = inst.lanes.assign(cost_per_unit=inst.lanes["cost_per_unit"] * 1.2)
    variant = inst.replace(demand=demand, lanes=lanes)
    truth = solve(variant, aggregate_products=False, strategy="direct")
    warm = network_design.solve(variant, options=rr, mip_gap=1e-9, warm_start=base)
    cold = network_design.solve(variant, options=rr, mip_gap=1e-9)
    assert warm.objective == pytest.approx(truth.objective, rel=1e-7)
    assert cold.objective == pytest.approx(truth.objective, rel=1e-7)
    phases = warm.meta["phases"]
    assert phases["lp_relaxation"]["basis_start"] == "same"  # same structure, new numbers
    assert phases["restore"]["basis_start"] in ("same", "mapped")
    assert cold.meta["phases"]["lp_relaxation"]["basis_start"] is None
    assert check_plan(variant, warm).empty
