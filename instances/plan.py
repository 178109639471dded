"""A Plan: the answer of a formulation, made of tables (never solver objects).

Every formulation returns a :class:`Plan`. Its tables are declared once, as data (:data:`PLAN_SCHEMA`); a
formulation fills the ones that apply to its decision and leaves the others empty. The simulator, the
independent checker, the KPIs and the reports read only these tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from instances.plain import to_plain
from instances.schema import Column, TableSchema
from solvers.result import Termination


def _col(name: str, dtype: str, unit: str = "", description: str = "", **kw: Any) -> Column:
    return Column(name=name, dtype=dtype, unit=unit, description=description, **kw)


_NONNEG = {"min": 0.0}
"""The plan checker's lower bound (:func:`formulations.check.check_plan`, check ``negative``)."""

PLAN_SCHEMA: dict[str, TableSchema] = {t.name: t for t in (
    TableSchema("sites", "One row per site: is it open in the plan, and did that change?", (
        _col("site_id", "str", description="site"),
        _col("kind", "str", description="site kind (dc, port, supplier, crossdock)"),
        _col("status", "str", description="the site's status in the instance (existing or candidate)"),
        _col("open", "bool", description="open in the plan"),
        _col("opened", "bool", description="a candidate the plan opens"),
        _col("closed", "bool", description="an existing site the plan closes"),
    ), key=("site_id",)),
    TableSchema("flows", "Every shipment leg: port -> DC (inbound), DC -> zone (outbound), DC -> DC (transfer).", (
        _col("origin_id", "str", description="site the units leave"),
        _col("destination_id", "str", description="site or zone the units go to"),
        _col("product_id", "str", description="product"),
        _col("period", "int", "period", "dispatch period (1-based)"),
        _col("quantity", "float", "units/period", "units shipped", **_NONNEG),
        _col("leg", "str", description="inbound, outbound or transfer", choices=("inbound", "outbound", "transfer")),
    )),
    TableSchema("site_throughput", "Units handled per DC and period: received and shipped (to zones and DCs).", (
        _col("site_id", "str", description="DC"),
        _col("period", "int", "period", "period (1-based)"),
        _col("inbound_units", "float", "units/period", "units received (inbound dock, putaway)", **_NONNEG),
        _col("outbound_units", "float", "units/period", "units shipped (pick, pack, outbound dock)", **_NONNEG),
    ), key=("site_id", "period")),
    TableSchema("capacity", "Resource units per site and stage: installed, added by the plan, total.", (
        _col("site_id", "str", description="DC"),
        _col("stage", "str", description="process stage"),
        _col("base_count", "float", "resource units", "installed before the plan", **_NONNEG),
        _col("added_count", "float", "resource units", "added by the plan's modules", **_NONNEG),
        _col("total_count", "float", "resource units", "in operation under the plan (0 at a closed site)", **_NONNEG),
        _col("modules", "float", "modules", "expansion modules bought (whole numbers)", **_NONNEG),
        _col("capex", "float", "currency", "capital expenditure of the modules"),
        _col("extra_hours_per_day", "float", "h/day", "operating hours an extra shift adds (capacity plans)",
             required=False, default=0.0, **_NONNEG),
    ), key=("site_id", "stage")),
    TableSchema("labor", "Labour hours per site and period.", (
        _col("site_id", "str", description="DC"),
        _col("period", "int", "period", "period (1-based)"),
        _col("regular_hours", "float", "h/period", "regular hours worked", **_NONNEG),
        _col("overtime_hours", "float", "h/period", "overtime hours worked", **_NONNEG),
        _col("temp_hours", "float", "h/period", "hours of temporary staff", **_NONNEG),
    ), key=("site_id", "period")),
    TableSchema("unmet", "Demand not served (reported, never silent).", (
        _col("zone_id", "str", description="zone"),
        _col("product_id", "str", description="product"),
        _col("period", "int", "period", "period of the demand (1-based)"),
        _col("quantity", "float", "units", "units not served", **_NONNEG),
    )),
    TableSchema("transfers", "DC -> DC stock transfers as truckloads (redistribution).", (
        _col("origin_id", "str", description="DC the stock leaves"),
        _col("destination_id", "str", description="DC the stock goes to"),
        _col("product_id", "str", description="product"),
        _col("quantity", "float", "units", "units transferred", **_NONNEG),
        _col("trucks", "float", "trucks", "the row's share of the lane's whole truckloads", **_NONNEG),
        _col("transit_days", "float", "days", "transit time of the lane"),
        _col("period", "int", "period", "dispatch period (1-based)", required=False, default=1),
    )),
    TableSchema("assignment", "Which DC serves how much of each zone.", (
        _col("zone_id", "str", description="zone"),
        _col("site_id", "str", description="serving DC"),
        _col("period", "int", "period", "period (1-based)"),
        _col("quantity", "float", "units/period", "units the DC serves to the zone"),
        _col("share", "float", "share", "share of the zone's demand"),
    )),
    TableSchema("service", "Delivery time and distance per zone, demand-weighted over its serving DCs.", (
        _col("zone_id", "str", description="zone"),
        _col("demand", "float", "units", "demand over the horizon"),
        _col("avg_transit_days", "float", "days", "demand-weighted transit time"),
        _col("avg_distance_km", "float", "km", "demand-weighted distance"),
        _col("within_sla_share", "float", "share", "share of demand on lanes within the service promise"),
    ), key=("zone_id",)),
    TableSchema("costs", "Cost by component (annualized for strategic decisions, horizon total for tactical ones).", (
        _col("component", "str", description="cost component"),
        _col("amount", "float", "currency", "amount"),
    ), key=("component",)),
)}
"""Every plan table, declared once as data (columns with dtype, unit, description; ``min`` the checker's lower
bound; ``required=False`` columns take ``default`` where older plans or other decisions leave them out). The run
store's DDL, the checker, :meth:`Plan.load` and the report read it; nothing else spells out a plan table."""

PLAN_TABLES: dict[str, tuple[str, ...]] = {name: tuple(t.column_names) for name, t in PLAN_SCHEMA.items()}
"""Plan table name -> its column names, in declared order (derived from :data:`PLAN_SCHEMA`)."""

PLAN_COLUMN_DEFAULTS: dict[str, dict[str, Any]] = {
    name: {c.name: c.default for c in t.columns if not c.required} for name, t in PLAN_SCHEMA.items()
    if any(not c.required for c in t.columns)}
"""Values of declared columns that older plans (or other decisions) leave out (derived from
:data:`PLAN_SCHEMA`): a transfer without a period is dispatched in period 1; a capacity row without extra hours
has no extra shift."""


def plan_columns(name: str, dtype: str | None = None, checked_min: bool = False) -> list[str]:
    """Column names of plan table ``name``, optionally only those of ``dtype`` or with a declared lower bound."""
    return [c.name for c in PLAN_SCHEMA[name].columns
            if (dtype is None or c.dtype == dtype) and (not checked_min or c.min is not None)]


def with_column_defaults(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """``df`` (plan table ``name``) with every column of :data:`PLAN_COLUMN_DEFAULTS` it lacks, or has empty,
    filled with its default (a copy when anything is filled; ``df`` itself otherwise)."""
    defaults = PLAN_COLUMN_DEFAULTS.get(name, {})
    missing = {c: v for c, v in defaults.items() if c not in df.columns or df[c].isna().any()}
    if not missing or df.empty:
        return df
    df = df.copy()
    for c, v in missing.items():
        df[c] = df[c].fillna(v) if c in df.columns else v
    return df


def empty_plan_table(name: str) -> pd.DataFrame:
    """An empty table with the declared columns of plan table ``name``."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PLAN_TABLES[name]})


@dataclass
class Plan:
    """A solved plan.

    Attributes
    ----------
    decision : ``consolidation`` | ``redistribution`` | ``capacity``
    status : the solver termination, a :class:`solvers.Termination` (a string such as ``"optimal"`` is
        converted on assignment, one outside the vocabulary becomes ``unknown``)
    objective, bound, gap : from the solve (currency)
    tables : plan tables by name (see :data:`PLAN_TABLES`)
    meta : free-form facts (solver, times, parameters used)
    bases : LP bases of the solve by phase (:class:`solvers.Basis`), to warm-start a similar later solve;
        kept in memory and in run stores, not written with the plan tables
    multipliers : the Lagrangian multipliers of the relaxation behind the plan's bound, to start the subgradient of
        a similar later solve (a repair round, a what-if variant); in memory only
    """

    decision: str
    status: Termination
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    bases: dict[str, Any] = field(default_factory=dict, repr=False)
    multipliers: Any = field(default=None, repr=False)

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "status":  # every status is a Termination member, however it was set
            value = Termination.parse(value)
        super().__setattr__(name, value)

    def __post_init__(self) -> None:
        for name in PLAN_TABLES:
            if name not in self.tables or self.tables[name] is None:
                self.tables[name] = empty_plan_table(name)

    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables")
        if tables is not None and name in tables:
            return tables[name]
        raise AttributeError(name)

    @property
    def has_solution(self) -> bool:
        """Whether the plan holds a solution (an objective value)."""
        return self.objective is not None

    def cost(self, component: str | None = None) -> float:
        """Total cost, or one component's."""
        c = self.tables["costs"]
        if component is not None:
            c = c[c["component"] == component]
        return float(pd.to_numeric(c["amount"]).sum())

    def save(self, path: str | Path, parquet: bool = True) -> Path:
        """Write every table as CSV (and Parquet) plus ``plan.json`` with the scalars."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        for name, df in self.tables.items():
            df.to_csv(path / f"{name}.csv", index=False)
            if parquet:
                df.reset_index(drop=True).to_parquet(path / f"{name}.parquet", index=False)
        head = {"decision": self.decision, "status": self.status, "objective": self.objective,
                "bound": self.bound, "gap": self.gap, "meta": self.meta}
        (path / "plan.json").write_text(json.dumps(to_plain(head, non_finite="keep"), indent=2))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Plan:
        """Read a plan written by :meth:`save`."""
        path = Path(path)
        f = path / "plan.json"
        if not f.is_file():
            raise FileNotFoundError(f"{f}: not a plan folder (plan.json missing)")
        head = json.loads(f.read_text())
        tables = {}
        for name in PLAN_TABLES:
            csv = path / f"{name}.csv"
            if csv.is_file():
                tables[name] = with_column_defaults(name, pd.read_csv(
                    csv, dtype=dict.fromkeys(plan_columns(name, "str"), str)))
        return cls(decision=head["decision"], status=head["status"], objective=head.get("objective"),
                   bound=head.get("bound"), gap=head.get("gap"), tables=tables, meta=head.get("meta", {}))
