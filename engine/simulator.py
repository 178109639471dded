"""The embedded flow simulator: a plan executed step by step (hourly by default) through every DC.

An aggregate plan can hold per week and still fail on a Monday morning. The simulator takes the plan's
volumes per DC and period, spreads them over days and hours with order profiles and seeded noise, and
pushes them through each DC's process chain with finite capacity per stage and step.

Model
-----
Every DC runs the flow stages of :data:`instances.schema.FLOW_STAGES` as two chains::

    inbound chain : inbound_dock -> putaway -> storage (a level with a capacity)
    order chain   : pick -> pack -> outbound_dock -> shipped

Inbound units of ``site_throughput`` enter at ``inbound_dock``; outbound (order) units enter at ``pick``.
For site s, stage k, batch member b (a replication under one multiplier) and step t::

    a[t,k] = x[t,k] + y[t-1, up(k)]            arrivals: external work + upstream output of the last step
    y[t,k] = min(q[t-1,k] + a[t,k], c[t,k])    throughput
    q[t,k] = q[t-1,k] + a[t,k] - y[t,k]        backlog, carried to the next step

so each stage conserves units (sum a = sum y + q_end - q_start) and a unit spends at least one step per
stage. Storage: ``L[t] = L[t-1] + y[t,putaway] - y[t,pick]``; putaway is capped by the free space
``storage_capacity - L[t-1]``; with ``Profile.stock_limited`` picks are also capped by ``L[t-1]`` (off by
default: the plan's aggregate stock balance is trusted and product mix is not modelled, so a negative level
means the plan's within-period timing needs stock the aggregate plan does not show).

Capacity ``c[t,k] = min(equipment, labour)``:

* equipment = count x rate_per_hour x step_hours x open share of the step; a stage is open
  ``hours_per_day`` hours from ``Profile.open_hour``; the outbound dock also closes at the shipping cut-off
  (``Profile.cutoff_hour``, default the end of its window): orders packed later wait for the next day.
* labour = staffed hours of the step x productivity_<stage> x the stage's share of staffed hours. Staffed
  hours per period come from the plan's ``labor`` table (regular + overtime + temp) or else ``labor.csv``
  (max_headcount x hours_per_person_week x days/7 + max_overtime_hours x days/7), spread over the shift
  pattern (``Profile.shift_hours`` from ``open_hour``, default the site's longest stage window, weighted by
  ``Profile.staffing_weekday``). A stage's share is proportional to its workload in the period,
  ``volume_k / productivity_k`` with ``volume_k`` the plan's volume of the period plus the units carried over
  from the day before that have still to pass the stage (waiting at it, at a stage before it in its chain or in
  transit between them: the dock's evening trucks need putaway tomorrow too), the carried units weighted by
  1 / the share of the day's staffed hours before their SLA deadline (:func:`_deadline_share`), so work
  carried over is staffed, also on a day the plan sends the stage nothing, and done before it is due; labour
  idle at one stage does not help another. A site without a labour row is not labour-constrained.
  :func:`carry_shares` gives the share of a fully loaded day carried into the next, per DC and stage (what a
  MILP needs to staff a day as the simulator does: ``RedistributionOptions.carry_share``).

Arrivals: the period volume is split over its days by weekday weights and over the steps of a day by an
intraday profile (orders) or over dock slots (inbound trucks of ``truck_units`` units). Noise
(``Profile.noise``): ``deterministic`` (exact expected values), ``poisson`` (Poisson counts per step), or
``overdispersed`` (default: a gamma day factor with coefficient of variation ``daily_cv`` times Poisson
counts). Poisson counts with mean >= ``exact_poisson_below`` are drawn by the normal approximation (rounded,
floored at 0), which is 4x faster and within 1/sqrt(mean) in skewness. A demand multiplier m scales the
drawn arrivals of both chains (common random numbers: every multiplier sees the same realised pattern, so
backlogs grow monotonically with m, which makes the stress test's bisection well posed). Each site draws
from its own stream ``default_rng([seed, period, site_seed(site_id)])``: a site sees the same noise in a
period whichever other sites or periods are simulated (common random numbers across plans and scenarios).

Cycle time and SLA
------------------
Every stage is first-in first-out, so a chain is FIFO: with cumulative chain arrivals A(t) (into the head)
and departures D(t) (out of the tail), the unit number u leaves in the step where D first reaches u and
arrived in the first step j with A(j) >= u. A unit arriving in step j and leaving in step t has a cycle time
of (t - j + 1) steps (start of its arrival step to end of its departure step; conservative by at most one
step). Each step's departures are timed by their middle unit and weighted by their volume; p50, p95 and the
share within the SLA (``order_to_ship_sla_hours`` for orders, ``Profile.dock_to_stock_sla_hours`` for
inbound) come from that histogram over all shipped units of the first 10 replications of each multiplier (a
subsample that bounds the cost of the matching) over the horizon. Units still inside at the end are not in
it (they are in the backlog); a delay longer than the look-back (2 x SLA, at least a week) is counted at it.

The SLA of a chain is broken at the end of step t when some unit that arrived L = SLA/step steps ago or
earlier is still inside: ``overdue[t] = A(t-L) - D(t) > 0``. A site breaks when the share of replications
with overdue units exceeds ``1 - sla_quantile`` (default 0.5: the median replication). The failing stage is
the one whose queue holds most overdue units (oldest units are the most downstream: the tail queue, then the
units in transit into it, then the queue before it...; units in transit are moving and blamed on no stage;
when only they are overdue, the longest queue is blamed). ``binding`` says whether labour or equipment bound
that stage in that period.
Shortfall: ``overdue_units`` = the peak overdue units; ``shortfall_units`` = the extra capacity at that
stage (units/day) that would have cleared them: the largest over days of (the day's peak overdue) /
(days from the last time the chain was empty to that peak) -- adding it at the stage raises cumulative
departures at the peak by exactly the overdue units; ``shortfall_hours`` = ``shortfall_units`` as extra
operating hours per day at the stage's mean hourly capacity; all at ``sla_quantile`` over replications.
That is an estimate; the front doors (:func:`simulate`, :func:`simulate_volumes`, one multiplier) verify it
(:func:`clearing_shortfalls`): the failing sites are simulated again with the amount added, searched until it
is the least (to 1 %) that clears the breach, re-blaming the stage when another one of the chain clears it with
less (``estimated_units`` keeps the estimate).

Calibration: an instance built by :func:`engine.calibration.apply_calibration` carries the fitted efficiencies
in its rates and productivities and the congestion coefficient kappa in ``meta['calibration']``; with kappa > 0
each stage's capacity on a day is derated by ``1 - kappa u^2``, ``u = min(1, a / c)`` with ``a`` the day's work
entering the stage's chain and ``c`` the stage's capacity that day (the calibration's model, see
:func:`_congestion_factor`). ``shipped_units`` of the site table is the outbound dock's throughput over all
replications (the stage table's figure).

Everything is vectorized over sites x stages x replications x multipliers; the step loop is the only Python
loop that grows with the problem's size (the others run over days, sites when drawing arrivals, chains and
dock slots). Work is generated one period at a time and simulated one day at a time, so memory holds one
period of arrivals (steps x sites x 2 x batch) and one day of per-step arrays, never the horizon.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from instances.instance import Instance
from instances.plain import to_plain
from instances.plan import PLAN_TABLES
from instances.schema import FLOW_STAGES

STAGES_SIM: tuple[str, ...] = FLOW_STAGES
"""Flow stages simulated, in the order of the stage axis of the arrays."""
K_STAGES = len(STAGES_SIM)
INBOUND_DOCK, PUTAWAY, PICK, PACK, OUTBOUND_DOCK = range(K_STAGES)
DEFAULT_UPSTREAM: np.ndarray = np.array([-1, INBOUND_DOCK, -1, PICK, PACK])
"""Upstream stage of each flow stage (-1: fed from outside)."""
CHAINS: dict[str, tuple[int, ...]] = {"order": (PICK, PACK, OUTBOUND_DOCK), "inbound": (INBOUND_DOCK, PUTAWAY)}
"""Stages of each chain, head to tail."""
CHAIN_NAMES: tuple[str, ...] = tuple(CHAINS)

# e-commerce order intake per hour of day (relative): quiet night, steady day, evening peak
DEFAULT_INTRADAY: tuple[float, ...] = (0.9, 0.6, 0.4, 0.3, 0.3, 0.4, 0.7, 1.2, 1.6, 1.8, 1.9, 1.9,
                                       2.0, 1.9, 1.8, 1.8, 1.9, 2.1, 2.4, 2.7, 2.8, 2.5, 1.9, 1.3)
# Monday .. Sunday: the Monday backlog of weekend orders, a calmer Saturday, a busy Sunday evening
DEFAULT_WEEKDAY: tuple[float, ...] = (1.15, 1.05, 1.0, 1.0, 0.95, 0.85, 1.0)


class SimulationInputError(ValueError):
    """Bad simulator input, located as ``TABLE:ROW:COLUMN: message``."""


@dataclass(frozen=True)
class Profile:
    """How plan volumes become hourly work and how DCs are staffed (every field a documented default).

    Attributes
    ----------
    intraday : 24 relative order-intake weights, hour 0 to 23.
    weekday : 7 relative order weights, Monday to Sunday.
    inbound_weekday : 7 relative inbound weights, Monday to Sunday.
    dock_slots : hours of day at which inbound trucks are scheduled.
    truck_units : units per inbound truck (inbound arrives in whole trucks unless deterministic).
    open_hour : hour of day at which every stage opens (it stays open ``hours_per_day`` of resources.csv).
    cutoff_hour : the outbound dock (the carriers' last departure) closes at this hour until ``open_hour``;
        None: the dock's own operating window (``hours_per_day`` from ``open_hour``) is the cut-off.
    shift_hours : staffed hours per day from ``open_hour``; None: each site's longest stage window.
    staffing_weekday : 7 relative staffing weights, Monday to Sunday.
    noise : ``overdispersed`` | ``poisson`` | ``deterministic``.
    daily_cv : coefficient of variation of the gamma day factor (``overdispersed`` only).
    exact_poisson_below : Poisson means below this are drawn exactly, larger ones by the normal approximation.
    dock_to_stock_sla_hours : inbound SLA (dock to stock), hours.
    stock_limited : cap picks by the storage level.
    mtbf_hours, mttr_hours : breakdowns (off when ``mtbf_hours`` is None), in operating hours: every stage of
        every site and replication is up or down, a two-state Markov chain per open step (fails with probability
        ``1 - exp(-step/mtbf)``, is repaired with ``1 - exp(-step/mttr)``); a stage that is down processes
        nothing. Long-run availability ``p_repair / (p_fail + p_repair)`` (about ``mtbf / (mtbf + mttr)``).
    service_cv : service-time variability (off at 0): each stage's capacity in a step is multiplied by a gamma
        factor of mean 1 and this coefficient of variation, independent per step, site, stage, replication.
    absenteeism : share of staffed hours lost (off at 0): each day and site, the staff present is a binomial
        draw of ``round(staffed hours / SHIFT_HOURS)`` shifts with this absence probability; it scales labour
        capacity. Set here, it applies to every site; a calibration (``calibrate --absenteeism``) gives each
        observed site its own rate and the others the pooled one.
    Each effect draws from its own stream ``default_rng([seed, period, site_seed(site), 1])`` (arrivals are
    unchanged by switching an effect on: common random numbers) and is the same under every multiplier of a
    replication. Unset (None) values fall back to the instance's calibration (``meta['calibration']``).
    sla_quantile : a step breaks the SLA when more than ``1 - sla_quantile`` of replications do.
    """

    intraday: tuple[float, ...] = DEFAULT_INTRADAY
    weekday: tuple[float, ...] = DEFAULT_WEEKDAY
    inbound_weekday: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    dock_slots: tuple[float, ...] = (6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0)
    truck_units: float = 400.0
    open_hour: float = 6.0
    cutoff_hour: float | None = None
    shift_hours: float | None = None
    staffing_weekday: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    noise: str = "overdispersed"
    daily_cv: float = 0.1
    exact_poisson_below: float = 30.0
    dock_to_stock_sla_hours: float = 24.0
    stock_limited: bool = False
    sla_quantile: float = 0.5
    mtbf_hours: float | None = None
    mttr_hours: float | None = None
    service_cv: float | None = None
    absenteeism: float | None = None

    def __post_init__(self) -> None:
        if self.mtbf_hours is not None and self.mtbf_hours <= 0 or self.mttr_hours is not None and \
                self.mttr_hours <= 0:
            raise ValueError("Profile: mtbf_hours and mttr_hours must be > 0")
        if (self.service_cv or 0) < 0 or not 0 <= (self.absenteeism or 0) < 1:
            raise ValueError("Profile: service_cv must be >= 0 and absenteeism in [0, 1)")
        checks = [("intraday", 24), ("weekday", 7), ("inbound_weekday", 7), ("staffing_weekday", 7)]
        for name, n in checks:
            v = np.asarray(getattr(self, name), dtype=float)
            if v.shape != (n,) or (v < 0).any() or v.sum() <= 0:
                raise ValueError(f"Profile.{name}: need {n} non-negative weights with a positive sum")
        if self.noise not in ("overdispersed", "poisson", "deterministic"):
            raise ValueError(f"Profile.noise: {self.noise!r} is not overdispersed, poisson or deterministic")
        if not self.dock_slots or any(not 0 <= h < 24 for h in self.dock_slots):
            raise ValueError("Profile.dock_slots: need at least one hour in [0, 24)")
        if self.truck_units <= 0 or self.daily_cv < 0 or not 0 < self.sla_quantile <= 1:
            raise ValueError("Profile: truck_units must be > 0, daily_cv >= 0, sla_quantile in (0, 1]")
        if self.shift_hours is not None and not 0 < self.shift_hours <= 24:
            raise ValueError("Profile.shift_hours must be in (0, 24]")


# ---------------------------------------------------------------------------------------------------
# The pure-array core
# ---------------------------------------------------------------------------------------------------
def _routing_runs(upstream: np.ndarray) -> list[tuple[slice, slice]]:
    """Runs of consecutive stages fed by consecutive upstream stages, as (destination, source) slices."""
    runs: list[list[int]] = []
    for k, u in enumerate(upstream):
        if u < 0:
            continue
        if runs and runs[-1][1] == k and runs[-1][3] == u:
            runs[-1][1], runs[-1][3] = k + 1, u + 1
        else:
            runs.append([k, k + 1, u, u + 1])
    return [(slice(d0, d1), slice(s0, s1)) for d0, d1, s0, s1 in runs]


class _Kernel:
    """State of the queues between chunks of steps (backlogs, last step's output, storage level)."""

    def __init__(self, n_sites: int, n_stages: int, n_batch: int, upstream: np.ndarray,
                 storage: tuple[int, int] | None = None, storage_capacity: np.ndarray | None = None,
                 storage_initial: np.ndarray | None = None, stock_limited: bool = False,
                 backlog_initial: np.ndarray | None = None, chains: Sequence[tuple[int, int]] = ()) -> None:
        self.runs = _routing_runs(np.asarray(upstream, dtype=int))
        self.y = np.zeros((n_sites, n_stages, n_batch))
        self.q = np.zeros((n_sites, n_stages, n_batch))
        if backlog_initial is not None:
            self.q[...] = backlog_initial
        self.storage = storage
        self.level = np.zeros((n_sites, n_batch))
        if storage is not None:
            self.storage_capacity = np.asarray(storage_capacity, dtype=float).reshape(n_sites, 1)
            if storage_initial is not None:
                self.level[...] = np.asarray(storage_initial, dtype=float).reshape(n_sites, -1)
        self.stock_limited = stock_limited
        self.chains = chains
        self.cum = np.zeros((2, len(chains), n_sites, n_batch))  # cumulative chain arrivals, departures

    def take(self, keep: np.ndarray) -> None:
        """Keep the queues of sites ``keep`` only (indices; the others are dropped from the run)."""
        self.y, self.q, self.level, self.cum = self.y[keep], self.q[keep], self.level[keep], self.cum[:, :, keep]
        if self.storage is not None:
            self.storage_capacity = self.storage_capacity[keep]
        self._view_key = None

    def run(self, ext: np.ndarray, cap: np.ndarray, out_y: np.ndarray, out_q: np.ndarray,
            out_level: np.ndarray, out_cum: np.ndarray | None = None, *, out_a: np.ndarray | None = None,
            heads: Sequence[int] | None = None, acc: tuple[np.ndarray, ...] | None = None) -> None:
        """Advance ``len(ext)`` steps.

        ext : (T, S, K, B) external work per stage, or (T, S, H, B) for the ``heads`` stages only (then every
            other stage must be fed from upstream, and arrivals are not stored unless ``out_a`` is given).
        cap : broadcastable to (T, S, K, B).
        out_y, out_q, out_level : receive throughput, backlog (T, S, K, B) and storage level (T, S, B).
        out_cum : receives per chain the cumulative arrivals into its head and departures from its tail,
            (2, C, T, S, B).
        acc : (arrivals, throughput, backlog, level) sums over the steps, added to in place (cache-hot).
        """
        if out_a is None and heads is not None and self.storage is not None and not self.stock_limited:
            self._run_fast(ext, cap, out_y, out_q, out_level, out_cum, heads, acc)
            return
        y_prev, q_prev, level_prev = self.y, self.q, self.level
        cum_prev = self.cum
        tally = out_cum is not None and len(self.chains) > 0
        st = self.storage
        free = np.empty_like(level_prev)
        a_buf = np.empty_like(q_prev)
        head_runs = None if heads is None else [(k, j) for j, k in enumerate(heads)]
        for t in range(ext.shape[0]):
            a = a_buf if out_a is None else out_a[t]
            yt, qt, lt = out_y[t], out_q[t], out_level[t]
            if head_runs is None:
                np.copyto(a, ext[t])
                for dst, src in self.runs:
                    a[:, dst] += y_prev[:, src]
            else:  # heads and routed stages partition the stages: plain copies
                for k, j in head_runs:
                    a[:, k] = ext[t, :, j]
                for dst, src in self.runs:
                    a[:, dst] = y_prev[:, src]
            np.add(q_prev, a, out=qt)  # available work
            np.minimum(qt, cap[t], out=yt)
            if st is not None:
                put, pick = st
                np.subtract(self.storage_capacity, level_prev, out=free)
                np.minimum(yt[:, put], free, out=yt[:, put])
                if self.stock_limited:
                    np.maximum(level_prev, 0.0, out=free)
                    np.minimum(yt[:, pick], free, out=yt[:, pick])
                np.add(level_prev, yt[:, put], out=lt)
                lt -= yt[:, pick]
            else:
                lt[...] = level_prev
            qt -= yt  # backlog after the step
            if tally:
                for c, (head, tail) in enumerate(self.chains):
                    np.add(cum_prev[0, c], a[:, head], out=out_cum[0, c, t])
                    np.add(cum_prev[1, c], yt[:, tail], out=out_cum[1, c, t])
                cum_prev = out_cum[:, :, t]
            if acc is not None:
                for total, x in zip(acc, (a, yt, qt, lt)):
                    np.add(total, x, out=total)
            y_prev, q_prev, level_prev = yt, qt, lt
        self.y, self.q, self.level = y_prev.copy(), q_prev.copy(), level_prev.copy()
        if tally:
            self.cum = cum_prev.copy()

    def _views(self, out_y: np.ndarray, out_q: np.ndarray, out_level: np.ndarray, out_cum: np.ndarray | None,
               heads: Sequence[int]) -> list[tuple]:
        """Per-step views into the (reused) output buffers, built once: slicing costs as much as adding on small
        arrays, so the front door's step loop indexes nothing."""
        key = (id(out_y), id(out_q), id(out_level), id(out_cum), tuple(heads), out_y.shape[0])
        if getattr(self, "_view_key", None) == key:
            return self._view_cache
        put, pick = self.storage
        a = self.a_buf = np.empty_like(self.q)
        heads_a = [a[:, k] for k in heads]
        routed_a = [(a[:, dst], src) for dst, src in self.runs]
        chains = [(a[:, h], tl) for h, tl in self.chains] if out_cum is not None else []
        steps = []
        for t in range(out_y.shape[0]):
            yt = out_y[t]
            steps.append((yt, out_q[t], out_level[t], yt[:, put], yt[:, pick],
                          [(dst, yt[:, src]) for dst, src in routed_a],
                          [(ah, yt[:, tl], out_cum[0, c, t], out_cum[1, c, t])
                           for c, (ah, tl) in enumerate(chains)]))
        self._view_key, self._view_cache = key, (heads_a, routed_a, chains, steps)
        return self._view_cache

    def _run_fast(self, ext: np.ndarray, cap: np.ndarray, out_y: np.ndarray, out_q: np.ndarray,
                  out_level: np.ndarray, out_cum: np.ndarray | None, heads: Sequence[int],
                  acc: tuple[np.ndarray, ...] | None) -> None:
        """:meth:`run` for the front door (heads only, storage, picks not stock-limited), on cached views."""
        heads_a, routed_a, chains, steps = self._views(out_y, out_q, out_level, out_cum, heads)
        a = self.a_buf
        T = ext.shape[0]
        q_prev, level_prev = self.q, self.level
        routed_prev = [(dst, self.y[:, src]) for dst, src in routed_a]  # last step's upstream output
        cum_prev = [(self.cum[0, c], self.cum[1, c]) for c in range(len(chains))]
        free = np.empty_like(level_prev)
        cap_storage = self.storage_capacity
        ext_heads = [ext[:, :, j] for j in range(len(heads))]
        for t in range(T):
            yt, qt, lt, y_put, y_pick, routed_next, tallies = steps[t]
            for dst, x in zip(heads_a, ext_heads):
                np.copyto(dst, x[t])
            for dst, src in routed_prev:
                np.copyto(dst, src)
            np.add(q_prev, a, out=qt)  # available work
            np.minimum(qt, cap[t], out=yt)
            np.subtract(cap_storage, level_prev, out=free)
            np.minimum(y_put, free, out=y_put)
            np.add(level_prev, y_put, out=lt)
            lt -= y_pick
            qt -= yt  # backlog after the step
            for (ah, ytl, cum_a, cum_d), (pa, pd_) in zip(tallies, cum_prev):
                np.add(pa, ah, out=cum_a)
                np.add(pd_, ytl, out=cum_d)
            cum_prev = [(ca, cd) for _, _, ca, cd in tallies]
            if acc is not None:
                for total, x in zip(acc, (a, yt, qt, lt)):
                    np.add(total, x, out=total)
            routed_prev, q_prev, level_prev = routed_next, qt, lt
        self.y, self.q, self.level = out_y[T - 1].copy(), q_prev.copy(), level_prev.copy()
        if chains:
            self.cum = out_cum[:, :, T - 1].copy()


@dataclass
class ArrayRun:
    """Per-step arrays of :func:`simulate_arrays`, each (T, S, K, B); ``storage_level`` (T, S, B) or None."""

    arrivals: np.ndarray
    throughput: np.ndarray
    backlog: np.ndarray
    storage_level: np.ndarray | None = None


def simulate_arrays(arrivals: np.ndarray, capacity: np.ndarray, *, upstream: Sequence[int] | None = None,
                    storage_capacity: np.ndarray | None = None, storage_initial: np.ndarray | None = None,
                    storage_stages: tuple[int, int] = (PUTAWAY, PICK), stock_limited: bool = False,
                    backlog_initial: np.ndarray | None = None) -> ArrayRun:
    """Run the queue recursion on given arrays (the pure core; see the module docstring for the maths).

    Parameters
    ----------
    arrivals : (T, S, K, B) external work entering each stage per step (units).
    capacity : broadcastable to (T, S, K, B), e.g. (T, S, K, 1): units each stage can process per step.
    upstream : K stage indices feeding each stage (-1 none). Default: the DC chains when K == 5, else none.
    storage_capacity, storage_initial : (S,) units; enables the storage level between ``storage_stages``
        (putaway, pick).
    backlog_initial : broadcastable to (S, K, B).

    Returns
    -------
    ArrayRun with ``arrivals`` (external + upstream), ``throughput``, ``backlog`` after each step.
    """
    x = np.asarray(arrivals, dtype=float)
    if x.ndim != 4:
        raise ValueError(f"arrivals must be (T, S, K, B), got shape {x.shape}")
    T, S, K, B = x.shape
    c = np.asarray(capacity, dtype=float)
    if c.ndim == 3:
        c = c[..., None]
    try:
        np.broadcast_shapes(c.shape, x.shape)
    except ValueError:
        raise ValueError(f"capacity shape {c.shape} does not broadcast to arrivals {x.shape}") from None
    if (c < 0).any() or (x < 0).any():
        raise ValueError("arrivals and capacity must be non-negative")
    if upstream is None:
        upstream = DEFAULT_UPSTREAM if K == K_STAGES else np.full(K, -1)
    up = np.asarray(upstream, dtype=int)
    if up.shape != (K,) or (up >= K).any() or (up == np.arange(K)).any():
        raise ValueError(f"upstream must list K={K} stage indices (-1 for none), got {list(up)}")
    kernel = _Kernel(S, K, B, up, storage_stages if storage_capacity is not None else None, storage_capacity,
                     storage_initial, stock_limited, backlog_initial)
    out = ArrayRun(np.empty_like(x), np.empty_like(x), np.empty_like(x), np.empty((T, S, B)))
    kernel.run(x, np.broadcast_to(c, (T, *c.shape[1:])) if c.shape[0] == 1 else c,
               out.throughput, out.backlog, out.storage_level, out_a=out.arrivals)
    if storage_capacity is None:
        out.storage_level = None
    return out


# ---------------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """Does the plan hold? If not: where and when it first breaks, and by how much.

    ``time`` is the end of the first failing step; ``hour`` counts hours from the start of ``period``.
    ``shortfall_units`` is the extra capacity at ``stage`` (units/day) that would have avoided the breach,
    ``shortfall_hours`` the same as extra operating hours per day at the stage's mean hourly capacity, and
    ``overdue_units`` the peak number of units past the SLA (all at ``Profile.sla_quantile`` over
    replications). ``binding`` says which capacity bound the stage in the failing period: ``labour``
    (staffed hours x productivity) or ``equipment``; ``labour_hours`` is ``shortfall_units`` in labour
    hours per day (``shortfall_units / productivity``; NaN without a labour row).
    """

    feasible: bool
    multiplier: float = 1.0
    site_id: str | None = None
    stage: str | None = None
    chain: str | None = None
    period: int | None = None
    hour: float | None = None
    time: str | None = None
    shortfall_units: float = 0.0
    shortfall_hours: float = 0.0
    overdue_units: float = 0.0
    binding: str | None = None
    labour_hours: float = 0.0
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The verdict as plain JSON data."""
        return asdict(self)

    @classmethod
    def holds(cls, multiplier: float) -> Verdict:
        """The verdict of a plan that meets every SLA at ``multiplier``."""
        return cls(True, multiplier, message=f"feasible at {multiplier:g}×: every DC meets its SLAs")


@dataclass
class SimulationResult:
    """Tables of one simulation (means over replications unless a column says otherwise).

    stage_period : site_id, stage, period, multiplier, arrivals, throughput, capacity, backlog_mean,
        backlog_p95, utilisation. Units per period; backlog_mean is the mean over steps and replications,
        backlog_p95 the 95th percentile over replications of the period's mean backlog; utilisation =
        throughput / capacity. The ``storage`` rows hold putaway into storage (arrivals), picks out
        (throughput), the level (backlog_*) and level / storage capacity (utilisation).
    site : site_id, multiplier, cycle_time_p50_h, cycle_time_p95_h, within_sla_share (order to ship),
        dock_to_stock_p95_h, binding_stage (highest utilisation), shipped_units.
    daily : site_id, multiplier, period, day (0-based from the first simulated day), date, stage, workload
        (arrivals), throughput, capacity (units/day), labour_hours_needed (workload / productivity),
        labour_hours_staffed (staffed hours allocated to the stage).
    breaches : one row per site, chain and multiplier whose SLA breaks: site_id, chain, multiplier, column
        (index of the multiplier), stage, period, hour, time, shortfall_units (units/day), shortfall_hours
        (hours/day), overdue_units, binding, labour_hours (see :class:`Verdict`); from the front doors also
        estimated_units, shortfall_scope and cleared (:func:`clearing_shortfalls`).
    verdicts : one :class:`Verdict` per multiplier.
    """

    stage_period: pd.DataFrame
    site: pd.DataFrame
    daily: pd.DataFrame
    breaches: pd.DataFrame
    verdicts: dict[float, Verdict]
    params: dict[str, Any] = field(default_factory=dict)
    replication_breaches: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    """Per chain: (first judged step with overdue units, blamed stage index), each (S, M, R), -1 when none."""

    @property
    def verdict(self) -> Verdict:
        """The verdict of the first multiplier (of the only one, usually)."""
        return next(iter(self.verdicts.values()))

    @property
    def feasible(self) -> bool:
        """Whether every site and stage met its SLA in the simulation."""
        return all(v.feasible for v in self.verdicts.values())

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (:func:`instances.plain.to_plain`): tables as lists of records, verdicts as dicts."""
        def records(df: pd.DataFrame) -> list[dict[str, Any]]:
            return to_plain(df.astype(object).to_dict(orient="records"))

        return {"verdict": self.verdict.to_dict(), "verdicts": [v.to_dict() for v in self.verdicts.values()],
                "stage_period": records(self.stage_period), "site": records(self.site),
                "daily": records(self.daily.assign(date=self.daily["date"].astype(str))),
                "breaches": records(self.breaches.assign(time=self.breaches["time"].astype(str))),
                "params": self.params}


# ---------------------------------------------------------------------------------------------------
# Inputs from an instance and a plan
# ---------------------------------------------------------------------------------------------------
@dataclass
class SimSetup:
    """Numeric inputs of a run, one row per simulated site (S) and period (P)."""

    site_ids: list[str]
    periods: pd.DataFrame  # period, start, days
    inbound: np.ndarray  # (P, S) units per period
    outbound: np.ndarray  # (P, S)
    rate: np.ndarray  # (S, K) equipment units per hour (count x rate_per_hour)
    hours_per_day: np.ndarray  # (S, K)
    productivity: np.ndarray  # (S, K) units per labour hour (nan: no labour constraint)
    labour_hours: np.ndarray  # (P, S) staffed hours (inf: unconstrained)
    storage_capacity: np.ndarray  # (S,)
    storage_initial: np.ndarray  # (S,) level at the start of the first simulated period
    sla_hours: float
    congestion: float = 0.0  # kappa of the calibration (0: no congestion derate)
    effects: dict[str, float] = field(default_factory=dict)  # calibrated stochastic effects (see Profile)
    absence_by_site: np.ndarray | None = None  # (S,) calibrated absence rate per site (nan: the pooled rate)


def _err(table: str, row: int, column: str, message: str) -> SimulationInputError:
    return SimulationInputError(f"{table}:{row}:{column}: {message}")


def _num(df: pd.DataFrame, col: str, table: str) -> np.ndarray:
    v = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)
    bad = np.flatnonzero(~np.isfinite(v) | (v < 0))
    if len(bad):
        i = int(bad[0])
        raise _err(table, i + 1, col, f"must be a non-negative number, got {df[col].iloc[i]!r}")
    return v


def prepare(instance: Instance, site_throughput: pd.DataFrame, *, capacity: pd.DataFrame | None = None,
            labor: pd.DataFrame | None = None, open_sites: Sequence[str] | None = None,
            periods: Sequence[int] | None = None) -> SimSetup:
    """Check a volume table against the instance and build the numeric inputs (see :func:`simulate`)."""
    name = "site_throughput"
    need = PLAN_TABLES[name]
    missing = [c for c in need if c not in site_throughput.columns]
    if missing:
        raise _err(name, 0, missing[0], "missing required column")
    st = site_throughput.reset_index(drop=True)
    inb, outb = _num(st, "inbound_units", name), _num(st, "outbound_units", name)
    per_all = instance.periods
    per_col = pd.to_numeric(st["period"], errors="coerce")
    known = set(per_all["period"].astype(int))
    for i, p in enumerate(per_col):
        if pd.isna(p) or int(p) not in known:
            raise _err(name, i + 1, "period", f"period {st['period'].iloc[i]} is not a period of instance "
                                              f"{instance.name!r} (1..{len(per_all)})")
    dcs = set(instance.dcs["id"])
    res = instance.resources
    sites = list(dict.fromkeys(str(s) for s in st["site_id"]))
    for i, s in enumerate(st["site_id"]):
        if str(s) not in dcs:
            raise _err(name, i + 1, "site_id", f"site {s!r} is not a DC of instance {instance.name!r}")
    if open_sites is not None:
        sites = [s for s in sites if s in set(open_sites)]
    for s in sites:
        have = set(res.loc[res["site_id"] == s, "stage"])
        lack = [k for k in STAGES_SIM if k not in have]
        if lack:
            raise _err("resources", 0, "stage", f"DC {s!r} has volume in {name} but no {lack[0]} resource")
    if periods is None:
        sel = per_all
    else:
        sel = per_all[per_all["period"].isin([int(p) for p in periods])]
        if len(sel) != len(set(periods)):
            raise _err(name, 0, "period", f"periods {list(periods)} are not all periods of {instance.name!r}")
        if not (np.diff(sel["period"].to_numpy()) == 1).all():
            raise _err(name, 0, "period", f"simulated periods must be consecutive, got {list(periods)}")
    sel = sel.reset_index(drop=True)
    P, S = len(sel), len(sites)
    sidx = {s: i for i, s in enumerate(sites)}
    pidx = {int(p): i for i, p in enumerate(sel["period"])}
    inbound, outbound = np.zeros((P, S)), np.zeros((P, S))
    first = int(sel["period"].iloc[0]) if P else 1
    before = np.zeros(S)  # plan's net stock change before the first simulated period
    for s, p, vi, vo in zip(st["site_id"].astype(str), per_col.astype(int), inb, outb):
        if s not in sidx:
            continue
        if p in pidx:
            inbound[pidx[p], sidx[s]] += vi
            outbound[pidx[p], sidx[s]] += vo
        elif p < first:
            before[sidx[s]] += vi - vo
    # equipment
    rate, hpd = np.zeros((S, K_STAGES)), np.zeros((S, K_STAGES))
    storage_capacity = np.full(S, np.inf)
    r = res[res["site_id"].isin(sites)]
    count = dict(zip(zip(r["site_id"], r["stage"]), r["count"].astype(float)))
    extra: dict[tuple[str, str], float] = {}  # extra operating hours a day (a capacity plan's extra shift)
    if capacity is not None and len(capacity):
        extra_col = (pd.to_numeric(capacity["extra_hours_per_day"], errors="coerce").fillna(0.0)
                     if "extra_hours_per_day" in capacity else pd.Series(0.0, index=capacity.index))
        for i, (s, k, n, e) in enumerate(zip(capacity["site_id"].astype(str), capacity["stage"],
                                             pd.to_numeric(capacity["total_count"], errors="coerce"), extra_col)):
            if pd.isna(n) or n < 0:
                raise _err("capacity", i + 1, "total_count", f"must be a non-negative number, got {n!r}")
            if e < 0:
                raise _err("capacity", i + 1, "extra_hours_per_day", f"must be a non-negative number, got {e!r}")
            if s in sidx:
                count[(s, k)] = float(n)
                extra[(s, k)] = float(e)
    for s, k, rt, h in zip(r["site_id"], r["stage"], r["rate_per_hour"], r["hours_per_day"]):
        if k == "storage":
            storage_capacity[sidx[s]] = count[(s, k)] * float(rt)
        else:
            j = STAGES_SIM.index(k)
            rate[sidx[s], j] = count[(s, k)] * float(rt)
            hpd[sidx[s], j] = min(float(h) + extra.get((s, k), 0.0), 24.0)
    # labour
    lab = instance.labor
    productivity = np.full((S, K_STAGES), np.nan)
    labour_hours = np.full((P, S), np.inf)
    days = sel["days"].to_numpy(dtype=float)
    for row in lab.itertuples(index=False):
        if row.site_id in sidx:
            i = sidx[row.site_id]
            productivity[i] = [float(getattr(row, f"productivity_{k}")) for k in STAGES_SIM]
            weekly = float(row.max_headcount) * float(row.hours_per_person_week) + float(row.max_overtime_hours)
            labour_hours[:, i] = weekly * days / 7.0
    if labor is not None and len(labor):
        hours = sum(_num(labor, c, "labor") for c in ("regular_hours", "overtime_hours", "temp_hours"))
        planned = np.zeros((P, S))
        given = np.zeros((P, S), dtype=bool)
        for s, p, h in zip(labor["site_id"].astype(str), pd.to_numeric(labor["period"]).astype(int), hours):
            if s in sidx and p in pidx:
                planned[pidx[p], sidx[s]] += h
                given[pidx[p], sidx[s]] = True
        labour_hours = np.where(given, planned, labour_hours)
    inv = instance.inventory
    on_hand = inv.groupby("site_id")["on_hand"].sum() if len(inv) else pd.Series(dtype=float)
    storage_initial = np.maximum(np.array([float(on_hand.get(s, 0.0)) for s in sites]) + before, 0.0)
    calibration = instance.meta.get("calibration")
    calibration = calibration if isinstance(calibration, dict) else {}
    congestion = float(calibration.get("congestion") or 0.0)
    effects = {k: float(v) for k, v in (calibration.get("effects") or {}).items() if v is not None}
    by_site = calibration.get("absenteeism_by_site") or {}
    absence = np.array([float(by_site.get(s, np.nan)) for s in sites]) if by_site else None
    return SimSetup(sites, sel[["period", "start", "days"]], inbound, outbound, rate, hpd, productivity,
                    labour_hours, storage_capacity, storage_initial,
                    float(instance.defaults["order_to_ship_sla_hours"]), congestion, effects, absence)


# ---------------------------------------------------------------------------------------------------
# Calendar: profiles per step
# ---------------------------------------------------------------------------------------------------
def _window_share(start_hour: float, length_hours: float, steps_per_day: int) -> np.ndarray:
    """Share of each step of a day that lies in the daily window [start, start + length) (mod 24)."""
    minute = np.arange(1440) / 60.0
    inside = ((minute - start_hour) % 24.0) < length_hours
    return inside.reshape(steps_per_day, -1).mean(axis=1)


def _per_step_of_day(hourly: Sequence[float], steps_per_day: int) -> np.ndarray:
    """Hourly weights summed into steps of a day (minute resolution)."""
    per_minute = np.repeat(np.asarray(hourly, dtype=float) / 60.0, 60)
    return per_minute.reshape(steps_per_day, -1).sum(axis=1)


@dataclass
class _Calendar:
    steps_per_day: int
    step_hours: float
    open_share: np.ndarray  # (steps_per_day, S, K)
    order_step: np.ndarray  # (steps_per_day,)
    slot_step: np.ndarray  # (steps_per_day,) trucks slots per step
    slot_index: np.ndarray  # step of day of each dock slot
    shift_step: np.ndarray  # (steps_per_day, S) staffed share of each step


def _calendar(setup: SimSetup, profile: Profile, step_hours: float) -> _Calendar:
    spd = 24.0 / step_hours
    if step_hours <= 0 or abs(spd - round(spd)) > 1e-9 or 1440 % round(spd):
        raise ValueError(f"step_hours={step_hours}: a day must be a whole number of steps of whole minutes")
    spd = int(round(spd))
    S = len(setup.site_ids)
    open_share = np.zeros((spd, S, K_STAGES))
    for h in np.unique(setup.hours_per_day):
        share = _window_share(profile.open_hour, float(h), spd)
        open_share[:, setup.hours_per_day == h] = share[:, None]
    if profile.cutoff_hour is not None:
        to_cutoff = (profile.cutoff_hour - profile.open_hour) % 24.0 or 24.0
        open_share[:, :, OUTBOUND_DOCK] *= _window_share(profile.open_hour, to_cutoff, spd)[:, None]
    shifts = ([profile.shift_hours] * S if profile.shift_hours is not None
              else [float(h) if h > 0 else 24.0 for h in setup.hours_per_day.max(axis=1)])
    slots = np.zeros(spd)
    np.add.at(slots, (np.asarray(profile.dock_slots) // step_hours).astype(int), 1.0)
    return _Calendar(spd, step_hours, open_share, _per_step_of_day(profile.intraday, spd), slots,
                     (np.sort(np.asarray(profile.dock_slots)) // step_hours).astype(int),
                     np.stack([_window_share(profile.open_hour, h, spd) for h in shifts], axis=1))


# ---------------------------------------------------------------------------------------------------
# The batched runner
# ---------------------------------------------------------------------------------------------------
def _poisson(rng: np.random.Generator, lam: np.ndarray, exact_below: float) -> np.ndarray:
    """Poisson counts (float32); exact below ``exact_below``, normal approximation (rounded, >= 0) above."""
    lam = np.asarray(lam, dtype=np.float32)
    if lam.size == 0:
        return lam.copy()
    if lam.max() < exact_below:
        return rng.poisson(lam).astype(np.float32)
    out = rng.standard_normal(lam.shape, dtype=np.float32)
    out *= np.sqrt(lam)
    out += lam
    np.maximum(out, 0.0, out=out)
    np.rint(out, out=out)
    if lam.min() < exact_below:
        small = lam < exact_below
        out[small] = rng.poisson(lam[small])
    return out


def _quantile_hist(hist: np.ndarray, q: float) -> np.ndarray:
    """Smallest bin index whose cumulative weight reaches q (last axis = bins); nan for empty rows."""
    cum = np.cumsum(hist, axis=-1)
    total = cum[..., -1:]
    idx = (cum < q * total - 1e-9 * total).sum(axis=-1).astype(float)
    idx[total[..., 0] <= 0] = np.nan
    return idx


def _overdue_tolerance(cum_arrivals: np.ndarray) -> float:
    """Units below which a chain's overdue count is rounding noise: 1e-9 of the largest cumulative arrivals (over
    sites and batch columns) at the end of the chunk, plus 1e-6."""
    return 1e-9 * float(cum_arrivals.max(initial=0.0)) + 1e-6


class _ChainTracker:
    """FIFO bookkeeping of one chain across chunks: overdue units, SLA breaches, cycle-time histogram.

    Cumulative head arrivals of the last ``lookback`` steps are kept in a ring buffer (row ``g % lookback``
    holds global step g). Cycle times are histogrammed from the first ``cycle_reps`` replications of every
    multiplier (a documented subsample bounding the cost of the FIFO matching; all when fewer).
    """

    def __init__(self, S: int, M: int, R: int, sla_steps: int, lookback: int, max_chunk: int,
                 cycle_reps: int = 10) -> None:
        self.S, self.M, self.R, self.L, self.W = S, M, R, sla_steps, lookback
        B = M * R
        self.ring = np.zeros((lookback, S, B))
        self.last_D = np.zeros((S, B))  # cumulative departures at the end of the last chunk
        self.last_empty = np.full((S, B), -1.0)
        self.max_overdue = np.zeros((S, B))
        self.max_rate = np.zeros((S, B))
        self.nbins = lookback + max_chunk + 2
        self.rc = min(R, cycle_reps)
        self.cycle_hist = np.zeros((S, M, self.nbins))
        self.first_breach = np.full((S, M), -1)
        self.first_step_in_chunk = np.full((S, M), -1)
        self.overdue = np.zeros((0, S, B))
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []  # subsampled cumulative counts since the last flush
        n_sub = S * M * self.rc
        self.sub_A = np.zeros((n_sub, lookback))  # the subsample's cumulative arrivals of the last lookback steps
        self.sub_D = np.zeros((n_sub, 1))
        self.judge_from = 0  # steps before this global step are a warm-up: their overdue units are not judged
        self.first_late = np.full((S, B), -1)  # per replication: first judged step with overdue units
        self.first_late_in_chunk = np.full((S, B), -1)
        self.new_late = np.zeros((S, B), dtype=bool)
        self.late_stage = np.full((S, B), -1)  # per replication: the stage blamed at its first late step
        self.tolerances: dict[int, float] | None = None  # per chunk start: the overdue test's tolerance, when shared

    def take(self, keep: np.ndarray) -> None:
        """Keep sites ``keep`` only (indices; between chunks, with no cycle times pending)."""
        if self.pending:
            raise ValueError("cycle times pending: flush before dropping sites")
        for name in ("last_D", "last_empty", "max_overdue", "max_rate", "cycle_hist", "first_breach",
                     "first_step_in_chunk", "first_late", "first_late_in_chunk", "new_late", "late_stage"):
            setattr(self, name, getattr(self, name)[keep])
        self.ring = self.ring[:, keep]
        per_site = self.M * self.rc
        self.sub_A = self.sub_A.reshape(self.S, per_site, -1)[keep].reshape(len(keep) * per_site, -1)
        self.sub_D = self.sub_D.reshape(self.S, per_site, -1)[keep].reshape(len(keep) * per_site, -1)
        self.overdue = np.zeros((0, len(keep), self.M * self.R))
        self.S = len(keep)

    def _sub(self, x: np.ndarray) -> np.ndarray:
        """(T, S, B) -> (S * M * rc, T): the series of the cycle-time subsample, in (s, m, r) order."""
        S, M, R = self.S, self.M, self.R
        x = x.reshape(len(x), S, M, R)[..., :self.rc]
        return x.reshape(len(x), -1).T.copy()  # a copy: the kernel reuses its buffers

    def _overdue(self, cumA: np.ndarray, cumD: np.ndarray, t0: int) -> tuple[Any, np.ndarray]:
        """The chunk's overdue-unit tolerance and overdue units A(t - L) - D(t) (Tc, S, B), A(t - L) of steps
        before the chunk taken from the ring of recent arrivals. A shared run (:class:`SharedInputs`) takes the
        tolerance of all the setup's sites."""
        Tc, L, W = cumA.shape[0], self.L, self.W
        tol = _overdue_tolerance(cumA[-1]) if self.tolerances is None else self.tolerances[t0]
        overdue = np.empty_like(cumD)
        nh = min(L, Tc)
        np.subtract(self.ring[(t0 - L + np.arange(nh)) % W], cumD[:nh], out=overdue[:nh])
        if Tc > L:
            np.subtract(cumA[:Tc - L], cumD[L:], out=overdue[L:])
        return tol, overdue

    def _remember(self, cumA: np.ndarray, t0: int) -> None:
        """Keep the chunk's last W steps of cumulative arrivals in the ring (the next chunks' A(t - L))."""
        Tc, W = cumA.shape[0], self.W
        keep = min(Tc, W)
        self.ring[(t0 + Tc - keep + np.arange(keep)) % W] = cumA[Tc - keep:]

    def update(self, cumA: np.ndarray, cumD: np.ndarray, t0: int, step_hours: float, fail_share: float,
               cycle: bool) -> np.ndarray:
        """Feed one chunk (global steps t0..t0+Tc-1) of cumulative head arrivals and tail departures (Tc, S, B).

        Returns the (S, M) mask of site x multiplier columns whose SLA breaks for the first time here.
        """
        Tc = cumA.shape[0]
        S, M, R = self.S, self.M, self.R
        tol, overdue = self._overdue(cumA, cumD, t0)
        empty = np.subtract(cumA, cumD) < tol
        peak = overdue.max(axis=0)  # (S, B)
        new = np.zeros((S, M), dtype=bool)
        self.first_step_in_chunk[:] = -1
        self.new_late[...] = False
        self.overdue = overdue
        if t0 >= self.judge_from and (peak > tol).any():
            late = overdue > tol
            overdue[~late] = 0.0
            rep_late = late.any(axis=0)
            np.logical_and(rep_late, self.first_late < 0, out=self.new_late)
            if self.new_late.any():
                self.first_late_in_chunk = np.where(self.new_late, late.argmax(axis=0), -1)
                self.first_late[self.new_late] = t0 + self.first_late_in_chunk[self.new_late]
            failing = late.reshape(Tc, S, M, R).mean(axis=-1) > fail_share
            new = failing.any(axis=0) & (self.first_breach < 0)
            self.first_step_in_chunk = np.where(new, failing.argmax(axis=0), -1)
            self.first_breach[new] = t0 + self.first_step_in_chunk[new]
            # extra capacity: the chunk's peak overdue over the time since the chain was last empty
            at = overdue.argmax(axis=0)  # (S, B) step of the peak
            steps = np.arange(Tc)[:, None, None]
            seen = np.where(empty & (steps <= at), steps, -1).max(axis=0)
            last_empty = np.where(seen >= 0, t0 + seen, self.last_empty)
            rate = np.maximum(peak, 0.0) / (np.maximum(t0 + at - last_empty, 1.0) * (step_hours / 24.0))
            np.maximum(self.max_overdue, peak, out=self.max_overdue)
            np.maximum(self.max_rate, np.where(peak > tol, rate, 0.0), out=self.max_rate)
        has_empty = empty.any(axis=0)
        last = (Tc - 1) - empty[::-1].argmax(axis=0)
        self.last_empty = np.where(has_empty, t0 + last, self.last_empty)
        if cycle:
            self.pending.append((self._sub(cumA), self._sub(cumD)))
        self._remember(cumA, t0)
        self.last_D = cumD[-1].copy()
        return new

    def update_breaches(self, cumA: np.ndarray, cumD: np.ndarray, t0: int, fail_share: float) -> np.ndarray:
        """:meth:`update` for the first breaches only (``first_breach``, ``first_step_in_chunk``, ``overdue``, the
        same as :meth:`update` leaves them): what the search for the capacity that clears a breach reads. Shortfall
        estimates, per-replication breaches and cycle times are not kept."""
        Tc = cumA.shape[0]
        S, M, R = self.S, self.M, self.R
        tol, overdue = self._overdue(cumA, cumD, t0)
        new = np.zeros((S, M), dtype=bool)
        self.first_step_in_chunk[:] = -1
        self.overdue = overdue
        if t0 >= self.judge_from:
            late = overdue > tol
            if late.any():  # the share of replications late, as update's mean: a count of 0/1 over R, rounded once
                failing = np.count_nonzero(late.reshape(Tc, S, M, R), axis=-1) / R > fail_share
                new = failing.any(axis=0) & (self.first_breach < 0)
                if new.any():
                    overdue[~late] = 0.0
                    self.first_step_in_chunk = np.where(new, failing.argmax(axis=0), -1)
                    self.first_breach[new] = t0 + self.first_step_in_chunk[new]
        self._remember(cumA, t0)
        return new

    def flush_cycle(self) -> None:
        """Histogram the cycle times (steps) of the departures fed since the last flush, weighted by units.

        FIFO matching: the middle unit of each step's departures is found among cumulative arrivals with one
        ``searchsorted`` over all series at once (each series shifted by its own offset to keep them apart).
        """
        if not self.pending:
            return
        W, M, R, rc, S = self.W, self.M, self.R, self.rc, self.S
        A = np.concatenate([p[0] for p in self.pending], axis=1)
        cd = np.concatenate([self.sub_D] + [p[1] for p in self.pending], axis=1)
        self.pending = []
        H = np.concatenate([self.sub_A, A], axis=1)  # (N, W + Tc)
        self.sub_A = H[:, -W:].copy()
        self.sub_D = cd[:, -1:].copy()
        n_series, width = H.shape
        dd = np.diff(cd, axis=1)
        # only steps with departures weigh (cumulative counts never decrease, so a step without departures adds
        # +0.0 to its bin, which changes no sum): the others are not matched
        row, col = np.nonzero(dd > 0)
        dd = dd[row, col]
        mid = cd[row, col + 1] - dd / 2.0  # the middle unit of each step's departures
        span = float(H[:, -1].max(initial=0.0)) + 1.0
        offset = np.arange(n_series, dtype=float) * span
        H += offset[:, None]
        mid += offset[row] - 1e-7
        j = np.searchsorted(H.ravel(), mid, side="left")
        j -= row * width
        delay = W + col - j + 1  # steps, arrival step to departure step inclusive
        np.clip(delay, 1, self.nbins - 1, out=delay)
        delay[j <= 0] = self.nbins - 1  # arrived before the lookback window: overflow bin
        sm = row // rc  # series order is (s, m, r)
        self.cycle_hist += np.bincount(sm * self.nbins + delay, weights=dd,
                                       minlength=S * M * self.nbins).reshape(S, M, self.nbins) * (R / rc)


def _holdings_stage(q: np.ndarray, y: np.ndarray, overdue: np.ndarray, stages: tuple[int, ...]) -> np.ndarray:
    """Index into ``stages`` of the stage whose queue holds most overdue units; q, y (n, K, R), overdue (n, R).

    The oldest units are the most downstream: the tail queue, then the units in transit into it, then the
    queue before it, and so on; overdue units are allocated in that order. Units in transit are moving, so
    they are not blamed on a stage; when no queue holds overdue units, the longest queue is blamed.
    """
    parts, owner = [], []
    for pos in range(len(stages) - 1, -1, -1):
        parts.append(q[:, stages[pos]])
        owner.append(pos)
        if pos > 0:
            parts.append(y[:, stages[pos - 1]])
            owner.append(-1)
    hold = np.stack(parts, axis=1)  # (n, positions, R), oldest first
    before = np.cumsum(hold, axis=1) - hold
    alloc = np.clip(overdue[:, None, :] - before, 0.0, hold).sum(axis=-1)  # (n, positions)
    queued = np.array(owner) >= 0
    alloc_q = np.where(queued[None, :], alloc, -1.0)
    longest = np.array(owner)[queued][np.argmax(hold[:, queued].sum(axis=-1), axis=1)]
    blamed = np.array(owner)[np.argmax(alloc_q, axis=1)]
    return np.where(alloc_q.max(axis=1) > 0, blamed, longest)


def _deadline_share(setup: SimSetup, cal: _Calendar, profile: Profile, step_hours: float) -> np.ndarray:
    """(S, K) share of a day's staffed hours that lie before the SLA deadline of the work carried into the day.

    Inbound work carried into a day arrived at the last dock slot the day before and is due
    ``dock_to_stock_sla_hours`` later; orders arrive until midnight and are due ``sla_hours`` later. As the SLA
    is judged (a unit that arrived in step j is overdue at the end of step j + SLA/step) the step that starts
    at the due hour still counts at the chain's tail, and a unit spends at least one step per stage: a stage k
    places before the tail must be done k steps earlier.
    """
    due = {"inbound": max(profile.dock_slots) + profile.dock_to_stock_sla_hours - 24.0, "order": setup.sla_hours}
    staff = cal.shift_step  # (steps_per_day, S)
    start = np.arange(cal.steps_per_day) * step_hours
    out = np.ones((len(setup.site_ids), K_STAGES))
    for chain, stages in CHAINS.items():
        for pos, k in enumerate(stages):
            last = due[chain] - (len(stages) - 1 - pos) * step_hours  # start of the stage's last useful step
            before = (staff * (start <= last + 1e-9)[:, None]).sum(axis=0) / np.maximum(staff.sum(axis=0), 1e-12)
            out[:, k] = np.clip(before, 1e-3, 1.0)
    return out


def _not_passed(waiting: np.ndarray) -> np.ndarray:
    """(..., K) units waiting at each stage -> units that have not yet passed each stage (waiting at it or at a
    stage before it in its chain)."""
    out = np.array(waiting, dtype=float, copy=True)
    for stages in CHAINS.values():
        out[..., list(stages)] = np.cumsum(out[..., list(stages)], axis=-1)
    return out


def _period_inputs(setup: SimSetup, cal: _Calendar, profile: Profile, ip: int, nd: int, step_hours: float,
                   carry: np.ndarray | None = None) -> tuple[np.ndarray, ...]:
    """Expected work shares and capacity of period ``ip`` (nd days).

    ``carry`` (S, K): units expected to wait at each stage when the period starts (:func:`_fluid_carry`, the
    same for every replication and multiplier); the units waiting at a stage or before it in its chain (they
    still have to pass it) count as the stage's work when staffed hours are shared among stages, so work
    carried over from the day before is staffed even on a day the plan sends the stage nothing -- at the
    stages after the one it waits at too (the inbound dock's evening trucks also need putaway tomorrow) --
    weighted by 1 / the share of the day's staffed hours before its SLA deadline (:func:`_deadline_share`:
    with the work processed first in, the carried units then leave before they are due).

    Returns w_out, w_in (Tc,) shares of the period's orders / inbound per step; dow (nd,) weekdays;
    cap (Tc, S, K) units per step (equipment and labour, the tighter); staffed (Tc, S) labour hours per step;
    share (S, K) each stage's share of staffed hours.
    """
    pstart = pd.Timestamp(setup.periods["start"].iloc[ip])
    dow = np.array([(pstart + pd.Timedelta(days=i)).weekday() for i in range(nd)])
    w_out = (np.asarray(profile.weekday)[dow][:, None] * cal.order_step[None, :]).ravel()
    w_in = (np.asarray(profile.inbound_weekday)[dow][:, None] * cal.slot_step[None, :]).ravel()
    w_staff = (np.asarray(profile.staffing_weekday)[dow][:, None, None] * cal.shift_step[None]).reshape(-1, len(
        setup.site_ids))
    w_out, w_in = (w / w.sum() if w.sum() > 0 else w for w in (w_out, w_in))
    w_staff = w_staff / np.where(w_staff.sum(axis=0) > 0, w_staff.sum(axis=0), 1.0)
    equip = np.tile(cal.open_share, (nd, 1, 1)) * (setup.rate * step_hours)[None]
    prod = np.where(np.isnan(setup.productivity), np.inf, setup.productivity)
    vol = np.where(np.isin(np.arange(K_STAGES), (INBOUND_DOCK, PUTAWAY))[None, :],
                   setup.inbound[ip][:, None], setup.outbound[ip][:, None])  # (S, K) plan volume per stage
    if carry is not None:  # carried work is urgent: done within the shift's part before its deadline
        vol = vol + _not_passed(carry) / _deadline_share(setup, cal, profile, step_hours)
    need = vol / prod
    tot = need.sum(axis=1, keepdims=True)
    share = np.where(tot > 0, need / np.where(tot > 0, tot, 1.0), 1.0 / K_STAGES)
    with np.errstate(invalid="ignore"):  # no staffing x unlimited hours = 0; unlimited x share = unlimited
        staffed = np.nan_to_num(w_staff * setup.labour_hours[ip][None, :], nan=0.0, posinf=np.inf)
        labour = staffed[:, :, None] * share[None] * prod[None]
    labour = np.where(np.isnan(labour), np.inf, labour)
    return (w_out, w_in, dow, np.minimum(equip, labour), staffed, share, labour.sum(axis=0) < equip.sum(axis=0),
            labour)


def _fluid_carry(setup: SimSetup, cal: _Calendar, profile: Profile, step_hours: float) -> np.ndarray:
    """(P, S, K) units expected to wait at each stage when each period starts (0 for the first).

    A deterministic fluid pass over the expected arrivals (no noise, multiplier 1) and each step's capacity
    shared by the period's planned volume: ``y = min(q + a, c)``, ``q += a - y``, a stage's arrivals being the
    head's external work or its upstream stage's output. Deterministic, so every replication and multiplier of
    a batch shares the same staffing split (common random numbers and independent batch columns are kept).
    A unit that left a stage in a period's last step reaches the next stage in the next period's first step:
    it is counted as waiting there (and the pass routes it, as the kernel does).
    """
    P, S = len(setup.periods), len(setup.site_ids)
    out = np.zeros((P, S, K_STAGES))
    q = np.zeros((S, K_STAGES))
    heads = DEFAULT_UPSTREAM < 0
    up = np.where(heads, 0, DEFAULT_UPSTREAM)
    y = np.zeros((S, K_STAGES))
    for ip, days in enumerate(setup.periods["days"].to_numpy(dtype=float)):
        out[ip] = q + np.where(heads[None, :], 0.0, y[:, up])  # in transit into each stage
        if ip == P - 1:
            break
        w_out, w_in, _, cap, _, _, _, _ = _period_inputs(setup, cal, profile, ip, int(round(days)), step_hours)
        cap = np.where(np.isfinite(cap), cap, 1e18)
        ext_in, ext_out = w_in[:, None] * setup.inbound[ip][None, :], w_out[:, None] * setup.outbound[ip][None, :]
        for t in range(cap.shape[0]):
            ext = np.where(np.arange(K_STAGES)[None, :] == INBOUND_DOCK, ext_in[t][:, None], ext_out[t][:, None])
            a = np.where(heads[None, :], ext, y[:, up])
            y = np.minimum(q + a, cap[t])
            q = q + a - y
    return out


def carry_shares(instance: Instance, *, profile: Profile | None = None, step_hours: float = 1.0,
                 periods: int = 4) -> pd.DataFrame:
    """Share of a period's work that each DC stage still holds when the next period starts, at full load.

    What the MILPs need to describe the same DC as the simulator: a period's work is not all done within the
    period (inbound trucks arrive until the last dock slot, orders arrive through the evening and the night,
    each stage passes its output on one step later), so part of it is carried into the next period, where it
    is staffed and processed. Measured with the simulator's own deterministic fluid pass
    (:func:`_fluid_carry`) on a steady plan: every period the same volume per chain, each side's smallest
    equipment capacity, staffed with exactly the hours that volume needs (labour and equipment both tight:
    the shape of a fully loaded day). The volume scales out (the fluid pass is linear when capacity is
    proportional to the volume), so the share holds for any day the MILP plans at full load.

    Returns one row per DC (with every flow stage's resource) and flow stage: ``site_id``, ``stage``,
    ``waiting_share`` (units waiting at the stage when period ``periods`` starts / the chain's volume per
    period) and ``carry_share`` (the same, summed over the stage and the stages before it in its chain: the
    units that have not yet passed the stage, which the simulator staffs it for) and ``deadline_share`` (the
    share of a day's staffed hours that lie before the SLA deadline of the work carried into it,
    :func:`_deadline_share`; the simulator staffs carried work by its hours / that share).
    """
    profile = profile or Profile()
    res = instance.resources
    per = instance.periods["period"].astype(int).to_numpy()[:max(2, periods)]
    days = instance.periods["days"].astype(float).to_numpy()[:len(per)]
    sites = [s for s in instance.dcs["id"].astype(str)
             if set(STAGES_SIM) <= set(res.loc[(res["site_id"] == s) & (res["count"] > 0), "stage"])]
    columns = ["site_id", "stage", "waiting_share", "carry_share", "deadline_share"]
    if not sites or len(per) < 2:
        return pd.DataFrame(columns=columns)
    r = res[res["site_id"].isin(sites) & res["stage"].isin(STAGES_SIM)]
    daily = (r["count"] * r["rate_per_hour"] * r["hours_per_day"].clip(upper=24.0)).to_numpy(dtype=float)
    side = np.where(r["stage"].isin([STAGES_SIM[k] for k in CHAINS["inbound"]]),
                    "inbound", "order")
    vol = pd.DataFrame({"site_id": r["site_id"].to_numpy(), "side": side, "cap": daily}).groupby(
        ["site_id", "side"])["cap"].min().unstack()
    v_in = vol["inbound"].reindex(sites).to_numpy(dtype=float)
    v_out = vol["order"].reindex(sites).to_numpy(dtype=float)
    st = pd.DataFrame({"site_id": np.repeat(sites, len(per)), "period": np.tile(per, len(sites)),
                       "inbound_units": np.repeat(v_in, len(per)) * np.tile(days, len(sites)),
                       "outbound_units": np.repeat(v_out, len(per)) * np.tile(days, len(sites))})
    lab = instance.labor.set_index("site_id")
    labor = None
    staffed = [s for s in sites if s in lab.index]
    if staffed:
        def per_unit(site: str, stages: tuple[int, ...]) -> float:
            prod = [float(lab.at[site, f"productivity_{STAGES_SIM[k]}"]) for k in stages]
            return sum(1.0 / p for p in prod if p > 0)
        hours = {s: v_in[i] * per_unit(s, CHAINS["inbound"]) + v_out[i] * per_unit(s, CHAINS["order"])
                 for i, s in enumerate(sites) if s in lab.index}
        labor = pd.DataFrame({"site_id": np.repeat(staffed, len(per)), "period": np.tile(per, len(staffed)),
                              "regular_hours": np.repeat([hours[s] for s in staffed], len(per))
                              * np.tile(days, len(staffed)),
                              "overtime_hours": 0.0, "temp_hours": 0.0})
    setup = prepare(instance, st, labor=labor, periods=per)
    cal = _calendar(setup, profile, step_hours)
    carry = _fluid_carry(setup, cal, profile, step_hours)[-1]  # (S, K) at the start of the last period
    volume = np.where(np.isin(np.arange(K_STAGES), CHAINS["inbound"])[None, :], v_in[:, None], v_out[:, None])
    volume = volume * days[-2]
    share = np.where(volume > 0, carry / np.where(volume > 0, volume, 1.0), 0.0)
    deadline = _deadline_share(setup, cal, profile, step_hours)
    return pd.DataFrame({"site_id": np.repeat(setup.site_ids, K_STAGES), "stage": np.tile(STAGES_SIM, len(sites)),
                         "waiting_share": share.ravel(), "carry_share": _not_passed(share).ravel(),
                         "deadline_share": deadline.ravel()})


def hourly_inputs(setup: SimSetup, profile: Profile | None = None, step_hours: float = 1.0
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Expected orders and inbound units per step (T, S) and capacity per step (T, S, K) of a whole setup.

    What the simulator feeds its queues before noise (inbound as spread over the dock slots); for
    reference models, benchmarks and plots.
    """
    profile = profile or Profile()
    cal = _calendar(setup, profile, step_hours)
    outs, ins, caps = [], [], []
    for ip, days in enumerate(setup.periods["days"].to_numpy(dtype=float)):
        w_out, w_in, _, cap, _, _, _, _ = _period_inputs(setup, cal, profile, ip, int(round(days)), step_hours)
        outs.append(w_out[:, None] * setup.outbound[ip][None, :])
        ins.append(w_in[:, None] * setup.inbound[ip][None, :])
        caps.append(cap)
    return np.concatenate(outs), np.concatenate(ins), np.concatenate(caps)


def site_seed(site_id: str) -> int:
    """A stable number for a site id: each site draws its own random stream (see :func:`_draw_arrivals`)."""
    return zlib.crc32(str(site_id).encode("utf-8"))


def _draw_arrivals(setup: SimSetup, cal: _Calendar, profile: Profile, ip: int, nd: int, R: int, seed: int,
                   w_out: np.ndarray, w_in: np.ndarray, day_weight_in: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orders and inbound units per step (Tc, S, R) of period ``ip`` at multiplier 1.

    Every site draws from its own stream ``default_rng([seed, period, site_seed(site_id)])``, so a site sees the
    same noise whichever other sites a plan opens (common random numbers across plans) and whatever
    multipliers are batched. Inbound: whole trucks per day (Poisson), spread in turn over the dock slots.
    """
    spd, S = cal.steps_per_day, len(setup.site_ids)
    Tc = nd * spd
    lam_out = w_out[:, None] * setup.outbound[ip][None, :]  # (Tc, S)
    if profile.noise == "deterministic":
        x_in = w_in[:, None] * setup.inbound[ip][None, :]
        return (np.broadcast_to(lam_out[..., None], (Tc, S, R)), np.broadcast_to(x_in[..., None], (Tc, S, R)))
    period = int(setup.periods["period"].iloc[ip])
    day_in = day_weight_in / day_weight_in.sum() if day_weight_in.sum() > 0 else np.zeros(nd)
    lam_trucks = day_in[:, None] * setup.inbound[ip][None, :] / profile.truck_units  # (nd, S)
    x_out = np.empty((Tc, S, R), dtype=np.float32)
    trucks = np.empty((nd, S, R), dtype=np.float32)
    overdispersed = profile.noise == "overdispersed" and profile.daily_cv > 0
    k = 1.0 / profile.daily_cv ** 2 if overdispersed else 1.0
    for j, site in enumerate(setup.site_ids):
        rng = np.random.default_rng([seed, period, site_seed(site)])
        lam = np.broadcast_to(lam_out[:, j, None].astype(np.float32), (Tc, R))
        lam_t = np.broadcast_to(lam_trucks[:, j, None], (nd, R))
        if overdispersed:
            g_out, g_in = rng.gamma(k, 1.0 / k, size=(2, nd, 1, R)).astype(np.float32)
            lam = (lam.reshape(nd, spd, R) * g_out).reshape(Tc, R)
            lam_t = lam_t * g_in[:, 0]
        x_out[:, j] = _poisson(rng, lam, profile.exact_poisson_below)
        trucks[:, j] = _poisson(rng, lam_t, profile.exact_poisson_below)
    x_in = np.zeros((nd, spd, S, R), dtype=np.float32)
    n_slots = len(cal.slot_index)
    for i, step in enumerate(cal.slot_index):
        x_in[:, step] += (trucks // n_slots + (i < trucks % n_slots)) * profile.truck_units
    return x_out, x_in.reshape(Tc, S, R)


def _subset(setup: SimSetup, idx: np.ndarray) -> SimSetup:
    """The setup restricted to sites ``idx``."""
    return SimSetup([setup.site_ids[i] for i in idx], setup.periods, setup.inbound[:, idx], setup.outbound[:, idx],
                    setup.rate[idx], setup.hours_per_day[idx], setup.productivity[idx], setup.labour_hours[:, idx],
                    setup.storage_capacity[idx], setup.storage_initial[idx], setup.sla_hours, setup.congestion,
                    setup.effects, None if setup.absence_by_site is None else setup.absence_by_site[idx])


def _merge(setup: SimSetup, mult: np.ndarray, parts: list[SimulationResult]) -> SimulationResult:
    """One result from results over disjoint groups of sites, ordered as a single run orders it."""
    order = {s: i for i, s in enumerate(setup.site_ids)}

    def cat(name: str, keys: list[str]) -> pd.DataFrame:
        df = pd.concat([getattr(p, name) for p in parts], ignore_index=True)
        if df.empty:
            return df
        tmp = df.assign(_site=df["site_id"].map(order))
        if name == "stage_period":
            tmp["_storage"] = tmp["stage"] == "storage"
        return tmp.sort_values([*keys, "_site"], kind="stable").drop(columns=[c for c in tmp if c.startswith("_")]
                                                                     ).reset_index(drop=True)

    verdicts: dict[float, Verdict] = {}
    lists = [list(p.verdicts.values()) for p in parts]
    for m in range(mult.shape[1]):
        label = float(mult[0, m]) if (mult[:, m] == mult[0, m]).all() else float(m)
        failed = [v[m] for v in lists if not v[m].feasible]
        if failed:
            first = min(failed, key=lambda v: (pd.Timestamp(v.time), order[v.site_id], v.chain))
            verdicts[label] = replace(first, multiplier=label)
        else:
            verdicts[label] = Verdict.holds(label)
    nonempty = [p.breaches for p in parts if len(p.breaches)]
    breaches = pd.concat(nonempty, ignore_index=True) if nonempty else parts[0].breaches
    breaches = breaches.sort_values(["column", "time", "site_id"], kind="stable").reset_index(drop=True)
    rep = {c: tuple(np.concatenate([p.replication_breaches[c][i] for p in parts]) for i in range(2))
           for c in parts[0].replication_breaches}  # groups are consecutive sites, in order
    return SimulationResult(cat("stage_period", ["period", "_storage"]), cat("site", []),
                            cat("daily", ["period", "day"]), breaches, verdicts, parts[0].params, rep)


SHARED_BYTES = 1 << 29
"""Most bytes of per-period inputs a simulation keeps for the shortfall search (:class:`SharedInputs`): above it
they are computed again (the median network's 228 open DCs x 364 days x 10 replications need about 330 MB)."""


class SharedInputs:
    """What repeated runs of one setup share: the shortfall search (:func:`clearing_shortfalls`) simulates the same
    sites with the same seed, replications and multiplier again and again, only the extra capacity changes.

    :meth:`build` computes, without simulating, per period the expected work shares, staffing and capacity
    (:func:`_period_inputs`) and the drawn arrivals (:func:`_draw_arrivals`), the fluid carry
    (:func:`_fluid_carry`), and each chain's tolerance of the overdue test per day (it scales with the largest
    cumulative arrivals over all the setup's sites, which capacity does not change; running sums in the kernel's
    order of additions, so the same to the bit). A run given them (``run_setup(shared=)``) may simulate only some
    of the sites (``sites``) and stop once chosen chains have broken (``stop_when``): every input is per site and
    the tolerance is that of all the sites, so each site's SLA breaches come out exactly as in a plain run of every
    site. Per-period arrays are kept up to ``max_bytes`` (above it each run computes them again).
    """

    def __init__(self, key: tuple, periods: dict[int, tuple[np.ndarray, ...]], carry: np.ndarray,
                 tolerances: dict[str, dict[int, float]]) -> None:
        self.key, self.periods, self.carry, self.tolerances = key, periods, carry, tolerances

    @staticmethod
    def fits(S: int, R: int, steps: int, max_bytes: float) -> bool:
        """Whether per-period arrays of S sites, R replications over ``steps`` steps fit ``max_bytes`` (arrivals
        float32, capacity and labour float64 per stage, staffed hours)."""
        return S * steps * (2 * 4 * R + 2 * 8 * K_STAGES + 8) <= max_bytes

    @classmethod
    def build(cls, setup: SimSetup, multipliers: np.ndarray, *, replications: int, seed: int,
              step_hours: float = 1.0, profile: Profile | None = None, period_weight: np.ndarray | None = None,
              max_bytes: float = SHARED_BYTES, kept: tuple[dict, np.ndarray] | None = None) -> SharedInputs:
        """The shared inputs of runs of ``setup`` with these arguments (multipliers (M,) or per site (S, M)).

        ``kept``: the inputs a run of a setup with more sites kept (``run_setup(keep_inputs=)``, same seed,
        replications, step and profile) and the indices of this setup's sites in it: taken instead of computed
        again (every one is per site)."""
        profile = profile or Profile()
        S, P, R = len(setup.site_ids), len(setup.periods), int(replications)
        mult = _site_multipliers(np.asarray(multipliers, dtype=float), S)
        M = mult.shape[1]
        pw = np.ones(P) if period_weight is None else np.asarray(period_weight, dtype=float)
        cal = _calendar(setup, profile, step_hours)
        spd = cal.steps_per_day
        days = np.round(setup.periods["days"].to_numpy(dtype=float)).astype(int)
        held, idx = kept if kept is not None else ({}, None)
        carry = _take_sites(held["carry"], idx, 1) if "carry" in held else _fluid_carry(setup, cal, profile,
                                                                                        step_hours)
        keep = cls.fits(S, R, int(days.sum()) * spd, max_bytes)
        in_weekday = np.asarray(profile.inbound_weekday, dtype=float)
        periods: dict[int, tuple[np.ndarray, ...]] = {}
        tolerances: dict[str, dict[int, float]] = {c: {} for c in CHAIN_NAMES}
        cum = {c: np.zeros((S, M * R)) for c in CHAIN_NAMES}
        t0 = 0
        for ip in range(P):
            nd = int(days[ip])
            Tc = nd * spd
            work = (_take_work(held[ip], idx) if ip in held else
                    _period_work(setup, cal, profile, ip, nd, step_hours, carry[ip], R, seed, in_weekday))
            if keep:
                periods[ip] = work
            factor = 1.0 + (mult[..., None] - 1.0) * pw[ip]  # (S, M, 1), as in run_setup
            for chain, x in (("inbound", work[9]), ("order", work[8])):
                run = np.multiply(x[:, :, None, :], factor[None]).reshape(Tc, S, M * R)  # the chain head's work
                run[0] += cum[chain]
                np.cumsum(run, axis=0, out=run)  # the kernel's running count: the same additions in the same order
                cum[chain] = run[-1].copy()
                for d in range(nd):
                    tolerances[chain][t0 + d * spd] = _overdue_tolerance(run[(d + 1) * spd - 1])
            t0 += Tc
        return cls(_shared_key(setup, mult, R, seed, step_hours, profile, period_weight), periods, carry, tolerances)


def _take_sites(x: np.ndarray, sites: np.ndarray | None, axis: int) -> np.ndarray:
    """``x`` restricted to ``sites`` (indices) along its site axis (all when None)."""
    return x if sites is None else np.take(x, sites, axis=axis)


def _take_work(work: tuple[np.ndarray, ...], sites: np.ndarray | None) -> tuple[np.ndarray, ...]:
    """A period's inputs (:func:`_period_work`) restricted to some of the sites."""
    w_out, w_in, dow, cap, staffed, share, labour_binds, labour, x_out, x_in = work
    return (w_out, w_in, dow, *(_take_sites(x, sites, 1) for x in (cap, staffed)),
            *(_take_sites(x, sites, 0) for x in (share, labour_binds)),
            *(_take_sites(x, sites, 1) for x in (labour, x_out, x_in)))


def _site_multipliers(mult: np.ndarray, S: int) -> np.ndarray:
    """Multipliers (M,) or (S, M) as (S, M)."""
    return np.broadcast_to(mult if mult.ndim == 2 else mult[None, :], (S, mult.shape[-1])).copy()


def _shared_key(setup: SimSetup, mult: np.ndarray, R: int, seed: int, step_hours: float, profile: Profile,
                period_weight: np.ndarray | None) -> tuple:
    """What shared inputs depend on besides the setup's tables (:class:`SharedInputs`)."""
    return (tuple(setup.site_ids), mult.tobytes(), R, seed, float(step_hours), profile,
            None if period_weight is None else np.asarray(period_weight, dtype=float).tobytes())


def _period_work(setup: SimSetup, cal: _Calendar, profile: Profile, ip: int, nd: int, step_hours: float,
                 carry: np.ndarray, R: int, seed: int, in_weekday: np.ndarray) -> tuple[np.ndarray, ...]:
    """Period ``ip``'s inputs that depend neither on the multipliers nor on extra capacity: those of
    :func:`_period_inputs` (w_out, w_in, dow, cap, staffed, share, labour_binds, labour) and the arrivals of
    :func:`_draw_arrivals` (x_out, x_in)."""
    w_out, w_in, dow, cap, staffed, share, labour_binds, labour = _period_inputs(setup, cal, profile, ip, nd,
                                                                                  step_hours, carry)
    x_out, x_in = _draw_arrivals(setup, cal, profile, ip, nd, R, seed, w_out, w_in, in_weekday[dow])
    return w_out, w_in, dow, cap, staffed, share, labour_binds, labour, x_out, x_in


def run_setup(setup: SimSetup, multipliers: np.ndarray, *, replications: int = 20, seed: int = 0,
              step_hours: float = 1.0, profile: Profile | None = None, period_weight: np.ndarray | None = None,
              detail: bool = True, threads: int = 1, judge_from_period: int | None = None,
              extra_capacity: np.ndarray | None = None, shared: SharedInputs | None = None,
              sites: Sequence[int] | None = None, stop_when: np.ndarray | None = None,
              keep_inputs: dict | None = None) -> SimulationResult:
    """Simulate a prepared setup for multipliers (M,), per site (S, M) or per site and replication (S, M, R);
    see :func:`simulate`.

    ``period_weight`` (P,) spreads the extra load: period p's factor is ``1 + (m - 1) * period_weight[p]``.
    ``judge_from_period``: the periods before it are a warm-up (they leave their backlog to the later ones, but
    SLA breaches are judged from this period on); default: every period is judged.
    ``extra_capacity`` (S, K): units a day added to each stage, spread over its open steps (what a shortfall
    means: :func:`clearing_shortfalls`).
    Per-replication multipliers (common random numbers: replication r sees the same noise under every
    multiplier) serve the stress test's bisection, which reads ``replication_breaches``.
    With ``detail=False`` only the breach analysis runs (no tables but ``breaches``; for the stress test).
    ``threads`` > 1 simulates groups of sites in parallel threads (sites are independent and draw their own
    random streams, so the result is the same as with one thread). It pays only when cores are free: the step
    loop holds the GIL between numpy calls (on the shared 2-core machine it was slower than one thread).
    ``shared`` (:meth:`SharedInputs.build` for this setup and the same multipliers, replications, seed, step,
    profile and period weights; one thread): the inputs are taken from it, not computed again, and the run may
    simulate only ``sites`` (indices into the setup's sites; the per-site arguments still refer to the whole
    setup, the result to these sites) and, with ``detail=False``, stop at the end of the first day by which every
    (site, chain) marked in ``stop_when`` (len(sites), len(CHAIN_NAMES)) has broken its SLA; at the end of each
    period, the sites whose marked chains have all broken leave the run. Each site's breaches are exactly those of
    a plain run of every site; a shared run with ``detail=False`` gives where the breaches are only (the other
    tables are not filled, and with ``stop_when`` neither are the shortfall columns and the verdicts).
    ``keep_inputs``: a dict that receives the run's inputs (the fluid carry, each period's :func:`_period_work`;
    one thread), for :meth:`SharedInputs.build` ``kept=`` to take instead of computing them again.
    """
    profile = profile or Profile()
    S, P, R = len(setup.site_ids), len(setup.periods), int(replications)
    if R < 1:
        raise ValueError("replications must be >= 1")
    mult = np.asarray(multipliers, dtype=float)
    rep_mult = None
    if mult.ndim == 3:
        if mult.shape[0] != S or mult.shape[2] != R:
            raise ValueError(f"per-replication multipliers must be (S={S}, M, R={R}), got {mult.shape}")
        rep_mult = mult
        mult = mult.mean(axis=-1)
    mult = _site_multipliers(mult, S)
    if (mult < 0).any() or (rep_mult is not None and (rep_mult < 0).any()):
        raise ValueError("multipliers must be non-negative")
    if shared is not None:
        if rep_mult is not None or shared.key != _shared_key(setup, mult, R, seed, step_hours, profile,
                                                             period_weight):
            raise ValueError("run_setup: the shared inputs were built for other sites, multipliers, replications, "
                             "seed, step, profile or period weights")
        threads = 1
    if (sites is not None or stop_when is not None) and shared is None:
        raise ValueError("run_setup: sites= and stop_when= need shared inputs (SharedInputs.build)")
    if stop_when is not None and detail:
        raise ValueError("run_setup: stop_when= is for breach-only runs (detail=False)")
    if sites is not None:
        sites = np.asarray(sites, dtype=int)
        setup, mult = _subset(setup, sites), mult[sites]
        rep_mult = None if rep_mult is None else rep_mult[sites]
        extra_capacity = None if extra_capacity is None else np.asarray(extra_capacity, dtype=float)[sites]
        S = len(sites)

    breach_only = shared is not None and not detail
    if keep_inputs is not None:
        threads = 1
    if threads > 1 and S > 1:
        groups = [g for g in np.array_split(np.arange(S), min(threads, S)) if len(g)]
        with ThreadPoolExecutor(len(groups)) as pool:
            parts = list(pool.map(lambda g: run_setup(
                _subset(setup, g), (mult if rep_mult is None else rep_mult)[g], replications=R, seed=seed,
                step_hours=step_hours, profile=profile, period_weight=period_weight, detail=detail,
                judge_from_period=judge_from_period,
                extra_capacity=None if extra_capacity is None else extra_capacity[g]), groups))
        return _merge(setup, mult, parts)
    M = mult.shape[1]
    B = M * R
    pw = np.ones(P) if period_weight is None else np.asarray(period_weight, dtype=float)
    cal = _calendar(setup, profile, step_hours)
    spd = cal.steps_per_day
    days = setup.periods["days"].to_numpy(dtype=float)
    if (np.abs(days - np.round(days)) > 1e-9).any():
        raise ValueError("simulated periods must last whole days")
    days = np.round(days).astype(int)
    max_chunk = int(days.max()) * spd if P else 0
    sla = {"order": setup.sla_hours, "inbound": profile.dock_to_stock_sla_hours}
    lookback = max(int(np.ceil(2 * max(sla.values()) / step_hours)), 7 * spd)
    trackers = {c: _ChainTracker(S, M, R, max(1, int(round(sla[c] / step_hours))), lookback, max_chunk)
                for c in CHAIN_NAMES}
    judge_from = 0
    if judge_from_period is not None:
        before = setup.periods["period"].to_numpy() < int(judge_from_period)
        judge_from = int(days[before].sum()) * spd
    for tr in trackers.values():
        tr.judge_from = judge_from
    active = active_effects(setup, profile)
    effects = _Effects(active, S, R, step_hours, absence_rates(setup, profile)) if active else None
    fail_share = 1.0 - profile.sla_quantile
    kernel = _Kernel(S, K_STAGES, B, DEFAULT_UPSTREAM, (PUTAWAY, PICK), setup.storage_capacity,
                     setup.storage_initial[:, None], profile.stock_limited,
                     chains=[(st[0], st[-1]) for st in CHAINS.values()])
    breach_rows: list[dict[str, Any]] = []
    sp_rows: list[Columns] = []
    daily_rows: list[Columns] = []
    cap_sum, y_sum = np.zeros((S, K_STAGES)), np.zeros((S, K_STAGES, M))
    open_steps = np.zeros((S, K_STAGES))
    in_weekday = np.asarray(profile.inbound_weekday, dtype=float)
    start0 = pd.Timestamp(setup.periods["start"].iloc[0]) if P else pd.Timestamp(0)
    carry = _fluid_carry(setup, cal, profile, step_hours) if shared is None else _take_sites(shared.carry, sites, 1)
    if keep_inputs is not None:
        keep_inputs["carry"] = carry
    if shared is not None:
        for c, tr in trackers.items():
            tr.tolerances = shared.tolerances[c]
    stopped = False
    t0 = 0
    buf: tuple[np.ndarray, ...] | None = None
    for ip in range(P):
        period = int(setup.periods["period"].iloc[ip])
        nd = int(days[ip])
        Tc = nd * spd
        pstart = pd.Timestamp(setup.periods["start"].iloc[ip])
        got = shared.periods.get(ip) if shared is not None else None
        work = (_period_work(setup, cal, profile, ip, nd, step_hours, carry[ip], R, seed, in_weekday) if got is None
                else _take_work(got, sites))
        if keep_inputs is not None:
            keep_inputs[ip] = work
        w_out, w_in, dow, cap, staffed, share, labour_binds, labour, x_out, x_in = work
        if extra_capacity is not None:  # units a day, spread over the open steps of each day
            per_day = cal.open_share.sum(axis=0)
            per_step = cal.open_share / np.where(per_day > 0, per_day, 1.0)
            cap = cap + np.tile(per_step, (nd, 1, 1)) * np.asarray(extra_capacity, dtype=float)[None]
        factor = 1.0 + ((mult[..., None] if rep_mult is None else rep_mult) - 1.0) * pw[ip]  # (S, M, 1 or R)
        ext = np.empty((Tc, S, 2, M, R))  # external work of the chain heads: inbound dock, pick
        np.multiply(x_in[:, :, None, :], factor[None], out=ext[:, :, 0])
        np.multiply(x_out[:, :, None, :], factor[None], out=ext[:, :, 1])
        ext = ext.reshape(Tc, S, 2, B)
        cap_eff = None
        if effects is not None:  # per replication, the same under every multiplier (broadcast over M)
            f = effects.factors(setup, seed, period, nd, spd, cap, staffed, labour)  # (Tc, S, K, R)
            cap_eff = np.broadcast_to(f[:, :, :, None, :], (Tc, S, K_STAGES, M, R)).reshape(Tc, S, K_STAGES, B)
        if buf is None:  # one day of per-step arrays, reused: memory does not grow with the horizon
            buf = (np.empty((spd, S, K_STAGES, B)), np.empty((spd, S, K_STAGES, B)), np.empty((spd, S, B)),
                   np.empty((2, len(CHAINS), spd, S, B)))
        out_y, out_q, out_level, out_cum = buf
        day_a, day_y = np.zeros((nd, S, K_STAGES, B)), np.zeros((nd, S, K_STAGES, B))
        q_sum, level_sum = np.zeros((S, K_STAGES, B)), np.zeros((S, B))
        for d in range(nd):
            day = slice(d * spd, (d + 1) * spd)
            cap_day = cap[day, :, :, None] if cap_eff is None else cap_eff[day]
            if setup.congestion > 0:
                cap_day = cap_day * _congestion_factor(setup.congestion, ext[day], cap[day])
            kernel.run(ext[day], cap_day, out_y, out_q, out_level, out_cum, heads=(INBOUND_DOCK, PICK),
                       acc=None if breach_only else (day_a[d], day_y[d], q_sum, level_sum))
            # chains: SLA breaches and cycle times
            for c, (cname, stages) in enumerate(CHAINS.items()):
                tr = trackers[cname]
                new = (tr.update_breaches(out_cum[0, c], out_cum[1, c], t0, fail_share) if breach_only else
                       tr.update(out_cum[0, c], out_cum[1, c], t0, step_hours, fail_share, detail))
                if tr.new_late.any():  # per replication: the stage blamed at its first late step
                    sr, br = np.nonzero(tr.new_late)
                    ir = tr.first_late_in_chunk[sr, br]
                    p_r = _holdings_stage(out_q[ir, sr, :, br][..., None], out_y[ir, sr, :, br][..., None],
                                          tr.overdue[ir, sr, br][:, None], stages)
                    tr.late_stage[sr, br] = np.asarray(stages)[p_r]
                ss, ms = np.nonzero(new)
                if len(ss):  # where each newly broken site and multiplier fails: one vectorized call
                    ii = tr.first_step_in_chunk[ss, ms]
                    q5 = out_q.reshape(spd, S, K_STAGES, M, R)[ii, ss, :, ms, :]
                    y5 = out_y.reshape(spd, S, K_STAGES, M, R)[ii, ss, :, ms, :]
                    od = tr.overdue.reshape(spd, S, M, R)[ii, ss, ms, :]
                    pos = _holdings_stage(q5, y5, od, stages)
                for s, m, i, p in zip(ss, ms, ii if len(ss) else [], pos if len(ss) else []):
                    k, hour = stages[p], (d * spd + int(i) + 1) * step_hours
                    breach_rows.append({"site_id": setup.site_ids[s], "chain": cname, "column": int(m),
                                        "multiplier": float(mult[s, m]), "stage": STAGES_SIM[k],
                                        "stage_index": k, "period": period, "hour": hour,
                                        "time": pstart + pd.Timedelta(hours=hour),
                                        "binding": "labour" if labour_binds[s, k] else "equipment"})
            t0 += spd
            if stop_when is not None and all((trackers[c].first_breach[stop_when[:, j]] >= 0).all()
                                             for j, c in enumerate(CHAIN_NAMES)):
                stopped = True  # every chain asked about has broken: the rest of the horizon cannot mend it
                break
        for tr in trackers.values():
            tr.flush_cycle()
        cap_sum += cap.sum(axis=0)
        open_steps += (cap > 0).sum(axis=0)
        y_sum += day_y.sum(axis=0).reshape(S, K_STAGES, M, R).sum(axis=-1) / R
        if detail:
            sp_rows.append(_period_rows(setup, period, mult, day_a, day_y, q_sum / Tc, level_sum / Tc, cap, M, R))
            daily_rows.append(_daily_rows(setup, period, mult, day_a, day_y, cap, staffed, share, nd, spd, M, R,
                                          (pstart - start0).days, pstart))
        if stopped:
            break
        if stop_when is not None:  # sites whose chains asked about have all broken leave the run (nothing to learn)
            done = np.ones(S, dtype=bool)
            for j, c in enumerate(CHAIN_NAMES):
                done &= ~stop_when[:, j] | (trackers[c].first_breach >= 0).all(axis=1)
            if done.any():
                keep = np.flatnonzero(~done)
                sites = keep if sites is None else sites[keep]
                setup, mult, stop_when, carry = _subset(setup, keep), mult[keep], stop_when[keep], carry[:, keep]
                rep_mult = None if rep_mult is None else rep_mult[keep]
                extra_capacity = None if extra_capacity is None else extra_capacity[keep]
                cal = replace(cal, open_share=cal.open_share[:, keep], shift_step=cal.shift_step[:, keep])
                cap_sum, open_steps, y_sum = cap_sum[keep], open_steps[keep], y_sum[keep]
                kernel.take(keep)
                for tr in trackers.values():
                    tr.take(keep)
                if effects is not None:
                    effects.take(keep)
                S, buf = len(keep), None
    result = _assemble(setup, mult, trackers, breach_rows, sp_rows, daily_rows, cap_sum, open_steps, y_sum,
                       profile, step_hours, {"replications": R, "seed": seed, "step_hours": step_hours,
                                             "profile": asdict(profile), "congestion": setup.congestion,
                                             "effects": active})
    result.replication_breaches = {c: (tr.first_late.reshape(S, M, R), tr.late_stage.reshape(S, M, R))
                                   for c, tr in trackers.items()}
    return result


EFFECTS = ("mtbf_hours", "mttr_hours", "service_cv", "absenteeism")
"""The optional stochastic effects (see :class:`Profile`), each off unless set or calibrated."""


def active_effects(setup: SimSetup, profile: Profile) -> dict[str, float]:
    """The stochastic effects in force: the profile's values, else the calibration's; only those switched on."""
    eff = {k: getattr(profile, k) if getattr(profile, k) is not None else setup.effects.get(k) for k in EFFECTS}
    out = {}
    if eff["mtbf_hours"]:
        out["mtbf_hours"], out["mttr_hours"] = float(eff["mtbf_hours"]), float(eff["mttr_hours"] or 2.0)
    if eff["service_cv"]:
        out["service_cv"] = float(eff["service_cv"])
    if eff["absenteeism"]:
        out["absenteeism"] = float(eff["absenteeism"])
    return out


SHIFT_HOURS = 8.0
"""Hours of one shift: the unit of the binomial attendance draw of absenteeism (and of its calibration)."""


def absence_rates(setup: SimSetup, profile: Profile) -> np.ndarray:
    """Absence probability per site (S,): the profile's rate at every site when set, else the calibration's per
    site (``absenteeism_by_site``), the pooled calibrated rate where a site has none; 0 where absenteeism is off."""
    S = len(setup.site_ids)
    if profile.absenteeism is not None:
        return np.full(S, float(profile.absenteeism))
    pooled = float(setup.effects.get("absenteeism") or 0.0)
    if setup.absence_by_site is None:
        return np.full(S, pooled)
    return np.where(np.isnan(setup.absence_by_site), pooled, setup.absence_by_site)


class _Effects:
    """Per-replication capacity factors of the stochastic effects, one period at a time (breakdown states carry
    over from period to period)."""

    def __init__(self, effects: dict[str, float], S: int, R: int, step_hours: float,
                 absence: np.ndarray | None = None) -> None:
        self.effects, self.R, self.step_hours = effects, R, step_hours
        self.absence = np.full(S, float(effects.get("absenteeism") or 0.0)) if absence is None else absence
        self.down = np.zeros((S, K_STAGES, R), dtype=bool)
        if "mtbf_hours" in effects:
            self.p_fail = 1.0 - math.exp(-step_hours / effects["mtbf_hours"])
            self.p_repair = 1.0 - math.exp(-step_hours / effects["mttr_hours"])

    def take(self, keep: np.ndarray) -> None:
        """Keep sites ``keep`` only (indices): their breakdown states and absence rates."""
        self.down, self.absence = self.down[keep], self.absence[keep]

    def factors(self, setup: SimSetup, seed: int, period: int, nd: int, spd: int, cap: np.ndarray,
                staffed: np.ndarray, labour: np.ndarray) -> np.ndarray:
        """Capacity (Tc, S, K, R) of the period under the effects, from the expected capacity ``cap`` (Tc, S, K);
        ``labour`` (Tc, S, K) the labour capacity (absenteeism scales it where labour binds)."""
        Tc, S, R = nd * spd, len(setup.site_ids), self.R
        out = np.broadcast_to(cap[..., None], (Tc, S, K_STAGES, R)).copy()
        rngs = [np.random.default_rng([seed, period, site_seed(s), 1]) for s in setup.site_ids]
        if "absenteeism" in self.effects:
            shifts = np.maximum(np.round(staffed.reshape(nd, spd, S).sum(axis=1) / SHIFT_HOURS), 1.0)  # (nd, S)
            present = np.stack([rng.binomial(shifts[:, j, None].astype(np.int64).repeat(R, axis=1),
                                             1.0 - self.absence[j])
                                for j, rng in enumerate(rngs)], axis=1) / shifts[:, :, None]  # (nd, S, R)
            with np.errstate(invalid="ignore"):
                lab = labour[..., None] * np.repeat(present, spd, axis=0)[:, :, None, :]
            lab = np.where(np.isnan(lab), np.inf, lab)  # unlimited labour stays unlimited
            np.minimum(out, lab, out=out)  # min(equipment, labour x share present)
        if "service_cv" in self.effects:
            k = 1.0 / self.effects["service_cv"] ** 2
            out *= np.stack([rng.gamma(k, 1.0 / k, size=(Tc, K_STAGES, R)) for rng in rngs], axis=1)
        if "mtbf_hours" in self.effects:
            u = np.stack([rng.random((Tc, K_STAGES, R)) for rng in rngs], axis=1)  # (Tc, S, K, R)
            down = self.down
            running = (cap > 0)[..., None]  # (Tc, S, K, 1): breakdowns happen (and are repaired) in open hours
            for t in range(Tc):
                down = np.where(running[t], np.where(down, u[t] >= self.p_repair, u[t] < self.p_fail), down)
                out[t][down] = 0.0
            self.down = down
        return out


def _congestion_factor(kappa: float, ext_day: np.ndarray, cap_day: np.ndarray) -> np.ndarray:
    """Congestion derate of one day, (1, S, K, B): ``1 - kappa u^2``, ``u = min(1, a / c)``.

    ``a`` is the day's work offered to the stage (the external work entering its chain's head that day: every
    unit passes each stage of its chain) and ``c`` the stage's capacity that day, the calibration's model
    (:func:`engine.calibration.effective_capacity`) at the simulator's daily resolution.
    """
    offered = ext_day.sum(axis=0)  # (S, 2, B): inbound dock, pick
    per_stage = offered[:, [0, 0, 1, 1, 1]]  # (S, K, B): inbound chain, order chain
    daily = cap_day.sum(axis=0)[:, :, None]  # (S, K, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(daily > 0, np.minimum(1.0, per_stage / np.where(daily > 0, daily, 1.0)), 0.0)
    return (1.0 - kappa * u ** 2)[None]


Columns = dict[str, np.ndarray]
"""A table under construction: column name -> values (frames are built once, at the end of a run)."""

SP_COLUMNS = ("site_id", "stage", "period", "multiplier", "arrivals", "throughput", "capacity", "backlog_mean",
              "backlog_p95", "utilisation")
DAILY_COLUMNS = ("site_id", "stage", "period", "day", "date", "multiplier", "workload", "throughput", "capacity",
                 "labour_hours_needed", "labour_hours_staffed")


def _cols_sk(setup: SimSetup, mult: np.ndarray, stages: Sequence[str], **cols: np.ndarray) -> Columns:
    """Long-table columns from (S, K, M) arrays, rows ordered site, stage, multiplier."""
    S, M = mult.shape
    K = len(stages)
    return {
        "site_id": np.repeat(np.asarray(setup.site_ids, dtype=object), K * M),
        "stage": np.tile(np.repeat(np.asarray(stages, dtype=object), M), S),
        "multiplier": np.repeat(mult[:, None, :], K, axis=1).ravel(),
        **{k: np.asarray(v, dtype=float).reshape(S * K * M) for k, v in cols.items()},
    }


def _frame(parts: list[Columns], columns: Sequence[str]) -> pd.DataFrame:
    """One DataFrame from column dicts (in ``columns`` order)."""
    if not parts:
        return pd.DataFrame(columns=list(columns))
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in columns})


def _period_rows(setup: SimSetup, period: int, mult: np.ndarray, day_a: np.ndarray, day_y: np.ndarray,
                 q_mean: np.ndarray, level_mean: np.ndarray, cap: np.ndarray, M: int, R: int) -> Columns:
    """stage_period rows of one period from daily sums (nd, S, K, B) and per-replication mean levels."""
    _, S, K, _ = day_a.shape
    arr = day_a.sum(axis=0).reshape(S, K, M, R).mean(axis=-1)
    thr = day_y.sum(axis=0).reshape(S, K, M, R).mean(axis=-1)
    qmean_r = q_mean.reshape(S, K, M, R)
    capsum = cap.sum(axis=0)[:, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        util = np.where(capsum > 0, thr / capsum, np.nan)
    flow = _cols_sk(setup, mult, STAGES_SIM, arrivals=arr, throughput=thr, capacity=np.broadcast_to(capsum, arr.shape),
                    backlog_mean=qmean_r.mean(axis=-1), backlog_p95=np.quantile(qmean_r, 0.95, axis=-1),
                    utilisation=util)
    lvl_r = level_mean.reshape(S, M, R)
    scap = setup.storage_capacity[:, None]
    stor = _cols_sk(setup, mult, ("storage",), arrivals=thr[:, PUTAWAY], throughput=thr[:, PICK],
                    capacity=np.broadcast_to(scap, (S, M)), backlog_mean=lvl_r.mean(axis=-1),
                    backlog_p95=np.quantile(lvl_r, 0.95, axis=-1),
                    utilisation=np.where(np.isfinite(scap), lvl_r.mean(axis=-1) / scap, np.nan))
    out = {c: np.concatenate([flow[c], stor[c]]) for c in flow}
    out["period"] = np.full(len(out["site_id"]), period)
    return out


def _daily_rows(setup: SimSetup, period: int, mult: np.ndarray, day_a: np.ndarray, day_y: np.ndarray,
                cap: np.ndarray, staffed: np.ndarray, share: np.ndarray, nd: int, spd: int, M: int, R: int, day0: int,
                pstart: pd.Timestamp) -> Columns:
    """daily rows of one period from daily sums (nd, S, K, B)."""
    _, S, K, _ = day_a.shape
    work = day_a.reshape(nd, S, K, M, R).mean(axis=-1)  # (nd, S, K, M)
    shape = work.shape
    thr = day_y.reshape(nd, S, K, M, R).mean(axis=-1)
    capd = np.broadcast_to(cap.reshape(nd, spd, S, K).sum(axis=1)[..., None], shape)
    needed = work / setup.productivity[None, :, :, None]  # nan where the site has no labour row
    staff = np.broadcast_to((staffed.reshape(nd, spd, S).sum(axis=1)[:, :, None] * share[None])[..., None], shape)
    n = S * K * M
    one = _cols_sk(setup, mult, STAGES_SIM)
    out = {"site_id": np.tile(one["site_id"], nd), "stage": np.tile(one["stage"], nd),
           "period": np.full(nd * n, period), "day": np.repeat(day0 + np.arange(nd), n),
           "date": np.repeat(np.array([(pstart + pd.Timedelta(days=d)).date() for d in range(nd)], dtype=object), n),
           "multiplier": np.tile(one["multiplier"], nd)}
    for name, v in (("workload", work), ("throughput", thr), ("capacity", capd), ("labour_hours_needed", needed),
                    ("labour_hours_staffed", staff)):
        out[name] = np.asarray(v, dtype=float).reshape(nd * n)
    return out


def _assemble(setup: SimSetup, mult: np.ndarray, trackers: dict[str, _ChainTracker], breach_rows: list[dict],
              sp_rows: list[Columns], daily_rows: list[Columns], cap_sum: np.ndarray,
              open_steps: np.ndarray, y_sum: np.ndarray, profile: Profile, step_hours: float,
              params: dict[str, Any]) -> SimulationResult:
    S, M = mult.shape
    R = params["replications"]
    q = profile.sla_quantile
    hourly_cap = np.where(open_steps > 0, cap_sum / np.maximum(open_steps, 1) / step_hours, np.nan)
    over_q = {c: np.quantile(tr.max_overdue.reshape(S, M, R), q, axis=-1) for c, tr in trackers.items()}
    rate_q = {c: np.quantile(tr.max_rate.reshape(S, M, R), q, axis=-1) for c, tr in trackers.items()}
    index = {sid: i for i, sid in enumerate(setup.site_ids)}
    rows, by_key = [], {}
    for b in breach_rows:
        s, m, c = index.get(b["site_id"]), b["column"], b["chain"]
        k = b.pop("stage_index")
        if s is None:  # a site that left a breach-only run (run_setup stop_when=): where it broke, not how much
            rows.append({**b, "shortfall_units": np.nan, "shortfall_hours": np.nan, "overdue_units": np.nan,
                         "labour_hours": np.nan})
            continue
        per_day, hc = float(rate_q[c][s, m]), hourly_cap[s, k]
        row = {**b, "shortfall_units": per_day,
               "shortfall_hours": per_day / hc if np.isfinite(hc) and hc > 0 else np.nan,
               "overdue_units": float(over_q[c][s, m]), "labour_hours": per_day / setup.productivity[s, k]}
        rows.append(row)
        by_key[(s, c, m)] = row
    breaches = pd.DataFrame(rows, columns=["site_id", "chain", "multiplier", "column", "stage", "period", "hour",
                                           "time", "shortfall_units", "shortfall_hours", "overdue_units",
                                           "binding", "labour_hours"])
    breaches = breaches.sort_values(["column", "time", "site_id"], kind="stable").reset_index(drop=True)
    # verdict per multiplier column (first breach in time over sites and chains)
    verdicts: dict[float, Verdict] = {}
    first = {c: tr.first_breach for c, tr in trackers.items()}
    for m in range(M):
        label = float(mult[0, m]) if (mult[:, m] == mult[0, m]).all() else float(m)
        cand = [(int(first[c][s, m]), s, c) for c in CHAIN_NAMES for s in range(S) if first[c][s, m] >= 0]
        if not cand:
            verdicts[label] = Verdict.holds(label)
            continue
        _, s, c = min(cand)
        row = SimpleNamespace(**by_key[(s, c, m)])
        sla_h = setup.sla_hours if c == "order" else profile.dock_to_stock_sla_hours
        msg = _breach_message(row, c, sla_h)
        verdicts[label] = Verdict(False, label, row.site_id, row.stage, c, int(row.period), float(row.hour),
                                  str(row.time), float(row.shortfall_units), float(row.shortfall_hours),
                                  float(row.overdue_units), row.binding, float(row.labour_hours), msg)
    stage_period = _frame(sp_rows, SP_COLUMNS)
    daily = _frame(daily_rows, DAILY_COLUMNS)
    order, inbound = trackers["order"], trackers["inbound"]
    with np.errstate(invalid="ignore", divide="ignore"):
        util = np.where(cap_sum[:, :, None] > 0, y_sum / cap_sum[:, :, None], -1.0)  # (S, K, M)
        hist = order.cycle_hist
        tot = hist.sum(axis=-1)
        within = np.where(tot > 0, hist[..., :order.L + 1].sum(axis=-1) / tot, np.nan)
    site = pd.DataFrame({
        "site_id": np.repeat(np.asarray(setup.site_ids, dtype=object), M),
        "multiplier": mult.ravel(),
        "cycle_time_p50_h": (_quantile_hist(hist, 0.5) * step_hours).ravel(),
        "cycle_time_p95_h": (_quantile_hist(hist, 0.95) * step_hours).ravel(),
        "within_sla_share": within.ravel(),
        "dock_to_stock_p95_h": (_quantile_hist(inbound.cycle_hist, 0.95) * step_hours).ravel(),
        "binding_stage": np.asarray(STAGES_SIM, dtype=object)[util.argmax(axis=1)].ravel(),
        "shipped_units": y_sum[:, OUTBOUND_DOCK, :].ravel(),  # all replications: the stage table's figure
    })
    return SimulationResult(stage_period, site, daily, breaches, verdicts, params)


def _breach_message(row: Any, chain: str, sla_h: float) -> str:
    """The verdict's sentence for a breach row."""
    return (f"{row.site_id} breaks its {chain} SLA ({sla_h:g} h) at {row.stage} in period {row.period}, "
            f"hour {row.hour:g} ({row.time}), up to {row.overdue_units:,.0f} units overdue; "
            f"+{row.shortfall_units:,.0f} units/day at {row.stage} "
            f"({row.shortfall_hours:,.1f} extra hours a day) would have avoided it; {row.binding} binds"
            + (f" (+{row.labour_hours:,.0f} labour hours a day)" if row.binding == "labour" else ""))


WHOLE_CHAIN = -2
"""Stage code of :func:`clearing_shortfalls` for "the amount at every stage of the chain"."""


def clearing_shortfalls(setup: SimSetup, result: SimulationResult, *, replications: int, seed: int,
                        step_hours: float = 1.0, profile: Profile | None = None, rel_tol: float = 0.01,
                        max_doublings: int = 5, reuse: bool = True, kept: dict | None = None) -> SimulationResult:
    """Replace each breach's estimated shortfall by one that, added, clears it (single-multiplier runs).

    The estimate (peak overdue units over the days since the chain was last empty) misses when the stage's
    capacity is not available when the units wait (closed hours, a cut-off) or when the queue holding the oldest
    units is not the one that limits the chain. So the failing sites are simulated again, alone and with the
    same random numbers, with ``x`` units a day added to one stage (spread over its open steps,
    ``run_setup(extra_capacity=)``): ``x`` doubles from the estimate until the chain's SLA holds, then bisection
    narrows it to ``rel_tol``. The blamed stage is tried first; when it alone cannot clear the breach within
    ``2**max_doublings`` times the estimate, the chain's other stages are tried and the breach is re-blamed on
    the stage that clears it with the least; when no single stage can (two stages limit the chain alike), the
    amount is added at every stage of the chain. The rows get ``estimated_units`` (the first estimate),
    ``shortfall_scope`` (``stage``: at the row's stage; ``chain``: at each stage of the chain; ``none``) and
    ``cleared`` (False: nothing cleared it within the doublings; the estimate is kept).

    ``reuse`` (default): the search's runs share their inputs (:class:`SharedInputs`: the arrivals are drawn and
    the staffing split computed once), and after the first run each run simulates only the sites whose breaches
    are still being searched, until all of those have broken again; the amounts found are exactly those of
    ``reuse=False``, which simulates every failing site over the whole horizon in every run (the reference).
    ``kept``: the inputs the run of ``result`` kept (``run_setup(keep_inputs=)``), taken instead of drawn again
    (and emptied).
    """
    b = result.breaches
    if b.empty or b["column"].max() > 0:
        return result
    profile = profile or Profile()
    index = {sid: i for i, sid in enumerate(setup.site_ids)}
    keys = [(index[r.site_id], r.chain) for r in b.itertuples()]
    est = np.maximum(b["shortfall_units"].to_numpy(dtype=float), 1.0)
    sites = sorted({s for s, _ in keys})
    local = {s: i for i, s in enumerate(sites)}
    sub = _subset(setup, np.array(sites))
    mult = np.array([float(b["multiplier"].iloc[0])])

    shared = SharedInputs.build(sub, mult, replications=replications, seed=seed, step_hours=step_hours,
                                profile=profile, kept=None if kept is None else (kept, np.array(sites))
                                ) if reuse else None
    if kept is not None:
        kept.clear()  # taken: the failing sites' share is in ``shared`` now
    key_site = np.array([local[s] for s, _ in keys])
    key_chain = np.array([CHAIN_NAMES.index(c) for _, c in keys])

    def cleared(stages: list[int], amount: np.ndarray, asked: np.ndarray) -> np.ndarray:
        """Whether each breach's chain holds with ``amount`` added; only the ``asked`` breaches are answered (the
        others are False or right)."""
        extra = np.zeros((len(sites), K_STAGES))
        for (s, chain), k, a in zip(keys, stages, amount):
            if k == WHOLE_CHAIN:
                extra[local[s], list(CHAINS[chain])] += a
            elif k >= 0:
                extra[local[s], k] += a
        run: dict[str, Any] = {}
        if shared is not None:  # only the sites asked about, until their chains have all broken
            run["sites"] = np.unique(key_site[asked])
            pos = np.searchsorted(run["sites"], key_site[asked])
            run["stop_when"] = np.zeros((len(run["sites"]), len(CHAIN_NAMES)), dtype=bool)
            run["stop_when"][pos, key_chain[asked]] = True
        res = run_setup(sub, mult, replications=replications, seed=seed, step_hours=step_hours, profile=profile,
                        detail=False, extra_capacity=extra, shared=shared, **run)
        still = set(zip(res.breaches["site_id"], res.breaches["chain"]))
        return np.array([(setup.site_ids[s], c) not in still for s, c in keys])

    def search(stages: list[int]) -> np.ndarray:
        """Smallest amount at ``stages`` (-1: skip) clearing each breach, NaN when none within the doublings."""
        active = np.array([k >= 0 or k == WHOLE_CHAIN for k in stages])
        lo, hi, x = np.zeros(len(keys)), np.full(len(keys), np.nan), est.copy()
        for _ in range(max_doublings + 1):
            todo = active & np.isnan(hi)
            if not todo.any():
                break
            ok = cleared(stages, np.where(todo, x, np.where(np.isnan(hi), 0.0, hi)), todo)
            hi = np.where(todo & ok, x, hi)
            lo = np.where(todo & ~ok, x, lo)
            x = np.where(todo & ~ok, 2 * x, x)
        while True:
            open_ = ~np.isnan(hi) & (hi - lo > rel_tol * hi)
            if not open_.any():
                return hi
            mid = (lo + hi) / 2
            ok = cleared(stages, np.where(open_, mid, np.where(np.isnan(hi), 0.0, hi)), open_)
            hi = np.where(open_ & ok, mid, hi)
            lo = np.where(open_ & ~ok, mid, lo)

    blamed = [STAGES_SIM.index(k) for k in b["stage"]]
    best, best_stage = search(blamed), list(blamed)
    for alt in range(max(len(c) for c in CHAINS.values()) - 1):
        if not np.isnan(best).any():
            break
        tries = []
        for (_, chain), k, v in zip(keys, blamed, best):
            others = [st for st in CHAINS[chain] if st != k]
            tries.append(others[alt] if np.isnan(v) and alt < len(others) else -1)
        if all(t < 0 for t in tries):
            break
        got = search(tries)
        for i, t in enumerate(tries):
            if t >= 0 and not np.isnan(got[i]) and (np.isnan(best[i]) or got[i] < best[i]):
                best[i], best_stage[i] = got[i], t
    scope = np.where(np.isnan(best), "none", "stage").astype(object)
    if np.isnan(best).any():  # two stages limit the chain alike: the amount at every stage of the chain
        got = search([WHOLE_CHAIN if np.isnan(v) else -1 for v in best])
        scope = np.where(np.isnan(best) & ~np.isnan(got), "chain", scope)
        best = np.where(np.isnan(best), got, best)
    rows = b.copy()
    found = np.where(np.isnan(best), rows["shortfall_units"].to_numpy(dtype=float), best)
    hourly_cap = np.array([setup.rate[s, k] * 1.0 for (s, _), k in zip(keys, best_stage)])
    rows["estimated_units"] = rows["shortfall_units"]
    rows["stage"] = [STAGES_SIM[k] for k in best_stage]
    rows["shortfall_units"] = found
    with np.errstate(invalid="ignore", divide="ignore"):
        rows["shortfall_hours"] = np.where(hourly_cap > 0, found / hourly_cap, np.nan)
        rows["labour_hours"] = found / np.array([setup.productivity[s, k] for (s, _), k in zip(keys, best_stage)])
    rows["cleared"] = ~np.isnan(best)
    rows["shortfall_scope"] = scope
    verdicts = dict(result.verdicts)
    for label, v in result.verdicts.items():
        if v.feasible:
            continue
        r = rows[(rows["site_id"] == v.site_id) & (rows["chain"] == v.chain)].iloc[0]
        sla_h = setup.sla_hours if v.chain == "order" else profile.dock_to_stock_sla_hours
        nv = replace(v, stage=str(r["stage"]), shortfall_units=float(r["shortfall_units"]),
                     shortfall_hours=float(r["shortfall_hours"]), labour_hours=float(r["labour_hours"]))
        verdicts[label] = replace(nv, message=_breach_message(nv, v.chain, sla_h))
    return replace(result, breaches=rows, verdicts=verdicts)


# ---------------------------------------------------------------------------------------------------
# Front doors
# ---------------------------------------------------------------------------------------------------
def simulate_volumes(instance: Instance, site_throughput: pd.DataFrame, *, capacity: pd.DataFrame | None = None,
                     labor: pd.DataFrame | None = None, open_sites: Sequence[str] | None = None,
                     replications: int = 20, seed: int = 0, step_hours: float = 1.0,
                     multipliers: Sequence[float] = (1.0,), periods: Sequence[int] | None = None,
                     profile: Profile | None = None, threads: int = 1, clear_shortfall: bool = True
                     ) -> SimulationResult:
    """Simulate a bare volume table (site_id, period, inbound_units, outbound_units); see :func:`simulate`."""
    setup = prepare(instance, site_throughput, capacity=capacity, labor=labor, open_sites=open_sites,
                    periods=periods)
    search = clear_shortfall and len(multipliers) == 1
    steps = int(round(float(setup.periods["days"].sum()) * 24.0 / step_hours))
    kept = {} if search and threads <= 1 and SharedInputs.fits(len(setup.site_ids), replications, steps,
                                                               SHARED_BYTES) else None
    result = run_setup(setup, np.asarray(multipliers, dtype=float), replications=replications, seed=seed,
                       step_hours=step_hours, profile=profile, threads=threads, keep_inputs=kept)
    if search:  # the search takes the run's inputs (the arrivals drawn, the staffing split), not drawn again
        result = clearing_shortfalls(setup, result, replications=replications, seed=seed, step_hours=step_hours,
                                     profile=profile, kept=kept)
    return result


def plan_inputs(plan: Any) -> dict[str, Any]:
    """The plan tables the simulator reads: site_throughput, capacity, labor and the open sites."""
    t = plan.tables
    sites = t.get("sites")
    open_sites = None
    if sites is not None and len(sites):
        open_sites = sites.loc[pd.to_numeric(sites["open"], errors="coerce").fillna(0) >= 0.5, "site_id"]
        open_sites = [str(s) for s in open_sites]
    return {"site_throughput": t["site_throughput"], "capacity": t.get("capacity"), "labor": t.get("labor"),
            "open_sites": open_sites}


def simulate(instance: Instance, plan: Any, *, replications: int = 20, seed: int = 0, step_hours: float = 1.0,
             multipliers: Sequence[float] = (1.0,), periods: Sequence[int] | None = None,
             profile: Profile | Mapping[str, Any] | None = None, threads: int = 1,
             clear_shortfall: bool = True) -> SimulationResult:
    """Execute a plan step by step through every open DC and judge whether it holds.

    Parameters
    ----------
    instance : the instance the plan was made for (resources, labor, inventory, periods, SLA).
    plan : a :class:`instances.plan.Plan`. Work per DC and period: ``site_throughput``; inbound units
        flow inbound_dock -> putaway -> storage, outbound units pick -> pack -> outbound_dock. Equipment:
        ``capacity.total_count`` when given, else resources.csv. Labour: ``labor`` hours when given, else
        labor.csv. Only DCs open in ``plan.sites`` (open == 1) run (all with volume when that table is empty).
    replications : seeded replications (common random numbers across multipliers).
    seed : the run is reproducible for a seed; each period draws from ``default_rng([seed, period])``.
    step_hours : the time step (a day must be a whole number of steps).
    multipliers : demand multipliers applied to every period's volumes, simulated in one batch.
    periods : consecutive periods to simulate (default: all); storage starts at the plan's stock then.
    profile : a :class:`Profile` or a mapping of its fields.
    threads : simulate groups of sites in parallel threads (same result as one thread).
    clear_shortfall : with one multiplier, each breach's ``shortfall_units`` is verified by simulating again
        with it added (:func:`clearing_shortfalls`): the reported amount clears the breach.
    """
    if isinstance(profile, Mapping):
        profile = replace(Profile(), **profile)
    return simulate_volumes(instance, replications=replications, seed=seed, step_hours=step_hours,
                            multipliers=multipliers, periods=periods, profile=profile, threads=threads,
                            clear_shortfall=clear_shortfall, **plan_inputs(plan))
