"""Robustness: bad input, faults and misuse through the real CLI on the bundled ``tiny`` instance (issue 16).

One table-driven test, :func:`test_refused_before_any_work`, runs every case of :data:`CASES` through
``engine.cli.main([...])`` in a fresh copy of ``tiny`` and asserts, for each, the exit code, the located message
on stderr, no traceback, and that nothing was left behind: no output folder, no temporary ``.partial`` folder,
no run recorded as finished. The causes it covers (the headings of the table) are those of the issue:

1. output before checks: every input is checked before any output exists or any solve starts;
3. I/O errors as one line naming the path, never a traceback;
4. validation limits: duplicate headers, ragged rows, empty demand, absurd magnitudes, YAML alias bombs,
   names that would leave the runs folder;
5. the store: not ``:memory:``, a DuckDB file, readable, its audit trail still ending at its checkpoint.

Real solves, real kills and real subprocesses prove the rest: atomic run folders (a complete folder and a
finished run, or neither, under ``kill -9`` and a full disk), the tamper-evident audit (a truncated trail and a
chain recomputed with the project's own hash function are caught), ``twinplan audit | head -1`` and no orphan
workers after ``kill -9`` of a sweep driver.
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pandas as pd
import pytest
import yaml

from engine.atomic import atomic_folder, remove_stale_partials
from engine.cli import main
from engine.store import RunStore, _audit_row_hash

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "instances" / "tiny"
SWEEP_SPEC = ROOT / "tests" / "data" / "tiny_sweep.yaml"
RAW_A = ROOT / "instances" / "raw" / "wms_a"

ALIAS_BOMB = textwrap.dedent("""\
    name: tiny
    currency: EUR
    horizon: {start: '2026-11-16', periods: 2, period_days: 7}
    a: &a ["x","x","x","x","x","x","x","x","x","x"]
    b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a,*a]
    c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b,*b]
    d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c,*c]
    e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d,*d]
    f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e,*e]
    g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f,*f]
    """)


# -- helpers ------------------------------------------------------------------------------------------------
def _workspace(tmp_path: Path) -> Path:
    """A fresh copy of tiny (``ws/tiny``) and the working directory the CLI runs in."""
    ws = tmp_path / "ws"
    shutil.copytree(TINY, ws / "tiny")
    return ws


def _scenario(ws: Path, **over) -> str:
    """Write ``ws/sc.yaml``: tiny's ``consolidate`` scenario named ``sc``, with ``over`` replacing its keys."""
    data = yaml.safe_load((TINY / "scenarios" / "consolidate.yaml").read_text())
    data["name"] = "sc"
    data.update(over)
    path = ws / "sc.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _write(path: Path, data: str | bytes) -> None:
    """Write a file (text or bytes); returns None so that a case can chain ``_write(...) or argv``."""
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def _csv_edit(ws: Path, table: str, fn: Callable[[list[str]], list[str]]) -> None:
    f = ws / "tiny" / f"{table}.csv"
    f.write_text("\n".join(fn(f.read_text().splitlines())) + "\n")


def _cell(ws: Path, table: str, row: int, column: str, value: str) -> None:
    """Set one cell (data row ``row``, 1-based) of a tiny table."""
    def fn(lines: list[str]) -> list[str]:
        header = lines[0].split(",")
        cells = lines[row].split(",")
        cells[header.index(column)] = value
        lines[row] = ",".join(cells)
        return lines
    _csv_edit(ws, table, fn)


def _solve(ws: Path, *extra: str, scenario: str | None = None) -> list[str]:
    argv = ["solve", str(ws / "tiny"), "--out", str(ws / "out"), "--store", str(ws / "runs.duckdb"),
            "--time-limit", "20", "--replications", "2"]
    if scenario:
        argv += ["--scenario", scenario]
    return argv + list(extra)


def _finished_runs(store: Path) -> int:
    if not store.exists() or store.stat().st_size == 0:
        return 0
    try:
        return len(RunStore(store, read_only=True).runs(status="finished"))
    except Exception:  # noqa: BLE001 - a store the case made unreadable holds no run either
        return 0


def _sealed_store(ws: Path, rows: int = 4) -> Path:
    """A store with ``rows`` sealed audit rows (and its key and checkpoint beside it)."""
    path = ws / "runs.duckdb"
    RunStore(path).append_audit(*({"action": "solve", "allowed": True, "user_name": "alice", "run_id": f"r{i}",
                                   "status": "finished", "objective": 100.0 + i} for i in range(rows)))
    return path


def _sql(path: Path, *statements: str) -> None:
    con = duckdb.connect(str(path))
    for s in statements:
        con.execute(s)
    con.close()


# -- the case table -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    """One bad input or misuse: ``setup(ws)`` prepares the workspace and returns the CLI arguments."""

    id: str
    cause: str
    setup: Callable[[Path], list[str]]
    exit: int
    message: str  # regex that must match stderr (the located finding)


def _policy_strategic_only(ws: Path) -> list[str]:
    (ws / "policy.yaml").write_text(yaml.safe_dump({
        "roles": {"strategist": {"scenario_classes": ["strategic"], "decisions": ["*"], "instances": ["*"]}},
        "users": {"alice": ["strategist"]}}))
    return _solve(ws, "--policy", str(ws / "policy.yaml"), "--as", "alice",
                  scenario=_scenario(ws, baseline="baseline"))


def _truncated_store(ws: Path) -> list[str]:
    path = _sealed_store(ws)
    _sql(path, "DELETE FROM audit WHERE seq >= 3")
    return _solve(ws)


def _truncated_file(ws: Path) -> list[str]:
    path = _sealed_store(ws)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    return _solve(ws)


def _many_at_once(ws: Path) -> list[str]:
    _cell(ws, "demand", 3, "quantity", "lots")
    return _solve(ws, "--replications", "0", "--store", ":memory:",
                  scenario=_scenario(ws, options={"min_open": "two"}))


def _out_is_file(ws: Path) -> list[str]:
    (ws / "out").write_text("not a folder")
    return _solve(ws)


def _out_under_file(ws: Path) -> list[str]:
    (ws / "afile").write_text("x")
    return [*_solve(ws)[:-6], "--out", str(ws / "afile" / "run"), *_solve(ws)[-6:]]


CASES: list[Case] = [
    # 1. output before checks: CLI arguments
    Case("replications-0", "arguments", lambda ws: _solve(ws, "--replications", "0"), 2,
         r"--replications: must be a whole number from 1 to 10000, got 0"),
    Case("replications-negative", "arguments", lambda ws: _solve(ws, "--replications", "-3"), 2,
         r"--replications: .* got -3"),
    Case("solver-unknown", "arguments", lambda ws: _solve(ws, "--solver", "nosuch"), 2,
         r"--solver: unknown solver 'nosuch'; choose from highs"),
    Case("time-limit-negative", "arguments", lambda ws: _solve(ws, "--time-limit", "-5"), 2,
         r"--time-limit: must be a number of seconds > 0, got -5"),
    Case("time-limit-zero", "arguments", lambda ws: _solve(ws, "--time-limit", "0"), 2,
         r"--time-limit: must be a number of seconds > 0, got 0"),
    Case("time-limit-nan", "arguments", lambda ws: _solve(ws, "--time-limit", "nan"), 2,
         r"--time-limit: must be a number of seconds > 0, got nan"),
    Case("gap-above-one", "arguments", lambda ws: _solve(ws, "--gap", "2"), 2,
         r"--gap: must be a relative gap from 0 to 1, got 2"),
    Case("seed-negative", "arguments", lambda ws: _solve(ws, "--seed", "-1"), 2,
         r"--seed: must be a whole number from 0 to 4294967295, got -1"),
    # 1. output before checks: the scenario, all keys and values
    Case("options-min-open-text", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, options={"min_open": "two"})), 2,
         r"sc\.yaml: options\.min_open: Input should be a valid integer, got 'two'"),
    Case("options-unknown", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, options={"min_opne": 1})), 2,
         r"sc\.yaml: options\.min_opne: unknown key \(allowed: .*min_open"),
    Case("options-bool-as-number", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, options={"single_source": 1})), 2,
         r"sc\.yaml: options\.single_source: Input should be a valid boolean, got 1"),
    Case("options-share-above-one", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, options={"service_share": 1.5})), 2,
         r"sc\.yaml: options\.service_share: Input should be less than or equal to 1, got 1\.5"),
    Case("options-min-above-max", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, options={"min_open": 3, "max_open": 1})), 2,
         r"sc\.yaml: options\.min_open: 3 is above max_open 1"),
    Case("options-force-open-unknown-site", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, options={"force_open": ["DC_NOPE"]})), 2,
         r"sc\.yaml: options\.force_open: unknown site 'DC_NOPE'"),
    Case("options-force-open-port", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, options={"force_open": ["PORT_HAM"]})), 2,
         r"sc\.yaml: options\.force_open: site 'PORT_HAM' is a port"),
    Case("options-peak-period-outside", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, decision="capacity", options={"peak_periods": [9]})), 2,
         r"sc\.yaml: options\.peak_periods: period 9 outside the horizon 1\.\.2"),
    Case("modification-force-open-unknown-site", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, modifications=[{"force_open": ["DC_NOPE"]}])), 2,
         r"sc\.yaml: modifications\[0\]\.force_open: unknown site 'DC_NOPE'"),
    Case("modification-unknown-lane", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, modifications=[
             {"close_lane": {"origin": "DC_A", "destination": "Z_NOPE"}}])), 2,
         r"sc\.yaml: modifications\[0\]\.close_lane: no lane DC_A -> Z_NOPE"),
    Case("solver-time-limit-negative", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, solver={"time_limit": -5})), 2,
         r"sc\.yaml: solver\.time_limit: Input should be greater than 0, got -5"),
    Case("solver-name-unknown", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, solver={"solver": "nosuch"})), 2,
         r"sc\.yaml: solver\.solver: unknown solver 'nosuch'"),
    Case("solver-gap-above-one", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, solver={"mip_gap": 5})), 2,
         r"sc\.yaml: solver\.mip_gap: Input should be less than 1, got 5"),
    Case("solver-threads-zero", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, solver={"threads": 0})), 2,
         r"sc\.yaml: solver\.threads: Input should be greater than or equal to 1, got 0"),
    Case("solver-unknown-key", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, solver={"timelimit": 5})), 2,
         r"sc\.yaml: solver\.timelimit: unknown key"),
    Case("scenario-unknown-name", "scenario", lambda ws: _solve(ws, scenario="no_such_scenario"), 2,
         r"no_such_scenario: no such scenario file nor scenario of tiny; scenarios: baseline, consolidate"),
    Case("scenario-unknown-top-key", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, modifs=[])), 2, r"sc\.yaml: modifs: unknown key"),
    Case("scenario-bad-class", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, **{"class": "urgent"})), 2,
         r"sc\.yaml: class: Input should be 'strategic' or 'tactical', got 'urgent'"),
    Case("scenario-python-tag", "scenario",
         lambda ws: _write(ws / "sc.yaml", "name: !!python/object/apply:os.system ['true']\n")
         or _solve(ws, scenario=str(ws / "sc.yaml")), 2,
         r"sc\.yaml: not valid YAML: could not determine a constructor"),
    Case("scenario-alias-bomb", "scenario",
         lambda ws: _write(ws / "sc.yaml", ALIAS_BOMB.replace("name: tiny", "name: sc"))
         or _solve(ws, scenario=str(ws / "sc.yaml")), 2, r"sc\.yaml: not valid YAML: expands to more than 100,000"),
    Case("scenario-demand-1e308", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, modifications=[{"demand_multiplier": 1e300}])), 2,
         r"sc\.yaml: modifications: make demand\.csv column quantity reach .*e\+30\d, above its bound 1e\+12"),
    Case("scenario-count-1e308", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, modifications=[
             {"capacity": {"site": "DC_A", "stage": "pick", "count": 1e308}}])), 2,
         r"sc\.yaml: modifications: make resources\.csv column count reach 1e\+308, above its bound 1e\+07"),
    Case("scenario-handling-cost-1e308", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, modifications=[{"cost": {"handling": 1e300}}])), 2,
         r"sc\.yaml: modifications: make the instance default handling_cost_per_unit 1e\+29\d, above the bound"),
    Case("scenario-capex-budget-1e308", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, modifications=[{"capex_budget": 1e308}])), 2,
         r"sc\.yaml: modifications: capex_budget 1e\+308 is above the bound 1e\+12"),
    Case("baseline-missing", "scenario",
         lambda ws: _solve(ws, scenario=_scenario(ws, baseline="no_such_baseline")), 2,
         r"sc\.yaml: baseline: no_such_baseline: no such scenario file nor scenario of tiny; "
         r"did you mean 'baseline'\?"),
    Case("baseline-invalid-options", "scenario",
         lambda ws: _write(ws / "tiny" / "scenarios" / "baseline.yaml",
             "name: baseline\nclass: tactical\noptions: {max_open: many}\n")
         or _solve(ws, scenario=_scenario(ws, baseline="baseline")), 2,
         r"baseline\.yaml: options\.max_open: Input should be a valid integer, got 'many'"),
    Case("policy-refuses-the-baseline", "policy", _policy_strategic_only, 5,
         r"refused: user 'alice' \(strategist\) may not run tactical consolidation .*\(the baseline\)"),
    Case("policy-file-missing", "policy", lambda ws: _solve(ws, "--policy", str(ws / "nope.yaml")), 2,
         r"nope\.yaml: no such policy file"),
    Case("policy-unknown-key", "policy",
         lambda ws: _write(ws / "p.yaml", "roles: {}\nuser: {}\n") or _solve(ws, "--policy", str(ws / "p.yaml")),
         2, r"p\.yaml: user: unknown key"),
    Case("all-findings-in-one-report", "arguments", _many_at_once, 2,
         r"(?s)--replications: .*demand\.csv:3:quantity: wrong type: 'lots'.*"
         r"--store :memory:.*[34] problem\(s\) found before any work started"),
    # 4. names that would leave the runs folder
    Case("scenario-name-escapes", "names",
         lambda ws: _solve(ws, scenario=_scenario(ws, name="../../../escaped")), 2,
         r"sc\.yaml: name: '\.\./\.\./\.\./escaped' cannot name a run folder"),
    Case("scenario-name-slash", "names",
         lambda ws: _solve(ws, scenario=_scenario(ws, name="a/b")), 2, r"name: 'a/b' cannot name a run folder"),
    Case("instance-name-escapes", "names",
         lambda ws: _write(ws / "tiny" / "instance.yaml",
             (TINY / "instance.yaml").read_text().replace("name: tiny", "name: ../../x")) or _solve(ws), 2,
         r"instance\.yaml: name: '\.\./\.\./x' cannot name a run folder"),
    # 5. the store
    Case("store-memory", "store", lambda ws: _solve(ws, "--store", ":memory:"), 2,
         r"--store :memory:: store :memory: keeps nothing"),
    Case("store-csv-file", "store",
         lambda ws: _write(ws / "runs.csv", "a,b\n1,2\n") or _solve(ws, "--store", str(ws / "runs.csv")), 2,
         r"runs\.csv: is not a DuckDB database file"),
    Case("store-truncated-file", "store", _truncated_file, 2,
         r"runs\.duckdb: store .*runs\.duckdb: cannot read or write the file \(damaged or truncated"),
    Case("store-is-a-folder", "store",
         lambda ws: (ws / "st").mkdir() or _solve(ws, "--store", str(ws / "st")), 2, r"st: is a folder"),
    Case("store-folder-missing", "store", lambda ws: _solve(ws, "--store", str(ws / "no" / "runs.duckdb")), 2,
         r"runs\.duckdb: folder .*no does not exist"),
    Case("store-audit-truncated", "store", _truncated_store, 2,
         r"does not match its checkpoint .*audit-head \(rows removed or rewritten\)"),
    # 1./3. the output path
    Case("out-is-a-file", "output", _out_is_file, 2, r"--out .*out: exists and is not a folder"),
    Case("out-under-a-file", "output", _out_under_file, 2, r"afile is a file, not a folder"),
    Case("out-is-the-instance-folder", "output", lambda ws: _solve(ws)[:-6] + ["--out", str(ws / "tiny")]
         + _solve(ws)[-6:], 2, r"tiny: exists and is not a run folder \(it has no run\.json or result\.json\)"),
    Case("out-is-the-current-folder", "output", lambda ws: _solve(ws)[:-6] + ["--out", "."] + _solve(ws)[-6:], 2,
         r"--out \.: must name a folder of its own"),
    Case("out-name-300-chars", "output", lambda ws: _solve(ws)[:-6] + ["--out", str(ws / ("r" * 300))]
         + _solve(ws)[-6:], 2, r"a path component is 300 bytes long \(the limit is 255, less 40"),
    Case("scenario-name-300-chars", "output", lambda ws: _solve(ws, scenario="s" * 300), 2,
         r"--scenario s{300}: File name too long"),
    Case("instance-name-300-chars", "output", lambda ws: ["solve", str(ws / ("i" * 300)), "--out", str(ws / "out"),
                                                          "--store", str(ws / "runs.duckdb")], 2,
         r"i{300}: File name too long"),
    Case("policy-name-300-chars", "output", lambda ws: _solve(ws, "--policy", str(ws / ("p" * 300))), 2,
         r"p{300}: cannot read policy file: File name too long"),
    Case("store-name-300-chars", "output", lambda ws: _solve(ws, "--store", str(ws / ("d" * 300))), 2,
         r"the file name is 300 bytes long"),
    # 4. validation limits in the instance
    Case("csv-duplicate-header", "validation",
         lambda ws: _csv_edit(ws, "demand", lambda ls: [ls[0] + ",quantity"] + [x + ",1" for x in ls[1:]])
         or _solve(ws), 2, r"demand\.csv:0:quantity: duplicate column name in the header \(columns 4 and 5\)"),
    Case("csv-ragged-row-long", "validation",
         lambda ws: _csv_edit(ws, "demand", lambda ls: ls[:7] + [ls[7] + ",99"] + ls[8:]) or _solve(ws), 2,
         r"demand\.csv:7:: row has 5 field\(s\), the header has 4"),
    Case("csv-ragged-row-short", "validation",
         lambda ws: _csv_edit(ws, "demand", lambda ls: ls[:4] + [ls[4].rsplit(",", 1)[0]] + ls[5:]) or _solve(ws),
         2, r"demand\.csv:4:: row has 3 field\(s\), the header has 4"),
    Case("csv-ragged-first-row", "validation",
         lambda ws: _csv_edit(ws, "resources", lambda ls: ls[:1] + [ls[1] + ",7"] + ls[2:]) or _solve(ws), 2,
         r"resources\.csv:1:: row has 6 field\(s\), the header has 5"),
    Case("demand-header-only", "validation",
         lambda ws: _csv_edit(ws, "demand", lambda ls: ls[:1]) or _solve(ws), 2,
         r"demand\.csv:0:: no demand rows \(only a header\)"),
    Case("demand-all-zero", "validation",
         lambda ws: _csv_edit(ws, "demand", lambda ls: ls[:1] + [x.rsplit(",", 1)[0] + ",0" for x in ls[1:]])
         or _solve(ws), 2, r"demand\.csv:0:quantity: every demand quantity is 0"),
    Case("demand-1e308", "validation", lambda ws: _cell(ws, "demand", 2, "quantity", "1e308") or _solve(ws), 2,
         r"demand\.csv:2:quantity: out of range: 1e\+308 > 1e\+12"),
    Case("demand-inf", "validation", lambda ws: _cell(ws, "demand", 2, "quantity", "inf") or _solve(ws), 2,
         r"demand\.csv:2:quantity: value must be finite"),
    Case("resource-count-1e308", "validation",
         lambda ws: _cell(ws, "resources", 3, "count", "1e308") or _solve(ws), 2,
         r"resources\.csv:3:count: out of range: 1e\+308 > 1e\+07"),
    Case("lane-cost-1e20", "validation",
         lambda ws: _cell(ws, "lanes", 1, "cost_per_unit", "1e20") or _solve(ws), 2,
         r"lanes\.csv:1:cost_per_unit: out of range: 1e\+20 > 1e\+12"),
    Case("hours-per-person-week-200", "validation",
         lambda ws: _cell(ws, "labor", 1, "hours_per_person_week", "200") or _solve(ws), 2,
         r"labor\.csv:1:hours_per_person_week: out of range: 200 > 168"),
    Case("meta-default-1e308", "validation",
         lambda ws: _write(ws / "tiny" / "instance.yaml",
             (TINY / "instance.yaml").read_text().replace("unmet_demand_penalty: 40.0", "unmet_demand_penalty: 1e308"))
         or _solve(ws), 2, r"instance\.yaml: defaults\.unmet_demand_penalty: Input should be a valid number"),
    Case("meta-rate-card-1e308", "validation",
         lambda ws: _write(ws / "tiny" / "instance.yaml", (TINY / "instance.yaml").read_text().replace(
             "cost_per_unit_km: 0.001", "cost_per_unit_km: 1.0e+308")) or _solve(ws), 2,
         r"instance\.yaml: rate_card\.modes\.road\.cost_per_unit_km: Input should be less than or equal to 1"),
    Case("meta-alias-bomb", "validation",
         lambda ws: _write(ws / "tiny" / "instance.yaml", ALIAS_BOMB) or _solve(ws), 2,
         r"instance\.yaml:0:: invalid YAML: expands to more than 100,000 values"),
    Case("meta-nested-too-deep", "validation",
         lambda ws: _write(ws / "tiny" / "instance.yaml",
             (TINY / "instance.yaml").read_text() + "deep: " + "[" * 150 + "]" * 150 + "\n") or _solve(ws), 2,
         r"instance\.yaml:0:: invalid YAML: nested deeper than 100 levels"),
    Case("csv-not-utf8", "validation",
         lambda ws: _write(ws / "tiny" / "zones.csv", (TINY / "zones.csv").read_bytes() + b"\xff\xfe,\n")
         or _solve(ws), 2, r"zones\.csv:0:: not UTF-8 text"),
    Case("instance-missing", "validation", lambda ws: ["solve", str(ws / "nowhere"), "--store",
                                                       str(ws / "runs.duckdb"), "--out", str(ws / "out")], 2,
         r"nowhere:0:: not an instance folder"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_refused_before_any_work(case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                 capsys: pytest.CaptureFixture) -> None:
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    argv = case.setup(ws)
    store = ws / "runs.duckdb"
    finished_before = _finished_runs(store)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == case.exit, err
    assert re.search(case.message, err), err
    assert "Traceback" not in err
    assert not (ws / "out").is_dir() and not (ws / "runs").exists()
    assert not list(ws.glob(".*partial*")), "a temporary run folder was left behind"
    assert _finished_runs(store) == finished_before == 0
    assert not (tmp_path / "escaped").exists() and not (ws.parent.parent / "escaped").exists()


def test_the_table_covers_every_cause() -> None:
    assert len(CASES) >= 60
    assert {c.cause for c in CASES} >= {"arguments", "scenario", "policy", "names", "store", "output", "validation"}


def test_a_refused_baseline_is_audited(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    assert main(_policy_strategic_only(ws)) == 5
    audit = RunStore(ws / "runs.duckdb").audit()
    assert audit[["user_name", "scenario", "allowed", "status"]].values.tolist() == [
        ["alice", "baseline", False, "refused"]]
    assert main(["audit", "--store", str(ws / "runs.duckdb")]) == 0
    assert "audit chain intact: 1 row(s)" in capsys.readouterr().out


# -- 3. I/O errors through other commands -------------------------------------------------------------------
IO_CASES = [
    ("audit-no-store", lambda ws: ["audit", "--store", str(ws / "none.duckdb")], 2, r"none\.duckdb: no run store"),
    ("audit-csv-store", lambda ws: _write(ws / "r.csv", "a\n1\n") or ["audit", "--store", str(ws / "r.csv")], 2,
     r"r\.csv: not a DuckDB run store file"),
    ("audit-truncated-store", lambda ws: _truncated_file(ws) and ["audit", "--store", str(ws / "runs.duckdb")], 2,
     r"runs\.duckdb: cannot read or write the file \(damaged or truncated"),
    ("validate-name-300", lambda ws: ["validate", str(ws / ("x" * 300))], 2, r"x{300}: File name too long"),
    ("generate-out-is-file", lambda ws: _write(ws / "f", "x") or ["generate", "--preset", "tiny", "--out",
                                                                        str(ws / "f")], 2,
     r"f: exists and is not a folder"),
    ("sweep-csv-store", lambda ws: _write(ws / "r.csv", "a\n1\n") or ["sweep", str(SWEEP_SPEC), "--store",
                                                                       str(ws / "r.csv")], 2,
     r"--store .*r\.csv: is not a DuckDB database file"),
    ("sweep-memory-store", lambda ws: ["sweep", str(SWEEP_SPEC), "--store", ":memory:"], 2,
     r"--store :memory:: store :memory: keeps nothing"),
    ("sweep-truncated-audit", lambda ws: _truncated_store(ws) and ["sweep", str(SWEEP_SPEC), "--store",
                                                                    str(ws / "runs.duckdb")], 2,
     r"does not match its checkpoint"),
    ("reproduce-truncated-file", lambda ws: _truncated_file(ws) and ["reproduce", "run-x", "--store",
                                                                      str(ws / "runs.duckdb")], 2,
     r"damaged or truncated"),
    ("report-missing-run", lambda ws: ["report", str(ws / "no_run")], 2, r"no_run"),
]


@pytest.mark.parametrize("case", IO_CASES, ids=[c[0] for c in IO_CASES])
def test_io_errors_are_one_line_naming_the_path(case, tmp_path: Path, monkeypatch, capsys) -> None:
    _, setup, exit_code, message = case
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    code = main(setup(ws))
    err = capsys.readouterr().err
    assert code == exit_code, err
    assert re.search(message, err) and "Traceback" not in err, err
    assert len([line for line in err.splitlines() if line.startswith("error:")]) == 1, err


def test_unknown_time_zone_in_export_data_is_located(tmp_path: Path, capsys) -> None:
    src = tmp_path / "wms_a"
    shutil.copytree(RAW_A, src)
    f = src / "facilities.csv"
    lines = f.read_text().splitlines()
    lines[2] = lines[2].replace("Europe/London", "Europe/Londn")
    f.write_text("\n".join(lines) + "\n")
    code = main(["ingest", "--mapping", str(src / "mapping.yaml"), str(src), "--out", str(tmp_path / "inst")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert re.search(r"facilities\.csv:2:TZ: unknown time zone 'Europe/Londn' for site 'DC_MANCHESTER'", err), err
    assert not (tmp_path / "inst").exists()


def test_audit_into_a_closed_pipe_exits_quietly(tmp_path: Path) -> None:
    store = _sealed_store(_workspace(tmp_path), rows=300)
    proc = subprocess.run(f"{sys.executable} -m engine.cli audit --store {store} | head -1", shell=True, cwd=ROOT,
                          capture_output=True, text=True, timeout=120, executable="/bin/bash",
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    assert proc.stdout.startswith(" seq") and len(proc.stdout.splitlines()) == 1
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr


# -- 5. a tamper-evident audit -------------------------------------------------------------------------------
def _rewrite_and_rechain(path: Path, seq: int, user: str) -> None:
    """Rewrite one audit row and recompute the hash chain from it on with the project's own function."""
    store = RunStore(path)
    df = store.audit()
    from engine.store import AUDIT_COLUMNS

    con = duckdb.connect(str(path))
    prev = "" if seq == 1 else df.loc[df["seq"] == seq - 1, "row_hash"].iloc[0]
    for rec in df[df["seq"] >= seq].to_dict("records"):
        if rec["seq"] == seq:
            rec["user_name"] = user
        values = {c: (None if rec[c] is None or rec[c] != rec[c] else rec[c]) for c in AUDIT_COLUMNS}
        h = _audit_row_hash(int(rec["seq"]), values, prev)
        con.execute("UPDATE audit SET user_name = ?, prev_hash = ?, row_hash = ? WHERE seq = ?",
                    [rec["user_name"], prev, h, int(rec["seq"])])
        prev = h
    con.close()


TAMPER = [
    ("last-rows-deleted", lambda p: _sql(p, "DELETE FROM audit WHERE seq >= 3"),
     r"audit trail truncated: the checkpoint records 4 rows, the store has 2 \(rows 3\.\.4 were removed\)"),
    ("chain-recomputed", lambda p: _rewrite_and_rechain(p, 2, "mallory"),
     r"audit row 2: seal does not match \(row rewritten and its hash recomputed"),
    ("row-edited", lambda p: _sql(p, "UPDATE audit SET objective = 1 WHERE seq = 3"),
     r"audit row 3: contents changed after it was written"),
    ("seal-removed", lambda p: _sql(p, "UPDATE audit SET row_mac = NULL WHERE seq = 4"),
     r"audit row 4: has no seal"),
    ("checkpoint-deleted", lambda p: p.with_name(p.name + ".audit-head").unlink(),
     r"audit checkpoint .*audit-head is missing"),
    ("checkpoint-edited", lambda p: p.with_name(p.name + ".audit-head").write_text(json.dumps(
        {**json.loads(p.with_name(p.name + ".audit-head").read_text()), "seq": 2})),
     r"audit checkpoint .*: its seal does not match"),
    ("key-deleted", lambda p: p.with_name(p.name + ".audit-key").unlink(), r"audit key .*audit-key is missing"),
    ("row-forged-without-key", lambda p: _sql(
        p, "INSERT INTO audit (seq, user_name, action, allowed, prev_hash, row_hash, row_mac) SELECT 5, 'mallory', "
           "'solve', true, row_hash, 'x', 'y' FROM audit WHERE seq = 4"), r"audit row 5: (contents changed|seal)"),
]


@pytest.mark.parametrize("case", TAMPER, ids=[c[0] for c in TAMPER])
def test_tampering_is_detected_loudly(case, tmp_path: Path, capsys) -> None:
    _, tamper, message = case
    path = _sealed_store(_workspace(tmp_path))
    assert main(["audit", "--store", str(path)]) == 0
    assert "audit chain intact: 4 row(s)" in capsys.readouterr().out
    tamper(path)
    code = main(["audit", "--store", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert re.search(message, err), err
    assert "AUDIT VERIFICATION FAILED" in err and "intact" not in out


def test_key_file_is_private_and_kept_outside_when_asked(tmp_path: Path, monkeypatch) -> None:
    path = _sealed_store(_workspace(tmp_path))
    assert (path.with_name(path.name + ".audit-key").stat().st_mode & 0o777) == 0o600
    outside = tmp_path / "vault"
    monkeypatch.setenv("TWINPLAN_AUDIT_DIR", str(outside))
    other = tmp_path / "ws" / "other.duckdb"
    RunStore(other).append_audit({"action": "solve", "allowed": True, "user_name": "bob"})
    assert (outside / "other.duckdb.audit-key").is_file() and (outside / "other.duckdb.audit-head").is_file()
    assert not other.with_name("other.duckdb.audit-key").exists()
    assert RunStore(other).verify_audit() == []


LAUNDER = [
    ("rows-cut-off", lambda p: _sql(p, "DELETE FROM audit WHERE seq = 4"), "does not match its checkpoint", 3),
    ("rows-cut-off-and-checkpoint-deleted", lambda p: _sql(p, "DELETE FROM audit WHERE seq = 4")
     or p.with_name(p.name + ".audit-head").unlink(), r"checkpoint .* is missing while 3 sealed audit row", 3),
    ("key-deleted", lambda p: p.with_name(p.name + ".audit-key").unlink(), r"audit key .* is missing", 4),
]


@pytest.mark.parametrize("case", LAUNDER, ids=[c[0] for c in LAUNDER])
def test_a_tampered_trail_is_never_extended(case, tmp_path: Path, monkeypatch) -> None:
    """An append after tampering would let twinplan write a fresh checkpoint (or key) over the evidence: refused,
    by the store itself and, for a solve, before any work."""
    from engine.store import StoreError

    _, tamper, message, rows = case
    ws = _workspace(tmp_path)
    path = _sealed_store(ws)
    tamper(path)
    with pytest.raises(StoreError, match=message):
        RunStore(path).append_audit({"action": "solve", "allowed": True, "user_name": "mallory"})
    assert RunStore(path, read_only=True).audit()["seq"].tolist() == list(range(1, rows + 1))
    monkeypatch.chdir(ws)
    assert main(_solve(ws)) == 2 and not (ws / "out").exists()
    assert main(["audit", "--store", str(path)]) == 1


# -- 2. atomic run folders -----------------------------------------------------------------------------------
def test_atomic_folder_publishes_whole_or_nothing(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with atomic_folder(target) as work:
        (work / "a.txt").write_text("first")
        (work / "run.json").write_text("{}")
    assert (target / "a.txt").read_text() == "first"
    with pytest.raises(RuntimeError), atomic_folder(target) as work:
        (work / "a.txt").write_text("second, half done")
        raise RuntimeError("solver died")
    assert (target / "a.txt").read_text() == "first"  # the earlier run is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["run"]
    with atomic_folder(target) as work:
        (work / "b.txt").write_text("third")
    assert sorted(p.name for p in target.iterdir()) == ["b.txt"]  # replaced whole
    from engine.atomic import OutputPathError

    with pytest.raises(OutputPathError, match="not a run folder"), atomic_folder(target):  # b.txt only: not a run
        pass
    assert (target / "b.txt").read_text() == "third"
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_stale_partial_folders_of_dead_writers_are_removed(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = int(proc.stdout)
    from engine.atomic import _host

    stale = tmp_path / f".run.partial-{_host()}-{dead}"
    (stale / "plan").mkdir(parents=True)
    mine = tmp_path / f".other.partial-{_host()}-{os.getpid()}"
    mine.mkdir()
    assert remove_stale_partials(tmp_path) == [stale]
    assert not stale.exists() and mine.exists()


def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-W", "ignore", "-m", "engine.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_a_complete_run_folder_and_its_finished_run(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    proc = _cli(*_solve(ws, scenario="consolidate"))
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    run_dir = ws / "out"
    for f in ("result.json", "run.json", "summary.txt", "solver.log", "report.html", "plan", "baseline/result.json"):
        assert (run_dir / f).exists(), f
    run_id = json.loads((run_dir / "run.json").read_text())["run_id"]
    runs = RunStore(ws / "runs.duckdb", read_only=True).runs(status="finished")
    assert run_id in set(runs["run_id"]) and len(runs) == 2  # the scenario and its baseline
    assert not list(ws.glob(".*partial*"))
    assert main(["audit", "--store", str(ws / "runs.duckdb")]) == 0


@pytest.mark.slow
def test_kill_9_mid_solve_leaves_no_folder_and_no_finished_run(tmp_path: Path) -> None:
    ws = _workspace(tmp_path)
    proc = _cli(*_solve(ws, scenario="consolidate"))
    deadline = time.monotonic() + 300
    try:
        while not list(ws.glob(".out.partial-*/solver.log")):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the solve never started writing"
            time.sleep(0.05)
        time.sleep(0.5)  # inside the first MILP round (tiny's whole solve, scenario and baseline, takes seconds)
    finally:
        proc.kill()  # SIGKILL
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (ws / "out").exists()
    assert _finished_runs(ws / "runs.duckdb") == 0
    partials = list(ws.glob(".out.partial-*"))
    assert len(partials) == 1  # hidden, never under the run's name; the next run on this folder removes it
    assert remove_stale_partials(ws) == partials
    # the store saw the attempt: the run is ``running`` until the next opening settles it as failed
    assert _store_runs(ws / "runs.duckdb")["status"].tolist() == ["running"]
    notes = RunStore(ws / "runs.duckdb").reconcile()
    assert len(notes) == 1 and f"(pid {proc.pid} on " in notes[0] and notes[0].endswith("recorded as failed")
    run = _store_runs(ws / "runs.duckdb").iloc[0]
    assert run["status"] == "failed" and "ended before the run was finished (killed)" in run["reason"]
    audit = RunStore(ws / "runs.duckdb", read_only=True).audit()
    assert audit[["run_id", "status"]].values.tolist() == [[run["run_id"], "failed"]]
    assert RunStore(ws / "runs.duckdb").reconcile() == []  # settled once


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_full_disk_gives_an_error_and_no_half_folder(tmp_path: Path) -> None:
    """Writes beyond 20 kB fail with EFBIG (as a full disk fails with ENOSPC): the report does not fit."""
    ws = _workspace(tmp_path)

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    proc = _cli(*_solve(ws, "--no-baseline", scenario="consolidate"), preexec_fn=limit)
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 1, err[-3000:]
    assert "Traceback" not in err
    assert re.search(r"error: .*/out: File too large \(while writing the run folder\)", err), err[-2000:]
    assert not (ws / "out").exists() and not list(ws.glob(".*partial*"))
    assert _finished_runs(ws / "runs.duckdb") == 0
    # the attempt is recorded, failed, with the error as its reason (DuckDB's log file stays under the limit)
    runs = _store_runs(ws / "runs.duckdb")
    assert runs[["status", "exit_code"]].values.tolist() == [["failed", 1]]
    assert re.fullmatch(r"error: .*/out: File too large \(while writing the run folder\)", runs["reason"].iloc[0])
    assert RunStore(ws / "runs.duckdb", read_only=True).audit()["status"].tolist() == ["failed"]


# -- 6. no orphans -------------------------------------------------------------------------------------------
def _children(pid: int) -> set[int]:
    out: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with open(task / "children") as f:
            out |= {int(x) for x in f.read().split()}
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
@pytest.mark.parametrize("executor,n_workers", [("local", 2), ("dask", 1)])
def test_sweep_workers_end_when_their_driver_is_killed(executor: str, n_workers: int, tmp_path: Path) -> None:
    """Local pool workers follow their driver by our lifeline; a Dask LocalCluster's by Dask's own parent watch."""
    store = tmp_path / "runs.duckdb"
    driver = _cli("sweep", str(SWEEP_SPEC), "--store", str(store), "--workers", str(n_workers), "--executor",
                  executor, "--no-progress")
    deadline = time.monotonic() + 300
    workers: set[int] = set()
    try:
        while len(workers) < n_workers:
            assert driver.poll() is None, driver.communicate()
            assert time.monotonic() < deadline, "the sweep never started its workers"
            workers = {p for p in _children(driver.pid)
                       if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text(errors="replace")}
            time.sleep(0.2)
        time.sleep(2.0)  # the workers are running (importing, solving)
        assert all(_alive(p) for p in workers)
    finally:
        driver.kill()  # SIGKILL the driver only: its workers are not told
        driver.wait(timeout=60)
    deadline = time.monotonic() + 15
    while any(_alive(p) for p in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [p for p in workers if _alive(p)]
    for p in left:  # do not leave them to the rest of the suite
        os.kill(p, signal.SIGKILL)
    assert not left, f"orphaned workers {left} outlived their driver"


# -- 4. YAML limits, measured --------------------------------------------------------------------------------
def test_alias_bomb_is_refused_at_once_and_fair_anchors_still_work(tmp_path: Path) -> None:
    """The 809-byte bomb took 84 s and 1.3 GB before; now it is refused while composing, before any expansion."""
    from instances.validation import MAX_YAML_NODES, YAMLLimitError, safe_load_bounded

    assert len(ALIAS_BOMB.encode()) < 1000
    t0 = time.perf_counter()
    with pytest.raises(YAMLLimitError, match="alias bomb"):
        safe_load_bounded(ALIAS_BOMB)
    assert time.perf_counter() - t0 < 1.0
    fair = "base: &b {rate: 1.5, hours: 16}\nsites:\n" + "".join(f"  s{i}: *b\n" for i in range(1000))
    data = safe_load_bounded(fair)
    assert len(data["sites"]) == 1000 and data["sites"]["s999"] == {"rate": 1.5, "hours": 16}
    # the bound itself: a list of MAX_YAML_NODES - 1 values is MAX_YAML_NODES nodes with the list; one more fails
    assert len(safe_load_bounded("[" + "1," * (MAX_YAML_NODES - 1) + "]")) == MAX_YAML_NODES - 1
    with pytest.raises(YAMLLimitError):
        safe_load_bounded("[" + "1," * MAX_YAML_NODES + "]")
    with pytest.raises(yaml.YAMLError, match="could not determine a constructor"):
        safe_load_bounded("x: !!python/name:os.system ''\n")


# -- 7. every solve leaves a run in the store, whatever its ending ------------------------------------------
def _closed_scenario(ws: Path) -> str:
    """A scenario with every DC closed and unmet demand not allowed: infeasible at once (exit 3)."""
    return _scenario(ws, options={"allow_unmet": False}, modifications=[{"force_closed": ["DC_A", "DC_B", "DC_C"]}],
                     baseline=None)


def _store_runs(path: Path) -> pd.DataFrame:
    return RunStore(path, read_only=True).runs(with_kpis=False, with_params=False)


def test_an_infeasible_solve_is_recorded_with_its_reason(tmp_path: Path, monkeypatch, capsys) -> None:
    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    assert main(_solve(ws, scenario=_closed_scenario(ws))) == 3
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    assert "why:" in out and max(len(line) for line in out.splitlines()) <= 100, out  # the diagnosis, wrapped
    runs = _store_runs(ws / "runs.duckdb")
    assert len(runs) == 1
    run = runs.iloc[0]
    assert (run["status"], run["solve_status"], run["exit_code"]) == ("finished", "infeasible", 3)
    assert run["reason"].startswith("infeasible: every DC is closed in this scenario: no demand can be served "
                                    "(24,200 units over the horizon); zone Berlin (Z_BER): 9,900 units")
    assert run["out_dir"] == str((ws / "out").resolve())
    assert json.loads((ws / "out" / "run.json").read_text())["run_id"] == run["run_id"]  # a complete folder
    audit = RunStore(ws / "runs.duckdb", read_only=True).audit()
    assert audit[["action", "run_id", "status"]].values.tolist() == [["plan", run["run_id"], "finished"]]
    assert audit["detail"].iloc[0] == run["reason"]
    assert main(["audit", "--store", str(ws / "runs.duckdb")]) == 0


@pytest.mark.slow
@pytest.mark.parametrize("sig,reason", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "interrupted (SIGTERM)")])
def test_an_interrupted_solve_is_recorded_interrupted_and_leaves_no_folder(sig, reason, tmp_path: Path) -> None:
    """SIGINT (Ctrl-C) or SIGTERM to a real solve while its solver runs: exit 130, no folder, the run
    ``interrupted``."""
    ws = _workspace(tmp_path)
    proc = _cli(*_solve(ws, scenario="consolidate"))
    deadline = time.monotonic() + 300
    while not list(ws.glob(".out.partial-*/solver.log")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the solve never started writing"
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    assert not (ws / "out").exists() and not list(ws.glob(".*partial*"))
    runs = _store_runs(ws / "runs.duckdb")
    assert runs[["status", "exit_code", "reason"]].values.tolist() == [["interrupted", 130, reason]]
    audit = RunStore(ws / "runs.duckdb", read_only=True).audit()
    assert audit[["action", "run_id", "status"]].values.tolist() == [["plan", runs["run_id"].iloc[0],
                                                                      "interrupted"]]
    assert main(["audit", "--store", str(ws / "runs.duckdb")]) == 0


@pytest.mark.slow
def test_a_kill_between_publishing_and_recording_is_settled_at_the_next_open(tmp_path: Path, capsys) -> None:
    """SIGKILL of a real solve after its folder was renamed into place and before the store called its runs
    finished (the test hook holds the process in that window): the folder is complete, the store holds the runs
    ``pending``; the next solve on the store records them finished, with an audit row and a message."""
    ws = _workspace(tmp_path)
    store = ws / "runs.duckdb"
    proc = _cli(*_solve(ws, scenario="consolidate"), env={**os.environ, "TWINPLAN_TEST_HOLD_AFTER_PUBLISH": "120"})
    deadline = time.monotonic() + 300
    try:
        while not (ws / "out" / "run.json").is_file():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the run folder was never published"
            time.sleep(0.05)
        time.sleep(0.2)
    finally:
        proc.kill()
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    meta = json.loads((ws / "out" / "run.json").read_text())
    ids = [meta["run_id"], meta["baseline_run_id"]]
    runs = _store_runs(store).set_index("run_id")
    assert runs.loc[ids, "status"].tolist() == ["pending", "pending"]
    assert RunStore(store, read_only=True).audit().empty  # not yet audited as finished
    # the next run on this store settles them (the killed process is gone)
    assert main(_solve(ws, "--out", str(ws / "second"), scenario=_closed_scenario(ws))) == 3
    err = capsys.readouterr().err
    assert f"note: store {store}: run {ids[0]}: its process (pid {proc.pid}) ended after publishing" in err
    assert "recorded as finished now" in err
    runs = _store_runs(store).set_index("run_id")
    assert runs.loc[ids, "status"].tolist() == ["finished", "finished"]
    assert runs.loc[ids[0], "exit_code"] == 0 and runs.loc[ids[0], "objective"] > 0
    audit = RunStore(store, read_only=True).audit().set_index("run_id")
    assert audit.loc[ids, "status"].tolist() == ["finished", "finished"]
    assert audit.loc[ids[0], "detail"].startswith("reconciled: its process")
    assert main(["audit", "--store", str(store)]) == 0


# -- 5b. run rows are sealed too --------------------------------------------------------------------------------
def _store_with_runs(ws: Path) -> Path:
    """A store with a finished and a failed run, each with its audit row, as ``twinplan solve`` records them."""
    path = ws / "runs.duckdb"
    store = RunStore(path)
    for i, (status, objective, code) in enumerate([("finished", 2_241_058.0, 0), ("failed", None, 1)]):
        run = {"run_id": f"r{i}", "name": "consolidate", "instance": "tiny", "status": status, "objective": objective,
               "exit_code": code, "reason": None if code == 0 else "error: boom", "input_hash": f"in{i}",
               "plan_hash": f"plan{i}" if objective else None, "kpis": {"total_cost": objective or 0.0},
               "user_name": "alice"}
        store.record_run(run, audit_row={"action": "plan", "allowed": True, "user_name": "alice", "run_id": f"r{i}",
                                         "status": status, "objective": objective})
    return path


RUN_TAMPER = [
    ("objective-rewritten", "UPDATE runs SET objective = 1.0 WHERE run_id = 'r0'",
     r"run r0: row changed after it was recorded"),
    ("status-rewritten", "UPDATE runs SET status = 'finished', reason = NULL WHERE run_id = 'r1'",
     r"run r1: row changed after it was recorded"),
    ("fingerprint-rewritten", "UPDATE runs SET plan_hash = 'other', input_hash = 'other' WHERE run_id = 'r0'",
     r"run r0: row changed after it was recorded"),
    ("kpis-rewritten", """UPDATE runs SET kpis = '{"total_cost":1.0}' WHERE run_id = 'r0'""",
     r"run r0: row changed after it was recorded"),
    ("seal-removed", "UPDATE runs SET row_mac = NULL WHERE run_id = 'r0'", r"run r0: has no seal"),
    ("seal-copied", "UPDATE runs SET row_mac = (SELECT row_mac FROM runs WHERE run_id = 'r0') WHERE run_id = 'r1'",
     r"run r1: row changed after it was recorded"),
    ("row-deleted", "DELETE FROM runs WHERE run_id = 'r0'",
     r"run r0: recorded by audit row 1 but missing from the runs table \(deleted\)"),
    ("row-forged", "INSERT INTO runs (run_id, status, objective) VALUES ('r9', 'finished', 1.0)",
     r"run r9: has no seal"),
]


@pytest.mark.parametrize("case", RUN_TAMPER, ids=[c[0] for c in RUN_TAMPER])
def test_tampering_with_a_run_row_is_detected(case, tmp_path: Path, capsys) -> None:
    _, sql, message = case
    path = _store_with_runs(_workspace(tmp_path))
    assert main(["audit", "--store", str(path)]) == 0
    assert "audit chain intact: 2 row(s), chain, seals and checkpoint verified; 2 run row(s) verified" in \
        capsys.readouterr().out
    _sql(path, sql)
    code = main(["audit", "--store", str(path)])
    out, err = capsys.readouterr()
    assert code == 1
    assert re.search(message, err), err
    assert "AUDIT VERIFICATION FAILED" in err and "intact" not in out


# -- 2b. every other --out is written whole or not at all, and never over someone's file --------------------------
def _limited(max_bytes: int) -> Callable[[], None]:
    """preexec_fn: writes past ``max_bytes`` fail with EFBIG (as a full disk fails with ENOSPC)."""
    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, max_bytes))
    return limit


def _siblings(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_generate_out_is_whole_or_nothing_and_never_clobbers(tmp_path: Path, capsys) -> None:
    out = tmp_path / "inst"
    assert main(["generate", "--preset", "tiny", "--out", str(out)]) == 0
    assert main(["validate", str(out)]) == 0
    (out / "notes.txt").write_text("mine")
    assert main(["generate", "--preset", "tiny", "--seed", "8", "--out", str(out)]) == 2
    assert re.search(r"inst: exists and is not empty; it is not replaced \(give --force to replace it\)",
                     capsys.readouterr().err)
    assert (out / "notes.txt").read_text() == "mine"  # untouched
    assert main(["generate", "--preset", "tiny", "--seed", "8", "--out", str(out), "--force"]) == 0
    assert not (out / "notes.txt").exists() and (out / "instance.yaml").is_file()  # replaced whole
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("keep")
    assert main(["generate", "--preset", "tiny", "--out", str(docs), "--force"]) == 2
    assert "docs: exists and is not an instance folder (it has no instance.yaml)" in capsys.readouterr().err
    assert _siblings(docs) == ["a.txt"] and _siblings(tmp_path) == ["docs", "inst"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_generate_that_fails_mid_write_leaves_the_earlier_folder(tmp_path: Path) -> None:
    out = tmp_path / "inst"
    assert main(["generate", "--preset", "tiny", "--out", str(out)]) == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    proc = _cli("generate", "--preset", "eu_fba", "--out", str(out), "--force", preexec_fn=_limited(1_000_000))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1, err[-2000:]  # eu_fba's demand.csv is 4.6 MB
    assert "Traceback" not in err
    assert re.search(r"error: .*/inst: File too large \(while writing the instance folder\)", err), err[-2000:]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # tiny, as it was
    assert _siblings(tmp_path) == ["inst"]  # no temporary folder left


def test_report_out_never_overwrites_a_file_that_is_not_a_report(tmp_path: Path, capsys) -> None:
    from engine.report import GENERATOR_MARK
    from tests.test_report import write_run

    run_dir, _, _ = write_run(tmp_path / "run")
    notes = tmp_path / "notes.html"
    notes.write_text("<p>my notes</p>")
    assert main(["report", str(run_dir), "--out", str(notes)]) == 2
    assert "notes.html: exists and is not a twinplan report; it is not replaced" in capsys.readouterr().err
    assert notes.read_text() == "<p>my notes</p>"
    page = tmp_path / "page.html"
    assert main(["report", str(run_dir), "--out", str(page)]) == 0
    first = page.read_text()
    assert GENERATOR_MARK in first
    page.write_text(first.replace("</body>", "<p>stale</p></body>"))
    assert main(["report", str(run_dir), "--out", str(page)]) == 0  # a twinplan report: replaced
    assert page.read_text() == first
    assert main(["report", str(run_dir), "--out", str(tmp_path)]) == 2
    assert "is a folder, not a file" in capsys.readouterr().err
    assert _siblings(tmp_path) == ["notes.html", "page.html", "run"]


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGXFSZ"), reason="needs RLIMIT_FSIZE")
def test_report_that_fails_mid_write_leaves_the_earlier_report(tmp_path: Path) -> None:
    from tests.test_report import write_run

    run_dir, _, _ = write_run(tmp_path / "run")
    page = tmp_path / "page.html"
    assert main(["report", str(run_dir), "--out", str(page)]) == 0
    before = page.read_bytes()
    assert len(before) > 30_000
    proc = _cli("report", str(run_dir), "--out", str(page), preexec_fn=_limited(20_000))
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 1 and "Traceback" not in err, err[-2000:]
    assert re.search(r"error: .*page\.html: File too large \(while writing the report\)", err), err[-2000:]
    assert page.read_bytes() == before
    assert _siblings(tmp_path) == ["page.html", "run"]


def test_stress_out_is_checked_before_any_work(tmp_path: Path, capsys) -> None:
    (tmp_path / "file").write_text("x")
    t0 = time.perf_counter()
    assert main(["stress", str(TINY), "--out", str(tmp_path / "file")]) == 2
    assert re.search(r"error: --out .*file/stress\.csv: .*file is a file, not a folder", capsys.readouterr().err)
    (tmp_path / "run" / "stress.csv").mkdir(parents=True)
    assert main(["stress", str(TINY), "--out", str(tmp_path / "run")]) == 2
    assert re.search(r"error: --out .*run/stress\.csv: is a folder, not a file", capsys.readouterr().err)
    assert time.perf_counter() - t0 < 5  # refused before the solve and the stress simulations


def test_atomic_file_publishes_whole_or_nothing(tmp_path: Path) -> None:
    from engine.atomic import OutputPathError, atomic_file

    target = tmp_path / "points.csv"
    with atomic_file(target) as tmp:
        tmp.write_text("first")
        assert not target.exists()  # nothing under the name until the block ends
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError), atomic_file(target) as tmp:
        tmp.write_text("second, half done")
        raise RuntimeError("stress simulation died")
    assert target.read_text() == "first" and _siblings(tmp_path) == ["points.csv"]
    with pytest.raises(OutputPathError, match="exists and is not a file twinplan wrote"), \
            atomic_file(target, replaceable=lambda p: False):
        pass
    assert target.read_text() == "first"


@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="needs Linux /proc")
def test_reconcile_tells_a_live_writer_from_a_reused_pid(tmp_path: Path) -> None:
    """A ``running`` run whose pid now belongs to a process started after the run is settled (its writer is
    gone); one whose writer is that live process is left alone."""
    import socket
    from datetime import timedelta

    from engine.atomic import process_started_at
    from engine.store import utcnow

    t0 = utcnow()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        t1 = utcnow()
        started = process_started_at(child.pid)
        assert started is not None and t0 - timedelta(seconds=2) <= started <= t1 + timedelta(seconds=2)
        path = tmp_path / "runs.duckdb"
        store = RunStore(path)
        for run_id, since in (("live", t1 + timedelta(seconds=1)), ("reused", t0 - timedelta(hours=1))):
            store.record_run({"run_id": run_id, "status": "running", "pid": child.pid, "host": socket.gethostname(),
                              "started_at": since})
        notes = RunStore(path).reconcile()
        assert len(notes) == 1 and notes[0].startswith(f"run reused: its process (pid {child.pid} on ")
        statuses = dict(_store_runs(path)[["run_id", "status"]].values.tolist())
        assert statuses == {"live": "running", "reused": "failed"}
    finally:
        child.kill()
        child.wait(timeout=30)
    assert RunStore(path).reconcile()[0].startswith("run live: its process")  # now its writer is gone too
    assert main(["audit", "--store", str(path)]) == 0


@pytest.mark.slow
def test_a_not_executable_solve_is_recorded_with_its_breaches(tmp_path: Path, monkeypatch, capsys) -> None:
    """tiny's port closure at 1 replication breaks an SLA in the simulation (exit 6): a complete folder, the
    run ``finished`` with exit code 6 and the breaches as its reason; the printed answer fits 100 columns."""
    from engine.answer import breach_sentence

    ws = _workspace(tmp_path)
    monkeypatch.chdir(ws)
    assert main(_solve(ws, "--no-baseline", "--replications", "1", scenario="port_closure")) == 6
    out = capsys.readouterr().out
    assert out.startswith("NOT EXECUTABLE: ") and max(len(line) for line in out.splitlines()) <= 100, out
    result = json.loads((ws / "out" / "result.json").read_text())
    assert result["executable"] is False and result["answer"]["breaches"]
    run = _store_runs(ws / "runs.duckdb").iloc[0]
    assert (run["status"], run["exit_code"]) == ("finished", 6)
    assert run["reason"] == "not executable: " + breach_sentence(result["answer"]["breaches"])
    assert RunStore(ws / "runs.duckdb", read_only=True).audit()["detail"].tolist() == [run["reason"]]
