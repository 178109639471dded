"""Infeasibility diagnosis names the conflicting constraints in business terms."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import solvers
from solvers import StandardForm


def dock_plan_model():  # noqa: ANN201 - linopy.Model
    """Pack work per site/stage/week is capped at 100; DC_MUC must pack 150 in week 47: infeasible."""
    import linopy
    import xarray as xr

    sites = pd.Index(["DC_MUC", "DC_HAM"], name="site")
    stages = pd.Index(["pick", "pack"], name="stage")
    weeks = pd.Index(["2026-W47", "2026-W48"], name="week")
    m = linopy.Model()
    work = m.add_variables(lower=0, coords=[sites, stages, weeks], name="work")
    m.add_constraints(work <= 100, name="capacity")
    demand = xr.DataArray(np.array([[150.0, 100.0], [80.0, 90.0]]), coords=[sites, weeks])
    m.add_constraints(work.sel(stage="pack") >= demand, name="demand")
    m.add_objective(work.sum())
    return m


def test_iis_names_constraints_by_label() -> None:
    m = dock_plan_model()
    assert solvers.solve(m).termination is solvers.Termination.INFEASIBLE
    report = solvers.diagnose_infeasibility(m)
    assert report.infeasible and report.method == "iis"
    names = {conflict.name for conflict in report.conflicts}
    assert names == {"capacity[DC_MUC, pack, 2026-W47]", "demand[DC_MUC, 2026-W47]"}
    capacity = next(c for c in report.conflicts if c.group == "capacity")
    assert capacity.label == ("DC_MUC", "pack", "2026-W47")
    assert capacity.side == "upper" and capacity.upper == 100.0
    assert "capacity[DC_MUC, pack, 2026-W47] (<= 100)" in str(report)
    assert report.by_group().to_dict() == {"capacity": 1, "demand": 1}


def test_elastic_says_by_how_much_and_respects_penalties() -> None:
    m = dock_plan_model()
    report = solvers.diagnose_infeasibility(m, method="elastic")
    assert report.method == "elastic"
    assert len(report.conflicts) == 1
    (conflict,) = report.conflicts
    assert conflict.violation == pytest.approx(50.0)
    assert report.total_violation == pytest.approx(50.0)
    # Protect demand: now capacity must give way, by the same 50 units, up to 150.
    report = solvers.diagnose_infeasibility(m, method="elastic", penalties={"demand": 100.0})
    (conflict,) = report.conflicts
    assert conflict.name == "capacity[DC_MUC, pack, 2026-W47]"
    assert conflict.violation == pytest.approx(50.0)
    assert conflict.describe().endswith("must rise by 50 to 150")
    frame = report.to_frame()
    assert list(frame["name"]) == ["capacity[DC_MUC, pack, 2026-W47]"]


def test_integer_only_infeasibility_falls_back_to_elastic() -> None:
    # 2 trucks_s == 5 has a fractional solution only; the LP relaxation is feasible, so no IIS.
    form = StandardForm.from_arrays(
        np.eye(2) * 2.0,
        5.0,
        5.0,
        [1.0, 1.0],
        0.0,
        10.0,
        [1, 1],
        variable_groups={"trucks": pd.Index(["DC_MUC", "DC_HAM"], name="site")},
        constraint_groups={"half_load": pd.Index(["DC_MUC", "DC_HAM"], name="site")},
    )
    report = solvers.diagnose_infeasibility(form)
    assert report.method == "elastic"
    assert {c.name for c in report.conflicts} == {"half_load[DC_MUC]", "half_load[DC_HAM]"}
    assert all(c.violation == pytest.approx(1.0, abs=1e-5) for c in report.conflicts)
    with pytest.raises(solvers.SolverError, match="relaxation is feasible"):
        solvers.diagnose_infeasibility(form, method="iis")


def test_feasible_model_reports_no_conflict() -> None:
    form = StandardForm.from_arrays(np.array([[1.0, 1.0]]), 1.0, 2.0, [1.0, 1.0])
    report = solvers.diagnose_infeasibility(form)
    assert not report.infeasible and report.conflicts == ()
    assert "feasible" in str(report)


def test_variable_bounds_in_iis() -> None:
    # open_site fixed closed by its bound, but the site's flow needs it open.
    form = StandardForm.from_arrays(
        np.array([[1.0, -10.0], [1.0, 0.0]]),
        [-np.inf, 5.0],
        [0.0, np.inf],
        [0.0, 1.0],
        col_lower=[0.0, 0.0],
        col_upper=[np.inf, 0.0],
        variable_groups={"flow": 1, "open_site": 1},
        constraint_groups={"link": 1, "demand": 1},
    )
    report = solvers.diagnose_infeasibility(form)
    kinds = {(c.kind, c.group) for c in report.conflicts}
    assert ("bound", "open_site") in kinds
    assert ("constraint", "demand") in kinds


def test_pyomo_model_diagnosis() -> None:
    import pyomo.environ as pyo

    m = pyo.ConcreteModel()
    m.site = pyo.Set(initialize=["DC_MUC", "DC_HAM"])
    m.x = pyo.Var(m.site, bounds=(0, None))
    m.capacity = pyo.Constraint(m.site, rule=lambda m, s: m.x[s] <= 10)
    m.demand = pyo.Constraint(expr=sum(m.x[s] for s in m.site) >= 25)
    m.cost = pyo.Objective(expr=sum(m.x[s] for s in m.site))
    report = solvers.diagnose_infeasibility(m)
    assert {c.name for c in report.conflicts} == {"capacity[DC_MUC]", "capacity[DC_HAM]", "demand"}


def test_unknown_penalty_group() -> None:
    with pytest.raises(solvers.SolverOptionError, match="unknown constraint groups"):
        solvers.diagnose_infeasibility(dock_plan_model(), method="elastic", penalties={"nope": 2.0})
