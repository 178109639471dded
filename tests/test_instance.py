"""The Instance: round trips of every bundled instance, read-only loading, safe YAML, hand-checked accessors."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from instances.instance import (
    Instance,
    bundled_instance_path,
    generate_lanes,
    haversine_km,
    load_instance,
    validate_instance,
)
from instances.schema import TABLES
from instances.validation import InstanceValidationError

BUNDLED = ["tiny", "eu_fba", "us_west_port"]


def assert_same_instance(a: Instance, b: Instance) -> None:
    assert a.meta == b.meta
    assert set(a.tables) == set(b.tables) == set(TABLES)
    for name in TABLES:
        pd.testing.assert_frame_equal(a.tables[name], b.tables[name], obj=name)


@pytest.mark.parametrize("name", BUNDLED)
def test_round_trip_csv(name: str, tmp_path: Path) -> None:
    first = load_instance(bundled_instance_path(name))
    first.save(tmp_path / name)
    assert_same_instance(first, load_instance(tmp_path / name))


def test_round_trip_parquet_and_back(tiny: Instance, tmp_path: Path) -> None:
    tiny.save(tmp_path / "pq", fmt="parquet")
    assert not list((tmp_path / "pq").glob("*.csv"))
    from_parquet = load_instance(tmp_path / "pq")
    assert_same_instance(tiny, from_parquet)
    from_parquet.save(tmp_path / "pq")  # csv again over the parquet folder: parquet files are removed
    assert not list((tmp_path / "pq").glob("*.parquet"))
    assert_same_instance(tiny, load_instance(tmp_path / "pq"))


def snapshot(folder: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_loading_never_writes_to_the_folder(tiny_copy: Path) -> None:
    (tiny_copy / "lanes.csv").unlink()  # lanes are then generated in memory, not written
    os.utime(tiny_copy / "sites.csv", ns=(1_000_000_000, 1_000_000_000))
    before = snapshot(tiny_copy)
    dir_mtime = tiny_copy.stat().st_mtime_ns
    inst = load_instance(tiny_copy)
    validate_instance(tiny_copy)
    assert len(inst.lanes) == 24
    assert snapshot(tiny_copy) == before
    assert tiny_copy.stat().st_mtime_ns == dir_mtime


def test_lanes_generated_when_absent_match_the_rate_card(tiny: Instance, tiny_copy: Path) -> None:
    (tiny_copy / "lanes.csv").unlink()
    generated = load_instance(tiny_copy).lanes
    pd.testing.assert_frame_equal(generated, tiny.lanes)
    # 1 port x 3 DCs + 3 x 2 DC pairs + 3 DCs x 5 zones (max_lanes_per_zone 0 = all)
    assert len(generated) == 3 + 6 + 15
    # PORT_HAM -> DC_A: great circle x 1.25, cost 0.2 + 0.001/km, 600 km/day
    km = float(haversine_km(53.55, 9.99, 52.37, 9.73)) * 1.25
    row = generated.set_index(["origin_id", "destination_id"]).loc[("PORT_HAM", "DC_A")]
    assert row["distance_km"] == pytest.approx(km, abs=0.05)
    assert row["cost_per_unit"] == pytest.approx(0.2 + 0.001 * km, abs=1e-4)
    assert row["transit_days"] == pytest.approx(km / 600, abs=0.005)


def test_nearest_k_lanes_per_zone(tiny: Instance) -> None:
    meta = {**tiny.meta, "rate_card": {**tiny.meta["rate_card"], "max_lanes_per_zone": 2}}
    lanes = generate_lanes(meta, tiny.sites, tiny.zones)
    to_zones = lanes[lanes["destination_id"].isin(tiny.zones["id"])]
    assert to_zones.groupby("destination_id").size().eq(2).all()
    # Munich's two nearest DCs are DC_B (Munich itself, 0 km) and DC_C (Erfurt), not DC_A (Hanover)
    assert set(to_zones.loc[to_zones["destination_id"] == "Z_MUC", "origin_id"]) == {"DC_B", "DC_C"}


@pytest.mark.parametrize("tag", ["!!python/object/apply:os.system", "!!python/object/new:os.system",
                                 "!!python/name:os.system"])
def test_unsafe_yaml_tag_is_an_error_not_executed(tiny_copy: Path, tag: str) -> None:
    marker = tiny_copy / "pwned"
    f = tiny_copy / "instance.yaml"
    f.write_text(f.read_text() + f"hook: {tag} [\"touch {marker}\"]\n")
    with pytest.raises(InstanceValidationError) as exc:
        load_instance(tiny_copy)
    errors = [str(e) for e in exc.value.report.errors]
    assert len(errors) == 1 and errors[0].startswith("instance.yaml:") and "invalid YAML" in errors[0]
    assert "python/" in errors[0]
    assert not marker.exists()


def test_not_a_folder_is_a_located_error(tmp_path: Path) -> None:
    inst, report = validate_instance(tmp_path / "nope")
    assert inst is None
    assert [str(e) for e in report.errors] == [
        f"{tmp_path / 'nope'}:0:: not an instance folder (expected a directory with instance.yaml) nor a bundled "
        "instance; bundled instances: eu_fba, tiny, us_west_port"]
    _, report = validate_instance(Path("eu_fbb"))  # a misspelt bundled name: the closest one suggested
    assert "did you mean 'eu_fba'? bundled instances: eu_fba, tiny, us_west_port" in str(report.errors[0])


def test_haversine_known_distances() -> None:
    # one degree of latitude is 2 pi R / 360 = 111.195 km
    assert float(haversine_km(0.0, 0.0, 1.0, 0.0)) == pytest.approx(111.195, abs=1e-3)
    # a quarter of the equator
    assert float(haversine_km(0.0, 0.0, 0.0, 90.0)) == pytest.approx(np.pi * 6371.0088 / 2, rel=1e-12)
    # Hamburg - Munich, about 612 km as the crow flies; broadcasting works on arrays
    d = haversine_km(np.array([53.55, 48.14]), np.array([9.99, 11.58]), 48.14, 11.58)
    assert d[0] == pytest.approx(612, abs=3) and d[1] == 0.0


def test_tiny_accessors_by_hand(tiny: Instance) -> None:
    cap = tiny.stage_capacity().set_index(["site_id", "stage"])["units_per_day"]
    assert cap[("DC_A", "inbound_dock")] == 4 * 150 * 16  # 9 600
    assert cap[("DC_B", "pack")] == pytest.approx(8 * 0.8 * 50 * 16)  # 5 120
    assert ("DC_A", "storage") not in cap.index
    per = tiny.periods
    assert per["period"].tolist() == [1, 2]
    assert per["label"].tolist() == ["2026-W47", "2026-W48"]
    assert per["start"].tolist() == [pd.Timestamp("2026-11-16"), pd.Timestamp("2026-11-23")]
    assert list(tiny.dcs["id"]) == ["DC_A", "DC_B", "DC_C"] and list(tiny.sources["id"]) == ["PORT_HAM"]
    assert tiny.defaults["unmet_demand_penalty"] == 40.0 and tiny.defaults["truck_fixed_cost"] == 600.0
    s = tiny.summary()
    assert s["total_demand"] == (3600 + 1800 + 1500 + 1100 + 800) * 1.1 * (1 + 1.5)
    assert s["capacity_units_per_day"]["putaway"] == 6 * 60 * 16 * (1 + 0.8 + 1.2)


def test_daily_period_labels() -> None:
    from instances.instance import periods_frame

    per = periods_frame({"horizon": {"start": "2026-03-02", "periods": 3, "period_days": 1}})
    assert per["label"].tolist() == ["2026-03-02", "2026-03-03", "2026-03-04"]
    assert per["days"].tolist() == [1.0, 1.0, 1.0]


def test_replace_leaves_the_original_untouched(tiny: Instance) -> None:
    doubled = tiny.demand.assign(quantity=tiny.demand["quantity"] * 2)
    new = tiny.replace(demand=doubled)
    assert new.demand["quantity"].sum() == 2 * tiny.demand["quantity"].sum()
    assert tiny.demand["quantity"].sum() == 24200.0
    assert new.sites is tiny.sites
    with pytest.raises(KeyError):
        tiny.replace(not_a_table=doubled)
