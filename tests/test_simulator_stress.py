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


def test_replication_brackets_agree_with_direct_simulation_under_noise():
    """Overdispersed noise: every replication's bracket agrees with simulating that replication alone at its
    ends (holds at holds_at, fails at fail_at), and the failure point is the mean of the replications' points
    with a Student-t interval."""
    from scipy import stats

    inst = tiny()
    plan = plan_of({"DC_A": 60.0, "DC_B": 90.0})
    prof = Profile(noise="overdispersed")
    table = stress_test(inst, plan, replications=8, max_replications=8, seed=5, profile=prof, tolerance=0.02,
                        grid=16, high=4.0)
    pts = table.attrs["replication_points"]
    assert table.attrs["replications"] == 8 and len(pts) == 2 * 2 * 8
    setup = prepare(inst, plan.tables["site_throughput"], periods=table.attrs["simulated_periods"])
    R = 8
    both = pts.dropna(subset=["holds_at", "fail_at"])
    assert len(both) >= 16
    for chain, g in both.groupby("chain"):
        mult = np.full((len(setup.site_ids), 2, R), 1.0)
        checked = np.zeros((len(setup.site_ids), R), dtype=bool)
        for r in g.itertuples():
            s = setup.site_ids.index(r.site_id)
            mult[s, :, r.replication] = (r.holds_at, r.fail_at)
            checked[s, r.replication] = True
            assert 0 < r.fail_at - r.holds_at <= 0.02
        res = run_setup(setup, mult, replications=R, seed=5, profile=prof, detail=False,
                        judge_from_period=table.attrs["periods"][0])
        first = res.replication_breaches[chain][0]  # (S, 2, R)
        assert (first[:, 0][checked] < 0).all() and (first[:, 1][checked] >= 0).all()
    for r in table.dropna(subset=["fail_multiplier"]).itertuples():
        fail = pts[(pts.site_id == r.site_id) & (pts.chain == r.chain)]["fail_at"].fillna(4.0).to_numpy()
        assert r.fail_multiplier == pytest.approx(fail.mean())
        half = stats.t.ppf(0.975, 7) * fail.std(ddof=1) / np.sqrt(8)
        assert r.half_width == pytest.approx(half) and r.ci_low == pytest.approx(fail.mean() - half)


def test_backlog_of_the_weeks_before_is_carried_into_the_spike():
    """Week 1 offers 165/h to pick stations of 150/h: it leaves a backlog (no breach yet: the oldest unit waits
    17 h). With carry-in, A(t) = 165 x 168 + 100 m (t - 167) and D(t) = 150 (t - 1); overdue at the last step
    t = 335 iff 27720 + 14400 m > 50100, i.e. m* = 1.5542. Starting week 2 empty: m* = 150 x 166 / (100 x 144)."""
    inst = two_dcs(pick_a=150.0, pack_b=150.0)
    st = pd.DataFrame({"site_id": "DC_A", "period": [1, 2], "inbound_units": 0.0,
                       "outbound_units": [165.0 * 168, 100.0 * 168]})
    plan = Plan(decision="capacity", status="optimal", tables={"site_throughput": st})
    carried = stress_test(inst, plan, spike={2: 1.0}, replications=1, profile=FLAT)
    fresh = stress_test(inst, plan, spike={2: 1.0}, replications=1, profile=FLAT, carry_in=False)
    m_carried = carried.loc[carried["chain"] == "order", "fail_multiplier"].iloc[0]
    m_fresh = fresh.loc[fresh["chain"] == "order", "fail_multiplier"].iloc[0]
    assert 22380 / 14400 < m_carried <= 22380 / 14400 + 0.01
    assert 150 * 166 / (100 * 144) < m_fresh <= 150 * 166 / (100 * 144) + 0.01
    assert carried.attrs["simulated_periods"] == [1, 2] and fresh.attrs["simulated_periods"] == [2]


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


def test_failure_points_of_two_seeds_agree_on_the_bundled_peak():
    """eu_fba black_friday: replications grow until every interval's half-width is <= 0.02; two seeds give
    overlapping intervals whose centres differ by at most 0.03, for every site and chain."""
    from engine.pipeline import plan
    from engine.scenario import load_scenario
    from instances.instance import bundled_instance_path, load_instance

    path = bundled_instance_path("eu_fba")
    res = plan(load_instance(path), load_scenario("black_friday", path), time_limit=60, simulate=False)
    a, b = (stress_test(res.instance, res.plan, seed=s).set_index(["site_id", "chain"]) for s in (0, 1))
    for t in (a, b):
        assert t.attrs["target_met"] and (t["half_width"].dropna() <= 0.02).all()
        assert t.attrs["replications"] >= 10  # the first batch of 10, grown when its interval is too wide
    both = a.merge(b, left_index=True, right_index=True, suffixes=("_a", "_b")).dropna(
        subset=["fail_multiplier_a", "fail_multiplier_b"])
    assert len(both) >= 10
    assert ((both["ci_low_a"] <= both["ci_high_b"]) & (both["ci_low_b"] <= both["ci_high_a"])).all()
    assert (both["fail_multiplier_a"] - both["fail_multiplier_b"]).abs().max() <= 0.03
