"""Solve OR-Library capacitated facility location files with the production network design formulation.

    python -m benchmarks.orlib FILE... [--solver highs|ortools] [--time-limit S] [--threads N] [--single-source]
                                       [--capacity C] [--compare-plain]

Prints one JSON line per file: ``instance, objective, bound, gap, status, seconds`` (MIP gap set to 0), plus
``published_optimum`` and ``rel_error`` when the optimum is known (``optima.csv`` beside the file, or
:data:`CAPACITY_VARIANT_OPTIMA` for a ``--capacity`` variant) and the solution ``violations`` found by
:func:`formulations.check.check_plan` (single sourcing checked too with ``--single-source``). The published optima
are multi-source: with ``--single-source`` they are the optimum only where every warehouse holds the whole demand
(cap7x, cap10x, cap13x); elsewhere the line gives ``multi_source_optimum`` (a lower bound) and
``above_multi_source`` (and ``plain_above_multi_source``) instead.

``--capacity C`` replaces every warehouse capacity of the file by C (the instance is then named after the
file's letter and C, e.g. ``capb8000``): Beasley's capa/capb/capc instances differ only in that value.
``--compare-plain`` solves each file a second time, in the same run, with plain HiGHS: the same formulation
passed straight to the solver (:func:`plain_solve`), the same time limit, MIP gap and threads; the line
then has ``plain_*`` fields and ``not_worse`` (twinplan's objective <= plain HiGHS's, relative 1e-9).

Measured (2026-12-05, HiGHS 1.16, ``--threads 1 --compare-plain``, 2 cores shared by four engineers' jobs,
load average 6.6-6.9 during the 60 s runs, 3.8-6.6 during the 120 s runs):

- all 37 small instances (cap41 ... cap134): published optimum reached (tests/test_orlib.py);
- 60 s: capa8000 / capb8000 (``capb5000.txt --capacity 8000``) / capc5000: twinplan reaches the published
  optimum on all three (relative error <= 3e-11) and proves it (bound = objective) in 38.8 / 45.4 / 44.6 s;
  plain HiGHS: +274 % / +447 % / +490 %, no bound (its root LP does not finish);
- 120 s: the same optima proven in 49.3 / 40.1 / 46.6 s; plain HiGHS +274 % (no bound) / +24.2 % (gap 19.6 %)
  / +490 % (no bound).

Single source (2026-12-05, ``--single-source --compare-plain --threads 1``, load 3.0-4.2): capa8000 / capb8000 /
capc5000 at 60 s 19,241,057 / 13,339,185 / 11,647,410 with proven gaps 0.058 % / 2.03 % / 0.16 %, at 120 s the
same for the first two and 12,082,019 (gap 3.76 %) for capc5000; plain HiGHS 23,622,066 / 16,314,460 / 15,655,241
at both limits, bound 0. Small instances: see tests/test_orlib.py (13 infeasible, the rest at their optima).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

import solvers
from formulations import network_design
from formulations.check import check_plan
from formulations.network_design import (
    NetworkDesignOptions,
    extract_plan,
    labelled_form,
)
from instances.instance import Instance
from instances.orlib import OrlibFormatError, load_optima, orlib_instance, parse_orlib, read_orlib
from instances.plan import Plan

CAPACITY_VARIANT_OPTIMA = {
    "capa10000": 18438046.543, "capa12000": 17765201.949, "capa14000": 17160439.012,
    "capb6000": 13361927.449, "capb7000": 13198556.434, "capb8000": 13082516.496,
    "capc5750": 11570340.289, "capc6500": 11518743.744, "capc7250": 11505767.394,
}
"""Published optima of the capacity variants of capa/capb/capc (OR-Library ``capopt``, Beasley 1988) that are not
in the shared ``optima.csv`` (which holds capa8000, capb5000, capc5000)."""


PHASE_FIELDS = ("status", "objective", "bound", "seconds", "open_sites", "start_objective", "moves", "fixed_closed",
                "fixed_open", "iterations", "sites_fixed", "probed")


def read_instance(path: Path, capacity: float | None = None) -> Instance:
    """The file as an Instance; with ``capacity``, every warehouse capacity replaced by it (named e.g. capb8000)."""
    if capacity is None:
        return read_orlib(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise OrlibFormatError(f"{path}: no such file") from None
    cap, fixed, dem, cost = parse_orlib(text, str(path))
    name = path.stem.rstrip("0123456789") + f"{capacity:g}"
    return orlib_instance(np.full_like(cap, float(capacity)), fixed, dem, cost, name=name)


def plain_solve(inst: Instance, opts: NetworkDesignOptions, solver: str, time_limit: float | None,
                threads: int | None) -> Plan:
    """Plain HiGHS: the same formulation built and passed straight to the solver with the whole time limit (no
    phases, no start, no reserve), MIP gap 0; read back into a plan."""
    ctx = network_design.prepare(inst, replace(opts, strategy="direct"))
    m = network_design.build_model(ctx)
    res = solvers.solve(labelled_form(m, ctx), solver=solver, time_limit=time_limit, mip_gap=0.0, threads=threads)
    return extract_plan(ctx, res)


def _solve_record(inst: Instance, strategy: str, solver: str, time_limit: float | None, single_source: bool,
                  threads: int | None, optimum: float | None) -> dict[str, Any]:
    t0 = time.perf_counter()
    opts = NetworkDesignOptions(allow_unmet=False, single_source=single_source, strategy=strategy)
    if strategy == "plain":
        plan = plain_solve(inst, opts, solver, time_limit, threads)
    else:
        plan = network_design.solve(inst, options=opts, solver=solver, time_limit=time_limit, mip_gap=0.0,
                                    threads=threads)
    seconds = time.perf_counter() - t0
    rec: dict[str, Any] = {"objective": plan.objective, "bound": plan.bound, "gap": plan.gap,
                           "status": plan.status, "seconds": round(seconds, 3)}
    if optimum is not None and plan.objective is not None:
        rec["rel_error"] = (plan.objective - optimum) / abs(optimum)
    if plan.has_solution:
        rec["violations"] = int(len(check_plan(inst, plan, single_source=single_source)))
    rec["build_seconds"] = round(float(plan.meta.get("build_seconds", 0.0)), 3)
    rec["solve_seconds"] = round(float(plan.meta.get("solve_seconds_total", plan.meta.get("solve_seconds", 0.0))), 3)
    phases = plan.meta.get("phases")
    if phases:
        rec["phases"] = {k: {f: (round(x, 3) if isinstance(x, float) else x) for f, x in v.items()
                             if f in PHASE_FIELDS}
                         if isinstance(v, dict) else round(float(v), 3) for k, v in phases.items()}
    return rec


def run_file(path: Path, solver: str = "highs", time_limit: float | None = None, single_source: bool = False,
             threads: int | None = None, capacity: float | None = None, compare_plain: bool = False,
             strategy: str = "auto") -> dict[str, Any]:
    """Read, solve to a zero MIP gap (or the time limit), check; the JSON record of one file (with plain HiGHS's
    figures as ``plain_*`` when ``compare_plain``)."""
    inst = read_instance(path, capacity)
    known = dict(CAPACITY_VARIANT_OPTIMA)
    if (path.parent / "optima.csv").is_file():
        known.update(load_optima(path.parent))
    optimum = known.get(inst.name)
    rec: dict[str, Any] = {"instance": inst.name}
    # orlib_instance: one resource per warehouse, count = capacity (rate 1 an hour, 1 hour a day); where every
    # warehouse holds all demand, single sourcing is free; else the multi-source optimum is only a lower bound
    if (single_source and optimum is not None
            and float(inst.resources["count"].min()) < float(inst.demand["quantity"].sum())):
        rec["multi_source_optimum"] = optimum
        optimum = None
    if optimum is not None:
        rec["published_optimum"] = optimum
    rec.update(_solve_record(inst, strategy, solver, time_limit, single_source, threads, optimum))
    if optimum is not None and rec.get("rel_error") is not None:
        rec["rel_error"] = abs(rec["rel_error"])
    if rec.get("multi_source_optimum") and rec.get("objective") is not None:
        rec["above_multi_source"] = rec["objective"] / rec["multi_source_optimum"] - 1
    if compare_plain:
        plain = _solve_record(inst, "plain", solver, time_limit, single_source, threads, optimum)
        rec.update({f"plain_{k}": v for k, v in plain.items() if k != "phases"})
        if plain.get("rel_error") is not None:
            rec["plain_rel_error"] = abs(plain["rel_error"])
        if rec.get("multi_source_optimum") and plain.get("objective") is not None:
            rec["plain_above_multi_source"] = plain["objective"] / rec["multi_source_optimum"] - 1
        ours, theirs = rec["objective"], plain["objective"]
        rec["not_worse"] = theirs is None or (ours is not None and ours <= theirs * (1 + 1e-9))
    return rec


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.orlib", description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ap.add_argument("--solver", default="highs")
    ap.add_argument("--time-limit", type=float, default=None)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--single-source", action="store_true")
    ap.add_argument("--capacity", type=float, default=None,
                    help="replace every warehouse capacity by this value (e.g. 8000 for capb8000)")
    ap.add_argument("--compare-plain", action="store_true",
                    help="also solve with plain HiGHS (same formulation, limit and threads) in the same run")
    ap.add_argument("--strategy", default="auto", choices=("auto", "direct", "relax_restore"))
    args = ap.parse_args(argv)
    code = 0
    for f in args.files:
        try:
            rec = run_file(f, args.solver, args.time_limit, args.single_source, args.threads, args.capacity,
                           args.compare_plain, args.strategy)
        except OrlibFormatError as exc:
            print(f"error: {exc}", file=sys.stderr)
            code = 2
            continue
        print(json.dumps(rec), flush=True)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
