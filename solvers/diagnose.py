"""Infeasibility diagnosis in business terms.

Two methods:

* ``iis`` — HiGHS's irreducible infeasible subsystem on the LP relaxation: a smallest set of
  constraints (and variable bounds) that cannot hold together; dropping any one of them makes the rest
  feasible. Applies when the LP relaxation is already infeasible.
* ``elastic`` — re-solve with a penalised slack on every row (integrality kept)::

      min  sum_r w_r (up_r + down_r)
      s.t. row_lower_r <= A_r x - up_r + down_r <= row_upper_r,   up, down >= 0

  and report the rows whose slack is positive: which constraints must give way, in which direction and
  by how much. ``penalties={"demand": 1000}`` makes a group expensive to relax, so the diagnosis prefers
  to blame others. Used when the LP relaxation is feasible but the integer model is not, or on request.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, Literal

import numpy as np
import pandas as pd
import scipy.sparse as sp

from solvers.backends.base import SolveParams, get_backend
from solvers.errors import SolverError, SolverOptionError
from solvers.frontends import to_standard_form
from solvers.model import Group, StandardForm
from solvers.result import Termination

Side = Literal["lower", "upper", "both"]


@dataclass(frozen=True)
class Conflict:
    """One constraint or variable bound taking part in the infeasibility.

    Attributes
    ----------
    kind
        ``"constraint"`` or ``"bound"`` (a variable's lower/upper bound).
    group, label, name
        Business identity: group ``capacity``, label ``("DC_MUC", "pack", "2026-W47")``, name
        ``capacity[DC_MUC, pack, 2026-W47]``.
    side
        Which bound of the row (or variable) is involved: ``lower`` (a >= or the lower side of ==),
        ``upper`` (a <=), ``both`` (an equality/boxed bound, either side).
    lower, upper
        The row's (or variable's) bounds as modelled.
    violation
        Elastic method only: by how much the bound must give way (the upper bound must rise by this much,
        the lower bound drop by it). NaN for IIS.
    activity
        Elastic method only: the row activity in the least-violating solution.
    """

    kind: Literal["constraint", "bound"]
    group: str
    label: Hashable
    name: str
    side: Side
    lower: float
    upper: float
    violation: float = float("nan")
    activity: float = float("nan")

    def describe(self) -> str:
        """One sentence, e.g. ``capacity[DC_MUC] (<= 100) must rise by 30 to 130``."""
        if self.side == "upper" or (self.side == "both" and self.activity > self.upper):
            relation, bound = "<=", self.upper
        else:
            relation, bound = ">=", self.lower
        if self.side == "both" and np.isnan(self.violation):
            relation, bound = "==", self.upper
        text = f"{self.name} ({relation} {bound:g})"
        if np.isnan(self.violation):
            return text
        direction, target = ("rise", bound + self.violation) if relation == "<=" else ("drop", bound - self.violation)
        return f"{text} must {direction} by {self.violation:g} to {target:g}"


@dataclass(frozen=True)
class InfeasibilityReport:
    """Outcome of :func:`diagnose_infeasibility`.

    Attributes
    ----------
    infeasible
        False when the model turned out to be feasible (then ``conflicts`` is empty).
    method
        ``"iis"``, ``"elastic"`` or ``"none"`` (model feasible).
    conflicts
        The constraints (and bounds) to look at, largest violation first for the elastic method.
    total_violation
        Elastic method: the penalised sum of slacks at the optimum (0 if feasible).
    note
        How the diagnosis was obtained and what it means.
    seconds
        Wall time of the diagnosis.
    """

    infeasible: bool
    method: Literal["iis", "elastic", "none"]
    conflicts: tuple[Conflict, ...] = ()
    total_violation: float = float("nan")
    note: str = ""
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict, repr=False)

    def to_frame(self) -> pd.DataFrame:
        """One row per conflict: kind, group, name, side, lower, upper, violation, activity."""
        columns = ["kind", "group", "name", "side", "lower", "upper", "violation", "activity"]
        return pd.DataFrame([{c: getattr(k, c) for c in columns} for k in self.conflicts], columns=columns)

    def by_group(self) -> pd.Series:
        """Number of conflicts per group, the quickest view of which business rule is at odds."""
        return pd.Series([k.group for k in self.conflicts], dtype=object).value_counts()

    def __str__(self) -> str:
        if not self.infeasible:
            return f"model is feasible ({self.note})"
        lines = [f"infeasible: {len(self.conflicts)} conflicting item(s) by {self.method} — {self.note}"]
        lines += [f"  - {conflict.describe()}" for conflict in self.conflicts]
        return "\n".join(lines)


def diagnose_infeasibility(
    model: Any,
    method: Literal["auto", "iis", "elastic"] = "auto",
    penalties: Mapping[str, float] | None = None,
    solver: str = "highs",
    time_limit: float | None = None,
    tolerance: float = 1e-6,
) -> InfeasibilityReport:
    """Name the constraints that make ``model`` infeasible, by group and label.

    Parameters
    ----------
    model
        linopy model, Pyomo model or :class:`StandardForm`.
    method
        ``"auto"``: IIS when the LP relaxation is infeasible, else elastic. ``"iis"``: IIS only (raises
        if the relaxation is feasible). ``"elastic"``: elastic re-solve only.
    penalties
        Cost per unit of slack by constraint group (default 1); a high value protects a group.
    solver
        Backend for the elastic re-solve (IIS always uses HiGHS).
    time_limit
        Seconds for each solve involved.
    tolerance
        Slack below this is treated as zero.
    """
    if method not in ("auto", "iis", "elastic"):
        raise SolverOptionError(f"method must be 'auto', 'iis' or 'elastic', not {method!r}")
    t0 = perf_counter()
    form = to_standard_form(model)
    if method in ("auto", "iis"):
        relaxation_infeasible, report = _iis(form, time_limit)
        if relaxation_infeasible and report is not None:
            return _timed(report, t0)
        if method == "iis":
            raise SolverError(
                "the LP relaxation is feasible, so there is no LP IIS; the infeasibility (if any) comes from "
                "integrality. Use method='elastic'."
            )
    return _timed(_elastic(form, penalties or {}, solver, time_limit, tolerance), t0)


def _timed(report: InfeasibilityReport, t0: float) -> InfeasibilityReport:
    return InfeasibilityReport(
        infeasible=report.infeasible,
        method=report.method,
        conflicts=report.conflicts,
        total_violation=report.total_violation,
        note=report.note,
        seconds=perf_counter() - t0,
        extra=report.extra,
    )


# --------------------------------------------------------------------------------------------- IIS
def _iis(form: StandardForm, time_limit: float | None) -> tuple[bool, InfeasibilityReport | None]:
    """(LP relaxation infeasible?, IIS report or None)."""
    import highspy

    from solvers.backends.highs import HighsBackend

    relaxed = _replace(form, integrality=np.zeros(form.n_cols, dtype=np.uint8))
    backend = HighsBackend()
    h = backend.build(relaxed, SolveParams(time_limit=time_limit))
    h.setOptionValue("presolve", "off")  # the IIS is computed on the model as given
    h.run()
    status = h.getModelStatus()
    if status not in (highspy.HighsModelStatus.kInfeasible, highspy.HighsModelStatus.kUnboundedOrInfeasible):
        return False, None
    strategy = int(highspy.IisStrategy.kIisStrategyFromLp) | int(highspy.IisStrategy.kIisStrategyIrreducible)
    h.setOptionValue("iis_strategy", strategy)
    result, iis = h.getIis()
    if result == highspy.HighsStatus.kError or not iis.valid_ or not (len(iis.row_index_) or len(iis.col_index_)):
        return True, None
    conflicts = [
        _row_conflict(form, int(row), _side(int(bound)))
        for row, bound in zip(iis.row_index_, iis.row_bound_)
        if _side(int(bound)) is not None
    ]
    conflicts += [
        _bound_conflict(form, int(col), _side(int(bound)))
        for col, bound in zip(iis.col_index_, iis.col_bound_)
        if _side(int(bound)) is not None
    ]
    kind = "LP relaxation of the MILP" if form.is_mip else "LP"
    note = (
        f"irreducible infeasible subsystem of the {kind} (HiGHS getIis): these cannot all hold; relaxing any "
        "one of them removes this conflict (other conflicts may remain)"
    )
    return True, InfeasibilityReport(infeasible=True, method="iis", conflicts=tuple(conflicts), note=note)


def _side(bound_status: int) -> Side | None:
    return {2: "lower", 3: "upper", 4: "both"}.get(bound_status)


# --------------------------------------------------------------------------------------------- elastic
def _elastic(
    form: StandardForm,
    penalties: Mapping[str, float],
    solver: str,
    time_limit: float | None,
    tolerance: float,
) -> InfeasibilityReport:
    unknown = set(penalties) - set(form.constraint_groups)
    if unknown:
        raise SolverOptionError(
            f"penalties name unknown constraint groups {sorted(unknown)}; groups are {sorted(form.constraint_groups)}"
        )
    weight = np.ones(form.n_rows)
    for name, value in penalties.items():
        if not value > 0:
            raise SolverOptionError(f"penalty for {name!r} must be positive, not {value!r}")
        weight[form.constraint_groups[name].positions] = float(value)
    has_upper = np.flatnonzero(np.isfinite(form.row_upper))
    has_lower = np.flatnonzero(np.isfinite(form.row_lower))
    n_up, n_down = len(has_upper), len(has_lower)
    # up_r relaxes the upper bound (activity may exceed it), down_r the lower bound.
    slack_up = sp.csr_array((-np.ones(n_up), (has_upper, np.arange(n_up))), shape=(form.n_rows, n_up))
    slack_down = sp.csr_array((np.ones(n_down), (has_lower, np.arange(n_down))), shape=(form.n_rows, n_down))
    A = sp.csr_array(sp.hstack([form.A, slack_up, slack_down], format="csr"))
    n_slack = n_up + n_down
    groups = dict(form.variable_groups)
    groups["_slack"] = Group("_slack", slice(form.n_cols, form.n_cols + n_slack), pd.RangeIndex(n_slack), n_slack)
    elastic = StandardForm(
        A=A,
        row_lower=form.row_lower,
        row_upper=form.row_upper,
        col_lower=np.concatenate([form.col_lower, np.zeros(n_slack)]),
        col_upper=np.concatenate([form.col_upper, np.full(n_slack, np.inf)]),
        integrality=np.concatenate([form.integrality, np.zeros(n_slack, dtype=np.uint8)]),
        objective=np.concatenate([np.zeros(form.n_cols), weight[has_upper], weight[has_lower]]),
        sense="min",
        variable_groups=groups,
        constraint_groups=form.constraint_groups,
        source="elastic",
    )
    backend = get_backend(solver)
    out = backend.solve(elastic, SolveParams(time_limit=time_limit, mip_gap=0.0 if elastic.is_mip else None))
    if not out.has_solution or out.x is None:
        raise SolverError(
            f"the elastic re-solve found no solution (termination={out.termination.value}); the conflict lies "
            "in variable bounds or integrality alone, which the elastic method keeps hard"
        )
    slack = out.x[form.n_cols :]
    up, down = slack[:n_up], slack[n_up:]
    activity = form.A @ out.x[: form.n_cols]
    violation = np.zeros(form.n_rows)
    side_of = np.empty(form.n_rows, dtype=object)
    hit_up = has_upper[up > tolerance]
    violation[hit_up] = up[up > tolerance]
    side_of[hit_up] = "upper"
    hit_down = has_lower[down > tolerance]
    violation[hit_down] = np.maximum(violation[hit_down], down[down > tolerance])
    side_of[hit_down] = "lower"
    rows = np.flatnonzero(violation > tolerance)
    rows = rows[np.argsort(-violation[rows], kind="stable")]
    conflicts = tuple(
        _row_conflict(form, int(r), side_of[r], violation=float(violation[r]), activity=float(activity[r]))
        for r in rows
    )
    total = float(out.objective)
    proved = out.termination is Termination.OPTIMAL
    if not conflicts:
        return InfeasibilityReport(
            infeasible=False,
            method="none",
            total_violation=0.0,
            note="the elastic re-solve needs no slack: every constraint can hold",
        )
    note = (
        "elastic re-solve: the least total (penalised) violation that makes the model feasible"
        + ("" if proved else f" (not proved minimal: termination={out.termination.value})")
        + "; each listed constraint must give way by the amount shown"
    )
    return InfeasibilityReport(infeasible=True, method="elastic", conflicts=conflicts, total_violation=total, note=note)


# --------------------------------------------------------------------------------------------- helpers
def _row_conflict(
    form: StandardForm, row: int, side: Side, violation: float = float("nan"), activity: float = float("nan")
) -> Conflict:
    group, member = form.row_owner(row)
    label = None if group.scalar else group.labels[member]
    scale = 1.0 if form.row_scale is None else float(form.row_scale[row])
    return Conflict(
        kind="constraint",
        group=group.name,
        label=label,
        name=group.format(member),
        side=side,
        lower=float(form.row_lower[row]) / scale,
        upper=float(form.row_upper[row]) / scale,
        violation=violation / scale,
        activity=activity / scale,
    )


def _bound_conflict(form: StandardForm, col: int, side: Side) -> Conflict:
    group, member = form.column_owner(col)
    scale = 1.0 if form.col_scale is None else float(form.col_scale[col])
    return Conflict(
        kind="bound",
        group=group.name,
        label=None if group.scalar else group.labels[member],
        name=group.format(member),
        side=side,
        lower=float(form.col_lower[col]) / scale,
        upper=float(form.col_upper[col]) / scale,
    )


def _replace(form: StandardForm, **changes: Any) -> StandardForm:
    fields = {
        name: getattr(form, name)
        for name in (
            "A",
            "row_lower",
            "row_upper",
            "col_lower",
            "col_upper",
            "integrality",
            "objective",
            "objective_constant",
            "sense",
            "variable_groups",
            "constraint_groups",
            "col_scale",
            "row_scale",
            "objective_scale",
            "source",
        )
    }
    fields.update(changes)
    return StandardForm(**fields)
