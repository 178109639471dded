"""Peak-capacity MILP: brute-forced module / shift mix, daily peak derivation, solver agreement, plan checks."""

from __future__ import annotations

import datetime as dt
import itertools

import numpy as np
import pandas as pd
import pytest

import solvers
from formulations import capacity
from formulations.capacity import CapacityOptions, black_friday_to_cyber_monday, peak_instance
from formulations.check import check_plan
from instances.instance import Instance
from tests.test_redistribution import make_instance

SOLVE = {"time_limit": 30.0, "mip_gap": 0.0}
FLAT = CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=(), extra_shift_cost_per_day=100.0)
RATE, HOURS, BASE = 10.0, 8.0, 1.0  # pack: 1 station x 10 units/h x 8 h = 80 units/day
MODULE_CAPEX, LIFE, MAX_MODULES = 1000.0, 10.0, 4  # interest 0: 100 per module and year
PENALTY = 5.0


def one_dc(daily_orders: float, sla_hours: float = 24.0) -> Instance:
    """One DC, one zone, one weekly period of ``7 x daily_orders`` units; pack is the only limit."""
    meta = {"name": "one_dc", "currency": "EUR", "horizon": {"start": "2026-06-01", "periods": 1, "period_days": 7},
            "defaults": {"order_to_ship_sla_hours": sla_hours, "interest_rate": 0.0, "capex_life_years": LIFE,
                         "unmet_demand_penalty": PENALTY}}
    resources = [{"site_id": "DC", "stage": st, "count": 100.0, "rate_per_hour": 100.0, "hours_per_day": 16.0}
                 for st in ("inbound_dock", "putaway", "pick", "outbound_dock")]
    resources.append({"site_id": "DC", "stage": "pack", "count": BASE, "rate_per_hour": RATE, "hours_per_day": HOURS})
    return make_instance(
        meta, sites=[{"id": "DC", "name": "DC", "kind": "dc", "lat": 50.0, "lon": 10.0}],
        zones=[{"id": "Z", "lat": 50.0, "lon": 10.0}],
        products=[{"id": "P", "unit_weight_kg": 1.0, "unit_volume_m3": 0.01}],
        lanes=[{"origin_id": "DC", "destination_id": "Z", "cost_per_unit": 0.0, "transit_days": 0.5}],
        demand=[{"zone_id": "Z", "product_id": "P", "period": 1, "quantity": 7 * daily_orders}],
        resources=resources,
        expansions=[{"site_id": "DC", "stage": "pack", "module_size": 1.0, "capex": MODULE_CAPEX,
                     "max_modules": MAX_MODULES}],
    )


def brute_force_one_dc(daily_orders: float, sla_hours: float, shift_cost_per_day: float,
                       hard_sla: bool = False) -> tuple[float, int, int]:
    """Enumerate modules x extra shift; ship as much as possible each day (least backlog, least breach).

    ``hard_sla``: mixes with any breach are not allowed (cost inf when none qualifies)."""
    best = (np.inf, -1, -1)
    weights = np.clip(sla_hours / 24.0 - np.arange(3), 0.0, 1.0)
    for n, shift in itertools.product(range(MAX_MODULES + 1), (0, 1)):
        per_day = RATE * (BASE + n) * (HOURS + 8.0 * shift)
        backlog, breach, orders = 0.0, 0.0, []
        for _ in range(7):
            orders.append(daily_orders)
            backlog = max(0.0, backlog + daily_orders - per_day)
            allowed = sum(w * o for w, o in zip(weights, reversed(orders)))
            breach += max(0.0, backlog - allowed)
        cost = n * MODULE_CAPEX / LIFE + shift * shift_cost_per_day * 7 + PENALTY * breach
        if hard_sla and breach > 1e-9:
            continue
        if cost < best[0] - 1e-9:
            best = (cost, n, shift)
    return best


@pytest.mark.parametrize("daily_orders, sla_hours, shift_cost", [
    (130.0, 24.0, 100.0),   # one module (100/yr) beats a shift (700) -> 1 module
    (130.0, 24.0, 10.0),    # a cheap shift (70) beats a module
    (300.0, 12.0, 100.0),   # tight SLA, heavy peak: modules and shift together
    (500.0, 24.0, 100.0),   # beyond full expansion: the breach penalty is paid
])
def test_one_dc_matches_brute_force(daily_orders, sla_hours, shift_cost):
    inst = one_dc(daily_orders, sla_hours)
    opts = CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=(), extra_shift_cost_per_day=shift_cost)
    plan = capacity.solve(inst, opts, **SOLVE)
    cost, n, shift = brute_force_one_dc(daily_orders, sla_hours, shift_cost)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(cost, rel=1e-7, abs=1e-6)
    assert plan.cost() == pytest.approx(plan.objective, rel=1e-7, abs=1e-6)
    check_capacity_plan(inst, opts, plan)


@pytest.mark.parametrize("daily_orders, sla_hours, shift_cost", [
    (88.0, 12.0, 100.0),    # soft: 16 unit-days of breach (80) beat a module (100); hard: the module is bought
    (88.0, 12.0, 10.0),     # a cheap shift (70) meets the SLA either way
    (900.0, 12.0, 100.0),   # beyond full expansion (800/day): soft pays the breach, hard is infeasible
])
def test_hard_sla_matches_brute_force_or_is_infeasible(daily_orders, sla_hours, shift_cost):
    inst = one_dc(daily_orders, sla_hours)
    soft_opts = CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=(), extra_shift_cost_per_day=shift_cost)
    hard_opts = CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=(), extra_shift_cost_per_day=shift_cost,
                                hard_sla=True)
    soft = capacity.solve(inst, soft_opts, **SOLVE)
    hard = capacity.solve(inst, hard_opts, **SOLVE)
    cost, n, shift = brute_force_one_dc(daily_orders, sla_hours, shift_cost, hard_sla=True)
    if not np.isfinite(cost):
        assert hard.status == "infeasible" and not hard.has_solution
        assert soft.meta["sla_breach_unit_days"] > 0
        return
    assert hard.status == "optimal"
    assert hard.objective == pytest.approx(cost, rel=1e-7, abs=1e-6)
    assert hard.meta["sla_breach_unit_days"] == 0
    assert hard.objective >= soft.objective - 1e-6  # a restriction of the soft model
    assert soft.objective == pytest.approx(brute_force_one_dc(daily_orders, sla_hours, shift_cost)[0], rel=1e-7)
    check_capacity_plan(inst, hard_opts, hard)


def check_capacity_plan(inst: Instance, opts: CapacityOptions, plan) -> None:
    """Independent re-check: processed within the capacity bought, backlog recomputed, orders all assigned;
    and :func:`formulations.check.check_plan` on the daily peak finds nothing."""
    daily = peak_instance(inst, opts)
    violations = check_plan(daily, plan)
    assert violations.empty, violations.to_string()
    cap = plan.tables["capacity"]
    exp = inst.expansions.set_index(["site_id", "stage"])
    for _, row in cap.iterrows():
        key = (row["site_id"], row["stage"])
        if key in exp.index:
            assert row["modules"] <= exp.loc[key, "max_modules"] + 1e-9
            assert row["added_count"] == pytest.approx(row["modules"] * exp.loc[key, "module_size"])
        assert row["modules"] == round(row["modules"])
    res = inst.resources.set_index(["site_id", "stage"])
    thr = plan.tables["site_throughput"]
    for _, row in cap.iterrows():
        r = res.loc[(row["site_id"], row["stage"])]
        per_day = row["total_count"] * r["rate_per_hour"] * (r["hours_per_day"] + row["extra_hours_per_day"])
        done = thr[thr["site_id"] == row["site_id"]]["outbound_units"]
        assert (done <= per_day + 1e-6).all(), row.to_dict()
    # every order assigned; the backlog of each DC recomputed from orders and processed units
    a = plan.tables["assignment"]
    orders = daily.demand.groupby(["zone_id", "period"])["quantity"].sum()
    got = a.groupby(["zone_id", "period"])["quantity"].sum()
    np.testing.assert_allclose(got.reindex(orders.index).to_numpy(), orders.to_numpy(), rtol=1e-6)
    sla = float(inst.defaults["order_to_ship_sla_hours"])
    for site, t in thr.groupby("site_id"):
        intake = a[a["site_id"] == site].groupby("period")["quantity"].sum().reindex(t["period"], fill_value=0.0)
        backlog = np.cumsum(intake.to_numpy() - t["outbound_units"].to_numpy())
        assert (backlog >= -1e-6).all()
        if plan.meta["sla_breach_unit_days"] == 0:
            allowed = sum(np.clip(sla / 24 - k, 0, 1) * np.concatenate([np.zeros(k), intake.to_numpy()])[:len(intake)]
                          for k in range(3))
            assert (backlog <= allowed + 1e-6).all()


def test_peak_profile_and_black_friday_spike():
    assert black_friday_to_cyber_monday(2026) == [dt.date(2026, 11, 27) + dt.timedelta(days=k) for k in range(4)]
    assert black_friday_to_cyber_monday(2025)[0] == dt.date(2025, 11, 28)
    inst = one_dc(100.0)  # 700 units in the week of Monday 2026-06-01
    profile = (2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0)
    daily = peak_instance(inst, CapacityOptions(weekday_profile=profile, spike_dates=("2026-06-03",),
                                                spike_multiplier=3.0))
    q = daily.demand.sort_values("period")["quantity"].to_numpy()
    np.testing.assert_allclose(q, [200.0, 100.0, 300.0, 100.0, 100.0, 100.0, 0.0])
    assert list(daily.periods["days"]) == [1.0] * 7
    assert str(daily.periods["start"].iloc[0].date()) == "2026-06-01"


def test_rebalancing_moves_a_zone_to_the_spare_dc():
    """Two DCs; the near one is small. With rebalancing, part of its zone goes to the far DC instead of a module."""
    inst = one_dc(130.0)
    sites = pd.concat([inst.sites, inst.sites.assign(id="DC2", name="DC2")], ignore_index=True)
    res = pd.concat([inst.resources, inst.resources.assign(site_id="DC2", count=100.0)], ignore_index=True)
    lanes = pd.concat([inst.lanes, inst.lanes.assign(origin_id="DC2", cost_per_unit=0.01)], ignore_index=True)
    two = inst.replace(sites=sites, resources=res, lanes=lanes)
    fixed = capacity.solve(two, CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=(), allow_rebalancing=False,
                                                allow_extra_shift=False), **SOLVE)
    free = capacity.solve(two, CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=(), allow_extra_shift=False),
                          **SOLVE)
    assert fixed.objective == pytest.approx(MODULE_CAPEX / LIFE)  # stays at DC: buys one module
    # rebalanced: DC keeps the share s its 80 units/day clear within the SLA by day 7 (7 x 130 s - 560 <= 130 s,
    # s = 560/780); DC2 takes the rest of the 910 units at 0.01 per unit
    assert free.objective == pytest.approx(0.01 * 910.0 * (1 - 560 / 780), rel=1e-6)
    assert free.objective <= fixed.objective
    check_capacity_plan(two, CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=()), free)


def test_more_base_capacity_never_costs_more_and_doubling_costs_doubles():
    inst = one_dc(300.0, 12.0)
    base = capacity.solve(inst, FLAT, **SOLVE)
    res = inst.resources.copy()
    res.loc[res["stage"] == "pack", "count"] = 2.0
    bigger = capacity.solve(inst.replace(resources=res), FLAT, **SOLVE)
    assert bigger.objective <= base.objective + 1e-6
    exp = inst.expansions.assign(capex=inst.expansions["capex"] * 2)
    meta = {**inst.meta, "defaults": {**inst.meta["defaults"], "unmet_demand_penalty": 2 * PENALTY}}
    doubled = capacity.solve(inst.replace(meta=meta, expansions=exp), CapacityOptions(
        weekday_profile=(1.0,) * 7, spike_dates=(), extra_shift_cost_per_day=200.0), **SOLVE)
    assert doubled.objective == pytest.approx(2 * base.objective, rel=1e-7)
    for plan, solved_on in ((base, inst), (bigger, inst.replace(resources=res)),
                            (doubled, inst.replace(meta=meta, expansions=exp))):
        assert check_plan(peak_instance(solved_on, FLAT), plan).empty


@pytest.mark.skipif("ortools-scip" not in solvers.available(), reason="OR-Tools SCIP not available")
def test_highs_and_ortools_agree():
    inst = one_dc(300.0, 12.0)
    a = capacity.solve(inst, FLAT, solver="highs", **SOLVE)
    b = capacity.solve(inst, FLAT, solver="ortools", **SOLVE)
    assert b.objective == pytest.approx(a.objective, rel=1e-6)
    assert check_plan(peak_instance(inst, FLAT), b).empty


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="weekday_profile"):
        capacity.solve(one_dc(10.0), CapacityOptions(weekday_profile=(1.0, 1.0)))
    with pytest.raises(ValueError, match="peak_periods"):
        capacity.solve(one_dc(10.0), CapacityOptions(peak_periods=(5,)))


def test_warm_start_from_the_previous_plan():
    """Re-solving from a plan passes its modules and shift (the integers) and reaches the same optimum;
    a derated re-solve from it (a repair round) reaches the cold optimum."""
    inst = one_dc(300.0, 12.0)
    base = capacity.solve(inst, FLAT, **SOLVE)
    warm = capacity.solve(inst, FLAT, warm_start=base, **SOLVE)
    assert warm.meta["warm_start_entries"] == 2  # modules[DC, pack] and shift[DC]
    assert warm.objective == pytest.approx(base.objective, rel=1e-9)
    check_capacity_plan(inst, FLAT, warm)
    derated = CapacityOptions(weekday_profile=(1.0,) * 7, spike_dates=(), extra_shift_cost_per_day=100.0,
                              capacity_derate={("DC", "pack"): 0.8})
    cold = capacity.solve(inst, derated, **SOLVE)
    again = capacity.solve(inst, derated, warm_start=base, **SOLVE)
    assert again.objective == pytest.approx(cold.objective, rel=1e-9)
    assert cold.objective >= base.objective - 1e-9
    check_capacity_plan(inst, derated, again)
