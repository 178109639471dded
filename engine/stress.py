"""Stress test: the demand multiplier at which each DC first breaks its SLA, and on which stage.

One batched simulation over a grid of multipliers brackets the failure point of every site and chain
(orders, inbound); bisection then narrows every bracket at once to ``tolerance``: in each round one batched
run evaluates every site's midpoint (sites are independent, so each site gets its own multiplier in the same
batch column). A multiplier m scales the spike periods' volumes by ``1 + (m - 1) * weight`` (weight 1 for a
plain spike). The simulator uses common random numbers across multipliers, so failure is monotone in m for a
given seed and the bracket is well defined.

Result: one row per site and chain, e.g. "DC_A fails at 1.37x on pack stations".
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from engine.simulator import CHAIN_NAMES, Profile, SimSetup, plan_inputs, prepare, run_setup
from instances.instance import Instance

STAGE_LABELS: dict[str, str] = {"inbound_dock": "inbound doors", "putaway": "putaway", "pick": "pick stations",
                                "pack": "pack stations", "outbound_dock": "outbound doors"}
COLUMNS = ("site_id", "chain", "stage", "fail_multiplier", "holds_at", "message")


def peak_periods(site_throughput: pd.DataFrame, open_sites: Sequence[str] | None = None,
                 share: float = 0.8) -> list[int]:
    """The plan's peak block: the period of most outbound units and its neighbours within ``share`` of it."""
    st = site_throughput
    if open_sites is not None:
        st = st[st["site_id"].astype(str).isin(set(open_sites))]
    total = pd.to_numeric(st["outbound_units"]).groupby(pd.to_numeric(st["period"]).astype(int)).sum()
    if total.empty:
        raise ValueError("site_throughput has no outbound volume: no peak to stress")
    top = int(total.idxmax())
    block = [top]
    for step in (-1, 1):
        p = top + step
        while p in total.index and total[p] >= share * total[top]:
            block.append(p)
            p += step
    return sorted(block)


def _spike_weights(spike: Sequence[int] | Mapping[int, float]) -> tuple[list[int], np.ndarray]:
    """Consecutive periods to simulate and the weight of the extra load in each."""
    weights = {int(p): float(w) for p, w in spike.items()} if isinstance(spike, Mapping) else \
        {int(p): 1.0 for p in spike}
    if not weights:
        raise ValueError("spike: give at least one period")
    periods = list(range(min(weights), max(weights) + 1))
    return periods, np.array([weights.get(p, 0.0) for p in periods])


def _failures(setup: SimSetup, mult: np.ndarray, period_weight: np.ndarray, **kw: Any) -> dict[tuple, str]:
    """(site index, chain, column) -> failing stage, for a run over multiplier columns (S, M)."""
    res = run_setup(setup, mult, period_weight=period_weight, detail=False, **kw)
    index = {s: i for i, s in enumerate(setup.site_ids)}
    return {(index[r.site_id], r.chain, int(r.column)): r.stage for r in res.breaches.itertuples()}


def stress_test(instance: Instance, plan: Any, *, spike: Sequence[int] | Mapping[int, float] | None = None,
                grid: int = 64, low: float = 1.0, high: float = 3.0, tolerance: float = 0.01,
                replications: int = 10, seed: int = 0, step_hours: float = 1.0,
                profile: Profile | None = None, threads: int = 1) -> pd.DataFrame:
    """The multiplier at which each open DC first breaks an SLA during a demand spike.

    Parameters
    ----------
    plan : a :class:`instances.plan.Plan` (its site_throughput, capacity, labor and open sites).
    spike : periods to scale (a sequence) or period -> weight of the extra load; default: the plan's peak
        block (:func:`peak_periods`). The consecutive range covering the spike is simulated.
    grid : multipliers evenly spaced in [low, high], simulated in one batch.
    tolerance : bisection stops when every bracket is at most this wide; ``fail_multiplier`` is the
        smallest multiplier seen to fail (so the true point lies within ``tolerance`` below it).

    Returns
    -------
    DataFrame (site_id, chain, stage, fail_multiplier, holds_at, message), one row per site and chain,
    sorted by fail_multiplier (NaN: holds up to ``high``). ``attrs["summary"]`` holds a one-line text,
    ``attrs["grid_seconds"]``, ``attrs["bisection_seconds"]`` and ``attrs["rounds"]`` the effort.
    """
    if grid < 2 or not 0 <= low < high or tolerance <= 0:
        raise ValueError("stress_test: need grid >= 2, 0 <= low < high and tolerance > 0")
    inputs = plan_inputs(plan)
    if spike is None:
        spike = peak_periods(inputs["site_throughput"], inputs["open_sites"])
    periods, weights = _spike_weights(spike)
    setup = prepare(instance, periods=periods, **inputs)
    kw = {"replications": replications, "seed": seed, "step_hours": step_hours, "profile": profile,
          "threads": threads}
    S, C = len(setup.site_ids), len(CHAIN_NAMES)
    values = np.linspace(low, high, grid)
    t = time.perf_counter()
    fails = _failures(setup, values, weights, **kw)
    grid_seconds = time.perf_counter() - t
    lo = np.full((S, C), np.nan)  # highest multiplier seen to hold
    hi = np.full((S, C), np.nan)  # lowest multiplier seen to fail
    stage = np.full((S, C), None, dtype=object)
    for s in range(S):
        for c, chain in enumerate(CHAIN_NAMES):
            failing = [m for m in range(grid) if (s, chain, m) in fails]
            if failing:
                m = failing[0]
                hi[s, c], stage[s, c] = values[m], fails[(s, chain, m)]
                lo[s, c] = values[m - 1] if m > 0 else np.nan
            else:
                lo[s, c] = high
    t = time.perf_counter()
    rounds = 0
    while True:
        open_ = ~np.isnan(lo) & ~np.isnan(hi) & (hi - lo > tolerance)
        if not open_.any():
            break
        mid = np.where(open_, (lo + hi) / 2.0, low)  # (S, C): column c tests chain c's midpoints
        fails = _failures(setup, mid, weights, **kw)
        for s, c in zip(*np.nonzero(open_)):
            key = (s, CHAIN_NAMES[c], c)
            if key in fails:
                hi[s, c], stage[s, c] = mid[s, c], fails[key]
            else:
                lo[s, c] = mid[s, c]
        rounds += 1
    rows = []
    for s, site in enumerate(setup.site_ids):
        for c, chain in enumerate(CHAIN_NAMES):
            if np.isnan(hi[s, c]):
                msg = f"{site} holds its {chain} SLA up to {high:.2f}×"
            elif np.isnan(lo[s, c]):
                msg = f"{site} fails already at {hi[s, c]:.2f}× on {STAGE_LABELS[stage[s, c]]} ({chain})"
            else:
                msg = f"{site} fails at {hi[s, c]:.2f}× on {STAGE_LABELS[stage[s, c]]} ({chain})"
            rows.append({"site_id": site, "chain": chain, "stage": stage[s, c], "fail_multiplier": hi[s, c],
                         "holds_at": lo[s, c], "message": msg})
    out = pd.DataFrame(rows, columns=list(COLUMNS)).sort_values(["fail_multiplier", "site_id"],
                                                                  na_position="last", kind="stable")
    out = out.reset_index(drop=True)
    out.attrs.update({"summary": summarize(out, high), "periods": periods, "grid_seconds": grid_seconds,
                      "bisection_seconds": time.perf_counter() - t, "rounds": rounds, "tolerance": tolerance})
    return out


def summarize(table: pd.DataFrame, high: float = 3.0) -> str:
    """One line: each site's first failure, e.g. "DC_A fails at 1.37x on pack stations; DC_B at 1.52x ..."."""
    parts = []
    first = True
    for site, g in table.groupby("site_id", sort=False):
        g = g.dropna(subset=["fail_multiplier"])
        if g.empty:
            parts.append(f"{site} holds up to {high:.2f}×")
            continue
        r = g.sort_values("fail_multiplier").iloc[0]
        verb = "fails at" if first else "at"
        parts.append(f"{site} {verb} {r.fail_multiplier:.2f}× on {STAGE_LABELS[r.stage]}")
        first = False
    return "; ".join(parts)
