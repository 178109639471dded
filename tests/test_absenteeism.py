"""Absenteeism calibrated from actuals: the rostered hours against the hours worked give each site's absence rate
(the simulator's binomial attendance model), the calibration carries it to the simulator, which then reproduces
the actuals' throughput; actuals without rostered hours give a located message, not a crash."""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
import yaml

from engine.calibration import (
    Calibration,
    apply_calibration,
    fit_absenteeism,
    list_versions,
    pooled_absence,
    save_calibration,
)
from engine.cli import main
from engine.simulator import SHIFT_HOURS, Profile, prepare, run_setup
from instances.generator import tiny
from instances.instance import bundled_instance_path
from tests.actuals_data import generate_actuals

FLAT = Profile(intraday=(1.0,) * 24, weekday=(1.0,) * 7, noise="deterministic", cutoff_hour=None)
BIG = 1e9
PLANTED_ABSENCE = {"DC_A": 0.06, "DC_B": 0.11}
FLOW = ("inbound_dock", "putaway", "pick", "pack", "outbound_dock")


def labour_bound(weeks: int):
    """tiny's DC_A and DC_B with unlimited equipment (labour binds every stage), ``weeks`` weekly periods."""
    inst = tiny()
    res = inst.resources[inst.resources["site_id"].isin(["DC_A", "DC_B"])].copy()
    res["rate_per_hour"], res["hours_per_day"] = BIG, 24.0
    meta = {**inst.meta, "horizon": {"start": "2026-01-05", "periods": weeks, "period_days": 7}}
    return inst.replace(meta=meta, resources=res.reset_index(drop=True),
                        labor=inst.labor[inst.labor["site_id"].isin(["DC_A", "DC_B"])].reset_index(drop=True))


def saturating_volumes(weeks: int) -> pd.DataFrame:
    """Far more work than the staff can do, both chains: every stage runs at its labour capacity."""
    return pd.DataFrame([{"site_id": s, "period": p, "inbound_units": 2e5, "outbound_units": 3e5}
                         for s in ("DC_A", "DC_B") for p in range(1, weeks + 1)])


def absent_actuals(inst, weeks: int, absence: dict[str, float], seed: int) -> pd.DataFrame:
    """What the WMS of the labour-bound DC records when each day a site rosters its staffed hours in 8-hour shifts
    and each shift stays away with the site's probability (drawn here, with their own random numbers): rostered =
    the stage's staffed hours; worked = rostered x the day's share present; throughput = the stage's full-staff
    daily throughput (the simulator without absence) x the share present (labour binds every stage)."""
    full = run_setup(prepare(inst, saturating_volumes(weeks)), np.array([1.0]), replications=1, profile=FLAT).daily
    full = full[full["stage"].isin(FLOW)]
    rng = np.random.default_rng(seed)
    rows = []
    for (site, _day), g in full.groupby(["site_id", "day"]):
        n = max(round(float(g["labour_hours_staffed"].sum()) / SHIFT_HOURS), 1)
        present = 1.0 - rng.binomial(n, absence[site]) / n
        for r in g.itertuples(index=False):
            rows.append({"site_id": site, "stage": r.stage, "date": str(pd.Timestamp(r.date).date()),
                         "throughput": r.throughput * present, "labor_hours": r.labour_hours_staffed * present,
                         "backlog": 1e5, "rostered_hours": r.labour_hours_staffed})
    return pd.DataFrame(rows)


def test_planted_absence_rates_recovered():
    """26 weeks, DC_A 6 % and DC_B 11 % absent (about 32 and 28 shifts a day): the binomial maximum-likelihood rates
    are within 3 of their standard errors (0.003-0.0045) and within 0.006 of the planted ones (got 0.0596 and
    0.1061); the dispersion statistic says binomial (within 0.3 of 1); the pooled rate is the shift-weighted mean."""
    inst = labour_bound(26)
    got = fit_absenteeism(absent_actuals(inst, 26, PLANTED_ABSENCE, seed=5)).set_index("site_id")
    for site, p in PLANTED_ABSENCE.items():
        assert got.loc[site, "rate"] == pytest.approx(p, abs=min(0.006, 3 * got.loc[site, "std_error"])), site
        assert got.loc[site, "std_error"] == pytest.approx(np.sqrt(p * (1 - p) / got.loc[site, "shifts"]), rel=0.3)
        assert got.loc[site, "dispersion"] == pytest.approx(1.0, abs=0.3)
        assert got.loc[site, "days"] == 26 * 7
    shifts = got["shifts"].to_numpy(float)
    assert pooled_absence(got.reset_index()) == pytest.approx((got["rate"] * shifts).sum() / shifts.sum())


def test_absence_in_waves_shows_as_dispersion():
    """Whole-team absences (all-or-nothing blocks of 8 shifts) have the same mean but 8x the binomial variance:
    the dispersion statistic says so (about 8), the rate is still recovered."""
    rng = np.random.default_rng(9)
    rows = []
    for d in range(120):
        blocks_absent = rng.binomial(4, 0.1)  # 4 teams of 8 shifts, each away with probability 0.1
        rostered = 32 * SHIFT_HOURS
        rows.append({"site_id": "DC_A", "stage": "pick", "date": str(pd.Timestamp("2026-01-05") + pd.Timedelta(days=d)),
                     "throughput": 1.0, "labor_hours": rostered * (1 - blocks_absent / 4), "backlog": 0.0,
                     "rostered_hours": rostered})
    got = fit_absenteeism(pd.DataFrame(rows)).iloc[0]
    assert got["rate"] == pytest.approx(0.1, abs=0.03)
    assert got["dispersion"] == pytest.approx(8.0, rel=0.35)


def test_calibrated_absenteeism_makes_the_simulator_reproduce_the_actuals(tmp_path):
    """Four weeks of the labour-bound DC with the planted absence: the rates fitted from its actuals, stored in a
    calibration version and applied, make the hourly simulator (20 replications, its own attendance draws) match
    the actual throughput of every site and stage within 2 %; the twin without absenteeism overstates it by
    about the absence rate."""
    weeks = 4
    inst = labour_bound(weeks)
    actuals = absent_actuals(inst, weeks, PLANTED_ABSENCE, seed=6)
    absence = fit_absenteeism(actuals)
    pairs = actuals[["site_id", "stage"]].drop_duplicates().reset_index(drop=True)
    cal = Calibration(pairs.assign(efficiency=1.0), 0.0, {}, {}, pd.DataFrame(), ("2026-01-05", "2026-02-01"),
                      weeks * 7, 0.0, effects={"absenteeism": pooled_absence(absence)}, absenteeism=absence)
    vid = save_calibration(tmp_path, cal)
    stored = yaml.safe_load((tmp_path / "calibration" / f"{vid}.yaml").read_text())
    assert {r["site_id"]: r["rate"] for r in stored["absenteeism"]} == pytest.approx(
        dict(zip(absence["site_id"], absence["rate"])), abs=1e-6)
    calibrated = apply_calibration(inst, folder=tmp_path)
    assert calibrated.meta["calibration"]["absenteeism_by_site"] == pytest.approx(
        dict(zip(absence["site_id"], absence["rate"])), abs=1e-6)
    actual = actuals.groupby(["site_id", "stage"])["throughput"].sum()
    errors = {}
    for name, twin in (("nominal", inst), ("calibrated", calibrated)):
        res = run_setup(prepare(twin, saturating_volumes(weeks)), np.array([1.0]), replications=20, seed=3,
                        profile=FLAT)
        sp = res.stage_period
        sim = sp[sp["stage"].isin(FLOW)].groupby(["site_id", "stage"])["throughput"].sum()
        errors[name] = sim.reindex(actual.index) / actual - 1.0
    assert errors["calibrated"].abs().max() < 0.02, errors["calibrated"]
    for site, p in PLANTED_ABSENCE.items():  # without absenteeism the twin ships about 1 / (1 - p) - 1 too much
        assert errors["nominal"][site].min() > 0.6 * p, errors["nominal"]
    # each site is drawn with its own rate: the profile's single rate overrides the calibration's
    uniform = run_setup(prepare(calibrated, saturating_volumes(weeks)), np.array([1.0]), replications=20, seed=3,
                        profile=Profile(**{**FLAT.__dict__, "absenteeism": 0.0}))
    sp = uniform.stage_period
    assert sp[sp["stage"].isin(FLOW)].groupby(["site_id", "stage"])["throughput"].sum().reindex(
        actual.index).div(actual).min() > 1.04


def test_rostered_hours_validated_and_required_for_absenteeism(tmp_path, capsys):
    """Worked above rostered is a located FILE:ROW:COLUMN error; `calibrate --absenteeism` on actuals without
    rostered hours is a clear `FILE: rostered_hours:` message, exit 2, nothing written; with them it fits and
    writes the rates."""
    path = tmp_path / "tiny"
    shutil.copytree(bundled_instance_path("tiny"), path)
    inst = tiny()
    eff = {(s, k): 0.9 for s in ("DC_A", "DC_B") for k in FLOW}
    plain = generate_actuals(inst, eff, 0.1, 21, seed=2)
    no_roster = tmp_path / "no_roster.csv"
    plain.to_csv(no_roster, index=False)
    assert main(["calibrate", str(path), "--actuals", str(no_roster), "--absenteeism"]) == 2
    err = capsys.readouterr().err
    assert f"{no_roster}: rostered_hours: absenteeism cannot be fitted" in err and "Traceback" not in err
    assert list_versions(path) == []
    with_roster = generate_actuals(inst, eff, 0.1, 21, seed=2, absence={"DC_A": 0.05, "DC_B": 0.09})
    bad = with_roster.copy()
    bad.loc[3, "labor_hours"] = bad.loc[3, "rostered_hours"] + 1.0
    bad_file = tmp_path / "bad.csv"
    bad.to_csv(bad_file, index=False)
    assert main(["calibrate", str(path), "--actuals", str(bad_file), "--absenteeism"]) == 2
    err = capsys.readouterr().err
    assert f"{bad_file}:4:labor_hours:" in err and "exceed the" in err and "rostered" in err
    good_file = tmp_path / "good.csv"
    with_roster.to_csv(good_file, index=False)
    assert main(["calibrate", str(path), "--actuals", str(good_file), "--absenteeism"]) == 0
    out = capsys.readouterr().out
    assert "absenteeism:" in out and "DC_A:" in out and "DC_B:" in out
    stored = yaml.safe_load((path / "calibration" / "v0001.yaml").read_text())
    rates = {r["site_id"]: r["rate"] for r in stored["absenteeism"]}
    assert rates["DC_A"] == pytest.approx(0.05, abs=0.02) and rates["DC_B"] == pytest.approx(0.09, abs=0.02)
    assert stored["effects"]["absenteeism"] == pytest.approx(pooled_absence(pd.DataFrame(stored["absenteeism"])),
                                                             abs=1e-6)


def test_the_milp_plans_the_hours_to_roster():
    """With a calibration's absenteeism the MILP's labour productivity is per rostered hour, (1 - p) x the
    standard: on tiny's consolidation every labour hour planned at a site is the hours its throughput needs
    (units / productivity, by hand) / (1 - p), with the site's own rate (DC_A 10 %) or the pooled one (5 %)."""
    from engine.pipeline import solve_decision

    inst = tiny()
    lab = inst.labor.set_index("site_id")

    def ratios(calibration):
        plan, _ = solve_decision(inst.replace(meta={**inst.meta, "calibration": calibration}), "consolidation",
                                 time_limit=60)
        st = plan.tables["site_throughput"].merge(plan.tables["labor"], on=["site_id", "period"])
        p = lab.loc[st["site_id"]].reset_index(drop=True)
        need = (st["inbound_units"] * (1 / p["productivity_inbound_dock"] + 1 / p["productivity_putaway"])
                + st["outbound_units"] * (1 / p["productivity_pick"] + 1 / p["productivity_pack"]
                                          + 1 / p["productivity_outbound_dock"]))
        worked = st[["regular_hours", "overtime_hours", "temp_hours"]].sum(axis=1)
        busy = need > 1.0
        assert busy.sum() >= 2
        return st.loc[busy, "site_id"], (worked / need)[busy]

    base = {"version": "v0001", "congestion": 0.0, "effects": {"absenteeism": 0.05}}
    sites, ratio = ratios({**base, "absenteeism_by_site": {"DC_A": 0.1}})
    expected = np.where(sites == "DC_A", 1 / 0.9, 1 / 0.95)
    np.testing.assert_allclose(ratio.to_numpy(), expected, rtol=1e-6)
    _, pooled = ratios(base)
    np.testing.assert_allclose(pooled.to_numpy(), 1 / 0.95, rtol=1e-6)
    _, none = ratios({"version": "v0001", "congestion": 0.0})
    np.testing.assert_allclose(none.to_numpy(), 1.0, rtol=1e-6)


def test_a_site_whose_absence_moved_is_flagged_at_the_next_calibration(tmp_path, capsys):
    """January: DC_A 5 %, DC_B 9 % absent. February: DC_B's absence rises to 16 %, DC_A unchanged. The February
    calibration flags DC_B's absence (change beyond 1.96 standard errors of the difference and 1 point), names
    absenteeism, and leaves DC_A alone."""
    path = tmp_path / "tiny"
    shutil.copytree(bundled_instance_path("tiny"), path)
    inst = tiny()
    eff = {(s, k): 0.9 for s in ("DC_A", "DC_B") for k in FLOW}
    jan, feb = tmp_path / "jan.csv", tmp_path / "feb.csv"
    generate_actuals(inst, eff, 0.1, 28, seed=3, absence={"DC_A": 0.05, "DC_B": 0.09}).to_csv(jan, index=False)
    generate_actuals(inst, eff, 0.1, 28, seed=4, start="2026-02-02",
                     absence={"DC_A": 0.05, "DC_B": 0.16}).to_csv(feb, index=False)
    assert main(["calibrate", str(path), "--actuals", str(jan), "--absenteeism"]) == 0
    capsys.readouterr()
    assert main(["calibrate", str(path), "--actuals", str(feb), "--absenteeism"]) == 0
    out = capsys.readouterr().out
    assert "drift: DC_B absence 2026-02-02..2026-03-01" in out and "most likely absenteeism" in out
    assert "drift: DC_A absence" not in out
    stored = yaml.safe_load((path / "calibration" / "v0002.yaml").read_text())
    moved = [d for d in stored["drift"] if d["metric"] == "absence"]
    assert [d["site_id"] for d in moved] == ["DC_B"]
    assert moved[0]["current"] == pytest.approx(0.09, abs=0.02) and moved[0]["refit"] == pytest.approx(0.16, abs=0.02)
