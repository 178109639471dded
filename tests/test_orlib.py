"""OR-Library capacitated facility location: the production network design formulation reaches the published optima."""

from __future__ import annotations

import numpy as np
import pytest

from formulations import network_design
from formulations.check import check_plan
from formulations.network_design import NetworkDesignOptions
from instances.orlib import OrlibFormatError, benchmark_dir, load_optima, orlib_instance, parse_orlib, read_orlib

BENCH = benchmark_dir()
SMALL = sorted(p.stem for p in BENCH.glob("cap[0-9]*.txt")) if BENCH else []
SKIP_WHY = ("OR-Library files not found: set TWINPLAN_BENCHMARKS (a folder with orlib/) "
            "or provide ../shared/benchmarks/orlib")
needs_bench = pytest.mark.skipif(BENCH is None, reason=SKIP_WHY)


def test_parse_small_text_and_mapping():
    # 2 warehouses (cap 10 / 5, fixed 7 / 3), 2 customers (demand 4 / 6); c_ij = cost of all of j's demand
    text = "2 2\n10 7.\n5 3.\n4 8. 12.\n6 30 6\n"
    cap, fixed, dem, cost = parse_orlib(text)
    assert cap.tolist() == [10, 5] and fixed.tolist() == [7, 3] and dem.tolist() == [4, 6]
    assert cost.tolist() == [[8, 30], [12, 6]]
    inst = orlib_instance(cap, fixed, dem, cost, "toy")
    lane = inst.lanes.set_index(["origin_id", "destination_id"])["cost_per_unit"]
    assert lane[("W1", "C1")] == pytest.approx(2.0) and lane[("W2", "C2")] == pytest.approx(1.0)
    # brute force: open {W1}: 7 + 8 + 30 = 45; {W2}: capacity 5 < 10 infeasible; {W1, W2}: W2 serves 5 units
    # of C2 (cost 5) and W1 the rest (C1: 8, 1 unit of C2: 5) -> 10 + 8 + 5 + 5 = 28
    plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False), mip_gap=0.0)
    assert plan.status == "optimal"
    assert plan.objective == pytest.approx(28.0, rel=1e-9)
    assert check_plan(inst, plan).empty
    single = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False, single_source=True),
                                  mip_gap=0.0)
    # single sourcing: C2 (6 units) cannot go to W2 (cap 5): both from W1 -> 7 + 8 + 30 = 45
    assert single.objective == pytest.approx(45.0, rel=1e-9)
    assert check_plan(inst, single, single_source=True).empty


@pytest.mark.parametrize("text, where", [
    ("2 2\n10 7\n5 x\n", "<text>:3:3"),
    ("2 2\n10 7\n5 3\n4 8 12\n", "need 12 numbers"),
    ("0 2\n", "<text>:1:1"),
    ("1 1\n10 -7\n4 8\n", "<text>:2:4"),
])
def test_bad_files_name_the_place(text, where):
    with pytest.raises(OrlibFormatError, match=where):
        parse_orlib(text)


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(OrlibFormatError, match="no such file"):
        read_orlib(tmp_path / "cap00.txt")


@needs_bench
def test_all_small_instances_reach_the_published_optimum():
    """All 37 small instances, HiGHS with a zero MIP gap: relative error <= 1e-6, and every plan checks."""
    optima = load_optima(BENCH)
    assert len(SMALL) == 37
    errors = {}
    for name in SMALL:
        inst = read_orlib(BENCH / f"{name}.txt")
        plan = network_design.solve(inst, options=NetworkDesignOptions(allow_unmet=False), mip_gap=0.0)
        assert plan.status == "optimal", name
        errors[name] = abs(plan.objective - optima[name]) / optima[name]
        violations = check_plan(inst, plan)
        assert violations.empty, (name, violations.head())
        assert plan.cost() == pytest.approx(plan.objective, rel=1e-9)
    worst = max(errors, key=errors.get)
    assert errors[worst] <= 1e-6, (worst, errors[worst])


@needs_bench
def test_highs_and_ortools_agree_on_an_orlib_instance():
    import solvers

    if "ortools-scip" not in solvers.available():
        pytest.skip("OR-Tools backend not registered in solvers yet")
    inst = read_orlib(BENCH / "cap41.txt")
    opts = NetworkDesignOptions(allow_unmet=False)
    h = network_design.solve(inst, options=opts, mip_gap=0.0)
    o = network_design.solve(inst, options=opts, solver="ortools", mip_gap=0.0)
    assert o.objective == pytest.approx(h.objective, rel=1e-6)
    assert np.isclose(h.objective, load_optima(BENCH)["cap41"], rtol=1e-6)


@needs_bench
def test_benchmark_capacity_variant_and_plain_comparison():
    """benchmarks.orlib: --capacity replaces every capacity (and names the variant); --compare-plain solves the same
    formulation with plain HiGHS in the same run and says whether twinplan is not worse."""
    from benchmarks.orlib import read_instance, run_file

    inst = read_instance(BENCH / "cap41.txt", 20000)
    assert inst.name == "cap20000" and set(inst.resources["count"]) == {20000.0}
    rec = run_file(BENCH / "cap41.txt", compare_plain=True, time_limit=60)
    assert rec["status"] == rec["plain_status"] == "optimal"
    assert rec["objective"] == pytest.approx(rec["plain_objective"], rel=1e-9)
    assert rec["rel_error"] <= 1e-6 and rec["plain_rel_error"] <= 1e-6 and rec["not_worse"]
    assert rec["violations"] == rec["plain_violations"] == 0


@needs_bench
@pytest.mark.parametrize("name", ["cap64", "cap114"])
def test_lagrangian_fixing_path_reaches_the_published_optimum_and_beats_no_plain_solve(name):
    """The relax-and-restore path on OR-Library instances (the path of the large ones: Lagrangian bound with the
    binary knapsack, fixing, the MILP on what is left): the published optimum, proven, checked, with sites fixed,
    and not worse than plain HiGHS measured in the same run."""
    from benchmarks.orlib import run_file

    rec = run_file(BENCH / f"{name}.txt", strategy="relax_restore", compare_plain=True, time_limit=60, threads=1)
    assert rec["status"] == "optimal" and rec["rel_error"] <= 1e-6 and rec["violations"] == 0
    assert rec["bound"] <= rec["objective"] and rec["phases"]["lagrangian"]["fixed_closed"] > 0
    assert rec["not_worse"] and rec["plain_status"] == "optimal"
