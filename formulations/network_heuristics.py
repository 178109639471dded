"""Primal heuristics and valid inequalities for the network design model (:mod:`formulations.network_design`).

Everything here works on the model's index sets (a :class:`~formulations.network_design.NetworkDesignContext`)
and returns site decisions or constraint rows; the plans themselves are always evaluated by the model
(sites fixed, the rest solved as an LP), so a heuristic can make a plan bad but never wrong.

Aggregate capacity (Görtz & Klose 2012, the CFLP's "total capacity" row), per period t::

    sum_i cap_{i,t} open_i + sum_{i,s*(i)} m_{i,s*} u_{i,s*} D_t modules_{i,s*} + sum_{z,p} unmet_{z,p,t}
        >= sum_{z,p} d_{z,p,t}

with cap_{i,t} = the capacity of site i's tightest stage s*(i) (min over its limited stages of
f u D_t c, or the demand the site can reach at all when no stage limits it). Valid: every unit of demand
is served from an open site or unmet, and a site's throughput is at most the capacity of any one of its
stages. Implied by the strong LP when only the stage rows limit the sites, it still gives the MILP solver a
knapsack row over the open variables to derive cover cuts from.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from formulations.common import codes, derate_series

NetworkDesignContext = Any
"""A :class:`formulations.network_design.NetworkDesignContext` (not imported: that module imports this one)."""


def period_demand(ctx: NetworkDesignContext) -> np.ndarray:
    """Total model demand per period (units), aligned with ``ctx.periods``."""
    d = ctx.demand.groupby("period")["quantity"].sum()
    return d.reindex(ctx.periods).fillna(0.0).to_numpy(dtype=float)


def tightest_stage(ctx: NetworkDesignContext) -> pd.DataFrame:
    """Per site with limited stages: the stage with the least base capacity per day (after derating).

    Columns ``site_id, stage, per_count_day`` (units per resource unit and day, derated), ``base_count``,
    ``module_size``.
    """
    r = ctx.rates.reset_index(drop=True)
    if r.empty:
        return r.assign(per_count_day=[])
    f = derate_series(ctx.options.capacity_derate, r)
    r = r.assign(per_count_day=f * r["units_per_count_day"].to_numpy(dtype=float))
    r = r.assign(per_day=r["per_count_day"] * r["base_count"].to_numpy(dtype=float))
    return r.sort_values(["site_id", "per_day", "stage"]).drop_duplicates("site_id")[
        ["site_id", "stage", "per_count_day", "base_count", "module_size"]].reset_index(drop=True)


def site_capacity(ctx: NetworkDesignContext) -> np.ndarray:
    """Base capacity (no modules) per site and period, shape (sites, periods), units per period.

    A site's capacity is that of its tightest stage; a site without limited stages can ship at most the
    demand of the zones it has lanes to.
    """
    days = ctx.days.reindex(ctx.periods).to_numpy(dtype=float)
    reach = reachable_demand(ctx)
    cap = reach.copy()
    t = tightest_stage(ctx)
    if len(t):
        pos = codes(t["site_id"].to_numpy(), ctx.sites)
        ok = pos >= 0
        per_day = (t["per_count_day"] * t["base_count"]).to_numpy(dtype=float)[ok]
        cap[pos[ok]] = np.minimum(per_day[:, None] * days[None, :], reach[pos[ok]])
    return cap


def module_capacity(ctx: NetworkDesignContext) -> np.ndarray:
    """Capacity one module adds per expandable row of ``ctx.expandable`` and period (0 where the module's stage
    is not the site's tightest one), shape (expandable, periods)."""
    e = ctx.expandable
    days = ctx.days.reindex(ctx.periods).to_numpy(dtype=float)
    out = np.zeros((len(e), len(ctx.periods)))
    t = tightest_stage(ctx)
    if e.empty or t.empty:
        return out
    key = pd.MultiIndex.from_frame(t[["site_id", "stage"]])
    pos = key.get_indexer(pd.MultiIndex.from_frame(e[["site_id", "stage"]]))
    hit = pos >= 0
    per = np.zeros(len(e))
    per[hit] = (t["per_count_day"].to_numpy(dtype=float)[pos[hit]]
                * e["module_size"].to_numpy(dtype=float)[hit])
    out[:] = per[:, None] * days[None, :]
    return out


def reachable_demand(ctx: NetworkDesignContext) -> np.ndarray:
    """Per site and period: the demand of all zones (and products) the site has an outbound arc to."""
    f = ctx.outbound.frame
    out = np.zeros((len(ctx.sites), len(ctx.periods)))
    if f.empty:
        return out
    si = codes(f["origin_id"].to_numpy(), ctx.sites)
    ti = codes(f["period"].to_numpy(), ctx.periods)
    np.add.at(out, (si, ti), f["bound"].to_numpy(dtype=float))
    return out


def cover_demand(is_open: np.ndarray, order: np.ndarray, capacity: np.ndarray, demand: np.ndarray,
                 can_open: np.ndarray | None = None) -> np.ndarray:
    """Open further sites, in ``order``, until the open capacity covers the demand of every period.

    ``capacity`` (sites, periods), ``demand`` (periods,). Sites that cannot open (``can_open`` False) are
    skipped. Returns the new open mask (unchanged when already covered; as far as it gets otherwise).
    """
    is_open = np.asarray(is_open, dtype=bool).copy()
    allowed = np.ones(len(is_open), dtype=bool) if can_open is None else np.asarray(can_open, dtype=bool)
    short = demand - capacity[is_open].sum(axis=0)
    for i in order:
        if (short <= 1e-9 * max(1.0, float(demand.max(initial=0.0)))).all():
            break
        if is_open[i] or not allowed[i]:
            continue
        is_open[i] = True
        short = short - capacity[i]
    return is_open


def forced_masks(ctx: NetworkDesignContext) -> tuple[np.ndarray, np.ndarray]:
    """(forced open, forced closed) masks over ``ctx.sites``."""
    fo = np.zeros(len(ctx.sites), dtype=bool)
    fc = np.zeros(len(ctx.sites), dtype=bool)
    if len(ctx.options.force_open):
        fo[codes(np.asarray(ctx.options.force_open, dtype=object), ctx.sites)] = True
    if len(ctx.options.force_closed):
        fc[codes(np.asarray(ctx.options.force_closed, dtype=object), ctx.sites)] = True
    return fo, fc


def greedy_sites(ctx: NetworkDesignContext) -> np.ndarray:
    """A first network before any optimisation: today's sites (existing and forced open), plus, when their
    capacity falls short of the demand of some period, candidates by ascending fixed cost per unit of capacity.
    """
    fo, fc = forced_masks(ctx)
    existing = (ctx.dcs["status"] == "existing").to_numpy()
    is_open = (existing | fo) & ~fc
    cap = site_capacity(ctx)
    fixed = ctx.dcs["fixed_cost_per_year"].to_numpy(dtype=float) + ctx.one_off * np.where(
        ctx.dcs["status"] == "candidate", ctx.dcs["opening_cost"].to_numpy(dtype=float), 0.0)
    per_unit = fixed / np.maximum(cap.sum(axis=1), 1e-9)
    order = np.argsort(per_unit, kind="stable")
    return cover_demand(is_open, order, cap, period_demand(ctx), can_open=~fc)


def round_sites(ctx: NetworkDesignContext, open_lp: np.ndarray, cover: bool = True,
                demand: np.ndarray | None = None) -> np.ndarray:
    """LP-guided rounding: open the sites with LP value >= 0.5; with ``cover``, then open further sites in
    descending LP value (ties: cheaper per unit of capacity first) until the capacity covers every period's
    ``demand`` (default: all of it; the aggregate capacity inequality, met by the rounded sites)."""
    fo, fc = forced_masks(ctx)
    is_open = ((open_lp >= 0.5) | fo) & ~fc
    if not cover:
        return is_open
    cap = site_capacity(ctx)
    fixed = ctx.dcs["fixed_cost_per_year"].to_numpy(dtype=float)
    per_unit = fixed / np.maximum(cap.sum(axis=1), 1e-9)
    order = np.lexsort((per_unit, -np.round(open_lp, 9)))
    return cover_demand(is_open, order, cap, period_demand(ctx) if demand is None else demand, can_open=~fc)


def neighbour_moves(is_open: np.ndarray, score: np.ndarray, capacity: np.ndarray, demand: np.ndarray,
                    can_open: np.ndarray, can_close: np.ndarray, width: int = 4) -> list[np.ndarray]:
    """Close, swap and open moves around ``is_open``, most promising first, for a local search evaluated by LP.

    ``score`` ranks sites (lower = more attractive, e.g. Lagrangian cost per unit of capacity): the ``width``
    least attractive open sites are tried closed, and swapped with the ``width`` most attractive closed ones;
    then those are tried opened. Close and swap moves that leave the open capacity short of some period's
    demand are left out (``capacity`` (sites, periods), ``demand`` (periods,)).
    """
    is_open = np.asarray(is_open, dtype=bool)
    order = np.argsort(score, kind="stable")
    closable = [i for i in order[::-1] if is_open[i] and can_close[i]][:width]
    openable = [i for i in order if not is_open[i] and can_open[i]][:width]
    have = capacity[is_open].sum(axis=0)
    tol = 1e-9 * max(1.0, float(np.max(demand, initial=0.0)))

    def covers(c: np.ndarray) -> bool:
        return bool((c >= demand - tol).all())

    moves = []
    for a in closable:
        if covers(have - capacity[a]):
            m = is_open.copy()
            m[a] = False
            moves.append(m)
    for a in closable:
        for b in openable:
            if covers(have - capacity[a] + capacity[b]):
                m = is_open.copy()
                m[a], m[b] = False, True
                moves.append(m)
    for b in openable:
        m = is_open.copy()
        m[b] = True
        moves.append(m)
    return moves
