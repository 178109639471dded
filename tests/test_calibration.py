"""Calibration: known efficiencies and congestion recovered from simulator-generated actuals with noise;
drift fires on a changed regime (naming the parameter) and not on noise; versions never touch the tables."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.calibration import (
    apply_calibration,
    calibrate,
    calibration_version,
    detect_drift,
    effective_capacity,
    fit,
    list_versions,
)
from engine.cli import main
from instances.instance import bundled_instance_path, load_instance
from tests.actuals_data import generate_actuals

TINY = bundled_instance_path("tiny")
STAGES = ("inbound_dock", "putaway", "pick", "pack", "outbound_dock")
PAIRS = [(s, k) for s in ("DC_A", "DC_B") for k in STAGES]
TRUE_CONGESTION = 0.2


@pytest.fixture(scope="module")
def inst():
    return load_instance(TINY)


@pytest.fixture(scope="module")
def true_efficiency():
    rng = np.random.default_rng(11)
    return dict(zip(PAIRS, np.round(rng.uniform(0.72, 1.0, len(PAIRS)), 3)))


@pytest.fixture(scope="module")
def calibrated(inst, true_efficiency):
    return fit(inst, generate_actuals(inst, true_efficiency, TRUE_CONGESTION, 42, seed=1))


def test_effective_capacity_hand_computed():
    # N = 1000/day, e = 0.8, kappa = 0.2: a = 400 -> u = 0.5 -> 800 (1 - 0.05); a >= 800 -> u = 1 -> 640
    c = effective_capacity(1000.0, 0.8, 0.2, np.array([400.0, 800.0, 1500.0]))
    assert c == pytest.approx([760.0, 640.0, 640.0])


def test_recovers_known_parameters(calibrated, true_efficiency):
    got = calibrated.efficiency.set_index(["site_id", "stage"])["efficiency"]
    for pair, e in true_efficiency.items():
        assert got[pair] == pytest.approx(e, abs=0.01), pair
    assert calibrated.congestion == pytest.approx(TRUE_CONGESTION, abs=0.02)
    for metric in ("throughput", "labor_hours"):
        assert calibrated.error_after[metric] < 0.015 < calibrated.error_before[metric]
    assert calibrated.error_after["backlog"] < calibrated.error_before["backlog"] / 10


def test_no_drift_on_noise_alone(inst, calibrated, true_efficiency):
    for seed in (5, 6):
        later = generate_actuals(inst, true_efficiency, TRUE_CONGESTION, 28, seed=seed, start="2026-02-16")
        assert detect_drift(inst, later, calibrated, window=7, threshold=0.05).empty


def test_drift_names_site_stage_and_efficiency(inst, calibrated, true_efficiency):
    changed = dict(true_efficiency)
    changed[("DC_B", "pick")] = round(changed[("DC_B", "pick")] * 0.88, 3)  # pickers 12 % slower
    later = generate_actuals(inst, changed, TRUE_CONGESTION, 28, seed=7, start="2026-02-16")
    drift = detect_drift(inst, later, calibrated, window=7, threshold=0.05)
    assert drift[["site_id", "stage"]].values.tolist() == [["DC_B", "pick"]]
    row = drift.iloc[0]
    assert row["parameter"] == "efficiency" and row["rel_error"] > 0.05
    assert row["refit"] == pytest.approx(changed[("DC_B", "pick")], abs=0.02)


def test_drift_names_congestion_when_every_busy_day_slows(inst, calibrated, true_efficiency):
    later = generate_actuals(inst, true_efficiency, 0.45, 28, seed=8, start="2026-02-16")
    drift = detect_drift(inst, later, calibrated, window=7, threshold=0.05)
    # downstream stages of a chain are fed by their (slowed) head: the stages that bind drift
    assert len(drift) >= 4 and (drift["parameter"] == "congestion").mean() >= 0.8
    assert drift.loc[drift["parameter"] == "congestion", "refit"].median() == pytest.approx(0.45, abs=0.05)


def test_versions_history_and_apply(tmp_path, inst, true_efficiency):
    path = tmp_path / "tiny"
    shutil.copytree(TINY, path)
    tables_before = {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()}
    first = tmp_path / "jan.csv"
    generate_actuals(inst, true_efficiency, TRUE_CONGESTION, 21, seed=2).to_csv(first, index=False)
    changed = {**true_efficiency, ("DC_A", "pack"): 0.6}
    second = tmp_path / "feb.csv"
    generate_actuals(inst, changed, TRUE_CONGESTION, 21, seed=3, start="2026-02-02").to_csv(second, index=False)
    c1 = calibrate(path, first)
    c2 = calibrate(path, second)
    assert (c1.version, c2.version) == ("v0001", "v0002") and list_versions(path) == ["v0001", "v0002"]
    assert c1.drift.empty and c2.drift[["site_id", "stage"]].values.tolist() == [["DC_A", "pack"]]
    hist = pd.read_csv(path / "calibration" / "history.csv")
    assert hist["version"].tolist() == ["v0001", "v0002"] and hist["drift_flags"].tolist() == [0, 1]
    assert {p.name: p.read_bytes() for p in path.iterdir() if p.is_file()} == tables_before
    base = load_instance(path)
    assert calibration_version(base) is None
    latest = apply_calibration(base)
    assert calibration_version(latest) == "v0002"
    e = c2.efficiency.set_index(["site_id", "stage"])["efficiency"]
    r0 = base.resources.set_index(["site_id", "stage"])["rate_per_hour"]
    r1 = latest.resources.set_index(["site_id", "stage"])["rate_per_hour"]
    assert r1[("DC_A", "pack")] == pytest.approx(r0[("DC_A", "pack")] * e[("DC_A", "pack")], rel=1e-5)
    assert r1[("DC_C", "pack")] == r0[("DC_C", "pack")]  # not observed: unchanged
    p0 = base.labor.set_index("site_id")["productivity_pick"]
    p1 = latest.labor.set_index("site_id")["productivity_pick"]
    assert p1["DC_B"] == pytest.approx(p0["DC_B"] * e[("DC_B", "pick")], rel=1e-5)
    assert calibration_version(apply_calibration(base, "v0001")) == "v0001"


def test_cli_calibrate_ingested_example_and_bad_actuals(tmp_path, capsys):
    from engine.ingest import ingest

    raw = Path(__file__).resolve().parents[1] / "instances" / "raw" / "wms_b"
    out = tmp_path / "benelux"
    ingest(raw / "mapping.yaml", raw, out)
    assert main(["calibrate", str(out)]) == 0
    text = capsys.readouterr().out
    assert "calibration v0001" in text and "congestion coefficient" in text
    hist = pd.read_csv(out / "calibration" / "history.csv")
    assert (hist["after_throughput"] < hist["before_throughput"]).all()
    bad = tmp_path / "bad.csv"
    pd.read_csv(out / "actuals.csv").assign(site_id=lambda d: d["site_id"].replace("DC_VENLO", "DC_VENL0")).to_csv(
        bad, index=False)
    assert main(["calibrate", str(out), "--actuals", str(bad), "--no-write"]) == 2
    err = capsys.readouterr().err
    assert f"{bad}:" in err and ":site_id: no resources for DC_VENL0/inbound_dock" in err
    assert list_versions(out) == ["v0001"]
