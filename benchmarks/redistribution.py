"""Benchmark of the redistribution and peak-capacity MILPs on the bundled scenarios (not a test).

    python -m benchmarks.redistribution [--json] [--time-limit 60] [--gap 0.01] [--threads N] [--no-warm]
                                        [--only redistribution|capacity]

Cases (each solved through :func:`engine.pipeline.solve_decision`, as ``twinplan solve`` does):

- ``port_closure_la``: ``us_west_port`` with the Port of LA/LB closed on days 1-14 (redistribution,
  28 daily periods);
- ``black_friday``: ``eu_fba`` weeks 47-49 with the Black-Friday spike (capacity, 21 daily periods).

Reported per case: ``build_s`` (model build, from the plan's meta; for redistribution it includes the hand-off
to the solver layer's standard form), ``solve_s`` (solver layer and HiGHS), ``total_s`` (wall time of the call,
data preparation and plan tables included), ``status``, ``objective``, ``gap``, ``n_vars``, ``n_cons``;
``strategy`` (redistribution: ``relax_round`` when the LP relaxation with trucks rounded up proves the gap);
with warm starts on, also ``derated_resolve``: the model re-solved with a 20 % derate on the busiest site's
pick stage (what a repair round does), warm-started from the first plan, and the same derated solve cold.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import sys
import time
from typing import Any

from engine.pipeline import solve_decision
from engine.scenario import apply_scenario, load_scenario
from instances.instance import bundled_instance_path, load_instance

CASES = {"redistribution": ("us_west_port", "port_closure_la"), "capacity": ("eu_fba", "black_friday")}


def _record(plan: Any, seconds: float) -> dict[str, Any]:
    meta = plan.meta
    return {"status": plan.status, "objective": plan.objective, "gap": plan.gap,
            "build_s": meta.get("build_seconds"), "solve_s": meta.get("solve_seconds"),
            "total_s": round(seconds, 3), "n_vars": meta.get("variables"), "n_cons": meta.get("constraints"),
            "strategy": meta.get("strategy"), "warm_start_entries": meta.get("warm_start_entries"),
            "warm_start": meta.get("warm_start")}


def _busiest_pick(plan: Any) -> tuple[str, str]:
    thr = plan.tables["site_throughput"]
    site = str(thr.groupby("site_id")["outbound_units"].sum().idxmax())
    return site, "pick"


def run_case(decision: str, time_limit: float, gap: float, threads: int | None, warm: bool) -> dict[str, Any]:
    """Solve one case (and, with ``warm``, a derated re-solve warm and cold)."""
    name, scenario_name = CASES[decision]
    path = bundled_instance_path(name)
    inst = apply_scenario(load_instance(path), load_scenario(scenario_name, path))
    kw = {"time_limit": time_limit, "mip_gap": gap, "threads": threads}
    t0 = time.perf_counter()
    plan, _ = solve_decision(inst, decision, **kw)
    out: dict[str, Any] = {"instance": name, "scenario": scenario_name, "decision": decision,
                           **_record(plan, time.perf_counter() - t0)}
    if warm and plan.has_solution:
        derate = {_busiest_pick(plan): 0.8}
        t0 = time.perf_counter()
        warm_plan, _ = solve_decision(inst, decision, derate=derate, warm_start=plan, **kw)
        warm_rec = _record(warm_plan, time.perf_counter() - t0)
        t0 = time.perf_counter()
        cold_plan, _ = solve_decision(inst, decision, derate=derate, **kw)
        out["derated_resolve"] = {"derate": {f"{s}/{g}": f for (s, g), f in derate.items()}, "warm": warm_rec,
                                  "cold": _record(cold_plan, time.perf_counter() - t0)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.redistribution", description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--gap", type=float, default=0.01)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-warm", action="store_true", help="skip the derated warm / cold re-solves")
    ap.add_argument("--only", choices=sorted(CASES), default=None)
    args = ap.parse_args(argv)
    from formulations import redistribution

    warm = not args.no_warm and "warm_start" in inspect.signature(redistribution.solve).parameters
    report: dict[str, Any] = {"cpus": os.cpu_count(), "load_avg": [round(x, 2) for x in os.getloadavg()],
                              "time_limit": args.time_limit, "mip_gap": args.gap, "cases": []}
    for decision in CASES if args.only is None else [args.only]:
        rec = run_case(decision, args.time_limit, args.gap, args.threads, warm)
        report["cases"].append(rec)
        if not args.json:
            print(f"{rec['scenario']}: {rec['status']} gap {rec['gap']} build {rec['build_s']} s "
                  f"solve {rec['solve_s']} s total {rec['total_s']} s, {rec['n_vars']} variables", flush=True)
            if "derated_resolve" in rec:
                w, c = rec["derated_resolve"]["warm"], rec["derated_resolve"]["cold"]
                print(f"  derated re-solve: warm {w['total_s']} s ({w['status']}, gap {w['gap']}), "
                      f"cold {c['total_s']} s ({c['status']}, gap {c['gap']})", flush=True)
    if args.json:
        json.dump(report, sys.stdout, indent=2, default=float)
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
