"""Sweep throughput benchmark: runs per minute with the local executor and with Dask, and the warm-start gain.

Runs the first ``--runs`` variants of a sweep spec (default: the 200-draw ``eu_fba`` benchmark spec) three
times into throw-away run stores:

1. ``local`` executor (process pool of ``--workers``), warm-started from the base run's plan;
2. ``dask`` executor (LocalCluster of ``--workers`` single-threaded workers), warm-started;
3. the first ``--cold-runs`` variants again with the local executor and no warm start.

    python -m benchmarks.sweep --json                               # 200 runs of eu_fba (long)
    python -m benchmarks.sweep --runs 8 --cold-runs 4 --json        # a smaller run
    python -m benchmarks.sweep --spec tests/data/tiny_sweep.yaml --runs 7 --json

Reported (one JSON object with ``--json``):
    runs, workers, spec, cpus, load_avg           what was run, on what
    local / dask: runs, finished, failed, wall_s, runs_per_min
                  (all runs executed, the base run included; wall time includes pool / cluster start),
                  solve_status counts, warm_started (runs given the base plan), base_objective
    warm_vs_cold: pairs, warm_solve_s, cold_solve_s (solver time of every LP / MILP solve of the run, model
                  builds excluded: ``timings.solver_s``), ratio (warm / cold over the same variants), saved_pct,
                  warm_total_s, cold_total_s and total_ratio (whole engine.plan time: builds, solves, check,
                  simulation)

Warm starts: every variant gets the base run's plan (a MIP start on the direct path) and its LP bases (run
artifacts ``basis.lp`` / ``basis.restore``, the simplex start of the relax-and-restore phases).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

DEFAULT_SPEC = Path(__file__).resolve().parents[1] / "instances" / "eu_fba" / "sweeps" / "benchmark.yaml"


def _throughput(result: Any) -> dict[str, Any]:
    executed = result.finished + result.failed
    return {"runs": executed, "finished": result.finished, "failed": result.failed,
            "wall_s": round(result.wall_seconds, 2),
            "runs_per_min": round(executed / (result.wall_seconds / 60.0), 3) if result.wall_seconds else None}


def _timings(store: Any, sweep_id: str) -> dict[int, dict[str, float]]:
    """Per run index: solver time (``solver_s``, every solve of the run; else ``milp_solve_s``, else the pipeline's
    ``solve_s``) and the whole engine.plan time."""
    df = store.runs(sweep=sweep_id, status="finished")
    out = {}
    for idx, t in zip(df["run_index"], df["timings"]):
        t = json.loads(t) if isinstance(t, str) else (t or {})
        solver_s = t.get("solver_s", t.get("milp_solve_s", t.get("solve_s", float("nan"))))
        out[int(idx)] = {"solve_s": float(solver_s), "total_s": float(t.get("total_s", float("nan")))}
    return out


def _statuses(store: Any, sweep_id: str) -> dict[str, Any]:
    df = store.runs(sweep=sweep_id)
    base = df[df["run_index"] == 0]
    base_obj = None if base.empty or base["objective"].isna().all() else float(base["objective"].iloc[0])
    return {"solve_status": {str(k): int(v) for k, v in df["solve_status"].fillna("none").value_counts().items()},
            "warm_started": int(df["warm_start"].notna().sum()), "base_objective": base_obj}


def run(spec: str | Path = DEFAULT_SPEC, runs: int = 200, workers: int = 2, cold_runs: int = 10,
        executors: tuple[str, ...] = ("local", "dask"), progress: bool = False) -> dict[str, Any]:
    """Run the benchmark and return the measurements (see the module docstring)."""
    from engine.governance import Policy
    from engine.store import RunStore
    from engine.sweep import run_sweep

    open_policy = Policy(open=True)
    out: dict[str, Any] = {"spec": str(spec), "runs": runs, "workers": workers, "cpus": os.cpu_count(),
                           "load_avg": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="twinplan-bench-") as tmp:
        warm = None
        for kind in executors:
            store = RunStore(Path(tmp) / f"{kind}.duckdb")
            res = run_sweep(spec, executor=kind, workers=workers, store=store, policy=open_policy,
                            progress=progress, limit=runs)
            out[kind] = _throughput(res) | _statuses(store, res.sweep_id)
            if warm is None:
                warm = (store, res.sweep_id)
        if cold_runs and warm is not None:
            store = RunStore(Path(tmp) / "cold.duckdb")
            res = run_sweep(spec, executor="local", workers=workers, store=store, policy=open_policy,
                            progress=progress, limit=min(cold_runs, runs), warm_start=False)
            cold = _timings(store, res.sweep_id)
            hot = _timings(*warm)
            pairs = sorted(i for i in cold.keys() & hot.keys() if i > 0)  # the base run is cold in both
            ws = sum(hot[i]["solve_s"] for i in pairs)
            cs = sum(cold[i]["solve_s"] for i in pairs)
            wt = sum(hot[i]["total_s"] for i in pairs)
            ct = sum(cold[i]["total_s"] for i in pairs)
            out["warm_vs_cold"] = {
                "pairs": len(pairs), "warm_solve_s": round(ws, 3), "cold_solve_s": round(cs, 3),
                "ratio": round(ws / cs, 4) if cs else None,
                "saved_pct": round(100.0 * (1 - ws / cs), 2) if cs else None,
                "warm_total_s": round(wt, 3), "cold_total_s": round(ct, 3),
                "total_ratio": round(wt / ct, 4) if ct else None,
                "cold_wall_s": round(res.wall_seconds, 2)}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.sweep", description=__doc__.splitlines()[0])
    ap.add_argument("--spec", default=str(DEFAULT_SPEC), help="sweep spec YAML")
    ap.add_argument("--runs", type=int, default=200, help="variants to run (after the base run)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--cold-runs", type=int, default=10, help="variants re-run cold for the warm/cold ratio")
    ap.add_argument("--executors", default="local,dask", help="comma-separated: local,dask")
    ap.add_argument("--progress", action="store_true", help="show the sweeps' progress bars")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    res = run(args.spec, runs=args.runs, workers=args.workers, cold_runs=args.cold_runs,
              executors=tuple(e for e in args.executors.split(",") if e), progress=args.progress)
    if args.json:
        print(json.dumps(res))
    else:
        for k, v in res.items():
            print(f"{k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
