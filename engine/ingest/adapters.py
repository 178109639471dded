"""Source adapters: one export file + its mapping rules -> one typed canonical frame with provenance.

Every problem is reported against the export file and its data row (1-based, header not counted), all
in one pass: unmapped or missing columns, unknown codes, unparsable numbers and timestamps, unit
mismatches, values out of the declared range, duplicate keys. Each returned frame carries ``_file`` and
``_row`` so that later merge errors can still point at the export row.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd

from engine.ingest.mapping import ColumnRule, Mapping, SourceSpec, target_schema
from engine.ingest.units import UnitError, conversion_factor
from instances.instance import coerce_table, periods_frame
from instances.validation import ValidationReport, read_csv_located

PROVENANCE = ("_file", "_row")
_ISOWEEK = re.compile(r"^(\d{4})-?W(\d{1,2})(?:-?([1-7]))?$")


@dataclass(frozen=True)
class Context:
    """What a source needs beyond its own rules: the mapping, horizon and site time zones."""

    mapping: Mapping
    meta: dict
    site_timezones: dict[str, str]

    @property
    def default_tz(self) -> str:
        """Time zone of sites without their own: the mapping's ``instance.timezone``, else UTC."""
        return str(self.meta.get("timezone") or "UTC")


def read_export(path: Path, spec: SourceSpec, label: str, report: ValidationReport) -> pd.DataFrame | None:
    """Read an export CSV as text; the header is checked for duplicate names."""
    if not path.is_file():
        report.error(label, 0, "", "export file not found")
        return None
    raw = read_csv_located(path, label, report, sep=spec.sep, header=None)
    if raw is None:
        return None
    header = [str(c).strip() for c in raw.iloc[0]]
    seen: set[str] = set()
    for c in header:
        if c in seen:
            report.error(label, 0, c, "duplicate column in the header")
        seen.add(c)
    df = raw.iloc[1:].reset_index(drop=True)
    df.columns = header
    df = df.loc[:, ~pd.Index(header).duplicated()]
    df = df.map(lambda v: v.strip() if isinstance(v, str) else v)
    df["_row"] = np.arange(1, len(df) + 1)
    return df


def unpivot(df: pd.DataFrame, spec: SourceSpec) -> pd.DataFrame:
    """Wide -> long: columns matching the pattern become rows with the pattern's groups as columns."""
    u = spec.unpivot
    assert u is not None
    wide = {c: u.pattern.match(c) for c in df.columns if c not in PROVENANCE}
    wide = {c: m for c, m in wide.items() if m is not None}
    ids = [c for c in df.columns if c not in wide]
    if not wide:
        return df
    long = df.melt(id_vars=ids, value_vars=list(wide), var_name="_col", value_name="value")
    groups = pd.DataFrame([wide[c].groupdict() for c in long["_col"]], index=long.index)
    long = pd.concat([long.drop(columns="_col"), groups], axis=1)
    long = long[long["value"] != ""]  # an empty cell of a wide export is no entry
    if u.columns_from is None:
        return long.sort_values("_row", kind="stable").reset_index(drop=True)
    keys = ids + [g for g in u.pattern.groupindex if g != u.columns_from]
    out = long.pivot_table(index=keys, columns=u.columns_from, values="value", aggfunc="first", sort=False)
    out.columns = [str(c) for c in out.columns]
    out = out.reset_index().fillna("")
    return out.sort_values("_row", kind="stable").reset_index(drop=True)


def _numbers(text: pd.Series, decimal: str) -> tuple[pd.Series, pd.Series]:
    """Parse numeric text (``decimal`` separator); returns values and a mask of unparsable non-empty cells."""
    s = text.astype(str)
    if decimal != ".":
        s = s.str.replace(".", "", regex=False).str.replace(decimal, ".", regex=False)
    empty = s.str.len() == 0
    num = pd.to_numeric(s.where(~empty, None), errors="coerce").astype(float)
    return num, num.isna() & ~empty


class _UnknownZone(Exception):
    """A time zone name (from the export data or the mapping) that the zone database does not know."""


def _local_dates(text: pd.Series, sites: pd.Series | None, spec: SourceSpec, ctx: Context, parse: str,
                 label: str, column: str, rows: np.ndarray, report: ValidationReport) -> pd.Series:
    """Timestamps/dates/ISO weeks -> local calendar dates (the row's site time zone)."""
    out: list[pd.Timestamp | None] = []
    for i, v in enumerate(text):
        if v == "":
            out.append(None)
            continue
        try:
            if parse == "isoweek":
                m = _ISOWEEK.match(v)
                if m is None:
                    raise ValueError("expected an ISO week like 2026-W10")
                out.append(pd.Timestamp(dt.date.fromisocalendar(int(m[1]), int(m[2]), int(m[3] or 1))))
                continue
            ts = pd.Timestamp(v)
            if parse == "datetime":
                site = None if sites is None else sites.iloc[i]
                zone = ctx.site_timezones.get(site, ctx.default_tz) if site else ctx.default_tz
                try:
                    local = ZoneInfo(zone)
                    source_tz = ZoneInfo(spec.timezone) if spec.timezone else local
                except (ZoneInfoNotFoundError, ValueError) as exc:  # a site's time zone from the export data
                    raise _UnknownZone(zone if spec.timezone is None else f"{zone} / {spec.timezone}") from exc
                if ts.tzinfo is None:
                    ts = ts.tz_localize(source_tz)
                ts = ts.tz_convert(local).tz_localize(None)
            out.append(ts.normalize())
        except _UnknownZone as exc:
            report.error(label, rows[i], column, f"value {v!r}: unknown time zone {exc.args[0]!r} for site "
                         f"{None if sites is None else sites.iloc[i]!r} (an IANA name such as Europe/Berlin)")
            out.append(None)
        except (ValueError, TypeError, OverflowError) as exc:
            what = {"isoweek": "an ISO week", "date": "a date", "datetime": "a timestamp"}[parse]
            report.error(label, rows[i], column, f"unparsable value {v!r}: not {what} ({exc})")
            out.append(None)
    return pd.Series(out, index=text.index, dtype="datetime64[ns]")


def _to_period(dates: pd.Series, meta: dict, label: str, column: str, rows: np.ndarray,
               report: ValidationReport) -> pd.Series:
    per = periods_frame(meta)
    starts = per["start"].to_numpy(dtype="datetime64[ns]")
    ends = starts + (per["days"].to_numpy() * 86400e9).astype("timedelta64[ns]")
    d = dates.to_numpy(dtype="datetime64[ns]")
    idx = np.searchsorted(starts, d, side="right") - 1
    ok = (idx >= 0) & (d < ends[np.clip(idx, 0, len(ends) - 1)])
    result = pd.Series(np.where(ok, per["period"].to_numpy()[np.clip(idx, 0, len(per) - 1)], np.nan),
                       index=dates.index, dtype=float)
    bad = ~ok & dates.notna().to_numpy()
    span = f"{pd.Timestamp(starts[0]).date()}..{(pd.Timestamp(ends[-1]) - pd.Timedelta(days=1)).date()}"
    for r, v in zip(rows[bad], dates[bad]):
        report.error(label, r, column, f"date {v.date()} is outside the horizon {span}")
    return result


def _convert_units(values: pd.Series, rule: ColumnRule, df: pd.DataFrame, target_unit: str, ctx: Context,
                   label: str, rows: np.ndarray, report: ValidationReport) -> pd.Series:
    rates = ctx.mapping.rates()
    if rule.unit_column is None:
        return _tidy(values * conversion_factor(rule.unit or target_unit, target_unit or "1", rates))
    units = df[rule.unit_column].astype(str)
    factors = pd.Series(np.nan, index=values.index)
    for u in units.unique():
        mask = (units == u).to_numpy()
        try:
            factors[mask] = conversion_factor(u, target_unit or "1", rates)
        except UnitError as exc:
            for r in rows[mask & values.notna().to_numpy()]:
                report.error(label, r, rule.unit_column, str(exc))
    return _tidy(values * factors)


def _tidy(values: pd.Series) -> pd.Series:
    """Round converted values to 12 significant digits (no 0.15013907447000002 from lb -> kg)."""
    return values.map(lambda v: float(f"{v:.12g}") if pd.notna(v) else v)


def map_source(df: pd.DataFrame, spec: SourceSpec, ctx: Context, label: str,
               report: ValidationReport) -> pd.DataFrame | None:
    """Apply a source's rules to its (unpivoted) text frame; returns a typed frame with provenance."""
    schema = target_schema(spec.table)
    assert schema is not None
    if schema.name == "labor":  # productivity may come from measurements instead (filled after the merge)
        schema = replace(schema, columns=tuple(replace(c, required=False, default=None)
                                               if c.name.startswith("productivity_") else c for c in schema.columns))
    rules = {r.source: r for r in spec.columns}
    unit_cols = {r.unit_column for r in spec.columns if r.unit_column}
    for c in df.columns:
        if c in PROVENANCE or c in rules or c in unit_cols or any(p.search(c) for p in spec.ignore):
            continue
        report.error(label, 0, c, f"unmapped column (map it under {spec.where}.columns or ignore it)")
    missing = [r.source for r in spec.columns if r.source not in df.columns] + \
              [c for c in unit_cols if c not in df.columns]
    for c in missing:
        report.error(label, 0, c, f"column named in the mapping ({spec.where}) is not in the export")
    targets: dict[str, str] = {}
    for r in spec.columns:
        if r.target is not None and r.target in targets:
            report.error(str(ctx.mapping.path), None, f"{spec.where}.columns.{r.source}",
                         f"column {r.target!r} is also mapped from {targets[r.target]!r}")
        elif r.target is not None:
            targets[r.target] = r.source
    if missing:
        return None
    rows = df["_row"].to_numpy()
    out = pd.DataFrame(index=df.index)
    order = sorted((r for r in spec.columns if r.target), key=lambda r: r.parse is not None)
    flagged: set[tuple[int, str]] = set()  # (export row, target) already reported: no follow-up errors
    for rule in order:
        seen = len(report.findings)
        _map_rule(rule, df, out, spec, schema, ctx, label, rows, report)
        flagged |= {(f.row, str(rule.target)) for f in report.findings[seen:] if (f.row or 0) > 0}
    for k, v in spec.constants.items():
        out[k] = v
    if schema.name == "sites" and "timezone" in out:
        source_col = next((r.source for r in spec.columns if r.target == "timezone"), "timezone")
        for row, sid, tz in zip(rows, out.get("id", []), out["timezone"]):
            if not tz:
                continue
            try:
                ZoneInfo(str(tz))
            except (ZoneInfoNotFoundError, ValueError):
                report.error(label, int(row), source_col, f"unknown time zone {tz!r} for site {sid!r} (an IANA "
                             "name such as Europe/Berlin)")
                continue
            ctx.site_timezones.setdefault(str(sid), str(tz))
        out = out.drop(columns="timezone")
    return _typed(out, df, spec, schema, targets, flagged, label, report)


def _map_rule(rule: ColumnRule, df: pd.DataFrame, out: pd.DataFrame, spec: SourceSpec, schema, ctx: Context,
              label: str, rows: np.ndarray, report: ValidationReport) -> None:
    """One column rule: code map, time parsing or number parsing with unit conversion, into ``out``."""
    text = df[rule.source].astype(str)
    target = rule.target
    assert target is not None
    if rule.codes is not None:
        cmap = ctx.mapping.codes[rule.codes]
        unknown = (text != "") & ~text.isin(list(cmap))
        for r, v in zip(rows[unknown.to_numpy()], text[unknown]):
            report.error(label, r, rule.source, f"unknown code {v!r} (code map {rule.codes!r} knows "
                                                f"{sorted(cmap)[:12]})")
        text = text.map(lambda v, m=cmap: m.get(v, v))
    if rule.parse is not None:
        sites = out.get("site_id")
        dates = _local_dates(text, sites, spec, ctx, rule.parse, label, rule.source, rows, report)
        if target == "period":
            out[target] = _to_period(dates, ctx.meta, label, rule.source, rows, report)
        else:
            out[target] = dates.dt.strftime("%Y-%m-%d").fillna("")
        return
    col = schema.column(target) if target in schema.column_names else None
    if col is None or col.dtype == "str" or col.dtype == "date":
        out[target] = text
        return
    num, bad = _numbers(text, spec.decimal)
    for r, v in zip(rows[bad.to_numpy()], text[bad]):
        report.error(label, r, rule.source, f"unparsable value {v!r}: not a number")
    if rule.unit is not None or rule.unit_column is not None:
        try:
            num = _convert_units(num, rule, df, col.unit, ctx, label, rows, report)
        except UnitError as exc:  # already reported against the mapping
            report.error(label, 0, rule.source, str(exc))
    out[target] = num


def _typed(out: pd.DataFrame, df: pd.DataFrame, spec: SourceSpec, schema, targets: dict[str, str],
           flagged: set[tuple[int, str]], label: str, report: ValidationReport) -> pd.DataFrame:
    """coerce_table with findings moved back to the export's rows and column names."""
    local = ValidationReport()
    typed = coerce_table(out.reset_index(drop=True), schema, local, label)
    rows = df["_row"].to_numpy()
    for f in local.findings:
        if f.row > 0 and (rows[f.row - 1], f.column) in flagged:
            continue
        col = targets.get(f.column, f"set.{f.column}" if f.column in spec.constants else f.column)
        msg = f.message
        if f.row == 0 and msg == "missing required column":
            msg = f"no column of the export maps to required column {f.column!r} of {schema.name}"
            col = f.column
        row = rows[f.row - 1] if f.row > 0 else 0
        (report.error if f.severity == "error" else report.warning)(label, row, col, msg)
    typed["_file"] = label
    typed["_row"] = rows
    if spec.aggregate and schema.key:
        typed = _aggregate(typed, schema.key, spec.aggregate)
    elif schema.key:
        dup = typed.duplicated(list(schema.key), keep=False)
        first = typed[dup].groupby(list(schema.key), sort=False)["_row"].transform("min")
        for r, f0 in zip(typed.loc[dup, "_row"], first):
            if r != f0:
                key = ", ".join(str(typed.loc[typed["_row"] == r, k].iloc[0]) for k in schema.key)
                report.error(label, r, "+".join(targets.get(k, k) for k in schema.key),
                             f"duplicate key ({key}): also in row {f0}")
    return typed


def _aggregate(typed: pd.DataFrame, key: tuple[str, ...], how: dict[str, str]) -> pd.DataFrame:
    agg = {c: how.get(c, "first") for c in typed.columns if c not in key}
    agg["_row"] = "min"
    return typed.groupby(list(key), sort=False, as_index=False).agg(agg)
