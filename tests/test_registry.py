"""The formulation protocol and the registry of decisions: one set of names, one dispatch, the same plans."""

from __future__ import annotations

import inspect

import pandas as pd
import pytest

import solvers
from engine.pipeline import diagnose, solve_decision
from engine.scenario import DECISIONS as SCENARIO_DECISIONS
from engine.scenario import apply_scenario, scenario_from_dict
from formulations import capacity, network_design, redistribution
from formulations.check import check_plan
from formulations.protocol import SOLVE_DEFAULTS, Formulation
from formulations.registry import DECISIONS, formulation

MODULES = {"consolidation": network_design, "redistribution": redistribution, "capacity": capacity}
SOLVE = {"time_limit": 30.0, "mip_gap": 0.0}


def scenario_instance(tiny, decision):
    """tiny with a scenario of ``decision`` applied (x3 demand for capacity, so that the peak needs levers)."""
    mods = [{"demand_multiplier": 3.0}] if decision == "capacity" else []
    sc = scenario_from_dict({"name": f"{decision}_case", "class": "tactical", "decision": decision,
                             "modifications": mods})
    return apply_scenario(tiny, sc)


def assert_same_plan(a, b) -> None:
    assert (a.decision, a.status) == (b.decision, b.status)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    assert set(a.tables) == set(b.tables)
    for name in a.tables:
        pd.testing.assert_frame_equal(a.tables[name].reset_index(drop=True), b.tables[name].reset_index(drop=True),
                                      check_dtype=False, obj=name)


def test_every_decision_is_registered_once_and_scenarios_use_the_same_list():
    assert DECISIONS == ("consolidation", "redistribution", "capacity")
    assert SCENARIO_DECISIONS is DECISIONS
    with pytest.raises(ValueError, match="unknown decision 'rebalance'.*consolidation"):
        formulation("rebalance")


@pytest.mark.parametrize("decision", DECISIONS)
def test_each_formulation_has_the_protocol_names_and_signatures(decision):
    f = formulation(decision)
    assert f is MODULES[decision] and decision == f.DECISION
    members = {name for name, value in inspect.getmembers(Formulation) if not name.startswith("_")}
    members |= set(Formulation.__annotations__)
    for name in members:
        assert hasattr(f, name), f"{f.__name__} lacks {name}"
    assert inspect.isclass(f.Options) and f.Options() is not None  # every option has a default
    for name in ("plan_instance", "prepare", "build_model", "warm_start_from", "extract_plan"):
        expected = list(inspect.signature(getattr(Formulation, name)).parameters)[1:]  # without self
        got = list(inspect.signature(getattr(f, name)).parameters)
        # the same positional parameters; the model's data may keep its module's name (``ctx``, ``data``)
        assert len(got) == len(expected) and all(g == e for g, e in zip(got, expected) if e != "data"), \
            (decision, name, got)
    params = inspect.signature(f.solve).parameters
    assert list(params)[:2] == ["instance", "options"]
    for key, default in SOLVE_DEFAULTS.items():  # the same keywords with the same defaults everywhere
        assert params[key].kind is inspect.Parameter.KEYWORD_ONLY and params[key].default == default, (decision, key)


@pytest.mark.parametrize("decision", DECISIONS)
def test_registry_dispatch_gives_the_plan_of_calling_the_formulation_directly(tiny, decision):
    """solve_decision (the pipeline's dispatch) = the module's own solve = prepare/build/solve/extract by hand."""
    inst = scenario_instance(tiny, decision)
    module = MODULES[decision]
    via_registry, on = solve_decision(inst, decision, **SOLVE)
    direct = module.solve(inst, module.Options(), **SOLVE)
    assert via_registry.has_solution and via_registry.status == "optimal"
    assert_same_plan(via_registry, direct)
    # the plan is expressed on the formulation's plan instance, and it checks out there in plain pandas
    expected_on = module.plan_instance(inst, module.Options())
    assert len(on.periods) == len(expected_on.periods)
    assert len(on.periods) == (14 if decision == "capacity" else len(inst.periods))  # tiny: 2 weeks -> 14 days
    assert check_plan(on, via_registry).empty
    # the costs table adds up to the objective: real money, not a stub
    assert via_registry.cost() == pytest.approx(via_registry.objective, rel=1e-6)
    if decision != "consolidation":  # direct strategies: the protocol's steps by hand give the same optimum
        data = module.prepare(inst, module.Options())
        model = module.build_model(data)
        by_hand = module.extract_plan(data, solvers.solve(model, **SOLVE))
        assert by_hand.objective == pytest.approx(direct.objective, rel=1e-9)


@pytest.mark.parametrize("decision", DECISIONS)
def test_warm_start_from_own_plan_reaches_the_same_optimum(tiny, decision):
    inst = scenario_instance(tiny, decision)
    f = formulation(decision)
    cold = f.solve(inst, **SOLVE)
    data = f.prepare(inst)
    model = f.build_model(data)
    start = f.warm_start_from(data, model, cold)
    assert isinstance(start, dict) and start  # a plan of this decision becomes a start by variable name
    assert f.warm_start_from(data, model, None) is None
    warm = f.solve(inst, warm_start=cold, **SOLVE)
    assert warm.objective == pytest.approx(cold.objective, rel=1e-9)


def test_diagnose_builds_every_decision_through_the_registry(tiny):
    """A feasible model has no conflict, whatever the decision (the diagnosis no longer special-cases one)."""
    for decision in DECISIONS:
        lines = diagnose(scenario_instance(tiny, decision), decision)
        assert len(lines) == 1 and lines[0].startswith("no conflict found"), (decision, lines)
