"""One result type for every backend: why the solver stopped, what solution exists, and its values by
business label."""

from __future__ import annotations

from collections.abc import Hashable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from solvers.errors import NoOptimalSolutionError, NoSolutionError

if TYPE_CHECKING:
    from solvers.model import Group, StandardForm


class Termination(StrEnum):
    """Why the solver stopped, one vocabulary for all backends.

    Work limits other than time (iterations, nodes, solutions, objective target) and user interrupts
    map to ``interrupted``; solver failures to ``error``; anything a backend cannot classify to
    ``unknown``.
    """

    OPTIMAL = "optimal"
    TIME_LIMIT = "time_limit"
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    INFEASIBLE_OR_UNBOUNDED = "infeasible_or_unbounded"
    INTERRUPTED = "interrupted"
    ERROR = "error"
    UNKNOWN = "unknown"

    @classmethod
    def parse(cls, value: object) -> Termination:
        """The member named by ``value`` (a member or its string, e.g. read back from JSON or a run store);
        ``unknown`` for anything outside the vocabulary (None, or a status an older version wrote)."""
        try:
            return cls(value)
        except ValueError:
            return cls.UNKNOWN

    @property
    def proves_no_solution(self) -> bool:
        """The solver proved that no solution exists (infeasible, unbounded or one of the two)."""
        return self in (Termination.INFEASIBLE, Termination.UNBOUNDED, Termination.INFEASIBLE_OR_UNBOUNDED)


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds of each stage.

    ``build``: front door, model -> :class:`~solvers.model.StandardForm`; ``translate``: standard form
    -> the backend's in-memory model; ``solve``: the backend's run; ``extract``: reading values back.
    """

    build: float = 0.0
    translate: float = 0.0
    solve: float = 0.0
    extract: float = 0.0

    @property
    def total(self) -> float:
        """Build + translate + solve + extract seconds."""
        return self.build + self.translate + self.solve + self.extract


class GroupValues(Mapping[str, pd.Series]):
    """Read-only mapping ``group name -> pandas Series`` indexed by the group's labels.

    Series are built on first access, so a result of a 10^6-column model costs nothing until read.
    ``.array`` is the raw vector in standard-form order.
    """

    def __init__(
        self, array: np.ndarray | None, groups: Mapping[str, Group], what: str, missing_reason: str = ""
    ) -> None:
        self._array = array
        self._groups = groups
        self._what = what
        self._missing_reason = missing_reason
        self._cache: dict[str, pd.Series] = {}

    @property
    def array(self) -> np.ndarray | None:
        """The flat value array of all columns (None when the solver returned no values)."""
        return self._array

    @property
    def available(self) -> bool:
        """Whether values are available."""
        return self._array is not None

    def __getitem__(self, name: str) -> pd.Series:
        if self._array is None:
            raise NoSolutionError(f"no {self._what} in this result: {self._missing_reason}")
        if name not in self._groups:
            raise KeyError(f"no group {name!r}; groups are {sorted(self._groups)}")
        series = self._cache.get(name)
        if series is None:
            group = self._groups[name]
            series = pd.Series(self._array[group.positions], index=group.labels, name=name, copy=False)
            self._cache[name] = series
        return series

    def __iter__(self) -> Iterator[str]:
        return iter(self._groups) if self._array is not None else iter(())

    def __len__(self) -> int:
        return len(self._groups) if self._array is not None else 0

    def __contains__(self, name: object) -> bool:
        return self._array is not None and name in self._groups

    def __repr__(self) -> str:
        if self._array is None:
            return f"<{self._what}: none ({self._missing_reason})>"
        return f"<{self._what}: {', '.join(self._groups)}>"


@dataclass(eq=False)
class SolveResult:
    """Outcome of :func:`solvers.solve`.

    Attributes
    ----------
    termination
        Why the solver stopped (:class:`Termination`).
    has_solution
        Whether a primal solution (optimal or incumbent) is available.
    objective
        Objective of the returned solution in the model's sense (NaN without a solution).
    bound
        Best proven bound (dual bound for a MIP; the objective for an optimal LP); NaN if unknown.
    gap
        Relative gap ``|objective - bound| / max(|objective|, tiny)``; 0 when optimal, NaN if unknown.
    solver, solver_version
        Registry name of the backend (e.g. ``"highs"``) and the solver library version.
    raw_status
        The backend's native status string, kept for debugging.
    wall_time
        :class:`Timings` of build / translate / solve / extract.
    values, duals, reduced_costs
        :class:`GroupValues`: ``result.values["flow"]`` is a Series indexed by the ``flow`` labels;
        ``result.duals["capacity"]`` by the ``capacity`` labels (LPs only). Duals and reduced costs are
        ``d objective / d rhs`` and ``d objective / d bound``, in the model's own sense.
    model
        The :class:`~solvers.model.StandardForm` that was solved (labels, for warm starts and diagnosis).
    warm_start_entries
        How many variable values of a warm start were matched by label and handed to the solver.
    basis
        The final simplex basis of an LP solved with ``keep_basis=True`` (:class:`~solvers.basis.Basis`).
    basis_start
        How an LP basis given as warm start was used: ``"same"`` (same structure, as is), ``"mapped"``
        (matched by label and completed), ``"unmatched"`` (too few labels known: cold start), ``"rejected"``
        (the solver refused it), ``"unsupported"``; None
        when no basis was given.
    simplex_iterations
        Simplex iterations the solver reported (HiGHS; None where the backend does not say).
    scaling
        The :class:`~solvers.scaling.Scaling` applied before the solver saw the model (identity when off).
    """

    termination: Termination
    has_solution: bool
    objective: float
    bound: float
    gap: float
    solver: str
    solver_version: str
    raw_status: str
    wall_time: Timings
    values: GroupValues
    duals: GroupValues
    reduced_costs: GroupValues
    model: StandardForm = field(repr=False)
    warm_start_entries: int = 0
    basis: Any = field(default=None, repr=False)
    basis_start: str | None = None
    simplex_iterations: int | None = None
    message: str = ""
    options: dict[str, Any] = field(default_factory=dict, repr=False)
    scaling: Any = field(default=None, repr=False)

    @property
    def is_optimal(self) -> bool:
        """Whether the solver proved optimality (within the gap)."""
        return self.termination is Termination.OPTIMAL

    @property
    def x(self) -> np.ndarray:
        """Primal values as one vector in standard-form column order."""
        if self.values.array is None:
            raise NoSolutionError(f"no solution in this result (termination={self.termination})")
        return self.values.array

    def value(self, group: str, label: Hashable | None = None) -> Any:
        """Values of a variable group.

        Returns the Series ``values[group]``; the single float of a dimensionless group; or, given
        ``label``, the value at that label (a tuple for a multi-dimensional group).
        """
        series = self.values[group]
        if label is not None:
            return series.loc[label]
        if self.model.variable_groups[group].scalar:
            return float(series.iloc[0])
        return series

    def raise_if_nonoptimal(self) -> SolveResult:
        """Raise :class:`NoOptimalSolutionError` unless optimal; return ``self`` for chaining."""
        if not self.is_optimal:
            raise NoOptimalSolutionError(
                f"{self.solver} stopped with termination={self.termination.value} "
                f"(raw status {self.raw_status!r}, has_solution={self.has_solution}, "
                f"objective={self.objective}, gap={self.gap}). Pass raise_on_nonoptimal=False to get the "
                "result instead; raise time_limit or relax mip_gap if the run was cut short.",
                result=self,
            )
        return self

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.solver} {self.termination.value}: objective={self.objective:.6g} bound={self.bound:.6g} "
            f"gap={self.gap:.3g} in {self.wall_time.total:.3f}s "
            f"(build {self.wall_time.build:.3f}, translate {self.wall_time.translate:.3f}, "
            f"solve {self.wall_time.solve:.3f})"
        )


def relative_gap(objective: float, bound: float) -> float:
    """``|objective - bound| / max(|objective|, 1e-10)``, NaN when either is unknown or infinite."""
    if not (np.isfinite(objective) and np.isfinite(bound)):
        return float("nan")
    return abs(objective - bound) / max(abs(objective), 1e-10)
