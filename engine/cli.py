"""The ``twinplan`` command line.

Exit codes: 0 ok, 1 unexpected internal error (also: an audit trail that fails verification, a locked store, an
I/O fault of the machine such as a full disk), 2 bad input (invalid instance, scenario, arguments, paths or store
file), 3 infeasible, 4 no solution within the limit, 5 refused by the governance policy, 6 plan not executable (the
final plan breaks an SLA in the hour-by-hour simulation; the summary's first line and ``--json``'s
``"executable": false`` and ``answer.breaches`` say where, when and by how much), 130 interrupted, 141 the reader
of the output went away (a closed pipe). No error reaches the user as a traceback but a genuine bug.

Each subcommand lives in one ``cmd_*`` function registered in :data:`COMMANDS` by :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

from instances.plain import to_plain
from instances.validation import did_you_mean

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION, EXIT_FORBIDDEN = 0, 1, 2, 3, 4, 5
EXIT_NOT_EXECUTABLE = 6
BASELINE_SHARE = 0.3
"""Share of ``--time-limit`` that a scenario's solve leaves for its baseline's (the limit covers the command)."""


def _print_summary(summary: dict, out=None) -> None:
    out = out or sys.stdout
    print(f"instance {summary['name']} ({summary['currency']})", file=out)
    kinds = ", ".join(f"{n} {k}" for k, n in summary["sites_by_kind_status"].items())
    print(f"  sites: {kinds}", file=out)
    print(f"  zones: {summary['zones']}  products: {summary['products']}  periods: {summary['periods']}"
          f"  lanes: {summary['lanes']}", file=out)
    print(f"  total demand: {summary['total_demand']:,.0f} units", file=out)
    caps = "  ".join(f"{st} {v:,.0f}" for st, v in summary["capacity_units_per_day"].items())
    print(f"  capacity (units/day): {caps}", file=out)


def cmd_validate(args: argparse.Namespace) -> int:
    """Validate an instance folder: errors (exit 2) or a summary (exit 0)."""
    from instances.instance import resolve_instance_path, validate_instance

    inst, report = validate_instance(resolve_instance_path(args.path))
    for f in report.errors:
        print(f"error: {f}", file=sys.stderr)
    for f in report.warnings:
        print(f"warning: {f}", file=sys.stderr)
    if inst is None:
        print(f"{len(report.errors)} error(s), {len(report.warnings)} warning(s)", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        print(json.dumps({**inst.summary(), "warnings": [str(f) for f in report.warnings]}))
    else:
        _print_summary(inst.summary())
    return EXIT_OK


def cmd_generate(args: argparse.Namespace) -> int:
    """Generate a preset or a synthetic instance into a folder."""
    from instances.generator import PRESETS, generate

    if args.preset is None and args.sites is None:
        print("error: give --preset NAME or --sites/--zones/--products/--periods", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.preset is not None and args.preset not in PRESETS:
        print(f"error: unknown preset {args.preset!r}; {did_you_mean(args.preset, PRESETS)}choose one of "
              f"{sorted(PRESETS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    from engine.atomic import atomic_folder, check_output_path

    replaceable = INSTANCE_MARKERS if args.force else ()  # --force: an earlier instance folder, whole
    why = check_output_path(args.out, replaceable, "an instance folder")
    if why:  # before generating: a large synthetic instance takes a while
        print(f"error: {why}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.preset is not None:
        inst = generate(args.preset, seed=args.seed)
    else:
        inst = generate("synthetic", seed=args.seed, sites=args.sites, zones=args.zones or 100,
                        products=args.products or 10, periods=args.periods or 4)
    with _writing(args.out, "the instance folder"), atomic_folder(args.out, replaceable, "an instance folder") as work:
        inst.save(work, fmt=args.format)  # whole or not at all
    print(f"wrote {inst.name} to {args.out}")
    return EXIT_OK


INSTANCE_MARKERS = ("instance.yaml",)
"""The file that marks a folder as an instance folder, which ``generate --force`` may replace whole."""


@contextlib.contextmanager
def _writing(path, what: str):
    """Name ``path`` in an I/O error that names no file (a write that failed on an open file, e.g. disk full)."""
    try:
        yield
    except OSError as exc:
        if exc.filename is not None:
            raise
        raise OSError(exc.errno, f"{exc.strerror or exc} (while writing {what})", str(path)) from exc


_T0 = time.monotonic()
"""When the command started: progress lines show the seconds elapsed since."""


def _progress(msg: str) -> None:
    """A progress line on stderr (never stdout, so that ``--json`` output stays clean), with elapsed time."""
    print(f"[twinplan {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def _solver_name(value: str) -> str:
    """argparse type of ``--solver``: a registered solver name (checked before any work)."""
    from solvers.backends.base import registered

    names = sorted(registered())
    if value.lower() not in names:
        raise argparse.ArgumentTypeError(f"unknown solver {value!r}; {did_you_mean(value.lower(), names)}"
                                         f"choose from {', '.join(names)}")
    return value.lower()


_MIP_LINE = re.compile(r"(?P<bound>[-+]?(?:\d[\d.eE+-]*|inf))\s+(?P<best>[-+]?(?:\d[\d.eE+-]*|inf))\s+"
                       r"(?P<gap>\d+(?:\.\d+)?%|Large)\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d.]+s\s*$")
"""A HiGHS branch-and-bound progress line: ... BestBound BestSol Gap | Cuts InLp Confl. | LpIters Time."""


def _value(text: str, scale: float = 1.0, offset: float = 0.0) -> float | None:
    """A log's objective value in the caller's units (divided by the solver's scale, plus the caller's constant);
    None when it is not a number."""
    try:
        return float(text) / scale + offset
    except ValueError:
        return None


def _num(v: float | None, text: str = "") -> str:
    if v is None:
        return text
    return f"{v:,.0f}" if abs(v) >= 100 and v == v and abs(v) != float("inf") else f"{v:.4g}"


class SolveLog:
    """The solver log written to a file, and the MIP gap reported while solving (at most every ``every`` s).

    The progress line shows what the plan will report: the log's objective values divided by the scale the
    solver saw (:data:`solvers.api.SCALE_NOTE`) plus any constant the formulation keeps out of the model
    (:data:`solvers.api.OFFSET_NOTE`, network design's closing costs), and the gap recomputed from them as the
    plan's gap is: (best - bound) / |best|.

    Passed as the ``log`` callable of :func:`solvers.solve` (through :func:`engine.pipeline.plan`)."""

    def __init__(self, path: Path, progress: Callable[[str], None] | None, every: float = 5.0) -> None:
        self.path, self.progress, self.every = path, progress, every
        self._last = -1e9
        self.gap: str | None = None
        self.scale = 1.0  # the solver sees the objective times this (solvers.api.SCALE_NOTE)
        self.offset = 0.0  # the caller adds this to the model's objective (solvers.api.OFFSET_NOTE)

    def __call__(self, text: str) -> None:
        from solvers.api import OFFSET_NOTE, SCALE_NOTE

        with self.path.open("a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        for line in text.splitlines():
            if line.startswith(SCALE_NOTE):  # each solve starts with it: a new scale, no constant unless noted
                self.scale, self.offset = float(line[len(SCALE_NOTE):].split()[0]), 0.0
                continue
            if line.startswith(OFFSET_NOTE):
                self.offset = float(line[len(OFFSET_NOTE):].split()[0])
                continue
            m = _MIP_LINE.search(line)
            if m is None:
                continue
            best, bound = (_value(m[k], self.scale, self.offset) for k in ("best", "bound"))
            gap = m["gap"]
            if best is not None and bound is not None and all(abs(v) < float("inf") for v in (best, bound)):
                gap = f"{max(0.0, best - bound) / max(abs(best), 1e-9):.2%}"
            self.gap = gap
            now = time.monotonic()
            if self.progress is not None and now - self._last >= self.every:
                self._last = now
                self.progress(f"solving: gap {gap} (best {_num(best, m['best'])}, bound {_num(bound, m['bound'])})")


def _load_inputs(instance_arg: str, scenario_arg: str | None, calibration: str | None = None):
    """Instance (with a calibration version applied when asked) and scenario from CLI arguments."""
    from engine.scenario import load_scenario
    from instances.instance import load_instance, resolve_instance_path

    path = resolve_instance_path(instance_arg)
    # the scenario first: a misspelt name is refused (with a "did you mean") before the instance is read
    scenario = load_scenario(scenario_arg, path) if scenario_arg else None
    inst = load_instance(path)
    if calibration:
        from engine.calibration import apply_calibration

        inst = apply_calibration(inst, calibration, folder=path)
    return path, inst, scenario


HOLD_AFTER_PUBLISH_ENV = "TWINPLAN_TEST_HOLD_AFTER_PUBLISH"
"""Test hook: seconds ``twinplan solve`` waits between publishing its run folder and recording the runs finished,
so that a test can kill the process in that window (unset in normal use)."""


def run_solve(instance_arg: str, scenario_arg: str | None, *, solver: str = "highs", time_limit: float | None = None,
              gap: float | None = None, out: str | None = None, replications: int = 10, seed: int = 0,
              with_baseline: bool = True, quiet: bool = False, as_user: str | None = None,
              policy: str | None = None, store: str | None = None, calibration: str | None = None,
              checked=None):
    """Solve a scenario (and its baseline) through the full loop; write everything to ``out``.

    Every input is checked first (:func:`engine.preflight.preflight`, unless ``checked`` holds its result):
    instance, scenario and baseline, arguments, policy for both runs, store and output path; a problem raises
    :class:`engine.preflight.PreflightFailed` before anything is written or solved. Then the run is recorded
    ``running`` in the store; the run folder is written into a temporary sibling; the runs (scenario and
    baseline) are recorded ``pending`` with their results; the folder is renamed onto ``out``
    (:func:`engine.atomic.atomic_folder`); and the runs are marked ``finished`` with their audit rows. A solve
    that fails (exit 1) or is interrupted (130) leaves no folder and its run ``failed`` / ``interrupted`` with the
    reason and an audit row; a process killed outright leaves a ``running`` or ``pending`` run that the next
    opening of the store settles (:meth:`engine.store.RunStore.reconcile`).
    """
    import shutil

    from engine.atomic import atomic_folder
    from engine.pipeline import MAX_ROUNDS
    from engine.preflight import preflight
    from engine.store import RUN_RUNNING, utcnow
    from engine.sweep import new_run_id, record_plan_result, solve_run_row

    if checked is None:
        checked = preflight(instance_arg, scenario_arg, solver=solver, time_limit=time_limit, gap=gap, out=out,
                            replications=replications, seed=seed, with_baseline=with_baseline, as_user=as_user,
                            policy=policy, store=store, calibration=calibration)
    path, inst, scenario, base_sc = checked.instance_path, checked.instance, checked.scenario, checked.baseline
    run_store, user, out_dir = checked.store, checked.user, checked.out_dir
    say = (lambda m: None) if quiet else _progress
    solver_options = {"solver": solver, "time_limit": time_limit, "mip_gap": gap, "threads": None,
                      "max_rounds": MAX_ROUNDS, "replications": replications, "simulate": True}
    run_id = new_run_id(inst, scenario, solver_options, seed)
    base_run_id = run_id + "-baseline"
    started, t0 = utcnow(), time.monotonic()
    row = solve_run_row(instance=inst, instance_path=path, scenario=scenario, solver_options=solver_options,
                        seed=seed, verdict=checked.verdict, run_id=run_id, out_dir=out_dir)
    from engine.calibration import calibration_version

    row["calibration"] = calibration_version(inst)
    run_store.record_run({**row, "status": RUN_RUNNING})  # from now on every ending of this run is recorded
    for note in run_store.reconciled:
        print(f"note: store {run_store.path}: {note}", file=sys.stderr)
    staged: list[tuple[str, dict]] = []

    def stage(result, base_result, base_used) -> None:
        """Inside the complete temporary folder, just before its rename: the runs and their results, pending."""
        common = {"instance": inst, "instance_path": path, "solver_options": solver_options, "seed": seed,
                  "out_dir": out_dir, "stage": True}
        staged.append(record_plan_result(result, run_store, scenario=scenario, verdict=checked.verdict,
                                         run_id=run_id, started_at=started, **common))
        if base_result is not None:
            staged.append(record_plan_result(base_result, run_store, scenario=base_used, run_id=base_run_id,
                                             verdict=checked.baseline_verdict or checked.verdict,
                                             started_at=started, **common))

    published = False
    try:
        result, base_result, summary, _ = _solve_into(
            atomic_folder(out_dir), inst, scenario, base_sc, run_id=run_id, solver=solver, time_limit=time_limit,
            gap=gap, replications=replications, seed=seed, solver_options=solver_options, run_store=run_store,
            user=user, say=say, instance_path=path, with_baseline=with_baseline, base_run_id=base_run_id,
            before_publish=stage)
        published = True
        hold = os.environ.get(HOLD_AFTER_PUBLISH_ENV)
        if hold:
            time.sleep(float(hold))
        # the folder is complete and in place: only now does the store call the runs finished
        run_store.finish_runs([rid for rid, _ in staged], [audit for _, audit in staged])
    except BaseException as exc:
        if published:
            shutil.rmtree(out_dir, ignore_errors=True)  # a run the store does not hold finished leaves no folder
        err = exc
        if isinstance(exc, OSError) and exc.filename is None and not published:
            # a write that failed on an open file (disk full): name the run folder
            err = OSError(exc.errno, f"{exc.strerror or exc} (while writing the run folder)", str(out_dir))
        _record_failed_run(run_store, row, err, checked.verdict, time.monotonic() - t0)
        if err is exc:
            raise
        raise err from exc
    say(f"recorded as {run_id} in {run_store.path} (user {user})")
    return result, base_result, summary, out_dir


def _record_failed_run(run_store, row: dict, exc: BaseException, verdict, seconds: float) -> None:
    """Record a solve that ended by an exception: ``interrupted`` (exit 130) or ``failed`` (exit 1 or 2), with
    the reason and an audit row. Best effort: when the store cannot take it either (disk full, locked), a warning
    says so and the next opening of the store settles the run (:meth:`engine.store.RunStore.reconcile`)."""
    from engine.store import RUN_FAILED, RUN_INTERRUPTED, utcnow
    from engine.sweep import run_audit_row

    code, message = classify_error(exc)
    status = RUN_INTERRUPTED if code == 130 else RUN_FAILED
    outcome = {**row, "status": status, "exit_code": code, "reason": message[:2000],
               "error": f"{type(exc).__name__}: {exc}"[:2000], "finished_at": utcnow(), "wall_seconds": seconds}
    try:
        run_store.record_run(outcome, audit_row=run_audit_row(outcome, verdict, "plan"))
    except Exception as err:  # noqa: BLE001 - the run's own error is the one to report
        print(f"warning: run {row['run_id']} could not be recorded as {status} in store {run_store.path}: {err}",
              file=sys.stderr)


def command_time_limit(time_limit: float | None, scenario) -> float | None:
    """Seconds the whole ``twinplan solve`` command may take: ``--time-limit`` when given, else the scenario's own
    ``solver.time_limit`` (None: no limit). Either covers every solve, repair round, check and simulation of the
    scenario and of its baseline, not each solve."""
    if time_limit is not None:
        return float(time_limit)
    own = dict(scenario.solver).get("time_limit") if scenario is not None else None
    return None if own is None else float(own)


def _solve_into(folder, inst, scenario, base_sc, *, run_id: str, solver: str, time_limit, gap, replications: int,
                seed: int, solver_options: dict, run_store, user: str, say, instance_path=None,
                with_baseline: bool = True, base_run_id: str | None = None, before_publish=None):
    """Solve the scenario (and its like-for-like baseline), answer its question and write the whole run folder
    into ``folder`` (an atomic folder); ``before_publish(result, baseline result, baseline scenario)`` runs when
    the folder is complete, before it is published. Returns (result, baseline result, summary, baseline
    scenario used)."""
    from engine.answer import answer_for_run, answer_text, like_for_like_baseline
    from engine.hashing import input_hashes
    from engine.kpi import executive_summary, kpi_deltas
    from engine.pipeline import plan
    from engine.scenario import load_scenario

    def load(name: str):
        return base_sc if base_sc is not None and base_sc.name == name else load_scenario(name, instance_path)

    name = scenario.name if scenario else "base"
    base_result = None
    like = like_for_like_baseline(inst, scenario, load) if with_baseline else None
    with folder as work:
        log_file = work / "solver.log"
        log_file.write_text("")
        solver_log = SolveLog(log_file, say)
        say(f"solving {inst.name} / {name}")
        # the limit covers the whole command: the scenario's rounds, then its baseline's, then the answer's own
        # solves, each getting what is left (the scenario leaves BASELINE_SHARE of the limit to its baseline);
        # without --time-limit, the scenario's own solver.time_limit is that limit
        time_limit = command_time_limit(time_limit, scenario)
        end = None if time_limit is None else time.perf_counter() + float(time_limit)

        def left(keep: float = 0.0) -> float | None:
            return None if end is None else max(1.0, end - time.perf_counter() - keep * float(time_limit))

        result = plan(inst, scenario, solver=solver, time_limit=left(BASELINE_SHARE if like is not None else 0.0),
                      mip_gap=gap, replications=replications, seed=seed, log=solver_log, progress=say)
        if like is not None:
            base_inst, base_sc, base_rounds = like
            say(f"solving baseline {base_sc.name}")
            base_result = plan(base_inst, base_sc, solver=solver, time_limit=left(), mip_gap=gap,
                               replications=replications, seed=seed, log=solver_log, progress=say,
                               max_rounds=base_rounds)
        if result.plan.has_solution and result.decision in ("redistribution", "capacity"):
            say("answering: " + {"redistribution": "planning the same disruption without transfers",
                                 "capacity": "stress-testing the peak with and without the additions"}[result.decision])
        answer_for_run(result, base_result, out_dir=work, replications=replications, seed=seed,
                       solve_kw={"solver": solver, "time_limit": left(), "mip_gap": gap})
        if base_result is not None:
            base_result.save(work / "baseline")
        result.save(work)
        hashes = input_hashes(inst, scenario, solver_options, seed)
        summary_file = work / "result.json"
        from engine.calibration import calibration_summary

        calibration_key = calibration_summary(inst, findings=run_store.findings(instance=inst.name))
        summary_file.write_text(json.dumps(to_plain({**json.loads(summary_file.read_text()), "input_hashes": hashes,
                                                     "calibration": calibration_key}), indent=2))
        (work / "run.json").write_text(json.dumps({
            "run_id": run_id, "store": str(run_store.path), "user": user, "input_hash": hashes.get("input_hash"),
            "calibration_version": result.to_dict()["calibration_version"],
            **({"baseline_run_id": base_run_id} if base_result is not None and base_run_id else {})}))
        if not result.plan.has_solution:
            why = result.rounds[-1].get("diagnosis") if result.rounds else None
            summary = f"{name}: no plan ({result.status})"
            if why:
                from engine.answer import wrap_lines

                summary += "\nwhy:\n" + "\n".join(wrap_lines([f"  - {w}" for w in why]))
            (work / "summary.txt").write_text(summary + "\n")
        else:
            kpi_lines = executive_summary(result.kpis, base_result.kpis if base_result else None, inst.currency,
                                          name, base_result.scenario.get("name", "baseline") if base_result
                                          else "baseline")
            summary = answer_text(result.answer or {}) + "\n\n" + kpi_lines
            (work / "summary.txt").write_text(summary + "\n")
            if base_result is not None:
                (work / "deltas.json").write_text(json.dumps(to_plain(kpi_deltas(result.kpis, base_result.kpis)),
                                                             indent=2))
            try:
                from engine.report import write_report

                write_report(work, baseline_dir=(work / "baseline") if base_result else None)
            except ImportError:
                pass
        if before_publish is not None:
            before_publish(result, base_result, like[1] if like is not None else None)
    return result, base_result, summary, (like[1] if like is not None else None)


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve a scenario end to end: MILP, check, simulate, repair; write plan, KPIs and logs."""
    from engine.pipeline import exit_code
    from engine.preflight import preflight

    checked = preflight(args.instance, args.scenario, solver=args.solver, time_limit=args.time_limit, gap=args.gap,
                        out=args.out, replications=args.replications, seed=args.seed,
                        with_baseline=not args.no_baseline, as_user=args.as_user, policy=args.policy,
                        store=args.store, calibration=args.calibration)
    result, _, summary, out_dir = run_solve(args.instance, args.scenario, solver=args.solver,
                                            time_limit=args.time_limit, gap=args.gap, out=args.out,
                                            replications=args.replications, seed=args.seed,
                                            with_baseline=not args.no_baseline, quiet=args.quiet,
                                            as_user=args.as_user, policy=args.policy, store=args.store,
                                            calibration=args.calibration, checked=checked)
    if args.json:
        d = result.to_dict()
        print(json.dumps({"status": d["status"], "objective": d["objective"], "executable": d["executable"],
                          "answer": d.get("answer"), "kpis": d["kpis"], "simulation": d["simulation"],
                          "rounds": d["rounds"], "out": str(out_dir)}))
    else:
        print(summary)
        print(f"plan, KPIs and logs written to {out_dir}")
    return exit_code(result)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a saved plan hour by hour."""
    from engine.simulator import simulate
    from instances.instance import load_instance, resolve_instance_path
    from instances.plan import Plan

    inst = load_instance(resolve_instance_path(args.instance))
    plan_dir = Path(args.plan)
    if (plan_dir / "plan" / "plan.json").is_file():
        plan_dir = plan_dir / "plan"
    p = Plan.load(plan_dir)
    sim = simulate(inst, p, replications=args.replications, seed=args.seed)
    if args.json:
        print(json.dumps(to_plain(sim.to_dict())))
    else:
        print(sim.verdict.message)
        print(sim.site.to_string(index=False))
    return EXIT_OK if sim.verdict.feasible else EXIT_INFEASIBLE


def cmd_stress(args: argparse.Namespace) -> int:
    """Stress-test a scenario's plan: the demand multiplier at which each site and stage first fails."""
    from engine.atomic import atomic_file, check_output_file
    from engine.pipeline import plan
    from engine.stress import stress_test

    out_file = Path(args.out) / "stress.csv" if args.out else None
    why = check_output_file(out_file) if out_file is not None else None
    if why:  # before the solve and the stress simulations
        print(f"error: --out {why}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _, inst, scenario = _load_inputs(args.instance, args.scenario)
    result = plan(inst, scenario, solver=args.solver, time_limit=args.time_limit, simulate=False,
                  progress=None if args.quiet else _progress)
    if not result.plan.has_solution:
        print(f"error: no plan to stress-test (status {result.status})", file=sys.stderr)
        return EXIT_INFEASIBLE
    table = stress_test(result.instance, result.plan, seed=args.seed, target_half_width=args.target_half_width,
                        max_replications=args.max_replications)
    if out_file is not None:  # the report of a run folder shows it; an earlier stress.csv is replaced whole
        with _writing(out_file, "the failure points"), atomic_file(out_file) as tmp:
            table.to_csv(tmp, index=False)
    if args.json:
        print(json.dumps({"scenario": scenario.name if scenario else None,
                          "failure_points": json.loads(table.to_json(orient="records"))}))
    else:
        for msg in table["message"]:
            print(msg)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: consolidate two DCs on the bundled ``eu_fba`` and summarize against the baseline."""
    from instances.instance import bundled_instance_path, load_instance

    inst = load_instance(bundled_instance_path("eu_fba"))
    _print_summary(inst.summary())
    _, _, summary, out_dir = run_solve("eu_fba", "consolidate_two_dcs", time_limit=args.time_limit,
                                       out=args.out, replications=5)
    print()
    print(summary)
    print(f"plan, KPIs, report and logs written to {out_dir}")
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """Ingest WMS/WCS export folders through mapping files into a new instance folder."""
    from engine.ingest import IngestError, ingest

    try:
        result = ingest(args.mapping, args.exports, args.out, overwrite=args.force)
    except IngestError as exc:
        for f in exc.report.errors:
            print(f"error: {f}", file=sys.stderr)
        print(f"{len(exc.report.errors)} error(s); nothing written", file=sys.stderr)
        return EXIT_BAD_INPUT
    for f in result.report.warnings:
        print(f"warning: {f}", file=sys.stderr)
    _print_summary(result.instance.summary())
    print(f"wrote {result.instance.name} to {args.out}")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    """Fit efficiencies and congestion to actuals; write a calibration version beside the instance."""
    from engine.calibration import METRICS, calibrate

    cal = calibrate(args.instance, args.actuals, window=args.window, threshold=args.threshold,
                    write=not args.no_write, breakdowns=args.breakdowns, mttr_hours=args.mttr_hours,
                    variability=args.variability, absenteeism=args.absenteeism)
    if args.json:
        print(json.dumps(cal.to_dict()))
        return 0
    print(f"calibration {cal.version or '(not written)'}: {cal.n_days} days {cal.period[0]}..{cal.period[1]}")
    print("  relative error   before    after")
    for k in METRICS:
        print(f"  {k:<14} {cal.error_before[k]:8.1%} {cal.error_after[k]:8.1%}")
    print(f"  congestion coefficient: {cal.congestion:.3f}")
    if cal.effects.get("service_cv"):
        print(f"  service-time variability: CV {cal.effects['service_cv']:.3f} per operating hour")
    if cal.effects.get("mtbf_hours"):
        print(f"  breakdowns: MTBF {cal.effects['mtbf_hours']:.1f} operating hours, MTTR "
              f"{cal.effects['mttr_hours']:.1f} h")
    if len(cal.absenteeism):
        print(f"  absenteeism: {cal.effects['absenteeism']:.1%} of rostered hours over the network (pooled); per site:")
        for r in cal.absenteeism.itertuples(index=False):
            scatter = "" if r.dispersion < 2.0 else (f"; day-to-day scatter {r.dispersion:.1f}x the binomial model's "
                                                     "(absence comes in waves the simulator does not draw)")
            print(f"    {r.site_id}: {r.rate:.1%} +/- {1.96 * r.std_error:.1%} (95 %), {r.days} days, "
                  f"{r.shifts:,} shifts rostered{scatter}")
    print(cal.efficiency.round(3).to_string(index=False))
    for d in cal.drift.itertuples(index=False):
        if d.metric == "absence":
            print(f"drift: {d.site_id} absence {d.window_start}..{d.window_end}: calibrated {d.predicted:.1%}, now "
                  f"{d.actual:.1%} ({100 * (d.actual - d.predicted):+.1f} points); most likely absenteeism")
            continue
        print(f"drift: {d.site_id}/{d.stage} {d.metric} {d.window_start}..{d.window_end}: predicted "
              f"{d.predicted:,.0f}, actual {d.actual:,.0f} ({d.rel_error:+.1%}); most likely {d.parameter} "
              f"{d.current:.3f} -> {d.refit:.3f}", file=sys.stdout)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Fit on the earlier actuals, predict the held-out weeks; errors of the calibrated and the nominal twin."""
    from engine.calibration import run_backtest

    bt = run_backtest(args.instance, args.actuals, holdout_weeks=args.holdout_weeks, write=not args.no_write)
    if args.json:
        print(json.dumps(bt.to_dict()))
        return EXIT_OK
    print(f"backtest: fit on {bt.train[0]}..{bt.train[1]}, predict {bt.holdout[0]}..{bt.holdout[1]} "
          f"(congestion {bt.calibration.congestion:.3f})")
    absence = bt.calibration.absenteeism
    if len(absence):
        rates = ", ".join(f"{r.site_id} {r.rate:.1%} +/- {1.96 * r.std_error:.1%}" for r in absence.itertuples())
        print(f"  absenteeism fitted on the training weeks (95 %): {rates}")
    if bt.absenteeism_note:
        print(f"  {bt.absenteeism_note}")
    print("  error            nominal  calibrated")
    for m in bt.metrics:
        fmt = "{:10.1f} h" if m == "cycle_time_h" else "{:10.1%}  "
        print(f"  {m:<14}" + fmt.format(bt.overall[m]["nominal"]) + fmt.format(bt.overall[m]["calibrated"]))
    wide = bt.errors.pivot_table(index=["site_id", "stage"], columns="metric", values=["nominal", "calibrated"])
    wide.columns = [f"{m}_{k}" for k, m in wide.columns]
    cols = [f"{m}_{k}" for m in bt.metrics for k in ("nominal", "calibrated") if f"{m}_{k}" in wide.columns]
    print(wide[cols].round(3).to_string())
    print("the calibrated twin beats the nominal one" if bt.calibrated_wins
          else "the calibrated twin does NOT beat the nominal one on every metric")
    return EXIT_OK


def cmd_track(args: argparse.Namespace) -> int:
    """Compare what a recorded run predicted with actuals recorded after it; store the findings with the run."""
    from engine.calibration import track
    from engine.governance import current_user

    found = track(args.run_id, args.actuals, store=args.store, threshold=args.threshold,
                  write=not args.no_write, user=current_user(args.as_user))
    if args.json:
        print(json.dumps(json.loads(found.to_json(orient="records"))))
        return EXIT_OK
    flagged = found[found["flagged"]]
    for r in found.itertuples():
        what = (f"predicted {r.predicted_change:+.1%}, actual {r.actual_change:+.1%}"
                if r.predicted_change == r.predicted_change else
                f"predicted {r.predicted:,.0f}, actual {r.actual:,.0f}")
        line = f"{r.site_id}/{r.stage} {r.window_start}..{r.window_end}: {what} (gap {r.gap:+.1%})"
        if r.flagged:
            if r.parameter in ("efficiency", "congestion"):
                why = f" {r.current:.3f} -> {r.refit:.3f}"
            elif r.parameter == "absenteeism":
                why = (f" {r.current:.1%} assumed -> {r.refit:.1%} absent (attendance {1 - r.current:.1%} -> "
                       f"{1 - r.refit:.1%} of rostered hours)")
            else:
                why = f" (work offered {r.refit:,.0f} vs planned {r.current:,.0f})"
            line = f"FLAG {line}; most likely {r.parameter}{why}"
            if r.explained == r.explained:  # a ranked candidate: its share and the runners-up
                others = ", ".join(f"{c['parameter']} {c['explained']:.0%}" for c in r.candidates[1:])
                line += f"; explains {r.explained:.0%} of the error" + (f" (then {others})" if others else "")
        elif r.absence_observed == r.absence_observed and abs(r.absence_observed - r.absence_assumed) > 0.01:
            line += f"; absence {r.absence_assumed:.1%} assumed, {r.absence_observed:.1%} observed"
        print(line)
    print(f"{len(flagged)} of {len(found)} site/stage gaps beyond {args.threshold:.1%}"
          + ("" if args.no_write else f"; stored with run {args.run_id}"))
    if len(found) and found["absence_observed"].isna().all():
        print("absenteeism not considered: the actuals record no rostered_hours (the hours scheduled beside "
              "labor_hours, the hours worked)")
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    """Rollout status of every module (site x stage): not_calibrated, validated or drifted."""
    from engine.calibration import module_status
    from engine.store import RunStore
    from instances.instance import load_instance, resolve_instance_path

    inst = load_instance(resolve_instance_path(args.instance))
    store = RunStore(args.store)
    findings = store.findings(instance=inst.name) if store.path.exists() else None
    table = module_status(inst, tolerance=args.tolerance, findings=findings, version=args.version)
    if args.json:
        print(table.to_json(orient="records"))
    else:
        print(table.to_string(index=False))
    return EXIT_OK


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run or resume a what-if sweep (local process pool or Dask); runs go to the DuckDB run store."""
    import pandas as pd

    from engine.governance import PolicyRefused
    from engine.preflight import PreflightFailed, check_store
    from engine.store import StoreLocked
    from engine.sweep import run_sweep

    _, problems = check_store(args.store)  # before any run: a store that cannot take the runs and their audit
    if problems:
        raise PreflightFailed(problems)
    try:
        result = run_sweep(args.spec, executor=args.executor, workers=args.workers, scheduler=args.scheduler,
                           store=args.store, user=args.as_user, policy=args.policy, retry_failed=args.retry_failed,
                           progress=not args.no_progress, limit=args.limit)
    except PolicyRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return PolicyRefused.exit_code
    except StoreLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for note in result.store.reconciled:  # runs of killed solves this sweep's store settled on opening
        print(f"note: store {result.store.path}: {note}", file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict()))
        return 0
    print(f"sweep {result.sweep_id} ({result.name}): {result.total} runs - {result.finished} finished, "
          f"{result.failed} failed, {result.skipped} already in the store; {result.wall_seconds:.1f} s "
          f"with the {result.executor} executor; store {result.store.path}")
    df = result.runs()
    cols = [c for c in ("run_id", "name", "status", "solve_status", "objective", "total_cost", "service_level",
                        "wall_seconds", "error") if c in df.columns]
    with pd.option_context("display.width", 200, "display.max_colwidth", 60, "display.max_rows", 40):
        print(df[cols].head(40).to_string(index=False))
    return 0


def cmd_audit(args: argparse.Namespace) -> int:
    """List the append-only audit trail of the run store and verify it (exit 1, loudly, when it fails)."""
    import pandas as pd

    from engine.governance import parse_since
    from engine.store import RunStore, StoreError, is_duckdb_file

    store = RunStore(args.store, read_only=True)
    if not store.path.exists():
        print(f"error: {store.path}: no run store here", file=sys.stderr)
        return EXIT_BAD_INPUT
    if not is_duckdb_file(store.path):
        raise StoreError(f"{store.path}: not a DuckDB run store file")
    df = store.audit(since=parse_since(args.since) if args.since else None, user=args.user)
    if args.limit:
        df = df.tail(args.limit)
    if args.json:
        print(json.dumps(to_plain(df.drop(columns=["prev_hash", "row_hash", "row_mac"], errors="ignore")
                                  .to_dict("records"))))
    else:
        view = df[["seq", "time", "user_name", "action", "allowed", "rule", "instance", "scenario", "decision",
                   "run_id", "status", "objective", "input_hash"]].copy()
        view["time"] = view["time"].astype(str).str.slice(0, 19)
        view["input_hash"] = view["input_hash"].astype(str).str.slice(0, 12)
        with pd.option_context("display.width", 220, "display.max_rows", 500, "display.max_colwidth", 40):
            print(view.to_string(index=False) if len(view) else "(no audit rows)")
    if not args.json:  # plan-versus-outcome findings stored by `twinplan track`
        found = store.findings()
        if args.since or args.user:
            found = found[found["run_id"].isin(set(df["run_id"].dropna()))]
        flagged = found[found["flagged"].astype(bool)] if len(found) else found
        if len(flagged):
            print("\nplan versus outcome (twinplan track), flagged gaps:")
            cols = ["run_id", "site_id", "stage", "window_start", "window_end", "predicted_change", "actual_change",
                    "gap", "parameter", "current", "refit", "calibration"]
            with pd.option_context("display.width", 220, "display.max_rows", 200):
                print(flagged[cols].round(4).to_string(index=False))
    if args.no_verify:
        return EXIT_OK
    problems = store.verify_audit()
    unsealed = store.audit_unsealed_rows()
    if problems:
        for p in problems:
            print(f"audit: {p}", file=sys.stderr)
        print(f"AUDIT VERIFICATION FAILED: {len(problems)} problem(s) in the audit trail of {store.path}; the "
              "rows listed above cannot be trusted", file=sys.stderr)
        return EXIT_ERROR
    note = f" ({unsealed} early row(s) predate the seal: verified by their hash chain only)" if unsealed else ""
    n_runs = len(store.runs(with_kpis=False, with_params=False))
    runs_note = (f"{n_runs} run row(s) verified against their seals" if (store.schema_version() or 0) >= 5 else
                 f"{n_runs} run row(s) not sealed (store schema {store.schema_version()}: sealed when a twinplan of "
                 "schema 5 or later first writes to it)")
    print(f"audit chain intact: {len(store.audit())} row(s), chain, seals and checkpoint verified; {runs_note}{note}",
          file=sys.stderr if args.json else sys.stdout)
    return EXIT_OK


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Re-run a stored run from its recorded inputs; exit 0 when it matches, 1 when it does not."""
    from engine.governance import PolicyRefused
    from engine.preflight import PreflightFailed, check_store
    from engine.sweep import reproduce

    _, problems = check_store(args.store)
    if problems:
        raise PreflightFailed(problems)
    try:
        report = reproduce(args.run_id, store=args.store, user=args.as_user, policy=args.policy)
    except PolicyRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return PolicyRefused.exit_code
    if args.json:
        print(json.dumps(to_plain(report.to_dict())))
    else:
        print(report.message)
    return 0 if report.matches else 1


def cmd_report(args: argparse.Namespace) -> int:
    """Write the executive HTML report of a run folder (against a baseline run folder, if given)."""
    from engine.report import write_report

    with _writing(args.out or Path(args.run_dir) / "report.html", "the report"):
        path = write_report(args.run_dir, baseline_dir=args.baseline, out=args.out)
    print(f"report written to {path}")
    return EXIT_OK


def cmd_lsi(args: argparse.Namespace) -> int:
    """One day's Labour Stress Index per site and stage from a forecast CSV (see :mod:`engine.lsi`)."""
    from engine.lsi import labour_stress_index, lsi_text, read_forecast
    from instances.instance import load_instance, resolve_instance_path
    from instances.validation import InstanceValidationError

    inst = load_instance(resolve_instance_path(args.instance))
    try:
        forecast, day = read_forecast(args.forecast, inst, args.date)
    except InstanceValidationError as exc:
        for f in exc.report.errors:
            print(f"error: {f}", file=sys.stderr)
        return EXIT_BAD_INPUT
    result = labour_stress_index(inst, forecast, day)
    print(json.dumps(result.to_dict()) if args.json else lsi_text(result))
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def build_parser() -> argparse.ArgumentParser:
    """The ``twinplan`` argument parser: one sub-command per handler in :data:`COMMANDS`."""
    parser = argparse.ArgumentParser(prog="twinplan", description="Network-level digital twin of a DC network.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("validate", help="validate an instance folder")
    p.add_argument("path", help="instance folder or bundled instance name")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    COMMANDS["validate"] = cmd_validate

    p = sub.add_parser("generate", help="generate a bundled preset or a synthetic instance")
    p.add_argument("--preset", help="a bundled preset: tiny | eu_fba | us_west_port")
    p.add_argument("--sites", type=int, help="synthetic: number of candidate DC sites")
    p.add_argument("--zones", type=int, help="synthetic: number of demand zones (default 100)")
    p.add_argument("--products", type=int, help="synthetic: number of products (default 10)")
    p.add_argument("--periods", type=int, help="synthetic: number of periods (default 4)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the generator (default 7)")
    p.add_argument("--format", choices=["csv", "parquet"], default="csv", help="table file format (default csv)")
    p.add_argument("--out", required=True, help="output folder (new or empty; written whole or not at all)")
    p.add_argument("--force", action="store_true", help="replace an existing instance folder at --out, whole")
    COMMANDS["generate"] = cmd_generate

    p = sub.add_parser("demo", help="run the main job on the bundled eu_fba instance")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--time-limit", type=float, default=50.0,
                   help="seconds for the whole command: the scenario's and its baseline's solves, repair rounds, "
                        "checks and simulations (default 50)")
    COMMANDS["demo"] = cmd_demo

    p = sub.add_parser("solve", help="solve a scenario: optimize, check, simulate, repair")
    p.add_argument("instance", help="instance folder or bundled instance name")
    p.add_argument("--scenario", help="scenario name (in INSTANCE/scenarios) or YAML file")
    p.add_argument("--solver", default="highs", type=_solver_name,
                   help="MILP solver: highs (default), ortools, ... (checked before any work)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds for the whole command: every solve, repair round, check and simulation, the "
                        "baseline's included (default: the scenario's solver.time_limit)")
    p.add_argument("--gap", type=float, default=None,
                   help="relative MIP gap at which a solve stops, e.g. 0.01 (default: the scenario's)")
    p.add_argument("--out", default=None, help="output folder (default runs/INSTANCE-SCENARIO)")
    p.add_argument("--json", action="store_true",
                   help="print a JSON summary on stdout (progress still goes to stderr)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--replications", type=int, default=10,
                   help="simulation replications per round (default 10; fewer is faster, noisier)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default 0)")
    p.add_argument("--no-baseline", action="store_true", help="do not solve the scenario's baseline")
    p.add_argument("--as", dest="as_user", help="run as this user (default $TWINPLAN_USER or the login name)")
    p.add_argument("--policy", help="governance policy YAML (default $TWINPLAN_POLICY; none: open)")
    p.add_argument("--store", help="run store file (default $TWINPLAN_STORE or twinplan_runs.duckdb)")
    p.add_argument("--calibration", help="apply a calibration version of the instance (vNNNN or latest); "
                   "recorded with the run")
    COMMANDS["solve"] = cmd_solve

    p = sub.add_parser("simulate", help="simulate a saved plan hour by hour")
    p.add_argument("instance", help="instance folder or bundled instance name")
    p.add_argument("--plan", required=True, help="plan folder written by `twinplan solve`")
    p.add_argument("--replications", type=int, default=20, help="simulation replications (default 20)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the simulation (default 0)")
    p.add_argument("--json", action="store_true", help="print the simulation result as JSON")
    COMMANDS["simulate"] = cmd_simulate

    p = sub.add_parser("stress", help="demand multiplier at which each site and stage first fails")
    p.add_argument("instance", help="instance folder or bundled instance name")
    p.add_argument("--scenario", help="scenario name (in INSTANCE/scenarios) or YAML file")
    p.add_argument("--solver", default="highs", type=_solver_name, help="MILP solver: highs (default), ortools, ...")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds for the plan's solve, all its phases (default: the scenario's solver.time_limit); "
                        "the stress simulations after it are not limited")
    p.add_argument("--seed", type=int, default=0, help="random seed of the stress simulations (default 0)")
    p.add_argument("--json", action="store_true", help="print the failure points as JSON (progress on stderr)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--out", help="write the failure points to OUT/stress.csv (e.g. a run folder of `solve`; an "
                   "earlier stress.csv there is replaced whole)")
    p.add_argument("--target-half-width", type=float, default=0.02,
                   help="add replications until every failure point's 95 %% interval is this narrow")
    p.add_argument("--max-replications", type=int, default=320, help="cap on the replications")
    COMMANDS["stress"] = cmd_stress

    p = sub.add_parser("ingest", help="ingest WMS/WCS exports through mapping files into an instance")
    p.add_argument("exports", nargs="+", help="export folder(s)")
    p.add_argument("--mapping", action="append", required=True,
                   help="mapping YAML: once for all folders, or once per folder (in order)")
    p.add_argument("--out", required=True, help="instance folder to create")
    p.add_argument("--force", action="store_true", help="replace an existing --out once the new one is valid")
    COMMANDS["ingest"] = cmd_ingest

    p = sub.add_parser("calibrate", help="fit efficiencies and congestion to actuals; drift report")
    p.add_argument("instance", help="instance folder")
    p.add_argument("--actuals", help="actuals CSV (default: the instance's actuals.csv)")
    p.add_argument("--window", type=int, default=7, help="rolling window for drift (days)")
    p.add_argument("--threshold", type=float, default=0.05, help="drift threshold (relative error)")
    p.add_argument("--no-write", action="store_true", help="fit and report without writing a version")
    p.add_argument("--breakdowns", action="store_true", help="also fit the breakdown rate (MTBF) of the stages")
    p.add_argument("--mttr-hours", type=float, default=2.0, help="mean time to repair a breakdown (hours)")
    p.add_argument("--variability", action="store_true", help="also fit the service-time variability (CV)")
    p.add_argument("--absenteeism", action="store_true",
                   help="also fit each site's absence rate (needs the actuals' rostered_hours column)")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    COMMANDS["calibrate"] = cmd_calibrate

    p = sub.add_parser("backtest", help="fit on earlier actuals, predict held-out weeks, compare with the nominal twin")
    p.add_argument("instance", help="instance folder")
    p.add_argument("--actuals", help="actuals CSV (default: the instance's actuals.csv)")
    p.add_argument("--holdout-weeks", type=int, default=1, help="weeks at the end held out for prediction")
    p.add_argument("--no-write", action="store_true", help="do not write calibration/backtest.json")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    COMMANDS["backtest"] = cmd_backtest

    p = sub.add_parser("track", help="compare a recorded run's prediction with actuals recorded after it")
    p.add_argument("run_id", help="run id (or unique prefix) in the run store")
    p.add_argument("--actuals", required=True, help="actuals CSV recorded after the run")
    p.add_argument("--threshold", type=float, default=0.02, help="flag gaps beyond this (relative, e.g. 0.02)")
    p.add_argument("--store", help="run store (default: $TWINPLAN_STORE or ./twinplan_runs.duckdb)")
    p.add_argument("--as-user", help="user name recorded in the audit trail")
    p.add_argument("--no-write", action="store_true", help="report without storing the findings")
    p.add_argument("--json", action="store_true", help="print the findings as JSON")
    COMMANDS["track"] = cmd_track

    p = sub.add_parser("status", help="calibration rollout status of every site and stage")
    p.add_argument("instance", help="instance folder")
    p.add_argument("--tolerance", type=float, default=0.05, help="validated when the throughput error is within")
    p.add_argument("--store", help="run store with track findings")
    p.add_argument("--version", default="latest", help="calibration version to judge (default: latest)")
    p.add_argument("--json", action="store_true", help="print the module statuses as JSON")
    COMMANDS["status"] = cmd_status

    p = sub.add_parser("sweep", help="run or resume a what-if sweep (local processes or Dask)")
    p.add_argument("spec", help="sweep spec YAML")
    p.add_argument("--executor", choices=["local", "dask"], default="local",
                   help="local process pool (default) or a Dask cluster")
    p.add_argument("--scheduler", help="Dask scheduler address (default: start a LocalCluster)")
    p.add_argument("--workers", type=int, default=None, help="worker processes (default: CPU count)")
    p.add_argument("--store", help="run store file (default $TWINPLAN_STORE or twinplan_runs.duckdb)")
    p.add_argument("--as", dest="as_user", help="user to run as (default $TWINPLAN_USER or login name)")
    p.add_argument("--policy", help="governance policy YAML (default $TWINPLAN_POLICY; none: open)")
    p.add_argument("--retry-failed", action="store_true", help="re-run runs recorded as failed")
    p.add_argument("--limit", type=int, default=None, help="run only the first N variants")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    COMMANDS["sweep"] = cmd_sweep

    p = sub.add_parser("audit", help="list the audit trail of the run store")
    p.add_argument("--since", help="ISO date/time (UTC) or a duration back from now: 90m, 12h, 7d")
    p.add_argument("--user", help="only this user's rows")
    p.add_argument("--limit", type=int, default=None, help="only the last N rows")
    p.add_argument("--store", help="run store file (default $TWINPLAN_STORE or twinplan_runs.duckdb)")
    p.add_argument("--verify", action="store_true", help="verify the trail (the default; kept for scripts)")
    p.add_argument("--no-verify", action="store_true", help="only list, do not verify the trail")
    p.add_argument("--json", action="store_true", help="print the audit rows as JSON")
    COMMANDS["audit"] = cmd_audit

    p = sub.add_parser("reproduce", help="re-run a stored run and report whether the result matches")
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("--store", help="run store file (default $TWINPLAN_STORE or twinplan_runs.duckdb)")
    p.add_argument("--as", dest="as_user", help="user to run as (default $TWINPLAN_USER or login name)")
    p.add_argument("--policy", help="governance policy YAML (default $TWINPLAN_POLICY; none: open)")
    p.add_argument("--json", action="store_true", help="print the comparison as JSON")
    COMMANDS["reproduce"] = cmd_reproduce
    p = sub.add_parser("report", help="write the executive HTML report of a run folder")
    p.add_argument("run_dir", help="run folder written by `twinplan solve`")
    p.add_argument("--baseline", help="run folder to compare against (default RUN_DIR/baseline if present)")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html); an existing file is replaced "
                   "only when it is a twinplan report")
    COMMANDS["report"] = cmd_report

    p = sub.add_parser("lsi", help="one day's Labour Stress Index per site and stage from a forecast CSV")
    p.add_argument("instance", help="instance folder or bundled instance name")
    p.add_argument("--forecast", required=True, help="CSV: site_id, [date], inbound_units, outbound_units")
    p.add_argument("--date", help="the day (YYYY-MM-DD) when the file holds several")
    p.add_argument("--json", action="store_true", help="print the LSI per site and stage as JSON")
    COMMANDS["lsi"] = cmd_lsi
    return parser


EXIT_BROKEN_PIPE = 141
"""Exit code when the reader of our output went away (``twinplan audit | head -1``): 128 + SIGPIPE, as a
shell reports a process killed by SIGPIPE; nothing is printed."""

USER_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG, errno.EACCES,
                         errno.EPERM, errno.EROFS, errno.ELOOP, errno.EINVAL, errno.ENOTEMPTY})
"""File-system errors caused by a path the user gave (exit 2); any other (disk full, I/O error) exits 1."""


def _io_error_message(exc: OSError) -> str:
    """One line naming the path(s) and the reason, e.g. ``runs/x/plan.csv: No space left on device``."""
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    where = " -> ".join(paths) if paths else "file system"
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"{where}: {reason}"


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that Python's exit flush does not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    """Run one command; every error a user can cause or meet becomes one ``error:`` line and an exit code.

    Exit codes: 0 ok; 1 internal error, an audit trail that fails verification, a locked store, or an I/O fault
    of the machine (disk full, I/O error); 2 bad input (invalid instance, scenario, arguments, paths, store file);
    3 infeasible; 4 no solution within the limit; 5 refused by the policy; 6 plan not executable; 130 interrupted
    (Ctrl-C, or SIGTERM: both end the command the same orderly way, temporary outputs removed and the run
    recorded ``interrupted``); 141 output pipe closed.
    """
    global _T0
    _T0 = time.monotonic()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed usage and the error (2) or the help (0): an exit code
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    try:
        with _sigterm_interrupts():
            return _run(args)
    except KeyboardInterrupt:  # a signal landing outside the command's own handling (e.g. as it returns)
        return 130


@contextlib.contextmanager
def _sigterm_interrupts():
    """While the block runs (in the main thread), SIGTERM raises KeyboardInterrupt("SIGTERM") as Ctrl-C would, so
    that a terminated command cleans up and records itself instead of vanishing; the old handler comes back."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt("SIGTERM")

    old = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def _run(args: argparse.Namespace) -> int:
    """One parsed command, its errors turned into messages and exit codes (see :func:`main`)."""
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a clear message, not a traceback
        from engine.preflight import PreflightFailed

        if isinstance(exc, PreflightFailed):
            for f in exc.findings:
                print(f if f.startswith("refused: ") else f"error: {f}", file=sys.stderr)
            what = "refused by the policy" if exc.exit_code == EXIT_FORBIDDEN else "problem(s) found"
            print(f"{len(exc.findings)} {what} before any work started; nothing was written or solved",
                  file=sys.stderr)
            return exc.exit_code
        code, message = classify_error(exc)
        if code == EXIT_ERROR and message.startswith("internal error: "):
            raise  # a genuine bug: its traceback is what a developer needs
        print(message, file=sys.stderr)
        return code


def classify_error(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message (``error: ...``) of an exception that ends a command: 130
    interrupted; 5 refused by the policy; 2 bad input (a path the user gave, a value, a solver option); 1 a
    locked store, an I/O fault of the machine, a plan failing the independent check, or ``internal error: ...``
    (a bug)."""
    if isinstance(exc, KeyboardInterrupt):
        return 130, "interrupted" + (" (SIGTERM)" if str(exc) == "SIGTERM" else "")
    from instances.validation import InstanceValidationError
    from solvers import SolverError

    if getattr(exc, "exit_code", None) == EXIT_FORBIDDEN:  # engine.governance.PolicyRefused
        return EXIT_FORBIDDEN, f"refused: {exc}"
    from engine.store import StoreLocked

    if isinstance(exc, StoreLocked):
        return EXIT_ERROR, f"error: {exc}"
    if isinstance(exc, SolverError):
        return EXIT_BAD_INPUT, f"error: {exc}"
    if isinstance(exc, OSError):
        return (EXIT_BAD_INPUT if exc.errno in USER_ERRNOS or exc.errno is None else EXIT_ERROR,
                f"error: {_io_error_message(exc)}")
    if isinstance(exc, InstanceValidationError | ValueError):
        return EXIT_BAD_INPUT, f"error: {exc}"
    if type(exc).__module__.startswith(("_duckdb", "duckdb")):
        return EXIT_ERROR, f"error: run store: {str(exc).splitlines()[0]}"
    if type(exc).__name__ == "PlanCheckError":  # formulations.network_design: a plan that fails check_plan
        return EXIT_ERROR, ("error: internal: the solved plan fails the independent check, so it is not "
                            f"returned: {exc}")
    return EXIT_ERROR, f"internal error: {type(exc).__name__}: {exc}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main", "build_parser", "Path"]
