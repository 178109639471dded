"""The declared schema of every canonical table: one place for columns, types, units, defaults.

In the spirit of PyPSA's component attribute tables: the schema is data. Loaders, validators,
generators and ingestion all read it from here; nothing else spells out a column list.

Each table lists its columns with
- ``dtype``: ``str``, ``float``, ``int``, ``bool`` (plan tables, :mod:`instances.plan`) or ``date`` (ISO
  ``YYYY-MM-DD``);
- ``unit``: the physical unit (metric) or ``currency`` (the instance's currency);
- ``required``: when ``False``, a missing column or empty cell takes ``default``
  (``None`` means the cell may stay empty, i.e. NaN, e.g. an unlimited lane capacity);
- ``choices``: the allowed values of a categorical column;
- ``min`` / ``max`` and ``min_exclusive``: the legal numeric range. Every numeric column has a ``max``: its own
  where the quantity has a natural ceiling (hours in a day, degrees, a horizon), else :data:`NUMERIC_LIMIT`,
  so that no absurd magnitude (``1e308`` units) reaches a solver, where it would fail without a location.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

STAGES: tuple[str, ...] = ("inbound_dock", "putaway", "pick", "pack", "outbound_dock", "storage")
"""Process stages of a DC, in flow order; ``storage`` is a level, not a throughput stage."""

FLOW_STAGES: tuple[str, ...] = STAGES[:-1]
"""The throughput stages (every stage but storage)."""

INBOUND_STAGES: tuple[str, ...] = STAGES[:2]
"""Stages loaded by the units a DC receives (inbound dock, putaway); the other flow stages by the units it ships."""

LABOR_STAGES: tuple[str, ...] = FLOW_STAGES
"""Stages whose work needs labour; productivity columns in ``labor.csv`` are ``productivity_<stage>``."""

SITE_KINDS: tuple[str, ...] = ("dc", "port", "supplier", "crossdock")
SITE_STATUSES: tuple[str, ...] = ("existing", "candidate")
AUTOMATION_LEVELS: tuple[str, ...] = ("manual", "mechanized", "automated")


@dataclass(frozen=True)
class Column:
    """One column of a canonical table."""

    name: str
    dtype: str
    unit: str = ""
    required: bool = True
    default: Any = None
    description: str = ""
    choices: tuple[str, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False


@dataclass(frozen=True)
class TableSchema:
    """A canonical table: file stem, columns, key columns and foreign keys."""

    name: str
    description: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()
    required: bool = True
    foreign_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)
    """column -> tables whose ``id`` it must match (any of them)."""

    @property
    def file_name(self) -> str:
        """The CSV file name of the table (``<name>.csv``)."""
        return f"{self.name}.csv"

    @property
    def column_names(self) -> list[str]:
        """Names of the declared columns, in order."""
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        """The declared column ``name``; KeyError naming the table when it has none."""
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"table {self.name!r} has no column {name!r}")


NUMERIC_LIMIT = 1e12
"""Largest magnitude of any number in an instance (units, currency, resource counts...) unless its column
declares a tighter ``max``. Far above any real network (a trillion units or euros) and far below where
solvers lose precision or treat a coefficient as infinite (HiGHS: 1e20)."""

MAX_COUNT = 1e7
"""Largest count of resource units, modules, or persons at one site."""

MAX_PERIOD = 100_000
"""Largest period number (the horizon has at most this many periods)."""


def _c(name: str, dtype: str, unit: str = "", description: str = "", **kw: Any) -> Column:
    if dtype in ("float", "int") and kw.get("max") is None:
        kw["max"] = NUMERIC_LIMIT
    return Column(name=name, dtype=dtype, unit=unit, description=description, **kw)


_POS = {"min": 0.0, "min_exclusive": True}
_NONNEG = {"min": 0.0}

SITES = TableSchema(
    "sites",
    "Ports, suppliers, DCs and cross-docks, existing or candidate.",
    (
        _c("id", "str", description="unique site id"),
        _c("name", "str", description="display name"),
        _c("kind", "str", description="site kind", choices=SITE_KINDS),
        _c("lat", "float", "deg", "latitude (WGS84)", min=-90.0, max=90.0),
        _c("lon", "float", "deg", "longitude (WGS84)", min=-180.0, max=180.0),
        _c("country", "str", description="ISO country code", required=False, default=""),
        _c("region", "str", description="planning region", required=False, default=""),
        _c("status", "str", description="existing or candidate", required=False, default="existing",
           choices=SITE_STATUSES),
        _c("fixed_cost_per_year", "float", "currency/year", "fixed cost while open", required=False,
           default=0.0, **_NONNEG),
        _c("opening_cost", "float", "currency", "one-off cost of opening a candidate", required=False,
           default=0.0, **_NONNEG),
        _c("closing_cost", "float", "currency", "one-off cost of closing an existing site", required=False,
           default=0.0, **_NONNEG),
        _c("automation", "str", description="automation level", required=False, default="manual",
           choices=AUTOMATION_LEVELS),
    ),
    key=("id",),
)

RESOURCES = TableSchema(
    "resources",
    "Installed resources per site and process stage. For ``storage``, count is storage positions and "
    "rate_per_hour the units held per position (capacity = count x rate_per_hour units).",
    (
        _c("site_id", "str", description="site"),
        _c("stage", "str", description="process stage", choices=STAGES),
        _c("count", "float", "resource units", "installed units (stations, doors, positions)", max=MAX_COUNT,
           **_POS),
        _c("rate_per_hour", "float", "units/(resource unit * h)", "throughput per resource unit and hour",
           **_POS),
        _c("hours_per_day", "float", "h/day", "operating hours per day", required=False, default=16.0,
           min=0.0, max=24.0, min_exclusive=True),
    ),
    key=("site_id", "stage"),
    foreign_keys={"site_id": ("sites",)},
)

EXPANSIONS = TableSchema(
    "expansions",
    "Capacity expansion modules that may be added per site and stage.",
    (
        _c("site_id", "str", description="site"),
        _c("stage", "str", description="process stage", choices=STAGES),
        _c("module_size", "float", "resource units", "resource units one module adds", max=MAX_COUNT, **_POS),
        _c("capex", "float", "currency", "investment per module", **_NONNEG),
        _c("opex_per_year", "float", "currency/year", "running cost per module", required=False,
           default=0.0, **_NONNEG),
        _c("max_modules", "int", "modules", "most modules that may be added", max=MAX_COUNT, **_NONNEG),
    ),
    key=("site_id", "stage"),
    required=False,
    foreign_keys={"site_id": ("sites",)},
)

PRODUCTS = TableSchema(
    "products",
    "Products (or product families treated as one SKU class).",
    (
        _c("id", "str", description="unique product id"),
        _c("family", "str", description="product family", required=False, default=""),
        _c("unit_weight_kg", "float", "kg", "weight per unit", **_POS),
        _c("unit_volume_m3", "float", "m3", "volume per unit", **_POS),
        _c("unit_value", "float", "currency", "value per unit", required=False, default=0.0, **_NONNEG),
        _c("handling_class", "str", description="handling class (e.g. standard, bulky, fragile)",
           required=False, default="standard"),
    ),
    key=("id",),
)

ZONES = TableSchema(
    "zones",
    "Demand zones (customer regions).",
    (
        _c("id", "str", description="unique zone id"),
        _c("name", "str", description="display name", required=False, default=""),
        _c("lat", "float", "deg", "latitude (WGS84)", min=-90.0, max=90.0),
        _c("lon", "float", "deg", "longitude (WGS84)", min=-180.0, max=180.0),
        _c("country", "str", description="ISO country code", required=False, default=""),
        _c("region", "str", description="planning region", required=False, default=""),
        _c("weight", "float", "", "relative demand weight (e.g. population share)", required=False,
           default=1.0, **_NONNEG),
    ),
    key=("id",),
)

DEMAND = TableSchema(
    "demand",
    "Demand per zone, product and period.",
    (
        _c("zone_id", "str", description="demand zone"),
        _c("product_id", "str", description="product"),
        _c("period", "int", "period", "period number (1-based, within the horizon)", min=1.0, max=MAX_PERIOD),
        _c("quantity", "float", "units", "units demanded in the period", **_NONNEG),
    ),
    key=("zone_id", "product_id", "period"),
    foreign_keys={"zone_id": ("zones",), "product_id": ("products",)},
)

LANES = TableSchema(
    "lanes",
    "Transport lanes: site -> site or site -> zone. Generated from the rate card when absent.",
    (
        _c("origin_id", "str", description="origin site"),
        _c("destination_id", "str", description="destination site or zone"),
        _c("mode", "str", description="transport mode (key of the rate card)", required=False,
           default="road"),
        _c("cost_per_unit", "float", "currency/unit", "transport cost per unit shipped", **_NONNEG),
        _c("transit_days", "float", "days", "transit time", max=3650.0, **_NONNEG),
        _c("capacity", "float", "units/period", "lane capacity; empty = unlimited", required=False,
           default=None, **_POS),
        _c("distance_km", "float", "km", "road distance; empty = great-circle x road factor",
           required=False, default=None, **_NONNEG),
    ),
    key=("origin_id", "destination_id", "mode"),
    required=False,
    foreign_keys={"origin_id": ("sites",), "destination_id": ("sites", "zones")},
)

INVENTORY = TableSchema(
    "inventory",
    "On-hand stock per site and product at the start of the horizon.",
    (
        _c("site_id", "str", description="site"),
        _c("product_id", "str", description="product"),
        _c("on_hand", "float", "units", "units on hand", **_NONNEG),
    ),
    key=("site_id", "product_id"),
    required=False,
    foreign_keys={"site_id": ("sites",), "product_id": ("products",)},
)

SUPPLY = TableSchema(
    "supply",
    "Supply available at ports and suppliers per product and period.",
    (
        _c("site_id", "str", description="port or supplier"),
        _c("product_id", "str", description="product"),
        _c("period", "int", "period", "period number", min=1.0, max=MAX_PERIOD),
        _c("capacity", "float", "units/period", "units available in the period", **_NONNEG),
    ),
    key=("site_id", "product_id", "period"),
    required=False,
    foreign_keys={"site_id": ("sites",), "product_id": ("products",)},
)

LABOR = TableSchema(
    "labor",
    "Labour per site: cost, headcount, overtime and productivity per stage (units per labour hour).",
    (
        _c("site_id", "str", description="site"),
        _c("hourly_rate", "float", "currency/h", "regular wage per labour hour", **_NONNEG),
        _c("max_headcount", "float", "persons", "most staff on the payroll", max=MAX_COUNT, **_NONNEG),
        _c("overtime_rate", "float", "currency/h", "overtime wage per labour hour", **_NONNEG),
        _c("max_overtime_hours", "float", "h/week", "most overtime hours per week, site total", max=MAX_COUNT * 168,
           **_NONNEG),
        _c("hours_per_person_week", "float", "h/week", "regular hours per person and week",
           required=False, default=40.0, max=168.0, **_POS),
        *(
            _c(f"productivity_{s}", "float", "units/labour-h", f"units handled per labour hour at {s}",
               **_POS)
            for s in LABOR_STAGES
        ),
    ),
    key=("site_id",),
    required=False,
    foreign_keys={"site_id": ("sites",)},
)

ACTUALS = TableSchema(
    "actuals",
    "Observed operations per site, stage and day (for calibration).",
    (
        _c("site_id", "str", description="site"),
        _c("stage", "str", description="process stage", choices=STAGES),
        _c("date", "date", "", "calendar day (YYYY-MM-DD)"),
        _c("throughput", "float", "units/day", "units processed", **_NONNEG),
        _c("labor_hours", "float", "h/day", "labour hours worked", **_NONNEG),
        _c("backlog", "float", "units", "backlog at end of day", **_NONNEG),
        _c("rostered_hours", "float", "h/day", "labour hours scheduled (rostered) for the day; the hours worked "
           "(labor_hours, clocked by the staff present) are at most these, the difference is absence; optional "
           "(needed only to fit absenteeism)", required=False, default=None, **_NONNEG),
    ),
    key=("site_id", "stage", "date"),
    required=False,
    foreign_keys={"site_id": ("sites",)},
)

TABLES: dict[str, TableSchema] = {
    t.name: t
    for t in (SITES, RESOURCES, EXPANSIONS, PRODUCTS, ZONES, DEMAND, LANES, INVENTORY, SUPPLY, LABOR, ACTUALS)
}
"""Every canonical table, by name (also the file stem)."""


def schema_frame():  # pragma: no cover - documentation helper
    """All columns of all tables as one DataFrame (for docs and notebooks)."""
    import pandas as pd

    rows = [
        {
            "table": t.name,
            "column": c.name,
            "dtype": c.dtype,
            "unit": c.unit,
            "required": c.required,
            "default": c.default,
            "description": c.description,
        }
        for t in TABLES.values()
        for c in t.columns
    ]
    return pd.DataFrame(rows)
