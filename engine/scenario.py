"""Scenarios: named, classed what-ifs applied to an Instance.

A scenario is a YAML file (in an instance's ``scenarios/`` folder, or any path)::

    name: black_friday
    class: tactical              # strategic | tactical (governance decides who may run which)
    decision: capacity           # consolidation | redistribution | capacity
    description: Black-Friday spike, +40 % in weeks 47-48
    baseline: baseline           # scenario to compare against (optional)
    options: {single_source: false}        # formulation options (optional)
    solver: {time_limit: 60, mip_gap: 0.01} # solver settings (optional)
    modifications:
      - demand_multiplier: 1.4
        periods: [47, 48]
        region: north            # optional filters: region, country, family, product, zone, periods
      - close_port: PORT_LALB
        periods: [1, 2, 3]       # supply set to zero in these periods (all when absent)
      - close_site: DC_X         # the site is forced closed and removed from service
      - close_lane: {origin: A, destination: B}
      - capacity: {site: DC_A, stage: pack, multiplier: 0.8}   # or count: 12
      - rate: {site: DC_A, stage: pick, multiplier: 1.1}       # site may be "*"
      - cost: {fuel: 1.1, wages: 1.05, fixed: 1.0}             # multipliers
      - capex_budget: 5000000
      - force_open: [DC_C]
      - force_closed: [DC_B]
      - sla: {service_days: 2, service_share: 0.9, order_to_ship_sla_hours: 24}

A scenario file is checked by pydantic models (:class:`ScenarioFile`, :class:`Modification`, ``options:`` per
decision by :data:`OPTION_MODELS`, ``solver:`` by :class:`SolverSettings`): every finding at once, as
``FILE: key.path: message`` (:class:`ScenarioError`). What needs the instance (site, lane, zone, product ids and
periods) is checked by :meth:`Scenario.check_against`, which :func:`apply_scenario` runs first.

Applying a scenario returns a new Instance; the base is never modified. Decisions that are not data
(forced sites, budget, SLA) go into ``meta["scenario"]`` where the formulations read them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from pydantic import AfterValidator, Field, model_validator

from formulations.registry import DECISIONS
from instances.instance import Instance, resolve_instance_path
from instances.schema import LABOR_STAGES, STAGES
from instances.validation import (
    Finding,
    Name,
    Names,
    Text,
    YamlInputError,
    YamlModel,
    did_you_mean,
    error_at,
    raise_findings,
    read_yaml_file,
    validate_yaml,
)

SCENARIO_CLASSES = ("strategic", "tactical")
DEMAND_FILTERS = {"region", "country", "family", "product", "zone", "periods"}
MOD_KEYS: dict[str, set[str]] = {
    "close_site": {"periods"},
    "close_port": {"periods"},
    "close_lane": set(),
    "demand_multiplier": DEMAND_FILTERS,
    "capacity": set(),
    "rate": set(),
    "cost": set(),
    "capex_budget": set(),
    "force_open": set(),
    "force_closed": set(),
    "sla": set(),
}
"""Modification kinds and the filter keys each one takes besides its own."""


class ScenarioError(YamlInputError):
    """A scenario file or modification is invalid; the message names the file and the key (every finding)."""


# ---------------------------------------------------------------------------------------------------
# The scenario file's model (pydantic): every key and value typed, bounds included
# ---------------------------------------------------------------------------------------------------
NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Share = Annotated[float, Field(ge=0, le=1)]
Period = Annotated[int, Field(ge=1)]
Stage = Literal[STAGES]  # type: ignore[valid-type]


def _known_solver(name: str) -> str:
    from solvers import registered

    if name.lower() not in registered():
        raise ValueError(f"unknown solver {name!r}; registered solvers are {sorted(registered())}")
    return name


class SolverSettings(YamlModel):
    """``solver:`` of a scenario or sweep spec: the backend and its common limits (seconds, relative gap)."""

    solver: Annotated[Name, AfterValidator(_known_solver)] | None = None
    time_limit: Positive | None = None
    mip_gap: Annotated[float, Field(ge=0, lt=1)] | None = None
    threads: Annotated[int, Field(ge=1)] | None = None


class StageChange(YamlModel):
    """``capacity: {site, stage, multiplier | count}``: a stage's equipment count scaled or set."""

    site: Name
    stage: Stage
    multiplier: NonNegative | None = None
    count: Positive | None = None

    @model_validator(mode="after")
    def _one_amount(self) -> StageChange:
        if (self.multiplier is None) == (self.count is None):
            raise ValueError("needs multiplier or count (one of them)")
        return self


class RateChange(YamlModel):
    """``rate: {site, stage, multiplier}``: a stage's rate (and labour productivity) scaled; site may be ``*``."""

    site: Name
    stage: Stage
    multiplier: NonNegative


class LaneRef(YamlModel):
    """``close_lane: {origin, destination}``."""

    origin: Name
    destination: Name


class CostChange(YamlModel):
    """``cost:`` multipliers of cost families."""

    fuel: NonNegative | None = None
    wages: NonNegative | None = None
    fixed: NonNegative | None = None
    capex: NonNegative | None = None
    handling: NonNegative | None = None


class SlaChange(YamlModel):
    """``sla:`` new service targets."""

    service_days: NonNegative | None = None
    service_share: Share | None = None
    order_to_ship_sla_hours: NonNegative | None = None
    max_distance_km: NonNegative | None = None


class Modification(YamlModel):
    """One entry of ``modifications``: exactly one kind key, plus the filters that kind takes."""

    close_site: Name | None = None
    close_port: Name | None = None
    close_lane: LaneRef | None = None
    demand_multiplier: NonNegative | None = None
    capacity: StageChange | None = None
    rate: RateChange | None = None
    cost: CostChange | None = None
    capex_budget: NonNegative | None = None
    force_open: Names | None = None
    force_closed: Names | None = None
    sla: SlaChange | None = None
    region: Names | None = None
    country: Names | None = None
    family: Names | None = None
    product: Names | None = None
    zone: Names | None = None
    periods: list[Period] | None = None

    @property
    def kind(self) -> str:
        """The modification's kind (its one key of :data:`MOD_KEYS`)."""
        return next(k for k in MOD_KEYS if k in self.model_fields_set)

    @model_validator(mode="after")
    def _one_kind(self) -> Modification:
        given = self.model_fields_set
        kinds = [k for k in MOD_KEYS if k in given]
        if len(kinds) != 1:
            raise ValueError(f"needs exactly one of {sorted(MOD_KEYS)}, got keys {sorted(given)}")
        kind = kinds[0]
        if getattr(self, kind) is None:
            raise error_at(kind, "needs a value")
        extra = sorted(given - {kind} - MOD_KEYS[kind])
        if extra:
            allowed = sorted(MOD_KEYS[kind])
            raise error_at(extra[0], f"unknown key for {kind} (allowed with it: {allowed or 'none'})")
        return self


class ScenarioFile(YamlModel):
    """A scenario file (see the module docstring); ``options`` are typed per decision by :data:`OPTION_MODELS`."""

    name: Name
    scenario_class: Literal[SCENARIO_CLASSES] = Field("tactical", alias="class")  # type: ignore[valid-type]
    decision: Literal[DECISIONS] = "consolidation"  # type: ignore[valid-type]
    description: Text | None = None
    baseline: Name | None = None
    options: dict[str, Any] | None = None
    solver: SolverSettings | None = None
    modifications: list[Modification] | None = None


def _iso_date(v: str) -> str:
    try:
        date.fromisoformat(v)
    except ValueError:
        raise ValueError(f"not an ISO date (YYYY-MM-DD): {v!r}") from None
    return v


class NetworkDesignScenarioOptions(YamlModel):
    """``options:`` of a ``consolidation`` scenario (:class:`formulations.network_design.NetworkDesignOptions`)."""

    single_source: bool | None = None
    service_days: NonNegative | None = None
    service_share: Share | None = None
    max_distance_km: Positive | None = None
    capex_budget: NonNegative | None = None
    min_open: Annotated[int, Field(ge=0)] | None = None
    max_open: Annotated[int, Field(ge=0)] | None = None
    force_open: Names | None = None
    force_closed: Names | None = None
    allow_unmet: bool | None = None
    capex_life_years: Positive | None = None
    interest_rate: NonNegative | None = None
    annualize_one_off: bool | None = None
    aggregate_products: Annotated[Any, AfterValidator(lambda v: _aggregate(v))] = None
    labor: bool | None = None
    strategy: Literal["auto", "direct", "relax_restore"] | None = None
    capacity_cut: bool | None = None

    @model_validator(mode="after")
    def _bounds_in_order(self) -> NetworkDesignScenarioOptions:
        if self.min_open is not None and self.max_open is not None and self.min_open > self.max_open:
            raise error_at("min_open", f"{self.min_open} is above max_open {self.max_open}")
        return self


def _aggregate(v: Any) -> Any:
    if v not in (True, False, None, "relax") or isinstance(v, int | float) and not isinstance(v, bool):
        raise ValueError(f"must be true, false or 'relax', got {v!r}")
    return v


class RedistributionScenarioOptions(YamlModel):
    """``options:`` of a ``redistribution`` scenario (:class:`formulations.redistribution.RedistributionOptions`)."""

    horizon_periods: Period | None = None
    lost_sales_penalty: NonNegative | None = None
    late_penalty_per_unit_day: NonNegative | None = None
    allow_late: bool | None = None
    truck_capacity_m3: Positive | None = None
    truck_capacity_kg: Positive | None = None
    truck_fixed_cost: NonNegative | None = None
    transfer_cost_per_unit: NonNegative | None = None
    max_transit_days: NonNegative | None = None
    allow_transfers: bool | None = None
    closed_sites: Names | None = None


class CapacityScenarioOptions(YamlModel):
    """``options:`` of a ``capacity`` scenario (:class:`formulations.capacity.CapacityOptions`)."""

    peak_periods: list[Period] | None = None
    weekday_profile: Annotated[list[NonNegative], Field(min_length=7, max_length=7)] | None = None
    spike_dates: list[Annotated[Name, AfterValidator(_iso_date)]] | None = None
    spike_multiplier: NonNegative | None = None
    temp_premium: NonNegative | None = None
    temp_hours_per_day: Annotated[float, Field(gt=0, le=24)] | None = None
    max_temp_share: Share | None = None
    extra_shift_hours: Annotated[float, Field(ge=0, le=24)] | None = None
    extra_shift_cost_per_day: NonNegative | None = None
    allow_extra_shift: bool | None = None
    allow_rebalancing: bool | None = None
    module_cost: Literal["annualized", "capex"] | None = None
    sla_breach_penalty: NonNegative | None = None
    hard_sla: bool | None = None


OPTION_MODELS: dict[str, type[YamlModel]] = {
    "consolidation": NetworkDesignScenarioOptions,
    "redistribution": RedistributionScenarioOptions,
    "capacity": CapacityScenarioOptions,
}
"""The model of ``options:`` per decision."""


def _validate(data: Any, source: str) -> list[Finding]:
    """Every structural finding of a scenario mapping (no instance needed): keys, types, bounds, options."""
    model, findings = validate_yaml(ScenarioFile, data, source)
    decision = data.get("decision", "consolidation") if isinstance(data, dict) else None
    options = data.get("options") if isinstance(data, dict) else None
    if decision in OPTION_MODELS and isinstance(options, dict):
        findings += validate_yaml(OPTION_MODELS[decision], options, source, prefix=("options",))[1]
    return findings


@dataclass(frozen=True)
class Scenario:
    """A what-if: metadata plus a list of modifications (see the module docstring)."""

    name: str
    scenario_class: str = "tactical"
    decision: str = "consolidation"
    modifications: tuple[dict[str, Any], ...] = ()
    baseline: str | None = None
    description: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    solver: dict[str, Any] = field(default_factory=dict)
    source: str = "<inline>"

    def with_modifications(self, mods: list[dict[str, Any]], name: str | None = None) -> Scenario:
        """A variant with ``mods`` appended (how a sweep makes its runs)."""
        new = replace(self, modifications=tuple(self.modifications) + tuple(copy.deepcopy(mods)),
                      name=name or self.name)
        raise_findings(_validate(new.to_dict(), new.source), ScenarioError)
        return new

    def to_dict(self) -> dict[str, Any]:
        """The scenario as the mapping of its YAML file."""
        return {"name": self.name, "class": self.scenario_class, "decision": self.decision,
                "description": self.description, "baseline": self.baseline, "options": dict(self.options),
                "solver": dict(self.solver), "modifications": [dict(m) for m in self.modifications]}

    def to_yaml(self) -> str:
        """The scenario as YAML text."""
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def check_against(self, instance: Instance) -> list[Finding]:
        """Every reference of the scenario the instance does not have, located: unknown sites (or sites of
        the wrong kind), lanes, zones, regions, countries, families, products and periods outside the horizon."""
        return _check_against(self, instance)


def scenario_from_dict(data: dict[str, Any], source: str = "<inline>") -> Scenario:
    """Build and check a Scenario from a parsed mapping; raises ScenarioError with every finding."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: must be a mapping with name, class, decision, modifications")
    raise_findings(_validate(data, source), ScenarioError)
    return Scenario(
        name=str(data["name"]), scenario_class=data.get("class", "tactical"),
        decision=data.get("decision", "consolidation"),
        modifications=tuple(data.get("modifications") or ()), baseline=data.get("baseline"),
        description=str(data.get("description") or ""), options=_listed(dict(data.get("options") or {})),
        solver=dict(data.get("solver") or {}), source=source,
    )


def _listed(options: dict[str, Any]) -> dict[str, Any]:
    """Options that take a list of site ids given one id (``force_open: DC_A``) as a one-element list."""
    return {k: [v] if k in ("force_open", "force_closed", "closed_sites") and isinstance(v, str) else v
            for k, v in options.items()}


def load_scenario(name_or_path: str | Path, instance_path: str | Path | None = None) -> Scenario:
    """Read a scenario file, or ``<instance>/scenarios/<name>.yaml`` when given a bare name."""
    p = Path(name_or_path)
    if not p.is_file() and instance_path is not None:
        folder = resolve_instance_path(instance_path) / "scenarios"
        cand = folder / f"{name_or_path}.yaml"
        if cand.is_file():
            p = cand
        else:
            known = sorted(f.stem for f in folder.glob("*.yaml")) if folder.is_dir() else []
            raise ScenarioError(f"{name_or_path}: no such scenario file nor scenario of {folder.parent.name}; "
                                f"{did_you_mean(str(name_or_path), known)}scenarios: {', '.join(known) or 'none'}")
    return scenario_from_dict(read_yaml_file(p, "scenario", ScenarioError), str(p))


def _ids(v: Any) -> list[str]:
    return [str(v)] if isinstance(v, str | int | float) else [str(x) for x in v]


def _check_against(scenario: Scenario, instance: Instance) -> list[Finding]:
    """The findings of :meth:`Scenario.check_against` (all of them, in file order)."""
    src = scenario.source
    out: list[Finding] = []
    sites = instance.sites.set_index("id")["kind"]
    zones, products = instance.zones.set_index("id"), instance.products.set_index("id")
    n_periods = len(instance.periods)

    def bad(key: str, message: str) -> None:
        out.append(Finding(src, None, key, message))

    def site(where: str, sid: Any, kinds: tuple[str, ...] | None = None) -> bool:
        sid = str(sid)
        if sid not in sites.index:
            bad(where, f"unknown site {sid!r}")
            return False
        if kinds and sites[sid] not in kinds:
            bad(where, f"site {sid!r} is a {sites[sid]}, expected one of {list(kinds)}")
            return False
        return True

    def periods(where: str, values: Any) -> None:
        for p in values or []:
            if not 1 <= p <= n_periods:
                bad(where, f"period {p} outside the horizon 1..{n_periods}")

    forced: dict[str, set[str]] = {"force_open": set(), "force_closed": set()}
    for i, m in enumerate(scenario.modifications):
        where = f"modifications[{i}]"
        kind = next(k for k in m if k in MOD_KEYS)
        v = m[kind]
        periods(f"{where}.periods", m.get("periods"))
        if kind == "close_port":
            site(f"{where}.close_port", v, ("port", "supplier"))
        elif kind == "close_site":
            site(f"{where}.close_site", v)
        elif kind == "close_lane":
            lanes = instance.lanes
            lane = (lanes["origin_id"] == str(v["origin"])) & (lanes["destination_id"] == str(v["destination"]))
            if not lane.any():
                bad(f"{where}.close_lane", f"no lane {v['origin']} -> {v['destination']}")
        elif kind == "demand_multiplier":
            for f in ("region", "country"):
                if f in m and not set(_ids(m[f])) & set(zones[f]):
                    bad(f"{where}.{f}", f"no zone has {f} in {sorted(_ids(m[f]))}")
            if "family" in m and not set(_ids(m["family"])) & set(products["family"]):
                bad(f"{where}.family", f"unknown product family {sorted(_ids(m['family']))}")
            for f, index, what in (("product", products.index, "product"), ("zone", zones.index, "zone")):
                unknown = sorted(set(_ids(m.get(f, []))) - set(index))
                if unknown:
                    bad(f"{where}.{f}", f"unknown {what}(s) {unknown}")
        elif kind in ("capacity", "rate"):
            if v["site"] == "*" or site(f"{where}.{kind}.site", v["site"]):
                res = instance.resources
                hit = (res["site_id"] == str(v["site"])) | (v["site"] == "*")
                if not (hit & (res["stage"] == v["stage"])).any():
                    bad(f"{where}.{kind}", f"site {v['site']!r} has no {v['stage']} resources")
        elif kind in forced:
            for sid in _ids(v):
                if site(f"{where}.{kind}", sid, ("dc", "crossdock")):
                    forced[kind].add(sid)
    options = scenario.options or {}
    for key in ("force_open", "force_closed", "closed_sites"):
        for sid in _ids(options.get(key) or []):
            site(f"options.{key}", sid, ("dc", "crossdock"))
    for key in ("peak_periods",):
        periods(f"options.{key}", options.get(key))
    horizon = options.get("horizon_periods")
    if isinstance(horizon, int) and horizon > n_periods:
        bad("options.horizon_periods", f"{horizon} periods, the horizon has {n_periods}")
    both = forced["force_open"] & forced["force_closed"]
    if both:
        bad("modifications", f"site(s) {sorted(both)} both forced open and closed")
    return out


def apply_scenario(instance: Instance, scenario: Scenario | None) -> Instance:
    """A new Instance with the scenario's modifications applied (the base is untouched).

    Raises ScenarioError with every finding of :meth:`Scenario.check_against` first.
    """
    if scenario is None:
        return instance
    raise_findings(scenario.check_against(instance), ScenarioError)
    t = {k: v.copy() for k, v in instance.tables.items()}
    meta = copy.deepcopy(instance.meta)
    sc: dict[str, Any] = {"name": scenario.name, "class": scenario.scenario_class,
                          "decision": scenario.decision, "force_open": [], "force_closed": [],
                          "closed_sites": [], "options": dict(scenario.options)}
    defaults = dict(meta.get("defaults") or {})
    site_ids = set(t["sites"]["id"])

    for m in scenario.modifications:
        kind = next(k for k in m if k in MOD_KEYS)
        v = m[kind]
        periods = m.get("periods")
        if kind == "close_port":
            s = t["supply"]
            hit = (s["site_id"] == v) & (s["period"].isin(periods) if periods else True)
            s.loc[hit, "capacity"] = 0.0
            t["supply"] = s
            if not periods:
                lanes = t["lanes"]
                t["lanes"] = lanes[lanes["origin_id"] != v].reset_index(drop=True)
            sc.setdefault("closed_ports", []).append({"site": v, "periods": periods})
        elif kind == "close_site":
            kind_of = t["sites"].loc[t["sites"]["id"] == v, "kind"].iloc[0]
            if kind_of in ("port", "supplier"):
                s = t["supply"]
                hit = (s["site_id"] == v) & (s["period"].isin(periods) if periods else True)
                s.loc[hit, "capacity"] = 0.0
                t["supply"] = s
            else:
                sc["force_closed"].append(v)
                sc["closed_sites"].append({"site": v, "periods": periods})
        elif kind == "close_lane":
            lanes = t["lanes"]
            hit = (lanes["origin_id"] == v["origin"]) & (lanes["destination_id"] == v["destination"])
            t["lanes"] = lanes[~hit].reset_index(drop=True)
        elif kind == "demand_multiplier":
            d = t["demand"]
            mask = pd.Series(True, index=d.index)
            zones, products = t["zones"].set_index("id"), t["products"].set_index("id")
            for f, col, table in (("region", "region", zones), ("country", "country", zones)):
                if f in m:
                    vals = set(_ids(m[f]))
                    mask &= d["zone_id"].map(table[col]).isin(vals)
            if "family" in m:
                vals = set(_ids(m["family"]))
                mask &= d["product_id"].map(products["family"]).isin(vals)
            if "product" in m:
                vals = set(_ids(m["product"]))
                mask &= d["product_id"].isin(vals)
            if "zone" in m:
                vals = set(_ids(m["zone"]))
                mask &= d["zone_id"].isin(vals)
            if periods:
                mask &= d["period"].isin(periods)
            d.loc[mask, "quantity"] = d.loc[mask, "quantity"] * float(v)
            t["demand"] = d
        elif kind in ("capacity", "rate"):
            r = t["resources"]
            sites = list(site_ids) if v["site"] == "*" else [v["site"]]
            hit = r["site_id"].isin(sites) & (r["stage"] == v["stage"])
            if kind == "capacity":
                if "count" in v:
                    r.loc[hit, "count"] = float(v["count"])
                else:
                    r.loc[hit, "count"] = r.loc[hit, "count"] * float(v["multiplier"])
            else:
                r.loc[hit, "rate_per_hour"] = r.loc[hit, "rate_per_hour"] * float(v["multiplier"])
                lab = t["labor"]
                col = f"productivity_{v['stage']}"
                if v["stage"] in LABOR_STAGES and col in lab:
                    lab.loc[lab["site_id"].isin(sites), col] *= float(v["multiplier"])
                    t["labor"] = lab
            t["resources"] = r
        elif kind == "cost":
            if "fuel" in v:
                t["lanes"] = t["lanes"].assign(cost_per_unit=t["lanes"]["cost_per_unit"] * float(v["fuel"]))
            if "wages" in v:
                lab = t["labor"]
                t["labor"] = lab.assign(hourly_rate=lab["hourly_rate"] * float(v["wages"]),
                                        overtime_rate=lab["overtime_rate"] * float(v["wages"]))
            if "fixed" in v:
                s = t["sites"]
                t["sites"] = s.assign(fixed_cost_per_year=s["fixed_cost_per_year"] * float(v["fixed"]))
            if "capex" in v:
                e = t["expansions"]
                t["expansions"] = e.assign(capex=e["capex"] * float(v["capex"]))
            if "handling" in v:
                defaults["handling_cost_per_unit"] = float(
                    defaults.get("handling_cost_per_unit", instance.defaults["handling_cost_per_unit"])
                ) * float(v["handling"])
        elif kind == "capex_budget":
            sc["capex_budget"] = float(v)
        elif kind in ("force_open", "force_closed"):
            sc[kind].extend(_ids(v))
        elif kind == "sla":
            for k, x in v.items():
                if k == "max_distance_km":
                    sc["max_distance_km"] = float(x)
                else:
                    defaults[k] = float(x)
    meta["defaults"] = defaults
    meta["scenario"] = sc
    return Instance(meta, t, instance.source)
