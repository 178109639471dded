"""Mapping files: how one WMS/WCS export shape becomes canonical tables.

A mapping is YAML (safe-loaded, never executed)::

    instance:                       # the instance made (the first mapping's section wins when merging)
      name: uk_legacy
      currency: EUR
      horizon: {start: 2026-03-02, periods: 4, period_days: 7}
      timezone: Europe/London       # operating time zone of sites without their own
      defaults: {...}               # planning defaults (instances.instance.DEFAULTS)
      rate_card: {...}              # lanes are generated from it when no source gives lanes
    currency_rates: {GBP: 1.17}     # instance currency per one unit of each source currency
    merge_tolerance: 0.02           # master data given twice must agree within this relative difference
    codes:                          # code maps: source code -> canonical value (unknown codes are errors)
      site: {LHR1: DC_LON}
      stage: {RCV: inbound_dock, PCK: pick}
    site_timezones: {DC_LON: Europe/London}
    productivity: {walk_speed_m_per_min: 60, extra_unit_share: 0.15, reference_units_per_line: 1.5}
    sources:
      - file: items.csv             # file in the export folder
        table: products             # canonical table (or ``productivity``, see engine.ingest.productivity)
        sep: ","                    # CSV separator; ``decimal: ","`` for decimal commas
        timezone: UTC               # zone of naive timestamps in this file (default: the row's site zone)
        columns:                    # every column of the file must be mapped or ignored
          ITEM_NBR: {to: id, codes: product}
          WT_LB: {to: unit_weight_kg, unit: lb}
          CUBE: {to: unit_volume_m3, unit_column: CUBE_UOM}   # unit given per row
          ORDER_TS: {to: period, parse: datetime}             # timestamp -> local date -> period
          WEEK: {to: period, parse: isoweek}                  # 2026-W10 -> period
          NOTES: ignore
        ignore: ['^audit_']         # regexes of columns to ignore
        set: {kind: dc}             # constant columns
        unpivot:                    # wide exports: columns matching pattern become rows
          pattern: '^cap_(?P<stage>[A-Z]+)_(?P<measure>units|uph)$'
          columns_from: measure     # the group whose value names the new columns (else one ``value``)
        aggregate: {quantity: sum}  # rows sharing the table key are combined (sum|last|first|max|mean)

A ``productivity`` source gives per site and stage ``minutes_per_line`` t, ``units_per_line`` u,
``travel_m_per_line`` d, ``complexity`` c and ``lines`` n; the mapping's ``productivity`` section sets the
walking speed v, the extra share per additional unit beta and the reference profile (u_r, c_r). Then the
standard minutes per line h = (t - d/v) / (c (1 + beta (u - 1))) compare manual and automated sites, and
``labor.productivity_<stage>`` = 60 u_r / (h c_r (1 + beta (u_r - 1)) + d/v) units per labour hour (see
:mod:`engine.ingest.productivity`).

Column names created by ``unpivot`` (its named groups and the measure values) are mapped under
``columns`` like any other column.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from engine.ingest.units import UnitError, parse_unit
from instances.schema import TABLES, TableSchema
from instances.validation import ValidationReport, safe_load_bounded

PARSERS = ("date", "datetime", "isoweek")
AGGREGATES = ("sum", "first", "last", "max", "mean")


@dataclass(frozen=True)
class ColumnRule:
    """How one source column becomes one canonical column."""

    source: str
    target: str | None  # None: ignored
    unit: str | None = None
    unit_column: str | None = None
    codes: str | None = None
    parse: str | None = None


@dataclass(frozen=True)
class Unpivot:
    """Wide-to-long reshaping: columns matching ``pattern`` become rows."""

    pattern: re.Pattern[str]
    columns_from: str | None = None


@dataclass(frozen=True)
class SourceSpec:
    """One export file and how it maps to one canonical table."""

    index: int
    file: str
    table: str
    columns: tuple[ColumnRule, ...]
    ignore: tuple[re.Pattern[str], ...] = ()
    constants: dict[str, Any] = field(default_factory=dict)
    sep: str = ","
    decimal: str = "."
    timezone: str | None = None
    unpivot: Unpivot | None = None
    aggregate: dict[str, str] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"sources[{self.index}]"


@dataclass(frozen=True)
class Mapping:
    """A parsed mapping file (see the module docstring)."""

    path: Path
    instance: dict[str, Any]
    currency_rates: dict[str, float]
    codes: dict[str, dict[str, str]]
    site_timezones: dict[str, str]
    productivity: dict[str, float]
    sources: tuple[SourceSpec, ...]
    merge_tolerance: float = 0.02

    @property
    def file_name(self) -> str:
        return self.path.name

    def rates(self) -> dict[str, float]:
        """Currency rates including the instance currency itself (rate 1)."""
        cur = str(self.instance.get("currency", "") or "")
        return {**({cur: 1.0} if cur else {}), **self.currency_rates}


def target_schema(table: str) -> TableSchema | None:
    """The schema a source may target: a canonical table or the ``productivity`` measurements."""
    from engine.ingest.productivity import PRODUCTIVITY

    if table == PRODUCTIVITY.name:
        return PRODUCTIVITY
    return TABLES.get(table)


def _str_map(value: Any, where: str, fname: str, report: ValidationReport) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        report.error(fname, 0, where, "must be a mapping")
        return {}
    return {str(k): str(v) for k, v in value.items()}


def _regex(text: Any, where: str, fname: str, report: ValidationReport) -> re.Pattern[str] | None:
    try:
        return re.compile(str(text))
    except re.error as exc:
        report.error(fname, 0, where, f"invalid regular expression {text!r}: {exc}")
        return None


def _column_rule(src: str, spec: Any, where: str, schema: TableSchema, codes: dict[str, dict[str, str]],
                 rates: dict[str, float], fname: str, report: ValidationReport) -> ColumnRule | None:
    if spec in ("ignore", None, False):
        return ColumnRule(src, None)
    if isinstance(spec, str):
        spec = {"to": spec}
    if not isinstance(spec, dict):
        report.error(fname, 0, where, f"expected a target column name or a mapping, got {spec!r}")
        return None
    unknown = set(spec) - {"to", "unit", "unit_column", "codes", "parse", "currency"}
    if unknown:
        report.error(fname, 0, where, f"unknown key(s) {sorted(unknown)}")
    target = spec.get("to")
    if target is None:
        report.error(fname, 0, where, "missing 'to' (the canonical column)")
        return None
    target = str(target)
    extra = ("timezone",) if schema.name == "sites" else ()
    if target not in schema.column_names and target not in extra:
        report.error(fname, 0, where, f"table {schema.name!r} has no column {target!r}; "
                                      f"expected one of {schema.column_names + list(extra)}")
        return None
    unit = spec.get("unit")
    if spec.get("currency") is not None:
        tunit = schema.column(target).unit if target in schema.column_names else ""
        unit = tunit.replace("currency", str(spec["currency"]), 1)
    if unit is not None and target in schema.column_names:
        try:
            from engine.ingest.units import conversion_factor

            conversion_factor(str(unit), schema.column(target).unit or "1", rates)
        except UnitError as exc:
            report.error(fname, 0, where, str(exc))
    code_map = spec.get("codes")
    if code_map is not None and str(code_map) not in codes:
        report.error(fname, 0, where, f"unknown code map {code_map!r}; defined: {sorted(codes)}")
    parse = spec.get("parse")
    if parse is not None and parse not in PARSERS:
        report.error(fname, 0, where, f"unknown parse {parse!r}; expected one of {list(PARSERS)}")
    return ColumnRule(src, target, None if unit is None else str(unit),
                      None if spec.get("unit_column") is None else str(spec["unit_column"]),
                      None if code_map is None else str(code_map), parse)


def _source(i: int, raw: Any, codes: dict[str, dict[str, str]], rates: dict[str, float], fname: str,
            report: ValidationReport) -> SourceSpec | None:
    where = f"sources[{i}]"
    if not isinstance(raw, dict):
        report.error(fname, 0, where, "must be a mapping with file, table and columns")
        return None
    unknown = set(raw) - {"file", "table", "columns", "ignore", "set", "sep", "decimal", "timezone", "unpivot",
                          "aggregate"}
    if unknown:
        report.error(fname, 0, where, f"unknown key(s) {sorted(unknown)}")
    for key in ("file", "table", "columns"):
        if key not in raw:
            report.error(fname, 0, where, f"missing {key!r}")
    if any(k not in raw for k in ("file", "table", "columns")):
        return None
    schema = target_schema(str(raw["table"]))
    if schema is None:
        report.error(fname, 0, f"{where}.table", f"unknown table {raw['table']!r}; expected one of "
                                                 f"{sorted(TABLES) + ['productivity']}")
        return None
    if not isinstance(raw["columns"], dict):
        report.error(fname, 0, f"{where}.columns", "must map source column -> target")
        return None
    rules = [_column_rule(str(src), spec, f"{where}.columns.{src}", schema, codes, rates, fname, report)
             for src, spec in raw["columns"].items()]
    constants = raw.get("set") or {}
    if not isinstance(constants, dict):
        report.error(fname, 0, f"{where}.set", "must map column -> constant value")
        constants = {}
    for col in constants:
        if col not in schema.column_names:
            report.error(fname, 0, f"{where}.set.{col}", f"table {schema.name!r} has no column {col!r}")
    ignore = [_regex(p, f"{where}.ignore", fname, report) for p in (raw.get("ignore") or [])]
    unpivot = None
    if raw.get("unpivot") is not None:
        u = raw["unpivot"]
        pat = _regex(u.get("pattern", "") if isinstance(u, dict) else "", f"{where}.unpivot.pattern", fname, report)
        if pat is not None and not pat.groupindex:
            report.error(fname, 0, f"{where}.unpivot.pattern", "needs at least one named group (?P<name>...)")
        cf = u.get("columns_from") if isinstance(u, dict) else None
        if pat is not None and cf is not None and cf not in pat.groupindex:
            report.error(fname, 0, f"{where}.unpivot.columns_from", f"{cf!r} is not a group of the pattern")
        unpivot = Unpivot(pat, cf) if pat is not None else None
    aggregate = _str_map(raw.get("aggregate"), f"{where}.aggregate", fname, report)
    for col, how in aggregate.items():
        if how not in AGGREGATES:
            report.error(fname, 0, f"{where}.aggregate.{col}", f"unknown aggregate {how!r}; use {list(AGGREGATES)}")
    tz = raw.get("timezone")
    if tz is not None:
        _check_tz(str(tz), f"{where}.timezone", fname, report)
    return SourceSpec(i, str(raw["file"]), schema.name, tuple(r for r in rules if r is not None),
                      tuple(p for p in ignore if p is not None), dict(constants), str(raw.get("sep", ",")),
                      str(raw.get("decimal", ".")), None if tz is None else str(tz), unpivot, aggregate)


def _check_tz(tz: str, where: str, fname: str, report: ValidationReport) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        report.error(fname, 0, where, f"unknown time zone {tz!r} (use IANA names like Europe/Berlin)")


def read_mapping(path: str | Path, report: ValidationReport) -> Mapping | None:
    """Parse and check a mapping file; every problem goes to ``report`` (None when unusable)."""
    path = Path(path)
    fname = str(path)
    if not path.is_file():
        report.error(fname, 0, "", "mapping file not found")
        return None
    try:
        raw = safe_load_bounded(path.read_text(encoding="utf-8"))  # safe tags only, no alias bombs
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        report.error(fname, mark.line + 1 if mark is not None else 0, "", f"invalid YAML: {exc}")
        return None
    if not isinstance(raw, dict):
        report.error(fname, 0, "", "must be a mapping with instance, codes and sources")
        return None
    unknown = set(raw) - {"instance", "currency_rates", "codes", "site_timezones", "productivity", "sources",
                          "merge_tolerance", "description"}
    if unknown:
        report.error(fname, 0, "", f"unknown key(s) {sorted(unknown)}")
    instance = raw.get("instance") or {}
    if not isinstance(instance, dict):
        report.error(fname, 0, "instance", "must be a mapping")
        instance = {}
    rates: dict[str, float] = {}
    for code, rate in (raw.get("currency_rates") or {}).items():
        if not isinstance(rate, int | float) or isinstance(rate, bool) or rate <= 0:
            report.error(fname, 0, f"currency_rates.{code}", f"must be a positive number, got {rate!r}")
        else:
            rates[str(code)] = float(rate)
    codes_raw = raw.get("codes") or {}
    codes = {str(k): _str_map(v, f"codes.{k}", fname, report) for k, v in codes_raw.items()} \
        if isinstance(codes_raw, dict) else {}
    site_tz = _str_map(raw.get("site_timezones"), "site_timezones", fname, report)
    for site, tz in site_tz.items():
        _check_tz(tz, f"site_timezones.{site}", fname, report)
    if instance.get("timezone") is not None:
        _check_tz(str(instance["timezone"]), "instance.timezone", fname, report)
    prod = raw.get("productivity") or {}
    if not isinstance(prod, dict) or not all(isinstance(v, int | float) for v in prod.values()):
        report.error(fname, 0, "productivity", "must map parameter -> number")
        prod = {}
    m = Mapping(path, instance, rates, codes, site_tz, {k: float(v) for k, v in prod.items()}, (),
                float(raw.get("merge_tolerance", 0.02)))
    all_rates = m.rates()
    sources = raw.get("sources")
    if not isinstance(sources, list) or not sources:
        report.error(fname, 0, "sources", "must be a non-empty list of sources")
        sources = []
    specs = [_source(i, s, codes, all_rates, fname, report) for i, s in enumerate(sources)]
    for s in specs:
        if s is None:
            continue
        for r in s.columns:
            if r.unit is not None:
                try:
                    parse_unit(r.unit, all_rates)
                except UnitError as exc:
                    report.error(fname, 0, f"{s.where}.columns.{r.source}", str(exc))
    return Mapping(path, instance, rates, codes, site_tz, m.productivity,
                   tuple(s for s in specs if s is not None), m.merge_tolerance)
