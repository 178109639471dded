"""Outputs declared once and read everywhere: plan tables (store DDL, checker, load), statuses, KPI metadata.

Everything runs on real plans of the bundled ``tiny`` instance (solved with HiGHS) and a real DuckDB file.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pytest

import solvers
from engine.hashing import canonical_json
from engine.kpi import DELTA_KPIS, KPIS, compute_kpis
from engine.pipeline import NO_SOLUTION_STATUSES, PlanResult, exit_code, plan
from engine.report import fmt_value
from engine.store import DUCKDB_TYPES, RunStore, best
from formulations import network_design, redistribution
from formulations.check import check_plan
from instances.plain import to_plain
from instances.plan import PLAN_COLUMN_DEFAULTS, PLAN_SCHEMA, PLAN_TABLES, Plan, plan_columns
from solvers import Termination
from solvers.fingerprint import data_fingerprint, structure_fingerprint

SOLVE = {"time_limit": 30.0, "mip_gap": 0.0}


@pytest.fixture(scope="module")
def nd_plan(tiny) -> Plan:
    return network_design.solve(tiny, **SOLVE)


@pytest.fixture(scope="module")
def rd_plan(tiny) -> Plan:
    return redistribution.solve(tiny, **SOLVE)


# ---------------------------------------------------------------------------------------------------
# plan tables
# ---------------------------------------------------------------------------------------------------
def test_the_declaration_is_the_list_of_plan_tables_and_their_defaults():
    assert list(PLAN_TABLES) == ["sites", "flows", "site_throughput", "capacity", "labor", "unmet", "transfers",
                                 "assignment", "service", "costs"]
    for name, table in PLAN_SCHEMA.items():
        assert PLAN_TABLES[name] == tuple(c.name for c in table.columns)
        for c in table.columns:
            assert c.dtype in DUCKDB_TYPES and c.description, (name, c.name)
    assert PLAN_COLUMN_DEFAULTS == {"capacity": {"extra_hours_per_day": 0.0}, "transfers": {"period": 1}}
    assert plan_columns("flows", "str") == ["origin_id", "destination_id", "product_id", "leg"]
    assert plan_columns("labor", checked_min=True) == ["regular_hours", "overtime_hours", "temp_hours"]


def test_store_ddl_types_match_the_declaration_for_every_plan_table(tmp_path: Path):
    store = RunStore(tmp_path / "runs.duckdb")
    store.migrate()
    con = duckdb.connect(str(store.path), read_only=True)
    try:
        rows = con.execute("SELECT table_name, column_name, data_type FROM duckdb_columns() "
                           "WHERE table_name LIKE 'plan_%' ORDER BY table_name, column_index").fetchall()
    finally:
        con.close()
    found: dict[str, dict[str, str]] = {}
    for table, col, dtype in rows:
        found.setdefault(table, {})[col] = dtype
    assert set(found) == {f"plan_{n}" for n in PLAN_SCHEMA}
    for name, table in PLAN_SCHEMA.items():
        expected = {"run_id": "VARCHAR", **{c.name: DUCKDB_TYPES[c.dtype] for c in table.columns}}
        assert found[f"plan_{name}"] == expected, name
    # spot checks against what the types must be, independent of the mapping
    assert found["plan_flows"]["period"] == "INTEGER" and found["plan_flows"]["quantity"] == "DOUBLE"
    assert found["plan_sites"]["open"] == "BOOLEAN" and found["plan_costs"]["component"] == "VARCHAR"


def test_a_solved_plan_round_trips_through_the_store_with_the_declared_types(tmp_path: Path, nd_plan: Plan):
    store = RunStore(tmp_path / "runs.duckdb")
    assert store.record_run({"run_id": "r1", "status": "finished", "solve_status": str(nd_plan.status),
                             "objective": nd_plan.objective}, nd_plan.tables)
    back = store.plan_tables("r1")
    for name, table in PLAN_SCHEMA.items():
        mine = nd_plan.tables[name]
        assert len(back[name]) == len(mine), name
        if mine.empty:
            continue
        for c in table.columns:
            if c.name not in mine:
                continue
            got = back[name][c.name]
            if c.dtype == "float":
                np.testing.assert_allclose(got.to_numpy(float), pd.to_numeric(mine[c.name]).to_numpy(float))
            elif c.dtype == "int":
                assert got.astype(int).tolist() == mine[c.name].astype(int).tolist()
            elif c.dtype == "bool":
                assert got.astype(bool).tolist() == mine[c.name].astype(bool).tolist()
            else:
                assert got.astype(str).tolist() == mine[c.name].astype(str).tolist()
    # the costs add up to the solved objective on the way back too
    assert back["costs"]["amount"].sum() == pytest.approx(nd_plan.objective, rel=1e-9)


def test_every_solved_table_has_the_declared_columns(nd_plan: Plan, rd_plan: Plan):
    for p in (nd_plan, rd_plan):
        for name, df in p.tables.items():
            required = set(PLAN_TABLES[name]) - set(PLAN_COLUMN_DEFAULTS.get(name, {}))
            if not df.empty:
                assert required <= set(df.columns), (p.decision, name, list(df.columns))


def test_the_checker_bounds_every_declared_column_it_is_told_to(tiny, rd_plan: Plan):
    """Each column declared ``min=0`` made negative in a real plan is reported as ``negative`` by name."""
    assert check_plan(tiny, rd_plan).empty
    checked = [(name, c) for name in PLAN_SCHEMA for c in plan_columns(name, checked_min=True)]
    assert ("flows", "quantity") in checked and ("capacity", "modules") in checked and len(checked) == 14
    tried = 0
    for name, col in checked:
        table = rd_plan.tables[name]
        if table.empty or col not in table:
            continue
        bad = table.copy()
        bad.loc[bad.index[0], col] = -7.5
        corrupt = Plan(rd_plan.decision, rd_plan.status, objective=rd_plan.objective,
                       tables={**rd_plan.tables, name: bad}, meta=rd_plan.meta)
        v = check_plan(tiny, corrupt)
        neg = v[v["check"] == "negative"]
        assert len(neg) == 1 and neg["message"].iloc[0] == f"{name}.{col} is negative", (name, col, v)
        assert float(neg["value"].iloc[0]) == -7.5
        tried += 1
    assert tried >= 6  # flows, site_throughput, labor hours (3), transfers/unmet where the plan has rows


# ---------------------------------------------------------------------------------------------------
# statuses
# ---------------------------------------------------------------------------------------------------
def test_status_is_the_enum_in_plans_and_survives_json_and_the_store(tmp_path: Path, nd_plan: Plan):
    assert nd_plan.status is Termination.OPTIMAL
    p = Plan("consolidation", "time_limit")
    assert p.status is Termination.TIME_LIMIT
    p.status = "infeasible"  # however it is set
    assert p.status is Termination.INFEASIBLE and p.status.proves_no_solution
    assert Plan("capacity", "feasible").status is Termination.UNKNOWN  # outside the vocabulary
    # plan.json
    nd_plan.save(tmp_path / "plan", parquet=False)
    assert json.loads((tmp_path / "plan" / "plan.json").read_text())["status"] == "optimal"
    assert Plan.load(tmp_path / "plan").status is Termination.OPTIMAL
    # result.json of a pipeline result
    res = PlanResult(instance_name="tiny", scenario={"name": "base"}, status="optimal", objective=nd_plan.objective,
                     plan=nd_plan, simulation=None, kpis={}, rounds=[], violations=pd.DataFrame())
    assert res.status is Termination.OPTIMAL
    res.save(tmp_path / "run")
    doc = json.loads((tmp_path / "run" / "result.json").read_text())
    assert doc["status"] == "optimal" and Termination.parse(doc["status"]) is Termination.OPTIMAL
    # run store: text in the file, the enum in memory
    store = RunStore(tmp_path / "runs.duckdb")
    store.record_run({"run_id": "r1", "status": "finished", "solve_status": str(nd_plan.status),
                      "objective": nd_plan.objective})
    assert store.run("r1")["solve_status"] is Termination.OPTIMAL


def test_exit_codes_follow_the_enum():
    def result(status, objective):
        return PlanResult(instance_name="x", scenario={}, status=status, objective=objective,
                          plan=Plan("consolidation", status), simulation=None, kpis={}, rounds=[],
                          violations=pd.DataFrame())

    assert {Termination.INFEASIBLE, Termination.UNBOUNDED,
                                    Termination.INFEASIBLE_OR_UNBOUNDED, Termination.ERROR} == NO_SOLUTION_STATUSES
    assert [exit_code(result(s, None)) for s in ("infeasible", "unbounded", "infeasible_or_unbounded")] == [3, 3, 3]
    assert exit_code(result("time_limit", None)) == 4 and exit_code(result("error", None)) == 4
    assert exit_code(result("optimal", 12.5)) == 0
    from engine.sweep import run_outcome  # what the run store records: the exit code and why

    assert run_outcome(result("time_limit", None)) == (
        4, "no solution within the time limit (solver status time_limit)")
    assert run_outcome(result("infeasible", None)) == (3, "infeasible") and run_outcome(result("optimal", 1.0)) == (
        0, None)


# ---------------------------------------------------------------------------------------------------
# KPI metadata
# ---------------------------------------------------------------------------------------------------
def test_every_kpi_of_a_simulated_plan_is_declared(tiny):
    result = plan(tiny, None, time_limit=30, mip_gap=0.0, max_rounds=1, replications=2, seed=1)
    assert set(result.kpis) == set(KPIS)  # simulated: every declared KPI is computed, nothing undeclared
    assert set(compute_kpis(result.instance, result.plan)) < set(KPIS)
    for k in KPIS.values():
        assert k.direction in ("lower", "higher", None) and k.label[:1].isupper() and k.unit and k.format
    assert KPIS["service_level"].direction == "higher" and KPIS["total_cost"].direction == "lower"
    assert DELTA_KPIS["cycle_time_p50_h"] == ("hours", "order-to-ship time (p50)")
    # the formats are the report's vocabulary: every KPI of the run shows as the report formats it
    assert {k.format for k in KPIS.values()} <= {"money", "hours", "days", "km", "units", "share", "index"}
    assert fmt_value(result.kpis["labour_hours"], KPIS["labour_hours"].format).endswith(" h")
    assert fmt_value(0.987, KPIS["service_level"].format) == "98.7 %"
    assert fmt_value(1234567.4, KPIS["total_cost"].format, "EUR") == "EUR 1,234,567"


def test_store_best_ranks_by_the_declared_direction(tmp_path: Path):
    store = RunStore(tmp_path / "runs.duckdb")
    for i, (cost, service) in enumerate([(300.0, 0.91), (100.0, 0.95), (200.0, 0.99)]):
        store.record_run({"run_id": f"r{i}", "status": "finished", "kpis": {"total_cost": cost,
                                                                           "service_level": service}})
    assert best("total_cost", n=3, store=store)["run_id"].tolist() == ["r1", "r2", "r0"]  # lower is better
    assert best("service_level", n=3, store=store)["run_id"].tolist() == ["r2", "r1", "r0"]  # higher is better


# ---------------------------------------------------------------------------------------------------
# merged helpers: one to-plain converter, one module of model hashes
# ---------------------------------------------------------------------------------------------------
def test_to_plain_is_the_one_converter_for_json_yaml_and_hashes(tmp_path: Path, nd_plan: Plan):
    value = {("DC_A", "pick"): np.float64(0.5), "t": (1, np.int64(2)), "s": {3, 1}, "bad": float("nan"),
             "status": Termination.TIME_LIMIT, "day": dt.date(2026, 1, 5), "a": np.arange(3), "path": Path("x")}
    assert to_plain(value) == {"DC_A/pick": 0.5, "t": [1, 2], "s": [1, 3], "bad": None, "status": "time_limit",
                               "day": "2026-01-05", "a": [0, 1, 2], "path": "x"}
    assert to_plain(value, non_finite="repr")["bad"] == "nan"
    assert math.isnan(to_plain(value, non_finite="keep")["bad"])
    assert type(to_plain(value)["t"][1]) is int
    assert canonical_json({"b": float("inf"), "a": np.int64(1)}) == '{"a":1,"b":"inf"}'
    # a plan's meta with a tuple-keyed derate is written as "site/stage" keys
    p = Plan("consolidation", "optimal", objective=1.0, meta={"options": {"capacity_derate": {("DC_A", "pick"): 0.9}}})
    p.save(tmp_path / "p", parquet=False)
    assert json.loads((tmp_path / "p" / "plan.json").read_text())["meta"]["options"]["capacity_derate"] == \
        {"DC_A/pick": 0.9}


def test_model_hashes_tell_structure_from_data(tiny):
    """The same model twice: both hashes equal; a derated stage: same structure (a basis carries over), other data."""
    def form(options):
        return solvers.to_standard_form(redistribution.build_model(redistribution.prepare(tiny, options)))

    a, b = form(redistribution.Options()), form(redistribution.Options())
    derated = form(redistribution.Options(capacity_derate={("DC_A", "pick"): 0.5}))
    assert data_fingerprint(a) == data_fingerprint(b) and structure_fingerprint(a) == structure_fingerprint(b)
    assert structure_fingerprint(derated) == structure_fingerprint(a)
    assert data_fingerprint(derated) != data_fingerprint(a)
    assert len(data_fingerprint(a)) == 64 and len(structure_fingerprint(a)) == 32  # sha256, blake2b-128
