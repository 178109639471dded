"""Solver backends. Importing this package registers every backend (installed or not)."""

from solvers.backends import highs as _highs  # noqa: F401  (registers "highs")
from solvers.backends import ortools as _ortools  # noqa: F401  (registers "ortools", "ortools-*")
from solvers.backends.base import (
    Backend,
    BackendOutput,
    Capabilities,
    SolveParams,
    available,
    capabilities,
    get_backend,
    register,
    registered,
)

__all__ = [
    "Backend",
    "BackendOutput",
    "Capabilities",
    "SolveParams",
    "available",
    "capabilities",
    "get_backend",
    "register",
    "registered",
]
