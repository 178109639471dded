"""Period aggregation (:mod:`formulations.period_blocks`): the blocked model is a relaxation -- its optimum is
never above the original network-design optimum, and coarser nested blocks never above finer ones -- with the
demand, the supply and the annualisation kept."""

from __future__ import annotations

import numpy as np
import pytest

from formulations import network_design
from formulations.common import annualization_factor
from formulations.network_design import NetworkDesignOptions
from formulations.period_blocks import block_of, block_periods, block_size_for
from instances.generator import synthetic


@pytest.fixture(scope="module")
def network():
    inst = synthetic(seed=5, sites=14, zones=12, products=3, periods=8, lanes_per_zone=4)
    # a seasonal peak in periods 3-4 so that averaging inside a block can hide it
    d = inst.tables["demand"]
    d = d.assign(quantity=d["quantity"] * np.where(d["period"].isin([3, 4]), 2.5, 1.0))
    return inst.replace(demand=d)


def optimum(inst, relax: bool = False) -> float:
    opt = NetworkDesignOptions(strategy="direct")
    plan = network_design.solve(inst, options=opt, mip_gap=0.0, threads=1)
    assert plan.status == "optimal"
    return float(plan.objective)


def test_blocks_keep_demand_supply_and_annualisation(network):
    b = block_periods(network, 3)
    assert list(b.periods["period"]) == [1, 2, 3] and list(b.periods["days"]) == [21.0, 21.0, 14.0]
    assert list(block_of(network, 3)) == [1, 1, 1, 2, 2, 2, 3, 3]
    assert b.tables["demand"]["quantity"].sum() == pytest.approx(network.tables["demand"]["quantity"].sum())
    assert b.tables["supply"]["capacity"].sum() == pytest.approx(network.tables["supply"]["capacity"].sum())
    assert annualization_factor(b) == pytest.approx(annualization_factor(network))
    assert block_periods(network, 1) is network
    assert block_size_for(52, 4000, 60_000) == 4 and block_size_for(52, 100, 10**6) == 1


def test_blocked_optimum_is_a_lower_bound_and_coarser_blocks_are_weaker(network):
    full = optimum(network)
    by_size = {k: optimum(block_periods(network, k)) for k in (2, 4, 8)}
    assert by_size[2] <= full * (1 + 1e-9)
    assert by_size[4] <= by_size[2] * (1 + 1e-9)  # blocks of 4 are pairs of blocks of 2: a coarser relaxation
    assert by_size[8] <= by_size[4] * (1 + 1e-9)
    assert by_size[8] < full  # the peak is averaged away: strictly weaker here


def test_blocked_bound_holds_with_lane_capacities(network):
    lanes = network.tables["lanes"]
    out = lanes["origin_id"].str.startswith("DC") & lanes["destination_id"].str.startswith("Z")
    zone_demand = network.tables["demand"].groupby(["zone_id", "period"])["quantity"].sum().groupby("zone_id").max()
    cap = lanes["destination_id"].map(zone_demand) * 0.6  # every zone needs at least two lanes in its peak
    inst = network.replace(lanes=lanes.assign(capacity=np.where(out, cap, np.nan)))
    full = optimum(inst)
    assert optimum(block_periods(inst, 3)) <= full * (1 + 1e-9)  # blocks of 3, 3 and 2: capacity x 3 each

