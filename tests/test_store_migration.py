"""Run-store schema migration: a store written with the first layout (hand-written DDL below, as twinplan
created it before versions were kept) is read as it is, migrated in one transaction without touching a row,
written to with today's tables, and its audit chain still verifies. Stores of every later version are built from
the declared history (:data:`engine.store.SCHEMA_CHANGES`, checked against the hand-written first layout) rather
than by hand for each step, and migrate the same way."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import engine.store as store_module
from engine.hashing import canonical_json, sha256
from engine.store import (
    SCHEMA_CHANGES,
    SCHEMA_VERSION,
    TABLE_COLUMNS,
    RunStore,
    StoreError,
    _create_table_sql,
    schema_layout,
)

# The first layout: runs without scenario_spec (today in the middle of the table) and calibration,
# plan_transfers without period, plan_capacity without extra_hours_per_day, no meta, no run_artifacts.
OLD_DDL = [
    """CREATE TABLE sweeps (
        sweep_id VARCHAR PRIMARY KEY, name VARCHAR, spec_hash VARCHAR, spec VARCHAR, instance VARCHAR,
        scenario VARCHAR, n_runs INTEGER, seed BIGINT, user_name VARCHAR, host VARCHAR, created_at TIMESTAMP)""",
    """CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, sweep_id VARCHAR, run_index INTEGER, name VARCHAR, input_hash VARCHAR,
        params VARCHAR, modifications VARCHAR, instance VARCHAR, instance_path VARCHAR, scenario VARCHAR,
        scenario_class VARCHAR, decision VARCHAR, status VARCHAR, solve_status VARCHAR, objective DOUBLE,
        simulation_feasible BOOLEAN, plan_hash VARCHAR, error VARCHAR, kpis VARCHAR, timings VARCHAR,
        wall_seconds DOUBLE, solver VARCHAR, solver_options VARCHAR, seed BIGINT, warm_start VARCHAR,
        hashes VARCHAR, versions VARCHAR, user_name VARCHAR, host VARCHAR, pid INTEGER, executor VARCHAR,
        started_at TIMESTAMP, finished_at TIMESTAMP)""",
    "CREATE TABLE kpis (run_id VARCHAR, kpi VARCHAR, value DOUBLE, PRIMARY KEY (run_id, kpi))",
    """CREATE TABLE audit (
        seq BIGINT PRIMARY KEY, time TIMESTAMP, user_name VARCHAR, host VARCHAR, pid INTEGER, action VARCHAR,
        allowed BOOLEAN, rule VARCHAR, reason VARCHAR, policy VARCHAR, instance VARCHAR, scenario VARCHAR,
        scenario_class VARCHAR, decision VARCHAR, run_id VARCHAR, sweep_id VARCHAR, input_hash VARCHAR,
        hashes VARCHAR, status VARCHAR, objective DOUBLE, plan_hash VARCHAR, detail VARCHAR,
        prev_hash VARCHAR, row_hash VARCHAR)""",
    """CREATE TABLE plan_sites (run_id VARCHAR, site_id VARCHAR, kind VARCHAR, status VARCHAR, open BOOLEAN,
        opened BOOLEAN, closed BOOLEAN)""",
    """CREATE TABLE plan_flows (run_id VARCHAR, origin_id VARCHAR, destination_id VARCHAR, product_id VARCHAR,
        period INTEGER, quantity DOUBLE, leg VARCHAR)""",
    """CREATE TABLE plan_site_throughput (run_id VARCHAR, site_id VARCHAR, period INTEGER, inbound_units DOUBLE,
        outbound_units DOUBLE)""",
    """CREATE TABLE plan_capacity (run_id VARCHAR, site_id VARCHAR, stage VARCHAR, base_count DOUBLE,
        added_count DOUBLE, total_count DOUBLE, modules DOUBLE, capex DOUBLE)""",
    """CREATE TABLE plan_labor (run_id VARCHAR, site_id VARCHAR, period INTEGER, regular_hours DOUBLE,
        overtime_hours DOUBLE, temp_hours DOUBLE)""",
    """CREATE TABLE plan_unmet (run_id VARCHAR, zone_id VARCHAR, product_id VARCHAR, period INTEGER,
        quantity DOUBLE)""",
    """CREATE TABLE plan_transfers (run_id VARCHAR, origin_id VARCHAR, destination_id VARCHAR,
        product_id VARCHAR, quantity DOUBLE, trucks DOUBLE, transit_days DOUBLE)""",
    """CREATE TABLE plan_assignment (run_id VARCHAR, zone_id VARCHAR, site_id VARCHAR, period INTEGER,
        quantity DOUBLE, share DOUBLE)""",
    """CREATE TABLE plan_service (run_id VARCHAR, zone_id VARCHAR, demand DOUBLE, avg_transit_days DOUBLE,
        avg_distance_km DOUBLE, within_sla_share DOUBLE)""",
    "CREATE TABLE plan_costs (run_id VARCHAR, component VARCHAR, amount DOUBLE)",
]
OLD_AUDIT_COLUMNS = ("time", "user_name", "host", "pid", "action", "allowed", "rule", "reason", "policy", "instance",
                     "scenario", "scenario_class", "decision", "run_id", "sweep_id", "input_hash", "hashes", "status",
                     "objective", "plan_hash", "detail")
EXPECTED_CHANGES = {
    "created table meta", "created table run_artifacts", "added column runs.scenario_spec VARCHAR",
    "added column runs.calibration VARCHAR", "added column audit.calibration VARCHAR",
    "added column plan_capacity.extra_hours_per_day DOUBLE", "added column plan_transfers.period INTEGER",
    "added column audit.row_mac VARCHAR", "created table calibration_findings", "added column runs.exit_code INTEGER",
    "added column runs.reason VARCHAR", "added column runs.out_dir VARCHAR", "added column runs.row_mac VARCHAR",
    "sealed 2 existing run row(s)", "schema_version 1 -> 5"}


def _old_row_hash(seq: int, row: dict, prev_hash: str) -> str:
    """The audit row hash as the first layout's code computed it (every column, typed the same way)."""
    payload = {c: row.get(c) for c in OLD_AUDIT_COLUMNS}
    payload["time"] = pd.Timestamp(payload["time"]).isoformat()
    payload["objective"] = None if payload["objective"] is None else repr(float(payload["objective"]))
    payload["pid"], payload["allowed"] = int(payload["pid"]), int(payload["allowed"])
    return sha256(f"{seq}|{prev_hash}|{canonical_json(payload)}")


def _old_store(path: Path) -> None:
    con = duckdb.connect(str(path))
    for sql in OLD_DDL:
        con.execute(sql)
    con.execute("INSERT INTO sweeps VALUES ('sw-old', 'old sweep', 'h', '{}', 'tiny', NULL, 2, 7, 'alice', 'box',"
                " TIMESTAMP '2026-01-05 10:00:00')")
    for i, status in enumerate(["finished", "failed"]):
        con.execute("INSERT INTO runs (run_id, sweep_id, run_index, status, objective, params, kpis, started_at) "
                    "VALUES (?, 'sw-old', ?, ?, ?, ?, ?, TIMESTAMP '2026-01-05 10:00:00')",
                    [f"old-{i}", i, status, 42.0 + i, canonical_json({"fuel": 1.0 + i}),
                     canonical_json({"total_cost": 42.0 + i})])
        con.execute("INSERT INTO kpis VALUES (?, 'total_cost', ?)", [f"old-{i}", 42.0 + i])
    con.execute("INSERT INTO plan_transfers VALUES ('old-0', 'DC_A', 'DC_B', 'P1', 120.0, 2.0, 1.0), "
                "('old-0', 'DC_A', 'DC_C', 'P2', 30.5, 1.0, 2.0)")
    con.execute("INSERT INTO plan_capacity VALUES ('old-0', 'DC_A', 'pack', 4.0, 2.0, 6.0, 1.0, 5000.0)")
    con.execute("INSERT INTO plan_costs VALUES ('old-0', 'fixed', 60.0), ('old-0', 'transport', 40.0)")
    prev = ""
    for seq in (1, 2):
        row = {"time": datetime(2026, 1, 5, 10, seq), "user_name": "alice", "host": "box", "pid": 100 + seq,
               "action": "sweep_run", "allowed": True, "rule": "roles.planner", "run_id": f"old-{seq - 1}",
               "sweep_id": "sw-old", "hashes": canonical_json({"input_hash": "abc"}), "status": "finished",
               "objective": 41.5 + seq}
        row_hash = _old_row_hash(seq, row, prev)
        cols = ["seq", *row, "prev_hash", "row_hash"]
        con.execute(f"INSERT INTO audit ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [seq, *row.values(), prev, row_hash])
        prev = row_hash
    con.close()


def _columns(path: Path) -> dict[str, list[str]]:
    con = duckdb.connect(str(path), read_only=True)
    rows = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE schema_name = 'main' "
                       "AND NOT internal ORDER BY table_name, column_index").fetchall()
    con.close()
    out: dict[str, list[str]] = {}
    for t, c in rows:
        out.setdefault(t, []).append(c)
    return out


def _snapshot(path: Path, columns: dict[str, list[str]]) -> dict[str, pd.DataFrame]:
    """Every row of each table in ``columns``, those columns only, in a fixed order."""
    con = duckdb.connect(str(path), read_only=True)
    out = {}
    for table, cols in columns.items():
        names = ", ".join(f'"{c}"' for c in cols)
        out[table] = con.execute(f"SELECT {names} FROM {table} ORDER BY ALL").df()
    con.close()
    return out


def _new_tables() -> dict[str, pd.DataFrame]:
    return {
        "transfers": pd.DataFrame({"origin_id": "DC_B", "destination_id": ["DC_A", "DC_C"], "product_id": "P1",
                                   "quantity": [80.0, 15.0], "trucks": [1.0, 1.0], "transit_days": [1.0, 2.0],
                                   "period": [2, 3]}),
        "capacity": pd.DataFrame({"site_id": ["DC_B"], "stage": ["pick"], "base_count": [3.0], "added_count": [1.0],
                                  "total_count": [4.0], "modules": [1.0], "capex": [900.0],
                                  "extra_hours_per_day": [4.0]}),
        "costs": pd.DataFrame({"component": ["fixed"], "amount": [55.0]}),
    }


def test_old_store_read_only_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = tmp_path / "old.duckdb"
    _old_store(path)
    before = _columns(path)
    ro = RunStore(path, read_only=True)
    assert ro.schema_version() == 1
    rec = ro.run("old-0")
    assert rec["objective"] == 42.0 and rec["params"] == {"fuel": 1.0}
    assert rec["calibration"] is None and rec["scenario_spec"] is None  # columns the old store lacks
    transfers = ro.plan_tables("old-0")["transfers"]
    assert list(transfers.columns) == ["origin_id", "destination_id", "product_id", "quantity", "trucks",
                                       "transit_days", "period"]
    assert transfers["quantity"].tolist() == [120.0, 30.5] and transfers["period"].isna().all()
    assert ro.plan_tables("old-0")["capacity"]["extra_hours_per_day"].isna().all()
    df = ro.runs()
    assert df["run_id"].tolist() == ["old-0", "old-1"] and df["calibration"].isna().all()
    assert df["total_cost"].tolist() == [42.0, 43.0]
    assert ro.artifact("old-0", "basis") is None and ro.artifact_names("old-0") == []
    assert ro.verify_audit() == []
    assert ro.audit()["calibration"].isna().all()
    from engine.cli import main

    assert main(["audit", "--store", str(path)]) == 0  # read as it is: its run rows are not sealed yet, and it says so
    assert "2 run row(s) not sealed (store schema 1: sealed when a twinplan of schema 5" in capsys.readouterr().out
    with pytest.raises(StoreError, match="read-only"):
        ro.record_run({"run_id": "new-0", "status": "finished"})
    assert _columns(path) == before  # nothing created, nothing added


def test_old_store_migrates_without_touching_a_row_and_audit_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _old_store(path)
    old_columns = _columns(path)
    before = _snapshot(path, old_columns)
    store = RunStore(path)
    assert set(store.migrate()) == EXPECTED_CHANGES
    assert store.schema_version() == SCHEMA_VERSION == 5
    after = _snapshot(path, old_columns)
    for table, df in before.items():  # every old row, every old value, unchanged
        pd.testing.assert_frame_equal(after[table], df, check_dtype=True, obj=table)
    assert sum(len(df) for df in before.values()) == 12  # 1 sweep, 2 runs, 2 KPIs, 5 plan rows, 2 audit
    # a new run with today's tables: written by column name into the migrated (reordered) tables
    blob = bytes(range(256)) * 10
    new_run = {"run_id": "new-0", "sweep_id": "sw-new", "status": "finished", "objective": 7.5,
               "scenario_spec": {"name": "peak"}, "calibration": "v0003", "kpis": {"total_cost": 7.5}}
    assert store.record_run(new_run, _new_tables(), artifacts={"basis": blob},
                            audit_row={"action": "plan", "allowed": True, "user_name": "bob", "run_id": "new-0",
                                       "status": "finished", "objective": 7.5})
    rec = store.run("new-0")
    assert rec["calibration"] == "v0003" and rec["scenario_spec"] == {"name": "peak"} and rec["objective"] == 7.5
    tables = store.plan_tables("new-0")
    assert tables["transfers"]["period"].tolist() == [2, 3]
    assert tables["transfers"]["quantity"].tolist() == [80.0, 15.0]
    assert tables["capacity"]["extra_hours_per_day"].tolist() == [4.0]
    assert tables["capacity"]["capex"].tolist() == [900.0]
    assert store.artifact("new-0", "basis") == blob
    old_transfers = store.plan_tables("old-0")["transfers"]
    assert old_transfers["period"].isna().all() and old_transfers["trucks"].tolist() == [2.0, 1.0]
    aud = store.audit()
    assert aud["seq"].tolist() == [1, 2, 3]
    assert aud["calibration"].isna().tolist() == [True, True, False] and aud["calibration"].iloc[2] == "v0003"
    assert store.verify_audit() == []
    # the added column is covered by the new row's hash
    con = duckdb.connect(str(path))
    con.execute("UPDATE audit SET calibration = 'v0001' WHERE seq = 3")
    con.close()
    assert store.verify_audit() == ["audit row 3: contents changed after it was written"]
    # the old run rows were sealed by the migration to schema 5: a later edit of one is caught
    con = duckdb.connect(str(path))
    con.execute("UPDATE runs SET objective = 0, status = 'finished' WHERE run_id = 'old-1'")
    con.close()
    assert store.verify_audit() == ["audit row 3: contents changed after it was written",
                                    "run old-1: row changed after it was recorded (status, objective, KPIs or "
                                    "fingerprints do not match its seal)"]
    # opening again is a no-op
    columns = _columns(path)
    again = RunStore(path)
    assert again.migrate() == [] and again.migrations == []
    assert _columns(path) == columns and again.schema_version() == SCHEMA_VERSION


def test_migration_is_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A migration failing at its last step (a column DuckDB refuses) leaves the store exactly as it was."""
    path = tmp_path / "old.duckdb"
    _old_store(path)
    columns = _columns(path)
    before = _snapshot(path, columns)
    bad = {**store_module.TABLE_COLUMNS["plan_costs"], "note": "NO_SUCH_TYPE"}
    monkeypatch.setitem(store_module.TABLE_COLUMNS, "plan_costs", bad)
    assert list(store_module.TABLE_COLUMNS)[-1] == "plan_costs"  # after every real change
    with pytest.raises(StoreError, match=r"cannot migrate store .*old\.duckdb to schema version 5: .*NO_SUCH_TYPE"):
        RunStore(path).migrate()
    assert _columns(path) == columns  # no table created, no column added
    for table, df in _snapshot(path, columns).items():
        pd.testing.assert_frame_equal(df, before[table], obj=table)
    monkeypatch.undo()
    assert set(RunStore(path).migrate()) == EXPECTED_CHANGES


def test_plan_rows_go_in_by_column_name(tmp_path: Path) -> None:
    """A plan table whose columns stand in another order than declared still gets each value in its column."""
    path = tmp_path / "odd.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE plan_costs (amount DOUBLE, run_id VARCHAR, component VARCHAR)")
    con.close()
    store = RunStore(path)
    assert store.record_run({"run_id": "r1", "status": "finished"}, {"costs": _new_tables()["costs"]})
    costs = store.plan_tables("r1")["costs"]
    assert costs.to_dict("records") == [{"component": "fixed", "amount": 55.0}]


def test_store_of_a_newer_version_keeps_its_version(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    store = RunStore(path)
    assert f"schema_version None -> {SCHEMA_VERSION}" in store.migrate() and store.schema_version() == SCHEMA_VERSION
    con = duckdb.connect(str(path))
    con.execute(f"UPDATE meta SET value = '{SCHEMA_VERSION + 1}' WHERE key = 'schema_version'")
    con.close()
    later = RunStore(path)
    assert later.migrate() == [] and later.schema_version() == SCHEMA_VERSION + 1
    con = duckdb.connect(str(path))
    con.execute("UPDATE meta SET value = 'three' WHERE key = 'schema_version'")
    con.close()
    with pytest.raises(StoreError, match="table meta, key schema_version: 'three' is not a whole number"):
        RunStore(path).migrate()


# -- every older version, built from the declared history -----------------------------------------------------
def _changes_since(version: int, sealed_runs: int) -> set[str]:
    """What migrating a store of ``version`` reports, read from :data:`SCHEMA_CHANGES`."""
    out = set()
    for v in range(version + 1, SCHEMA_VERSION + 1):
        for item in SCHEMA_CHANGES[v]:
            table, _, column = item.partition(".")
            out.add(f"added column {table}.{column} {TABLE_COLUMNS[table][column]}" if column
                    else f"created table {table}")
    if sealed_runs and version < 5:
        out.add(f"sealed {sealed_runs} existing run row(s)")
    return out | {f"schema_version {version} -> {SCHEMA_VERSION}"}


def test_the_declared_history_is_the_first_layout(tmp_path: Path) -> None:
    path = tmp_path / "old.duckdb"
    _old_store(path)
    assert _columns(path) == {t: list(cols) for t, cols in schema_layout(1).items()}
    assert _changes_since(1, 2) == EXPECTED_CHANGES  # the hand-written list agrees with the history
    assert schema_layout(SCHEMA_VERSION) == TABLE_COLUMNS
    assert sorted(SCHEMA_CHANGES) == list(range(2, SCHEMA_VERSION + 1))


def _store_at(path: Path, version: int) -> None:
    """A store as twinplan wrote it at schema ``version``: its tables, a sweep, two runs with their KPIs."""
    layout = schema_layout(version)
    con = duckdb.connect(str(path))
    for table, cols in layout.items():
        con.execute(_create_table_sql(table, cols))
    if "meta" in layout:
        con.execute("INSERT INTO meta VALUES ('schema_version', ?)", [str(version)])
    con.execute("INSERT INTO sweeps (sweep_id, name, n_runs) VALUES ('sw', 'old sweep', 2)")
    for i, status in enumerate(["finished", "failed"]):
        con.execute("INSERT INTO runs (run_id, sweep_id, run_index, status, objective, kpis) "
                    "VALUES (?, 'sw', ?, ?, ?, ?)",
                    [f"v{version}-{i}", i, status, 10.0 * (i + 1), canonical_json({"total_cost": 10.0 * (i + 1)})])
        con.execute("INSERT INTO kpis VALUES (?, 'total_cost', ?)", [f"v{version}-{i}", 10.0 * (i + 1)])
    con.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
def test_every_older_version_migrates_without_touching_a_row(version: int, tmp_path: Path) -> None:
    path = tmp_path / f"v{version}.duckdb"
    _store_at(path, version)
    old_columns = _columns(path)
    before = _snapshot(path, old_columns)
    store = RunStore(path)
    assert set(store.migrate()) == _changes_since(version, 2)
    assert _columns(path) == {t: list(cols) for t, cols in TABLE_COLUMNS.items()} | {
        t: [*cols, *(c for c in TABLE_COLUMNS[t] if c not in cols)] for t, cols in old_columns.items()}
    after = _snapshot(path, old_columns)
    for table, df in before.items():  # every old row, every old value, unchanged (but the version recorded)
        if table != "meta":
            pd.testing.assert_frame_equal(after[table], df, obj=table)
    assert store.schema_version() == SCHEMA_VERSION and store.verify_audit() == []
    assert store.run(f"v{version}-0")["objective"] == 10.0
    assert store.record_run({"run_id": "new", "status": "finished", "objective": 1.0},
                            audit_row={"action": "plan", "allowed": True, "run_id": "new", "status": "finished"})
    assert store.verify_audit() == []
    con = duckdb.connect(str(path))
    con.execute(f"UPDATE runs SET status = 'finished' WHERE run_id = 'v{version}-1'")
    con.close()
    assert store.verify_audit() == [f"run v{version}-1: row changed after it was recorded (status, objective, KPIs "
                                    "or fingerprints do not match its seal)"]
