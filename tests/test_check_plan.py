"""check_plan: solved plans pass; each kind of corruption is caught and located."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pandas as pd
import pytest

from engine.scenario import apply_scenario, scenario_from_dict
from formulations import capacity, network_design, redistribution
from formulations.capacity import peak_instance
from formulations.check import VIOLATION_COLUMNS, check_plan
from formulations.network_design import NetworkDesignOptions
from instances.instance import Instance
from instances.plan import Plan


@pytest.fixture(scope="module")
def solved(tiny) -> Plan:
    # DC_A and DC_B open, products kept apart: inbound and outbound flows per product
    plan = network_design.solve(tiny, options=NetworkDesignOptions(force_open=["DC_A", "DC_B"],
                                                                   aggregate_products=False), mip_gap=0.0)
    assert plan.status == "optimal"
    return plan


def corrupt(plan: Plan, **tables: pd.DataFrame) -> Plan:
    t = {k: v.copy() for k, v in plan.tables.items()}
    t.update(tables)
    return Plan(plan.decision, plan.status, plan.objective, plan.bound, plan.gap, t, dict(plan.meta))


def checks(violations: pd.DataFrame) -> set[str]:
    return set(violations["check"])


def test_solved_plan_passes_and_columns_are_declared(tiny, solved):
    v = check_plan(tiny, solved)
    assert v.empty
    assert tuple(v.columns) == VIOLATION_COLUMNS


def test_more_outbound_is_caught_as_demand_throughput_and_labour(tiny, solved):
    f = solved.tables["flows"].copy()
    i = f.index[(f["leg"] == "outbound") & (f["origin_id"] == "DC_A")][0]
    f.loc[i, "quantity"] += 500.0  # DC_A's stock on hand (9,000 / 900) covers it: no balance violation
    v = check_plan(tiny, corrupt(solved, flows=f))
    assert {"demand", "throughput", "labor_needed"} <= checks(v)
    assert "balance" not in checks(v)
    d = v[v["check"] == "demand"].iloc[0]
    assert (d["zone_id"], d["product_id"], int(d["period"])) == (f.loc[i, "destination_id"], f.loc[i, "product_id"],
                                                                  int(f.loc[i, "period"]))
    assert d["excess"] == pytest.approx(500.0)


def test_outbound_beyond_stock_and_receipts_breaks_the_balance(tiny, solved):
    f = solved.tables["flows"].copy()
    inbound = (f["leg"] == "inbound") & (f["destination_id"] == "DC_A") & (f["product_id"] == "P_SMALL")
    f.loc[inbound, "quantity"] = 0.0  # DC_A now ships P_SMALL from its 9,000 units of stock only
    v = check_plan(tiny, corrupt(solved, flows=f))
    b = v[v["check"] == "balance"]
    shipped = solved.tables["flows"].query("leg == 'outbound' and origin_id == 'DC_A' and product_id == 'P_SMALL'")
    cumulative = shipped.groupby("period")["quantity"].sum().cumsum()
    expected = cumulative[cumulative > 9000.0]
    assert len(expected) > 0
    assert set(zip(b["site_id"], b["product_id"])) == {("DC_A", "P_SMALL")}
    assert b.set_index("period")["value"].to_dict() == pytest.approx(expected.to_dict())
    assert np.allclose(b["limit"], 9000.0)


def test_flow_through_a_closed_site(tiny, solved):
    s = solved.tables["sites"].copy()
    s.loc[s["site_id"] == "DC_B", "open"] = False
    v = check_plan(tiny, corrupt(solved, sites=s))
    closed = v[v["check"] == "closed_site"]
    assert len(closed) and set(closed["site_id"]) == {"DC_B"}


def test_capacity_and_expansion(tiny, solved):
    cap = solved.tables["capacity"].copy()
    pick = (cap["site_id"] == "DC_A") & (cap["stage"] == "pick")
    cap.loc[pick, "total_count"] = 1.0  # 1 x 40 units/h x 16 h x 7 days = 4,480 units per week
    cap.loc[(cap["site_id"] == "DC_A") & (cap["stage"] == "pack"), "modules"] = 5  # max_modules is 2
    v = check_plan(tiny, corrupt(solved, capacity=cap))
    c = v[v["check"] == "capacity"]
    assert set(zip(c["site_id"], c["stage"])) == {("DC_A", "pick")}
    assert np.allclose(c["limit"], 4480.0)
    assert "expansion" in checks(v)


def test_labour_limits(tiny, solved):
    lab = solved.tables["labor"].copy()
    lab.loc[lab["site_id"] == "DC_A", "regular_hours"] = 5000.0  # 40 people x 40 h = 1,600 h per week
    lab.loc[lab["site_id"] == "DC_B", "overtime_hours"] = 250.0  # limit 200 h per week
    v = check_plan(tiny, corrupt(solved, labor=lab))
    assert {"labor_regular", "labor_overtime"} <= checks(v)
    r = v[v["check"] == "labor_regular"]
    assert np.allclose(r["limit"], 1600.0)


def test_supply_unknown_lane_negative_and_single_source(tiny, solved):
    f = solved.tables["flows"].copy()
    inbound = f.index[f["leg"] == "inbound"][0]
    f.loc[inbound, "quantity"] = 50_000.0  # supply is 40,000 per product and period
    extra = pd.DataFrame([{"origin_id": "PORT_HAM", "destination_id": "Z_BER", "product_id": "P_SMALL",
                           "period": 1, "quantity": 1.0, "leg": "outbound"},
                          {"origin_id": "DC_A", "destination_id": "Z_MUC", "product_id": "P_SMALL",
                           "period": 1, "quantity": -3.0, "leg": "outbound"}])
    v = check_plan(tiny, corrupt(solved, flows=pd.concat([f, extra], ignore_index=True)), single_source=True)
    assert {"supply", "unknown_lane", "negative"} <= checks(v)
    s = v[v["check"] == "supply"].iloc[0]
    assert s["site_id"] == "PORT_HAM" and s["limit"] == pytest.approx(40_000.0)
    # two DCs serve some zone in the solved plan only if single sourcing is violated
    out = solved.tables["flows"].query("leg == 'outbound' and quantity > 0")
    split = out.groupby("destination_id")["origin_id"].nunique().gt(1).any()
    assert ("single_source" in checks(check_plan(tiny, solved, single_source=True))) == split


def test_lane_capacity_and_transfers(tiny, solved):
    lanes = tiny.lanes.copy()
    lanes.loc[(lanes["origin_id"] == "DC_A") & (lanes["destination_id"] == "Z_BER"), "capacity"] = 100.0
    inst = tiny.replace(lanes=lanes)
    v = check_plan(inst, solved)
    lc = v[v["check"] == "lane_capacity"]
    served = solved.tables["flows"].query("origin_id == 'DC_A' and destination_id == 'Z_BER'")
    assert len(lc) == served["period"].nunique() > 0
    transfers = pd.DataFrame([{"origin_id": "DC_B", "destination_id": "DC_A", "product_id": "P_BULKY",
                               "quantity": 1e6, "trucks": 10, "transit_days": 1.0}])
    v = check_plan(tiny, corrupt(solved, transfers=transfers))
    assert "balance" in checks(v)


# -------------------------------------------------------------------------------------------------
# Redistribution on daily periods: transit offsets, backlog, trucks (hand-built plan on a tiny-derived instance)
# -------------------------------------------------------------------------------------------------
@functools.cache
def daily_tiny(days: int = 3) -> Instance:
    """tiny on daily periods: Z_HAM orders 100 P_SMALL a day and 10 P_BULKY on day 2; no port supply;
    DC_A holds 50 P_SMALL, DC_B 500 P_SMALL and 20 P_BULKY; a truck holds 1 m3 (or 24 t)."""
    from instances.instance import bundled_instance_path, load_instance

    tiny = load_instance(bundled_instance_path("tiny"))
    meta = copy.deepcopy(tiny.meta)
    meta["horizon"] = {"start": "2026-11-16", "periods": days, "period_days": 1}
    meta["defaults"] = {**meta.get("defaults", {}), "truck_capacity_m3": 1.0, "truck_capacity_kg": 24000.0}
    demand = pd.DataFrame([("Z_HAM", "P_SMALL", t, 100.0) for t in range(1, days + 1)]
                          + [("Z_HAM", "P_BULKY", 2, 10.0)], columns=["zone_id", "product_id", "period", "quantity"])
    inventory = pd.DataFrame([("DC_A", "P_SMALL", 50.0), ("DC_B", "P_SMALL", 500.0), ("DC_B", "P_BULKY", 20.0)],
                             columns=["site_id", "product_id", "on_hand"])
    return tiny.replace(meta=meta, demand=demand, inventory=inventory, supply=tiny.supply.iloc[0:0])


def hand_redistribution() -> Plan:
    """Feasible by hand. Day 1: DC_A ships its 50 P_SMALL (50 backlogged); one truck DC_B -> DC_A carries 230
    P_SMALL + 10 P_BULKY (0.96 m3; lane 1.02 days: arrives day 2). Day 2: DC_A ships 150 P_SMALL (the backlog
    and day 2) and 10 P_BULKY. Day 3: 80 shipped, 20 lost; DC_A's P_SMALL stock ends at 0."""
    flows = pd.DataFrame([("DC_A", "Z_HAM", "P_SMALL", 1, 50.0), ("DC_A", "Z_HAM", "P_SMALL", 2, 150.0),
                          ("DC_A", "Z_HAM", "P_BULKY", 2, 10.0), ("DC_A", "Z_HAM", "P_SMALL", 3, 80.0)],
                         columns=["origin_id", "destination_id", "product_id", "period", "quantity"])
    transfers = pd.DataFrame([("DC_B", "DC_A", "P_SMALL", 230.0, 0.46 / 0.96, 1.02, 1),
                              ("DC_B", "DC_A", "P_BULKY", 10.0, 0.5 / 0.96, 1.02, 1)],
                             columns=["origin_id", "destination_id", "product_id", "quantity", "trucks",
                                      "transit_days", "period"])
    throughput = pd.DataFrame([("DC_A", 1, 0.0, 50.0), ("DC_A", 2, 240.0, 160.0), ("DC_A", 3, 0.0, 80.0),
                               ("DC_B", 1, 0.0, 240.0), ("DC_B", 2, 0.0, 0.0), ("DC_B", 3, 0.0, 0.0)],
                              columns=["site_id", "period", "inbound_units", "outbound_units"])
    labor = pd.DataFrame([(s, t, 20.0, 0.0, 0.0) for s in ("DC_A", "DC_B") for t in (1, 2, 3)],
                         columns=["site_id", "period", "regular_hours", "overtime_hours", "temp_hours"])
    tables = {"flows": flows.assign(leg="outbound"), "transfers": transfers, "site_throughput": throughput,
              "labor": labor, "unmet": pd.DataFrame([("Z_HAM", "P_SMALL", 3, 20.0)],
                                                    columns=["zone_id", "product_id", "period", "quantity"])}
    meta = {"periods": [1, 2, 3], "period_days": 1.0, "params": {"allow_late": True}, "backlog_unit_periods": 50.0,
            "truckloads": [{"origin_id": "DC_B", "destination_id": "DC_A", "period": 1, "trucks": 1}]}
    return Plan("redistribution", "optimal", 0.0, tables=tables, meta=meta)


def edit(plan: Plan, table: str, where: dict, **values: float) -> Plan:
    """A copy of ``plan`` with ``values`` set on the rows of ``table`` matching ``where`` (exactly one row)."""
    out = copy.deepcopy(plan)
    t = out.tables[table]
    hit = np.logical_and.reduce([t[k] == v for k, v in where.items()])
    assert hit.sum() == 1, (table, where)
    for k, v in values.items():
        t.loc[hit, k] = v
    return out


def only(v: pd.DataFrame, check: str) -> pd.Series:
    assert set(v["check"]) == {check}, v.to_string()
    assert len(v) == 1, v.to_string()
    return v.iloc[0]


def test_hand_built_redistribution_plan_passes():
    v = check_plan(daily_tiny(), hand_redistribution())
    assert v.empty, v.to_string()


def test_stock_used_before_the_transfer_arrives():
    # DC_A ships 100 on day 1: the transfer dispatched on day 1 only arrives on day 2 (floor(1.02 / 1) = 1)
    plan = edit(hand_redistribution(), "flows", {"product_id": "P_SMALL", "period": 1}, quantity=100.0)
    plan = edit(plan, "flows", {"product_id": "P_SMALL", "period": 2}, quantity=100.0)
    plan = edit(plan, "site_throughput", {"site_id": "DC_A", "period": 1}, outbound_units=100.0)
    plan = edit(plan, "site_throughput", {"site_id": "DC_A", "period": 2}, outbound_units=110.0)
    plan.meta["backlog_unit_periods"] = 0.0
    r = only(check_plan(daily_tiny(), plan), "balance")
    assert (r["site_id"], r["product_id"], r["period"]) == ("DC_A", "P_SMALL", 1)
    assert (r["value"], r["limit"], r["excess"]) == pytest.approx((100.0, 50.0, 50.0))


def test_transfer_dispatched_later_arrives_after_the_stock_is_used():
    plan = hand_redistribution()
    plan.tables["transfers"]["period"] = 2  # arrives on day 3; DC_A ships on day 2 what it does not have yet
    v = check_plan(daily_tiny(), plan)
    b = v[v["check"] == "balance"].set_index(["site_id", "product_id", "period"])
    assert set(b.index) == {("DC_A", "P_SMALL", 2), ("DC_A", "P_BULKY", 2)}
    assert b.loc[("DC_A", "P_SMALL", 2), "excess"] == pytest.approx(200.0 - 50.0)
    assert b.loc[("DC_A", "P_BULKY", 2), "excess"] == pytest.approx(10.0)
    assert "throughput" in set(v["check"])  # the reported receipts are in the wrong period now


def test_transit_faster_than_the_lane():
    plan = hand_redistribution()
    plan.tables["transfers"].loc[0, "transit_days"] = 0.5
    r = only(check_plan(daily_tiny(), plan), "transit")
    assert (r["site_id"], r["zone_id"], r["product_id"], r["period"]) == ("DC_B", "DC_A", "P_SMALL", 1)
    assert (r["value"], r["limit"], r["excess"]) == pytest.approx((0.5, 1.02, 0.52))


def test_inventory_negative_by_one_unit():
    plan = edit(hand_redistribution(), "flows", {"product_id": "P_SMALL", "period": 3}, quantity=81.0)
    plan = edit(plan, "unmet", {"period": 3}, quantity=19.0)
    plan = edit(plan, "site_throughput", {"site_id": "DC_A", "period": 3}, outbound_units=81.0)
    r = only(check_plan(daily_tiny(), plan), "balance")
    assert (r["site_id"], r["product_id"], r["period"]) == ("DC_A", "P_SMALL", 3)
    assert (r["value"], r["limit"], r["excess"]) == pytest.approx((281.0, 280.0, 1.0))


def test_trucks_too_few_for_the_volume():
    # one more P_BULKY unit: 230 x 0.002 + 11 x 0.05 = 1.01 m3 in one 1 m3 truck
    plan = edit(hand_redistribution(), "transfers", {"product_id": "P_BULKY"}, quantity=11.0)
    plan = edit(plan, "site_throughput", {"site_id": "DC_A", "period": 2}, inbound_units=241.0)
    plan = edit(plan, "site_throughput", {"site_id": "DC_B", "period": 1}, outbound_units=241.0)
    r = only(check_plan(daily_tiny(), plan), "trucks")
    assert (r["site_id"], r["zone_id"], r["period"]) == ("DC_B", "DC_A", 1)
    assert (r["value"], r["limit"], r["excess"]) == pytest.approx((1.01, 1.0, 0.01))
    assert "volume" in r["message"]
    # the truck shares must add up to the whole trucks of meta["truckloads"]
    plan = hand_redistribution()
    plan.meta["truckloads"][0]["trucks"] = 2
    r = only(check_plan(daily_tiny(), plan), "trucks")
    assert (r["value"], r["limit"]) == pytest.approx((1.0, 2.0))


def test_late_delivery_beyond_the_horizon():
    # the 20 units reported lost are delivered on day 4 instead: outside the 3-day horizon
    plan = hand_redistribution()
    plan.tables["unmet"] = plan.tables["unmet"].iloc[0:0]
    late = pd.DataFrame([("DC_A", "Z_HAM", "P_SMALL", 4, 20.0, "outbound")], columns=plan.tables["flows"].columns)
    plan.tables["flows"] = pd.concat([plan.tables["flows"], late], ignore_index=True)
    v = check_plan(daily_tiny(), plan)
    assert set(v["check"]) == {"horizon", "demand"}, v.to_string()
    h, d = v[v["check"] == "horizon"].iloc[0], v[v["check"] == "demand"].iloc[0]
    assert (h["site_id"], h["zone_id"], h["product_id"], h["period"], h["excess"]) == (
        "DC_A", "Z_HAM", "P_SMALL", 4, pytest.approx(20.0))
    assert (d["zone_id"], d["product_id"], d["period"]) == ("Z_HAM", "P_SMALL", 3)
    assert (d["value"], d["limit"], d["excess"]) == pytest.approx((280.0, 300.0, -20.0))


def test_backlog_accepted_only_when_the_plan_allows_it_and_reported_right():
    plan = hand_redistribution()
    plan.meta["backlog_unit_periods"] = 0.0
    r = only(check_plan(daily_tiny(), plan), "backlog")
    assert (r["value"], r["limit"], r["excess"]) == pytest.approx((0.0, 50.0, -50.0))
    plan = hand_redistribution()
    plan.meta["params"]["allow_late"] = False
    d = check_plan(daily_tiny(), plan).set_index(["zone_id", "product_id", "period"])
    assert set(d["check"]) == {"demand"}
    assert d["excess"].to_dict() == pytest.approx({("Z_HAM", "P_SMALL", 1): -50.0, ("Z_HAM", "P_SMALL", 2): 50.0})
    # served ahead of the orders is caught with backlog too (day 1 serves 150 of its 100)
    plan = edit(hand_redistribution(), "flows", {"product_id": "P_SMALL", "period": 1}, quantity=150.0)
    v = check_plan(daily_tiny(), plan)
    ahead = v[(v["check"] == "demand") & (v["period"] == 1)].iloc[0]
    assert (ahead["value"], ahead["limit"], ahead["excess"]) == pytest.approx((150.0, 100.0, 50.0))


# -------------------------------------------------------------------------------------------------
# Capacity (peak) plans: processed units, extra hours, labour, shares
# -------------------------------------------------------------------------------------------------
HOURS_PER_UNIT = 1 / 150 + 1 / 60 + 1 / 40 + 1 / 50 + 1 / 150  # tiny's labour productivities: 0.075 h/unit


@functools.cache
def peak_daily() -> Instance:
    """daily_tiny with DC_A's pack station cut to 1 x 10 units/h x 8 h = 80 units/day."""
    inst = daily_tiny()
    res = inst.resources.copy()
    pack = (res["site_id"] == "DC_A") & (res["stage"] == "pack")
    res.loc[pack, ["count", "rate_per_hour", "hours_per_day"]] = [1.0, 10.0, 8.0]
    return inst.replace(resources=res)


def hand_capacity() -> Plan:
    """Feasible by hand: Z_HAM -> DC_A; orders 100, 110, 100; an extra shift of 3 h makes pack 1 x 10 x 11 = 110
    per day; processed 90, 110, 110 (backlog 10, 10, 0 within a 24 h SLA); labour 0.075 h per unit processed,
    day 2 with 1.25 h overtime and one temp's hour."""
    inst = peak_daily()
    res = inst.resources[inst.resources["site_id"].isin(["DC_A", "DC_B"]) & (inst.resources["stage"] != "storage")]
    capacity = pd.DataFrame({"site_id": res["site_id"], "stage": res["stage"], "base_count": res["count"],
                             "added_count": 0.0, "total_count": res["count"], "modules": 0.0, "capex": 0.0,
                             "extra_hours_per_day": np.where(res["site_id"] == "DC_A", 3.0, 0.0)})
    processed = {1: 90.0, 2: 110.0, 3: 110.0}
    throughput = pd.DataFrame([(s, t, q if s == "DC_A" else 0.0) for s in ("DC_A", "DC_B") for t, q in
                               processed.items()], columns=["site_id", "period", "outbound_units"])
    throughput["inbound_units"] = throughput["outbound_units"]
    labor = pd.DataFrame([("DC_A", 1, 6.75, 0.0, 0.0), ("DC_A", 2, 6.0, 1.25, 1.0), ("DC_A", 3, 8.25, 0.0, 0.0)]
                         + [("DC_B", t, 0.0, 0.0, 0.0) for t in (1, 2, 3)],
                         columns=["site_id", "period", "regular_hours", "overtime_hours", "temp_hours"])
    d = inst.demand
    flows = pd.DataFrame({"origin_id": "DC_A", "destination_id": d["zone_id"], "product_id": d["product_id"],
                          "period": d["period"], "quantity": d["quantity"], "leg": "outbound"})
    assignment = pd.DataFrame([("Z_HAM", "DC_A", t, q, 1.0) for t, q in ((1, 100.0), (2, 110.0), (3, 100.0))],
                              columns=["zone_id", "site_id", "period", "quantity", "share"])
    meta = {"days": 3, "params": {"sla_hours": 24.0, "temp_hours_per_day": 8.0, "max_temp_share": 0.5},
            "temps": {"DC_A": 1}, "sla_breach_unit_days": 0.0}
    tables = {"capacity": capacity.reset_index(drop=True), "site_throughput": throughput, "labor": labor,
              "flows": flows, "assignment": assignment}
    return Plan("capacity", "optimal", 0.0, tables=tables, meta=meta)


def test_hand_built_capacity_plan_passes():
    assert round(HOURS_PER_UNIT * 110.0, 9) == 8.25  # day 2 and 3's hours
    v = check_plan(peak_daily(), hand_capacity())
    assert v.empty, v.to_string()


def test_processed_one_percent_above_a_stage():
    plan = edit(hand_capacity(), "site_throughput", {"site_id": "DC_A", "period": 2}, inbound_units=111.1,
                outbound_units=111.1)
    plan = edit(plan, "site_throughput", {"site_id": "DC_A", "period": 3}, inbound_units=108.9, outbound_units=108.9)
    plan = edit(plan, "labor", {"site_id": "DC_A", "period": 2}, temp_hours=1.1)  # labour still covers it
    r = only(check_plan(peak_daily(), plan), "capacity")
    assert (r["site_id"], r["stage"], r["period"]) == ("DC_A", "pack", 2)
    assert (r["value"], r["limit"], r["excess"]) == pytest.approx((111.1, 110.0, 1.1))
    # without the extra shift pack does 80 a day: every day is over
    plan = hand_capacity()
    plan.tables["capacity"]["extra_hours_per_day"] = 0.0
    v = check_plan(peak_daily(), plan)
    assert set(v["check"]) == {"capacity"} and set(v["stage"]) == {"pack"}
    assert v.set_index("period")["excess"].to_dict() == pytest.approx({1: 10.0, 2: 30.0, 3: 30.0})


def test_labour_hours_short():
    plan = edit(hand_capacity(), "labor", {"site_id": "DC_A", "period": 2}, temp_hours=0.75)
    r = only(check_plan(peak_daily(), plan), "labor_needed")
    assert (r["site_id"], r["period"]) == ("DC_A", 2)
    assert (r["value"], r["limit"], r["excess"]) == pytest.approx((8.25, 8.0, 0.25))


def test_overtime_is_limited_per_week_and_temps_by_those_hired():
    # 50 h of overtime on days 1 and 2: each day below 200 h x 3/7 = 85.7 h, the week's 100 h above it
    plan = edit(hand_capacity(), "labor", {"site_id": "DC_A", "period": 1}, overtime_hours=50.0)
    plan = edit(plan, "labor", {"site_id": "DC_A", "period": 2}, overtime_hours=50.0)
    r = only(check_plan(peak_daily(), plan), "labor_overtime")
    assert (r["site_id"], r["period"]) == ("DC_A", 1)
    assert (r["value"], r["limit"]) == pytest.approx((100.0, 200.0 * 3 / 7))
    plan = hand_capacity()
    plan.meta["temps"] = {}
    r = only(check_plan(peak_daily(), plan), "labor_temp")
    assert (r["site_id"], r["period"], r["excess"]) == ("DC_A", 2, pytest.approx(1.0))


def test_shares_flows_backlog_and_modules():
    plan = edit(hand_capacity(), "assignment", {"period": 1}, share=0.9)
    v = check_plan(peak_daily(), plan)
    assert set(v["check"]) == {"assignment"}
    share = v[v["site_id"].isna()].iloc[0]
    flow = v[v["site_id"].notna()].iloc[0]
    assert (share["zone_id"], share["period"], share["excess"]) == ("Z_HAM", 1, pytest.approx(-0.1))
    assert (flow["site_id"], flow["zone_id"], flow["product_id"], flow["period"]) == ("DC_A", "Z_HAM", "P_SMALL", 1)
    assert (flow["value"], flow["limit"]) == pytest.approx((100.0, 90.0))
    # processing more than was ordered so far (day 1: 101 of 100; then 100 and 109, 310 in all)
    plan = hand_capacity()
    for day, units in ((1, 101.0), (2, 100.0), (3, 109.0)):
        plan = edit(plan, "site_throughput", {"site_id": "DC_A", "period": day}, inbound_units=units,
                    outbound_units=units)
    plan = edit(plan, "labor", {"site_id": "DC_A", "period": 1}, regular_hours=8.0)
    r = only(check_plan(peak_daily(), plan), "backlog")
    assert (r["site_id"], r["period"], r["excess"]) == ("DC_A", 1, pytest.approx(1.0))
    # modules beyond max_modules (DC_A pack: 2 modules of 2)
    plan = edit(hand_capacity(), "capacity", {"site_id": "DC_A", "stage": "pack"}, modules=3.0, added_count=6.0,
                total_count=7.0)
    r = only(check_plan(peak_daily(), plan), "expansion")
    assert (r["site_id"], r["stage"], r["value"], r["limit"]) == ("DC_A", "pack", 3.0, 2.0)
    # a plan claiming more installed stations than resources.csv has
    plan = edit(hand_capacity(), "capacity", {"site_id": "DC_B", "stage": "pick"}, base_count=9.0, total_count=9.0)
    r = only(check_plan(peak_daily(), plan), "expansion")
    assert (r["site_id"], r["stage"], r["value"], r["limit"]) == ("DC_B", "pick", 9.0, 8.0)


def test_a_capacity_plan_is_checked_on_its_daily_instance(tiny):
    with pytest.raises(ValueError, match="daily peak instance"):
        check_plan(tiny, hand_capacity())


def test_plan_tables_declare_and_default_the_new_columns(tmp_path):
    plan = hand_redistribution()
    plan.save(tmp_path / "full", parquet=False)
    assert Plan.load(tmp_path / "full").tables["transfers"]["period"].tolist() == [1, 1]
    old = copy.deepcopy(plan)
    old.tables["transfers"] = old.tables["transfers"].drop(columns="period")
    old.save(tmp_path / "old", parquet=False)
    loaded = Plan.load(tmp_path / "old")
    assert loaded.tables["transfers"]["period"].tolist() == [1, 1]
    assert check_plan(daily_tiny(), loaded).empty
    cap = hand_capacity()
    cap.tables["capacity"] = cap.tables["capacity"].drop(columns="extra_hours_per_day")
    cap.save(tmp_path / "cap", parquet=False)
    assert (Plan.load(tmp_path / "cap").tables["capacity"]["extra_hours_per_day"] == 0.0).all()


# -------------------------------------------------------------------------------------------------
# Real solved plans pass
# -------------------------------------------------------------------------------------------------
def close(inst: Instance, *mods: dict) -> Instance:
    return apply_scenario(inst, scenario_from_dict({"name": "check", "class": "tactical",
                                                    "decision": "redistribution", "modifications": list(mods)}))


def test_solved_redistribution_with_a_port_closure_passes(tiny):
    # weekly tiny, Hamburg closed in week 1
    weekly = close(tiny, {"close_port": "PORT_HAM", "periods": [1]})
    plan = redistribution.solve(weekly, mip_gap=0.0, time_limit=30)
    assert plan.status == "optimal"
    v = check_plan(weekly, plan)
    assert v.empty, v.to_string()
    # daily: Hamburg closed for three days, DC_A nearly empty and DC_B not reaching Berlin or Hamburg: DC_B's
    # stock is trucked to DC_A (arriving a day later), port receipts to DC_B arrive a day late, orders wait
    inst = daily_tiny(4)
    inv = pd.DataFrame([("DC_A", "P_SMALL", 100.0), ("DC_A", "P_BULKY", 10.0), ("DC_B", "P_SMALL", 4000.0),
                        ("DC_B", "P_BULKY", 400.0)], columns=["site_id", "product_id", "on_hand"])
    week1 = tiny.demand[tiny.demand["period"] == 1]
    demand = pd.concat([week1.assign(period=t, quantity=(week1["quantity"] / 7).round()) for t in range(1, 5)])
    supply = pd.concat([tiny.supply[tiny.supply["period"] == 1].assign(period=t, capacity=40000.0 / 7)
                        for t in range(1, 5)])
    meta = copy.deepcopy(tiny.meta)
    meta["horizon"] = {"start": "2026-11-16", "periods": 4, "period_days": 1}
    inst = inst.replace(meta=meta, inventory=inv, demand=demand.reset_index(drop=True),
                        supply=supply.reset_index(drop=True))
    inst = close(inst, {"close_port": "PORT_HAM", "periods": [1, 2, 3]},
                 {"close_lane": {"origin": "DC_B", "destination": "Z_BER"}},
                 {"close_lane": {"origin": "DC_B", "destination": "Z_HAM"}})
    plan = redistribution.solve(inst, mip_gap=0.0, time_limit=30)
    assert plan.status == "optimal"
    assert len(plan.tables["transfers"]) > 0 and plan.meta["backlog_unit_periods"] > 0
    assert sum(r["trucks"] for r in plan.meta["truckloads"]) >= 1
    v = check_plan(inst, plan)
    assert v.empty, v.to_string()


@pytest.mark.parametrize("multiplier", [1.0, 5.0])
def test_solved_capacity_plan_passes(tiny, multiplier):
    """tiny's two weeks as a daily peak; x5 demand uses temps, overtime, an extra shift and pays SLA breach."""
    inst = apply_scenario(tiny, scenario_from_dict({"name": "peak", "class": "tactical", "decision": "capacity",
                                                    "modifications": [{"demand_multiplier": multiplier}]}))
    plan = capacity.solve(inst, mip_gap=0.0, time_limit=30)
    assert plan.status == "optimal"
    if multiplier > 1:
        assert plan.meta["temps"] and plan.meta["extra_shifts"] and plan.meta["sla_breach_unit_days"] > 0
        assert (plan.tables["labor"]["overtime_hours"] > 0).any()
    v = check_plan(peak_instance(inst), plan)
    assert v.empty, v.to_string()
