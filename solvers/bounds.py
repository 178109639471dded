"""A lower bound of an LP that holds whatever the duals it is computed from (weak duality).

An interior-point method without crossover, or a first-order method (PDLP), ends with duals that are optimal
only to a tolerance; its objective is then not a proven bound. Any row duals ``y`` give one, though
(Neumaier & Shcherbina, Math. Programming 99, 2004, "safe bounds" in its simplest form): for

    min c x + c0   s.t.   row_lower <= A x <= row_upper,   col_lower <= x <= col_upper

and the reduced costs ``d = c - A^T y``, every feasible x has

    c x + c0 >= c0 + sum_i y_i (row_lower_i if y_i > 0 else row_upper_i)
                   + sum_j d_j (col_lower_j if d_j > 0 else col_upper_j),

because ``c x = y A x + d x`` and each term is bounded on its side. A dual whose sign asks for an infinite row
side is set to 0 first (still a valid y); a column whose reduced cost asks for an infinite bound makes the bound
``-inf`` unless its reduced cost is within ``zero_tol`` of 0 (solver noise), in which case it is taken as 0 and
the bound is lowered by the most that noise can be worth on the column's implied range (``implied_span``).
"""

from __future__ import annotations

import numpy as np

from solvers.model import StandardForm


def dual_bound(form: StandardForm, row_duals: np.ndarray, zero_tol: float = 1e-9,
               implied_span: float | None = None) -> float:
    """A lower bound of the LP ``form`` (a minimisation, in the form's own units) from any row duals.

    ``zero_tol``: reduced costs this close to 0 (relative to the largest cost) on columns unbounded on the side
    they ask for count as 0; ``implied_span``: a bound on such a column's value (e.g. total demand), charged at
    ``zero_tol`` per unit so that the result stays a bound; ``None`` = such columns make the bound ``-inf``.
    Returns ``-inf`` when no finite bound follows; ``nan`` input duals give ``-inf``.
    """
    if form.sense != "min":
        raise ValueError("dual_bound: a minimisation is expected (negate the objective of a maximisation)")
    y = np.asarray(row_duals, dtype=float)
    if y.shape != (form.n_rows,) or not np.all(np.isfinite(y)):
        return -np.inf
    lo, up = form.row_lower, form.row_upper
    y = np.where((y > 0) & ~np.isfinite(lo), 0.0, y)
    y = np.where((y < 0) & ~np.isfinite(up), 0.0, y)
    c = np.asarray(form.objective, dtype=float)
    d = c - form.A.T @ y
    total = float(form.objective_constant)
    total += float(np.sum(np.where(y > 0, y * np.where(np.isfinite(lo), lo, 0.0), 0.0)))
    total += float(np.sum(np.where(y < 0, y * np.where(np.isfinite(up), up, 0.0), 0.0)))
    cl, cu = form.col_lower, form.col_upper
    need = np.where(d > 0, cl, np.where(d < 0, cu, 0.0))
    bad = ~np.isfinite(need)
    if bad.any():
        tol = zero_tol * max(1.0, float(np.abs(c).max(initial=0.0)))
        if implied_span is None or np.any(np.abs(d[bad]) > tol):
            return -np.inf
        total -= float(np.abs(d[bad]).sum()) * float(implied_span)
        d = np.where(bad, 0.0, d)
        need = np.where(bad, 0.0, need)
    return total + float(d @ need)
