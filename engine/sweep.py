"""What-if sweeps: many scenario variants through the full optimize -> simulate loop, on local processes or Dask.

A sweep spec is a YAML file::

    name: eu_peak_what_if
    instance: eu_fba              # bundled name or folder (relative to this file or the working directory)
    scenario: peak                # optional base scenario: name in <instance>/scenarios/ or a file
    seed: 42                      # drives the samples and every run's simulator seed
    solver: {solver: highs, time_limit: 60, mip_gap: 0.005, threads: 1}
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
from typing import Any

import numpy as np
import pandas as pd

from engine.governance import Policy, PolicyRefused, audit_row, authorize, current_user, find_policy
from engine.hashing import compare_hashes, hash_json, input_hashes, instance_hashes, package_versions, plan_hash
from engine.store import RUN_DONE, RUN_FAILED, RunStore, utcnow
from instances.validation import read_yaml_file

SPEC_KEYS = {"name", "description", "instance", "scenario", "seed", "solver", "plan", "warm_start", "parameters",
             "vary"}
SOLVER_KEYS = {"solver", "time_limit", "mip_gap", "threads"}
PLAN_KEYS = {"max_rounds", "replications", "simulate"}
PARAM_KEYS = {"set", "values", "range", "integer", "steps", "description"}
DESIGNS = ("grid", "list", "random", "lhs")
PLACEHOLDER = "$value"
EXECUTORS = ("local", "dask")
OBJECTIVE_RTOL = 1e-6
"""Relative tolerance within which a reproduced objective (and KPI) counts as the same."""


class SweepSpecError(ValueError):
    """The sweep spec is invalid; the message names the file and the key."""


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


def _err(source: str, key: str, msg: str) -> SweepSpecError:
    return SweepSpecError(f"{source}: {key}: {msg}")


def _check_number(source: str, key: str, v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise _err(source, key, f"must be a number, got {v!r}")
    return float(v)


def _parse_parameter(source: str, name: str, spec: Any) -> Parameter:
    key = f"parameters.{name}"
    if not isinstance(spec, dict):
        raise _err(source, key, "must be a mapping with set and values or range")
    bad = set(spec) - PARAM_KEYS
    if bad:
        raise _err(source, f"{key}.{sorted(bad)[0]}", f"unknown key (allowed: {sorted(PARAM_KEYS)})")
    template = spec.get("set")
    if not isinstance(template, dict) or not _has_placeholder(template):
        raise _err(source, f"{key}.set", f"must be a modification mapping containing {PLACEHOLDER}")
    values = spec.get("values")
    if values is not None and (not isinstance(values, list) or not values):
        raise _err(source, f"{key}.values", "must be a non-empty list")
    rng = spec.get("range")
    if rng is not None:
        if not isinstance(rng, list) or len(rng) != 2:
            raise _err(source, f"{key}.range", f"must be [low, high], got {rng!r}")
        lo, hi = (_check_number(source, f"{key}.range", v) for v in rng)
        if hi < lo:
            raise _err(source, f"{key}.range", f"low {lo:g} is above high {hi:g}")
        rng = (lo, hi)
    if values is None and rng is None:
        raise _err(source, key, "needs values or range")
    steps = spec.get("steps")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 1):
        raise _err(source, f"{key}.steps", f"must be a whole number >= 1, got {steps!r}")
    return Parameter(name=name, template=template, values=tuple(values) if values is not None else None,
                     range=rng, integer=bool(spec.get("integer", False)), steps=steps)


def _check_names(source: str, key: str, names: Any, params: dict[str, Parameter]) -> list[str]:
    if not isinstance(names, list) or not names:
        raise _err(source, key, "must be a non-empty list of parameter names")
    for p in names:
        if p not in params:
            raise _err(source, key, f"unknown parameter {p!r} (parameters: {sorted(params)})")
    return list(names)


def sweep_spec_from_dict(data: Any, source: str = "<inline>") -> SweepSpec:
    """Build and check a SweepSpec from a parsed mapping; errors name the file and key."""
    if not isinstance(data, dict):
        raise SweepSpecError(f"{source}: must be a mapping with name, instance, parameters, vary")
    bad = set(data) - SPEC_KEYS
    if bad:
        raise _err(source, sorted(bad)[0], f"unknown key (allowed: {sorted(SPEC_KEYS)})")
    for key in ("name", "instance"):
        if not data.get(key) or not isinstance(data[key], str):
            raise _err(source, key, "missing (a name)")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise _err(source, "seed", f"must be a whole number >= 0, got {seed!r}")
    for key, allowed in (("solver", SOLVER_KEYS), ("plan", PLAN_KEYS)):
        sec = data.get(key) or {}
        if not isinstance(sec, dict):
            raise _err(source, key, "must be a mapping")
        bad = set(sec) - allowed
        if bad:
            raise _err(source, f"{key}.{sorted(bad)[0]}", f"unknown key (allowed: {sorted(allowed)})")
    raw_params = data.get("parameters") or {}
    if not isinstance(raw_params, dict):
        raise _err(source, "parameters", "must be a mapping of parameter name to {set, values|range}")
    params = {str(n): _parse_parameter(source, str(n), s) for n, s in raw_params.items()}
    raw_vary = data.get("vary") or []
    if isinstance(raw_vary, dict):
        raw_vary = [{k: v} for k, v in raw_vary.items()]
    if not isinstance(raw_vary, list):
        raise _err(source, "vary", f"must be a list of designs ({', '.join(DESIGNS)})")
    designs = []
    for i, d in enumerate(raw_vary):
        key = f"vary[{i}]"
        if not isinstance(d, dict) or len(d) != 1 or next(iter(d)) not in DESIGNS:
            raise _err(source, key, f"must be a one-key mapping: one of {list(DESIGNS)}")
        kind, body = next(iter(d.items()))
        if kind == "grid":
            names = _check_names(source, f"{key}.grid", body, params)
            for p in names:
                if params[p].values is None and params[p].steps is None:
                    raise _err(source, f"parameters.{p}", "a grid needs values, or range with steps")
        elif kind == "list":
            if not isinstance(body, list) or not body:
                raise _err(source, f"{key}.list", "must be a non-empty list of points")
            for j, entry in enumerate(body):
                if not isinstance(entry, dict):
                    raise _err(source, f"{key}.list[{j}]", "must be a mapping of parameter values")
                for p in entry:
                    if p not in params and p not in ("name", "modifications"):
                        raise _err(source, f"{key}.list[{j}].{p}", f"unknown parameter (parameters: {sorted(params)})")
                if not isinstance(entry.get("modifications", []), list):
                    raise _err(source, f"{key}.list[{j}].modifications", "must be a list of modifications")
        else:
            if not isinstance(body, dict) or set(body) - {"n", "parameters"}:
                raise _err(source, f"{key}.{kind}", "must be a mapping with n and parameters")
            n = body.get("n")
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                raise _err(source, f"{key}.{kind}.n", f"must be a whole number >= 1, got {n!r}")
            _check_names(source, f"{key}.{kind}.parameters", body.get("parameters"), params)
        designs.append({kind: body})
    warm = data.get("warm_start", True)
    if not isinstance(warm, bool):
        raise _err(source, "warm_start", f"must be true or false, got {warm!r}")
    scenario = data.get("scenario")
    if scenario is not None and not isinstance(scenario, str):
        raise _err(source, "scenario", "must be a scenario name or file")
    solver = {"solver": "highs", "threads": 1, **(data.get("solver") or {})}
    return SweepSpec(name=data["name"], instance=data["instance"], scenario=scenario, seed=seed, solver=solver,
                     plan=dict(data.get("plan") or {}), warm_start=warm, parameters=params,
                     designs=tuple(designs), raw=dict(data), source=source)


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


def _plain_kpis(kpis: dict[str, Any]) -> dict[str, float | None]:
    out: dict[str, float | None] = {}
    for k, v in (kpis or {}).items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        out[str(k)] = f if math.isfinite(f) else None
    return out


def _result_fields(result: Any) -> dict[str, Any]:
    """The run-record fields of a finished :class:`engine.pipeline.PlanResult` (plan tables under _plan_tables)."""
    timings = {k: float(v) for k, v in result.timings.items()}
    meta = getattr(result.plan, "meta", None) or {}
    for key, name in (("build_seconds", "milp_build_s"), ("solve_seconds", "milp_solve_s"),
                      ("solve_seconds_total", "solver_s")):
        if isinstance(meta.get(key), int | float):  # the last round's model build and pure solver time
            timings[name] = float(meta[key])
    return {"status": RUN_DONE, "solve_status": str(result.status),
            "objective": None if result.objective is None else float(result.objective),
            "simulation_feasible": bool(result.simulation_feasible), "kpis": _plain_kpis(result.kpis),
            "timings": timings,
            "plan_hash": plan_hash(result.plan.tables), "_plan_tables": result.plan.tables}


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
        return self.store.runs(sweep=self.sweep_id)

    def to_dict(self) -> dict[str, Any]:
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


def _record(store: RunStore, outcome: dict[str, Any], verdict: Any, action: str, executor: str,
            user: str) -> bool:
    tables = outcome.pop("_plan_tables", None)
    outcome.setdefault("instance", verdict.instance)
    outcome["executor"] = executor
    outcome["user_name"] = user
    row = audit_row(verdict, action, outcome.get("scenario"), run_id=outcome["run_id"],
                    sweep_id=outcome.get("sweep_id"), hashes=outcome.get("hashes"), status=outcome["status"],
                    objective=outcome.get("objective"), plan_hash=outcome.get("plan_hash"),
                    detail=outcome.get("error"), pid=outcome.get("pid"), host=outcome.get("host"))
    return store.record_run(outcome, tables, audit_row=row)


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


def record_plan_result(result: Any, store: RunStore | str | Path | None, *, instance: Any, instance_path: str | Path,
                       scenario: Any, solver_options: dict[str, Any], seed: int, verdict: Any,
                       warm_start_id: str | None = None, action: str = "plan", run_id: str | None = None) -> str:
    """Write one :func:`engine.pipeline.plan` result made outside a sweep (``twinplan solve``) to the store.

    The run row, KPIs, plan tables and an audit row (with the input hashes and ``verdict``, from
    :func:`engine.governance.enforce`) go in one transaction; :func:`reproduce` can re-run it. ``solver_options``
    must hold what was passed to ``plan`` (solver, time_limit, mip_gap, threads, max_rounds, replications,
    simulate). ``run_id`` names the run (default: a new id, :func:`new_run_id`). Returns the run id.
    """
    store = store if isinstance(store, RunStore) else RunStore(store)
    hashes = input_hashes(instance, scenario, solver_options, seed, _versions(), warm_start_id)
    now = utcnow()
    run_id = run_id or f"run-{now:%Y%m%dT%H%M%S%f}-{hashes['input_hash'][:8]}"
    out = {"run_id": run_id, "run_index": 0, "name": getattr(scenario, "name", "base"), "instance": instance.name,
           "instance_path": str(Path(instance_path).resolve()),
           "scenario_spec": scenario.to_dict() if scenario is not None else None,
           "scenario": getattr(scenario, "name", None), "scenario_class": verdict.scenario_class,
           "decision": verdict.decision, "solver": solver_options.get("solver"), "solver_options": solver_options,
           "seed": seed, "warm_start": warm_start_id, "hashes": hashes, "input_hash": hashes["input_hash"],
           "versions": _versions(), "host": socket.gethostname(), "pid": os.getpid(), "finished_at": now,
           "wall_seconds": float(result.timings.get("total_s", 0.0)), **_result_fields(result)}
    from engine.calibration import calibration_version

    out["calibration"] = calibration_version(instance)  # the version solve --calibration applied, if any
    _record(store, out, verdict, action, "inline", verdict.user)
    return run_id


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
        return {"run_id": self.run_id, "matches": self.matches, "input_differences": self.input_differences,
                "recorded": self.recorded, "reproduced": self.reproduced,
                "kpi_differences": {k: list(v) for k, v in self.kpi_differences.items()}}


def _short(v: Any) -> str:
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
           "run_seed", "run_sweep", "sweep_spec_from_dict"]


# ---------------------------------------------------------------------------------------------------
# Command-line bodies (``twinplan sweep`` / ``twinplan reproduce``; registered in engine/cli.py)
# ---------------------------------------------------------------------------------------------------
