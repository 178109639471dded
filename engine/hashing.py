"""Input and result hashes: the fingerprints that let a plan be reproduced and shown to be the one reviewed.

Every hash is the SHA-256 (hex) of a canonical byte form, so it is stable across processes, machines and
runs:

* JSON-like values (scenario, solver options, sweep specs) are serialized with sorted keys, no whitespace
  and floats in ``repr`` form (:func:`canonical_json`);
* a table is hashed from its column names, logical dtypes and values written as CSV, rows in the given
  order, floats with 17 significant digits, dates as ISO strings (:func:`hash_table`);
* a plan's tables are hashed the same way after rounding floats to ``PLAN_DECIMALS`` decimals and sorting
  rows, so solver noise far below any business meaning does not count as a difference
  (:func:`plan_hash`).

:func:`input_hashes` bundles what a run depends on: the instance tables and ``instance.yaml``, the scenario,
the solver options, the seed and the package versions.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
from importlib import metadata
from typing import Any

import pandas as pd

from instances.plain import to_plain

PLAN_DECIMALS = 6
"""Decimals kept when hashing plan tables (units, currency, hours)."""

VERSIONED_PACKAGES = ("twinplan", "numpy", "pandas", "linopy", "highspy", "ortools", "pyomo", "scipy",
                      "simpy", "duckdb", "dask", "distributed")
"""Packages whose versions are recorded with every run (absent ones are recorded as ``None``)."""


def canonical_json(obj: Any) -> str:
    """Deterministic JSON text of ``obj`` (sorted keys, compact, numpy and dates made plain)."""
    return json.dumps(to_plain(obj, non_finite="repr"), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256(data: bytes | str) -> str:
    """Hex SHA-256 of bytes or UTF-8 text."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    return hashlib.sha256(data).hexdigest()


def hash_json(obj: Any) -> str:
    """Hash of a JSON-like value via :func:`canonical_json`."""
    return sha256(canonical_json(obj))


def _logical_dtype(s: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(s):
        return "bool"
    if pd.api.types.is_integer_dtype(s):
        return "int"
    if pd.api.types.is_float_dtype(s):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(s):
        return "date"
    return "str"


def table_bytes(df: pd.DataFrame, decimals: int | None = None, sort: bool = False) -> bytes:
    """The canonical byte form of a table (see the module docstring)."""
    df = df.reset_index(drop=True)
    if decimals is not None:
        df = df.copy()
        for c in df.columns:
            if pd.api.types.is_float_dtype(df[c]):
                # + 0.0 folds -0.0 into 0.0 after rounding
                df[c] = df[c].round(decimals) + 0.0
    head = canonical_json([[str(c), _logical_dtype(df[c])] for c in df.columns])
    buf = io.StringIO()
    df.to_csv(buf, index=False, header=False, float_format="%.17g", date_format="%Y-%m-%d", lineterminator="\n")
    body = buf.getvalue()
    if sort:
        # sorting the written rows works for any mix of types in a column
        body = "".join(sorted(body.splitlines(keepends=True)))
    return (head + "\n" + body).encode("utf-8")


def hash_table(df: pd.DataFrame) -> str:
    """Hash of one table as given (row order counts, floats exact)."""
    return sha256(table_bytes(df))


def instance_hashes(instance: Any) -> dict[str, str]:
    """One hash per canonical table and one for ``instance.yaml`` (key ``meta``)."""
    out = {"meta": hash_json(instance.meta)}
    for name in sorted(instance.tables):
        out[name] = hash_table(instance.tables[name])
    return out


def scenario_payload(scenario: Any) -> dict[str, Any] | None:
    """What a scenario contributes to a run: every field except where it was read from."""
    if scenario is None:
        return None
    if hasattr(scenario, "to_dict"):
        return to_plain(scenario.to_dict(), non_finite="repr")
    data = to_plain(scenario, non_finite="repr")
    data.pop("source", None)
    return data


def package_versions() -> dict[str, str | None]:
    """Python and the versions of :data:`VERSIONED_PACKAGES` installed here."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def input_hashes(instance: Any, scenario: Any, solver_options: dict[str, Any], seed: int | None,
                 versions: dict[str, str | None] | None = None, warm_start: str | None = None) -> dict[str, Any]:
    """Every fingerprint a run depends on, plus one combined ``input_hash``.

    Parameters
    ----------
    instance : the *base* Instance (before the scenario is applied), or its :func:`instance_hashes`
    scenario : the Scenario run (its modifications included), or None
    solver_options : solver name, time limit, gap, threads and pipeline options used
    seed : the run's seed
    versions : package versions (default: :func:`package_versions` of this interpreter)
    warm_start : the id of the run whose plan warm-started this one, if any

    Returns
    -------
    dict with ``instance`` (combined), ``tables`` (per table), ``scenario``, ``solver_options``, ``seed``,
    ``packages`` (hash of the versions), ``versions``, ``warm_start`` and ``input_hash`` (all of them).
    """
    tables = dict(instance) if isinstance(instance, dict) else instance_hashes(instance)
    versions = package_versions() if versions is None else versions
    out: dict[str, Any] = {
        "instance": hash_json(tables),
        "tables": tables,
        "scenario": hash_json(scenario_payload(scenario)),
        "solver_options": hash_json(solver_options),
        "seed": seed,
        "packages": hash_json(versions),
        "versions": versions,
        "warm_start": warm_start,
    }
    out["input_hash"] = hash_json({k: out[k] for k in ("instance", "scenario", "solver_options", "seed",
                                                       "packages", "warm_start")})
    return out


def compare_hashes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable differences between two :func:`input_hashes` results (empty when identical)."""
    diffs: list[str] = []
    for name in sorted(set(recorded.get("tables", {})) | set(current.get("tables", {}))):
        a, b = recorded.get("tables", {}).get(name), current.get("tables", {}).get(name)
        if a != b:
            diffs.append(f"instance table {name} changed ({str(a)[:12]} -> {str(b)[:12]})")
    for key in ("scenario", "solver_options", "seed", "warm_start"):
        if recorded.get(key) != current.get(key):
            diffs.append(f"{key} changed ({str(recorded.get(key))[:12]} -> {str(current.get(key))[:12]})")
    va, vb = recorded.get("versions") or {}, current.get("versions") or {}
    for name in sorted(set(va) | set(vb)):
        if va.get(name) != vb.get(name):
            diffs.append(f"package {name} {va.get(name)} -> {vb.get(name)}")
    return diffs


def plan_hash(tables: dict[str, pd.DataFrame], decimals: int = PLAN_DECIMALS) -> str:
    """Hash of a plan's tables, rows sorted and floats rounded to ``decimals``; order of tables irrelevant."""
    parts = {name: sha256(table_bytes(df, decimals=decimals, sort=True)) for name, df in sorted(tables.items())}
    return hash_json(parts)


__all__ = ["PLAN_DECIMALS", "canonical_json", "compare_hashes", "hash_json", "hash_table", "input_hashes",
           "instance_hashes", "package_versions", "plan_hash", "scenario_payload", "sha256", "table_bytes"]
