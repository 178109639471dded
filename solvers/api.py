"""``solve()``: model in, :class:`~solvers.result.SolveResult` out, whatever the front door or backend."""

from __future__ import annotations

from collections.abc import Mapping
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd

from solvers.backends.base import (
    Backend,
    LogTarget,
    SolveParams,
    get_backend,
    note_in_log,
    validate_common,
)
from solvers.basis import Basis
from solvers.errors import SolverOptionError
from solvers.frontends import to_standard_form
from solvers.model import StandardForm
from solvers.result import GroupValues, SolveResult, Timings
from solvers.scaling import Scaling, scale

WarmStart = SolveResult | Mapping[str, pd.Series] | Basis


def solve(
    model: Any,
    solver: str = "highs",
    time_limit: float | None = None,
    mip_gap: float | None = None,
    threads: int | None = None,
    warm_start: WarmStart | None = None,
    options: Mapping[str, Any] | None = None,
    log: LogTarget = None,
    raise_on_nonoptimal: bool = False,
    mip_duals: bool = False,
    keep_basis: bool = False,
    scaling: bool = True,
    objective_offset: float = 0.0,
) -> SolveResult:
    """Solve a linopy model, a Pyomo model or a :class:`StandardForm` with a registered backend.

    Parameters
    ----------
    model
        ``linopy.Model``, Pyomo ``ConcreteModel`` or :class:`StandardForm`.
    solver
        Registry name: ``"highs"``, ``"ortools"`` (= ``"ortools-scip"``), ``"ortools-cpsat"`` (pure-integer
        models), ``"ortools-glop"`` (LPs). See :func:`solvers.available`.
    time_limit
        Wall-clock limit in seconds. A run that hits it is a result with ``termination=time_limit``
        (and the incumbent, if any), not an exception.
    mip_gap
        Relative MIP gap at which to stop (0 proves optimality; backend default if None).
    threads
        Threads the solver may use (backend default if None).
    warm_start
        A previous :class:`SolveResult` or ``{group: Series by label}``; values are matched by group and
        label, so a solution of a slightly different model still applies where labels match (a MIP start).
        For an LP, a :class:`~solvers.basis.Basis` (or a result that kept one): the simplex starts from it,
        matched by group and label when the structure differs (see :mod:`solvers.basis`); backends without
        basis support ignore it (``result.basis_start == "unsupported"``).
    options
        Solver-specific options passed through unchanged (unknown ones raise
        :class:`~solvers.errors.SolverOptionError`).
    log
        Solver log destination: file path, callable receiving text, ``True`` for stdout, None for silence.
    raise_on_nonoptimal
        Raise :class:`~solvers.errors.NoOptimalSolutionError` unless the solver proves optimality.
    mip_duals
        For a MILP with a solution: fix the integer variables at their values, re-solve the remaining LP
        and report its duals and reduced costs (the marginal values *given* the integer decisions, e.g.
        of one more dock-door hour with the network design held fixed). The LP re-solve uses the same
        backend if it reports duals, else HiGHS; its time is added to ``wall_time.solve``.
    keep_basis
        For an LP solved by a backend with basis support: keep the final simplex basis in
        ``result.basis`` (a :class:`~solvers.basis.Basis`, to warm-start a later, similar LP).
    scaling
        Scale the model before the solver sees it (:mod:`solvers.scaling`: power-of-two row, column and
        objective factors, so that costs of 1e7 beside 1e-2 and big-M coefficients reach the solver in a sane
        range); every value, dual, reduced cost, the objective and the bound come back in the model's units.
        ``result.scaling`` holds the factors used. False hands the model over as it is.
    objective_offset
        A constant the caller adds to this model's objective outside the model (network design keeps the closing
        costs of today's DCs aside). It changes nothing in the solve or the result: it is written to the log
        (:data:`OFFSET_NOTE`) so that a log reader shows the objective and gap the caller will report.

    Returns
    -------
    SolveResult
    """
    backend = get_backend(solver)
    time_limit, mip_gap, threads = validate_common(time_limit, mip_gap, threads)
    if options is not None and not isinstance(options, Mapping):
        raise SolverOptionError(f"options must be a dict of solver-specific options, not {type(options).__name__}")
    form = to_standard_form(model)
    built_here = form is not model
    backend.check_model(form)
    basis = warm_start.basis if isinstance(warm_start, SolveResult) else warm_start
    basis_arrays, basis_how = None, None
    if isinstance(basis, Basis) and not form.is_mip:
        if backend.capabilities.basis:
            col, row, basis_how = basis.for_form(form)
            if col is not None and row is not None:
                basis_arrays = (col, row, basis_how != "same")
        else:
            basis_how = "unsupported"
    start = None if warm_start is None or isinstance(warm_start, Basis) else warm_start_vector(form, warm_start)
    t_scale = perf_counter()
    solved, factors = scale(form) if scaling else (form, Scaling(None, None))
    if start is not None and factors.col is not None:
        start = start * factors.col  # a basis needs nothing: positive scaling keeps every status
    scale_seconds = perf_counter() - t_scale
    note_in_log(log, f"{SCALE_NOTE} {factors.objective!r}"
                      f"{' (twinplan scaled the model before the solver)' if not factors.is_identity else ''}\n")
    if objective_offset:
        note_in_log(log, f"{OFFSET_NOTE} {float(objective_offset)!r}\n")
    params = SolveParams(
        time_limit=time_limit,
        mip_gap=mip_gap,
        threads=threads,
        options=dict(options or {}),
        log=log,
        warm_start=start,
        basis=basis_arrays,
        keep_basis=keep_basis,
    )
    out = backend.solve(solved, params)
    out.translate_seconds += scale_seconds
    if basis_arrays is not None:
        basis_how = basis_how if out.basis_start == "set" else (out.basis_start or "unsupported")

    x = None if out.x is None else out.x + 0.0  # no negative zeros in reported values
    duals, reduced = out.row_duals, out.reduced_costs
    objective, bound = out.objective, out.bound
    if x is not None and solved is not form:
        # within the solver's tolerance of its bounds in solver units is within them in the model's units
        x = np.clip(x, solved.col_lower, solved.col_upper)
    if solved.col_scale is not None and x is not None:
        x = x / solved.col_scale
    if solved.objective_scale != 1.0:
        objective, bound = objective / solved.objective_scale, bound / solved.objective_scale
    duals, reduced = _unscale_duals(solved, duals, reduced)

    if mip_duals and form.is_mip and out.has_solution and out.x is not None:
        duals, reduced, extra_seconds = _fixed_integer_duals(solved, out.x, backend, params)
        out.solve_seconds += extra_seconds
        if duals is not None:
            duals, reduced = _unscale_duals(solved, duals, reduced)

    no_values = f"termination={out.termination.value}, no primal solution"
    no_duals = (
        "duals are given for LPs solved to optimality by a backend that reports them "
        f"(this model is {'a MILP' if form.is_mip else 'an LP'}, solver {backend.name}, "
        f"termination={out.termination.value}); for a MILP pass mip_duals=True for the duals of the LP with "
        "the integer variables fixed"
    )
    result = SolveResult(
        termination=out.termination,
        has_solution=out.has_solution,
        objective=objective,
        bound=bound,
        gap=out.gap,
        solver=backend.name,
        solver_version=backend.version(),
        raw_status=out.raw_status,
        wall_time=Timings(
            build=form.build_seconds if built_here else 0.0,
            translate=out.translate_seconds,
            solve=out.solve_seconds,
            extract=out.extract_seconds,
        ),
        values=GroupValues(x if out.has_solution else None, form.variable_groups, "primal values", no_values),
        duals=GroupValues(duals, form.constraint_groups, "duals", no_duals),
        reduced_costs=GroupValues(reduced, form.variable_groups, "reduced costs", no_duals),
        model=form,
        warm_start_entries=out.warm_start_entries,
        basis=(Basis.of(form, out.col_status, out.row_status, objective)
               if out.col_status is not None and out.row_status is not None else None),
        basis_start=basis_how,
        simplex_iterations=out.simplex_iterations,
        message=out.message,
        options={"time_limit": time_limit, "mip_gap": mip_gap, "threads": threads, **(options or {})},
        scaling=factors,
    )
    if raise_on_nonoptimal:
        result.raise_if_nonoptimal()
    return result


SCALE_NOTE = "Objective values in this log are the model's times"
"""First words of the line :func:`solve` writes to the solver log before each solve (a log reader such as the CLI's
progress display divides the log's objective values by the number that follows: 1.0 when the objective is not
scaled)."""


OFFSET_NOTE = "Objective values in this log leave out the caller's constant"
"""First words of the line :func:`solve` writes to the solver log, after the :data:`SCALE_NOTE` line, when the caller
adds a constant to the model's objective (``objective_offset``): the caller's objective is the log's value divided
by the scale plus the number that follows. Without this line the constant is 0."""


def warm_start_vector(form: StandardForm, warm_start: WarmStart) -> np.ndarray:
    """Full-length start vector in solver units, NaN where the warm start has no value.

    A result of the very same model is used as is; otherwise each group's Series is aligned on the
    group's labels (unmatched labels and unknown groups are ignored).
    """
    start = np.full(form.n_cols, np.nan)
    if isinstance(warm_start, SolveResult):
        if not warm_start.has_solution:
            return start
        if warm_start.model is form:
            start[:] = warm_start.x
            return start * form.col_scale if form.col_scale is not None else start
        series_by_group: Mapping[str, pd.Series] = warm_start.values
    elif isinstance(warm_start, Mapping):
        series_by_group = warm_start
    else:
        raise SolverOptionError(
            f"warm_start must be a SolveResult or a dict {{group: Series by label}}, not {type(warm_start).__name__}"
        )
    for name, values in series_by_group.items():
        group = form.variable_groups.get(name)
        if group is None:
            continue
        if group.scalar:
            value = values.iloc[0] if isinstance(values, pd.Series) else float(values)
            start[group.positions] = value
            continue
        if not isinstance(values, pd.Series):
            raise SolverOptionError(f"warm_start[{name!r}] must be a pandas Series indexed by labels")
        labels = group.labels
        if values.index.equals(labels):
            aligned = values.to_numpy(dtype=float)
        else:
            aligned = values.reindex(labels).to_numpy(dtype=float)
        start[group.positions] = aligned
    if form.col_scale is not None:
        start *= form.col_scale
    return start


def _unscale_duals(
    form: StandardForm, duals: np.ndarray | None, reduced: np.ndarray | None
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Row duals and reduced costs from solver units back to user units."""
    if duals is not None and form.row_scale is not None:
        duals = duals * form.row_scale
    if reduced is not None and form.col_scale is not None:
        reduced = reduced * form.col_scale
    if form.objective_scale != 1.0:
        duals = None if duals is None else duals / form.objective_scale
        reduced = None if reduced is None else reduced / form.objective_scale
    return duals, reduced


def _fixed_integer_duals(
    form: StandardForm, x: np.ndarray, backend: Backend, params: SolveParams
) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """Duals of the LP left when the integer columns are fixed at their (rounded) values."""
    from dataclasses import replace

    from solvers.backends.base import get_backend

    integer = form.integrality != 0
    fixed_values = np.round(x[integer])
    col_lower, col_upper = form.col_lower.copy(), form.col_upper.copy()
    col_lower[integer] = col_upper[integer] = fixed_values
    lp = replace(
        form,
        col_lower=col_lower,
        col_upper=col_upper,
        integrality=np.zeros(form.n_cols, dtype=np.uint8),
    )
    lp_backend = backend if backend.capabilities.duals else get_backend("highs")
    out = lp_backend.solve(lp, replace(params, warm_start=None, mip_gap=None))
    return out.row_duals, out.reduced_costs, out.translate_seconds + out.solve_seconds + out.extract_seconds
