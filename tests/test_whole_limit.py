"""The time limit covers the whole call (issue 15): each repair round's solve gets what is left after the earlier
rounds, minus a reserve for checking and simulating its plan -- estimated in round 1, measured afterwards."""

from __future__ import annotations

import time

import pytest

import engine.pipeline as pipeline
from engine import load_instance
from engine.scenario import load_scenario
from instances.instance import bundled_instance_path
from tests.test_pipeline import pack_bound_instance

TINY = bundled_instance_path("tiny")


def test_post_solve_estimate_by_hand():
    tiny = load_instance(TINY)
    days = float(tiny.periods["days"].sum())
    expected = pipeline.SIMULATE_SECONDS * len(tiny.dcs) * days * 10 * pipeline.POST_SOLVE_MARGIN
    assert pipeline.post_solve_estimate(tiny, 4 * expected, 10) == pytest.approx(expected)
    assert pipeline.post_solve_estimate(tiny, 100.0, 10) == pytest.approx(5.0)  # at least 5 % of the limit
    assert pipeline.post_solve_estimate(tiny, 0.001, 10) == pytest.approx(0.0005)  # at most half of it
    # the median network's 296 DCs x 364 days x 10 replications: about 20 s at load 3, twice that expected
    median = 296 * 364 * 10 * pipeline.SIMULATE_SECONDS
    assert median == pytest.approx(43.1, rel=0.01)
    assert pipeline.post_solve_estimate(tiny, 600.0, 0) == pytest.approx(30.0)  # not simulated: 5 % all the same


def test_rounds_share_one_limit_with_their_checks_and_simulations(monkeypatch):
    tiny = load_instance(TINY)
    inst = pack_bound_instance(tiny)
    scenario = load_scenario("baseline", TINY).with_modifications([{"sla": {"order_to_ship_sla_hours": 12}}])
    given: list[tuple[float, float]] = []  # (time limit given to the round's solve, seconds elapsed before it)
    real = pipeline.solve_decision
    t0 = time.perf_counter()

    def spy(*args, **kw):
        given.append((kw["time_limit"], time.perf_counter() - t0))
        return real(*args, **kw)

    monkeypatch.setattr(pipeline, "solve_decision", spy)
    limit = 40.0
    result = pipeline.plan(inst, scenario, time_limit=limit, mip_gap=0.0, max_rounds=5, replications=8, seed=3)
    wall = time.perf_counter() - t0
    assert len(result.rounds) >= 2 and len(given) == len(result.rounds)
    first_reserve = pipeline.post_solve_estimate(pipeline.apply_scenario(inst, scenario), limit, 8)
    assert given[0][0] == pytest.approx(limit - given[0][1] - first_reserve, abs=0.05)
    for (lim, at), (_, _) in zip(given[1:], given[:-1]):
        assert lim <= limit - at + 1e-6  # never more than what is left
    assert wall <= limit


def test_a_repair_round_without_a_plan_in_the_time_left_keeps_the_previous_plan(monkeypatch):
    """Round 2 runs out of time without a plan (as a short share of a whole-command limit can): the answer is
    round 1's plan with its check and simulation, never "no plan"."""
    from instances.plan import Plan

    tiny = load_instance(TINY)
    inst = pack_bound_instance(tiny)
    scenario = load_scenario("baseline", TINY).with_modifications([{"sla": {"order_to_ship_sla_hours": 12}}])
    real = pipeline.solve_decision
    calls = []

    def second_round_times_out(instance, decision, **kw):
        calls.append(kw["time_limit"])
        plan, on = real(instance, decision, **kw)
        return (plan if len(calls) == 1 else Plan(decision, "time_limit")), on

    monkeypatch.setattr(pipeline, "solve_decision", second_round_times_out)
    result = pipeline.plan(inst, scenario, time_limit=60, mip_gap=0.0, max_rounds=5, replications=8, seed=3)
    assert len(calls) == 2 and len(result.rounds) == 2
    first, second = result.rounds
    assert first["simulation_feasible"] is False and second["status"] == "time_limit"
    assert "previous round's plan kept" in second["outcome"]
    assert result.plan.has_solution and result.objective == pytest.approx(first["objective"])
    assert result.simulation is not None and result.simulation_feasible is False  # round 1's simulation, stated
    assert pipeline.exit_code(result) == 6  # not executable, rather than "no solution" (4)


def pack_bound_folder(folder, time_limit: float):
    """:func:`pack_bound_instance` written to ``folder`` with two scenarios that both need a repair round (today's
    network and a 12-hour order-to-ship promise): ``tight`` (DC_C may open) and its baseline ``today`` (DC_C
    closed), each with its own ``solver: {time_limit, mip_gap: 0}``."""
    import yaml

    pack_bound_instance(load_instance(TINY)).save(folder)
    scenarios = folder / "scenarios"
    scenarios.mkdir(exist_ok=True)
    for f in scenarios.glob("*.yaml"):
        f.unlink()
    sla = {"sla": {"order_to_ship_sla_hours": 12}}
    solver = {"time_limit": time_limit, "mip_gap": 0.0}
    (scenarios / "today.yaml").write_text(yaml.safe_dump({
        "name": "today", "decision": "consolidation", "solver": solver,
        "modifications": [{"force_open": ["DC_A", "DC_B"]}, {"force_closed": ["DC_C"]}, sla]}))
    (scenarios / "tight.yaml").write_text(yaml.safe_dump({
        "name": "tight", "decision": "consolidation", "baseline": "today", "solver": solver,
        "modifications": [{"force_open": ["DC_A", "DC_B"]}, sla]}))
    return folder


def test_a_scenarios_own_time_limit_bounds_the_whole_command(monkeypatch, tmp_path):
    """``twinplan solve`` without ``--time-limit``: the scenario's ``solver.time_limit`` covers the whole command
    as ``--time-limit`` would -- the scenario's repair rounds and its baseline's share it, instead of each
    ``plan`` call (and each answer solve) getting the whole limit again. Unlimited, the scenario and its baseline
    each take two rounds here (1.2-2.7 s each on this machine, load 2-3): without the shared limit both ran all
    their rounds, with it they stop repairing when the limit is used up (span 2.4-3.0 s for the 3 s limit)."""
    from engine.cli import BASELINE_SHARE, run_solve

    limit = 3.0
    folder = pack_bound_folder(tmp_path / "inst", limit)
    calls: list[tuple[str, float | None, float, float]] = []  # (scenario, time limit given, start, end)
    real = pipeline.plan

    def spy(instance, scenario, **kw):
        start = time.perf_counter()
        result = real(instance, scenario, **kw)
        calls.append((scenario.name, kw.get("time_limit"), start, time.perf_counter()))
        return result

    monkeypatch.setattr(pipeline, "plan", spy)
    t0 = time.perf_counter()
    result, base, _, _ = run_solve(str(folder), "tight", out=str(tmp_path / "run"), store=str(tmp_path / "r.duckdb"),
                                   replications=8, seed=3, quiet=True)
    wall = time.perf_counter() - t0
    assert [c[0] for c in calls] == ["tight", "today"]
    (_, given, start, _), (_, base_given, base_start, end) = calls
    # the scenario's solve leaves the baseline its share; the baseline gets what is left of the same limit
    assert given == pytest.approx(limit * (1 - BASELINE_SHARE), abs=0.1)
    assert base_given is not None and base_given <= max(1.0, limit - (base_start - start)) + 1e-6
    assert result.plan.has_solution and base.plan.has_solution
    assert result.rounds[0]["simulation_feasible"] is False  # round 1's plan breaks an SLA: a repair is due
    assert end - start <= limit + 1.0  # every solve, round, check and simulation of both
    assert wall <= limit + 6.0  # + checking the inputs and writing the run folder and its report
