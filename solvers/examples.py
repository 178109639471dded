"""Textbook models for tests, benchmarks and demos: capacitated facility location (multi-source) built
three ways — linopy, Pyomo, and direct numpy standard form — from the same data.

Model (Beasley 1988, the problem behind the OR-Library ``cap*`` optima)::

    min   sum_i f_i open_i + sum_ij c_ij assign_ij
    s.t.  sum_i assign_ij = 1                       for each customer j      (demand)
          sum_j d_j assign_ij <= s_i open_i         for each warehouse i     (capacity)
          assign_ij <= open_i                       for each i, j            (link)
          open_i in {0, 1},  0 <= assign_ij <= 1

``assign_ij`` is the share of customer j's demand served from warehouse i; ``c_ij`` the cost of serving
all of it from there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from solvers.model import INTEGER, Group, StandardForm


@dataclass(frozen=True)
class FacilityLocationData:
    """Capacities ``s`` and fixed costs ``f`` per warehouse, demand ``d`` per customer, cost ``c[i, j]``."""

    capacity: np.ndarray
    fixed_cost: np.ndarray
    demand: np.ndarray
    cost: np.ndarray

    @property
    def warehouses(self) -> pd.Index:
        """Warehouse labels ``W0, W1, ...`` (index named ``warehouse``)."""
        return pd.Index([f"W{i}" for i in range(len(self.capacity))], name="warehouse")

    @property
    def customers(self) -> pd.Index:
        """Customer labels ``C0, C1, ...`` (index named ``customer``)."""
        return pd.Index([f"C{j}" for j in range(len(self.demand))], name="customer")

    @classmethod
    def random(cls, n_warehouses: int, n_customers: int, seed: int = 0) -> FacilityLocationData:
        """A random instance with total capacity about 3x total demand (feasible by construction)."""
        rng = np.random.default_rng(seed)
        demand = rng.integers(10, 100, n_customers).astype(float)
        capacity = np.full(n_warehouses, max(3.0 * demand.sum() / n_warehouses, demand.max()))
        fixed = rng.integers(500, 2000, n_warehouses).astype(float)
        wx, wy = rng.random(n_warehouses), rng.random(n_warehouses)
        cx, cy = rng.random(n_customers), rng.random(n_customers)
        distance = np.hypot(wx[:, None] - cx[None, :], wy[:, None] - cy[None, :])
        return cls(capacity, fixed, demand, np.round(distance * demand[None, :] * 10, 3))


def facility_location_linopy(data: FacilityLocationData) -> Any:
    """The model as a linopy ``Model`` (variables ``open``, ``assign``; constraints ``demand``,
    ``capacity``, ``link``)."""
    import linopy
    import xarray as xr

    W, C = data.warehouses, data.customers
    m = linopy.Model()
    open_ = m.add_variables(binary=True, coords=[W], name="open")
    assign = m.add_variables(lower=0, upper=1, coords=[W, C], name="assign")
    demand = xr.DataArray(data.demand, coords=[C])
    capacity = xr.DataArray(data.capacity, coords=[W])
    m.add_constraints(assign.sum("warehouse") == 1, name="demand")
    m.add_constraints((assign * demand).sum("customer") - capacity * open_ <= 0, name="capacity")
    m.add_constraints(assign - open_ <= 0, name="link")
    m.add_objective(
        (open_ * xr.DataArray(data.fixed_cost, coords=[W])).sum()
        + (assign * xr.DataArray(data.cost, coords=[W, C])).sum()
    )
    return m


def facility_location_pyomo(data: FacilityLocationData) -> Any:
    """The same model as a Pyomo ``ConcreteModel`` (components named like the linopy ones)."""
    import pyomo.environ as pyo

    W, C = list(data.warehouses), list(data.customers)
    s = dict(zip(W, data.capacity))
    f = dict(zip(W, data.fixed_cost))
    d = dict(zip(C, data.demand))
    c = {(w, k): data.cost[i, j] for i, w in enumerate(W) for j, k in enumerate(C)}
    m = pyo.ConcreteModel()
    m.warehouse = pyo.Set(initialize=W)
    m.customer = pyo.Set(initialize=C)
    m.open = pyo.Var(m.warehouse, domain=pyo.Binary)
    m.assign = pyo.Var(m.warehouse, m.customer, bounds=(0, 1))
    m.demand = pyo.Constraint(m.customer, rule=lambda m, k: sum(m.assign[w, k] for w in m.warehouse) == 1)
    m.capacity = pyo.Constraint(
        m.warehouse, rule=lambda m, w: sum(d[k] * m.assign[w, k] for k in m.customer) <= s[w] * m.open[w]
    )
    m.link = pyo.Constraint(m.warehouse, m.customer, rule=lambda m, w, k: m.assign[w, k] <= m.open[w])
    m.cost = pyo.Objective(expr=sum(f[w] * m.open[w] for w in m.warehouse) + sum(c[key] * m.assign[key] for key in c))
    return m


def facility_location_arrays(data: FacilityLocationData, labels: bool = True) -> StandardForm:
    """The same model assembled directly with numpy index arithmetic (the lower bound on build cost).

    Columns: ``open`` (m), then ``assign`` (m x n, row-major). Rows: ``demand`` (n), ``capacity`` (m),
    ``link`` (m x n).
    """
    n_w, n_c = data.cost.shape
    n_assign = n_w * n_c
    n_cols = n_w + n_assign
    assign_col = n_w + np.arange(n_assign).reshape(n_w, n_c)
    # demand rows: one per customer, the n_w assign columns of that customer
    demand_cols = assign_col.T.ravel()
    demand_ptr = np.arange(0, n_c * n_w + 1, n_w)
    demand_val = np.ones(n_assign)
    # capacity rows: n_c assign columns (coefficient d_j) plus open_i (coefficient -s_i)
    capacity_cols = np.concatenate([assign_col, np.arange(n_w)[:, None]], axis=1).ravel()
    capacity_val = np.concatenate([np.broadcast_to(data.demand, (n_w, n_c)), -data.capacity[:, None]], axis=1)
    capacity_ptr = np.arange(0, n_w * (n_c + 1) + 1, n_c + 1)
    # link rows: assign_ij - open_i
    link_cols = np.stack([assign_col.ravel(), np.repeat(np.arange(n_w), n_c)], axis=1).ravel()
    link_val = np.tile([1.0, -1.0], n_assign)
    link_ptr = np.arange(0, 2 * n_assign + 1, 2)
    indptr = np.concatenate(
        [demand_ptr, capacity_ptr[1:] + demand_ptr[-1], link_ptr[1:] + demand_ptr[-1] + capacity_ptr[-1]]
    )
    A = sp.csr_array(
        (
            np.concatenate([demand_val, capacity_val.ravel(), link_val]),
            np.concatenate([demand_cols, capacity_cols, link_cols]).astype(np.int32),
            indptr.astype(np.int32),
        ),
        shape=(n_c + n_w + n_assign, n_cols),
    )
    n_rows = A.shape[0]
    row_lower = np.concatenate([np.ones(n_c), np.full(n_w + n_assign, -np.inf)])
    row_upper = np.concatenate([np.ones(n_c), np.zeros(n_w + n_assign)])
    integrality = np.zeros(n_cols, dtype=np.uint8)
    integrality[:n_w] = INTEGER
    variable_groups: dict[str, Group] = {}
    constraint_groups: dict[str, Group] = {}
    if labels:
        W, C = data.warehouses, data.customers
        WC = pd.MultiIndex.from_product([W, C])
        variable_groups = {
            "open": Group("open", slice(0, n_w), W, n_w),
            "assign": Group("assign", slice(n_w, n_cols), WC, n_assign),
        }
        constraint_groups = {
            "demand": Group("demand", slice(0, n_c), C, n_c),
            "capacity": Group("capacity", slice(n_c, n_c + n_w), W, n_w),
            "link": Group("link", slice(n_c + n_w, n_rows), WC, n_assign),
        }
    return StandardForm(
        A=A,
        row_lower=row_lower,
        row_upper=row_upper,
        col_lower=np.zeros(n_cols),
        col_upper=np.ones(n_cols),
        integrality=integrality,
        objective=np.concatenate([data.fixed_cost, data.cost.ravel()]),
        variable_groups=variable_groups,
        constraint_groups=constraint_groups,
    )
