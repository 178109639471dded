"""Ingestion: WMS/WCS exports of several sites, in different shapes, harmonised into one Instance.

``twinplan ingest --mapping MAPPING.yaml EXPORT_DIR... --out INSTANCE_DIR`` or :func:`ingest`. A mapping
file (see :mod:`engine.ingest.mapping`) drives source adapters (:mod:`engine.ingest.adapters`): column
renames, unit conversions (:mod:`engine.ingest.units`: lb->kg, ft3->m3, in/ft->m, min->h, local
currencies at stated rates), code maps (site, process -> stage, ...), time zones and wide->long
reshaping. Labour productivity is normalised to one standard per order line
(:mod:`engine.ingest.productivity`):

    standard minutes per line  h = (t - d/v) / kappa(u, c),   kappa(u, c) = c (1 + beta (u - 1))
    productivity (units/labour-h)  P = 60 u_r / (h kappa(u_r, c_r) + d/v)

with t the observed minutes per line, d the travel metres per line, v the walking speed, u units per line,
c task complexity and (u_r, c_r) the network's reference order profile.

Several (mapping, export folder) pairs merge into one instance. Master data given by more than one file
(the same product in two WMSs) must agree within ``merge_tolerance`` (relative, numbers; exact, text): then
the first is kept, otherwise it is a conflict naming both rows.

Every problem of every file is reported in one pass, located as ``FILE:ROW:COLUMN``. Nothing is written
unless all is well: the instance is written to a temporary folder beside the target, validated with
:func:`instances.instance.validate_instance`, and only then renamed into place. An existing target is never
touched unless ``overwrite`` is given (and then only replaced once the new instance is valid).
Beside the tables the instance gets ``ingest/manifest.yaml`` (sources, rows, mapping digests) and
``ingest/productivity.csv`` (the normalised productivity per site and stage).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from engine.ingest.adapters import PROVENANCE, Context, map_source, read_export, unpivot
from engine.ingest.mapping import Mapping, read_mapping
from engine.ingest.productivity import NORMALISED_COLUMNS, PRODUCTIVITY, normalise, standard_minutes
from instances.instance import Instance, empty_table, generate_lanes, validate_instance
from instances.schema import LABOR_STAGES, TABLES
from instances.validation import InstanceValidationError, ValidationReport

__all__ = ["IngestError", "IngestResult", "build_instance", "ingest", "read_mapping"]

_TABLE_ORDER = ("sites", "productivity", *[t for t in TABLES if t != "sites"])


class IngestError(InstanceValidationError):
    """Ingestion failed; ``report`` holds every located finding. Nothing was written."""


@dataclass
class IngestResult:
    """A successful ingestion."""

    instance: Instance
    path: Path | None
    report: ValidationReport
    productivity: pd.DataFrame
    manifest: dict[str, Any] = field(default_factory=dict)


def _pairs(mapping: str | Path | Sequence[str | Path], export_dirs: str | Path | Sequence[str | Path]
           ) -> list[tuple[Path, Path]]:
    maps = [Path(mapping)] if isinstance(mapping, str | Path) else [Path(m) for m in mapping]
    dirs = [Path(export_dirs)] if isinstance(export_dirs, str | Path) else [Path(d) for d in export_dirs]
    if len(maps) == 1:
        maps = maps * len(dirs)
    if len(maps) != len(dirs) or not dirs:
        raise ValueError(f"give one mapping for all export folders or one per folder "
                         f"(got {len(maps)} mapping(s) for {len(dirs)} folder(s))")
    return list(zip(maps, dirs))


def _meta(mappings: list[Mapping], report: ValidationReport) -> dict[str, Any]:
    """The instance meta: the first mapping's ``instance`` section; later ones must not contradict it."""
    meta: dict[str, Any] = {}
    for m in mappings:
        if not m.instance:
            continue
        if not meta:
            meta = {k: v for k, v in m.instance.items()}
            continue
        for key in ("currency", "horizon"):
            if key in m.instance and m.instance[key] != meta.get(key):
                report.error(str(m.path), None, f"instance.{key}",
                             f"{m.instance[key]!r} contradicts {meta.get(key)!r} of the first mapping")
    for key in ("name", "currency", "horizon"):
        if key not in meta:
            report.error(str(mappings[0].path) if mappings else "mapping", None, f"instance.{key}",
                         "missing: the instance section needs name, currency and horizon")
    return meta


def _merge(frames: list[pd.DataFrame], table: str, tolerance: float, report: ValidationReport) -> pd.DataFrame:
    """Concatenate a table's frames from several files; duplicate keys across files must agree."""
    df = pd.concat(frames, ignore_index=True)
    key = list(PRODUCTIVITY.key if table == "productivity" else TABLES[table].key)
    if not key or df.empty:
        return df
    dup = df.duplicated(key, keep=False)
    if not dup.any():
        return df
    keep = np.ones(len(df), dtype=bool)
    values = [c for c in df.columns if c not in key and c not in PROVENANCE]
    for _, g in df[dup].groupby(key, sort=False):
        first = g.iloc[0]
        for i, row in g.iloc[1:].iterrows():
            if row["_file"] == first["_file"]:
                continue  # reported by the adapter
            diff = [c for c in values if not _agree(first[c], row[c], tolerance)]
            where = f"{first['_file']}:{first['_row']}"
            if diff:
                detail = ", ".join(f"{c}: {row[c]!r} vs {first[c]!r}" for c in diff[:4])
                report.error(row["_file"], row["_row"], "+".join(key), f"conflicts with {where} ({detail})")
            else:
                report.warning(row["_file"], row["_row"], "+".join(key), f"also given in {where}; kept that one")
            keep[i] = False
    return df[keep].reset_index(drop=True)


def _agree(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, float | int | np.number) and isinstance(b, float | int | np.number):
        if np.isnan(a) and np.isnan(b):
            return True
        return bool(abs(a - b) <= tolerance * max(abs(a), abs(b), 1e-12))
    if isinstance(a, pd.Timestamp) or isinstance(b, pd.Timestamp):
        return bool(a == b)
    return str(a) == str(b)


def _productivity(frames: list[pd.DataFrame], mappings: list[Mapping], report: ValidationReport) -> pd.DataFrame:
    """Normalise the productivity measurements; rows whose travel exceeds the observed time are errors."""
    if not frames:
        return pd.DataFrame(columns=list(NORMALISED_COLUMNS))
    m = pd.concat(frames, ignore_index=True)
    params = mappings[0].productivity if mappings else {}
    h = standard_minutes(m, params)
    for f, r, t, v in zip(m["_file"], m["_row"], m["minutes_per_line"], h):
        if not v > 0:
            report.error(f, r, "minutes_per_line", f"{t:g} min per line is not more than the travel time "
                                                   "(travel_m_per_line / walk_speed_m_per_min)")
    return normalise(m[h > 0], params)


def _fill_labor_productivity(labor: pd.DataFrame, prod: pd.DataFrame, report: ValidationReport) -> pd.DataFrame:
    """Labour productivity columns from the normalised measurements where the labour export has none."""
    if labor.empty:
        return labor
    p = prod.set_index(["site_id", "stage"])["units_per_labour_hour"] if not prod.empty else pd.Series(dtype=float)
    labor = labor.copy()
    for stage in LABOR_STAGES:
        col = f"productivity_{stage}"
        for i, (site, given) in enumerate(zip(labor["site_id"], labor[col])):
            measured = p.get((site, stage))
            if measured is not None and pd.notna(given):
                report.error(labor["_file"].iat[i], labor["_row"].iat[i], col,
                             f"productivity of {site}/{stage} given both in the labour export and as measurements")
            elif measured is not None:
                labor.loc[labor.index[i], col] = float(measured)
            elif pd.isna(given):
                report.error(labor["_file"].iat[i], labor["_row"].iat[i], col,
                             f"no productivity for {site}/{stage}: map {col} or give productivity measurements")
    return labor


def build_instance(pairs: list[tuple[Path, Path]], report: ValidationReport
                   ) -> tuple[Instance | None, pd.DataFrame, dict[str, Any]]:
    """Read every (mapping, export folder) pair into one in-memory Instance (None when any error)."""
    mappings = [read_mapping(m, report) for m, _ in pairs]
    if any(m is None for m in mappings) or not report.ok:
        return None, pd.DataFrame(), {}
    maps: list[Mapping] = [m for m in mappings if m is not None]
    meta = _meta(maps, report)
    if not report.ok:
        return None, pd.DataFrame(), {}
    site_tz: dict[str, str] = {}
    for m in maps:
        site_tz.update(m.site_timezones)
    frames: dict[str, list[pd.DataFrame]] = {}
    manifest: dict[str, Any] = {"mappings": [], "sources": []}
    for m, (_, d) in zip(maps, pairs):
        manifest["mappings"].append({"path": str(m.path), "export_dir": str(d),
                                     "sha256": hashlib.sha256(m.path.read_bytes()).hexdigest()})
    for table in _TABLE_ORDER:
        for m, (_, export_dir) in zip(maps, pairs):
            ctx = Context(m, meta, site_tz)
            for spec in m.sources:
                if spec.table != table:
                    continue
                label = str(export_dir / spec.file)
                raw = read_export(export_dir / spec.file, spec, label, report)
                if raw is None:
                    continue
                if spec.unpivot is not None:
                    raw = unpivot(raw, spec)
                typed = map_source(raw, spec, ctx, label, report)
                if typed is not None:
                    frames.setdefault(table, []).append(typed)
                    manifest["sources"].append({"file": label, "table": table, "rows_read": int(raw["_row"].max()
                                                if len(raw) else 0), "rows_out": len(typed)})
    tolerance = min((m.merge_tolerance for m in maps), default=0.02)
    prod = _productivity([_merge(frames.get("productivity", []), "productivity", tolerance, report)]
                         if frames.get("productivity") else [], maps, report)
    tables: dict[str, pd.DataFrame] = {}
    for name, schema in TABLES.items():
        got = frames.get(name)
        df = _merge(got, name, tolerance, report) if got else None
        if name == "labor" and df is not None:
            df = _fill_labor_productivity(df, prod, report)
        if df is None:
            if schema.required:
                report.error(str(maps[0].path), None, "sources", f"no source gives the required table {name!r}")
            tables[name] = empty_table(schema)
        else:
            tables[name] = df[schema.column_names].reset_index(drop=True)
    if not frames.get("lanes") and report.ok:
        tables["lanes"] = generate_lanes(meta, tables["sites"], tables["zones"])
    manifest["site_timezones"] = dict(sorted(site_tz.items()))
    if not report.ok:
        return None, prod, manifest
    meta = {**meta, "site_timezones": dict(sorted(site_tz.items()))} if site_tz else meta
    return Instance(meta, tables), prod, manifest


def _write_atomically(inst: Instance, prod: pd.DataFrame, manifest: dict[str, Any], out: Path,
                      overwrite: bool, report: ValidationReport) -> Instance | None:
    """Save to a temporary folder beside ``out``, validate, then rename into place."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.ingest-", dir=out.parent))
    backup: Path | None = None
    try:
        inst.save(tmp)
        (tmp / "ingest").mkdir()
        prod.to_csv(tmp / "ingest" / "productivity.csv", index=False)
        with open(tmp / "ingest" / "manifest.yaml", "w", encoding="utf-8") as fh:
            yaml.safe_dump(manifest, fh, sort_keys=False)
        loaded, check = validate_instance(tmp)
        for f in check.findings:
            (report.error if f.severity == "error" else report.warning)(
                f"{out.name}/{f.file}", f.row, f.column, f"(ingested instance) {f.message}")
        if loaded is None:
            return None
        if out.exists():
            backup = out.with_name(f".{out.name}.replaced-{os.getpid()}")
            os.rename(out, backup)
        os.rename(tmp, out)
        return Instance(loaded.meta, loaded.tables, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
        if backup is not None and backup.exists():
            shutil.rmtree(backup, ignore_errors=True)


def ingest(mapping: str | Path | Sequence[str | Path], export_dirs: str | Path | Sequence[str | Path],
           out: str | Path | None = None, *, overwrite: bool = False) -> IngestResult:
    """Ingest export folders into an instance folder ``out`` (in memory only when ``out`` is None).

    Parameters
    ----------
    mapping : one mapping file for every folder, or one per folder (paired in order)
    export_dirs : the export folders
    out : the instance folder to create
    overwrite : replace an existing ``out`` (only once the new instance is valid)

    Raises
    ------
    IngestError
        listing every located problem; nothing was written and an existing ``out`` is untouched.
    """
    report = ValidationReport()
    pairs = _pairs(mapping, export_dirs)
    out_path = None if out is None else Path(out)
    if out_path is not None and out_path.exists() and not overwrite and (
            not out_path.is_dir() or any(out_path.iterdir())):
        report.error(str(out_path), 0, "", "output folder exists and is not empty (use --force to replace it)")
        raise IngestError(report, str(out_path))
    inst, prod, manifest = build_instance(pairs, report)
    if inst is None:
        raise IngestError(report, str(out_path or pairs[0][1]))
    if out_path is not None:
        written = _write_atomically(inst, prod, manifest, out_path, overwrite, report)
        if written is None:
            raise IngestError(report, str(out_path))
        inst = written
    return IngestResult(inst, out_path, report, prod, manifest)
