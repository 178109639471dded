"""KPIs in the terms executives use, each defined once, computed from a Plan and a simulation.

Definitions (currency = the instance's; "annual" = per year for strategic decisions, per horizon for
tactical ones, as the plan's ``costs`` table states):

- ``total_cost``: sum of the plan's cost components; ``cost_<component>`` for each of fixed (fixed site
  costs + opening + closing), transport, handling, labour (regular + overtime + temporary), capex
  (annualized capex + expansion opex), penalty (unmet demand, late delivery).
- ``investment``: one-off money needed: capex of added modules + opening costs of opened sites + closing
  costs of closed sites.
- ``labour_hours``: planned labour hours over the plan's periods (all sites); per site in
  :func:`labour_hours_by_site`.
- ``avg_delivery_days`` / ``p95_delivery_days``: demand-weighted mean / 95th percentile of lane transit
  days over every unit shipped DC -> zone; ``avg_distance_km`` likewise in km.
- ``fill_rate``: share of demand served (1 - unmet / demand).
- ``cycle_time_p50_h`` / ``cycle_time_p95_h``: order-to-ship time inside the DCs (simulator), the
  throughput-weighted mean of the sites' p50 and the maximum of their p95.
- ``service_level``: share of demand delivered *and* shipped within the order-to-ship SLA
  = fill_rate x throughput-weighted within-SLA share of the sites (simulator).
- ``max_utilisation``: the highest mean utilisation of any site and stage (simulator).
- Labour Stress Index (LSI), per site and day: workload labour hours needed / labour hours staffed.
  Scale: LSI < 0.85 *comfortable*; 0.85-1.00 *stretched* (no slack for absence or variance);
  1.00-1.15 *overload* (needs overtime or temporary staff); > 1.15 *critical* (backlog will grow).
  ``max_labour_stress`` is the highest daily LSI; ``stress_days`` the number of site-days >= 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from instances.instance import Instance
from instances.plan import Plan

LSI_THRESHOLDS: tuple[tuple[float, str], ...] = ((0.85, "comfortable"), (1.0, "stretched"), (1.15, "overload"),
                                                 (float("inf"), "critical"))
"""Upper bounds of the Labour Stress Index bands."""

COST_GROUPS: dict[str, tuple[str, ...]] = {
    "fixed": ("fixed", "opening", "closing"),
    "transport": ("transport", "transport_inbound", "transport_outbound", "transfer_units", "transfer_trucks"),
    "handling": ("handling",),
    "labour": ("labour_regular", "labour_overtime", "labour_temp", "labor_regular", "labor_overtime", "labor_temp",
               "extra_shifts"),
    "capex": ("capex_annualized", "expansion_opex", "capacity_modules"),
    "penalty": ("unmet_penalty", "lost_sales", "late_delivery", "sla_breach"),
}
"""Plan cost components (the formulations' ``costs`` table) grouped the way executives read them; a
component not listed lands in ``cost_other`` (never dropped)."""


@dataclass(frozen=True)
class Kpi:
    """What a KPI is, declared once: read by the executive summary, the run store and the reports.

    Attributes
    ----------
    name : key in ``kpis.json``, the run store's ``kpis`` table and :func:`compute_kpis`.
    label : plain-words name, capitalised (``"Total cost"``); lower-case its first letter inside a sentence.
    unit : physical unit of the value: ``currency``, ``h``, ``days``, ``km``, ``units``, ``share`` (0..1),
        ``index`` (dimensionless ratio), ``sites``, ``site-days`` or ``bool`` (0 / 1).
    direction : ``"lower"`` or ``"higher"`` when a decrease / increase is good news; None when neither is.
    format : how to show a value (the report's vocabulary): ``money`` (currency), ``hours``, ``days``, ``km``,
        ``units`` (a whole number), ``share`` (as %) or ``index`` (2 decimals).
    description : one line on how it is computed (the module docstring has the definitions).
    """

    name: str
    label: str
    unit: str
    direction: Literal["lower", "higher"] | None
    format: str
    description: str = ""


_COST_LABELS = {"fixed": "Fixed site cost", "transport": "Transport cost", "handling": "Handling cost",
                "labour": "Labour cost", "capex": "Capital cost", "penalty": "Penalties", "other": "Other cost"}

KPIS: dict[str, Kpi] = {k.name: k for k in (
    Kpi("total_cost", "Total cost", "currency", "lower", "money", "sum of the plan's cost components"),
    *(Kpi(f"cost_{g}", _COST_LABELS[g], "currency", "lower", "money",
          f"cost components grouped as {g} (:data:`COST_GROUPS`)") for g in (*COST_GROUPS, "other")),
    Kpi("objective", "Objective", "currency", "lower", "money", "the MILP's objective value"),
    Kpi("investment", "Investment", "currency", "lower", "money", "capex of added modules + opening costs"),
    Kpi("labour_hours", "Labour hours", "h", "lower", "hours", "planned labour hours over the plan's periods"),
    Kpi("avg_delivery_days", "Average delivery time", "days", "lower", "days",
        "demand-weighted mean lane transit time DC -> zone"),
    Kpi("p95_delivery_days", "Delivery time (p95)", "days", "lower", "days",
        "demand-weighted 95th percentile of lane transit time DC -> zone"),
    Kpi("avg_distance_km", "Average delivery distance", "km", "lower", "km",
        "demand-weighted mean distance DC -> zone"),
    Kpi("demand_units", "Demand", "units", None, "units", "units demanded over the horizon"),
    Kpi("unmet_units", "Unmet demand", "units", "lower", "units", "units not served"),
    Kpi("fill_rate", "Fill rate", "share", "higher", "share", "1 - unmet / demand"),
    Kpi("open_sites", "Open DCs", "sites", None, "units", "DCs and cross-docks open in the plan"),
    Kpi("cycle_time_p50_h", "Order-to-ship time (p50)", "h", "lower", "hours",
        "throughput-weighted mean of the sites' median order-to-ship time (simulator)"),
    Kpi("cycle_time_p95_h", "Order-to-ship time (p95)", "h", "lower", "hours",
        "largest 95th percentile order-to-ship time of any site (simulator)"),
    Kpi("within_sla_share", "Shipped within SLA", "share", "higher", "share",
        "throughput-weighted share of orders shipped within the order-to-ship SLA (simulator)"),
    Kpi("service_level", "Service level", "share", "higher", "share", "fill rate x within-SLA share"),
    Kpi("max_utilisation", "Peak utilisation", "share", "lower", "share",
        "highest mean utilisation of any site and stage (simulator)"),
    Kpi("max_labour_stress", "Max Labour Stress Index", "index", "lower", "index",
        "highest daily labour hours needed / staffed of any site"),
    Kpi("mean_labour_stress", "Mean Labour Stress Index", "index", "lower", "index",
        "mean daily labour hours needed / staffed over sites and days"),
    Kpi("stress_days", "Stress days", "site-days", "lower", "units", "site-days with a Labour Stress Index >= 1"),
    Kpi("simulation_feasible", "Executable", "bool", "higher", "units",
        "1 when the simulator finds every SLA met, else 0"),
)}
"""Every KPI of :func:`compute_kpis`, declared once (name -> :class:`Kpi`): label, unit, direction, format."""


def kpi_direction(name: str) -> str | None:
    """``"lower"`` / ``"higher"`` when a decrease / increase of KPI ``name`` is good news; None otherwise
    (also for a name that is not a declared KPI)."""
    k = KPIS.get(name)
    return k.direction if k is not None else None


def lsi_band(value: float) -> str:
    """The Labour Stress Index band of a value (see the module docstring)."""
    for upper, name in LSI_THRESHOLDS:
        if value < upper:
            return name
    return "critical"


def cost_breakdown(plan: Plan) -> dict[str, float]:
    """Cost by executive component (fixed, transport, handling, labour, capex, penalty, other)."""
    costs = plan.tables["costs"]
    out = dict.fromkeys(COST_GROUPS, 0.0)
    out["other"] = 0.0
    lookup = {c: g for g, comps in COST_GROUPS.items() for c in comps}
    for comp, amount in zip(costs["component"], pd.to_numeric(costs["amount"])):
        out[lookup.get(str(comp), "other")] += float(amount)
    return out


def labour_hours_by_site(plan: Plan) -> pd.Series:
    """Planned labour hours per site (regular + overtime + temporary) over the plan's periods."""
    lab = plan.tables["labor"]
    if lab.empty:
        return pd.Series(dtype=float)
    hours = sum(pd.to_numeric(lab[c]).fillna(0.0) for c in ("regular_hours", "overtime_hours", "temp_hours"))
    return hours.groupby(lab["site_id"]).sum().astype(float)


def investment(instance: Instance, plan: Plan) -> float:
    """One-off money: capex of added modules + opening costs of sites opened + closing costs of sites closed."""
    cap = plan.tables["capacity"]
    capex = float(pd.to_numeric(cap["capex"]).fillna(0.0).sum()) if not cap.empty else 0.0
    sites = plan.tables["sites"]
    one_off = 0.0
    if not sites.empty:
        s = instance.sites.set_index("id")
        for flag, column in (("opened", "opening_cost"), ("closed", "closing_cost")):
            hit = sites.loc[pd.to_numeric(sites[flag]).fillna(0) > 0.5, "site_id"]
            one_off += float(pd.to_numeric(s[column]).reindex(hit).fillna(0.0).sum())
    return capex + one_off


def _weighted_quantile(values: np.ndarray, weights: np.ndarray, q: float) -> float:
    if len(values) == 0 or weights.sum() <= 0:
        return float("nan")
    order = np.argsort(values)
    v, w = values[order], weights[order]
    cum = np.cumsum(w) / w.sum()
    return float(v[np.searchsorted(cum, q - 1e-12)])


def delivery(instance: Instance, plan: Plan) -> dict[str, float]:
    """Demand-weighted delivery time (days) and distance (km) over units shipped DC -> zone."""
    flows = plan.tables["flows"]
    zones = set(instance.zones["id"])
    out = flows[flows["destination_id"].isin(zones)]
    out = out[pd.to_numeric(out["quantity"]) > 1e-9]
    nan = {"avg_delivery_days": float("nan"), "p95_delivery_days": float("nan"), "avg_distance_km": float("nan")}
    if out.empty:
        return nan
    lanes = instance.lanes.drop_duplicates(["origin_id", "destination_id"])
    m = out.merge(lanes[["origin_id", "destination_id", "transit_days", "distance_km"]],
                  on=["origin_id", "destination_id"], how="left")
    w = pd.to_numeric(m["quantity"]).to_numpy(float)
    days = m["transit_days"].to_numpy(float)
    km = m["distance_km"].to_numpy(float)
    if np.isnan(km).any():
        from instances.instance import haversine_km

        s = instance.sites.set_index("id")
        z = instance.zones.set_index("id")
        road = float((instance.meta.get("rate_card") or {}).get("road_factor", 1.25))
        gc = haversine_km(s.loc[m["origin_id"], "lat"].to_numpy(), s.loc[m["origin_id"], "lon"].to_numpy(),
                          z.loc[m["destination_id"], "lat"].to_numpy(), z.loc[m["destination_id"], "lon"].to_numpy())
        km = np.where(np.isnan(km), gc * road, km)
    return {
        "avg_delivery_days": float(np.average(days, weights=w)),
        "p95_delivery_days": _weighted_quantile(days, w, 0.95),
        "avg_distance_km": float(np.average(km, weights=w)),
    }


def labour_stress(simulation: Any) -> pd.DataFrame:
    """Daily Labour Stress Index per site: labour hours needed / labour hours staffed, with its band."""
    daily = getattr(simulation, "daily", None)
    if daily is None or len(daily) == 0:
        return pd.DataFrame(columns=["site_id", "day", "hours_needed", "hours_staffed", "lsi", "band"])
    day_col = "date" if "date" in daily.columns else "day"
    g = daily.groupby(["site_id", day_col], sort=True)[["labour_hours_needed", "labour_hours_staffed"]].sum()
    g = g.reset_index().rename(columns={day_col: "day", "labour_hours_needed": "hours_needed",
                                        "labour_hours_staffed": "hours_staffed"})
    staffed = g["hours_staffed"].to_numpy(float)
    need = g["hours_needed"].to_numpy(float)
    g["lsi"] = np.where(staffed > 0, need / np.where(staffed > 0, staffed, 1.0), np.where(need > 0, np.inf, 0.0))
    g["band"] = [lsi_band(v) for v in g["lsi"]]
    return g


def utilisation(simulation: Any) -> pd.DataFrame:
    """Mean and peak utilisation by site and stage (from the simulation)."""
    sp = getattr(simulation, "stage_period", None)
    if sp is None or len(sp) == 0:
        return pd.DataFrame(columns=["site_id", "stage", "mean", "peak"])
    g = sp.groupby(["site_id", "stage"])["utilisation"].agg(["mean", "max"]).reset_index()
    return g.rename(columns={"max": "peak"})


def compute_kpis(instance: Instance, plan: Plan, simulation: Any | None = None) -> dict[str, float]:
    """All headline KPIs as one flat dict of floats (see the module docstring for definitions)."""
    k: dict[str, float] = {}
    costs = cost_breakdown(plan)
    k["total_cost"] = float(sum(costs.values()))
    for comp, v in costs.items():
        k[f"cost_{comp}"] = v
    k["objective"] = float(plan.objective) if plan.objective is not None else float("nan")
    k["investment"] = investment(instance, plan)
    k["labour_hours"] = float(labour_hours_by_site(plan).sum())
    k.update(delivery(instance, plan))
    demand = float(instance.demand["quantity"].sum())
    unmet = float(pd.to_numeric(plan.tables["unmet"]["quantity"]).sum()) if not plan.tables["unmet"].empty else 0.0
    k["demand_units"] = demand
    k["unmet_units"] = unmet
    k["fill_rate"] = 1.0 - unmet / demand if demand > 0 else 1.0
    sites = plan.tables["sites"]
    if not sites.empty:
        dc = sites["kind"].isin(["dc", "crossdock"]) if "kind" in sites else pd.Series(True, index=sites.index)
        k["open_sites"] = float((pd.to_numeric(sites.loc[dc, "open"]).astype(float) > 0.5).sum())
    else:
        k["open_sites"] = float("nan")
    if simulation is not None:
        st = simulation.site
        w = None
        tp = plan.tables["site_throughput"]
        if not tp.empty:
            w = pd.to_numeric(tp["outbound_units"]).groupby(tp["site_id"]).sum().reindex(st["site_id"]).fillna(0.0)
        weights = w.to_numpy(float) if w is not None and w.sum() > 0 else np.ones(len(st))
        p50 = st["cycle_time_p50_h"].to_numpy(float)
        shipped = ~np.isnan(p50) & (weights > 0)  # sites that shipped nothing have no cycle time
        if shipped.any():
            k["cycle_time_p50_h"] = float(np.average(p50[shipped], weights=weights[shipped]))
            k["cycle_time_p95_h"] = float(np.nanmax(st["cycle_time_p95_h"].to_numpy(float)[shipped]))
            within = float(np.average(st["within_sla_share"].to_numpy(float)[shipped], weights=weights[shipped]))
        else:
            k["cycle_time_p50_h"] = k["cycle_time_p95_h"] = float("nan")
            within = 1.0
        k["within_sla_share"] = within
        k["service_level"] = k["fill_rate"] * within
        u = utilisation(simulation)
        k["max_utilisation"] = float(u["mean"].max()) if len(u) else float("nan")
        lsi = labour_stress(simulation)
        finite = lsi["lsi"].replace(np.inf, np.nan)
        k["max_labour_stress"] = float(finite.max()) if len(lsi) else float("nan")
        k["mean_labour_stress"] = float(finite.mean()) if len(lsi) else float("nan")
        k["stress_days"] = float((lsi["lsi"] >= 1.0).sum())
        k["simulation_feasible"] = float(bool(simulation.verdict.feasible))
    return k


SUMMARY_KPIS: tuple[str, ...] = ("total_cost", "cost_labour", "cost_transport", "investment", "labour_hours",
                                  "cycle_time_p50_h", "avg_delivery_days", "service_level")
"""The KPIs of the executive summary's change lines, in order."""


def _in_sentence(label: str) -> str:
    return label[:1].lower() + label[1:]


DELTA_KPIS: dict[str, tuple[str, str]] = {k: (KPIS[k].format, _in_sentence(KPIS[k].label)) for k in SUMMARY_KPIS}
"""Summary KPI -> (format, label in a sentence), derived from :data:`KPIS`."""


def kpi_deltas(kpis: dict[str, float], baseline: dict[str, float]) -> dict[str, dict[str, float]]:
    """Scenario minus baseline for every shared KPI: absolute and relative change."""
    out = {}
    for key, value in kpis.items():
        if key not in baseline:
            continue
        b = baseline[key]
        if not (np.isfinite(value) and np.isfinite(b)):
            continue
        out[key] = {"scenario": value, "baseline": b, "delta": value - b,
                    "relative": (value - b) / abs(b) if abs(b) > 1e-12 else float("nan")}
    return out


def executive_summary(kpis: dict[str, float], baseline: dict[str, float] | None, currency: str,
                      scenario: str = "scenario", baseline_name: str = "baseline") -> str:
    """The translation an executive reads: deltas in money, hours and days, one line each."""
    if not kpis:
        return f"{scenario}: no plan (the MILP has no solution)"
    lines = [f"{scenario} vs {baseline_name}:" if baseline else f"{scenario}:"]

    def money(v: float) -> str:
        a = abs(v)
        s = f"{a / 1e6:,.2f} M" if a >= 1e6 else (f"{a / 1e3:,.1f} k" if a >= 1e3 else f"{a:,.0f}")
        return f"{currency} {s}"

    if not baseline:
        lines.append(f"  total cost {money(kpis['total_cost'])}; investment {money(kpis['investment'])}")
        days = kpis.get("avg_delivery_days", 0.0)
        lines.append(f"  labour {kpis['labour_hours']:,.0f} h; average delivery {days:.2f} d")
        return "\n".join(lines)
    d = kpi_deltas(kpis, baseline)
    for key, (unit, label) in DELTA_KPIS.items():
        if key not in d:
            continue
        x = d[key]
        if abs(x["delta"]) < 1e-9:
            lines.append(f"  {label}: unchanged")
            continue
        more = "more" if x["delta"] > 0 else "less"
        rel = f" ({x['relative']:+.1%})" if np.isfinite(x["relative"]) else ""
        if unit == "money":
            lines.append(f"  {label}: {money(x['delta'])} {more}{rel}")
        elif unit == "hours":  # whole hours from 100 h (labour: 349,218 h), a tenth below (cycle time: 0.3 h)
            h = abs(x["delta"])
            lines.append(f"  {label}: {h:,.0f} h {more}{rel}" if h >= 100 else f"  {label}: {h:,.1f} h {more}{rel}")
        elif unit == "days":
            lines.append(f"  {label}: {abs(x['delta']):,.2f} days {'longer' if x['delta'] > 0 else 'shorter'}{rel}")
        else:
            lines.append(f"  {label}: {x['scenario']:.1%} ({x['delta'] * 100:+.1f} points)")
    return "\n".join(lines)
