"""Inventory redistribution after a disruption: truckload transfers between DCs and zone re-assignment.

A disruption is expressed by the instance itself (a port's supply set to zero, sites or lanes removed,
capacities scaled); :func:`solve` plans the next days or weeks on it and, given the
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
              received[d,t], shipped[d,t] >= 0   units a DC receives (arrivals) and ships (zones + transfers)
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

Build: every flow variable lives on a sparse set of arcs (one row per lane, product and period that can
carry flow, :class:`formulations.common.Arcs`), and every constraint family is written straight from term
arrays (:func:`formulations.common.add_rows`), never through dense site x zone x product x period arrays.

Exact reductions (the optimum is unchanged; each is stated where it is made):

- deliveries, lost sales and backlog of a zone and product before its first period with demand are zero
  (the demand row of such a period reads ``deliver + backlog + lost = backlog[t-1] = 0``): not created;
- backlog in the last period is zero (backlog left at the end is lost): not created;
- a port or transfer shipment that would arrive after the horizon only costs (its arrival is outside
  every balance): not created, nor is a truck variable for a lane and period without transfers;
- a delivery whose unit cost (lane + handling + late penalty) is at least the lost-sales penalty is
  dominated by losing that unit (same demand row, less stock, capacity and labour used): not created;
- the inbound stages (inbound dock, putaway) are loaded by the same received units and the outbound ones
  (pick, pack, outbound dock) by the same shipped units, so only the smallest capacity of each side binds:
  one row per side instead of one per stage.

Solve: a large model (:data:`RELAX_ROUND_MIN_COLUMNS`) is first solved as its LP relaxation with the truck
counts rounded up (:func:`relax_and_round`): trucks appear only in the truck rows, so the rounded solution is
feasible and its cost exceeds the LP bound by at most the rounding; when that is within ``mip_gap`` it is the
answer (port_closure_la: 0.12 % in one LP), otherwise the MILP runs from it as a MIP start.

Warm start: ``solve(..., warm_start=plan)`` with a previous :class:`Plan` (e.g. the
repair loop's previous round) or :class:`solvers.SolveResult` of the same instance; a Plan is turned into
a complete start (trucks, flows, lost sales, and the stock, backlog, throughput and labour they imply),
matched to this model's arcs by lane, product and period. It is passed to the solver only when it is feasible
here (:func:`formulations.common.start_violation`; ``plan.meta["warm_start"]`` says why not): repairing an
infeasible start costs HiGHS an extra LP as large as the root LP. A plan solved on the very same model
(``meta["model_fingerprint"]``, e.g. a repair round that changed nothing) is reused without a solve.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import linopy
import numpy as np
import pandas as pd
import xarray as xr

import solvers
from formulations.common import (
    EPS,
    Arcs,
    add_arc_variables,
    add_rows,
    add_throughput,
    dense_values,
    derate_series,
    grid_codes,
    grouped_terms,
    has_members,
    objective_from_terms,
    round_values,
    start_plan,
    start_violation,
)
from instances.instance import Instance, cheapest_lanes
from instances.plan import PLAN_TABLES, Plan
from instances.schema import FLOW_STAGES, INBOUND_STAGES
from solvers.fingerprint import data_fingerprint

DECISION = "redistribution"


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
    labour_floor : ``{(site, period): hours}`` -- at least this many labour hours (regular + overtime) at a DC in
        a period (the repair loop's lever for work carried over from the period before beyond what
        ``carry_share`` foresees).
    carry_share : DataFrame ``site_id, stage, carry_share[, deadline_share]`` -- the share of a period's work
        that has not yet passed a stage (waiting at it or at a stage before it in its chain) when the next period
        starts, and the share of a period's staffed hours before that carried work's SLA deadline (default 1)
        (the simulator's :func:`engine.simulator.carry_shares`). With it, a period's labour also covers the
        work carried in from the period before and a stage's equipment the work it actually processes in the
        period (see
        :func:`add_stage_capacity`, :func:`add_labor_capacity`); None: a period's work is done within it.
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
    labour_floor: Mapping[tuple[str, int], float] | None = None
    carry_share: pd.DataFrame | None = None

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


Options = RedistributionOptions
"""The options of this formulation under the protocol's name (:mod:`formulations.protocol`)."""


def plan_instance(instance: Instance, options: RedistributionOptions | None = None) -> Instance:
    """The instance a redistribution plan is expressed on: the (disrupted) instance itself."""
    return instance


# -------------------------------------------------------------------------------------------------
# Table helpers (shared with formulations.capacity)
# -------------------------------------------------------------------------------------------------
def _lanes_between(lanes: pd.DataFrame, origins: pd.Index, destinations: pd.Index) -> pd.DataFrame:
    """Lanes from ``origins`` to ``destinations`` with float ``capacity`` (NaN = unlimited) and ``distance_km``."""
    ok = lanes["origin_id"].isin(origins) & lanes["destination_id"].isin(destinations)
    out = lanes.loc[ok, ["origin_id", "destination_id", "cost_per_unit", "transit_days", "capacity",
                         "distance_km"]].reset_index(drop=True)
    return out.assign(capacity=out["capacity"].astype(float), distance_km=out["distance_km"].astype(float).fillna(0.0),
                      cost_per_unit=out["cost_per_unit"].astype(float), transit_days=out["transit_days"].astype(float))


def _with_periods(frame: pd.DataFrame, periods: pd.Index) -> pd.DataFrame:
    """Every row of ``frame`` once per period (column ``period``), rows varying fastest by period."""
    n = len(periods)
    out = frame.loc[frame.index.repeat(n)].reset_index(drop=True)
    out["period"] = np.tile(periods.to_numpy(), len(frame))
    return out


# -------------------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------------------
@dataclass
class RedistributionData:
    """Index sets, sparse arcs and parameters of one redistribution instance (read by every ``add_*``)."""

    dcs: pd.Index
    sources: pd.Index
    zones: pd.Index
    products: pd.Index
    periods: pd.Index
    period_days: float
    params: dict[str, Any]
    demand: pd.Series  # units by (zone, product, period), every cell of the grid
    cells: pd.DataFrame  # demand cells of the model: zone, product, period, quantity (see the reductions)
    on_hand: np.ndarray  # (dc, product) units at the start
    volume: np.ndarray  # per product, m3/unit
    weight: np.ndarray  # per product, kg/unit
    deliver: pd.DataFrame  # arcs: dc, zone, product, period, lane, cost_per_unit, transit_days, distance_km, unit_cost
    receive: pd.DataFrame  # arcs: source, dc, product, period, lane, cost_per_unit, transit_days, arrival, supply_row
    transfer: pd.DataFrame  # arcs: origin, destination, product, period, lane, cost, transit, arrival, truck
    trucks: pd.DataFrame  # truck rows: origin, destination, period
    supply: pd.DataFrame  # source, product, period, capacity (rows some port arc draws on)
    lanes: dict[str, pd.DataFrame]  # "deliver" / "receive" / "transfer": the lanes the arcs run on
    stage_limit: pd.DataFrame  # dc, side (inbound / outbound), units_per_day (smallest stage capacity, derated)
    carry: pd.DataFrame  # dc, stage, side, units_per_day (derated), carry_share, deadline_share
    labor: pd.DataFrame  # indexed by site_id (DCs with a labor row)
    sites: pd.DataFrame  # all sites (for the plan's sites table)
    truck_upper: float
    variables: dict[str, linopy.Variable | None] = field(default_factory=dict)



def _lag(transit_days: pd.Series, period_days: float) -> np.ndarray:
    """Periods between dispatch and arrival: ``floor(transit_days / Δ)``."""
    return np.floor(transit_days.to_numpy(dtype=float) / period_days + 1e-9).astype(int)


def prepare(instance: Instance, options: RedistributionOptions | None = None) -> RedistributionData:
    """Select the horizon, DCs and lanes; build the sparse arcs (with the exact reductions of the module doc).

    The options are resolved against the instance defaults (:meth:`RedistributionOptions.resolved`) and kept
    as ``data.params``.
    """
    params = (options or RedistributionOptions()).resolved(instance)
    per = instance.periods
    if params["horizon_periods"] is not None:
        per = per[per["period"] <= int(params["horizon_periods"])]
    periods = pd.Index(per["period"].astype(int).to_numpy(), name="period")
    period_days = float(per["days"].iloc[0])
    last = int(periods[-1])
    dc_rows = instance.dcs
    dc_rows = dc_rows[(dc_rows["status"] == "existing") & ~dc_rows["id"].isin(params["closed_sites"])]
    dcs = pd.Index(dc_rows["id"].to_numpy(), name="dc")
    sources = pd.Index(instance.sources["id"].to_numpy(), name="source")
    zones = pd.Index(instance.zones["id"].to_numpy(), name="zone")
    products = pd.Index(instance.products["id"].to_numpy(), name="product")
    if dcs.empty:
        raise ValueError("redistribution needs at least one open existing DC (sites.csv: kind dc, status existing)")
    p = params

    # demand on the (zone, product, period) grid; cells from each pair's first period with demand
    grid = {"zone_id": zones, "product_id": products, "period": periods}
    shape = (len(zones), len(products), len(periods))
    dem = np.zeros(int(np.prod(shape)))
    pos = grid_codes(instance.demand, grid)
    np.add.at(dem, pos[pos >= 0], instance.demand["quantity"].to_numpy(dtype=float)[pos >= 0])
    demand = pd.Series(dem, index=pd.MultiIndex.from_product([zones, products, periods],
                                                             names=["zone", "product", "period"]))
    started = (np.cumsum(dem.reshape(shape) > 0, axis=2) > 0).ravel()
    flat = np.flatnonzero(started)
    zi, pi, ti = np.unravel_index(flat, shape)
    cells = pd.DataFrame({"zone": zones.to_numpy()[zi], "product": products.to_numpy()[pi],
                          "period": periods.to_numpy()[ti], "quantity": dem[flat], "grid": flat})

    on_hand = np.zeros(len(dcs) * len(products))
    inv = instance.inventory
    pos = grid_codes(inv, {"site_id": dcs, "product_id": products})
    np.add.at(on_hand, pos[pos >= 0], inv["on_hand"].to_numpy(dtype=float)[pos >= 0])
    on_hand = on_hand.reshape(len(dcs), len(products))
    prod = instance.products.set_index("id")
    volume = prod["unit_volume_m3"].reindex(products).to_numpy(dtype=float)
    weight = prod["unit_weight_kg"].reindex(products).to_numpy(dtype=float)

    lanes = cheapest_lanes(instance.lanes)

    # deliveries: lanes x demand cells of the lane's zone, dominated arcs dropped
    out_lanes = _lanes_between(lanes, dcs, zones)
    out_lanes["lane"] = np.arange(len(out_lanes))
    deliver = cells[["zone", "product", "period"]].reset_index().rename(columns={"index": "cell"}).merge(
        out_lanes.rename(columns={"origin_id": "dc", "destination_id": "zone"}), on="zone", how="inner")
    late = (deliver["transit_days"] - p["service_days"]).clip(lower=0.0)
    deliver["unit_cost"] = (deliver["cost_per_unit"] + p["handling_cost_per_unit"]
                            + p["late_penalty_per_unit_day"] * late)
    deliver = deliver[deliver["unit_cost"] < p["lost_sales_penalty"]]
    deliver = deliver.sort_values(["lane", "product", "period"], kind="stable").reset_index(drop=True)

    # port supply: lanes x supply rows of the lane's port, arriving within the horizon
    sup = instance.supply
    sup = sup[sup["site_id"].isin(sources) & sup["product_id"].isin(products) & sup["period"].isin(periods)]
    sup = sup.groupby(["site_id", "product_id", "period"], as_index=False, sort=False)["capacity"].sum()
    total_supply = np.zeros(len(products))
    np.add.at(total_supply, products.get_indexer(sup["product_id"]), sup["capacity"].to_numpy(dtype=float))
    sup = sup[sup["capacity"] > 0].reset_index(drop=True)
    in_lanes = _lanes_between(lanes, sources, dcs)
    in_lanes["lane"] = np.arange(len(in_lanes))
    supply = sup.rename(columns={"site_id": "source", "product_id": "product"}).reset_index(drop=True)
    receive = supply.reset_index().rename(columns={"index": "supply_row"}).drop(columns="capacity").merge(
        in_lanes.rename(columns={"origin_id": "source", "destination_id": "dc"}), on="source", how="inner")
    receive = receive.sort_values(["lane", "product", "period"], kind="stable").reset_index(drop=True)

    # transfers: DC -> DC lanes x products that exist somewhere x periods, arriving within the horizon
    tr_lanes = _lanes_between(lanes, dcs, dcs)
    tr_lanes = tr_lanes[tr_lanes["origin_id"] != tr_lanes["destination_id"]]
    if p["max_transit_days"] is not None:
        tr_lanes = tr_lanes[tr_lanes["transit_days"] <= float(p["max_transit_days"])]
    if not p["allow_transfers"]:
        tr_lanes = tr_lanes.iloc[0:0]
    tr_lanes = tr_lanes.reset_index(drop=True).assign(lane=lambda d: np.arange(len(d)))
    movable = products[(on_hand.sum(axis=0) + total_supply) > 0]
    pairs = tr_lanes.rename(columns={"origin_id": "origin", "destination_id": "destination"}).merge(
        pd.DataFrame({"product": movable}), how="cross")
    transfer = _with_periods(pairs, periods)
    if p["transfer_cost_per_unit"] is not None:
        transfer["cost_per_unit"] = float(p["transfer_cost_per_unit"])
    receive["arrival"] = receive["period"] + _lag(receive["transit_days"], period_days)
    receive = receive[receive["arrival"] <= last].reset_index(drop=True)
    transfer["arrival"] = transfer["period"] + _lag(transfer["transit_days"], period_days)
    transfer = transfer[transfer["arrival"] <= last].reset_index(drop=True)
    key = ["origin", "destination", "period"]
    trucks = transfer[key].drop_duplicates().reset_index(drop=True)
    transfer["truck"] = pd.MultiIndex.from_frame(trucks).get_indexer(pd.MultiIndex.from_frame(transfer[key])) \
        if len(transfer) else np.zeros(0, dtype=np.int64)
    total = on_hand.sum(axis=0) + total_supply
    truck_upper = float(math.ceil(max((total * volume).sum() / p["truck_capacity_m3"],
                                      (total * weight).sum() / p["truck_capacity_kg"])) + 1)

    # stage limits: the smallest (derated) capacity of each side; a DC without resources processes nothing
    cap = instance.stage_capacity()
    cap = cap.assign(units_per_day=cap["units_per_day"] * derate_series(p["capacity_derate"], cap))
    has_resources = dcs.isin(cap["site_id"])
    cap = cap[cap["site_id"].isin(dcs)].groupby(["site_id", "stage"], as_index=False)["units_per_day"].sum()
    cap["side"] = np.where(cap["stage"].isin(INBOUND_STAGES), "inbound", "outbound")
    limit = cap.groupby(["site_id", "side"], as_index=False)["units_per_day"].min()
    bare = pd.DataFrame([(d, s, 0.0) for d in dcs[~has_resources] for s in ("inbound", "outbound")],
                        columns=["site_id", "side", "units_per_day"])
    stage_limit = pd.concat([limit, bare], ignore_index=True).rename(columns={"site_id": "dc"})
    carry = cap.rename(columns={"site_id": "dc"}).assign(carry_share=0.0, deadline_share=1.0)
    shares = p["carry_share"]
    if shares is not None and len(shares):
        keyed = shares.set_index(["site_id", "stage"])
        at = pd.MultiIndex.from_frame(carry[["dc", "stage"]])
        carry["carry_share"] = keyed["carry_share"].reindex(at).fillna(0.0).clip(0.0, 1.0).to_numpy(dtype=float)
        if "deadline_share" in keyed:
            carry["deadline_share"] = keyed["deadline_share"].reindex(at).fillna(1.0).clip(1e-3, 1.0).to_numpy(
                dtype=float)

    labor = instance.labor.set_index("site_id")
    return RedistributionData(
        dcs=dcs, sources=sources, zones=zones, products=products, periods=periods, period_days=period_days,
        params=params, demand=demand, cells=cells, on_hand=on_hand, volume=volume, weight=weight,
        deliver=deliver, receive=receive, transfer=transfer, trucks=trucks, supply=supply,
        lanes={"deliver": out_lanes, "receive": in_lanes, "transfer": tr_lanes}, stage_limit=stage_limit,
        carry=carry,
        labor=labor[labor.index.isin(dcs)], sites=instance.sites, truck_upper=truck_upper)


# -------------------------------------------------------------------------------------------------
# Variables and constraint families
# -------------------------------------------------------------------------------------------------
def _labels(var: linopy.Variable | None) -> np.ndarray:
    """Flat labels of a variable (an empty array for an absent one)."""
    return np.zeros(0, dtype=np.int64) if var is None else np.asarray(var.labels.values).ravel()


def _arc_variable(m: linopy.Model, name: str, frame: pd.DataFrame, integer: bool = False,
                  upper: float = np.inf) -> linopy.Variable | None:
    """A flat variable over the rows of ``frame`` (None when there are none)."""
    if frame.empty:
        return None
    return add_arc_variables(m, name, Arcs(name, frame), upper=upper, integer=integer)


def define_variables(m: linopy.Model, data: RedistributionData) -> None:
    """Create every decision variable over its sparse rows (see the module docstring for the reductions)."""
    v = data.variables
    v["deliver"] = _arc_variable(m, "deliver", data.deliver)
    v["receive"] = _arc_variable(m, "receive", data.receive)
    v["transfer"] = _arc_variable(m, "transfer", data.transfer)
    v["trucks"] = _arc_variable(m, "trucks", data.trucks, integer=True, upper=data.truck_upper)
    v["stock"] = m.add_variables(lower=0.0, coords=[data.dcs, data.products, data.periods], name="stock")
    v["lost"] = _arc_variable(m, "lost", data.cells)
    carried = data.cells[data.cells["period"] < data.periods[-1]] if data.params["allow_late"] else data.cells.iloc[:0]
    v["backlog"] = _arc_variable(m, "backlog", carried.reset_index().rename(columns={"index": "cell"}))
    v["received"] = add_throughput(m, _dc_ends(data, ARRIVING), data.dcs, data.periods, name="received")
    v["shipped"] = add_throughput(m, _dc_ends(data, LEAVING), data.dcs, data.periods, name="shipped")
    lab = data.labor
    if lab.empty:
        v["regular"] = v["overtime"] = None
        return
    coords = [pd.Index(lab.index.to_numpy(), name="labor_site"), data.periods]
    share = data.period_days / 7.0
    n_t = len(data.periods)
    regular_cap = (lab["max_headcount"] * lab["hours_per_person_week"]).to_numpy(dtype=float) * share
    overtime_cap = lab["max_overtime_hours"].to_numpy(dtype=float) * share
    for name, cap in (("regular", regular_cap), ("overtime", overtime_cap)):
        ub = np.repeat(cap[:, None], n_t, axis=1)
        v[name] = m.add_variables(lower=0.0, upper=xr.DataArray(ub, coords=coords), coords=coords, name=name)


def _dp_codes(data: RedistributionData, site: pd.Series, period: np.ndarray | pd.Series) -> np.ndarray:
    """Cell of each row on the (dc, period) grid (-1 off the grid)."""
    return grid_codes(pd.DataFrame({"s": np.asarray(site), "t": np.asarray(period)}),
                      {"s": data.dcs, "t": data.periods})


ARRIVING = (("receive", "dc", "arrival"), ("transfer", "destination", "arrival"))
"""Arcs that bring units into a DC: (variable, DC column, period column) — counted in the arrival period."""
LEAVING = (("deliver", "dc", "period"), ("transfer", "origin", "period"))
"""Arcs that take units out of a DC, counted in the dispatch period."""


def _dc_ends(data: RedistributionData, ends: tuple[tuple[str, str, str], ...]
             ) -> list[tuple[linopy.Variable, np.ndarray]]:
    """(variable, (dc, period) cell of each arc) for the arcs ``ends`` lists (ARRIVING or LEAVING)."""
    out = []
    for name, site, when in ends:
        frame = getattr(data, name)
        if data.variables.get(name) is not None:
            out.append((data.variables[name], _dp_codes(data, frame[site], frame[when])))
    return out


def add_supply_limits(m: linopy.Model, data: RedistributionData) -> None:
    """Ports ship at most their supply: ``sum_d receive[s,d,p,t] <= supply[s,p,t]``."""
    var = data.variables["receive"]
    if var is None:
        return
    n = len(data.supply)
    group = data.receive["supply_row"].to_numpy()
    add_rows(m, "supply_limit", {"supply_row": pd.RangeIndex(n, name="supply_row")},
             [grouped_terms(_labels(var), group, n)], "<=", data.supply["capacity"].to_numpy(dtype=float),
             mask=has_members(group, n))


def add_inventory_balance(m: linopy.Model, data: RedistributionData) -> None:
    """Stock flow per DC, product and period.

    ``stock[d,p,t] = stock[d,p,t-1] + arrivals[d,p,t] - sum_z deliver[d,z,p,t] - sum_e transfer[d,e,p,t]``
    with ``stock[d,p,0] = on_hand[d,p]`` (inventory.csv).
    """
    keys = {"s": data.dcs, "p": data.products, "t": data.periods}
    coords = {"dc": data.dcs, "product": data.products, "period": data.periods}
    n = len(data.dcs) * len(data.products) * len(data.periods)
    stock = np.asarray(data.variables["stock"].labels.values)
    previous = np.full_like(stock, -1)
    previous[:, :, 1:] = stock[:, :, :-1]
    terms = [(stock, 1.0), (previous, -1.0)]
    v = data.variables
    for (name, site, when), sign in [(end, -1.0) for end in ARRIVING] + [(end, 1.0) for end in LEAVING]:
        frame = getattr(data, name)
        if v[name] is None:
            continue
        group = grid_codes(pd.DataFrame({"s": frame[site], "p": frame["product"], "t": frame[when]}), keys)
        terms.append(grouped_terms(_labels(v[name]), group, n, sign))
    initial = np.zeros(stock.shape)
    initial[:, :, 0] = data.on_hand
    add_rows(m, "inventory_balance", coords, terms, "=", initial)


def add_demand_balance(m: linopy.Model, data: RedistributionData) -> None:
    """Every unit of demand is delivered, carried (late) or lost.

    ``sum_d deliver[d,z,p,t] + backlog[z,p,t] + lost[z,p,t] = demand[z,p,t] + backlog[z,p,t-1]``
    (``backlog`` is zero in the last period, and everywhere when late delivery is not allowed).
    """
    cells = data.cells
    n = len(cells)
    if n == 0:
        return
    v = data.variables
    terms = [(_labels(v["lost"]), 1.0)]
    if v["deliver"] is not None:
        terms.append(grouped_terms(_labels(v["deliver"]), data.deliver["cell"].to_numpy(), n))
    if v["backlog"] is not None:
        carried = cells["period"].to_numpy() < data.periods[-1]
        backlog = np.full(n, -1, dtype=np.int64)
        backlog[carried] = _labels(v["backlog"])
        # the previous period's cell of the same zone and product (cells of a pair are consecutive periods)
        previous = np.full(n, -1, dtype=np.int64)
        same = np.r_[False, (cells["zone"].to_numpy()[1:] == cells["zone"].to_numpy()[:-1])
                     & (cells["product"].to_numpy()[1:] == cells["product"].to_numpy()[:-1])]
        previous[same] = backlog[np.flatnonzero(same) - 1]
        terms += [(backlog, 1.0), (previous, -1.0)]
    add_rows(m, "demand_balance", {"cell": pd.RangeIndex(n, name="cell")}, terms, "=",
             cells["quantity"].to_numpy(dtype=float))


def add_truck_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Transfers travel in whole trucks, limited by volume and by weight.

    ``sum_p vol_p transfer[o,e,p,t] <= cap_m3 trucks[o,e,t]``,
    ``sum_p kg_p transfer[o,e,p,t] <= cap_kg trucks[o,e,t]``.
    """
    v = data.variables
    if v["trucks"] is None:
        return
    n = len(data.trucks)
    idx = pd.RangeIndex(n, name="truck")
    group = data.transfer["truck"].to_numpy()
    prod = data.products.get_indexer(data.transfer["product"])
    p = data.params
    for name, per_unit, cap in (("truck_volume", data.volume, p["truck_capacity_m3"]),
                                ("truck_weight", data.weight, p["truck_capacity_kg"])):
        add_rows(m, name, {"truck": idx}, [grouped_terms(_labels(v["transfer"]), group, n, per_unit[prod]),
                                           (_labels(v["trucks"]), -cap)], "<=", 0.0)


def add_lane_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Lanes with a capacity carry at most that many units per period: ``sum_p flow[o,e,p,t] <= cap[o,e]``."""
    for name in ("deliver", "receive", "transfer"):
        var, frame, lanes = data.variables[name], getattr(data, name), data.lanes[name]
        finite = lanes[lanes["capacity"].notna()]
        if var is None or finite.empty:
            continue
        idx = pd.Index(finite["lane"].to_numpy(), name=f"{name}_lane")
        group = grid_codes(frame, {"lane": idx, "period": data.periods})
        n = len(idx) * len(data.periods)
        cap = np.repeat(finite["capacity"].to_numpy(dtype=float)[:, None], len(data.periods), axis=1)
        add_rows(m, f"lane_capacity_{name}", {idx.name: idx, "period": data.periods},
                 [grouped_terms(_labels(var), group, n)], "<=", cap, mask=has_members(group, n))


def _carries(data: RedistributionData) -> bool:
    """Does the model carry work from one period into the next (``carry_share`` given and positive)?"""
    return bool((data.carry["carry_share"] > 0).any())


def _previous_period(labels: np.ndarray) -> np.ndarray:
    """Labels of the same (dc, ...) cell one period earlier (last axis = period); -1 in the first period."""
    out = np.full_like(labels, -1)
    out[..., 1:] = labels[..., :-1]
    return out


def add_stage_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Equipment limits per DC and period: ``received[d,t] <= min_inbound cap[d,stage] * Δ`` and
    ``shipped[d,t] <= min_outbound cap[d,stage] * Δ`` (units/day x days; see the reductions).

    With carried-over work (``carry_share``), one row per DC, stage and period on the units the stage
    processes in the period: what arrived and was not carried out, plus what the period before carried in,
    ``(1 - β_k) A[d,t] + β_k A[d,t-1] <= cap[d,k] * Δ`` with ``A`` = received (inbound stages) or shipped
    (outbound stages) and ``β_k`` the share of a period's work that has not passed stage k when the next
    period starts (``carry_share``); ``A[d,0] = 0`` (queues start empty, as in the simulator).
    """
    if _carries(data):
        c = data.carry
        idx = pd.RangeIndex(len(c), name="carry_row")
        current = np.stack([np.asarray(data.variables["received" if side == "inbound" else "shipped"]
                                       .labels.values)[data.dcs.get_loc(dc)] for dc, side in zip(c["dc"], c["side"])])
        beta = np.repeat(c["carry_share"].to_numpy(dtype=float)[:, None], len(data.periods), axis=1)
        rhs = np.repeat(c["units_per_day"].to_numpy(dtype=float)[:, None] * data.period_days, len(data.periods),
                        axis=1)
        add_rows(m, "stage_capacity_carried", {idx.name: idx, "period": data.periods},
                 [(current, 1.0 - beta), (_previous_period(current), beta)], "<=", rhs)
    for side, var in (("inbound", "received"), ("outbound", "shipped")):
        lim = data.stage_limit[data.stage_limit["side"] == side]
        if _carries(data):  # the rows above replace the side rows of DCs with resources
            lim = lim[~lim["dc"].isin(data.carry["dc"])]
        if lim.empty:
            continue
        rows = pd.Index(lim["dc"].to_numpy(), name=f"{side}_limited_dc")
        labels = np.asarray(data.variables[var].labels.values)[data.dcs.get_indexer(rows)]
        rhs = np.repeat(lim["units_per_day"].to_numpy(dtype=float)[:, None] * data.period_days, len(data.periods),
                        axis=1)
        add_rows(m, f"stage_capacity_{side}", {rows.name: rows, "period": data.periods}, [(labels, 1.0)], "<=", rhs)


def _hours_per_unit(labor: pd.DataFrame, stages: list[str]) -> np.ndarray:
    """Labour hours per unit over ``stages`` (``1 / productivity``; a non-positive productivity needs none)."""
    total = np.zeros(len(labor))
    for stage in stages:
        prod = labor[f"productivity_{stage}"].to_numpy(dtype=float)
        total += np.where(prod > 0, 1.0 / np.where(prod > 0, prod, 1.0), 0.0)
    return total


def add_labor_capacity(m: linopy.Model, data: RedistributionData) -> None:
    """Labour hours cover the stage work at DCs with a labour row.

    ``regular[d,t] + overtime[d,t] >= received[d,t] sum_{inbound} 1/prod + shipped[d,t] sum_{outbound} 1/prod``
    (regular hours <= headcount x hours per week x Δ/7, overtime <= max overtime x Δ/7: variable bounds);
    ``regular[d,t] + overtime[d,t] >= labour_floor[d,t]`` (capped at those bounds) where the option sets one.
    With carried-over work (``carry_share`` β_k per stage), a period also staffs the work carried in that has
    still to pass each stage, as the simulator staffs a day by its work on hand; carried work is due before the
    day's shift is over, by which only the share φ_k of the staffed hours has been worked (``deadline_share``),
    so it is staffed at 1/φ_k its hours (as the simulator does):
    ``+ received[d,t-1] sum_{inbound} β_k/(φ_k prod_k) + shipped[d,t-1] sum_{outbound} β_k/(φ_k prod_k)`` on
    the right.
    """
    v = data.variables
    if v["regular"] is None:
        return
    lab = data.labor
    rows = data.dcs.get_indexer(lab.index)
    n_t = len(data.periods)
    inbound = [s for s in FLOW_STAGES if s in INBOUND_STAGES]
    outbound = [s for s in FLOW_STAGES if s not in INBOUND_STAGES]
    h_in = np.repeat(_hours_per_unit(lab, inbound)[:, None], n_t, axis=1)
    h_out = np.repeat(_hours_per_unit(lab, outbound)[:, None], n_t, axis=1)
    terms = [(v["regular"].labels.values, 1.0), (v["overtime"].labels.values, 1.0),
             (np.asarray(v["received"].labels.values)[rows], -h_in),
             (np.asarray(v["shipped"].labels.values)[rows], -h_out)]
    coords = {"labor_site": v["regular"].indexes["labor_site"], "period": data.periods}
    if _carries(data):
        c = data.carry.set_index(["dc", "stage"])
        for var, stages in (("received", inbound), ("shipped", outbound)):
            carried = np.zeros(len(lab))
            for stage in stages:
                at = pd.MultiIndex.from_arrays([lab.index, np.full(len(lab), stage)])
                beta = c["carry_share"].reindex(at).fillna(0.0).to_numpy(dtype=float)
                phi = c["deadline_share"].reindex(at).fillna(1.0).to_numpy(dtype=float)
                prod = lab[f"productivity_{stage}"].to_numpy(dtype=float)
                per_unit = np.where(prod > 0, 1.0 / np.where(prod > 0, prod, 1.0), 0.0)
                carried += beta * per_unit / phi
            if (carried > 0).any():
                terms.append((_previous_period(np.asarray(v[var].labels.values)[rows]),
                              -np.repeat(carried[:, None], n_t, axis=1)))
    add_rows(m, "labor_hours", coords, terms, ">=", 0.0)
    floor = np.zeros((len(lab), n_t))
    sites = v["regular"].indexes["labor_site"]
    for (site, period), hours in (data.params.get("labour_floor") or {}).items():
        if site in sites and int(period) in data.periods:
            floor[sites.get_loc(site), data.periods.get_loc(int(period))] = float(hours)
    if (floor > 0).any():  # ``regular + overtime >= floor`` where the repair loop set one (within the caps)
        ub = (v["regular"].upper.values + v["overtime"].upper.values)
        add_rows(m, "labor_floor", {"labor_site": sites, "period": data.periods},
                 [(v["regular"].labels.values, 1.0), (v["overtime"].labels.values, 1.0)], ">=",
                 np.minimum(floor, ub), mask=floor > 0)


def add_objective(m: linopy.Model, data: RedistributionData) -> None:
    """Minimise cost plus penalties.

    ``sum c_dz deliver + sum c_sd receive + sum (c_t) transfer + F sum trucks + h (sum deliver + sum transfer)
    + sum (w_d regular + w^o_d overtime) + π_lost sum lost + π_late (Δ sum backlog + sum late_days_dz deliver)``
    """
    p = data.params
    v = data.variables
    terms = [(_labels(v["deliver"]), data.deliver["unit_cost"].to_numpy(dtype=float)),
             (_labels(v["receive"]), data.receive["cost_per_unit"].to_numpy(dtype=float)),
             (_labels(v["transfer"]), data.transfer["cost_per_unit"].to_numpy(dtype=float)
              + p["handling_cost_per_unit"]),
             (_labels(v["trucks"]), p["truck_fixed_cost"]),
             (_labels(v["lost"]), p["lost_sales_penalty"]),
             (_labels(v["backlog"]), p["late_penalty_per_unit_day"] * data.period_days)]
    if v["regular"] is not None:
        n_t = len(data.periods)
        terms.append((_labels(v["regular"]), np.repeat(data.labor["hourly_rate"].to_numpy(dtype=float), n_t)))
        terms.append((_labels(v["overtime"]), np.repeat(data.labor["overtime_rate"].to_numpy(dtype=float), n_t)))
    m.add_objective(objective_from_terms(m, terms))


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
# Warm start
# -------------------------------------------------------------------------------------------------
def _arc_values(frame: pd.DataFrame, keys: list[str], table: pd.DataFrame, table_keys: list[str],
                value: str) -> np.ndarray:
    """``table[value]`` summed by ``table_keys``, matched to the rows of ``frame`` by ``keys`` (0 where absent)."""
    if frame.empty:
        return np.zeros(0)
    if table is None or table.empty:
        return np.zeros(len(frame))
    t = table.assign(**{table_keys[-1]: pd.to_numeric(table[table_keys[-1]]).astype(int)}) \
        if "period" in table_keys[-1] else table
    s = t.groupby(table_keys)[value].sum()
    idx = pd.MultiIndex.from_frame(frame[keys].astype({keys[-1]: int}))
    return s.reindex(idx).fillna(0.0).to_numpy(dtype=float)


def warm_start_from(data: RedistributionData, model: linopy.Model, warm_start: Any) -> Any:
    """A complete MIP start from a previous redistribution Plan (or a SolveResult / dict, passed through).

    Trucks, deliveries, port receipts, transfers and lost sales are read from the plan's tables and matched
    to this model's arcs by lane, product and period (what this model has no arc for is left out); stock,
    backlog, received and shipped units follow from them by the balances, labour hours from the labour table.
    :func:`solve` passes it on only when it is feasible for this model.
    """
    passed, warm_start = start_plan(warm_start, DECISION)
    if warm_start is None:
        return passed
    v = data.variables
    t = warm_start.tables
    flows = t["flows"]
    out = flows[flows["leg"] == "outbound"] if not flows.empty else flows
    inb = flows[flows["leg"] == "inbound"] if not flows.empty else flows
    fk = ["origin_id", "destination_id", "product_id", "period"]
    values = {
        "deliver": _arc_values(data.deliver, ["dc", "zone", "product", "period"], out, fk, "quantity"),
        "receive": _arc_values(data.receive, ["source", "dc", "product", "period"], inb, fk, "quantity"),
        "transfer": _arc_values(data.transfer, ["origin", "destination", "product", "period"], t["transfers"], fk,
                                "quantity"),
        "trucks": np.round(_arc_values(data.trucks, ["origin", "destination", "period"],
                                       pd.DataFrame(warm_start.meta.get("truckloads") or [],
                                                    columns=["origin_id", "destination_id", "period", "trucks"]),
                                       ["origin_id", "destination_id", "period"], "trucks")),
        "lost": _arc_values(data.cells, ["zone", "product", "period"], t["unmet"],
                            ["zone_id", "product_id", "period"], "quantity"),
    }
    # backlog per cell: what is neither delivered nor lost yet, carried forward
    cells = data.cells
    served = np.bincount(data.deliver["cell"].to_numpy(), weights=values["deliver"], minlength=len(cells)) \
        if len(data.deliver) else np.zeros(len(cells))
    open_units = cells["quantity"].to_numpy(dtype=float) - served - values["lost"]
    pair = (cells["zone"].astype(str) + "\x00" + cells["product"].astype(str)).to_numpy()
    backlog = np.clip(pd.Series(open_units).groupby(pair, sort=False).cumsum().to_numpy(), 0.0, None)
    if v["backlog"] is not None:
        values["backlog"] = backlog[cells["period"].to_numpy() < data.periods[-1]]
    # stock, received and shipped from the flows
    shape = (len(data.dcs), len(data.products), len(data.periods))
    net = np.zeros(int(np.prod(shape)))
    received = np.zeros(len(data.dcs) * len(data.periods))
    shipped = np.zeros_like(received)
    keys = {"s": data.dcs, "p": data.products, "t": data.periods}
    for (name, site, when), sign in [(end, 1.0) for end in ARRIVING] + [(end, -1.0) for end in LEAVING]:
        frame = getattr(data, name)
        if frame.empty:
            continue
        g = grid_codes(pd.DataFrame({"s": frame[site], "p": frame["product"], "t": frame[when]}), keys)
        np.add.at(net, g, sign * values[name])
        dp = _dp_codes(data, frame[site], frame[when])
        np.add.at(received if sign > 0 else shipped, dp, values[name])
    values["stock"] = np.clip(data.on_hand[:, :, None] + np.cumsum(net.reshape(shape), axis=2), 0.0, None).ravel()
    values["received"], values["shipped"] = received, shipped
    lab = t["labor"]
    if v["regular"] is not None and not lab.empty:
        idx = pd.MultiIndex.from_product([v["regular"].indexes["labor_site"], data.periods])
        hours = lab.assign(period=pd.to_numeric(lab["period"]).astype(int)).set_index(["site_id", "period"])
        for name, col in (("regular", "regular_hours"), ("overtime", "overtime_hours")):
            values[name] = hours[col].astype(float).reindex(idx).fillna(0.0).to_numpy()
    start: dict[str, pd.Series] = {}
    for name, vals in values.items():
        var = v.get(name)
        if var is None or len(vals) == 0:
            continue
        labels = var.labels.to_series().index if var.ndim > 1 else var.indexes[var.dims[0]]
        start[name] = pd.Series(np.asarray(vals, dtype=float), index=labels)
    return start


# -------------------------------------------------------------------------------------------------
# Solve and read back into plan tables
# -------------------------------------------------------------------------------------------------
RELAX_ROUND_MIN_COLUMNS = 20_000
"""Models with at least this many columns are first solved by :func:`relax_and_round`; smaller ones (where
branch and bound is cheap) go straight to the MILP."""


def relax_and_round(form: solvers.StandardForm, *, solver: str = "highs", time_limit: float | None = None,
                    mip_gap: float | None = None, threads: int | None = None, log: Any = None,
                    solver_options: Mapping[str, Any] | None = None,
                    ) -> tuple[solvers.SolveResult | None, solvers.SolveResult | None]:
    """Solve the LP relaxation and round its trucks up: a plan with a proven gap, often without branching.

    The integer variables of this model are the truck counts, and they appear only in the truck rows
    ``sum_p vol_p transfer <= cap trucks`` (and weight), with a non-negative cost. Rounding every truck
    count of an LP solution *up* therefore keeps all rows feasible: a MILP solution whose cost exceeds the
    LP bound by at most the fixed cost of the rounding. When that is within ``mip_gap`` (default 1e-4) the
    rounded solution is returned as optimal within the gap, with the LP value as its bound.

    Returns ``(result, rounded)``: ``result`` the proven solution or None; ``rounded`` the rounded
    solution (a complete, feasible MIP start) or None when the LP has no optimal solution.
    """
    relaxed = dataclasses.replace(form, integrality=np.zeros_like(form.integrality))
    lp = solvers.solve(relaxed, solver=solver, time_limit=time_limit, threads=threads, log=log, options=solver_options)
    if not (lp.has_solution and lp.termination is solvers.Termination.OPTIMAL):
        return None, None
    x = np.array(lp.x, dtype=float)
    integer = form.integrality != 0
    x[integer] = np.minimum(np.ceil(x[integer] - 1e-9), form.col_upper[integer])
    objective = float(form.objective @ x) + float(form.objective_constant)
    bound = float(lp.objective)
    gap = max(0.0, objective - bound) / max(abs(objective), 1e-9)
    rounded = dataclasses.replace(lp, objective=objective, bound=bound, gap=gap, model=form,
                                  values=solvers.GroupValues(x, form.variable_groups, "primal values", ""))
    tol = 1e-4 if mip_gap is None else float(mip_gap)
    if gap <= tol:
        return rounded, rounded
    return None, rounded


def _reused(form: solvers.StandardForm, start: Mapping[str, pd.Series], previous: Plan) -> solvers.SolveResult:
    """The previous plan's solution as the result of an identical model (same fingerprint, feasible start)."""
    x = solvers.warm_start_vector(form, start)
    objective = float(form.objective @ x) + float(form.objective_constant)
    bound = float(previous.bound) if previous.bound is not None else float("nan")
    gap = max(0.0, objective - bound) / max(abs(objective), 1e-9) if np.isfinite(bound) else float("nan")
    none = "not solved: the solution of an identical model was reused"
    return solvers.SolveResult(
        termination=solvers.Termination(previous.status), has_solution=True, objective=objective, bound=bound,
        gap=gap, solver=str(previous.meta.get("solver", "")), solver_version="", raw_status="reused",
        wall_time=solvers.Timings(), values=solvers.GroupValues(x, form.variable_groups, "primal values", ""),
        duals=solvers.GroupValues(None, form.constraint_groups, "duals", none),
        reduced_costs=solvers.GroupValues(None, form.variable_groups, "reduced costs", none), model=form)


def _better_start(form: solvers.StandardForm, rounded: solvers.SolveResult, start: Any) -> Any:
    """The rounded LP solution, or the (feasible, complete) start from a plan when that one costs less."""
    if isinstance(start, Mapping) and start_violation(form, start) is None:
        x = solvers.warm_start_vector(form, start)
        if float(form.objective @ x) + float(form.objective_constant) < rounded.objective:
            return start
    return rounded


def solve(
    instance: Instance,
    options: RedistributionOptions | None = None,
    *,
    solver: str = "highs",
    time_limit: float | None = None,
    mip_gap: float | None = None,
    threads: int | None = None,
    log: Any = None,
    warm_start: Any = None,
    solver_options: Mapping[str, Any] | None = None,
    baseline: Instance | Plan | None = None,
) -> Plan:
    """Plan transfers and fulfilment on a (disrupted) instance; compare with the undisrupted baseline.

    Parameters
    ----------
    instance : the disrupted instance (the disruption is in its tables).
    baseline : the undisrupted instance (solved here with the same options) or its redistribution Plan;
        None skips the comparison.
    options : model parameters (:class:`RedistributionOptions`).
    solver, time_limit, mip_gap, threads, log, solver_options : passed to :func:`solvers.solve`.
    warm_start : a previous redistribution :class:`Plan` (or PlanResult) of this instance, e.g. the repair
        loop's previous round, or a :class:`solvers.SolveResult` of the same model: a MIP start
        (:func:`warm_start_from`).

    Returns
    -------
    Plan with tables transfers (one row per lane, product and dispatch period; ``trucks`` is the row's share
    of the lane's integer truckloads, ``period`` an extra column), assignment, flows, site_throughput, labor,
    unmet, service, costs, sites; ``meta["truckloads"]`` the integer trucks per lane and period,
    ``meta["deltas"]`` / ``meta["site_deltas"]`` the differences to the baseline.
    """
    options = options or RedistributionOptions()
    started = time.perf_counter()
    data = prepare(instance, options)
    model = build_model(data)
    form = solvers.to_standard_form(model)
    build_seconds = time.perf_counter() - started
    previous = start_plan(warm_start, DECISION)[1]
    start = plan_start = warm_start_from(data, model, warm_start)
    start_note: dict[str, Any] | None = None
    if previous is not None and start is not None:
        why = start_violation(form, start)
        start_note = {"from": "plan", "feasible": why is None, "used": False, "reason": why}
        if why is not None:  # e.g. the previous round's plan breaks this round's derated capacity
            start = plan_start = None
    t0 = time.perf_counter()
    result, strategy = None, "direct"
    fingerprint = data_fingerprint(form)
    if plan_start is not None and previous.meta.get("model_fingerprint") == fingerprint:
        result, strategy = _reused(form, plan_start, previous), "reused"  # the very same model: same answer
    elif form.is_mip and form.n_cols >= RELAX_ROUND_MIN_COLUMNS:
        strategy = "relax_round"
        result, rounded = relax_and_round(form, solver=solver, time_limit=time_limit, mip_gap=mip_gap,
                                          threads=threads, log=log, solver_options=solver_options)
        if result is None and rounded is not None:  # gap not proven: the MILP starts from the better plan
            strategy = "relax_round+milp"
            start = _better_start(form, rounded, start)
    if result is None:
        left = None if time_limit is None else max(1.0, time_limit - (time.perf_counter() - t0))
        result = solvers.solve(form, solver=solver, time_limit=left, mip_gap=mip_gap, threads=threads, log=log,
                               options=solver_options,
                               warm_start=start)
    if start_note is not None:
        start_note["used"] = strategy == "reused" or (start is plan_start is not None and result.warm_start_entries > 0)
    plan = extract_plan(data, result)
    plan.meta.update(build_seconds=round(build_seconds, 3), solve_seconds=round(time.perf_counter() - t0, 3),
                     variables=int(model.nvars), constraints=int(model.ncons), strategy=strategy,
                     model_fingerprint=fingerprint,
                     warm_start_entries=int(result.warm_start_entries), warm_start=start_note)
    if baseline is not None:
        base_plan = baseline if isinstance(baseline, Plan) else solve(
            baseline, options, solver=solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads, log=log,
            solver_options=solver_options)
        plan.meta["baseline"] = {"status": base_plan.status, "objective": base_plan.objective}
        plan.meta["deltas"] = redistribution_deltas(base_plan, plan)
        plan.meta["site_deltas"] = site_deltas(base_plan, plan).to_dict("records")
    return plan


def _solved(frame: pd.DataFrame, values: np.ndarray, columns: list[str], value: str = "quantity",
            threshold: float | None = EPS) -> pd.DataFrame:
    """The rows of ``frame`` (``columns``) with their solved ``value``; rows at or below ``threshold`` dropped."""
    out = frame[columns].assign(**{value: values})
    if threshold is not None:
        out = out[out[value].abs() > threshold]
    return out.reset_index(drop=True)


def extract_plan(data: RedistributionData, result: solvers.SolveResult) -> Plan:
    """Read the solved variables back into the plan tables (costs recomputed from the tables)."""
    status = result.termination
    meta: dict[str, Any] = {"solver": result.solver, "params": data.params,
                            "periods": [int(t) for t in data.periods], "period_days": data.period_days}
    if not result.has_solution:
        return Plan(DECISION, status, tables={"sites": _sites_table(data)}, meta=meta)
    p = data.params
    v = data.variables
    lane_cols = ["cost_per_unit", "transit_days"]
    deliver = _solved(data.deliver, dense_values(result, v["deliver"]),
                      ["dc", "zone", "product", "period", *lane_cols, "distance_km"])
    receive = _solved(data.receive, dense_values(result, v["receive"]), ["source", "dc", "product", "period",
                                                                          *lane_cols])
    transfer = _solved(data.transfer, dense_values(result, v["transfer"]),
                       ["origin", "destination", "product", "period", *lane_cols])
    trucks = _solved(data.trucks, dense_values(result, v["trucks"]), ["origin", "destination", "period"], "trucks",
                     threshold=0.5)
    trucks["trucks"] = trucks["trucks"].round().astype(int)
    lost = _solved(data.cells, dense_values(result, v["lost"]), ["zone", "product", "period"])
    carried = data.cells[data.cells["period"] < data.periods[-1]] if v["backlog"] is not None else data.cells.iloc[:0]
    backlog = _solved(carried, dense_values(result, v["backlog"]), ["zone", "product", "period"])
    labor = _labor_table(result, data)

    vol = pd.Series(data.volume, index=data.products)
    wt = pd.Series(data.weight, index=data.products)
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
    return Plan(DECISION, status, objective=float(result.objective), bound=float(result.bound),
                gap=float(result.gap), tables=tables, meta=meta)


def _sites_table(data: RedistributionData) -> pd.DataFrame:
    s = data.sites[["id", "kind", "status"]].rename(columns={"id": "site_id"})
    is_dc = s["kind"].isin(["dc", "crossdock"])
    closed = s["site_id"].isin(data.params["closed_sites"])
    s = s.assign(open=np.where(is_dc, s["site_id"].isin(data.dcs), True) & ~closed, opened=False, closed=closed)
    return s.reset_index(drop=True)


def _labor_table(result: solvers.SolveResult, data: RedistributionData) -> pd.DataFrame:
    cols = list(PLAN_TABLES["labor"])
    v = data.variables
    if v["regular"] is None:
        return pd.DataFrame({c: pd.Series(dtype=object if c == "site_id" else float) for c in cols})
    sites = v["regular"].indexes["labor_site"]
    n_t = len(data.periods)
    labor = pd.DataFrame({"site_id": np.repeat(sites.to_numpy(), n_t),
                          "period": np.tile(data.periods.to_numpy(), len(sites)),
                          "regular_hours": dense_values(result, v["regular"]).ravel(),
                          "overtime_hours": dense_values(result, v["overtime"]).ravel(), "temp_hours": 0.0})
    return round_values(labor, ["regular_hours", "overtime_hours"])[cols]


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
    cols = list(PLAN_TABLES["flows"])
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
    return round_values(a[list(PLAN_TABLES["assignment"])], ["quantity", "share"])


def _service_table(data: RedistributionData, deliver: pd.DataFrame, backlog: pd.DataFrame) -> pd.DataFrame:
    """Demand-weighted transit and the share of demand delivered on time.

    A unit is on time when it is delivered in its demand period (deliveries serve the oldest backlog first)
    over a lane no slower than ``service_days``: per zone, product and period
    ``on_time = clip(served - backlog[t-1], 0, demand) * fast / served``.
    """
    dem = data.demand.rename("demand")
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
