"""Named exceptions of the solver layer.

Misuse (an unknown solver, a bad option, a solver that is not installed, a model the backend cannot
take) raises. An infeasible or time-limited run does not: it is a :class:`~solvers.result.SolveResult`
whose ``termination`` says why it stopped.
"""

from __future__ import annotations


class SolverError(Exception):
    """Base class of every error raised by :mod:`solvers`."""


class UnknownSolverError(SolverError, ValueError):
    """The solver name is not in the registry."""


class SolverNotAvailableError(SolverError, ImportError):
    """The solver is registered but its Python package is not installed or cannot run."""


class SolverOptionError(SolverError, ValueError):
    """An option (common or solver-specific) is unknown or has a bad value."""


class UnsupportedModelError(SolverError, TypeError):
    """The model has a feature (quadratic terms, indicators, continuous variables for CP-SAT, ...)
    that the front door or the chosen backend cannot handle."""


class NoSolutionError(SolverError, LookupError):
    """Values were requested from a result that holds no solution (or no duals)."""


class NoOptimalSolutionError(SolverError):
    """Raised by ``solve(..., raise_on_nonoptimal=True)`` when the solver did not prove optimality.

    The result is attached as ``.result`` so a caller can still inspect it.
    """

    def __init__(self, message: str, result: object = None) -> None:
        super().__init__(message)
        self.result = result
