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
