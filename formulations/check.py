"""Independent checker: re-check a solved plan against the instance in plain pandas (no solver objects).

:func:`check_plan` is table-driven: it checks whatever plan tables are non-empty, so it serves every
decision (consolidation, redistribution, capacity). It recomputes throughput from the flows rather than
trusting the plan's own summaries, and compares the two. An empty result means the plan is consistent.

Checks (``check`` column of the result)::

    negative            every quantity, hour and count >= 0
    demand              served (outbound flows) + unmet = demand, per zone, product and period
    unknown_lane        every flow and transfer runs on a lane of the instance
    lane_capacity       sum over products of a lane's flow in a period <= the lane's capacity
    closed_site         no flow or transfer touches a DC the plan closes
    supply              flow out of a port/supplier per product and period <= its supply
    balance             at every DC, cumulative inbound + transfers in + stock >= cumulative outbound + transfers out
    transfer_stock      transfers out of a DC <= its stock on hand + what it receives
    capacity            throughput per stage and period <= total resource count x rate x hours x days
    expansion           modules within max_modules, added count = modules x module size
    throughput          the plan's site_throughput equals the throughput recomputed from its flows
    labor_regular       regular hours <= headcount x weekly hours x weeks
    labor_overtime      overtime hours <= weekly overtime limit x weeks
    labor_needed        regular + overtime + temp hours >= hours the throughput needs
    single_source       at most one DC serves each zone (when single sourcing was asked)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from engine.instance import Instance
from engine.schema import FLOW_STAGES
from formulations.common import labor_parameters, period_days
from formulations.plan import Plan

VIOLATION_COLUMNS = ("check", "site_id", "zone_id", "product_id", "period", "stage", "value", "limit", "excess",
                     "message")
INBOUND_STAGES = ("inbound_dock", "putaway")
"""Stages loaded by received units; the others by shipped units."""


def _num(s: pd.Series) -> pd.Series:
    return pd.to_numeric(s, errors="coerce").astype(float)


def _rows(check: str, frame: pd.DataFrame, value: pd.Series | np.ndarray, limit: pd.Series | np.ndarray,
          excess: pd.Series | np.ndarray, message: str, **labels: Any) -> pd.DataFrame:
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
    out["value"] = np.asarray(value, dtype=float)
    out["limit"] = np.asarray(limit, dtype=float)
    out["excess"] = np.asarray(excess, dtype=float)
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


def _flows(plan: Plan) -> pd.DataFrame:
    f = plan.tables["flows"]
    if f.empty:
        return pd.DataFrame(columns=["origin_id", "destination_id", "product_id", "period", "quantity", "leg"])
    f = f.copy()
    f["quantity"] = _num(f["quantity"])
    f["period"] = _num(f["period"]).astype("Int64")
    for c in ("origin_id", "destination_id", "product_id", "leg"):
        f[c] = f[c].astype(str)
    return f


def check_plan(instance: Instance, plan: Plan, tol: float = 1e-6, single_source: bool | None = None) -> pd.DataFrame:
    """Every violation of the plan against the instance, as a table (empty = OK).

    Parameters
    ----------
    instance : the instance the plan was solved on (scenario applied).
    plan : a :class:`Plan`; only its non-empty tables are checked.
    tol : relative tolerance (of max(1, |limit|)).
    single_source : check single sourcing; ``None`` reads ``plan.meta["options"]["single_source"]``.

    Returns
    -------
    DataFrame with columns :data:`VIOLATION_COLUMNS`.
    """
    found: list[pd.DataFrame | None] = []
    flows = _flows(plan)
    transfers = plan.tables["transfers"].copy()
    if not transfers.empty:
        transfers["quantity"] = _num(transfers["quantity"])
    sites = instance.sites
    kind = dict(zip(sites["id"].astype(str), sites["kind"]))
    dc_ids = {s for s, k in kind.items() if k in ("dc", "crossdock")}
    days = period_days(instance)

    found.append(_check_negative(plan, flows, transfers, tol))
    found.append(_check_demand(instance, plan, flows, tol))
    found.extend(_check_lanes(instance, flows, transfers, tol))
    found.append(_check_closed(plan, flows, transfers))
    found.append(_check_supply(instance, flows, tol))
    found.extend(_check_balance(instance, flows, transfers, dc_ids, tol))
    thr = _throughput(instance, flows, transfers, dc_ids, days)
    found.extend(_check_capacity(instance, plan, thr, days, dc_ids, tol))
    found.append(_check_reported_throughput(plan, thr, tol))
    found.extend(_check_labor(instance, plan, thr, days, tol))
    if single_source is None:
        single_source = bool((plan.meta.get("options") or {}).get("single_source", False))
    if single_source:
        found.append(_check_single_source(flows))
    found = [f for f in found if f is not None and len(f)]
    if not found:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in VIOLATION_COLUMNS})
    return pd.concat(found, ignore_index=True)[list(VIOLATION_COLUMNS)]


# ---------------------------------------------------------------------------------------------------


def _check_negative(plan: Plan, flows: pd.DataFrame, transfers: pd.DataFrame, tol: float) -> pd.DataFrame | None:
    parts = []
    for name, cols in (("flows", ["quantity"]), ("transfers", ["quantity", "trucks"]), ("unmet", ["quantity"]),
                       ("labor", ["regular_hours", "overtime_hours", "temp_hours"]),
                       ("capacity", ["base_count", "added_count", "total_count", "modules"]),
                       ("site_throughput", ["inbound_units", "outbound_units"])):
        t = {"flows": flows, "transfers": transfers}.get(name, plan.tables[name])
        if t.empty:
            continue
        for c in cols:
            if c not in t:
                continue
            v = _num(t[c]).fillna(0.0)
            bad = v < -tol
            if bad.any():
                f = t[bad.to_numpy()]
                site = "site_id" if "site_id" in f else ("origin_id" if "origin_id" in f else None)
                parts.append(_rows("negative", f, v[bad], 0.0, -v[bad], f"{name}.{c} is negative",
                                   site_id=site, zone_id="zone_id" if "zone_id" in f else None,
                                   product_id="product_id" if "product_id" in f else None,
                                   period="period" if "period" in f else None,
                                   stage="stage" if "stage" in f else None))
    return pd.concat(parts, ignore_index=True) if parts else None


def _check_demand(instance: Instance, plan: Plan, flows: pd.DataFrame, tol: float) -> pd.DataFrame | None:
    out = flows[flows["leg"] == "outbound"]
    unmet = plan.tables["unmet"]
    if out.empty and unmet.empty:
        return None
    key = ["zone_id", "product_id", "period"]
    d = instance.demand[key + ["quantity"]].copy()
    d["period"] = d["period"].astype(int)
    served = out.groupby(["destination_id", "product_id", "period"])["quantity"].sum()
    served.index = served.index.set_names(key)
    if unmet.empty:
        short = pd.Series(dtype=float, index=pd.MultiIndex.from_tuples([], names=key))
    else:
        u = unmet.assign(quantity=_num(unmet["quantity"]), period=_num(unmet["period"]).astype(int))
        u["zone_id"], u["product_id"] = u["zone_id"].astype(str), u["product_id"].astype(str)
        short = u.groupby(key)["quantity"].sum()
    dem = d.groupby(key)["quantity"].sum()
    idx = dem.index.union(served.index).union(short.index)
    t = pd.DataFrame({"demand": dem.reindex(idx).fillna(0.0), "served": served.reindex(idx).fillna(0.0),
                      "unmet": short.reindex(idx).fillna(0.0)}).reset_index()
    t["total"] = t["served"] + t["unmet"]
    bad = (t["total"] - t["demand"]).abs() > tol * np.maximum(1.0, t["demand"])
    if not bad.any():
        return None
    f = t[bad.to_numpy()]
    return _rows("demand", f, f["total"], f["demand"], f["total"] - f["demand"],
                 "served + unmet differs from demand", zone_id="zone_id", product_id="product_id", period="period")


def _check_lanes(instance: Instance, flows: pd.DataFrame, transfers: pd.DataFrame,
                 tol: float) -> list[pd.DataFrame | None]:
    lanes = instance.lanes
    # capacity of an origin -> destination pair over its modes; an empty capacity means unlimited
    pair_cap = lanes["capacity"].fillna(np.inf).groupby([lanes["origin_id"], lanes["destination_id"]]).sum()
    known = set(pair_cap.index)
    res: list[pd.DataFrame | None] = []
    moved = [flows[["origin_id", "destination_id", "product_id", "period", "quantity"]]]
    if not transfers.empty:
        moved.append(transfers.assign(period=pd.NA)[["origin_id", "destination_id", "product_id", "period",
                                                      "quantity"]])
    allf = pd.concat(moved, ignore_index=True)
    allf = allf[allf["quantity"] > 0]
    if allf.empty:
        return res
    pairs = list(zip(allf["origin_id"], allf["destination_id"]))
    unknown = np.array([p not in known for p in pairs])
    if unknown.any():
        f = allf[unknown]
        res.append(_rows("unknown_lane", f, f["quantity"], 0.0, f["quantity"], "flow on a lane the instance lacks",
                         site_id="origin_id", zone_id="destination_id", product_id="product_id", period="period"))
    g = flows[flows["quantity"] > 0].groupby(["origin_id", "destination_id", "period"], as_index=False)["quantity"]
    g = g.sum()
    if len(g):
        g["limit"] = pair_cap.reindex(pd.MultiIndex.from_frame(g[["origin_id", "destination_id"]])).to_numpy()
        g = g[np.isfinite(g["limit"])]
        res.append(_over("lane_capacity", g, "quantity", "limit", tol, "lane capacity exceeded",
                         site_id="origin_id", zone_id="destination_id", period="period"))
    return res


def _check_closed(plan: Plan, flows: pd.DataFrame, transfers: pd.DataFrame) -> pd.DataFrame | None:
    s = plan.tables["sites"]
    if s.empty:
        return None
    closed = set(s.loc[~s["open"].astype(bool), "site_id"].astype(str))
    if not closed:
        return None
    parts = []
    for t in (flows, transfers):
        if t.empty:
            continue
        t = t[t["quantity"] > 0]
        for end in ("origin_id", "destination_id"):
            bad = t[end].astype(str).isin(closed)
            if bad.any():
                f = t[bad.to_numpy()]
                parts.append(_rows("closed_site", f, f["quantity"], 0.0, f["quantity"],
                                   f"flow through a closed site ({end})", site_id=end,
                                   product_id="product_id", period="period" if "period" in f else None))
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


def _has_sources(instance: Instance, dc_ids: set[str]) -> bool:
    lanes = instance.lanes
    src = set(instance.sources["id"].astype(str))
    return bool((lanes["origin_id"].isin(src) & lanes["destination_id"].isin(dc_ids)).any())


def _check_balance(instance: Instance, flows: pd.DataFrame, transfers: pd.DataFrame, dc_ids: set[str],
                   tol: float) -> list[pd.DataFrame | None]:
    """Cumulative stock at each DC never negative: stock + inbound(<=t) + transfers in >= outbound(<=t) + out.

    Applies when DCs are supplied (the network has source->DC lanes or stock on hand); without either (a
    facility location instance) DCs are themselves the sources. Transfers count from period 1.
    """
    inv = instance.inventory
    if not _has_sources(instance, dc_ids) and inv.empty:
        return []
    res: list[pd.DataFrame | None] = []
    f = flows[flows["quantity"] > 0]
    into = f[f["destination_id"].isin(dc_ids)].groupby(["destination_id", "product_id", "period"])["quantity"].sum()
    outof = f[f["origin_id"].isin(dc_ids)].groupby(["origin_id", "product_id", "period"])["quantity"].sum()
    into.index = into.index.set_names(["site_id", "product_id", "period"])
    outof.index = outof.index.set_names(["site_id", "product_id", "period"])
    periods = instance.periods["period"].astype(int).to_numpy()
    keys = into.index.droplevel(2).union(outof.index.droplevel(2)).unique()  # droplevel keeps duplicates
    stock = inv.groupby(["site_id", "product_id"])["on_hand"].sum() if not inv.empty else pd.Series(dtype=float)
    t_in = t_out = pd.Series(dtype=float)
    if not transfers.empty:
        t_in = transfers.groupby(["destination_id", "product_id"])["quantity"].sum()
        t_out = transfers.groupby(["origin_id", "product_id"])["quantity"].sum()
        keys = keys.union(t_in.index.set_names(["site_id", "product_id"])).union(
            t_out.index.set_names(["site_id", "product_id"]))
        res.append(_check_transfer_stock(t_out, stock, into))
    if len(keys) == 0:
        return res
    keys = keys.set_names(["site_id", "product_id"])
    grid = pd.MultiIndex.from_tuples([(s, p, t) for s, p in keys for t in periods],
                                     names=["site_id", "product_id", "period"])
    g = pd.DataFrame({"in": into.reindex(grid).fillna(0.0).to_numpy(), "out": outof.reindex(grid).fillna(0.0)
                      .to_numpy()}, index=grid).reset_index()
    g["cum_in"] = g.groupby(["site_id", "product_id"])["in"].cumsum()
    g["cum_out"] = g.groupby(["site_id", "product_id"])["out"].cumsum()
    sp = pd.MultiIndex.from_frame(g[["site_id", "product_id"]])
    start = stock.reindex(sp).fillna(0.0).to_numpy()
    if len(t_in):
        start = start + t_in.reindex(sp).fillna(0.0).to_numpy()
    if len(t_out):
        start = start - t_out.reindex(sp).fillna(0.0).to_numpy()
    g["available"] = start + g["cum_in"]
    res.append(_over("balance", g, "cum_out", "available", tol,
                     "cumulative outbound exceeds stock + cumulative inbound", site_id="site_id",
                     product_id="product_id", period="period"))
    return res


def _check_transfer_stock(t_out: pd.Series, stock: pd.Series, into: pd.Series) -> pd.DataFrame | None:
    recv = into.groupby(level=[0, 1]).sum() if len(into) else pd.Series(dtype=float)
    t = t_out.rename("quantity").reset_index()
    t.columns = ["site_id", "product_id", "quantity"]
    sp = pd.MultiIndex.from_frame(t[["site_id", "product_id"]])
    t["limit"] = stock.reindex(sp).fillna(0.0).to_numpy() + (recv.reindex(sp).fillna(0.0).to_numpy()
                                                              if len(recv) else 0.0)
    return _over("transfer_stock", t, "quantity", "limit", 1e-6, "transfers out exceed stock on hand + receipts",
                 site_id="site_id", product_id="product_id")


def _throughput(instance: Instance, flows: pd.DataFrame, transfers: pd.DataFrame, dc_ids: set[str],
                days: pd.Series) -> pd.DataFrame:
    """Units received and shipped per DC and period, recomputed from the flows (transfers in period 1)."""
    f = flows[flows["quantity"] > 0]
    moved = [f[["origin_id", "destination_id", "period", "quantity"]]]
    if not transfers.empty:
        first = int(days.index.min())
        moved.append(transfers.assign(period=first)[["origin_id", "destination_id", "period", "quantity"]])
    m = pd.concat(moved, ignore_index=True)
    shipped = m[m["origin_id"].isin(dc_ids)].groupby(["origin_id", "period"])["quantity"].sum()
    received = m[m["destination_id"].isin(dc_ids)].groupby(["destination_id", "period"])["quantity"].sum()
    grid = pd.MultiIndex.from_product([sorted(dc_ids), days.index.astype(int)], names=["site_id", "period"])
    shipped.index = shipped.index.set_names(["site_id", "period"])
    received.index = received.index.set_names(["site_id", "period"])
    out = pd.DataFrame({"outbound_units": shipped.reindex(grid).fillna(0.0).to_numpy(),
                        "inbound_units": received.reindex(grid).fillna(0.0).to_numpy()}, index=grid).reset_index()
    if not _has_sources(instance, dc_ids) and instance.inventory.empty:
        out["inbound_units"] = out["outbound_units"]  # DCs are the sources: they handle what they ship
    return out


def _check_capacity(instance: Instance, plan: Plan, thr: pd.DataFrame, days: pd.Series, dc_ids: set[str],
                    tol: float) -> list[pd.DataFrame | None]:
    res = instance.resources
    res = res[res["stage"].isin(FLOW_STAGES)][["site_id", "stage", "count", "rate_per_hour", "hours_per_day"]]
    cap = plan.tables["capacity"]
    out: list[pd.DataFrame | None] = []
    if not cap.empty:
        c = cap.assign(**{k: _num(cap[k]) for k in ("base_count", "added_count", "total_count", "modules")})
        c = c[c["stage"].isin(FLOW_STAGES)]
        counts = c[["site_id", "stage", "total_count"]].rename(columns={"total_count": "count"})
        exp = instance.expansions
        if not exp.empty:
            e = c.merge(exp, on=["site_id", "stage"], how="left")
            e["max_modules"] = e["max_modules"].fillna(0.0)
            out.append(_over("expansion", e, "modules", "max_modules", tol, "more modules than max_modules",
                             site_id="site_id", stage="stage"))
            e["expected_added"] = e["modules"] * e["module_size"].fillna(0.0)
            bad = (e["added_count"] - e["expected_added"]).abs() > tol * np.maximum(1.0, e["expected_added"])
            if bad.any():
                f = e[bad.to_numpy()]
                out.append(_rows("expansion", f, f["added_count"], f["expected_added"],
                                 f["added_count"] - f["expected_added"], "added_count != modules x module_size",
                                 site_id="site_id", stage="stage"))
        over = (c["total_count"] - (c["base_count"] + c["added_count"])) > tol * np.maximum(1.0, c["base_count"])
        if over.any():
            f = c[over.to_numpy()]
            out.append(_rows("expansion", f, f["total_count"], f["base_count"] + f["added_count"],
                             f["total_count"] - f["base_count"] - f["added_count"],
                             "total_count above installed + added", site_id="site_id", stage="stage"))
        rates = res.drop(columns=["count"]).merge(counts, on=["site_id", "stage"], how="left")
        rates["count"] = rates["count"].fillna(0.0)  # a stage the plan does not list has no capacity
    else:
        rates = res.copy()
        s = plan.tables["sites"]
        if not s.empty:
            closed = set(s.loc[~s["open"].astype(bool), "site_id"].astype(str))
            rates.loc[rates["site_id"].isin(closed), "count"] = 0.0
    bare = sorted(dc_ids - set(res["site_id"]))
    if bare:
        rates = pd.concat([rates, pd.DataFrame([(s, st, 1.0, 1.0, 0.0) for s in bare for st in FLOW_STAGES],
                                               columns=["site_id", "stage", "rate_per_hour", "hours_per_day",
                                                        "count"])], ignore_index=True)
    g = rates.merge(thr, on="site_id", how="inner")
    if g.empty:
        return out
    g["days"] = days.reindex(g["period"].astype(int)).to_numpy()
    g["load"] = np.where(g["stage"].isin(INBOUND_STAGES), g["inbound_units"], g["outbound_units"])
    g["limit"] = g["count"] * g["rate_per_hour"] * g["hours_per_day"] * g["days"]
    out.append(_over("capacity", g, "load", "limit", tol, "stage throughput above capacity", site_id="site_id",
                     stage="stage", period="period"))
    return out


def _check_reported_throughput(plan: Plan, thr: pd.DataFrame, tol: float) -> pd.DataFrame | None:
    st = plan.tables["site_throughput"]
    if st.empty:
        return None
    st = st.assign(period=_num(st["period"]).astype(int), site_id=st["site_id"].astype(str))
    g = st.merge(thr, on=["site_id", "period"], how="left", suffixes=("", "_flows")).fillna(0.0)
    parts = []
    for c in ("inbound_units", "outbound_units"):
        v, ref = _num(g[c]), g[f"{c}_flows"]
        bad = (v - ref).abs() > tol * np.maximum(1.0, ref.abs())
        if bad.any():
            f = g[bad.to_numpy()]
            parts.append(_rows("throughput", f, v[bad], ref[bad], (v - ref)[bad],
                               f"site_throughput.{c} differs from the flows", site_id="site_id", period="period"))
    return pd.concat(parts, ignore_index=True) if parts else None


def _check_labor(instance: Instance, plan: Plan, thr: pd.DataFrame, days: pd.Series,
                 tol: float) -> list[pd.DataFrame | None]:
    lab = plan.tables["labor"]
    params = labor_parameters(instance)
    if lab.empty or params.empty:
        return []
    h = lab.assign(period=_num(lab["period"]).astype(int), site_id=lab["site_id"].astype(str),
                   **{c: _num(lab[c]).fillna(0.0) for c in ("regular_hours", "overtime_hours", "temp_hours")})
    h = h.merge(params, on="site_id", how="inner").merge(thr, on=["site_id", "period"], how="left").fillna(
        {"inbound_units": 0.0, "outbound_units": 0.0})
    weeks = days.reindex(h["period"]).to_numpy() / 7.0
    h["regular_limit"] = h["max_headcount"] * h["hours_per_person_week"] * weeks
    h["overtime_limit"] = h["max_overtime_hours"] * weeks
    need = sum((h["inbound_units"] if s in INBOUND_STAGES else h["outbound_units"]) / h[f"productivity_{s}"]
               for s in FLOW_STAGES)
    h["needed"] = need
    h["worked"] = h["regular_hours"] + h["overtime_hours"] + h["temp_hours"]
    return [
        _over("labor_regular", h, "regular_hours", "regular_limit", tol, "regular hours above headcount",
              site_id="site_id", period="period"),
        _over("labor_overtime", h, "overtime_hours", "overtime_limit", tol, "overtime above its limit",
              site_id="site_id", period="period"),
        _over("labor_needed", h, "needed", "worked", tol, "fewer labour hours than the throughput needs",
              site_id="site_id", period="period"),
    ]


def _check_single_source(flows: pd.DataFrame) -> pd.DataFrame | None:
    out = flows[(flows["leg"] == "outbound") & (flows["quantity"] > 0)]
    n = out.groupby("destination_id")["origin_id"].nunique()
    bad = n[n > 1]
    if bad.empty:
        return None
    f = bad.rename("n").reset_index()
    return _rows("single_source", f, f["n"], 1.0, f["n"] - 1.0, "zone served by more than one DC",
                 zone_id="destination_id")
