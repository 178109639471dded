"""The large-network path of network design (issue 15, scale): the LP bound over period blocks by interior point
without crossover, a complete MIP start (HiGHS only checks it), and the full MILP skipped when it cannot start
within the time left. Small networks with the size thresholds lowered; the large figures are measured by
``benchmarks/median_network.py`` and ``benchmarks/network_scale.py``."""

from __future__ import annotations

import numpy as np
import pytest

import solvers
from formulations import network_design
from formulations.network_design import NetworkDesignOptions
from instances.generator import synthetic


@pytest.fixture(scope="module")
def network():
    inst = synthetic(seed=5, sites=14, zones=12, products=3, periods=8, lanes_per_zone=4)
    d = inst.tables["demand"]
    d = d.assign(quantity=d["quantity"] * np.where(d["period"].isin([3, 4]), 2.5, 1.0))
    return inst.replace(demand=d)


@pytest.fixture(scope="module")
def exact(network):
    plan = network_design.solve(network, options=NetworkDesignOptions(strategy="direct"), mip_gap=0.0, threads=1)
    assert plan.status == "optimal"
    return plan


def lp_path(**kw) -> NetworkDesignOptions:
    """relax-and-restore with a (non-binding) open-count row: the network Lagrangian relaxation does not apply to
    it (:func:`formulations.network_lagrangian.applies`), so a large model takes the LP path tested here."""
    return NetworkDesignOptions(strategy="relax_restore", max_open=1000, **kw)


def optimum(inst) -> float:
    return float(network_design.solve(inst, options=NetworkDesignOptions(strategy="direct"), mip_gap=0.0,
                                      threads=1).objective)


def test_large_model_path_bounds_by_blocked_interior_point(network, exact, monkeypatch):
    """When the full MILP cannot start in the time left, the large-model LP phase (thresholds lowered): the LP
    relaxation over blocks of periods by interior point without crossover; its weak-duality bound never above the
    exact optimum, its rounded plan checked, the best plan and bound returned."""
    monkeypatch.setattr(network_design, "LARGE_LP_ARCS", 1)
    monkeypatch.setattr(network_design, "BLOCK_MOST_ARCS", 2 * 48)  # 48 lanes: blocks of 4 periods
    monkeypatch.setattr(network_design, "MILP_SETUP_FACTOR", 1e6)
    plan = network_design.solve(network, options=lp_path(), time_limit=60, mip_gap=0.0, threads=1)
    lp = plan.meta["phases"]["lp_relaxation"]
    assert lp["period_block"] == 4 and lp["periods"] == 2 and lp["method"] == "ipm"
    assert lp["bound"] is not None and 0.5 * exact.objective < lp["bound"] <= exact.objective * (1 + 1e-9)
    assert plan.meta["phases"]["restore"]["objective"] is not None
    assert plan.has_solution and plan.objective >= exact.objective * (1 - 1e-9)
    assert plan.bound == pytest.approx(lp["bound"]) and plan.bound <= plan.objective


def test_large_model_goes_to_the_full_milp_when_it_fits(network, exact, monkeypatch):
    monkeypatch.setattr(network_design, "LARGE_LP_ARCS", 1)
    plan = network_design.solve(network, options=lp_path(), time_limit=60, mip_gap=0.0, threads=1)
    assert plan.meta["phases"]["lp_relaxation"]["status"].startswith("skipped")
    assert plan.status == "optimal" and plan.objective == pytest.approx(exact.objective, rel=1e-7)


def test_a_plan_is_a_complete_mip_start(network, exact):
    """Every variable of the model gets a value from a plan (sites, modules, flows by their business keys,
    throughput, labour hours, unmet), so HiGHS only checks the start instead of solving an LP to complete it."""
    ctx = network_design.prepare(network, NetworkDesignOptions())
    m = network_design.build_model(ctx)
    form = network_design.labelled_form(m, ctx)
    start = solvers.warm_start_vector(form, network_design.warm_start_from(ctx, m, exact))
    assert not np.isnan(start).any()
    logs: list[str] = []
    res = solvers.solve(form, warm_start=network_design.warm_start_from(ctx, m, exact), mip_gap=0.0, threads=1,
                        log=logs.append)
    text = "".join(logs)
    assert "MIP start solution is feasible" in text and "solving LP for user-supplied values" not in text
    assert res.objective + ctx.objective_constant == pytest.approx(exact.objective, rel=1e-9)


def test_full_milp_skipped_when_it_cannot_start_in_the_time_left(network, monkeypatch):
    monkeypatch.setattr(network_design, "LARGE_LP_ARCS", 1)
    monkeypatch.setattr(network_design, "MILP_SETUP_FACTOR", 1e6)
    for opt in (lp_path(), NetworkDesignOptions(strategy="relax_restore")):  # the LP path, the network Lagrangian
        plan = network_design.solve(network, options=opt, time_limit=30, mip_gap=0.0, threads=1)
        assert plan.meta["phases"]["milp"]["status"].startswith("skipped")
        assert plan.has_solution and plan.status == "time_limit" and plan.bound <= plan.objective
    assert "lagrangian_more" in plan.meta["phases"]  # the MILP cannot start: the rest went to the bound


def relax_value(inst, integer: bool) -> float:
    ctx = network_design.prepare(inst, NetworkDesignOptions(aggregate_products="relax"))
    m = network_design.build_model(ctx)
    form = network_design.labelled_form(m, ctx)
    if not integer:
        form.integrality[:] = 0
    return float(solvers.solve(form, threads=1, mip_gap=0.0).objective) + ctx.objective_constant


def test_product_reachability_tightens_the_aggregated_relaxation_and_keeps_it_valid(monkeypatch):
    """Each product comes from 2 of 8 ports and each DC has lanes from its 3 nearest: a DC can serve only some
    products. The aggregated relaxation with reachable arc bounds and product cover rows stays below the
    per-product model's LP and MILP optima, and is far above the plain aggregated relaxation."""
    inst = synthetic(seed=3, sites=40, zones=12, products=6, periods=3, lanes_per_zone=5, port_share=0.2)
    exact = network_design.solve(inst, options=NetworkDesignOptions(strategy="direct"), mip_gap=0.0, threads=1)
    assert exact.status == "optimal"
    ctx = network_design.prepare(inst, NetworkDesignOptions(aggregate_products=False))
    form = network_design.labelled_form(network_design.build_model(ctx), ctx)
    form.integrality[:] = 0
    per_product_lp = float(solvers.solve(form, threads=1).objective) + ctx.objective_constant
    tight_lp, tight_milp = relax_value(inst, False), relax_value(inst, True)
    assert tight_lp <= per_product_lp * (1 + 1e-9) and tight_milp <= exact.objective * (1 + 1e-9)
    monkeypatch.setattr(network_design, "_reachable_bounds", lambda instance, outbound, in_lanes: (outbound, None))
    plain_lp = relax_value(inst, False)
    assert plain_lp < 0.8 * tight_lp  # 54.0 M without, 77.4 M with (per-product LP 78.1 M, optimum 78.6 M)
    assert tight_lp > 0.98 * per_product_lp
