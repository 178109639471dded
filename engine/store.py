"""The run store: an embedded DuckDB file holding sweeps, runs, KPIs, plan tables and the audit trail.

Tables
------
``sweeps``   one row per sweep: id, name, spec hash, the spec (JSON), base instance and scenario, size.
``runs``     one row per run: id, sweep, parameters, status (:data:`RUN_STATUSES`), exit code and reason, solve
             status, objective, KPIs and timings (JSON), input hashes, solver options, seed, package versions,
             user, host, times, output folder, and its seal ``row_mac`` (see *Audit seal*).
``kpis``     the KPIs of every run, long form (run_id, kpi, value) for SQL.
``plan_*``   the plan tables of every run (``plan_flows``, ``plan_sites``, ``plan_costs``...; see
             :data:`instances.plan.PLAN_TABLES`), each with a ``run_id`` column.
``run_artifacts`` named byte strings kept with a run (run_id, name, data), e.g. a solver basis for warm starts.
``audit``    append-only: every run, allowed or refused, with its verdict and input hashes. Rows are
             hash-chained (``row_hash`` = SHA-256 of the previous row's hash and this row) and sealed
             (``row_mac`` = HMAC-SHA256 of the row hash under a key kept outside the store), and the chain's
             head is checkpointed outside the store, so :meth:`RunStore.verify_audit` detects a row changed,
             removed, appended or the whole chain recomputed, and the last rows cut off (see *Audit seal*).
``meta``     key/value: ``schema_version`` (:data:`SCHEMA_VERSION`).

Every table and column is declared once in :data:`TABLE_COLUMNS`. A store written by an older twinplan is
migrated when first opened for writing: missing tables created, missing columns added (NULL in old rows), the
version recorded, in one transaction; rows are inserted by column name, so column order never matters. Read
with ``RunStore(path, read_only=True)``, an old store is left as it is and what it lacks reads as NA.

Concurrency and crashes
-----------------------
DuckDB lets one process at a time open a file for writing. The store never keeps the file open: every read
or write opens it, does its work and closes it. A write waits for a busy file with exponential backoff up
to ``timeout`` seconds, then raises :class:`StoreLocked` naming the holder (pid, user, host, command, since)
from the lock-holder file ``<store>.holder.json`` written by whoever holds the file. Each run's rows (run,
KPIs, plan tables, audit) are written in one transaction, so a killed process leaves the whole run or
nothing, and a run id is written at most once.

``twinplan solve`` records its run ``running`` when it starts, its results ``pending`` just before its folder is
renamed into place, and ``finished`` (with the audit row) just after; an error or Ctrl-C records it ``failed`` /
``interrupted``. A process killed outright leaves ``running`` or ``pending``: the first write connection of the
next process settles such runs of dead processes of this host (:meth:`RunStore.reconcile`): ``finished`` when the
folder was published, else ``failed``, each with an audit row.

Audit seal
----------
A hash chain alone proves nothing against someone who can write the store: they can rewrite a row and
recompute every later hash with the same public function, or delete the last rows. So each audit row also
carries ``row_mac`` = HMAC-SHA256(key, ``seq|row_hash``), and after each commit the head of the chain (last
``seq`` and ``row_hash``, and the first sealed ``seq``) is written, itself under an HMAC, to a checkpoint file.
The key (32 random bytes, created on the first audit row, mode 0600) and the checkpoint live in
``$TWINPLAN_AUDIT_DIR`` when set, else beside the store: ``<store>.audit-key`` and ``<store>.audit-head``.
Rows written before a store was first sealed (by an older twinplan) keep verifying by their chain only and are
reported as unsealed. Run rows are sealed under the same key (``runs.row_mac``, HMAC of
:data:`RUN_SEALED_COLUMNS`, renewed with each change of status; schema 5 seals the rows an older store holds), and
every run the audit trail records must still be in ``runs``. What this does and does not protect against is
stated in the README (*Guarantees*).

Notebook helpers (each returns a pandas DataFrame): :func:`runs`, :func:`compare`, :func:`best`,
:func:`plan_table`, :func:`audit`, :func:`sweeps`.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import random
import secrets
import socket
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import pandas as pd

from engine.atomic import pid_alive, writer_gone
from engine.hashing import canonical_json, sha256
from engine.kpi import kpi_direction
from instances.plan import PLAN_SCHEMA, PLAN_TABLES
from solvers.result import Termination

DEFAULT_STORE = "twinplan_runs.duckdb"
"""Store file used when none is given and ``$TWINPLAN_STORE`` is unset (in the working directory)."""

RUN_DONE = "finished"
"""The run completed and its output is in place (whatever its answer: ``exit_code`` and ``solve_status`` tell
whether it found a plan, proved the scenario infeasible, ran out of time or broke an SLA)."""
RUN_FAILED = "failed"
"""The run ended with an error (``reason`` and ``error`` say which), or its process died; no output folder."""
RUN_INTERRUPTED = "interrupted"
"""The run was interrupted (Ctrl-C, exit 130); no output folder."""
RUN_RUNNING = "running"
"""A ``twinplan solve`` in progress: recorded when it starts, so that a run killed outright is still seen."""
RUN_PENDING = "pending"
"""A ``twinplan solve`` whose results are stored and whose folder is being published (milliseconds)."""
RUN_STATUSES = (RUN_DONE, RUN_FAILED, RUN_INTERRUPTED, RUN_RUNNING, RUN_PENDING)
"""Every value of ``runs.status``; :meth:`RunStore.reconcile` settles the last two for processes that died."""


DUCKDB_TYPES: dict[str, str] = {"str": "VARCHAR", "int": "INTEGER", "float": "DOUBLE", "bool": "BOOLEAN"}
"""DuckDB type of each declared dtype (:data:`instances.plan.PLAN_SCHEMA`)."""


def plan_table_types(name: str) -> dict[str, str]:
    """Columns of plan table ``name`` with their DuckDB types, read from the declaration."""
    return {c.name: DUCKDB_TYPES[c.dtype] for c in PLAN_SCHEMA[name].columns}


SCHEMA_VERSION = 5
"""Version of the store layout this code writes. 1: the first stores (no ``meta`` table); 2: ``meta``
(``schema_version``), ``run_artifacts``, ``runs.calibration``, ``audit.calibration``, ``plan_transfers.period``,
``plan_capacity.extra_hours_per_day``; 3: ``audit.row_mac`` (the keyed seal); 4: ``calibration_findings``;
5: ``runs.exit_code``, ``runs.reason``, ``runs.out_dir`` and ``runs.row_mac`` (run rows sealed too; the migration
seals the rows already there). Opening an older store for writing migrates it (:meth:`RunStore.migrate`)."""

TABLE_COLUMNS: dict[str, dict[str, str]] = {
    "meta": {"key": "VARCHAR", "value": "VARCHAR"},
    "sweeps": {"sweep_id": "VARCHAR", "name": "VARCHAR", "spec_hash": "VARCHAR", "spec": "VARCHAR",
               "instance": "VARCHAR", "scenario": "VARCHAR", "n_runs": "INTEGER", "seed": "BIGINT",
               "user_name": "VARCHAR", "host": "VARCHAR", "created_at": "TIMESTAMP"},
    "runs": {"run_id": "VARCHAR", "sweep_id": "VARCHAR", "run_index": "INTEGER", "name": "VARCHAR",
             "input_hash": "VARCHAR", "params": "VARCHAR", "modifications": "VARCHAR", "scenario_spec": "VARCHAR",
             "instance": "VARCHAR", "instance_path": "VARCHAR", "scenario": "VARCHAR", "scenario_class": "VARCHAR",
             "decision": "VARCHAR", "status": "VARCHAR", "solve_status": "VARCHAR", "objective": "DOUBLE",
             "simulation_feasible": "BOOLEAN", "plan_hash": "VARCHAR", "error": "VARCHAR", "kpis": "VARCHAR",
             "timings": "VARCHAR", "wall_seconds": "DOUBLE", "solver": "VARCHAR", "solver_options": "VARCHAR",
             "seed": "BIGINT", "warm_start": "VARCHAR", "hashes": "VARCHAR", "versions": "VARCHAR",
             "user_name": "VARCHAR", "host": "VARCHAR", "pid": "INTEGER", "executor": "VARCHAR",
             "started_at": "TIMESTAMP", "finished_at": "TIMESTAMP", "calibration": "VARCHAR", "exit_code": "INTEGER",
             "reason": "VARCHAR", "out_dir": "VARCHAR", "row_mac": "VARCHAR"},
    "kpis": {"run_id": "VARCHAR", "kpi": "VARCHAR", "value": "DOUBLE"},
    "audit": {"seq": "BIGINT", "time": "TIMESTAMP", "user_name": "VARCHAR", "host": "VARCHAR", "pid": "INTEGER",
              "action": "VARCHAR", "allowed": "BOOLEAN", "rule": "VARCHAR", "reason": "VARCHAR", "policy": "VARCHAR",
              "instance": "VARCHAR", "scenario": "VARCHAR", "scenario_class": "VARCHAR", "decision": "VARCHAR",
              "run_id": "VARCHAR", "sweep_id": "VARCHAR", "input_hash": "VARCHAR", "hashes": "VARCHAR",
              "status": "VARCHAR", "objective": "DOUBLE", "plan_hash": "VARCHAR", "detail": "VARCHAR",
              "prev_hash": "VARCHAR", "row_hash": "VARCHAR", "calibration": "VARCHAR", "row_mac": "VARCHAR"},
    "run_artifacts": {"run_id": "VARCHAR", "name": "VARCHAR", "data": "BLOB"},
    "calibration_findings": {"run_id": "VARCHAR", "seq": "INTEGER", "created_at": "TIMESTAMP", "site_id": "VARCHAR",
                             "stage": "VARCHAR", "metric": "VARCHAR", "window_start": "VARCHAR",
                             "window_end": "VARCHAR", "predicted": "DOUBLE", "actual": "DOUBLE",
                             "predicted_change": "DOUBLE", "actual_change": "DOUBLE", "gap": "DOUBLE",
                             "flagged": "BOOLEAN", "parameter": "VARCHAR", "current": "DOUBLE", "refit": "DOUBLE",
                             "calibration": "VARCHAR", "actuals_file": "VARCHAR", "actuals_sha256": "VARCHAR",
                             "user_name": "VARCHAR"},
    **{f"plan_{name}": {"run_id": "VARCHAR", **plan_table_types(name)} for name in PLAN_SCHEMA},
}
"""Every table of the store and its columns with their DuckDB types: the one declaration that creating a store
and migrating an old one both read. A column added later goes at the end of its table (where ``ALTER TABLE ...
ADD COLUMN`` puts it in an old store), with :data:`SCHEMA_VERSION` raised."""

SCHEMA_CHANGES: dict[int, tuple[str, ...]] = {
    2: ("meta", "run_artifacts", "runs.scenario_spec", "runs.calibration", "audit.calibration",
        "plan_transfers.period", "plan_capacity.extra_hours_per_day"),
    3: ("audit.row_mac",),
    4: ("calibration_findings",),
    5: ("runs.exit_code", "runs.reason", "runs.out_dir", "runs.row_mac"),
}
"""What each schema version added to the one before it (a table, or ``table.column``); version 1 is
:func:`schema_layout` (1). A new version adds its entry here with :data:`SCHEMA_VERSION` raised."""


def schema_layout(version: int) -> dict[str, dict[str, str]]:
    """The tables and columns of schema ``version``: :data:`TABLE_COLUMNS` less what later versions added (what an
    older twinplan created; the migration tests build old stores from it)."""
    later = {item for v, items in SCHEMA_CHANGES.items() if v > version for item in items}
    return {table: {c: t for c, t in cols.items() if f"{table}.{c}" not in later}
            for table, cols in TABLE_COLUMNS.items() if table not in later}


PRIMARY_KEYS: dict[str, tuple[str, ...]] = {
    "meta": ("key",), "sweeps": ("sweep_id",), "runs": ("run_id",), "kpis": ("run_id", "kpi"), "audit": ("seq",),
    "run_artifacts": ("run_id", "name"), "calibration_findings": ("run_id", "seq")}


def _create_table_sql(table: str, columns: dict[str, str] | None = None) -> str:
    cols = ", ".join(f'"{c}" {t}' for c, t in (columns or TABLE_COLUMNS[table]).items())
    key = PRIMARY_KEYS.get(table)
    return f"CREATE TABLE IF NOT EXISTS {table} ({cols}" + (f", PRIMARY KEY ({', '.join(key)}))" if key else ")")


SCHEMA_SQL = [_create_table_sql(t) for t in TABLE_COLUMNS]

RUN_COLUMNS = tuple(TABLE_COLUMNS["runs"])
_JSON_RUN_COLUMNS = ("params", "modifications", "scenario_spec", "kpis", "timings", "solver_options", "hashes",
                     "versions")
_AUDIT_V1_COLUMNS = ("time", "user_name", "host", "pid", "action", "allowed", "rule", "reason", "policy", "instance",
                     "scenario", "scenario_class", "decision", "run_id", "sweep_id", "input_hash", "hashes", "status",
                     "objective", "plan_hash", "detail")
AUDIT_COLUMNS = (*_AUDIT_V1_COLUMNS, "calibration")
"""Audit columns a caller fills. The hash of a row covers the first ones always and a later-added one (such as
``calibration``) only when it holds a value, so rows written before the column existed still verify."""

RUN_SEALED_COLUMNS = ("run_id", "sweep_id", "run_index", "name", "instance", "scenario", "scenario_class", "decision",
                      "status", "solve_status", "objective", "simulation_feasible", "plan_hash", "input_hash",
                      "hashes", "kpis", "error", "exit_code", "reason", "out_dir", "solver", "solver_options", "seed",
                      "user_name", "started_at", "finished_at", "calibration")
"""Columns of a run row covered by its seal ``runs.row_mac`` (schema version 5): what the run was, how it ended,
its KPIs and its input and plan fingerprints."""
RUN_OUTCOME_STATUSES = (RUN_DONE, RUN_FAILED, RUN_INTERRUPTED)
"""Run statuses an audit row records for a run that must then exist in ``runs`` (actions :data:`RUN_ACTIONS`)."""
RUN_ACTIONS = ("plan", "sweep_run")
"""Audit actions that record a run in ``runs``."""


def _run_mac(key: bytes, values: tuple[Any, ...]) -> str:
    """HMAC of a run row's sealed columns (as DuckDB returns them), so that the seal reads back identically."""
    plain = {}
    for c, v in zip(RUN_SEALED_COLUMNS, values, strict=True):
        if isinstance(v, datetime):
            v = v.isoformat()
        elif isinstance(v, float):
            v = repr(v)
        plain[c] = v
    return _mac(key, "run|" + canonical_json(plain))


def _seal_runs(con: duckdb.DuckDBPyConnection, key: bytes, run_ids: Any = None) -> int:
    """(Re)compute ``row_mac`` of the given runs (all when None) from their stored values; returns how many."""
    cols = ", ".join(f'"{c}"' for c in RUN_SEALED_COLUMNS)
    if run_ids is None:
        rows = con.execute(f"SELECT {cols} FROM runs").fetchall()
    else:
        rows = [r for rid in dict.fromkeys(run_ids)
                for r in con.execute(f"SELECT {cols} FROM runs WHERE run_id = ?", [rid]).fetchall()]
    for r in rows:
        con.execute("UPDATE runs SET row_mac = ? WHERE run_id = ?", [_run_mac(key, r), r[0]])
    return len(rows)


class StoreLocked(RuntimeError):
    """Another process holds the store for writing longer than we were willing to wait."""


class StoreError(ValueError):
    """The store file is unusable (not a DuckDB file, or a run that does not exist)."""


AUDIT_DIR_ENV = "TWINPLAN_AUDIT_DIR"
"""Environment variable naming the folder of the audit key and checkpoint (default: the store's folder)."""

DUCKDB_MAGIC = b"DUCK"
"""The 4 bytes at offset 8 of every DuckDB database file."""


def is_duckdb_file(path: str | Path) -> bool:
    """Whether ``path`` is a DuckDB database file by its header (an empty or missing file is not)."""
    try:
        with open(path, "rb") as f:
            head = f.read(12)
    except OSError:
        return False
    return len(head) == 12 and head[8:12] == DUCKDB_MAGIC


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def utcnow() -> datetime:
    """Naive UTC now (the store's timestamps are UTC)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _json(value: Any) -> str | None:
    return None if value is None else canonical_json(value)


class RunStore:
    """A DuckDB run store file (created with its tables on first use).

    Parameters
    ----------
    path : the ``.duckdb`` file (default: ``$TWINPLAN_STORE``, else :data:`DEFAULT_STORE`)
    timeout : seconds a write waits for another writer before :class:`StoreLocked`
    read_only : only read: never create, migrate or write the file (an old store is read as it is, the columns
        and tables it lacks coming back as NA / empty)

    The first connection of a writable store opens it for writing and brings its tables up to
    :data:`SCHEMA_VERSION` (:meth:`migrate`); later reads share the file.
    """

    def __init__(self, path: str | Path | None = None, timeout: float = 60.0, read_only: bool = False) -> None:
        self.path = Path(path or os.environ.get("TWINPLAN_STORE") or DEFAULT_STORE)
        if str(self.path) == ":memory:":
            raise StoreError("store :memory: keeps nothing (every operation opens the store anew): runs and their "
                             "audit rows must go to a file; give --store FILE.duckdb")
        self.timeout = float(timeout)
        self.read_only = bool(read_only)
        self._ready = False
        self._pending_head: tuple[bytes, int, str, int] | None = None
        self.migrations: list[str] = []
        """What the migration on first opening did (empty: the store was up to date)."""
        self.reconciled: list[str] = []
        """What the reconciliation on first opening for writing did (:meth:`reconcile`), one message per run."""

    # -- connections -----------------------------------------------------------------------------
    @property
    def holder_file(self) -> Path:
        """The JSON file beside the store naming the process that holds its write lock."""
        return self.path.with_name(self.path.name + ".holder.json")

    @property
    def audit_dir(self) -> Path:
        """Folder of the audit key and checkpoint: ``$TWINPLAN_AUDIT_DIR``, else the store's folder."""
        env = os.environ.get(AUDIT_DIR_ENV)
        return Path(env) if env else self.path.parent

    @property
    def audit_key_file(self) -> Path:
        """The audit key: ``<audit_dir>/<store file name>.audit-key`` (32 random bytes as hex, mode 0600)."""
        return self.audit_dir / f"{self.path.name}.audit-key"

    @property
    def audit_head_file(self) -> Path:
        """The checkpoint of the audit chain's head: ``<audit_dir>/<store file name>.audit-head`` (JSON)."""
        return self.audit_dir / f"{self.path.name}.audit-head"

    def _audit_key(self, create: bool = False) -> bytes | None:
        """The audit key (created with mode 0600 when ``create`` and absent); None when there is none."""
        f = self.audit_key_file
        try:
            return bytes.fromhex(f.read_text().strip())
        except FileNotFoundError:
            if not create:
                return None
        except ValueError:
            raise StoreError(f"audit key {f}: not a hex key") from None
        f.parent.mkdir(parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        try:
            fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another writer created it first
            return bytes.fromhex(f.read_text().strip())
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex() + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        return key

    def _read_head(self) -> dict[str, Any] | None:
        try:
            return json.loads(self.audit_head_file.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            return {"error": str(exc)}

    def _write_head(self, key: bytes, seq: int, row_hash: str, sealed_from: int) -> None:
        """Checkpoint the chain's head (atomically: a temporary file renamed over the old one)."""
        head = {"store": self.path.name, "seq": seq, "row_hash": row_hash, "sealed_from": sealed_from,
                "mac": _mac(key, f"head|{self.path.name}|{seq}|{row_hash}|{sealed_from}")}
        tmp = self.audit_head_file.with_name(self.audit_head_file.name + f".tmp-{os.getpid()}")
        tmp.write_text(json.dumps(head))
        os.replace(tmp, self.audit_head_file)

    def holder(self) -> dict[str, Any] | None:
        """Who holds the store for writing (from the holder file; None when nobody or the holder died)."""
        try:
            info = json.loads(self.holder_file.read_text())
        except (OSError, ValueError):
            return None
        if info.get("host") == socket.gethostname() and not pid_alive(int(info.get("pid", -1))):
            return None
        return info

    def _locked_message(self, exc: Exception, waited: float) -> str:
        info = self.holder()
        if info:
            who = (f"pid {info.get('pid')} (user {info.get('user')} on {info.get('host')}, since {info.get('since')}, "
                   f"running {info.get('command')!r})")
        else:
            who = f"another process ({str(exc).split(':', 2)[-1].strip()})"
        return f"store {self.path} is locked by {who}; gave up after waiting {waited:.1f} s"

    def _open(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        start = time.monotonic()
        delay = 0.02
        while True:
            try:
                return duckdb.connect(str(self.path), read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower():
                    raise StoreError(f"cannot open store {self.path}: {exc}") from None
                waited = time.monotonic() - start
                if waited >= self.timeout:
                    raise StoreLocked(self._locked_message(exc, waited)) from None
                time.sleep(min(delay * (0.5 + random.random()), max(self.timeout - waited, 0.0)))
                delay = min(delay * 1.6, 1.0)
            except duckdb.Error as exc:
                raise StoreError(f"cannot open store {self.path}: {exc}") from None

    @contextlib.contextmanager
    def connect(self, write: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """An open connection for the duration of the block (write: exclusive, with the holder file)."""
        if write and self.read_only:
            raise StoreError(f"store {self.path} was opened read-only; cannot write to it")
        # the first use in a process writes (creates or migrates the tables); later reads share the file
        write_first = write or (not self.read_only and (not self._ready or not self.path.exists()))
        con = self._open(read_only=not write_first)
        holder_written = False
        try:
            if write_first:
                from engine.governance import current_user

                self.holder_file.write_text(json.dumps({
                    "pid": os.getpid(), "user": current_user(), "host": socket.gethostname(),
                    "since": utcnow().isoformat(timespec="seconds"), "command": " ".join(sys.argv)[:200]}))
                holder_written = True
                if not self._ready:
                    self.migrations = _migrate(con, self.path, lambda: self._migration_key(con))
                    self._ready = True
                    self.reconciled = self._reconcile(con)
            yield con
        except (duckdb.IOException, duckdb.InternalException, duckdb.SerializationException) as exc:
            raise StoreError(f"store {self.path}: cannot read or write the file (damaged or truncated, or the "
                             f"disk is full): {str(exc).splitlines()[0]}") from None
        finally:
            if holder_written:
                with contextlib.suppress(OSError):
                    self.holder_file.unlink()
            con.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write connection inside one transaction: committed at the end, rolled back on any error."""
        with self.connect(write=True) as con:
            con.begin()
            self._pending_head = None
            try:
                yield con
            except BaseException:
                con.rollback()
                self._pending_head = None
                raise
            con.commit()
            if self._pending_head is not None:  # still holding the file: no other writer in between
                self._write_head(*self._pending_head)
                self._pending_head = None

    def query(self, sql: str, params: list[Any] | None = None) -> pd.DataFrame:
        """Run a read query and return a DataFrame."""
        with self.connect() as con:
            return con.execute(sql, params or []).df()

    def migrate(self) -> list[str]:
        """Bring the store's tables up to :data:`SCHEMA_VERSION` now: create missing tables, add missing columns
        (NULL in existing rows), record the version, all in one transaction. Returns what it changed (empty when
        the store was up to date; a second call is a no-op). Done anyway by the first write of a RunStore."""
        fresh = not self._ready
        with self.connect(write=True) as con:
            return list(self.migrations) if fresh else _migrate(con, self.path)

    def schema_version(self) -> int | None:
        """The layout version recorded in the store (1: a store from before versions were kept; None: no store)."""
        if not self.path.exists():
            return None
        with self.connect() as con:
            return _stored_version(con, _existing_columns(con), self.path)

    # -- writes ----------------------------------------------------------------------------------
    def record_sweep(self, sweep_id: str, name: str, spec: dict[str, Any], spec_hash: str, instance: str,
                     scenario: str | None, n_runs: int, seed: int | None, user: str) -> bool:
        """Record a sweep once (returns False when it was already recorded: a resumed sweep)."""
        with self.transaction() as con:
            if con.execute("SELECT 1 FROM sweeps WHERE sweep_id = ?", [sweep_id]).fetchone():
                return False
            cols = tuple(TABLE_COLUMNS["sweeps"])
            con.execute(f"INSERT INTO sweeps ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                        [sweep_id, name, spec_hash, _json(spec), instance, scenario, n_runs, seed, user,
                         socket.gethostname(), utcnow()])
            return True

    def finished_runs(self, sweep_id: str | None = None, include_failed: bool = True) -> set[str]:
        """Ids of the runs already recorded (of one sweep when given)."""
        if not self.path.exists():
            return set()
        statuses = [RUN_DONE, RUN_FAILED] if include_failed else [RUN_DONE]
        sql = f"SELECT run_id FROM runs WHERE status IN ({', '.join('?' * len(statuses))})"
        params: list[Any] = list(statuses)
        if sweep_id is not None:
            sql += " AND sweep_id = ?"
            params.append(sweep_id)
        with self.connect() as con:
            return {r[0] for r in con.execute(sql, params).fetchall()}

    def record_run(self, run: dict[str, Any], plan_tables: dict[str, pd.DataFrame] | None = None,
                   audit_row: dict[str, Any] | None = None, replace_failed: bool = True,
                   artifacts: dict[str, bytes] | None = None) -> bool:
        """Write one run (row, KPIs, plan tables, artifacts, audit row) in one transaction.

        ``artifacts`` (default: ``run["_artifacts"]``) are named byte strings kept with the run, e.g. a solver
        basis for warm starts; read them back with :meth:`artifact`. The audit row gets the run's
        ``calibration`` when it has none. Returns False, writing nothing, when the run id is already recorded
        as finished (or as failed and ``replace_failed`` is false); a failed run being retried is replaced whole
        (artifacts included).
        """
        blobs = _artifact_items(run.get("_artifacts") if artifacts is None else artifacts)
        row = {c: run.get(c) for c in RUN_COLUMNS}
        for c in _JSON_RUN_COLUMNS:
            if row[c] is not None and not isinstance(row[c], str):
                row[c] = _json(row[c])
        run_id = row["run_id"]
        if not run_id:
            raise ValueError("record_run: the run needs a run_id")
        with self.transaction() as con:
            key = self._write_key(con)
            prev = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()
            if prev is not None:
                if prev[0] == RUN_DONE or not replace_failed:
                    return False
                for table in ["runs", "kpis", "run_artifacts", *(f"plan_{n}" for n in PLAN_TABLES)]:
                    con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
            con.execute(f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) VALUES ({', '.join('?' * len(RUN_COLUMNS))})",
                        [row[c] for c in RUN_COLUMNS])
            kpis = run.get("kpis") or {}
            if isinstance(kpis, str):
                kpis = json.loads(kpis)
            values = [(run_id, str(k), float(v)) for k, v in kpis.items() if _is_number(v)]
            if values:
                con.executemany("INSERT INTO kpis (run_id, kpi, value) VALUES (?, ?, ?)", values)
            for name, df in (plan_tables or {}).items():
                if name in PLAN_TABLES and df is not None and len(df):
                    _insert_plan_table(con, name, run_id, df)
            if blobs:
                con.executemany("INSERT INTO run_artifacts (run_id, name, data) VALUES (?, ?, ?)",
                                [(run_id, name, data) for name, data in blobs])
            _seal_runs(con, key, [run_id])
            if audit_row is not None:
                if audit_row.get("calibration") is None and row["calibration"] is not None:
                    audit_row = {**audit_row, "calibration": row["calibration"]}
                self._append_audit(con, audit_row)
        return True

    def finish_runs(self, run_ids: list[str], audit_rows: list[dict[str, Any]] | tuple = ()) -> None:
        """Mark staged runs (recorded ``pending`` by :meth:`record_run`) finished and append their audit rows, in
        one transaction: the last step of ``twinplan solve``, right after its run folder was published."""
        with self.transaction() as con:
            key = self._write_key(con)
            for rid in run_ids:
                hit = con.execute("SELECT status FROM runs WHERE run_id = ?", [rid]).fetchone()
                if hit is None or hit[0] != RUN_PENDING:
                    raise StoreError(f"run {rid}: not pending in store {self.path} (status "
                                     f"{'none' if hit is None else hit[0]}); nothing was written")
                con.execute("UPDATE runs SET status = ? WHERE run_id = ?", [RUN_DONE, rid])
            _seal_runs(con, key, run_ids)
            for r in audit_rows:
                self._append_audit(con, r)

    def reconcile(self) -> list[str]:
        """Settle the runs left ``running`` or ``pending`` by processes of this host that are no longer alive (no
        process has the pid, or the one that has it started after the run: the pid was reused); one message per
        run. Done anyway when a writable store is first opened (messages in :attr:`reconciled`).

        A ``pending`` run whose folder (``out_dir``) was published (its ``run.json`` names the run and its
        ``result.json`` is there) was killed between the rename and the store's commit: it becomes ``finished``.
        Any other becomes ``failed`` with the reason, its staged KPIs and plan tables removed (it has no folder).
        Each gets an audit row. Runs of other hosts are left alone (their processes cannot be checked from here).
        """
        with self.connect(write=True) as con:
            return list(self.reconciled) + self._reconcile(con)

    def _write_key(self, con: duckdb.DuckDBPyConnection) -> bytes:
        """The key that seals what this transaction writes; refused while the audit trail is not as sealed."""
        if self._pending_head is not None:
            return self._pending_head[0]
        problem = self._seal_problem(con)
        if problem:
            raise StoreError(f"{problem}; nothing was written. Run `twinplan audit` to see what changed.")
        key = self._audit_key(create=True)
        assert key is not None
        return key

    def _migration_key(self, con: duckdb.DuckDBPyConnection) -> bytes | None:
        """The key to seal the run rows of a store migrated to version 5 (None while its trail is not as sealed:
        those rows then stay unsealed and `twinplan audit` says so)."""
        return None if self._seal_problem(con) else self._audit_key(create=True)

    def _reconcile(self, con: duckdb.DuckDBPyConnection) -> list[str]:
        try:
            rows = con.execute("SELECT run_id, status, pid, host, out_dir, started_at FROM runs "
                               "WHERE status IN (?, ?)", [RUN_RUNNING, RUN_PENDING]).fetchall()
        except (duckdb.CatalogException, duckdb.BinderException):
            return []
        here = socket.gethostname()
        stale = [r[:5] for r in rows if r[3] == here and r[2] is not None and int(r[2]) != os.getpid()
                 and writer_gone(int(r[2]), r[5])]
        if not stale or self._seal_problem(con):
            return []
        messages: list[str] = []
        audit_cols = ("user_name", "instance", "scenario", "scenario_class", "decision", "run_id", "sweep_id",
                      "input_hash", "hashes", "objective", "plan_hash", "calibration")
        con.begin()
        self._pending_head = None
        try:
            key = self._write_key(con)
            for run_id, status, pid, host, out_dir in stale:
                if status == RUN_PENDING and _folder_holds(out_dir, run_id):
                    new, note = RUN_DONE, (f"run {run_id}: its process (pid {pid}) ended after publishing {out_dir} "
                                           "but before recording the run finished; recorded as finished now")
                    con.execute("UPDATE runs SET status = ? WHERE run_id = ?", [RUN_DONE, run_id])
                else:
                    where = f"; its folder {out_dir} was not published" if out_dir else ""
                    reason = f"its process (pid {pid} on {host}) ended before the run was finished (killed){where}"
                    new, note = RUN_FAILED, f"run {run_id}: {reason}; recorded as failed"
                    con.execute("UPDATE runs SET status = ?, reason = ?, error = coalesce(error, ?), "
                                "finished_at = coalesce(finished_at, ?) WHERE run_id = ?",
                                [RUN_FAILED, reason, "killed", utcnow(), run_id])
                    for table in ["kpis", "run_artifacts", *(f"plan_{n}" for n in PLAN_TABLES)]:
                        con.execute(f"DELETE FROM {table} WHERE run_id = ?", [run_id])
                _seal_runs(con, key, [run_id])
                rec = con.execute(f"SELECT {', '.join(audit_cols)} FROM runs WHERE run_id = ?", [run_id]).fetchone()
                row = dict(zip(audit_cols, rec, strict=True))
                self._append_audit(con, {**row, "action": "plan", "allowed": True, "status": new,
                                         "objective": row["objective"] if new == RUN_DONE else None,
                                         "detail": "reconciled: " + note.split(": ", 1)[1]})
                messages.append(note)
        except BaseException:
            con.rollback()
            self._pending_head = None
            raise
        con.commit()
        if self._pending_head is not None:
            self._write_head(*self._pending_head)
            self._pending_head = None
        return messages

    def append_audit(self, *rows: dict[str, Any]) -> None:
        """Append audit rows (one transaction); the audit table has no update or delete."""
        with self.transaction() as con:
            for r in rows:
                self._append_audit(con, r)

    def _append_audit(self, con: duckdb.DuckDBPyConnection, row: dict[str, Any]) -> None:
        last = con.execute("SELECT seq, row_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        seq, prev_hash = (0, "") if last is None else (int(last[0]), str(last[1]))
        if self._pending_head is not None:  # a later row of the same transaction
            key, sealed_from = self._pending_head[0], self._pending_head[3]
        else:
            problem = self._seal_problem(con)  # never extend a trail cut short, rewritten or stripped of its seal
            if problem:
                raise StoreError(f"{problem}; nothing was written. Run `twinplan audit` to see what changed.")
            head = self._read_head()
            key = self._audit_key(create=head is None)
            sealed_from = int(head["sealed_from"]) if head else seq + 1
        values = {c: row.get(c) for c in AUDIT_COLUMNS}
        values["time"] = values["time"] or utcnow()
        values["pid"] = values["pid"] if values["pid"] is not None else os.getpid()
        values["host"] = values["host"] or socket.gethostname()
        if values["objective"] is not None and (not _is_number(values["objective"]) or _is_na(values["objective"])):
            values["objective"] = None
        if values["hashes"] is not None and not isinstance(values["hashes"], str):
            values["hashes"] = _json(values["hashes"])
        row_hash = _audit_row_hash(seq + 1, values, prev_hash)
        row_mac = _mac(key, f"{seq + 1}|{row_hash}")
        cols = ["seq", *AUDIT_COLUMNS, "prev_hash", "row_hash", "row_mac"]
        con.execute(f"INSERT INTO audit ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                    [seq + 1, *(values[c] for c in AUDIT_COLUMNS), prev_hash, row_hash, row_mac])
        self._pending_head = (key, seq + 1, row_hash, sealed_from)

    def record_findings(self, run_id: str, findings: pd.DataFrame, audit_row: dict[str, Any] | None = None) -> int:
        """Store plan-versus-outcome findings with a run (``twinplan track``), numbered after the run's earlier
        ones, and an audit row, in one transaction. Returns the number of rows written."""
        cols = [c for c in TABLE_COLUMNS["calibration_findings"] if c not in ("run_id", "seq", "created_at")]
        with self.transaction() as con:
            last = con.execute("SELECT max(seq) FROM calibration_findings WHERE run_id = ?", [run_id]).fetchone()
            seq = int(last[0]) if last and last[0] is not None else 0
            now = utcnow()
            for i, r in enumerate(findings.to_dict("records"), start=1):
                values = [None if _is_na(r.get(c)) else r.get(c) for c in cols]
                con.execute(f"INSERT INTO calibration_findings (run_id, seq, created_at, {', '.join(cols)}) "
                            f"VALUES ({', '.join('?' * (len(cols) + 3))})", [run_id, seq + i, now, *values])
            if audit_row is not None:
                self._append_audit(con, audit_row)
        return len(findings)

    def findings(self, run_id: str | None = None, instance: str | None = None) -> pd.DataFrame:
        """Stored plan-versus-outcome findings (of one run, or of an instance's runs), oldest first."""
        cols = list(TABLE_COLUMNS["calibration_findings"])
        with self.connect() as con:
            have = _existing_columns(con)
            if "calibration_findings" not in have:
                return pd.DataFrame(columns=cols)
            sql = "SELECT f.* FROM calibration_findings f"
            params: list[Any] = []
            if instance is not None:
                sql += " JOIN runs r ON r.run_id = f.run_id WHERE r.instance = ?"
                params.append(instance)
            if run_id is not None:
                sql += (" AND" if params else " WHERE") + " f.run_id = ?"
                params.append(run_id)
            return con.execute(sql + " ORDER BY f.created_at, f.run_id, f.seq", params).df()

    # -- reads -----------------------------------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any]:
        """One run as a dict (JSON columns decoded, ``solve_status`` a :class:`solvers.Termination`); a unique id
        prefix is accepted."""
        with self.connect() as con:
            rows = con.execute("SELECT * FROM runs WHERE run_id = ? OR run_id LIKE ? ORDER BY run_id",
                               [run_id, run_id + "%"]).df()
        exact = rows[rows["run_id"] == run_id]
        if len(exact) == 1:
            rows = exact
        if len(rows) != 1:
            hint = "no such run" if rows.empty else f"ambiguous prefix ({len(rows)} runs)"
            raise StoreError(f"run {run_id!r}: {hint} in store {self.path}")
        rec = {k: (None if _is_na(v) else v) for k, v in rows.iloc[0].to_dict().items()}
        rec.update({c: None for c in RUN_COLUMNS if c not in rec})  # columns an old store lacks
        for c in _JSON_RUN_COLUMNS:
            if isinstance(rec.get(c), str):
                rec[c] = json.loads(rec[c])
        if rec.get("solve_status") is not None:  # text in the file, the enum in memory
            rec["solve_status"] = Termination.parse(rec["solve_status"])
        return rec

    def plan_tables(self, run_id: str) -> dict[str, pd.DataFrame]:
        """Every plan table of a run, with the declared columns (NA where an old store lacks one)."""
        out = {}
        with self.connect() as con:
            for name, cols in PLAN_TABLES.items():
                df = _with_columns(con.execute(f"SELECT * EXCLUDE (run_id) FROM plan_{name} WHERE run_id = ?",
                                               [run_id]).df(), cols)
                out[name] = df[[*cols, *(c for c in df.columns if c not in cols)]]
        return out

    def _artifact_rows(self, sql: str, params: list[Any]) -> list[tuple[Any, ...]]:
        """Rows of a query on ``run_artifacts``: none when the store or the table (an old store read read-only)
        does not exist."""
        if not self.path.exists():
            return []
        with self.connect() as con:
            try:
                return con.execute(sql, params).fetchall()
            except duckdb.CatalogException:  # a store from before artifacts, read read-only
                return []

    def artifact(self, run_id: str, name: str) -> bytes | None:
        """The bytes of a run's artifact ``name`` (None when the run has no such artifact)."""
        hit = self._artifact_rows("SELECT data FROM run_artifacts WHERE run_id = ? AND name = ?", [run_id, name])
        return bytes(hit[0][0]) if hit else None

    def artifact_names(self, run_id: str) -> list[str]:
        """The names of a run's artifacts, sorted."""
        return [r[0] for r in self._artifact_rows("SELECT name FROM run_artifacts WHERE run_id = ? ORDER BY name",
                                                  [run_id])]

    def runs(self, sweep: str | None = None, status: str | None = None, with_kpis: bool = True,
             with_params: bool = True) -> pd.DataFrame:
        """Runs (of one sweep / with one status), KPIs and parameters as columns (``param_<name>``)."""
        if not self.path.exists():
            return pd.DataFrame(columns=list(RUN_COLUMNS))
        sql, params = "SELECT * FROM runs WHERE 1=1", []
        if sweep is not None:
            sql += " AND (sweep_id = ? OR sweep_id LIKE ?)"
            params += [sweep, sweep + "%"]
        if status is not None:
            sql += " AND status = ?"
            params.append(status)
        sql += " ORDER BY sweep_id, run_index, run_id"
        with self.connect() as con:
            df = _with_columns(con.execute(sql, params).df(), RUN_COLUMNS)
            kp = con.execute("SELECT * FROM kpis").df() if with_kpis else None
        if with_params and len(df):
            p = pd.json_normalize([json.loads(x) if isinstance(x, str) else {} for x in df["params"]], sep=".")
            p.columns = [f"param_{c}" for c in p.columns]
            df = pd.concat([df.reset_index(drop=True), p], axis=1)
        if with_kpis and kp is not None and len(kp) and len(df):
            wide = kp[kp["run_id"].isin(df["run_id"])].pivot(index="run_id", columns="kpi", values="value")
            wide = wide[[c for c in wide.columns if c not in df.columns]]
            df = df.merge(wide, left_on="run_id", right_index=True, how="left")
        return df

    def sweeps(self) -> pd.DataFrame:
        """Sweeps with their counts of finished and failed runs."""
        if not self.path.exists():
            return pd.DataFrame()
        return self.query("""
            SELECT s.sweep_id, s.name, s.instance, s.scenario, s.n_runs, s.user_name, s.created_at,
                   count(r.run_id) FILTER (WHERE r.status = 'finished') AS finished,
                   count(r.run_id) FILTER (WHERE r.status = 'failed') AS failed
            FROM sweeps s LEFT JOIN runs r USING (sweep_id)
            GROUP BY ALL ORDER BY s.created_at""")

    def audit(self, since: str | datetime | None = None, user: str | None = None) -> pd.DataFrame:
        """The audit trail in order (since a time / of one user)."""
        if not self.path.exists():
            return pd.DataFrame(columns=["seq", *AUDIT_COLUMNS])
        sql, params = "SELECT * FROM audit WHERE 1=1", []
        if since is not None:
            sql += " AND time >= ?"
            params.append(pd.Timestamp(since).to_pydatetime().replace(tzinfo=None))
        if user is not None:
            sql += " AND user_name = ?"
            params.append(user)
        return _with_columns(self.query(sql + " ORDER BY seq", params), ["seq", *AUDIT_COLUMNS, "prev_hash",
                                                                           "row_hash", "row_mac"])

    def verify_audit(self) -> list[str]:
        """Problems in the audit trail (empty when intact): the hash chain, each row's keyed seal, and the
        chain's head against the checkpoint kept outside the store (see *Audit seal* in the module docstring)."""
        df = self.audit()
        problems, prev = [], ""
        for i, rec in enumerate(df.to_dict("records")):
            seq = int(rec["seq"])
            if seq != i + 1:
                problems.append(f"audit row {i + 1}: sequence number {seq} (a row is missing)")
            values = {c: (None if _is_na(rec[c]) else rec[c]) for c in AUDIT_COLUMNS}
            if rec["prev_hash"] != prev:
                problems.append(f"audit row {seq}: chain broken (prev_hash does not match row {seq - 1})")
            if _audit_row_hash(seq, values, rec["prev_hash"]) != rec["row_hash"]:
                problems.append(f"audit row {seq}: contents changed after it was written")
            prev = rec["row_hash"]
        return problems + self._verify_seal(df) + self.verify_runs(df)

    def verify_runs(self, audit_rows: pd.DataFrame | None = None) -> list[str]:
        """Problems with the run rows (empty when intact): each row's seal ``row_mac`` (HMAC of
        :data:`RUN_SEALED_COLUMNS` under the audit key) must match, and every run the audit trail records
        (actions :data:`RUN_ACTIONS`) must still be in ``runs``. A store from before version 5, read read-only,
        has no run seals: nothing to check."""
        if not self.path.exists():
            return []
        cols = ", ".join(f'"{c}"' for c in RUN_SEALED_COLUMNS)
        with self.connect() as con:
            have = _existing_columns(con)
            if "row_mac" not in have.get("runs", []):
                return []
            rows = con.execute(f"SELECT {cols}, row_mac FROM runs ORDER BY run_id").fetchall()
        df = self.audit() if audit_rows is None else audit_rows
        problems: list[str] = []
        key = self._audit_key()
        if key is None and any(r[-1] is not None for r in rows):
            return [f"audit key {self.audit_key_file} is missing: the sealed run rows cannot be verified "
                    f"(set ${AUDIT_DIR_ENV} to the folder that holds it)"]
        for r in rows:
            if r[-1] is None:
                problems.append(f"run {r[0]}: has no seal (every run row is sealed since store schema 5)")
            elif key is not None and not hmac.compare_digest(_run_mac(key, r[:-1]), str(r[-1])):
                problems.append(f"run {r[0]}: row changed after it was recorded (status, objective, KPIs or "
                                "fingerprints do not match its seal)")
        if len(df):
            recorded = df[df["action"].isin(RUN_ACTIONS) & df["status"].isin(RUN_OUTCOME_STATUSES)
                          & df["run_id"].notna()]
            have_ids = {r[0] for r in rows}
            for run_id, seqs in recorded.groupby("run_id")["seq"]:
                if run_id not in have_ids:
                    problems.append(f"run {run_id}: recorded by audit row {int(seqs.min())} but missing from the "
                                    "runs table (deleted)")
        return problems

    def _seal_problem(self, con: duckdb.DuckDBPyConnection) -> str | None:
        """Why the trail may not be extended: its checkpoint or key is gone while sealed rows exist, or the row the
        checkpoint names is missing or changed (None when the trail ends where its checkpoint says)."""
        head = self._read_head()
        try:
            if head is None:
                sealed = con.execute("SELECT count(*) FROM audit WHERE row_mac IS NOT NULL").fetchone()[0]
                if sealed:
                    return (f"store {self.path}: the audit checkpoint {self.audit_head_file} is missing while "
                            f"{sealed} sealed audit row(s) exist (rows may have been cut off)")
                return None
            if "error" in head or not {"seq", "row_hash", "sealed_from"} <= set(head):
                return f"store {self.path}: the audit checkpoint {self.audit_head_file} is unreadable"
            if not self.audit_key_file.exists():
                return (f"store {self.path}: the audit key {self.audit_key_file} is missing while its checkpoint "
                        f"exists (set ${AUDIT_DIR_ENV} to the folder that holds it)")
            at = con.execute("SELECT row_hash FROM audit WHERE seq = ?", [int(head["seq"])]).fetchone()
        except (duckdb.CatalogException, duckdb.BinderException):  # a store from before the seal, read read-only
            return None
        if at is None or at[0] != head.get("row_hash"):
            return (f"store {self.path}: the audit trail does not match its checkpoint {self.audit_head_file} "
                    "(rows removed or rewritten)")
        return None

    def audit_head_problem(self) -> str | None:
        """Why the next audit row would be refused (the trail no longer ends at its checkpoint, or the checkpoint or
        key is gone), else None. A cheap check for before a run starts; :meth:`verify_audit` checks every row."""
        if not self.path.exists():
            return None
        with self.connect() as con:
            problem = self._seal_problem(con)
        return None if problem is None else problem.split(": ", 1)[-1] + "; run `twinplan audit` to see what changed"

    def audit_unsealed_rows(self) -> int:
        """How many audit rows predate the seal (written by a twinplan without it; verified by the chain only)."""
        head = self._read_head()
        if not head or "sealed_from" not in head:
            return len(self.audit())
        return max(int(head["sealed_from"]) - 1, 0)

    def _verify_seal(self, df: pd.DataFrame) -> list[str]:
        """Keyed seals of the rows and the checkpointed head: catches a recomputed chain and a cut-off tail."""
        key, head = self._audit_key(), self._read_head()
        sealed = df[df["row_mac"].notna()] if "row_mac" in df else df.iloc[:0]
        if key is None:
            if len(sealed) or head is not None:
                return [f"audit key {self.audit_key_file} is missing: the sealed rows cannot be verified "
                        f"(set ${AUDIT_DIR_ENV} to the folder that holds it)"]
            return []
        problems: list[str] = []
        if head is None:
            if len(df):
                problems.append(f"audit checkpoint {self.audit_head_file} is missing: rows may have been cut off "
                                "the end of the trail")
            sealed_from = int(sealed["seq"].min()) if len(sealed) else len(df) + 1
        elif "error" in head or not {"seq", "row_hash", "sealed_from", "mac"} <= set(head):
            return [f"audit checkpoint {self.audit_head_file} is unreadable: {head.get('error', 'keys missing')}"]
        else:
            sealed_from = int(head["sealed_from"])
            expect = _mac(key, f"head|{self.path.name}|{head['seq']}|{head['row_hash']}|{sealed_from}")
            if not hmac.compare_digest(expect, str(head["mac"])):
                problems.append(f"audit checkpoint {self.audit_head_file}: its seal does not match (the "
                                "checkpoint was edited, or belongs to another key)")
            last = int(df["seq"].max()) if len(df) else 0
            hseq = int(head["seq"])
            if last < hseq:
                problems.append(f"audit trail truncated: the checkpoint records {hseq} rows, the store has "
                                f"{last} (rows {last + 1}..{hseq} were removed)")
            else:
                at = df[df["seq"] == hseq]
                if len(at) != 1 or at["row_hash"].iloc[0] != head["row_hash"]:
                    problems.append(f"audit row {hseq}: does not match the checkpointed head of the chain")
        has_mac = df["row_mac"].notna() if "row_mac" in df else df["seq"] < 0
        for rec in df[(df["seq"] >= sealed_from) | has_mac].to_dict("records"):
            seq, mac = int(rec["seq"]), rec.get("row_mac")
            if _is_na(mac) or mac is None:
                problems.append(f"audit row {seq}: has no seal (rows from {sealed_from} on are sealed)")
            elif not hmac.compare_digest(_mac(key, f"{seq}|{rec['row_hash']}"), str(mac)):
                problems.append(f"audit row {seq}: seal does not match (row rewritten and its hash recomputed, "
                                "or written without the key)")
        return problems


def _folder_holds(out_dir: str | None, run_id: str) -> bool:
    """Whether the run folder ``out_dir`` was published for ``run_id``: its ``run.json`` names the run (or the
    run is its baseline) and its ``result.json`` is there."""
    if not out_dir:
        return False
    folder = Path(out_dir)
    try:
        meta = json.loads((folder / "run.json").read_text())
        return run_id in (meta.get("run_id"), meta.get("baseline_run_id")) and (folder / "result.json").is_file()
    except (OSError, ValueError, AttributeError):
        return False


def _audit_row_hash(seq: int, values: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 over the sequence number, the previous row's hash and the row: every column of the first layout,
    and a column added later only when it holds a value (so an old row hashes as it did when written)."""
    payload = {c: values.get(c) for c in _AUDIT_V1_COLUMNS}
    payload.update({c: values[c] for c in AUDIT_COLUMNS if c not in payload and values.get(c) is not None})
    t = payload.get("time")
    payload["time"] = pd.Timestamp(t).isoformat() if t is not None else None
    obj = payload.get("objective")
    payload["objective"] = None if obj is None else repr(float(obj))
    for k in ("pid", "allowed"):
        if payload.get(k) is not None:
            payload[k] = int(payload[k])
    return sha256(f"{seq}|{prev_hash}|{canonical_json(payload)}")


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) or hasattr(v, "dtype") and v.dtype.kind in "fiu"


def _is_na(v: Any) -> bool:
    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):
        return False


def _insert_plan_table(con: duckdb.DuckDBPyConnection, name: str, run_id: str, df: pd.DataFrame) -> None:
    out = {"run_id": pd.Series([run_id] * len(df), dtype=object)}
    df = df.reset_index(drop=True)
    for c, kind in plan_table_types(name).items():
        s = df[c] if c in df.columns else pd.Series([None] * len(df), dtype=object)
        if kind == "VARCHAR":
            out[c] = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else str(v))
        elif kind == "BOOLEAN":
            out[c] = s.astype(object).where(s.notna(), None).map(lambda v: v if v is None else bool(v))
        elif kind == "INTEGER":
            out[c] = pd.to_numeric(s, errors="coerce").round().astype("Int64")
        else:
            out[c] = pd.to_numeric(s, errors="coerce").astype(float)
    frame = pd.DataFrame(out)
    names = ", ".join(f'"{c}"' for c in frame.columns)  # by name: an old store's column order does not matter
    con.register("_plan_rows", frame)
    try:
        con.execute(f"INSERT INTO plan_{name} ({names}) SELECT {names} FROM _plan_rows")
    finally:
        con.unregister("_plan_rows")


def _artifact_items(artifacts: Any) -> list[tuple[str, bytes]]:
    """``artifacts`` (a dict name -> bytes, or None) as checked (name, bytes) pairs."""
    if artifacts is None:
        return []
    if not isinstance(artifacts, dict):
        raise TypeError(f"run artifacts must be a dict of name -> bytes, got {type(artifacts).__name__}")
    items = []
    for name, data in artifacts.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"run artifact name must be a non-empty string, got {name!r}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"run artifact {name!r} must be bytes, got {type(data).__name__}")
        items.append((name, bytes(data)))
    return items


def _with_columns(df: pd.DataFrame, cols: Any) -> pd.DataFrame:
    """``df`` with every column of ``cols``: those it lacks (read from an older store) added as NA."""
    missing = [c for c in cols if c not in df.columns]
    if not missing:
        return df
    return df.assign(**{c: pd.Series([None] * len(df), index=df.index, dtype=object) for c in missing})


def _existing_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The store's tables and their columns, in order."""
    rows = con.execute("SELECT table_name, column_name FROM duckdb_columns() WHERE database_name = current_database()"
                       " AND schema_name = 'main' ORDER BY table_name, column_index").fetchall()
    out: dict[str, list[str]] = {}
    for table, col in rows:
        out.setdefault(table, []).append(col)
    return out


def _stored_version(con: duckdb.DuckDBPyConnection, have: dict[str, list[str]], path: Path) -> int | None:
    """The version in ``meta`` (1 for a store without it; None for an empty file)."""
    if "meta" not in have:
        return 1 if have else None
    hit = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    try:
        return 1 if hit is None else int(hit[0])
    except ValueError:
        raise StoreError(f"store {path}: table meta, key schema_version: {hit[0]!r} is not a whole number"
                         ) from None


def _migrate(con: duckdb.DuckDBPyConnection, path: Path, seal_key: Any = None) -> list[str]:
    """Bring a store (opened for writing) up to :data:`TABLE_COLUMNS` and :data:`SCHEMA_VERSION`.

    Missing tables are created and missing columns added (``ALTER TABLE ... ADD COLUMN``: NULL in existing rows,
    no row touched), then ``meta.schema_version`` is set, in one transaction: a failure or a kill leaves the
    store as it was. Returns the changes (empty when up to date). A store of a newer version keeps its version.
    Reaching version 5, the run rows already there are sealed (``runs.row_mac``) with the key ``seal_key()``
    returns (none are when it returns None: `twinplan audit` then reports them unsealed).
    """
    have = _existing_columns(con)
    version = _stored_version(con, have, path)
    steps: list[tuple[str, str]] = []
    for table, cols in TABLE_COLUMNS.items():
        if table not in have:
            steps.append((f"created table {table}", _create_table_sql(table)))
            continue
        steps += [(f"added column {table}.{c} {t}", f'ALTER TABLE {table} ADD COLUMN "{c}" {t}')
                  for c, t in cols.items() if c not in have[table]]
    new_version = max(version or 0, SCHEMA_VERSION)
    if not steps and version == new_version:
        return []
    con.begin()
    try:
        for _, sql in steps:
            con.execute(sql)
        old_rows = (version or 0) < 5 and con.execute("SELECT count(*) FROM runs").fetchone()[0]
        key = seal_key() if old_rows and seal_key is not None else None
        if key is not None:
            sealed = _seal_runs(con, key)
            if sealed:
                steps.append((f"sealed {sealed} existing run row(s)", ""))
        con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)", [str(new_version)])
    except duckdb.Error as exc:
        con.rollback()
        raise StoreError(f"cannot migrate store {path} to schema version {SCHEMA_VERSION}: {exc}") from None
    except BaseException:
        con.rollback()
        raise
    con.commit()
    changes = [what for what, _ in steps]
    if version != new_version:
        changes.append(f"schema_version {version} -> {new_version}")
    return changes


# -- notebook helpers ----------------------------------------------------------------------------
def _store(store: RunStore | str | Path | None) -> RunStore:
    return store if isinstance(store, RunStore) else RunStore(store)


def runs(store: RunStore | str | Path | None = None, sweep: str | None = None, status: str | None = None,
         ) -> pd.DataFrame:
    """Every run of the store (of one sweep / status) with KPIs and parameters as columns."""
    return _store(store).runs(sweep=sweep, status=status)


def sweeps(store: RunStore | str | Path | None = None) -> pd.DataFrame:
    """Every sweep with its counts of finished and failed runs."""
    return _store(store).sweeps()


def plan_table(run_id: str, name: str, store: RunStore | str | Path | None = None) -> pd.DataFrame:
    """One plan table (``flows``, ``sites``, ``costs``...) of one run."""
    if name not in PLAN_TABLES:
        raise KeyError(f"unknown plan table {name!r}; one of {sorted(PLAN_TABLES)}")
    return _store(store).plan_tables(run_id)[name]


def compare(run_a: str, run_b: str, store: RunStore | str | Path | None = None) -> pd.DataFrame:
    """Two runs side by side: status, objective, every KPI and parameter, with b - a and (b - a) / |a|."""
    s = _store(store)
    a, b = s.run(run_a), s.run(run_b)
    rows = []
    for field in ("status", "exit_code", "reason", "solve_status", "objective", "simulation_feasible",
                  "wall_seconds", "calibration"):
        rows.append((field, a.get(field), b.get(field)))
    for key in sorted(set(a.get("params") or {}) | set(b.get("params") or {})):
        rows.append((f"param_{key}", (a.get("params") or {}).get(key), (b.get("params") or {}).get(key)))
    for key in sorted(set(a.get("kpis") or {}) | set(b.get("kpis") or {})):
        rows.append((key, (a.get("kpis") or {}).get(key), (b.get("kpis") or {}).get(key)))
    df = pd.DataFrame(rows, columns=["field", a["run_id"], b["run_id"]]).set_index("field")
    va = pd.to_numeric(df.iloc[:, 0].map(lambda v: v if _is_number(v) else None), errors="coerce")
    vb = pd.to_numeric(df.iloc[:, 1].map(lambda v: v if _is_number(v) else None), errors="coerce")
    df["delta"] = vb - va
    df["rel_delta"] = (vb - va) / va.abs().where(va.abs() > 0)
    return df


def best(kpi: str, n: int = 10, store: RunStore | str | Path | None = None, sweep: str | None = None,
         largest: bool | None = None) -> pd.DataFrame:
    """The ``n`` finished runs best by ``kpi`` (a KPI name, ``objective`` or ``wall_seconds``).

    ``largest`` defaults to True for KPIs declared higher-is-better (:data:`engine.kpi.KPIS`) and False (smallest
    first) otherwise.
    """
    df = _store(store).runs(sweep=sweep, status=RUN_DONE)
    if df.empty:
        return df
    if kpi not in df.columns:
        known = sorted(c for c in df.columns if c not in RUN_COLUMNS and not c.startswith("param_"))
        raise KeyError(f"unknown KPI {kpi!r}; the store has {['objective', 'wall_seconds', *known]}")
    if largest is None:
        largest = kpi_direction(kpi) == "higher"
    df = df[df[kpi].notna()]
    return (df.nlargest(n, kpi) if largest else df.nsmallest(n, kpi)).reset_index(drop=True)


def audit(store: RunStore | str | Path | None = None, since: str | datetime | None = None,
          user: str | None = None) -> pd.DataFrame:
    """The append-only audit trail (since a time / of one user)."""
    return _store(store).audit(since=since, user=user)


__all__ = ["AUDIT_DIR_ENV", "DEFAULT_STORE", "RUN_DONE", "RUN_FAILED", "RUN_INTERRUPTED", "RUN_PENDING",
           "RUN_RUNNING", "RUN_STATUSES", "SCHEMA_CHANGES", "SCHEMA_VERSION", "TABLE_COLUMNS", "RunStore",
           "StoreError", "StoreLocked", "audit", "best", "compare", "is_duckdb_file", "plan_table", "runs",
           "schema_layout",
           "sweeps"]
