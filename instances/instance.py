"""The Instance: canonical tables plus ``instance.yaml``, loaded, validated and saved.

An instance is a folder holding ``instance.yaml`` and one file per canonical table (``<table>.csv`` or
``<table>.parquet``; see :mod:`instances.schema`). Loading never executes code from the files (safe YAML,
no pickle) and never writes to the folder.

``instance.yaml`` keys::

    name: eu_fba                 # required
    currency: EUR                # required
    horizon:                     # required: the planning periods
      start: 2026-01-05          #   first day of period 1
      periods: 52                #   number of periods
      period_days: 7             #   length of each period in days
    periods:                     # optional: explicit list, overrides lengths/labels
      - {period: 1, label: 2026-W02, days: 7}
    rate_card:                   # used to generate lanes when lanes.csv is absent
      road_factor: 1.25          #   road km per great-circle km
      max_lanes_per_zone: 0      #   nearest-k DCs that get a lane to each zone (0 = all)
      modes:
        road: {cost_per_unit: 0.3, cost_per_unit_km: 0.0012, km_per_day: 600}
    defaults: {...}              # planning parameters (see DEFAULTS)
"""

from __future__ import annotations

import copy
import itertools
import math
import re
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
import yaml
from pydantic import AfterValidator, BeforeValidator, Field, create_model

from instances.plain import to_plain
from instances.schema import FLOW_STAGES, NUMERIC_LIMIT, TABLES, TableSchema
from instances.validation import (
    Finding,
    InstanceValidationError,
    Name,
    Text,
    ValidationReport,
    YamlModel,
    did_you_mean,
    read_csv_located,
    safe_load_bounded,
    validate_yaml,
)

META_FILE = "instance.yaml"

DEFAULTS: dict[str, Any] = {
    "service_days": 2.0,  # order-to-delivery promise used by service constraints (days)
    "service_share": 0.0,  # least share of demand served within service_days (0 = no constraint)
    "capex_life_years": 10.0,  # annualisation life of capex
    "interest_rate": 0.06,  # annualisation interest rate
    "periods_per_year": 52.0,  # periods in a year (for annualising per-period costs)
    "unmet_demand_penalty": 50.0,  # currency per unit of demand not served
    "handling_cost_per_unit": 0.0,  # non-labour handling cost per unit through a DC
    "order_to_ship_sla_hours": 24.0,  # order-to-ship promise inside a DC (hours)
    "truck_capacity_m3": 80.0,  # truck volume for transfers
    "truck_capacity_kg": 24000.0,  # truck payload for transfers
    "truck_fixed_cost": 600.0,  # fixed cost per truck dispatched
}

DEFAULT_RATE_CARD: dict[str, Any] = {
    "road_factor": 1.25,
    "max_lanes_per_zone": 0,
    "modes": {"road": {"cost_per_unit": 0.30, "cost_per_unit_km": 0.0012, "km_per_day": 600.0}},
}

EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1: Any, lon1: Any, lat2: Any, lon2: Any) -> np.ndarray:
    """Great-circle distance in km (broadcasting over numpy arrays)."""
    p1, p2 = np.radians(lat1), np.radians(lat2)
    dphi = p2 - p1
    dlmb = np.radians(lon2) - np.radians(lon1)
    a = np.sin(dphi / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dlmb / 2) ** 2
    return 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))


@dataclass(frozen=True)
class Instance:
    """A validated planning instance: ``meta`` (instance.yaml) and canonical ``tables``.

    Immutable by convention: scenario code builds a new Instance with :meth:`replace`.
    Optional tables that were absent are present as empty frames with the declared columns.
    """

    meta: dict[str, Any]
    tables: dict[str, pd.DataFrame]
    source: Path | None = field(default=None, compare=False)

    # -- table accessors -------------------------------------------------------------------------
    def __getattr__(self, name: str) -> pd.DataFrame:
        tables = self.__dict__.get("tables")
        if tables is not None and name in TABLES:
            return tables[name]
        raise AttributeError(name)

    @property
    def name(self) -> str:
        """The instance name (``instance.yaml`` ``name``)."""
        return str(self.meta.get("name", ""))

    @property
    def currency(self) -> str:
        """The currency code of every cost in the instance (``instance.yaml`` ``currency``)."""
        return str(self.meta.get("currency", ""))

    @property
    def defaults(self) -> dict[str, Any]:
        """Planning parameters: DEFAULTS overlaid with ``instance.yaml``'s ``defaults``."""
        return {**DEFAULTS, **(self.meta.get("defaults") or {})}

    @property
    def periods(self) -> pd.DataFrame:
        """One row per period: ``period`` (1-based), ``label``, ``start`` (date), ``days``."""
        return periods_frame(self.meta)

    @property
    def dcs(self) -> pd.DataFrame:
        """Sites that hold stock and process orders (kind dc or crossdock)."""
        s = self.tables["sites"]
        return s[s["kind"].isin(["dc", "crossdock"])]

    @property
    def sources(self) -> pd.DataFrame:
        """Sites that supply the network (kind port or supplier)."""
        s = self.tables["sites"]
        return s[s["kind"].isin(["port", "supplier"])]

    def stage_capacity(self) -> pd.DataFrame:
        """Equipment capacity per site and throughput stage: units per day (count x rate x hours)."""
        r = self.tables["resources"]
        r = r[r["stage"].isin(FLOW_STAGES)]
        out = r[["site_id", "stage"]].copy()
        out["units_per_day"] = r["count"] * r["rate_per_hour"] * r["hours_per_day"]
        return out.reset_index(drop=True)

    def replace(self, meta: dict[str, Any] | None = None, **tables: pd.DataFrame) -> Instance:
        """A new Instance with some tables (or the meta) replaced; this one is untouched."""
        unknown = set(tables) - set(TABLES)
        if unknown:
            raise KeyError(f"unknown table(s): {sorted(unknown)}")
        new_tables = {k: (tables.get(k, v)) for k, v in self.tables.items()}
        return Instance(copy.deepcopy(meta if meta is not None else self.meta), new_tables, self.source)

    def copy(self) -> Instance:
        """A deep copy: meta and every table copied."""
        return Instance(copy.deepcopy(self.meta), {k: v.copy() for k, v in self.tables.items()}, self.source)

    def save(self, path: str | Path, fmt: str = "csv") -> Path:
        """Write ``instance.yaml`` and every non-empty table (``fmt`` = csv or parquet)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with open(path / META_FILE, "w", encoding="utf-8") as fh:
            yaml.safe_dump(to_plain(self.meta, non_finite="keep", other="keep"), fh, sort_keys=False,
                           allow_unicode=True)
        for name, schema in TABLES.items():
            df = self.tables.get(name)
            for ext in ("csv", "parquet"):
                stale = path / f"{name}.{ext}"
                if stale.exists() and ext != fmt:
                    stale.unlink()
            if df is None or (df.empty and not schema.required):
                continue
            df = df[schema.column_names]
            if fmt == "parquet":
                df.to_parquet(path / f"{name}.parquet", index=False)
            else:
                df.to_csv(path / f"{name}.csv", index=False, date_format="%Y-%m-%d")
        return path

    def summary(self) -> dict[str, Any]:
        """Counts and totals for ``twinplan validate`` and the demo."""
        s = self.tables["sites"]
        cap = self.stage_capacity().groupby("stage")["units_per_day"].sum()
        return {
            "name": self.name,
            "currency": self.currency,
            "sites_by_kind_status": {
                f"{k}/{st}": int(n) for (k, st), n in s.groupby(["kind", "status"]).size().items()
            },
            "zones": len(self.tables["zones"]),
            "products": len(self.tables["products"]),
            "periods": len(self.periods),
            "lanes": len(self.tables["lanes"]),
            "total_demand": float(self.tables["demand"]["quantity"].sum()),
            "capacity_units_per_day": {st: float(cap.get(st, 0.0)) for st in FLOW_STAGES},
        }


def periods_frame(meta: dict[str, Any]) -> pd.DataFrame:
    """The periods of ``meta`` as a table (period, label, start, days)."""
    horizon = meta.get("horizon") or {}
    start = pd.Timestamp(str(horizon.get("start", "2026-01-05")))
    explicit = meta.get("periods")
    if explicit:
        rows = []
        day = start
        for i, p in enumerate(explicit, start=1):
            days = float(p.get("days", horizon.get("period_days", 7)))
            rows.append({"period": int(p.get("period", i)), "label": str(p.get("label", f"P{i}")),
                         "start": day, "days": days})
            day = day + pd.Timedelta(days=days)
        return pd.DataFrame(rows)
    n = int(horizon.get("periods", 1))
    days = float(horizon.get("period_days", 7))
    starts = start + pd.to_timedelta(np.arange(n) * days, unit="D")
    if days == 7:
        labels = [f"{d.isocalendar().year}-W{d.isocalendar().week:02d}" for d in starts]
    elif days == 1:
        labels = [d.strftime("%Y-%m-%d") for d in starts]
    else:
        labels = [f"P{i}" for i in range(1, n + 1)]
    return pd.DataFrame({"period": np.arange(1, n + 1), "label": labels, "start": starts,
                         "days": np.full(n, days)})


# ---------------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------------
MAX_PERIODS = 100_000
"""Most periods a horizon may have (a guard against typos such as ``periods: 5200000``)."""


def _whole(v: Any) -> Any:
    """A whole float (``52.0``) as an int; anything else unchanged for the strict int check."""
    return int(v) if isinstance(v, float) and math.isfinite(v) and v % 1 == 0 else v


def _a_date(v: Any) -> Any:
    ok = isinstance(v, str | date)
    if ok:
        try:
            ok = not pd.isna(pd.Timestamp(str(v)))
        except (ValueError, TypeError, OverflowError):
            ok = False
    if not ok:
        raise ValueError(f"not a date (YYYY-MM-DD): {v!r}")
    return v


Days = Annotated[float, Field(gt=0, le=366)]
NonNegative = Annotated[float, Field(ge=0, le=NUMERIC_LIMIT)]
"""A number from 0 to NUMERIC_LIMIT (1e12): larger values are typing mistakes that would break the solvers."""


class Horizon(YamlModel):
    """``horizon:`` the planning periods: first day, number of periods, days per period."""

    start: Annotated[Any, AfterValidator(_a_date)] = None
    periods: Annotated[int, BeforeValidator(_whole), Field(ge=1, le=MAX_PERIODS)] | None = None
    period_days: Days | None = None


class PeriodEntry(YamlModel):
    """One entry of the explicit ``periods:`` list."""

    period: Annotated[int, BeforeValidator(_whole)] | None = None
    label: Text | None = None
    days: Days | None = None


class TransportMode(YamlModel):
    """``rate_card.modes.<mode>``: currency per unit, per unit and km, and km travelled per day."""

    cost_per_unit: NonNegative = DEFAULT_RATE_CARD["modes"]["road"]["cost_per_unit"]
    cost_per_unit_km: NonNegative = DEFAULT_RATE_CARD["modes"]["road"]["cost_per_unit_km"]
    km_per_day: Annotated[float, Field(gt=0)] = DEFAULT_RATE_CARD["modes"]["road"]["km_per_day"]


class RateCard(YamlModel):
    """``rate_card:`` how lanes are generated when ``lanes.csv`` is absent."""

    road_factor: Annotated[float, Field(gt=0)] | None = None
    max_lanes_per_zone: Annotated[int, BeforeValidator(_whole), Field(ge=0)] | None = None
    modes: Annotated[dict[Name, TransportMode], Field(min_length=1)] | None = None


Defaults = create_model(  # one optional non-negative number per planning default (see DEFAULTS)
    "Defaults", __base__=YamlModel, __doc__="``defaults:`` planning parameters (units in :data:`DEFAULTS`).",
    **{k: (NonNegative | None, None) for k in DEFAULTS})


class InstanceMeta(YamlModel):
    """``instance.yaml`` (see the module docstring); ``scenario``, ``peak``, ``calibration`` and ``source`` are
    written by twinplan itself (applied scenario, daily peak, calibration, provenance) and kept as they are."""

    name: Name
    currency: Name
    description: Text | None = None
    horizon: Horizon
    periods: Annotated[list[PeriodEntry], Field(max_length=MAX_PERIODS)] | None = None
    rate_card: RateCard | None = None
    defaults: Defaults | None = None  # type: ignore[valid-type]
    timezone: Name | None = None
    site_timezones: dict[Name, Name] | None = None
    source: dict[str, Any] | None = None
    scenario: dict[str, Any] | None = None
    peak: dict[str, Any] | None = None
    calibration: dict[str, Any] | None = None


def _period_findings(meta: dict[str, Any]) -> list[Finding]:
    """Period count and numbering, checked beside the model so they are reported with its other findings."""
    out = []
    explicit = meta.get("periods")
    horizon = meta.get("horizon")
    if isinstance(horizon, dict) and horizon.get("periods") is None and not explicit:
        out.append(Finding(META_FILE, None, "horizon.periods", "missing (or give an explicit periods list)"))
    for i, p in enumerate(explicit if isinstance(explicit, list) else []):
        if isinstance(p, dict) and "period" in p and p["period"] != i + 1:
            out.append(Finding(META_FILE, None, f"periods[{i}].period",
                               f"must be {i + 1} (periods are numbered 1, 2, ...), got {p['period']!r}"))
    return out


def read_meta(path: Path, report: ValidationReport) -> dict[str, Any]:
    """Read and check ``instance.yaml`` (safe YAML only: tags such as ``!!python/object`` are errors).

    Every finding goes to ``report`` as ``instance.yaml: key.path: message``; keys with findings are left out
    of the returned meta.
    """
    f = path / META_FILE
    if not f.is_file():
        report.error(META_FILE, 0, "", f"missing file {f}")
        return {}
    try:
        meta = safe_load_bounded(f.read_bytes().decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        report.error(META_FILE, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
        return {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark is not None else 0
        report.error(META_FILE, row, "", f"invalid YAML: {getattr(exc, 'problem', None) or exc}")
        return {}
    except RecursionError:
        report.error(META_FILE, 0, "", "invalid YAML: nested too deeply")
        return {}
    if not isinstance(meta, dict):
        report.error(META_FILE, 0, "", "must be a mapping of keys (name, currency, horizon, ...)")
        return {}
    findings = validate_yaml(InstanceMeta, meta, META_FILE)[1] + _period_findings(meta)
    report.extend(findings)
    bad = {re.split(r"[.\[]", f.column)[0] for f in findings}
    return {k: v for k, v in meta.items() if k not in bad}


def _read_raw(path: Path, schema: TableSchema, report: ValidationReport) -> pd.DataFrame | None:
    """Read one table as strings (CSV) or typed (Parquet); None when absent or unreadable."""
    csv, pq = path / f"{schema.name}.csv", path / f"{schema.name}.parquet"
    if csv.is_file():
        fname = csv.name
        df = read_csv_located(csv, fname, report, skipinitialspace=True)
        if df is None:
            return None
        df.columns = [str(c).strip() for c in df.columns]
        return df
    if pq.is_file():
        try:
            return pd.read_parquet(pq)
        except Exception as exc:  # noqa: BLE001 - any reader failure becomes a located finding
            report.error(pq.name, 0, "", f"cannot read Parquet: {exc}")
            return None
    if schema.required:
        report.error(schema.file_name, 0, "", f"missing file {csv}")
    return None


def empty_table(schema: TableSchema) -> pd.DataFrame:
    """An empty frame with the declared columns and dtypes."""
    return coerce_table(pd.DataFrame({c: pd.Series(dtype=object) for c in schema.column_names}),
                        schema, ValidationReport(), schema.file_name)


NA_TOKENS = ("nan", "na", "n/a", "#n/a", "null", "none")
"""Cells of a numeric or date column read as missing (case-insensitive), as spreadsheets write them."""

_MISSING_NUMBER = frozenset(
    {""} | {"".join(chars) for t in NA_TOKENS for chars in itertools.product(*((c.lower(), c.upper()) for c in t))}
)

MAX_CELL_FINDINGS = 200
"""Most findings reported per file, column and kind of problem; the rest are counted in one more finding."""


def _report_cells(report: ValidationReport, fname: str, column: str, bad: np.ndarray,
                  message: Any, values: pd.Series | None = None) -> None:
    """One located error per bad cell (``bad`` a boolean mask over data rows), at most MAX_CELL_FINDINGS.

    ``message`` is a string or, when ``values`` is given, a function of the offending cell value.
    """
    idx = np.flatnonzero(bad)
    for i in idx[:MAX_CELL_FINDINGS]:
        text = message(values.iat[i]) if values is not None else message
        report.error(fname, int(i) + 1, column, text)
    if len(idx) > MAX_CELL_FINDINGS:
        report.error(fname, int(idx[MAX_CELL_FINDINGS]) + 1, column,
                     f"... and {len(idx) - MAX_CELL_FINDINGS} more rows with the same problem")


def _cell_text(v: Any) -> str:
    if isinstance(v, str):
        return v.strip()
    if v is None or v is pd.NA or v is pd.NaT or (isinstance(v, float) and v != v):
        return ""
    return str(v).strip()


def _as_text(values: pd.Series) -> pd.Series:
    """Cells as stripped strings (object dtype); missing cells (None, NaN, NA) become ``""``.

    A plain comprehension: faster than chained pandas string methods on small tables and as fast on large.
    """
    return pd.Series([v.strip() if type(v) is str else _cell_text(v) for v in values.to_numpy(dtype=object)],
                     dtype=object)


def coerce_table(raw: pd.DataFrame, schema: TableSchema, report: ValidationReport, fname: str) -> pd.DataFrame:
    """Type every declared column, fill defaults and record located errors for bad cells.

    Vectorized (no per-cell Python) so that million-row tables load in seconds; typed numeric input
    (Parquet, generators) skips the text round trip.
    """
    out: dict[str, pd.Series] = {}
    n = len(raw)
    raw = raw.copy(deep=False)
    raw.columns = [str(c) for c in raw.columns]
    for c in raw.columns[raw.columns.duplicated()]:
        report.error(fname, 0, str(c), "duplicate column")
    raw = raw.loc[:, ~raw.columns.duplicated()]
    known = set(schema.column_names)
    for c in raw.columns:
        if c not in known:
            report.warning(fname, 0, str(c), "unknown column, ignored")
    for col in schema.columns:
        if col.name not in raw.columns:
            if col.required:
                report.error(fname, 0, col.name, "missing required column")
                out[col.name] = pd.Series([None] * n, dtype=object)
                continue
            values = pd.Series([col.default] * n, dtype=object)
        else:
            values = raw[col.name].reset_index(drop=True)
        numeric_input = (col.dtype in ("float", "int") and pd.api.types.is_numeric_dtype(values)
                         and not pd.api.types.is_bool_dtype(values))
        if numeric_input:
            num = values.astype(float)
            text = None
            is_empty = num.isna().to_numpy()
        else:
            text = _as_text(values)
            is_empty = (text == "").to_numpy() if col.dtype == "str" else text.isin(_MISSING_NUMBER).to_numpy()
        if col.dtype == "str":
            s = text
            if col.required:
                _report_cells(report, fname, col.name, is_empty, "missing value in required field")
            elif col.default is not None:
                s = s.where(~is_empty, col.default)
            if col.choices:
                bad = ~s.isin(col.choices).to_numpy()
                if col.required:
                    bad = bad & ~is_empty
                _report_cells(report, fname, col.name, bad,
                              lambda v, ch=col.choices: f"invalid value {v!r}: expected one of {list(ch)}", s)
            out[col.name] = s
            continue
        if col.dtype == "date":
            d = pd.to_datetime(text.where(~is_empty, None), errors="coerce", format="%Y-%m-%d")
            bad = d.isna().to_numpy() & ~is_empty
            _report_cells(report, fname, col.name, bad,
                          lambda v: f"wrong type: {v!r} is not a date (YYYY-MM-DD)", text)
            if col.required:
                _report_cells(report, fname, col.name, is_empty, "missing value in required field")
            out[col.name] = d
            continue
        if text is not None:
            num = pd.to_numeric(text.where(~is_empty, None), errors="coerce").astype(float)
            bad_type = num.isna().to_numpy() & ~is_empty
            _report_cells(report, fname, col.name, bad_type, lambda v: f"wrong type: {v!r} is not a number", text)
        if col.required:
            _report_cells(report, fname, col.name, is_empty, "missing value (NaN) in required field")
        elif col.default is not None:
            num = num.where(~is_empty, float(col.default))
        arr = num.to_numpy()
        finite = ~np.isnan(arr)
        inf = finite & np.isinf(arr)
        _report_cells(report, fname, col.name, inf, "value must be finite")
        ok = finite & ~inf
        safe = np.where(ok, arr, 0.0)
        if col.dtype == "int":
            fractional = ok & (safe % 1 != 0)
            _report_cells(report, fname, col.name, fractional, lambda v: f"wrong type: {v:g} is not an integer", num)
            ok = ok & ~fractional
        if col.min is not None:
            low = ok & ((safe <= col.min) if col.min_exclusive else (safe < col.min))
            if col.min_exclusive and col.min == 0:
                word = "negative or zero value: must be positive"
            elif col.min == 0:
                word = "must not be negative"
            else:
                word = f"must be >= {col.min:g}"
            _report_cells(report, fname, col.name, low, lambda v, w=word: f"{w} (got {v:g})", num)
        if col.max is not None:
            _report_cells(report, fname, col.name, ok & (safe > col.max),
                          lambda v, hi=col.max: f"out of range: {v:g} > {hi:g}", num)
        if col.dtype == "int":
            big = ok & (np.abs(safe) >= 2.0**53)
            _report_cells(report, fname, col.name, big, lambda v: f"out of range: {v:g} is too large an integer",
                          num)
            rounded = num.where(ok & ~big).round()
            out[col.name] = rounded.astype("Int64") if rounded.isna().any() else rounded.astype("int64")
        else:
            out[col.name] = num
    return pd.DataFrame(out, columns=schema.column_names)


def _check_keys(df: pd.DataFrame, schema: TableSchema, fname: str, report: ValidationReport) -> None:
    if not schema.key or df.empty:
        return
    dup = df.duplicated(list(schema.key), keep="first")
    for r in np.flatnonzero(dup.to_numpy()):
        key = ", ".join(str(df.iloc[r][k]) for k in schema.key)
        col = schema.key[0] if len(schema.key) == 1 else "+".join(schema.key)
        label = "duplicate id" if schema.key == ("id",) else "duplicate key"
        report.error(fname, r + 1, col, f"{label} ({key})")


def _check_references(
    tables: dict[str, pd.DataFrame], fnames: dict[str, str], report: ValidationReport
) -> None:
    ids = {t: set(tables[t]["id"]) for t in ("sites", "zones", "products") if t in tables}
    for name, schema in TABLES.items():
        df = tables.get(name)
        if df is None or df.empty:
            continue
        for col, targets in schema.foreign_keys.items():
            known: set[str] = set().union(*(ids.get(t, set()) for t in targets))
            bad = ~df[col].isin(known) & (df[col] != "")
            what = " or ".join(t.rstrip("s") for t in targets)
            for r, v in zip(np.flatnonzero(bad.to_numpy()) + 1, df.loc[bad, col]):
                report.error(fnames[name], r, col, f"unknown {what} {v!r}")


def _check_semantics(
    meta: dict[str, Any], tables: dict[str, pd.DataFrame], fnames: dict[str, str], report: ValidationReport
) -> None:
    """Cross-table rules: horizon, reachability, site kinds; warnings for suspicious data."""
    sites = tables["sites"]
    kind = dict(zip(sites["id"], sites["kind"]))
    n_periods = len(periods_frame(meta)) if meta else 0
    for name in ("demand", "supply"):
        df = tables.get(name)
        if df is None or df.empty or not n_periods:
            continue
        p = pd.to_numeric(df["period"], errors="coerce")
        bad = p.notna() & ((p < 1) | (p > n_periods))
        for r, v in zip(np.flatnonzero(bad.to_numpy()) + 1, p[bad]):
            report.error(fnames[name], r, "period", f"period {int(v)} outside the horizon 1..{n_periods}")
    supply = tables.get("supply")
    if supply is not None and not supply.empty:
        bad = supply["site_id"].map(kind).isin(["dc", "crossdock"])
        for r, v in zip(np.flatnonzero(bad.to_numpy()) + 1, supply.loc[bad, "site_id"]):
            report.error(fnames["supply"], r, "site_id", f"site {v!r} is a DC: supply comes from ports or suppliers")
    lanes = tables["lanes"]
    zones = tables["zones"]
    dc_ids = {s for s, k in kind.items() if k in ("dc", "crossdock")}
    if not dc_ids and not sites.empty:
        report.error(fnames["sites"], 0, "kind", "no site of kind dc or crossdock: the network has no DC to plan "
                                                 f"(kinds present: {sorted(set(kind.values()))})")
    if not zones.empty:
        reach = set(lanes.loc[lanes["origin_id"].isin(dc_ids), "destination_id"])
        for r, z in zip(np.arange(1, len(zones) + 1), zones["id"]):
            if z not in reach:
                report.error(fnames["zones"], r, "id", f"zone {z!r} cannot be reached: no lane from any DC")
    res = tables["resources"]
    with_res = set(res["site_id"])
    for r, (sid, k) in enumerate(zip(sites["id"], sites["kind"]), start=1):
        if k in ("dc", "crossdock") and sid not in with_res:
            report.warning(fnames["sites"], r, "id", f"site {sid!r} has no resources: it cannot process flow")
    demand = tables["demand"]
    if demand.empty:
        report.error(fnames["demand"], 0, "", "no demand rows (only a header): there is nothing to plan")
    elif not (demand["quantity"] > 0).any():
        report.error(fnames["demand"], 0, "quantity", "every demand quantity is 0: there is nothing to plan")
    if not demand.empty and not res.empty and n_periods:
        per = periods_frame(meta)
        days = per.set_index("period")["days"]
        daily = demand.groupby("period")["quantity"].sum() / days.reindex(
            demand.groupby("period")["quantity"].sum().index).to_numpy()
        flow = res[res["stage"].isin(FLOW_STAGES)]
        cap_stage = (flow["count"] * flow["rate_per_hour"] * flow["hours_per_day"]).groupby(flow["stage"]).sum()
        if len(cap_stage):
            bottleneck = float(cap_stage.min())
            peak = float(daily.max())
            if peak > 1.5 * bottleneck:
                stage = str(cap_stage.idxmin())
                report.warning(fnames["demand"], 0, "quantity",
                               f"peak demand {peak:,.0f} units/day is far above total {stage} capacity "
                               f"{bottleneck:,.0f} units/day")


def generate_lanes(meta: dict[str, Any], sites: pd.DataFrame, zones: pd.DataFrame) -> pd.DataFrame:
    """Lanes from great-circle distance x road factor and the rate card.

    Source (port/supplier) -> DC, DC -> DC (transfers) and DC -> zone (nearest ``max_lanes_per_zone``
    DCs per zone, all when 0). cost_per_unit = cost_per_unit + cost_per_unit_km x km,
    transit_days = km / km_per_day, for the first mode of the rate card.
    """
    card = {**DEFAULT_RATE_CARD, **(meta.get("rate_card") or {})}
    modes = card.get("modes") or DEFAULT_RATE_CARD["modes"]
    mode, rates = next(iter(modes.items()))
    road = float(card.get("road_factor", 1.25))
    k = int(card.get("max_lanes_per_zone", 0) or 0)
    dcs = sites[sites["kind"].isin(["dc", "crossdock"])]
    srcs = sites[sites["kind"].isin(["port", "supplier"])]
    frames = []

    def pairs(a: pd.DataFrame, b: pd.DataFrame, nearest: int = 0) -> pd.DataFrame:
        if a.empty or b.empty:
            return pd.DataFrame()
        d = haversine_km(a["lat"].to_numpy()[:, None], a["lon"].to_numpy()[:, None],
                         b["lat"].to_numpy()[None, :], b["lon"].to_numpy()[None, :]) * road
        mask = np.ones_like(d, dtype=bool)
        if nearest and nearest < len(a):
            order = np.argsort(d, axis=0)[:nearest]
            mask = np.zeros_like(d, dtype=bool)
            np.put_along_axis(mask, order, True, axis=0)
        ia, ib = np.nonzero(mask)
        keep = a["id"].to_numpy()[ia] != b["id"].to_numpy()[ib]
        ia, ib = ia[keep], ib[keep]
        km = d[ia, ib]
        return pd.DataFrame({
            "origin_id": a["id"].to_numpy()[ia], "destination_id": b["id"].to_numpy()[ib], "mode": mode,
            "cost_per_unit": np.round(float(rates.get("cost_per_unit", 0.0))
                                      + float(rates.get("cost_per_unit_km", 0.0)) * km, 4),
            "transit_days": np.round(km / float(rates.get("km_per_day", 600.0)), 2),
            "capacity": np.nan, "distance_km": np.round(km, 1),
        })

    frames = [pairs(srcs, dcs), pairs(dcs, dcs), pairs(dcs, zones, k)]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_table(TABLES["lanes"])
    return coerce_table(pd.concat(frames, ignore_index=True), TABLES["lanes"], ValidationReport(), "lanes.csv")


def validate_tables(meta: dict[str, Any], tables: dict[str, pd.DataFrame],
                    fnames: dict[str, str] | None = None) -> ValidationReport:
    """Key, reference and cross-table checks on already typed tables."""
    report = ValidationReport()
    fnames = fnames or {n: s.file_name for n, s in TABLES.items()}
    for name, schema in TABLES.items():
        if name in tables:
            _check_keys(tables[name], schema, fnames[name], report)
    _check_references(tables, fnames, report)
    _check_semantics(meta, tables, fnames, report)
    return report


def validate_instance(path: str | Path) -> tuple[Instance | None, ValidationReport]:
    """Load and validate a folder; returns the Instance (None on errors) and every finding."""
    path = Path(path)
    report = ValidationReport()
    if not path.is_dir():
        names = bundled_instances()
        report.error(str(path), 0, "", "not an instance folder (expected a directory with instance.yaml) nor a "
                     f"bundled instance; {did_you_mean(path.name, names)}bundled instances: {', '.join(names)}")
        return None, report
    meta = read_meta(path, report)
    tables: dict[str, pd.DataFrame] = {}
    fnames: dict[str, str] = {}
    for name, schema in TABLES.items():
        raw = _read_raw(path, schema, report)
        fname = schema.file_name
        if (path / f"{name}.parquet").is_file() and not (path / f"{name}.csv").is_file():
            fname = f"{name}.parquet"
        fnames[name] = fname
        tables[name] = empty_table(schema) if raw is None else coerce_table(raw, schema, report, fname)
    lanes_given = (path / "lanes.csv").is_file() or (path / "lanes.parquet").is_file()
    if not lanes_given and not any(f.severity == "error" and f.file in ("sites.csv", "zones.csv")
                                   for f in report.findings):
        tables["lanes"] = generate_lanes(meta, tables["sites"], tables["zones"])
    if report.ok:
        report.extend(validate_tables(meta, tables, fnames))
    else:
        # still report reference and key errors, which are independent of the bad cells
        ref = ValidationReport()
        for name, schema in TABLES.items():
            _check_keys(tables[name], schema, fnames[name], ref)
        _check_references(tables, fnames, ref)
        report.extend(ref)
    if not report.ok:
        return None, report
    return Instance(meta, tables, path), report


def load_instance(path: str | Path) -> Instance:
    """Load a validated Instance from a folder; raises :class:`InstanceValidationError` listing every error."""
    inst, report = validate_instance(path)
    if inst is None:
        raise InstanceValidationError(report, str(path))
    return inst


def bundled_instances() -> list[str]:
    """Names of the instances shipped with twinplan."""
    root = Path(__file__).resolve().parents[1] / "instances"
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())


def bundled_instance_path(name: str) -> Path:
    """Path of a bundled instance (``eu_fba``, ``us_west_port``, ``tiny``)."""
    p = Path(__file__).resolve().parents[1] / "instances" / name
    if not (p / META_FILE).is_file():
        raise FileNotFoundError(f"no bundled instance {name!r} (looked in {p})")
    return p


def resolve_instance_path(name_or_path: str | Path) -> Path:
    """A folder path as given, or a bundled instance by name."""
    p = Path(name_or_path)
    if p.is_dir():
        return p
    try:
        return bundled_instance_path(str(name_or_path))
    except FileNotFoundError:
        return p


def cheapest_lanes(lanes: pd.DataFrame) -> pd.DataFrame:
    """One lane per (origin, destination): the cheapest mode, then the fastest (the mode a flow uses by default)."""
    if lanes.empty:
        return lanes.reset_index(drop=True)
    ordered = lanes.sort_values(["origin_id", "destination_id", "cost_per_unit", "transit_days"], kind="stable")
    return ordered.drop_duplicates(["origin_id", "destination_id"], keep="first").reset_index(drop=True)
