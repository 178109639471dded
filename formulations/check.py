"""Independent checker: re-check a solved plan against the instance in plain pandas (no solver objects).

:func:`check_plan` is table-driven: it checks whatever plan tables are non-empty, so it serves every
decision (consolidation, redistribution, capacity). It recomputes throughput, stock and backlog from the
flows rather than trusting the plan's own summaries, and compares the two. An empty result means the plan
is consistent.

How each decision's plan is read
--------------------------------
- consolidation: flows arrive in their period (no transit offset); demand is met or reported unmet in its
  period; transfers (if any) are dispatched in their ``period`` (1 when absent).
- redistribution (``plan.decision == "redistribution"``, horizon ``plan.meta["periods"]``): a shipment
  dispatched in period ``t`` over a lane of ``τ`` transit days arrives in ``t + floor(τ / Δ_t)`` (``Δ_t`` the
  period length), as the model has it; transfers carry their dispatch ``period`` and ``transit_days``, flows
  their dispatch period and the transit of the lane's cheapest mode (then the fastest; the flows table names
  no mode, the model plans on that one). Demand may be served late (backlog) unless
  ``meta["params"]["allow_late"]`` is false.
- capacity (``plan.decision == "capacity"``, checked on the daily peak instance of
  :func:`formulations.capacity.peak_instance`): ``flows`` are the orders each DC receives (zone share x
  demand), ``site_throughput`` the units it processes (inbound = outbound = processed); orders wait in a
  backlog until processed. Capacity rows may add ``extra_hours_per_day`` (an extra shift).

Checks (``check`` column of the result)::

    negative        every quantity, hour and count >= 0
    horizon         flows, transfers and lost sales lie within the plan's horizon periods
    demand          served + unmet = demand per zone, product and period; with backlog (redistribution):
                    cumulative served + lost <= cumulative demand in every period, and = at the horizon end
    backlog         redistribution: meta backlog_unit_periods = sum over periods of the open backlog;
                    capacity: processed <= orders received so far (per DC and day)
    sla             capacity: SLA breach (backlog beyond the order-to-ship SLA) not under-reported in meta
    assignment      capacity: zone shares sum to 1 where the zone orders; flows = share x demand
    unknown_lane    every flow and transfer runs on a lane of the instance
    lane_capacity   sum over products of a lane's flows and transfers in a period <= the lane's capacity
    closed_site     no flow or transfer touches a DC the plan closes
    supply          flow out of a port/supplier per product and period <= its supply
    balance         stock never negative per DC, product and period: stock on hand + arrivals (<= t)
                    >= dispatches to zones and DCs (<= t)
    transit         a transfer's transit_days is no faster than the fastest mode of its lane
    trucks          per lane and dispatch period: whole trucks, trucks x capacity >= volume and weight,
                    the table's truck shares add up to meta truckloads
    capacity        throughput per stage and period <= resource count x rate x (hours + extra hours) x days
    expansion       base count = resources.csv count, modules within max_modules, added count = modules x
                    module size, total <= base + added, hours + extra <= 24
    throughput      the plan's site_throughput equals the throughput recomputed from its flows and transfers
    labor_regular   regular hours <= headcount x weekly hours x days / 7, per period
    labor_overtime  overtime hours per calendar week (7 days of periods) <= weekly overtime limit
    labor_temp      capacity: temp hours per day <= temps hired x temp_hours_per_day; temps within their cap
    labor_needed    regular + overtime + temp hours >= hours the throughput needs
    single_source   at most one DC serves each zone (when single sourcing was asked)

Where a check concerns a lane, ``site_id`` holds its origin and ``zone_id`` its destination (zone or DC).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from formulations.common import labor_parameters, period_days
from instances.instance import Instance, cheapest_lanes
from instances.plan import PLAN_SCHEMA, PLAN_TABLES, Plan, plan_columns, with_column_defaults
from instances.schema import FLOW_STAGES, INBOUND_STAGES

VIOLATION_COLUMNS = ("check", "site_id", "zone_id", "product_id", "period", "stage", "value", "limit", "excess",
                     "message")
MOVE_COLUMNS = list(PLAN_TABLES["flows"])
"""A movement is a row of the ``flows`` table (transfers are read into the same columns)."""


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def _rows(check: str, frame: pd.DataFrame, value: pd.Series | np.ndarray | float,
          limit: pd.Series | np.ndarray | float, excess: pd.Series | np.ndarray | float, message: str,
          **labels: Any) -> pd.DataFrame:
    """Violation rows for the rows of ``frame`` (labels are column names of ``frame`` or constants)."""
    out = pd.DataFrame(index=range(len(frame)))
    out["check"] = check
    for col in ("site_id", "zone_id", "product_id", "period", "stage"):
        src = labels.get(col)
        if src is None:
            out[col] = None
        elif isinstance(src, str) and src in frame.columns:
            out[col] = frame[src].to_numpy()
        else:
            out[col] = src
    for col, v in (("value", value), ("limit", limit), ("excess", excess)):
        out[col] = np.broadcast_to(np.asarray(v, dtype=float), (len(frame),))
    out["message"] = message
    return out


def _over(check: str, frame: pd.DataFrame, value: str, limit: str, tol: float, message: str,
          **labels: Any) -> pd.DataFrame | None:
    """Rows where ``value > limit`` beyond a relative tolerance."""
    v, lim = _num(frame[value]), _num(frame[limit])
    bad = (v - lim) > tol * np.maximum(1.0, np.abs(lim))
    if not bad.any():
        return None
    f = frame[bad.to_numpy()]
    return _rows(check, f, v[bad], lim[bad], (v - lim)[bad], message, **labels)


def _differs(check: str, frame: pd.DataFrame, value: str, reference: str, tol: float, message: str,
             **labels: Any) -> pd.DataFrame | None:
    """Rows where ``value != reference`` beyond a relative tolerance (excess = value - reference)."""
    v, ref = _num(frame[value]), _num(frame[reference])
    bad = (v - ref).abs() > tol * np.maximum(1.0, ref.abs())
    if not bad.any():
        return None
    f = frame[bad.to_numpy()]
    return _rows(check, f, v[bad], ref[bad], (v - ref)[bad], message, **labels)


# ---------------------------------------------------------------------------------------------------
# Reading the plan
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Context:
    """How a plan is read (see the module docstring).

    Attributes
    ----------
    decision : the plan's decision.
    periods : the plan's horizon periods (sorted).
    days : days per period of the instance (index: period).
    dc_ids : DCs and crossdocks of the instance.
    lagged : arrivals are offset by ``floor(transit_days / days)`` periods (redistribution).
    backlog : demand may be served in a later period (redistribution with ``allow_late``).
    params : the formulation parameters recorded in ``plan.meta["params"]``.
    """

    decision: str
    periods: np.ndarray
    days: pd.Series
    dc_ids: frozenset[str]
    lagged: bool
    backlog: bool
    params: dict[str, Any]


def plan_context(instance: Instance, plan: Plan) -> Context:
    """The reading of ``plan`` on ``instance``; a capacity plan must be checked on its daily peak instance."""
    days = period_days(instance)
    periods = days.index.astype(int).to_numpy()
    params = dict(plan.meta.get("params") or {})
    if plan.decision == "capacity" and plan.meta.get("days") is not None and int(plan.meta["days"]) != len(periods):
        raise ValueError(f"check_plan: the capacity plan covers {int(plan.meta['days'])} days but the instance has "
                         f"{len(periods)} periods of {days.iloc[0]:g} days; check a capacity plan on its daily peak "
                         "instance (formulations.capacity.peak_instance / engine.pipeline.evaluation_instance)")
    if plan.decision == "redistribution" and plan.meta.get("periods"):
        horizon = np.array(sorted(int(p) for p in plan.meta["periods"]))
        unknown = sorted(set(horizon) - set(periods))
        if unknown:
            raise ValueError(f"check_plan: the plan's horizon periods {unknown} are not periods of the instance "
                             f"(1..{len(periods)})")
        periods = horizon
    kind = dict(zip(instance.sites["id"].astype(str), instance.sites["kind"]))
    return Context(
        decision=plan.decision, periods=periods, days=days,
        dc_ids=frozenset(s for s, k in kind.items() if k in ("dc", "crossdock")),
        lagged=plan.decision == "redistribution",
        backlog=plan.decision == "redistribution" and bool(params.get("allow_late", True)), params=params)


def _flows(plan: Plan) -> pd.DataFrame:
    f = plan.tables["flows"]
    if f.empty:
        return pd.DataFrame({c: pd.Series(dtype=float if c in ("quantity", "period") else object)
                             for c in MOVE_COLUMNS})
    f = f.copy()
    f["quantity"] = _num(f["quantity"])
    f["period"] = _num(f["period"]).astype("Int64")
    for c in ("origin_id", "destination_id", "product_id", "leg"):
        f[c] = f[c].astype(str)
    return f


def _transfers(plan: Plan) -> pd.DataFrame:
    """Transfers with numeric quantity, trucks, transit_days and dispatch period (default 1)."""
    t = with_column_defaults("transfers", plan.tables["transfers"])
    if t.empty:
        return t
    t = t.copy()
    for c in ("quantity", "trucks", "transit_days"):
        t[c] = _num(t[c]) if c in t else np.nan
    t["period"] = _num(t["period"]).astype("Int64")
    for c in ("origin_id", "destination_id", "product_id"):
        t[c] = t[c].astype(str)
    return t


def lane_transit(instance: Instance) -> pd.DataFrame:
    """Per (origin_id, destination_id): ``transit`` of the cheapest mode (then the fastest) and ``fastest``."""
    lanes = instance.lanes
    key = ["origin_id", "destination_id"]
    if lanes.empty:
        return pd.DataFrame(columns=["transit", "fastest"], index=pd.MultiIndex.from_tuples([], names=key))
    chosen = cheapest_lanes(lanes).set_index(key)["transit_days"].astype(float)
    fastest = lanes.groupby(key)["transit_days"].min().astype(float)
    return pd.DataFrame({"transit": chosen, "fastest": fastest.reindex(chosen.index)})


def _movements(flows: pd.DataFrame, transfers: pd.DataFrame, transit: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """Every positive flow and transfer with its dispatch ``period`` and ``arrival`` period.

    Arrival = dispatch + ``floor(transit / days of the dispatch period)`` for a lagged decision, else the
    dispatch period. A transfer travels its ``transit_days`` (no faster than its lane's fastest mode), a flow
    its lane's cheapest mode (or its own ``transit_days`` column if it has one).
    """
    parts = [flows[MOVE_COLUMNS].assign(transit=_num(flows["transit_days"]) if "transit_days" in flows else np.nan)]
    if not transfers.empty:
        parts.append(transfers.assign(leg="transfer", transit=transfers["transit_days"])[[*MOVE_COLUMNS, "transit"]])
    m = pd.concat(parts, ignore_index=True)
    m = m[m["quantity"] > 0].reset_index(drop=True)
    m["period"] = m["period"].astype("Int64")
    if not ctx.lagged or m.empty:
        return m.assign(arrival=m["period"])
    lanes = transit.reindex(pd.MultiIndex.from_frame(m[["origin_id", "destination_id"]]))
    days = m["transit"].to_numpy(dtype=float)
    days = np.where(np.isnan(days), lanes["transit"].to_numpy(dtype=float),
                    np.fmax(days, lanes["fastest"].to_numpy(dtype=float)))
    per_days = ctx.days.reindex(m["period"].astype(float).to_numpy()).to_numpy(dtype=float)
    lag = np.floor(np.nan_to_num(days) / per_days + 1e-9)
    m["arrival"] = (m["period"].astype(float) + np.nan_to_num(lag)).astype("Int64")
    return m


def check_plan(instance: Instance, plan: Plan, tol: float = 1e-6, single_source: bool | None = None) -> pd.DataFrame:
    """Every violation of the plan against the instance, as a table (empty = OK).

    Parameters
    ----------
    instance : the instance the plan was solved on (scenario applied; for a capacity plan its daily peak
        instance, :func:`formulations.capacity.peak_instance`).
    plan : a :class:`Plan`; only its non-empty tables are checked.
    tol : relative tolerance (of max(1, |limit|)).
    single_source : check single sourcing; ``None`` reads ``plan.meta["options"]["single_source"]``.

    Returns
    -------
    DataFrame with columns :data:`VIOLATION_COLUMNS`, one row per violation (see the module docstring).
    """
    ctx = plan_context(instance, plan)
    flows = _flows(plan)
    transfers = _transfers(plan)
    transit = lane_transit(instance)
    moves = _movements(flows, transfers, transit, ctx)
    found: list[pd.DataFrame | None] = [
        _check_negative(plan, flows, transfers, tol),
        _check_horizon(plan, moves, ctx),
        *_check_demand(instance, plan, flows, ctx, tol),
        *_check_lanes(instance, moves, tol),
        _check_closed(plan, moves),
        _check_supply(instance, flows, tol),
        *_check_transfers(instance, plan, transfers, transit, ctx, tol),
        *_check_expansion(instance, plan, tol),
    ]
    if ctx.decision == "capacity":
        thr = _processed(plan, ctx)
        found.extend(_check_peak_backlog(instance, plan, flows, thr, ctx, tol))
        found.extend(_check_assignment(instance, plan, flows, ctx, tol))
    else:
        found.append(_check_balance(instance, moves, ctx, tol))
        thr = _throughput(instance, moves, ctx)
        found.append(_check_reported_throughput(plan, thr, tol))
    found.append(_check_stage_capacity(instance, plan, thr, ctx, tol))
    found.extend(_check_labor(instance, plan, thr, ctx, tol))
    if single_source is None:
        single_source = bool((plan.meta.get("options") or {}).get("single_source", False))
    if single_source:
        found.append(_check_single_source(flows))
    found = [f for f in found if f is not None and len(f)]
    if not found:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VIOLATION_COLUMNS})
    return pd.concat(found, ignore_index=True)[list(VIOLATION_COLUMNS)]


# ---------------------------------------------------------------------------------------------------
# Checks shared by every decision
# ---------------------------------------------------------------------------------------------------
def _check_negative(plan: Plan, flows: pd.DataFrame, transfers: pd.DataFrame, tol: float) -> pd.DataFrame | None:
    """Every column the plan-table declaration bounds below (:data:`instances.plan.PLAN_SCHEMA`, ``min=0``)."""
    parts = []
    for name in PLAN_SCHEMA:
        cols = plan_columns(name, checked_min=True)
        t = {"flows": flows, "transfers": transfers}.get(name, plan.tables[name])
        if t.empty or not cols:
            continue
        for c in cols:
            if c not in t:
                continue
            v = _num(t[c]).fillna(0.0)
            bad = v < -tol
            if bad.any():
                f = t[bad.to_numpy()]
                site = "site_id" if "site_id" in f else ("origin_id" if "origin_id" in f else None)
                zone = "zone_id" if "zone_id" in f else ("destination_id" if "destination_id" in f else None)
                parts.append(_rows("negative", f, v[bad], 0.0, -v[bad], f"{name}.{c} is negative",
                                   site_id=site, zone_id=zone,
                                   product_id="product_id" if "product_id" in f else None,
                                   period="period" if "period" in f else None,
                                   stage="stage" if "stage" in f else None))
    return pd.concat(parts, ignore_index=True) if parts else None


def _check_horizon(plan: Plan, moves: pd.DataFrame, ctx: Context) -> pd.DataFrame | None:
    """Flows, transfers (dispatch period) and lost sales outside the plan's horizon periods."""
    parts = []
    span = f"{ctx.periods.min()}..{ctx.periods.max()}"
    outside = ~moves["period"].isin(ctx.periods).to_numpy(dtype=bool)
    if outside.any():
        f = moves[outside]
        parts.append(_rows("horizon", f, f["quantity"], 0.0, f["quantity"],
                           f"shipment dispatched outside the plan horizon {span}", site_id="origin_id",
                           zone_id="destination_id", product_id="product_id", period="period"))
    unmet = plan.tables["unmet"]
    if not unmet.empty:
        q = _num(unmet["quantity"])
        bad = (~_num(unmet["period"]).isin(ctx.periods) & (q > 0)).to_numpy()
        if bad.any():
            f = unmet[bad]
            parts.append(_rows("horizon", f, q[bad], 0.0, q[bad], f"unmet demand reported outside the plan horizon "
                               f"{span}", zone_id="zone_id", product_id="product_id", period="period"))
    return pd.concat(parts, ignore_index=True) if parts else None


def _demand_frame(instance: Instance, plan: Plan, flows: pd.DataFrame, ctx: Context) -> pd.DataFrame | None:
    """demand, served (outbound flows) and unmet per zone, product and horizon period (None = nothing to check)."""
    out = flows[flows["leg"] == "outbound"]
    unmet = plan.tables["unmet"]
    if out.empty and unmet.empty and not (pd.to_numeric(instance.demand["quantity"]) > 0).any():
        return None
    key = ["zone_id", "product_id", "period"]
    d = instance.demand[key + ["quantity"]].copy()
    d["period"] = d["period"].astype(int)
    dem = d.groupby(key)["quantity"].sum()
    served = out.assign(period=out["period"].astype(int)).groupby(["destination_id", "product_id", "period"])[
        "quantity"].sum()
    served.index = served.index.set_names(key)
    if unmet.empty:
        short = pd.Series(dtype=float, index=pd.MultiIndex.from_tuples([], names=key))
    else:
        u = unmet.assign(quantity=_num(unmet["quantity"]), period=_num(unmet["period"]).astype(int))
        u["zone_id"], u["product_id"] = u["zone_id"].astype(str), u["product_id"].astype(str)
        short = u.groupby(key)["quantity"].sum()
    idx = dem.index.union(served.index).union(short.index)
    t = pd.DataFrame({"demand": dem.reindex(idx).fillna(0.0), "served": served.reindex(idx).fillna(0.0),
                      "unmet": short.reindex(idx).fillna(0.0)}).reset_index()
    return t[t["period"].isin(ctx.periods)].reset_index(drop=True)


def _check_demand(instance: Instance, plan: Plan, flows: pd.DataFrame, ctx: Context,
                  tol: float) -> list[pd.DataFrame | None]:
    """Demand met or reported: in its period, or (with backlog) by the horizon end and never ahead of it.

    With backlog, per zone and product, ``S_t + L_t <= D_t`` for every period and ``S_T + L_T = D_T`` at the
    horizon end (cumulative served, lost and demanded units); the open backlog ``D_t - S_t - L_t`` summed over
    the periods must equal ``meta["backlog_unit_periods"]`` when the plan reports it.
    """
    t = _demand_frame(instance, plan, flows, ctx)
    if t is None or t.empty:
        return []
    t["total"] = t["served"] + t["unmet"]
    if not ctx.backlog:
        return [_differs("demand", t, "total", "demand", tol, "served + unmet differs from demand",
                         zone_id="zone_id", product_id="product_id", period="period")]
    # dense (zone, product) x horizon grid: cumulative sums carry over periods without rows
    pairs = t[["zone_id", "product_id"]].drop_duplicates().reset_index(drop=True)
    n_t = len(ctx.periods)
    grid = pd.DataFrame({"zone_id": np.repeat(pairs["zone_id"].to_numpy(), n_t),
                         "product_id": np.repeat(pairs["product_id"].to_numpy(), n_t),
                         "period": np.tile(ctx.periods, len(pairs))})
    g = grid.merge(t, on=["zone_id", "product_id", "period"], how="left").fillna(
        {"demand": 0.0, "served": 0.0, "unmet": 0.0, "total": 0.0})
    by = g.groupby(["zone_id", "product_id"], sort=False)
    g["cum_demand"] = by["demand"].cumsum()
    g["cum_total"] = by["total"].cumsum()
    last = g["period"].to_numpy() == ctx.periods[-1]
    out = [_over("demand", g[~last], "cum_total", "cum_demand", tol,
                 "cumulative served + lost ahead of cumulative demand (served before ordered)",
                 zone_id="zone_id", product_id="product_id", period="period"),
           _differs("demand", g[last], "cum_total", "cum_demand", tol,
                    "at the horizon end served + lost differs from demand (backlog left unreported)",
                    zone_id="zone_id", product_id="product_id", period="period")]
    reported = plan.meta.get("backlog_unit_periods")
    if reported is not None:
        open_units = float((g["cum_demand"] - g["cum_total"])[~last].sum())
        f = pd.DataFrame({"reported": [float(reported)], "recomputed": [open_units]})
        out.append(_differs("backlog", f, "reported", "recomputed", tol,
                            "meta backlog_unit_periods differs from the backlog implied by demand, deliveries and "
                            "lost sales"))
    return out


def _check_lanes(instance: Instance, moves: pd.DataFrame, tol: float) -> list[pd.DataFrame | None]:
    lanes = instance.lanes
    # capacity of an origin -> destination pair over its modes; an empty capacity means unlimited
    pair_cap = lanes["capacity"].fillna(np.inf).groupby([lanes["origin_id"], lanes["destination_id"]]).sum()
    res: list[pd.DataFrame | None] = []
    if moves.empty:
        return res
    known = pd.MultiIndex.from_frame(moves[["origin_id", "destination_id"]]).isin(pair_cap.index)
    if not known.all():
        f = moves[~known]
        res.append(_rows("unknown_lane", f, f["quantity"], 0.0, f["quantity"], "flow on a lane the instance lacks",
                         site_id="origin_id", zone_id="destination_id", product_id="product_id", period="period"))
    g = moves.groupby(["origin_id", "destination_id", "period"], as_index=False)["quantity"].sum()
    g["limit"] = pair_cap.reindex(pd.MultiIndex.from_frame(g[["origin_id", "destination_id"]])).to_numpy()
    g = g[np.isfinite(g["limit"].astype(float))]
    if len(g):
        res.append(_over("lane_capacity", g, "quantity", "limit", tol, "lane capacity exceeded",
                         site_id="origin_id", zone_id="destination_id", period="period"))
    return res


def _check_closed(plan: Plan, moves: pd.DataFrame) -> pd.DataFrame | None:
    s = plan.tables["sites"]
    if s.empty or moves.empty:
        return None
    closed = set(s.loc[~s["open"].astype(bool), "site_id"].astype(str))
    if not closed:
        return None
    parts = []
    for end in ("origin_id", "destination_id"):
        bad = moves[end].isin(closed).to_numpy()
        if bad.any():
            f = moves[bad]
            parts.append(_rows("closed_site", f, f["quantity"], 0.0, f["quantity"],
                               f"flow through a closed site ({end})", site_id=end,
                               product_id="product_id", period="period"))
    return pd.concat(parts, ignore_index=True) if parts else None


def _check_supply(instance: Instance, flows: pd.DataFrame, tol: float) -> pd.DataFrame | None:
    sup = instance.supply
    if sup.empty:
        return None
    src = set(instance.sources["id"].astype(str))
    f = flows[flows["origin_id"].isin(src) & (flows["quantity"] > 0)]
    if f.empty:
        return None
    g = f.groupby(["origin_id", "product_id", "period"], as_index=False)["quantity"].sum()
    cap = sup.assign(period=sup["period"].astype(int)).groupby(["site_id", "product_id", "period"])["capacity"].sum()
    g["limit"] = cap.reindex(pd.MultiIndex.from_frame(g[["origin_id", "product_id", "period"]].astype(
        {"period": int}))).fillna(0.0).to_numpy()
    return _over("supply", g, "quantity", "limit", tol, "shipped more than the supply", site_id="origin_id",
                 product_id="product_id", period="period")


def _has_sources(instance: Instance, dc_ids: frozenset[str]) -> bool:
    lanes = instance.lanes
    src = set(instance.sources["id"].astype(str))
    return bool((lanes["origin_id"].isin(src) & lanes["destination_id"].isin(dc_ids)).any())


def _dc_period_grid(keys: pd.DataFrame, periods: np.ndarray) -> pd.DataFrame:
    """Every row of ``keys`` once per period (column ``period``), periods varying fastest."""
    n = len(periods)
    out = keys.loc[keys.index.repeat(n)].reset_index(drop=True)
    out["period"] = np.tile(periods, len(keys))
    return out


def _check_balance(instance: Instance, moves: pd.DataFrame, ctx: Context, tol: float) -> pd.DataFrame | None:
    """Stock at each DC never negative: ``on_hand + sum_{arrival<=t} in >= sum_{dispatch<=t} out``.

    Applies when DCs are supplied (source->DC lanes, stock on hand or transfers); without any (a facility
    location instance) DCs are themselves the sources.
    """
    inv = instance.inventory
    if not (_has_sources(instance, ctx.dc_ids) or not inv.empty or (moves["leg"] == "transfer").any()):
        return None
    key = ["site_id", "product_id", "period"]
    into = moves[moves["destination_id"].isin(ctx.dc_ids)]
    into = into.groupby(["destination_id", "product_id", "arrival"])["quantity"].sum().rename_axis(key)
    outof = moves[moves["origin_id"].isin(ctx.dc_ids)]
    outof = outof.groupby(["origin_id", "product_id", "period"])["quantity"].sum().rename_axis(key)
    pairs = pd.concat([into.reset_index()[key[:2]], outof.reset_index()[key[:2]]]).drop_duplicates()
    if pairs.empty:
        return None
    g = _dc_period_grid(pairs.reset_index(drop=True), ctx.periods)
    idx = pd.MultiIndex.from_frame(g[key].astype({"period": int}))
    into.index = into.index.set_levels(into.index.levels[2].astype(int), level=2)
    outof.index = outof.index.set_levels(outof.index.levels[2].astype(int), level=2)
    g["in"] = into.reindex(idx).fillna(0.0).to_numpy()
    g["out"] = outof.reindex(idx).fillna(0.0).to_numpy()
    by = g.groupby(["site_id", "product_id"], sort=False)
    stock = inv.groupby(["site_id", "product_id"])["on_hand"].sum() if not inv.empty else pd.Series(dtype=float)
    g["cum_out"] = by["out"].cumsum()
    g["available"] = stock.reindex(pd.MultiIndex.from_frame(g[key[:2]])).fillna(0.0).to_numpy() + by["in"].cumsum()
    return _over("balance", g, "cum_out", "available", tol,
                 "stock negative: cumulative dispatches exceed stock on hand + cumulative arrivals",
                 site_id="site_id", product_id="product_id", period="period")


def _check_transfers(instance: Instance, plan: Plan, transfers: pd.DataFrame, transit: pd.DataFrame, ctx: Context,
                     tol: float) -> list[pd.DataFrame | None]:
    """Transit no faster than the lane; whole trucks per lane and dispatch period carry the volume and weight."""
    trucks = pd.DataFrame(plan.meta.get("truckloads") or [])
    if transfers.empty and trucks.empty:
        return []
    out: list[pd.DataFrame | None] = []
    key = ["origin_id", "destination_id", "period"]
    t = transfers[transfers["quantity"] > 0] if not transfers.empty else transfers
    if not t.empty:
        lanes = transit.reindex(pd.MultiIndex.from_frame(t[["origin_id", "destination_id"]]))
        f = t.assign(fastest=lanes["fastest"].to_numpy(dtype=float))
        fast = (f["fastest"] - f["transit_days"]) > tol * np.maximum(1.0, f["fastest"].abs())
        if fast.any():
            f = f[fast.to_numpy()]
            out.append(_rows("transit", f, f["transit_days"], f["fastest"], f["fastest"] - f["transit_days"],
                             "transfer transit_days faster than its lane (excess: days too fast)",
                             site_id="origin_id", zone_id="destination_id", product_id="product_id",
                             period="period"))
    prod = instance.products.set_index("id")
    load = t.assign(volume_m3=t["quantity"] * t["product_id"].map(prod["unit_volume_m3"]).astype(float),
                    weight_kg=t["quantity"] * t["product_id"].map(prod["unit_weight_kg"]).astype(float))
    load = load.groupby(key, as_index=False)[["volume_m3", "weight_kg", "trucks"]].sum(min_count=1)
    load["period"] = load["period"].astype(int)
    if not trucks.empty:
        trucks = trucks.assign(period=_num(trucks["period"]).astype(int), trucks=_num(trucks["trucks"]))
        trucks = trucks.groupby(key, as_index=False)["trucks"].sum().rename(columns={"trucks": "truckloads"})
        load = load.merge(trucks, on=key, how="outer").fillna({"volume_m3": 0.0, "weight_kg": 0.0})
        shared = load[load["trucks"].notna()].fillna({"truckloads": 0.0})
        out.append(_differs("trucks", shared, "trucks", "truckloads", tol,
                            "transfers' truck shares do not add up to meta truckloads", site_id="origin_id",
                            zone_id="destination_id", period="period"))
        load["count"] = load["truckloads"].fillna(0.0)
    else:
        load["count"] = load["trucks"].fillna(0.0)
    frac = (load["count"] - load["count"].round()).abs() > 1e-6
    if frac.any():
        f = load[frac.to_numpy()]
        out.append(_rows("trucks", f, f["count"], f["count"].round(), f["count"] - f["count"].round(),
                         "not a whole number of trucks", site_id="origin_id", zone_id="destination_id",
                         period="period"))
    d = instance.defaults
    for col, unit in (("volume_m3", "m3"), ("weight_kg", "kg")):
        cap = float(ctx.params.get(f"truck_capacity_{unit}") or d[f"truck_capacity_{unit}"])
        load[f"cap_{unit}"] = load["count"] * cap
        out.append(_over("trucks", load, col, f"cap_{unit}", tol, f"trucks too few for the {col.split('_')[0]} "
                         f"({cap:g} {unit} per truck)", site_id="origin_id", zone_id="destination_id",
                         period="period"))
    return out


def _check_expansion(instance: Instance, plan: Plan, tol: float) -> list[pd.DataFrame | None]:
    """Base = resources.csv count, modules within max_modules, added = modules x module_size, total <= base + added,
    hours + extra <= 24."""
    cap = with_column_defaults("capacity", plan.tables["capacity"])
    if cap.empty:
        return []
    c = cap.assign(**{k: _num(cap[k]).fillna(0.0) for k in ("base_count", "added_count", "total_count", "modules",
                                                               "extra_hours_per_day")})
    c = c[c["stage"].isin(FLOW_STAGES)]
    out: list[pd.DataFrame | None] = []
    exp = instance.expansions
    if not exp.empty:
        e = c.merge(exp, on=["site_id", "stage"], how="left")
        e["max_modules"] = e["max_modules"].fillna(0.0)
        out.append(_over("expansion", e, "modules", "max_modules", tol, "more modules than max_modules",
                         site_id="site_id", stage="stage"))
        e["expected_added"] = e["modules"] * e["module_size"].fillna(0.0)
        out.append(_differs("expansion", e, "added_count", "expected_added", tol,
                            "added_count != modules x module_size", site_id="site_id", stage="stage"))
    res = instance.resources
    counts = res[res["stage"].isin(FLOW_STAGES)].groupby(["site_id", "stage"])["count"].sum()
    c = c.assign(resources_count=counts.reindex(pd.MultiIndex.from_frame(c[["site_id", "stage"]])).fillna(
        0.0).to_numpy(), base_plus_added=c["base_count"] + c["added_count"])
    out.append(_differs("expansion", c, "base_count", "resources_count", tol,
                        "base_count differs from the resources.csv count", site_id="site_id", stage="stage"))
    out.append(_over("expansion", c, "total_count", "base_plus_added", tol, "total_count above installed + added",
                     site_id="site_id", stage="stage"))
    res = instance.resources[["site_id", "stage", "hours_per_day"]]
    h = c.merge(res, on=["site_id", "stage"], how="inner")
    h = h.assign(hours=h["hours_per_day"] + h["extra_hours_per_day"], day=24.0)
    out.append(_over("expansion", h, "hours", "day", tol, "operating hours + extra shift above 24 h per day",
                     site_id="site_id", stage="stage"))
    return out


def _check_stage_capacity(instance: Instance, plan: Plan, thr: pd.DataFrame, ctx: Context,
                          tol: float) -> pd.DataFrame | None:
    """``load[s,g,t] <= count x rate x (hours + extra hours) x days`` (inbound stages loaded by received units).

    The count is the plan's ``total_count`` where it has a capacity table (a stage it leaves out has none),
    else the installed count (0 at a DC the plan closes); a DC without resources processes nothing.
    """
    res = instance.resources
    res = res[res["stage"].isin(FLOW_STAGES)][["site_id", "stage", "count", "rate_per_hour", "hours_per_day"]]
    cap = with_column_defaults("capacity", plan.tables["capacity"])
    if not cap.empty:
        counts = cap[cap["stage"].isin(FLOW_STAGES)].assign(
            count=_num(cap["total_count"]), extra=_num(cap["extra_hours_per_day"]).fillna(0.0))
        rates = res.drop(columns=["count"]).merge(counts[["site_id", "stage", "count", "extra"]],
                                                  on=["site_id", "stage"], how="left")
        rates = rates.fillna({"count": 0.0, "extra": 0.0})  # a stage the plan does not list has no capacity
    else:
        rates = res.assign(extra=0.0)
        s = plan.tables["sites"]
        if not s.empty:
            closed = set(s.loc[~s["open"].astype(bool), "site_id"].astype(str))
            rates.loc[rates["site_id"].isin(closed), "count"] = 0.0
    bare = sorted(ctx.dc_ids - set(res["site_id"]))
    if bare:
        rates = pd.concat([rates, pd.DataFrame([(s, st, 1.0, 1.0, 0.0, 0.0) for s in bare for st in FLOW_STAGES],
                                               columns=["site_id", "stage", "rate_per_hour", "hours_per_day",
                                                        "count", "extra"])], ignore_index=True)
    g = rates.merge(thr, on="site_id", how="inner")
    if g.empty:
        return None
    g["days"] = ctx.days.reindex(g["period"].astype(int)).to_numpy()
    g["load"] = np.where(g["stage"].isin(INBOUND_STAGES), g["inbound_units"], g["outbound_units"])
    g["limit"] = g["count"] * g["rate_per_hour"] * (g["hours_per_day"] + g["extra"]) * g["days"]
    return _over("capacity", g, "load", "limit", tol, "stage throughput above capacity", site_id="site_id",
                 stage="stage", period="period")


def _throughput(instance: Instance, moves: pd.DataFrame, ctx: Context) -> pd.DataFrame:
    """Units received (in their arrival period) and shipped (dispatch period) per DC and horizon period."""
    shipped = moves[moves["origin_id"].isin(ctx.dc_ids)].groupby(["origin_id", "period"])["quantity"].sum()
    received = moves[moves["destination_id"].isin(ctx.dc_ids)].groupby(["destination_id", "arrival"])[
        "quantity"].sum()
    grid = pd.MultiIndex.from_product([sorted(ctx.dc_ids), ctx.periods], names=["site_id", "period"])
    shipped.index = pd.MultiIndex.from_arrays([shipped.index.get_level_values(0),
                                               shipped.index.get_level_values(1).astype(int)])
    received.index = pd.MultiIndex.from_arrays([received.index.get_level_values(0),
                                                received.index.get_level_values(1).astype(int)])
    out = pd.DataFrame({"outbound_units": shipped.reindex(grid).fillna(0.0).to_numpy(),
                        "inbound_units": received.reindex(grid).fillna(0.0).to_numpy()}, index=grid).reset_index()
    if not _has_sources(instance, ctx.dc_ids) and instance.inventory.empty:
        out["inbound_units"] = out["outbound_units"]  # DCs are the sources: they handle what they ship
    return out


def _check_reported_throughput(plan: Plan, thr: pd.DataFrame, tol: float) -> pd.DataFrame | None:
    st = plan.tables["site_throughput"]
    if st.empty:
        return None
    st = st.assign(period=_num(st["period"]).astype(int), site_id=st["site_id"].astype(str))
    g = st.merge(thr, on=["site_id", "period"], how="left", suffixes=("", "_flows")).fillna(0.0)
    parts = [_differs("throughput", g, c, f"{c}_flows", tol, f"site_throughput.{c} differs from the flows",
                      site_id="site_id", period="period") for c in ("inbound_units", "outbound_units")]
    parts = [p for p in parts if p is not None]
    return pd.concat(parts, ignore_index=True) if parts else None


# ---------------------------------------------------------------------------------------------------
# Capacity (peak) plans: orders, backlog and processed units
# ---------------------------------------------------------------------------------------------------
def _processed(plan: Plan, ctx: Context) -> pd.DataFrame:
    """The capacity plan's units processed per DC and day (its ``site_throughput``), on the DC x day grid."""
    st = plan.tables["site_throughput"]
    grid = pd.MultiIndex.from_product([sorted(ctx.dc_ids), ctx.periods], names=["site_id", "period"])
    if st.empty:
        return pd.DataFrame({"inbound_units": 0.0, "outbound_units": 0.0}, index=grid).reset_index()
    st = st.assign(period=_num(st["period"]).astype(int), site_id=st["site_id"].astype(str))
    g = st.groupby(["site_id", "period"])[["inbound_units", "outbound_units"]].sum()
    return g.reindex(grid).fillna(0.0).reset_index()


def _check_peak_backlog(instance: Instance, plan: Plan, flows: pd.DataFrame, thr: pd.DataFrame, ctx: Context,
                        tol: float) -> list[pd.DataFrame | None]:
    """Orders wait until processed: ``backlog[s,d] = sum_{<=d} (orders - processed) >= 0``; the SLA breach
    ``sum max(0, backlog[s,d] - sum_k w_k orders[s,d-k])`` (``w_k = clip(SLA_h/24 - k, 0, 1)``) is not more
    than ``meta["sla_breach_unit_days"]``."""
    out = flows[flows["leg"] == "outbound"]
    orders = out.assign(period=out["period"].astype(int)).groupby(["origin_id", "period"])["quantity"].sum()
    orders.index = orders.index.set_names(["site_id", "period"])
    g = thr.copy()
    g["orders"] = orders.reindex(pd.MultiIndex.from_frame(g[["site_id", "period"]])).fillna(0.0).to_numpy()
    by = g.groupby("site_id", sort=False)
    g["cum_processed"] = by["outbound_units"].cumsum()
    g["cum_orders"] = by["orders"].cumsum()
    res: list[pd.DataFrame | None] = [
        _over("backlog", g, "cum_processed", "cum_orders", tol,
              "processed more units than ordered so far (negative backlog)", site_id="site_id", period="period"),
        _differs("throughput", g, "inbound_units", "outbound_units", tol,
                 "site_throughput: inbound_units != outbound_units (units processed)", site_id="site_id",
                 period="period")]
    reported = plan.meta.get("sla_breach_unit_days")
    if reported is not None:
        sla_hours = float(ctx.params.get("sla_hours", instance.defaults["order_to_ship_sla_hours"]))
        weights = np.clip(sla_hours / 24.0 - np.arange(int(np.ceil(sla_hours / 24.0)) + 1), 0.0, 1.0)
        allowed = sum(w * by["orders"].shift(k).fillna(0.0) for k, w in enumerate(weights) if w > 0)
        breach = (g["cum_orders"] - g["cum_processed"] - allowed).clip(lower=0.0)
        f = pd.DataFrame({"breach": [float(breach.sum())], "reported": [float(reported)]})
        res.append(_over("sla", f, "breach", "reported", tol,
                         "backlog beyond the order-to-ship SLA above meta sla_breach_unit_days"))
    return res


def _check_assignment(instance: Instance, plan: Plan, flows: pd.DataFrame, ctx: Context,
                      tol: float) -> list[pd.DataFrame | None]:
    """Zone shares sum to 1 per day the zone orders; ``flows[s,z,p,d] = share[z,s,d] x demand[z,p,d]``."""
    a = plan.tables["assignment"]
    d = instance.demand
    d = d[d["period"].astype(int).isin(ctx.periods) & (d["quantity"] > 0)]
    if d.empty and a.empty:
        return []
    a = a.assign(share=_num(a["share"]), period=_num(a["period"]).astype(int), zone_id=a["zone_id"].astype(str),
                 site_id=a["site_id"].astype(str))
    zone_days = d.assign(period=d["period"].astype(int)).groupby(["zone_id", "period"], as_index=False)[
        "quantity"].sum()
    shares = a.groupby(["zone_id", "period"])["share"].sum()
    zone_days["share"] = shares.reindex(pd.MultiIndex.from_frame(zone_days[["zone_id", "period"]])).fillna(
        0.0).to_numpy()
    zone_days["one"] = 1.0
    out = [_differs("assignment", zone_days, "share", "one", tol, "zone shares do not sum to 1",
                    zone_id="zone_id", period="period")]
    key = ["site_id", "zone_id", "product_id", "period"]
    expected = a[["zone_id", "site_id", "period", "share"]].merge(
        d.assign(period=d["period"].astype(int))[["zone_id", "product_id", "period", "quantity"]],
        on=["zone_id", "period"])
    expected = expected.assign(expected=expected["share"] * expected["quantity"]).groupby(key)["expected"].sum()
    f = flows[flows["leg"] == "outbound"]
    got = f.assign(period=f["period"].astype(int)).rename(columns={"origin_id": "site_id",
                                                                   "destination_id": "zone_id"})
    got = got.groupby(key)["quantity"].sum()
    idx = expected.index.union(got.index)
    g = pd.DataFrame({"quantity": got.reindex(idx).fillna(0.0), "expected": expected.reindex(idx).fillna(0.0)})
    out.append(_differs("assignment", g.reset_index(), "quantity", "expected", tol,
                        "flow differs from the zone's share x demand", site_id="site_id", zone_id="zone_id",
                        product_id="product_id", period="period"))
    return out


# ---------------------------------------------------------------------------------------------------
# Labour
# ---------------------------------------------------------------------------------------------------
def _weeks(ctx: Context) -> pd.DataFrame:
    """Per horizon period: its calendar week (7 days from the instance start) and the week's first period."""
    start_day = ctx.days.cumsum() - ctx.days
    w = pd.DataFrame({"period": ctx.days.index.astype(int), "week": np.floor(start_day.to_numpy() / 7.0 + 1e-9),
                      "days": ctx.days.to_numpy()})
    w = w[w["period"].isin(ctx.periods)]
    w["week_days"] = w.groupby("week")["days"].transform("sum")
    w["week_start"] = w.groupby("week")["period"].transform("min")
    return w


def _check_labor(instance: Instance, plan: Plan, thr: pd.DataFrame, ctx: Context,
                 tol: float) -> list[pd.DataFrame | None]:
    """Regular hours per period, overtime per calendar week, temp hours per hired temp, hours needed covered.

    ``regular <= max_headcount x hours_per_person_week x days/7``; ``sum_{week} overtime <= max_overtime_hours
    x days in the week / 7``; ``temp <= temps x temp_hours_per_day`` (capacity); ``regular + overtime + temp
    >= sum_stages units / productivity`` (inbound stages by received units, the others by shipped units).
    """
    lab = plan.tables["labor"]
    params = labor_parameters(instance)
    if lab.empty or params.empty:
        return []
    h = lab.assign(period=_num(lab["period"]).astype(int), site_id=lab["site_id"].astype(str),
                   **{c: _num(lab[c]).fillna(0.0) for c in ("regular_hours", "overtime_hours", "temp_hours")})
    h = h.merge(params, on="site_id", how="inner").merge(thr, on=["site_id", "period"], how="left").fillna(
        {"inbound_units": 0.0, "outbound_units": 0.0})
    days = ctx.days.reindex(h["period"]).to_numpy()
    h["regular_limit"] = h["max_headcount"] * h["hours_per_person_week"] * days / 7.0
    per_unit = {s: np.where(h[f"productivity_{s}"] > 0, 1.0 / h[f"productivity_{s}"].where(
        h[f"productivity_{s}"] > 0, 1.0), 0.0) for s in FLOW_STAGES}
    h["needed"] = sum((h["inbound_units"] if s in INBOUND_STAGES else h["outbound_units"]) * per_unit[s]
                      for s in FLOW_STAGES)
    h["worked"] = h["regular_hours"] + h["overtime_hours"] + h["temp_hours"]
    weekly = h.merge(_weeks(ctx), on="period").groupby(["site_id", "week_start"], as_index=False).agg(
        overtime_hours=("overtime_hours", "sum"), max_overtime_hours=("max_overtime_hours", "first"),
        week_days=("week_days", "first"))
    weekly["overtime_limit"] = weekly["max_overtime_hours"] * weekly["week_days"] / 7.0
    out = [
        _over("labor_regular", h, "regular_hours", "regular_limit", tol, "regular hours above headcount",
              site_id="site_id", period="period"),
        _over("labor_overtime", weekly, "overtime_hours", "overtime_limit", tol,
              "overtime in the week starting in this period above its weekly limit", site_id="site_id",
              period="week_start"),
        _over("labor_needed", h, "needed", "worked", tol, "fewer labour hours than the throughput needs",
              site_id="site_id", period="period"),
    ]
    per_day, share = ctx.params.get("temp_hours_per_day"), ctx.params.get("max_temp_share")
    if ctx.decision == "capacity" and per_day is not None and share is not None:
        temps = {str(k): float(v) for k, v in (plan.meta.get("temps") or {}).items()}
        h["temps"] = h["site_id"].map(temps).fillna(0.0)
        h["temp_limit"] = h["temps"] * float(per_day) * days
        out.append(_over("labor_temp", h, "temp_hours", "temp_limit", tol, "temp hours above temps hired x "
                         "temp_hours_per_day", site_id="site_id", period="period"))
        hired = h.drop_duplicates("site_id").assign(
            cap=lambda f: np.floor(f["max_headcount"] * float(share) + 1e-9))
        out.append(_over("labor_temp", hired, "temps", "cap", tol, "more temps than max_temp_share x max_headcount",
                         site_id="site_id"))
    return out


def _check_single_source(flows: pd.DataFrame) -> pd.DataFrame | None:
    out = flows[(flows["leg"] == "outbound") & (flows["quantity"] > 0)]
    n = out.groupby("destination_id")["origin_id"].nunique()
    bad = n[n > 1]
    if bad.empty:
        return None
    f = bad.rename("n").reset_index()
    return _rows("single_source", f, f["n"], 1.0, f["n"] - 1.0, "zone served by more than one DC",
                 zone_id="destination_id")
