"""Work carried from one day into the next: the redistribution MILP and the simulator describe the same DC.

A day's inbound trucks arrive until the last dock slot (20:00) and a DC open 06:00-02:00 with exactly the day's
capacity finishes the last ones after midnight: the simulator carries that work into the next morning and
staffs it there. The old MILP staffed a day for its own units only, so a light day after a heavy one was
staffed for almost nothing and the carried-in trucks broke the 24 h dock-to-stock SLA. With ``carry_share``
(measured by the simulator's own fluid pass, :func:`engine.simulator.carry_shares`) the MILP staffs the carried
work too, and the simulator executes the plan.
"""

from __future__ import annotations

import pytest

from engine.simulator import carry_shares, simulate
from formulations import redistribution as rd
from instances.instance import Instance
from tests.test_redistribution import make_instance

V, D = 4000.0, 200.0  # units received on day 1; units shipped on day 2 (the rest, V - D, on day 3)
PROD = 100.0  # units per labour hour at every stage
DETERMINISTIC = {"noise": "deterministic"}


def carry_instance() -> Instance:
    """One DC open 06:00-02:00 (20 h), a port that delivers only on day 1, demand on days 2 and 3."""
    meta = {"name": "carry", "currency": "EUR", "horizon": {"start": "2026-03-02", "periods": 3, "period_days": 1},
            "defaults": {"service_days": 3.0, "unmet_demand_penalty": 100.0, "handling_cost_per_unit": 0.1,
                         "truck_capacity_m3": 100.0, "truck_capacity_kg": 20000.0, "truck_fixed_cost": 100.0,
                         "order_to_ship_sla_hours": 24.0}}
    site = {"lat": 40.0, "lon": -100.0}
    sites = [{"id": "PORT", "name": "port", "kind": "port", **site}, {"id": "DC", "name": "dc", "kind": "dc", **site}]
    lanes = [{"origin_id": "PORT", "destination_id": "DC", "cost_per_unit": 0.1, "transit_days": 0.5},
             {"origin_id": "DC", "destination_id": "Z", "cost_per_unit": 0.5, "transit_days": 0.5}]
    resources = [{"site_id": "DC", "stage": st, "count": 100.0, "rate_per_hour": 100.0, "hours_per_day": 20.0}
                 for st in ("inbound_dock", "putaway", "pick", "pack", "outbound_dock")]
    resources.append({"site_id": "DC", "stage": "storage", "count": 1.0, "rate_per_hour": 1e6, "hours_per_day": 24.0})
    labor = [{"site_id": "DC", "hourly_rate": 20.0, "max_headcount": 1000.0, "overtime_rate": 30.0,
              "max_overtime_hours": 0.0, "hours_per_person_week": 40.0,
              **{f"productivity_{st}": PROD for st in ("inbound_dock", "putaway", "pick", "pack", "outbound_dock")}}]
    return make_instance(meta, sites=sites, lanes=lanes, resources=resources, labor=labor,
                         zones=[{"id": "Z", "lat": 40.0, "lon": -100.0}],
                         products=[{"id": "P", "unit_weight_kg": 1.0, "unit_volume_m3": 0.01}],
                         demand=[{"zone_id": "Z", "product_id": "P", "period": t, "quantity": q}
                                 for t, q in ((1, 0.0), (2, D), (3, V - D))],
                         inventory=[{"site_id": "DC", "product_id": "P", "on_hand": 0.0}],
                         supply=[{"site_id": "PORT", "product_id": "P", "period": 1, "capacity": V}])


def test_carry_shares_match_the_calendar_worked_by_hand():
    """At full load each stage works V/20 an hour, 06:00-02:00. Inbound: the dock's 00:00-02:00 hours (2 of 20)
    serve the evening before, so 10 % of a day waits at the dock at midnight; the dock's 23:00 output (1/20) is
    in transit to putaway: 15 % has not passed putaway. Carried inbound work arrived in the 20:00 step and is
    overdue after the next day's 20:00 step: putaway (the tail) can use the steps 00-01 and 06-20 (17 of the 20
    staffed hours), the dock one step less (16). Orders are due 24 h after they arrive: pick (two stages before
    the tail) loses the last two steps of the day (19 of 20), pack and the outbound dock none."""
    cs = carry_shares(carry_instance()).set_index("stage")
    assert cs.loc["inbound_dock", "waiting_share"] == pytest.approx(0.10, abs=1e-9)
    assert cs.loc["putaway", "waiting_share"] == pytest.approx(0.05, abs=1e-9)
    assert cs.loc["putaway", "carry_share"] == pytest.approx(0.15, abs=1e-9)
    assert list(cs["deadline_share"]) == pytest.approx([0.80, 0.85, 0.95, 1.0, 1.0])
    # order chain: each downstream stage has not passed what waits upstream plus its own and in-transit units
    assert (cs.loc[["pick", "pack", "outbound_dock"], "carry_share"].diff().dropna() >= 0).all()


def test_old_plan_fails_in_sequence_and_the_carry_model_executes():
    inst = carry_instance()
    old = rd.solve(inst, rd.RedistributionOptions(), time_limit=30, mip_gap=0.0)
    cs = carry_shares(inst)
    new = rd.solve(inst, rd.RedistributionOptions(carry_share=cs), time_limit=30, mip_gap=0.0)
    for plan in (old, new):  # the same flows: receive V on day 1, ship D on day 2 and V - D on day 3
        tp = plan.tables["site_throughput"].set_index("period")
        assert list(tp["inbound_units"]) == pytest.approx([V, 0.0, 0.0])
        assert list(tp["outbound_units"]) == pytest.approx([0.0, D, V - D])
    hours = {name: plan.tables["labor"].set_index("period")["regular_hours"] for name, plan in
             (("old", old), ("new", new))}
    # old: day 2 staffs only its own D units (3 outbound stages x 1/100 h)
    assert hours["old"][2] == pytest.approx(D * 3 / PROD)
    # new: plus day 1's inbound not yet past the dock (10 %, due within 80 % of the shift) and putaway (15 %, 85 %)
    assert hours["new"][2] == pytest.approx(D * 3 / PROD + V * (0.10 / 0.80 + 0.15 / 0.85) / PROD)
    assert hours["new"][1] == pytest.approx(V * 2 / PROD)  # day 1: nothing carried in (queues start empty)
    assert new.objective > old.objective
    sim_old = simulate(inst, old, replications=1, profile=DETERMINISTIC)
    assert not sim_old.verdict.feasible  # the carried-in trucks wait for labour that day 2 never staffed
    breach = sim_old.breaches.iloc[0]
    assert (breach["chain"], int(breach["period"])) == ("inbound", 2)
    sim_new = simulate(inst, new, replications=1, profile=DETERMINISTIC)
    assert sim_new.verdict.feasible, sim_new.verdict.message


def test_carried_work_counts_against_the_equipment_of_the_day_that_processes_it():
    """Equipment rows on processed work: (1 - β) A[t] + β A[t-1] <= capacity. With the dock cut to 3,700 units a
    day, receiving V = 4,000 on day 1 is possible (10 % of it is processed on day 2) only with the carry model."""
    inst = carry_instance()
    res = inst.resources.copy()
    dock = res["stage"] == "inbound_dock"
    res.loc[dock, "count"] = 3700.0 / (100.0 * 20.0)
    inst = inst.replace(resources=res)
    old = rd.solve(inst, rd.RedistributionOptions(), time_limit=30, mip_gap=0.0)
    new = rd.solve(inst, rd.RedistributionOptions(carry_share=carry_shares(inst)), time_limit=30, mip_gap=0.0)
    received = {name: plan.tables["site_throughput"].set_index("period")["inbound_units"]
                for name, plan in (("old", old), ("new", new))}
    assert received["old"][1] == pytest.approx(3700.0)
    assert received["new"][1] == pytest.approx(V)
    assert 0.9 * V <= 3700.0 + 1e-6  # what the dock processes on day 1 fits its capacity
