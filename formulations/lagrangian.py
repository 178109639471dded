"""Lagrangian relaxation of the demand rows for facility-location-shaped network design models.

Applies when the (product-aggregated) model is a capacitated facility location problem over zone-period
customers k = (z, t): one product, no source->DC legs, no lane capacities, no labour, no expansion modules,
no service, budget or open-count rows (:func:`applies` says which one is missing). The OR-Library instances are
of this shape. With single sourcing (each zone served by one DC) the multi-source problem relaxed here is itself
a relaxation, so L(u), the fixings and the probes below hold for single-source plans too (the plans evaluated
and the MILP keep single sourcing). With multipliers u_k on ``sum_a x_a + unmet_k = d_k`` (Görtz & Klose,
INFORMS J. Computing 24(4), 2012)::

    L(u) = sum_k u_k d_k + sum_k d_k min(0, p - u_k)                       (unmet at penalty p, when allowed)
         + min { sum_i v_i(u) y_i : y in {0,1}^I, forced and fixed sites kept,
                                    sum_i cap_i y_i >= sum_k d_k  (only when demand must be met) }
    v_i(u) = F_i + sum_t min { sum_{a from i in t} (c_a - u_k(a)) x_a : 0 <= x_a <= d_k(a),
                                                                         sum x_a <= cap_{i,t} }

where cap_{i,t} is the capacity of the site's tightest stage (any one stage bounds its throughput, so this is
a relaxation), cap_i = sum_t cap_{i,t}, and each inner problem is a continuous knapsack (greedy in reduced cost).
The y-problem keeps the aggregate capacity row (summed over periods: a relaxation of the per-period rows) as a
*binary* knapsack (:func:`cover_knapsack`, exact or relaxed by rounding capacities up), so that max_u L(u) is at
least the bound of the strong formulation's LP relaxation, and usually above it: on capa8000 the LP may open
6.36 sites' worth of capacity, the knapsack at least 7 sites. L(u) <= optimum for every u (weak duality).
u is improved by subgradient steps (Polyak step towards the best known plan's cost).

Lagrangian fixing: for a site i and the y-problem solved once more with y_i forced to the other value, a value
of L above the best known plan's cost ``upper`` proves that every plan costing at most ``upper`` keeps y_i as it
is. Fixings found at any u stay valid (each is a statement about those plans), so they accumulate during the
subgradient loop and enter the y-problem of later iterations (which lifts L further). The bound with fixings is
min(L, upper): a lower bound of every plan that costs at most ``upper``, and ``upper`` is a plan in hand.

Probing (:func:`probe`, one level of strong branching): each free site forced the other way and L re-optimised
from the best multipliers for a few iterations; a flip whose bound reaches ``upper`` fixes the site as well.
What is left goes to the MILP (:func:`formulations.network_design.solve`), which then branches over far fewer
sites (capa8000 / capb8000 / capc5000: 85-91 of the 100 sites fixed, most of them by the root).

Validity (tests/test_network_strategy.py, against enumeration of every site subset): L(u) never above the optimum,
no fixing or probe ever sets a site of the optimum the wrong way, and the knapsack never above its true minimum.
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
        # single sourcing is no obstacle: the multi-source problem relaxed here is a relaxation of it
        (opt.capex_budget is None and opt.min_open is None and opt.max_open is None,
         "budget or open-count limits"),
        (len(ctx.outbound) > 0, "no outbound arcs"),
    ]
    for ok, why in checks:
        if not ok:
            return False, why
    return True, "facility location shape"


KNAPSACK_GRID = 20_000
"""Most capacity steps of the y-problem's knapsack (capacities are rounded up onto this grid: a relaxation)."""
KNAPSACK_WORK = 2_000_000
"""Most items x steps of one knapsack table: with many sites the grid gets coarser (still a relaxation)."""
EXACT_FIXING_SITES = 300
"""Lagrangian fixing re-solves the binary knapsack per free site up to this many sites; above, its fractional
relaxation (a weaker bound, as valid) keeps the cost of a fixing pass linear in the sites."""


def fractional_cover(value: np.ndarray, capacity: np.ndarray, need: float) -> float:
    """min sum_i value_i y_i s.t. sum_i capacity_i y_i >= need, 0 <= y <= 1 (``value`` >= 0): the LP relaxation
    of :func:`cover_knapsack` (greedy by value per unit of capacity), a lower bound of it; ``inf`` if infeasible."""
    if need <= 0:
        return 0.0
    if float(capacity.sum()) < need * (1 - 1e-12):
        return np.inf
    order = np.argsort(value / np.maximum(capacity, 1e-300), kind="stable")
    cum = np.cumsum(capacity[order])
    k = int(np.searchsorted(cum, need))
    if k >= len(order):
        return float(value.sum())
    before = cum[k - 1] if k else 0.0
    return float(value[order[:k]].sum() + value[order[k]] * (need - before) / capacity[order[k]])


def cover_knapsack(value: np.ndarray, capacity: np.ndarray, need: float, grid: int = KNAPSACK_GRID
                   ) -> tuple[float, np.ndarray]:
    """min sum_i value_i y_i s.t. sum_i capacity_i y_i >= need, y binary (``value`` >= 0): a lower bound and a y.

    Dynamic programme over capacity in steps of q (the common divisor of integral capacities when it keeps the
    table within ``grid`` steps, else need / grid): capacities are rounded *up* and the need up to a whole number
    of steps, so every y feasible for the original row is feasible for the rounded one and the value returned is
    never above the true minimum (exact when q divides every capacity). The returned y meets the rounded row.
    Infeasible (all capacity short of the need): ``inf`` and every item taken.
    """
    n = len(value)
    y = np.zeros(n, dtype=bool)
    if need <= 0:
        return 0.0, y
    if float(capacity.sum()) < need * (1 - 1e-12) or n == 0:
        return np.inf, np.ones(n, dtype=bool)
    q = need / grid
    if np.all(capacity == np.round(capacity)) and capacity.max() > 0:
        g = float(np.gcd.reduce(np.round(capacity).astype(np.int64)[capacity > 0]))
        if g >= q:
            q = g
    q = max(q, 1e-12)
    w = np.ceil(capacity / q - 1e-9).astype(np.int64)
    steps = int(np.ceil(need / q - 1e-9))
    w = np.clip(w, 0, steps)
    best = np.full(steps + 1, np.inf)  # best[r]: least value of items so far with rounded capacity >= r
    best[0] = 0.0
    take = np.zeros((n, steps + 1), dtype=bool)
    cand = np.empty(steps + 1)
    for i in range(n):
        wi = int(w[i])
        if wi == 0:
            continue
        cand[:wi] = value[i]
        cand[wi:] = best[:steps + 1 - wi] + value[i]
        better = cand < best
        take[i] = better
        np.minimum(best, cand, out=best)
    r = steps
    for i in range(n - 1, -1, -1):
        if take[i, r]:
            y[i] = True
            r = max(0, r - int(w[i]))
    return float(best[steps]), y


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
    open_sites: np.ndarray | None = None
    open_share: np.ndarray | None = None
    """Each site's share of open in the y-problems of the iterations (exponential average, :data:`Y_AVERAGE`):
    an estimate of the LP relaxation's open values to round (primal recovery from the subgradient)."""


def outbound_items(ctx: NetworkDesignContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The customers' demand over the (zone, product, period) grid, and per outbound arc: its customer's position
    in that grid, its annual unit cost (transport + handling), its site and its period (codes)."""
    f = ctx.outbound.frame
    keys = {"zone_id": ctx.zones, "product_id": ctx.products, "period": ctx.periods}
    demand = np.zeros(len(ctx.zones) * len(ctx.products) * len(ctx.periods))
    np.add.at(demand, grid_codes(ctx.demand, keys), ctx.demand["quantity"].to_numpy(dtype=float))
    cust = grid_codes(f.rename(columns={"destination_id": "zone_id"}), keys)
    handling = float(ctx.instance.defaults["handling_cost_per_unit"])
    cost = ctx.annual * (f["cost_per_unit"].to_numpy(dtype=float) + handling)
    return (demand, cust, cost, codes(f["origin_id"].to_numpy(), ctx.sites),
            codes(f["period"].to_numpy(), ctx.periods))


class FacilityLocation:
    """The relaxation's data in arrays (arcs grouped by site and period), built once from the model context."""

    def __init__(self, ctx: NetworkDesignContext) -> None:
        self.n_sites, n_t = len(ctx.sites), len(ctx.periods)
        self.demand, self.cust, self.cost, self.site, period = outbound_items(ctx)
        self.group = self.site * n_t + period
        self.n_groups = self.n_sites * n_t
        cap = nh.site_capacity(ctx)
        self.group_cap = cap.reshape(-1)
        self.site_cap = cap.sum(axis=1)
        self.period_cap = cap  # most throughput per site and period (sites, periods)
        self._site_terms(ctx)

    def _site_terms(self, ctx: NetworkDesignContext) -> None:
        """What every relaxation keeps per site and overall: fixed costs (annual fixed, one-off opening of
        candidates, minus one-off closing of today's DCs), the objective's constant, the unmet penalty (None when
        demand must be met), forced sites and total demand."""
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

    def initial(self) -> np.ndarray:
        """Start multipliers: each customer's cheapest unit cost (at most the unmet penalty)."""
        cheapest = np.full(len(self.demand), np.inf)
        np.minimum.at(cheapest, self.cust, self.cost)
        return self.project(np.where(np.isfinite(cheapest), cheapest, 0.0))

    def project(self, u: np.ndarray) -> np.ndarray:
        """Onto the multipliers' domain: at most the unmet penalty when unmet demand is allowed."""
        return np.minimum(u, self.penalty) if self.penalty is not None else u.copy()

    def site_values(self, u: np.ndarray) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The constant part of L(u), v(u), and the inner knapsacks' solution (arcs, their flows, served
        demand when unmet)."""
        rc = self.cost - u[self.cust]
        idx = np.flatnonzero(rc < 0)
        order = idx[np.lexsort((rc[idx], self.group[idx]))]
        g = self.group[order]
        dq = self.demand[self.cust[order]]
        cum = np.cumsum(dq)
        before = np.zeros(len(g))
        if len(g):
            starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]
            offset = np.repeat(cum[starts] - dq[starts], np.diff(np.r_[starts, len(g)]))
            before = cum - dq - offset  # demand taken earlier in the same group
        x = np.clip(self.group_cap[g] - before, 0.0, dq)
        knap = np.bincount(g, weights=x * rc[order], minlength=self.n_groups)
        v = self.fixed + knap.reshape(self.n_sites, -1).sum(axis=1)
        base = float(u @ self.demand) + self.constant
        short = np.zeros(len(self.demand))
        if self.penalty is not None:
            over = u > self.penalty
            base += float((self.penalty - u[over]) @ self.demand[over])
            short[over] = self.demand[over]
        return base, v, order, x, short

    def y_problem(self, v: np.ndarray, fixed_open: np.ndarray, fixed_closed: np.ndarray, exact: bool = True
                  ) -> tuple[float, np.ndarray]:
        """min sum_i v_i y_i over binary y with ``fixed_open`` at 1, ``fixed_closed`` at 0 and (when demand must
        be met) the aggregate capacity row; its value (``inf`` when the fixings leave too little capacity) and y.
        ``exact`` False: the knapsack's fractional relaxation instead (value only, a lower bound; y as given)."""
        y = fixed_open | (~fixed_closed & (v < 0))
        value = float(v[y].sum())
        if not self.cover:
            return value, y
        need = self.total - float(self.site_cap[y].sum())
        if need <= 1e-9 * max(self.total, 1.0):
            return value, y
        free = np.flatnonzero(~y & ~fixed_closed & (self.site_cap > 0))
        if not exact:
            return value + fractional_cover(v[free], self.site_cap[free], need), y
        grid = int(min(KNAPSACK_GRID, max(200, KNAPSACK_WORK // max(len(free), 1))))
        extra, take = cover_knapsack(v[free], self.site_cap[free], need, grid=grid)
        y = y.copy()
        y[free[take]] = True
        return value + extra, y

    def evaluate(self, u: np.ndarray, fixed_open: np.ndarray | None = None, fixed_closed: np.ndarray | None = None
                 ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray, float]:
        """L(u) under the fixings (forced sites when none given), the y of the y-problem, v(u), the subgradient
        (demand minus what the subproblem serves) and the constant part of L(u)."""
        fo = self.forced_open if fixed_open is None else fixed_open
        fc = self.forced_closed if fixed_closed is None else fixed_closed
        base, v, order, x, short = self.site_values(u)
        value, y = self.y_problem(v, fo, fc)
        served = short.copy()
        open_arc = y[self.site[order]]
        np.add.at(served, self.cust[order][open_arc], x[open_arc])
        return base + value, y, v, self.demand - served, base

    def fixings(self, v: np.ndarray, base: float, y: np.ndarray, fixed_open: np.ndarray, fixed_closed: np.ndarray,
                upper: float) -> tuple[np.ndarray, np.ndarray]:
        """Lagrangian fixing at v = v(u): the free sites whose y-problem, re-solved with the site forced to the
        other value, lifts L(u) above ``upper``; (to fix open, to fix closed) masks, new fixings only."""
        margin = 1e-9 * max(abs(upper), 1.0)
        close, open_ = np.zeros(self.n_sites, dtype=bool), np.zeros(self.n_sites, dtype=bool)
        free = ~fixed_open & ~fixed_closed
        exact = int(free.sum()) <= EXACT_FIXING_SITES
        for i in np.flatnonzero(free):
            fo, fc = fixed_open.copy(), fixed_closed.copy()
            if y[i]:
                fc[i] = True
            else:
                fo[i] = True
            value, _ = self.y_problem(v, fo, fc, exact=exact)
            if base + value > upper + margin:
                (open_ if y[i] else close)[i] = True
        return open_, close


Y_AVERAGE = 0.05
"""Weight of the latest iteration in the sites' open shares (:attr:`LagrangianResult.open_share`)."""


def subgradient(ctx: NetworkDesignContext, upper: float, *, seconds: float | None = None, max_iter: int = 3000,
                tol: float = 1e-4, step: float = 2.0, patience: int = 30, fix_every: int = 50,
                start: np.ndarray | None = None, fixed_open: np.ndarray | None = None,
                fixed_closed: np.ndarray | None = None, fl: FacilityLocation | None = None,
                overshoot: float | None = None) -> LagrangianResult:
    """Subgradient optimisation of L(u) (see the module docstring) for at most ``seconds``, with Lagrangian
    fixing every ``fix_every`` iterations and at the end.

    ``upper``: the objective of the best known plan (the Polyak step's target and the fixing threshold; it must
    be the cost of a plan in hand, since the bound with fixings only holds for plans costing at most it).
    Stops when the bound is within ``tol`` of ``upper``, after ``max_iter`` iterations, or when the step has
    shrunk to nothing. Step: ``step`` x (upper - L(u)) / |g|^2, ``step`` halved after ``patience`` iterations
    without a better bound. ``start``: initial multipliers (default: each customer's cheapest unit cost);
    ``fixed_open`` / ``fixed_closed``: fixings already known (default: the forced sites). ``overshoot``: aim the
    Polyak step at least this share above the best bound so far (long steps while the multipliers are far from
    optimal, shortened by the halving; the network relaxation of the median network: 0.987 G in 60 s aiming 50 %
    above, 0.963 G aiming at a plan 1 % above the LP bound).
    """
    t0 = time.perf_counter()
    fl = fl if fl is not None else FacilityLocation(ctx)
    fo = (fl.forced_open if fixed_open is None else fixed_open | fl.forced_open).copy()
    fc = (fl.forced_closed if fixed_closed is None else fixed_closed | fl.forced_closed).copy()
    u = fl.initial() if start is None else fl.project(np.asarray(start, dtype=float))
    best, best_u, best_v, best_y, best_base = -np.inf, u.copy(), None, None, 0.0
    share = None
    stall = 0
    seen: set[bytes] = set()
    candidates: list[np.ndarray] = []
    it = 0
    finite_upper = np.isfinite(upper)
    for it in range(1, max_iter + 1):
        value, y, v, grad, base = fl.evaluate(u, fo, fc)
        share = y.astype(float) if share is None else (1 - Y_AVERAGE) * share + Y_AVERAGE * y
        if not np.isfinite(value):  # the fixings leave too little capacity: no plan costs at most upper
            best, best_u, best_v, best_y, best_base = value, u.copy(), v, y, base
            break
        if value > best + 1e-9 * max(1.0, abs(best) if np.isfinite(best) else 1.0):
            best, best_u, best_v, best_y, best_base = value, u.copy(), v, y, base
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
        if finite_upper and it % fix_every == 0:
            new_open, new_closed = fl.fixings(v, base, y, fo, fc, upper)
            fo |= new_open
            fc |= new_closed
        norm = float(grad @ grad)
        if norm <= 1e-12 or step < 1e-4 or (finite_upper and (upper - best) <= tol * max(abs(upper), 1e-9)):
            break
        if seconds is not None and time.perf_counter() - t0 > seconds:
            break
        target = upper if finite_upper else best + 0.01 * abs(best)
        if overshoot is not None:
            target = max(target, best + overshoot * abs(best))
        u = fl.project(u + step * max(target - value, 1e-6 * abs(target)) / norm * grad)
    if best_v is not None and finite_upper and np.isfinite(best):
        new_open, new_closed = fl.fixings(best_v, best_base, best_y, fo, fc, upper)
        fo |= new_open
        fc |= new_closed
        best = max(best, fl.y_problem(best_v, fo, fc)[0] + best_base)
    fixed = (fo & ~fl.forced_open).any() or (fc & ~fl.forced_closed).any()
    bound = min(best, upper) if fixed and finite_upper else best
    res = LagrangianResult(bound=float(bound), multipliers=best_u, iterations=it, seconds=time.perf_counter() - t0,
                           site_costs=best_v if best_v is not None else np.zeros(fl.n_sites), open_sites=best_y,
                           open_share=share)
    # candidates: most recent first (they follow the better multipliers), the one at the best bound first of all
    res.candidates = [_complete(fl, best_y, best_v)] + candidates[::-1] if best_y is not None else candidates[::-1]
    res.fixed_open = fo & ~fl.forced_open
    res.fixed_closed = fc & ~fl.forced_closed
    return res


def _complete(fl: FacilityLocation, y: np.ndarray, v: np.ndarray) -> np.ndarray:
    """The y-problem's sites, completed in ascending v_i per unit of capacity until capacity covers demand."""
    y = (y | fl.forced_open) & ~fl.forced_closed
    if not fl.cover:
        return y
    order = np.argsort(v / np.maximum(fl.site_cap, 1e-9), kind="stable")
    return nh.cover_demand(y, order, fl.site_cap[:, None], np.array([fl.total]), can_open=~fl.forced_closed)


def probe(ctx: NetworkDesignContext, upper: float, root: LagrangianResult, *, seconds: float | None = None,
          iterations: int = 150, fl: FacilityLocation | None = None) -> tuple[np.ndarray, np.ndarray, int]:
    """Probing (one level of strong branching): each free site forced to the other value than in the root's
    y-problem, L re-optimised from the root's multipliers for at most ``iterations`` subgradient steps; when the
    bound reaches ``upper`` (or the forced value leaves too little capacity), the site is fixed: every plan
    costing less than ``upper`` keeps it as it is. Sites are probed most promising first (the largest bound
    with the flip at the root's multipliers); fixings found are used by the probes that follow.

    Returns (fixed open, fixed closed) masks (the root's fixings included) and the number of sites probed.
    """
    t0 = time.perf_counter()
    fl = fl if fl is not None else FacilityLocation(ctx)
    fo = root.fixed_open | fl.forced_open
    fc = root.fixed_closed | fl.forced_closed
    y = root.open_sites
    if y is None or not np.isfinite(upper):
        return fo & ~fl.forced_open, fc & ~fl.forced_closed, 0
    base, v, _, _, _ = fl.site_values(root.multipliers)
    free = np.flatnonzero(~fo & ~fc)
    flipped = np.empty(len(free))
    exact = len(free) <= EXACT_FIXING_SITES
    for k, i in enumerate(free):
        a, b = fo.copy(), fc.copy()
        (b if y[i] else a)[i] = True
        flipped[k] = base + fl.y_problem(v, a, b, exact=exact)[0]
    n = 0
    for i in free[np.argsort(-flipped, kind="stable")]:
        if seconds is not None and time.perf_counter() - t0 > seconds:
            break
        if fo[i] or fc[i]:
            continue
        a, b = fo.copy(), fc.copy()
        (b if y[i] else a)[i] = True
        n += 1
        res = subgradient(ctx, upper, tol=0.0, fl=fl, start=root.multipliers, fixed_open=a, fixed_closed=b,
                          max_iter=iterations, step=0.5, patience=10, fix_every=iterations + 1)
        if res.bound >= upper:
            (fo if y[i] else fc)[i] = True
    return fo & ~fl.forced_open, fc & ~fl.forced_closed, n
