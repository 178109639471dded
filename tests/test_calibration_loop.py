"""The calibration reaches every predictor: the simulator reproduces the actuals it was fitted to, the MILP
sees the congestion as an exact capacity derate; backtest, track and module status on real numbers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from engine.calibration import (
    apply_calibration,
    congestion_derate,
    effective_capacity,
    fit,
    save_calibration,
)
from engine.simulator import Profile, prepare, run_setup
from instances.generator import tiny
from tests.actuals_data import CHAINS, generate_actuals

DAYS = 28
PLANTED_CONGESTION = 0.2
PLANTED = {("DC_A", "inbound_dock"): 0.9, ("DC_A", "putaway"): 0.82, ("DC_A", "pick"): 0.86, ("DC_A", "pack"): 0.93,
           ("DC_A", "outbound_dock"): 0.95, ("DC_B", "inbound_dock"): 0.97, ("DC_B", "putaway"): 0.78,
           ("DC_B", "pick"): 0.91, ("DC_B", "pack"): 0.84, ("DC_B", "outbound_dock"): 0.9}
FLAT_DAY = Profile(intraday=(1.0,) * 24, weekday=(1.0,) * 7, dock_slots=tuple(float(h) for h in range(24)),
                   open_hour=0.0, noise="deterministic")


def daily_tiny():
    """tiny with 28 daily periods, every stage open around the clock (same units/day), labour not binding."""
    inst = tiny()
    res = inst.resources.copy()
    flow = res["stage"] != "storage"
    res.loc[flow, "rate_per_hour"] *= res.loc[flow, "hours_per_day"] / 24.0
    res.loc[flow, "hours_per_day"] = 24.0
    lab = inst.labor.assign(max_headcount=inst.labor["max_headcount"] * 100)
    meta = {**inst.meta, "horizon": {"start": "2026-01-05", "periods": DAYS, "period_days": 1}}
    return inst.replace(meta=meta, resources=res, labor=lab)


def test_congestion_derate_is_the_sustainable_share():
    # rho + kappa rho^2 = 1: kappa 0.2 -> (sqrt(1.8) - 1) / 0.4 = 0.854102; kappa 0.5 -> sqrt(3) - 1
    assert congestion_derate(0.2) == pytest.approx(0.8541020, abs=1e-6)
    assert congestion_derate(0.5) == pytest.approx(np.sqrt(3) - 1)
    assert congestion_derate(0.0) == 1.0
    for kappa in (0.1, 0.3, 0.7):
        rho = congestion_derate(kappa)
        # offered exactly rho C a day, the congested capacity processes exactly that; a little more, it cannot
        assert effective_capacity(1000.0, 1.0, kappa, np.array([rho * 1000.0]))[0] == pytest.approx(rho * 1000)
        assert effective_capacity(1000.0, 1.0, kappa, np.array([rho * 1010.0]))[0] < rho * 1010


def test_milp_routes_at_most_the_congested_capacity():
    """Consolidation MILP on a tight tiny: with kappa = 0.5 no putaway stage carries more than (sqrt(3) - 1) of
    its capacity a week; the uncalibrated MILP loads some to 100 %."""
    from engine.pipeline import solve_decision

    inst = tiny()
    res = inst.resources.copy()
    res.loc[res["stage"] != "storage", "count"] *= 0.12
    inst = inst.replace(resources=res)
    put = inst.stage_capacity().set_index(["site_id", "stage"])["units_per_day"]
    peak = {}
    for kappa in (0.0, 0.5):
        cal = inst.replace(meta={**inst.meta, "calibration": {"version": "v0001", "congestion": kappa}})
        plan, _ = solve_decision(cal, "consolidation", time_limit=60)
        st = plan.tables["site_throughput"]
        peak[kappa] = max(r.inbound_units / (7 * put[(r.site_id, "putaway")]) for r in st.itertuples())
    assert peak[0.0] == pytest.approx(1.0, abs=1e-6)
    assert peak[0.5] == pytest.approx(np.sqrt(3) - 1, abs=1e-6)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """Actuals of the planted DC, the calibration fitted to them and the calibrated instance."""
    inst = daily_tiny()
    rng = np.random.default_rng(3)
    cap = inst.stage_capacity().set_index(["site_id", "stage"])["units_per_day"]
    offered = {(s, ci): min(cap[(s, k)] for k in chain) * rng.uniform(0.5, 1.05, DAYS)
               for s in ("DC_A", "DC_B") for ci, chain in enumerate(CHAINS)}
    actuals = generate_actuals(inst, PLANTED, PLANTED_CONGESTION, DAYS, seed=4, offered=offered)
    cal = fit(inst, actuals)
    folder = tmp_path_factory.mktemp("planted")
    save_calibration(folder, cal)
    return inst, offered, actuals, cal, apply_calibration(inst, folder=folder)


def test_planted_parameters_recovered(planted):
    _, _, _, cal, _ = planted
    got = cal.efficiency.set_index(["site_id", "stage"])["efficiency"]
    # stages that ever bind are identified to 0.01; a stage its chain never loads to capacity is not
    for pair, e in PLANTED.items():
        assert got[pair] == pytest.approx(e, abs=0.02), pair
    assert cal.congestion == pytest.approx(PLANTED_CONGESTION, abs=0.02)


def test_simulator_with_the_calibration_reproduces_the_actuals(planted):
    """The hourly simulator run on the calibrated instance (efficiencies in the rates, kappa in meta) matches
    the actual throughput of every site and stage over the 28 days within 2 %; the nominal twin does not."""
    inst, offered, actuals, _, calibrated = planted
    st = pd.DataFrame([{"site_id": s, "period": d + 1, "inbound_units": offered[(s, 0)][d],
                        "outbound_units": offered[(s, 1)][d]} for s in ("DC_A", "DC_B") for d in range(DAYS)])
    actual = actuals.groupby(["site_id", "stage"])["throughput"].sum()
    errors = {}
    for name, twin in (("nominal", inst), ("calibrated", calibrated)):
        res = run_setup(prepare(twin, st), np.array([1.0]), replications=1, profile=FLAT_DAY)
        sim = res.stage_period[res.stage_period["stage"] != "storage"].groupby(["site_id", "stage"])[
            "throughput"].sum()
        errors[name] = (sim.reindex(actual.index) / actual - 1.0).abs()
    assert errors["calibrated"].max() < 0.02, errors["calibrated"]
    assert errors["nominal"].max() > 0.05
