"""Inventory redistribution after a disruption: truckload transfers between DCs and zone re-assignment.

A disruption is expressed by the instance itself (a port's supply set to zero, sites or lanes removed,
capacities scaled); :func:`solve_redistribution` plans the next days or weeks on it and, given the
undisrupted instance (or its plan), reports what the disruption costs in labour hours, transport and
service.

Model (all sums over the lanes that exist; ``t`` runs over the horizon periods, ``Δ_t`` days long)::

    sets      D DCs (existing, not closed)   S ports/suppliers   Z zones   P products   T periods
    vars      deliver[d,z,p,t] >= 0          units dispatched DC -> zone
              receive[s,d,p,t] >= 0          units dispatched port -> DC (arrive lag_sd periods later)
              transfer[o,e,p,t] >= 0         units dispatched DC o -> DC e (arrive lag_oe periods later)
              trucks[o,e,t] in Z+            truckloads o -> e dispatched in t (products share a truck)
              stock[d,p,t] >= 0              stock at the end of t
              lost[z,p,t], backlog[z,p,t] >= 0   lost sales, demand carried to t+1 (late)
              regular[d,t], overtime[d,t] >= 0   labour hours
    min       transport + transfers + handling + labour + lost-sales + late-delivery penalties

A shipment dispatched in period ``t`` over a lane of ``transit_days`` τ arrives in period
``t + floor(τ / Δ)`` (Δ the period length): on daily periods a 1.3-day lane delivers the next day, on
weekly periods within the week. Late delivery is penalised per unit and day late: a unit carried in the
backlog is one period (Δ days) late per period carried; a unit delivered over a lane slower than the
service promise ``service_days`` is ``τ - service_days`` days late. Backlog left at the end of the horizon
is lost.

Stage work of a DC (units per period): received units (from ports and transfers, in their arrival period)
pass the inbound dock and putaway; shipped units (to zones and to other DCs) pass pick, pack and the
outbound dock. Each stage is limited by its equipment (``resources``: count x rate x hours x Δ)
and the labour hours they need (units / productivity) by the headcount and overtime of ``labor.csv``.
A DC with no resource rows processes nothing; a DC without a ``labor.csv`` row has no labour limit/cost.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import linopy
import numpy as np
import pandas as pd
import xarray as xr

import solvers
from engine.instance import Instance
from engine.schema import FLOW_STAGES
from formulations.common import derate_series
from formulations.plan import Plan

EPS = 1e-6
"""Values below this (units, hours, trucks) are solver noise and left out of plan tables."""



# -------------------------------------------------------------------------------------------------
# Options
# -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RedistributionOptions:
    """Parameters of the redistribution model (None = take the instance default).

    Attributes
    ----------
    horizon_periods : plan over the first N periods of the instance (None = all).
    lost_sales_penalty : currency per unit of demand lost (default ``unmet_demand_penalty``).
    late_penalty_per_unit_day : currency per unit and day delivered late (default 5 % of the lost-sales
        penalty, so a unit three weeks late costs about as much as a lost one).
    allow_late : demand not served in its period may be served later in the horizon (backlog).
    truck_capacity_m3, truck_capacity_kg, truck_fixed_cost : override the instance defaults.
    transfer_cost_per_unit : currency per unit transferred on top of the truck cost (default: the lane's
        ``cost_per_unit``).
    max_transit_days : DC -> DC lanes slower than this are not used for transfers (None = all).
    allow_transfers : False plans without any transfer (e.g. to value the transfer option).
    closed_sites : DCs taken out of service for the whole horizon (their stock is unavailable).
    capacity_derate : ``{(site, stage): factor}`` or DataFrame ``site_id, stage, factor`` in [0, 1] multiplying
        a stage's equipment capacity (the repair loop's lever, see :func:`formulations.common.derate_series`).
    """

    horizon_periods: int | None = None
    lost_sales_penalty: float | None = None
    late_penalty_per_unit_day: float | None = None
    allow_late: bool = True
    truck_capacity_m3: float | None = None
    truck_capacity_kg: float | None = None
    truck_fixed_cost: float | None = None
    transfer_cost_per_unit: float | None = None
    max_transit_days: float | None = None
    allow_transfers: bool = True
    closed_sites: tuple[str, ...] = field(default_factory=tuple)
    capacity_derate: Mapping[tuple[str, str], float] | pd.DataFrame | None = None

    def resolved(self, instance: Instance) -> dict[str, Any]:
        """Every parameter with the instance defaults filled in."""
        d = instance.defaults
        lost = float(d["unmet_demand_penalty"] if self.lost_sales_penalty is None else self.lost_sales_penalty)
        out = asdict(self)
        out.update(
            lost_sales_penalty=lost,
            late_penalty_per_unit_day=0.05 * lost if self.late_penalty_per_unit_day is None
            else float(self.late_penalty_per_unit_day),
            truck_capacity_m3=float(d["truck_capacity_m3"] if self.truck_capacity_m3 is None
                                    else self.truck_capacity_m3),
            truck_capacity_kg=float(d["truck_capacity_kg"] if self.truck_capacity_kg is None
                                    else self.truck_capacity_kg),
            truck_fixed_cost=float(d["truck_fixed_cost"] if self.truck_fixed_cost is None else self.truck_fixed_cost),
            handling_cost_per_unit=float(d["handling_cost_per_unit"]),
            service_days=float(d["service_days"]),
            closed_sites=list(self.closed_sites),
        )
        for key in ("truck_capacity_m3", "truck_capacity_kg"):
            if not out[key] > 0:
                raise ValueError(f"RedistributionOptions.{key} must be > 0, got {out[key]!r}")
        for key in ("lost_sales_penalty", "late_penalty_per_unit_day", "truck_fixed_cost"):
            if out[key] < 0:
                raise ValueError(f"RedistributionOptions.{key} must be >= 0, got {out[key]!r}")
        if self.horizon_periods is not None and self.horizon_periods < 1:
            raise ValueError(f"RedistributionOptions.horizon_periods must be >= 1, got {self.horizon_periods!r}")
        return out


# -------------------------------------------------------------------------------------------------
# Table -> array helpers (shared with formulations.capacity)
# -------------------------------------------------------------------------------------------------
def dense(frame: pd.DataFrame, columns: Sequence[str], coords: Sequence[pd.Index], value: str,
          fill: float = 0.0, agg: str = "sum") -> xr.DataArray:
    """A DataArray over ``coords`` (named indexes) from the rows of ``frame``.

    ``columns`` name the frame columns matching each coordinate, in order; rows whose keys are not in the
    coordinates are ignored, duplicate keys are aggregated with ``agg``, missing cells get ``fill``.
    """
    coords = list(coords)
    shape = [len(c) for c in coords]
    keep = np.ones(len(frame), dtype=bool)
    for col, idx in zip(columns, coords):
        keep &= frame[col].isin(idx).to_numpy()
    sub = frame.loc[keep]
    if sub.empty:
        return xr.DataArray(np.full(shape, fill, dtype=float), coords=coords)
    series = sub.groupby(list(columns), sort=False)[value].agg(agg)
    target = pd.MultiIndex.from_product(coords) if len(coords) > 1 else coords[0]
    if len(coords) == 1:
        series.index = pd.Index(series.index, name=coords[0].name)
    else:
        series.index = series.index.set_names([c.name for c in coords])
    values = series.reindex(target, fill_value=fill).to_numpy(dtype=float)
    return xr.DataArray(values.reshape(shape), coords=coords)


def cheapest_lanes(lanes: pd.DataFrame) -> pd.DataFrame:
    """One lane per (origin, destination): the cheapest mode (then the fastest)."""
    if lanes.empty:
        return lanes
    ordered = lanes.sort_values(["origin_id", "destination_id", "cost_per_unit", "transit_days"], kind="stable")
    return ordered.drop_duplicates(["origin_id", "destination_id"], keep="first").reset_index(drop=True)


def lane_arrays(lanes: pd.DataFrame, origin: pd.Index, destination: pd.Index) -> dict[str, xr.DataArray]:
    """Dense ``exists``, ``cost``, ``transit``, ``capacity`` (inf = unlimited) and ``distance`` arrays."""
    lanes = lanes.assign(one=1.0, cap=lanes["capacity"].astype(float).fillna(np.inf),
                         km=lanes["distance_km"].astype(float).fillna(0.0))
    cols = ["origin_id", "destination_id"]
    out = {
        "exists": dense(lanes, cols, [origin, destination], "one") > 0,
        "cost": dense(lanes, cols, [origin, destination], "cost_per_unit"),
        "transit": dense(lanes, cols, [origin, destination], "transit_days"),
        "capacity": dense(lanes, cols, [origin, destination], "cap", fill=np.inf),
        "distance": dense(lanes, cols, [origin, destination], "km"),
    }
    return out


def present(expr: Any) -> linopy.LinearExpression:
    """A variable or expression with its absent (masked / shifted-in) slots as zero terms."""
    return expr.fillna(0) if hasattr(expr, "fillna") else expr


def arrivals(flow: linopy.Variable | linopy.LinearExpression, lag: xr.DataArray, sum_dim: str,
             to_dim: str, new_name: str) -> linopy.LinearExpression:
    """Units arriving per destination and period: ``sum_o flow[o, e, p, t - lag[o, e]]``.

    One shifted copy per distinct lag value (a handful), never a loop over indexes.
    """
    flow = present(flow)
    lags = np.unique(lag.to_numpy().astype(int))
    parts = [present(flow.where(lag == int(L)).shift(period=int(L))) for L in lags]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total.sum(sum_dim).rename({to_dim: new_name})


def lags(transit: xr.DataArray, period_days: float) -> xr.DataArray:
    """Periods between dispatch and arrival: ``floor(transit_days / period_days)``."""
    return np.floor(transit / period_days + 1e-9).astype(int)


def solve_model(model: linopy.Model, solver: str, time_limit: float | None, mip_gap: float | None,
                threads: int | None, log: Any) -> solvers.SolveResult:
    """Solve through the project's solver layer (never raises on a non-optimal termination)."""
    return solvers.solve(model, solver=solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads, log=log)


def solution_frame(result: solvers.SolveResult, name: str, dims: Sequence[str], value: str = "value",
                   threshold: float | None = EPS) -> pd.DataFrame:
    """A solved variable group as a flat frame (one column per dim), small values dropped."""
    if name not in result.values:  # every element masked: the group is absent from the model
        return pd.DataFrame({c: pd.Series(dtype=float if c == value else object) for c in [*dims, value]})
    s = result.values[name]
    if threshold is not None:
        s = s[s.abs() > threshold]
    return s.rename(value).reset_index()


def round_values(df: pd.DataFrame, columns: Iterable[str], digits: int = 6) -> pd.DataFrame:
    """Round solver noise off numeric columns (``-0.0`` becomes ``0.0``)."""
    df = df.copy()
    for c in columns:
        df[c] = df[c].astype(float).round(digits) + 0.0
    return df


# -------------------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------------------
@dataclass
class RedistributionData:
    """Dense arrays of one redistribution instance (built once, read by every ``add_*`` function)."""

    dcs: pd.Index
    sources: pd.Index
    zones: pd.Index
    products: pd.Index
    periods: pd.Index
    period_days: float
    params: dict[str, Any]
    demand: xr.DataArray  # zone, product, period
    on_hand: xr.DataArray  # dc, product
    supply: xr.DataArray  # source, product, period
    volume: xr.DataArray  # product (m3/unit)
    weight: xr.DataArray  # product (kg/unit)
    out_lanes: dict[str, xr.DataArray]  # dc, zone
    in_lanes: dict[str, xr.DataArray]  # source, dc
    transfer_lanes: dict[str, xr.DataArray]  # origin, destination
    stage_capacity: xr.DataArray  # dc, stage (units/day; inf = not modelled)
    labor: pd.DataFrame  # indexed by site_id (DCs with a labor row)
    sites: pd.DataFrame  # all sites (for the plan's sites table)
    cache: dict[str, Any] = field(default_factory=dict)  # expressions shared by several constraint families


def prepare_data(instance: Instance, params: dict[str, Any]) -> RedistributionData:
    """Select the horizon, DCs, lanes; pivot the tables into dense arrays."""
    per = instance.periods
    if params["horizon_periods"] is not None:
        per = per[per["period"] <= int(params["horizon_periods"])]
    periods = pd.Index(per["period"].astype(int).to_numpy(), name="period")
    period_days = float(per["days"].iloc[0])
    dc_rows = instance.dcs
    dc_rows = dc_rows[(dc_rows["status"] == "existing") & ~dc_rows["id"].isin(params["closed_sites"])]
    dcs = pd.Index(dc_rows["id"].to_numpy(), name="dc")
    sources = pd.Index(instance.sources["id"].to_numpy(), name="source")
    zones = pd.Index(instance.zones["id"].to_numpy(), name="zone")
    products = pd.Index(instance.products["id"].to_numpy(), name="product")
    if dcs.empty:
        raise ValueError("redistribution needs at least one open existing DC (sites.csv: kind dc, status existing)")

    demand = dense(instance.demand, ["zone_id", "product_id", "period"], [zones, products, periods], "quantity")
    on_hand = dense(instance.inventory, ["site_id", "product_id"], [dcs, products], "on_hand")
    supply = dense(instance.supply, ["site_id", "product_id", "period"], [sources, products, periods], "capacity")
    prod = instance.products
    volume = dense(prod, ["id"], [products], "unit_volume_m3")
    weight = dense(prod, ["id"], [products], "unit_weight_kg")

    lanes = cheapest_lanes(instance.lanes)
    out_lanes = lane_arrays(lanes, dcs, zones)
    in_lanes = lane_arrays(lanes, sources, dcs)
    origin, destination = dcs.rename("origin"), dcs.rename("destination")
    transfer_lanes = lane_arrays(lanes, origin, destination)
    not_self = xr.DataArray(origin.to_numpy()[:, None] != destination.to_numpy()[None, :],
                            coords=[origin, destination])
    ok = transfer_lanes["exists"] & not_self & params["allow_transfers"]
    if params["max_transit_days"] is not None:
        ok = ok & (transfer_lanes["transit"] <= float(params["max_transit_days"]))
    transfer_lanes["exists"] = ok

    stages = pd.Index(list(FLOW_STAGES), name="stage")
    cap = instance.stage_capacity()
    cap = cap.assign(units_per_day=cap["units_per_day"] * derate_series(params["capacity_derate"], cap))
    stage_capacity = dense(cap, ["site_id", "stage"], [dcs, stages], "units_per_day", fill=np.inf)
    has_resources = xr.DataArray(dcs.isin(cap["site_id"]), coords=[dcs])
    stage_capacity = stage_capacity.where(has_resources, 0.0)

    labor = instance.labor.set_index("site_id")
    labor = labor[labor.index.isin(dcs)]
    return RedistributionData(dcs, sources, zones, products, periods, period_days, params, demand, on_hand,
                              supply, volume, weight, out_lanes, in_lanes, transfer_lanes, stage_capacity, labor,
                              instance.sites)


# -------------------------------------------------------------------------------------------------
# Variables and constraint families
# -------------------------------------------------------------------------------------------------
def define_variables(m: linopy.Model, data: RedistributionData) -> None:
    """Create every decision variable over its coordinates, masked to the lanes / rows that exist."""
    dcs, zones, products, periods = data.dcs, data.zones, data.products, data.periods
    has_demand = data.demand.sum("period") > 0  # zone, product
    deliver_mask = (data.out_lanes["exists"] & has_demand).broadcast_like(data.demand).transpose(
        "dc", "zone", "product", "period")
    m.add_variables(lower=0.0, coords=[dcs, zones, products, periods], name="deliver", mask=deliver_mask)

    receive_mask = (data.in_lanes["exists"] & (data.supply > 0)).transpose("source", "dc", "product", "period")
    m.add_variables(lower=0.0, coords=[data.sources, dcs, products, periods], name="receive", mask=receive_mask)

    tl = data.transfer_lanes
    origin, destination = tl["exists"].indexes["origin"], tl["exists"].indexes["destination"]
    movable = (data.on_hand.sum("dc") + data.supply.sum(["source", "period"])) > 0  # product
    tmask = (tl["exists"] & movable).expand_dims(period=periods).transpose("origin", "destination", "product",
                                                                           "period")
    m.add_variables(lower=0.0, coords=[origin, destination, products, periods], name="transfer", mask=tmask)
    total = data.on_hand.sum("dc") + data.supply.sum(["source", "period"])
    loads = max(float((total * data.volume).sum()) / data.params["truck_capacity_m3"],
                float((total * data.weight).sum()) / data.params["truck_capacity_kg"])
    truck_mask = tl["exists"].expand_dims(period=periods).transpose("origin", "destination", "period")
    m.add_variables(lower=0, upper=math.ceil(loads) + 1, coords=[origin, destination, periods], name="trucks",
                    integer=True, mask=truck_mask)

    m.add_variables(lower=0.0, coords=[dcs, products, periods], name="stock")
    dmask = has_demand.expand_dims(period=periods).transpose("zone", "product", "period")
    m.add_variables(lower=0.0, coords=[zones, products, periods], name="lost", mask=dmask)
    last = xr.DataArray(periods == periods[-1], coords=[periods])
    backlog_upper = xr.where(last | (not data.params["allow_late"]), 0.0, np.inf)
    m.add_variables(lower=0.0, upper=backlog_upper.broadcast_like(dmask), coords=[zones, products, periods],
                    name="backlog", mask=dmask)

    lab = data.labor
    has_labor = xr.DataArray(dcs.isin(lab.index), coords=[dcs])
    share = data.period_days / 7.0
    regular_cap = _labor_column(lab, dcs, "max_headcount") * _labor_column(lab, dcs, "hours_per_person_week") * share
    overtime_cap = _labor_column(lab, dcs, "max_overtime_hours") * share
    lmask = has_labor.expand_dims(period=periods).transpose("dc", "period")
    m.add_variables(lower=0.0, upper=regular_cap.broadcast_like(lmask), coords=[dcs, periods], name="regular",
                    mask=lmask)
    m.add_variables(lower=0.0, upper=overtime_cap.broadcast_like(lmask), coords=[dcs, periods], name="overtime",
                    mask=lmask)


def _term(m: linopy.Model, data: RedistributionData, name: str) -> linopy.LinearExpression:
    """Variable ``name`` as an expression with absent slots as zero (built once per model)."""
    key = f"var:{name}"
    if key not in data.cache:
        data.cache[key] = present(m.variables[name])
    return data.cache[key]


def _labor_column(labor: pd.DataFrame, dcs: pd.Index, column: str) -> xr.DataArray:
    return xr.DataArray(labor[column].reindex(dcs).fillna(0.0).to_numpy(dtype=float), coords=[dcs])


def inbound_units(m: linopy.Model, data: RedistributionData) -> linopy.LinearExpression:
    """Units arriving at each DC per period, from ports and from other DCs: ``[dc, product, period]``."""
    if "inbound_units" in data.cache:
        return data.cache["inbound_units"]
    from_ports = arrivals(m.variables["receive"], lags(data.in_lanes["transit"], data.period_days), "source",
                          "dc", "dc")
    from_dcs = arrivals(m.variables["transfer"], lags(data.transfer_lanes["transit"], data.period_days), "origin",
                        "destination", "dc")
    data.cache["inbound_units"] = from_ports + from_dcs
    return data.cache["inbound_units"]


def add_supply_limits(m: linopy.Model, data: RedistributionData) -> None:
    """Ports ship at most their supply: ``sum_d receive[s,d,p,t] <= supply[s,p,t]``."""
    if not data.sources.size:
        return
    m.add_constraints(_term(m, data, "receive").sum("dc") <= data.supply, name="supply_limit",
                      mask=data.supply > 0)


def add_inventory_balance(m: linopy.Model, data: RedistributionData) -> None:
    """Stock flow per DC, product and period.

    ``stock[d,p,t] = stock[d,p,t-1] + arrivals[d,p,t] - sum_z deliver[d,z,p,t] - sum_e transfer[d,e,p,t]``
    with ``stock[d,p,0] = on_hand[d,p]`` (inventory.csv).
    """
    stock = m.variables["stock"]
    shipped = _term(m, data, "deliver").sum("zone") + _term(m, data, "transfer").sum(
        "destination").rename(origin="dc")
    first = xr.DataArray((data.periods == data.periods[0]).astype(float), coords=[data.periods])
    initial = (data.on_hand * first).transpose("dc", "product", "period")
    lhs = stock - present(stock.shift(period=1)) - inbound_units(m, data) + shipped
    m.add_constraints(lhs == initial, name="inventory_balance")


def add_demand_balance(m: linopy.Model, data: RedistributionData) -> None:
    """Every unit of demand is delivered, carried (late) or lost.

    ``sum_d deliver[d,z,p,t] + backlog[z,p,t] + lost[z,p,t] = demand[z,p,t] + backlog[z,p,t-1]``
    (``backlog`` is zero in the last period, and everywhere when late delivery is not allowed).
    """
    backlog = m.variables["backlog"]
    lhs = _term(m, data, "deliver").sum("dc") + present(backlog) + _term(m, data, "lost") \
        - present(backlog.shift(period=1))
    has_demand = (data.demand.sum("period") > 0).broadcast_like(data.demand)
    m.add_constraints(lhs == data.demand, name="demand_balance", mask=has_demand)


def add_truck_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Transfers travel in whole trucks, limited by volume and by weight.

    ``sum_p vol_p transfer[o,e,p,t] <= cap_m3 trucks[o,e,t]``,
    ``sum_p kg_p transfer[o,e,p,t] <= cap_kg trucks[o,e,t]``.
    """
    if not bool(data.transfer_lanes["exists"].any()):
        return
    transfer, trucks = _term(m, data, "transfer"), _term(m, data, "trucks")
    p = data.params
    mask = data.transfer_lanes["exists"].expand_dims(period=data.periods).transpose("origin", "destination",
                                                                                     "period")
    m.add_constraints((transfer * data.volume).sum("product") - p["truck_capacity_m3"] * trucks <= 0,
                      name="truck_volume", mask=mask)
    m.add_constraints((transfer * data.weight).sum("product") - p["truck_capacity_kg"] * trucks <= 0,
                      name="truck_weight", mask=mask)


def add_lane_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Lanes with a capacity carry at most that many units per period: ``sum_p flow[o,e,p,t] <= cap[o,e]``."""
    for var, lanes in (("deliver", data.out_lanes), ("receive", data.in_lanes), ("transfer", data.transfer_lanes)):
        finite = lanes["exists"] & np.isfinite(lanes["capacity"])
        if not bool(finite.any()):
            continue
        cap = lanes["capacity"].where(finite, 0.0)
        lhs = present(m.variables[var]).sum("product")
        m.add_constraints(lhs <= cap, name=f"lane_capacity_{var}", mask=finite.broadcast_like(lhs.const))


def stage_units(m: linopy.Model, data: RedistributionData) -> dict[str, linopy.LinearExpression]:
    """Units each DC handles per period at each stage: ``[dc, period]`` expressions by stage.

    inbound_dock, putaway: units received (in their arrival period); pick, pack, outbound_dock: units
    shipped, to zones and to other DCs (the convention of :mod:`formulations.check`).
    """
    if "stage_units" in data.cache:
        return data.cache["stage_units"]
    received = inbound_units(m, data).sum("product")
    delivered = _term(m, data, "deliver").sum(["zone", "product"])
    transferred = _term(m, data, "transfer").sum(["destination", "product"]).rename(origin="dc")
    shipped = delivered + transferred
    data.cache["stage_units"] = {"inbound_dock": received, "putaway": received, "pick": shipped,
                                 "pack": shipped, "outbound_dock": shipped}
    return data.cache["stage_units"]


def add_stage_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Equipment limits per DC, stage and period: ``units[d,stage,t] <= cap[d,stage] * Δ`` (units/day x days)."""
    units = stage_units(m, data)
    for stage, expr in units.items():
        cap = data.stage_capacity.sel(stage=stage, drop=True)
        finite = np.isfinite(cap)
        if not bool(finite.any()):
            continue
        rhs = (cap.where(finite, 0.0) * data.period_days).broadcast_like(expr.const)
        m.add_constraints(expr <= rhs, name=f"stage_capacity_{stage}", mask=finite.broadcast_like(expr.const))


def add_labor_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Labour hours cover the stage work at DCs with a labour row.

    ``regular[d,t] + overtime[d,t] >= sum_stage units[d,stage,t] / productivity[d,stage]``
    (regular hours <= headcount x hours per week x Δ/7, overtime <= max overtime x Δ/7: variable bounds).
    """
    if data.labor.empty:
        return
    work = None
    for stage, expr in stage_units(m, data).items():
        productivity = _labor_column(data.labor, data.dcs, f"productivity_{stage}")
        term = expr * (1.0 / productivity.where(productivity > 0, np.inf))
        work = term if work is None else work + term
    hours = _term(m, data, "regular") + _term(m, data, "overtime")
    has_labor = xr.DataArray(data.dcs.isin(data.labor.index), coords=[data.dcs]).broadcast_like(work.const)
    m.add_constraints(hours - work >= 0, name="labor_hours", mask=has_labor)


def late_days(data: RedistributionData) -> xr.DataArray:
    """Days a delivery over each DC -> zone lane arrives after the service promise: ``max(0, τ - service_days)``."""
    return (data.out_lanes["transit"] - data.params["service_days"]).clip(min=0.0)


def add_objective(m: linopy.Model, data: RedistributionData) -> None:
    """Minimise cost plus penalties.

    ``sum c_dz deliver + sum c_sd receive + sum (c_t) transfer + F sum trucks + h (sum deliver + sum transfer)
    + sum (w_d regular + w^o_d overtime) + π_lost sum lost + π_late (Δ sum backlog + sum late_days_dz deliver)``
    """
    p = data.params
    deliver, receive = _term(m, data, "deliver"), _term(m, data, "receive")
    transfer, trucks = _term(m, data, "transfer"), _term(m, data, "trucks")
    unit_transfer = data.transfer_lanes["cost"] if p["transfer_cost_per_unit"] is None \
        else xr.full_like(data.transfer_lanes["cost"], float(p["transfer_cost_per_unit"]))
    obj = (deliver * (data.out_lanes["cost"] + p["handling_cost_per_unit"]
                      + p["late_penalty_per_unit_day"] * late_days(data))).sum()
    obj = obj + (receive * data.in_lanes["cost"]).sum()
    obj = obj + (transfer * (unit_transfer + p["handling_cost_per_unit"])).sum() + p["truck_fixed_cost"] * trucks.sum()
    if not data.labor.empty:
        obj = obj + (_term(m, data, "regular") * _labor_column(data.labor, data.dcs, "hourly_rate")).sum()
        obj = obj + (_term(m, data, "overtime") * _labor_column(data.labor, data.dcs, "overtime_rate")).sum()
    obj = obj + p["lost_sales_penalty"] * _term(m, data, "lost").sum()
    obj = obj + p["late_penalty_per_unit_day"] * data.period_days * _term(m, data, "backlog").sum()
    m.add_objective(obj)


def build_model(data: RedistributionData) -> linopy.Model:
    """The redistribution MILP, as a flat sequence of ``add_*`` calls."""
    m = linopy.Model()
    define_variables(m, data)
    add_supply_limits(m, data)
    add_inventory_balance(m, data)
    add_demand_balance(m, data)
    add_truck_capacity(m, data)
    add_lane_capacity(m, data)
    add_stage_capacity(m, data)
    add_labor_capacity(m, data)
    add_objective(m, data)
    return m


# -------------------------------------------------------------------------------------------------
# Solve and read back into plan tables
# -------------------------------------------------------------------------------------------------
def solve_redistribution(
    instance: Instance,
    baseline: Instance | Plan | None = None,
    options: RedistributionOptions | None = None,
    *,
    solver: str = "highs",
    time_limit: float | None = 60.0,
    mip_gap: float | None = 0.01,
    threads: int | None = None,
    log: Any = None,
) -> Plan:
    """Plan transfers and fulfilment on a (disrupted) instance; compare with the undisrupted baseline.

    Parameters
    ----------
    instance : the disrupted instance (the disruption is in its tables).
    baseline : the undisrupted instance (solved here with the same options) or its redistribution Plan;
        None skips the comparison.
    options : model parameters (:class:`RedistributionOptions`).
    solver, time_limit, mip_gap, threads, log : passed to :func:`solvers.solve`.

    Returns
    -------
    Plan with tables transfers (one row per lane, product and dispatch period; ``trucks`` is the row's share
    of the lane's integer truckloads, ``period`` an extra column), assignment, flows, site_throughput, labor,
    unmet, service, costs, sites; ``meta["truckloads"]`` the integer trucks per lane and period,
    ``meta["deltas"]`` / ``meta["site_deltas"]`` the differences to the baseline.
    """
    options = options or RedistributionOptions()
    params = options.resolved(instance)
    started = time.perf_counter()
    data = prepare_data(instance, params)
    model = build_model(data)
    build_seconds = time.perf_counter() - started
    result = solve_model(model, solver, time_limit, mip_gap, threads, log)
    plan = plan_from_result(data, result)
    plan.meta.update(build_seconds=round(build_seconds, 3), solve_seconds=round(result.wall_time.total, 3),
                     variables=int(model.nvars), constraints=int(model.ncons))
    if baseline is not None:
        base_plan = baseline if isinstance(baseline, Plan) else solve_redistribution(
            baseline, None, options, solver=solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads, log=log)
        plan.meta["baseline"] = {"status": base_plan.status, "objective": base_plan.objective}
        plan.meta["deltas"] = redistribution_deltas(base_plan, plan)
        plan.meta["site_deltas"] = site_deltas(base_plan, plan).to_dict("records")
    return plan


def _lane_series(lanes: dict[str, xr.DataArray], key: str, names: list[str]) -> pd.Series:
    s = lanes[key].to_series()
    s.index = s.index.set_names(names)
    return s


def plan_from_result(data: RedistributionData, result: solvers.SolveResult) -> Plan:
    """Read the solved variables back into the plan tables (costs recomputed from the tables)."""
    status = str(result.termination.value)
    meta: dict[str, Any] = {"solver": result.solver, "params": data.params,
                            "periods": [int(t) for t in data.periods], "period_days": data.period_days}
    if not result.has_solution:
        return Plan("redistribution", status, tables={"sites": _sites_table(data)}, meta=meta)
    p = data.params
    deliver = solution_frame(result, "deliver", ["dc", "zone", "product", "period"], "quantity")
    receive = solution_frame(result, "receive", ["source", "dc", "product", "period"], "quantity")
    transfer = solution_frame(result, "transfer", ["origin", "destination", "product", "period"], "quantity")
    trucks = solution_frame(result, "trucks", ["origin", "destination", "period"], "trucks", threshold=0.5)
    trucks["trucks"] = trucks["trucks"].round().astype(int)
    lost = solution_frame(result, "lost", ["zone", "product", "period"], "quantity")
    backlog = solution_frame(result, "backlog", ["zone", "product", "period"], "quantity")
    labor = _labor_table(result, data)

    out_cost = _lane_series(data.out_lanes, "cost", ["dc", "zone"])
    out_transit = _lane_series(data.out_lanes, "transit", ["dc", "zone"])
    out_km = _lane_series(data.out_lanes, "distance", ["dc", "zone"])
    in_cost = _lane_series(data.in_lanes, "cost", ["source", "dc"])
    in_transit = _lane_series(data.in_lanes, "transit", ["source", "dc"])
    tr_cost = _lane_series(data.transfer_lanes, "cost", ["origin", "destination"])
    tr_transit = _lane_series(data.transfer_lanes, "transit", ["origin", "destination"])

    deliver["cost_per_unit"] = out_cost.reindex(pd.MultiIndex.from_frame(deliver[["dc", "zone"]])).to_numpy()
    deliver["transit_days"] = out_transit.reindex(pd.MultiIndex.from_frame(deliver[["dc", "zone"]])).to_numpy()
    deliver["distance_km"] = out_km.reindex(pd.MultiIndex.from_frame(deliver[["dc", "zone"]])).to_numpy()
    receive["cost_per_unit"] = in_cost.reindex(pd.MultiIndex.from_frame(receive[["source", "dc"]])).to_numpy()
    receive["transit_days"] = in_transit.reindex(pd.MultiIndex.from_frame(receive[["source", "dc"]])).to_numpy()
    tkey = pd.MultiIndex.from_frame(transfer[["origin", "destination"]])
    transfer["cost_per_unit"] = tr_cost.reindex(tkey).to_numpy() if p["transfer_cost_per_unit"] is None \
        else float(p["transfer_cost_per_unit"])
    transfer["transit_days"] = tr_transit.reindex(tkey).to_numpy()

    vol = data.volume.to_series()
    wt = data.weight.to_series()
    transfers = _transfers_table(transfer, trucks, vol, wt, p)
    truckloads = _truckloads(transfer, trucks, vol, wt)

    late = float((deliver["quantity"] * (deliver["transit_days"] - p["service_days"]).clip(lower=0.0)).sum()
                 + backlog["quantity"].sum() * data.period_days)
    costs = _costs_table(data, deliver, receive, transfer, trucks, labor, lost, late)
    flows = _flows_table(deliver, receive)
    tables = {
        "sites": _sites_table(data),
        "flows": flows,
        "site_throughput": _throughput_table(data, deliver, receive, transfer),
        "labor": labor,
        "unmet": round_values(lost.rename(columns={"zone": "zone_id", "product": "product_id"}), ["quantity"]),
        "transfers": transfers,
        "assignment": _assignment_table(deliver),
        "service": _service_table(data, deliver, backlog),
        "costs": costs,
    }
    demand_units = float(data.demand.sum())
    meta.update(
        truckloads=truckloads.to_dict("records"),
        late_unit_days=round(late, 6),
        lost_units=round(float(lost["quantity"].sum()), 6),
        backlog_unit_periods=round(float(backlog["quantity"].sum()), 6),
        demand_units=demand_units,
    )
    return Plan("redistribution", status, objective=float(result.objective), bound=float(result.bound),
                gap=float(result.gap), tables=tables, meta=meta)


def _sites_table(data: RedistributionData) -> pd.DataFrame:
    s = data.sites[["id", "kind", "status"]].rename(columns={"id": "site_id"})
    is_dc = s["kind"].isin(["dc", "crossdock"])
    closed = s["site_id"].isin(data.params["closed_sites"])
    s = s.assign(open=np.where(is_dc, s["site_id"].isin(data.dcs), True) & ~closed, opened=False, closed=closed)
    return s.reset_index(drop=True)


def _labor_table(result: solvers.SolveResult, data: RedistributionData) -> pd.DataFrame:
    regular = solution_frame(result, "regular", ["dc", "period"], "regular_hours", threshold=None)
    overtime = solution_frame(result, "overtime", ["dc", "period"], "overtime_hours", threshold=None)
    labor = regular.merge(overtime, on=["dc", "period"], how="outer").fillna(0.0)
    labor = labor.rename(columns={"dc": "site_id"}).assign(temp_hours=0.0)
    return round_values(labor, ["regular_hours", "overtime_hours"])[
        ["site_id", "period", "regular_hours", "overtime_hours", "temp_hours"]]


def _transfers_table(transfer: pd.DataFrame, trucks: pd.DataFrame, vol: pd.Series, wt: pd.Series,
                     p: dict[str, Any]) -> pd.DataFrame:
    """Rows per lane, product and period; the lane-period's integer trucks shared in proportion to the load.

    A row's load is ``max(units vol / cap_m3, units kg / cap_kg)`` truck-equivalents; its ``trucks`` is its
    share of the lane-period's load times the lane-period's trucks (so they sum to the integer count).
    """
    cols = ["origin_id", "destination_id", "product_id", "quantity", "trucks", "transit_days", "period"]
    if transfer.empty:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
    t = transfer.copy()
    t["load"] = np.maximum(t["quantity"] * t["product"].map(vol).astype(float) / p["truck_capacity_m3"],
                           t["quantity"] * t["product"].map(wt).astype(float) / p["truck_capacity_kg"])
    key = ["origin", "destination", "period"]
    t = t.merge(trucks, on=key, how="left").fillna({"trucks": 0})
    t["trucks"] = t["trucks"] * t["load"] / t.groupby(key)["load"].transform("sum")
    t = t.rename(columns={"origin": "origin_id", "destination": "destination_id", "product": "product_id"})
    return round_values(t[cols], ["quantity", "trucks"])


def _truckloads(transfer: pd.DataFrame, trucks: pd.DataFrame, vol: pd.Series, wt: pd.Series) -> pd.DataFrame:
    """Integer trucks per lane and dispatch period with the volume and weight they carry."""
    key = ["origin", "destination", "period"]
    load = transfer.assign(volume_m3=transfer["quantity"] * transfer["product"].map(vol).astype(float),
                           weight_kg=transfer["quantity"] * transfer["product"].map(wt).astype(float))
    load = load.groupby(key, as_index=False)[["volume_m3", "weight_kg"]].sum()
    out = trucks.merge(load, on=key, how="outer").fillna({"trucks": 0, "volume_m3": 0.0, "weight_kg": 0.0})
    out["trucks"] = out["trucks"].astype(int)
    out = out.rename(columns={"origin": "origin_id", "destination": "destination_id"})
    out["period"] = out["period"].astype(int)
    return round_values(out, ["volume_m3", "weight_kg"])


def _flows_table(deliver: pd.DataFrame, receive: pd.DataFrame) -> pd.DataFrame:
    parts = [
        receive.rename(columns={"source": "origin_id", "dc": "destination_id"}).assign(leg="inbound"),
        deliver.rename(columns={"dc": "origin_id", "zone": "destination_id"}).assign(leg="outbound"),
    ]  # transfers are listed in the transfers table only (the checker adds them to the flows)
    cols = ["origin_id", "destination_id", "product_id", "period", "quantity", "leg"]
    flows = pd.concat([f.rename(columns={"product": "product_id"})[cols] for f in parts], ignore_index=True)
    return round_values(flows, ["quantity"])


def _throughput_table(data: RedistributionData, deliver: pd.DataFrame, receive: pd.DataFrame,
                      transfer: pd.DataFrame) -> pd.DataFrame:
    """Units received (in the arrival period) and shipped (zones + transfers) per DC and period."""
    def arrived(frame: pd.DataFrame, to: str) -> pd.DataFrame:
        lag = np.floor(frame["transit_days"] / data.period_days + 1e-9).astype(int)
        return pd.DataFrame({"site_id": frame[to], "period": frame["period"] + lag, "units": frame["quantity"]})

    inbound = pd.concat([arrived(receive, "dc"), arrived(transfer, "destination")], ignore_index=True)
    outbound = pd.concat([deliver[["dc", "period", "quantity"]].rename(columns={"dc": "site_id"}),
                          transfer[["origin", "period", "quantity"]].rename(columns={"origin": "site_id"})],
                         ignore_index=True)
    grid = pd.MultiIndex.from_product([data.dcs, data.periods], names=["site_id", "period"])
    out = pd.DataFrame({
        "inbound_units": inbound.groupby(["site_id", "period"])["units"].sum().reindex(grid, fill_value=0.0),
        "outbound_units": outbound.groupby(["site_id", "period"])["quantity"].sum().reindex(grid, fill_value=0.0),
    }).reset_index()
    return round_values(out, ["inbound_units", "outbound_units"])


def _assignment_table(deliver: pd.DataFrame) -> pd.DataFrame:
    a = deliver.groupby(["zone", "dc", "period"], as_index=False)["quantity"].sum()
    a["share"] = a["quantity"] / a.groupby(["zone", "period"])["quantity"].transform("sum")
    a = a.rename(columns={"zone": "zone_id", "dc": "site_id"})
    return round_values(a[["zone_id", "site_id", "period", "quantity", "share"]], ["quantity", "share"])


def _service_table(data: RedistributionData, deliver: pd.DataFrame, backlog: pd.DataFrame) -> pd.DataFrame:
    """Demand-weighted transit and the share of demand delivered on time.

    A unit is on time when it is delivered in its demand period (deliveries serve the oldest backlog first)
    over a lane no slower than ``service_days``: per zone, product and period
    ``on_time = clip(served - backlog[t-1], 0, demand) * fast / served``.
    """
    dem = data.demand.to_series().rename("demand")
    key = ["zone", "product", "period"]
    d = deliver.assign(fast=np.where(deliver["transit_days"] <= data.params["service_days"] + 1e-9,
                                     deliver["quantity"], 0.0))
    served = d.groupby(key)[["quantity", "fast"]].sum().reindex(dem.index, fill_value=0.0)
    prev = backlog.assign(period=backlog["period"] + 1).groupby(key)["quantity"].sum()
    prev = prev.reindex(dem.index, fill_value=0.0)
    fresh = (served["quantity"] - prev).clip(lower=0.0).clip(upper=dem)
    on_time = fresh * (served["fast"] / served["quantity"].where(served["quantity"] > 0, np.inf))
    zone_demand = dem.groupby(level="zone").sum()
    zone_on_time = on_time.groupby(level="zone").sum()
    weights = d.groupby("zone")["quantity"].sum()
    avg_transit = (d["quantity"] * d["transit_days"]).groupby(d["zone"]).sum() / weights
    avg_km = (d["quantity"] * d["distance_km"]).groupby(d["zone"]).sum() / weights
    out = pd.DataFrame({
        "zone_id": data.zones,
        "demand": zone_demand.reindex(data.zones).to_numpy(),
        "avg_transit_days": avg_transit.reindex(data.zones).to_numpy(),
        "avg_distance_km": avg_km.reindex(data.zones).to_numpy(),
        "within_sla_share": (zone_on_time / zone_demand.where(zone_demand > 0)).reindex(data.zones).to_numpy(),
    })
    return round_values(out, ["demand", "avg_transit_days", "avg_distance_km", "within_sla_share"])


def _costs_table(data: RedistributionData, deliver: pd.DataFrame, receive: pd.DataFrame, transfer: pd.DataFrame,
                 trucks: pd.DataFrame, labor: pd.DataFrame, lost: pd.DataFrame, late_unit_days: float) -> pd.DataFrame:
    """Horizon cost by component, recomputed from the plan tables (sums to the objective)."""
    p = data.params
    rate = data.labor["hourly_rate"] if not data.labor.empty else pd.Series(dtype=float)
    ot_rate = data.labor["overtime_rate"] if not data.labor.empty else pd.Series(dtype=float)
    rows = {
        "transport_outbound": float((deliver["quantity"] * deliver["cost_per_unit"]).sum()),
        "transport_inbound": float((receive["quantity"] * receive["cost_per_unit"]).sum()),
        "transfer_units": float((transfer["quantity"] * transfer["cost_per_unit"]).sum()),
        "transfer_trucks": float(trucks["trucks"].sum() * p["truck_fixed_cost"]),
        "handling": float((deliver["quantity"].sum() + transfer["quantity"].sum()) * p["handling_cost_per_unit"]),
        "labor_regular": float((labor["regular_hours"] * labor["site_id"].map(rate).fillna(0.0)).sum()),
        "labor_overtime": float((labor["overtime_hours"] * labor["site_id"].map(ot_rate).fillna(0.0)).sum()),
        "lost_sales": float(lost["quantity"].sum() * p["lost_sales_penalty"]),
        "late_delivery": float(late_unit_days * p["late_penalty_per_unit_day"]),
    }
    return round_values(pd.DataFrame({"component": list(rows), "amount": list(rows.values())}), ["amount"])


# -------------------------------------------------------------------------------------------------
# Comparison with the baseline
# -------------------------------------------------------------------------------------------------
TRANSPORT_COMPONENTS = ("transport_outbound", "transport_inbound", "transfer_units", "transfer_trucks")


def redistribution_metrics(plan: Plan) -> dict[str, float]:
    """System-wide figures of a redistribution plan, from its tables."""
    service = plan.tables["service"]
    demand = float(pd.to_numeric(service["demand"]).sum())
    lost = float(pd.to_numeric(plan.tables["unmet"]["quantity"]).sum())
    labor = plan.tables["labor"]
    on_time = float((pd.to_numeric(service["within_sla_share"]).fillna(0.0) * pd.to_numeric(service["demand"])).sum())
    return {
        "total_cost": plan.cost(),
        "transport_cost": sum(plan.cost(c) for c in TRANSPORT_COMPONENTS),
        "labor_hours": float(pd.to_numeric(labor["regular_hours"]).sum()
                             + pd.to_numeric(labor["overtime_hours"]).sum()),
        "labor_cost": plan.cost("labor_regular") + plan.cost("labor_overtime"),
        "lost_units": lost,
        "fill_rate": 1.0 - lost / demand if demand > 0 else 1.0,
        "within_sla_share": on_time / demand if demand > 0 else 1.0,
        "late_unit_days": float(plan.meta.get("late_unit_days", 0.0)),
        "transfer_trucks": float(sum(r["trucks"] for r in plan.meta.get("truckloads", []))),
    }


def redistribution_deltas(baseline: Plan, disrupted: Plan) -> dict[str, dict[str, float]]:
    """``{metric: {baseline, disrupted, delta}}`` for every :func:`redistribution_metrics` figure."""
    if not (baseline.has_solution and disrupted.has_solution):
        return {}
    b, d = redistribution_metrics(baseline), redistribution_metrics(disrupted)
    return {k: {"baseline": round(b[k], 6), "disrupted": round(d[k], 6), "delta": round(d[k] - b[k], 6)} for k in b}


def site_deltas(baseline: Plan, disrupted: Plan) -> pd.DataFrame:
    """Labour hours and units shipped per site: baseline, disrupted and the difference."""
    def per_site(plan: Plan) -> pd.DataFrame:
        lab = plan.tables["labor"]
        hours = (pd.to_numeric(lab["regular_hours"]) + pd.to_numeric(lab["overtime_hours"])).groupby(
            lab["site_id"]).sum()
        thr = plan.tables["site_throughput"]
        shipped = pd.to_numeric(thr["outbound_units"]).groupby(thr["site_id"]).sum()
        return pd.DataFrame({"labor_hours": hours, "outbound_units": shipped})

    b, d = per_site(baseline), per_site(disrupted)
    sites = b.index.union(d.index)
    b, d = b.reindex(sites, fill_value=0.0), d.reindex(sites, fill_value=0.0)
    out = pd.DataFrame({"site_id": sites})
    for col in ("labor_hours", "outbound_units"):
        out[f"{col}_baseline"] = b[col].to_numpy()
        out[f"{col}_disrupted"] = d[col].to_numpy()
        out[f"{col}_delta"] = (d[col] - b[col]).to_numpy()
    return round_values(out, [c for c in out.columns if c != "site_id"])
