"""Model build + hand-off benchmark: linopy -> solvers.StandardForm -> HiGHS, against direct numpy ->
highspy assembly and against the same model in Pyomo.

The model is the capacitated facility location of :mod:`solvers.examples` (``open`` per warehouse,
``assign`` per warehouse x customer, rows ``demand``, ``capacity``, ``link``), sized to ``--n-vars``.
Each measurement runs in its own subprocess so peak memory (``ru_maxrss``) and timings do not leak into
one another.

    python -m benchmarks.model_build --json                       # 10^6 variables, Pyomo at the same size
    python -m benchmarks.model_build --n-vars 200000 --pyomo-n-vars 100000 --json

Reported (one JSON object with ``--json``):
    n_vars, n_rows, nnz        size of the model
    ours_s                     linopy build + StandardForm export + HiGHS passModel
    ours_linopy_s / ours_export_s / ours_pass_s   its parts
    direct_s                   numpy assembly of the same arrays + HiGHS passModel
    pyomo_s                    Pyomo build + LinearStandardFormCompiler export + passModel (at pyomo_n_vars;
                               scaled linearly to n_vars when smaller, flagged by pyomo_extrapolated)
    ratio_vs_direct            ours_s / direct_s                     (target <= 3)
    speedup_vs_pyomo           pyomo_s / ours_s                      (target >= 20)
    peak_mb                    peak resident memory of our pipeline (also peak_mb_direct, peak_mb_pyomo)
    translate_overhead_ratio   on a --milp-n-vars MILP (default 10^5, solved to optimality): (export +
                               passModel + extract) / HiGHS solve time (target <= 0.10); also reported
                               including the linopy model build
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import math
import resource
import subprocess
import sys
from time import perf_counter
from typing import Any

import numpy as np

from solvers.examples import FacilityLocationData


def instance_for(n_vars: int, seed: int = 0) -> FacilityLocationData:
    """A random instance with about ``n_vars`` variables (``n_w`` warehouses x ``n_c`` customers + ``n_w``)."""
    n_w = max(2, round(math.sqrt(n_vars)))
    n_c = max(2, n_vars // n_w - 1)
    return FacilityLocationData.random(n_w, n_c, seed=seed)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _warm_up(pipeline: Any) -> None:
    """Run ``pipeline`` once on a tiny instance so imports and first-call costs (and the HiGHS banner)
    stay outside the timed region, as in a long-running process."""
    _new_highs()
    pipeline(instance_for(1_000, seed=1))
    gc.collect()


def _new_highs() -> Any:
    from solvers.backends.highs import new_highs

    return new_highs()


# ------------------------------------------------------------------------------------------ measurements
def measure_ours(n_vars: int) -> dict[str, Any]:
    """linopy model -> StandardForm -> highspy.passModel."""
    from solvers.backends.base import SolveParams
    from solvers.backends.highs import HighsBackend
    from solvers.examples import facility_location_linopy
    from solvers.frontends import from_linopy

    data = instance_for(n_vars)
    _warm_up(lambda small: HighsBackend().build(from_linopy(facility_location_linopy(small)), SolveParams()))
    t0 = perf_counter()
    model = facility_location_linopy(data)
    t1 = perf_counter()
    form = from_linopy(model)
    t2 = perf_counter()
    HighsBackend().build(form, SolveParams())
    t3 = perf_counter()
    return {
        "n_vars": form.n_cols,
        "n_rows": form.n_rows,
        "nnz": form.nnz,
        "ours_s": t3 - t0,
        "ours_linopy_s": t1 - t0,
        "ours_export_s": t2 - t1,
        "ours_pass_s": t3 - t2,
        "peak_mb": _peak_mb(),
    }


def measure_direct(n_vars: int) -> dict[str, Any]:
    """numpy assembly of the same arrays -> highspy.passModel (no labels, no checks)."""
    import highspy

    from solvers.examples import facility_location_arrays

    data = instance_for(n_vars)
    _warm_up(lambda small: facility_location_arrays(small, labels=False))
    h = _new_highs()
    t0 = perf_counter()
    form = facility_location_arrays(data, labels=False)
    A = form.A
    h.passModel(
        form.n_cols,
        form.n_rows,
        A.nnz,
        int(highspy.MatrixFormat.kRowwise),
        1,
        0.0,
        form.objective,
        form.col_lower,
        form.col_upper,
        form.row_lower,
        form.row_upper,
        A.indptr,
        A.indices,
        A.data,
        form.integrality.astype(np.int32),
    )
    t1 = perf_counter()
    return {"direct_s": t1 - t0, "peak_mb_direct": _peak_mb(), "direct_n_vars": form.n_cols}


def measure_pyomo(n_vars: int) -> dict[str, Any]:
    """Pyomo ConcreteModel -> LinearStandardFormCompiler (our Pyomo front door) -> highspy.passModel."""
    from solvers.backends.base import SolveParams
    from solvers.backends.highs import HighsBackend
    from solvers.examples import facility_location_pyomo
    from solvers.frontends import from_pyomo

    data = instance_for(n_vars)
    _warm_up(lambda small: HighsBackend().build(from_pyomo(facility_location_pyomo(small)), SolveParams()))
    t0 = perf_counter()
    model = facility_location_pyomo(data)
    t1 = perf_counter()
    form = from_pyomo(model)
    t2 = perf_counter()
    HighsBackend().build(form, SolveParams())
    t3 = perf_counter()
    return {
        "pyomo_n_vars": form.n_cols,
        "pyomo_measured_s": t3 - t0,
        "pyomo_build_s": t1 - t0,
        "pyomo_export_s": t2 - t1,
        "pyomo_pass_s": t3 - t2,
        "peak_mb_pyomo": _peak_mb(),
    }


def measure_milp(n_vars: int, time_limit: float) -> dict[str, Any]:
    """Solve a MILP of about ``n_vars`` variables with HiGHS; compare our overhead with the solve time."""
    import solvers
    from solvers.examples import facility_location_linopy

    data = instance_for(n_vars, seed=1)
    # Capacities equal to total demand (as in OR-Library cap7x/10x/13x): HiGHS proves this size optimal
    # in tens of seconds on one thread, so the ratio compares with a finished solve, not a time limit.
    data = dataclasses.replace(data, capacity=np.full_like(data.capacity, data.demand.sum()))
    _warm_up(lambda small: solvers.solve(facility_location_linopy(small), solver="highs", time_limit=5))
    t0 = perf_counter()
    model = facility_location_linopy(data)
    linopy_s = perf_counter() - t0
    result = solvers.solve(model, solver="highs", time_limit=time_limit, threads=1)
    t = result.wall_time
    overhead = t.build + t.translate + t.extract
    return {
        "milp_linopy_build_s": linopy_s,
        "milp_n_vars": result.model.n_cols,
        "milp_termination": result.termination.value,
        "milp_gap": result.gap,
        "milp_export_s": t.build,
        "milp_translate_s": t.translate,
        "milp_extract_s": t.extract,
        "milp_solve_s": t.solve,
        "translate_overhead_ratio": overhead / t.solve if t.solve > 0 else float("nan"),
        "translate_overhead_ratio_incl_linopy_build": (overhead + linopy_s) / t.solve if t.solve > 0 else float("nan"),
    }


# ------------------------------------------------------------------------------------------ driver
def _in_subprocess(which: str, n_vars: int, extra: list[str] | None = None) -> dict[str, Any]:
    command = [sys.executable, "-m", "benchmarks.model_build", "--only", which, "--n-vars", str(n_vars)]
    completed = subprocess.run(command + (extra or []), capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"benchmark step {which!r} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def run(n_vars: int, pyomo_n_vars: int | None, milp_n_vars: int, milp_time_limit: float) -> dict[str, Any]:
    """All measurements, each in a fresh interpreter."""
    report: dict[str, Any] = {}
    report.update(_in_subprocess("ours", n_vars))
    report.update(_in_subprocess("direct", n_vars))
    pyomo_size = pyomo_n_vars or n_vars
    if pyomo_size > 0:
        report.update(_in_subprocess("pyomo", pyomo_size))
        scale = report["n_vars"] / report["pyomo_n_vars"]
        report["pyomo_extrapolated"] = abs(scale - 1.0) > 0.01
        report["pyomo_s"] = report["pyomo_measured_s"] * scale
        report["speedup_vs_pyomo"] = report["pyomo_s"] / report["ours_s"]
    report["ratio_vs_direct"] = report["ours_s"] / report["direct_s"]
    if milp_n_vars > 0:
        report.update(_in_subprocess("milp", milp_n_vars, ["--milp-time-limit", str(milp_time_limit)]))
    report["targets"] = {
        "ratio_vs_direct_max": 3.0,
        "speedup_vs_pyomo_min": 20.0,
        "translate_overhead_ratio_max": 0.10,
    }
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-vars", type=int, default=1_000_000, help="model size for the build benchmark")
    parser.add_argument(
        "--pyomo-n-vars",
        type=int,
        default=None,
        help="size at which to time Pyomo (default: --n-vars; smaller sizes are scaled linearly and "
        "flagged pyomo_extrapolated; 0 skips Pyomo)",
    )
    parser.add_argument("--milp-n-vars", type=int, default=100_000, help="MILP size for the overhead ratio")
    parser.add_argument("--milp-time-limit", type=float, default=120.0, help="seconds for the MILP solve")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--only", choices=["ours", "direct", "pyomo", "milp"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.only:
        step = {
            "ours": lambda: measure_ours(args.n_vars),
            "direct": lambda: measure_direct(args.n_vars),
            "pyomo": lambda: measure_pyomo(args.n_vars),
            "milp": lambda: measure_milp(args.n_vars, args.milp_time_limit),
        }[args.only]
        print(json.dumps(step()))
        return
    report = run(args.n_vars, args.pyomo_n_vars, args.milp_n_vars, args.milp_time_limit)
    if args.json:
        print(json.dumps(report))
        return
    for key, value in report.items():
        print(f"{key:>28}: {value:.4g}" if isinstance(value, float) else f"{key:>28}: {value}")


if __name__ == "__main__":
    main()
