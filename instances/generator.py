"""Deterministic, seeded generators of the bundled instances and of large synthetic networks.

``generate(preset, seed)`` returns an :class:`engine.instance.Instance`; ``twinplan generate`` writes it.
Presets: ``tiny`` (hand-checkable), ``eu_fba`` and ``us_west_port`` (realistic, on real cities), and
``synthetic`` (sizes given by the caller, for benchmarks).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from engine.instance import Instance, generate_lanes
from engine.schema import LABOR_STAGES, TABLES


def _table(name: str, rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rows into a frame with the declared columns, defaults filled and dtypes set."""
    from engine.instance import coerce_table
    from engine.validation import ValidationReport

    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    schema = TABLES[name]
    report = ValidationReport()
    out = coerce_table(df.astype(object), schema, report, schema.file_name)
    if not report.ok:  # a generator bug, not user input
        raise ValueError(report.format())
    return out


def _finish(meta: dict[str, Any], tables: dict[str, Any]) -> Instance:
    """Typed tables for every schema table (empty where not given), lanes generated if absent."""
    out = {name: _table(name, tables.get(name, pd.DataFrame(columns=s.column_names)))
           for name, s in TABLES.items()}
    if "lanes" not in tables:
        out["lanes"] = _table("lanes", generate_lanes(meta, out["sites"], out["zones"]))
    return Instance(meta, out)


def tiny() -> Instance:
    """3 DCs (one a candidate), one port, 5 zones, 2 products, 2 weekly periods: checkable by hand."""
    meta = {
        "name": "tiny",
        "currency": "EUR",
        "horizon": {"start": "2026-11-16", "periods": 2, "period_days": 7},
        "rate_card": {"road_factor": 1.25, "max_lanes_per_zone": 0,
                      "modes": {"road": {"cost_per_unit": 0.2, "cost_per_unit_km": 0.001, "km_per_day": 600}}},
        "defaults": {"service_days": 1.0, "periods_per_year": 52, "unmet_demand_penalty": 40.0,
                     "handling_cost_per_unit": 0.1, "order_to_ship_sla_hours": 24.0},
    }
    sites = [
        {"id": "PORT_HAM", "name": "Port of Hamburg", "kind": "port", "lat": 53.55, "lon": 9.99,
         "country": "DE", "region": "north", "status": "existing"},
        {"id": "DC_A", "name": "DC Hanover", "kind": "dc", "lat": 52.37, "lon": 9.73, "country": "DE",
         "region": "north", "status": "existing", "fixed_cost_per_year": 400000.0, "closing_cost": 50000.0,
         "automation": "mechanized"},
        {"id": "DC_B", "name": "DC Munich", "kind": "dc", "lat": 48.14, "lon": 11.58, "country": "DE",
         "region": "south", "status": "existing", "fixed_cost_per_year": 350000.0, "closing_cost": 50000.0,
         "automation": "manual"},
        {"id": "DC_C", "name": "DC Erfurt (candidate)", "kind": "dc", "lat": 50.98, "lon": 11.03,
         "country": "DE", "region": "central", "status": "candidate", "fixed_cost_per_year": 300000.0,
         "opening_cost": 100000.0, "automation": "automated"},
    ]
    zones = [
        {"id": "Z_BER", "name": "Berlin", "lat": 52.52, "lon": 13.40, "country": "DE", "region": "north",
         "weight": 3.6},
        {"id": "Z_HAM", "name": "Hamburg", "lat": 53.55, "lon": 9.99, "country": "DE", "region": "north",
         "weight": 1.8},
        {"id": "Z_MUC", "name": "Munich", "lat": 48.14, "lon": 11.58, "country": "DE", "region": "south",
         "weight": 1.5},
        {"id": "Z_CGN", "name": "Cologne", "lat": 50.94, "lon": 6.96, "country": "DE", "region": "west",
         "weight": 1.1},
        {"id": "Z_FRA", "name": "Frankfurt", "lat": 50.11, "lon": 8.68, "country": "DE", "region": "west",
         "weight": 0.8},
    ]
    products = [
        {"id": "P_SMALL", "family": "small", "unit_weight_kg": 0.5, "unit_volume_m3": 0.002, "unit_value": 20.0},
        {"id": "P_BULKY", "family": "bulky", "unit_weight_kg": 8.0, "unit_volume_m3": 0.05, "unit_value": 120.0,
         "handling_class": "bulky"},
    ]
    base = {"Z_BER": 3600, "Z_HAM": 1800, "Z_MUC": 1500, "Z_CGN": 1100, "Z_FRA": 800}
    demand = []
    for period, mult in ((1, 1.0), (2, 1.5)):
        for z, q in base.items():
            demand.append({"zone_id": z, "product_id": "P_SMALL", "period": period, "quantity": q * mult})
            demand.append({"zone_id": z, "product_id": "P_BULKY", "period": period, "quantity": q * mult / 10})
    resources = []
    for sid, scale in (("DC_A", 1.0), ("DC_B", 0.8), ("DC_C", 1.2)):
        for stage, count, rate in (("inbound_dock", 4, 150.0), ("putaway", 6, 60.0), ("pick", 10, 40.0),
                                   ("pack", 8, 50.0), ("outbound_dock", 4, 150.0)):
            resources.append({"site_id": sid, "stage": stage, "count": count * scale, "rate_per_hour": rate,
                              "hours_per_day": 16.0})
        resources.append({"site_id": sid, "stage": "storage", "count": 2000 * scale, "rate_per_hour": 10.0,
                          "hours_per_day": 24.0})
    expansions = [
        {"site_id": "DC_C", "stage": "pack", "module_size": 4, "capex": 80000.0, "opex_per_year": 5000.0,
         "max_modules": 3},
        {"site_id": "DC_A", "stage": "pack", "module_size": 2, "capex": 50000.0, "opex_per_year": 4000.0,
         "max_modules": 2},
    ]
    labor = []
    for sid, rate, heads in (("DC_A", 22.0, 40), ("DC_B", 20.0, 35), ("DC_C", 21.0, 45)):
        row = {"site_id": sid, "hourly_rate": rate, "max_headcount": heads, "overtime_rate": rate * 1.5,
               "max_overtime_hours": 200.0, "hours_per_person_week": 40.0}
        row.update({f"productivity_{s}": p for s, p in zip(LABOR_STAGES, (150.0, 60.0, 40.0, 50.0, 150.0))})
        labor.append(row)
    inventory = [
        {"site_id": s, "product_id": p, "on_hand": q}
        for s, p, q in (("DC_A", "P_SMALL", 9000), ("DC_A", "P_BULKY", 900), ("DC_B", "P_SMALL", 6000),
                        ("DC_B", "P_BULKY", 600))
    ]
    supply = [{"site_id": "PORT_HAM", "product_id": p, "period": t, "capacity": 40000.0}
              for p in ("P_SMALL", "P_BULKY") for t in (1, 2)]
    return _finish(meta, {"sites": sites, "zones": zones, "products": products, "demand": demand,
                          "resources": resources, "expansions": expansions, "labor": labor,
                          "inventory": inventory, "supply": supply})


PRESETS = {"tiny": tiny}


def generate(preset: str, seed: int = 0, **kwargs: Any) -> Instance:
    """Build a preset instance deterministically for ``seed``."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fn = PRESETS[preset]
    return fn(**kwargs) if preset == "tiny" else fn(seed=seed, **kwargs)
