"""Scaling a model before it reaches a solver, and what a solver returns mapped back to user units.

A network-design model mixes costs of 1e7 (a DC's fixed cost per year) with 1e-2 (transport per unit) and
big-M coefficients of 1e5 (a site's capacity times its open variable) with 1 (a flow in a demand row):
simplex and interior-point codes then lose speed and accuracy, and HiGHS says so ("excessively large
costs", "badly scaled"). :func:`scale` gives the solver an equivalent model::

    solver column   y_j = s_j x_j          (s_j = 1 for integer and semi-continuous columns)
    solver row      r_i (a_i x)            (row bounds times r_i)
    solver objective  o (c x + c0)

with every factor a power of two, so that scaling and unscaling are exact in floating point (only the
exponents change). The factors are chosen by geometric-mean scaling (Curtis & Reid's idea in its simple,
iterated form, as in Gurobi's and CPLEX's presolve): rows, then continuous columns, each divided by the
geometric mean of its largest and smallest coefficient, the costs taking part as one more row when the
columns are scaled; then the objective by the power of two that centres the costs' range on 1 (in log
scale), lowered if need be so that the largest cost is at most :data:`COST_TARGET`. Row and column factors
stay within ``2**±MAX_EXPONENT`` so that a solver's absolute tolerances keep their meaning in user units.
:class:`~solvers.model.StandardForm` records the composed factors (``col_scale``, ``row_scale``,
``objective_scale``) and :func:`solvers.solve` maps values, duals, reduced costs, objective and bound back.
A model that is already well scaled is left alone (:func:`well_scaled`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from solvers.model import CONTINUOUS, StandardForm

MAX_EXPONENT = 10
"""Most factor ``2**10`` (and least ``2**-10``) for a row or a column."""
COST_TARGET = 2.0**16
"""The objective is scaled so that its largest cost is at most this (about 6.6e4; HiGHS warns above 1e6)."""
PASSES = 4
"""Rows-then-columns passes of geometric-mean scaling."""


@dataclass(frozen=True)
class Scaling:
    """Factors of one scaling (powers of two): solver column ``y = col * x``, solver row ``= row * row``,
    solver objective ``= objective * objective``; ``None`` = all ones."""

    col: np.ndarray | None
    row: np.ndarray | None
    objective: float = 1.0

    @property
    def is_identity(self) -> bool:
        """True when nothing is scaled."""
        return self.col is None and self.row is None and self.objective == 1.0


def _pow2(values: np.ndarray) -> np.ndarray:
    """The power of two nearest to each value (in log scale), the exponent clipped to +-MAX_EXPONENT."""
    with np.errstate(divide="ignore"):
        e = np.round(np.log2(values))
    e = np.where(np.isfinite(e), e, 0.0)
    return np.exp2(np.clip(e, -MAX_EXPONENT, MAX_EXPONENT))


def _geometric(abs_a: sp.csr_array, axis: int, n: int) -> np.ndarray:
    """Per row (axis=1) or column (axis=0): 1 / sqrt(largest * smallest) absolute nonzero, 1 where empty."""
    m = abs_a if axis == 1 else abs_a.T.tocsr()
    counts = np.diff(m.indptr)
    big = np.zeros(n)
    small = np.zeros(n)
    has = counts > 0
    if has.any():
        starts = m.indptr[:-1][has]
        big[has] = np.maximum.reduceat(m.data, starts)
        small[has] = np.minimum.reduceat(m.data, starts)
    out = np.ones(n)
    out[has] = 1.0 / np.sqrt(big[has] * small[has])
    return out


WELL_SCALED_RANGE = 1e6
"""A model whose matrix and costs each span at most this ratio, with no cost above :data:`COST_TARGET`, is handed
over as it is (the solver's own scaling does well there, and its path to an optimum stays the same)."""


def well_scaled(form: StandardForm) -> bool:
    """Whether ``form`` needs no scaling (see :data:`WELL_SCALED_RANGE`)."""
    r = coefficient_ranges(form)
    (a_lo, a_hi), (c_lo, c_hi) = r["matrix"], r["cost"]
    return (c_hi <= COST_TARGET and (c_lo == 0.0 or c_hi / c_lo <= WELL_SCALED_RANGE)
            and (a_lo == 0.0 or a_hi / a_lo <= WELL_SCALED_RANGE))


def choose_scaling(form: StandardForm) -> Scaling:
    """Power-of-two row, column and objective factors for ``form`` (in its own units; see the module doc);
    none for a well-scaled model (:func:`well_scaled`)."""
    if well_scaled(form):
        return Scaling(None, None)
    n_rows, n_cols = form.A.shape
    A = sp.csr_array(form.A, copy=True)
    A.data = np.abs(A.data)
    A.eliminate_zeros()
    cost = np.abs(np.asarray(form.objective, dtype=float))
    scalable = form.integrality == CONTINUOUS
    row = np.ones(n_rows)
    col = np.ones(n_cols)
    if A.nnz:
        for _ in range(PASSES):
            scaled = sp.csr_array((A.data * np.repeat(row, np.diff(A.indptr)) * (1.0 / col)[A.indices],
                                   A.indices, A.indptr), shape=A.shape)
            row = row * _pow2(_geometric(scaled, 1, n_rows))
            scaled = sp.csr_array((A.data * np.repeat(row, np.diff(A.indptr)) * (1.0 / col)[A.indices],
                                   A.indices, A.indptr), shape=A.shape)
            # the costs take part as one more row, so that a column's cost and coefficients are balanced together
            with_cost = sp.vstack([scaled, sp.csr_array((cost / col)[None, :])]).tocsr()
            col_step = 1.0 / _pow2(_geometric(with_cost, 0, n_cols))
            col = np.where(scalable, col * col_step, 1.0)
            col = np.exp2(np.clip(np.log2(col), -MAX_EXPONENT, MAX_EXPONENT))
        row = np.exp2(np.clip(np.log2(row), -MAX_EXPONENT, MAX_EXPONENT))
    scaled_cost = (cost / col)[cost > 0]
    objective = 1.0
    if scaled_cost.size:
        top, low = float(scaled_cost.max()), float(scaled_cost.min())
        # centre the costs' range on 1 (in log scale), then make sure the largest is at most COST_TARGET
        e = -np.round(0.5 * (np.log2(top) + np.log2(low)))
        e = min(e, np.floor(np.log2(COST_TARGET / top)))
        objective = float(np.exp2(e))
    return Scaling(col=None if np.all(col == 1.0) else col, row=None if np.all(row == 1.0) else row,
                   objective=objective)


def apply_scaling(form: StandardForm, scaling: Scaling) -> StandardForm:
    """A new form: ``form`` with ``scaling`` applied, its recorded factors composed with any it had."""
    if scaling.is_identity:
        return form
    A = form.A
    col = np.ones(form.n_cols) if scaling.col is None else scaling.col
    row = np.ones(form.n_rows) if scaling.row is None else scaling.row
    data = A.data * np.repeat(row, np.diff(A.indptr)) / col[A.indices]
    o = float(scaling.objective)
    return replace(
        form,
        A=sp.csr_array((data, A.indices.copy(), A.indptr.copy()), shape=A.shape),
        row_lower=form.row_lower * row,
        row_upper=form.row_upper * row,
        col_lower=form.col_lower * col,
        col_upper=form.col_upper * col,
        objective=form.objective * (o / col),
        objective_constant=form.objective_constant * o,
        col_scale=col if form.col_scale is None else form.col_scale * col,
        row_scale=row if form.row_scale is None else form.row_scale * row,
        objective_scale=form.objective_scale * o,
    )


def scale(form: StandardForm) -> tuple[StandardForm, Scaling]:
    """The scaled form a solver is given (:func:`choose_scaling` then :func:`apply_scaling`) and the factors."""
    s = choose_scaling(form)
    return apply_scaling(form, s), s


def coefficient_ranges(form: StandardForm) -> dict[str, tuple[float, float]]:
    """Smallest and largest absolute nonzero of the matrix, the costs and the finite bounds (as HiGHS reports
    them in its "Coefficient ranges")."""

    def rng(v: np.ndarray) -> tuple[float, float]:
        a = np.abs(v[np.isfinite(v) & (v != 0)])
        return (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)

    return {"matrix": rng(form.A.data), "cost": rng(np.asarray(form.objective, dtype=float)),
            "bound": rng(np.concatenate([form.col_lower, form.col_upper])),
            "rhs": rng(np.concatenate([form.row_lower, form.row_upper]))}
