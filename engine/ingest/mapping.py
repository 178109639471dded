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
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BeforeValidator, Field

from engine.ingest.units import UnitError, parse_unit
from instances.instance import Horizon, InstanceMeta
from instances.schema import TABLES, TableSchema
from instances.validation import Name, Text, ValidationReport, YamlModel, safe_load_bounded, validate_yaml

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
        """Key path of this source in the mapping file (``sources[i]``), for located findings."""
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
        """The mapping file's name (without its folder)."""
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


# ---------------------------------------------------------------------------------------------------
# The mapping file's model (pydantic); references to schemas, code maps and units are checked after it
# ---------------------------------------------------------------------------------------------------
def _regex_text(v: str) -> str:
    try:
        re.compile(v)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {v!r}: {exc}") from None
    return v


def _time_zone(v: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {v!r} (use IANA names like Europe/Berlin)") from None
    return v


def _column_entry(v: Any) -> Any:
    """``ignore`` / null / false -> None; a bare target name -> ``{to: name}``."""
    if v in ("ignore", None, False):
        return None
    return {"to": v} if isinstance(v, str) else v


Regex = Annotated[str, AfterValidator(_regex_text)]
TimeZone = Annotated[Name, AfterValidator(_time_zone)]
Code = Text


class ColumnSpec(YamlModel):
    """``columns.<source column>``: the canonical column it becomes, and how (unit, code map, parser)."""

    to: Name
    unit: Name | None = None
    unit_column: Name | None = None
    codes: Name | None = None
    parse: Literal[PARSERS] | None = None  # type: ignore[valid-type]
    currency: Name | None = None


class UnpivotSpec(YamlModel):
    """``unpivot:`` columns matching ``pattern`` (with named groups) become rows."""

    pattern: Regex
    columns_from: Name | None = None


class SourceFile(YamlModel):
    """One entry of ``sources``: an export file and how it maps to one canonical table."""

    file: Name
    table: Name
    columns: dict[Name, Annotated[ColumnSpec | None, BeforeValidator(_column_entry)]]
    ignore: list[Regex] | None = None
    constants: dict[Name, Any] | None = Field(None, alias="set")
    sep: Annotated[str, Field(min_length=1)] = ","
    decimal: Annotated[str, Field(min_length=1)] = "."
    timezone: TimeZone | None = None
    unpivot: UnpivotSpec | None = None
    aggregate: dict[Name, Literal[AGGREGATES]] | None = None  # type: ignore[valid-type]


class InstanceSection(InstanceMeta):
    """``instance:`` of a mapping: ``instance.yaml`` of the instance made (name, currency, horizon may come from
    the first mapping when several are merged)."""

    name: Name | None = None  # type: ignore[assignment]
    currency: Name | None = None  # type: ignore[assignment]
    horizon: Horizon | None = None  # type: ignore[assignment]
    timezone: TimeZone | None = None


class ProductivitySettings(YamlModel):
    """``productivity:`` parameters of the labour-standard normalisation (:mod:`engine.ingest.productivity`)."""

    walk_speed_m_per_min: Annotated[float, Field(gt=0)] | None = None
    extra_unit_share: Annotated[float, Field(ge=0)] | None = None
    reference_units_per_line: Annotated[float, Field(gt=0)] | None = None
    reference_complexity: Annotated[float, Field(gt=0)] | None = None


class MappingFile(YamlModel):
    """A mapping file (see the module docstring)."""

    description: Text | None = None
    instance: InstanceSection | None = None
    currency_rates: dict[Name, Annotated[float, Field(gt=0)]] | None = None
    merge_tolerance: Annotated[float, Field(ge=0)] = 0.02
    codes: dict[Name, dict[Code, Code]] | None = None
    site_timezones: dict[Name, TimeZone] | None = None
    productivity: ProductivitySettings | None = None
    sources: Annotated[list[SourceFile], Field(min_length=1)]


def _source(i: int, src: SourceFile, codes: dict[str, dict[str, str]], rates: dict[str, float], fname: str,
            report: ValidationReport) -> SourceSpec | None:
    """A checked SourceSpec: target table and columns exist, units convert, code maps are defined."""
    where = f"sources[{i}]"
    schema = target_schema(src.table)
    if schema is None:
        report.error(fname, None, f"{where}.table", f"unknown table {src.table!r}; expected one of "
                                                    f"{sorted(TABLES) + ['productivity']}")
        return None
    rules = []
    for col, spec in src.columns.items():
        at = f"{where}.columns.{col}"
        if spec is None:
            rules.append(ColumnRule(col, None))
            continue
        extra = ("timezone",) if schema.name == "sites" else ()
        if spec.to not in schema.column_names and spec.to not in extra:
            report.error(fname, None, at, f"table {schema.name!r} has no column {spec.to!r}; "
                                          f"expected one of {schema.column_names + list(extra)}")
            continue
        unit = spec.unit
        if spec.currency is not None:
            tunit = schema.column(spec.to).unit if spec.to in schema.column_names else ""
            unit = tunit.replace("currency", spec.currency, 1)
        if unit is not None and spec.to in schema.column_names:
            try:
                from engine.ingest.units import conversion_factor

                conversion_factor(unit, schema.column(spec.to).unit or "1", rates)
            except UnitError as exc:
                report.error(fname, None, at, str(exc))
        if spec.codes is not None and spec.codes not in codes:
            report.error(fname, None, f"{at}.codes", f"unknown code map {spec.codes!r}; defined: {sorted(codes)}")
        rules.append(ColumnRule(col, spec.to, unit, spec.unit_column, spec.codes, spec.parse))
    for col in src.constants or {}:
        if col not in schema.column_names:
            report.error(fname, None, f"{where}.set.{col}", f"table {schema.name!r} has no column {col!r}")
    unpivot = None
    if src.unpivot is not None:
        pat = re.compile(src.unpivot.pattern)
        if not pat.groupindex:
            report.error(fname, None, f"{where}.unpivot.pattern", "needs at least one named group (?P<name>...)")
        cf = src.unpivot.columns_from
        if cf is not None and cf not in pat.groupindex:
            report.error(fname, None, f"{where}.unpivot.columns_from", f"{cf!r} is not a group of the pattern")
        unpivot = Unpivot(pat, cf)
    return SourceSpec(i, src.file, schema.name, tuple(rules), tuple(re.compile(p) for p in src.ignore or ()),
                      dict(src.constants or {}), src.sep, src.decimal, src.timezone, unpivot,
                      dict(src.aggregate or {}))


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
    model, findings = validate_yaml(MappingFile, raw, fname)
    report.extend(findings)
    if model is None:
        return None
    instance = dict(raw.get("instance") or {})
    rates = dict(model.currency_rates or {})
    codes = {k: dict(v) for k, v in (model.codes or {}).items()}
    prod = model.productivity.model_dump(exclude_none=True) if model.productivity else {}
    m = Mapping(path, instance, rates, codes, dict(model.site_timezones or {}), prod, (), model.merge_tolerance)
    all_rates = m.rates()
    specs = [_source(i, s, codes, all_rates, fname, report) for i, s in enumerate(model.sources)]
    for s in specs:
        if s is None:
            continue
        for r in s.columns:
            if r.unit is not None:
                try:
                    parse_unit(r.unit, all_rates)
                except UnitError as exc:
                    report.error(fname, None, f"{s.where}.columns.{r.source}", str(exc))
    return Mapping(path, instance, rates, codes, m.site_timezones, prod,
                   tuple(s for s in specs if s is not None), m.merge_tolerance)
