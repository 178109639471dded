"""Governance: policy files, allow / deny decided before any solve (exit 5), the audit trail for both, and
``reproduce`` matching a stored run (and noticing when the inputs changed).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from engine.cli import main
from engine.governance import (
    PolicyError,
    PolicyRefused,
    current_user,
    enforce,
    find_policy,
    load_policy,
    parse_since,
    policy_from_dict,
)
from engine.store import RunStore
from engine.sweep import reproduce

ROOT = Path(__file__).resolve().parents[1]
POLICY = ROOT / "instances" / "policy.yaml"


# -- the policy ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("user", "cls", "decision", "instance", "runs", "allowed", "rule"), [
    ("alice", "strategic", "consolidation", "eu_fba", 1, True, "roles.network_strategist"),
    ("bob", "tactical", "redistribution", "us_west_port", 50, True, "roles.ops_planner"),
    ("bob", "tactical", "redistribution", "us_west_port", 51, False, "roles.ops_planner.max_runs"),
    ("bob", "strategic", "capacity", "eu_fba", 1, False, "roles.ops_planner.scenario_classes"),
    ("bob", "tactical", "consolidation", "eu_fba", 1, False, "roles.ops_planner.decisions"),
    ("carol", "tactical", "consolidation", "tiny", 100, True, "roles.analyst"),
    ("carol", "tactical", "consolidation", "us_west_port", 1, False, "roles.analyst.instances"),
    ("carol", "tactical", "capacity", "us_west_port", 1, True, "roles.ops_planner"),
    ("mallory", "tactical", "capacity", "tiny", 1, False, "users"),
])
def test_example_policy_decisions(user, cls, decision, instance, runs, allowed, rule) -> None:
    v = load_policy(POLICY).check(user, cls, decision, instance, runs)
    assert (v.allowed, v.rule) == (allowed, rule), v.message
    if not allowed:
        assert v.message.startswith(f"refused: user {user!r}") and str(POLICY) in v.message


def test_refusal_message_names_who_what_and_rule() -> None:
    v = load_policy(POLICY).check("bob", "strategic", "consolidation", "eu_fba")
    assert v.message == (
        "refused: user 'bob' (ops_planner) may not run strategic consolidation on instance 'eu_fba': "
        "roles.ops_planner.scenario_classes allows ['tactical'], not scenario class 'strategic' "
        f"(policy {POLICY})")


@pytest.mark.parametrize(("data", "message"), [
    ({"roles": {"r": {"scenario_classes": ["strategik"]}}},
     r"roles.r.scenario_classes\[0\]: unknown value 'strategik'"),
    ({"roles": {"r": {"decisions": "*"}}, "users": {"u": ["nope"]}}, r"users.u: unknown role 'nope'"),
    ({"roles": {"r": {"instancez": ["*"]}}},
     r"roles.r.instancez: unknown key \(allowed: decisions, description, instances, max_runs, "),
    ({"roles": {"r": {"max_runs": -1}}}, r"roles.r.max_runs: Input should be greater than or equal to 0, got -1"),
    ({"rolez": {}}, r"rolez: unknown key"),
    ([1, 2], r"must be a mapping with roles and users"),
])
def test_bad_policy_names_file_and_key(data, message: str) -> None:
    with pytest.raises(PolicyError, match=rf"^p.yaml: {message}" if isinstance(data, dict) else message):
        policy_from_dict(data, "p.yaml")


def test_user_and_policy_resolution(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TWINPLAN_USER", "env_user")
    assert current_user("cli_user") == "cli_user"
    assert current_user(None) == "env_user"
    monkeypatch.delenv("TWINPLAN_USER")
    monkeypatch.setenv("USER", "login_user")
    monkeypatch.setenv("LOGNAME", "login_user")
    assert current_user(None) == "login_user"
    monkeypatch.delenv("TWINPLAN_POLICY", raising=False)
    open_policy = find_policy(None)
    assert open_policy.open and open_policy.check("anyone", "strategic", "capacity", "x").allowed
    monkeypatch.setenv("TWINPLAN_POLICY", str(POLICY))
    assert not find_policy(None).check("anyone", "strategic", "capacity", "x").allowed
    with pytest.raises(PolicyError, match="no such policy file"):
        find_policy(tmp_path / "missing.yaml")


def test_enforce_audits_refusals(tmp_path: Path, capsys) -> None:
    from engine.scenario import Scenario

    store = RunStore(tmp_path / "runs.duckdb")
    policy = load_policy(POLICY)
    strategic = Scenario(name="close_two", scenario_class="strategic", decision="consolidation")
    with pytest.raises(PolicyRefused) as err:
        enforce(policy, "bob", strategic, "eu_fba", store=store, action="plan", run_id="r1")
    assert err.value.exit_code == 5
    assert enforce(policy, "alice", strategic, "eu_fba", store=store).allowed
    rows = store.audit()
    assert rows[["user_name", "action", "allowed", "status", "scenario", "run_id"]].values.tolist() == [
        ["bob", "plan", False, "refused", "close_two", "r1"]]
    assert main(["audit", "--store", str(store.path), "--since", "1h"]) == 0
    assert "bob" in capsys.readouterr().out
    assert main(["audit", "--store", str(store.path), "--since", "2999-01-01", "--json"]) == 0
    assert capsys.readouterr().out.strip() == "[]"
    assert parse_since("2026-01-02").year == 2026
    with pytest.raises(ValueError, match="--since"):
        parse_since("yesterday")


# -- the CLI: deny, allow, audit, reproduce ------------------------------------------------------------------
@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of tiny and a 2-run sweep spec beside it (base run + one demand variant)."""
    ws = tmp_path_factory.mktemp("gov")
    shutil.copytree(ROOT / "instances" / "tiny", ws / "tiny")
    spec = {"name": "gov_sweep", "instance": "tiny", "seed": 5,
            "solver": {"solver": "highs", "threads": 1, "time_limit": 60},
            "plan": {"max_rounds": 1, "replications": 1},
            "parameters": {"demand": {"set": {"demand_multiplier": "$value"}, "values": [1.2]}},
            "vary": [{"grid": ["demand"]}]}
    (ws / "sweep.yaml").write_text(yaml.safe_dump(spec))
    return ws


def test_denied_sweep_exits_5_before_any_solve_and_is_audited(workspace: Path, capsys) -> None:
    store = workspace / "deny.duckdb"
    code = main(["sweep", str(workspace / "sweep.yaml"), "--as", "bob", "--policy", str(POLICY),
                 "--store", str(store), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 5
    assert "refused: user 'bob' (ops_planner) may not run tactical consolidation on instance 'tiny'" in err
    assert "roles.ops_planner.decisions" in err
    s = RunStore(store)
    assert s.runs().empty and s.sweeps().empty  # nothing ran, no sweep was started
    audit = s.audit()
    assert len(audit) == 2 and not audit["allowed"].any() and set(audit["status"]) == {"refused"}
    assert audit["input_hash"].str.len().eq(64).all()  # the refused runs' inputs are fingerprinted too


@pytest.fixture(scope="module")
def allowed_sweep(workspace: Path) -> RunStore:
    store = workspace / "allow.duckdb"
    code = main(["sweep", str(workspace / "sweep.yaml"), "--as", "carol", "--policy", str(POLICY),
                 "--store", str(store), "--no-progress", "--workers", "1"])
    assert code == 0
    return RunStore(store)


def test_allowed_sweep_is_audited_with_input_hashes(allowed_sweep: RunStore) -> None:
    runs = allowed_sweep.runs()
    assert runs["status"].tolist() == ["finished", "finished"]
    assert set(runs["user_name"]) == {"carol"}
    audit = allowed_sweep.audit()
    assert audit["allowed"].all() and set(audit["rule"]) == {"roles.analyst"}
    assert sorted(audit["run_id"]) == sorted(runs["run_id"])
    rec = allowed_sweep.run(runs["run_id"].iloc[1])
    assert set(rec["hashes"]["tables"]) >= {"sites", "demand", "lanes", "meta"}
    assert rec["hashes"]["warm_start"] == runs["run_id"].iloc[0]
    assert rec["versions"]["highspy"] and rec["seed"] is not None


def test_reproduce_matches_then_notices_changed_data(allowed_sweep: RunStore, workspace: Path, capsys) -> None:
    run_id = allowed_sweep.runs()["run_id"].iloc[1]
    policy = load_policy(POLICY)
    with pytest.raises(PolicyRefused):
        reproduce(run_id, allowed_sweep, user="bob", policy=policy)
    code = main(["reproduce", run_id, "--store", str(allowed_sweep.path), "--as", "carol",
                 "--policy", str(POLICY)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"run {run_id}: reproduced" in out and "inputs identical" in out
    # change one demand row in the instance the run was made from: the re-run no longer matches
    demand_csv = workspace / "tiny" / "demand.csv"
    demand = pd.read_csv(demand_csv)
    demand.loc[0, "quantity"] = demand.loc[0, "quantity"] * 3
    demand.to_csv(demand_csv, index=False)
    report = reproduce(run_id, allowed_sweep, user="carol", policy=policy)
    assert not report.matches
    assert any(d.startswith("instance table demand changed") for d in report.input_differences)
    assert report.reproduced["objective"] > report.recorded["objective"]
    audit = allowed_sweep.audit()
    repro = audit[audit["action"] == "reproduce"]
    assert repro[["user_name", "allowed", "status"]].values.tolist() == [
        ["bob", False, "refused"], ["carol", True, "match"], ["carol", True, "mismatch"]]
    assert allowed_sweep.verify_audit() == []
    code = main(["audit", "--store", str(allowed_sweep.path), "--verify", "--user", "carol"])
    out = capsys.readouterr().out
    assert code == 0 and "audit chain intact" in out and "mismatch" in out and "bob" not in out


def test_single_run_is_recorded_with_its_audit_row_and_reproduces(tmp_path: Path) -> None:
    """A plan made outside a sweep (as ``twinplan solve`` does) recorded by record_plan_result, then reproduced."""
    from engine.pipeline import plan
    from engine.sweep import record_plan_result
    from instances.instance import load_instance

    shutil.copytree(ROOT / "instances" / "tiny", tmp_path / "tiny")
    inst = load_instance(tmp_path / "tiny")
    policy = load_policy(POLICY)
    verdict = enforce(policy, "alice", None, inst.name)
    opts = {"solver": "highs", "threads": 1, "max_rounds": 1, "replications": 1}
    result = plan(inst, None, solver="highs", threads=1, max_rounds=1, replications=1, seed=3)
    store = RunStore(tmp_path / "runs.duckdb")
    run_id = record_plan_result(result, store, instance=inst, instance_path=tmp_path / "tiny", scenario=None,
                                solver_options=opts, seed=3, verdict=verdict)
    rec = store.run(run_id)
    assert rec["objective"] == pytest.approx(result.objective) and rec["executor"] == "inline"
    assert rec["kpis"]["total_cost"] == pytest.approx(result.kpis["total_cost"])
    assert store.audit()[["user_name", "action", "rule"]].values.tolist() == [
        ["alice", "plan", "roles.network_strategist"]]
    report = reproduce(run_id, store, user="alice", policy=policy)
    assert report.matches, report.message
