"""Lagrangian relaxation of the full network design model: products, ports, labour and expansion modules.

The facility-location relaxation (:mod:`formulations.lagrangian`) needs one product and no source->DC legs. The
production model has both (the median network: 28 products, 16 ports with product-specific supply, 296 DCs with
labour limits and expansion modules, 52 weeks). With multipliers u_k on the demand rows
``sum_i out_{i,k} + unmet_k = d_k`` (k = zone, product, period) and mu_r >= 0 on the supply rows
``sum_i in_{s,i,p,t} <= S_r`` (r = source, product, period), the model falls apart by DC::

    L(u, mu) = sum_k u_k d_k + sum_k d_k min(0, pi - u_k) - sum_r mu_r S_r + C
             + min { sum_i v_i(u, mu) y_i : y in {0,1}^I, fixings, aggregate capacity (demand must be met) }
    v_i = F_i + min_m { K_i(m) + sum_t g_{i,t}(cap_{i,t}(m)) }
    g_{i,t}(c) = min  sum_{(z,p)} (a_{i,z} + b_{i,p,t} - u_{z,p,t}) x_{z,p}  +  A (w_i R + w'_i O)
                 s.t. 0 <= x_{z,p} <= d_{z,p,t},  q = sum x <= c,  h_i q <= R + O,  R <= H_{i,t},  O <= O_{i,t}

with a_{i,z} = A (transport + handling) of the lane i -> z, b_{i,p,t} = min over sources s offering p in t with a
lane to i of (A c_{s,i} + mu_{s,p,t}) (product p cannot reach i when there is none), m the site's expansion
modules (each combination, K its annual cost, cap its tightest stage's capacity) and the labour hours bought at the
regular rate up to the headcount, then at the overtime rate. Each inner problem is a continuous knapsack with a
convex piecewise-linear cost of the throughput q: items sorted by reduced cost, each taken while its reduced cost
plus the marginal labour cost is negative (greedy is exact). With y_i binary this bound equals the LP relaxation
of the per-product model with the modules kept integer; it costs a sort of the arcs per iteration instead of an LP
with a million columns, and it prices each DC (v_i) for the primal heuristics and Lagrangian fixing of
:func:`formulations.lagrangian.subgradient`, which drives it (Polyak steps, fixing, probing).

Applies (:func:`applies`) without lane capacities, service constraint, capex budget, open-count limits or single
sourcing (those rows would couple the DCs). L(u, mu) <= optimum for every u, mu >= 0 (weak duality; validity
checked against the per-product LP and brute force in ``tests/test_network_lagrangian.py``).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd

from formulations import lagrangian
from formulations import network_heuristics as nh
from formulations.common import codes, derate_series
from formulations.lagrangian import FacilityLocation

NetworkDesignContext = Any
"""A :class:`formulations.network_design.NetworkDesignContext` (not imported: that module imports this one)."""

OVERSHOOT = 0.5
"""The subgradient's Polyak step aims at least this share above the best bound (:func:`formulations.lagrangian.
subgradient`): the median network's bound after 120 s is 0.990 G this way, 0.970 G aiming at a plan near the
optimum (its LP relaxation: 0.993 G)."""

MAX_LEVELS = 64
"""Most module combinations priced per site (beyond, the site is priced at its largest combination's capacity
without the modules' cost: a relaxation, still a valid bound)."""


def applies(ctx: NetworkDesignContext) -> tuple[bool, str]:
    """Whether the network relaxation applies to ``ctx``; and why not."""
    opt = ctx.options
    checks = [
        (len(ctx.outbound) > 0, "no outbound arcs"),
        (not _has_capacity(ctx.outbound.frame) and not _has_capacity(ctx.inbound.frame), "lanes have capacities"),
        (ctx.service_share <= 0, "the model has a service constraint"),
        (not opt.single_source, "single sourcing"),
        (opt.capex_budget is None and opt.min_open is None and opt.max_open is None,
         "budget or open-count limits"),
        (opt.fixed_modules is None, "modules fixed"),
    ]
    for ok, why in checks:
        if not ok:
            return False, why
    return True, "network shape (products, sources, labour, modules)"


def relaxation(ctx: NetworkDesignContext) -> FacilityLocation:
    """The Lagrangian relaxation for ``ctx``: :class:`~formulations.lagrangian.FacilityLocation` on the
    facility-location shape (:func:`formulations.lagrangian.applies`), else :class:`NetworkRelaxation`."""
    return FacilityLocation(ctx) if lagrangian.applies(ctx)[0] else NetworkRelaxation(ctx)


def _has_capacity(f: pd.DataFrame) -> bool:
    return "capacity" in f and bool(f["capacity"].notna().any())


class NetworkRelaxation(FacilityLocation):
    """The relaxation's data in arrays (see the module docstring), built once from the model context.

    Multipliers are one vector: the demand rows' u (``n_cust``) followed by the supply rows' mu (``n_supply``).
    """

    def __init__(self, ctx: NetworkDesignContext) -> None:  # noqa: PLR0915 - one pass over the model's data
        f = ctx.outbound.frame
        n_t, n_p = len(ctx.periods), len(ctx.products)
        self.n_sites = len(ctx.sites)
        self.n_t = n_t
        self.demand, cust, cost, site, period = lagrangian.outbound_items(ctx)
        self.n_cust = len(self.demand)
        prod = codes(f["product_id"].to_numpy(), ctx.products)
        # where a product reaches a DC: (site, product, period) keys of the inbound legs
        key_of = (site * n_p + prod) * n_t + period
        inb = ctx.inbound.frame
        self.has_inbound = len(inb) > 0
        if self.has_inbound:
            in_site = codes(inb["destination_id"].to_numpy(), ctx.sites)
            in_key = (in_site * n_p + codes(inb["product_id"].to_numpy(), ctx.products)) * n_t \
                + codes(inb["period"].to_numpy(), ctx.periods)
            sup = ctx.supply.reset_index(drop=True)
            row = np.full(len(inb), -1, dtype=np.int64)
            if len(sup):
                sk = pd.MultiIndex.from_frame(sup[["site_id", "product_id", "period"]].astype(
                    {"site_id": str, "product_id": str, "period": int}))
                row = sk.get_indexer(pd.MultiIndex.from_arrays(
                    [inb["origin_id"].astype(str), inb["product_id"].astype(str), inb["period"].astype(int)]))
            self.supply = sup["capacity"].to_numpy(dtype=float) if len(sup) else np.zeros(0)
            reach = np.isin(key_of, in_key)
            keys_used, self.item_key = np.unique(key_of[reach], return_inverse=True)
            pos = np.searchsorted(keys_used, in_key)
            ok = (pos < len(keys_used)) & (keys_used[np.minimum(pos, len(keys_used) - 1)] == in_key)
            self.in_key = pos[ok]
            self.in_cost = ctx.annual * inb["cost_per_unit"].to_numpy(dtype=float)[ok]
            self.in_row = row[ok]
            self.n_keys = len(keys_used)
            cust, cost, site, period = cust[reach], cost[reach], site[reach], period[reach]
        else:
            self.supply = np.zeros(0)
            self.item_key = np.zeros(len(cust), dtype=np.int64)
            self.n_keys = 0
        self.n_supply = len(self.supply)
        self.cust, self.cost, self.site = cust, cost, site
        self.group = site * n_t + period
        self.n_groups = self.n_sites * n_t
        self.item_dq = self.demand[cust]
        # labour: cost per unit at the regular and the overtime rate, the throughput each buys per period
        self.a1 = np.zeros(self.n_sites)
        self.a2 = np.zeros(self.n_sites)
        q1 = np.full((self.n_sites, n_t), np.inf)
        q2 = np.full((self.n_sites, n_t), np.inf)
        lab = ctx.labor.drop_duplicates("site_id") if len(ctx.labor) else ctx.labor
        if len(lab):
            pos = codes(lab["site_id"].astype(str).to_numpy(), ctx.sites)
            ok = pos >= 0
            lab, pos = lab[ok], pos[ok]
            h = lab["hours_per_unit"].to_numpy(dtype=float)
            self.a1[pos] = ctx.annual * lab["hourly_rate"].to_numpy(dtype=float) * h
            self.a2[pos] = ctx.annual * lab["overtime_rate"].to_numpy(dtype=float) * h
            weeks = ctx.days.reindex(ctx.periods).to_numpy(dtype=float) / 7.0
            reg = (lab["max_headcount"] * lab["hours_per_person_week"]).to_numpy(dtype=float)
            ot = lab["max_overtime_hours"].to_numpy(dtype=float)
            q1[pos] = (reg / h)[:, None] * weeks[None, :]
            q2[pos] = ((reg + ot) / h)[:, None] * weeks[None, :]
        self.q1, self.q2 = q1.reshape(-1), q2.reshape(-1)
        # stage capacity by module combination: levels per site (capacity per period, annual cost)
        base = nh.site_capacity(ctx)  # tightest stage without modules, capped by the reachable demand
        self.levels = self._module_levels(ctx, base)
        self.group_cap = base.reshape(-1)
        self.period_cap = np.minimum(self.max_cap, q2)  # most throughput per site and period: stages and labour
        self.site_cap = self.period_cap.sum(axis=1)
        self._site_terms(ctx)

    def _module_levels(self, ctx: NetworkDesignContext, base: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per site whose modules can raise its capacity: (capacities per level and period, annual cost per level)
        over every combination of its modules (level 0 = none), dominated levels dropped. ``self.max_cap``: the
        largest capacity per site and period (the aggregate capacity row's coefficient)."""
        self.max_cap = base.copy()
        r = ctx.rates.reset_index(drop=True)
        out: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if r.empty:
            return out
        r = r.assign(per_count_day=derate_series(ctx.options.capacity_derate, r)
                     * r["units_per_count_day"].to_numpy(dtype=float))
        exp = r[(r["max_modules"] > 0) & (r["module_size"] > 0)]
        if exp.empty:
            return out
        days = ctx.days.reindex(ctx.periods).to_numpy(dtype=float)
        reach = nh.reachable_demand(ctx)
        for sid, rows in r[r["site_id"].isin(set(exp["site_id"]))].groupby("site_id", sort=False):
            i = int(codes(np.array([sid], dtype=object), ctx.sites)[0])
            if i < 0:
                continue
            stages = rows.reset_index(drop=True)
            counts = [range(int(m) + 1) if (m > 0 and s > 0) else range(1)
                      for m, s in zip(stages["max_modules"].fillna(0), stages["module_size"].fillna(0))]
            combos = list(itertools.product(*counts))
            annual = (stages["capex"].fillna(0).to_numpy(dtype=float) * ctx.crf
                      + stages["opex_per_year"].fillna(0).to_numpy(dtype=float))
            per_day = stages["per_count_day"].to_numpy(dtype=float)
            cnt = stages["base_count"].to_numpy(dtype=float)
            size = stages["module_size"].fillna(0).to_numpy(dtype=float)
            caps, costs = [], []
            priced = len(combos) <= MAX_LEVELS
            for m in combos if priced else [(0,) * len(counts), tuple(c[-1] for c in counts)]:
                m = np.asarray(m, dtype=float)
                per = float(np.min(per_day * (cnt + m * size)))
                caps.append(np.minimum(per * days, reach[i]))
                costs.append(float(annual @ m) if priced else 0.0)
            caps_a, costs_a = np.array(caps), np.array(costs)
            order = np.lexsort((-caps_a.sum(axis=1), costs_a))
            keep, best = [], -np.inf
            for k in order:  # cheapest first; keep a level only if it adds capacity
                if caps_a[k].sum() > best + 1e-9:
                    keep.append(k)
                    best = caps_a[k].sum()
            self.max_cap[i] = caps_a.max(axis=0)
            if len(keep) > 1:
                out[i] = (caps_a[keep], costs_a[keep])
        return out

    def initial(self) -> np.ndarray:
        """Start multipliers, mu = 0 and u: the unmet penalty when unmet demand is allowed (every DC then looks as
        good as it can: on the median network the bound after 100 iterations is 0.97 G from there, 0.92 G from the
        cheapest delivered cost), else each customer's cheapest delivered unit cost (inbound at mu = 0)."""
        if self.penalty is not None:
            return self.project(np.concatenate([np.where(self.demand > 0, self.penalty, 0.0),
                                                np.zeros(self.n_supply)]))
        u = np.full(self.n_cust, np.inf)
        np.minimum.at(u, self.cust, self.cost + self._inbound_cost(np.zeros(self.n_supply))[0][self.item_key]
                      if self.has_inbound else self.cost)
        u = np.where(np.isfinite(u), u, 0.0)
        return self.project(np.concatenate([u, np.zeros(self.n_supply)]))

    def project(self, mult: np.ndarray) -> np.ndarray:
        """Onto the multipliers' domain: u <= penalty (unmet allowed), mu >= 0."""
        mult = mult.copy()
        if self.penalty is not None:
            np.minimum(mult[:self.n_cust], self.penalty, out=mult[:self.n_cust])
        np.maximum(mult[self.n_cust:], 0.0, out=mult[self.n_cust:])
        return mult

    def _inbound_cost(self, mu: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """b per (site, product, period) key: the cheapest source's A c + mu; and that source's supply row."""
        val = self.in_cost + (np.where(self.in_row >= 0, mu[np.maximum(self.in_row, 0)], 0.0) if len(mu) else 0.0)
        order = np.lexsort((val, self.in_key))
        first = np.r_[True, np.diff(self.in_key[order]) != 0]
        pick = order[first]
        b = np.full(self.n_keys, np.inf)
        b[self.in_key[pick]] = val[pick]
        row = np.full(self.n_keys, -1, dtype=np.int64)
        row[self.in_key[pick]] = self.in_row[pick]
        return b, row

    def _knapsacks(self, rc: np.ndarray, order: np.ndarray, before: np.ndarray, cap: np.ndarray,
                   gsel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flows of the sorted items ``order`` (with the demand ``before`` them in their group) under group
        capacities ``cap``, and the knapsack value per group of ``gsel`` (labour included)."""
        g = self.group[order]
        site = g // self.n_t
        r = rc[order]
        lim = np.where(r < -self.a2[site], np.minimum(cap[g], self.q2[g]), np.minimum(cap[g], self.q1[g]))
        x = np.clip(lim - before, 0.0, self.item_dq[order])
        n = self.n_groups
        q = np.bincount(g, weights=x, minlength=n)
        labour = self.a1[gsel // self.n_t] * np.minimum(q[gsel], self.q1[gsel]) \
            + self.a2[gsel // self.n_t] * np.maximum(q[gsel] - self.q1[gsel], 0.0)
        val = np.bincount(g, weights=x * r, minlength=n)[gsel] + labour
        return x, val

    def site_values(self, u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The constant part of L, v(u, mu), and the inner knapsacks' solution (sorted arcs, their flows, the
        demand left unmet)."""
        lam, mu = u[:self.n_cust], u[self.n_cust:]
        rc = self.cost - lam[self.cust]
        if self.has_inbound:
            b, self._in_row = self._inbound_cost(mu)
            rc = rc + b[self.item_key]
        idx = np.flatnonzero(rc < -self.a1[self.site])
        by_rc = idx[np.argsort(rc[idx], kind="stable")]  # two stable sorts: np.lexsort is 5x slower here
        order = by_rc[np.argsort(self.group[by_rc], kind="stable")]
        g = self.group[order]
        dq = self.item_dq[order]
        cum = np.cumsum(dq)
        before = np.zeros(len(g))
        if len(g):
            starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
            offset = np.repeat(cum[starts] - dq[starts], np.diff(np.r_[starts, len(g)]))
            before = cum - dq - offset
        allg = np.arange(self.n_groups)
        x, val = self._knapsacks(rc, order, before, self.group_cap, allg)
        knap = val.reshape(self.n_sites, -1).sum(axis=1)
        v = self.fixed + knap
        if self.levels:  # sites with expansion modules: the best combination
            site_of = g // self.n_t
            for i, (caps, costs) in self.levels.items():
                sel = site_of == i
                if not sel.any():
                    continue
                gi = np.arange(i * self.n_t, (i + 1) * self.n_t)
                best_val, best_x = knap[i], None
                for c, k in zip(caps[1:], costs[1:]):
                    cap = self.group_cap.copy()
                    cap[gi] = c
                    xs, vals = self._knapsacks(rc, order[sel], before[sel], cap, gi)
                    if vals.sum() + k < best_val:
                        best_val, best_x = vals.sum() + k, xs
                if best_x is not None:
                    x = x.copy()
                    x[sel] = best_x
                    v[i] = self.fixed[i] + best_val
        base = float(lam @ self.demand) + self.constant - float(mu @ self.supply)
        short = np.zeros(self.n_cust)
        if self.penalty is not None:
            over = lam > self.penalty
            base += float((self.penalty - lam[over]) @ self.demand[over])
            short[over] = self.demand[over]
        return base, v, order, x, short

    def evaluate(self, u: np.ndarray, fixed_open: np.ndarray | None = None, fixed_closed: np.ndarray | None = None
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, float]:
        """L(u, mu) under the fixings, the y of the y-problem, v, the subgradient (demand rows: demand minus what
        the open sites serve; supply rows: what they draw minus the supply) and the constant part of L."""
        fo = self.forced_open if fixed_open is None else fixed_open
        fc = self.forced_closed if fixed_closed is None else fixed_closed
        base, v, order, x, short = self.site_values(u)
        value, y = self.y_problem(v, fo, fc)
        served = short.copy()
        open_arc = y[self.site[order]]
        np.add.at(served, self.cust[order][open_arc], x[open_arc])
        grad = np.empty(self.n_cust + self.n_supply)
        grad[:self.n_cust] = self.demand - served
        if self.n_supply:
            drawn = np.zeros(self.n_supply)
            rows = self._in_row[self.item_key[order][open_arc]]
            ok = rows >= 0
            np.add.at(drawn, rows[ok], x[open_arc][ok])
            grad[self.n_cust:] = drawn - self.supply
        return base + value, y, v, grad, base

