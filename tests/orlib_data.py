"""Tiny reader for the OR-Library capacitated warehouse location files (``cap41`` ... ``capc5000``).

Format (whitespace-separated tokens, line breaks carry no meaning, numbers may end in a dot)::

    m n
    capacity_i fixed_i          (m times)
    demand_j c_1j ... c_mj      (n times; c_ij = cost of serving all of customer j from warehouse i)

Reusable by other tests: ``orlib_dir()`` finds the benchmark folder, ``read_orlib(path)`` parses one file,
``published_optima()`` reads ``optima.csv``.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

ORLIB_ENV = "TWINPLAN_BENCHMARKS"


def orlib_dir() -> Path | None:
    """``$TWINPLAN_BENCHMARKS/orlib`` if set and present, else ``<repo>/../shared/benchmarks/orlib``, else None."""
    candidates = []
    if os.environ.get(ORLIB_ENV):
        candidates.append(Path(os.environ[ORLIB_ENV]) / "orlib")
    candidates.append(Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "orlib")
    return next((path for path in candidates if path.is_dir()), None)


def read_orlib(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse one file into ``(capacity[m], fixed_cost[m], demand[n], cost[m, n])``.

    Non-numeric tokens (the literal ``capacity`` of the capa/capb/capc templates) are rejected with a
    message; use instances whose capacities are numbers.
    """
    tokens = Path(path).read_text().split()
    try:
        numbers = np.array([float(token) for token in tokens])
    except ValueError as exc:
        raise ValueError(f"{path}: non-numeric token in an OR-Library capacity file ({exc})") from exc
    m, n = int(numbers[0]), int(numbers[1])
    pos = 2
    warehouses = numbers[pos : pos + 2 * m].reshape(m, 2)
    pos += 2 * m
    customers = numbers[pos : pos + n * (m + 1)]
    if customers.size != n * (m + 1) or pos + n * (m + 1) != numbers.size:
        raise ValueError(f"{path}: expected {2 + 2 * m + n * (m + 1)} numbers for m={m}, n={n}, got {numbers.size}")
    customers = customers.reshape(n, m + 1)
    return warehouses[:, 0].copy(), warehouses[:, 1].copy(), customers[:, 0].copy(), customers[:, 1:].T.copy()


def published_optima(directory: Path | None = None) -> dict[str, float]:
    """``instance -> published optimum`` from ``optima.csv``."""
    directory = directory or orlib_dir()
    if directory is None:
        return {}
    with (directory / "optima.csv").open() as handle:
        return {row["instance"]: float(row["published_optimum"]) for row in csv.DictReader(handle)}
