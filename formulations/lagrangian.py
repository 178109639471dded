"""Lagrangian relaxation of the demand rows for facility-location-shaped network design models.

Applies when the (product-aggregated) model is a capacitated facility location problem over zone-period
customers k = (z, t): one product, no source->DC legs, no lane capacities, no labour, no expansion modules,
no service, budget, open-count or single-sourcing rows (:func:`applies` says which one is missing). The
OR-Library instances are of this shape. With multipliers u_k on ``sum_a x_a + unmet_k = d_k``::

    L(u) = sum_k u_k d_k + sum_k d_k min(0, p - u_k)                       (unmet at penalty p, when allowed)
         + min_{y in {0,1}, forced} sum_i y_i v_i(u)
    v_i(u) = F_i + sum_t min { sum_{a from i in t} (c_a - u_k(a)) x_a : 0 <= x_a <= d_k(a),
                                                                         sum x_a <= cap_{i,t} }

where cap_{i,t} is the capacity of the site's tightest stage (any one stage bounds its throughput, so this is
a relaxation) and each inner problem is a continuous knapsack (greedy in reduced cost). L(u) <= optimum for
every u (weak duality). When demand must be met, the aggregate capacity row sum_i cap_i y_i >= sum_k d_k
(summed over periods) is kept in the y-problem, solved as a fractional knapsack: still a lower bound, and
stronger than the LP relaxation of the strong formulation (Görtz & Klose 2012). u is improved by
subgradient steps (Polyak step towards the best known plan's cost).

Byproducts: site sets to evaluate as plans (the y of the subproblem, completed until capacity covers demand,
in ascending v_i per unit of capacity) and Lagrangian fixing -- a site closed in the y-problem whose v_i > 0
lifts L above the best plan's cost can be closed in every better plan (and an open one with v_i < 0 opened),
which shrinks the MILP that follows.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from formulations import network_heuristics as nh
from formulations.common import codes, grid_codes

NetworkDesignContext = Any
"""A :class:`formulations.network_design.NetworkDesignContext` (not imported: that module imports this one)."""


def applies(ctx: NetworkDesignContext) -> tuple[bool, str]:
    """Whether the model has the facility location shape this relaxation needs; and why not."""
    opt = ctx.options
    checks = [
        (len(ctx.products) == 1, "more than one product in the model"),
        (len(ctx.inbound) == 0, "the model has source->DC legs"),
        ("capacity" not in ctx.outbound.frame or not ctx.outbound.frame["capacity"].notna().any(),
         "lanes have capacities"),
        (ctx.labor.empty, "the model has labour"),
        (ctx.instance.expansions.empty, "the model has expansion modules"),
        (ctx.service_share <= 0, "the model has a service constraint"),
        (not opt.single_source, "single sourcing"),
        (opt.capex_budget is None and opt.min_open is None and opt.max_open is None,
         "budget or open-count limits"),
        (len(ctx.outbound) > 0, "no outbound arcs"),
    ]
    for ok, why in checks:
        if not ok:
            return False, why
    return True, "facility location shape"


@dataclass
class LagrangianResult:
    """Outcome of :func:`subgradient`: the best bound, the multipliers, site sets to try, fixings."""

    bound: float
    multipliers: np.ndarray
    candidates: list[np.ndarray] = field(default_factory=list)
    fixed_open: np.ndarray | None = None
    fixed_closed: np.ndarray | None = None
    site_costs: np.ndarray | None = None
    iterations: int = 0
    seconds: float = 0.0


class FacilityLocation:
    """The relaxation's data in arrays (arcs grouped by site and period), built once from the model context."""

    def __init__(self, ctx: NetworkDesignContext) -> None:
        f = ctx.outbound.frame
        self.n_sites, n_t = len(ctx.sites), len(ctx.periods)
        keys = {"zone_id": ctx.zones, "product_id": ctx.products, "period": ctx.periods}
        self.demand = np.zeros(len(ctx.zones) * len(ctx.products) * len(ctx.periods))
        np.add.at(self.demand, grid_codes(ctx.demand, keys), ctx.demand["quantity"].to_numpy(dtype=float))
        self.cust = grid_codes(f.rename(columns={"destination_id": "zone_id"}), keys)
        handling = float(ctx.instance.defaults["handling_cost_per_unit"])
        self.cost = ctx.annual * (f["cost_per_unit"].to_numpy(dtype=float) + handling)
        self.site = codes(f["origin_id"].to_numpy(), ctx.sites)
        period = codes(f["period"].to_numpy(), ctx.periods)
        self.group = self.site * n_t + period
        self.n_groups = self.n_sites * n_t
        cap = nh.site_capacity(ctx)
        self.group_cap = cap.reshape(-1)
        self.site_cap = cap.sum(axis=1)
        dcs = ctx.dcs
        cand = (dcs["status"] == "candidate").to_numpy()
        self.fixed = (dcs["fixed_cost_per_year"].to_numpy(dtype=float)
                      + ctx.one_off * np.where(cand, dcs["opening_cost"].to_numpy(dtype=float), 0.0)
                      - ctx.one_off * np.where(~cand, dcs["closing_cost"].to_numpy(dtype=float), 0.0))
        self.constant = ctx.objective_constant
        self.penalty = (ctx.annual * float(ctx.instance.defaults["unmet_demand_penalty"])
                        if ctx.options.allow_unmet else None)
        self.forced_open, self.forced_closed = nh.forced_masks(ctx)
        self.total = float(self.demand.sum())
        self.cover = not ctx.options.allow_unmet

    def evaluate(self, u: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray, np.ndarray]:
        """L(u) with and without the cover row, the y of the y-problem, v(u), and the subgradient."""
        rc = self.cost - u[self.cust]
        neg = rc < 0
        idx = np.flatnonzero(neg)
        order = idx[np.lexsort((rc[idx], self.group[idx]))]
        g = self.group[order]
        dq = self.demand[self.cust[order]]
        cum = np.cumsum(dq)
        starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1] if len(g) else np.zeros(0, dtype=np.int64)
        before = np.zeros(len(g))
        if len(g):
            offset = np.repeat(cum[starts] - dq[starts], np.diff(np.r_[starts, len(g)]))
            before = cum - dq - offset  # demand taken earlier in the same group
        x = np.clip(self.group_cap[g] - before, 0.0, dq)
        knap = np.bincount(g, weights=x * rc[order], minlength=self.n_groups)
        v = self.fixed + knap.reshape(self.n_sites, -1).sum(axis=1)
        y = (v < 0) | self.forced_open
        y &= ~self.forced_closed
        base = float(u @ self.demand) + self.constant
        served = np.zeros(len(self.demand))
        if self.penalty is not None:
            short = u > self.penalty
            base += float((self.penalty - u[short]) @ self.demand[short])
            served[short] = self.demand[short]
        plain = base + float(v[y].sum())
        strong = plain
        if self.cover:
            y, strong = self._cover(v, y, base)
        open_arc = y[self.site[order]]
        np.add.at(served, self.cust[order][open_arc], x[open_arc])
        return plain, strong, y, v, self.demand - served

    def _cover(self, v: np.ndarray, y: np.ndarray, base: float) -> tuple[np.ndarray, float]:
        """min sum v_i y_i s.t. sum cap_i y_i >= total demand, y in [0, 1] (forced kept): greedy fractional
        knapsack; returns y rounded up (the fractional site opened) and the fractional value."""
        y = y.copy()
        short = self.total - float(self.site_cap[y].sum())
        value = base + float(v[y].sum())
        if short <= 0:
            return y, value
        free = np.flatnonzero(~y & ~self.forced_closed & (self.site_cap > 0))
        free = free[np.argsort(v[free] / self.site_cap[free], kind="stable")]
        for i in free:
            take = min(1.0, short / self.site_cap[i])
            value += take * v[i]
            y[i] = True
            short -= self.site_cap[i]
            if short <= 0:
                break
        return y, value


def subgradient(ctx: NetworkDesignContext, upper: float, *, seconds: float | None = None, max_iter: int = 3000,
                tol: float = 1e-4, step: float = 2.0, patience: int = 100, target_margin: float = 0.01
                ) -> LagrangianResult:
    """Subgradient optimisation of L(u) (see the module docstring) for at most ``seconds``.

    ``upper``: the objective of the best known plan (the Polyak step's target and the fixing threshold).
    Stops when the bound is within ``tol`` of ``upper``, after ``max_iter`` iterations, or when the step has
    shrunk to nothing. Step: ``step`` x (target - L(u)) / |g|^2 with target = min(upper, (1 + ``target_margin``)
    x best bound), ``step`` halved after ``patience`` iterations without a better bound.
    """
    t0 = time.perf_counter()
    fl = FacilityLocation(ctx)
    # start: each customer's cheapest unit cost (the uncapacitated assignment value)
    cheapest = np.full(len(fl.demand), np.inf)
    np.minimum.at(cheapest, fl.cust, fl.cost)
    u = np.where(np.isfinite(cheapest), cheapest, 0.0)
    if fl.penalty is not None:
        u = np.minimum(u, fl.penalty)
    best, best_u, best_plain, best_v, best_y = -np.inf, u.copy(), -np.inf, None, None
    stall = 0
    seen: set[bytes] = set()
    candidates: list[np.ndarray] = []
    it = 0
    for it in range(1, max_iter + 1):
        plain, strong, y, v, grad = fl.evaluate(u)
        if strong > best + 1e-9 * max(1.0, abs(best) if np.isfinite(best) else 1.0):
            best, best_u, best_plain, best_v, best_y = strong, u.copy(), plain, v, y
            stall = 0
        else:
            stall += 1
            if stall >= patience:
                step, stall = step / 2.0, 0
        if it % 10 == 1 or stall == 0:
            cand = _complete(fl, y, v)
            key = np.packbits(cand).tobytes()
            if key not in seen:
                seen.add(key)
                candidates.append(cand)
        norm = float(grad @ grad)
        if norm <= 1e-12 or step < 1e-4 or (upper - best) <= tol * max(abs(upper), 1e-9):
            break
        if seconds is not None and time.perf_counter() - t0 > seconds:
            break
        target = min(upper, best + target_margin * abs(best)) if np.isfinite(best) else upper
        u = u + step * max(target - strong, 1e-6 * abs(target)) / norm * grad
        if fl.penalty is not None:
            u = np.minimum(u, fl.penalty)
    res = LagrangianResult(bound=float(best), multipliers=best_u, iterations=it, seconds=time.perf_counter() - t0,
                           site_costs=best_v if best_v is not None else np.zeros(fl.n_sites))
    # candidates: most recent first (they follow the better multipliers), the one at the best bound first of all
    res.candidates = [_complete(fl, best_y, best_v)] + candidates[::-1] if best_y is not None else candidates[::-1]
    if best_v is not None and np.isfinite(upper):
        margin = 1e-9 * max(abs(upper), 1.0)
        y0 = ((best_v < 0) | fl.forced_open) & ~fl.forced_closed
        res.fixed_closed = ~y0 & (best_plain + best_v > upper + margin)
        res.fixed_open = y0 & ~fl.forced_open & (best_plain - best_v > upper + margin)
    return res


def _complete(fl: FacilityLocation, y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The y-problem's sites, completed in ascending v_i per unit of capacity until capacity covers demand."""
    y = (y | fl.forced_open) & ~fl.forced_closed
    if not fl.cover:
        return y
    order = np.argsort(v / np.maximum(fl.site_cap, 1e-9), kind="stable")
    return nh.cover_demand(y, order, fl.site_cap[:, None], np.array([fl.total]), can_open=~fl.forced_closed)
