"""The one core every front door produces and every backend consumes: a model in standard form.

    min / max   c @ x + c0
    s.t.        row_lower <= A @ x <= row_upper
                col_lower <=     x <= col_upper
                x[j] integer where integrality[j] == 1 (semi-continuous where it is 2)

plus the names of the variable and constraint *groups* (``flow``, ``capacity``, ...) and their business
labels (``capacity[DC_MUC, pack, 2026-W47]``), so that results and diagnostics speak in the planner's
terms rather than in column numbers. A model is handed to a backend in memory; no files on the hot path.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

Positions = slice | np.ndarray
"""Where a group's members sit in the column (or row) vector: a contiguous slice or an index array."""

CONTINUOUS, INTEGER, SEMI_CONTINUOUS = 0, 1, 2
"""Integrality codes (the same numbers HiGHS uses)."""


def _size_of(positions: Positions, total: int) -> int:
    if isinstance(positions, slice):
        return len(range(*positions.indices(total)))
    return len(positions)


class Group:
    """A named block of columns (a variable group) or rows (a constraint group) with business labels.

    Parameters
    ----------
    name
        Group name, e.g. ``"flow"`` or ``"capacity"``.
    positions
        Slice or integer array of the group's columns/rows in the standard form, in label order.
    labels
        A pandas Index (``MultiIndex`` over several dimensions) with one entry per member, or a
        zero-argument callable returning it. The callable lets a front door defer building labels of a
        large group until someone reads them.
    size
        Number of members; must equal ``len(labels)``.
    scalar
        True for a dimensionless group (one member, formatted as just ``name``).
    """

    __slots__ = ("name", "positions", "size", "scalar", "_labels", "_label_factory")

    def __init__(
        self,
        name: str,
        positions: Positions,
        labels: pd.Index | Callable[[], pd.Index],
        size: int,
        scalar: bool = False,
    ) -> None:
        self.name = name
        self.positions = positions
        self.size = int(size)
        self.scalar = scalar
        self._labels: pd.Index | None = None
        self._label_factory: Callable[[], pd.Index] | None = None
        self.relabel(labels)

    @property
    def labels(self) -> pd.Index:
        """Business labels of the members, in the order of ``positions``."""
        if self._labels is None:
            assert self._label_factory is not None
            labels = self._label_factory()
            if len(labels) != self.size:
                raise ValueError(f"group {self.name!r}: {len(labels)} labels for {self.size} members")
            self._labels, self._label_factory = labels, None
        return self._labels

    def relabel(self, labels: pd.Index | Callable[[], pd.Index]) -> None:
        """Set the members' labels (same count; a callable is called when the labels are first read), e.g.
        business keys for members a front door numbered."""
        if callable(labels):
            self._labels, self._label_factory = None, labels
            return
        if len(labels) != self.size:
            raise ValueError(f"group {self.name!r}: {len(labels)} labels for {self.size} members")
        self._labels, self._label_factory = labels, None

    def indices(self) -> np.ndarray:
        """Positions as an integer array."""
        if isinstance(self.positions, slice):
            return np.arange(self.positions.start or 0, self.positions.stop, dtype=np.int64)
        return np.asarray(self.positions, dtype=np.int64)

    def format(self, member: int) -> str:
        """Business name of the ``member``-th element, e.g. ``capacity[DC_MUC, pack, 2026-W47]``."""
        if self.scalar:
            return self.name
        return format_label(self.name, self.labels[member])

    def __repr__(self) -> str:
        return f"Group({self.name!r}, size={self.size})"


def format_label(name: str, label: Hashable) -> str:
    """``name[a, b, c]`` for a tuple label, ``name[a]`` for a single one."""
    parts = label if isinstance(label, tuple) else (label,)
    return f"{name}[{', '.join(map(_format_part, parts))}]"


def _format_part(part: object) -> str:
    if isinstance(part, pd.Timestamp) and part == part.normalize():
        return part.date().isoformat()
    return str(part)


def default_groups(name: str, n: int) -> dict[str, Group]:
    """One group spanning all ``n`` positions, labelled ``0..n-1`` (used when none are given)."""
    if n == 0:
        return {}
    return {name: Group(name, slice(0, n), pd.RangeIndex(n), n)}


@dataclass(eq=False)
class StandardForm:
    """A linear (mixed-integer) model in standard form, with group names and labels.

    Arrays are in *solver units*. ``col_scale``, ``row_scale`` and ``objective_scale`` (all optional,
    default 1) record how a front door scaled the model (linopy's ``scaling=``): solver column
    ``y = col_scale * x``, solver row ``= row_scale * row``, solver objective ``= objective_scale *
    objective``. Results are converted back to user units.

    Attributes
    ----------
    A
        Constraint matrix, ``scipy.sparse.csr_array`` of shape ``(n_rows, n_cols)``.
    row_lower, row_upper
        Row activity bounds; ``-inf``/``inf`` where absent. Equality rows have equal bounds.
    col_lower, col_upper
        Variable bounds.
    integrality
        ``uint8`` per column: 0 continuous, 1 integer, 2 semi-continuous.
    objective, objective_constant, sense
        ``c``, ``c0`` and ``"min"``/``"max"``.
    variable_groups, constraint_groups
        Group name -> :class:`Group`. Every column/row belongs to exactly one group.
    source
        Which front door built it (``"linopy"``, ``"pyomo"``, ``"arrays"``).
    build_seconds
        Wall time the front door took to produce this form.
    """

    A: sp.csr_array
    row_lower: np.ndarray
    row_upper: np.ndarray
    col_lower: np.ndarray
    col_upper: np.ndarray
    integrality: np.ndarray
    objective: np.ndarray
    objective_constant: float = 0.0
    sense: Literal["min", "max"] = "min"
    variable_groups: dict[str, Group] = field(default_factory=dict)
    constraint_groups: dict[str, Group] = field(default_factory=dict)
    col_scale: np.ndarray | None = None
    row_scale: np.ndarray | None = None
    objective_scale: float = 1.0
    source: str = "arrays"
    build_seconds: float = 0.0

    def __post_init__(self) -> None:
        n_rows, n_cols = self.A.shape
        for label, array, n in (
            ("row_lower", self.row_lower, n_rows),
            ("row_upper", self.row_upper, n_rows),
            ("col_lower", self.col_lower, n_cols),
            ("col_upper", self.col_upper, n_cols),
            ("integrality", self.integrality, n_cols),
            ("objective", self.objective, n_cols),
        ):
            if array.shape != (n,):
                raise ValueError(f"StandardForm.{label} has shape {array.shape}, expected ({n},)")
        if self.sense not in ("min", "max"):
            raise ValueError(f"StandardForm.sense must be 'min' or 'max', not {self.sense!r}")
        if not self.variable_groups:
            self.variable_groups = default_groups("x", n_cols)
        if not self.constraint_groups:
            self.constraint_groups = default_groups("row", n_rows)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        A: sp.sparray | sp.spmatrix | np.ndarray,
        row_lower: Iterable[float] | float,
        row_upper: Iterable[float] | float,
        objective: Iterable[float],
        col_lower: Iterable[float] | float = 0.0,
        col_upper: Iterable[float] | float = np.inf,
        integrality: Iterable[int] | None = None,
        objective_constant: float = 0.0,
        sense: Literal["min", "max"] = "min",
        variable_groups: Mapping[str, pd.Index | int] | None = None,
        constraint_groups: Mapping[str, pd.Index | int] | None = None,
    ) -> StandardForm:
        """Build a standard form from plain arrays.

        ``variable_groups`` / ``constraint_groups`` map a group name to its labels (a pandas Index) or
        to a member count; groups take consecutive columns/rows in the order given.
        """
        matrix = sp.csr_array(A, dtype=float)
        n_rows, n_cols = matrix.shape

        def vec(values: Iterable[float] | float, n: int) -> np.ndarray:
            return np.broadcast_to(np.asarray(values, dtype=float), (n,)).copy()

        integ = (
            np.zeros(n_cols, dtype=np.uint8)
            if integrality is None
            else np.asarray(list(integrality) if not isinstance(integrality, np.ndarray) else integrality).astype(
                np.uint8
            )
        )
        return cls(
            A=matrix,
            row_lower=vec(row_lower, n_rows),
            row_upper=vec(row_upper, n_rows),
            col_lower=vec(col_lower, n_cols),
            col_upper=vec(col_upper, n_cols),
            integrality=integ,
            objective=vec(objective, n_cols),
            objective_constant=float(objective_constant),
            sense=sense,
            variable_groups=_consecutive_groups(variable_groups, n_cols, "variable"),
            constraint_groups=_consecutive_groups(constraint_groups, n_rows, "constraint"),
        )

    # ------------------------------------------------------------------ shape and kind
    @property
    def n_cols(self) -> int:
        """Number of columns (variables)."""
        return self.A.shape[1]

    @property
    def n_rows(self) -> int:
        """Number of rows (constraints)."""
        return self.A.shape[0]

    @property
    def nnz(self) -> int:
        """Number of nonzeros of the constraint matrix."""
        return int(self.A.nnz)

    @property
    def is_mip(self) -> bool:
        """True when any column is integer or semi-continuous."""
        return bool(self.integrality.any())

    @property
    def has_continuous(self) -> bool:
        """Whether any column is continuous."""
        return bool((self.integrality == CONTINUOUS).any())

    # ------------------------------------------------------------------ names
    def column_name(self, col: int) -> str:
        """Business name of column ``col``, e.g. ``flow[DC_MUC, z1, 2026-W47]``."""
        group, member = _locate(self.variable_groups, col, self.n_cols)
        return group.format(member)

    def row_name(self, row: int) -> str:
        """Business name of row ``row``, e.g. ``capacity[DC_MUC, pack, 2026-W47]``."""
        group, member = _locate(self.constraint_groups, row, self.n_rows)
        return group.format(member)

    def row_owner(self, row: int) -> tuple[Group, int]:
        """The constraint group holding ``row`` and the member's number within it."""
        return _locate(self.constraint_groups, row, self.n_rows)

    def column_owner(self, col: int) -> tuple[Group, int]:
        """The variable group holding ``col`` and the member's number within it."""
        return _locate(self.variable_groups, col, self.n_cols)

    def summary(self) -> str:
        """One line: model kind, sense, columns, rows and nonzeros with their group counts."""
        kind = "MILP" if self.is_mip else "LP"
        return (
            f"{kind} ({self.sense}) with {self.n_cols} columns in {len(self.variable_groups)} groups, "
            f"{self.n_rows} rows in {len(self.constraint_groups)} groups, {self.nnz} nonzeros"
        )

    def __repr__(self) -> str:
        return f"StandardForm({self.summary()}, source={self.source!r})"


def _consecutive_groups(spec: Mapping[str, pd.Index | int] | None, total: int, what: str) -> dict[str, Group]:
    if not spec:
        return {}
    groups: dict[str, Group] = {}
    start = 0
    for name, labels in spec.items():
        index = pd.RangeIndex(labels) if isinstance(labels, int) else pd.Index(labels)
        groups[name] = Group(name, slice(start, start + len(index)), index, len(index))
        start += len(index)
    if start != total:
        raise ValueError(f"{what} groups cover {start} positions, the model has {total}")
    return groups


def _locate(groups: Mapping[str, Group], position: int, total: int) -> tuple[Group, int]:
    if not 0 <= position < total:
        raise IndexError(f"position {position} out of range 0..{total - 1}")
    for group in groups.values():
        if isinstance(group.positions, slice):
            start, stop, _ = group.positions.indices(total)
            if start <= position < stop:
                return group, position - start
        else:
            hit = np.flatnonzero(np.asarray(group.positions) == position)
            if hit.size:
                return group, int(hit[0])
    raise LookupError(f"position {position} belongs to no group")
