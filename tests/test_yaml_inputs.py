"""One validation pattern for every YAML-shaped input: scenario, sweep spec, policy, ingestion mapping and
``instance.yaml`` are pydantic models whose errors are all reported at once as ``FILE: key.path: message``.

Each table lists bad inputs with the exact key path the finding must name and a piece of its message; every
bundled file of each kind still loads, with the same content as before.
"""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.cli import main
from engine.governance import PolicyError, load_policy, policy_from_dict
from engine.ingest.mapping import read_mapping
from engine.scenario import (
    OPTION_MODELS,
    ScenarioError,
    apply_scenario,
    load_scenario,
    scenario_from_dict,
)
from engine.sweep import SweepSpecError, load_sweep_spec, sweep_spec_from_dict
from instances.instance import bundled_instance_path, load_instance, validate_instance
from instances.validation import Finding, ValidationReport, key_path

ROOT = Path(__file__).resolve().parents[1]
TINY = bundled_instance_path("tiny")
MAPPING_B = ROOT / "instances" / "raw" / "wms_b" / "mapping.yaml"


def _findings(exc: Any) -> list[tuple[str, str]]:
    return [(f.column, f.message) for f in exc.findings]


def _has(findings: list[tuple[str, str]], key: str, needle: str) -> bool:
    return any(k == key and needle in m for k, m in findings)


def test_key_path_and_finding_format() -> None:
    assert key_path(("modifications", 0, "capacity", "stage")) == "modifications[0].capacity.stage"
    assert key_path(("vary", 2, "list", 1, "modifications", 0)) == "vary[2].list[1].modifications[0]"
    assert str(Finding("s.yaml", None, "options.min_open", "bad")) == "s.yaml: options.min_open: bad"
    assert str(Finding("sites.csv", 3, "lat", "bad")) == "sites.csv:3:lat: bad"  # tables keep FILE:ROW:COLUMN


# ---------------------------------------------------------------------------------------------------
# Scenario
# ---------------------------------------------------------------------------------------------------
SCENARIO_CASES = [
    ({"options": {"min_open": "two"}}, "options.min_open", "Input should be a valid integer, got 'two'"),
    ({"solver": {"time_limit": -5}}, "solver.time_limit", "Input should be greater than 0, got -5"),
    ({"solver": {"solver": "nosuch"}}, "solver.solver", "unknown solver 'nosuch'; registered solvers are"),
    ({"solver": {"mip_gap": 1.5}}, "solver.mip_gap", "Input should be less than 1"),
    ({"solver": {"threads": 0}}, "solver.threads", "greater than or equal to 1"),
    ({"options": {"min_opn": 2}}, "options.min_opn", "unknown key (allowed: aggregate_products, allow_unmet"),
    ({"options": {"min_open": 3, "max_open": 2}}, "options.min_open", "3 is above max_open 2"),
    ({"options": {"strategy": "fastest"}}, "options.strategy", "Input should be 'auto', 'direct' or 'relax_restore'"),
    ({"options": {"service_share": 2}}, "options.service_share", "less than or equal to 1, got 2"),
    ({"options": {"single_source": "yes"}}, "options.single_source", "Input should be a valid boolean"),
    ({"options": {"aggregate_products": "sometimes"}}, "options.aggregate_products", "must be true, false or 'relax'"),
    ({"decision": "capacity", "options": {"weekday_profile": [1, 1]}}, "options.weekday_profile",
     "at least 7 items"),
    ({"decision": "capacity", "options": {"spike_dates": ["2026-11-31"]}}, "options.spike_dates[0]",
     "not an ISO date (YYYY-MM-DD): '2026-11-31'"),
    ({"decision": "capacity", "options": {"module_cost": "rent"}}, "options.module_cost",
     "Input should be 'annualized' or 'capex'"),
    ({"decision": "redistribution", "options": {"single_source": True}}, "options.single_source",
     "unknown key (allowed: allow_late, allow_transfers"),
    ({"decision": "redistribution", "options": {"horizon_periods": 0}}, "options.horizon_periods",
     "greater than or equal to 1"),
    ({"class": "operational"}, "class", "Input should be 'strategic' or 'tactical'"),
    ({"name": None}, "name", "Input should be a valid string"),
    ({"colour": "red"}, "colour", "unknown key (allowed: baseline, class, decision, description"),
    ({"modifications": {"close_site": "DC_A"}}, "modifications", "Input should be a valid list"),
    ({"modifications": ["close DC_A"]}, "modifications[0]", "must be a mapping (keys: capacity"),
    ({"modifications": [{}]}, "modifications[0]", "needs exactly one of"),
    ({"modifications": [{"close_site": "DC_A", "region": "north"}]}, "modifications[0].region",
     "unknown key for close_site (allowed with it: ['periods'])"),
    ({"modifications": [{"demand_multiplier": 1.1, "periods": [0]}]}, "modifications[0].periods[0]",
     "greater than or equal to 1, got 0"),
    ({"modifications": [{"demand_multiplier": float("nan")}]}, "modifications[0].demand_multiplier",
     "finite number"),
    ({"modifications": [{"capacity": {"site": "DC_A", "stage": "pack"}}]}, "modifications[0].capacity",
     "needs multiplier or count"),
    ({"modifications": [{"capacity": {"site": "DC_A", "stage": "pack", "count": 0}}]},
     "modifications[0].capacity.count", "greater than 0"),
    ({"modifications": [{"rate": {"site": "DC_A", "stage": "pick", "count": 3, "multiplier": 1}}]},
     "modifications[0].rate.count", "unknown key (allowed: multiplier, site, stage)"),
    ({"modifications": [{"close_lane": {"origin": "DC_A"}}]}, "modifications[0].close_lane.destination",
     "missing required key"),
    ({"modifications": [{"sla": {"service_days": "two"}}]}, "modifications[0].sla.service_days",
     "Input should be a valid number"),
    ({"modifications": [{"force_open": None}]}, "modifications[0].force_open", "needs a value"),
]


@pytest.mark.parametrize(("over", "key", "needle"), SCENARIO_CASES)
def test_bad_scenario_is_located(over: dict, key: str, needle: str) -> None:
    data = {"name": "s", **over}
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data, "scenario.yaml")
    found = _findings(err.value)
    assert _has(found, key, needle), found
    assert f"scenario.yaml: {key}: " in str(err.value)


def test_scenario_reports_every_finding_at_once() -> None:
    data = {"name": "s", "class": "x", "options": {"min_open": "two"}, "solver": {"time_limit": -5},
            "modifications": [{"demand_multiplier": -1}, {"teleport": 1}]}
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(data, "s.yaml")
    assert sorted(k for k, _ in _findings(err.value)) == [
        "class", "modifications[0].demand_multiplier", "modifications[1].teleport", "options.min_open",
        "solver.time_limit"]
    assert str(err.value).count("\n") == 4


CHECK_AGAINST_CASES = [
    ({"force_open": ["DC_A", "DC_NOPE"]}, "modifications[0].force_open", "unknown site 'DC_NOPE'"),
    ({"force_closed": "PORT_HAM"}, "modifications[0].force_closed",
     "site 'PORT_HAM' is a port, expected one of ['dc', 'crossdock']"),
    ({"close_site": "DC_Z"}, "modifications[0].close_site", "unknown site 'DC_Z'"),
    ({"close_port": "DC_A"}, "modifications[0].close_port", "site 'DC_A' is a dc"),
    ({"capacity": {"site": "DC_Q", "stage": "pack", "multiplier": 2}}, "modifications[0].capacity.site",
     "unknown site 'DC_Q'"),
    ({"demand_multiplier": 2, "zone": ["Z_MARS"]}, "modifications[0].zone", "unknown zone(s) ['Z_MARS']"),
    ({"demand_multiplier": 2, "product": "SKU_X"}, "modifications[0].product", "unknown product(s) ['SKU_X']"),
    ({"demand_multiplier": 2, "family": "yachts"}, "modifications[0].family", "unknown product family ['yachts']"),
    ({"demand_multiplier": 2, "periods": [1, 3]}, "modifications[0].periods", "period 3 outside the horizon 1..2"),
    ({"close_lane": {"origin": "DC_A", "destination": "Z_XX"}}, "modifications[0].close_lane",
     "no lane DC_A -> Z_XX"),
]


@pytest.mark.parametrize(("mod", "key", "needle"), CHECK_AGAINST_CASES)
def test_scenario_check_against_instance_names_the_id(tiny, mod: dict, key: str, needle: str) -> None:
    s = scenario_from_dict({"name": "s", "modifications": [mod]}, "scenario.yaml")
    found = [(f.column, f.message) for f in s.check_against(tiny)]
    assert _has(found, key, needle), found
    with pytest.raises(ScenarioError, match="^" + re.escape(f"scenario.yaml: {key}: {needle}")):
        apply_scenario(tiny, s)


def test_check_against_reports_every_unknown_id_and_options(tiny) -> None:
    s = scenario_from_dict({"name": "s", "options": {"force_open": ["DC_Y"]},
                            "modifications": [{"force_open": ["DC_X"]}, {"close_site": "DC_W"}]}, "s.yaml")
    assert [str(f) for f in s.check_against(tiny)] == [
        "s.yaml: modifications[0].force_open: unknown site 'DC_X'",
        "s.yaml: modifications[1].close_site: unknown site 'DC_W'",
        "s.yaml: options.force_open: unknown site 'DC_Y'"]
    assert scenario_from_dict({"name": "ok", "modifications": [{"force_open": ["DC_A"]}]}).check_against(tiny) == []


def test_option_models_match_the_formulation_options() -> None:
    """Every typed scenario option is a field of its formulation's options (and every settable field is typed)."""
    from dataclasses import fields

    from formulations.capacity import CapacityOptions
    from formulations.network_design import NetworkDesignOptions
    from formulations.redistribution import RedistributionOptions

    internal = {"capacity_derate", "fixed_modules", "allowed_lanes", "labour_floor",  # set by the loop / restore
                "carry_share"}  # a table measured by the simulator (engine.simulator.carry_shares)
    for decision, cls in (("consolidation", NetworkDesignOptions), ("redistribution", RedistributionOptions),
                          ("capacity", CapacityOptions)):
        declared = {f.name for f in fields(cls)} - internal
        assert set(OPTION_MODELS[decision].model_fields) == declared, decision


def test_bad_scenario_file_exits_2_with_the_located_finding(tmp_path: Path, capsys) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(yaml.safe_dump({"name": "bad", "options": {"min_open": "two"}, "solver": {"time_limit": -5}}))
    assert main(["solve", "tiny", "--scenario", str(f), "--out", str(tmp_path / "out"), "--no-baseline"]) == 2
    err = capsys.readouterr().err
    assert f"{f}: options.min_open: Input should be a valid integer, got 'two'" in err
    assert f"{f}: solver.time_limit: Input should be greater than 0, got -5" in err


def test_bundled_scenarios_load_unchanged() -> None:
    files = sorted((ROOT / "instances").glob("*/scenarios/*.yaml"))
    assert len(files) >= 9
    for f in files:
        raw = yaml.safe_load(f.read_text())
        s = load_scenario(f)
        d = s.to_dict()
        assert d["modifications"] == (raw.get("modifications") or []), f
        assert d["options"] == (raw.get("options") or {}) and d["solver"] == (raw.get("solver") or {}), f
        assert (d["name"], d["class"], d["decision"]) == (raw["name"], raw["class"], raw["decision"]), f
        assert s.check_against(load_instance(f.parent.parent)) == [], f


# ---------------------------------------------------------------------------------------------------
# Sweep spec
# ---------------------------------------------------------------------------------------------------
def _spec(**over: Any) -> dict[str, Any]:
    spec = {"name": "t", "instance": "tiny", "seed": 1,
            "parameters": {"d": {"set": {"demand_multiplier": "$value"}, "values": [0.9, 1.1], "range": [0.5, 1.5]}},
            "vary": [{"grid": ["d"]}]}
    spec.update(over)
    return spec


SWEEP_CASES = [
    ({"seed": -1}, "seed", "greater than or equal to 0, got -1"),
    ({"seed": "7"}, "seed", "Input should be a valid integer, got '7'"),
    ({"instance": None}, "instance", "Input should be a valid string"),
    ({"warm_start": "yes"}, "warm_start", "Input should be a valid boolean, got 'yes'"),
    ({"solver": {"time_limit": 0}}, "solver.time_limit", "greater than 0, got 0"),
    ({"solver": {"gap": 0.1}}, "solver.gap", "unknown key (allowed: mip_gap, solver, threads, time_limit)"),
    ({"plan": {"max_rounds": "2"}}, "plan.max_rounds", "Input should be a valid integer, got '2'"),
    ({"plan": {"rounds": 2}}, "plan.rounds", "unknown key (allowed: max_rounds, replications, simulate)"),
    ({"parameters": {"x": {"set": {"demand_multiplier": 2}, "values": [1]}}}, "parameters.x.set",
     "must be a modification mapping containing $value"),
    ({"parameters": {"x": {"set": {"demand_multiplier": "$value"}, "range": [2, 1]}}}, "parameters.x.range",
     "low 2 is above high 1"),
    ({"parameters": {"x": {"set": {"demand_multiplier": "$value"}}}}, "parameters.x", "needs values or range"),
    ({"parameters": {"x": {"set": {"demand_multiplier": "$value"}, "values": []}}}, "parameters.x.values",
     "at least 1 item"),
    ({"parameters": {"x": {"set": {"demand_multiplierr": "$value"}, "values": [1]}}},
     "parameters.x.set.demand_multiplierr", "unknown key (allowed: capacity"),
    ({"parameters": {"x": {"set": {"cost": {"fuel": "$value"}}, "values": ["high"]}}}, "parameters.x.set.cost.fuel",
     "Input should be a valid number, got 'high'"),
    ({"vary": [{"grid": ["nope"]}]}, "vary[0].grid", "unknown parameter 'nope' (parameters: ['d'])"),
    ({"vary": [{"grid": ["d"], "list": [{"d": 1}]}]}, "vary[0]", "must be a one-key mapping"),
    ({"vary": [{"lhs": {"n": 0, "parameters": ["d"]}}]}, "vary[0].lhs.n", "greater than or equal to 1, got 0"),
    ({"vary": [{"random": {"n": 3, "parameters": ["zz"]}}]}, "vary[0].random.parameters", "unknown parameter 'zz'"),
    ({"vary": [{"list": [{"q": 1}]}]}, "vary[0].list[0].q", "unknown parameter (parameters: ['d'])"),
    ({"vary": [{"list": [{"modifications": [{"close_site": "DC_A", "periods": "all"}]}]}]},
     "vary[0].list[0].modifications[0].periods", "Input should be a valid list"),
]


@pytest.mark.parametrize(("over", "key", "needle"), SWEEP_CASES)
def test_bad_sweep_spec_is_located(over: dict, key: str, needle: str) -> None:
    with pytest.raises(SweepSpecError) as err:
        sweep_spec_from_dict(_spec(**over), "sweep.yaml")
    found = _findings(err.value)
    assert _has(found, key, needle), found


def test_bundled_sweep_specs_load_unchanged() -> None:
    files = sorted((ROOT / "instances").glob("*/sweeps/*.yaml")) + [ROOT / "tests" / "data" / "tiny_sweep.yaml"]
    sizes = {}
    for f in files:
        raw = yaml.safe_load(f.read_text())
        spec = load_sweep_spec(f)
        assert spec.raw == raw and spec.seed == raw["seed"] and spec.plan == raw["plan"], f
        assert {n: p.template for n, p in spec.parameters.items()} == \
            {n: p["set"] for n, p in raw["parameters"].items()}, f
        sizes[f.stem] = len(spec.points())
    assert sizes == {"benchmark": 200, "what_if": 40, "tiny_sweep": 7}


# ---------------------------------------------------------------------------------------------------
# Policy
# ---------------------------------------------------------------------------------------------------
POLICY_CASES = [
    ({"roles": {"r": {"scenario_classes": ["strategik"]}}}, "roles.r.scenario_classes[0]",
     "unknown value 'strategik' (allowed: ['strategic', 'tactical'] or '*')"),
    ({"roles": {"r": {"decisions": "pricing"}}}, "roles.r.decisions[0]", "unknown value 'pricing'"),
    ({"roles": {"r": {"instancez": ["*"]}}}, "roles.r.instancez", "unknown key (allowed: decisions, description"),
    ({"roles": {"r": {"max_runs": -1}}}, "roles.r.max_runs", "greater than or equal to 0, got -1"),
    ({"roles": {"r": {"max_runs": 2.5}}}, "roles.r.max_runs", "Input should be a valid integer"),
    ({"roles": {"r": {"instances": [["tiny"]]}}}, "roles.r.instances[0]", "Input should be a valid string"),
    ({"roles": ["planner"]}, "roles", "must be a mapping"),
    ({"roles": {"r": {}}, "users": {"u": ["nope"]}}, "users.u", "unknown role 'nope' (roles: ['r'])"),
    ({"roles": {"r": {}}, "users": {"u": {"role": "r"}}}, "users.u", "Input should be a valid list"),
    ({"roles": {"r": {}}, "default_roles": "boss"}, "default_roles", "unknown role 'boss'"),
    ({"rolez": {}}, "rolez", "unknown key (allowed: default_roles, description, roles, users)"),
]


@pytest.mark.parametrize(("data", "key", "needle"), POLICY_CASES)
def test_bad_policy_is_located(data: dict, key: str, needle: str) -> None:
    with pytest.raises(PolicyError) as err:
        policy_from_dict(data, "policy.yaml")
    found = _findings(err.value)
    assert _has(found, key, needle), found
    assert str(err.value).startswith(f"policy.yaml: {key}: ") or f"\npolicy.yaml: {key}: " in str(err.value)


def test_policy_reports_every_finding_at_once() -> None:
    data = {"roles": {"r": {"decisions": "pricing", "max_runs": "x"}}, "users": {"u": ["nope", "r"], "v": "zz"}}
    with pytest.raises(PolicyError) as err:
        policy_from_dict(data, "p.yaml")
    assert str(err.value).splitlines() == [
        "p.yaml: roles.r.decisions[0]: unknown value 'pricing' (allowed: ['consolidation', 'redistribution', "
        "'capacity'] or '*')",
        "p.yaml: roles.r.max_runs: Input should be a valid integer, got 'x'",
        "p.yaml: users.u: unknown role 'nope' (roles: ['r'])",
        "p.yaml: users.v: unknown role 'zz' (roles: ['r'])"]


def test_bundled_policy_loads_unchanged() -> None:
    f = ROOT / "instances" / "policy.yaml"
    raw = yaml.safe_load(f.read_text())
    p = load_policy(f)
    assert sorted(p.roles) == sorted(raw["roles"])
    for name, spec in raw["roles"].items():
        role = p.roles[name]
        assert (list(role.scenario_classes), list(role.decisions), list(role.instances), role.max_runs) == \
            (spec["scenario_classes"], spec["decisions"], spec["instances"], spec.get("max_runs")), name
    assert {u: list(r) for u, r in p.users.items()} == raw["users"] and list(p.default_roles) == []


# ---------------------------------------------------------------------------------------------------
# Ingestion mapping
# ---------------------------------------------------------------------------------------------------
def _mapping_errors(tmp_path: Path, edit) -> list[tuple[str, str]]:
    raw = yaml.safe_load(MAPPING_B.read_text())
    edit(raw)
    f = tmp_path / "mapping.yaml"
    f.write_text(yaml.safe_dump(raw, sort_keys=False))
    report = ValidationReport()
    read_mapping(f, report)
    assert all(x.file == str(f) and x.row is None for x in report.errors), report.format()
    return [(x.column, x.message) for x in report.errors]


def _set(path: tuple, value: Any):
    def edit(raw: dict) -> None:
        node = raw
        for p in path[:-1]:
            node = node[p]
        node[path[-1]] = value
    return edit


MAPPING_CASES = [
    (_set(("merge_tolerance",), -0.1), "merge_tolerance", "greater than or equal to 0"),
    (_set(("currency_rates",), {"GBP": 0}), "currency_rates.GBP", "greater than 0, got 0"),
    (_set(("site_timezones",), {"DC_X": "Europe/Venlo"}), "site_timezones.DC_X", "unknown time zone 'Europe/Venlo'"),
    (_set(("instance", "timezone"), "Mars/Olympus"), "instance.timezone", "unknown time zone 'Mars/Olympus'"),
    (_set(("instance", "horizon", "periods"), 0), "instance.horizon.periods", "greater than or equal to 1"),
    (_set(("instance", "defaults", "service_dayz"), 1), "instance.defaults.service_dayz", "unknown key"),
    (_set(("productivity", "walk_speed_m_per_min"), 0), "productivity.walk_speed_m_per_min", "greater than 0"),
    (_set(("productivity", "walk_sped"), 60), "productivity.walk_sped", "unknown key (allowed: extra_unit_share"),
    (_set(("sources",), []), "sources", "at least 1 item"),
    (_set(("sources", 0, "table"), "warehouses"), "sources[0].table", "unknown table 'warehouses'"),
    (_set(("sources", 0, "columns", "Latitude"), {"to": "lat", "parse": "float"}),
     "sources[0].columns.Latitude.parse", "Input should be 'date', 'datetime' or 'isoweek'"),
    (_set(("sources", 0, "columns", "Latitude"), {"to": "lat", "scale": 2}), "sources[0].columns.Latitude.scale",
     "unknown key (allowed: codes, currency, parse, to, unit, unit_column)"),
    (_set(("sources", 0, "columns", "Latitude"), "latitude"), "sources[0].columns.Latitude",
     "table 'sites' has no column 'latitude'"),
    (_set(("sources", 0, "columns", "Site"), {"to": "id", "codes": "sites"}), "sources[0].columns.Site.codes",
     "unknown code map 'sites'"),
    (_set(("sources", 0, "ignore"), ["(unclosed"]), "sources[0].ignore[0]", "invalid regular expression"),
    (_set(("sources", 1, "unpivot", "columns_from"), "kind"), "sources[1].unpivot.columns_from",
     "'kind' is not a group of the pattern"),
    (_set(("sources", 0, "aggregate"), {"lat": "median"}), "sources[0].aggregate.lat",
     "Input should be 'sum', 'first', 'last', 'max' or 'mean'"),
    (_set(("sources", 0, "set"), {"colour": "red"}), "sources[0].set.colour", "table 'sites' has no column 'colour'"),
]


@pytest.mark.parametrize(("edit", "key", "needle"), MAPPING_CASES)
def test_bad_mapping_is_located(tmp_path: Path, edit, key: str, needle: str) -> None:
    found = _mapping_errors(tmp_path, edit)
    assert _has(found, key, needle), found


def test_bundled_mappings_load_unchanged() -> None:
    for f in sorted((ROOT / "instances" / "raw").glob("*/mapping.yaml")):
        raw = yaml.safe_load(f.read_text())
        report = ValidationReport()
        m = read_mapping(f, report)
        assert m is not None and report.findings == [], report.format()
        assert m.instance == raw["instance"] and len(m.sources) == len(raw["sources"])
        assert [s.file for s in m.sources] == [s["file"] for s in raw["sources"]]
        assert m.codes == {k: {str(a): str(b) for a, b in v.items()} for k, v in raw.get("codes", {}).items()}


# ---------------------------------------------------------------------------------------------------
# instance.yaml
# ---------------------------------------------------------------------------------------------------
META_CASES = [
    (_set(("name",), None), "name", "Input should be a valid string"),
    (lambda m: m.pop("horizon"), "horizon", "missing required key"),
    (_set(("horizon", "periods"), "two"), "horizon.periods", "Input should be a valid integer, got 'two'"),
    (_set(("horizon", "period_days"), 400), "horizon.period_days", "less than or equal to 366"),
    (_set(("horizon", "start"), "2026-02-30"), "horizon.start", "not a date (YYYY-MM-DD): '2026-02-30'"),
    (_set(("horizon", "length"), 3), "horizon.length", "unknown key (allowed: period_days, periods, start)"),
    (_set(("rate_card", "road_factor"), -1), "rate_card.road_factor", "greater than 0, got -1"),
    (_set(("rate_card", "max_lanes_per_zone"), 2.5), "rate_card.max_lanes_per_zone", "valid integer"),
    (_set(("rate_card", "modes"), {}), "rate_card.modes", "at least 1 item"),
    (_set(("rate_card", "modes", "road", "km_per_day"), 0), "rate_card.modes.road.km_per_day", "greater than 0"),
    (_set(("defaults", "unmet_demand_penalty"), "high"), "defaults.unmet_demand_penalty",
     "Input should be a valid number, got 'high'"),
    (_set(("defaults", "unmet_penalty"), 5), "defaults.unmet_penalty", "unknown key (allowed: capex_life_years"),
    (_set(("periods",), [{"period": 1, "days": 7}, {"period": 3, "days": 7}]), "periods[1].period",
     "must be 2 (periods are numbered 1, 2, ...), got 3"),
    (_set(("colour",), "red"), "colour", "unknown key (allowed: calibration, currency, defaults"),
]


@pytest.mark.parametrize(("edit", "key", "needle"), META_CASES)
def test_bad_instance_yaml_is_located(tmp_path: Path, edit, key: str, needle: str) -> None:
    folder = tmp_path / "tiny"
    shutil.copytree(TINY, folder)
    meta = yaml.safe_load((folder / "instance.yaml").read_text())
    edit(meta)
    (folder / "instance.yaml").write_text(yaml.safe_dump(meta))
    inst, report = validate_instance(folder)
    assert inst is None
    found = [(f.column, f.message) for f in report.errors if f.file == "instance.yaml"]
    assert _has(found, key, needle), found
    assert f"instance.yaml: {key}: " in report.format()


def test_bundled_instances_meta_loads_unchanged() -> None:
    for name in ("tiny", "eu_fba", "us_west_port"):
        path = bundled_instance_path(name)
        inst, report = validate_instance(path)
        assert inst is not None and report.findings == []
        assert inst.meta == yaml.safe_load((path / "instance.yaml").read_text())


def test_saved_run_instance_with_twinplan_keys_loads(tmp_path: Path, tiny) -> None:
    """Keys twinplan writes itself (applied scenario, daily peak) are part of the declared model."""
    s = load_scenario("peak", TINY)
    applied = apply_scenario(tiny, s)
    meta = copy.deepcopy(applied.meta)
    meta["peak"] = {"source_periods": [2]}
    applied.replace(meta=meta).save(tmp_path / "run")
    assert load_instance(tmp_path / "run").meta["scenario"]["name"] == "peak"
