"""A Plan: the answer of a formulation, made of tables (never solver objects).

Every formulation returns a :class:`Plan`. Its tables have declared columns (:data:`PLAN_TABLES`); a
formulation fills the ones that apply to its decision and leaves the others empty. The simulator, the
independent checker, the KPIs and the reports read only these tables.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

PLAN_TABLES: dict[str, tuple[str, ...]] = {
    # one row per site: is it open in the plan, and did that change?
    "sites": ("site_id", "kind", "status", "open", "opened", "closed"),
    # every shipment leg: port->DC (inbound), DC->zone (outbound), DC->DC (transfer); units per period
    "flows": ("origin_id", "destination_id", "product_id", "period", "quantity", "leg"),
    # units handled per DC and period: inbound (received) and outbound (shipped to zones and DCs)
    "site_throughput": ("site_id", "period", "inbound_units", "outbound_units"),
    # resource units per site and stage: installed, added by the plan, total; modules bought; operating hours
    # an extra shift adds per day (capacity plans; 0 when absent)
    "capacity": ("site_id", "stage", "base_count", "added_count", "total_count", "modules", "capex",
                 "extra_hours_per_day"),
    # labour hours per site and period
    "labor": ("site_id", "period", "regular_hours", "overtime_hours", "temp_hours"),
    # demand not served (reported, never silent)
    "unmet": ("zone_id", "product_id", "period", "quantity"),
    # DC->DC stock transfers as truckloads (redistribution); period = dispatch period (1 when absent)
    "transfers": ("origin_id", "destination_id", "product_id", "quantity", "trucks", "transit_days", "period"),
    # which DC serves how much of each zone (share of the zone's demand)
    "assignment": ("zone_id", "site_id", "period", "quantity", "share"),
    # delivery time and distance per zone, demand-weighted over its serving DCs
    "service": ("zone_id", "demand", "avg_transit_days", "avg_distance_km", "within_sla_share"),
    # cost by component (currency, annualized for strategic decisions, horizon total for tactical)
    "costs": ("component", "amount"),
}

PLAN_COLUMN_DEFAULTS: dict[str, dict[str, Any]] = {
    "transfers": {"period": 1},
    "capacity": {"extra_hours_per_day": 0.0},
}
"""Values of declared columns that older plans (or other decisions) leave out: a transfer without a period
is dispatched in period 1; a capacity row without extra hours has no extra shift."""


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


def _json_keys(obj: Any) -> Any:
    """``obj`` with every dict key JSON can hold: tuple keys such as ``(site, stage)`` become ``"site/stage"``."""
    if isinstance(obj, dict):
        return {("/".join(map(str, k)) if isinstance(k, tuple) else k if isinstance(k, str | int | float | bool)
                 else str(k)): _json_keys(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_keys(v) for v in obj]
    return obj


def empty_plan_table(name: str) -> pd.DataFrame:
    """An empty table with the declared columns of plan table ``name``."""
    return pd.DataFrame({c: pd.Series(dtype=object) for c in PLAN_TABLES[name]})


@dataclass
class Plan:
    """A solved plan.

    Attributes
    ----------
    decision : ``consolidation`` | ``redistribution`` | ``capacity``
    status : the solver termination (``optimal``, ``time_limit``, ``infeasible``, ...)
    objective, bound, gap : from the solve (currency)
    tables : plan tables by name (see :data:`PLAN_TABLES`)
    meta : free-form facts (solver, times, parameters used)
    bases : LP bases of the solve by phase (:class:`solvers.Basis`), to warm-start a similar later solve;
        kept in memory and in run stores, not written with the plan tables
    """

    decision: str
    status: str
    objective: float | None = None
    bound: float | None = None
    gap: float | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    bases: dict[str, Any] = field(default_factory=dict, repr=False)

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
        (path / "plan.json").write_text(json.dumps(_json_keys(head), indent=2, default=str))
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
                    csv, dtype={"site_id": str, "zone_id": str, "product_id": str, "origin_id": str,
                                "destination_id": str}))
        return cls(decision=head["decision"], status=head["status"], objective=head.get("objective"),
                   bound=head.get("bound"), gap=head.get("gap"), tables=tables, meta=head.get("meta", {}))
