"""The optimize -> check -> simulate -> repair loop: a plan that is optimal for the MILP *and* executable.

``plan(instance, scenario)``:

1. apply the scenario and solve its MILP (consolidation, redistribution or capacity);
2. re-check the plan independently (:func:`formulations.check.check_plan`);
3. simulate it hour by hour (:func:`engine.simulator.simulate`);
4. if the simulator finds it infeasible, tighten the failing site and stage by the measured shortfall
   ``s`` (extra units/day the stage would have needed, scaled by :data:`REPAIR_SAFETY` plus
   :data:`REPAIR_MARGIN` of the load) and re-solve, warm-started from the previous plan. Every site and
   chain that breaks its SLA is repaired in the same round.
   With ``L`` the plan's daily load at the stage and ``C`` its equipment capacity:

   - when ``C < L + s`` the *equipment* binds: the stage's capacity is derated to ``L / (C + s)`` of
     nominal in the MILP (``capacity_derate``), so the MILP may route at most what the hourly chain holds;
   - otherwise the *staffing* binds (the MILP planned labour hours for the average, the hours cannot absorb
     the peaks): the site's labour productivity is derated to ``L / (L + s)`` at every stage in the MILP's
     copy of the instance, so the MILP plans that many more hours (or moves work elsewhere). Every stage,
     because the simulator shares a site's staffed hours among its stages by workload: only more hours for
     the whole site give the failing stage its extra ``s``. The simulator runs on the true productivity.
     For daily plans (redistribution, capacity) the staffing lever is a *floor of labour hours* per site and
     day instead (``labour_floor``): the MILP staffs a day for the units it processes that day, while the
     simulator carries the evening's arrivals into the next day; so every day that receives carried-over work
     in the simulation gets at least the planned hours plus that work's hours (:func:`carry_over_floors`), and
     the failing day the hours its shortfall needs. Derating productivity there would add hours only on days
     that already have work, and the same breach would come back round after round (the stall seen on
     us_west_port's DC_JOLIET inbound chain).

   Repeat until the plan passes or ``max_rounds`` is reached. A plan still breaking an SLA then is returned
   as it is, with the breaches (``exit_code`` 6): the answer states where, when and how much is missing.

Progress: one line per round (:func:`round_line`: what failed, what changed, elapsed time); the details are
in ``loop.json``.

Every round is recorded (what failed, what changed, the objective and its change), so a planner sees
the price of executability.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.kpi import compute_kpis
from engine.reach import demand_must_be_met, unreachable_zones, unserved_demand
from engine.scenario import Scenario, apply_scenario
from formulations.registry import formulation
from instances.instance import Instance
from instances.plain import to_plain
from instances.plan import Plan
from instances.schema import INBOUND_STAGES, LABOR_STAGES
from solvers.result import Termination

NO_SOLUTION_STATUSES = frozenset({Termination.INFEASIBLE, Termination.UNBOUNDED, Termination.INFEASIBLE_OR_UNBOUNDED,
                                  Termination.ERROR})
"""Solver terminations that never come with a plan (the first three prove that none exists)."""


@dataclass
class PlanResult:
    """The outcome of :func:`plan`: the final plan, its simulation, KPIs and the record of every round."""

    instance_name: str
    scenario: dict[str, Any]
    status: Termination
    objective: float | None
    plan: Plan
    simulation: Any | None
    kpis: dict[str, float]
    rounds: list[dict[str, Any]]
    violations: pd.DataFrame
    timings: dict[str, float] = field(default_factory=dict)
    instance: Instance | None = field(default=None, repr=False)
    answer: dict[str, Any] | None = None
    """The answer to the scenario's question (:func:`engine.answer.build_answer`), set by the caller."""

    def __post_init__(self) -> None:
        self.status = Termination.parse(self.status)

    @property
    def simulation_feasible(self) -> bool:
        """Whether the last simulation found the plan executable (False when not simulated)."""
        return bool(self.simulation is not None and self.simulation.verdict.feasible)

    @property
    def decision(self) -> str:
        """The decision solved (``consolidation``, ``redistribution`` or ``capacity``)."""
        return str(self.scenario.get("decision", self.plan.decision))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary: status, objective, KPIs, simulation verdict, rounds."""
        sim: dict[str, Any] = {"feasible": self.simulation_feasible}
        if self.simulation is not None:
            v = self.simulation.verdict
            sim.update({k: to_plain(getattr(v, k, None)) for k in
                        ("site_id", "stage", "period", "hour", "shortfall_units", "shortfall_hours", "message")})
        cal = (self.instance.meta.get("calibration") or {}) if self.instance is not None else {}
        return {
            "instance": self.instance_name,
            "calibration_version": cal.get("version") if isinstance(cal, dict) else None,
            "scenario": self.scenario.get("name"),
            "decision": self.decision,
            "status": self.status,
            "objective": to_plain(self.objective),
            "kpis": {k: to_plain(v) for k, v in self.kpis.items()},
            "simulation": sim,
            "rounds": [{k: to_plain(v) for k, v in r.items()} for r in self.rounds],
            "violations": int(len(self.violations)),
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "executable": self.executable,
            **({"answer": to_plain(self.answer)} if self.answer is not None else {}),
        }

    @property
    def executable(self) -> bool:
        """A plan exists and the simulator executes it (False also when it was not simulated)."""
        return bool(self.plan.has_solution and self.simulation_feasible)

    def save(self, out: str | Path) -> Path:
        """Write plan tables (CSV + Parquet), ``kpis.json``, ``loop.json``, simulation tables and summary."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        self.plan.save(out / "plan")
        if self.instance is not None:  # the planned (scenario-applied) instance: map, data summary, hashes
            self.instance.save(out / "instance", fmt="parquet")
        (out / "kpis.json").write_text(json.dumps({k: to_plain(v) for k, v in self.kpis.items()}, indent=2))
        (out / "loop.json").write_text(json.dumps([{k: to_plain(v) for k, v in r.items()} for r in self.rounds],
                                                  indent=2))
        (out / "result.json").write_text(json.dumps(self.to_dict(), indent=2))
        (out / "scenario.json").write_text(json.dumps(self.scenario, indent=2, default=str))
        if not self.violations.empty:
            self.violations.to_csv(out / "violations.csv", index=False)
        if self.simulation is not None:
            sim_dir = out / "simulation"
            sim_dir.mkdir(exist_ok=True)
            for name in ("stage_period", "site", "daily"):
                df = getattr(self.simulation, name, None)
                if isinstance(df, pd.DataFrame):
                    df.to_csv(sim_dir / f"{name}.csv", index=False)
        return out


EXIT_NOT_EXECUTABLE = 6
"""Exit code of a run whose final plan the simulator cannot execute (an SLA breaks hour by hour)."""


def exit_code(result: PlanResult) -> int:
    """CLI exit code: 0 ok, 3 infeasible, 4 no solution within the limit, 6 plan not executable.

    6 applies when the plan was simulated and breaks an SLA (the repair loop ran out of rounds or levers):
    ``result.json`` then carries ``"executable": false`` and the breaches with site, stage, hour and shortfall.
    """
    if Termination.parse(result.status).proves_no_solution:
        return 3
    if result.objective is None:
        return 4
    if result.simulation is not None and not result.simulation_feasible:
        return EXIT_NOT_EXECUTABLE
    return 0


def _options(cls: type, sc: dict[str, Any], derate: dict[tuple[str, str], float] | None,
             labour_floor: dict[tuple[str, int], float] | None = None) -> Any:
    """Formulation options from the scenario's ``options`` plus the loop's capacity derate."""
    fields = cls.__dataclass_fields__
    opts = dict(sc.get("options") or {})
    unknown = sorted(set(opts) - set(fields))
    if unknown:
        raise ValueError(f"scenario options: unknown option(s) {unknown} for {cls.__name__} "
                         f"(allowed: {sorted(fields)})")
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in opts.items()}
    if "force_open" in fields:
        for key in ("force_open", "force_closed"):
            if sc.get(key):
                kw[key] = tuple(sorted(set(kw.get(key, ())) | set(sc[key])))
        for key in ("capex_budget", "max_distance_km"):
            if sc.get(key) is not None and key in fields:
                kw[key] = sc[key]
    elif sc.get("force_closed") and "closed_sites" in fields:
        kw["closed_sites"] = tuple(sorted(set(kw.get("closed_sites", ())) | set(sc["force_closed"])))
    if derate:
        kw["capacity_derate"] = dict(derate)
    if labour_floor and "labour_floor" in fields:
        kw["labour_floor"] = dict(labour_floor)
    return cls(**kw)


def evaluation_instance(instance: Instance, decision: str) -> Instance:
    """The instance a decision's plan is expressed on (the daily peak for ``capacity``)."""
    f = formulation(decision)
    return f.plan_instance(instance, _options(f.Options, instance.meta.get("scenario") or {}, None))


def solve_decision(instance: Instance, decision: str, *, derate: dict[tuple[str, str], float] | None = None,
                   warm_start: Any = None, labour_floor: dict[tuple[str, int], float] | None = None,
                   **solve_kw: Any) -> tuple[Plan, Instance]:
    """Solve one decision's MILP on an (already scenario-applied) instance, through the registry.

    Returns the plan and the instance it is expressed on (the formulation's ``plan_instance``: the instance
    itself, except for ``capacity`` whose plan lives on the daily peak instance).
    """
    from engine.calibration import calibrated_attendance, calibrated_derate

    f = formulation(decision)
    derate = calibrated_derate(instance, derate)  # a calibration's congestion derates the MILP's capacity
    options = _options(f.Options, instance.meta.get("scenario") or {}, derate, labour_floor)
    rostered = labour_derated(instance, calibrated_attendance(instance))  # absenteeism: plan the hours to roster
    return f.solve(rostered, options, warm_start=warm_start, **solve_kw), f.plan_instance(instance, options)


MAX_ROUNDS = 8
"""Default most optimize -> simulate rounds: a plan that converges stops earlier (eu_fba's scenarios and
us_west_port's baseline in 2-3 rounds); us_west_port's port_closure_la still breaks an SLA after 8 (each repair
moves receipts to another DC or day, which then needs one) and exits 6 with the breaches stated."""
POST_SOLVE_MARGIN = 1.25
"""A round's solve leaves this many times the expected check-and-simulate time of its plan (the limit covers the
whole call): in round 1 :func:`post_solve_estimate`, later the slowest earlier round's measured time."""
SIMULATE_SECONDS = 4e-5
"""Simulation seconds per DC, day and replication; the first round's reserve is estimated from it. Measured on the
median network (296 DCs x 364 days x 10 replications, today's 228 DCs open, 127 of them breaking an SLA):
``python -m benchmarks.simulator --part pipeline``, about 2e-5 at load 3 (it was 2e-4, 214 s at load 5, before the
shortfall search shared its inputs); twice that leaves room for a loaded machine."""


def post_solve_estimate(instance: Instance, time_limit: float, replications: int) -> float:
    """Seconds the first round's solve leaves for checking and simulating its plan: the expected simulation time
    (:data:`SIMULATE_SECONDS` x DCs x days x replications) x :data:`POST_SOLVE_MARGIN`, at least 5 % and at most
    half of the time limit."""
    days = float(instance.periods["days"].sum()) if len(instance.periods) else 0.0
    expected = SIMULATE_SECONDS * len(instance.dcs) * days * max(0, int(replications))
    return min(0.5 * time_limit, max(0.05 * time_limit, POST_SOLVE_MARGIN * expected))
REPAIR_SAFETY = 1.25
"""The measured shortfall is scaled by this factor: it is the least extra capacity that clears the overdue
units of the median replication, so repairing by exactly that much leaves the plan on the edge."""
REPAIR_MARGIN = 0.01
"""Plus this share of the planned load, so a repair always moves the plan a visible step."""


def _planned_daily_capacity(instance: Instance, plan: Plan, site: str, stage: str) -> float:
    """Equipment capacity (units/day) of a site's stage in the plan (installed + added)."""
    res = instance.resources
    row = res[(res["site_id"] == site) & (res["stage"] == stage)]
    if row.empty:
        return 0.0
    rate, hours = float(row["rate_per_hour"].iloc[0]), float(row["hours_per_day"].iloc[0])
    count = float(row["count"].iloc[0])
    cap = plan.tables["capacity"]
    if not cap.empty:
        hit = cap[(cap["site_id"] == site) & (cap["stage"] == stage)]
        if not hit.empty:
            count = float(pd.to_numeric(hit["total_count"]).iloc[0])
            extra = pd.to_numeric(hit.get("extra_hours_per_day", pd.Series([0.0]))).fillna(0.0).iloc[0]
            hours += float(extra)
    return count * rate * hours


def _planned_daily_load(instance: Instance, plan: Plan, site: str, stage: str, period: Any) -> float:
    """Units per day the plan sends through a site's stage in a period (inbound or outbound units)."""
    tp = plan.tables["site_throughput"]
    rows = tp[(tp["site_id"] == site) & (pd.to_numeric(tp["period"]) == period)] if period is not None else \
        tp[tp["site_id"] == site]
    if rows.empty:
        return 0.0
    col = "inbound_units" if stage in INBOUND_STAGES else "outbound_units"
    days = instance.periods.set_index("period")["days"]
    per_day = pd.to_numeric(rows[col]).to_numpy(float) / days.reindex(pd.to_numeric(rows["period"])).to_numpy(float)
    return float(np.nanmax(per_day)) if len(per_day) else 0.0


def labour_derated(instance: Instance, labour_derate: dict[str, float]) -> Instance:
    """The MILP's copy of the instance with some sites' labour productivity scaled down (every stage)."""
    if not labour_derate:
        return instance
    lab = instance.labor.copy()
    for site, factor in labour_derate.items():
        cols = [f"productivity_{stage}" for stage in LABOR_STAGES]
        lab.loc[lab["site_id"] == site, cols] *= factor
    return instance.replace(labor=lab)


def repair_factor(capacity: float, load: float, shortfall: float) -> float:
    """Derate factor on a stage's capacity after the simulator found ``shortfall`` units/day missing.

    The plan put ``load`` units/day through a stage of ``capacity`` units/day and would have needed
    ``capacity + shortfall`` to hold its SLA hour by hour; assuming the need scales with the load, the
    load this capacity sustains is ``load x capacity / (capacity + shortfall)``. Expressed as a factor on
    the capacity: ``load / (capacity + shortfall)`` (never above the aggregate ``capacity / (capacity +
    shortfall)``, so repeated repairs keep tightening).
    """
    if capacity <= 0:
        return 1.0
    shortfall = max(shortfall, 1e-6 * capacity)
    sustainable = load / (capacity + shortfall) if load > 0 else 1.0
    return min(sustainable, capacity / (capacity + shortfall))


def diagnose(instance: Instance, decision: str, derate: dict[tuple[str, str], float] | None = None,
             max_items: int = 20, labour_floor: dict[tuple[str, int], float] | None = None) -> list[str]:
    """Why a decision's MILP is infeasible, in business terms (constraint group and labels).

    Uses :func:`solvers.diagnose_infeasibility` (HiGHS IIS on the LP relaxation, else an elastic re-solve)
    on the decision's model, built through the registry (e.g. the capacity model is infeasible only with
    ``hard_sla``: the SLA rows name the DCs and days the levers cannot clear in time).
    """
    from engine.calibration import calibrated_attendance, calibrated_derate
    from solvers import diagnose_infeasibility

    f = formulation(decision)
    derate = calibrated_derate(instance, derate)
    instance = labour_derated(instance, calibrated_attendance(instance))  # the model solve_decision builds
    model = f.build_model(f.prepare(instance, _options(f.Options, instance.meta.get("scenario") or {}, derate,
                                                       labour_floor)))
    report = diagnose_infeasibility(model, time_limit=60)
    if not report.infeasible:
        return [f"no conflict found ({report.note})"]
    return [c.describe() for c in report.conflicts[:max_items]]


def _breaches(sim: Any, verdict: Any) -> list[dict[str, Any]]:
    """Every site and chain whose SLA broke at multiplier 1 (the verdict's first breach when no table)."""
    table = getattr(sim, "breaches", None)
    if isinstance(table, pd.DataFrame) and not table.empty:
        rows = table
        if "multiplier" in rows:
            rows = rows[np.isclose(pd.to_numeric(rows["multiplier"]).astype(float), float(verdict.multiplier))]
        if not rows.empty:
            return rows.to_dict(orient="records")
    return [{"site_id": verdict.site_id, "stage": verdict.stage, "period": getattr(verdict, "period", None),
             "shortfall_units": verdict.shortfall_units, "binding": getattr(verdict, "binding", None)}]


def _planned_hours(plan: Plan, site: str, period: int) -> float:
    """Labour hours (regular + overtime + temp) the plan staffs at a site in a period."""
    lab = plan.tables["labor"]
    if lab.empty:
        return 0.0
    rows = lab[(lab["site_id"].astype(str) == site) & (pd.to_numeric(lab["period"]) == period)]
    return float(sum(pd.to_numeric(rows[c]).fillna(0.0).sum() for c in ("regular_hours", "overtime_hours",
                                                                          "temp_hours")))


CHAIN_STAGES = {"order": ("pick", "pack", "outbound_dock"), "inbound": INBOUND_STAGES}


def carry_over_floors(instance: Instance, plan: Plan, sim: Any) -> dict[tuple[str, int], float]:
    """Labour hours each site needs on a day: what the plan staffs plus the work the simulation carried in.

    From the simulation's daily table (multiplier 1): the units still waiting at each stage at the end of
    day d (cumulative workload - throughput) need ``units / productivity`` hours on day d + 1, scaled by
    :data:`REPAIR_SAFETY`. Only days with carried-in work get a floor.
    """
    daily = getattr(sim, "daily", None)
    if daily is None or len(daily) == 0 or instance.labor.empty:
        return {}
    d = daily
    if "multiplier" in d:
        d = d[np.isclose(pd.to_numeric(d["multiplier"]).astype(float), 1.0)]
    d = d[d["stage"] != "storage"].sort_values(["site_id", "stage", "period", "day"])
    left = (pd.to_numeric(d["workload"]) - pd.to_numeric(d["throughput"])).groupby(
        [d["site_id"], d["stage"]]).cumsum()
    d = d.assign(left=left.clip(lower=0.0))
    lab = instance.labor.set_index("site_id")
    prod = {(s, k): float(lab.at[s, f"productivity_{k}"]) for s in lab.index for k in LABOR_STAGES
            if f"productivity_{k}" in lab}
    d = d[[(s, k) in prod for s, k in zip(d["site_id"], d["stage"])]]
    if d.empty:
        return {}
    d = d.assign(hours=d["left"] / [prod[(s, k)] for s, k in zip(d["site_id"], d["stage"])])
    end = d.groupby(["site_id", "period"])["hours"].sum()
    out = {}
    periods = set(pd.to_numeric(plan.tables["labor"]["period"]).astype(int)) if not plan.tables["labor"].empty \
        else set()
    for (site, period), hours in end.items():
        nxt = int(period) + 1
        if hours > 1e-6 and nxt in periods:
            out[(str(site), nxt)] = _planned_hours(plan, str(site), nxt) + REPAIR_SAFETY * float(hours)
    return out


def _repair(inst: Instance, evaluated_on: Instance, plan: Plan, breach: dict[str, Any],
            derate: dict[tuple[str, str], float], labour_derate: dict[str, float],
            labour_floor: dict[tuple[str, int], float] | None = None,
            carry_floors: dict[tuple[str, int], float] | None = None) -> str | None:
    """Tighten the MILP where one breach happened (see the module docstring); returns what changed."""
    site, stage = str(breach["site_id"]), str(breach["stage"])
    cap = _planned_daily_capacity(evaluated_on, plan, site, stage)
    if cap <= 0:
        return None
    period = breach.get("period")
    period = None if period is None or (isinstance(period, float) and np.isnan(period)) else int(period)
    load = _planned_daily_load(evaluated_on, plan, site, stage, period)
    if load <= 0:  # the breach comes from work carried over from earlier periods: judge by the busiest one
        load = _planned_daily_load(evaluated_on, plan, site, stage, None)
    measured = float(breach.get("shortfall_units") or 0.0)
    short = max(REPAIR_SAFETY * measured + REPAIR_MARGIN * load, 1e-6 * cap)
    has_labour = f"productivity_{stage}" in inst.labor and site in set(inst.labor["site_id"])
    binding = breach.get("binding")
    equipment = (binding == "equipment") if binding in ("equipment", "labour") else cap < load + short
    if equipment or not has_labour or load <= 0:
        key = (site, stage)
        derate[key] = min(derate.get(key, 1.0), repair_factor(cap, load, short))
        return (f"equipment binds: derate {site} {stage} capacity to {derate[key]:.1%} of nominal "
                f"(planned load {load:,.0f} units/day needed {cap + short:,.0f} units/day, {cap:,.0f} installed)")
    if labour_floor is not None and period is not None:
        # a floor of hours on the failing day: the MILP staffs a day for the units it processes that day only,
        # so work carried over from the day before can find the site (nearly) unstaffed, and derating the
        # productivity adds hours only on days that already have work -- the same breach would come back
        lab = inst.labor.set_index("site_id").loc[site]
        chain = str(breach.get("chain") or ("inbound" if stage in INBOUND_STAGES else "order"))
        per_unit = sum(1.0 / float(lab[f"productivity_{k}"]) for k in CHAIN_STAGES.get(chain, (stage,))
                       if float(lab.get(f"productivity_{k}", 0.0) or 0.0) > 0)
        planned = _planned_hours(plan, site, period)
        extra = max(REPAIR_SAFETY * measured * per_unit, REPAIR_MARGIN * planned, 1.0)
        labour_floor[(site, period)] = max(labour_floor.get((site, period), 0.0), planned + extra)
        for (s2, p2), hours in (carry_floors or {}).items():  # every day's carried-in work, every site
            labour_floor[(s2, p2)] = max(labour_floor.get((s2, p2), 0.0), hours)
        return (f"staffing binds: at least {labour_floor[(site, period)]:,.0f} labour hours at {site} in period "
                f"{period} (planned {planned:,.0f} h; {measured:,.0f} units/day at {stage} were not processed "
                f"in time, {extra:,.0f} h more)")
    labour_derate[site] = labour_derate.get(site, 1.0) * load / (load + short)
    return (f"staffing binds: plan {site}'s labour at {labour_derate[site]:.1%} of nominal productivity "
            f"(planned load {load:,.0f} units/day at {stage} needed {short:,.0f} units/day more than the staffed "
            f"hours gave; equipment {cap:,.0f} units/day suffices)")


def _first_plan_at(plan: Plan, started: float) -> float | None:
    """Seconds from the call's start to the round's first plan: when its solve ``started``, plus the formulation's
    preparation, plus its first evaluated plan's ``at_seconds`` (relax-and-restore's phases); None when the
    formulation does not report phases."""
    phases = plan.meta.get("phases") or {}
    ats = [p["at_seconds"] for p in phases.values()
           if isinstance(p, dict) and p.get("at_seconds") is not None and p.get("objective") is not None]
    if not ats:
        return None
    return round(started + float(plan.meta.get("prepare_seconds") or 0.0) + min(ats), 3)


def _handles_volume(plan: Plan) -> bool:
    """Does any DC of the plan receive or ship units?"""
    tp = plan.tables["site_throughput"]
    if tp.empty:
        return False
    return bool((pd.to_numeric(tp["inbound_units"]).fillna(0) + pd.to_numeric(tp["outbound_units"]).fillna(0)
                 > 0).any())


def _short_change(change: str) -> str:
    """The first clause of a repair's description (what changed), for the one-line progress."""
    head = change.split(" (", 1)[0]
    return head.replace("equipment binds: ", "").replace("staffing binds: ", "")


def round_line(rec: dict[str, Any], max_rounds: int, elapsed: float, width: int = 160) -> str:
    """One progress line per repair round: what failed, what changed, elapsed time (at most ``width`` chars)."""
    head = f"round {rec['round']}/{max_rounds} {elapsed:5.1f}s: "
    obj = rec.get("objective")
    if rec.get("outcome") == "no solution":
        body = f"{rec.get('status')}" + (f" -- {rec['diagnosis'][0]}" if rec.get("diagnosis") else "")
    elif rec.get("simulation_feasible"):
        body = f"plan executable (objective {obj:,.0f})" if obj is not None else "plan executable"
    elif rec.get("failed_site"):
        body = (f"{rec['failed_site']} {rec.get('failed_stage')} breaks its SLA "
                f"(+{rec.get('shortfall_units_per_day', 0.0):,.0f} units/day short)")
        changes = rec.get("changes") or []
        if changes:
            body += " -> " + _short_change(changes[0]) + (f" (+{len(changes) - 1} more)" if len(changes) > 1 else "")
        else:
            body += f" -- {rec.get('outcome')}"
    else:
        body = str(rec.get("outcome", ""))
    line = head + body
    return line if len(line) <= width else line[:width - 3] + "..."


def plan(instance: Instance, scenario: Scenario | None = None, *, solver: str = "highs",
         time_limit: float | None = None, mip_gap: float | None = None, threads: int | None = None,
         warm_start: Any = None, max_rounds: int | None = None, replications: int = 10, seed: int = 0,
         log: Any = None, simulate: bool = True, progress: Callable[[str], None] | None = None) -> PlanResult:
    """Optimize, check, simulate and repair until the plan is executable (see the module docstring).

    Parameters
    ----------
    instance : the base instance (the scenario is applied to a copy).
    scenario : what-if to apply; ``None`` means the base instance with decision ``consolidation``.
    solver, time_limit, mip_gap, threads, log : passed to :func:`solvers.solve` (scenario ``solver:``
        settings are used where the caller gives none). ``time_limit`` covers the whole call: each round's solve
        gets what the earlier rounds left minus a reserve for checking and simulating its plan
        (:func:`post_solve_estimate` in round 1, then what the slowest earlier round's check and simulation
        took), and repair stops (keeping the last plan) when little is left.
    warm_start : a previous PlanResult or Plan (e.g. the baseline) used as MIP start in round 1.
    max_rounds : most optimize -> simulate rounds (default :data:`MAX_ROUNDS`).
    replications, seed : simulator replications and seed.
    """
    from engine.simulator import simulate as run_simulation
    from formulations.check import check_plan

    say = progress or (lambda msg: None)
    max_rounds = MAX_ROUNDS if max_rounds is None else int(max_rounds)
    t0 = time.perf_counter()
    inst = apply_scenario(instance, scenario)
    decision = scenario.decision if scenario is not None else "consolidation"
    sset = dict(scenario.solver) if scenario is not None else {}
    solver = sset.get("solver", solver)
    time_limit = time_limit if time_limit is not None else sset.get("time_limit")
    mip_gap = mip_gap if mip_gap is not None else sset.get("mip_gap")
    threads = threads if threads is not None else sset.get("threads")
    if isinstance(warm_start, PlanResult):
        warm_start = warm_start.plan
    derate: dict[tuple[str, str], float] = {}
    labour_derate: dict[str, float] = {}
    floors: dict[tuple[str, int], float] | None = {} if decision in ("capacity", "redistribution") else None
    rounds: list[dict[str, Any]] = []
    timings = {"solve_s": 0.0, "check_s": 0.0, "simulate_s": 0.0}
    current: Plan | None = None
    evaluated_on = inst
    sim = None
    violations = pd.DataFrame()
    prev_obj: float | None = None
    if demand_must_be_met(inst, decision) and unreachable_zones(inst):
        why = unserved_demand(inst)
        if why:  # demand never vanishes: no plan rather than a plan that drops it (no lane: no solve needed)
            rec = {"round": 1, "status": "infeasible", "objective": None, "objective_change": None,
                   "outcome": "no solution", "diagnosis": why, "derate": {}, "labour_derate": {}}
            say(round_line(rec, max_rounds, time.perf_counter() - t0))
            timings["total_s"] = time.perf_counter() - t0
            return PlanResult(
                instance_name=instance.name,
                scenario=scenario.to_dict() if scenario is not None else {"name": "base", "decision": decision},
                status="infeasible", objective=None, plan=Plan(decision, "infeasible"), simulation=None, kpis={},
                rounds=[rec], violations=pd.DataFrame(), timings=timings, instance=inst)
    post_solve: list[float] = []  # seconds each round spent checking and simulating its plan
    for r in range(1, max_rounds + 1):
        round_limit = None
        if time_limit is not None:
            # the limit covers the whole call: every round's solve, and the checks and simulations after them
            reserve = (post_solve_estimate(inst, float(time_limit), replications if simulate else 0)
                       if not post_solve else POST_SOLVE_MARGIN * max(post_solve))
            round_limit = float(time_limit) - (time.perf_counter() - t0) - reserve
            if r > 1 and round_limit <= max(1.0, 0.05 * float(time_limit)):
                rounds[-1]["outcome"] = "time limit reached: repair stopped"  # the limit covers every round
                break
            round_limit = max(1.0, round_limit)
        ts = time.perf_counter()
        kept = (current, evaluated_on, sim, violations)  # the previous round's plan and what was found about it
        current, evaluated_on = solve_decision(labour_derated(inst, labour_derate), decision, derate=derate,
                                               labour_floor=floors,
                                               warm_start=warm_start, solver=solver, time_limit=round_limit,
                                               mip_gap=mip_gap, threads=threads, log=log)
        if labour_derate:
            evaluated_on = evaluation_instance(inst, decision)
        timings["solve_s"] += time.perf_counter() - ts
        rec: dict[str, Any] = {"round": r, "status": current.status, "objective": current.objective,
                               "bound": current.bound, "gap": current.gap,
                               "first_plan_s": _first_plan_at(current, ts - t0),
                               "objective_change": (None if prev_obj is None or current.objective is None
                                                    else current.objective - prev_obj),
                               "derate": {f"{s}/{g}": round(f, 6) for (s, g), f in derate.items()},
                               "labour_derate": {s: round(f, 6) for s, f in labour_derate.items()},
                               **({"labour_floor": {f"{s}/{p}": round(h, 3) for (s, p), h in floors.items()}}
                                  if floors else {})}
        if not current.has_solution and r > 1 and not current.status.proves_no_solution:
            # a repair round that ran out of time without a plan: the limit never ends without one when an earlier
            # round had it -- keep that round's plan, its check and its simulation
            rec["outcome"] = "no plan within the time left: repair stopped, the previous round's plan kept"
            rounds.append(rec)
            say(round_line(rec, max_rounds, time.perf_counter() - t0))
            current, evaluated_on, sim, violations = kept
            break
        if not current.has_solution:
            rec["outcome"] = "no solution"
            if current.status.proves_no_solution:
                rec["diagnosis"] = diagnose(labour_derated(inst, labour_derate), decision, derate,
                                            labour_floor=floors)
                if demand_must_be_met(inst, decision):
                    rec["diagnosis"] += unserved_demand(inst)
            rounds.append(rec)
            say(round_line(rec, max_rounds, time.perf_counter() - t0))
            sim = None
            break
        ts = t_post = time.perf_counter()
        violations = check_plan(evaluated_on, current)
        timings["check_s"] += time.perf_counter() - ts
        rec["violations"] = int(len(violations))
        if not simulate:
            rec["outcome"] = "not simulated"
            rounds.append(rec)
            break
        if not _handles_volume(current):  # nothing to execute (the simulator needs at least one working DC)
            rec["outcome"] = "not simulated: no DC handles any volume in this plan"
            rounds.append(rec)
            say(round_line(rec, max_rounds, time.perf_counter() - t0))
            sim = None
            break
        ts = time.perf_counter()
        sim = run_simulation(evaluated_on, current, replications=replications, seed=seed)
        timings["simulate_s"] += time.perf_counter() - ts
        post_solve.append(time.perf_counter() - t_post)
        v = sim.verdict
        rec["simulation_feasible"] = bool(v.feasible)
        if v.feasible:
            rec["outcome"] = "plan executable"
            rounds.append(rec)
            say(round_line(rec, max_rounds, time.perf_counter() - t0))
            break
        rec.update({"failed_site": v.site_id, "failed_stage": v.stage, "failed_period": getattr(v, "period", None),
                    "shortfall_units_per_day": float(v.shortfall_units), "message": v.message})
        if r == max_rounds:
            rec["outcome"] = "round limit reached"
            rounds.append(rec)
            say(round_line(rec, max_rounds, time.perf_counter() - t0))
            break
        changes = []
        carried = carry_over_floors(evaluated_on, current, sim) if floors is not None else None
        for breach in _breaches(sim, v):
            change = _repair(inst, evaluated_on, current, breach, derate, labour_derate, floors, carried)
            if change:
                changes.append(change)
        if not changes:
            rec["outcome"] = "cannot repair: no capacity data for the failing stage"
            rounds.append(rec)
            say(round_line(rec, max_rounds, time.perf_counter() - t0))
            break
        rec["change"] = "; ".join(changes)
        rec["changes"] = changes
        rec["outcome"] = "repair and re-solve"
        rounds.append(rec)
        say(round_line(rec, max_rounds, time.perf_counter() - t0))
        warm_start = current
        prev_obj = current.objective
    assert current is not None
    kpis = compute_kpis(evaluated_on, current, sim) if current.has_solution else {}
    timings["total_s"] = time.perf_counter() - t0
    return PlanResult(
        instance_name=instance.name,
        scenario=scenario.to_dict() if scenario is not None else {"name": "base", "decision": decision},
        status=current.status, objective=current.objective, plan=current, simulation=sim, kpis=kpis,
        rounds=rounds, violations=violations, timings=timings, instance=evaluated_on,
    )
