"""Write the five notebooks from the cells below and execute them, storing their outputs.

    .venv/bin/python notebooks/build_notebooks.py            # all five
    .venv/bin/python notebooks/build_notebooks.py 02 04      # some

The notebooks run on the bundled realistic instances (``eu_fba``: 12 DCs, 200 zones, 52 weeks;
``us_west_port``: 10 DCs, 5 ports, 100 zones, 28 days) with time limits and few replications, so that each
runs in well under three minutes (``tests/test_notebooks.py`` executes them again). Drawing helpers come from
the package (:mod:`engine.report`: the report's maps, cost bridge and Labour Stress Index), not pasted in.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent


def md(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_markdown_cell(text.strip())


def code(text: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(text.strip())


RUNS = '''
import os
from pathlib import Path

RUNS = Path(os.environ.get("TWINPLAN_RUNS_DIR", "runs"))  # where the run folders go
'''

NOTEBOOKS = {
    "01_quickstart": [
        md("""
# 01 — Quickstart: from an instance to an executable plan

The engine in five steps, on the bundled **`eu_fba`** instance (a European e-commerce network: 3 ports, 10 DCs
and a candidate site, 200 demand zones, 8 product families, 52 weeks of 2026 with the Black-Friday and
Christmas peaks):

1. load and validate the instance tables;
2. optimize (a MILP through `solvers/`, HiGHS by default), check and **simulate** the plan hour by hour —
   `engine.pipeline.plan` repeats optimize → simulate until the plan is executable;
3. read the KPIs executives use (money, hours, days);
4. look at the network and the Labour Stress Index (drawn by `engine.report`, the same views as the report);
5. save the run and write the self-contained HTML report.
"""),
        code(RUNS + '''
import pandas as pd

from engine import load_instance
from engine.scenario import load_scenario
from instances.instance import bundled_instance_path

path = bundled_instance_path("eu_fba")
instance = load_instance(path)
instance.summary()
'''),
        code('instance.sites[["id", "name", "kind", "status", "country", "fixed_cost_per_year", "automation"]]'),
        md("""
## Optimize, check, simulate
The bundled `baseline` scenario is today's network: every existing DC open, the Kassel candidate closed; the
optimizer chooses the flows, labour and capacity modules. The simulator then executes the plan hour by hour
(2 seeded replications here, to keep the notebook fast).
"""),
        code('''
from engine.pipeline import plan

baseline = load_scenario("baseline", path)
result = plan(instance, baseline, time_limit=30, mip_gap=0.01, replications=2, max_rounds=3, seed=0)
print(f"{result.status}: objective {result.objective:,.0f} {instance.currency}; "
      f"{'executable' if result.simulation_feasible else 'NOT executable'} after {len(result.rounds)} round(s); "
      f"{result.timings['total_s']:.0f} s")
pd.DataFrame(result.rounds)[["round", "status", "objective", "simulation_feasible", "outcome"]]
'''),
        md("""
## KPIs
Every KPI is defined once in `engine.kpi`: cost by component, investment, labour hours, delivery days,
order-to-ship cycle time, service level, utilisation and the Labour Stress Index.
"""),
        code('''
from engine.report import HEADLINE_KPIS, fmt_value

pd.DataFrame([(label, fmt_value(result.kpis.get(key), unit, instance.currency))
              for key, label, unit in HEADLINE_KPIS], columns=["KPI", "value"]).set_index("KPI")
'''),
        code('''
from engine.report import cost_table

cost_table(result)
'''),
        md("## The network and its flows"),
        code('''
from engine.report import show_maps

show_maps(result)
'''),
        md("""
## Labour Stress Index
Labour hours needed / hours staffed per site and day; over 52 weeks each cell is a week's worst day.
"""),
        code('''
from engine.report import show_lsi

show_lsi(result)
'''),
        md("""
## Save the run and write the executive report
`PlanResult.save` writes the same folder as `twinplan solve`; `write_report` turns it into one HTML file
that opens offline.
"""),
        code('''
from engine.report import write_report

run_dir = result.save(RUNS / "eu_fba-baseline")
report = write_report(run_dir)
print(report.name, f"{report.stat().st_size / 1024:,.0f} kB")
'''),
    ],
    "02_port_closure_redistribution": [
        md("""
# 02 — Port closure: redistribute inventory

The bundled **`us_west_port`** network (5 ports, 10 DCs, 100 zones, 28 days) is fed mostly through the Port of
Los Angeles/Long Beach. The bundled scenario `port_closure_la` closes it for two weeks (days 1–14). The
redistribution MILP decides truckload transfers between DCs, which DC serves which zone and what demand cannot
be served; the simulator checks the plan; the deltas against the undisrupted baseline are what the closure
costs in money, hours and days.
"""),
        code(RUNS + '''
import pandas as pd

from engine import load_instance
from engine.kpi import executive_summary
from engine.pipeline import plan
from engine.scenario import load_scenario
from instances.instance import bundled_instance_path

path = bundled_instance_path("us_west_port")
instance = load_instance(path)
closure = load_scenario("port_closure_la", path)
print(closure.description)
'''),
        code('''
# two optimize -> simulate rounds (twinplan solve runs up to four): each round's LP takes ~10 s on a quiet machine
SOLVE = dict(time_limit=120, mip_gap=0.02, replications=2, max_rounds=2, seed=0)
base = plan(instance, load_scenario("baseline", path), **SOLVE)
disrupted = plan(instance, closure, **SOLVE)
for r in (base, disrupted):
    objective = f"{r.objective:,.0f} {instance.currency}" if r.objective is not None else "none"
    print(f"{r.scenario['name']:>16}: {r.status}, objective {objective}, "
          f"{'executable' if r.simulation_feasible else 'NOT executable'} after {len(r.rounds)} round(s), "
          f"{r.timings['total_s']:.0f} s")
'''),
        code('''
v = disrupted.simulation.verdict
print("the simulator runs the disrupted plan: " + (v.message if disrupted.simulation_feasible else
      f"it still breaks after {len(disrupted.rounds)} repair rounds: {v.message}"))
'''),
        md("## What the closure costs (over the 28-day horizon)"),
        code("print(executive_summary(disrupted.kpis, base.kpis, instance.currency, closure.name, 'baseline'))"),
        code('''
from engine.report import cost_table, show_cost_bridge

show_cost_bridge(disrupted, base)
'''),
        code("cost_table(disrupted, base)"),
        md("## Transfers between DCs"),
        code('''
names = dict(zip(instance.sites["id"], instance.sites["name"]))
t = disrupted.plan.transfers
print(f"{len(t):,} transfers: {t['quantity'].sum():,.0f} units in {t['trucks'].sum():,.0f} trucks")
lanes = (t.assign(origin=t["origin_id"].map(names), destination=t["destination_id"].map(names))
         .groupby(["origin", "destination"], as_index=False)[["quantity", "trucks"]].sum()
         .sort_values("quantity", ascending=False).head(10))
lanes.style.format({"quantity": "{:,.0f}", "trucks": "{:,.0f}"}).hide(axis="index")
'''),
        md("## The network before and after (the closed port is crossed out; transfers dashed)"),
        code('''
from engine.report import show_maps

show_maps(disrupted, base)
'''),
        md("## Service and sites"),
        code('''
from engine.report import coverage_table, site_table

coverage_table(disrupted, base).head(8)
'''),
        code("site_table(disrupted, base)"),
        code('''
from engine.report import write_report

run_dir = disrupted.save(RUNS / "us_west_port-port_closure_la")
base.save(run_dir / "baseline")
print(write_report(run_dir).name)
'''),
    ],
    "03_consolidation": [
        md("""
# 03 — Strategic consolidation

On **`eu_fba`**, the bundled scenario `consolidate_two_dcs` closes the two under-used regional DCs (Poznań,
Jönköping) and moves their volume into the automated candidate site in Kassel: the network-design MILP
re-routes the zones and sizes Kassel's expansion modules; the simulator checks the plan. We compare it with
today's network (the `baseline` scenario) per year, in money, hours and days, and write the executive report.
"""),
        code(RUNS + '''
import pandas as pd

from engine import load_instance
from engine.kpi import executive_summary
from engine.pipeline import plan
from engine.scenario import load_scenario
from instances.instance import bundled_instance_path

path = bundled_instance_path("eu_fba")
instance = load_instance(path)
SOLVE = dict(time_limit=30, mip_gap=0.01, replications=2, max_rounds=3, seed=0)
today = plan(instance, load_scenario("baseline", path), **SOLVE)
consolidated = plan(instance, load_scenario("consolidate_two_dcs", path), **SOLVE)
for r in (today, consolidated):
    print(f"{r.scenario['name']:>20}: {r.status}, objective {r.objective:,.0f} {instance.currency}, "
          f"{'executable' if r.simulation_feasible else 'NOT executable'} after {len(r.rounds)} round(s), "
          f"{r.timings['total_s']:.0f} s")
'''),
        code("print(executive_summary(consolidated.kpis, today.kpis, instance.currency, 'consolidate_two_dcs', 'today'))"),
        md("## Decisions"),
        code('''
names = dict(zip(instance.sites["id"], instance.sites["name"]))
s = consolidated.plan.sites
changed = s[(s["opened"].astype(float) > 0.5) | (s["closed"].astype(float) > 0.5)]
pd.DataFrame({"site": changed["site_id"].map(names),
              "decision": ["open" if o else "close" for o in changed["opened"].astype(float) > 0.5]})
'''),
        code('''
cap = consolidated.plan.capacity
added = cap[cap["added_count"] > 0]
pd.DataFrame({"site": added["site_id"].map(names), "stage": added["stage"],
              "stations today": added["base_count"].astype(int), "added": added["added_count"].astype(int),
              "capex (EUR, one-off)": added["capex"].map("{:,.0f}".format)})
'''),
        md("## Cost bridge: today → consolidated (per year)"),
        code('''
from engine.report import show_cost_bridge

show_cost_bridge(consolidated, today)
'''),
        md("## The network before and after"),
        code('''
from engine.report import show_maps

show_maps(consolidated, today)
'''),
        md("## Service coverage and sites"),
        code('''
from engine.report import coverage_table, site_table

coverage_table(consolidated, today).head(8)
'''),
        code("site_table(consolidated, today)"),
        md("""
## Executive report
Saved the way `twinplan solve` saves runs: the scenario in `RUNS/eu_fba-consolidate_two_dcs`, the baseline in
its `baseline/` folder, and one self-contained HTML file.
"""),
        code('''
from engine.report import write_report

run_dir = consolidated.save(RUNS / "eu_fba-consolidate_two_dcs")
today.save(run_dir / "baseline")
print(write_report(run_dir).name)
'''),
    ],
    "04_peak_stress_test": [
        md("""
# 04 — Peak stress test and capacity additions

The bundled **`eu_fba`** scenario `black_friday`: a 15 % stronger peak season (weeks 47–49) with the
Black-Friday-to-Cyber-Monday spike (×1.8) on top. The capacity MILP buys the cheapest mix of packing stations,
dock doors, temporary labour, overtime and extra shifts so that every day's orders ship within the 24 h SLA;
the simulator checks the plan. Then we push the plan: at what multiple of the forecast peak does each DC first
break?
"""),
        code(RUNS + '''
import pandas as pd

from engine import load_instance
from engine.pipeline import plan
from engine.scenario import load_scenario
from instances.instance import bundled_instance_path

path = bundled_instance_path("eu_fba")
instance = load_instance(path)
peak = load_scenario("black_friday", path)
result = plan(instance, peak, time_limit=30, mip_gap=0.01, replications=2, max_rounds=3, seed=0)
verdict = "executable" if result.simulation_feasible else "NOT executable"
print(f"{result.status}: objective {result.objective:,.0f} {instance.currency}; {verdict} after "
      f"{len(result.rounds)} round(s); {result.timings['total_s']:.0f} s")
pd.DataFrame(result.rounds)[["round", "status", "simulation_feasible", "outcome"]]
'''),
        md("## What the peak needs (whole stations and doors; hours a day for extra shifts)"),
        code('''
names = dict(zip(instance.sites["id"], instance.sites["name"]))
cap = result.plan.capacity
added = cap[(cap["added_count"] > 0) | (cap.get("extra_hours_per_day", 0) > 0)]
pd.DataFrame({"site": added["site_id"].map(names), "stage": added["stage"].str.replace("_", " "),
              "today": added["base_count"].round().astype(int), "added": added["added_count"].round().astype(int),
              "extra hours a day": added.get("extra_hours_per_day", 0),
              "capex (EUR, one-off)": added["capex"].map("{:,.0f}".format)})
'''),
        code('''
from engine.report import HEADLINE_KPIS, fmt_value

pd.DataFrame([(label, fmt_value(result.kpis.get(key), unit, instance.currency))
              for key, label, unit in HEADLINE_KPIS], columns=["KPI", "value"]).set_index("KPI")
'''),
        md("""
## Stress test: where does the plan break?
`stress_test` scales the plan's peak periods by growing demand multipliers (one batched simulation over a
grid, then bisection) and reports, for each DC and chain, the multiplier at which it first breaks its SLA and
on which stage. 1.00 is the forecast peak the plan was built for, so a plan the simulator found executable
holds at 1.00 everywhere.
"""),
        code('''
from engine.stress import stress_test

HIGH = 1.6
failure_points = stress_test(result.instance, result.plan, grid=8, low=1.0, high=HIGH, replications=2, seed=0)
fp = failure_points.assign(site=failure_points["site_id"].map(names))
broken = fp.dropna(subset=["fail_multiplier"])
if broken.empty:
    print(f"every DC holds up to {HIGH:.2f}x the forecast peak (the highest multiplier tested)")
else:
    first = broken.sort_values("fail_multiplier").iloc[0]
    held = len(fp) - len(broken)
    print(f"{len(broken)} of {len(fp)} site chains break below {HIGH:.2f}x the forecast peak"
          + (f" ({held} hold up to {HIGH:.2f}x)" if held else "")
          + f"; the first: {first['site']} ({first['chain']} chain, {first['stage'].replace('_', ' ')}) "
          f"at {first['fail_multiplier']:.2f}x")
fp[["site", "chain", "stage", "fail_multiplier", "holds_at"]].head(12)
'''),
        code('''
from engine.report import Fragment, svg_tornado

if len(broken):
    first = broken.sort_values("fail_multiplier").drop_duplicates("site").head(10)
    chart = pd.DataFrame({"parameter": first["site"] + " (" + first["stage"].str.replace("_", " ") + ")",
                          "low_value": "", "high_value": first["fail_multiplier"].map("{:.2f}x".format),
                          "kpi_low": 1.0, "kpi_high": first["fail_multiplier"], "reference": 1.0,
                          "swing": first["fail_multiplier"] - 1.0})
    display(Fragment(svg_tornado(chart, "multiple of the forecast peak at which the DC first breaks")))
else:
    print(f"no DC breaks up to {HIGH:.2f}x the forecast peak: nothing to chart")
'''),
        md("## Labour Stress Index over the year (each cell a week's worst day)"),
        code('''
from engine.report import show_lsi

show_lsi(result)
'''),
        md("## Report\nThe failure points go into the run folder (`stress.csv`), where the executive report shows them."),
        code('''
from engine.report import write_report

run_dir = result.save(RUNS / "eu_fba-black_friday")
failure_points.to_csv(run_dir / "stress.csv", index=False)
print(write_report(run_dir).name)
'''),
    ],
    "05_sweep_and_compare": [
        md("""
# 05 — Sweeps: many what-ifs side by side

A sweep runs many scenario variants through the full optimize → simulate loop and stores every run (inputs,
hashes, KPIs, plan tables) in the DuckDB run store. Here: a small grid on **`eu_fba`**'s network of today
(the `baseline` scenario) — German demand level × fuel cost — run on two local processes, then compared: cost against service
level with the Pareto front, sensitivity of each KPI to each parameter, and the sweep report.
"""),
        code(RUNS + '''
import tempfile

import pandas as pd

from engine import store
from engine.report import Fragment, pareto_front, sensitivity, svg_scatter, svg_tornado, write_sweep_report
from engine.sweep import run_sweep, sweep_spec_from_dict
from instances.instance import bundled_instance_path

spec = sweep_spec_from_dict({
    "name": "eu_fba_demand_x_fuel",
    "instance": str(bundled_instance_path("eu_fba")),
    "scenario": "baseline",
    "seed": 7,
    "solver": {"solver": "highs", "time_limit": 30, "mip_gap": 0.02, "threads": 1},
    "plan": {"max_rounds": 2, "replications": 1},
    "parameters": {
        "demand_de": {"set": {"demand_multiplier": "$value", "region": "DE"}, "values": [1.0, 1.15]},
        "fuel": {"set": {"cost": {"fuel": "$value"}}, "values": [1.0, 1.3]},
    },
    # the base run is demand_de = fuel = 1.0; three more points complete the 2 x 2 grid
    "vary": [{"list": [{"demand_de": 1.15, "fuel": 1.0}, {"demand_de": 1.0, "fuel": 1.3},
                       {"demand_de": 1.15, "fuel": 1.3}]}],
})
run_store = store.RunStore(Path(tempfile.mkdtemp()) / "runs.duckdb")
sweep = run_sweep(spec, executor="local", workers=2, store=run_store, progress=False)
{k: v for k, v in sweep.to_dict().items() if k in ("name", "total", "finished", "failed")}
'''),
        code('''
runs = sweep.runs()
runs[["param_demand_de", "param_fuel"]] = runs[["param_demand_de", "param_fuel"]].fillna(1.0)  # the base run
cols = [c for c in runs.columns if c.startswith("param_")] + ["status", "total_cost", "service_level",
                                                               "labour_hours", "avg_delivery_days"]
runs[cols + ["simulation_feasible"]].style.format({"total_cost": "{:,.0f}", "service_level": "{:.1%}", "labour_hours": "{:,.0f}",
                         "avg_delivery_days": "{:.2f}"}).hide(axis="index")
'''),
        md("""
Each variant gets two optimize → simulate rounds and one replication here, to keep the notebook short:
`simulation_feasible` says whether that was enough for the simulator to run the plan without an SLA breach.
For decisions, run the sweep with more rounds (`plan: {max_rounds: 4}` in the spec).

## Cost against service level
A run is Pareto-efficient when no other run is cheaper *and* serves at least as well.
"""),
        code('''
ok = runs[runs["status"] == "finished"].copy()
ok["pareto"] = pareto_front(ok["total_cost"], ok["service_level"])
Fragment(svg_scatter(ok["total_cost"], ok["service_level"], ok["name"].astype(str), ok["pareto"],
                     "total cost (EUR a year)", "service level"))
'''),
        md("## Sensitivity (tornado)"),
        code('''
sens = sensitivity(ok, "total_cost")
display(Fragment(svg_tornado(sens, "total cost")))
sens
'''),
        md("## Compare two runs, pick the best, write the sweep report"),
        code('''
base_id, worst_id = ok.sort_values("total_cost")["run_id"].iloc[[0, -1]]
store.compare(base_id, worst_id, store=run_store).head(12)
'''),
        code('''
best = store.best("total_cost", n=3, store=run_store, sweep=sweep.sweep_id)[["name", "total_cost", "service_level"]]
best.style.format({"total_cost": "EUR {:,.0f}", "service_level": "{:.1%}"}).hide(axis="index")
'''),
        code('''
RUNS.mkdir(parents=True, exist_ok=True)
report = write_sweep_report(runs, RUNS / "sweep.html", currency="EUR", title=spec.name)
print(report.name)
'''),
    ],
}


def build(name: str, execute: bool = True) -> float:
    """Write ``notebooks/<name>.ipynb`` and (by default) execute it in place, outputs stored; seconds taken."""
    nb = nbformat.v4.new_notebook()
    nb.cells = NOTEBOOKS[name]
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    t0 = time.perf_counter()
    if execute:
        work = HERE / "_work"
        work.mkdir(exist_ok=True)
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": str(work)}}).execute()
    nbformat.write(nb, HERE / f"{name}.ipynb")
    return time.perf_counter() - t0


if __name__ == "__main__":
    wanted = [n for n in NOTEBOOKS if not sys.argv[1:] or any(n.startswith(a) for a in sys.argv[1:])]
    for n in wanted:
        print(f"{n}: {build(n):.0f} s", flush=True)
