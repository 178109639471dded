"""Optional stochastic effects of the simulator, each against an exact or independent reference:
breakdowns (two-state Markov availability), service-time variability (a plain Lindley recursion with its own
random numbers), absenteeism (binomial attendance: expected labour capacity x (1 - p))."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.simulator import Profile, prepare, run_setup
from instances.generator import tiny

FLAT = Profile(intraday=(1.0,) * 24, weekday=(1.0,) * 7, noise="deterministic", cutoff_hour=None)
BIG = 1e9
WEEKS = 2
T = WEEKS * 168


def one_stage(rate: float, labour: bool = False):
    """DC_A bound by pick stations (``rate`` units/h around the clock); every other stage unlimited."""
    inst = tiny()
    rows = [{"site_id": "DC_A", "stage": k, "count": 1.0, "rate_per_hour": rate if k == "pick" else BIG,
             "hours_per_day": 24.0} for k in ("inbound_dock", "putaway", "pick", "pack", "outbound_dock")]
    rows.append({"site_id": "DC_A", "stage": "storage", "count": 1.0, "rate_per_hour": BIG, "hours_per_day": 24.0})
    lab = inst.labor[inst.labor["site_id"] == "DC_A"] if labour else inst.labor.iloc[:0]
    return inst.replace(resources=pd.DataFrame(rows), labor=lab)


def volumes(per_hour: float) -> pd.DataFrame:
    return pd.DataFrame([{"site_id": "DC_A", "period": p, "inbound_units": 0.0, "outbound_units": per_hour * 168}
                         for p in range(1, WEEKS + 1)])


def pick_throughput(res) -> float:
    sp = res.stage_period
    return float(sp[(sp["stage"] == "pick")]["throughput"].sum())


def test_breakdowns_match_the_markov_availability():
    """A saturated pick stage of 100 units/h, MTBF 20 h, MTTR 4 h, hourly steps: p_f = 1 - e^-0.05,
    p_r = 1 - e^-0.25; starting up, E[up at step t] = pi + (1 - pi) (1 - p_f - p_r)^t with pi = p_r/(p_f + p_r)
    (0.8194). Mean shipped over 200 replications within 3 standard errors of 100 x sum_t E[up]."""
    inst = one_stage(100.0)
    prof = Profile(**{**FLAT.__dict__, "mtbf_hours": 20.0, "mttr_hours": 4.0})
    setup = prepare(inst, volumes(1000.0))
    R = 200
    res = run_setup(setup, np.array([1.0]), replications=R, seed=3, profile=prof)
    pf, pr = 1 - np.exp(-1 / 20), 1 - np.exp(-1 / 4)
    pi = pr / (pf + pr)
    t = np.arange(1, T + 1)
    exact = 100.0 * (pi + (1 - pi) * (1 - pf - pr) ** t).sum()
    got = pick_throughput(res)
    # the sd of a replication's up-time over T steps: Markov variance ~ T pi (1 - pi) (1 + lam) / (1 - lam)
    lam = 1 - pf - pr
    se = 100.0 * np.sqrt(T * pi * (1 - pi) * (1 + lam) / (1 - lam) / R)
    assert abs(got - exact) < 3 * se, (got, exact, se)
    assert got < 0.86 * 100 * T  # it bites: far below the 33,600 units of an always-up stage
    off = run_setup(setup, np.array([1.0]), replications=4, seed=3, profile=FLAT)
    assert pick_throughput(off) == pytest.approx(100.0 * (T - 0))  # off by default: the full capacity


def test_service_variability_against_an_independent_lindley_recursion():
    """Pick at 100 units/h x gamma(cv 0.5) per hour, 80 orders an hour (deterministic): the simulator's mean
    pick backlog agrees with a plain Lindley recursion q_t = max(0, q_{t-1} + 80 - 100 G_t) run with its own
    random numbers, within 4 combined standard errors."""
    inst = one_stage(100.0)
    cv = 0.5
    prof = Profile(**{**FLAT.__dict__, "service_cv": cv})
    R = 200
    res = run_setup(prepare(inst, volumes(80.0)), np.array([1.0]), replications=R, seed=11, profile=prof)
    sp = res.stage_period[res.stage_period["stage"] == "pick"]
    sim_mean = float(sp["backlog_mean"].mean())
    rng = np.random.default_rng(12345)
    k = 1 / cv**2
    g = rng.gamma(k, 1 / k, size=(R, T))
    q = np.zeros(R)
    qs = np.empty((R, T))
    for t_ in range(T):
        q = np.maximum(q + 80.0 - 100.0 * g[:, t_], 0.0)
        qs[:, t_] = q
    ref = qs.mean(axis=1)
    se = ref.std(ddof=1) / np.sqrt(R)
    assert abs(sim_mean - ref.mean()) < 4 * np.sqrt(2) * se, (sim_mean, ref.mean(), se)
    assert sim_mean > 5.0  # it bites: without variability the queue never forms (80 < 100)
    assert float(sp["throughput"].sum()) == pytest.approx(80.0 * T, rel=0.01)  # all work done, conservation


def test_absenteeism_scales_labour_capacity_by_attendance():
    """Labour-bound pick (equipment unlimited): staffed hours x productivity per hour; each day a binomial share
    of round(staffed / 8) shifts turns up with probability 0.9, so the expected throughput of the saturated
    stage is 0.9 x its labour capacity exactly; within 3 standard errors over 100 replications."""
    inst = one_stage(BIG, labour=True)
    setup = prepare(inst, volumes(5000.0))
    prof = Profile(**{**FLAT.__dict__, "absenteeism": 0.1})
    full = run_setup(setup, np.array([1.0]), replications=1, seed=1, profile=FLAT)
    labour_cap = pick_throughput(full)
    R = 100
    res = run_setup(setup, np.array([1.0]), replications=R, seed=1, profile=prof)
    got = pick_throughput(res)
    staffed_day = float(full.daily[full.daily["stage"] == "pick"]["labour_hours_staffed"].iloc[0])
    # pick's share of the site's staffed hours; the site's shifts a day n = round(site hours / 8)
    site_hours = float(full.daily[(full.daily["day"] == 0)]["labour_hours_staffed"].sum())
    n = max(round(site_hours / 8), 1)
    se = labour_cap * np.sqrt(0.9 * 0.1 / n / 14) / np.sqrt(R)  # 14 independent days per replication
    assert abs(got - 0.9 * labour_cap) < 3 * se + 1e-6, (got, 0.9 * labour_cap, se, staffed_day)


def test_calibrated_breakdowns_reach_the_simulator_and_the_milp():
    """A calibration's effects in ``meta['calibration']`` switch breakdowns on exactly as the Profile does, and
    derate the MILP's capacity by the availability MTBF / (MTBF + MTTR) (times the congestion derate)."""
    from engine.calibration import calibrated_derate, congestion_derate

    inst = one_stage(100.0)
    cal = inst.replace(meta={**inst.meta, "calibration": {"version": "v0001", "congestion": 0.0,
                                                          "effects": {"mtbf_hours": 20.0, "mttr_hours": 4.0}}})
    by_profile = run_setup(prepare(inst, volumes(1000.0)), np.array([1.0]), replications=5, seed=2,
                           profile=Profile(**{**FLAT.__dict__, "mtbf_hours": 20.0, "mttr_hours": 4.0}))
    by_calibration = run_setup(prepare(cal, volumes(1000.0)), np.array([1.0]), replications=5, seed=2, profile=FLAT)
    assert pick_throughput(by_calibration) == pick_throughput(by_profile) < 0.9 * 100 * T
    assert by_calibration.params["effects"] == {"mtbf_hours": 20.0, "mttr_hours": 4.0}
    derate = calibrated_derate(cal)
    assert derate[("DC_A", "pick")] == pytest.approx(20.0 / 24.0)
    cal2 = cal.replace(meta={**cal.meta, "calibration": {**cal.meta["calibration"], "congestion": 0.2}})
    assert calibrated_derate(cal2)[("DC_A", "pack")] == pytest.approx(20.0 / 24.0 * congestion_derate(0.2))


@pytest.mark.parametrize("load,cutoff,pack_rate,seed", [(1.1, None, 60.0, 1), (1.08, 20.0, 60.0, 2),
                                                        (1.1, None, 50.0, 3), (1.05, 20.0, 50.0, 5)])
def test_reported_shortfall_added_clears_the_breach(load, cutoff, pack_rate, seed):
    """Four breaking cases (overdispersed noise, 16-hour stages, with and without a shipping cut-off; pick alone
    limiting, or pick and pack alike): adding the reported shortfall_units *through the instance* (more
    equipment: count + shortfall / (rate x hours), at the reported stage, or at every stage of the chain when
    the scope is ``chain``) clears the breach; 95 % of it does not (the amount is the least, to 1 %)."""
    from engine.simulator import CHAINS, STAGES_SIM, simulate_volumes

    inst = tiny()
    res = inst.resources.copy()
    res.loc[res["stage"] != "storage", "hours_per_day"] = 16.0
    res.loc[(res["site_id"] == "DC_A") & (res["stage"] == "pack"), "rate_per_hour"] = pack_rate
    inst = inst.replace(resources=res, labor=inst.labor.iloc[:0])
    prof = Profile(noise="overdispersed", cutoff_hour=cutoff)
    pick_per_day = 10 * 40.0 * 16  # DC_A's pick stations
    st = pd.DataFrame([{"site_id": "DC_A", "period": p, "inbound_units": 0.0,
                        "outbound_units": load * pick_per_day * 7} for p in (1, 2)])
    kw = {"replications": 8, "seed": seed, "profile": prof}
    sim = simulate_volumes(inst, st, **kw)
    assert not sim.verdict.feasible
    v = sim.verdict
    row = sim.breaches[(sim.breaches["site_id"] == v.site_id) & (sim.breaches["chain"] == v.chain)].iloc[0]
    assert row["cleared"] and v.shortfall_units == pytest.approx(row["shortfall_units"])
    assert row["shortfall_scope"] == ("stage" if pack_rate > 50 else "chain")
    stages = [v.stage] if row["shortfall_scope"] == "stage" else [STAGES_SIM[k] for k in CHAINS[v.chain]]

    def with_extra(units: float) -> bool:
        r = inst.resources.copy()
        for stage in stages:
            at = (r["site_id"] == v.site_id) & (r["stage"] == stage)
            r.loc[at, "count"] += units / float((r.loc[at, "rate_per_hour"] * r.loc[at, "hours_per_day"]).iloc[0])
        out = simulate_volumes(inst.replace(resources=r), st, clear_shortfall=False, **kw)
        b = out.breaches
        return b[(b["site_id"] == v.site_id) & (b["chain"] == v.chain)].empty

    assert with_extra(v.shortfall_units)
    assert not with_extra(0.95 * v.shortfall_units)


def test_one_shipped_figure():
    """The site table's shipped_units is the stage table's outbound-dock throughput (all replications), also
    with noise and more than 10 replications (the cycle-time subsample no longer counts units)."""
    from engine.simulator import simulate_volumes

    inst = tiny()
    st = pd.DataFrame([{"site_id": s, "period": p, "inbound_units": 20000.0, "outbound_units": v}
                       for s, v in (("DC_A", 30000.0), ("DC_B", 26000.0)) for p in (1, 2)])
    res = simulate_volumes(inst, st, replications=24, seed=4, profile=Profile(noise="overdispersed"))
    sp = res.stage_period[res.stage_period["stage"] == "outbound_dock"].groupby("site_id")["throughput"].sum()
    site = res.site.set_index("site_id")["shipped_units"]
    for s in ("DC_A", "DC_B"):
        assert site[s] == pytest.approx(sp[s], rel=1e-12)
