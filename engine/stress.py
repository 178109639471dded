"""Stress test: the demand multiplier at which each DC first breaks its SLA, on which stage, with a confidence
interval.

A multiplier m scales the spike periods' volumes by ``1 + (m - 1) * weight`` (weight 1 for a plain spike). The
simulator uses common random numbers across multipliers, so for one replication failure is monotone in m and
its failure point is well defined: a coarse grid brackets it and bisection narrows every bracket of every site,
chain and replication at once to ``tolerance`` (each round is one batched run in which every site and
replication gets its own multiplier). The failure point of a site and chain is the mean of its replications'
points with a Student-t interval; replications are added in independent batches until the half-width is at
most ``target_half_width`` (or a cap). The plan's weeks before the spike are simulated first at m = 1 (carry-in):
the spike starts from the backlog they leave; SLA breaches are judged in the spike window only.

Result: one row per site and chain, e.g. "DC_A fails at 1.37x (±0.02) on pack stations".
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from engine.simulator import CHAIN_NAMES, STAGES_SIM, Profile, SimSetup, plan_inputs, prepare, run_setup
from instances.instance import Instance

STAGE_LABELS: dict[str, str] = {"inbound_dock": "inbound doors", "putaway": "putaway", "pick": "pick stations",
                                "pack": "pack stations", "outbound_dock": "outbound doors"}
COLUMNS = ("site_id", "chain", "stage", "fail_multiplier", "holds_at", "message")
CI_COLUMNS = ("ci_low", "ci_high", "half_width", "replications", "share_failing")


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


def _batch_seed(seed: int, batch: int) -> int:
    """Seed of replication batch ``batch`` (batch 0: ``seed`` itself; later batches: independent streams)."""
    return int(seed) if batch == 0 else zlib.crc32(f"stress/{seed}/{batch}".encode()) & 0x7FFFFFFF


def _replication_points(setup: SimSetup, weights: np.ndarray, values: np.ndarray, *, low: float, high: float,
                        tolerance: float, replications: int, seed: int, judge_from: int, **kw: Any
                        ) -> tuple[np.ndarray, ...]:
    """Failure bracket of every site, chain and replication of one batch: grid, then bisection.

    Returns ``lo`` (highest multiplier seen to hold; NaN: fails already at ``low``), ``hi`` (lowest seen to fail;
    NaN: holds up to ``high``), ``stage`` (stage index blamed at the failing multiplier, -1 none), each
    (S, C, R), and the number of bisection rounds. Replication r keeps its noise under every multiplier (common
    random numbers), so its failure is monotone in the multiplier and the bracket is well defined.
    """
    S, C, R, G = len(setup.site_ids), len(CHAIN_NAMES), replications, len(values)

    def run(mult: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        res = run_setup(setup, mult, period_weight=weights, detail=False, replications=R, seed=seed,
                        judge_from_period=judge_from, **kw)
        return res.replication_breaches

    rb = run(np.broadcast_to(values[None, :, None], (S, G, R)).copy())
    lo, hi = np.full((S, C, R), np.nan), np.full((S, C, R), np.nan)
    stage = np.full((S, C, R), -1)
    for c, chain in enumerate(CHAIN_NAMES):
        first, blamed = rb[chain]  # (S, G, R)
        fails = first >= 0
        anyf = fails.any(axis=1)
        g = fails.argmax(axis=1)  # first failing grid point
        hi[:, c] = np.where(anyf, values[g], np.nan)
        lo[:, c] = np.where(anyf, np.where(g > 0, values[np.maximum(g - 1, 0)], np.nan), high)
        stage[:, c] = np.where(anyf, np.take_along_axis(blamed, g[:, None, :], axis=1)[:, 0], -1)
    rounds = 0
    while True:
        open_ = ~np.isnan(lo) & ~np.isnan(hi) & (hi - lo > tolerance)
        if not open_.any():
            break
        mid = np.where(open_, (lo + hi) / 2.0, low)  # (S, C, R): column c tests chain c's midpoints
        rb = run(mid)
        for c, chain in enumerate(CHAIN_NAMES):
            first, blamed = rb[chain]
            f = first[:, c] >= 0
            o = open_[:, c]
            hi[:, c] = np.where(o & f, mid[:, c], hi[:, c])
            stage[:, c] = np.where(o & f, blamed[:, c], stage[:, c])
            lo[:, c] = np.where(o & ~f, mid[:, c], lo[:, c])
        rounds += 1
    return lo, hi, stage, rounds


def _interval(points: np.ndarray, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean and Student-t half-width over the last axis (NaN-free input); half-width 0 with one point."""
    n = points.shape[-1]
    mean = points.mean(axis=-1)
    if n < 2:
        return mean, np.zeros_like(mean)
    sd = points.std(axis=-1, ddof=1)
    return mean, stats.t.ppf(0.5 + confidence / 2.0, n - 1) * sd / np.sqrt(n)


def stress_test(instance: Instance, plan: Any, *, spike: Sequence[int] | Mapping[int, float] | None = None,
                grid: int = 3, low: float = 1.0, high: float = 3.0, tolerance: float = 0.01,
                replications: int = 10, seed: int = 0, step_hours: float = 1.0,
                profile: Profile | None = None, threads: int = 1, target_half_width: float = 0.02,
                max_replications: int = 320, confidence: float = 0.95, carry_in: bool = True,
                warmup_days: float | None = 28.0) -> pd.DataFrame:
    """The multiplier at which each open DC first breaks an SLA during a demand spike, with a confidence interval.

    Each replication has its own failure point (the smallest multiplier at which it has units overdue in the
    spike window, found to ``tolerance`` by a grid and bisection over common random numbers); the failure
    point of a site and chain is their mean, with a Student-t interval at ``confidence``. Replications are
    added in batches (new independent streams) until every interval's half-width is at most
    ``target_half_width`` or ``max_replications`` is reached (``attrs["target_met"]`` says which).

    Parameters
    ----------
    plan : a :class:`instances.plan.Plan` (its site_throughput, capacity, labor and open sites).
    spike : periods to scale (a sequence) or period -> weight of the extra load; default: the plan's peak
        block (:func:`peak_periods`). The consecutive range covering the spike is judged.
    carry_in : simulate the plan's periods before the spike at multiplier 1 first, so the spike window starts
        from the backlog (and stock) those weeks leave; breaches are judged in the spike window only.
    warmup_days : how far back the carry-in starts: the preceding periods that end within this many days before
        the spike (at least one; None: from the plan's first period).
    grid : multipliers evenly spaced in [low, high] bracketing every replication's failure before bisection.
    tolerance : bisection stops when every replication's bracket is at most this wide.
    replications : the first batch; the next batch brings the total to the estimate the target needs.

    Returns
    -------
    DataFrame, one row per site and chain sorted by fail_multiplier (NaN: most replications hold up to
    ``high``): site_id, chain, stage (most often blamed), fail_multiplier (mean over replications of the
    smallest multiplier seen to fail), holds_at (mean of the largest seen to hold), message, ci_low, ci_high,
    half_width, replications, share_failing (replications failing within [low, high]). Replications holding up
    to ``high`` count at ``high``, those failing already at ``low`` at ``low``. ``attrs``: ``summary``,
    ``periods`` (spike), ``simulated_periods``, ``rounds``, ``batches``, ``replications``, ``target_met``,
    ``grid_seconds``, ``bisection_seconds``, ``replication_points`` (one row per site, chain and replication:
    batch, seed, replication, holds_at, fail_at, stage).
    """
    if grid < 2 or not 0 <= low < high or tolerance <= 0:
        raise ValueError("stress_test: need grid >= 2, 0 <= low < high and tolerance > 0")
    if replications < 1 or max_replications < replications or not 0 < confidence < 1 or target_half_width <= 0:
        raise ValueError("stress_test: need 1 <= replications <= max_replications, 0 < confidence < 1 and "
                         "target_half_width > 0")
    profile = profile or Profile()
    inputs = plan_inputs(plan)
    if spike is None:
        spike = peak_periods(inputs["site_throughput"], inputs["open_sites"])
    periods, weights = _spike_weights(spike)
    judged = list(periods)
    if carry_in:
        planned = pd.to_numeric(inputs["site_throughput"]["period"]).astype(int)
        known = set(instance.periods["period"].astype(int))
        first = min([p for p in planned.unique() if p in known] + [periods[0]])
        if warmup_days is not None:
            per = instance.periods.set_index("period")["days"]
            back, days = periods[0], 0.0
            while back - 1 >= first and (back == periods[0] or days + float(per[back - 1]) <= warmup_days):
                back -= 1
                days += float(per[back])
            first = back
        warm = list(range(first, periods[0]))
        periods, weights = warm + periods, np.concatenate([np.zeros(len(warm)), weights])
    setup = prepare(instance, periods=periods, **inputs)
    kw = {"step_hours": step_hours, "profile": profile, "threads": threads}
    values = np.linspace(low, high, grid)
    t = time.perf_counter()
    parts, rows_rep = [], []
    total_rounds, batch, n = 0, 0, 0
    batch_size = replications
    deterministic = profile.noise == "deterministic"
    while True:
        bseed = _batch_seed(seed, batch)
        lo, hi, stage, rounds = _replication_points(setup, weights, values, low=low, high=high,
                                                    tolerance=tolerance, replications=batch_size, seed=bseed,
                                                    judge_from=judged[0], **kw)
        parts.append((lo, hi, stage))
        for s, site in enumerate(setup.site_ids):
            for c, chain in enumerate(CHAIN_NAMES):
                for r in range(batch_size):
                    rows_rep.append({"site_id": site, "chain": chain, "batch": batch, "seed": bseed, "replication": r,
                                     "holds_at": lo[s, c, r], "fail_at": hi[s, c, r],
                                     "stage": STAGES_SIM[stage[s, c, r]] if stage[s, c, r] >= 0 else None})
        total_rounds += rounds
        n += batch_size
        batch += 1
        hi_all = np.concatenate([p[1] for p in parts], axis=-1)
        point = np.where(np.isnan(hi_all), high, hi_all)
        mean, half = _interval(point, confidence)
        failing = ~np.isnan(hi_all)
        judged_pairs = failing.mean(axis=-1) > 0.5
        worst = float(half[judged_pairs].max(initial=0.0))
        if deterministic or worst <= target_half_width or n >= max_replications:
            break
        sd = point.std(axis=-1, ddof=1)[judged_pairs].max() if n > 1 else np.inf
        z = stats.t.ppf(0.5 + confidence / 2.0, max(n - 1, 1))
        needed = int(np.ceil(1.15 * (z * sd / target_half_width) ** 2)) if np.isfinite(sd) else 2 * n
        batch_size = int(min(max_replications - n, max(needed - n, replications)))
    seconds = time.perf_counter() - t
    lo_all = np.concatenate([p[0] for p in parts], axis=-1)
    stage_all = np.concatenate([p[2] for p in parts], axis=-1)
    holds = np.where(np.isnan(lo_all), low, lo_all).mean(axis=-1)
    rows = []
    for s, site in enumerate(setup.site_ids):
        for c, chain in enumerate(CHAIN_NAMES):
            share = float(failing[s, c].mean())
            blamed = stage_all[s, c][stage_all[s, c] >= 0]
            st = STAGES_SIM[int(np.bincount(blamed).argmax())] if len(blamed) else None
            already = bool(np.isnan(lo_all[s, c]).mean() > 0.5)
            if share <= 0.5:
                fm, lo_m, cl, ch, hw = np.nan, high, np.nan, np.nan, np.nan
                msg = f"{site} holds its {chain} SLA up to {high:.2f}×"
            else:
                fm, lo_m, hw = float(mean[s, c]), float(holds[s, c]), float(half[s, c])
                cl, ch = fm - hw, fm + hw
                verb = "fails already at" if already else "fails at"
                msg = f"{site} {verb} {fm:.2f}× (±{hw:.2f}) on {STAGE_LABELS.get(st, st)} ({chain})"
            rows.append({"site_id": site, "chain": chain, "stage": st, "fail_multiplier": fm, "holds_at": lo_m,
                         "message": msg, "ci_low": cl, "ci_high": ch, "half_width": hw, "replications": n,
                         "share_failing": share})
    out = pd.DataFrame(rows, columns=[*COLUMNS, *CI_COLUMNS]).sort_values(["fail_multiplier", "site_id"],
                                                                           na_position="last", kind="stable")
    out = out.reset_index(drop=True)
    out.attrs.update({"summary": summarize(out, high), "periods": judged, "simulated_periods": periods,
                      "grid_seconds": seconds, "bisection_seconds": 0.0, "rounds": total_rounds, "batches": batch,
                      "replications": n, "target_met": bool(deterministic or worst <= target_half_width),
                      "max_half_width": worst, "tolerance": tolerance, "confidence": confidence,
                      "replication_points": pd.DataFrame(rows_rep)})
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
