"""Stress test: failure multipliers against hand-computed thresholds and against direct simulation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.simulator import Profile, prepare, run_setup
from engine.stress import peak_periods, stress_test
from instances.generator import tiny
from instances.plan import Plan

FLAT = Profile(intraday=(1.0,) * 24, weekday=(1.0,) * 7, noise="deterministic", cutoff_hour=None)
BIG = 1e6


def two_dcs(pick_a: float, pack_b: float):
    """DC_A bound by pick stations, DC_B by pack stations (units/h, around the clock), no labour limit."""
    inst = tiny()
    rows = []
    for site, bound_stage, rate in (("DC_A", "pick", pick_a), ("DC_B", "pack", pack_b)):
        for k in ("inbound_dock", "putaway", "pick", "pack", "outbound_dock"):
            rows.append({"site_id": site, "stage": k, "count": 1.0, "rate_per_hour": rate if k == bound_stage else BIG,
                         "hours_per_day": 24.0})
        rows.append({"site_id": site, "stage": "storage", "count": 1.0, "rate_per_hour": 1e9, "hours_per_day": 24.0})
    return inst.replace(resources=pd.DataFrame(rows), labor=inst.labor.iloc[:0])


def plan_of(per_hour: dict[str, float], weeks: int = 2) -> Plan:
    st = pd.DataFrame([{"site_id": s, "period": p, "inbound_units": 0.0, "outbound_units": v * 168}
                       for s, v in per_hour.items() for p in range(1, weeks + 1)])
    return Plan(decision="capacity", status="optimal", tables={"site_throughput": st})


def threshold(rate: float, per_hour: float = 100.0, sla: int = 24, T: int = 336) -> float:
    """Smallest m with units overdue within T steps: A(t) = per_hour m (t + 1) arrive, the bound stage ships
    D(t) = rate (t - 1) (two hand-overs), overdue when A(t - sla) > D(t), worst at t = T - 1."""
    t = T - 1
    return rate * (t - 1) / (per_hour * (t - sla + 1))


def test_failure_multipliers_match_hand_computed_thresholds():
    inst = two_dcs(pick_a=150.0, pack_b=130.0)
    table = stress_test(inst, plan_of({"DC_A": 100.0, "DC_B": 100.0}), replications=1, profile=FLAT,
                        tolerance=0.01)
    order = table[table["chain"] == "order"].set_index("site_id")
    for site, rate, stage in (("DC_A", 150.0, "pick"), ("DC_B", 130.0, "pack")):
        m_star = threshold(rate)  # DC_A 1.6058, DC_B 1.3917
        r = order.loc[site]
        assert r.stage == stage
        assert m_star < r.fail_multiplier <= m_star + 0.01
        assert r.holds_at <= m_star < r.fail_multiplier
        assert r.fail_multiplier - r.holds_at <= 0.01
    assert table["fail_multiplier"].iloc[0] == order.loc["DC_B", "fail_multiplier"]  # sorted, weakest first
    assert table.attrs["summary"].startswith("DC_B fails at 1.40× on pack stations; DC_A at 1.61× on pick")
    inbound = table[table["chain"] == "inbound"]
    assert inbound["fail_multiplier"].isna().all()  # no inbound volume: holds to the top of the grid
    assert table.attrs["rounds"] >= 1  # the grid step (2/63) is wider than the tolerance: bisection ran


def test_bracket_agrees_with_direct_simulation_under_noise():
    """With Poisson noise and 8 replications: the batch's bracket agrees with simulating each end alone."""
    inst = tiny()
    plan = plan_of({"DC_A": 60.0, "DC_B": 45.0})
    prof = Profile(noise="overdispersed")
    table = stress_test(inst, plan, replications=8, seed=5, profile=prof, tolerance=0.02, grid=16, high=4.0)
    setup = prepare(inst, plan.tables["site_throughput"], periods=[1, 2])
    for r in table.dropna(subset=["fail_multiplier", "holds_at"]).itertuples():
        res = run_setup(setup, np.array([r.holds_at, r.fail_multiplier]), replications=8, seed=5, profile=prof,
                        detail=False)
        b = res.breaches[(res.breaches["site_id"] == r.site_id) & (res.breaches["chain"] == r.chain)]
        assert set(b["column"]) == {1}, r.message


def test_spike_weights_and_peak_block():
    st = pd.DataFrame({"site_id": "DC_A", "period": [1, 2, 3, 4], "inbound_units": 0.0,
                       "outbound_units": [100.0, 950.0, 1000.0, 300.0]})
    assert peak_periods(st) == [2, 3]
    inst = two_dcs(pick_a=150.0, pack_b=150.0)
    # only week 2 is spiked: week 1 runs at 100/h with spare capacity, so failure needs a higher multiplier
    spiked = stress_test(inst, plan_of({"DC_A": 100.0}), spike={2: 1.0}, replications=1, profile=FLAT)
    both = stress_test(inst, plan_of({"DC_A": 100.0}), replications=1, profile=FLAT)
    a_spiked = spiked[(spiked["chain"] == "order")]["fail_multiplier"].iloc[0]
    a_both = both[(both["chain"] == "order")]["fail_multiplier"].iloc[0]
    # week 1 flows at 100/h, so D(t) = 16800 + 150 (t - 169) once pick saturates at step 168; week 2 arrivals
    # give A(t - 24) = 16800 + 100 m (t - 191); overdue at the last step t = 335 iff 100 m 144 > 150 x 166
    m_star = 150.0 * 166 / (100.0 * 144)
    assert m_star < a_spiked <= m_star + 0.01
    assert a_spiked > a_both


def test_bad_arguments():
    with pytest.raises(ValueError, match="grid"):
        stress_test(tiny(), plan_of({"DC_A": 10.0}), grid=1)
