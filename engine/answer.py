"""The answer to a scenario's question: one per decision, in plain words, like for like, computed here only.

:func:`build_answer` turns the final plan, its simulation and its baseline (and, per decision, a
counterfactual or a stress test) into one JSON-able dict, stored as ``result.json["answer"]``, printed first
by ``twinplan solve`` (:func:`answer_text`) and read by the report.

Contract (every key is always present; values may be ``None`` / empty where a decision has no such fact)
------------------------------------------------------------------------------------------------------------
Common keys:

- ``decision``: ``"network_design"`` | ``"redistribution"`` | ``"capacity"`` (the consolidation MILP is
  the network-design decision).
- ``question`` (str): the question the scenario asks, in words (its description, else a default per decision).
- ``headline`` (str): one plain-words line, e.g. "Move 164,000 units in 212 trucks; 9,800 stockouts avoided".
- ``lines`` (list of str): the printed answer, headline first; names, not ids; units and time basis stated.
- ``time_basis``: ``{"label": "over the 28-day horizon" | "per year" | "over the 21-day peak", "days": float}``
  -- the basis of every money and hours figure (one-off investment excepted).
- ``currency`` (str).
- ``executable`` (bool): the simulator executes the final plan (every SLA held hour by hour).
- ``breaches`` (list): where the final plan breaks, one row per site and chain:
  ``{site_id, site_name, stage, chain, date, hour, shortfall_units}`` (shortfall in units/day at the stage,
  ``date`` ISO, ``hour`` 0-23 of that date).
- ``costs`` (list): ``{component, label, baseline, scenario, delta}`` per cost component over the time basis;
  ``baseline`` is ``None`` when there is no baseline run (never a made-up 0).
- ``sites`` (list): per-site rows ``{site_id, site_name, volume_before, volume_after, labour_hours_before,
  labour_hours_after, hours_per_fte, fte_before, fte_after, peak_utilisation_before, peak_utilisation_after,
  added_capacity}``; volumes are units shipped, hours over the time basis, ``fte = labour_hours /
  hours_per_fte`` with ``hours_per_fte = hours_per_person_week x weeks of the time basis``;
  ``added_capacity`` a short text ("2 pack stations, +8 h a day") or ``""``. The most affected site first.
- ``unmet``: ``{units_before, units_after, penalty_before, penalty_after}`` -- demand not served and its
  penalty, on their own line, never only inside a total.
- ``sla_note`` (str or None): where the MILP and the simulator judge the SLA differently, the difference and
  its cause.
- ``baseline`` (str or None): name of the run compared against (and what makes it like for like).

Decision-specific keys:

- redistribution: ``transfers`` (list of ``{origin_id, origin_name, destination_id, destination_name, period,
  date, trucks (int), units, products: {product_id: units}}``, one row per lane and dispatch day; ``trucks``
  is the integer truck count of that lane and day), ``units_moved``, ``trucks_total`` (int),
  ``stockouts``: ``{do_nothing_units, plan_units, avoided_units}`` (lost sales without any transfer vs with
  the plan, same disrupted horizon) and ``{do_nothing_not_on_time_units, plan_not_on_time_units,
  on_time_gained_units}`` (units not delivered within the service promise, late or lost).
- network_design: ``investment``: ``{opening, closing, modules, total}`` (one-off, ``total`` = the sum of the
  three), ``annual_savings`` (running cost saved per year, excluding one-off costs, the capital charge and
  penalties), ``payback_years`` (investment / annual savings; ``None`` when nothing is saved),
  ``coverage``: ``{avg_delivery_days_before, avg_delivery_days_after, within_promise_before,
  within_promise_after, service_days}`` (share of demand delivered within the service promise).
- capacity: ``additions`` (list of ``{site_id, site_name, stage, resource, base_count, added_count, modules,
  extra_hours_per_day, from_date, capex, cost}``, plus rows with ``stage`` ``"labour"`` for temporary staff:
  ``added_count`` = temps), ``investment`` (``{opening: 0, closing: 0, modules, total}``), ``failure_points``
  (list of ``{site_id, site_name, stage, resource, count, fail_multiplier, date, hour, one_more_holds_to,
  message}``: where today's capacity first breaks as the forecast peak is scaled up, 1.0 = the forecast peak),
  ``stress`` (``{with_additions: [{site_id, site_name, fail_multiplier, stage}], today: [...]}``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from engine.kpi import COST_GROUPS, cost_breakdown, labour_hours_by_site
from instances.instance import Instance
from instances.plan import Plan

DECISION_NAMES: dict[str, str] = {"consolidation": "network_design", "network_design": "network_design",
                                  "redistribution": "redistribution", "capacity": "capacity"}
"""Plan decision -> the answer's ``decision``."""

RESOURCE_NAMES: dict[str, tuple[str, str]] = {
    "inbound_dock": ("inbound door", "inbound doors"), "putaway": ("putaway station", "putaway stations"),
    "pick": ("pick station", "pick stations"), "pack": ("pack station", "pack stations"),
    "outbound_dock": ("outbound door", "outbound doors"), "storage": ("storage location", "storage locations"),
    "labour": ("temporary worker", "temporary workers")}
"""The physical unit a stage's resource ``count`` counts (singular, plural)."""

COST_LABELS: dict[str, str] = {"fixed": "fixed site costs", "transport": "transport", "handling": "handling",
                               "labour": "labour", "capex": "capacity modules (capital charge + opex)",
                               "penalty": "penalties (unmet demand, late or beyond the SLA)", "other": "other"}
ONE_OFF = ("opening", "closing")
PENALTY_COMPONENTS = COST_GROUPS["penalty"]
QUESTIONS: dict[str, str] = {
    "redistribution": "Where should stock move after the disruption, and what does it cost?",
    "network_design": "What does the consolidation cost and do, and when does it pay back?",
    "capacity": "Where does the peak break the network, and what should be added, from when, at what cost?"}


# ------------------------------------------------------------------------------------------------------
# Formatting
# ------------------------------------------------------------------------------------------------------
def money(value: float, currency: str) -> str:
    """``EUR 1.25 M`` / ``EUR 12.3 k`` / ``EUR 950``."""
    a = abs(value)
    s = f"{a / 1e6:,.2f} M" if a >= 1e6 else (f"{a / 1e3:,.1f} k" if a >= 1e3 else f"{a:,.0f}")
    return f"{'-' if value < 0 else ''}{currency} {s}"


def _change(delta: float, currency: str) -> str:
    if abs(delta) < 0.5:
        return "unchanged"
    return f"{money(abs(delta), currency)} {'more' if delta > 0 else 'less'}"


def _count(n: float, stage: str) -> str:
    one, many = RESOURCE_NAMES.get(stage, (stage, stage))
    k = int(round(n)) if abs(n - round(n)) < 1e-6 else n
    return f"{k:g} {one if k == 1 else many}" if isinstance(k, float) else f"{k} {one if k == 1 else many}"


def site_names(instance: Instance | None) -> dict[str, str]:
    """Site id -> display name (the id when the instance has no name)."""
    if instance is None:
        return {}
    s = instance.sites
    names = s["name"].astype(str) if "name" in s else s["id"].astype(str)
    return dict(zip(s["id"].astype(str), names))


def _name(names: Mapping[str, str], sid: Any) -> str:
    return names.get(str(sid), str(sid))


def _f(v: Any) -> float | None:
    if v is None:
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# ------------------------------------------------------------------------------------------------------
# Time basis
# ------------------------------------------------------------------------------------------------------
def horizon_days(instance: Instance) -> float:
    """Days the instance's periods cover."""
    return float(pd.to_numeric(instance.periods["days"]).sum())


def time_basis(instance: Instance, decision: str) -> dict[str, Any]:
    """The basis of the answer's money and hours: per year (network design), the horizon or the peak."""
    days = horizon_days(instance)
    if decision == "network_design":
        return {"label": "per year", "days": 365.0}
    if decision == "capacity":
        return {"label": f"over the {days:g}-day peak", "days": days}
    return {"label": f"over the {days:g}-day horizon", "days": days}


def _annual_factor(instance: Instance, decision: str) -> float:
    """Multiplier from plan-horizon hours to the time basis (a year for network design, else 1)."""
    if decision != "network_design":
        return 1.0
    n = len(instance.periods)
    return float(instance.defaults.get("periods_per_year", 52)) / n if n else 1.0


# ------------------------------------------------------------------------------------------------------
# Pieces shared by every decision
# ------------------------------------------------------------------------------------------------------
def breaches(instance: Instance | None, simulation: Any) -> list[dict[str, Any]]:
    """Where a simulated plan breaks its SLAs at the forecast volume (multiplier 1), one row per site and chain."""
    if simulation is None or simulation.verdict.feasible:
        return []
    names = site_names(instance)
    table = getattr(simulation, "breaches", None)
    rows: list[dict[str, Any]] = []
    if isinstance(table, pd.DataFrame) and len(table):
        t = table
        if "multiplier" in t:
            t = t[np.isclose(pd.to_numeric(t["multiplier"]).astype(float), float(simulation.verdict.multiplier))]
        for r in t.itertuples(index=False):
            ts = pd.Timestamp(r.time) if getattr(r, "time", None) is not None else None
            rows.append({"site_id": str(r.site_id), "site_name": _name(names, r.site_id), "stage": str(r.stage),
                         "chain": str(getattr(r, "chain", "")),
                         "date": ts.date().isoformat() if ts is not None else None,
                         "hour": int(ts.hour) if ts is not None else None,
                         "shortfall_units": round(float(r.shortfall_units), 1)})
    if not rows:
        v = simulation.verdict
        ts = pd.Timestamp(v.time) if v.time else None
        rows.append({"site_id": str(v.site_id), "site_name": _name(names, v.site_id), "stage": str(v.stage),
                     "chain": str(v.chain or ""), "date": ts.date().isoformat() if ts is not None else None,
                     "hour": int(ts.hour) if ts is not None else None,
                     "shortfall_units": round(float(v.shortfall_units), 1)})
    return rows


def breach_sentence(rows: list[dict[str, Any]], limit: int = 3) -> str:
    """ "Joliet breaks its inbound SLA at the inbound dock on 2026-03-09, 10:00 (+1,234 units/day short)"."""
    parts = []
    for b in rows[:limit]:
        when = f" on {b['date']}, {b['hour']:02d}:00" if b.get("date") else ""
        parts.append(f"{b['site_name']} breaks its {b['chain'] or 'order'} SLA at {b['stage'].replace('_', ' ')}"
                     f"{when} (+{b['shortfall_units']:,.0f} units/day short)")
    more = f"; and {len(rows) - limit} more" if len(rows) > limit else ""
    return "; ".join(parts) + more


def _component_groups(plan: Plan, decision: str) -> dict[str, float]:
    """Cost by executive group; for network design the one-off opening/closing are kept out (investment)."""
    groups = cost_breakdown(plan)
    if decision == "network_design":
        costs = plan.tables["costs"]
        one_off = float(pd.to_numeric(costs.loc[costs["component"].isin(ONE_OFF), "amount"]).sum())
        groups["fixed"] -= one_off
    return groups


def cost_rows(plan: Plan, base: Plan | None, decision: str) -> list[dict[str, Any]]:
    """``{component, label, baseline, scenario, delta}`` per group either plan has (baseline None: no baseline)."""
    s = _component_groups(plan, decision)
    b = _component_groups(base, decision) if base is not None else None
    rows = []
    for comp, label in COST_LABELS.items():
        sv = float(s.get(comp, 0.0))
        bv = None if b is None else float(b.get(comp, 0.0))
        if abs(sv) < 0.5 and (bv is None or abs(bv) < 0.5):
            continue
        rows.append({"component": comp, "label": label, "baseline": bv, "scenario": sv,
                     "delta": None if bv is None else sv - bv})
    return rows


def _unmet(plan: Plan) -> tuple[float, float]:
    u = plan.tables["unmet"]
    units = float(pd.to_numeric(u["quantity"]).sum()) if not u.empty else 0.0
    costs = plan.tables["costs"]
    pen = float(pd.to_numeric(costs.loc[costs["component"].isin(("unmet_penalty", "lost_sales")), "amount"]).sum())
    return units, pen


def unmet_summary(plan: Plan, base: Plan | None) -> dict[str, float | None]:
    """Units of demand not served and their penalty, before (baseline) and after (plan)."""
    ua, pa = _unmet(plan)
    ub, pb = _unmet(base) if base is not None else (None, None)
    return {"units_before": ub, "units_after": ua, "penalty_before": pb, "penalty_after": pa}


def hours_per_fte(instance: Instance, basis_days: float) -> pd.Series:
    """Labour hours one full-time employee works over the time basis, per site (labor.csv hours a week)."""
    lab = instance.labor
    if lab.empty or "hours_per_person_week" not in lab:
        return pd.Series(dtype=float)
    return pd.to_numeric(lab.set_index("site_id")["hours_per_person_week"]).astype(float) * basis_days / 7.0


def _peak_util(simulation: Any) -> pd.Series:
    sp = getattr(simulation, "stage_period", None)
    if sp is None or len(sp) == 0:
        return pd.Series(dtype=float)
    sp = sp[sp["stage"] != "storage"] if "stage" in sp else sp
    return pd.to_numeric(sp["utilisation"]).groupby(sp["site_id"].astype(str)).max()


def _volume(plan: Plan) -> pd.Series:
    tp = plan.tables["site_throughput"]
    if tp.empty:
        return pd.Series(dtype=float)
    return pd.to_numeric(tp["outbound_units"]).groupby(tp["site_id"].astype(str)).sum()


def site_rows(instance: Instance, plan: Plan, simulation: Any, base: Plan | None, base_sim: Any,
              decision: str, added: Mapping[str, str] | None = None) -> list[dict[str, Any]]:
    """Per-site before/after volume, labour hours, FTE and peak utilisation (see the module docstring)."""
    names = site_names(instance)
    basis = time_basis(instance, decision)
    factor = _annual_factor(instance, decision)
    per_fte = hours_per_fte(instance, basis["days"])
    va, vb = _volume(plan) * factor, (_volume(base) * factor if base is not None else pd.Series(dtype=float))
    ha = labour_hours_by_site(plan) * factor
    hb = labour_hours_by_site(base) * factor if base is not None else pd.Series(dtype=float)
    ua, ub = _peak_util(simulation), _peak_util(base_sim)
    dcs = [str(s) for s in instance.dcs["id"]]
    added = dict(added or {})
    rows = []
    for sid in dcs:
        if not any(sid in x.index for x in (va, vb, ha, hb)) and sid not in added:
            continue
        hpf = _f(per_fte.get(sid))
        row = {"site_id": sid, "site_name": _name(names, sid),
               "volume_before": _f(vb.get(sid, 0.0)) if base is not None else None,
               "volume_after": _f(va.get(sid, 0.0)),
               "labour_hours_before": _f(hb.get(sid, 0.0)) if base is not None else None,
               "labour_hours_after": _f(ha.get(sid, 0.0)), "hours_per_fte": hpf,
               "peak_utilisation_before": _f(ub.get(sid)), "peak_utilisation_after": _f(ua.get(sid)),
               "added_capacity": added.get(sid, "")}
        row["fte_before"] = (row["labour_hours_before"] / hpf if hpf and row["labour_hours_before"] is not None
                             else None)
        row["fte_after"] = row["labour_hours_after"] / hpf if hpf and row["labour_hours_after"] is not None else None
        rows.append(row)
    # the most affected first: the largest volume gained, then the largest volume lost
    rows.sort(key=lambda r: -abs((r["volume_after"] or 0.0) - (r["volume_before"] or 0.0)))
    gained = [r for r in rows if (r["volume_after"] or 0.0) > (r["volume_before"] or 0.0) + 0.5]
    return gained + [r for r in rows if r not in gained]


def _site_line(r: dict[str, Any]) -> str:
    if r["labour_hours_before"] is None:
        return f"    {r['site_name']}: {r['labour_hours_after']:,.0f} h ({r['fte_after'] or 0:,.1f} FTE)"
    return (f"    {r['site_name']}: {r['labour_hours_before']:,.0f} h -> {r['labour_hours_after']:,.0f} h "
            f"({r['fte_before'] or 0:,.1f} -> {r['fte_after'] or 0:,.1f} FTE); volume "
            f"{r['volume_before']:,.0f} -> {r['volume_after']:,.0f} units"
            + (f"; adds {r['added_capacity']}" if r["added_capacity"] else ""))


# ------------------------------------------------------------------------------------------------------
# Redistribution
# ------------------------------------------------------------------------------------------------------
def transfer_rows(instance: Instance, plan: Plan) -> list[dict[str, Any]]:
    """Transfers per lane and dispatch period in whole trucks, with the units per product they carry."""
    t = plan.tables["transfers"]
    if t.empty:
        return []
    names = site_names(instance)
    t = t.assign(quantity=pd.to_numeric(t["quantity"]).astype(float), trucks=pd.to_numeric(t["trucks"]).astype(float),
                 period=pd.to_numeric(t["period"]).fillna(1).astype(int))
    t = t[t["quantity"] > 1e-6]
    starts = instance.periods.set_index("period")["start"]
    rows = []
    for (o, d, p), g in t.groupby(["origin_id", "destination_id", "period"], sort=True):
        start = starts.get(int(p))
        rows.append({"origin_id": str(o), "origin_name": _name(names, o), "destination_id": str(d),
                     "destination_name": _name(names, d), "period": int(p),
                     "date": pd.Timestamp(start).date().isoformat() if start is not None else None,
                     "trucks": int(round(float(g["trucks"].sum()))), "units": round(float(g["quantity"].sum()), 1),
                     "products": {str(k): round(float(v), 1)
                                  for k, v in g.groupby("product_id")["quantity"].sum().items()}})
    return rows


def _not_on_time(plan: Plan) -> float:
    """Units of demand not delivered within the service promise (late or lost), from the service table."""
    sv = plan.tables["service"]
    if sv.empty:
        return 0.0
    d = pd.to_numeric(sv["demand"]).astype(float)
    return float((d * (1.0 - pd.to_numeric(sv["within_sla_share"]).astype(float).fillna(0.0))).sum())


def _redistribution(ans: dict[str, Any], instance: Instance, result: Any, base: Any,
                    do_nothing: Plan | None) -> None:
    cur = ans["currency"]
    plan = result.plan
    rows = transfer_rows(instance, plan)
    units = float(sum(r["units"] for r in rows))
    trucks = int(sum(r["trucks"] for r in rows))
    lost_plan = _unmet(plan)[0]
    has_none = do_nothing is not None and do_nothing.has_solution
    lost_none = _unmet(do_nothing)[0] if has_none else None
    late_plan = _not_on_time(plan)
    late_none = _not_on_time(do_nothing) if has_none else None
    ans.update(transfers=rows, units_moved=units, trucks_total=trucks,
               stockouts={"do_nothing_units": lost_none, "plan_units": lost_plan,
                          "avoided_units": None if lost_none is None else lost_none - lost_plan,
                          "do_nothing_not_on_time_units": late_none, "plan_not_on_time_units": late_plan,
                          "on_time_gained_units": None if late_none is None else late_none - late_plan})
    lanes = len({(r["origin_id"], r["destination_id"]) for r in rows})
    head = f"Move {units:,.0f} units in {trucks:,} truck{'' if trucks == 1 else 's'} on {lanes} lane(s)"
    if lost_none is not None:
        head += f"; {lost_none - lost_plan:,.0f} stockout units avoided against doing nothing"
        if late_none is not None and abs(late_none - late_plan) >= 0.5:
            head += f" and {late_none - late_plan:,.0f} more units delivered on time"
    ans["headline"] = head
    lines = [head + f" ({ans['time_basis']['label']})."]
    if rows:
        lines.append("  trucks by lane and day:")
        by_lane: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in rows:
            by_lane.setdefault((r["origin_name"], r["destination_name"]), []).append(r)
        for (o, d), rs in sorted(by_lane.items(), key=lambda kv: -sum(r["units"] for r in kv[1])):
            days = ", ".join(f"{r['date']} {r['trucks']}" for r in rs[:8]) + (" ..." if len(rs) > 8 else "")
            n = sum(r["trucks"] for r in rs)
            lines.append(f"    {o} -> {d}: {n} truck{'' if n == 1 else 's'}, "
                         f"{sum(r['units'] for r in rs):,.0f} units (trucks per dispatch day: {days})")
    if lost_none is not None:
        lines.append(f"  stockouts: {lost_plan:,.0f} units lost with the plan, {lost_none:,.0f} without any "
                     f"transfer (same disruption, same horizon); not delivered within the promise: "
                     f"{late_plan:,.0f} units with the plan, {late_none:,.0f} without")
    for c in ans["costs"]:
        if c["component"] in ("labour", "transport"):
            if c["baseline"] is None:
                lines.append(f"  {c['label']} (whole network): {money(c['scenario'], cur)}")
            else:
                lines.append(f"  {c['label']} (whole network): {money(c['scenario'], cur)}, "
                             f"{_change(c['delta'], cur)} than {ans['baseline']}")
    ans["lines"] = lines


# ------------------------------------------------------------------------------------------------------
# Network design (consolidation)
# ------------------------------------------------------------------------------------------------------
def investment_split(instance: Instance, plan: Plan) -> dict[str, float]:
    """One-off investment: opening costs of opened sites, closing costs of closed sites, module capex."""
    costs = plan.tables["costs"].set_index("component")["amount"]
    sites = plan.tables["sites"]
    s = instance.sites.set_index("id")
    opening = closing = 0.0
    if not sites.empty:
        opened = sites.loc[pd.to_numeric(sites["opened"]).fillna(0) > 0.5, "site_id"].astype(str)
        closed = sites.loc[pd.to_numeric(sites["closed"]).fillna(0) > 0.5, "site_id"].astype(str)
        opening = float(pd.to_numeric(s["opening_cost"].reindex(opened)).fillna(0.0).sum())
        closing = float(pd.to_numeric(s["closing_cost"].reindex(closed)).fillna(0.0).sum())
    elif "opening" in costs or "closing" in costs:
        opening, closing = float(costs.get("opening", 0.0)), float(costs.get("closing", 0.0))
    cap = plan.tables["capacity"]
    modules = float(pd.to_numeric(cap["capex"]).fillna(0.0).sum()) if not cap.empty else 0.0
    return {"opening": opening, "closing": closing, "modules": modules, "total": opening + closing + modules}


def _running(plan: Plan) -> float:
    """Running cost (per year for network design): every component but one-off, capital charge and penalties."""
    costs = plan.tables["costs"]
    skip = set(ONE_OFF) | {"capex_annualized"} | set(PENALTY_COMPONENTS)
    return float(pd.to_numeric(costs.loc[~costs["component"].isin(skip), "amount"]).sum())


def _within_promise(plan: Plan) -> float | None:
    sv = plan.tables["service"]
    if sv.empty:
        return None
    d = pd.to_numeric(sv["demand"]).astype(float)
    w = pd.to_numeric(sv["within_sla_share"]).astype(float).fillna(0.0)
    return float((d * w).sum() / d.sum()) if d.sum() > 0 else None


def _network_design(ans: dict[str, Any], instance: Instance, result: Any, base: Any) -> None:
    cur = ans["currency"]
    plan = result.plan
    inv = investment_split(instance, plan)
    savings = _running(base.plan) - _running(plan) if base is not None else None
    payback = inv["total"] / savings if savings is not None and savings > 0 and inv["total"] > 0 else None
    if savings is not None and savings > 0 and inv["total"] <= 0:
        payback = 0.0
    kb = base.kpis if base is not None else {}
    ka = result.kpis
    cov = {"avg_delivery_days_before": _f(kb.get("avg_delivery_days")),
           "avg_delivery_days_after": _f(ka.get("avg_delivery_days")),
           "within_promise_before": _within_promise(base.plan) if base is not None else None,
           "within_promise_after": _within_promise(plan),
           "service_days": _f(instance.defaults.get("service_days"))}
    ans.update(investment=inv, annual_savings=savings, payback_years=payback, coverage=cov)
    if savings is None:
        pay = ""
    elif payback is not None:
        pay = f"; pays back in {payback:,.1f} years ({money(savings, cur)} running cost saved per year)"
    else:
        pay = f"; does not pay back: running cost {money(-savings, cur)} a year higher"
    ans["headline"] = f"Invest {money(inv['total'], cur)} one-off{pay}"
    u = ans["unmet"]
    if u["units_before"] is not None and abs(u["units_after"] - u["units_before"]) >= 0.5:
        more = u["units_after"] > u["units_before"]
        ans["headline"] += (f"; unmet demand {'+' if more else '-'}{abs(u['units_after'] - u['units_before']):,.0f} "
                            f"units (penalty {'+' if more else '-'}"
                            f"{money(abs(u['penalty_after'] - (u['penalty_before'] or 0.0)), cur)} a year, "
                            "not in the payback)")
    lines = [ans["headline"] + ".",
             f"  investment: opening {money(inv['opening'], cur)} + closing {money(inv['closing'], cur)} + "
             f"modules {money(inv['modules'], cur)} = {money(inv['total'], cur)} (one-off)"]
    lines.append(f"  annual cost by component ({ans['time_basis']['label']}):")
    for c in ans["costs"]:
        if c["baseline"] is None:
            lines.append(f"    {c['label']}: {money(c['scenario'], cur)}")
        else:
            lines.append(f"    {c['label']}: {money(c['baseline'], cur)} -> {money(c['scenario'], cur)} "
                         f"({_change(c['delta'], cur)})")
    u = ans["unmet"]
    if u["units_before"] is not None:
        lines.append(f"  unmet demand: {u['units_before']:,.0f} -> {u['units_after']:,.0f} units over the plan "
                     f"horizon; penalty {money(u['penalty_before'] or 0, cur)} -> {money(u['penalty_after'], cur)}"
                     " per year")
    else:
        lines.append(f"  unmet demand: {u['units_after']:,.0f} units; penalty {money(u['penalty_after'], cur)}")
    sd = cov["service_days"]
    if cov["avg_delivery_days_after"] is not None:
        if cov["avg_delivery_days_before"] is not None:
            d = cov["avg_delivery_days_after"] - cov["avg_delivery_days_before"]
            txt = (f"  average delivery time: {cov['avg_delivery_days_before']:.2f} -> "
                   f"{cov['avg_delivery_days_after']:.2f} days ({d:+.2f})")
        else:
            txt = f"  average delivery time: {cov['avg_delivery_days_after']:.2f} days"
        if cov["within_promise_after"] is not None:
            before = (f"{cov['within_promise_before']:.1%} -> " if cov["within_promise_before"] is not None else "")
            txt += f"; demand within the {sd:g}-day promise: {before}{cov['within_promise_after']:.1%}"
        lines.append(txt)
    lines.append(f"  labour by site, receiving sites first ({ans['time_basis']['label']}; 1 FTE = the site's "
                 "hours a week per person x 52.1 weeks):")
    gained = [r for r in ans["sites"] if (r["volume_after"] or 0) > (r["volume_before"] or 0) + 0.5][:5]
    lost = [r for r in ans["sites"] if (r["volume_after"] or 0) < (r["volume_before"] or 0) - 0.5]
    lost.sort(key=lambda r: (r["volume_after"] or 0) - (r["volume_before"] or 0))
    for r in gained + lost[:4]:
        lines.append(_site_line(r))
    ans["lines"] = lines


# ------------------------------------------------------------------------------------------------------
# Capacity (peak)
# ------------------------------------------------------------------------------------------------------
def _base_daily_capacity(instance: Instance) -> pd.DataFrame:
    res = instance.resources
    res = res[res["stage"] != "storage"]
    return res.assign(units_per_day=pd.to_numeric(res["count"]) * pd.to_numeric(res["rate_per_hour"])
                      * pd.to_numeric(res["hours_per_day"]))


def capacity_additions(instance: Instance, plan: Plan) -> list[dict[str, Any]]:
    """What the plan adds per DC in physical units, from which day, at what cost over the peak.

    Rows: modules per stage (``added_count`` resource units, ``capex`` one-off, ``cost`` the module cost the
    plan charges: annualized capex + opex or the capex), an extra shift per site (``stage`` ``"shift"``,
    ``extra_hours_per_day``, ``cost`` = shift cost per day x peak days) and temporary staff per site (``stage``
    ``"labour"``, ``added_count`` people, ``cost`` = people x hourly rate x (1 + premium) x hours a day x days).
    ``from_date``: the first peak day the site processes more than that stage's capacity without the addition
    (the first peak day for shifts and temps).
    """
    names = site_names(instance)
    cap = plan.tables["capacity"]
    starts = instance.periods.set_index("period")["start"]
    first_day = pd.Timestamp(starts.iloc[0]).date().isoformat() if len(starts) else None
    n_days = len(starts)
    tp = plan.tables["site_throughput"]
    base = _base_daily_capacity(instance).set_index(["site_id", "stage"])["units_per_day"]
    params = plan.meta.get("params") or {}
    annuity = float(params.get("annuity", 0.0) or 0.0)
    opex = instance.expansions.set_index(["site_id", "stage"])["opex_per_year"] if len(instance.expansions) else {}
    rows = []
    shifts: dict[str, float] = {}
    for r in cap.itertuples(index=False):
        added = float(r.added_count or 0.0)
        sid = str(r.site_id)
        extra = float(getattr(r, "extra_hours_per_day", 0.0) or 0.0)
        if extra > 1e-9:
            shifts[sid] = max(shifts.get(sid, 0.0), extra)
        if added <= 1e-9:
            continue
        frm = first_day
        limit = base.get((sid, r.stage))
        if limit is not None and not tp.empty:
            g = tp[tp["site_id"].astype(str) == sid].sort_values("period")
            over = g[pd.to_numeric(g["outbound_units"]) > float(limit) * (1 + 1e-6)]
            if len(over):
                frm = pd.Timestamp(starts.get(int(over["period"].iloc[0]))).date().isoformat()
        capex = float(r.capex or 0.0)
        modules = float(r.modules or 0.0)
        yearly = capex * annuity + modules * float(opex.get((sid, r.stage), 0.0)) \
            if params.get("module_cost", "annualized") == "annualized" else capex
        rows.append({"site_id": sid, "site_name": _name(names, sid), "stage": str(r.stage),
                     "resource": RESOURCE_NAMES.get(str(r.stage), (r.stage, r.stage))[1],
                     "base_count": float(r.base_count), "added_count": added, "modules": modules,
                     "extra_hours_per_day": 0.0, "from_date": frm, "capex": capex, "cost": yearly})
    for sid, hours in shifts.items():
        rows.append({"site_id": sid, "site_name": _name(names, sid), "stage": "shift",
                     "resource": "extra shift", "base_count": 0.0, "added_count": 0.0, "modules": 0.0,
                     "extra_hours_per_day": hours, "from_date": first_day, "capex": 0.0,
                     "cost": float(params.get("extra_shift_cost_per_day", 0.0)) * n_days})
    rate = instance.labor.set_index("site_id")["hourly_rate"] if len(instance.labor) else {}
    for sid, n in (plan.meta.get("temps") or {}).items():
        cost = float(n) * float(rate.get(sid, 0.0)) * (1 + float(params.get("temp_premium", 0.0))) \
            * float(params.get("temp_hours_per_day", 0.0)) * n_days
        rows.append({"site_id": str(sid), "site_name": _name(names, sid), "stage": "labour",
                     "resource": "temporary workers", "base_count": 0.0, "added_count": float(n), "modules": 0.0,
                     "extra_hours_per_day": 0.0, "from_date": first_day, "capex": 0.0, "cost": cost})
    return rows


def _addition_text(rows: list[dict[str, Any]]) -> dict[str, str]:
    out: dict[str, list[str]] = {}
    for r in rows:
        parts = out.setdefault(r["site_id"], [])
        if r["added_count"] > 0:
            parts.append(f"+{_count(r['added_count'], r['stage'])}")
        if r["extra_hours_per_day"] > 0:
            parts.append(f"an extra shift of {r['extra_hours_per_day']:g} h a day")
    return {k: ", ".join(v) for k, v in out.items()}


def _capacity(ans: dict[str, Any], instance: Instance, result: Any, base: Any,
              stress: Mapping[str, Any] | None) -> None:
    cur = ans["currency"]
    plan = result.plan
    adds = ans["additions"]
    costs = plan.tables["costs"].set_index("component")["amount"]
    modules_capex = float(sum(r["capex"] for r in adds))
    ans["investment"] = {"opening": 0.0, "closing": 0.0, "modules": modules_capex, "total": modules_capex}
    total = float(pd.to_numeric(costs).sum())
    delta = None
    if base is not None:
        delta = total - float(pd.to_numeric(base.plan.tables["costs"]["amount"]).sum())
    n_sites = len({r["site_id"] for r in adds})
    head = (f"Add capacity at {n_sites} DC(s) for the peak: {money(modules_capex, cur)} of modules (one-off)"
            if adds else "No capacity to add for the peak")
    if delta is not None:
        head += f"; total cost {ans['time_basis']['label']} {_change(delta, cur)} than with today's capacity"
    ans["headline"] = head
    lines = [head + "."]
    if adds:
        lines.append(f"  what to add, from when (cost {ans['time_basis']['label']}; capex one-off):")
        for r in adds:
            if r["stage"] == "shift":
                what = f"an extra shift of {r['extra_hours_per_day']:g} h a day at every stage"
            elif r["stage"] == "labour":
                what = f"{_count(r['added_count'], 'labour')}"
            else:
                what = f"+{_count(r['added_count'], r['stage'])} ({r['modules']:g} module(s))"
            cost = f"{money(r['cost'] or 0.0, cur)}" + (f" ({money(r['capex'], cur)} capex)" if r["capex"] > 0
                                                        else "")
            lines.append(f"    {r['site_name']}: {what} from {r['from_date']}, {cost}")
    for comp, label in (("extra_shifts", "extra shifts"), ("labor_temp", "temporary staff"),
                        ("labor_overtime", "overtime")):
        if float(costs.get(comp, 0.0)) > 0.5:
            lines.append(f"  {label}: {money(float(costs[comp]), cur)} {ans['time_basis']['label']}")
    for c in ans["costs"]:
        if c["baseline"] is not None:
            lines.append(f"  {c['label']}: {money(c['baseline'], cur)} with today's capacity -> "
                         f"{money(c['scenario'], cur)} ({_change(c['delta'], cur)})")
    fps = ans["failure_points"]
    if fps:
        lines.append("  without the additions (today's capacity, the forecast peak scaled up; 1.00x = the forecast):")
        for f in fps[:6]:
            lines.append(f"    {f['message']}")
    if stress and stress.get("with_additions"):
        first = [s for s in stress["with_additions"] if s.get("fail_multiplier") is not None]
        if first:
            s = min(first, key=lambda x: x["fail_multiplier"])
            res_name = RESOURCE_NAMES.get(s["stage"], (s["stage"],) * 2)[1]
            if s["fail_multiplier"] <= 1.0 + 1e-9:
                lines.append(f"  with the additions there is no headroom above the forecast: the stress test (the "
                             f"peak days alone) first finds {s['site_name']}'s {res_name} at their limit")
            else:
                lines.append(f"  with the additions the network holds to {s['fail_multiplier']:.2f}x the forecast "
                             f"peak (first to break: {s['site_name']}, {res_name})")
        else:
            lines.append("  with the additions every DC holds up to the highest multiplier tested")
    ans["lines"] = lines


def sla_note(result: Any) -> str | None:
    """The difference between the MILP's and the simulator's SLA verdicts, and its cause (None: they agree)."""
    plan = result.plan
    unit_days = float(plan.meta.get("sla_breach_unit_days", 0.0) or 0.0)
    costs = plan.tables["costs"]
    pen = float(pd.to_numeric(costs.loc[costs["component"] == "sla_breach", "amount"]).sum())
    if unit_days <= 1e-6 or not result.simulation_feasible:
        return None
    cur = result.instance.currency if result.instance is not None else ""
    return (f"The MILP pays {money(pen, cur)} of SLA-breach penalty ({unit_days:,.0f} unit-days of orders waiting "
            "beyond the SLA) where the levers cost more than the penalty, while the simulator finds every SLA met: the "
            "simulator executes the units the plan processes each day, so orders the MILP defers to later days "
            "never reach it as late orders. Read the breach as orders the plan knowingly ships late.")


# ------------------------------------------------------------------------------------------------------
# Front door
# ------------------------------------------------------------------------------------------------------
def build_answer(result: Any, baseline: Any = None, *, do_nothing: Plan | None = None,
                 stress: Mapping[str, Any] | None = None, question: str | None = None) -> dict[str, Any]:
    """The answer of a solved scenario (see the module docstring for every key).

    Parameters
    ----------
    result : the scenario's :class:`engine.pipeline.PlanResult`.
    baseline : the baseline's PlanResult (like for like: same horizon and demand), or None.
    do_nothing : redistribution only -- the plan of the same disruption without any transfer.
    stress : capacity only -- :func:`peak_stress` output (failure points with and without the additions).
    question : the question in words (default: the scenario's description, else one per decision).
    """
    instance = result.instance
    decision = DECISION_NAMES.get(result.decision, result.decision)
    currency = instance.currency if instance is not None else ""
    basis = time_basis(instance, decision)
    base_plan = baseline.plan if baseline is not None and baseline.plan.has_solution else None
    ans: dict[str, Any] = {
        "decision": decision,
        "question": question or str(result.scenario.get("description") or "").strip() or QUESTIONS.get(decision, ""),
        "headline": "", "lines": [], "time_basis": basis, "currency": currency,
        "executable": bool(result.simulation_feasible), "breaches": breaches(instance, result.simulation),
        "baseline": baseline.scenario.get("name") if baseline is not None else None,
        "costs": [], "sites": [], "unmet": {}, "sla_note": None,
    }
    if not result.plan.has_solution:
        why = (result.rounds[-1].get("diagnosis") if result.rounds else None) or []
        ans["headline"] = f"No plan: the {result.decision} model is {result.status}"
        ans["lines"] = [ans["headline"] + "."] + [f"  - {w}" for w in why]
        ans["executable"] = False
        return ans
    ans["costs"] = cost_rows(result.plan, base_plan, decision)
    ans["unmet"] = unmet_summary(result.plan, base_plan)
    ans["sla_note"] = sla_note(result)
    added: dict[str, str] = {}
    if decision == "capacity":
        ans["additions"] = capacity_additions(instance, result.plan)
        added = _addition_text(ans["additions"])
        ans["failure_points"] = list((stress or {}).get("failure_points") or [])
        ans["stress"] = {k: v for k, v in (stress or {}).items() if k != "failure_points"}
    elif decision == "network_design":
        cap = result.plan.tables["capacity"]
        if not cap.empty:
            for r in cap.itertuples(index=False):
                if float(r.added_count or 0) > 0:
                    added[str(r.site_id)] = (added.get(str(r.site_id), "") + ", " if str(r.site_id) in added
                                             else "") + f"+{_count(float(r.added_count), str(r.stage))}"
    ans["sites"] = site_rows(instance, result.plan, result.simulation, base_plan,
                             baseline.simulation if baseline is not None else None, decision, added)
    if decision == "redistribution":
        _redistribution(ans, instance, result, baseline, do_nothing)
    elif decision == "network_design":
        _network_design(ans, instance, result, baseline)
    else:
        _capacity(ans, instance, result, baseline, stress)
    if decision != "network_design" and decision != "capacity":
        u = ans["unmet"]
        ans["lines"].append(f"  unmet demand (lost sales): {u['units_after']:,.0f} units, penalty "
                            f"{money(u['penalty_after'], currency)}"
                            + (f" ({u['units_before']:,.0f} units, {money(u['penalty_before'] or 0, currency)} in "
                               f"{ans['baseline']})" if u["units_before"] is not None else ""))
    if decision == "capacity":
        u = ans["unmet"]
        pen = [c for c in ans["costs"] if c["component"] == "penalty"]
        if pen:
            p = pen[0]
            lines_pen = f"  SLA-breach and unmet penalties: {money(p['scenario'], currency)}"
            if p["baseline"] is not None:
                lines_pen += f" ({money(p['baseline'], currency)} with today's capacity)"
            ans["lines"].append(lines_pen)
    if ans["sla_note"]:
        ans["lines"].append("  note: " + ans["sla_note"])
    if not ans["executable"]:
        ans["lines"].insert(0, "NOT EXECUTABLE: " + breach_sentence(ans["breaches"]) + ".")
        ans["headline"] = "Not executable -- " + ans["headline"]
    return ans


ANSWER_WIDTH = 100
"""Columns a printed answer fits in (a terminal, an e-mail): longer lines are wrapped, never cut."""


def wrap_lines(lines: list[str], width: int = ANSWER_WIDTH) -> list[str]:
    """``lines`` wrapped at ``width`` columns at word boundaries; a continuation keeps its line's indent, and
    the text of a ``- `` list item stays aligned under the item's first word."""
    import textwrap

    out: list[str] = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        body = line.lstrip()
        lead = line[: len(line) - len(body)]
        hang = lead + ("  " if body.startswith("- ") else "    ")
        out += textwrap.wrap(line, width=width, subsequent_indent=hang, break_on_hyphens=False) or [line]
    return out


def answer_text(answer: Mapping[str, Any], width: int = ANSWER_WIDTH) -> str:
    """The printed answer: its lines (wrapped at ``width`` columns), the time basis stated."""
    return "\n".join(wrap_lines(list(answer.get("lines") or [answer.get("headline", "")]), width))


# ------------------------------------------------------------------------------------------------------
# What a run needs besides the scenario's own plan
# ------------------------------------------------------------------------------------------------------
TODAY_SUFFIX = "_today"
TAIL_PERIODS = 1
"""Periods after the peak block simulated at the forecast volume in the peak stress tests."""


def like_for_like_baseline(instance: Instance, scenario: Any, load: Any) -> tuple[Instance, Any, int | None] | None:
    """The baseline a scenario is compared with: (instance, scenario, most repair rounds or None = the
    default), or None.

    A peak (``capacity``) scenario is compared with the same window and the same demand under today's
    capacity: the same scenario without modules (no expansions), extra shifts or temporary staff, simulated
    once (it is the reference, not a plan to repair). Every other scenario uses its ``baseline:`` scenario
    (``load(name)`` reads it), which the bundled instances define over the same horizon.
    """
    from dataclasses import replace

    if scenario is None:
        return None
    if scenario.decision == "capacity":
        today = replace(scenario, name=scenario.name + TODAY_SUFFIX,
                        description=f"{scenario.name} under today's capacity: same peak window and demand, no "
                                    "modules, extra shifts or temporary staff",
                        options={**dict(scenario.options), "allow_extra_shift": False, "max_temp_share": 0.0})
        return instance.replace(expansions=instance.expansions.iloc[0:0]), today, 1
    if scenario.baseline and scenario.baseline != scenario.name:
        return instance, load(scenario.baseline), None
    return None


def do_nothing_plan(result: Any, **solve_kw: Any) -> Plan | None:
    """Redistribution only: the same disrupted horizon planned without any transfer (stockouts to avoid)."""
    from engine.pipeline import solve_decision

    if result.decision != "redistribution" or result.instance is None or not result.plan.has_solution:
        return None
    inst = result.instance
    meta = dict(inst.meta)
    sc = dict(meta.get("scenario") or {})
    sc["options"] = {**dict(sc.get("options") or {}), "allow_transfers": False}
    meta["scenario"] = sc
    plan, _ = solve_decision(inst.replace(meta=meta), "redistribution", **solve_kw)
    return plan if plan.has_solution else None


def _today_plan(plan: Plan) -> Plan:
    """The peak plan's volumes on today's capacity: no added modules, extra shifts or temporary hours."""
    t = dict(plan.tables)
    cap = t["capacity"].copy()
    if not cap.empty:
        cap["added_count"] = 0.0
        cap["modules"] = 0.0
        cap["capex"] = 0.0
        cap["total_count"] = pd.to_numeric(cap["base_count"]).astype(float)
        cap["extra_hours_per_day"] = 0.0
    lab = t["labor"].copy()
    if not lab.empty:
        lab["temp_hours"] = 0.0
    t.update(capacity=cap, labor=lab)
    return Plan(plan.decision, plan.status, plan.objective, plan.bound, plan.gap, tables=t, meta=dict(plan.meta))


def _plus_one(plan: Plan, fails: Mapping[str, str]) -> Plan:
    """``plan`` with one more resource unit at each site's failing stage."""
    t = dict(plan.tables)
    cap = t["capacity"].copy()
    for sid, stage in fails.items():
        hit = (cap["site_id"].astype(str) == sid) & (cap["stage"] == stage)
        cap.loc[hit, "total_count"] = pd.to_numeric(cap.loc[hit, "total_count"]).astype(float) + 1.0
    t["capacity"] = cap
    return Plan(plan.decision, plan.status, plan.objective, plan.bound, plan.gap, tables=t, meta=dict(plan.meta))


def _first_failures(table: pd.DataFrame) -> pd.DataFrame:
    """Each site's first failure (lowest multiplier over its chains); sites that hold are left out."""
    t = table.dropna(subset=["fail_multiplier"])
    if t.empty:
        return t
    return t.sort_values(["fail_multiplier", "site_id"], kind="stable").groupby("site_id", sort=False).head(1)


def _failure_times(instance: Instance, plan: Plan, first: pd.DataFrame, periods: list[int], weights: np.ndarray,
                   *, replications: int, seed: int) -> dict[str, Any]:
    """When each site's chain first breaks at its failure multiplier (one batched run, a multiplier per site)."""
    from engine.simulator import plan_inputs, prepare, run_setup

    setup = prepare(instance, periods=periods, **plan_inputs(plan))
    by_site = {str(r.site_id): float(r.fail_multiplier) for r in first.itertuples()}
    mult = np.array([[by_site.get(s, 1.0)] for s in setup.site_ids])
    res = run_setup(setup, mult, period_weight=weights, detail=False, replications=replications, seed=seed)
    chains = {str(r.site_id): str(r.chain) for r in first.itertuples()}
    out = {}
    for r in res.breaches.itertuples():
        sid = str(r.site_id)
        if sid in by_site and sid not in out and str(r.chain) == chains.get(sid):
            out[sid] = r
    missing = [s for s in by_site if s not in out]
    if missing:  # judged as the stress test judges: the whole multiplier grid in one batch
        grid = np.linspace(1.0, max(by_site.values()) + 0.5, 64)
        res = run_setup(setup, grid, period_weight=weights, detail=False, replications=replications, seed=seed)
        b = res.breaches.sort_values(["column", "time"], kind="stable")
        for r in b.itertuples():
            sid = str(r.site_id)
            if sid in missing and sid not in out and str(r.chain) == chains[sid] \
                    and grid[int(r.column)] >= by_site[sid] - 1e-9:
                out[sid] = r
    return out


def peak_stress(instance: Instance, plan: Plan, *, replications: int = 10, seed: int = 0,
                high: float = 3.0) -> dict[str, Any]:
    """Failure points of a peak plan in physical units, with and without its additions.

    Three stress tests (:func:`engine.stress.stress_test`) over the same peak block: the plan as it is
    (``with_additions``), the plan's volumes on today's capacity (``today``: no modules, shifts or temps), and
    today's capacity with one more resource unit at each site's failing stage (sites are independent, so one
    run serves all). ``failure_points`` states, per site, "13 inbound doors at Poznan saturate at 1.02x the
    forecast peak on 2026-11-27, 10:00; one more door holds to 1.15x". Tables in ``tables`` (for CSV).
    """
    from engine.simulator import plan_inputs
    from engine.stress import peak_periods, stress_test

    names = site_names(instance)
    inputs = plan_inputs(plan)
    block = peak_periods(inputs["site_throughput"], inputs["open_sites"])
    last = int(instance.periods["period"].max())
    # the peak block scaled, plus the day after it at the forecast: an order is overdue only a full SLA after it
    # arrives, so a window that ends with the peak would never see the peak's last orders break
    tail = [p for p in range(max(block) + 1, min(max(block) + TAIL_PERIODS, last) + 1)]
    weights = {**{p: 1.0 for p in range(min(block), max(block) + 1)}, **{p: 0.0 for p in tail}}
    periods = sorted(weights)
    kw = {"replications": replications, "seed": seed, "high": high, "spike": weights}
    with_add = stress_test(instance, plan, **kw)
    today_plan = _today_plan(plan)
    today = stress_test(instance, today_plan, **kw)
    first = _first_failures(today)
    fails = {str(r.site_id): str(r.stage) for r in first.itertuples()}
    plus = stress_test(instance, _plus_one(today_plan, fails), **kw) if fails else today.iloc[0:0]
    plus_rows = {str(r.site_id): r for r in _first_failures(plus).itertuples()}
    plus_first = {sid: float(r.fail_multiplier) for sid, r in plus_rows.items()}
    times = _failure_times(instance, today_plan, first, periods, np.array([weights[p] for p in periods]),
                           replications=replications, seed=seed) if fails else {}
    cap = today_plan.tables["capacity"]
    counts = {(str(s), str(g)): float(n) for s, g, n in zip(cap["site_id"], cap["stage"],
                                                           pd.to_numeric(cap["total_count"]))}
    points = []
    for r in first.itertuples():
        sid, stage = str(r.site_id), str(r.stage)
        n = counts.get((sid, stage))
        hit = times.get(sid)
        ts = pd.Timestamp(hit.time) if hit is not None else None
        binding = str(hit.binding) if hit is not None else None
        one, many = RESOURCE_NAMES.get(stage, (stage, stage))
        holds = plus_first.get(sid)
        when = f" on {ts:%d %b}, {ts:%H}:00" if ts is not None else ""
        already = float(r.fail_multiplier) <= 1.0 + 1e-9
        at = "already at the forecast peak" if already else f"at {r.fail_multiplier:.2f}x the forecast peak"
        if binding == "labour":
            hours = float(hit.labour_hours) if np.isfinite(float(hit.labour_hours)) else float("nan")
            msg = (f"Staff at {_name(names, sid)} run short at the {stage.replace('_', ' ')} {at}{when} "
                   f"(labour binds, not the {many}): about {hours:,.0f} more labour hours a day needed there")
        else:
            what = _count(n, stage) if n is not None else many
            verb = "saturates" if n is not None and round(n) == 1 else "saturate"
            msg = f"{what} at {_name(names, sid)} {verb} {at}{when}; with one more {one}, "
            nxt = plus_rows.get(sid)
            if holds is None:
                msg += f"it holds up to {high:.2f}x (the highest tested)"
            elif str(nxt.stage) != stage:
                msg += f"{RESOURCE_NAMES.get(str(nxt.stage), (nxt.stage,) * 2)[1]} break next, at {holds:.2f}x"
            else:
                msg += f"it holds to {holds:.2f}x" if holds > r.fail_multiplier + 1e-9 else "it still breaks there"
        points.append({"site_id": sid, "site_name": _name(names, sid), "stage": stage, "resource": many,
                       "count": n, "chain": str(r.chain), "binding": binding,
                       "fail_multiplier": float(r.fail_multiplier),
                       "date": ts.date().isoformat() if ts is not None else None,
                       "hour": int(ts.hour) if ts is not None else None,
                       "shortfall_units": float(hit.shortfall_units) if hit is not None else None,
                       "one_more_holds_to": holds, "message": msg[0].upper() + msg[1:]})

    def firsts(table: pd.DataFrame) -> list[dict[str, Any]]:
        out = []
        for sid, g in table.groupby("site_id", sort=False):
            g = g.dropna(subset=["fail_multiplier"]).sort_values("fail_multiplier")
            out.append({"site_id": str(sid), "site_name": _name(names, sid),
                        "fail_multiplier": float(g["fail_multiplier"].iloc[0]) if len(g) else None,
                        "stage": str(g["stage"].iloc[0]) if len(g) else None})
        return out

    starts = instance.periods.set_index("period")["start"]
    window = [pd.Timestamp(starts[p]).date().isoformat() for p in (periods[0], periods[-1]) if p in starts.index]
    return {"failure_points": points, "with_additions": firsts(with_add), "today": firsts(today),
            "window": window, "high": high, "periods": periods, "weights": [weights[p] for p in periods],
            "tables": {"stress": with_add, "stress_today": today, "stress_today_plus_one": plus}}


def answer_for_run(result: Any, baseline: Any = None, *, out_dir: Any = None, solve_kw: Mapping[str, Any] | None = None,
                   replications: int = 10, seed: int = 0) -> dict[str, Any]:
    """Everything a run's answer needs (counterfactual, stress), computed, written to ``out_dir`` and assembled.

    Sets ``result.answer`` and returns it. Redistribution: the do-nothing plan (no transfers). Capacity: the peak
    stress tests, written as ``stress.csv`` (the plan), ``stress_today.csv`` and ``stress_today_plus_one.csv``.
    """
    from pathlib import Path

    do_nothing = stress = None
    if result.plan.has_solution and result.decision == "redistribution":
        do_nothing = do_nothing_plan(result, **dict(solve_kw or {}))
    if result.plan.has_solution and result.decision == "capacity" and result.instance is not None:
        stress = peak_stress(result.instance, result.plan, replications=replications, seed=seed)
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            for name, table in stress.pop("tables").items():
                table.to_csv(Path(out_dir) / f"{name}.csv", index=False)
        else:
            stress.pop("tables")
    result.answer = build_answer(result, baseline, do_nothing=do_nothing, stress=stress)
    return result.answer
