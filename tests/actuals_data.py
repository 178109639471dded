"""Synthetic WMS actuals from planted parameters (efficiency per site and stage, congestion coefficient).

The true DC runs the calibration's daily model (:mod:`engine.calibration`): per site, work enters the head of
each chain (inbound dock; pick) and passes its stages the same day, each stage a queue with the effective
capacity ``e N (1 - kappa u^2)``, ``u = min(1, a_head / (e N))``. Throughput and labour hours carry 1 % noise.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from engine.calibration import effective_capacity

CHAINS = (("inbound_dock", "putaway"), ("pick", "pack", "outbound_dock"))


def generate_actuals(inst, efficiency: dict, congestion: float, days: int, seed: int, start: str = "2026-01-05",
                     sites: tuple[str, ...] = ("DC_A", "DC_B"), load: tuple[float, float] = (0.5, 1.05),
                     offered: dict | None = None, noise: float = 0.01, mtbf_hours: float | None = None,
                     mttr_hours: float = 2.0, service_cv: float = 0.0, absence: dict | None = None) -> pd.DataFrame:
    """Daily actuals (site_id, stage, date, throughput, labor_hours, backlog) of the planted DC.

    ``offered``: (site, chain index) -> daily work entering the chain's head (default: the chain's smallest
    nominal capacity x uniform ``load``: quiet days and days over capacity). ``mtbf_hours``: breakdowns, a
    Poisson number a day (operating hours / MTBF) each costing ``mttr_hours`` of the day's operating hours.
    ``service_cv``: each operating hour's capacity times a gamma factor (mean 1, this CV), as in the simulator.
    ``absence``: site -> absence probability; adds ``rostered_hours``: each day the site rostered
    ``n = round(W / (8 (1 - p)))`` shifts for its W hours worked, ``x ~ Binomial(n, p)`` stayed away, so the hours
    rostered are ``labor_hours / (1 - x / n)`` at every stage (drawn from their own random stream, so the other
    columns are those without ``absence``).
    """
    rng = np.random.default_rng(seed)
    cap = inst.stage_capacity().set_index(["site_id", "stage"])["units_per_day"]
    lab = inst.labor.set_index("site_id")
    hpd = inst.resources.set_index(["site_id", "stage"])["hours_per_day"]
    frames = []
    for site in sites:
        for ci, chain in enumerate(CHAINS):
            if offered is not None and (site, ci) in offered:
                head = np.asarray(offered[(site, ci)], dtype=float)
            else:
                head = min(cap[(site, k)] for k in chain) * rng.uniform(*load, days)
            a = head
            for stage in chain:
                nominal, e = cap[(site, stage)], efficiency.get((site, stage), 1.0)
                c = effective_capacity(nominal, e, congestion, head)
                if service_cv > 0:
                    k = 1.0 / service_cv**2
                    h = int(hpd[(site, stage)])
                    c = c * rng.gamma(k, 1.0 / k, (days, h)).mean(axis=1)
                if mtbf_hours is not None:
                    h = float(hpd[(site, stage)])
                    n_down = rng.poisson(h / mtbf_hours, days)
                    c = c * np.maximum(0.0, 1.0 - n_down * mttr_hours / h)
                y, q, backlog = np.zeros(days), np.zeros(days), 0.0
                for t in range(days):
                    y[t] = min(backlog + a[t], c[t])
                    backlog = backlog + a[t] - y[t]
                    q[t] = backlog
                hours = y / (e * lab.loc[site, f"productivity_{stage}"])
                frames.append(pd.DataFrame({
                    "site_id": site, "stage": stage, "date": pd.date_range(start, periods=days, freq="D"),
                    "throughput": y * rng.normal(1.0, noise, days),
                    "labor_hours": hours * rng.normal(1.0, noise, days), "backlog": q}))
                a = y  # the next stage of the chain gets this stage's output the same day
    out = pd.concat(frames, ignore_index=True)
    if absence:
        roster_rng = np.random.default_rng([seed, 1])
        worked = out.groupby(["site_id", "date"])["labor_hours"].sum()
        share = {}
        for (site, day), w in worked.items():
            if site in absence:
                n = max(round(w / (8.0 * (1.0 - absence[site]))), 1)
                share[(site, day)] = 1.0 - roster_rng.binomial(n, absence[site]) / n
        present = np.array([share.get((s, d), np.nan) for s, d in zip(out["site_id"], out["date"])])
        out["rostered_hours"] = out["labor_hours"] / present
    return out
