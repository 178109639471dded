"""Ingestion: both example export sets ingest into valid instances; every class of bad input is reported
against its file and row, all in one pass, and leaves nothing behind."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.cli import main
from engine.ingest import IngestError, ingest
from engine.ingest.productivity import normalise, standard_minutes
from engine.ingest.units import UnitError, conversion_factor
from instances.instance import load_instance

RAW = Path(__file__).resolve().parents[1] / "instances" / "raw"
A, B = RAW / "wms_a", RAW / "wms_b"


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count), encoding="utf-8")


def _errors(exc: pytest.ExceptionInfo) -> list[str]:
    return [str(f) for f in exc.value.report.errors]


def _nothing_left(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]


# -- units and the productivity standard ------------------------------------------------------------
def test_unit_conversions_and_mismatch():
    assert conversion_factor("lb", "kg") == pytest.approx(0.45359237)
    assert conversion_factor("ft3", "m3") == pytest.approx(0.3048**3)
    assert conversion_factor("ft³", "m3") == pytest.approx(0.3048**3)
    assert conversion_factor("in", "cm") == pytest.approx(2.54)
    assert conversion_factor("min/day", "h/day") == pytest.approx(1 / 60)
    assert conversion_factor("EA/MIN", "units/(resource unit * h)") == pytest.approx(60.0)
    assert conversion_factor("GBP/h", "currency/h", {"GBP": 1.17}) == pytest.approx(1.17)
    with pytest.raises(UnitError, match="mismatch"):
        conversion_factor("lb", "m3")
    with pytest.raises(UnitError, match="unknown unit"):
        conversion_factor("furlong", "km")


def test_standard_minutes_hand_computed():
    # manual pick: 1.55 min/line, 1.6 units/line, 45 m walk, complexity 1.05; v = 60 m/min, beta = 0.15
    m = pd.DataFrame({"site_id": ["S"], "stage": ["pick"], "minutes_per_line": [1.55], "units_per_line": [1.6],
                      "travel_m_per_line": [45.0], "complexity": [1.05], "lines": [100.0]})
    kappa = 1.05 * (1 + 0.15 * 0.6)
    h = (1.55 - 0.75) / kappa
    assert standard_minutes(m).iloc[0] == pytest.approx(h)
    out = normalise(m, {"reference_units_per_line": 1.5, "reference_complexity": 1.0})
    assert out["standard_min_per_line"].iloc[0] == pytest.approx(h)
    assert out["units_per_labour_hour"].iloc[0] == pytest.approx(60 * 1.5 / (h * 1.075 + 0.75))
    # no reference profile: a single row returns exactly the observed 60 u / t
    assert normalise(m)["units_per_labour_hour"].iloc[0] == pytest.approx(60 * 1.6 / 1.55)


def test_manual_and_automated_sites_comparable():
    """The same handling speed behind different travel and line sizes gives the same standard minutes."""
    h, beta, v = 0.4, 0.15, 60.0
    rows = []
    for site, u, d, c in (("MANUAL", 1.8, 50.0, 1.0), ("AUTO", 1.1, 0.0, 1.0), ("FRAGILE", 1.0, 20.0, 1.3)):
        t = h * c * (1 + beta * (u - 1)) + d / v
        rows.append({"site_id": site, "stage": "pick", "minutes_per_line": t, "units_per_line": u,
                     "travel_m_per_line": d, "complexity": c, "lines": 1.0})
    out = normalise(pd.DataFrame(rows), {"reference_units_per_line": 1.0, "reference_complexity": 1.0})
    assert np.allclose(out["standard_min_per_line"], h)
    # productivity then differs only by each site's own travel
    assert out.set_index("site_id")["units_per_labour_hour"].to_dict() == pytest.approx(
        {"MANUAL": 60 / (h + 50 / v), "AUTO": 60 / h, "FRAGILE": 60 / (h + 20 / v)})


# -- the two example export sets --------------------------------------------------------------------
def test_wms_a_ingests_with_conversions(tmp_path):
    out = tmp_path / "uk"
    res = ingest(A / "mapping.yaml", A, out)
    inst = load_instance(out)  # the written folder passes validation on its own
    assert res.report.ok and set(inst.dcs["id"]) == {"DC_LONDON", "DC_MANCHESTER", "DC_BIRMINGHAM"}
    assert inst.sites.set_index("id").loc["DC_BIRMINGHAM", "status"] == "candidate"
    assert inst.sites.set_index("id").loc["DC_LONDON", "fixed_cost_per_year"] == pytest.approx(1_450_000 * 1.17)
    items = pd.read_csv(A / "items.csv", dtype={"ITEM_NBR": str}).set_index("ITEM_NBR")
    prod = inst.products.set_index("id")
    assert prod.loc["SKU_PHONECASE", "unit_weight_kg"] == pytest.approx(items.loc["100101", "WT_LB"] * 0.45359237)
    assert prod.loc["SKU_DUVET", "unit_volume_m3"] == pytest.approx(items.loc["100103", "CUBE_FT3"] * 0.3048**3)
    assert prod.loc["SKU_KETTLE", "unit_value"] == pytest.approx(items.loc["100102", "UNIT_COST_GBP"] * 1.17)
    res_t = inst.resources.set_index(["site_id", "stage"])
    eq = pd.read_csv(A / "equipment.csv").set_index(["FAC_CD", "PROC_CD"])
    assert res_t.loc[("DC_LONDON", "pick"), "rate_per_hour"] == pytest.approx(eq.loc[("LHR1", "PCK"), "RATE"] * 60)
    assert res_t.loc[("DC_LONDON", "outbound_dock"), "rate_per_hour"] == pytest.approx(
        eq.loc[("LHR1", "SHP"), "RATE"])  # EA/HR rows are not converted
    assert res_t.loc[("DC_MANCHESTER", "storage"), "count"] == 12000
    # demand: order lines summed per zone, product and week; late-Sunday local orders stay in their week
    orders = pd.read_csv(A / "orders.csv")
    assert inst.demand["quantity"].sum() == orders["QTY_EA"].sum()
    assert len(inst.demand) == 12 * 4 * 4
    ts = pd.to_datetime(orders["ORD_TS"])
    week1 = orders[(ts >= "2026-03-02") & (ts < "2026-03-09")]["QTY_EA"].sum()
    assert inst.demand.loc[inst.demand["period"] == 1, "quantity"].sum() == week1
    # actuals: two shifts per day combined, minutes -> hours, backlog at the end of the day
    ops = pd.read_csv(A / "daily_ops.csv")
    day = ops[(ops["FAC_CD"] == "LHR1") & (ops["PROC_CD"] == "PCK") & ops["SHIFT_START"].str.startswith("2026-02-05")]
    act = inst.actuals.set_index(["site_id", "stage", "date"]).loc[("DC_LONDON", "pick", pd.Timestamp("2026-02-05"))]
    assert act["throughput"] == day["UNITS"].sum()
    assert act["labor_hours"] == pytest.approx(day["LABOR_MIN"].sum() / 60)
    assert act["rostered_hours"] == pytest.approx(day["ROSTER_MIN"].sum() / 60)  # minutes rostered -> hours
    assert (inst.actuals["labor_hours"] <= inst.actuals["rostered_hours"]).all()
    assert act["backlog"] == day["BACKLOG_EOS"].iloc[-1]
    # labour productivity from the normalised measurements; provenance beside the tables
    assert inst.labor["productivity_pick"].notna().all()
    assert (out / "ingest" / "productivity.csv").is_file() and (out / "ingest" / "manifest.yaml").is_file()


def test_wms_b_ingests_wide_metric_utc(tmp_path):
    out = tmp_path / "benelux"
    res = ingest(B / "mapping.yaml", B, out)
    inst = load_instance(out)
    assert set(inst.sites["id"]) == {"DC_DUESSELDORF", "DC_VENLO", "PORT_ROTTERDAM"}
    res_t = inst.resources.set_index(["site_id", "stage"])
    assert len(res_t) == 12  # 2 DCs x 6 stages from the wide capacity columns; the port row has none
    assert res_t.loc[("DC_VENLO", "pick"), ["count", "rate_per_hour", "hours_per_day"]].tolist() == [14, 60, 16]
    prod = inst.products.set_index("id")
    assert prod.loc["SKU_GLASSWARE", ["unit_weight_kg", "unit_volume_m3"]].tolist() == pytest.approx([3.0, 0.012])
    assert prod.loc["SKU_GLASSWARE", "handling_class"] == "fragile"
    wide = pd.read_csv(B / "demand_weekly.csv", sep=";")
    assert inst.demand.groupby("period")["quantity"].sum().tolist() == wide.iloc[:, 2:].sum().tolist()
    # 2026-02-01T23:00Z is local midnight of 2026-02-02 in Duesseldorf (CET)
    assert inst.actuals["date"].min() == pd.Timestamp("2026-02-02")
    assert len(inst.actuals) == 2 * 5 * 28
    kpi = pd.read_csv(B / "kpi_daily.csv", sep=";", decimal=",")
    first = kpi[(kpi["site"] == "VNO") & (kpi["ts_utc"] == "2026-02-01T23:00:00Z")].iloc[0]
    act = inst.actuals.set_index(["site_id", "stage", "date"]).loc[("DC_VENLO", "pick", pd.Timestamp("2026-02-02"))]
    assert (act["labor_hours"], act["rostered_hours"]) == pytest.approx((first["PICK_hrs"], first["PICK_ros"]))
    p = res.productivity.set_index(["site_id", "stage"])
    assert p.loc[("DC_DUESSELDORF", "pick"), "observed_min_per_line"] == pytest.approx(22.8 / 60)


def test_both_exports_merge_into_one_network(tmp_path):
    res = ingest([A / "mapping.yaml", B / "mapping.yaml"], [A, B], tmp_path / "eu")
    inst = res.instance
    assert len(inst.dcs) == 5 and len(inst.zones) == 26 and len(inst.products) == 4
    # the same products from both WMSs agree within 2 %: kept once, with a warning naming both rows
    dup = [str(f) for f in res.report.warnings if "also given in" in f.message]
    assert len(dup) == 4 and "wms_b/articles.csv:1:id" in dup[0] and "wms_a/items.csv:1" in dup[0]


def test_cli_ingest(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["ingest", "--mapping", str(B / "mapping.yaml"), str(B), "--out", str(out)]) == 0
    assert "wrote benelux_wcs" in capsys.readouterr().out
    assert main(["ingest", "--mapping", str(B / "mapping.yaml"), str(B), "--out", str(out)]) == 2
    assert "exists and is not empty" in capsys.readouterr().err


# -- bad input --------------------------------------------------------------------------------------
def test_every_class_of_bad_input_in_one_pass(tmp_path):
    src = _copy(A, tmp_path)
    _edit(src / "items.csv", "HNDL_CLS", "HNDL_CLS,COLOUR")  # unmapped column (header only: ragged rows
    _edit(src / "items.csv", ",standard\n", ",standard,red\n", 2)  # get their value too)
    _edit(src / "items.csv", ",fragile\n", ",fragile,clear\n")
    _edit(src / "items.csv", ",bulky\n", ",bulky,blue\n")
    _edit(src / "customers.csv", "NCL,", "NWC,")  # unknown zone code (row 8)
    _edit(src / "items.csv", "4.85,", "4.85lb,")  # unparsable number (row 3)
    _edit(src / "orders.csv", "2026-03-03 09:11:00", "2026-03-33 09:11:00")  # unparsable timestamp (row 1)
    _edit(src / "equipment.csv", "EA/MIN", "EA/KG")  # per-row unit of the wrong dimension (row 1)
    lines = (src / "onhand.csv").read_text().splitlines()
    (src / "onhand.csv").write_text("\n".join([*lines, lines[1]]) + "\n")  # duplicate key (row 9 = row 1)
    out = tmp_path / "out"
    with pytest.raises(IngestError) as exc:
        ingest(src / "mapping.yaml", src, out)
    errs = _errors(exc)
    d = str(src)
    expected = [
        f"{d}/items.csv:0:COLOUR: unmapped column",
        f"{d}/customers.csv:8:CUST_RGN: unknown code 'NWC'",
        f"{d}/items.csv:3:WT_LB: unparsable value '4.85lb': not a number",
        f"{d}/orders.csv:1:ORD_TS: unparsable value '2026-03-33 09:11:00'",
        f"{d}/equipment.csv:1:RATE_UOM: unit mismatch: 'EA/KG'",
        f"{d}/onhand.csv:9:FAC_CD+ITEM_NBR: duplicate key (DC_LONDON, SKU_PHONECASE): also in row 1",
    ]
    for e in expected:
        assert any(x.startswith(e) for x in errs), f"missing {e!r} in\n" + "\n".join(errs)
    _nothing_left(tmp_path, out)


def test_mapping_errors_are_located_in_the_mapping(tmp_path):
    src = _copy(A, tmp_path)
    _edit(src / "mapping.yaml", "CUBE_FT3: {to: unit_volume_m3, unit: ft3}", "CUBE_FT3: {to: unit_volume_m3, unit: lb}")
    _edit(src / "mapping.yaml", "TZ: timezone", "TZ: time_zone")
    with pytest.raises(IngestError) as exc:
        ingest(src / "mapping.yaml", src, tmp_path / "out")
    errs = _errors(exc)
    assert any("mapping.yaml: sources[3].columns.CUBE_FT3: unit mismatch: 'lb' is mass" in e for e in errs), errs
    assert any("mapping.yaml: sources[0].columns.TZ: table 'sites' has no column 'time_zone'" in e for e in errs), errs
    _nothing_left(tmp_path, tmp_path / "out")


def test_missing_mapped_column_and_unknown_code(tmp_path):
    src = _copy(A, tmp_path)
    _edit(src / "mapping.yaml", "HEADCOUNT: max_headcount", "HEAD_CNT: max_headcount")
    _edit(src / "daily_ops.csv", "MAN2,PCK", "MAN2,PICK")
    with pytest.raises(IngestError) as exc:
        ingest(src / "mapping.yaml", src, tmp_path / "out")
    errs = _errors(exc)
    assert any(e.startswith(f"{src}/labor.csv:0:HEAD_CNT: column named in the mapping") for e in errs), errs
    assert any(e.startswith(f"{src}/daily_ops.csv:") and ":PROC_CD: unknown code 'PICK'" in e for e in errs), errs


def test_conflicting_master_data_across_exports(tmp_path):
    b = _copy(B, tmp_path)
    _edit(b / "articles.csv", "ART-7002;1400;", "ART-7002;1600;")  # a kettle of 1.6 kg vs 1.4 kg in WMS A
    with pytest.raises(IngestError) as exc:
        ingest([A / "mapping.yaml", b / "mapping.yaml"], [A, b], tmp_path / "out")
    errs = _errors(exc)
    assert any(e.startswith(f"{b}/articles.csv:2:id: conflicts with {A}/items.csv:2 (unit_weight_kg: 1.6")
               for e in errs), errs


def test_outside_horizon_and_semantic_failure_leave_nothing(tmp_path):
    src = _copy(A, tmp_path)
    _edit(src / "port_receipts.csv", "FXT,100101,2026-03-02", "LHR1,100101,2026-03-02")  # supply at a DC
    out = tmp_path / "out"
    with pytest.raises(IngestError) as exc:
        ingest(src / "mapping.yaml", src, out)
    assert any("supply.csv:1:site_id: (ingested instance) site 'DC_LONDON' is a DC" in e for e in _errors(exc))
    _nothing_left(tmp_path, out)
    _edit(src / "port_receipts.csv", "LHR1,100101,2026-03-02", "FXT,100101,2026-04-27")
    with pytest.raises(IngestError) as exc:
        ingest(src / "mapping.yaml", src, out)
    assert f"{src}/port_receipts.csv:1:WEEK_START: date 2026-04-27 is outside the horizon 2026-03-02..2026-03-29" \
        in _errors(exc)


def test_failure_never_touches_existing_instance(tmp_path):
    out = tmp_path / "inst"
    ingest(B / "mapping.yaml", B, out)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    bad = _copy(B, tmp_path)
    _edit(bad / "stock.csv", "DUS;ART-7001;3600", "DUS;ART-7001;lots")
    with pytest.raises(IngestError):
        ingest(bad / "mapping.yaml", bad, out, overwrite=True)
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".inst.")]
    # a valid replacement with overwrite: swapped in whole
    good = _copy(A, tmp_path / "a")
    ingest(good / "mapping.yaml", good, out, overwrite=True)
    assert load_instance(out).name == "uk_legacy"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".inst.")]
