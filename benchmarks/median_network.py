"""The median-size network end to end through ``twinplan solve`` (issue 15; not a test).

    python -m benchmarks.median_network [--time-limit 600] [--threads 1] [--replications 10] [--keep DIR]

Generates the network the size of the median model of a commercial network-design cloud --
``twinplan generate --sites 312 --zones 200 --products 28 --periods 52 --seed 3`` (296 DCs, 16 ports, 200 zones,
28 products, 52 weeks) -- and solves it as it is (a scenario with no modifications, ``mip_gap`` 0.02) with
``twinplan solve DIR --scenario FILE --time-limit T``, the real command in a subprocess, timed from outside.
Prints one JSON object per step:

- ``generate``: seconds;
- ``solve``: wall seconds of the whole command and by how much it overran ``--time-limit`` (``overrun_s``), exit
  code, status, objective, proven bound and gap, **time to the first plan** (the command's own progress line
  "solving ..." + the first round's ``first_plan_s``), the last round's phases of the relax-and-restore
  strategy, the pipeline's timings (solve, check, simulate), each repair round's objective, bound, gap and first
  plan (``per_round``);
- ``load``: the load average before and after (the machine is shared).

Measured figures are in the README benchmark table.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

GENERATE = ["--sites", "312", "--zones", "200", "--products", "28", "--periods", "52", "--seed", "3"]
SCENARIO = """name: design
class: strategic
decision: consolidation
description: The generated network as it is, no modifications; the optimizer chooses sites, flows, labour, modules.
solver: {{mip_gap: {gap}{threads}}}
modifications: []
"""


def twinplan() -> list[str]:
    """The ``twinplan`` command of this environment (the console script beside the interpreter)."""
    exe = Path(sys.executable).with_name("twinplan")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "engine.cli"]


def emit(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}, default=str), flush=True)


def first_plan_seconds(stderr: str, result: dict[str, Any]) -> float | None:
    """Seconds from the command's start to its first plan: when solving began (its progress line) plus the first
    round's ``first_plan_s`` (seconds from the pipeline's start to that round's first evaluated plan)."""
    m = re.search(r"\[twinplan\s+([\d.]+)s\] solving ", stderr)
    rounds = result.get("rounds") or []
    first = rounds[0].get("first_plan_s") if rounds else None
    if m is None or first is None:
        return None
    return float(m.group(1)) + float(first)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.median_network", description=__doc__.splitlines()[0])
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--gap", type=float, default=0.02)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--replications", type=int, default=10)
    ap.add_argument("--keep", help="keep the instance and the run folder here (default: a temporary folder)")
    args = ap.parse_args(argv)

    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="median_network_"))
    work.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()
    try:
        inst = work / "median"
        t0 = time.perf_counter()
        subprocess.run([*twinplan(), "generate", *GENERATE, "--out", str(inst)], check=True, capture_output=True)
        emit("generate", seconds=round(time.perf_counter() - t0, 2), instance=str(inst))
        scenario = work / "design.yaml"
        scenario.write_text(SCENARIO.format(gap=args.gap, threads=f", threads: {args.threads}" if args.threads
                                            else ""))
        run = work / "run"
        cmd = [*twinplan(), "solve", str(inst), "--scenario", str(scenario), "--time-limit", str(args.time_limit),
               "--out", str(run), "--store", str(work / "runs.duckdb"), "--replications", str(args.replications)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        out: dict[str, Any] = {"wall_s": round(wall, 1), "time_limit_s": args.time_limit,
                               "overrun_s": round(max(0.0, wall - args.time_limit), 1), "exit_code": proc.returncode,
                               "progress": proc.stderr.strip().splitlines()[-12:]}
        plan_file = run / "plan" / "plan.json"
        if plan_file.exists():
            plan = json.loads(plan_file.read_text())
            meta = plan.get("meta") or {}
            result = json.loads((run / "result.json").read_text())
            out.update(status=plan.get("status"), objective=plan.get("objective"), bound=plan.get("bound"),
                       gap=plan.get("gap"), first_plan_s=first_plan_seconds(proc.stderr, result),
                       timings=result.get("timings"), rounds=len(result.get("rounds") or []),
                       per_round=[{k: x.get(k) for k in ("round", "objective", "bound", "gap", "first_plan_s",
                                                         "simulation_feasible")}
                                  for x in result.get("rounds") or []],
                       phases={k: {f: v.get(f) for f in ("status", "objective", "bound", "seconds", "at_seconds",
                                                         "period_block", "method")
                                   if isinstance(v, dict) and v.get(f) is not None}
                               for k, v in (meta.get("phases") or {}).items() if isinstance(v, dict)})
        emit("solve", **out)
    finally:
        emit("load", before=[round(x, 2) for x in load_before], after=[round(x, 2) for x in os.getloadavg()])
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
