"""The optimize -> check -> simulate -> repair loop and the CLI that runs it, end to end on ``tiny``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from engine import load_instance
from engine.pipeline import plan
from engine.scenario import load_scenario
from engine.simulator import DEFAULT_WEEKDAY
from formulations.check import check_plan
from instances.instance import bundled_instance_path, empty_table
from instances.schema import TABLES

TINY = bundled_instance_path("tiny")


@pytest.fixture(scope="module")
def tiny():
    return load_instance(TINY)


def pack_bound_instance(tiny):
    """``tiny`` without labour limits or expansions, DC_A's pack stage cut to 1.2 stations (960 units/day).

    DC_A is the cheapest DC for the northern zones, whose demand (5,940 and 8,910 units a week) exceeds
    DC_A's weekly pack capacity (6,720 units): the aggregate MILP fills DC_A's pack stage to exactly 100 %
    of its weekly capacity, which is feasible week by week. Hour by hour it is not: with zero slack, the
    Monday surge (1.15 / 7 of the week's orders, 1,104 units against 960 a day) and the evening peak
    build a queue that a 12-hour order-to-ship SLA cannot absorb.
    """
    res = tiny.resources.copy()
    res.loc[(res["site_id"] == "DC_A") & (res["stage"] == "pack"), "count"] = 1.2
    return tiny.replace(resources=res, labor=empty_table(TABLES["labor"]), expansions=empty_table(TABLES["expansions"]))


def test_repair_loop_turns_an_unexecutable_plan_into_an_executable_one(tiny):
    inst = pack_bound_instance(tiny)
    daily_capacity = 1.2 * 50.0 * 16.0
    monday = DEFAULT_WEEKDAY[0] / sum(DEFAULT_WEEKDAY) * 7 * daily_capacity
    assert monday == pytest.approx(1104.0) and monday > daily_capacity

    # today's network (DC_A and DC_B open, DC_C closed) with a 12 h order-to-ship promise
    scenario = load_scenario("baseline", TINY).with_modifications([{"sla": {"order_to_ship_sla_hours": 12}}])
    result = plan(inst, scenario, time_limit=30, mip_gap=0.0, max_rounds=5, replications=8, seed=3)
    first, last = result.rounds[0], result.rounds[-1]
    # round 1: the MILP's plan uses DC_A's pack stage at 100 % of its capacity and fails hour by hour
    assert first["simulation_feasible"] is False
    assert (first["failed_site"], first["failed_stage"]) == ("DC_A", "pack")
    assert first["shortfall_units_per_day"] > 0
    assert "equipment binds" in first["change"] and "planned load 960 units/day" in first["change"]
    # the final plan passes the simulator; executability costs money, never saves it
    assert result.simulation_feasible and last["outcome"] == "plan executable"
    assert len(result.rounds) >= 2
    assert result.objective >= first["objective"] - 1e-6
    assert last["derate"]["DC_A/pack"] < 1.0
    # the repaired plan sends less through DC_A's pack stage than its nominal capacity, and no more than
    # the derated capacity
    tp = result.plan.site_throughput
    out_a = tp[tp["site_id"] == "DC_A"]["outbound_units"].max()
    limit = 7 * daily_capacity * last["derate"]["DC_A/pack"]
    assert out_a <= limit * (1 + 1e-6) < 7 * daily_capacity  # to the solver's feasibility tolerance
    assert check_plan(result.instance, result.plan).empty


def test_staffing_bound_plan_is_repaired_with_labour_hours(tiny):
    result = plan(tiny, None, time_limit=30, mip_gap=0.0, max_rounds=5, replications=8, seed=0)
    changes = [r.get("change", "") for r in result.rounds]
    assert result.rounds[0]["simulation_feasible"] is False
    assert any("staffing binds" in c for c in changes)
    assert result.simulation_feasible
    # more labour hours were planned in the end than in round 1's plan
    assert result.kpis["labour_hours"] > 0 and result.objective > result.rounds[0]["objective"]
    assert result.violations.empty and all(r["violations"] == 0 for r in result.rounds)


@pytest.fixture(autouse=True)
def run_store(tmp_path, monkeypatch):
    """Every CLI run in these tests records into a store of its own (never the working directory)."""
    store = tmp_path / "runs.duckdb"
    monkeypatch.setenv("TWINPLAN_STORE", str(store))
    monkeypatch.delenv("TWINPLAN_POLICY", raising=False)
    return store


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          cwd=cwd, timeout=600)


@pytest.mark.parametrize("scenario", ["consolidate", "port_closure", "peak"])
def test_cli_solve_end_to_end(tmp_path, scenario):
    out = tmp_path / scenario
    p = run_cli("solve", str(TINY), "--scenario", scenario, "--out", str(out), "--json", "--replications", "4")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert set(d) >= {"status", "objective", "kpis", "simulation", "rounds"}
    assert d["status"] == "optimal" and d["objective"] > 0
    assert "feasible" in d["simulation"] and len(d["rounds"]) >= 1
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["total_cost"] == pytest.approx(d["kpis"]["total_cost"])
    # the cost breakdown adds up and nothing is left unclassified
    parts = sum(kpis[f"cost_{c}"] for c in ("fixed", "transport", "handling", "labour", "capex", "penalty"))
    assert parts == pytest.approx(kpis["total_cost"], rel=1e-9) and kpis["cost_other"] == 0
    for f in ("plan/flows.csv", "plan/flows.parquet", "plan/costs.csv", "plan/plan.json", "loop.json",
              "solver.log", "result.json", "simulation/stage_period.csv"):
        assert (out / f).is_file(), f
    flows = pd.read_csv(out / "plan/flows.csv")
    assert flows["quantity"].sum() > 0
    assert json.loads((out / "loop.json").read_text())[0]["round"] == 1
    # every round's plan passed the independent checker
    assert all(r["violations"] == 0 for r in json.loads((out / "loop.json").read_text()))


def test_cli_solve_with_baseline_writes_deltas(tmp_path):
    out = tmp_path / "run"
    p = run_cli("solve", str(TINY), "--scenario", "consolidate", "--out", str(out), "--replications", "4")
    assert p.returncode == 0, p.stderr
    assert "consolidate vs baseline" in p.stdout
    deltas = json.loads((out / "deltas.json").read_text())
    base = json.loads((out / "baseline/kpis.json").read_text())
    scen = json.loads((out / "kpis.json").read_text())
    assert deltas["total_cost"]["delta"] == pytest.approx(scen["total_cost"] - base["total_cost"])
    # free choice of DCs can only be cheaper than today's forced network (same MILP, fewer constraints)
    assert scen["objective"] <= base["objective"] + 1e-6


def test_cli_bad_scenario_exit_2(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"name": "bad", "decision": "consolidation",
                                   "modifications": [{"close_site": "DC_NOWHERE"}]}))
    p = run_cli("solve", str(TINY), "--scenario", str(bad), "--out", str(tmp_path / "o"))
    assert p.returncode == 2
    assert str(bad) in p.stderr and "modifications[0].close_site: unknown site 'DC_NOWHERE'" in p.stderr
    assert "Traceback" not in p.stderr
    bad.write_text("name: x\nwhatever: 1\n")
    p = run_cli("solve", str(TINY), "--scenario", str(bad))
    assert p.returncode == 2 and "whatever: unknown key" in p.stderr
    p = run_cli("solve", str(TINY), "--scenario", "nope")
    assert p.returncode == 2 and "no such scenario" in p.stderr


def test_cli_infeasible_exit_3(tmp_path):
    sc = tmp_path / "impossible.yaml"
    sc.write_text(yaml.safe_dump({"name": "impossible", "decision": "consolidation",
                                  "options": {"allow_unmet": False},
                                  "modifications": [{"demand_multiplier": 50.0}]}))
    p = run_cli("solve", str(TINY), "--scenario", str(sc), "--out", str(tmp_path / "o"), "--json")
    assert p.returncode == 3, p.stderr
    assert json.loads(p.stdout)["status"] == "infeasible"
    # the conflicting constraints are named in business terms (group and labels)
    diagnosis = json.loads((tmp_path / "o" / "loop.json").read_text())[-1]["diagnosis"]
    assert any(d.startswith("demand[Z_") for d in diagnosis)


def test_cli_simulate_and_stress(tmp_path):
    out = tmp_path / "run"
    assert run_cli("solve", str(TINY), "--scenario", "consolidate", "--out", str(out), "--no-baseline").returncode == 0
    p = run_cli("simulate", str(TINY), "--plan", str(out), "--replications", "5", "--json")
    assert p.returncode in (0, 3), p.stderr
    d = json.loads(p.stdout)
    assert "verdict" in d
    p = run_cli("stress", str(TINY), "--scenario", "consolidate", "--json", "--out", str(out))
    assert p.returncode == 0, p.stderr
    points = json.loads(p.stdout)["failure_points"]
    assert len(pd.read_csv(out / "stress.csv")) == len(points)
    assert points and all(r["fail_multiplier"] is None or r["fail_multiplier"] >= 1.0 for r in points)
    assert any("fails at" in r["message"] for r in points)


def test_cli_solve_is_governed_and_audited(tmp_path, run_store):
    from engine.store import RunStore

    policy = Path(__file__).resolve().parents[1] / "instances" / "policy.yaml"
    # bob (ops_planner) may not run a strategic consolidation: refused before any solve, exit 5
    p = run_cli("solve", str(TINY), "--scenario", "consolidate", "--as", "bob", "--policy", str(policy),
                "--out", str(tmp_path / "refused"))
    assert p.returncode == 5, p.stderr
    assert "bob" in p.stderr and "strategic" in p.stderr
    assert not (tmp_path / "refused" / "kpis.json").exists()
    # alice (network_strategist) may: the run and its baseline are recorded with their audit rows
    p = run_cli("solve", str(TINY), "--scenario", "consolidate", "--as", "alice", "--policy", str(policy),
                "--out", str(tmp_path / "ok"), "--replications", "4")
    assert p.returncode == 0, p.stderr
    run_id = json.loads((tmp_path / "ok" / "run.json").read_text())["run_id"]
    store = RunStore(run_store)
    audit = store.audit()
    assert set(audit["user_name"]) == {"bob", "alice"}
    # bob's command asked for two runs, the scenario and its (tactical consolidation) baseline: both are refused,
    # both refusals are audited, before any solve
    refused = audit[audit["status"] == "refused"]
    assert refused[["user_name", "scenario"]].values.tolist() == [["bob", "consolidate"], ["bob", "baseline"]]
    runs = store.runs()
    assert run_id in set(runs["run_id"]) and len(runs) == 2  # scenario and baseline


def test_cli_solve_applies_and_records_a_calibration_version(tmp_path):
    import shutil

    from engine.calibration import Calibration, save_calibration

    inst_dir = tmp_path / "tiny"
    shutil.copytree(TINY, inst_dir)
    cal = Calibration(efficiency=pd.DataFrame({"site_id": ["DC_A"], "stage": ["pack"], "efficiency": [0.5]}),
                      congestion=0.1, error_before={}, error_after={}, errors=pd.DataFrame(),
                      period=("2026-11-16", "2026-11-29"), n_days=14, cost=0.0)
    assert save_calibration(inst_dir, cal) == "v0001"
    out = tmp_path / "run"
    p = run_cli("solve", str(inst_dir), "--scenario", "consolidate", "--calibration", "latest", "--out", str(out),
                "--no-baseline", "--replications", "4")
    assert p.returncode == 0, p.stderr
    assert json.loads((out / "run.json").read_text())["calibration_version"] == "v0001"
    result = json.loads((out / "result.json").read_text())
    assert result["calibration_version"] == "v0001"
    # the "calibration" key the report shows: every DC module, none validated (this version records no errors)
    assert result["calibration"]["version"] == "v0001" and result["calibration"]["findings"] == []
    mods = {(m["site_id"], m["stage"]): m["status"] for m in result["calibration"]["modules"]}
    assert len(mods) == 15 and set(mods.values()) == {"not_calibrated"}
    assert "DC_A/pack" in result["calibration"]["unvalidated"]
    # the calibrated rate is what the run planned with: DC_A's pack rate is halved (50 -> 25 units/h)
    res = pd.read_parquet(out / "instance" / "resources.parquet")
    assert res[(res["site_id"] == "DC_A") & (res["stage"] == "pack")]["rate_per_hour"].iloc[0] == 25.0
    p = run_cli("solve", str(inst_dir), "--scenario", "consolidate", "--calibration", "v0009", "--out",
                str(tmp_path / "bad"), "--no-baseline")
    assert p.returncode == 2 and "v0009" in p.stderr


def test_hard_sla_that_no_capacity_can_meet_is_infeasible_with_a_diagnosis():
    """900 orders a day against at most 800 a day of packing (base + 4 modules, with the extra shift): the soft
    SLA plan pays the breach; with ``hard_sla`` the loop stops at round 1 as infeasible and names SLA rows of the
    DC (the days the backlog cannot clear in time)."""
    from engine.pipeline import exit_code
    from engine.scenario import scenario_from_dict
    from tests.test_capacity import one_dc

    inst = one_dc(900.0, 12.0)
    opts = {"weekday_profile": [1.0] * 7, "spike_dates": [], "extra_shift_cost_per_day": 100.0}
    soft = plan(inst, scenario_from_dict({"name": "soft", "decision": "capacity", "options": opts}),
                simulate=False, mip_gap=0.0)
    assert soft.plan.meta["sla_breach_unit_days"] > 0 and exit_code(soft) == 0
    hard = plan(inst, scenario_from_dict({"name": "hard", "decision": "capacity",
                                          "options": {**opts, "hard_sla": True}}), simulate=False, mip_gap=0.0)
    assert hard.status == "infeasible" and exit_code(hard) == 3
    diagnosis = hard.rounds[0]["diagnosis"]
    # the conflict: an SLA row of the DC, and the lever limits (4 modules, one extra shift) that cannot clear it
    assert any(d.startswith("sla[DC, ") for d in diagnosis), diagnosis
    assert any(d.startswith("modules[DC, pack]") for d in diagnosis), diagnosis
