"""twinplan solver layer: one standard-form core, two front doors (linopy, Pyomo), several backends.

>>> import solvers
>>> result = solvers.solve(linopy_model, solver="highs", time_limit=60, mip_gap=0.0)
>>> result.termination, result.objective
>>> result.values["flow"]          # pandas Series indexed by the flow variable's coordinates
>>> result.duals["capacity"]       # LPs: d objective / d rhs, by constraint label
"""

from solvers.api import solve, warm_start_vector
from solvers.backends import Capabilities, available, capabilities, registered
from solvers.basis import Basis
from solvers.diagnose import Conflict, InfeasibilityReport, diagnose_infeasibility
from solvers.errors import (
    NoOptimalSolutionError,
    NoSolutionError,
    SolverError,
    SolverNotAvailableError,
    SolverOptionError,
    UnknownSolverError,
    UnsupportedModelError,
)
from solvers.frontends import from_linopy, from_pyomo, to_standard_form
from solvers.model import Group, StandardForm
from solvers.result import GroupValues, SolveResult, Termination, Timings

__all__ = [
    "Basis",
    "Capabilities",
    "Conflict",
    "InfeasibilityReport",
    "Group",
    "GroupValues",
    "NoOptimalSolutionError",
    "NoSolutionError",
    "SolveResult",
    "SolverError",
    "SolverNotAvailableError",
    "SolverOptionError",
    "StandardForm",
    "Termination",
    "Timings",
    "UnknownSolverError",
    "UnsupportedModelError",
    "available",
    "capabilities",
    "diagnose_infeasibility",
    "from_linopy",
    "from_pyomo",
    "registered",
    "solve",
    "to_standard_form",
    "warm_start_vector",
]
