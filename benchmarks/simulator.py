"""Flow simulator benchmarks: against the SimPy reference, at scale, and the batched stress test.

    python -m benchmarks.simulator --json            # everything, one JSON object
    python -m benchmarks.simulator --part big        # one part only (big | simpy | stress)

Each part runs in its own subprocess, so peak memory (``ru_maxrss``) and timings do not leak into one another.
Wall-clock seconds are reported next to CPU seconds and the machine's load average: the machine is shared, and
on a loaded machine the wall clock measures the neighbours as much as the code.

Reported:
    speedup_vs_simpy        SimPy reference time / vectorized time, same network (eu_fba, a hand-made
                            nearest-DC plan, 4 weeks), same hourly resolution, same replications (target >= 100);
                            the vectorized time (median of 3 runs) includes arrival generation, SLA analysis
                            and the output tables
    seconds_50x6x8760x100   50 DCs x 6 stages (5 flow stages + storage) x 8,760 hours x 100 replications,
                            everything included, one thread (target < 10 s); also its cpu_seconds and the
                            same run with the sites split over 2 threads (``threads=2``)
    peak_mb                 peak resident memory of that run's process (and its growth over the baseline)
    stress_seconds          stress_test on eu_fba's peak weeks (carry-in from the weeks before): per-replication
                            grid + bisection to 0.01, replications grown until every failure point's 95 %
                            interval is +-0.02 (``stress_replications``, ``stress_max_half_width``)
    stress_batch_ratio      time of the 64-multiplier batch / time of 64 separate runs (target <= 0.25)
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
from time import perf_counter, process_time
from typing import Any

import numpy as np
import pandas as pd


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def nearest_dc_plan(instance: Any) -> Any:
    """A plan by hand: every zone served by its cheapest existing DC; inbound = outbound per DC and period."""
    from instances.plan import Plan

    dcs = instance.dcs
    existing = set(dcs.loc[dcs["status"] == "existing", "id"])
    lanes = instance.lanes[instance.lanes["origin_id"].isin(existing)]
    best = lanes.sort_values("cost_per_unit").drop_duplicates("destination_id").set_index("destination_id")
    d = instance.demand.assign(site_id=lambda x: x["zone_id"].map(best["origin_id"]))
    out = d.groupby(["site_id", "period"], as_index=False)["quantity"].sum()
    st = pd.DataFrame({"site_id": out["site_id"], "period": out["period"], "inbound_units": out["quantity"],
                       "outbound_units": out["quantity"]})
    sites = pd.DataFrame({"site_id": dcs["id"], "kind": dcs["kind"], "status": dcs["status"],
                          "open": dcs["id"].isin(existing).astype(int), "opened": 0, "closed": 0})
    return Plan(decision="consolidation", status="optimal", tables={"site_throughput": st, "sites": sites})


def synthetic_setup(n_sites: int = 50, seed: int = 0) -> Any:
    """50 DCs, 52 weekly periods and one day (8,760 h), loads at 60-95 % of capacity, labour from productivity."""
    from engine.simulator import K_STAGES, SimSetup

    rng = np.random.default_rng(seed)
    periods = pd.DataFrame({"period": np.arange(1, 54),
                            "start": pd.Timestamp("2026-01-05") + pd.to_timedelta(np.arange(53) * 7, unit="D"),
                            "days": [7] * 52 + [1]})
    season = 1.0 + 0.25 * np.sin(np.linspace(0, 2 * np.pi, 53))[:, None]
    weekly = rng.uniform(80_000, 200_000, size=(1, n_sites)) * season
    weekly[-1] /= 7
    load = rng.uniform(0.6, 0.95, size=(n_sites, 1))  # peak-hour load of the tightest stage
    rate = weekly.max(axis=0)[:, None] / (7 * 20) * 1.6 / load * np.array([[1.3, 1.2, 1.0, 1.05, 1.4]])
    productivity = np.tile([286.0, 143.0, 117.0, 91.0, 338.0], (n_sites, 1))
    hours = (weekly[..., None] / productivity[None]).sum(axis=-1) * 1.25  # staffed hours: 25 % above need
    return SimSetup([f"DC{i:02d}" for i in range(n_sites)], periods, weekly * 0.98, weekly, rate,
                    np.full((n_sites, K_STAGES), 20.0), productivity, hours, np.full(n_sites, 5e6),
                    np.full(n_sites, 2e6), 24.0)


def part_big(replications: int = 100, threads: int = 2) -> dict[str, Any]:
    """The 8,760-hour run twice: the default (one thread, the reported time) and sites split over 2 threads."""
    from engine.simulator import run_setup

    setup = synthetic_setup()
    base = _rss_mb()
    t, c = perf_counter(), process_time()
    res = run_setup(setup, np.array([1.0]), replications=replications, seed=0)
    wall, cpu = perf_counter() - t, process_time() - c
    peak = _rss_mb()
    t, c = perf_counter(), process_time()
    run_setup(setup, np.array([1.0]), replications=replications, seed=0, threads=threads)
    wall2, cpu2 = perf_counter() - t, process_time() - c
    steps = int(setup.periods["days"].sum() * 24)
    return {"seconds_50x6x8760x100": wall, "cpu_seconds_50x6x8760x100": cpu,
            f"seconds_50x6x8760x100_{threads}_threads": wall2, f"cpu_seconds_50x6x8760x100_{threads}_threads": cpu2,
            "peak_mb": peak, "peak_growth_mb": peak - base, "big_steps": steps, "big_sites": len(setup.site_ids),
            "big_replications": replications, "big_breaches": len(res.breaches),
            "big_daily_rows": len(res.daily)}


def _eu_fba() -> tuple[Any, Any]:
    from instances.instance import bundled_instance_path, load_instance

    inst = load_instance(bundled_instance_path("eu_fba"))
    return inst, nearest_dc_plan(inst)


def part_simpy(weeks: int = 4, replications: int = 20) -> dict[str, Any]:
    from benchmarks.simpy_reference import simulate_simpy
    from engine.simulator import (
        DEFAULT_UPSTREAM,
        INBOUND_DOCK,
        PICK,
        Profile,
        hourly_inputs,
        plan_inputs,
        prepare,
        run_setup,
    )

    inst, plan = _eu_fba()
    setup = prepare(inst, periods=list(range(1, weeks + 1)), **plan_inputs(plan))
    prof = Profile(noise="poisson")
    times = []
    for _ in range(3):  # a short run: the median of three, so that one busy moment of the neighbours does not decide
        t, c = perf_counter(), process_time()
        res = run_setup(setup, np.array([1.0]), replications=replications, seed=0, profile=prof)
        times.append((perf_counter() - t, process_time() - c))
    fast, fast_cpu = sorted(times)[1]
    lam_out, lam_in, cap = hourly_inputs(setup, prof)
    rng = np.random.default_rng(0)
    T, S, K = cap.shape
    x = np.zeros((T, S, K, replications))
    x[:, :, PICK] = rng.poisson(np.repeat(lam_out[..., None], replications, axis=-1))
    x[:, :, INBOUND_DOCK] = rng.poisson(np.repeat(lam_in[..., None], replications, axis=-1))
    t, c = perf_counter(), process_time()
    ref = simulate_simpy(cap, DEFAULT_UPSTREAM, arrivals=x, storage_capacity=setup.storage_capacity,
                         storage_initial=setup.storage_initial)
    slow, slow_cpu = perf_counter() - t, process_time() - c
    sp = res.stage_period
    fast_pick = sp.loc[sp["stage"] == "pick", "throughput"].sum()
    ref_pick = ref["throughput"][:, :, PICK].sum() / replications
    return {"speedup_vs_simpy": slow / fast, "speedup_vs_simpy_cpu": slow_cpu / fast_cpu,
            "vectorized_seconds": fast, "simpy_seconds": slow, "simpy_network": f"eu_fba {S} DCs",
            "simpy_steps": T, "simpy_replications": replications,
            "pick_throughput_rel_diff": float(abs(fast_pick - ref_pick) / ref_pick)}


def part_stress(replications: int = 10) -> dict[str, Any]:
    from engine.simulator import plan_inputs, prepare, run_setup
    from engine.stress import _spike_weights, peak_periods, stress_test

    inst, plan = _eu_fba()
    t = perf_counter()
    table = stress_test(inst, plan, replications=replications, seed=0, tolerance=0.01)
    total = perf_counter() - t
    inputs = plan_inputs(plan)
    periods, weights = _spike_weights(peak_periods(inputs["site_throughput"], inputs["open_sites"]))
    setup = prepare(inst, periods=periods, **inputs)
    grid = np.linspace(1.0, 3.0, 64)
    t = perf_counter()
    run_setup(setup, grid, replications=replications, seed=0, period_weight=weights, detail=False)
    batch = perf_counter() - t
    t = perf_counter()
    for m in grid:
        run_setup(setup, np.array([m]), replications=replications, seed=0, period_weight=weights, detail=False)
    separate = perf_counter() - t
    return {"stress_seconds": total, "stress_batch_seconds": batch, "stress_separate_seconds": separate,
            "stress_batch_ratio": batch / separate, "stress_periods": periods, "stress_rounds": table.attrs["rounds"],
            "stress_replications": table.attrs["replications"], "stress_max_half_width": table.attrs["max_half_width"],
            "stress_summary": table.attrs["summary"]}


PARTS = {"big": part_big, "simpy": part_simpy, "stress": part_stress}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--part", choices=sorted(PARTS), help="run one part in this process")
    args = ap.parse_args(argv)
    if args.part:
        out = PARTS[args.part]()
    else:
        out = {"load_average_before": os.getloadavg()[0], "cpus": os.cpu_count()}
        for name in ("simpy", "big", "stress"):
            proc = subprocess.run([sys.executable, "-m", "benchmarks.simulator", "--part", name],
                                  capture_output=True, text=True, check=True)
            out.update(json.loads(proc.stdout.strip().splitlines()[-1]))
        out["load_average_after"] = os.getloadavg()[0]
    if args.json or args.part:
        print(json.dumps(out, default=str))
    else:
        for k, v in out.items():
            print(f"{k:32s} {v:.3f}" if isinstance(v, float) else f"{k:32s} {v}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
