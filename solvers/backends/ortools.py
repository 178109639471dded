"""OR-Tools solvers (SCIP, CP-SAT, GLOP, PDLP) through MathOpt, in process.

The standard form is written straight into a MathOpt ``ModelProto`` from the numpy arrays (repeated
fields are filled with ``extend``, no Python loop per variable) and solved with MathOpt's core
``solve``; the result proto is read back into arrays. Solver logs arrive line by line through MathOpt's
message callback.

Registry names: ``ortools`` and ``ortools-scip`` (SCIP, MILP/LP), ``ortools-cpsat`` (CP-SAT,
pure-integer models), ``ortools-glop`` (GLOP, LP with duals), ``ortools-pdlp`` (PDLP, first-order LP).

``options`` may hold MathOpt common parameters (``node_limit``, ``solution_limit``, ``random_seed``,
``absolute_gap_tolerance``, ``presolve``/``cuts``/``heuristics``/``scaling`` as ``"off"``/``"low"``/
``"medium"``/``"high"``/``"very_high"``, ...), fields of the solver's own parameter proto (CP-SAT
``SatParameters``, GLOP ``GlopParameters``, SCIP ``GScipParameters``), and, for SCIP, native parameter
names such as ``"limits/gap"`` or ``"lp/threads"``.
"""

from __future__ import annotations

import functools
from time import perf_counter
from typing import Any, ClassVar

import numpy as np

from solvers.backends.base import (
    Backend,
    BackendOutput,
    Capabilities,
    SolveParams,
    log_writer,
    register,
)
from solvers.errors import SolverError, SolverOptionError
from solvers.model import StandardForm
from solvers.result import Termination, relative_gap

_EMPHASIS = {"off": 1, "low": 2, "medium": 3, "high": 4, "very_high": 5}
_LP_ALGORITHM = {"primal_simplex": 1, "dual_simplex": 2, "barrier": 3, "first_order": 4}
_SCIP_LONGINT_PARAMS = {
    "limits/nodes",
    "limits/totalnodes",
    "limits/stallnodes",
    "lp/iterlim",
    "lp/rootiterlim",
    "heuristics/alns/maxnodes",
}
"""SCIP parameters of type Longint (others given as Python ints go to ``int_params``)."""
_COMMON_FIELDS = {
    "iteration_limit",
    "node_limit",
    "cutoff_limit",
    "objective_limit",
    "best_bound_limit",
    "solution_limit",
    "random_seed",
    "absolute_gap_tolerance",
    "solution_pool_size",
}


class OrToolsBackend(Backend):
    """One OR-Tools solver reached through MathOpt."""

    package: ClassVar[str] = "ortools"
    install_hint: ClassVar[str] = "pip install ortools"

    def __init__(
        self, name: str, display_name: str, solver_type: str, capabilities: Capabilities, params_field: str
    ) -> None:
        self.name = name  # type: ignore[misc]
        self.display_name = display_name  # type: ignore[misc]
        self.solver_type = solver_type
        self.capabilities = capabilities  # type: ignore[misc]
        self.params_field = params_field

    @classmethod
    @functools.cache
    def version(cls) -> str:
        """The OR-Tools version string."""
        import ortools

        return str(ortools.__version__)

    # ------------------------------------------------------------------ translate
    def build_model(self, form: StandardForm) -> Any:
        """The MathOpt ``ModelProto`` of ``form`` (ids are column/row numbers)."""
        from ortools.math_opt import model_pb2

        proto = model_pb2.ModelProto()
        variables = proto.variables
        variables.ids.extend(np.arange(form.n_cols, dtype=np.int64))
        variables.lower_bounds.extend(form.col_lower.astype(np.float64))
        variables.upper_bounds.extend(form.col_upper.astype(np.float64))
        variables.integers.extend(form.integrality != 0)
        objective = proto.objective
        objective.maximize = form.sense == "max"
        objective.offset = float(form.objective_constant)
        nonzero = np.flatnonzero(form.objective)
        objective.linear_coefficients.ids.extend(nonzero)
        objective.linear_coefficients.values.extend(form.objective[nonzero])
        constraints = proto.linear_constraints
        constraints.ids.extend(np.arange(form.n_rows, dtype=np.int64))
        constraints.lower_bounds.extend(form.row_lower.astype(np.float64))
        constraints.upper_bounds.extend(form.row_upper.astype(np.float64))
        A = form.A
        if not A.has_sorted_indices or (A.data == 0).any():
            A = A.copy()
            A.eliminate_zeros()
            A.sort_indices()
        rows = np.repeat(np.arange(A.shape[0], dtype=np.int64), np.diff(A.indptr))
        matrix = proto.linear_constraint_matrix
        matrix.row_ids.extend(rows)
        matrix.column_ids.extend(A.indices.astype(np.int64))
        matrix.coefficients.extend(A.data.astype(np.float64))
        return proto

    def build_parameters(self, form: StandardForm, params: SolveParams) -> Any:
        """MathOpt ``SolveParametersProto`` from the common parameters and ``options``."""
        from google.protobuf import json_format
        from ortools.math_opt import parameters_pb2

        p = parameters_pb2.SolveParametersProto()
        if params.time_limit is not None:
            p.time_limit.FromNanoseconds(int(params.time_limit * 1e9))
        if params.mip_gap is not None and form.is_mip:
            p.relative_gap_tolerance = params.mip_gap
            if params.mip_gap == 0:
                p.absolute_gap_tolerance = 0.0
        if params.threads is not None and self.capabilities.threads:
            p.threads = params.threads
        p.enable_output = params.log not in (None, False)
        specific = getattr(p, self.params_field)
        for key, value in params.options.items():
            try:
                if key in _COMMON_FIELDS:
                    setattr(p, key, value)
                elif key in ("presolve", "cuts", "heuristics", "scaling"):
                    setattr(p, key, _EMPHASIS[str(value).lower()])
                elif key == "lp_algorithm":
                    p.lp_algorithm = _LP_ALGORITHM[str(value).lower()]
                elif self.params_field == "gscip" and "/" in key:
                    _set_scip_param(specific, key, value)
                else:
                    json_format.ParseDict({key: value}, specific)
            except (json_format.ParseError, KeyError, TypeError, ValueError) as exc:
                raise SolverOptionError(
                    f"bad option {key}={value!r} for {self.name}: {exc}. Options are MathOpt common parameters "
                    f"({sorted(_COMMON_FIELDS | {'presolve', 'cuts', 'heuristics', 'scaling', 'lp_algorithm'})}) "
                    f"or fields of the {type(specific).__name__} proto"
                    + (" or SCIP parameter names like 'limits/gap'" if self.params_field == "gscip" else "")
                ) from exc
        return p

    # ------------------------------------------------------------------ solve
    def solve(self, form: StandardForm, params: SolveParams) -> BackendOutput:
        """Solve ``form`` with OR-Tools MathOpt under ``params`` (limits, solution hint, log)."""
        from ortools.math_opt import model_parameters_pb2, parameters_pb2
        from ortools.math_opt.core.python import solver as core
        from ortools.math_opt.python import callback, init_arguments

        self.check_model(form)
        t0 = perf_counter()
        model = self.build_model(form)
        solve_params = self.build_parameters(form, params)
        model_params = model_parameters_pb2.ModelSolveParametersProto()
        warm_entries = 0
        if params.warm_start is not None and self.capabilities.warm_start and form.is_mip:
            known = np.flatnonzero(~np.isnan(params.warm_start))
            if known.size:
                hint = model_params.solution_hints.add()
                hint.variable_values.ids.extend(known)
                hint.variable_values.values.extend(params.warm_start[known])
                warm_entries = int(known.size)
        solver_type = getattr(parameters_pb2, self.solver_type)
        t1 = perf_counter()
        with log_writer(params.log) as write:
            message_cb = None if write is None else _line_writer(write)
            try:
                proto = core.solve(
                    model,
                    solver_type,
                    init_arguments.StreamableSolverInitArguments().to_proto(),
                    solve_params,
                    model_params,
                    message_cb,
                    callback.CallbackRegistration().to_proto(),
                    None,
                    None,
                )
            except Exception as exc:  # StatusNotOk from the C++ layer: invalid model or parameters
                text = str(exc)
                if "param" in text.lower() or "option" in text.lower():
                    hint = (
                        " (a SCIP Longint parameter given as int? pass options={'long_params': {name: value}})"
                        if "SCIPsetIntParam" in text
                        else ""
                    )
                    raise SolverOptionError(f"{self.name} rejected the parameters: {text}{hint}") from exc
                raise SolverError(f"{self.name} failed: {text}") from exc
        t2 = perf_counter()
        out = self._read_result(form, proto)
        if (
            out.termination is Termination.UNKNOWN
            and params.time_limit is not None
            and t2 - t1 >= 0.95 * params.time_limit
            and out.raw_status.endswith("LIMIT_UNDETERMINED")
        ):
            # CP-SAT does not say which limit stopped it; when the time limit has run out, it was that.
            out.termination = Termination.TIME_LIMIT
        out.translate_seconds = t1 - t0
        out.solve_seconds = t2 - t1
        out.extract_seconds = perf_counter() - t2
        out.warm_start_entries = warm_entries
        return out

    def _read_result(self, form: StandardForm, proto: Any) -> BackendOutput:
        from ortools.math_opt import result_pb2, solution_pb2

        termination_proto = proto.termination
        reason = termination_proto.reason
        r = result_pb2
        termination = {
            r.TERMINATION_REASON_OPTIMAL: Termination.OPTIMAL,
            r.TERMINATION_REASON_INFEASIBLE: Termination.INFEASIBLE,
            r.TERMINATION_REASON_UNBOUNDED: Termination.UNBOUNDED,
            r.TERMINATION_REASON_INFEASIBLE_OR_UNBOUNDED: Termination.INFEASIBLE_OR_UNBOUNDED,
            r.TERMINATION_REASON_NUMERICAL_ERROR: Termination.ERROR,
            r.TERMINATION_REASON_OTHER_ERROR: Termination.ERROR,
            r.TERMINATION_REASON_IMPRECISE: Termination.UNKNOWN,
        }.get(reason)
        if termination is None and reason in (
            r.TERMINATION_REASON_FEASIBLE,
            r.TERMINATION_REASON_NO_SOLUTION_FOUND,
        ):
            limit = termination_proto.limit
            termination = (
                Termination.TIME_LIMIT
                if limit == r.LIMIT_TIME
                else Termination.ERROR
                if limit == r.LIMIT_MEMORY
                else Termination.UNKNOWN
                if limit in (r.LIMIT_UNSPECIFIED, r.LIMIT_UNDETERMINED)
                else Termination.INTERRUPTED
            )
        termination = termination or Termination.UNKNOWN
        raw = r.TerminationReasonProto.Name(reason)
        if reason in (r.TERMINATION_REASON_FEASIBLE, r.TERMINATION_REASON_NO_SOLUTION_FOUND):
            raw += "/" + r.LimitProto.Name(termination_proto.limit)
        out = BackendOutput(termination=termination, raw_status=raw, has_solution=False)
        out.message = termination_proto.detail

        feasible = solution_pb2.SOLUTION_STATUS_FEASIBLE
        primal = next(
            (s.primal_solution for s in proto.solutions if s.HasField("primal_solution")),
            None,
        )
        if (
            primal is not None
            and primal.feasibility_status == feasible
            and termination not in (Termination.INFEASIBLE, Termination.UNBOUNDED, Termination.ERROR)
        ):
            out.has_solution = True
            out.x = _dense(primal.variable_values, form.n_cols)
            out.objective = float(primal.objective_value)
        bounds = termination_proto.objective_bounds
        dual_bound = float(bounds.dual_bound)
        if np.isfinite(dual_bound):
            out.bound = dual_bound
        if out.has_solution:
            if termination is Termination.OPTIMAL and not form.is_mip:
                out.bound, out.gap = out.objective, 0.0
            else:
                out.gap = relative_gap(out.objective, out.bound)
                if termination is Termination.OPTIMAL and not np.isfinite(out.gap):
                    out.gap = 0.0
        if self.capabilities.duals and not form.is_mip and termination is Termination.OPTIMAL:
            dual = next((s.dual_solution for s in proto.solutions if s.HasField("dual_solution")), None)
            if dual is not None and dual.feasibility_status == feasible:
                out.row_duals = _dense(dual.dual_values, form.n_rows)
                out.reduced_costs = _dense(dual.reduced_costs, form.n_cols)
        return out


def _dense(sparse: Any, n: int) -> np.ndarray:
    values = np.zeros(n)
    ids = np.asarray(sparse.ids, dtype=np.int64)
    if ids.size:
        values[ids] = np.asarray(sparse.values, dtype=float)
    return values


def _line_writer(write: Any) -> Any:
    def on_lines(lines: list[str]) -> None:
        for line in lines:
            write(line)

    return on_lines


def _set_scip_param(gscip: Any, key: str, value: Any) -> None:
    if isinstance(value, bool):
        gscip.bool_params[key] = value
    elif isinstance(value, int | np.integer) and key in _SCIP_LONGINT_PARAMS:
        gscip.long_params[key] = int(value)
    elif isinstance(value, int | np.integer):
        gscip.int_params[key] = int(value)
    elif isinstance(value, float | np.floating):
        gscip.real_params[key] = float(value)
    elif isinstance(value, str) and len(value) == 1:
        gscip.char_params[key] = value
    elif isinstance(value, str):
        gscip.string_params[key] = value
    else:
        raise TypeError(f"SCIP parameter values are bool, int, float or str, not {type(value).__name__}")


_MIP = Capabilities(
    continuous=True, integers=True, duals=False, warm_start=True, time_limit=True, mip_gap=True, threads=True
)
SCIP = OrToolsBackend("ortools-scip", "SCIP (OR-Tools)", "SOLVER_TYPE_GSCIP", _MIP, "gscip")
CPSAT = OrToolsBackend(
    "ortools-cpsat",
    "CP-SAT (OR-Tools)",
    "SOLVER_TYPE_CP_SAT",
    Capabilities(
        continuous=False, integers=True, duals=False, warm_start=True, time_limit=True, mip_gap=True, threads=True
    ),
    "cp_sat",
)
GLOP = OrToolsBackend(
    "ortools-glop",
    "GLOP (OR-Tools)",
    "SOLVER_TYPE_GLOP",
    Capabilities(
        continuous=True, integers=False, duals=True, warm_start=False, time_limit=True, mip_gap=False, threads=False
    ),
    "glop",
)
PDLP = OrToolsBackend(
    "ortools-pdlp",
    "PDLP (OR-Tools)",
    "SOLVER_TYPE_PDLP",
    Capabilities(
        continuous=True, integers=False, duals=True, warm_start=False, time_limit=True, mip_gap=False, threads=True
    ),
    "pdlp",
)
register(SCIP, "ortools")
register(CPSAT)
register(GLOP)
register(PDLP)
