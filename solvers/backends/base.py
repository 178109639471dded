"""Backend contract and registry.

Each backend declares its :class:`Capabilities`, maps the typed common parameters (time limit, relative
MIP gap, threads, log, warm start) to its own names, passes solver-specific ``options`` through (raising
:class:`~solvers.errors.SolverOptionError` on unknown ones), and maps its native status onto
:class:`~solvers.result.Termination` with an ``unknown`` fallback.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import sys
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TextIO

import numpy as np

from solvers.errors import SolverNotAvailableError, SolverOptionError, UnknownSolverError, UnsupportedModelError
from solvers.model import SEMI_CONTINUOUS, StandardForm
from solvers.result import Termination

LogTarget = str | os.PathLike[str] | Callable[[str], Any] | bool | None
"""Where the solver log goes: a file path, a callable receiving text chunks, ``True`` for stdout, or
``None``/``False`` for silence."""


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the conformance tests filter on these."""

    continuous: bool = True
    integers: bool = True
    semi_continuous: bool = False
    duals: bool = False
    warm_start: bool = False
    basis: bool = False
    time_limit: bool = True
    mip_gap: bool = True
    threads: bool = True
    iis: bool = False


@dataclass(frozen=True)
class SolveParams:
    """Typed common parameters, already validated, plus the solver-specific pass-through dict.

    ``warm_start`` is a full-length vector in solver units with NaN where no value is known.
    """

    time_limit: float | None = None
    mip_gap: float | None = None
    threads: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    log: LogTarget = None
    warm_start: np.ndarray | None = None
    basis: tuple[np.ndarray, np.ndarray, bool] | None = None
    """LP warm start: HiGHS column and row statuses and whether the basis is alien (needs completing)."""
    keep_basis: bool = False
    """Return the final basis of an LP (``BackendOutput.col_status`` / ``row_status``)."""


@dataclass
class BackendOutput:
    """What a backend returns; :func:`solvers.solve` turns it into a :class:`SolveResult`.

    Values are in solver units and standard-form order; ``None`` where not available.
    """

    termination: Termination
    raw_status: str
    has_solution: bool
    objective: float = float("nan")
    bound: float = float("nan")
    gap: float = float("nan")
    x: np.ndarray | None = None
    row_duals: np.ndarray | None = None
    reduced_costs: np.ndarray | None = None
    translate_seconds: float = 0.0
    solve_seconds: float = 0.0
    extract_seconds: float = 0.0
    warm_start_entries: int = 0
    message: str = ""
    col_status: np.ndarray | None = None
    row_status: np.ndarray | None = None
    simplex_iterations: int | None = None
    basis_start: str | None = None
    """How an LP basis given as warm start was used: ``"set"``, ``"rejected"`` or ``"unsupported"``."""


class Backend(ABC):
    """One solver behind one registry name."""

    name: ClassVar[str]
    display_name: ClassVar[str]
    package: ClassVar[str]
    """Importable module the backend needs (checked by :meth:`is_available`)."""
    install_hint: ClassVar[str]
    capabilities: ClassVar[Capabilities]

    @classmethod
    def is_available(cls) -> bool:
        """Whether the backend's Python package is installed."""
        return importlib.util.find_spec(cls.package) is not None

    @classmethod
    @abstractmethod
    def version(cls) -> str:
        """Version string of the underlying solver library."""

    def check_model(self, form: StandardForm) -> None:
        """Raise :class:`UnsupportedModelError` if this backend cannot take ``form``."""
        caps = self.capabilities
        if form.is_mip and not caps.integers:
            raise UnsupportedModelError(
                f"{self.name} solves LPs only but the model has integer variables; use 'highs' or 'ortools-scip'"
            )
        if form.has_continuous and not caps.continuous and form.n_cols:
            raise UnsupportedModelError(
                f"{self.name} takes pure-integer models only but the model has "
                f"{int((form.integrality == 0).sum())} continuous variables (first: "
                f"{form.column_name(int(np.flatnonzero(form.integrality == 0)[0]))}); use 'highs' or "
                "'ortools-scip'"
            )
        if (form.integrality == SEMI_CONTINUOUS).any() and not caps.semi_continuous:
            raise UnsupportedModelError(f"{self.name} does not support semi-continuous variables; use 'highs'")

    @abstractmethod
    def solve(self, form: StandardForm, params: SolveParams) -> BackendOutput:
        """Translate ``form`` into the solver's in-memory model, run it and read the results back."""


# ---------------------------------------------------------------------------------------------- registry
_REGISTRY: dict[str, Backend] = {}


def register(backend: Backend, *aliases: str) -> Backend:
    """Add ``backend`` to the registry under its name and any aliases."""
    for key in (backend.name, *aliases):
        _REGISTRY[key] = backend
    return backend


def registered() -> dict[str, Backend]:
    """All registered names (including aliases), installed or not."""
    return dict(_REGISTRY)


def available() -> list[str]:
    """Canonical names of the backends whose packages are installed, in registration order.

    Aliases (``"ortools"`` for ``"ortools-scip"``) are accepted by :func:`solvers.solve` but not listed.
    """
    return [name for name, backend in _REGISTRY.items() if name == backend.name and backend.is_available()]


def capabilities(name: str) -> Capabilities:
    """Declared capabilities of backend ``name``."""
    return get_backend(name, check_available=False).capabilities


def get_backend(name: str, check_available: bool = True) -> Backend:
    """Look up a backend by name, raising a named error on misuse."""
    if not isinstance(name, str) or name.lower() not in _REGISTRY:
        raise UnknownSolverError(f"unknown solver {name!r}; registered solvers are {sorted(_REGISTRY)}")
    backend = _REGISTRY[name.lower()]
    if check_available and not backend.is_available():
        raise SolverNotAvailableError(
            f"solver {name!r} needs the Python package {backend.package!r}, which is not installed: "
            f"{backend.install_hint}. Installed solvers: {available()}"
        )
    return backend


# ---------------------------------------------------------------------------------------------- helpers
def validate_common(
    time_limit: float | None, mip_gap: float | None, threads: int | None
) -> tuple[float | None, float | None, int | None]:
    """Check the typed common parameters and return them normalised."""
    if time_limit is not None:
        if isinstance(time_limit, bool) or not isinstance(time_limit, int | float) or not time_limit > 0:
            raise SolverOptionError(f"time_limit must be a positive number of seconds, not {time_limit!r}")
        time_limit = float(time_limit)
    if mip_gap is not None:
        if isinstance(mip_gap, bool) or not isinstance(mip_gap, int | float) or not 0 <= mip_gap < 1:
            raise SolverOptionError(f"mip_gap is a relative gap in [0, 1), not {mip_gap!r}")
        mip_gap = float(mip_gap)
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
            raise SolverOptionError(f"threads must be a positive integer, not {threads!r}")
        threads = int(threads)
    return time_limit, mip_gap, threads


@contextlib.contextmanager
def log_writer(log: LogTarget) -> Iterator[Callable[[str], None] | None]:
    """Yield a ``write(text)`` callable for ``log`` (file path, callable, True = stdout), or None."""
    if log is None or log is False:
        yield None
        return
    if log is True:
        yield _stream_writer(sys.stdout)
        return
    if callable(log):
        yield log
        return
    if isinstance(log, str | os.PathLike):
        path = Path(log)
        if path.parent and not path.parent.exists():
            raise SolverOptionError(f"log file directory {path.parent} does not exist")
        with path.open("a", encoding="utf-8") as handle:
            yield _stream_writer(handle)
        return
    raise SolverOptionError(f"log must be a file path, a callable, True or None, not {type(log).__name__}")


def note_in_log(log: LogTarget, text: str) -> None:
    """Write one note (``text``, ending with a newline) to ``log`` through :func:`log_writer`."""
    with log_writer(log) as write:
        if write is not None:
            write(text)


def _stream_writer(stream: TextIO) -> Callable[[str], None]:
    def write(text: str) -> None:
        stream.write(text if text.endswith("\n") else text + "\n")

    return write
