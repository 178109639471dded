"""The per-decision answer (engine.answer), exit code 6, demand never vanishing, `twinplan lsi`.

Every figure is checked against numbers computed by hand from the plan tables and the instance CSVs.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.answer import answer_for_run, answer_text, build_answer, like_for_like_baseline, peak_stress
from engine.lsi import labour_stress_index, read_forecast
from engine.pipeline import EXIT_NOT_EXECUTABLE, exit_code, plan, round_line
from engine.reach import unreachable_zones, unserved_demand
from engine.scenario import apply_scenario, load_scenario, scenario_from_dict
from formulations.check import check_plan
from instances.instance import bundled_instance_path, load_instance
from instances.plan import Plan
from instances.validation import InstanceValidationError

TINY = bundled_instance_path("tiny")


@pytest.fixture(scope="module")
def tiny():
    return load_instance(TINY)


@pytest.fixture(scope="module")
def consolidation(tiny):
    """tiny's consolidate scenario against today's network, 4 replications."""
    sc = load_scenario("consolidate", TINY)
    result = plan(tiny, sc, replications=4)
    base = plan(tiny, load_scenario("baseline", TINY), replications=4)
    return result, base, build_answer(result, base)


def test_network_design_answer_by_hand(tiny, consolidation):
    result, base, ans = consolidation
    assert ans["decision"] == "network_design" and ans["time_basis"] == {"label": "per year", "days": 365.0}
    assert ans["currency"] == "EUR" and ans["baseline"] == "baseline"
    # investment = opening of opened sites + closing of closed sites + module capex, from the CSVs by hand
    sites = result.plan.tables["sites"]
    csv = tiny.sites.set_index("id")
    opened = sites.loc[sites["opened"].astype(bool), "site_id"]
    closed = sites.loc[sites["closed"].astype(bool), "site_id"]
    opening, closing = csv.loc[opened, "opening_cost"].sum(), csv.loc[closed, "closing_cost"].sum()
    modules = pd.to_numeric(result.plan.tables["capacity"]["capex"]).sum() if len(result.plan.capacity) else 0.0
    inv = ans["investment"]
    assert inv["opening"] == pytest.approx(opening) and inv["closing"] == pytest.approx(closing)
    assert inv["modules"] == pytest.approx(modules)
    assert inv["total"] == pytest.approx(inv["opening"] + inv["closing"] + inv["modules"])
    assert inv["total"] > 0  # tiny's free choice opens the automated candidate DC_C (opening cost 100 k)
    # payback = investment / running cost saved per year (one-off, capital charge and penalties excluded)
    skip = {"opening", "closing", "capex_annualized", "unmet_penalty"}

    def running(p: Plan) -> float:
        c = p.tables["costs"]
        return float(c.loc[~c["component"].isin(skip), "amount"].sum())

    savings = running(base.plan) - running(result.plan)
    assert ans["annual_savings"] == pytest.approx(savings)
    if savings > 0:
        assert ans["payback_years"] == pytest.approx(inv["total"] / savings)
    else:
        assert ans["payback_years"] is None and "does not pay back" in ans["headline"]
    # labour per site: plan hours x 52 weeks / 2 periods per year; FTE = hours / (40 h a week x 365/7)
    annual = 52 / 2
    hours = result.plan.tables["labor"].groupby("site_id")[["regular_hours", "overtime_hours", "temp_hours"]].sum()
    for row in ans["sites"]:
        h = float(hours.loc[row["site_id"]].sum()) * annual if row["site_id"] in hours.index else 0.0
        assert row["labour_hours_after"] == pytest.approx(h)
        assert row["hours_per_fte"] == pytest.approx(40.0 * 365 / 7)
        assert row["fte_after"] == pytest.approx(h / (40.0 * 365 / 7))
    # the consolidated (receiving) site first: the largest volume gained (the repair rounds decide whether the
    # scenario moves volume at all: with 4 replications tiny keeps DC_A and closes the idle DC_B); a closed site
    # ships nothing afterwards
    gains = [r["volume_after"] - r["volume_before"] for r in ans["sites"]]
    assert gains[0] == max(gains)
    closed_ids = set(closed)
    assert closed_ids and all(r["volume_after"] == 0 for r in ans["sites"] if r["site_id"] in closed_ids)
    # every cost component the baseline has shows its baseline amount (never a made-up 0)
    base_groups = {c["component"]: c["baseline"] for c in ans["costs"]}
    assert all(v is not None for v in base_groups.values()) and base_groups["labour"] > 0
    # unmet demand and its penalty on their own line
    assert ans["unmet"]["units_after"] == pytest.approx(float(result.plan.unmet["quantity"].sum())
                                                        if len(result.plan.unmet) else 0.0)
    assert any(line.strip().startswith("unmet demand:") for line in ans["lines"])
    cov = ans["coverage"]
    assert cov["avg_delivery_days_after"] == pytest.approx(result.kpis["avg_delivery_days"])
    assert 0.0 <= cov["within_promise_after"] <= 1.0
    assert json.dumps(result.to_dict())  # JSON-able, with the answer under "answer" once set
    result.answer = ans
    assert result.to_dict()["answer"]["headline"] == ans["headline"]


def test_redistribution_answer_whole_trucks_and_stockouts_avoided(tiny):
    inv = tiny.inventory.copy()
    inv.loc[inv["site_id"] == "DC_B", "on_hand"] = 0.0  # Munich empty, Hanover with stock for everyone
    inv.loc[inv["site_id"] == "DC_A", "on_hand"] *= 3
    res = tiny.resources.copy()
    res.loc[(res["site_id"] == "DC_A") & (res["stage"] == "storage"), "count"] *= 2  # room for it
    inst = tiny.replace(inventory=inv, resources=res)
    sc = scenario_from_dict({"name": "pc", "decision": "redistribution", "modifications": [
        {"close_port": "PORT_HAM"}, {"close_lane": {"origin": "DC_A", "destination": "Z_MUC"}}]})
    result = plan(inst, sc, replications=4)
    ans = answer_for_run(result, None)
    assert ans["decision"] == "redistribution" and ans["time_basis"]["label"] == "over the 14-day horizon"
    tr = result.plan.tables["transfers"]
    assert len(tr) > 0 and ans["transfers"]
    # whole trucks per lane and dispatch period, equal to the MILP's integer trucks (meta truckloads)
    loads = {(t["origin_id"], t["destination_id"], t["period"]): t["trucks"] for t in result.plan.meta["truckloads"]}
    for row in ans["transfers"]:
        assert isinstance(row["trucks"], int)
        assert row["trucks"] == loads[(row["origin_id"], row["destination_id"], row["period"])]
        g = tr[(tr["origin_id"] == row["origin_id"]) & (tr["destination_id"] == row["destination_id"])
               & (tr["period"] == row["period"])]
        assert row["units"] == pytest.approx(g["quantity"].sum())
        assert sum(row["products"].values()) == pytest.approx(row["units"])
        # the trucks carry the load: volume and weight within the truck capacity (instance defaults)
        vol = (g["quantity"] * g["product_id"].map(inst.products.set_index("id")["unit_volume_m3"])).sum()
        assert vol <= row["trucks"] * float(inst.defaults["truck_capacity_m3"]) + 1e-6
    assert ans["units_moved"] == pytest.approx(tr["quantity"].sum())
    assert ans["trucks_total"] == sum(t["trucks"] for t in result.plan.meta["truckloads"])
    # Munich's demand (4,125 units) can reach Munich only through a transfer: lost without, served with
    munich = float(inst.demand.loc[inst.demand["zone_id"] == "Z_MUC", "quantity"].sum())
    s = ans["stockouts"]
    assert s["do_nothing_units"] == pytest.approx(munich) and s["plan_units"] == pytest.approx(0.0, abs=1e-6)
    assert s["avoided_units"] == pytest.approx(munich)
    assert f"{munich:,.0f} stockout units avoided" in ans["headline"]
    # served + unmet = demand in every zone, product and period (the independent checker)
    assert check_plan(result.instance, result.plan).empty
    _fits_100_columns(answer_text(ans), ans)


def _fits_100_columns(text: str, ans: dict) -> None:
    """The printed answer fits 100 columns, and wrapping lost no word of it."""
    assert max(len(line) for line in text.splitlines()) <= 100, text
    assert text.split() == " ".join(ans["lines"]).split()


def test_capacity_answer_like_for_like_with_failure_points(tiny, tmp_path):
    sc = load_scenario("peak", TINY)
    base_inst, today, rounds = like_for_like_baseline(tiny, sc, lambda n: load_scenario(n, TINY))
    assert today.name == "peak_today" and rounds == 1 and base_inst.expansions.empty
    assert today.options["allow_extra_shift"] is False and today.options["max_temp_share"] == 0.0
    result = plan(tiny, sc, replications=4)
    base = plan(base_inst, today, replications=4, max_rounds=1)
    ans = answer_for_run(result, base, out_dir=tmp_path, replications=4)
    assert ans["decision"] == "capacity" and ans["time_basis"] == {"label": "over the 7-day peak", "days": 7.0}
    # same window, same demand: the baseline covers the same 7 peak days
    assert len(base.instance.periods) == len(result.instance.periods) == 7
    assert base.instance.demand["quantity"].sum() == pytest.approx(result.instance.demand["quantity"].sum())
    for c in ans["costs"]:  # every component is compared with its own amount under today's capacity
        assert c["baseline"] is not None
    assert [c for c in ans["costs"] if c["component"] == "labour"][0]["baseline"] > 0
    # additions by hand: modules x module capex (expansions.csv), investment = sum of its parts
    exp = tiny.expansions.set_index(["site_id", "stage"])
    cap = result.plan.tables["capacity"]
    for a in ans["additions"]:
        if a["stage"] == "labour":  # temps x hourly rate x (1 + premium) x hours a day x 7 days
            n = result.plan.meta["temps"][a["site_id"]]
            rate = tiny.labor.set_index("site_id").loc[a["site_id"], "hourly_rate"]
            assert a["added_count"] == n and a["cost"] == pytest.approx(n * rate * 1.3 * 8.0 * 7)
            continue
        if a["stage"] == "shift":
            site = cap[cap["site_id"] == a["site_id"]]
            assert a["extra_hours_per_day"] == pytest.approx(site["extra_hours_per_day"].max()) > 0
            assert a["cost"] == pytest.approx(1500.0 * 7)
            continue
        row = cap[(cap["site_id"] == a["site_id"]) & (cap["stage"] == a["stage"])].iloc[0]
        assert a["added_count"] == pytest.approx(row["added_count"])
        assert a["capex"] == pytest.approx(row["modules"] * exp.loc[(a["site_id"], a["stage"]), "capex"])
    inv = ans["investment"]
    assert inv["total"] == pytest.approx(inv["opening"] + inv["closing"] + inv["modules"])
    assert inv["modules"] == pytest.approx(sum(a["capex"] for a in ans["additions"]))
    # tiny's peak holds up to the top multiplier with or without the additions: no failure point to state
    assert all(x["fail_multiplier"] is None for x in ans["stress"]["today"]) == (not ans["failure_points"])
    for name in ("stress.csv", "stress_today.csv"):
        assert len(pd.read_csv(tmp_path / name)) > 0
    assert result.simulation_feasible and exit_code(result) == 0  # the repair loop converges on tiny's peak


def test_failure_points_in_physical_units(tiny):
    """One outbound door at Hanover (instead of 4): it saturates; a second door holds further."""
    sc = load_scenario("peak", TINY)
    result = plan(tiny, sc, replications=4, simulate=False)
    p = result.plan
    cap = p.tables["capacity"].copy()
    hit = (cap["site_id"] == "DC_A") & (cap["stage"] == "outbound_dock")
    cap.loc[hit, ["base_count", "total_count"]] = 1.0
    narrow = Plan(p.decision, p.status, p.objective, tables={**p.tables, "capacity": cap}, meta=p.meta)
    s = peak_stress(result.instance, narrow, replications=4)
    points = {f["site_id"]: f for f in s["failure_points"]}
    f = points["DC_A"]
    assert f["stage"] == "outbound_dock" and f["count"] == 1.0 and f["resource"] == "outbound doors"
    assert 0 <= f["hour"] <= 23 and f["fail_multiplier"] >= 1.0
    assert f["one_more_holds_to"] is None or f["one_more_holds_to"] >= f["fail_multiplier"]
    if f["binding"] == "equipment":
        assert f["message"].startswith("1 outbound door at DC Hanover saturates")
        assert "with one more outbound door" in f["message"]
    else:  # labour binds at that stage: the answer says so instead of blaming the doors
        assert f["binding"] == "labour" and f["message"].startswith("Staff at DC Hanover run short")
    window = {d.date().isoformat() for d in result.instance.periods["start"]}
    assert f["date"] in window or f["date"] == "2026-11-30"  # the day after the peak block ends included
    assert s["periods"][0] == 6 and s["weights"] == [1.0, 0.0]  # peak block (day 6), then a day at the forecast


def test_not_executable_exit_6_with_breaches(tiny):
    # tiny's free network with one round only: the first plan breaks an SLA in the simulator
    result = plan(tiny, None, max_rounds=1, replications=8, seed=0)
    assert not result.simulation_feasible
    assert exit_code(result) == EXIT_NOT_EXECUTABLE == 6
    d = result.to_dict()
    assert d["executable"] is False
    ans = build_answer(result)
    assert ans["executable"] is False and ans["breaches"]
    v = result.simulation.verdict
    first = ans["breaches"][0]
    assert {first["site_id"], first["stage"]} == {v.site_id, v.stage}
    assert first["hour"] == pd.Timestamp(v.time).hour and first["shortfall_units"] == pytest.approx(
        v.shortfall_units, abs=0.05)
    assert answer_text(ans).splitlines()[0].startswith("NOT EXECUTABLE: ")
    _fits_100_columns(answer_text(ans), ans)
    assert len(round_line(result.rounds[0], 1, 12.3)) <= 160
    from engine.sweep import run_outcome

    code, reason = run_outcome(result)  # what the run store records with the run (issue 16)
    assert code == 6 and reason.startswith(f"not executable: {first['site_name']} breaks its ")


def test_all_dcs_closed_exit_3_names_the_zones(tiny, tmp_path):
    sc = tmp_path / "closed.yaml"
    sc.write_text(yaml.safe_dump({"name": "closed", "decision": "consolidation", "options": {"allow_unmet": False},
                                  "modifications": [{"force_closed": ["DC_A", "DC_B", "DC_C"]}]}))
    inst = apply_scenario(tiny, load_scenario(sc))
    assert unreachable_zones(inst) == ["Z_BER", "Z_HAM", "Z_MUC", "Z_CGN", "Z_FRA"]  # by demand, largest first
    why = unserved_demand(inst)
    assert "24,200 units" in why[0] and any("zone Berlin (Z_BER): 9,900 units" in w for w in why)
    p = subprocess.run([sys.executable, "-m", "engine.cli", "solve", str(TINY), "--scenario", str(sc), "--out",
                        str(tmp_path / "o"), "--store", str(tmp_path / "s.duckdb"), "--json"],
                       capture_output=True, text=True, timeout=600)
    assert p.returncode == 3, p.stderr
    d = json.loads(p.stdout)
    assert d["status"] == "infeasible" and "Traceback" not in p.stderr
    diagnosis = json.loads((tmp_path / "o" / "loop.json").read_text())[-1]["diagnosis"]
    assert any("Z_FRA" in w and "no lane from an open DC" in w for w in diagnosis)


def test_check_plan_flags_vanished_demand(tiny):
    empty = Plan("consolidation", "optimal", objective=0.0)
    v = check_plan(tiny, empty)
    demand = v[v["check"] == "demand"]
    assert len(demand) == len(tiny.demand) and demand["limit"].sum() == pytest.approx(tiny.demand["quantity"].sum())


def test_lsi_by_hand(tiny, tmp_path):
    f = tmp_path / "forecast.csv"
    f.write_text("site_id,date,inbound_units,outbound_units\nDC_A,2026-11-27,4000,6500\nDC_B,2026-11-27,2000,2500\n")
    forecast, day = read_forecast(f, tiny)
    res = labour_stress_index(tiny, forecast, day)
    a = res.sites.set_index("site_id").loc["DC_A"]
    # labor.csv DC_A: 40 heads x 40 h + 200 h overtime a week = 1,800 h / 7 a day
    staffed = (40 * 40 + 200) / 7
    need = 4000 / 150 + 4000 / 60 + 6500 / 40 + 6500 / 50 + 6500 / 150
    assert a["hours_staffed"] == pytest.approx(staffed) and a["hours_needed"] == pytest.approx(need)
    assert a["lsi"] == pytest.approx(need / staffed) and a["band"] == "critical"
    assert a["extra_hours"] == pytest.approx(need / 0.85 - staffed)
    assert a["extra_heads"] == math.ceil((need / 0.85 - staffed) / 8.0)
    b = res.sites.set_index("site_id").loc["DC_B"]
    assert b["band"] == "comfortable" and b["extra_hours"] == 0 and b["extra_heads"] == 0
    st = res.stages[res.stages["site_id"] == "DC_A"].set_index("stage")
    assert st.loc["pick", "hours_needed"] == pytest.approx(6500 / 40)
    assert np.allclose(st["hours_staffed"].sum(), staffed) and st["peak_hour"].between(0, 23).all()
    # the evening order peak queues past the 16 h shift from 06:00: pick peaks late in the day
    assert st.loc["pick", "peak_hour"] >= 18


def test_lsi_located_errors(tiny, tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("site_id,date,inbound_units\nDC_Z,2026-11-27,5\nDC_A,2026-11-27,-3\nPORT_HAM,2026-11-27,1\n")
    with pytest.raises(InstanceValidationError) as e:
        read_forecast(bad, tiny)
    msgs = [str(x) for x in e.value.report.errors]
    assert any(m.startswith(f"{bad}:2:site_id") and "not a site" in m for m in msgs)
    assert any(m.startswith(f"{bad}:3:inbound_units") for m in msgs)
    assert any(m.startswith(f"{bad}:4:site_id") and "not a DC" in m for m in msgs)
    two = tmp_path / "two.csv"
    two.write_text("site_id,date,outbound_units\nDC_A,2026-11-27,5\nDC_A,2026-11-28,5\n")
    with pytest.raises(InstanceValidationError, match="choose one with --date"):
        read_forecast(two, tiny)
    assert read_forecast(two, tiny, "2026-11-28")[1] == "2026-11-28"
    p = subprocess.run([sys.executable, "-m", "engine.cli", "lsi", str(TINY), "--forecast", str(bad)],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and f"{bad}:2:site_id" in p.stderr and "Traceback" not in p.stderr
    p = subprocess.run([sys.executable, "-m", "engine.cli", "lsi", str(TINY), "--forecast", str(two), "--date",
                        "2026-11-27", "--json"], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["sites"][0]["site_id"] == "DC_A"
