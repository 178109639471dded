"""What-if sweeps: many scenario variants through the full optimize -> simulate loop, on local processes or Dask.

A sweep spec is a YAML file::

    name: eu_peak_what_if
    instance: eu_fba              # bundled name or folder (relative to this file or the working directory)
    scenario: peak                # optional base scenario: name in <instance>/scenarios/ or a file
    seed: 42                      # drives the samples and every run's simulator seed
    solver: {solver: highs, time_limit: 60, mip_gap: 0.005, threads: 1}   # time_limit: seconds per run, all rounds
    plan: {max_rounds: 3, replications: 5}          # engine.plan options (max_rounds, replications, simulate)
    warm_start: true              # warm-start every run from the base run's plan (default true)
    parameters:                   # named axes: a modification template with $value, and its values
      demand_north:
        set: {demand_multiplier: $value, region: north}
        values: [0.9, 1.0, 1.2]   # for grid, list and sampling
        range: [0.8, 1.3]         # continuous, for random / lhs (and grid with steps: N)
      fuel:
        set: {cost: {fuel: $value}}
        range: [1.0, 1.4]
      closed:
        set: {force_closed: $value}
        values: [[], [DC_B], [DC_A, DC_B]]          # sets of sites; [] or null = no modification
    vary:                         # designs, concatenated in order
      - grid: [demand_north, closed]                # cartesian product of values
      - list:                                       # explicit points (and raw modifications)
          - {demand_north: 1.5, fuel: 1.2}
          - {name: no_C, modifications: [{close_site: DC_C}]}
      - random: {n: 10, parameters: [fuel, closed]}  # independent draws (uniform on ranges)
      - lhs: {n: 20, parameters: [demand_north, fuel]}  # Latin hypercube

Every sweep has a *base run* (index 0: the base scenario, no extra modification); when ``warm_start`` is on,
its stored plan is the MIP start of every other run. Run ids are ``<sweep_id>-<index>`` where the sweep id
hashes the spec, the instance tables and the base scenario, so re-running a spec resumes it (finished runs are
skipped) and editing the spec or the data starts a new sweep.

Both executors are ``concurrent.futures`` executors driven by one loop: ``local`` is a
:class:`~concurrent.futures.ProcessPoolExecutor` (spawned processes), ``dask`` is
``distributed.Client(...).get_executor()`` on a given scheduler or a fresh ``LocalCluster``. Workers only
compute; the driver writes each run to the store in one transaction as it completes.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import logging
import math
import multiprocessing
import os
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from pydantic import BeforeValidator, Field, model_validator

from engine.governance import Policy, PolicyRefused, audit_row, authorize, current_user, find_policy
from engine.hashing import compare_hashes, hash_json, input_hashes, instance_hashes, package_versions, plan_hash
from engine.scenario import Modification, SolverSettings
from engine.store import RUN_DONE, RUN_FAILED, RUN_PENDING, RunStore, utcnow
from instances.plain import to_plain
from instances.validation import (
    Finding,
    Name,
    Text,
    YamlInputError,
    YamlModel,
    error_at,
    raise_findings,
    read_yaml_file,
    validate_yaml,
)
from solvers.result import Termination

DESIGNS = ("grid", "list", "random", "lhs")
PLACEHOLDER = "$value"
EXECUTORS = ("local", "dask")
OBJECTIVE_RTOL = 1e-6
"""Relative tolerance within which a reproduced objective (and KPI) counts as the same."""


class SweepSpecError(YamlInputError):
    """The sweep spec is invalid; the message names the file and the key (every finding)."""


# ---------------------------------------------------------------------------------------------------
# The spec
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Parameter:
    """One axis of a sweep: a modification template holding ``$value`` and the values it may take."""

    name: str
    template: dict[str, Any]
    values: tuple[Any, ...] | None = None
    range: tuple[float, float] | None = None
    integer: bool = False
    steps: int | None = None

    def modification(self, value: Any) -> dict[str, Any] | None:
        """The template with ``$value`` replaced; None (no modification) for a null or empty value."""
        if value is None or (isinstance(value, list | tuple) and len(value) == 0):
            return None
        return _substitute(self.template, value)

    def grid_values(self) -> list[Any]:
        """The values a grid takes: ``values``, else ``steps`` evenly spaced points of ``range``."""
        if self.values is not None:
            return list(self.values)
        assert self.range is not None and self.steps is not None
        lo, hi = self.range
        return [self._cast(v) for v in np.linspace(lo, hi, self.steps)]

    def from_unit(self, u: float) -> Any:
        """The value at quantile ``u`` in [0, 1): a point of the range, or one of the values."""
        if self.range is not None:
            lo, hi = self.range
            return self._cast(lo + u * (hi - lo))
        assert self.values is not None
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]

    def _cast(self, v: float) -> Any:
        return int(round(v)) if self.integer else round(float(v), 6)


def _substitute(obj: Any, value: Any) -> Any:
    if isinstance(obj, str) and obj == PLACEHOLDER:
        return list(value) if isinstance(value, tuple) else value
    if isinstance(obj, dict):
        return {k: _substitute(v, value) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_substitute(v, value) for v in obj]
    return obj


def _has_placeholder(obj: Any) -> bool:
    if isinstance(obj, str):
        return obj == PLACEHOLDER
    if isinstance(obj, dict):
        return any(_has_placeholder(v) for v in obj.values())
    if isinstance(obj, list):
        return any(_has_placeholder(v) for v in obj)
    return False


@dataclass(frozen=True)
class Point:
    """One variant of a sweep: its parameter values, the modifications they make, and a label."""

    label: str
    params: dict[str, Any]
    modifications: tuple[dict[str, Any], ...]


@dataclass(frozen=True)
class SweepSpec:
    """A parsed and checked sweep spec (see the module docstring)."""

    name: str
    instance: str
    scenario: str | None
    seed: int
    solver: dict[str, Any]
    plan: dict[str, Any]
    warm_start: bool
    parameters: dict[str, Parameter]
    designs: tuple[dict[str, Any], ...]
    raw: dict[str, Any] = field(default_factory=dict, compare=False)
    source: str = "<inline>"

    @property
    def base_dir(self) -> Path:
        """Folder that relative paths of the spec are resolved from: the spec file's, else the cwd."""
        return Path(self.source).parent if self.source != "<inline>" else Path.cwd()

    def instance_path(self) -> Path:
        """The instance folder: relative to the spec file, else a bundled name or a path from the cwd."""
        from instances.instance import resolve_instance_path

        local = self.base_dir / self.instance
        return local if local.is_dir() else resolve_instance_path(self.instance)

    def load_base_scenario(self, instance_path: Path) -> Any:
        """The base Scenario, or None for the plain instance."""
        from engine.scenario import load_scenario

        if self.scenario is None:
            return None
        local = self.base_dir / self.scenario
        return load_scenario(local if local.is_file() else self.scenario, instance_path)

    def points(self) -> list[Point]:
        """Every variant, in design order; samples drawn from ``seed`` (one stream per design)."""
        streams = np.random.SeedSequence(self.seed).spawn(len(self.designs))
        out: list[Point] = []
        for k, (design, ss) in enumerate(zip(self.designs, streams)):
            kind, body = next(iter(design.items()))
            rng = np.random.default_rng(ss)
            if kind == "grid":
                params = [self.parameters[p] for p in body]
                for combo in itertools.product(*(p.grid_values() for p in params)):
                    out.append(self._point(f"grid{k}", dict(zip(body, combo))))
            elif kind == "list":
                for entry in body:
                    entry = dict(entry)
                    label = str(entry.pop("name", f"list{k}"))
                    raw = [dict(m) for m in entry.pop("modifications", [])]
                    out.append(self._point(label, entry, raw))
            else:
                names = list(body["parameters"])
                n = int(body["n"])
                if kind == "random":
                    u = rng.random((n, len(names)))
                else:
                    from scipy.stats import qmc

                    u = qmc.LatinHypercube(d=len(names), rng=rng).random(n)
                for row in u:
                    out.append(self._point(f"{kind}{k}", {p: self.parameters[p].from_unit(float(x))
                                                         for p, x in zip(names, row)}))
        return out

    def _point(self, label: str, params: dict[str, Any], raw: list[dict[str, Any]] | None = None) -> Point:
        mods = [m for m in (self.parameters[p].modification(v) for p, v in params.items()) if m is not None]
        shown = ", ".join(f"{p}={v}" for p, v in params.items())
        return Point(label=f"{label}: {shown}" if shown else label, params=dict(params),
                     modifications=tuple(mods + list(raw or [])))


# The spec file's model (pydantic): keys, types and bounds; references between its parts are checked after it.
class ParameterSpec(YamlModel):
    """``parameters.<name>``: a modification template holding ``$value`` and its values or range."""

    template: dict[str, Any] = Field(alias="set")
    values: Annotated[list[Any], Field(min_length=1)] | None = None
    range: Annotated[list[float], Field(min_length=2, max_length=2)] | None = None
    integer: bool = False
    steps: Annotated[int, Field(ge=1)] | None = None
    description: Text | None = None

    @model_validator(mode="after")
    def _consistent(self) -> ParameterSpec:
        if not _has_placeholder(self.template):
            raise error_at("set", f"must be a modification mapping containing {PLACEHOLDER}")
        if self.range is not None and self.range[1] < self.range[0]:
            raise error_at("range", f"low {self.range[0]:g} is above high {self.range[1]:g}")
        if self.values is None and self.range is None:
            raise ValueError("needs values or range")
        return self


class PlanSettings(YamlModel):
    """``plan:`` options of every run's optimize -> simulate loop (:func:`engine.pipeline.plan`)."""

    max_rounds: Annotated[int, Field(ge=1)] | None = None
    replications: Annotated[int, Field(ge=1)] | None = None
    simulate: bool | None = None


PLAN_KEYS = tuple(PlanSettings.model_fields)


class SampleDesign(YamlModel):
    """``random:`` / ``lhs:``: ``n`` draws over some parameters."""

    n: Annotated[int, Field(ge=1)]
    parameters: Annotated[list[Name], Field(min_length=1)]


class Design(YamlModel):
    """One entry of ``vary``: exactly one of grid, list, random, lhs."""

    grid: Annotated[list[Name], Field(min_length=1)] | None = None
    points: Annotated[list[dict[Name, Any]], Field(min_length=1)] | None = Field(None, alias="list")
    random: SampleDesign | None = None
    lhs: SampleDesign | None = None

    @model_validator(mode="after")
    def _one_design(self) -> Design:
        if len(self.model_fields_set) != 1:
            raise ValueError(f"must be a one-key mapping: one of {list(DESIGNS)}")
        return self


def _designs_as_list(v: Any) -> Any:
    return [{k: x} for k, x in v.items()] if isinstance(v, dict) else v


class SweepFile(YamlModel):
    """A sweep spec file (see the module docstring)."""

    name: Name
    description: Text | None = None
    instance: Name
    scenario: Name | None = None
    seed: Annotated[int, Field(ge=0)] = 0
    solver: SolverSettings | None = None
    plan: PlanSettings | None = None
    warm_start: bool = True
    parameters: dict[Name, ParameterSpec] | None = None
    vary: Annotated[list[Design], BeforeValidator(_designs_as_list)] | None = None


def _template_findings(source: str, name: str, spec: ParameterSpec) -> list[Finding]:
    """Findings of a parameter's template filled with its first values and range ends (as a modification)."""
    samples = [v for v in (spec.values or [])[:3] if v not in (None, [])] + list(spec.range or [])
    seen: dict[str, Finding] = {}
    for value in samples:
        for f in validate_yaml(Modification, _substitute(spec.template, value), source,
                               prefix=("parameters", name, "set"))[1]:
            seen.setdefault(f"{f.column}: {f.message.split(', got ')[0]}", f)
    return list(seen.values())


def _reference_findings(source: str, model: SweepFile) -> list[Finding]:
    """Designs naming unknown parameters, grids over continuous ranges, points' raw modifications."""
    params = model.parameters or {}
    out: list[Finding] = []

    def names(key: str, given: list[str]) -> None:
        for p in given:
            if p not in params:
                out.append(Finding(source, None, key, f"unknown parameter {p!r} (parameters: {sorted(params)})"))

    for name, spec in params.items():
        out += _template_findings(source, name, spec)
    for i, d in enumerate(model.vary or []):
        key = f"vary[{i}]"
        if d.grid is not None:
            names(f"{key}.grid", d.grid)
            for p in d.grid:
                if p in params and params[p].values is None and params[p].steps is None:
                    out.append(Finding(source, None, f"parameters.{p}", "a grid needs values, or range with steps"))
        for j, entry in enumerate(d.points or []):
            for p in entry:
                if p not in params and p not in ("name", "modifications"):
                    out.append(Finding(source, None, f"{key}.list[{j}].{p}",
                                       f"unknown parameter (parameters: {sorted(params)})"))
            raw = entry.get("modifications", [])
            if not isinstance(raw, list):
                out.append(Finding(source, None, f"{key}.list[{j}].modifications", "must be a list of modifications"))
                continue
            for k, m in enumerate(raw):
                out += validate_yaml(Modification, m, source, prefix=("vary", i, "list", j, "modifications", k))[1]
        for kind in ("random", "lhs"):
            sample = getattr(d, kind)
            if sample is not None:
                names(f"{key}.{kind}.parameters", sample.parameters)
    return out


def _design_dict(d: Design) -> dict[str, Any]:
    """A validated design as ``{kind: body}`` (names as text, as the parameters are keyed)."""
    if d.grid is not None:
        return {"grid": list(d.grid)}
    if d.points is not None:
        return {"list": [dict(p) for p in d.points]}
    kind = "random" if d.random is not None else "lhs"
    sample = getattr(d, kind)
    return {kind: {"n": sample.n, "parameters": list(sample.parameters)}}


def sweep_spec_from_dict(data: Any, source: str = "<inline>") -> SweepSpec:
    """Build and check a SweepSpec from a parsed mapping; raises SweepSpecError with every finding (file, key)."""
    if not isinstance(data, dict):
        raise SweepSpecError(f"{source}: must be a mapping with name, instance, parameters, vary")
    model, findings = validate_yaml(SweepFile, data, source)
    raise_findings(findings, SweepSpecError)
    assert model is not None
    raise_findings(_reference_findings(source, model), SweepSpecError)
    params = {name: Parameter(name=name, template=spec.template,
                              values=tuple(spec.values) if spec.values is not None else None,
                              range=(spec.range[0], spec.range[1]) if spec.range is not None else None,
                              integer=spec.integer, steps=spec.steps)
              for name, spec in (model.parameters or {}).items()}
    designs = tuple(_design_dict(d) for d in model.vary or [])
    solver = {"solver": "highs", "threads": 1, **(data.get("solver") or {})}
    return SweepSpec(name=model.name, instance=model.instance, scenario=model.scenario, seed=model.seed,
                     solver=solver, plan=dict(data.get("plan") or {}), warm_start=model.warm_start,
                     parameters=params, designs=designs, raw=dict(data), source=source)


def load_sweep_spec(path: str | Path) -> SweepSpec:
    """Read and check a sweep spec YAML file (safe YAML only)."""
    return sweep_spec_from_dict(read_yaml_file(path, "sweep spec", SweepSpecError), str(Path(path)))


# ---------------------------------------------------------------------------------------------------
# One run (executed in a worker)
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RunTask:
    """Everything a worker needs to run one variant; picklable."""

    run_id: str
    sweep_id: str | None
    index: int
    label: str
    params: dict[str, Any]
    modifications: tuple[dict[str, Any], ...]
    instance_path: str
    instance_tables_hashes: dict[str, str]
    scenario: Any  # engine.scenario.Scenario | None (the variant)
    seed: int
    solver_options: dict[str, Any]
    warm_start: Any = None  # instances.plan.Plan | None
    warm_start_id: str | None = None


@functools.lru_cache(maxsize=4)
def _cached_instance(path: str, mtime: float) -> Any:
    from instances.instance import load_instance

    return load_instance(path)


def _instance_mtime(path: str) -> float:
    p = Path(path)
    return max((f.stat().st_mtime for f in p.iterdir() if f.is_file()), default=0.0)


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str | None]:
    return package_versions()


def _result_fields(result: Any) -> dict[str, Any]:
    """The run-record fields of a finished :class:`engine.pipeline.PlanResult` (plan tables under _plan_tables)."""
    timings = {k: float(v) for k, v in result.timings.items()}
    meta = getattr(result.plan, "meta", None) or {}
    for key, name in (("build_seconds", "milp_build_s"), ("solve_seconds", "milp_solve_s"),
                      ("solve_seconds_total", "solver_s")):
        if isinstance(meta.get(key), int | float):  # the last round's model build and pure solver time
            timings[name] = float(meta[key])
    code, reason = run_outcome(result)
    return {"status": RUN_DONE, "solve_status": str(result.status), "exit_code": code, "reason": reason,
            "objective": None if result.objective is None else float(result.objective),
            "simulation_feasible": bool(result.simulation_feasible), "kpis": to_plain(result.kpis),
            "timings": timings,
            "plan_hash": plan_hash(result.plan.tables), "_plan_tables": result.plan.tables}


REASON_CHARS = 2000
"""Longest reason text kept with a run (a diagnosis naming hundreds of zones is cut there)."""


def run_outcome(result: Any) -> tuple[int, str | None]:
    """The exit code ``twinplan solve`` gives a :class:`engine.pipeline.PlanResult` (0, 3 infeasible, 4 no
    solution within the limit, 6 not executable) and, when not 0, the reason in one line: the diagnosis of an
    infeasible model, or the SLA breaches of a plan that is not executable."""
    from engine.answer import breach_sentence, breaches
    from engine.pipeline import exit_code

    code = exit_code(result)
    if code == 0:
        return 0, None
    if code == 6:
        rows = (result.answer or {}).get("breaches") or breaches(result.instance, result.simulation)
        reason = "not executable: " + (breach_sentence(rows) if rows else "the plan breaks an SLA in the simulation")
    else:
        why = (result.rounds[-1].get("diagnosis") if result.rounds else None) or []
        reason = ("infeasible" if code == 3 else f"no solution within the time limit (solver status {result.status})"
                  ) + (": " + "; ".join(str(w) for w in why) if why else "")
    return code, reason if len(reason) <= REASON_CHARS else reason[:REASON_CHARS - 3] + "..."


BASIS_ARTIFACT = "basis."
"""Run-artifact name prefix of a base run's LP bases (``basis.lp``, ``basis.restore``): the variants' warm start."""


def execute_task(task: RunTask, warm_start: Any = None) -> dict[str, Any]:
    """Run one variant through :func:`engine.pipeline.plan`; never raises (a failure is a failed outcome).

    ``warm_start`` (a Plan), when given, overrides ``task.warm_start``: the driver passes the shared base plan
    this way so that Dask ships it to each worker once. Returns the run's record (for
    :meth:`engine.store.RunStore.record_run`) with the plan tables under ``_plan_tables``.
    """
    warm_start = task.warm_start if warm_start is None else warm_start
    started, t0 = utcnow(), time.perf_counter()
    opts = task.solver_options
    out: dict[str, Any] = {
        "run_id": task.run_id, "sweep_id": task.sweep_id, "run_index": task.index, "name": task.label,
        "params": task.params, "modifications": list(task.modifications), "instance_path": task.instance_path,
        "scenario_spec": task.scenario.to_dict() if task.scenario is not None else None,
        "scenario": getattr(task.scenario, "name", None),
        "scenario_class": getattr(task.scenario, "scenario_class", "tactical"),
        "decision": getattr(task.scenario, "decision", "consolidation"),
        "solver": opts.get("solver"), "solver_options": opts, "seed": task.seed, "warm_start": task.warm_start_id,
        "host": socket.gethostname(), "pid": os.getpid(), "started_at": started, "versions": _versions(),
    }
    try:
        out["hashes"] = input_hashes(task.instance_tables_hashes, task.scenario, opts, task.seed, _versions(),
                                     task.warm_start_id)
        out["input_hash"] = out["hashes"]["input_hash"]
        from engine.pipeline import plan

        inst = _cached_instance(task.instance_path, _instance_mtime(task.instance_path))
        out["instance"] = inst.name
        result = plan(inst, task.scenario, solver=opts.get("solver", "highs"), time_limit=opts.get("time_limit"),
                      mip_gap=opts.get("mip_gap"), threads=opts.get("threads"), warm_start=warm_start,
                      seed=task.seed, **{k: opts[k] for k in PLAN_KEYS if k in opts})
        out.update(_result_fields(result))
        if task.index == 0 and result.plan.bases:  # the base run is every variant's warm start: keep its LP bases
            out["_artifacts"] = {f"{BASIS_ARTIFACT}{k}": b.to_bytes() for k, b in result.plan.bases.items()}
    except Exception as exc:  # noqa: BLE001 - a failed run is recorded with its error, the sweep goes on
        tb = traceback.extract_tb(exc.__traceback__)
        where = f" (at {Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
        out.update(status=RUN_FAILED, error=f"{type(exc).__name__}: {exc}{where}")
    out["finished_at"] = utcnow()
    out["wall_seconds"] = time.perf_counter() - t0
    return out


# ---------------------------------------------------------------------------------------------------
# Executors
# ---------------------------------------------------------------------------------------------------
LOCAL_CLUSTER_CONFIG = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
"""Dask settings for the LocalCluster a sweep starts. Dask sets ``MALLOC_TRIM_THRESHOLD_=65536`` in its workers
by default, so that glibc hands freed memory back to the OS at once; our runs build and free large numpy /
pandas temporaries, and with that setting each eu_fba run took 20 % longer (12 runs: 138.7 s of run time
against 114.9 s without it, the same as the process pool's 113.4 s). Unset here; a cluster given by
``--scheduler`` keeps its own settings."""


@contextlib.contextmanager
def open_executor(kind: str = "local", workers: int | None = None, scheduler: str | None = None,
                  ) -> Iterator[tuple[Executor, Callable[[Any], Any]]]:
    """A ``concurrent.futures`` executor: a process pool (``local``) or a Dask client's (``dask``).

    ``dask`` connects to ``scheduler`` when given, else starts a LocalCluster of ``workers`` single-threaded
    worker processes (closed on exit). Also yields ``share(obj)``: what to pass to ``submit`` for an
    argument every task uses (the object itself for the pool; a scattered Dask future, sent once per
    worker, for Dask).
    """
    workers = workers or max(1, (os.cpu_count() or 2))
    if kind == "local":
        from engine.lifeline import die_with_parent  # workers end with the driver, even on SIGKILL

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                                 initializer=die_with_parent, initargs=(os.getpid(),)) as ex:
            yield ex, lambda obj: obj
        return
    if kind != "dask":
        raise ValueError(f"unknown executor {kind!r}; one of {list(EXECUTORS)}")
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    environ = dict(os.environ)  # a LocalCluster's nannies write their workers' variables into ours
    if scheduler:
        client = Client(scheduler)
    else:
        with dask.config.set(LOCAL_CLUSTER_CONFIG):
            cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    try:
        yield client.get_executor(pure=False), lambda obj: obj if obj is None else client.scatter(obj, broadcast=True)
    finally:
        levels = {name: logging.getLogger(name).level for name in ("distributed", "tornado")}
        for name in levels:  # shutdown chatter: heartbeats to closed comms, nannies killing idle workers
            logging.getLogger(name).setLevel(logging.CRITICAL)
        try:
            client.close()
            if cluster is not None:
                cluster.close()
        finally:
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            if cluster is not None:
                os.environ.clear()
                os.environ.update(environ)


# ---------------------------------------------------------------------------------------------------
# The sweep driver
# ---------------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """What a call of :func:`run_sweep` did."""

    sweep_id: str
    name: str
    total: int
    finished: int
    failed: int
    skipped: int
    wall_seconds: float
    store: RunStore
    executor: str
    run_seconds: list[float] = field(default_factory=list)

    def runs(self) -> pd.DataFrame:
        """The sweep's run records from the store (one row per run)."""
        return self.store.runs(sweep=self.sweep_id)

    def to_dict(self) -> dict[str, Any]:
        """Counts, wall time (s), executor and store of the sweep as plain JSON data."""
        return {"sweep_id": self.sweep_id, "name": self.name, "total": self.total, "finished": self.finished,
                "failed": self.failed, "skipped": self.skipped, "wall_seconds": round(self.wall_seconds, 3),
                "executor": self.executor, "store": str(self.store.path)}


def run_seed(seed: int, index: int) -> int:
    """The simulator seed of run ``index`` of a sweep seeded ``seed`` (independent streams)."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _solver_options(spec: SweepSpec) -> dict[str, Any]:
    return {**spec.solver, **spec.plan}


def _warm_plan(store: RunStore, run_id: str) -> Any:
    """The stored plan of a finished run, as a Plan with its LP bases (None when it has no solution)."""
    from instances.plan import Plan
    from solvers import Basis

    rec = store.run(run_id)
    if rec.get("status") != RUN_DONE or rec.get("objective") is None:
        return None
    bases = {name[len(BASIS_ARTIFACT):]: Basis.from_bytes(store.artifact(run_id, name))
             for name in store.artifact_names(run_id) if name.startswith(BASIS_ARTIFACT)}
    return Plan(decision=rec.get("decision") or "consolidation", status=rec.get("solve_status") or "optimal",
                objective=rec.get("objective"), tables=store.plan_tables(run_id), bases=bases)


def run_audit_row(outcome: dict[str, Any], verdict: Any, action: str) -> dict[str, Any]:
    """The audit row of a run's outcome (its status, objective, fingerprints, and why it failed)."""
    return audit_row(verdict, action, outcome.get("scenario"), run_id=outcome["run_id"],
                     sweep_id=outcome.get("sweep_id"), hashes=outcome.get("hashes"), status=outcome["status"],
                     objective=outcome.get("objective"), plan_hash=outcome.get("plan_hash"),
                     detail=outcome.get("error") or outcome.get("reason"), pid=outcome.get("pid"),
                     host=outcome.get("host"), calibration=outcome.get("calibration"))


def _record(store: RunStore, outcome: dict[str, Any], verdict: Any, action: str, executor: str,
            user: str, stage: bool = False) -> tuple[bool, dict[str, Any]]:
    """Record a run with its audit row (or, ``stage``: as ``pending`` without it); returns (written, audit row)."""
    tables = outcome.pop("_plan_tables", None)
    outcome.setdefault("instance", verdict.instance)
    outcome["executor"] = executor
    outcome["user_name"] = user
    row = run_audit_row(outcome, verdict, action)
    if stage:
        return store.record_run({**outcome, "status": RUN_PENDING}, tables), row
    return store.record_run(outcome, tables, audit_row=row), row


def run_sweep(spec: SweepSpec | str | Path, *, executor: str = "local", workers: int | None = None,
              scheduler: str | None = None, store: RunStore | str | Path | None = None, user: str | None = None,
              policy: Policy | str | Path | None = None, retry_failed: bool = False, progress: bool = True,
              warm_start: bool | None = None, limit: int | None = None) -> SweepResult:
    """Run (or resume) a sweep; every run is written to the store as it completes.

    Parameters
    ----------
    spec : a SweepSpec or the path of a spec file
    executor, workers, scheduler : ``local`` process pool or ``dask`` (``scheduler`` address or a LocalCluster)
    store : the run store (default: ``$TWINPLAN_STORE`` or ``twinplan_runs.duckdb``)
    user, policy : who runs it (default :func:`engine.governance.current_user`) and the policy (a Policy, a
        file, or default :func:`engine.governance.find_policy`); a refused sweep raises PolicyRefused before
        any solve, with one audit row per refused run
    retry_failed : re-run runs recorded as failed (they are replaced); finished runs are always skipped
    progress : show a progress bar (runs done / failed / remaining, ETA) on stderr
    warm_start : override the spec's ``warm_start``
    limit : run only the first ``limit`` variants (after the base run); for benchmarks and smoke tests
    """
    from instances.instance import load_instance

    t_start = time.perf_counter()
    spec = spec if isinstance(spec, SweepSpec) else load_sweep_spec(spec)
    store = store if isinstance(store, RunStore) else RunStore(store)
    user = current_user(user)
    policy = policy if isinstance(policy, Policy) else find_policy(policy)
    warm = spec.warm_start if warm_start is None else warm_start

    inst_path = spec.instance_path().resolve()
    instance = load_instance(inst_path)
    base_scenario = spec.load_base_scenario(inst_path)
    if base_scenario is None:
        from engine.scenario import Scenario

        base_scenario = Scenario(name="base", source=str(spec.source))
    points = spec.points()
    if limit is not None:
        points = points[:limit]
    tables_hashes = instance_hashes(instance)
    raw = {k: v for k, v in spec.raw.items() if k != "description"}
    spec_hash = hash_json({"spec": raw, "instance": tables_hashes, "scenario": base_scenario.to_dict(),
                           "limit": limit, "warm_start": warm})
    sweep_id = spec_hash[:12]
    variants = [(0, Point("base", {}, ()))] + list(enumerate(points, start=1))
    run_ids = {i: f"{sweep_id}-{i:04d}" for i, _ in variants}
    opts = _solver_options(spec)

    # every variant's scenario is built (and structurally checked) before anything runs
    scenarios = {i: base_scenario if not p.modifications else
                 base_scenario.with_modifications(list(p.modifications), name=f"{base_scenario.name}[{i}]")
                 for i, p in variants}

    verdict = authorize(policy, user, base_scenario, instance.name, runs=len(variants))
    if not verdict.allowed:
        versions = _versions()
        store.append_audit(*(audit_row(verdict, "sweep_run", base_scenario.name, run_id=run_ids[i],
                                       sweep_id=sweep_id, status="refused",
                                       hashes=input_hashes(tables_hashes, scenarios[i], opts, run_seed(spec.seed, i),
                                                           versions, run_ids[0] if warm and i else None))
                             for i, p in variants))
        raise PolicyRefused(verdict)
    store.record_sweep(sweep_id, spec.name, raw, spec_hash, instance.name, spec.scenario, len(variants), spec.seed,
                       user)
    done = store.finished_runs(sweep_id, include_failed=not retry_failed)

    def task(i: int, point: Point, warm_plan: Any = None, warm_id: str | None = None) -> RunTask:
        return RunTask(run_id=run_ids[i], sweep_id=sweep_id, index=i, label=point.label, params=point.params,
                       modifications=point.modifications, instance_path=str(inst_path),
                       instance_tables_hashes=tables_hashes, scenario=scenarios[i], seed=run_seed(spec.seed, i),
                       solver_options=opts, warm_start=warm_plan, warm_start_id=warm_id)

    counts = {"finished": 0, "failed": 0}
    seconds: list[float] = []
    todo = [(i, p) for i, p in variants if run_ids[i] not in done]
    from tqdm import tqdm

    bar = tqdm(total=len(variants), initial=len(variants) - len(todo), desc=spec.name, unit="run",
               disable=not progress, file=sys.stderr, dynamic_ncols=True)

    def settle(fut: Future, i: int) -> None:
        try:
            outcome = fut.result()
        except Exception as exc:  # noqa: BLE001 - a lost worker is a failed run, not a failed sweep
            outcome = {"run_id": run_ids[i], "sweep_id": sweep_id, "run_index": i, "status": RUN_FAILED,
                       "error": f"{type(exc).__name__}: {exc}", "params": dict(variants[i][1].params)}
        _record(store, outcome, verdict, "sweep_run", executor, user)
        counts["finished" if outcome["status"] == RUN_DONE else "failed"] += 1
        if outcome.get("wall_seconds") is not None:
            seconds.append(float(outcome["wall_seconds"]))
        bar.update(1)
        bar.set_postfix(done=counts["finished"], failed=counts["failed"], remaining=bar.total - bar.n)

    try:
        with open_executor(executor, workers, scheduler) as (ex, share):
            pending = todo
            if todo and todo[0][0] == 0:
                base_fut = ex.submit(execute_task, task(0, todo[0][1]))
                settle(base_fut, 0)
                pending = todo[1:]
            warm_id = run_ids[0] if warm else None
            warm_plan = _warm_plan(store, warm_id) if warm_id else None
            if warm_plan is None:
                warm_id = None
            shared_plan = share(warm_plan)
            futures = {ex.submit(execute_task, task(i, p, None, warm_id), shared_plan): i for i, p in pending}
            try:
                for fut in as_completed(futures):
                    settle(fut, futures[fut])
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
    finally:
        bar.close()
    return SweepResult(sweep_id=sweep_id, name=spec.name, total=len(variants), finished=counts["finished"],
                       failed=counts["failed"], skipped=len(variants) - len(todo),
                       wall_seconds=time.perf_counter() - t_start, store=store, executor=executor,
                       run_seconds=seconds)


def new_run_id(instance: Any, scenario: Any, solver_options: dict[str, Any], seed: int) -> str:
    """A fresh run id as :func:`record_plan_result` makes it (time stamp and input hash), for a caller that
    must name the run before recording it (``twinplan solve`` writes it into the run folder first)."""
    hashes = input_hashes(instance, scenario, solver_options, seed, _versions(), None)
    return f"run-{utcnow():%Y%m%dT%H%M%S%f}-{hashes['input_hash'][:8]}"


def solve_run_row(*, instance: Any, instance_path: str | Path, scenario: Any, solver_options: dict[str, Any],
                  seed: int, verdict: Any, run_id: str, warm_start_id: str | None = None,
                  out_dir: str | Path | None = None) -> dict[str, Any]:
    """The run row of a ``twinplan solve`` before it has a result: what is run, by whom, where, into which folder
    (recorded ``running`` when the solve starts, so that even a run killed outright is seen)."""
    hashes = input_hashes(instance, scenario, solver_options, seed, _versions(), warm_start_id)
    return {"run_id": run_id, "run_index": 0, "name": getattr(scenario, "name", "base"), "instance": instance.name,
            "instance_path": str(Path(instance_path).resolve()),
            "scenario_spec": scenario.to_dict() if scenario is not None else None,
            "scenario": getattr(scenario, "name", None), "scenario_class": verdict.scenario_class,
            "decision": verdict.decision, "solver": solver_options.get("solver"), "solver_options": solver_options,
            "seed": seed, "warm_start": warm_start_id, "hashes": hashes, "input_hash": hashes["input_hash"],
            "versions": _versions(), "host": socket.gethostname(), "pid": os.getpid(), "user_name": verdict.user,
            "executor": "inline", "started_at": utcnow(),
            "out_dir": None if out_dir is None else str(Path(out_dir).resolve())}


def record_plan_result(result: Any, store: RunStore | str | Path | None, *, instance: Any, instance_path: str | Path,
                       scenario: Any, solver_options: dict[str, Any], seed: int, verdict: Any,
                       warm_start_id: str | None = None, action: str = "plan", run_id: str | None = None,
                       out_dir: str | Path | None = None, stage: bool = False, started_at: Any = None,
                       ) -> str | tuple[str, dict[str, Any]]:
    """Write one :func:`engine.pipeline.plan` result made outside a sweep (``twinplan solve``) to the store.

    The run row, KPIs, plan tables and an audit row (with the input hashes and ``verdict``, from
    :func:`engine.governance.enforce`) go in one transaction; :func:`reproduce` can re-run it. ``solver_options``
    must hold what was passed to ``plan`` (solver, time_limit, mip_gap, threads, max_rounds, replications,
    simulate). ``run_id`` names the run (default: a new id, :func:`new_run_id`). Returns the run id.

    ``stage`` (``twinplan solve``): record the run ``pending`` and return (run id, its audit row) instead; the
    caller publishes the run folder ``out_dir``, then :meth:`engine.store.RunStore.finish_runs` marks it finished.
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    now = utcnow()
    if run_id is None:
        hashes = input_hashes(instance, scenario, solver_options, seed, _versions(), warm_start_id)
        run_id = f"run-{now:%Y%m%dT%H%M%S%f}-{hashes['input_hash'][:8]}"
    out = {**solve_run_row(instance=instance, instance_path=instance_path, scenario=scenario,
                           solver_options=solver_options, seed=seed, verdict=verdict, run_id=run_id,
                           warm_start_id=warm_start_id, out_dir=out_dir),
           "started_at": started_at, "finished_at": now, "wall_seconds": float(result.timings.get("total_s", 0.0)),
           **_result_fields(result)}
    from engine.calibration import calibration_version

    out["calibration"] = calibration_version(instance)  # the version solve --calibration applied, if any
    _, row = _record(store, out, verdict, action, "inline", verdict.user, stage=stage)
    return (run_id, row) if stage else run_id


# ---------------------------------------------------------------------------------------------------
# Reproduce
# ---------------------------------------------------------------------------------------------------
@dataclass
class ReproduceReport:
    """Whether re-running a stored run gave the same result."""

    run_id: str
    matches: bool
    input_differences: list[str]
    recorded: dict[str, Any]
    reproduced: dict[str, Any]
    kpi_differences: dict[str, tuple[float | None, float | None]]

    @property
    def message(self) -> str:
        """Multi-line report: whether the re-run matches, and each recorded vs reproduced difference."""
        head = (f"run {self.run_id}: reproduced" if self.matches
                else f"run {self.run_id}: DOES NOT MATCH the recorded result")
        lines = [head]
        for key in ("status", "solve_status", "objective", "plan_hash"):
            a, b = self.recorded.get(key), self.reproduced.get(key)
            mark = "==" if _same(a, b) else "!="
            lines.append(f"  {key}: recorded {_short(a)} {mark} reproduced {_short(b)}")
        for k, (a, b) in sorted(self.kpi_differences.items()):
            lines.append(f"  kpi {k}: recorded {a} != reproduced {b}")
        if self.input_differences:
            lines.append("  inputs changed since the run:")
            lines += [f"    {d}" for d in self.input_differences]
        else:
            lines.append("  inputs identical (instance tables, scenario, solver options, seed, packages)")
        if self.recorded.get("solve_status") == "time_limit" or self.reproduced.get("solve_status") == "time_limit":
            lines.append("  note: a solve stopped at its time limit; where it stops depends on machine speed and load,"
                         " so such a run is not expected to reproduce exactly")
        if self.reproduced.get("error"):
            lines.append(f"  error: {self.reproduced['error']}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain JSON data."""
        return {"run_id": self.run_id, "matches": self.matches, "input_differences": self.input_differences,
                "recorded": self.recorded, "reproduced": self.reproduced,
                "kpi_differences": {k: list(v) for k, v in self.kpi_differences.items()}}


def _short(v: Any) -> str:
    if isinstance(v, Termination):
        v = str(v)
    if isinstance(v, str) and len(v) == 64:
        return v[:12]
    return repr(v)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=OBJECTIVE_RTOL, abs_tol=1e-9)
    return a == b


def reproduce(run_id: str, store: RunStore | str | Path | None = None, *, user: str | None = None,
              policy: Policy | str | Path | None = None) -> ReproduceReport:
    """Re-run a stored run from its recorded inputs (in this process) and compare with what was recorded.

    The run matches when status, solve status, objective (relative tolerance :data:`OBJECTIVE_RTOL`) and the
    plan tables' hash are the same. Input differences (instance tables, scenario, solver options, seed,
    package versions) are listed either way. The re-run is authorized by the policy first and audited
    (action ``reproduce``).
    """
    from engine.scenario import scenario_from_dict
    from instances.instance import load_instance

    store = store if isinstance(store, RunStore) else RunStore(store)
    rec = store.run(run_id)
    run_id = rec["run_id"]
    user = current_user(user)
    policy = policy if isinstance(policy, Policy) else find_policy(policy)
    if not rec.get("instance_path"):
        raise ValueError(f"run {run_id}: no instance path recorded; cannot reproduce")
    instance = load_instance(rec["instance_path"])
    spec = rec.get("scenario_spec")
    scenario = scenario_from_dict(spec, f"run {run_id} scenario") if spec else None
    verdict = authorize(policy, user, scenario, instance.name)
    if not verdict.allowed:
        store.append_audit(audit_row(verdict, "reproduce", getattr(scenario, "name", None), run_id=run_id,
                                     sweep_id=rec.get("sweep_id"), status="refused"))
        raise PolicyRefused(verdict)
    warm_id = rec.get("warm_start")
    warm_plan = _warm_plan(store, warm_id) if warm_id else None
    task = RunTask(run_id=run_id, sweep_id=rec.get("sweep_id"), index=int(rec.get("run_index") or 0),
                   label=rec.get("name") or run_id, params=rec.get("params") or {},
                   modifications=tuple(rec.get("modifications") or ()), instance_path=str(rec["instance_path"]),
                   instance_tables_hashes=instance_hashes(instance), scenario=scenario,
                   seed=int(rec["seed"]) if rec.get("seed") is not None else 0,
                   solver_options=rec.get("solver_options") or {}, warm_start=warm_plan, warm_start_id=warm_id)
    out = execute_task(task)
    out.pop("_plan_tables", None)
    keys = ("status", "solve_status", "objective", "plan_hash")
    recorded = {k: rec.get(k) for k in keys}
    reproduced = {k: out.get(k) for k in keys} | {"error": out.get("error")}
    kdiff = {}
    ka, kb = rec.get("kpis") or {}, out.get("kpis") or {}
    for k in sorted(set(ka) | set(kb)):
        if not _same(ka.get(k), kb.get(k)):
            kdiff[k] = (ka.get(k), kb.get(k))
    matches = all(_same(recorded[k], reproduced[k]) for k in keys)
    report = ReproduceReport(run_id=run_id, matches=matches,
                             input_differences=compare_hashes(rec.get("hashes") or {}, out.get("hashes") or {}),
                             recorded=recorded, reproduced=reproduced, kpi_differences=kdiff)
    store.append_audit(audit_row(verdict, "reproduce", getattr(scenario, "name", None), run_id=run_id,
                                 sweep_id=rec.get("sweep_id"), hashes=out.get("hashes"),
                                 status="match" if matches else "mismatch", objective=out.get("objective"),
                                 plan_hash=out.get("plan_hash"),
                                 detail="; ".join(report.input_differences) or None))
    return report


__all__ = ["EXECUTORS", "Parameter", "Point", "ReproduceReport", "RunTask", "SweepResult", "SweepSpec",
           "SweepSpecError", "execute_task", "load_sweep_spec", "open_executor", "record_plan_result", "reproduce",
           "run_audit_row", "run_outcome", "solve_run_row",
           "run_seed", "run_sweep", "sweep_spec_from_dict"]


# ---------------------------------------------------------------------------------------------------
# Command-line bodies (``twinplan sweep`` / ``twinplan reproduce``; registered in engine/cli.py)
# ---------------------------------------------------------------------------------------------------
