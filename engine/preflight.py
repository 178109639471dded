"""Check everything a solve needs, in one pass, before any output exists or any solver starts.

:func:`preflight` gathers every problem it can find rather than stopping at the first, each located
(``FILE:ROW:COLUMN: message`` for instance files, ``FILE: key: message`` for YAML files, ``--flag: message`` for
command-line arguments), and raises :class:`PreflightFailed` holding them all. It checks

- the command-line arguments (solver known and installed, time limit, gap, replications, seed);
- the instance (every table and ``instance.yaml``, with the declared bounds of :mod:`instances.schema`) and the
  calibration version when one is asked for;
- the scenario and its baseline: every key and value, the ``solver:`` settings, the ``options:`` against the
  decision's option types, site ids and periods they name, the modifications applied to the instance (unknown
  sites, lanes, zones) and the numbers that result (a multiplier that pushes demand past the schema's bounds);
- names: the scenario and instance names become file names, so they may not hold path separators or ``..``;
- the governance policy (readable, valid) and its verdict for the scenario *and* its baseline;
- the run store (a DuckDB file or a new file in a writable folder, not ``:memory:``; an existing store readable
  and its audit trail still ending at its checkpoint);
- the output folder (not an existing file, in a writable folder, names within the file system's limits).

A refusal by the policy is audited (when the store is usable) and gives exit code 5; any other finding gives 2.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT, EXIT_FORBIDDEN = 2, 5

SAFE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+=@ -]{0,99}$")
"""What a scenario or instance name may be: it becomes part of a file name (``runs/INSTANCE-SCENARIO``)."""

MAX_REPLICATIONS = 10_000
"""Most simulator replications a solve may ask for."""


class PreflightFailed(Exception):
    """The checks before a solve found problems; ``findings`` lists every one, ``exit_code`` is 2 or 5."""

    def __init__(self, findings: list[str], exit_code: int = EXIT_BAD_INPUT) -> None:
        self.findings = list(findings)
        self.exit_code = exit_code
        super().__init__("\n".join(self.findings))


@dataclass
class Checked:
    """What a solve may rely on once :func:`preflight` passed."""

    instance_path: Path
    instance: Any
    scenario: Any
    baseline: Any
    verdict: Any
    baseline_verdict: Any
    policy: Any
    user: str
    store: Any
    out_dir: Path
    warnings: list[str] = field(default_factory=list)


def check_name(what: str, name: str, source: str) -> str | None:
    """A finding when ``name`` cannot safely become part of a file name (None when it can)."""
    if not isinstance(name, str) or not SAFE_NAME.match(name) or ".." in name:
        return (f"{source}: name: {name!r} cannot name a run folder: a {what} name is 1 to 100 letters, digits "
                "and _ . + = @ - or spaces, not starting with a dot, without path separators or '..'")
    return None


def check_arguments(*, solver: str | None, time_limit: Any, gap: Any, replications: Any, seed: Any) -> list[str]:
    """Findings about the command-line arguments of ``twinplan solve``."""
    out = []
    if solver is not None:
        problem = check_solver_name(solver)
        if problem:
            out.append(f"--solver: {problem}")
    if time_limit is not None and not _positive_number(time_limit):
        out.append(f"--time-limit: must be a number of seconds > 0, got {time_limit!r}")
    if gap is not None and not (_number(gap) and 0 <= gap <= 1):
        out.append(f"--gap: must be a relative gap from 0 to 1, got {gap!r}")
    if not (_whole(replications) and 1 <= replications <= MAX_REPLICATIONS):
        out.append(f"--replications: must be a whole number from 1 to {MAX_REPLICATIONS}, got {replications!r}")
    if not (_whole(seed) and 0 <= seed < 2**32):
        out.append(f"--seed: must be a whole number from 0 to {2**32 - 1}, got {seed!r}")
    return out


def check_solver_name(name: Any) -> str | None:
    """Why ``name`` is no usable solver (unknown, or known but not installed), else None."""
    import solvers

    if not isinstance(name, str):
        return f"must be a solver name, got {name!r}"
    if name not in solvers.registered():
        return f"unknown solver {name!r} (available: {solvers.available()})"
    if name not in solvers.available() and name != "ortools":
        return f"solver {name!r} is not installed here (available: {solvers.available()})"
    return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _positive_number(v: Any) -> bool:
    return _number(v) and v > 0


def _whole(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_applied(scenario: Any, instance: Any) -> list[str]:
    """Apply the scenario to the instance (unknown sites, lanes, zones are found here) and check that every
    number of the result is still within the schema's declared bounds."""
    import numpy as np

    from engine.scenario import ScenarioError, apply_scenario
    from instances.schema import NUMERIC_LIMIT, TABLES

    try:
        applied = apply_scenario(instance, scenario)
    except ScenarioError as exc:
        return [str(exc)]
    except (ValueError, TypeError, KeyError) as exc:
        return [f"{scenario.source}: modifications: cannot be applied: {exc}"]
    out = []
    for key, v in sorted((applied.meta.get("defaults") or {}).items()):
        if _number(v) and abs(v) > NUMERIC_LIMIT or isinstance(v, float) and not math.isfinite(v):
            out.append(f"{scenario.source}: modifications: make the instance default {key} {v:g}, above the "
                       f"bound {NUMERIC_LIMIT:g}")
    for key in ("capex_budget", "max_distance_km"):
        v = (applied.meta.get("scenario") or {}).get(key)
        if isinstance(v, float) and (not math.isfinite(v) or v > NUMERIC_LIMIT):
            out.append(f"{scenario.source}: modifications: {key} {v:g} is above the bound {NUMERIC_LIMIT:g}")
    for name, schema in TABLES.items():
        df = applied.tables.get(name)
        if df is None or df.empty:
            continue
        for col in schema.columns:
            if col.dtype not in ("float", "int") or col.max is None or col.name not in df:
                continue
            values = np.asarray(df[col.name], dtype=float)
            bad = ~np.isnan(values) & ((values > col.max) | np.isinf(values))
            if bad.any():
                worst = float(np.nanmax(np.where(bad, values, np.nan)))
                out.append(f"{scenario.source}: modifications: make {schema.file_name} column {col.name} reach "
                           f"{worst:g}, above its bound {col.max:g} ({int(bad.sum())} row(s))")
    return out


def check_scenario(scenario: Any, instance: Any) -> list[str]:
    """Every check of one scenario against an instance (None: the instance is invalid; checks that need it skip)."""
    out = []
    problem = check_name("scenario", scenario.name, scenario.source)
    if problem:
        out.append(problem)
    # keys, types and bounds of ``options:`` and ``solver:`` were checked when the scenario was loaded (its
    # pydantic model, every finding at once); references to the instance are checked by apply_scenario
    # (Scenario.check_against) inside check_applied
    if instance is not None:
        out += check_applied(scenario, instance)
    return out


def check_store(store_arg: str | None) -> tuple[Any, list[str]]:
    """The run store (not yet created when absent) and findings: not ``:memory:``, a DuckDB file, readable,
    its audit trail still ending at its checkpoint; a new store's folder writable."""
    from engine.store import DEFAULT_STORE, RunStore, StoreError, StoreLocked, is_duckdb_file

    raw = store_arg or os.environ.get("TWINPLAN_STORE") or DEFAULT_STORE
    label = f"--store {raw}" if store_arg else f"store {raw}"
    try:
        store = RunStore(raw)
    except StoreError as exc:
        return None, [f"{label}: {exc}"]
    p = store.path
    if len(os.fsencode(p.name)) > 200:
        return None, [f"{label}: the file name is {len(os.fsencode(p.name))} bytes long (the limit is 200 here)"]
    if p.exists():
        if p.is_dir():
            return None, [f"{label}: is a folder, not a DuckDB store file"]
        if p.stat().st_size and not is_duckdb_file(p):
            return None, [f"{label}: is not a DuckDB database file (a store must be a .duckdb file twinplan "
                          "created; refusing to write into another kind of file)"]
        if not os.access(p, os.R_OK | os.W_OK):
            return None, [f"{label}: the file is not readable and writable by this user"]
        if p.stat().st_size:
            try:
                reader = RunStore(p, read_only=True)
                reader.schema_version()
                problem = reader.audit_head_problem()
            except (StoreError, StoreLocked) as exc:
                return None, [f"{label}: {exc}"]
            if problem:
                return None, [f"{label}: {problem}"]
    else:
        parent = p.parent if str(p.parent) else Path(".")
        if not parent.is_dir():
            return None, [f"{label}: folder {parent} does not exist"]
        if not os.access(parent, os.W_OK | os.X_OK):
            return None, [f"{label}: folder {parent} is not writable (the store cannot be created)"]
    if store.audit_dir.exists() and not os.access(store.audit_dir, os.W_OK | os.X_OK):
        return None, [f"{label}: the audit folder {store.audit_dir} is not writable"]
    return store, []


def default_out_dir(instance_name: str, scenario_name: str | None) -> Path:
    """``runs/INSTANCE-SCENARIO`` (names already checked by :func:`check_name`)."""
    return Path("runs") / f"{instance_name}-{scenario_name or 'base'}"


def preflight(instance_arg: str, scenario_arg: str | None, *, solver: str | None = "highs",
              time_limit: Any = None, gap: Any = None, out: str | None = None, replications: Any = 10,
              seed: Any = 0, with_baseline: bool = True, as_user: str | None = None, policy: str | None = None,
              store: str | None = None, calibration: str | None = None) -> Checked:
    """Check every input of a solve; returns what the solve needs, or raises :class:`PreflightFailed` with every
    finding. Creates nothing (no output folder, no store file); a policy refusal is appended to the audit trail
    of a usable store."""
    from engine.atomic import check_output_path
    from engine.governance import PolicyError, audit_row, authorize, current_user, find_policy
    from engine.scenario import ScenarioError, load_scenario
    from instances.instance import resolve_instance_path, validate_instance
    from instances.validation import ValidationReport

    findings = check_arguments(solver=solver, time_limit=time_limit, gap=gap, replications=replications, seed=seed)
    path = Path(instance_arg)
    try:
        path = resolve_instance_path(instance_arg)
        inst, report = validate_instance(path)
        findings += [f"{path}/{f}" if path.is_dir() else str(f) for f in report.errors]
    except OSError as exc:
        inst, report = None, ValidationReport()
        findings.append(f"{path}: {exc.strerror or exc}")
    if inst is not None:
        problem = check_name("instance", inst.name, f"{path}/instance.yaml")
        if problem:
            findings.append(problem)
        if calibration:
            from engine.calibration import apply_calibration

            try:
                inst = apply_calibration(inst, calibration, folder=path)
            except (ValueError, OSError, KeyError) as exc:
                findings.append(f"--calibration: {exc}")
    scenario = baseline = None
    if scenario_arg:
        try:
            scenario = load_scenario(scenario_arg, path)
        except ScenarioError as exc:
            findings.append(str(exc))
        except OSError as exc:
            findings.append(f"--scenario {scenario_arg}: {exc.strerror or exc}")
    if scenario is not None:
        findings += check_scenario(scenario, inst)
        if with_baseline and scenario.baseline and scenario.baseline != scenario.name:
            try:
                baseline = load_scenario(scenario.baseline, path)
            except (ScenarioError, OSError) as exc:
                findings.append(f"{scenario.source}: baseline: {getattr(exc, 'strerror', None) or exc}")
            if baseline is not None:
                findings += check_scenario(baseline, inst)
    try:
        pol = find_policy(policy)
    except PolicyError as exc:
        pol = None
        findings.append(str(exc))
    try:
        run_store, store_findings = check_store(store)
    except OSError as exc:
        run_store, store_findings = None, [f"--store {store}: {exc.strerror or exc}"]
    findings += store_findings
    name = inst.name if inst is not None else Path(path).name
    out_dir = Path(out) if out else default_out_dir(name, scenario.name if scenario else None)
    problem = check_output_path(out_dir)
    if problem:
        findings.append(f"--out {out_dir}: {problem.split(': ', 1)[-1]}" if out else problem)
    user = current_user(as_user)
    verdict = base_verdict = None
    refusals = []
    if pol is not None and inst is not None:
        verdict = authorize(pol, user, scenario, inst.name)
        if not verdict.allowed:
            refusals.append((verdict, scenario))
        if baseline is not None:
            base_verdict = authorize(pol, user, baseline, inst.name)
            if not base_verdict.allowed:
                refusals.append((base_verdict, baseline))
    if findings:
        findings += [f"refused: {v.message.removeprefix('refused: ')}"
                     + (" (the baseline)" if sc is baseline and sc is not None else "") for v, sc in refusals]
        raise PreflightFailed(findings, EXIT_BAD_INPUT)
    if refusals:
        if run_store is not None:
            run_store.append_audit(*(audit_row(v, "solve", getattr(sc, "name", None), status="refused")
                                     for v, sc in refusals))
        raise PreflightFailed([f"{v.message}" + (" (the baseline)" if sc is baseline and sc is not None else "")
                               for v, sc in refusals], EXIT_FORBIDDEN)
    return Checked(instance_path=path, instance=inst, scenario=scenario, baseline=baseline, verdict=verdict,
                   baseline_verdict=base_verdict, policy=pol, user=user, store=run_store, out_dir=out_dir,
                   warnings=[str(f) for f in report.warnings])


__all__ = ["Checked", "PreflightFailed", "check_arguments", "check_name", "check_scenario",
           "check_solver_name", "check_store", "default_out_dir", "preflight"]
