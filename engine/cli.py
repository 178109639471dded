"""The ``twinplan`` command line.

Exit codes: 0 ok, 1 unexpected internal error, 2 bad input (invalid instance, scenario or arguments),
3 infeasible, 4 no solution within the limit, 5 refused by the governance policy.

Each subcommand lives in one ``cmd_*`` function registered in :data:`COMMANDS` by :func:`build_parser`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
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
        print(f"error: unknown preset {args.preset!r}; choose one of {sorted(PRESETS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.preset is not None:
        inst = generate(args.preset, seed=args.seed)
    else:
        inst = generate("synthetic", seed=args.seed, sites=args.sites, zones=args.zones or 100,
                        products=args.products or 10, periods=args.periods or 4)
    inst.save(args.out, fmt=args.format)
    print(f"wrote {inst.name} to {args.out}")
    return EXIT_OK


def _progress(msg: str) -> None:
    print(f"[twinplan] {msg}", file=sys.stderr, flush=True)


def _load_inputs(instance_arg: str, scenario_arg: str | None, calibration: str | None = None):
    """Instance (with a calibration version applied when asked) and scenario from CLI arguments."""
    from engine.scenario import load_scenario
    from instances.instance import load_instance, resolve_instance_path

    path = resolve_instance_path(instance_arg)
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
    say(f"solving {inst.name} / {scenario.name if scenario else 'base'}")
    result = plan(inst, scenario, solver=solver, time_limit=time_limit, mip_gap=gap, replications=replications,
                  seed=seed, log=str(log_file), progress=say)
    run_id = record_plan_result(result, run_store, instance=inst, instance_path=path, scenario=scenario,
                                solver_options=solver_options, seed=seed, verdict=verdict)
    say(f"recorded as {run_id} in {run_store.path} (user {user})")
    base_result = None
    if with_baseline and scenario is not None and scenario.baseline and scenario.baseline != scenario.name:
        say(f"solving baseline {scenario.baseline}")
        base_sc = load_scenario(scenario.baseline, path)
        base_verdict = enforce(find_policy(policy), user, base_sc, inst.name, store=run_store, action="solve")
        base_result = plan(inst, base_sc, solver=solver, time_limit=time_limit, mip_gap=gap,
                           replications=replications, seed=seed, progress=say)
        record_plan_result(base_result, run_store, instance=inst, instance_path=path, scenario=base_sc,
                           solver_options=solver_options, seed=seed, verdict=base_verdict)
        base_result.save(out_dir / "baseline")
    result.save(out_dir)
    from engine.hashing import input_hashes

    hashes = input_hashes(inst, scenario, solver_options, seed)
    summary_file = out_dir / "result.json"
    from engine.calibration import calibration_summary

    calibration_key = calibration_summary(inst, findings=run_store.findings(instance=inst.name))
    summary_file.write_text(json.dumps({**json.loads(summary_file.read_text()), "input_hashes": hashes,
                                        "calibration": calibration_key}, indent=2, default=str))
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
                                            with_baseline=not args.no_baseline, quiet=args.json,
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
    from instances.instance import load_instance, resolve_instance_path
    from instances.plan import Plan

    inst = load_instance(resolve_instance_path(args.instance))
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
                  progress=None if args.json else _progress)
    if not result.plan.has_solution:
        print(f"error: no plan to stress-test (status {result.status})", file=sys.stderr)
        return EXIT_INFEASIBLE
    table = stress_test(result.instance, result.plan, seed=args.seed, target_half_width=args.target_half_width,
                        max_replications=args.max_replications)
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
                    write=not args.no_write, breakdowns=args.breakdowns, mttr_hours=args.mttr_hours,
                    variability=args.variability)
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
    print(cal.efficiency.round(3).to_string(index=False))
    for d in cal.drift.itertuples(index=False):
        print(f"drift: {d.site_id}/{d.stage} {d.metric} {d.window_start}..{d.window_end}: predicted "
              f"{d.predicted:,.0f}, actual {d.actual:,.0f} ({d.rel_error:+.1%}); most likely {d.parameter} "
              f"{d.current:.3f} -> {d.refit:.3f}", file=sys.stdout)
    return 0


def cmd_backtest(args: argparse.Namespace) -> int:
    """Fit on the earlier actuals, predict the held-out weeks; errors of the calibrated and the nominal twin."""
    from engine.calibration import BACKTEST_METRICS, run_backtest

    bt = run_backtest(args.instance, args.actuals, holdout_weeks=args.holdout_weeks, write=not args.no_write)
    if args.json:
        print(json.dumps(bt.to_dict()))
        return EXIT_OK
    print(f"backtest: fit on {bt.train[0]}..{bt.train[1]}, predict {bt.holdout[0]}..{bt.holdout[1]} "
          f"(congestion {bt.calibration.congestion:.3f})")
    print("  error            nominal  calibrated")
    for m in BACKTEST_METRICS:
        fmt = "{:10.1f} h" if m == "cycle_time_h" else "{:10.1%}  "
        print(f"  {m:<14}" + fmt.format(bt.overall[m]["nominal"]) + fmt.format(bt.overall[m]["calibrated"]))
    wide = bt.errors.pivot_table(index=["site_id", "stage"], columns="metric", values=["nominal", "calibrated"])
    wide.columns = [f"{m}_{k}" for k, m in wide.columns]
    cols = [f"{m}_{k}" for m in BACKTEST_METRICS for k in ("nominal", "calibrated")]
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
            line = f"FLAG {line}; most likely {r.parameter}" + (
                f" {r.current:.3f} -> {r.refit:.3f}" if r.parameter in ("efficiency", "congestion") else
                f" (work offered {r.refit:,.0f} vs planned {r.current:,.0f})")
        print(line)
    print(f"{len(flagged)} of {len(found)} site/stage gaps beyond {args.threshold:.1%}"
          + ("" if args.no_write else f"; stored with run {args.run_id}"))
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
    p.add_argument("--preset", help="tiny | eu_fba | us_west_port")
    p.add_argument("--sites", type=int)
    p.add_argument("--zones", type=int)
    p.add_argument("--products", type=int)
    p.add_argument("--periods", type=int)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--format", choices=["csv", "parquet"], default="csv")
    p.add_argument("--out", required=True, help="output folder")
    COMMANDS["generate"] = cmd_generate

    p = sub.add_parser("demo", help="run the main job on the bundled eu_fba instance")
    p.add_argument("--out", default="runs/demo", help="output folder")
    p.add_argument("--time-limit", type=float, default=50.0, help="seconds per MILP solve")
    COMMANDS["demo"] = cmd_demo

    p = sub.add_parser("solve", help="solve a scenario: optimize, check, simulate, repair")
    p.add_argument("instance", help="instance folder or bundled instance name")
    p.add_argument("--scenario", help="scenario name (in INSTANCE/scenarios) or YAML file")
    p.add_argument("--solver", default="highs", help="highs | ortools | ... (see solvers.available())")
    p.add_argument("--time-limit", type=float, default=None, help="seconds per MILP solve")
    p.add_argument("--gap", type=float, default=None, help="relative MIP gap")
    p.add_argument("--out", default=None, help="output folder (default runs/INSTANCE-SCENARIO)")
    p.add_argument("--json", action="store_true", help="print a JSON summary on stdout")
    p.add_argument("--replications", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baseline", action="store_true", help="do not solve the scenario's baseline")
    p.add_argument("--as", dest="as_user", help="run as this user (default $TWINPLAN_USER or the login name)")
    p.add_argument("--policy", help="governance policy YAML (default $TWINPLAN_POLICY; none: open)")
    p.add_argument("--store", help="run store file (default $TWINPLAN_STORE or twinplan_runs.duckdb)")
    p.add_argument("--calibration", help="apply a calibration version of the instance (vNNNN or latest); "
                   "recorded with the run")
    COMMANDS["solve"] = cmd_solve

    p = sub.add_parser("simulate", help="simulate a saved plan hour by hour")
    p.add_argument("instance")
    p.add_argument("--plan", required=True, help="plan folder written by `twinplan solve`")
    p.add_argument("--replications", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    COMMANDS["simulate"] = cmd_simulate

    p = sub.add_parser("stress", help="demand multiplier at which each site and stage first fails")
    p.add_argument("instance")
    p.add_argument("--scenario", help="scenario name or YAML file")
    p.add_argument("--solver", default="highs")
    p.add_argument("--time-limit", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.add_argument("--out", help="write the failure points to OUT/stress.csv (e.g. a run folder of `solve`)")
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
    p.add_argument("--json", action="store_true")
    COMMANDS["status"] = cmd_status

    p = sub.add_parser("sweep", help="run or resume a what-if sweep (local processes or Dask)")
    p.add_argument("spec", help="sweep spec YAML")
    p.add_argument("--executor", choices=["local", "dask"], default="local")
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
    p.add_argument("--json", action="store_true")
    COMMANDS["audit"] = cmd_audit

    p = sub.add_parser("reproduce", help="re-run a stored run and report whether the result matches")
    p.add_argument("run_id", help="run id (or a unique prefix)")
    p.add_argument("--store", help="run store file (default $TWINPLAN_STORE or twinplan_runs.duckdb)")
    p.add_argument("--as", dest="as_user", help="user to run as (default $TWINPLAN_USER or login name)")
    p.add_argument("--policy", help="governance policy YAML (default $TWINPLAN_POLICY; none: open)")
    p.add_argument("--json", action="store_true")
    COMMANDS["reproduce"] = cmd_reproduce
    p = sub.add_parser("report", help="write the executive HTML report of a run folder")
    p.add_argument("run_dir", help="run folder written by `twinplan solve`")
    p.add_argument("--baseline", help="run folder to compare against (default RUN_DIR/baseline if present)")
    p.add_argument("--out", help="HTML file to write (default RUN_DIR/report.html)")
    COMMANDS["report"] = cmd_report
    return parser


def main(argv: list[str] | None = None) -> int:
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
