"""check_plan: solved plans pass; each kind of corruption is caught and located."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from formulations.check import VIOLATION_COLUMNS, check_plan
from formulations.network_design import NetworkDesignOptions, solve_network_design
from formulations.plan import Plan


@pytest.fixture(scope="module")
def solved(tiny) -> Plan:
    # DC_A and DC_B open, products kept apart: inbound and outbound flows per product
    plan = solve_network_design(tiny, options=NetworkDesignOptions(force_open=["DC_A", "DC_B"],
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


def test_redistribution_plan_is_checked_too(tiny):
    redistribution = pytest.importorskip("formulations.redistribution")
    plan = redistribution.solve_redistribution(tiny)
    if not plan.has_solution:
        pytest.skip(f"redistribution returned {plan.status}")
    v = check_plan(tiny, plan)
    assert v.empty, v.to_string()
