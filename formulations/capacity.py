"""Capacity additions for peak: the cheapest mix of modules, temporary labour, overtime and extra shifts.

The peak is planned day by day. From a weekly instance the daily order intake is derived as::

    daily[z,p,d] = weekly[z,p,w(d)] * profile[weekday(d)] / sum(profile) * (spike if d is a spike day else 1)

with a weekday profile (Monday first; default heavier early in the week) and a spike multiplier on the
spike days (default Black Friday to Cyber Monday of each year in the window: the spike *adds* volume on
top of the week). A daily instance is used as it is.

Model (sites ``s`` = existing DCs, stages ``g``, days ``d``, zones ``z``)::

    vars  share[z,s] in [0,1]       zone z's share of orders sent to DC s (zones may be rebalanced)
          processed[s,d] >= 0       units a DC picks, packs and ships on day d (every stage handles them)
          backlog[s,d] >= 0         orders received but not yet shipped at the end of day d
          breach[s,d] >= 0          backlog beyond what the SLA allows (penalised; fixed at 0 with hard_sla)
          modules[s,g] in Z+        expansion modules (expansions.csv, <= max_modules)
          shift[s] in {0,1}         an extra shift every day of the peak (adds hours to every stage)
          shifted[s,g] >= 0         modules[s,g] * shift[s] (linearised; only bounded from above)
          regular, overtime, temp_hours [s,d] >= 0,   temps[s] in Z+ (temporary staff hired for the peak)

    intake[s,d]   = sum_z share[z,s] * daily_units[z,d]       (an auxiliary variable: units ordered at DC s)
    backlog[s,d]  = backlog[s,d-1] + intake[s,d] - processed[s,d]                 (backlog[s,0] = 0)
    SLA           backlog[s,d] <= sum_k w_k intake[s,d-k] + breach[s,d],  w_k = clip(SLA_h/24 - k, 0, 1)
    stage         processed[s,d] <= r u (h (c + m modules) + e (c shift + m shifted))   for every stage g
    labour        regular + overtime + temp_hours >= hours_per_unit * processed
                  regular <= headcount x weekly hours / 7, overtime per week <= max_overtime_hours,
                  temp_hours <= temp_hours_per_day * temps, temps <= max temp headcount

The SLA rule: orders arrive evenly over the day and must ship within ``order_to_ship_sla_hours`` (SLA_h).
Of day d's orders, the share that arrived in the last SLA_h hours (``SLA_h/24``, at most 1) may still be
waiting at the end of day d; with an SLA over 24 h, a share ``SLA_h/24 - k`` of day d-k's orders may too.

Build: the grids are small (sites x stages, sites x days, zones x sites), so variables are dense linopy
arrays with masks, but every constraint family is written straight from label and coefficient arrays
(:func:`formulations.common.add_rows`) rather than through linopy's expression arithmetic, whose per-operation
overhead dominated the build. A warm start (a previous capacity Plan) passes its integer decisions.

Objective (currency): modules cost per year (``capex x annuity + opex_per_year``, or the whole capex with
``module_cost="capex"``) + extra shift cost per day + temp staff (hired for every day of the peak at the
hourly rate x (1 + premium)) + overtime + regular hours + DC -> zone transport + SLA-breach penalty
(per unit and day beyond the SLA). Regular labour is paid per hour worked.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import linopy
import numpy as np
import pandas as pd
import xarray as xr

import solvers
from formulations.common import (
    EPS,
    add_rows,
    annuity_factor,
    derate_series,
    grid_codes,
    grouped_terms,
    labor_parameters,
    objective_from_terms,
    round_values,
    stage_rates,
    start_plan,
)
from instances.instance import Instance, cheapest_lanes
from instances.plan import PLAN_TABLES, Plan
from instances.schema import FLOW_STAGES

DECISION = "capacity"
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class CapacityOptions:
    """Parameters of the peak-capacity model.

    Attributes
    ----------
    peak_periods : weekly periods of the instance that make up the peak (None = all).
    weekday_profile : relative order intake Monday..Sunday (normalised to sum 1 over the week).
    spike_dates : ISO dates whose intake is multiplied by ``spike_multiplier`` (None = Black Friday
        through Cyber Monday of every year in the window; ``()`` = no spike).
    spike_multiplier : multiplier of the intake on spike days.
    temp_premium : temporary staff cost per hour = site hourly_rate x (1 + temp_premium).
    temp_hours_per_day : hours a temporary worker works per day of the peak.
    max_temp_share : most temporary staff per site, as a share of its max_headcount.
    extra_shift_hours : operating hours an extra shift adds per day (capped at 24 h per day in all).
    extra_shift_cost_per_day : fixed cost per site and day an extra shift runs (supervision, utilities).
    allow_extra_shift, allow_rebalancing : switch those levers off (rebalancing off = each zone stays
        with its cheapest-lane DC).
    module_cost : ``annualized`` (capex x annuity factor + opex_per_year) or ``capex`` (full capex).
    sla_breach_penalty : currency per unit and day of backlog beyond the SLA (default unmet_demand_penalty).
    hard_sla : no breach at all (``breach = 0``): the plan must ship every order within the SLA, whatever
        the capacity costs; infeasible when the levers cannot do it (the soft SLA trades capacity cost against
        the breach penalty instead).
    capacity_derate : ``{(site, stage): factor}`` or DataFrame ``site_id, stage, factor`` in [0, 1] multiplying
        a stage's effective rate (the repair loop's lever, see :func:`formulations.common.derate_series`).
    labour_floor : ``{(site, day): hours}`` -- at least this many labour hours (regular + overtime + temp) at a
        site on a day of the peak (the repair loop's lever when work carried over from the day before finds
        the site unstaffed: the MILP plans hours for a day's processed units only).
    """

    peak_periods: tuple[int, ...] | None = None
    weekday_profile: tuple[float, ...] = (1.15, 1.10, 1.05, 1.00, 1.00, 0.85, 0.85)
    spike_dates: tuple[str, ...] | None = None
    spike_multiplier: float = 2.0
    temp_premium: float = 0.3
    temp_hours_per_day: float = 8.0
    max_temp_share: float = 0.5
    extra_shift_hours: float = 8.0
    extra_shift_cost_per_day: float = 1500.0
    allow_extra_shift: bool = True
    allow_rebalancing: bool = True
    module_cost: str = "annualized"
    sla_breach_penalty: float | None = None
    hard_sla: bool = False
    capacity_derate: Mapping[tuple[str, str], float] | pd.DataFrame | None = None
    labour_floor: Mapping[tuple[str, int], float] | None = None

    def validate(self) -> None:
        """Raise ValueError when a weight, share, rate or cost is out of range."""
        if len(self.weekday_profile) != 7 or min(self.weekday_profile) < 0 or sum(self.weekday_profile) <= 0:
            raise ValueError("CapacityOptions.weekday_profile needs 7 non-negative weights (Mon..Sun), not all 0")
        for key in ("spike_multiplier", "temp_premium", "temp_hours_per_day", "max_temp_share", "extra_shift_hours",
                    "extra_shift_cost_per_day"):
            if getattr(self, key) < 0:
                raise ValueError(f"CapacityOptions.{key} must be >= 0, got {getattr(self, key)!r}")
        if self.module_cost not in ("annualized", "capex"):
            raise ValueError(f"CapacityOptions.module_cost must be 'annualized' or 'capex', got {self.module_cost!r}")


Options = CapacityOptions
"""The options of this formulation under the protocol's name (:mod:`formulations.protocol`)."""


# -------------------------------------------------------------------------------------------------
# The daily peak
# -------------------------------------------------------------------------------------------------
def black_friday_to_cyber_monday(year: int) -> list[dt.date]:
    """Black Friday (the day after the fourth Thursday of November) through Cyber Monday."""
    first = dt.date(year, 11, 1)
    thanksgiving = first + dt.timedelta(days=(3 - first.weekday()) % 7 + 21)
    return [thanksgiving + dt.timedelta(days=k) for k in range(1, 5)]


def peak_instance(instance: Instance, options: CapacityOptions | None = None) -> Instance:
    """The daily instance of the peak: daily periods (1 = first peak day) and daily demand.

    Weekly demand is spread over the week's days by ``weekday_profile`` and multiplied on spike days
    (see the module docstring); an instance whose periods are already days is cut to ``peak_periods`` only.
    Supply is left out (the capacity decision does not read it).
    """
    options = options or CapacityOptions()
    options.validate()
    per = instance.periods
    if options.peak_periods is not None:
        unknown = sorted(set(options.peak_periods) - set(per["period"].astype(int)))
        if unknown:
            raise ValueError(f"CapacityOptions.peak_periods: periods {unknown} are not in the instance horizon "
                             f"1..{len(per)}")
        per = per[per["period"].isin(options.peak_periods)]
    if per.empty:
        raise ValueError("CapacityOptions.peak_periods selects no period")
    days = float(per["days"].iloc[0])
    demand = instance.demand[instance.demand["period"].isin(per["period"])]
    if days == 1.0:
        dates = per[["period", "start"]].rename(columns={"start": "date"}).assign(source_period=per["period"])
        daily = demand.rename(columns={"period": "source_period"}).merge(dates, on="source_period")
    else:
        rows = [(int(p), start + pd.Timedelta(days=k)) for p, start, n in zip(per["period"], per["start"], per["days"])
                for k in range(int(n))]
        dates = pd.DataFrame(rows, columns=["source_period", "date"])
        profile = np.asarray(options.weekday_profile, dtype=float)
        dates["factor"] = profile[dates["date"].dt.day_of_week.to_numpy()] / profile.sum()
        spikes = options.spike_dates
        if spikes is None:
            years = sorted(set(dates["date"].dt.year))
            spikes = tuple(d.isoformat() for y in years for d in black_friday_to_cyber_monday(y))
        spike_days = pd.to_datetime(list(spikes)) if spikes else pd.DatetimeIndex([])
        dates["factor"] *= np.where(dates["date"].isin(spike_days), options.spike_multiplier, 1.0)
        daily = demand.rename(columns={"period": "source_period"}).merge(dates, on="source_period")
        daily["quantity"] = daily["quantity"] * daily["factor"]
    dates = dates.sort_values("date").reset_index(drop=True)
    dates["period"] = np.arange(1, len(dates) + 1)
    daily = daily.merge(dates[["date", "period"]], on="date")[["zone_id", "product_id", "period", "quantity"]]
    meta = {**instance.meta, "horizon": {"start": dates["date"].iloc[0].date().isoformat(),
                                         "periods": int(len(dates)), "period_days": 1}}
    meta.pop("periods", None)
    meta["peak"] = {"source_periods": [int(p) for p in per["period"]], "weekday_profile": list(options.weekday_profile),
                    "spike_multiplier": options.spike_multiplier}
    empty_supply = instance.supply.iloc[0:0]
    return instance.replace(meta=meta, demand=daily.reset_index(drop=True), supply=empty_supply)


def plan_instance(instance: Instance, options: CapacityOptions | None = None) -> Instance:
    """The instance a capacity plan is expressed on: the daily peak (:func:`peak_instance`)."""
    return peak_instance(instance, options)


# -------------------------------------------------------------------------------------------------
# Data
# -------------------------------------------------------------------------------------------------
@dataclass
class CapacityData:
    """Dense arrays of the daily peak (built once, read by every ``add_*`` function)."""

    sites: pd.Index
    zones: pd.Index
    stages: pd.Index
    days: pd.Index
    params: dict[str, Any]
    orders: xr.DataArray  # zone, day: units ordered
    lanes: dict[str, xr.DataArray]  # site, zone
    baseline_share: xr.DataArray  # zone, site: the cheapest-lane DC of each zone
    base_count: xr.DataArray  # site, stage (count; inf where the stage is not limited)
    rate: xr.DataArray  # site, stage: units per resource unit and hour
    hours: xr.DataArray  # site, stage: operating hours per day
    extra_hours: xr.DataArray  # site, stage: hours an extra shift adds
    module_size: xr.DataArray  # site, stage
    max_modules: xr.DataArray  # site, stage
    module_cost: xr.DataArray  # site, stage (currency per module)
    capex: xr.DataArray  # site, stage
    labor: pd.DataFrame  # indexed by site_id
    sla_weights: np.ndarray  # w_k, k = 0..
    week: xr.DataArray  # day -> week number of the peak (0-based)
    daily: Instance  # the daily peak instance


def dense(frame: pd.DataFrame, columns: Sequence[str], coords: Sequence[pd.Index], value: str,
          fill: float = 0.0) -> xr.DataArray:
    """A DataArray over ``coords`` (named indexes) from the rows of ``frame`` (small grids only).

    ``columns`` name the frame columns matching each coordinate, in order; rows whose keys are not in the
    coordinates are ignored, duplicate keys are summed, missing cells get ``fill``.
    """
    coords = list(coords)
    shape = tuple(len(c) for c in coords)
    pos = grid_codes(frame, dict(zip(columns, coords)))
    values = np.zeros(int(np.prod(shape)))
    seen = np.zeros(values.size, dtype=bool)
    ok = pos >= 0
    np.add.at(values, pos[ok], frame[value].to_numpy(dtype=float)[ok])
    seen[pos[ok]] = True
    return xr.DataArray(np.where(seen, values, fill).reshape(shape), coords=coords)


def lane_arrays(lanes: pd.DataFrame, sites: pd.Index, zones: pd.Index) -> dict[str, xr.DataArray]:
    """``exists`` and ``cost`` (currency per unit) of the DC -> zone lanes on the (site, zone) grid."""
    cols = ["origin_id", "destination_id"]
    return {"exists": dense(lanes.assign(one=1.0), cols, [sites, zones], "one") > 0,
            "cost": dense(lanes, cols, [sites, zones], "cost_per_unit")}


def prepare(instance: Instance, options: CapacityOptions | None = None) -> CapacityData:
    """Derive the daily peak and pivot every parameter into dense arrays."""
    options = options or CapacityOptions()
    daily = peak_instance(instance, options)
    d = instance.defaults
    dc_rows = daily.dcs[daily.dcs["status"] == "existing"]
    sites = pd.Index(dc_rows["id"].to_numpy(), name="site")
    if sites.empty:
        raise ValueError("capacity planning needs at least one existing DC (sites.csv: kind dc, status existing)")
    zones = pd.Index(daily.zones["id"].to_numpy(), name="zone")
    stages = pd.Index(list(FLOW_STAGES), name="stage")
    days = pd.Index(daily.periods["period"].astype(int).to_numpy(), name="day")
    orders = dense(daily.demand, ["zone_id", "period"], [zones, days], "quantity")

    lanes = lane_arrays(cheapest_lanes(daily.lanes), sites, zones)
    cost = lanes["cost"].where(lanes["exists"], np.inf)
    best = cost.argmin("site")
    baseline_share = (xr.DataArray(np.arange(len(sites)), coords=[sites]) == best).astype(float).transpose(
        "zone", "site")
    unreachable = ~lanes["exists"].any("site") & (orders.sum("day") > 0)
    if bool(unreachable.any()):
        z = str(zones[np.flatnonzero(unreachable.to_numpy())[0]])
        raise ValueError(f"lanes.csv: zone {z!r} has demand but no lane from an existing DC")

    rates = stage_rates(daily, list(sites))
    rates = rates.assign(rate_per_hour=rates["rate_per_hour"] * derate_series(options.capacity_derate, rates))
    cols, coords = ["site_id", "stage"], [sites, stages]
    base_count = dense(rates, cols, coords, "base_count", fill=np.inf)
    rate = dense(rates, cols, coords, "rate_per_hour", fill=0.0)
    hours = dense(rates, cols, coords, "hours_per_day", fill=0.0)
    extra = (24.0 - hours).clip(min=0.0, max=options.extra_shift_hours) if options.allow_extra_shift \
        else xr.zeros_like(hours)
    annuity = annuity_factor(float(d["interest_rate"]), float(d["capex_life_years"]))
    rates = rates.assign(module_cost=rates["capex"] * annuity + rates["opex_per_year"]
                         if options.module_cost == "annualized" else rates["capex"])
    params = asdict(options)
    params.update(sla_hours=float(d["order_to_ship_sla_hours"]), annuity=annuity,
                  sla_breach_penalty=float(d["unmet_demand_penalty"] if options.sla_breach_penalty is None
                                           else options.sla_breach_penalty),
                  handling_cost_per_unit=float(d["handling_cost_per_unit"]))
    k = np.arange(int(np.ceil(params["sla_hours"] / 24.0)) + 1)
    sla_weights = np.clip(params["sla_hours"] / 24.0 - k, 0.0, 1.0)
    labor = labor_parameters(daily).set_index("site_id")
    labor = labor[labor.index.isin(sites)]
    week = xr.DataArray((np.arange(len(days)) // 7).astype(int), coords=[days])
    return CapacityData(sites, zones, stages, days, params, orders, lanes, baseline_share, base_count, rate, hours,
                        extra, dense(rates, cols, coords, "module_size"), dense(rates, cols, coords, "max_modules"),
                        dense(rates, cols, coords, "module_cost"), dense(rates, cols, coords, "capex"), labor,
                        sla_weights[sla_weights > 0], week, daily)


def _site_column(data: CapacityData, column: str, fill: float = 0.0) -> xr.DataArray:
    return xr.DataArray(data.labor[column].reindex(data.sites).fillna(fill).to_numpy(dtype=float),
                        coords=[data.sites])


# -------------------------------------------------------------------------------------------------
# Variables and constraint families
# -------------------------------------------------------------------------------------------------
def define_variables(m: linopy.Model, data: CapacityData) -> None:
    """Every decision variable over its (small, dense) coordinates, masked to the rows that exist.

    ``intake[s,d]`` (units ordered at DC s on day d) is an auxiliary variable defined by
    :func:`add_order_intake`, so that the backlog and SLA rows read one term instead of one per zone.
    Zones without orders get no share (it would multiply zero orders).
    """
    sites, zones, stages, days = data.sites, data.zones, data.stages, data.days
    lane = (data.lanes["exists"] & (data.orders.sum("day") > 0)).transpose("zone", "site")
    if data.params["allow_rebalancing"]:
        m.add_variables(lower=0.0, upper=1.0, coords=[zones, sites], name="share", mask=lane)
    else:
        m.add_variables(lower=data.baseline_share, upper=data.baseline_share, coords=[zones, sites], name="share",
                        mask=lane)
    for name in ("intake", "processed", "backlog"):
        m.add_variables(lower=0.0, coords=[sites, days], name=name)
    m.add_variables(lower=0.0, upper=0.0 if data.params["hard_sla"] else np.inf, coords=[sites, days], name="breach")
    expandable = (data.max_modules > 0) & (data.module_size > 0)
    m.add_variables(lower=0, upper=data.max_modules, coords=[sites, stages], name="modules", integer=True,
                    mask=expandable)
    shift_ok = xr.DataArray(np.full(len(sites), bool(data.params["allow_extra_shift"])), coords=[sites])
    m.add_variables(coords=[sites], name="shift", binary=True, mask=shift_ok)
    m.add_variables(lower=0.0, upper=data.max_modules, coords=[sites, stages], name="shifted",
                    mask=expandable & shift_ok)
    has_labor = xr.DataArray(sites.isin(data.labor.index), coords=[sites])
    lmask = has_labor.expand_dims(day=days).transpose("site", "day")
    regular_cap = _site_column(data, "max_headcount") * _site_column(data, "hours_per_person_week") / 7.0
    m.add_variables(lower=0.0, upper=regular_cap.broadcast_like(lmask), coords=[sites, days], name="regular",
                    mask=lmask)
    m.add_variables(lower=0.0, coords=[sites, days], name="overtime", mask=lmask)
    m.add_variables(lower=0.0, coords=[sites, days], name="temp_hours", mask=lmask)
    max_temps = np.floor(_site_column(data, "max_headcount") * data.params["max_temp_share"] + 1e-9)
    m.add_variables(lower=0, upper=max_temps, coords=[sites], name="temps", integer=True, mask=has_labor)


def _labels(m: linopy.Model, name: str) -> np.ndarray:
    """Labels of a variable on its dense grid (-1 where masked)."""
    return np.asarray(m.variables[name].labels.values)


def _site_day(data: CapacityData) -> dict[str, pd.Index]:
    return {"site": data.sites, "day": data.days}


def _labor_mask(data: CapacityData) -> np.ndarray:
    """(site, day) cells of DCs with a labour row."""
    return np.repeat(data.sites.isin(data.labor.index)[:, None], len(data.days), axis=1)


def add_order_intake(m: linopy.Model, data: CapacityData) -> None:
    """Units ordered at each DC per day: ``intake[s,d] = sum_z share[z,s] orders[z,d]``."""
    share = _labels(m, "share")  # zone, site
    orders = data.orders.transpose("zone", "day").to_numpy()
    n_s, n_d = len(data.sites), len(data.days)
    labels = np.broadcast_to(share.T[:, None, :], (n_s, n_d, share.shape[0]))
    coeffs = np.broadcast_to(-orders.T[None, :, :], labels.shape)
    add_rows(m, "order_intake", _site_day(data), [(_labels(m, "intake"), 1.0), (labels, coeffs)], "=", 0.0)


def add_zone_assignment(m: linopy.Model, data: CapacityData) -> None:
    """Every zone with orders is fully assigned: ``sum_s share[z,s] = 1``."""
    has_orders = (data.orders.sum("day") > 0).to_numpy()
    add_rows(m, "zone_assignment", {"zone": data.zones}, [(_labels(m, "share"), 1.0)], "=", 1.0, mask=has_orders)


def _shifted_days(labels: np.ndarray, k: int) -> np.ndarray:
    """``labels[s, d - k]`` on the (site, day) grid (-1 for the days before the first)."""
    out = np.full_like(labels, -1)
    if k < labels.shape[1]:
        out[:, k:] = labels[:, :labels.shape[1] - k]
    return out


def add_backlog_balance(m: linopy.Model, data: CapacityData) -> None:
    """``backlog[s,d] = backlog[s,d-1] + intake[s,d] - processed[s,d]`` with ``backlog[s,0] = 0``."""
    backlog = _labels(m, "backlog")
    add_rows(m, "backlog_balance", _site_day(data),
             [(backlog, 1.0), (_shifted_days(backlog, 1), -1.0), (_labels(m, "processed"), 1.0),
              (_labels(m, "intake"), -1.0)], "=", 0.0)


def add_sla(m: linopy.Model, data: CapacityData) -> None:
    """Backlog within the order-to-ship SLA: ``backlog[s,d] <= sum_k w_k intake[s,d-k] + breach[s,d]``."""
    intake = _labels(m, "intake")
    terms = [(_labels(m, "backlog"), 1.0), (_labels(m, "breach"), -1.0)]
    terms += [(_shifted_days(intake, k), -float(w)) for k, w in enumerate(data.sla_weights)]
    add_rows(m, "sla", _site_day(data), terms, "<=", 0.0)


def add_stage_capacity(m: linopy.Model, data: CapacityData) -> None:
    """Processed units within each limited stage: ``processed <= r (h (c + m mod) + e (c shift + m shifted))``.

    ``shifted = modules x shift`` enters with a positive coefficient, so the two upper bounds
    ``shifted <= modules`` and ``shifted <= max_modules shift`` make it exact.
    """
    limited = np.isfinite(data.base_count.to_numpy())  # site, stage
    c = np.where(limited, data.base_count.to_numpy(), 0.0)
    rate, hours, extra = data.rate.to_numpy(), data.hours.to_numpy(), data.extra_hours.to_numpy()
    size = data.module_size.to_numpy()
    modules, shifted = _labels(m, "modules"), _labels(m, "shifted")
    shift = np.broadcast_to(_labels(m, "shift")[:, None], modules.shape)
    if data.params["allow_extra_shift"]:
        add_rows(m, "shifted_le_modules", {"site": data.sites, "stage": data.stages},
                 [(shifted, 1.0), (modules, -1.0)], "<=", 0.0, mask=shifted >= 0)
        add_rows(m, "shifted_le_shift", {"site": data.sites, "stage": data.stages},
                 [(shifted, 1.0), (shift, -data.max_modules.to_numpy())], "<=", 0.0, mask=shifted >= 0)
    si, gi = np.nonzero(limited)
    rows = pd.RangeIndex(len(si), name="limited_stage")
    n_d = len(data.days)

    def per_day(labels: np.ndarray, coeff: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.repeat(labels[si, gi][:, None], n_d, axis=1), np.repeat(coeff[si, gi][:, None], n_d, axis=1)

    processed = _labels(m, "processed")[si, :]
    add_rows(m, "stage_capacity", {"limited_stage": rows, "day": data.days},
             [(processed, 1.0), per_day(modules, -size * rate * hours), per_day(shift, -c * rate * extra),
              per_day(shifted, -size * rate * extra)], "<=",
             np.repeat((c * rate * hours)[si, gi][:, None], n_d, axis=1))


def add_labor(m: linopy.Model, data: CapacityData) -> None:
    """Labour hours cover the work; overtime within the weekly limit; temps within their hours.

    ``regular + overtime + temp_hours >= hours_per_unit x processed``;
    ``sum_{d in week} overtime[s,d] <= max_overtime_hours x days_in_week / 7``;
    ``temp_hours[s,d] <= temp_hours_per_day x temps[s]``;
    ``regular + overtime + temp_hours >= labour_floor[s,d]`` where the option sets a floor (capped at
    ``regular cap + max_overtime_hours / 7 + max temps x temp_hours_per_day``, always feasible).
    """
    if data.labor.empty:
        return
    mask = _labor_mask(data)
    coords = _site_day(data)
    hpu = np.broadcast_to(_site_column(data, "hours_per_unit").to_numpy()[:, None], mask.shape)
    temp_hours, overtime = _labels(m, "temp_hours"), _labels(m, "overtime")
    add_rows(m, "labor_hours", coords, [(_labels(m, "regular"), 1.0), (overtime, 1.0), (temp_hours, 1.0),
                                        (_labels(m, "processed"), -hpu)], ">=", 0.0, mask=mask)
    floor = np.zeros(mask.shape)
    for (site, day), hours in (data.params.get("labour_floor") or {}).items():
        if site in data.sites and int(day) in data.days:
            floor[data.sites.get_loc(site), data.days.get_loc(int(day))] = float(hours)
    if (floor > 0).any():  # ``regular + overtime + temp_hours >= floor`` where the repair loop set one, capped
        # at what a day can always staff (regular + the week's overtime / 7 + every temp), so it stays feasible
        most = (_site_column(data, "max_headcount") * _site_column(data, "hours_per_person_week") / 7.0
                + _site_column(data, "max_overtime_hours") / 7.0
                + np.floor(_site_column(data, "max_headcount") * data.params["max_temp_share"] + 1e-9)
                * data.params["temp_hours_per_day"]).to_numpy()[:, None]
        floor = np.minimum(floor, most)
        add_rows(m, "labor_floor", coords, [(_labels(m, "regular"), 1.0), (overtime, 1.0), (temp_hours, 1.0)], ">=",
                 floor, mask=mask & (floor > 0))
    temps = np.broadcast_to(_labels(m, "temps")[:, None], mask.shape)
    add_rows(m, "temp_hours_limit", coords, [(temp_hours, 1.0), (temps, -data.params["temp_hours_per_day"])], "<=",
             0.0, mask=mask)
    week = data.week.to_numpy()
    weeks = pd.Index(np.unique(week), name="week")
    n_w = len(weeks)
    group = (np.arange(len(data.sites))[:, None] * n_w + week[None, :]).ravel()
    days_in_week = np.bincount(week, minlength=n_w)
    limit = _site_column(data, "max_overtime_hours").to_numpy()[:, None] * (days_in_week / 7.0)[None, :]
    add_rows(m, "overtime_weekly", {"site": data.sites, "week": weeks},
             [grouped_terms(overtime, group, len(data.sites) * n_w)], "<=", limit,
             mask=np.repeat(data.sites.isin(data.labor.index)[:, None], n_w, axis=1))


def add_objective(m: linopy.Model, data: CapacityData) -> None:
    """Modules + extra shifts + temps + overtime + regular hours + transport + SLA-breach penalty (currency)."""
    p = data.params
    n_days = len(data.days)
    n_s = len(data.sites)
    terms = [(_labels(m, "modules"), data.module_cost.to_numpy()),
             (_labels(m, "shift"), p["extra_shift_cost_per_day"] * n_days),
             (_labels(m, "breach"), p["sla_breach_penalty"])]
    if not data.labor.empty:
        rate = _site_column(data, "hourly_rate").to_numpy()
        terms += [(_labels(m, "temps"), rate * (1.0 + p["temp_premium"]) * p["temp_hours_per_day"] * n_days),
                  (_labels(m, "regular"), np.repeat(rate, n_days)),
                  (_labels(m, "overtime"), np.repeat(_site_column(data, "overtime_rate").to_numpy(), n_days))]
    lane_cost = data.lanes["cost"].where(data.lanes["exists"], 0.0).transpose("zone", "site").to_numpy()
    zone_orders = data.orders.sum("day").transpose("zone").to_numpy()
    terms.append((_labels(m, "share"), (zone_orders[:, None] * lane_cost).reshape(-1, n_s)))
    m.add_objective(objective_from_terms(m, terms))


def build_model(data: CapacityData) -> linopy.Model:
    """The peak-capacity MILP, as a flat sequence of ``add_*`` calls."""
    m = linopy.Model()
    define_variables(m, data)
    add_order_intake(m, data)
    add_zone_assignment(m, data)
    add_backlog_balance(m, data)
    add_sla(m, data)
    add_stage_capacity(m, data)
    add_labor(m, data)
    add_objective(m, data)
    return m


# -------------------------------------------------------------------------------------------------
# Warm start
# -------------------------------------------------------------------------------------------------
def warm_start_from(data: CapacityData, model: linopy.Model, warm_start: Any) -> Any:
    """A MIP start from a previous capacity Plan (a SolveResult or dict is passed through).

    The plan's integer decisions — modules per site and stage, the extra shift per site, temporary staff
    per site — are matched to this model by site and stage; the solver completes the continuous part
    (shares, processed units, backlog, hours) with the integers fixed.
    """
    passed, warm_start = start_plan(warm_start, DECISION)
    if warm_start is None:
        return passed
    start: dict[str, pd.Series] = {}
    cap = warm_start.tables["capacity"]
    mods = model.variables["modules"]
    if (mods.labels.values >= 0).any():
        idx = mods.labels.to_series()
        idx = idx[idx >= 0].index
        k = cap.set_index(["site_id", "stage"])["modules"].astype(float) if not cap.empty else pd.Series(dtype=float)
        start["modules"] = pd.Series(k.reindex(idx).fillna(0.0).to_numpy(), index=idx)
    shift = model.variables["shift"]
    if (shift.labels.values >= 0).any():
        on = set(warm_start.meta.get("extra_shifts") or {})
        start["shift"] = pd.Series([1.0 if s in on else 0.0 for s in data.sites], index=data.sites)
    temps = model.variables["temps"]
    if (temps.labels.values >= 0).any():
        idx = pd.Index(data.sites[temps.labels.values >= 0], name="site")
        hired = warm_start.meta.get("temps") or {}
        start["temps"] = pd.Series([float(hired.get(s, 0)) for s in idx], index=idx)
    return start


# -------------------------------------------------------------------------------------------------
# Solve and read back into plan tables
# -------------------------------------------------------------------------------------------------
def solve(
    instance: Instance,
    options: CapacityOptions | None = None,
    *,
    solver: str = "highs",
    time_limit: float | None = None,
    mip_gap: float | None = None,
    threads: int | None = None,
    log: Any = None,
    warm_start: Any = None,
    solver_options: Mapping[str, Any] | None = None,
) -> Plan:
    """Cheapest capacity mix that processes the daily peak within the order-to-ship SLA.

    ``warm_start``: a previous capacity :class:`Plan` (or PlanResult) of this instance, e.g. the repair
    loop's previous round — its modules, shifts and temps are the MIP start (:func:`warm_start_from`) —
    or a :class:`solvers.SolveResult` of the same model.

    Returns a Plan (periods are the days of the peak, see :func:`peak_instance`) with tables capacity
    (modules per site and stage; extra column ``extra_hours_per_day`` for the extra shift), labor (regular,
    overtime, temp hours per site and day), assignment, flows, site_throughput (units processed), costs and
    sites; ``meta`` holds temps and shifts per site, backlog and SLA breach totals.
    """
    options = options or CapacityOptions()
    started = time.perf_counter()
    data = prepare(instance, options)
    model = build_model(data)
    build_seconds = time.perf_counter() - started
    result = solvers.solve(model, solver=solver, time_limit=time_limit, mip_gap=mip_gap, threads=threads, log=log,
                           warm_start=warm_start_from(data, model, warm_start), options=solver_options)
    plan = extract_plan(data, result)
    plan.meta.update(build_seconds=round(build_seconds, 3), solve_seconds=round(result.wall_time.total, 3),
                     variables=int(model.nvars), constraints=int(model.ncons),
                     warm_start_entries=int(result.warm_start_entries))
    return plan


def _values(result: solvers.SolveResult, name: str, like: xr.DataArray) -> xr.DataArray:
    """Solved values of ``name`` on the grid of ``like`` (0 where masked or absent)."""
    out = xr.zeros_like(like, dtype=float)
    if name not in result.values:
        return out
    s = result.values[name]
    full = s.reindex(pd.MultiIndex.from_product([like.indexes[d] for d in like.dims]) if like.ndim > 1
                     else like.indexes[like.dims[0]]).fillna(0.0)
    return out + full.to_numpy().reshape(like.shape)


def extract_plan(data: CapacityData, result: solvers.SolveResult) -> Plan:
    """Read the solved variables back into the plan tables (costs recomputed from them)."""
    status = result.termination
    p = data.params
    meta: dict[str, Any] = {"solver": result.solver, "params": p, "peak": data.daily.meta.get("peak"),
                            "start": data.daily.meta["horizon"]["start"], "days": len(data.days)}
    sites_table = data.daily.sites[["id", "kind", "status"]].rename(columns={"id": "site_id"})
    sites_table = sites_table.assign(open=sites_table["site_id"].isin(data.sites) | ~sites_table["kind"].isin(
        ["dc", "crossdock"]), opened=False, closed=False)
    if not result.has_solution:
        return Plan(DECISION, status, tables={"sites": sites_table}, meta=meta)
    ss = xr.zeros_like(data.module_size)
    sd = xr.zeros_like(data.orders.isel(zone=0, drop=True)).expand_dims(site=data.sites).transpose("site", "day")
    modules = np.round(_values(result, "modules", ss))
    shift = np.round(_values(result, "shift", ss.isel(stage=0, drop=True)))
    temps = np.round(_values(result, "temps", ss.isel(stage=0, drop=True)))
    share = _values(result, "share", data.lanes["cost"].transpose("zone", "site"))
    processed, backlog, breach = (_values(result, n, sd) for n in ("processed", "backlog", "breach"))
    regular, overtime, temp_hours = (_values(result, n, sd) for n in ("regular", "overtime", "temp_hours"))

    limited = np.isfinite(data.base_count)
    cap = xr.Dataset({"base_count": data.base_count.where(limited, 0.0), "modules": modules,
                      "added_count": modules * data.module_size, "capex": modules * data.capex,
                      "extra_hours_per_day": data.extra_hours * shift}).to_dataframe().reset_index()
    cap = cap[limited.to_series().to_numpy()].rename(columns={"site": "site_id"})
    cap["total_count"] = cap["base_count"] + cap["added_count"]
    capacity = cap[list(PLAN_TABLES["capacity"])].reset_index(drop=True)

    labor = xr.Dataset({"regular_hours": regular, "overtime_hours": overtime, "temp_hours": temp_hours}
                       ).to_dataframe().reset_index().rename(columns={"site": "site_id", "day": "period"})
    labor = round_values(labor[labor["site_id"].isin(data.labor.index)], ["regular_hours", "overtime_hours",
                                                                          "temp_hours"])
    orders = (share * data.orders).rename("quantity").to_dataframe().reset_index()
    orders = orders[orders["quantity"] > EPS].rename(columns={"zone": "zone_id", "site": "site_id", "day": "period"})
    orders = orders.merge(share.rename("share").to_dataframe().reset_index().rename(
        columns={"zone": "zone_id", "site": "site_id"}), on=["zone_id", "site_id"])
    assignment = round_values(orders[list(PLAN_TABLES["assignment"])], ["quantity", "share"])
    dem = data.daily.demand
    flows = dem.merge(assignment[["zone_id", "site_id"]].drop_duplicates(), on="zone_id").merge(
        share.rename("share").to_dataframe().reset_index().rename(columns={"zone": "zone_id", "site": "site_id"}),
        on=["zone_id", "site_id"])
    flows = flows.assign(quantity=flows["quantity"] * flows["share"], leg="outbound").rename(
        columns={"site_id": "origin_id", "zone_id": "destination_id"})
    flows = round_values(flows[flows["quantity"] > EPS][["origin_id", "destination_id", "product_id", "period",
                                                           "quantity", "leg"]], ["quantity"])
    thr = processed.rename("outbound_units").to_dataframe().reset_index().rename(
        columns={"site": "site_id", "day": "period"})
    thr = round_values(thr.assign(inbound_units=thr["outbound_units"])[list(PLAN_TABLES["site_throughput"])],
                       ["inbound_units", "outbound_units"])

    n_days = len(data.days)
    rate = data.labor["hourly_rate"].reindex(data.sites).fillna(0.0).to_numpy()
    ot_rate = data.labor["overtime_rate"].reindex(data.sites).fillna(0.0).to_numpy()
    lane_cost = data.lanes["cost"].where(data.lanes["exists"], 0.0)
    components = {
        "capacity_modules": float((modules * data.module_cost).sum()),
        "extra_shifts": float(shift.sum()) * p["extra_shift_cost_per_day"] * n_days,
        "labor_temp": float((temps.to_numpy() * rate).sum() * (1 + p["temp_premium"]) * p["temp_hours_per_day"]
                            * n_days),
        "labor_regular": float((regular.sum("day").to_numpy() * rate).sum()),
        "labor_overtime": float((overtime.sum("day").to_numpy() * ot_rate).sum()),
        "transport_outbound": float((share * data.orders.sum("day") * lane_cost).sum()),
        "sla_breach": float(breach.sum()) * p["sla_breach_penalty"],
    }
    costs = round_values(pd.DataFrame({"component": list(components), "amount": list(components.values())}),
                         ["amount"])
    meta.update(
        temps={str(s): int(v) for s, v in temps.to_series().items() if v > 0},
        extra_shifts={str(s): float(h) for s, h in (data.extra_hours.max("stage") * shift).to_series().items()
                      if h > 0},
        max_backlog=round(float(backlog.max()), 6),
        sla_breach_unit_days=round(float(breach.sum()), 6),
        orders_units=round(float(data.orders.sum()), 6),
    )
    tables = {"sites": sites_table.reset_index(drop=True), "capacity": capacity, "labor": labor,
              "assignment": assignment, "flows": flows, "site_throughput": thr, "costs": costs}
    return Plan(DECISION, status, objective=float(result.objective), bound=float(result.bound),
                gap=float(result.gap), tables=tables, meta=meta)
