"""The executive report and the sweep report.

The run folder is real: the bundled ``tiny`` instance (one site renamed ``<script>alert(1)</script>``), a
hand-made plan with known costs, the real simulator and KPIs, written by ``PlanResult.save`` exactly as
``twinplan solve`` writes it. Pure functions (formatting, projection, Pareto front, sensitivity) are checked
against hand-computed values; the page itself is opened in headless Chromium (skipped, with the reason, only
where no Chromium/chromedriver is installed) and a screenshot is saved for review under
``build/screenshots`` (or ``$TWINPLAN_SCREENSHOTS``).
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine import load_instance
from engine.cli import main as cli_main
from engine.kpi import compute_kpis, executive_summary, kpi_deltas, labour_stress
from engine.pipeline import PlanResult
from engine.report import (
    HEADLINE_KPIS,
    fmt_delta,
    fmt_value,
    load_run,
    lsi_heatmap,
    main_flows,
    nice_ticks,
    pareto_front,
    project,
    render_sweep_report,
    sensitivity,
    site_states,
    write_report,
    write_sweep_report,
)
from engine.simulator import simulate
from instances.instance import Instance, bundled_instance_path
from instances.plan import Plan

INJECTED = "<script>alert(1)</script>"
"""A hostile site name: the report must show it as text."""

CONSOLIDATE = {"Z_BER": "DC_A", "Z_HAM": "DC_A", "Z_MUC": "DC_C", "Z_FRA": "DC_C", "Z_CGN": "DC_C"}
BASELINE = {"Z_BER": "DC_A", "Z_HAM": "DC_A", "Z_CGN": "DC_A", "Z_MUC": "DC_B", "Z_FRA": "DC_B"}


def hostile_tiny() -> Instance:
    """``tiny`` with DC_B named like a script tag and the scenario name of a zone quoted."""
    inst = load_instance(bundled_instance_path("tiny"))
    sites = inst.sites.copy()
    sites.loc[sites["id"] == "DC_B", "name"] = INJECTED
    zones = inst.zones.copy()
    zones.loc[zones["id"] == "Z_CGN", "name"] = 'Cologne "K\u00f6ln" & <b>bold</b>'
    return inst.replace(sites=sites, zones=zones)


def hand_plan(inst: Instance, assign: dict[str, str], opened: tuple[str, ...] = (), closed: tuple[str, ...] = (),
              costs: dict[str, float] | None = None, transfer: float = 0.0, units_per_hour: float = 8.0) -> Plan:
    """Every zone served by one DC (``assign``), stock received from the port the same period, labour
    staffed at ``units_per_hour`` units per labour hour, hand-chosen costs; DC_C gets a pack module when
    it is opened."""
    d = inst.demand.assign(site_id=inst.demand["zone_id"].map(assign))
    out = pd.DataFrame({"origin_id": d["site_id"], "destination_id": d["zone_id"], "product_id": d["product_id"],
                        "period": d["period"], "quantity": d["quantity"], "leg": "outbound"})
    inbound = (d.groupby(["site_id", "product_id", "period"], as_index=False)["quantity"].sum()
               .rename(columns={"site_id": "destination_id"}).assign(origin_id="PORT_HAM", leg="inbound"))
    flows = pd.concat([inbound[list(out.columns)], out], ignore_index=True)
    tp = d.groupby(["site_id", "period"], as_index=False)["quantity"].sum()
    tp = pd.DataFrame({"site_id": tp["site_id"], "period": tp["period"], "inbound_units": tp["quantity"],
                       "outbound_units": tp["quantity"]})
    labor = pd.DataFrame({"site_id": tp["site_id"], "period": tp["period"],
                          "regular_hours": tp["outbound_units"] / units_per_hour, "overtime_hours": 0.0,
                          "temp_hours": 0.0})
    dcs = inst.dcs
    is_open = [(s in assign.values()) for s in dcs["id"]]
    sites = pd.DataFrame({"site_id": dcs["id"], "kind": dcs["kind"], "status": dcs["status"],
                          "open": [int(o) for o in is_open], "opened": [int(s in opened) for s in dcs["id"]],
                          "closed": [int(s in closed) for s in dcs["id"]]})
    cap = pd.DataFrame(columns=["site_id", "stage", "base_count", "added_count", "total_count", "modules", "capex"])
    if "DC_C" in opened:
        cap = pd.DataFrame({"site_id": ["DC_C"], "stage": ["pack"], "base_count": [8.0], "added_count": [2.0],
                            "total_count": [10.0], "modules": [1], "capex": [80_000.0]})
    transfers = pd.DataFrame(columns=["origin_id", "destination_id", "product_id", "quantity", "trucks",
                                      "transit_days"])
    if transfer:
        transfers = pd.DataFrame({"origin_id": ["DC_B"], "destination_id": ["DC_C"], "product_id": ["P_SMALL"],
                                  "quantity": [transfer], "trucks": [2], "transit_days": [0.66]})
    costs = costs or {}
    ctab = pd.DataFrame({"component": list(costs), "amount": list(costs.values())})
    objective = float(sum(costs.values()))
    return Plan("consolidation", "optimal", objective=objective, bound=objective, gap=0.0,
                tables={"flows": flows, "site_throughput": tp, "labor": labor, "sites": sites, "capacity": cap,
                        "transfers": transfers, "costs": ctab}, meta={"solver": "hand", "time_s": 0.0})


SCENARIO_COSTS = {"fixed": 700_000.0, "opening": 100_000.0, "transport": 42_500.0, "handling": 2_420.0,
                  "labour_regular": 21_296.0, "capex_annualized": 9_500.0}
BASELINE_COSTS = {"fixed": 750_000.0, "transport": 39_000.0, "handling": 2_420.0, "labour_regular": 21_296.0}


def make_result(inst: Instance, scenario: dict, plan: Plan, rounds: list[dict]) -> PlanResult:
    sim = simulate(inst, plan, replications=2, seed=3)
    kpis = compute_kpis(inst, plan, sim)
    return PlanResult(instance_name=inst.name, scenario=scenario, status=plan.status, objective=plan.objective,
                      plan=plan, simulation=sim, kpis=kpis, rounds=rounds, violations=pd.DataFrame(),
                      timings={"solve_s": 0.1, "simulate_s": 0.2, "total_s": 0.3}, instance=inst)


def write_run(out: Path) -> tuple[Path, PlanResult, PlanResult]:
    """Write a scenario run with its baseline in ``out/baseline``, as ``twinplan solve`` lays them out."""
    inst = hostile_tiny()
    base_plan = hand_plan(inst, BASELINE, costs=BASELINE_COSTS, units_per_hour=11.0)
    plan = hand_plan(inst, CONSOLIDATE, opened=("DC_C",), closed=("DC_B",), costs=SCENARIO_COSTS, transfer=1200.0)
    rounds = [{"round": 1, "status": "optimal", "objective": plan.objective + 5000.0, "objective_change": None,
               "violations": 0, "simulation_feasible": False, "failed_site": "DC_C", "failed_stage": "pack",
               "failed_period": 2, "shortfall_units_per_day": 120.0, "message": "DC_C pack overloaded",
               "change": "derate DC_C pack effective capacity to 90.0% of nominal", "outcome": "repair and re-solve"},
              {"round": 2, "status": "optimal", "objective": plan.objective, "objective_change": -5000.0,
               "violations": 0, "simulation_feasible": True, "outcome": "plan executable"}]
    scen = {"name": "close <DC_B> & open \"DC_C\"", "decision": "consolidation", "baseline": "base"}
    result = make_result(inst, scen, plan, rounds)
    base = make_result(inst, {"name": "base", "decision": "consolidation"}, base_plan,
                       [{"round": 1, "status": "optimal", "objective": base_plan.objective,
                         "outcome": "plan executable"}])
    base.save(out / "baseline")
    result.save(out)
    (out / "summary.txt").write_text(executive_summary(result.kpis, base.kpis, "EUR", scen["name"], "base") + "\n")
    deltas = kpi_deltas(result.kpis, base.kpis)
    (out / "deltas.json").write_text(json.dumps({k: {kk: (None if vv != vv else vv) for kk, vv in v.items()}
                                                 for k, v in deltas.items()}, indent=2))
    pd.DataFrame({"site_id": ["DC_A", "DC_C"], "stage": ["pick", "pack"], "multiplier": [1.35, 1.2],
                  "message": ["DC_A pick first fails at 1.35 x demand", "DC_C pack first fails at 1.20 x demand"]}
                 ).to_csv(out / "stress.csv", index=False)
    return out, result, base


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    out, _, _ = write_run(tmp_path_factory.mktemp("run") / "consolidate")
    return out


@pytest.fixture(scope="module")
def report_html(run_dir) -> str:
    return write_report(run_dir).read_text(encoding="utf-8")


def headline_cards(page: str) -> dict[str, tuple[str, str]]:
    """KPI key -> (data-value, text shown) of the headline cards."""
    cards = re.findall(r'<div class="card" data-kpi="([^"]+)" data-value="([^"]*)"><div class="label">[^<]*</div>'
                       r'<div class="value">([^<]*)', page)
    return {k: (v, text) for k, v, text in cards}


# ---------------------------------------------------------------------------------------------- formatting

def test_values_and_deltas_are_formatted_in_money_hours_days_and_points():
    assert fmt_value(875_716.0, "money", "EUR") == "EUR 875,716"
    assert fmt_value(968.04, "hours") == "968.0 h"
    assert fmt_value(0.4926, "days") == "0.49 d"
    assert fmt_value(0.10399, "share") == "10.4 %"
    assert fmt_value(float("nan"), "money", "EUR") == fmt_value(None, "days") == "n/a"
    assert fmt_delta(63_000.0, "money", "EUR") == "+EUR 63,000"
    assert fmt_delta(-50_000.4, "money", "EUR") == "-EUR 50,000"
    assert fmt_delta(-1.55, "hours") == "-1.6 h"
    assert fmt_delta(0.1, "days") == "+0.10 d"
    assert fmt_delta(0.015, "share") == "+1.5 pts"
    # a change that rounds to zero at the precision shown reads as unchanged, not as "-0.0"
    assert fmt_delta(-0.0004, "share") == "\u00b10.0 pts"


def test_nice_ticks_cover_the_range_in_round_steps():
    assert nice_ticks(0, 97) == [0, 20, 40, 60, 80, 100]
    assert nice_ticks(812_716, 875_716, 4) == [800_000, 820_000, 840_000, 860_000, 880_000]
    t = nice_ticks(0.93, 1.0)
    assert t[0] <= 0.93 and t[-1] >= 1.0 and np.allclose(np.diff(t), 0.02)


def test_projection_keeps_aspect_and_fits_the_box():
    bounds = (48.0, 54.0, 6.0, 14.0)
    x, y = project(np.array([48.0, 54.0, 51.0, 51.0]), np.array([6.0, 14.0, 10.0, 11.0]), bounds, 760, 540, pad=30)
    # north-west corner up-left of south-east; latitude up is y down
    assert x[0] < x[1] and y[0] > y[1]
    # one degree of longitude is cos(51 deg) of one degree of latitude, at the same scale
    px_per_lat = (y[0] - y[1]) / 6.0
    assert (x[3] - x[2]) == pytest.approx(px_per_lat * math.cos(math.radians(51.0)))
    # the binding dimension fills the box less the padding, the other is centred
    assert y[1] == pytest.approx(30.0) and y[0] == pytest.approx(510.0)
    assert x[0] + x[1] == pytest.approx(760.0)


def test_main_flows_sum_products_and_keep_the_volume_share():
    flows = pd.DataFrame({"origin_id": ["A", "A", "A", "B", "B", "C"],
                          "destination_id": ["Z1", "Z1", "Z2", "Z3", "Z3", "Z4"],
                          "product_id": ["p", "q", "p", "p", "p", "p"], "period": [1, 1, 1, 1, 2, 1],
                          "quantity": [40.0, 20.0, 30.0, 5.0, 4.0, 1.0], "leg": ["outbound"] * 6})
    m = main_flows(flows)
    # totals 60, 30, 9, 1: the first three carry 99 % >= 95 %, the last is left out
    assert list(zip(m["origin_id"], m["destination_id"], m["quantity"])) == [("A", "Z1", 60.0), ("A", "Z2", 30.0),
                                                                             ("B", "Z3", 9.0)]
    assert len(main_flows(flows, share=0.9)) == 2
    assert len(main_flows(flows, share=1.0, most=2)) == 2


def test_site_states_read_the_plan():
    sites = pd.DataFrame({"id": ["P", "A", "B", "C", "D"], "kind": ["port", "dc", "dc", "dc", "dc"],
                          "status": ["existing", "existing", "existing", "candidate", "candidate"]})
    plan_sites = pd.DataFrame({"site_id": ["A", "B", "C", "D"], "open": [1, 0, 1, 0], "opened": [0, 0, 1, 0],
                               "closed": [0, 1, 0, 0]})
    assert site_states(sites, plan_sites).to_dict() == {"P": "port", "A": "open", "B": "closed", "C": "opened",
                                                        "D": "not opened"}


def test_lsi_heatmap_colours_each_site_day_by_band():
    lsi = pd.DataFrame({"site_id": ["S"] * 5, "day": [0, 1, 2, 3, 4], "lsi": [0.5, 0.9, 1.1, 1.2, np.inf]})
    page = lsi_heatmap(lsi, {"S": "Site <S>"})
    cells = re.findall(r'<td style="background:(#[0-9a-f]+)" title="[^"]*\((\w+)\)">([^<]+)</td>', page)
    assert [(band, text) for _, band, text in cells] == [("comfortable", "0.50"), ("stretched", "0.90"),
                                                         ("overload", "1.10"), ("critical", "1.20"),
                                                         ("critical", "\u221e")]
    assert "Site &lt;S&gt;" in page and "<S>" not in page


# ---------------------------------------------------------------------------------------------- sweep maths

def test_pareto_front_by_hand():
    cost = [100, 120, 130, 100, 150, 150]
    service = [0.90, 0.95, 0.93, 0.85, 0.99, 0.99]
    # C is beaten by B, D by A; the two E runs tie and are both efficient
    assert pareto_front(cost, service).tolist() == [True, True, False, False, True, True]


def test_pareto_front_matches_a_sorted_sweep():
    rng = np.random.default_rng(11)
    cost, service = rng.integers(0, 30, 200).astype(float), rng.integers(0, 30, 200).astype(float)
    front = pareto_front(cost, service)
    # sweep by cost ascending (service descending for ties): a point is efficient iff its service beats every
    # cheaper point's, or equals the best of its own cost when that best beats every cheaper point's
    best_before, expected = -np.inf, np.zeros(len(cost), bool)
    for c in np.unique(cost):
        at = cost == c
        top = service[at].max()
        if top > best_before:
            expected[at & (service == top)] = True
            best_before = top
    assert front.tolist() == expected.tolist()


def test_sensitivity_of_a_known_linear_response():
    grid = [(a, b, s) for a in (1.0, 2.0, 3.0) for b in (10.0, 20.0) for s in ("highs", "ortools")]
    runs = pd.DataFrame(grid, columns=["param_a", "param_b", "param_solver"])
    runs["param_fixed"] = 7
    runs["total_cost"] = 100 + 3 * runs["param_a"] + 0.5 * runs["param_b"] + np.where(
        runs["param_solver"] == "ortools", 2.0, 0.0)
    sens = sensitivity(runs, "total_cost").set_index("parameter")
    assert list(sens.index) == ["a", "b", "solver"]  # swing 6 > 5 > 2; param_fixed does not vary
    assert sens.loc["a", "swing"] == pytest.approx(6.0)
    assert (sens.loc["a", "low_value"], sens.loc["a", "high_value"]) == (1.0, 3.0)
    # marginal mean at a = 1: 100 + 3 + mean(5, 10) + mean(0, 2)
    assert sens.loc["a", "kpi_low"] == pytest.approx(100 + 3 + 7.5 + 1)
    assert sens.loc["b", "swing"] == pytest.approx(5.0)
    assert (sens.loc["solver", "low_value"], sens.loc["solver", "high_value"]) == ("highs", "ortools")
    assert sens.loc["solver", "swing"] == pytest.approx(2.0)
    assert sens["reference"].iloc[0] == pytest.approx(runs["total_cost"].mean())


def test_sensitivity_one_at_a_time_gives_the_kpi_at_the_extremes():
    base = {"param_a": 2.0, "param_b": 20.0}
    rows = [base, {**base, "param_a": 1.0}, {**base, "param_a": 4.0}, {**base, "param_b": 10.0}]
    runs = pd.DataFrame(rows)
    runs["service_level"] = 0.9 + 0.01 * runs["param_a"] - 0.001 * runs["param_b"]
    sens = sensitivity(runs, "service_level").set_index("parameter")
    assert sens.loc["a", "kpi_low"] == pytest.approx(0.9 + 0.01 - 0.02)
    assert sens.loc["a", "kpi_high"] == pytest.approx(0.9 + 0.04 - 0.02)
    assert sens.loc["b", "kpi_low"] == pytest.approx(0.9 + 0.02 - 0.01)


# ---------------------------------------------------------------------------------------------- the run report

def test_report_is_self_contained_and_escapes_user_strings(report_html):
    page = report_html
    assert "<script" not in page.lower()  # no script at all: the hostile site name is text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "close &lt;DC_B&gt; &amp; open &#34;DC_C&#34;" in page  # the scenario name (jinja2 autoescape)
    assert "Cologne &#34;K\u00f6ln&#34; &amp; &lt;b&gt;bold&lt;/b&gt;" in page  # a zone name on the map
    assert "<b>bold</b>" not in page
    assert "Content-Security-Policy" in page and "default-src 'none'" in html.unescape(page)
    # nothing to fetch: the only URL is the SVG namespace
    assert set(re.findall(r"https?://[^\s\"'<>)]+", page)) == {"http://www.w3.org/2000/svg"}
    assert not re.search(r"\b(src|href)=\"(?!#|data:)", page)


def test_headline_cards_equal_kpis_json_and_deltas_the_baseline(run_dir, report_html):
    kpis = json.loads((run_dir / "kpis.json").read_text())
    base = json.loads((run_dir / "baseline" / "kpis.json").read_text())
    cards = headline_cards(report_html)
    assert set(cards) == {k for k, _, _ in HEADLINE_KPIS}
    for key, _, unit in HEADLINE_KPIS:
        value, text = cards[key]
        assert float(value) == kpis[key]
        assert text == fmt_value(kpis[key], unit, "EUR")
    deltas = dict(re.findall(r'data-kpi="([^"]+)" data-value="[^"]*">.*?data-delta="([^"]+)"', report_html))
    assert float(deltas["total_cost"]) == pytest.approx(kpis["total_cost"] - base["total_cost"])
    # hand-chosen costs: scenario 875,716, baseline 812,716 -> 63,000 more; investment = capex + opening + closing
    assert kpis["total_cost"] - base["total_cost"] == pytest.approx(63_000.0)
    assert "+EUR 63,000 (+7.8%) vs baseline" in report_html
    assert cards["investment"][1] == "EUR 230,000"  # module 80,000 + DC_C opening 100,000 + DC_B closing 50,000


SECTION_ORDER = ["answer", "decisions", "map", "costs", "service", "sites", "labour-stress", "simulation", "rounds",
                 "assumptions"]


def test_report_sections_answer_first_then_decisions_then_evidence(report_html):
    assert re.findall(r'<section id="([^"]+)">', report_html) == SECTION_ORDER
    answer = report_html.split('<section id="answer">')[1].split("</section>")[0]
    # the question (no answer in result.json: the default question of the decision), the scenario, the time basis
    assert "What does the consolidation cost and do" in answer
    assert 'id="time-basis">money and hours over the 14-day horizon (14 days)' in answer
    assert 'data-kpi="total_cost"' in answer


def test_report_reads_the_answer_of_result_json(run_dir, tmp_path):
    """With ``result.json["answer"]`` (engine.answer's contract) the report shows its question, headline, lines,
    time basis and cost rows instead of what it derives from the run folder."""
    run = tmp_path / "with-answer"
    shutil.copytree(run_dir, run)
    result = json.loads((run / "result.json").read_text())
    result["answer"] = {
        "decision": "network_design", "question": "Close <Munich> and open Erfurt: worth it?",
        "headline": "Invest EUR 180.0 k one-off; pays back in 2.9 years",
        "lines": ["Invest EUR 180.0 k one-off; pays back in 2.9 years.", "  investment: EUR 180.0 k (one-off)",
                  "  annual cost by component (per year):", "    fixed sites: EUR 750.0 k -> EUR 800.0 k"],
        "time_basis": {"label": "per year", "days": 365.0}, "currency": "EUR", "executable": True, "breaches": [],
        "costs": [{"component": "fixed", "label": "fixed site costs", "baseline": 750_000.0, "scenario": 700_000.0,
                   "delta": -50_000.0},
                  {"component": "transport", "label": "transport", "baseline": 39_000.0, "scenario": 42_500.0,
                   "delta": 3_500.0}],
        "sites": [], "unmet": {"units_before": 0.0, "units_after": 0.0, "penalty_before": 0.0, "penalty_after": 0.0}}
    (run / "result.json").write_text(json.dumps(result))
    page = write_report(run).read_text()
    answer = page.split('<section id="answer">')[1].split("</section>")[0]
    assert "Close &lt;Munich&gt; and open Erfurt: worth it?" in answer
    assert '<div class="headline" id="headline-text">Invest EUR 180.0 k one-off; pays back in 2.9 years</div>' in answer
    assert "<li>investment: EUR 180.0 k (one-off)</li>" in answer  # the headline line is not repeated
    assert '<li style="margin-left:18px">fixed sites: EUR 750.0 k -&gt; EUR 800.0 k</li>' in answer
    assert 'id="time-basis">money and hours per year (365 days)' in answer
    bars = re.findall(r'class="bridge-bar (\w+)"><title>([^<]*)</title>', page)
    assert [k for k, _ in bars] == ["total", "down", "up", "total"]
    assert "EUR 789,000" in bars[0][1] and "EUR 742,500" in bars[-1][1]


def test_report_shows_the_calibration_status_of_result_json(run_dir, tmp_path):
    run = tmp_path / "calibrated"
    shutil.copytree(run_dir, run)
    result = json.loads((run / "result.json").read_text())
    result["calibration"] = {"version": "v0003", "findings": ["DC Hanover pick drifted since 2026-11-20"],
                             "modules": [{"site_id": "DC_A", "stage": "pick", "status": "drifted", "error": 0.084},
                                         {"site_id": "DC_C", "stage": "pack", "status": "not_calibrated",
                                          "error": None}]}
    (run / "result.json").write_text(json.dumps(result))
    page = write_report(run).read_text()
    assert re.findall(r'<section id="([^"]+)">', page) == SECTION_ORDER[:-1] + ["calibration", "assumptions"]
    table = page.split('id="calibration-table"')[1].split("</table>")[0]
    rows = [re.findall(r"<td[^>]*>([^<]*)</td>", r) for r in table.split("<tr>")[2:]]
    assert rows == [["DC Hanover", "pick", "drifted", "8.4 %"], ["DC Erfurt (candidate)", "pack", "not calibrated", ""]]
    assert "Calibration (version v0003)" in page and "DC Hanover pick drifted since 2026-11-20" in page
    assert '<section id="calibration">' not in write_report(run_dir, out=tmp_path / "plain.html").read_text()


def test_report_decisions_name_sites_not_ids(report_html):
    page = report_html.split('<section id="decisions">')[1].split("</section>")[0]
    # DC_B (the hostile name) closed, DC_C opened with one pack module (2 stations), a 1,200-unit transfer
    assert "<td>&lt;script&gt;alert(1)&lt;/script&gt;</td><td>close</td><td>existing</td>" in page
    assert "<td>DC Erfurt (candidate)</td><td>open</td><td>candidate</td>" in page
    assert ">EUR 80,000<" in page and ">1,200<" in page and "<td>+2 pack stations (8 \u2192 10)</td>" in page
    assert "DC_B" not in page and "DC_C" not in page and "Port of Hamburg" not in page.split("DCs open")[1]


def test_report_maps_before_and_after_on_a_base_layer(run_dir, report_html):
    page = report_html.split('<section id="map">')[1].split("</section>")[0]
    maps = re.findall(r'<svg [^>]*data-map="(\w+)".*?</svg>', page, flags=re.S)
    assert maps == ["before", "after"]
    svgs = re.findall(r'<svg [^>]*data-map="\w+".*?</svg>', page, flags=re.S)
    inst = load_run(run_dir).instance
    # the base layer: Germany's outline and its borders drawn once, reused by the second map
    assert '<g class="basemap" id="basemap-before">' in svgs[0]
    assert re.search(r'<path d="M[^"]{200,}"[^>]*><title>Germany</title>', svgs[0])
    assert '<use href="#basemap-before" class="basemap"/>' in svgs[1]
    for svg in svgs:
        assert svg.count('<g class="site"') == len(inst.sites)
    # after: DC_B closed (a cross), DC_C opened; before: all as in the baseline plan
    states = dict(re.findall(r'data-site="(\w+)" data-state="([\w ]+)"', svgs[1]))
    assert states == {"PORT_HAM": "port", "DC_A": "open", "DC_B": "closed", "DC_C": "opened"}
    assert dict(re.findall(r'data-site="(\w+)" data-state="([\w ]+)"', svgs[0]))["DC_C"] == "not opened"
    plan = Plan.load(run_dir / "plan")
    assert svgs[1].count('class="flow"') == len(main_flows(plan.tables["flows"])) + 1  # + the transfer


def test_report_cost_bridge_walks_from_baseline_to_scenario(report_html):
    page = report_html.split('<section id="costs">')[1].split("</section>")[0]
    bars = re.findall(r'class="bridge-bar (\w+)"><title>([^<]*)</title>', page)
    # hand-chosen costs: fixed 750,000 -> 700,000 + opening 100,000 (+50,000); transport 39,000 -> 42,500
    # (+3,500); capex 0 -> 9,500 (+9,500); handling and labour unchanged; total 812,716 -> 875,716
    assert [k for k, _ in bars] == ["total", "up", "up", "up", "total"]
    assert "EUR 812,716" in bars[0][1] and "EUR 875,716" in bars[-1][1]
    assert "(+EUR 50,000)" in bars[1][1] and "(+EUR 3,500)" in bars[2][1] and "(+EUR 9,500)" in bars[3][1]
    assert "Unchanged: handling, labour." in page
    assert "+EUR 63,000" in page.split('id="cost-table"')[1]


def test_report_service_coverage_equals_a_plain_recount(run_dir, report_html):
    inst = load_run(run_dir).instance
    plan = Plan.load(run_dir / "plan")
    lanes = {(o, d): t for o, d, t in zip(inst.lanes["origin_id"], inst.lanes["destination_id"],
                                          inst.lanes["transit_days"])}
    out = plan.tables["flows"][plan.tables["flows"]["leg"] == "outbound"]
    total = float(out["quantity"].sum())
    within = {d: sum(q for o, z, q in zip(out["origin_id"], out["destination_id"], out["quantity"])
                     if lanes[(o, z)] <= d) / total for d in (1, 2, 3)}
    page = report_html.split('id="coverage"')[1].split("</table>")[0]
    first = re.findall(r"<td[^>]*>([^<]*)</td>", page.split("<tr>")[2])
    assert first[0] == "all regions" and first[1] == f"{total:,.0f}"
    assert [first[3], first[5], first[7]] == [f"{within[d] * 100:.1f} %" for d in (1, 2, 3)]


def test_report_sites_lsi_rounds_and_hashes(run_dir, report_html):
    page = report_html
    plan = Plan.load(run_dir / "plan")
    tp = plan.tables["site_throughput"]
    vol = tp.groupby("site_id")["outbound_units"].sum()
    sites = page.split('id="site-table"')[1].split("</table>")[0]
    assert f"<td>DC Erfurt (candidate)</td><td class=\"num\">0</td><td class=\"num\">{vol['DC_C']:,.0f}</td>" in sites
    # the LSI heat map has one cell per site and day of the simulation (a 14-day horizon: daily)
    lsi = labour_stress(SimpleNamespaceDaily(pd.read_csv(run_dir / "simulation" / "daily.csv")))
    heat = page.split('id="lsi"')[1].split("</table>")[0]
    assert heat.count("<td style=") == len(lsi)
    # rounds: one row each, the change on demand; failure points and the stress test listed; input hashes
    rounds = page.split('<section id="rounds">')[1].split("</section>")[0]
    assert rounds.count("<tr>") == 3 and "<details><summary>Round 1: what changed" in rounds
    assert "derate DC_C pack" in rounds.split("<details>")[1] and "-EUR 5,000" in rounds
    assert "DC_C pack first fails at 1.20 x demand" in page
    assert re.search(r'id="hashes".*?<code>[0-9a-f]{64}</code>', page, flags=re.S)


class SimpleNamespaceDaily:
    def __init__(self, daily: pd.DataFrame) -> None:
        self.daily = daily


def test_write_report_paths_and_errors(run_dir, tmp_path):
    out = write_report(run_dir, baseline_dir=None, out=tmp_path / "r" / "x.html")
    assert out == tmp_path / "r" / "x.html" and "compared with baseline" in out.read_text()
    no_base = tmp_path / "nobase"
    shutil.copytree(run_dir, no_base, ignore=shutil.ignore_patterns("baseline"))
    page = write_report(no_base).read_text()
    assert (no_base / "report.html").is_file() and "vs baseline" not in page
    with pytest.raises(FileNotFoundError, match="not a run folder"):
        write_report(tmp_path / "empty")
    (no_base / "kpis.json").write_text("{ broken")
    with pytest.raises(ValueError, match=r"kpis.json:1:3: not valid JSON"):
        load_run(no_base)


def test_cli_report(run_dir, tmp_path, capsys):
    target = tmp_path / "cli.html"
    assert cli_main(["report", str(run_dir), "--baseline", str(run_dir / "baseline"), "--out", str(target)]) == 0
    assert target.is_file() and str(target) in capsys.readouterr().out
    assert cli_main(["report", str(tmp_path / "missing")]) == 2
    assert "not a run folder" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------- sweep report

def sweep_runs() -> pd.DataFrame:
    rows = []
    for i, (mult, budget) in enumerate([(1.0, 0), (1.0, 1e5), (1.2, 0), (1.2, 1e5), (1.4, 0), (1.4, 1e5)]):
        rows.append({"run_id": f"r{i}", "name": f"run {i}", "status": "finished", "param_demand_multiplier": mult,
                     "param_capex_budget": budget, "total_cost": 1e6 * mult - 0.5 * budget + 2e5,
                     "service_level": 0.99 - 0.1 * (mult - 1.0) + 0.2e-6 * budget, "labour_hours": 900 * mult})
    rows.append({"run_id": "r6", "name": "<img src=x onerror=alert(1)>", "status": "failed",
                 "param_demand_multiplier": 9.0, "param_capex_budget": 0, "error": "infeasible"})
    return pd.DataFrame(rows)


def test_sweep_report(tmp_path):
    runs = sweep_runs()
    path = write_sweep_report(runs, tmp_path / "sweep.html", currency="EUR")
    page = path.read_text()
    assert "<script" not in page and "<img" not in page and "&lt;img src=x onerror=alert(1)&gt;" in page
    ok = runs[runs["status"] == "finished"]
    front = pareto_front(ok["total_cost"], ok["service_level"])
    assert f"{int(front.sum())} of 6 runs are Pareto-efficient" in page
    assert page.count('fill="#e8710a" fill-opacity="0.8"') == int(front.sum())
    # one tornado per KPI present, one row of two bars per varied parameter; the failed run is not plotted
    tornado = page.split('id="sensitivity"')[1].split("</section>")[0]
    assert tornado.count("<svg") == 3 and tornado.count("<rect") == 3 * 2 * 2
    assert "9.0" not in tornado
    assert "infeasible" in page.split('id="failed"')[1]
    assert render_sweep_report(runs.drop(columns=["param_capex_budget"])).count('id="sensitivity"') == 1


# ---------------------------------------------------------------------------------------------- in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("no Chromium/chromedriver on this machine (apt-get install chromium chromium-driver)")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install '.[test]')")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="twinplan-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1300,1000", f"--user-data-dir={profile}"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def screenshot_dir() -> Path:
    d = Path(os.environ.get("TWINPLAN_SCREENSHOTS") or Path(__file__).resolve().parents[1] / "build" / "screenshots")
    d.mkdir(parents=True, exist_ok=True)
    return d


def open_page(driver, path: Path, shot: str, width: int = 1300) -> list[dict]:
    """Load a file, save a full-page screenshot; the browser's console messages (warnings and errors)."""
    driver.get_log("browser")  # drop messages of earlier pages
    driver.set_window_size(width, 1000)
    driver.get(path.resolve().as_uri())
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, min(int(height) + 140, 16000))
    target = screenshot_dir() / shot
    assert driver.save_screenshot(str(target)) and target.stat().st_size > 10_000
    return [m for m in driver.get_log("browser") if m["level"] in ("SEVERE", "WARNING")]


def check_page_in_browser(driver, page: Path, run_dir: Path, shot: str) -> None:
    """No console message, no script, nothing fetched, no alert; every headline card equals ``kpis.json``."""
    from selenium.common.exceptions import NoAlertPresentException
    from selenium.webdriver.common.by import By

    assert open_page(driver, page, shot) == []
    assert driver.execute_script("return document.scripts.length") == 0
    assert driver.execute_script("return performance.getEntriesByType('resource').length") == 0
    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert.text  # noqa: B018 - the injected alert(1) never ran
    kpis = json.loads((run_dir / "kpis.json").read_text())
    currency = load_run(run_dir).currency
    for key, _, unit in HEADLINE_KPIS:
        card = driver.find_element(By.CSS_SELECTOR, f'#headline .card[data-kpi="{key}"]')
        assert float(card.get_attribute("data-value")) == kpis[key]
        shown = card.find_element(By.CSS_SELECTOR, ".value").text
        assert shown == fmt_value(kpis[key], unit, currency)
    labels = driver.execute_script(
        "return Array.from(document.querySelectorAll('#map svg text')).map(t => t.textContent)")
    assert any(label.startswith(INJECTED) for label in labels)  # as text, "(closed)" after it when closed


def test_report_in_headless_chromium(browser, run_dir):
    from selenium.webdriver.common.by import By

    check_page_in_browser(browser, write_report(run_dir), run_dir, "report_fixture.png")
    cells = [td.text for td in browser.find_elements(By.CSS_SELECTOR, "#decisions td")]
    assert INJECTED in cells


def test_report_of_a_real_solve_in_headless_chromium(browser, tmp_path):
    """``twinplan solve`` on tiny (DC_B renamed ``<script>...``) writes report.html itself; it holds up."""
    hostile_tiny().save(tmp_path / "instance")
    out = tmp_path / "run"
    code = cli_main(["solve", str(tmp_path / "instance"), "--out", str(out), "--replications", "3",
                     "--time-limit", "30"])
    assert code == 0 and (out / "report.html").is_file()
    check_page_in_browser(browser, out / "report.html", out, "report_tiny_solve.png")


def test_sweep_report_in_headless_chromium(browser, tmp_path):
    path = write_sweep_report(sweep_runs(), tmp_path / "sweep.html", currency="EUR")
    assert open_page(browser, path, "sweep_report.png") == []
    assert browser.execute_script("return document.querySelectorAll('svg').length") == 4
    assert browser.execute_script("return document.images.length") == 0


# ---------------------------------------------------------------------------------------------- every bundled scenario

BUNDLED = [("tiny", "baseline"), ("tiny", "consolidate"), ("tiny", "peak"), ("tiny", "port_closure"),
           ("eu_fba", "baseline"), ("eu_fba", "consolidate_two_dcs"), ("eu_fba", "black_friday"),
           ("us_west_port", "baseline"), ("us_west_port", "port_closure_la")]
"""Every scenario shipped with the bundled instances."""

LAYOUT_JS = """
const out = {scrollWidth: document.documentElement.scrollWidth, clientWidth: document.documentElement.clientWidth,
             first: document.querySelector('main section').id, maps: []};
for (const svg of document.querySelectorAll('svg.map')) {
  const base = svg.querySelector('.basemap');
  const land = base ? (base.tagName === 'use' ? document.querySelector(base.getAttribute('href')) : base) : null;
  const boxes = Array.from(svg.querySelectorAll('text.label')).map(t => {
      const b = t.getBBox(); return [b.x, b.y, b.x + b.width, b.y + b.height, t.textContent]; });
  const overlaps = [];
  for (let i = 0; i < boxes.length; i++) for (let j = i + 1; j < boxes.length; j++) {
    const a = boxes[i], b = boxes[j];
    if (a[0] < b[2] - 0.5 && b[0] < a[2] - 0.5 && a[1] < b[3] - 0.5 && b[1] < a[3] - 0.5) overlaps.push([a[4], b[4]]);
  }
  const w = svg.viewBox.baseVal.width, h = svg.viewBox.baseVal.height;
  const outside = boxes.filter(b => b[0] < 0 || b[1] < 0 || b[2] > w || b[3] > h).map(b => b[4]);
  out.maps.push({key: svg.dataset.map, land: land ? land.querySelectorAll('path').length : 0,
                 labels: boxes.length, overlaps: overlaps, outside: outside});
}
return out;
"""


def bundled_run(instance: str, scenario: str, cache: Path) -> Path:
    """The run folder of a bundled scenario: one the notebooks left in ``cache`` (a baseline is the baseline
    folder of a scenario run), else solved now with short settings."""
    for d in [cache / f"{instance}-{scenario}"] + sorted(cache.glob(f"{instance}-*/baseline")):
        if (d / "kpis.json").is_file() and json.loads((d / "result.json").read_text()).get("scenario") == scenario:
            return d
    out = cache / f"{instance}-{scenario}"
    code = cli_main(["solve", instance, "--scenario", scenario, "--out", str(out), "--replications", "1",
                     "--time-limit", "60", "--store", str(cache / "runs.duckdb"), "--quiet"])
    # 6: the repair loop's rounds (1 replication here) did not make the plan executable; the report must say so
    assert code in (0, 6), f"{instance}/{scenario}: exit {code}"
    return out


@pytest.mark.slow
@pytest.mark.parametrize("instance,scenario", BUNDLED, ids=[f"{i}-{s}" for i, s in BUNDLED])
def test_bundled_scenario_report_in_headless_chromium(browser, bundled_runs_dir, instance, scenario):
    """Each bundled scenario's report at 1400 px: no console message, no horizontal overflow, the answer first,
    a base map under every map, map labels that neither overlap nor leave the map; a screenshot to look at."""
    run = bundled_run(instance, scenario, bundled_runs_dir)
    page = write_report(run)
    assert open_page(browser, page, f"report_{instance}-{scenario}.png", width=1400) == []
    browser.set_window_size(1400, 1000)
    layout = browser.execute_script(LAYOUT_JS)
    assert layout["scrollWidth"] <= layout["clientWidth"], f"horizontal overflow: {layout['scrollWidth']} px"
    assert layout["first"] == "answer"
    assert layout["maps"], "no map"
    for m in layout["maps"]:
        assert m["land"] >= 1, f"map {m['key']} has no base layer"
        assert m["labels"] >= 1 and m["overlaps"] == [] and m["outside"] == [], m
    html_text = page.read_text()
    if not json.loads((run / "result.json").read_text()).get("executable", True):  # the banner says it, first
        assert "not executable" in html_text.lower()
    has_baseline = (run / "baseline" / "kpis.json").is_file()
    assert [m["key"] for m in layout["maps"]] == (["before", "after"] if has_baseline else ["after"])
    if scenario == "port_closure_la":  # the closed port is drawn closed
        assert 'data-site="PORT_LALB" data-state="port closed"' in html_text
