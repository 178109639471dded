"""The build benchmark compares like with like, and its steps run (at a tiny size)."""

from __future__ import annotations

import numpy as np

from benchmarks.model_build import instance_for, measure_direct, measure_ours
from solvers.examples import facility_location_arrays, facility_location_linopy, facility_location_pyomo
from solvers.frontends import from_linopy, from_pyomo


def test_linopy_pyomo_and_direct_build_the_same_matrices() -> None:
    data = instance_for(300)
    direct = facility_location_arrays(data)
    for form in (from_linopy(facility_location_linopy(data)), from_pyomo(facility_location_pyomo(data))):
        assert form.A.shape == direct.A.shape
        assert abs(form.A - direct.A).max() == 0
        np.testing.assert_array_equal(form.objective, direct.objective)
        np.testing.assert_array_equal(form.row_lower, direct.row_lower)
        np.testing.assert_array_equal(form.row_upper, direct.row_upper)
        np.testing.assert_array_equal(form.integrality, direct.integrality)
        assert list(form.variable_groups) == list(direct.variable_groups)
        assert list(form.constraint_groups) == list(direct.constraint_groups)
        assert form.variable_groups["assign"].labels.equals(direct.variable_groups["assign"].labels)


def test_benchmark_steps_run() -> None:
    ours = measure_ours(2_000)
    direct = measure_direct(2_000)
    assert ours["n_vars"] == direct["direct_n_vars"]
    assert ours["ours_s"] > 0 and direct["direct_s"] > 0 and ours["peak_mb"] > 0
