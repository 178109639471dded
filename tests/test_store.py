"""The DuckDB run store: round trips, idempotence, atomicity under SIGKILL, two writer processes, audit chain,
run artifacts, the calibration column.

Runs are written directly, with known values, so each assertion has an exact answer; one real plan of the bundled
``tiny`` instance checks that ``record_plan_result`` records the calibration version a solve used.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

from engine.hashing import compare_hashes, hash_table, input_hashes, plan_hash
from engine.store import RunStore, StoreLocked, best, compare, plan_table, runs
from instances.instance import load_instance

ROOT = Path(__file__).resolve().parents[1]


def _run(i: int, status: str = "finished", sweep: str = "sw1") -> dict:
    return {"run_id": f"{sweep}-{i:04d}", "sweep_id": sweep, "run_index": i, "status": status,
            "objective": 100.0 + i, "params": {"fuel": 1.0 + i / 10, "closed": ["DC_B"] if i % 2 else []},
            "kpis": {"total_cost": 100.0 + i, "service_level": 0.90 + i / 100}}


def _tables(i: int) -> dict[str, pd.DataFrame]:
    return {
        "sites": pd.DataFrame({"site_id": ["DC_A", "DC_B"], "kind": "dc", "status": "existing",
                               "open": [True, i % 2 == 0], "opened": False, "closed": [False, i % 2 == 1]}),
        "costs": pd.DataFrame({"component": ["fixed", "transport"], "amount": [60.0, 40.0 + i]}),
        "flows": pd.DataFrame({"origin_id": "DC_A", "destination_id": ["Z1", "Z2"], "product_id": "P1",
                               "period": [1, 2], "quantity": [10.5, 3.25], "leg": "outbound"}),
    }


def _child(code: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_run_round_trip_and_helpers(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.duckdb")
    for i in range(4):
        assert store.record_run(_run(i), _tables(i))
    rec = store.run("sw1-0003")
    assert rec["objective"] == 103.0 and rec["params"] == {"fuel": 1.3, "closed": ["DC_B"]}
    assert rec["kpis"]["service_level"] == pytest.approx(0.93)
    sites = plan_table("sw1-0003", "sites", store)
    assert sites["open"].tolist() == [True, False] and sites["closed"].tolist() == [False, True]
    flows = plan_table("sw1-0001", "flows", store)
    assert flows["quantity"].tolist() == [10.5, 3.25] and flows["period"].tolist() == [1, 2]
    df = runs(store)
    assert df["run_id"].tolist() == [f"sw1-{i:04d}" for i in range(4)]
    assert df["param_fuel"].tolist() == pytest.approx([1.0, 1.1, 1.2, 1.3])
    assert df["total_cost"].tolist() == [100.0, 101.0, 102.0, 103.0]
    # best: cost smallest first; service level largest first
    assert best("total_cost", 2, store)["run_id"].tolist() == ["sw1-0000", "sw1-0001"]
    assert best("service_level", 1, store)["run_id"].tolist() == ["sw1-0003"]
    with pytest.raises(KeyError, match="unknown KPI 'nope'"):
        best("nope", store=store)
    cmp = compare("sw1-0000", "sw1-0002", store)
    assert cmp.loc["objective", "delta"] == 2.0
    assert cmp.loc["total_cost", "rel_delta"] == pytest.approx(0.02)
    assert cmp.loc["param_fuel", "delta"] == pytest.approx(0.2)
    assert store.run("sw1-0002")["run_id"] == "sw1-0002"  # exact id wins over prefix
    with pytest.raises(Exception, match="ambiguous prefix"):
        store.run("sw1-000")


def test_idempotent_and_failed_runs_replaced_whole(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.duckdb")
    assert store.record_run(_run(0), _tables(0))
    assert not store.record_run(_run(0), _tables(0))  # finished: never written twice
    failed = _run(1, status="failed") | {"objective": None, "error": "ScenarioError: boom"}
    assert store.record_run(failed, None)
    assert not store.record_run(failed, None, replace_failed=False)
    assert store.finished_runs("sw1") == {"sw1-0000", "sw1-0001"}
    assert store.finished_runs("sw1", include_failed=False) == {"sw1-0000"}
    assert store.record_run(_run(1), _tables(1))  # a retried failure replaces the old row
    counts = store.query("SELECT run_id, count(*) AS n FROM runs GROUP BY run_id ORDER BY run_id")
    assert counts["n"].tolist() == [1, 1]
    assert store.run("sw1-0001")["status"] == "finished"
    kp = store.query("SELECT count(*) AS n FROM kpis WHERE run_id = 'sw1-0001'")
    assert int(kp["n"].iloc[0]) == 2
    costs = store.query("SELECT count(*) AS n FROM plan_costs")
    assert int(costs["n"].iloc[0]) == 4


def test_error_inside_transaction_writes_nothing(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.duckdb")
    with pytest.raises(RuntimeError, match="midway"), store.transaction() as con:
        con.execute("INSERT INTO runs (run_id, status) VALUES ('x', 'finished')")
        raise RuntimeError("midway")
    assert store.finished_runs() == set()


def test_sigkill_mid_transaction_leaves_whole_run_or_nothing(tmp_path: Path) -> None:
    """A process killed (SIGKILL) between a run's rows and its commit leaves no trace of that run."""
    path = tmp_path / "runs.duckdb"
    store = RunStore(path)
    assert store.record_run(_run(0), _tables(0))
    child = _child("""
        import os, signal, sys
        from engine.store import RunStore
        s = RunStore(sys.argv[1])
        with s.transaction() as con:
            con.execute("INSERT INTO runs (run_id, sweep_id, status) VALUES ('sw1-0009', 'sw1', 'finished')")
            con.execute("INSERT INTO plan_costs VALUES ('sw1-0009', 'fixed', 1.0)")
            os.kill(os.getpid(), signal.SIGKILL)
    """, str(path))
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    assert store.finished_runs() == {"sw1-0000"}
    assert int(store.query("SELECT count(*) n FROM plan_costs WHERE run_id = 'sw1-0009'")["n"].iloc[0]) == 0
    assert store.record_run(_run(9), _tables(9))  # the store is writable again (stale holder ignored)


def test_two_writer_processes_never_corrupt(tmp_path: Path) -> None:
    path = tmp_path / "runs.duckdb"
    RunStore(path).query("SELECT 1")  # create the tables once
    code = """
        import sys
        from engine.store import RunStore
        s = RunStore(sys.argv[1], timeout=60)
        who = sys.argv[2]
        for i in range(12):
            s.record_run({"run_id": f"{who}-{i}", "sweep_id": who, "run_index": i, "status": "finished",
                          "objective": float(i), "kpis": {"total_cost": float(i)}},
                         audit_row={"action": "sweep_run", "allowed": True, "user_name": who,
                                    "run_id": f"{who}-{i}", "status": "finished"})
        print("ok")
    """
    a, b = _child(code, str(path), "a"), _child(code, str(path), "b")
    outs = [p.communicate(timeout=120) for p in (a, b)]
    assert [p.returncode for p in (a, b)] == [0, 0], outs
    store = RunStore(path)
    df = store.runs()
    assert sorted(df["run_id"]) == sorted([f"a-{i}" for i in range(12)] + [f"b-{i}" for i in range(12)])
    aud = store.audit()
    assert aud["seq"].tolist() == list(range(1, 25))
    assert store.verify_audit() == []


def test_locked_store_names_the_holder(tmp_path: Path) -> None:
    path = tmp_path / "runs.duckdb"
    ready = tmp_path / "ready"
    holder = _child("""
        import pathlib, sys, time
        from engine.store import RunStore
        s = RunStore(sys.argv[1])
        with s.transaction() as con:
            pathlib.Path(sys.argv[2]).write_text("x")
            time.sleep(4)
    """, str(path), str(ready))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and holder.poll() is None, holder.communicate()
            time.sleep(0.05)
        impatient = RunStore(path, timeout=0.5)
        with pytest.raises(StoreLocked, match=rf"is locked by pid {holder.pid} \(user .* on .*running"):
            impatient.record_run(_run(0))
        patient = RunStore(path, timeout=60)  # the second writer waits, then writes
        assert patient.record_run(_run(0))
    finally:
        holder.wait(timeout=60)
    assert RunStore(path).finished_runs() == {"sw1-0000"}
    assert not RunStore(path).holder_file.exists()


def test_audit_chain_detects_tampering(tmp_path: Path) -> None:
    path = tmp_path / "runs.duckdb"
    store = RunStore(path)
    store.append_audit(*({"action": "sweep_run", "allowed": True, "user_name": "alice", "run_id": f"r{i}",
                          "objective": 10.0 * i, "hashes": {"input_hash": "abc"}} for i in range(3)))
    assert store.verify_audit() == []
    con = duckdb.connect(str(path))
    con.execute("UPDATE audit SET user_name = 'mallory' WHERE seq = 2")
    con.close()
    assert store.verify_audit() == ["audit row 2: contents changed after it was written"]
    con = duckdb.connect(str(path))
    con.execute("DELETE FROM audit WHERE seq = 2")
    con.close()
    problems = store.verify_audit()
    assert any("a row is missing" in p for p in problems) and any("chain broken" in p for p in problems)


def test_hashes_are_content_hashes() -> None:
    inst = load_instance(ROOT / "instances" / "tiny")
    a = input_hashes(inst, None, {"solver": "highs"}, 1)
    again = input_hashes(load_instance(ROOT / "instances" / "tiny"), None, {"solver": "highs"}, 1)
    assert a["input_hash"] == again["input_hash"] and len(a["input_hash"]) == 64
    demand = inst.demand.copy()
    demand.loc[0, "quantity"] += 1
    b = input_hashes(inst.replace(demand=demand), None, {"solver": "highs"}, 2)
    assert compare_hashes(a, b) == [f"instance table demand changed ({a['tables']['demand'][:12]} -> "
                                    f"{b['tables']['demand'][:12]})", "seed changed (1 -> 2)"]
    assert hash_table(inst.demand) != hash_table(demand)
    # plan hash: row order and noise below 1e-6 do not count, a real change does
    t = _tables(0)
    shuffled = {k: v.iloc[::-1].reset_index(drop=True) for k, v in t.items()}
    noisy = {**t, "costs": t["costs"].assign(amount=t["costs"]["amount"] + 1e-9)}
    moved = {**t, "costs": t["costs"].assign(amount=t["costs"]["amount"] + 1e-3)}
    assert plan_hash(t) == plan_hash(shuffled) == plan_hash(noisy) != plan_hash(moved)


def test_pid_file_of_dead_holder_is_ignored(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.duckdb")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    store.holder_file.write_text(f'{{"pid": {dead.pid}, "host": "{os.uname().nodename}"}}')
    assert store.holder() is None


def test_artifact_round_trip_of_two_megabytes(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.duckdb")
    blob = np.random.default_rng(7).bytes(2 * 1024 * 1024)
    assert store.record_run(_run(0), _tables(0), artifacts={"basis": blob, "note": bytearray(b"warm")})
    assert store.artifact("sw1-0000", "basis") == blob
    assert store.artifact("sw1-0000", "note") == b"warm"
    assert store.artifact_names("sw1-0000") == ["basis", "note"]
    assert store.artifact("sw1-0000", "nope") is None and store.artifact_names("sw1-0001") == []
    # taken from the run's "_artifacts" when the argument is not given
    assert store.record_run(_run(1) | {"_artifacts": {"basis": b"\x00\x01"}}, _tables(1))
    assert store.artifact("sw1-0001", "basis") == b"\x00\x01"
    with pytest.raises(TypeError, match="run artifact 'basis' must be bytes, got str"):
        store.record_run(_run(2), artifacts={"basis": "text"})
    assert store.finished_runs() == {"sw1-0000", "sw1-0001"}


def test_error_inside_the_write_leaves_neither_run_nor_artifact(tmp_path: Path) -> None:
    """The audit row is written last; DuckDB refusing it (a pid beyond INTEGER) undoes the whole run."""
    store = RunStore(tmp_path / "runs.duckdb")
    blob = np.random.default_rng(8).bytes(1024)
    with pytest.raises(duckdb.ConversionException):
        store.record_run(_run(0), _tables(0), artifacts={"basis": blob},
                         audit_row={"action": "sweep_run", "allowed": True, "pid": 2**40})
    assert store.finished_runs() == set()
    assert store.artifact("sw1-0000", "basis") is None and store.artifact_names("sw1-0000") == []
    counts = store.query("SELECT (SELECT count(*) FROM kpis) k, (SELECT count(*) FROM plan_costs) c, "
                         "(SELECT count(*) FROM run_artifacts) a, (SELECT count(*) FROM audit) au")
    assert counts.iloc[0].tolist() == [0, 0, 0, 0]
    assert store.record_run(_run(0), _tables(0), artifacts={"basis": blob})  # the same run, now whole
    assert store.artifact("sw1-0000", "basis") == blob


def test_replacing_a_failed_run_replaces_its_artifacts(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "runs.duckdb")
    failed = _run(0, status="failed") | {"objective": None, "error": "SolverError: boom"}
    assert store.record_run(failed, artifacts={"basis": b"old", "stale": b"s"})
    assert not store.record_run(failed, artifacts={"basis": b"other"}, replace_failed=False)
    assert store.artifact("sw1-0000", "basis") == b"old"
    assert store.record_run(_run(0), _tables(0), artifacts={"basis": b"new"})
    assert store.artifact_names("sw1-0000") == ["basis"] and store.artifact("sw1-0000", "basis") == b"new"
    assert not store.record_run(_run(0), artifacts={"basis": b"again"})  # finished: never rewritten
    assert store.artifact("sw1-0000", "basis") == b"new"


def test_record_plan_result_records_the_calibration_version(tmp_path: Path) -> None:
    import shutil

    from engine.calibration import Calibration, apply_calibration, save_calibration
    from engine.governance import current_user, enforce, find_policy
    from engine.pipeline import plan
    from engine.scenario import load_scenario
    from engine.sweep import record_plan_result

    inst_dir = tmp_path / "tiny"
    shutil.copytree(ROOT / "instances" / "tiny", inst_dir)
    cal = Calibration(efficiency=pd.DataFrame({"site_id": ["DC_A"], "stage": ["pack"], "efficiency": [0.8]}),
                      congestion=0.1, error_before={}, error_after={}, errors=pd.DataFrame(),
                      period=("2026-11-16", "2026-11-29"), n_days=14, cost=0.0)
    assert save_calibration(inst_dir, cal) == "v0001"
    inst = apply_calibration(load_instance(inst_dir), "latest")
    scenario = load_scenario("consolidate", inst_dir)
    store = RunStore(tmp_path / "runs.duckdb")
    verdict = enforce(find_policy(None), current_user("carol"), scenario, inst.name, store=store, action="solve")
    result = plan(inst, scenario, replications=2, seed=0)
    opts = {"solver": "highs", "time_limit": None, "mip_gap": None, "threads": None, "max_rounds": 4,
            "replications": 2, "simulate": True}
    run_id = record_plan_result(result, store, instance=inst, instance_path=inst_dir, scenario=scenario,
                                solver_options=opts, seed=0, verdict=verdict)
    rec = store.run(run_id)
    assert rec["calibration"] == "v0001" and rec["objective"] == pytest.approx(result.objective)
    assert store.runs()["calibration"].tolist() == ["v0001"]
    aud = store.audit()
    assert aud["calibration"].tolist() == ["v0001"] and aud["user_name"].tolist() == ["carol"]
    assert store.verify_audit() == []
