"""The simulator's fast path inside ``twinplan solve``: the shortfall search's runs share their inputs, simulate only
the sites still searched and stop once their chains have broken -- with exactly the results of the reference path
(every failing site over the whole horizon, inputs drawn again in every run)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from benchmarks.simulator import nearest_dc_plan
from engine import simulator
from engine.simulator import Profile, SharedInputs, clearing_shortfalls, prepare, run_setup, simulate_volumes
from instances.generator import synthetic


@pytest.fixture(scope="module")
def tight():
    """A generated network (24 sites, 6 weeks), every zone served by its nearest existing DC, staffed 2 % above
    the hours its volume needs: many DCs break an SLA, on the inbound or the order chain, at a stage or along
    the whole chain."""
    inst = synthetic(seed=3, sites=24, zones=30, products=3, periods=6)
    st = nearest_dc_plan(inst).tables["site_throughput"]
    lab = inst.labor.set_index("site_id")
    per_unit_in = 1 / lab["productivity_inbound_dock"] + 1 / lab["productivity_putaway"]
    per_unit_out = 1 / lab["productivity_pick"] + 1 / lab["productivity_pack"] + 1 / lab["productivity_outbound_dock"]
    need = (st["inbound_units"] * st["site_id"].map(per_unit_in)
            + st["outbound_units"] * st["site_id"].map(per_unit_out))
    labor = pd.DataFrame({"site_id": st["site_id"], "period": st["period"], "regular_hours": 1.02 * need,
                          "overtime_hours": 0.0, "temp_hours": 0.0})
    return inst, st, labor


def test_shared_search_finds_exactly_the_reference_amounts(tight, monkeypatch):
    inst, st, labor = tight
    setup = prepare(inst, st, labor=labor)
    first = run_setup(setup, np.array([1.0]), replications=4, seed=1)
    calls: list[dict] = []
    real = simulator.run_setup

    def counting(*args, **kw):
        res = real(*args, **kw)
        calls.append({"sites": kw.get("sites"), "stop": kw.get("stop_when") is not None})
        return res

    monkeypatch.setattr(simulator, "run_setup", counting)
    reference = clearing_shortfalls(setup, first, replications=4, seed=1, reuse=False)
    n_reference = len(calls)
    fast = clearing_shortfalls(setup, first, replications=4, seed=1)
    fast_calls = calls[n_reference:]
    b = reference.breaches
    # the search had work to do: both chains, re-blamed stages, amounts at the whole chain, all verified
    assert len(b) >= 10 and set(b["chain"]) == {"inbound", "order"}
    assert {"stage", "chain"} <= set(b["shortfall_scope"]) and b["cleared"].all()
    assert (b["shortfall_units"] != b["estimated_units"]).all()
    pd.testing.assert_frame_equal(fast.breaches, b, check_exact=True)
    assert fast.verdicts == reference.verdicts
    # the same number of runs, but each one simulates only the sites still searched and stops once their chains
    # have broken
    assert len(fast_calls) == n_reference and all(c["stop"] for c in fast_calls)
    assert min(len(c["sites"]) for c in fast_calls) < b["site_id"].nunique()
    # through the front door too (simulate_volumes uses the shared search)
    front = simulate_volumes(inst, st, labor=labor, replications=4, seed=1)
    pd.testing.assert_frame_equal(front.breaches, b, check_exact=True)


@pytest.mark.parametrize("effects", [
    {"profile": Profile(mtbf_hours=400.0, mttr_hours=2.0, service_cv=0.15)},
    {"profile": Profile(absenteeism=0.02)},
    {"congestion": 0.15},
], ids=["breakdowns-variability", "absence", "congestion"])
def test_shared_search_is_exact_with_effects_and_congestion(tight, effects):
    """The stochastic effects draw per site (breakdown states carried from period to period) and congestion derates
    by the work offered: a run of some of the sites must still see exactly what a run of all of them sees."""
    inst, st, labor = tight
    setup = prepare(inst, st[st["period"] <= 3], labor=labor, periods=[1, 2, 3])
    if "congestion" in effects:
        setup = replace(setup, congestion=effects["congestion"])
    profile = effects.get("profile")
    first = run_setup(setup, np.array([1.0]), replications=3, seed=5, profile=profile)
    assert len(first.breaches) >= 10
    reference = clearing_shortfalls(setup, first, replications=3, seed=5, profile=profile, reuse=False)
    fast = clearing_shortfalls(setup, first, replications=3, seed=5, profile=profile)
    pd.testing.assert_frame_equal(fast.breaches, reference.breaches, check_exact=True)
    # the search had amounts to find (under absenteeism, extra capacity above the staff present cannot help
    # a labour-bound stage: every amount it tries fails, which the shared path must find too)
    assert fast.breaches["cleared"].any() or profile is not None and profile.absenteeism


def test_a_run_of_some_sites_breaks_where_a_run_of_all_does(tight):
    """With extra capacity at some stages: a shared breach-only run of every site breaks where the plain run does
    (site, chain, stage, hour, binding; it does not estimate shortfalls, which the search does not read); a shared
    run of three sites gives those sites' breach rows, and stopping once their chains have broken keeps them."""
    inst, st, labor = tight
    setup = prepare(inst, st, labor=labor)
    extra = np.zeros((len(setup.site_ids), simulator.K_STAGES))
    extra[::2, [simulator.INBOUND_DOCK, simulator.PUTAWAY]] = 600.0  # every other site: enough for the inbound
    extra[::2, [simulator.PICK, simulator.PACK, simulator.OUTBOUND_DOCK]] = 300.0
    extra[1::2, simulator.PUTAWAY] = 100.0  # the others: not enough
    kw = {"replications": 4, "seed": 1, "detail": False, "extra_capacity": extra}
    full = run_setup(setup, np.array([1.0]), **kw)
    shared = SharedInputs.build(setup, np.array([1.0]), replications=4, seed=1)
    assert len(shared.periods) == len(setup.periods)
    cols = ["site_id", "chain", "stage", "period", "hour", "time", "binding"]
    pd.testing.assert_frame_equal(run_setup(setup, np.array([1.0]), shared=shared, **kw).breaches[cols],
                                  full.breaches[cols])
    broken = full.breaches["site_id"].unique()
    held = [s for s in setup.site_ids if s not in set(broken)]
    assert len(broken) >= 2 and held
    pick = sorted(setup.site_ids.index(s) for s in [*broken[:2], held[0]])
    part = run_setup(setup, np.array([1.0]), shared=shared, sites=pick, **kw)
    want = full.breaches[full.breaches["site_id"].isin([setup.site_ids[i] for i in pick])]
    pd.testing.assert_frame_equal(part.breaches[cols].reset_index(drop=True), want[cols].reset_index(drop=True))
    stop = np.zeros((len(pick), len(simulator.CHAIN_NAMES)), dtype=bool)  # the chains that break
    for site, chain in zip(want["site_id"], want["chain"]):
        stop[pick.index(setup.site_ids.index(site)), simulator.CHAIN_NAMES.index(chain)] = True
    assert want["period"].max() < setup.periods["period"].max()  # so the early run does stop early
    early = run_setup(setup, np.array([1.0]), shared=shared, sites=pick, stop_when=stop, **kw)
    pd.testing.assert_frame_equal(early.breaches[cols].reset_index(drop=True), want[cols].reset_index(drop=True))
    # over the memory budget the inputs are computed again in every run: the same breaches
    lean = SharedInputs.build(setup, np.array([1.0]), replications=4, seed=1, max_bytes=0)
    assert not lean.periods
    again = run_setup(setup, np.array([1.0]), shared=lean, sites=pick, stop_when=stop, **kw)
    pd.testing.assert_frame_equal(again.breaches, early.breaches, check_exact=True)
    # misuse is refused
    with pytest.raises(ValueError, match="need shared inputs"):
        run_setup(setup, np.array([1.0]), sites=pick, **kw)
    with pytest.raises(ValueError, match="built for other sites"):
        run_setup(setup, np.array([1.0]), shared=shared, sites=pick, **{**kw, "seed": 2})
