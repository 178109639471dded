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

Applying a scenario returns a new Instance; the base is never modified. Decisions that are not data
(forced sites, budget, SLA) go into ``meta["scenario"]`` where the formulations read them.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from formulations.registry import DECISIONS
from instances.instance import Instance, resolve_instance_path
from instances.schema import LABOR_STAGES, STAGES
from instances.validation import read_yaml_file

SCENARIO_CLASSES = ("strategic", "tactical")
TOP_KEYS = {"name", "class", "decision", "description", "baseline", "options", "solver", "modifications"}
SOLVER_KEYS = {"solver", "time_limit", "mip_gap", "threads"}
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
COST_KEYS = {"fuel", "wages", "fixed", "capex", "handling"}
SLA_KEYS = {"service_days", "service_share", "order_to_ship_sla_hours", "max_distance_km"}


class ScenarioError(ValueError):
    """A scenario file or modification is invalid; the message names the file and the key."""


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
        _check(new.to_dict(), new.source)
        return new

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "class": self.scenario_class, "decision": self.decision,
                "description": self.description, "baseline": self.baseline, "options": dict(self.options),
                "solver": dict(self.solver), "modifications": [dict(m) for m in self.modifications]}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def _err(source: str, key: str, msg: str) -> ScenarioError:
    return ScenarioError(f"{source}: {key}: {msg}")


def _num(source: str, key: str, v: Any, lo: float | None = 0.0, strict: bool = False) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v):
        raise _err(source, key, f"must be a number, got {v!r}")
    if lo is not None and (v < lo or (strict and v <= lo)):
        raise _err(source, key, f"must be {'>' if strict else '>='} {lo:g}, got {v!r}")
    return float(v)


def _numeric_mapping(source: str, where: str, v: Any, allowed: set[str], unknown: str) -> None:
    """A modification's value that must map known keys to non-negative numbers (``cost``, ``sla``)."""
    if not isinstance(v, dict):
        raise _err(source, where, f"must be a mapping of {sorted(allowed)}")
    for k, x in v.items():
        if k not in allowed:
            raise _err(source, f"{where}.{k}", f"{unknown} (allowed: {sorted(allowed)})")
        _num(source, f"{where}.{k}", x)


def _check(data: dict[str, Any], source: str) -> None:
    """Structural checks that need no instance: keys, classes, value types."""
    unknown = set(data) - TOP_KEYS
    if unknown:
        raise _err(source, sorted(unknown)[0], f"unknown key (allowed: {sorted(TOP_KEYS)})")
    if not data.get("name"):
        raise _err(source, "name", "missing")
    if data.get("class", "tactical") not in SCENARIO_CLASSES:
        raise _err(source, "class", f"must be one of {list(SCENARIO_CLASSES)}, got {data.get('class')!r}")
    if data.get("decision", "consolidation") not in DECISIONS:
        raise _err(source, "decision", f"must be one of {list(DECISIONS)}, got {data.get('decision')!r}")
    for key in ("options", "solver"):
        if data.get(key) is not None and not isinstance(data[key], dict):
            raise _err(source, key, "must be a mapping")
    unknown = set(data.get("solver") or {}) - SOLVER_KEYS
    if unknown:
        raise _err(source, f"solver.{sorted(unknown)[0]}", f"unknown key (allowed: {sorted(SOLVER_KEYS)})")
    mods = data.get("modifications") or []
    if not isinstance(mods, list):
        raise _err(source, "modifications", "must be a list")
    for i, m in enumerate(mods):
        where = f"modifications[{i}]"
        if not isinstance(m, dict):
            raise _err(source, where, f"must be a mapping, got {m!r}")
        kinds = [k for k in m if k in MOD_KEYS]
        if len(kinds) != 1:
            raise _err(source, where, f"needs exactly one of {sorted(MOD_KEYS)}, got keys {sorted(m)}")
        kind = kinds[0]
        extra = set(m) - {kind} - MOD_KEYS[kind]
        if extra:
            raise _err(source, f"{where}.{sorted(extra)[0]}", f"unknown key for {kind}")
        v = m[kind]
        if kind == "demand_multiplier":
            _num(source, f"{where}.demand_multiplier", v)
        elif kind == "capex_budget":
            _num(source, f"{where}.capex_budget", v)
        elif kind in ("capacity", "rate"):
            if not isinstance(v, dict) or "site" not in v or "stage" not in v:
                raise _err(source, f"{where}.{kind}", "needs site, stage and multiplier (or count)")
            if v["stage"] not in STAGES:
                raise _err(source, f"{where}.{kind}.stage", f"unknown stage {v['stage']!r}; one of {list(STAGES)}")
            if "multiplier" in v:
                _num(source, f"{where}.{kind}.multiplier", v["multiplier"])
            elif kind == "capacity" and "count" in v:
                _num(source, f"{where}.{kind}.count", v["count"], strict=True)
            else:
                raise _err(source, f"{where}.{kind}", "needs multiplier" + (" or count" if kind == "capacity" else ""))
            extra = set(v) - {"site", "stage", "multiplier", "count"}
            if extra:
                raise _err(source, f"{where}.{kind}.{sorted(extra)[0]}", "unknown key")
        elif kind == "cost":
            _numeric_mapping(source, f"{where}.cost", v, COST_KEYS, "unknown cost")
        elif kind == "sla":
            _numeric_mapping(source, f"{where}.sla", v, SLA_KEYS, "unknown key")
            if "service_share" in v and v["service_share"] > 1:
                raise _err(source, f"{where}.sla.service_share", "must be within [0, 1]")
        elif kind == "close_lane":
            if not isinstance(v, dict) or {"origin", "destination"} - set(v):
                raise _err(source, f"{where}.close_lane", "needs origin and destination")
        elif kind in ("force_open", "force_closed") and not isinstance(v, list | str):
            raise _err(source, f"{where}.{kind}", "must be a site id or a list of site ids")
        if "periods" in m and (not isinstance(m["periods"], list)
                               or not all(isinstance(p, int) and not isinstance(p, bool) for p in m["periods"])):
            raise _err(source, f"{where}.periods", "must be a list of period numbers")


def scenario_from_dict(data: dict[str, Any], source: str = "<inline>") -> Scenario:
    """Build and check a Scenario from a parsed mapping."""
    if not isinstance(data, dict):
        raise ScenarioError(f"{source}: must be a mapping with name, class, decision, modifications")
    _check(data, source)
    return Scenario(
        name=str(data["name"]), scenario_class=data.get("class", "tactical"),
        decision=data.get("decision", "consolidation"),
        modifications=tuple(data.get("modifications") or ()), baseline=data.get("baseline"),
        description=str(data.get("description") or ""), options=dict(data.get("options") or {}),
        solver=dict(data.get("solver") or {}), source=source,
    )


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
            raise ScenarioError(f"{name_or_path}: no such scenario file or scenario name (known: {known})")
    return scenario_from_dict(read_yaml_file(p, "scenario", ScenarioError), str(p))


def _ids(v: Any) -> list[str]:
    return [v] if isinstance(v, str) else [str(x) for x in v]


def apply_scenario(instance: Instance, scenario: Scenario | None) -> Instance:
    """A new Instance with the scenario's modifications applied (the base is untouched)."""
    if scenario is None:
        return instance
    src = scenario.source
    t = {k: v.copy() for k, v in instance.tables.items()}
    meta = copy.deepcopy(instance.meta)
    sc: dict[str, Any] = {"name": scenario.name, "class": scenario.scenario_class,
                          "decision": scenario.decision, "force_open": [], "force_closed": [],
                          "closed_sites": [], "options": dict(scenario.options)}
    defaults = dict(meta.get("defaults") or {})
    site_ids = set(t["sites"]["id"])
    n_periods = len(instance.periods)

    def need_site(where: str, sid: str, kinds: tuple[str, ...] | None = None) -> None:
        if sid not in site_ids:
            raise _err(src, where, f"unknown site {sid!r}")
        if kinds:
            kind = t["sites"].loc[t["sites"]["id"] == sid, "kind"].iloc[0]
            if kind not in kinds:
                raise _err(src, where, f"site {sid!r} is a {kind}, expected one of {list(kinds)}")

    def need_periods(where: str, periods: list[int] | None) -> None:
        for p in periods or []:
            if not 1 <= p <= n_periods:
                raise _err(src, f"{where}.periods", f"period {p} outside the horizon 1..{n_periods}")

    for i, m in enumerate(scenario.modifications):
        where = f"modifications[{i}]"
        kind = next(k for k in m if k in MOD_KEYS)
        v = m[kind]
        periods = m.get("periods")
        need_periods(where, periods)
        if kind == "close_port":
            need_site(f"{where}.close_port", v, ("port", "supplier"))
            s = t["supply"]
            hit = (s["site_id"] == v) & (s["period"].isin(periods) if periods else True)
            s.loc[hit, "capacity"] = 0.0
            t["supply"] = s
            if not periods:
                lanes = t["lanes"]
                t["lanes"] = lanes[lanes["origin_id"] != v].reset_index(drop=True)
            sc.setdefault("closed_ports", []).append({"site": v, "periods": periods})
        elif kind == "close_site":
            need_site(f"{where}.close_site", v)
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
            if not hit.any():
                raise _err(src, f"{where}.close_lane", f"no lane {v['origin']} -> {v['destination']}")
            t["lanes"] = lanes[~hit].reset_index(drop=True)
        elif kind == "demand_multiplier":
            d = t["demand"]
            mask = pd.Series(True, index=d.index)
            zones, products = t["zones"].set_index("id"), t["products"].set_index("id")
            for f, col, table in (("region", "region", zones), ("country", "country", zones)):
                if f in m:
                    vals = set(_ids(m[f]))
                    if not vals & set(table[col]):
                        raise _err(src, f"{where}.{f}", f"no zone has {f} in {sorted(vals)}")
                    mask &= d["zone_id"].map(table[col]).isin(vals)
            if "family" in m:
                vals = set(_ids(m["family"]))
                if not vals & set(products["family"]):
                    raise _err(src, f"{where}.family", f"unknown product family {sorted(vals)}")
                mask &= d["product_id"].map(products["family"]).isin(vals)
            if "product" in m:
                vals = set(_ids(m["product"]))
                if vals - set(products.index):
                    raise _err(src, f"{where}.product", f"unknown product(s) {sorted(vals - set(products.index))}")
                mask &= d["product_id"].isin(vals)
            if "zone" in m:
                vals = set(_ids(m["zone"]))
                if vals - set(zones.index):
                    raise _err(src, f"{where}.zone", f"unknown zone(s) {sorted(vals - set(zones.index))}")
                mask &= d["zone_id"].isin(vals)
            if periods:
                mask &= d["period"].isin(periods)
            d.loc[mask, "quantity"] = d.loc[mask, "quantity"] * float(v)
            t["demand"] = d
        elif kind in ("capacity", "rate"):
            r = t["resources"]
            sites = list(site_ids) if v["site"] == "*" else [v["site"]]
            if v["site"] != "*":
                need_site(f"{where}.{kind}.site", v["site"])
            hit = r["site_id"].isin(sites) & (r["stage"] == v["stage"])
            if not hit.any():
                raise _err(src, f"{where}.{kind}", f"site {v['site']!r} has no {v['stage']} resources")
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
            for sid in _ids(v):
                need_site(f"{where}.{kind}", sid, ("dc", "crossdock"))
                sc[kind].append(sid)
        elif kind == "sla":
            for k, x in v.items():
                if k == "max_distance_km":
                    sc["max_distance_km"] = float(x)
                else:
                    defaults[k] = float(x)
    both = set(sc["force_open"]) & set(sc["force_closed"])
    if both:
        raise _err(src, "modifications", f"site(s) {sorted(both)} both forced open and closed")
    meta["defaults"] = defaults
    meta["scenario"] = sc
    return Instance(meta, t, instance.source)
