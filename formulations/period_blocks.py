"""Period aggregation: the same network over fewer, longer periods -- a relaxation of the original model.

A 52-week network-design model is 52 copies of one week's flows, labour and capacity rows, coupled only by the
site and module decisions. Summing consecutive periods into blocks (:func:`block_periods`) gives an instance
whose network-design model is the original one with every per-period row summed over each block and every
per-period variable replaced by its sum over the block:

    demand      sum_{t in B} (sum_i flow_{i,z,p,t} + unmet_{z,p,t}) = sum_{t in B} d_{z,p,t}
    capacity    sum_{t in B} throughput_{i,t} <= f u (sum_{t in B} D_t) (c open_i + m modules_i)
    labour      hours and limits per period scale with the period's days (weeks = days / 7)
    supply      sum_{t in B} in_{s,i,p,t} <= sum_{t in B} supply_{s,p,t}
    lanes       sum_{t in B} flow_{lane,t} <= |B| capacity_lane  (<= k capacity_lane, k the largest block)
    linking     sum_{t in B} flow_{i,z,p,t} <= (sum_{t in B} d_{z,p,t}) open_i

with the same per-unit costs, the same yearly fixed costs and the annualisation unchanged (``periods_per_year``
scaled with the number of periods). Every plan of the original model, its flows summed over the blocks, is a
plan of the blocked model at the same cost; so the blocked model's optimum -- and any lower bound of it, its LP
relaxation's or a MILP solver's dual bound -- is a lower bound of the original optimum. It is far smaller
(52 weeks in 13 blocks of 4: a quarter of the columns), so its MILP can be solved where the original's LP
relaxation cannot; what it loses is the peaks inside a block (capacity is checked on the block's total).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from instances.instance import Instance


def block_of(instance: Instance, size: int) -> pd.Series:
    """Block number (1-based) of each period, indexed by period: consecutive runs of ``size`` periods."""
    p = instance.periods["period"].astype(int).to_numpy()
    order = np.argsort(p, kind="stable")
    block = np.empty(len(p), dtype=np.int64)
    block[order] = np.arange(len(p)) // max(1, int(size)) + 1
    return pd.Series(block, index=pd.Index(p, name="period"), name="block")


def block_periods(instance: Instance, size: int) -> Instance:
    """The instance over blocks of ``size`` consecutive periods (the last block may be shorter); see the module
    docstring for why its network-design optimum is a lower bound of the original one. ``size`` 1: unchanged."""
    size = int(size)
    if size < 1:
        raise ValueError(f"block size must be at least 1, not {size}")
    periods = instance.periods
    if size == 1 or len(periods) <= 1:
        return instance
    block = block_of(instance, size)
    frame = periods.assign(block=block.reindex(periods["period"].astype(int)).to_numpy())
    grouped = frame.groupby("block", sort=True)
    entries = [{"period": int(b), "label": f"{g['label'].iloc[0]}..{g['label'].iloc[-1]}",
                "days": float(g["days"].sum())} for b, g in grouped]
    meta = dict(instance.meta)
    meta["periods"] = entries
    defaults = dict(meta.get("defaults") or {})
    ppy = float(instance.defaults["periods_per_year"])
    defaults["periods_per_year"] = ppy * len(entries) / len(periods)  # the annualisation factor stays the same
    meta["defaults"] = defaults
    tables: dict[str, pd.DataFrame] = {}
    for name, key in (("demand", ["zone_id", "product_id"]), ("supply", ["site_id", "product_id"])):
        t = instance.tables[name]
        value = "quantity" if name == "demand" else "capacity"
        if t.empty:
            continue
        t = t.assign(period=block.reindex(t["period"].astype(int)).to_numpy())
        tables[name] = t.groupby([*key, "period"], as_index=False, sort=True)[value].sum()
    lanes = instance.tables["lanes"]
    if "capacity" in lanes and lanes["capacity"].notna().any():
        k = int(block.value_counts().max())
        tables["lanes"] = lanes.assign(capacity=lanes["capacity"] * k)
    out = instance.replace(meta=meta, **tables)
    return out


def block_size_for(n_periods: int, arcs_per_period: int, most_arcs: int) -> int:
    """The smallest block size whose blocked model has at most ``most_arcs`` arcs (1 = no blocking)."""
    if n_periods <= 1 or arcs_per_period <= 0:
        return 1
    blocks = max(1, min(n_periods, most_arcs // max(1, arcs_per_period)))
    return max(1, math.ceil(n_periods / blocks))
