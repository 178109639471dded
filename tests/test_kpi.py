"""Each KPI against a value computed by hand on the bundled ``tiny`` instance."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd
import pytest

from engine import load_instance
from engine.kpi import compute_kpis, executive_summary, kpi_deltas, labour_stress, lsi_band
from instances.instance import bundled_instance_path
from instances.plan import Plan


@pytest.fixture(scope="module")
def tiny():
    return load_instance(bundled_instance_path("tiny"))


def hand_plan() -> Plan:
    """Period 1 only: DC_A ships 1000 to Z_BER and 500 to Z_HAM; DC_B ships 300 to Z_MUC; 200 units short."""
    flows = pd.DataFrame({
        "origin_id": ["DC_A", "DC_A", "DC_B"], "destination_id": ["Z_BER", "Z_HAM", "Z_MUC"],
        "product_id": ["P_SMALL"] * 3, "period": [1, 1, 1], "quantity": [1000.0, 500.0, 300.0],
        "leg": ["outbound"] * 3,
    })
    costs = pd.DataFrame({"component": ["fixed", "opening", "transport", "handling", "labour_regular",
                                        "labour_overtime", "capex_annualized", "unmet_penalty"],
                          "amount": [750000.0, 100000.0, 1200.0, 180.0, 5000.0, 600.0, 10000.0, 8000.0]})
    labor = pd.DataFrame({"site_id": ["DC_A", "DC_B", "DC_A"], "period": [1, 1, 2],
                          "regular_hours": [100.0, 50.0, 120.0], "overtime_hours": [10.0, 0.0, 5.0],
                          "temp_hours": [0.0, 4.0, 0.0]})
    capacity = pd.DataFrame({"site_id": ["DC_C"], "stage": ["pack"], "base_count": [9.6], "added_count": [4.0],
                             "total_count": [13.6], "modules": [1], "capex": [80000.0]})
    sites = pd.DataFrame({"site_id": ["DC_A", "DC_B", "DC_C"], "kind": ["dc"] * 3,
                          "status": ["existing", "existing", "candidate"], "open": [1, 1, 1],
                          "opened": [0, 0, 1], "closed": [0, 0, 0]})
    unmet = pd.DataFrame({"zone_id": ["Z_FRA"], "product_id": ["P_SMALL"], "period": [1], "quantity": [200.0]})
    tp = pd.DataFrame({"site_id": ["DC_A", "DC_B"], "period": [1, 1], "inbound_units": [0.0, 0.0],
                       "outbound_units": [1500.0, 300.0]})
    return Plan("consolidation", "optimal", objective=775_000.0,
                tables={"flows": flows, "costs": costs, "labor": labor, "capacity": capacity, "sites": sites,
                        "unmet": unmet, "site_throughput": tp})


def fake_simulation():
    """Simulation tables with hand-chosen values (the KPI layer only reads these tables)."""
    site = pd.DataFrame({"site_id": ["DC_A", "DC_B"], "cycle_time_p50_h": [10.0, 4.0],
                         "cycle_time_p95_h": [20.0, 30.0], "within_sla_share": [0.9, 1.0],
                         "binding_stage": ["pack", "pick"]})
    sp = pd.DataFrame({"site_id": ["DC_A", "DC_A", "DC_B"], "stage": ["pack", "pack", "pick"],
                       "period": [1, 2, 1], "utilisation": [0.5, 0.9, 0.4]})
    daily = pd.DataFrame({"site_id": ["DC_A", "DC_A", "DC_A", "DC_B"], "day": [0, 0, 1, 0],
                          "stage": ["pick", "pack", "pick", "pick"],
                          "labour_hours_needed": [40.0, 50.0, 60.0, 10.0],
                          "labour_hours_staffed": [50.0, 50.0, 50.0, 20.0]})
    verdict = SimpleNamespace(feasible=True)
    return SimpleNamespace(site=site, stage_period=sp, daily=daily, verdict=verdict)


def test_costs_investment_labour(tiny):
    k = compute_kpis(tiny, hand_plan())
    assert k["total_cost"] == pytest.approx(874_980.0)
    assert k["cost_fixed"] == pytest.approx(850_000.0)
    assert k["cost_transport"] == pytest.approx(1200.0)
    assert k["cost_labour"] == pytest.approx(5600.0)
    assert k["cost_capex"] == pytest.approx(10_000.0)
    assert k["cost_penalty"] == pytest.approx(8000.0)
    # capex 80,000 of the module + DC_C's opening cost 100,000
    assert k["investment"] == pytest.approx(180_000.0)
    assert k["labour_hours"] == pytest.approx(100 + 10 + 50 + 4 + 120 + 5)
    assert k["open_sites"] == 3


def test_delivery_time_and_distance(tiny):
    k = compute_kpis(tiny, hand_plan())
    # lanes: DC_A->Z_BER 0.52 d / 311.6 km, DC_A->Z_HAM 0.28 d / 165.5 km, DC_B->Z_MUC 0.0 d / 0.0 km
    assert k["avg_delivery_days"] == pytest.approx((1000 * 0.52 + 500 * 0.28 + 300 * 0.0) / 1800)
    assert k["avg_distance_km"] == pytest.approx((1000 * 311.6 + 500 * 165.5) / 1800)
    # 95th percentile by units: the top 5 % (90 units) lie on the 0.52-day lane
    assert k["p95_delivery_days"] == pytest.approx(0.52)


def test_fill_rate_service_and_cycle_time(tiny):
    k = compute_kpis(tiny, hand_plan(), fake_simulation())
    demand = tiny.demand["quantity"].sum()
    assert k["fill_rate"] == pytest.approx(1 - 200 / demand)
    # throughput-weighted: DC_A 1500 units, DC_B 300 units
    assert k["cycle_time_p50_h"] == pytest.approx((1500 * 10 + 300 * 4) / 1800)
    assert k["cycle_time_p95_h"] == pytest.approx(30.0)
    assert k["within_sla_share"] == pytest.approx((1500 * 0.9 + 300 * 1.0) / 1800)
    assert k["service_level"] == pytest.approx((1 - 200 / demand) * (1500 * 0.9 + 300) / 1800)
    assert k["max_utilisation"] == pytest.approx(0.7)


def test_labour_stress_index():
    lsi = labour_stress(fake_simulation()).set_index(["site_id", "day"])
    assert lsi.loc[("DC_A", 0), "lsi"] == pytest.approx(90 / 100)
    assert lsi.loc[("DC_A", 1), "lsi"] == pytest.approx(60 / 50)
    assert lsi.loc[("DC_B", 0), "lsi"] == pytest.approx(0.5)
    assert list(lsi["band"]) == ["stretched", "critical", "comfortable"]
    assert lsi_band(1.05) == "overload"
    k = compute_kpis(load_instance(bundled_instance_path("tiny")), hand_plan(), fake_simulation())
    assert k["max_labour_stress"] == pytest.approx(1.2)
    assert k["stress_days"] == 1


def test_deltas_and_summary(tiny):
    base = compute_kpis(tiny, hand_plan())
    scen = dict(base, total_cost=base["total_cost"] - 250_000.0, labour_hours=base["labour_hours"] - 10)
    d = kpi_deltas(scen, base)
    assert d["total_cost"]["delta"] == pytest.approx(-250_000.0)
    assert d["labour_hours"]["delta"] == pytest.approx(-10.0)
    text = executive_summary(scen, base, "EUR", "consolidate", "baseline")
    assert "total cost: EUR 250.0 k less" in text
    assert "labour hours: 10.0 h less" in text
    # whole hours from 100 h on (349,217.9 h was printed with its tenth); a tenth below, for cycle times
    big = dict(base, labour_hours=base["labour_hours"] + 349_217.9)
    assert "labour hours: 349,218 h more" in executive_summary(big, base, "EUR", "peak", "baseline")
    edge = dict(base, labour_hours=base["labour_hours"] + 99.94)
    assert "labour hours: 99.9 h more" in executive_summary(edge, base, "EUR", "peak", "baseline")
