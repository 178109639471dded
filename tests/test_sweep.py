"""Sweeps: spec designs, kill (SIGKILL) and resume through the CLI, and a real Dask LocalCluster sweep giving the
same results as the local process pool.

The real sweeps run ``tests/data/tiny_sweep.yaml``: 7 variants + the base run = 8 runs on the tiny instance, one
of which fails on purpose (an unknown site) and must be recorded, not stop the sweep.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from engine.store import RunStore
from engine.sweep import SweepSpecError, load_sweep_spec, run_seed, run_sweep, sweep_spec_from_dict

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "tests" / "data" / "tiny_sweep.yaml"
N_RUNS = 8


def _spec(**over) -> dict:
    base = {"name": "s", "instance": "tiny", "seed": 3,
            "parameters": {"d": {"set": {"demand_multiplier": "$value"}, "values": [0.9, 1.0, 1.1],
                                 "range": [0.5, 1.5]},
                           "f": {"set": {"cost": {"fuel": "$value"}}, "range": [1.0, 2.0], "steps": 2},
                           "c": {"set": {"force_closed": "$value"}, "values": [[], ["DC_B"]]}}}
    return base | over


# -- the spec ------------------------------------------------------------------------------------------------
def test_grid_is_the_cartesian_product_and_null_values_add_nothing() -> None:
    spec = sweep_spec_from_dict(_spec(vary=[{"grid": ["d", "f", "c"]}]))
    pts = spec.points()
    assert len(pts) == 3 * 2 * 2
    assert {(p.params["d"], p.params["f"], tuple(p.params["c"])) for p in pts} == {
        (d, f, c) for d in (0.9, 1.0, 1.1) for f in (1.0, 2.0) for c in ((), ("DC_B",))}
    p = next(p for p in pts if p.params == {"d": 1.1, "f": 2.0, "c": ["DC_B"]})
    assert list(p.modifications) == [{"demand_multiplier": 1.1}, {"cost": {"fuel": 2.0}},
                                     {"force_closed": ["DC_B"]}]
    empty = next(p for p in pts if p.params["c"] == [])
    assert len(empty.modifications) == 2  # an empty set of sites to close is no modification


def test_lhs_hits_every_stratum_once_and_samples_follow_the_seed() -> None:
    n = 10
    spec = sweep_spec_from_dict(_spec(vary=[{"lhs": {"n": n, "parameters": ["d", "c"]}},
                                            {"random": {"n": 5, "parameters": ["d"]}}]))
    pts = spec.points()
    lhs = [p.params for p in pts[:n]]
    strata = sorted(int((x["d"] - 0.5) / 1.0 * n) for x in lhs)  # range [0.5, 1.5] cut into n strata
    assert strata == list(range(n))
    assert sorted(len(x["c"]) for x in lhs) == [0] * 5 + [1] * 5  # two values: n/2 draws each
    assert all(0.5 <= p.params["d"] <= 1.5 for p in pts[n:])
    again = sweep_spec_from_dict(_spec(vary=spec.raw["vary"])).points()
    assert [p.params for p in again] == [p.params for p in pts]
    other = sweep_spec_from_dict(_spec(seed=4, vary=spec.raw["vary"])).points()
    assert [p.params for p in other] != [p.params for p in pts]
    assert run_seed(3, 1) == run_seed(3, 1) != run_seed(3, 2)


@pytest.mark.parametrize(("over", "message"), [
    ({"vary": [{"grid": ["nope"]}]}, r"<inline>: vary\[0\].grid: unknown parameter 'nope'"),
    ({"parameters": {"x": {"set": {"demand_multiplier": 2}, "values": [1]}}},
     r"parameters.x.set: must be a modification mapping containing \$value"),
    ({"parameters": {"x": {"set": {"demand_multiplier": "$value"}, "range": [2, 1]}}},
     r"parameters.x.range: low 2 is above high 1"),
    ({"vary": [{"lhs": {"n": 0, "parameters": ["d"]}}]},
     r"vary\[0\].lhs.n: Input should be greater than or equal to 1, got 0"),
    ({"vary": [{"grid": ["d", "f"]}], "parameters": {"d": {"set": {"capex_budget": "$value"}, "range": [0, 1]},
                                                     "f": {"set": {"capex_budget": "$value"}, "values": [1]}}},
     r"parameters.d: a grid needs values, or range with steps"),
    ({"solver": {"gap": 0.1}}, r"solver.gap: unknown key"),
    ({"colour": "red"}, r"colour: unknown key"),
])
def test_bad_specs_name_the_key(over: dict, message: str) -> None:
    with pytest.raises(SweepSpecError, match=message):
        sweep_spec_from_dict(_spec(**over))


def test_example_specs_parse() -> None:
    sizes = {}
    for path in sorted((ROOT / "instances" / "eu_fba" / "sweeps").glob("*.yaml")):
        spec = load_sweep_spec(path)
        assert spec.instance_path().resolve() == (ROOT / "instances" / "eu_fba").resolve()
        sizes[path.stem] = len(spec.points())
    assert sizes == {"benchmark": 200, "what_if": 3 * 3 + 3 * 3 + 2 + 20}


# -- real sweeps ---------------------------------------------------------------------------------------------
def _cli(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-W", "ignore", "-m", "engine.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.fixture(scope="module")
def killed_and_resumed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Start the sweep on the local executor, SIGKILL it (driver and workers) mid-way, then resume it."""
    store_path = tmp_path_factory.mktemp("local") / "runs.duckdb"
    args = ("sweep", str(SPEC), "--store", str(store_path), "--workers", "2", "--no-progress", "--json")
    first = _cli(*args, start_new_session=True)
    store = RunStore(store_path)
    deadline = time.monotonic() + 300
    try:
        while len(store.finished_runs()) < 3:
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline, "the sweep made no progress"
            time.sleep(0.3)
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(timeout=60)
    before = store.finished_runs()
    second = _cli(*args)
    out, err = second.communicate(timeout=600)
    assert second.returncode == 0, err[-3000:]
    return {"store": store, "before": before, "summary": json.loads(out.strip().splitlines()[-1])}


@pytest.mark.slow
def test_killed_sweep_resumes_with_every_run_exactly_once(killed_and_resumed: dict) -> None:
    store, before, summary = (killed_and_resumed[k] for k in ("store", "before", "summary"))
    assert 3 <= len(before) < N_RUNS, "the kill came too late to test resuming"
    assert summary["skipped"] == len(before)
    assert summary["finished"] + summary["failed"] == N_RUNS - len(before)
    counts = store.query("SELECT run_id, count(*) AS n FROM runs GROUP BY run_id")
    assert len(counts) == N_RUNS and set(counts["n"]) == {1}
    runs = store.runs()
    assert runs["run_index"].tolist() == list(range(N_RUNS))
    failed = runs[runs["status"] == "failed"]
    assert failed["name"].tolist() == ["unknown_site"]
    assert "unknown site 'DC_NOPE'" in failed["error"].iloc[0]
    finished = set(runs.loc[runs["status"] == "finished", "run_id"])
    assert len(finished) == N_RUNS - 1
    # plan tables: 4 site rows (tiny has 4 sites) for each finished run, nothing for the failed one or the killed
    sites = store.query("SELECT run_id, count(*) AS n FROM plan_sites GROUP BY run_id")
    assert set(sites["run_id"]) == finished and set(sites["n"]) == {4}
    # one audit row per recorded run, with its input hash; the chain is intact
    audit = store.audit()
    assert sorted(audit["run_id"]) == sorted(runs["run_id"])
    assert audit["input_hash"].str.len().eq(64).all()
    assert store.verify_audit() == []
    # every non-base run was warm-started from the base run's stored plan
    base = runs.loc[runs["run_index"] == 0, "run_id"].iloc[0]
    assert set(runs.loc[runs["run_index"] > 0, "warm_start"]) == {base}
    # the demand multiplier moves the cost the right way: 0.9 < base < 1.1 (same network, fewer units)
    obj = runs.set_index("name")["objective"]
    assert obj["grid0: demand=0.9, closed=[]"] < obj["base"] < obj["grid0: demand=1.1, closed=[]"]


@pytest.mark.slow
def test_dask_localcluster_sweep_matches_local_executor(killed_and_resumed: dict, tmp_path: Path) -> None:
    result = run_sweep(SPEC, executor="dask", workers=2, store=tmp_path / "dask.duckdb", progress=False)
    assert (result.total, result.finished, result.failed, result.skipped) == (N_RUNS, N_RUNS - 1, 1, 0)
    dask_runs = result.runs().set_index("run_id")
    local_runs = killed_and_resumed["store"].runs().set_index("run_id")
    assert list(dask_runs.index) == list(local_runs.index)  # same spec, same data: same run ids
    assert set(dask_runs["executor"]) == {"dask"} and set(local_runs["executor"]) == {"local"}
    for rid in local_runs.index:
        a, b = local_runs.loc[rid], dask_runs.loc[rid]
        assert a["status"] == b["status"] and a["seed"] == b["seed"], rid
        if a["status"] != "finished":
            continue
        assert math.isclose(a["objective"], b["objective"], rel_tol=1e-9), rid
        assert a["plan_hash"] == b["plan_hash"], rid
        assert a["input_hash"] == b["input_hash"], rid
        for kpi in ("total_cost", "service_level", "max_utilisation"):
            assert np.isclose(a[kpi], b[kpi], rtol=1e-9), (rid, kpi)


def test_base_run_lp_bases_warm_start_the_variants(tmp_path: Path) -> None:
    """With relax-and-restore, the base run keeps its LP bases in the store (run artifacts); every variant starts
    its LPs from them, reaches the same objectives as a cold sweep, and reproduces (the bases are inputs)."""
    from engine.governance import Policy
    from engine.sweep import reproduce

    (tmp_path / "rr.yaml").write_text(
        "name: rr\nclass: tactical\ndecision: consolidation\noptions: {strategy: relax_restore}\n"
        "solver: {mip_gap: 0.0}\n")
    (tmp_path / "spec.yaml").write_text(
        f"name: rr_sweep\ninstance: {ROOT / 'instances' / 'tiny'}\nscenario: rr.yaml\nseed: 5\n"
        "solver: {solver: highs, threads: 1, time_limit: 60}\nplan: {max_rounds: 1, replications: 1}\n"
        "parameters:\n  demand: {set: {demand_multiplier: $value}, range: [0.9, 1.2]}\n"
        "  fuel: {set: {cost: {fuel: $value}}, range: [1.0, 1.4]}\n"
        "vary:\n  - lhs: {n: 3, parameters: [demand, fuel]}\n")
    policy = Policy(open=True)
    warm_store, cold_store = RunStore(tmp_path / "warm.duckdb"), RunStore(tmp_path / "cold.duckdb")
    warm = run_sweep(tmp_path / "spec.yaml", executor="local", workers=1, store=warm_store, policy=policy,
                     progress=False)
    cold = run_sweep(tmp_path / "spec.yaml", executor="local", workers=1, store=cold_store, policy=policy,
                     progress=False, warm_start=False)
    assert warm.finished == cold.finished == 4
    base_id = f"{warm.sweep_id}-0000"
    assert sorted(warm_store.artifact_names(base_id)) == ["basis.lp", "basis.restore"]
    assert warm_store.artifact_names(f"{warm.sweep_id}-0001") == []  # only the warm-start source keeps them
    w = warm_store.runs(sweep=warm.sweep_id).set_index("run_index")
    c = cold_store.runs(sweep=cold.sweep_id).set_index("run_index")
    assert (w.loc[1:, "warm_start"] == base_id).all() and c["warm_start"].isna().all()
    for i in range(4):
        assert w.loc[i, "objective"] == pytest.approx(c.loc[i, "objective"], rel=1e-7), i
    report = reproduce(f"{warm.sweep_id}-0002", warm_store, policy=policy)
    assert report.matches, report.message


def test_dask_local_cluster_workers_keep_default_malloc_and_leave_our_environment_alone() -> None:
    """Dask's default MALLOC_TRIM_THRESHOLD_ made eu_fba runs 20 % slower; our LocalCluster unsets it, and the
    variables Dask's nannies write into the starting process's environment are undone on exit."""
    from engine.sweep import open_executor

    before = dict(os.environ)
    os.environ.pop("MALLOC_TRIM_THRESHOLD_", None)
    with open_executor("dask", workers=1) as (ex, _share):
        on_worker = ex.submit(os.environ.get, "MALLOC_TRIM_THRESHOLD_").result(timeout=60)
        omp = ex.submit(os.environ.get, "OMP_NUM_THREADS").result(timeout=60)
    assert on_worker is None
    assert omp == "1"  # Dask's other worker settings stay
    assert dict(os.environ) == {k: v for k, v in before.items() if k != "MALLOC_TRIM_THRESHOLD_"}
    os.environ.update(before)
