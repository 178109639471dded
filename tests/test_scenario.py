"""Scenarios: modifications applied to a new Instance, the base untouched, bad files named clearly."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml

from engine import load_instance
from engine.scenario import ScenarioError, apply_scenario, load_scenario, scenario_from_dict
from instances.instance import bundled_instance_path


@pytest.fixture(scope="module")
def tiny():
    return load_instance(bundled_instance_path("tiny"))


def sc(*mods, **kw):
    return scenario_from_dict({"name": "t", "class": "tactical", "decision": "consolidation",
                               "modifications": list(mods), **kw})


def test_demand_multiplier_filters_and_base_untouched(tiny):
    before = tiny.demand.copy()
    out = apply_scenario(tiny, sc({"demand_multiplier": 2.0, "region": "north", "periods": [2]}))
    pd.testing.assert_frame_equal(tiny.demand, before)
    d, b = out.demand, before
    north = b["zone_id"].isin(["Z_BER", "Z_HAM"]) & (b["period"] == 2)
    assert (d.loc[north, "quantity"] == 2 * b.loc[north, "quantity"]).all()
    assert (d.loc[~north, "quantity"] == b.loc[~north, "quantity"]).all()
    # north zones in period 2: (3600 + 1800) * 1.5 * 1.1 units
    assert d["quantity"].sum() - b["quantity"].sum() == pytest.approx((3600 + 1800) * 1.5 * 1.1)


def test_close_port_costs_capacity_and_decisions(tiny):
    out = apply_scenario(tiny, sc({"close_port": "PORT_HAM", "periods": [1]},
                                  {"cost": {"fuel": 1.5, "wages": 2.0}},
                                  {"capacity": {"site": "DC_A", "stage": "pack", "multiplier": 0.5}},
                                  {"rate": {"site": "*", "stage": "pick", "multiplier": 1.25}},
                                  {"force_closed": ["DC_B"]}, {"force_open": "DC_C"}, {"capex_budget": 1e5},
                                  {"sla": {"service_days": 2, "order_to_ship_sla_hours": 12}}))
    s = out.supply
    assert (s.loc[s["period"] == 1, "capacity"] == 0).all()
    assert (s.loc[s["period"] == 2, "capacity"] == 40000).all()
    assert out.lanes["cost_per_unit"].sum() == pytest.approx(1.5 * tiny.lanes["cost_per_unit"].sum())
    assert out.labor["hourly_rate"].tolist() == [44.0, 40.0, 42.0]
    r = out.resources.set_index(["site_id", "stage"])
    assert r.loc[("DC_A", "pack"), "count"] == 4.0
    assert r.loc[("DC_B", "pick"), "rate_per_hour"] == 50.0
    assert out.labor.set_index("site_id").loc["DC_C", "productivity_pick"] == 50.0
    meta = out.meta["scenario"]
    assert meta["force_closed"] == ["DC_B"] and meta["force_open"] == ["DC_C"] and meta["capex_budget"] == 1e5
    assert out.defaults["order_to_ship_sla_hours"] == 12.0 and out.defaults["service_days"] == 2.0
    assert "scenario" not in tiny.meta


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ({"name": "x", "colour": "red"}, "colour: unknown key"),
        ({"name": "x", "class": "operational"}, "class: Input should be 'strategic' or 'tactical', got 'operational'"),
        ({"name": "x", "decision": "pricing"},
         "decision: Input should be 'consolidation', 'redistribution' or 'capacity'"),
        ({"name": "x", "modifications": [{"demand_multiplier": -1}]},
         "modifications[0].demand_multiplier: Input should be greater than or equal to 0"),
        ({"name": "x", "modifications": [{"demand_multiplier": "lots"}]},
         "modifications[0].demand_multiplier: Input should be a valid number, got 'lots'"),
        ({"name": "x", "modifications": [{"teleport": 1}]},
         "modifications[0].teleport: unknown key (allowed: capacity, capex_budget"),
        ({"name": "x", "modifications": [{"capacity": {"site": "DC_A", "stage": "dance", "multiplier": 1}}]},
         "modifications[0].capacity.stage: Input should be 'inbound_dock'"),
        ({"name": "x", "modifications": [{"cost": {"gold": 2}}]},
         "modifications[0].cost.gold: unknown key (allowed: capex, fixed, fuel"),
        ({"name": "x", "modifications": [{"sla": {"service_share": 1.5}}]},
         "modifications[0].sla.service_share: Input should be less than or equal to 1"),
        ({"name": "x", "solver": {"speed": "fast"}}, "solver.speed: unknown key"),
    ],
)
def test_structural_errors_name_the_key(tmp_path, data, needle):
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(ScenarioError) as err:
        load_scenario(f)
    assert str(f) in str(err.value) and needle in str(err.value)


@pytest.mark.parametrize(
    ("mod", "needle"),
    [
        ({"close_site": "DC_Z"}, "modifications[0].close_site: unknown site 'DC_Z'"),
        ({"close_port": "DC_A"}, "site 'DC_A' is a dc"),
        ({"force_open": ["NOPE"]}, "modifications[0].force_open: unknown site 'NOPE'"),
        ({"demand_multiplier": 1.1, "region": "mars"}, "modifications[0].region: no zone has region"),
        ({"demand_multiplier": 1.1, "periods": [9]}, "period 9 outside the horizon 1..2"),
        ({"close_lane": {"origin": "DC_A", "destination": "Z_XX"}}, "no lane DC_A -> Z_XX"),
    ],
)
def test_unknown_ids_and_impossible_values(tmp_path, tiny, mod, needle):
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump({"name": "s", "modifications": [mod]}))
    with pytest.raises(ScenarioError) as err:
        apply_scenario(tiny, load_scenario(f))
    assert str(f) in str(err.value) and needle in str(err.value)


def test_forced_open_and_closed_conflict(tiny):
    with pytest.raises(ScenarioError, match="both forced open and closed"):
        apply_scenario(tiny, sc({"force_open": ["DC_A"]}, {"force_closed": ["DC_A"]}))


def test_invalid_yaml_and_missing_scenario(tmp_path):
    f = tmp_path / "broken.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match="not valid YAML"):
        load_scenario(f)
    with pytest.raises(ScenarioError, match="no such scenario"):
        load_scenario("does_not_exist", bundled_instance_path("tiny"))


def test_with_modifications_makes_variants():
    base = sc({"demand_multiplier": 1.1})
    v = base.with_modifications([{"cost": {"fuel": 1.2}}], name="v1")
    assert v.name == "v1" and len(v.modifications) == 2 and len(base.modifications) == 1
    with pytest.raises(ScenarioError):
        base.with_modifications([{"cost": {"fuel": "x"}}])
