"""Redistribution MILP: brute-forced optimum, properties, solver agreement, plain-pandas plan checks."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linprog

import solvers
from formulations import redistribution
from formulations.check import check_plan
from formulations.redistribution import RedistributionOptions, build_model, prepare, warm_start_from
from instances.instance import Instance, bundled_instance_path, coerce_table, load_instance
from instances.plan import Plan
from instances.schema import TABLES
from instances.validation import ValidationReport

SOLVE = {"time_limit": 30.0, "mip_gap": 0.0}


def make_instance(meta: dict[str, Any], **rows: list[dict[str, Any]]) -> Instance:
    """An Instance from row dicts (every schema table present, typed, defaults filled)."""
    tables = {}
    for name, schema in TABLES.items():
        df = pd.DataFrame(rows.get(name, []), columns=None if rows.get(name) else schema.column_names)
        report = ValidationReport()
        tables[name] = coerce_table(df.astype(object), schema, report, schema.file_name)
        assert report.ok, report.format()
    return Instance(meta, tables)


# -------------------------------------------------------------------------------------------------
# A two-DC case whose optimum is found by enumerating the truck count
# -------------------------------------------------------------------------------------------------
# DC_A holds all stock; zone Z is next to DC_B. Serve Z directly from A (expensive, 1 day late), or transfer
# to B by truck (fixed cost per truck; P1 fills a truck by volume, P2 by weight) and deliver from B, or
# buy P1 at the port for B, or lose the sale. A's labour (4 regular h + 2 overtime h) limits what A ships.
VOL = {"P1": 1.0, "P2": 0.2}
KG = {"P1": 10.0, "P2": 100.0}
STOCK_A = {"P1": 5.0, "P2": 4.0}
DEMAND = {"P1": 4.0, "P2": 3.0}
CAP_M3, CAP_KG, TRUCK = 3.0, 300.0, 4.0
C_AZ, C_BZ, C_AB, C_PB = 3.0, 0.5, 0.2, 2.5
PORT_P1 = 2.0
LOST, LATE_DAY, HANDLING = 10.0, 1.5, 0.1
RATE, OT_RATE = 2.0, 3.0
# labour stages at DC_A: 1 h per unit shipped (pick 0.25 + pack 0.25 + outbound dock 0.5)
H_SHIP = 1 / 4 + 1 / 4 + 1 / 2


def two_dc_instance(stock_a: dict[str, float] = STOCK_A, truck_fixed: float = TRUCK,
                    scale: float = 1.0) -> Instance:
    meta = {"name": "two_dc", "currency": "EUR", "horizon": {"start": "2026-11-16", "periods": 1, "period_days": 7},
            "defaults": {"service_days": 1.0, "unmet_demand_penalty": LOST * scale,
                         "handling_cost_per_unit": HANDLING * scale, "truck_capacity_m3": CAP_M3,
                         "truck_capacity_kg": CAP_KG, "truck_fixed_cost": truck_fixed * scale}}
    site = {"lat": 50.0, "lon": 10.0}
    sites = [{"id": "PORT", "name": "port", "kind": "port", **site},
             {"id": "DC_A", "name": "A", "kind": "dc", **site}, {"id": "DC_B", "name": "B", "kind": "dc", **site}]
    lanes = [
        {"origin_id": "DC_A", "destination_id": "Z", "cost_per_unit": C_AZ * scale, "transit_days": 2.0},
        {"origin_id": "DC_B", "destination_id": "Z", "cost_per_unit": C_BZ * scale, "transit_days": 0.5},
        {"origin_id": "DC_A", "destination_id": "DC_B", "cost_per_unit": C_AB * scale, "transit_days": 0.5},
        {"origin_id": "PORT", "destination_id": "DC_B", "cost_per_unit": C_PB * scale, "transit_days": 1.0},
    ]
    resources = [{"site_id": s, "stage": st, "count": 10.0, "rate_per_hour": 100.0}
                 for s in ("DC_A", "DC_B") for st in ("inbound_dock", "putaway", "pick", "pack", "outbound_dock")]
    labor = [{"site_id": "DC_A", "hourly_rate": RATE * scale, "max_headcount": 1.0, "overtime_rate": OT_RATE * scale,
              "max_overtime_hours": 2.0, "hours_per_person_week": 4.0, "productivity_inbound_dock": 1.0,
              "productivity_putaway": 1.0, "productivity_pick": 4.0, "productivity_pack": 4.0,
              "productivity_outbound_dock": 2.0}]
    return make_instance(
        meta, sites=sites, lanes=lanes, resources=resources, labor=labor,
        zones=[{"id": "Z", "lat": 50.0, "lon": 10.0}],
        products=[{"id": p, "unit_weight_kg": KG[p], "unit_volume_m3": VOL[p]} for p in ("P1", "P2")],
        demand=[{"zone_id": "Z", "product_id": p, "period": 1, "quantity": q} for p, q in DEMAND.items()],
        inventory=[{"site_id": "DC_A", "product_id": p, "on_hand": q} for p, q in stock_a.items()],
        supply=[{"site_id": "PORT", "product_id": "P1", "period": 1, "capacity": PORT_P1}],
    )


def brute_force_two_dc(stock_a: dict[str, float] = STOCK_A, truck_fixed: float = TRUCK) -> float:
    """min over truck counts k of (k x truck cost + the LP of the rest), the LP written out by hand.

    x = [yA1, yA2, yB1, yB2, t1, t2, r, lost1, lost2, regular, overtime]
    """
    late = LATE_DAY * (2.0 - 1.0)  # A -> Z is one day slower than the service promise
    c = np.array([C_AZ + HANDLING + late] * 2 + [C_BZ + HANDLING] * 2 + [C_AB + HANDLING] * 2 + [C_PB]
                 + [LOST] * 2 + [RATE, OT_RATE])
    a_eq = np.array([[1, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0],  # demand P1
                     [0, 1, 0, 1, 0, 0, 0, 0, 1, 0, 0]])  # demand P2
    b_eq = np.array([DEMAND["P1"], DEMAND["P2"]])
    best = math.inf
    for k in range(0, 6):
        a_ub = np.array([
            [1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0],  # stock A, P1
            [0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0],  # stock A, P2
            [0, 0, 1, 0, -1, 0, -1, 0, 0, 0, 0],  # stock B, P1: transfers in + port
            [0, 0, 0, 1, 0, -1, 0, 0, 0, 0, 0],  # stock B, P2
            [0, 0, 0, 0, VOL["P1"], VOL["P2"], 0, 0, 0, 0, 0],  # truck volume
            [0, 0, 0, 0, KG["P1"], KG["P2"], 0, 0, 0, 0, 0],  # truck weight
            [H_SHIP] * 2 + [0, 0] + [H_SHIP] * 2 + [0, 0, 0, -1, -1],  # labour at A
        ])
        b_ub = np.array([stock_a["P1"], stock_a["P2"], 0, 0, CAP_M3 * k, CAP_KG * k, 0])
        bounds = [(0, None)] * 6 + [(0, PORT_P1)] + [(0, None)] * 2 + [(0, 4.0), (0, 2.0)]
        lp = linprog(c, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        assert lp.status == 0
        best = min(best, lp.fun + k * truck_fixed)
    return best


def check_redistribution(instance: Instance, plan: Plan) -> None:
    """Independent re-check of a solved redistribution plan in plain pandas (and by :func:`check_plan`)."""
    assert plan.has_solution
    violations = check_plan(instance, plan)
    assert violations.empty, violations.to_string()
    p = plan.meta["params"]
    products = instance.products.set_index("id")
    # costs add up to the objective
    assert plan.cost() == pytest.approx(plan.objective, rel=1e-6, abs=1e-6)
    # truckloads: integer, within volume and weight; transfer rows share them exactly
    loads = pd.DataFrame(plan.meta["truckloads"])
    tr = plan.tables["transfers"]
    if not tr.empty:
        assert (loads["trucks"] == loads["trucks"].round()).all()
        assert (loads["volume_m3"] <= loads["trucks"] * p["truck_capacity_m3"] + 1e-6).all()
        assert (loads["weight_kg"] <= loads["trucks"] * p["truck_capacity_kg"] + 1e-6).all()
        vol = tr["quantity"] * tr["product_id"].map(products["unit_volume_m3"])
        kg = tr["quantity"] * tr["product_id"].map(products["unit_weight_kg"])
        key = ["origin_id", "destination_id", "period"]
        agg = tr.assign(vol=vol, kg=kg).groupby(key)[["vol", "kg", "trucks"]].sum()
        ref = loads.set_index(key).reindex(agg.index)
        np.testing.assert_allclose(agg["trucks"], ref["trucks"], atol=1e-6)
        np.testing.assert_allclose(agg["vol"], ref["volume_m3"], atol=1e-6)
        np.testing.assert_allclose(agg["kg"], ref["weight_kg"], atol=1e-6)
    # inventory: what leaves a DC never exceeds its stock plus what has arrived by then
    flows = plan.tables["flows"]
    days = float(instance.periods["days"].iloc[0])
    periods = plan.meta["periods"]
    out = pd.concat([flows[flows["leg"] == "outbound"][["origin_id", "product_id", "period", "quantity"]],
                     tr[["origin_id", "product_id", "period", "quantity"]]])
    inbound = flows[flows["leg"] == "inbound"].merge(
        instance.lanes[["origin_id", "destination_id", "transit_days"]], on=["origin_id", "destination_id"])
    tr_in = tr.assign(origin_id=tr["destination_id"])
    arr = pd.concat([inbound.assign(site=inbound["destination_id"]), tr_in.assign(site=tr_in["destination_id"])])
    arr["period"] = arr["period"] + np.floor(arr["transit_days"] / days + 1e-9).astype(int)
    stock = instance.inventory.set_index(["site_id", "product_id"])["on_hand"]
    for (site, prod), on_hand in stock.items():
        for t in periods:
            shipped = out[(out["origin_id"] == site) & (out["product_id"] == prod) & (out["period"] <= t)]
            got = arr[(arr["site"] == site) & (arr["product_id"] == prod) & (arr["period"] <= t)]
            assert shipped["quantity"].sum() <= on_hand + got["quantity"].sum() + 1e-6, (site, prod, t)
    # demand over the horizon: delivered + lost = demand (backlog ends at zero)
    dem = instance.demand[instance.demand["period"].isin(periods)].groupby(["zone_id", "product_id"])["quantity"].sum()
    served = flows[flows["leg"] == "outbound"].groupby(["destination_id", "product_id"])["quantity"].sum()
    lost = plan.tables["unmet"].groupby(["zone_id", "product_id"])["quantity"].sum()
    total = served.rename_axis(["zone_id", "product_id"]).reindex(dem.index, fill_value=0.0) + lost.reindex(
        dem.index, fill_value=0.0)
    np.testing.assert_allclose(total.to_numpy(), dem.to_numpy(), atol=1e-6)
    # port supply
    sup = instance.supply.set_index(["site_id", "product_id", "period"])["capacity"]
    got = flows[flows["leg"] == "inbound"].groupby(["origin_id", "product_id", "period"])["quantity"].sum()
    assert (got <= sup.reindex(got.index, fill_value=0.0) + 1e-6).all()


OPTS = RedistributionOptions(late_penalty_per_unit_day=LATE_DAY)


@pytest.fixture(scope="module")
def two_dc_plan() -> Plan:
    return redistribution.solve(two_dc_instance(), options=OPTS, **SOLVE)


def test_two_dc_matches_brute_force(two_dc_plan):
    plan = two_dc_plan
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(brute_force_two_dc(), rel=1e-7)
    assert len(plan.tables["transfers"]) > 0  # the optimum does move stock
    check_redistribution(two_dc_instance(), plan)
    assert check_plan(two_dc_instance(), plan).empty


def test_two_dc_brute_force_dear_trucks():
    """Dear trucks: ship direct (late) or lose the sale rather than transfer."""
    inst = two_dc_instance(truck_fixed=40.0)
    plan = redistribution.solve(inst, options=OPTS, **SOLVE)
    assert plan.objective == pytest.approx(brute_force_two_dc(truck_fixed=40.0), rel=1e-7)
    assert plan.tables["transfers"].empty
    check_redistribution(inst, plan)


def test_without_transfers_equals_the_no_truck_brute_force():
    """allow_transfers=False: no transfer or truck variable at all; the optimum is the brute force at 0 trucks."""
    plan = redistribution.solve(two_dc_instance(), options=RedistributionOptions(
        late_penalty_per_unit_day=LATE_DAY, allow_transfers=False), **SOLVE)
    assert plan.objective == pytest.approx(brute_force_two_dc(truck_fixed=1e9), rel=1e-7)
    assert plan.tables["transfers"].empty and plan.meta["truckloads"] == []
    check_redistribution(two_dc_instance(), plan)


def test_doubling_every_cost_doubles_the_objective(two_dc_plan):
    double = redistribution.solve(two_dc_instance(scale=2.0),
                                  options=RedistributionOptions(late_penalty_per_unit_day=2 * LATE_DAY), **SOLVE)
    assert double.objective == pytest.approx(2 * two_dc_plan.objective, rel=1e-7)
    check_redistribution(two_dc_instance(scale=2.0), double)


def test_smaller_trucks_never_cost_less(two_dc_plan):
    small = redistribution.solve(two_dc_instance(), options=RedistributionOptions(
        late_penalty_per_unit_day=LATE_DAY, truck_capacity_m3=CAP_M3 / 2, truck_capacity_kg=CAP_KG / 2), **SOLVE)
    assert small.objective >= two_dc_plan.objective - 1e-6
    check_redistribution(two_dc_instance(), small)


def test_deltas_against_a_baseline_instance(two_dc_plan):
    """Less stock at DC_A (the disruption) against the full stock (the baseline, solved here)."""
    short = two_dc_instance(stock_a={"P1": 2.0, "P2": 1.0})
    plan = redistribution.solve(short, baseline=two_dc_instance(), options=OPTS, **SOLVE)
    check_redistribution(short, plan)
    assert plan.objective == pytest.approx(brute_force_two_dc(stock_a={"P1": 2.0, "P2": 1.0}), rel=1e-7)
    d = plan.meta["deltas"]
    assert d["total_cost"]["baseline"] == pytest.approx(two_dc_plan.objective, rel=1e-9)
    assert d["total_cost"]["delta"] == pytest.approx(plan.objective - two_dc_plan.objective, rel=1e-9)
    assert d["total_cost"]["delta"] >= -1e-6  # less stock never lowers the cost
    lost = plan.tables["unmet"]["quantity"].sum()
    assert d["lost_units"]["disrupted"] == pytest.approx(lost)
    assert d["fill_rate"]["disrupted"] == pytest.approx(1 - lost / sum(DEMAND.values()))
    hours = plan.tables["labor"][["regular_hours", "overtime_hours"]].to_numpy().sum()
    base_hours = two_dc_plan.tables["labor"][["regular_hours", "overtime_hours"]].to_numpy().sum()
    assert d["labor_hours"]["delta"] == pytest.approx(hours - base_hours, abs=1e-9)
    sites = pd.DataFrame(plan.meta["site_deltas"]).set_index("site_id")
    assert sites["labor_hours_delta"].sum() == pytest.approx(d["labor_hours"]["delta"], abs=1e-9)


# -------------------------------------------------------------------------------------------------
# tiny: a stock-out with the undisrupted plan as baseline
# -------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny() -> Instance:
    return load_instance(bundled_instance_path("tiny"))


def stock_out_at_b(inst: Instance) -> Instance:
    """DC_B (Munich) has no stock and the port delivers nothing in period 1."""
    inv = inst.inventory.copy()
    inv.loc[inv["site_id"] == "DC_B", "on_hand"] = 0.0
    sup = inst.supply.copy()
    sup.loc[sup["period"] == 1, "capacity"] = 0.0
    return inst.replace(inventory=inv, supply=sup)


@pytest.fixture(scope="module")
def tiny_base(tiny) -> Plan:
    return redistribution.solve(tiny, **SOLVE)


@pytest.fixture(scope="module")
def disrupted_plan(tiny, tiny_base):
    return redistribution.solve(stock_out_at_b(tiny), baseline=tiny_base, **SOLVE)


def test_tiny_disruption_plan_is_consistent(tiny, tiny_base, disrupted_plan):
    plan, inst = disrupted_plan, stock_out_at_b(tiny)
    assert plan.status == "optimal"
    check_redistribution(inst, plan)
    check_redistribution(tiny, tiny_base)
    assert check_plan(inst, plan).empty
    assert check_plan(tiny, tiny_base).empty
    d = plan.meta["deltas"]
    assert d["total_cost"]["delta"] == pytest.approx(plan.objective - tiny_base.objective, rel=1e-9)
    assert d["total_cost"]["delta"] >= -1e-6
    assert d["transport_cost"]["delta"] == pytest.approx(
        sum(plan.cost(c) - tiny_base.cost(c) for c in ("transport_outbound", "transport_inbound", "transfer_units",
                                                        "transfer_trucks")), abs=1e-6)


def test_less_equipment_never_costs_less(tiny, disrupted_plan):
    inst = stock_out_at_b(tiny)
    res = inst.resources.copy()
    res["count"] *= 0.5
    halved = redistribution.solve(inst.replace(resources=res), **SOLVE)
    assert halved.objective >= disrupted_plan.objective - 1e-6
    check_redistribution(inst.replace(resources=res), halved)


def test_closing_a_site_never_lowers_the_cost(tiny, tiny_base):
    closed = redistribution.solve(tiny, options=RedistributionOptions(closed_sites=("DC_B",)), **SOLVE)
    assert closed.objective >= tiny_base.objective - 1e-6
    assert not (closed.tables["flows"][["origin_id", "destination_id"]] == "DC_B").any().any()
    assert not bool(closed.tables["sites"].set_index("site_id").loc["DC_B", "open"])
    assert check_plan(tiny, closed).empty


def test_no_late_delivery_allowed_means_no_backlog(tiny):
    plan = redistribution.solve(stock_out_at_b(tiny), options=RedistributionOptions(allow_late=False), **SOLVE)
    assert plan.meta["backlog_unit_periods"] == 0.0
    check_redistribution(stock_out_at_b(tiny), plan)


@pytest.mark.skipif("ortools-scip" not in solvers.available(), reason="OR-Tools SCIP not available")
def test_highs_and_ortools_agree(tiny, disrupted_plan):
    b = redistribution.solve(stock_out_at_b(tiny), solver="ortools", **SOLVE)
    assert b.status == "optimal"
    assert b.objective == pytest.approx(disrupted_plan.objective, rel=1e-6)
    c = redistribution.solve(two_dc_instance(), solver="ortools", options=OPTS, **SOLVE)
    check_redistribution(stock_out_at_b(tiny), b)
    check_redistribution(two_dc_instance(), c)
    assert c.objective == pytest.approx(brute_force_two_dc(), rel=1e-6)


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="truck_capacity_m3"):
        redistribution.solve(two_dc_instance(), options=RedistributionOptions(truck_capacity_m3=0.0))
    with pytest.raises(ValueError, match="horizon_periods"):
        redistribution.solve(two_dc_instance(), options=RedistributionOptions(horizon_periods=0))


def test_plan_round_trips_through_save_and_load(tmp_path, disrupted_plan):
    loaded = Plan.load(disrupted_plan.save(tmp_path / "plan"))
    assert loaded.objective == pytest.approx(disrupted_plan.objective)
    assert loaded.cost() == pytest.approx(disrupted_plan.cost())


def test_warm_start_from_a_plan_is_complete_feasible_and_costs_the_plan(tiny, disrupted_plan):
    """The start built from a plan sets every column, meets every row and bound, and its cost is the plan's."""
    inst = stock_out_at_b(tiny)
    data = prepare(inst, RedistributionOptions())
    model = build_model(data)
    form = solvers.to_standard_form(model)
    x = solvers.warm_start_vector(form, warm_start_from(data, model, disrupted_plan))
    assert not np.isnan(x).any()
    assert (x >= form.col_lower - 1e-9).all() and (x <= form.col_upper + 1e-9).all()
    assert (x[form.integrality != 0] == np.round(x[form.integrality != 0])).all()
    rows = form.A @ x
    assert (rows >= form.row_lower - 1e-6).all() and (rows <= form.row_upper + 1e-6).all()
    assert float(form.objective @ x) + form.objective_constant == pytest.approx(disrupted_plan.objective, rel=1e-9)
    # the very same model again: the plan is reused without a solve, tables and all
    again = redistribution.solve(inst, warm_start=disrupted_plan, **SOLVE)
    check_redistribution(inst, again)
    assert again.meta["strategy"] == "reused" and again.meta["warm_start"]["used"]
    assert again.meta["model_fingerprint"] == disrupted_plan.meta["model_fingerprint"]
    assert again.objective == pytest.approx(disrupted_plan.objective, rel=1e-12)
    assert again.bound == disrupted_plan.bound and again.status == disrupted_plan.status
    pd.testing.assert_frame_equal(again.tables["flows"], disrupted_plan.tables["flows"])
    pd.testing.assert_frame_equal(again.tables["transfers"], disrupted_plan.tables["transfers"])


def test_warm_start_passed_when_still_feasible(two_dc_plan):
    """A derate that does not bind changes the model (new fingerprint) but not the optimum: the previous
    plan is a feasible start, handed to the solver in full."""
    opts = RedistributionOptions(late_penalty_per_unit_day=LATE_DAY, capacity_derate={("DC_B", "pick"): 0.5})
    warm = redistribution.solve(two_dc_instance(), options=opts, warm_start=two_dc_plan, **SOLVE)
    check_redistribution(two_dc_instance(), warm)
    assert warm.meta["model_fingerprint"] != two_dc_plan.meta["model_fingerprint"]
    assert warm.meta["warm_start"] == {"from": "plan", "feasible": True, "used": True, "reason": None}
    assert warm.meta["warm_start_entries"] == warm.meta["variables"]
    assert warm.meta["strategy"] == "direct"
    assert warm.objective == pytest.approx(two_dc_plan.objective, rel=1e-9)


def test_warm_started_repair_round_matches_the_cold_solve(two_dc_plan):
    """A derated re-solve (what a repair round does) from the previous plan reaches the cold optimum."""
    opts = RedistributionOptions(late_penalty_per_unit_day=LATE_DAY, capacity_derate={("DC_A", "pick"): 0.0})
    cold = redistribution.solve(two_dc_instance(), options=opts, **SOLVE)
    warm = redistribution.solve(two_dc_instance(), options=opts, warm_start=two_dc_plan, **SOLVE)
    # the previous plan ships from DC_A, which this round forbids: the start is not passed (no repair LP)
    note = warm.meta["warm_start"]
    assert not note["feasible"] and not note["used"] and "stage_capacity_outbound" in note["reason"], note
    assert warm.meta["warm_start_entries"] == 0
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)
    # DC_A can ship nothing: B delivers the port's 2 units of P1 (port + lane + handling), the rest is lost
    assert cold.objective == pytest.approx(PORT_P1 * (C_PB + C_BZ + HANDLING) + (sum(DEMAND.values()) - PORT_P1) * LOST)
    check_redistribution(two_dc_instance(), warm)
    check_redistribution(two_dc_instance(), cold)
    with pytest.raises(TypeError, match="warm_start"):
        redistribution.solve(two_dc_instance(), options=opts, warm_start=42, **SOLVE)


@pytest.mark.parametrize("gap", [1.0, 0.0])
def test_relax_and_round_brackets_the_brute_forced_optimum(monkeypatch, gap):
    """LP relaxation + trucks rounded up: a valid plan whose cost and bound bracket the optimum; with gap 0
    the MILP finishes from the rounded plan and reaches the optimum."""
    monkeypatch.setattr(redistribution, "RELAX_ROUND_MIN_COLUMNS", 0)
    best = brute_force_two_dc()
    plan = redistribution.solve(two_dc_instance(), options=OPTS, time_limit=30.0, mip_gap=gap)
    assert plan.meta["strategy"] == ("relax_round" if gap == 1.0 else "relax_round+milp")
    assert plan.bound <= best + 1e-6 <= plan.objective + 2e-6
    assert plan.gap <= gap + 1e-12
    if gap == 0.0:
        assert plan.objective == pytest.approx(best, rel=1e-7)
    check_redistribution(two_dc_instance(), plan)
    assert check_plan(two_dc_instance(), plan).empty


def _us_west_port() -> Instance | None:
    try:
        return load_instance(bundled_instance_path("us_west_port"))
    except FileNotFoundError:
        return None


@pytest.mark.slow
@pytest.mark.skipif(_us_west_port() is None, reason="bundled us_west_port not generated yet")
def test_us_west_port_closure_solves_to_one_percent_in_60s():
    inst = _us_west_port()
    sup = inst.supply.copy()
    first = sup["period"] <= 14 if float(inst.periods["days"].iloc[0]) == 1.0 else sup["period"] <= 2
    sup.loc[(sup["site_id"] == "PORT_LALB") & first, "capacity"] = 0.0
    plan = redistribution.solve(inst.replace(supply=sup), time_limit=60.0, mip_gap=0.01)
    assert plan.has_solution and plan.gap <= 0.01 + 1e-9, (plan.status, plan.gap)
    assert plan.meta["solve_seconds"] <= 65.0  # the solve (translate + HiGHS) within the 60 s limit
    check_redistribution(inst.replace(supply=sup), plan)
