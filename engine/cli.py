"""The ``twinplan`` command line.

Exit codes: 0 ok, 1 unexpected internal error, 2 bad input (invalid instance, scenario or arguments),
3 infeasible, 4 no solution within the limit, 5 refused by the governance policy.

Each subcommand lives in one ``cmd_*`` function registered in :data:`COMMANDS` by :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INFEASIBLE, EXIT_NO_SOLUTION, EXIT_FORBIDDEN = 0, 1, 2, 3, 4, 5


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
    from instances.instance import validate_instance

    inst, report = validate_instance(check_instance_arg(args.path))
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
    if args.preset is not None:
        inst = generate(args.preset, seed=args.seed)
    else:
        inst = generate("synthetic", seed=args.seed, sites=args.sites, zones=args.zones or 100,
                        products=args.products or 10, periods=args.periods or 4)
    inst.save(args.out, fmt=args.format)
    print(f"wrote {inst.name} to {args.out}")
    return EXIT_OK


_T0 = time.monotonic()
"""When the command started: progress lines show the seconds elapsed since."""


def _progress(msg: str) -> None:
    """A progress line on stderr (never stdout, so that ``--json`` output stays clean), with elapsed time."""
    print(f"[twinplan {time.monotonic() - _T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"did you mean 'eu_fba'? "`` for the closest of ``choices`` (empty when none is close)."""
    close = difflib.get_close_matches(str(name), sorted(set(choices)), n=2, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""


def bundled_instances() -> list[str]:
    """Names of the instances shipped with twinplan."""
    from instances.instance import META_FILE, bundled_instance_path

    root = bundled_instance_path("tiny").parent
    return sorted(p.name for p in root.iterdir() if (p / META_FILE).is_file())


def check_instance_arg(arg: str) -> Path:
    """The instance folder an argument names (a folder or a bundled name); a clear error with the closest
    bundled names otherwise (before any work)."""
    from instances.instance import resolve_instance_path

    path = resolve_instance_path(arg)
    if path.is_dir():
        return path
    names = bundled_instances()
    raise FileNotFoundError(f"{arg}: not an instance folder nor a bundled instance; {did_you_mean(arg, names)}"
                            f"bundled instances: {', '.join(names)}")


def check_scenario_arg(arg: str | None, instance_path: Path) -> None:
    """A scenario argument is a YAML file or a scenario name of the instance; else a clear error naming the
    closest scenarios (before any work)."""
    if arg is None or Path(arg).is_file():
        return
    folder = instance_path / "scenarios"
    names = sorted(f.stem for f in folder.glob("*.yaml")) if folder.is_dir() else []
    if arg in names:
        return
    raise FileNotFoundError(f"{arg}: no such scenario file nor scenario of {instance_path.name}; "
                            f"{did_you_mean(arg, names)}scenarios: {', '.join(names) or 'none'}")


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


def _num(text: str) -> str:
    try:
        v = float(text)
    except ValueError:
        return text
    return f"{v:,.0f}" if abs(v) >= 100 and v == v and abs(v) != float("inf") else f"{v:.4g}"


class SolveLog:
    """The solver log written to a file, and the MIP gap reported while solving (at most every ``every`` s).

    Passed as the ``log`` callable of :func:`solvers.solve` (through :func:`engine.pipeline.plan`)."""

    def __init__(self, path: Path, progress: Callable[[str], None] | None, every: float = 5.0) -> None:
        self.path, self.progress, self.every = path, progress, every
        self._last = -1e9
        self.gap: str | None = None

    def __call__(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")
        for line in text.splitlines():
            m = _MIP_LINE.search(line)
            if m is None:
                continue
            self.gap = m["gap"]
            now = time.monotonic()
            if self.progress is not None and now - self._last >= self.every:
                self._last = now
                self.progress(f"solving: gap {m['gap']} (best {_num(m['best'])}, bound {_num(m['bound'])})")


def _load_inputs(instance_arg: str, scenario_arg: str | None, calibration: str | None = None):
    """Instance (with a calibration version applied when asked) and scenario from CLI arguments."""
    from engine.scenario import load_scenario
    from instances.instance import load_instance

    path = check_instance_arg(instance_arg)
    check_scenario_arg(scenario_arg, path)
    inst = load_instance(path)
    if calibration:
        from engine.calibration import apply_calibration

        inst = apply_calibration(inst, calibration, folder=path)
    scenario = load_scenario(scenario_arg, path) if scenario_arg else None
    return path, inst, scenario


def run_solve(instance_arg: str, scenario_arg: str | None, *, solver: str = "highs", time_limit: float | None = None,
              gap: float | None = None, out: str | None = None, replications: int = 10, seed: int = 0,
              with_baseline: bool = True, quiet: bool = False, as_user: str | None = None,
              policy: str | None = None, store: str | None = None, calibration: str | None = None):
    """Solve a scenario (and its baseline) through the full loop; write everything to ``out``.

    The governance policy is enforced before any solve (refusal: :class:`engine.governance.PolicyRefused`,
    audited); every run is recorded in the run store with its audit row and input hashes.
    """
    from engine.governance import current_user, enforce, find_policy
    from engine.kpi import executive_summary, kpi_deltas
    from engine.pipeline import plan
    from engine.scenario import load_scenario
    from engine.store import RunStore
    from engine.sweep import record_plan_result

    path, inst, scenario = _load_inputs(instance_arg, scenario_arg, calibration)
    say = (lambda m: None) if quiet else _progress
    run_store = RunStore(store)
    user = current_user(as_user)
    verdict = enforce(find_policy(policy), user, scenario, inst.name, store=run_store, action="solve")
    solver_options = {"solver": solver, "time_limit": time_limit, "mip_gap": gap, "threads": None, "max_rounds": 4,
                      "replications": replications, "simulate": True}
    out_dir = Path(out) if out else Path("runs") / f"{inst.name}-{scenario.name if scenario else 'base'}"
    out_dir.mkdir(parents=True, exist_ok=True)
    log_file = out_dir / "solver.log"
    log_file.write_text("")
    solver_log = SolveLog(log_file, None if quiet else _progress)
    say(f"solving {inst.name} / {scenario.name if scenario else 'base'}")
    result = plan(inst, scenario, solver=solver, time_limit=time_limit, mip_gap=gap, replications=replications,
                  seed=seed, log=solver_log, progress=say)
    run_id = record_plan_result(result, run_store, instance=inst, instance_path=path, scenario=scenario,
                                solver_options=solver_options, seed=seed, verdict=verdict)
    say(f"recorded as {run_id} in {run_store.path} (user {user})")
    base_result = None
    if with_baseline and scenario is not None and scenario.baseline and scenario.baseline != scenario.name:
        say(f"solving baseline {scenario.baseline}")
        base_sc = load_scenario(scenario.baseline, path)
        base_verdict = enforce(find_policy(policy), user, base_sc, inst.name, store=run_store, action="solve")
        base_result = plan(inst, base_sc, solver=solver, time_limit=time_limit, mip_gap=gap,
                           replications=replications, seed=seed, log=solver_log, progress=say)
        record_plan_result(base_result, run_store, instance=inst, instance_path=path, scenario=base_sc,
                           solver_options=solver_options, seed=seed, verdict=base_verdict)
        base_result.save(out_dir / "baseline")
    result.save(out_dir)
    from engine.hashing import input_hashes

    hashes = input_hashes(inst, scenario, solver_options, seed)
    summary_file = out_dir / "result.json"
    summary_file.write_text(json.dumps({**json.loads(summary_file.read_text()), "input_hashes": hashes}, indent=2,
                                       default=str))
    (out_dir / "run.json").write_text(json.dumps({"run_id": run_id, "store": str(run_store.path), "user": user,
                                                  "input_hash": hashes.get("input_hash"),
                                                  "calibration_version": result.to_dict()["calibration_version"]}))
    if not result.plan.has_solution:
        why = result.rounds[-1].get("diagnosis") if result.rounds else None
        summary = f"{scenario.name if scenario else 'base'}: no plan ({result.status})"
        if why:
            summary += "\nconflicting constraints:\n" + "\n".join(f"  - {w}" for w in why)
        (out_dir / "summary.txt").write_text(summary + "\n")
        return result, base_result, summary, out_dir
    summary = executive_summary(result.kpis, base_result.kpis if base_result else None, inst.currency,
                                scenario.name if scenario else "base",
                                base_result.scenario.get("name", "baseline") if base_result else "baseline")
    (out_dir / "summary.txt").write_text(summary + "\n")
    if base_result is not None:
        (out_dir / "deltas.json").write_text(json.dumps(
            {k: {kk: (None if vv != vv else vv) for kk, vv in v.items()}
             for k, v in kpi_deltas(result.kpis, base_result.kpis).items()}, indent=2))
    try:
        from engine.report import write_report

        write_report(out_dir, baseline_dir=(out_dir / "baseline") if base_result else None)
    except ImportError:
        pass
    return result, base_result, summary, out_dir


def cmd_solve(args: argparse.Namespace) -> int:
    """Solve a scenario end to end: MILP, check, simulate, repair; write plan, KPIs and logs."""
    from engine.pipeline import exit_code

    result, _, summary, out_dir = run_solve(args.instance, args.scenario, solver=args.solver,
                                            time_limit=args.time_limit, gap=args.gap, out=args.out,
                                            replications=args.replications, seed=args.seed,
                                            with_baseline=not args.no_baseline, quiet=args.quiet,
                                            as_user=args.as_user, policy=args.policy, store=args.store,
                                            calibration=args.calibration)
    if args.json:
        d = result.to_dict()
        print(json.dumps({"status": d["status"], "objective": d["objective"], "kpis": d["kpis"],
                          "simulation": d["simulation"], "rounds": d["rounds"], "out": str(out_dir)}))
    else:
        print(summary)
        print(f"plan, KPIs and logs written to {out_dir}")
    return exit_code(result)


def cmd_simulate(args: argparse.Namespace) -> int:
    """Simulate a saved plan hour by hour."""
    from engine.simulator import simulate
    from instances.instance import load_instance
    from instances.plan import Plan

    inst = load_instance(check_instance_arg(args.instance))
    plan_dir = Path(args.plan)
    if (plan_dir / "plan" / "plan.json").is_file():
        plan_dir = plan_dir / "plan"
    p = Plan.load(plan_dir)
    sim = simulate(inst, p, replications=args.replications, seed=args.seed)
    if args.json:
        print(json.dumps(sim.to_dict(), default=str))
    else:
        print(sim.verdict.message)
        print(sim.site.to_string(index=False))
    return EXIT_OK if sim.verdict.feasible else EXIT_INFEASIBLE


def cmd_stress(args: argparse.Namespace) -> int:
    """Stress-test a scenario's plan: the demand multiplier at which each site and stage first fails."""
    from engine.pipeline import plan
    from engine.stress import stress_test

    _, inst, scenario = _load_inputs(args.instance, args.scenario)
    result = plan(inst, scenario, solver=args.solver, time_limit=args.time_limit, simulate=False,
                  progress=None if args.quiet else _progress)
    if not result.plan.has_solution:
        print(f"error: no plan to stress-test (status {result.status})", file=sys.stderr)
        return EXIT_INFEASIBLE
    table = stress_test(result.instance, result.plan, seed=args.seed)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "stress.csv", index=False)  # the report of a run folder shows it
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
                    write=not args.no_write)
    if args.json:
        print(json.dumps(cal.to_dict()))
        return 0
    print(f"calibration {cal.version or '(not written)'}: {cal.n_days} days {cal.period[0]}..{cal.period[1]}")
    print("  relative error   before    after")
    for k in METRICS:
        print(f"  {k:<14} {cal.error_before[k]:8.1%} {cal.error_after[k]:8.1%}")
    print(f"  congestion coefficient: {cal.congestion:.3f}")
    print(cal.efficiency.round(3).to_string(index=False))
    for d in cal.drift.itertuples(index=False):
        print(f"drift: {d.site_id}/{d.stage} {d.metric} {d.window_start}..{d.window_end}: predicted "
              f"{d.predicted:,.0f}, actual {d.actual:,.0f} ({d.rel_error:+.1%}); most likely {d.parameter} "
              f"{d.current:.3f} -> {d.refit:.3f}", file=sys.stdout)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run or resume a what-if sweep (local process pool or Dask); runs go to the DuckDB run store."""
    import pandas as pd

    from engine.governance import PolicyRefused
    from engine.store import StoreLocked
    from engine.sweep import run_sweep

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
    """List the append-only audit trail of the run store."""
    import pandas as pd

    from engine.governance import parse_since
    from engine.store import RunStore

    store = RunStore(args.store)
    if not store.path.exists():
        print(f"error: no run store at {store.path}", file=sys.stderr)
        return 2
    df = store.audit(since=parse_since(args.since) if args.since else None, user=args.user)
    if args.limit:
        df = df.tail(args.limit)
    if args.json:
        print(json.dumps(df.drop(columns=["prev_hash", "row_hash"]).to_dict("records"), default=str))
    else:
        view = df[["seq", "time", "user_name", "action", "allowed", "rule", "instance", "scenario", "decision",
                   "run_id", "status", "objective", "input_hash"]].copy()
        view["time"] = view["time"].astype(str).str.slice(0, 19)
        view["input_hash"] = view["input_hash"].astype(str).str.slice(0, 12)
        with pd.option_context("display.width", 220, "display.max_rows", 500, "display.max_colwidth", 40):
            print(view.to_string(index=False) if len(view) else "(no audit rows)")
    if args.verify:
        problems = store.verify_audit()
        for p in problems:
            print(f"audit: {p}")
        print("audit chain intact" if not problems else f"audit chain BROKEN: {len(problems)} problem(s)")
        return 0 if not problems else 1
    return 0


def cmd_reproduce(args: argparse.Namespace) -> int:
    """Re-run a stored run from its recorded inputs; exit 0 when it matches, 1 when it does not."""
    from engine.governance import PolicyRefused
    from engine.sweep import reproduce

    try:
        report = reproduce(args.run_id, store=args.store, user=args.as_user, policy=args.policy)
    except PolicyRefused as exc:
        print(f"error: {exc}", file=sys.stderr)
        return PolicyRefused.exit_code
    if args.json:
        print(json.dumps(report.to_dict(), default=str))
    else:
        print(report.message)
    return 0 if report.matches else 1


def cmd_report(args: argparse.Namespace) -> int:
    """Write the executive HTML report of a run folder (against a baseline run folder, if given)."""
    from engine.report import write_report

    path = write_report(args.run_dir, baseline_dir=args.baseline, out=args.out)
    print(f"report written to {path}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--out", required=True, help="output folder")
    COMMANDS["generate"] = cmd_generate

    p = sub.add_parser("demo", help="run the main job on the bundled eu_fba instance")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--time-limit", type=float, default=50.0, help="seconds per MILP solve")
    COMMANDS["demo"] = cmd_demo

    p = sub.add_parser("solve", help="solve a scenario: optimize, check, simulate, repair")
    p.add_argument("instance", help="instance folder or bundled instance name")
    p.add_argument("--scenario", help="scenario name (in INSTANCE/scenarios) or YAML file")
    p.add_argument("--solver", default="highs", type=_solver_name,
                   help="MILP solver: highs (default), ortools, ... (checked before any work)")
    p.add_argument("--time-limit", type=float, default=None,
                   help="seconds per MILP solve (default: the scenario's solver.time_limit)")
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
    p.add_argument("--time-limit", type=float, default=None, help="seconds per MILP solve")
    p.add_argument("--seed", type=int, default=0, help="random seed of the stress simulations (default 0)")
    p.add_argument("--json", action="store_true", help="print the failure points as JSON (progress on stderr)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")
    p.add_argument("--out", help="write the failure points to OUT/stress.csv (e.g. a run folder of `solve`)")
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
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    COMMANDS["calibrate"] = cmd_calibrate

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
    p.add_argument("--verify", action="store_true", help="check the audit hash chain (exit 1 when broken)")
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
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    COMMANDS["report"] = cmd_report
    return parser


def main(argv: list[str] | None = None) -> int:
    global _T0
    _T0 = time.monotonic()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - the last line of defence: a clear message, not a traceback
        from instances.validation import InstanceValidationError
        from solvers import SolverError

        if getattr(exc, "exit_code", None) == EXIT_FORBIDDEN:  # engine.governance.PolicyRefused
            print(f"refused: {exc}", file=sys.stderr)
            return EXIT_FORBIDDEN
        from engine.store import StoreLocked

        if isinstance(exc, StoreLocked):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_ERROR
        if isinstance(exc, SolverError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        if isinstance(exc, InstanceValidationError | FileNotFoundError | ValueError):
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_BAD_INPUT
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


__all__ = ["main", "build_parser", "Path"]
