"""OR-Library capacitated facility location instances (Beasley 1988) as twinplan Instances.

The file format is a stream of whitespace-separated numbers (see ``benchmarks/orlib/README.md``)::

    m n                       # m candidate warehouses, n customers
    capacity_i fixedcost_i    # m times
    demand_j c_1j ... c_mj    # n times; c_ij = cost of serving ALL of customer j's demand from i

Mapping onto the canonical tables, so that the *production* network design formulation solves it:

- warehouse i -> candidate DC ``W<i>`` with ``fixed_cost_per_year = f_i`` and one ``outbound_dock`` resource
  of ``count = s_i`` units at 1 unit/h for 1 h/day (capacity s_i units in the single one-day period);
  a warehouse of capacity 0 gets no resource row (a DC without resources cannot ship);
- customer j -> zone ``C<j>`` with demand d_j of the single product ``P`` in period 1;
- c_ij -> lane ``W<i> -> C<j>`` with ``cost_per_unit = c_ij / d_j`` (0 when d_j = 0);
- no ports, supply, labour, expansions or inventory; ``periods_per_year = 1`` and no handling cost, so the
  annualised objective is exactly sum_i f_i y_i + sum_ij c_ij x_ij / d_j.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from instances.instance import Instance, coerce_table, empty_table
from instances.schema import TABLES
from instances.validation import ValidationReport

_TOKEN = re.compile(r"\S+")


class OrlibFormatError(ValueError):
    """The file does not follow the OR-Library capacitated facility location format."""


def _tokens(text: str, fname: str) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """All numbers of ``text`` with their (line, column), 1-based; a bad token raises naming its place."""
    values: list[float] = []
    where: list[tuple[int, int]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        for m in _TOKEN.finditer(line):
            tok = m.group(0)
            try:
                values.append(float(tok))
            except ValueError:
                raise OrlibFormatError(f"{fname}:{lineno}:{m.start() + 1}: {tok!r} is not a number") from None
            if not np.isfinite(values[-1]):
                raise OrlibFormatError(f"{fname}:{lineno}:{m.start() + 1}: {tok!r} is not a finite number")
            where.append((lineno, m.start() + 1))
    return np.asarray(values, dtype=float), where


def parse_orlib(text: str, fname: str = "<text>") -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse the format; returns ``capacity (m,), fixed_cost (m,), demand (n,), cost (m, n)``.

    Errors name the file, line and column of the offending token (or say how many numbers are missing).
    """
    v, where = _tokens(text, fname)
    if len(v) < 2:
        raise OrlibFormatError(f"{fname}:1:1: expected 'm n' (warehouses, customers) at the start")
    m, n = v[0], v[1]
    for k, (val, what) in enumerate(((m, "m (warehouses)"), (n, "n (customers)"))):
        if val != int(val) or val < 1:
            line, col = where[k]
            raise OrlibFormatError(f"{fname}:{line}:{col}: {what} must be a positive integer, got {val:g}")
    m, n = int(m), int(n)
    expected = 2 + 2 * m + n * (1 + m)
    if len(v) != expected:
        where_s = f"{fname}:{where[-1][0]}:{where[-1][1]}"
        raise OrlibFormatError(f"{where_s}: {m} warehouses x {n} customers need {expected} numbers, "
                               f"the file has {len(v)}")
    head = v[2:2 + 2 * m].reshape(m, 2)
    body = v[2 + 2 * m:].reshape(n, 1 + m)
    neg = np.flatnonzero(v[2:] < 0)
    if len(neg):
        line, col = where[2 + int(neg[0])]
        raise OrlibFormatError(f"{fname}:{line}:{col}: negative value {v[2 + int(neg[0])]:g} "
                               "(capacities, costs and demands must not be negative)")
    return head[:, 0].copy(), head[:, 1].copy(), body[:, 0].copy(), body[:, 1:].T.copy()


def orlib_instance(capacity: np.ndarray, fixed_cost: np.ndarray, demand: np.ndarray, cost: np.ndarray,
                   name: str = "orlib") -> Instance:
    """An :class:`Instance` from the parsed arrays (see the module docstring for the mapping)."""
    m, n = cost.shape
    w = np.array([f"W{i + 1}" for i in range(m)], dtype=object)
    c = np.array([f"C{j + 1}" for j in range(n)], dtype=object)
    meta = {
        "name": name, "currency": "cost",
        "horizon": {"start": "2026-01-05", "periods": 1, "period_days": 1},
        "defaults": {"periods_per_year": 1, "handling_cost_per_unit": 0.0, "service_share": 0.0,
                     "unmet_demand_penalty": float(cost.max(initial=0.0) + fixed_cost.max(initial=0.0) + 1.0)},
        "source": {"format": "OR-Library capacitated facility location (Beasley 1988)"},
    }
    sites = pd.DataFrame({"id": w, "name": w, "kind": "dc", "lat": 0.0, "lon": 0.0, "status": "candidate",
                          "fixed_cost_per_year": fixed_cost})
    has_cap = capacity > 0
    resources = pd.DataFrame({"site_id": w[has_cap], "stage": "outbound_dock", "count": capacity[has_cap],
                              "rate_per_hour": 1.0, "hours_per_day": 1.0})
    zones = pd.DataFrame({"id": c, "name": c, "lat": 0.0, "lon": 0.0})
    products = pd.DataFrame({"id": ["P"], "unit_weight_kg": [1.0], "unit_volume_m3": [1.0]})
    dem = pd.DataFrame({"zone_id": c, "product_id": "P", "period": 1, "quantity": demand})
    with np.errstate(divide="ignore", invalid="ignore"):
        per_unit = np.where(demand[None, :] > 0, cost / demand[None, :], 0.0)
    lanes = pd.DataFrame({"origin_id": np.repeat(w, n), "destination_id": np.tile(c, m), "mode": "road",
                          "cost_per_unit": per_unit.ravel(), "transit_days": 0.0, "capacity": np.nan,
                          "distance_km": 0.0})
    given = {"sites": sites, "resources": resources, "zones": zones, "products": products, "demand": dem,
             "lanes": lanes}
    tables = {}
    report = ValidationReport()
    for tname, schema in TABLES.items():
        tables[tname] = (coerce_table(given[tname], schema, report, schema.file_name) if tname in given
                         else empty_table(schema))
    if not report.ok:  # a bug of this mapping, not of the file (the parser rejected bad numbers)
        raise OrlibFormatError(report.format())
    return Instance(meta, tables)


def read_orlib(path: str | Path) -> Instance:
    """Read one OR-Library file into an Instance named after the file stem (e.g. ``cap41``)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise OrlibFormatError(f"{path}: no such file") from None
    except UnicodeDecodeError as exc:
        raise OrlibFormatError(f"{path}: not a plain-text OR-Library file ({exc.reason} at byte {exc.start})") \
            from None
    return orlib_instance(*parse_orlib(text, str(path)), name=path.stem)


def benchmark_dir() -> Path | None:
    """``$TWINPLAN_BENCHMARKS/orlib`` if set and present, else ``<repo>/../shared/benchmarks/orlib``, else None."""
    env = os.environ.get("TWINPLAN_BENCHMARKS")
    candidates = [Path(env) / "orlib"] if env else []
    candidates.append(Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "orlib")
    for p in candidates:
        if (p / "optima.csv").is_file():
            return p
    return None


def load_optima(folder: str | Path) -> dict[str, float]:
    """Published optima by instance name, from ``optima.csv`` (instance, problem, published_optimum)."""
    df = pd.read_csv(Path(folder) / "optima.csv", dtype={"instance": str})
    return dict(zip(df["instance"], df["published_optimum"].astype(float)))
