"""HiGHS, in process through highspy: one ``passModel`` call with the standard-form numpy arrays."""

from __future__ import annotations

import functools
import math
import os
import sys
from time import perf_counter
from typing import Any, ClassVar

import numpy as np

from solvers.backends.base import (
    Backend,
    BackendOutput,
    Capabilities,
    SolveParams,
    SolverOptionError,
    note_in_log,
    register,
)
from solvers.model import StandardForm
from solvers.result import Termination, relative_gap

OPTIONS_URL = "https://ergo-code.github.io/HiGHS/stable/options/definitions/"

_COMMON_TO_NATIVE = {"time_limit": "time_limit", "mip_gap": "mip_rel_gap", "threads": "threads"}
_last_threads: int | None = None
"""Thread count the HiGHS global scheduler was last started with (it is process-wide)."""


def _termination_map() -> dict[Any, Termination]:
    import highspy

    s = highspy.HighsModelStatus
    mapping = {
        s.kOptimal: Termination.OPTIMAL,
        s.kModelEmpty: Termination.OPTIMAL,
        s.kInfeasible: Termination.INFEASIBLE,
        s.kUnbounded: Termination.UNBOUNDED,
        s.kUnboundedOrInfeasible: Termination.INFEASIBLE_OR_UNBOUNDED,
        s.kTimeLimit: Termination.TIME_LIMIT,
        s.kIterationLimit: Termination.INTERRUPTED,
        s.kSolutionLimit: Termination.INTERRUPTED,
        s.kObjectiveBound: Termination.INTERRUPTED,
        s.kObjectiveTarget: Termination.INTERRUPTED,
        s.kInterrupt: Termination.INTERRUPTED,
        s.kMemoryLimit: Termination.ERROR,
        s.kLoadError: Termination.ERROR,
        s.kModelError: Termination.ERROR,
        s.kPresolveError: Termination.ERROR,
        s.kSolveError: Termination.ERROR,
        s.kPostsolveError: Termination.ERROR,
        s.kNotset: Termination.UNKNOWN,
        s.kUnknown: Termination.UNKNOWN,
    }
    if hasattr(s, "kHighsInterrupt"):
        mapping[s.kHighsInterrupt] = Termination.INTERRUPTED
    return mapping


_NO_SOLUTION = {
    Termination.INFEASIBLE,
    Termination.UNBOUNDED,
    Termination.INFEASIBLE_OR_UNBOUNDED,
    Termination.ERROR,
}


class HighsBackend(Backend):
    """HiGHS LP/MIP solver (simplex, IPM, branch and cut) via highspy.

    Common parameters map to ``time_limit``, ``mip_rel_gap`` and ``threads``; ``options`` are passed to
    ``Highs.setOptionValue`` (see :data:`OPTIONS_URL`). Warm starts go through ``setSolution`` (MIP
    only; a partial start is completed by HiGHS) and, for LPs, ``setBasis`` (an alien basis is completed
    by HiGHS). Duals and reduced costs for LPs.
    """

    name: ClassVar[str] = "highs"
    display_name: ClassVar[str] = "HiGHS"
    package: ClassVar[str] = "highspy"
    install_hint: ClassVar[str] = "pip install highspy"
    capabilities: ClassVar[Capabilities] = Capabilities(
        continuous=True,
        integers=True,
        semi_continuous=True,
        duals=True,
        warm_start=True,
        basis=True,
        time_limit=True,
        mip_gap=True,
        threads=True,
        iis=True,
    )

    @classmethod
    @functools.cache
    def version(cls) -> str:
        """The HiGHS version string."""
        return str(new_highs().version())

    # ------------------------------------------------------------------ translate
    def build(self, form: StandardForm, params: SolveParams) -> Any:
        """Create a configured ``highspy.Highs`` holding ``form`` (exposed for diagnosis and benchmarks)."""
        h = new_highs()
        self._configure(h, params)
        self.pass_model(h, form)
        return h

    @staticmethod
    def pass_model(h: Any, form: StandardForm) -> None:
        """Hand ``form`` to ``h`` with a single ``passModel`` (row-wise CSR, no copies when int32)."""
        import highspy

        A = form.A
        integrality = form.integrality.astype(np.int32)
        status = h.passModel(
            form.n_cols,
            form.n_rows,
            A.nnz,
            int(highspy.MatrixFormat.kRowwise),
            1 if form.sense == "min" else -1,
            float(form.objective_constant),
            _f64(form.objective),
            _f64(form.col_lower),
            _f64(form.col_upper),
            _f64(form.row_lower),
            _f64(form.row_upper),
            _i32(A.indptr),
            _i32(A.indices),
            _f64(A.data),
            integrality,
        )
        if status == highspy.HighsStatus.kError:
            raise SolverOptionError(
                "HiGHS rejected the model in passModel (check for NaN coefficients or bounds with lower > upper)"
            )

    def _configure(self, h: Any, params: SolveParams) -> None:
        import highspy

        global _last_threads
        common = {"time_limit": params.time_limit, "mip_gap": params.mip_gap, "threads": params.threads}
        for key, value in common.items():
            if value is None:
                continue
            native = _COMMON_TO_NATIVE[key]
            if native in params.options:
                raise SolverOptionError(f"{key}= and options[{native!r}] both given; pass it once (prefer {key}=)")
            _set_option(h, native, value)
        for key, value in params.options.items():
            _set_option(h, key, value)
        threads = params.threads if params.threads is not None else params.options.get("threads")
        if threads is not None and threads != _last_threads:
            # The HiGHS task scheduler is process-wide and keeps the thread count it started with.
            highspy.Highs.resetGlobalScheduler(True)
            _last_threads = threads
        log = params.log
        if log is None or log is False:
            return
        h.setOptionValue("output_flag", True)
        if log is True:
            h.setOptionValue("log_to_console", True)
        elif isinstance(log, str | os.PathLike):
            h.setOptionValue("log_to_console", False)
            _set_option(h, "log_file", os.fspath(log))
        elif callable(log):
            h.setOptionValue("log_to_console", False)
            h.cbLogging += lambda event: log(event.message)
        else:
            raise SolverOptionError(f"log must be a path, a callable, True or None, not {type(log).__name__}")

    # ------------------------------------------------------------------ solve
    def solve(self, form: StandardForm, params: SolveParams) -> BackendOutput:
        """Solve ``form`` with HiGHS under ``params`` (limits, warm start, basis, log).

        A MIP solution whose objective HiGHS reports differently from what the solution costs is not trusted
        (:func:`_objective_mismatch`; HiGHS 1.16 does this after a MIP start on OR-Library cap71: "optimal",
        objective 631,874, returning the start, which costs 1,248,143, while the optimum is 932,616): the model
        is solved once more for the time left, without the start (with one) or without presolve (without), and
        the better solution of the two is returned at its true cost, with the second solve's bound and status.
        """
        from dataclasses import replace

        t0 = perf_counter()
        out = self._solve_once(form, params)
        reported = _objective_mismatch(form, out)
        if reported is None:
            return out
        first_cost = out.objective
        left = None if params.time_limit is None else max(1.0, params.time_limit - (perf_counter() - t0))
        if params.warm_start is not None:
            again = replace(params, warm_start=None, time_limit=left)
            how = "solved again without the MIP start"
        else:
            again = replace(params, time_limit=left, options={**params.options, "presolve": "off"})
            how = "solved again without presolve"
        note = (f"HiGHS reported objective {reported!r} for a solution that costs {first_cost!r} (status "
                f"{out.raw_status}); not trusted, {how}")
        note_in_log(params.log, f"twinplan: {note}\n")
        second = self._solve_once(form, again)
        second.translate_seconds += out.translate_seconds
        second.solve_seconds += out.solve_seconds
        second.extract_seconds += out.extract_seconds
        second.warm_start_entries = out.warm_start_entries
        second.message = "; ".join(m for m in (out.message, note, second.message) if m)
        if _objective_mismatch(form, second) is None and second.has_solution and second.objective <= first_cost:
            return second
        # the first solution (typically the start) is the better one, at its true cost; the second solve's bound
        second.x, second.objective, second.has_solution = out.x, first_cost, True
        second.row_duals = second.reduced_costs = None
        bound = second.bound if math.isfinite(second.bound) and second.bound <= first_cost else float("nan")
        second.bound, second.gap = bound, relative_gap(first_cost, bound)
        if second.termination in _NO_SOLUTION or not (second.gap <= (params.mip_gap or 0.0) + 1e-9):
            second.termination = Termination.TIME_LIMIT if params.time_limit is not None else Termination.UNKNOWN
        return second

    def _solve_once(self, form: StandardForm, params: SolveParams) -> BackendOutput:
        """One HiGHS run of ``form`` under ``params``, read back into a BackendOutput."""
        import highspy

        self.check_model(form)
        t0 = perf_counter()
        h = self.build(form, params)
        warm_entries = 0
        if params.warm_start is not None and form.is_mip:
            known = np.flatnonzero(~np.isnan(params.warm_start))
            if known.size:
                h.setSolution(known.size, known.astype(np.int32), params.warm_start[known].astype(np.float64))
                warm_entries = int(known.size)
        basis_start = None
        if params.basis is not None and not form.is_mip:
            basis_start = _set_basis(h, *params.basis)
        t1 = perf_counter()
        h.run()
        t2 = perf_counter()

        model_status = h.getModelStatus()
        termination = _termination_map().get(model_status, Termination.UNKNOWN)
        raw = h.modelStatusToString(model_status)
        info = h.getInfo()
        empty = model_status == highspy.HighsModelStatus.kModelEmpty
        has_solution = termination not in _NO_SOLUTION and (
            empty or info.primal_solution_status == highspy.kSolutionStatusFeasible
        )
        out = BackendOutput(termination=termination, raw_status=raw, has_solution=has_solution)
        if has_solution:
            solution = h.getSolution()
            out.x = np.asarray(solution.col_value, dtype=float) if form.n_cols else np.empty(0)
            out.objective = float(form.objective_constant) if empty else float(info.objective_function_value)
            if form.is_mip:
                out.bound = float(info.mip_dual_bound)
                out.gap = float(info.mip_gap) if math.isfinite(info.mip_gap) else relative_gap(out.objective, out.bound)
                if termination is Termination.OPTIMAL and out.gap < 0:
                    out.gap = 0.0
            elif termination is Termination.OPTIMAL:
                out.bound, out.gap = out.objective, 0.0
            if (
                not form.is_mip
                and termination is Termination.OPTIMAL
                and (empty or info.dual_solution_status == highspy.kSolutionStatusFeasible)
            ):
                out.row_duals = np.asarray(solution.row_dual, dtype=float) if form.n_rows else np.empty(0)
                out.reduced_costs = np.asarray(solution.col_dual, dtype=float) if form.n_cols else np.empty(0)
            if params.keep_basis and not form.is_mip and info.basis_validity == highspy.kBasisValidityValid:
                b = h.getBasis()
                out.col_status = np.fromiter((int(v) for v in b.col_status), np.int8, form.n_cols)
                out.row_status = np.fromiter((int(v) for v in b.row_status), np.int8, form.n_rows)
        elif form.is_mip and math.isfinite(info.mip_dual_bound):
            out.bound = float(info.mip_dual_bound)
        out.translate_seconds = t1 - t0
        out.solve_seconds = t2 - t1
        out.extract_seconds = perf_counter() - t2
        out.warm_start_entries = warm_entries
        out.basis_start = basis_start
        out.simplex_iterations = int(info.simplex_iteration_count)
        return out


def _set_basis(h: Any, col_status: np.ndarray, row_status: np.ndarray, alien: bool) -> str:
    """Hand a basis to HiGHS; ``"set"`` or ``"rejected"`` (HiGHS then starts from its own crash basis)."""
    import highspy

    codes = list(highspy.HighsBasisStatus.__members__.values())
    b = highspy.HighsBasis()
    b.col_status = [codes[v] for v in col_status.tolist()]
    b.row_status = [codes[v] for v in row_status.tolist()]
    b.alien = bool(alien)
    b.valid = not alien
    return "set" if h.setBasis(b) == highspy.HighsStatus.kOk else "rejected"


_banner_suppressed = False


def new_highs() -> Any:
    """A silent ``highspy.Highs``.

    HiGHS prints its banner to the process's stdout when the first instance is created, before any option
    can be set; that would corrupt machine-readable output (a CLI printing JSON), so the first creation
    runs with file descriptor 1 pointed at /dev/null.
    """
    import highspy

    global _banner_suppressed
    if _banner_suppressed:
        h = highspy.Highs()
    else:
        sys.stdout.flush()
        saved = os.dup(1)
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 1)
            h = highspy.Highs()
        finally:
            os.dup2(saved, 1)
            os.close(saved)
            os.close(devnull)
        _banner_suppressed = True
    h.setOptionValue("output_flag", False)
    return h


def _set_option(h: Any, key: str, value: Any) -> None:
    import highspy

    status = h.getOptionValue(key)[0] if isinstance(key, str) else highspy.HighsStatus.kError
    if status == highspy.HighsStatus.kError:
        raise SolverOptionError(f"unknown HiGHS option {key!r}; see {OPTIONS_URL}")
    if isinstance(value, np.generic):
        value = value.item()
    try:
        result = h.setOptionValue(key, value)
    except (TypeError, ValueError) as exc:  # pybind11 rejects the Python type
        raise SolverOptionError(f"bad value {value!r} for HiGHS option {key!r}: {exc}; see {OPTIONS_URL}") from exc
    if result == highspy.HighsStatus.kError:
        raise SolverOptionError(f"bad value {value!r} for HiGHS option {key!r}; see {OPTIONS_URL}")


def _f64(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float64)


def _i32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.int32)


register(HighsBackend())


OBJECTIVE_MISMATCH_TOL = 1e-6
"""Relative difference between HiGHS's reported MIP objective and the cost of its solution (objective row times
values plus constant) above which the solution's objective is not trusted."""


def _objective_mismatch(form: StandardForm, out: BackendOutput) -> float | None:
    """The objective HiGHS reported when it differs from what the returned MIP solution costs (``out.objective``
    is then set to that cost); None when they agree or there is nothing to compare."""
    if not form.is_mip or not out.has_solution or out.x is None or not math.isfinite(out.objective):
        return None
    cost = float(form.objective @ out.x) + float(form.objective_constant)
    if abs(cost - out.objective) <= OBJECTIVE_MISMATCH_TOL * max(1.0, abs(cost)):
        return None
    reported, out.objective = out.objective, cost
    return reported

