"""Front doors into :class:`~solvers.model.StandardForm`: linopy models, Pyomo models, or a standard
form given directly.

linopy: the vectorised matrix export (``Model.matrices``); variable groups are linopy variable names
labelled by their coordinates (a MultiIndex over the dimensions in linopy's order; a plain Index for one
dimension), constraint groups likewise.

Pyomo: ``LinearStandardFormCompiler`` (mixed form); variable groups are Pyomo component names labelled
by their indices, constraint groups likewise.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from time import perf_counter
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from solvers.errors import UnsupportedModelError
from solvers.model import CONTINUOUS, INTEGER, SEMI_CONTINUOUS, Group, StandardForm


def to_standard_form(model: Any) -> StandardForm:
    """Dispatch on the model type: :class:`StandardForm`, linopy ``Model`` or Pyomo model."""
    if isinstance(model, StandardForm):
        return model
    module = type(model).__module__
    if module.startswith("linopy"):
        return from_linopy(model)
    if module.startswith("pyomo") or _is_pyomo_block(model):
        return from_pyomo(model)
    raise UnsupportedModelError(
        f"cannot solve a {type(model).__module__}.{type(model).__name__}; pass a linopy.Model, a Pyomo "
        "ConcreteModel or a solvers.StandardForm"
    )


def _is_pyomo_block(model: Any) -> bool:
    try:
        from pyomo.core.base.block import BlockData
    except ImportError:  # pragma: no cover - pyomo is a dependency
        return False
    return isinstance(model, BlockData)


# ============================================================================================== linopy
def from_linopy(m: Any) -> StandardForm:
    """Export a linopy ``Model`` to a :class:`StandardForm` via its vectorised matrix accessor.

    Raises :class:`UnsupportedModelError` for quadratic objectives, indicator and SOS constraints.
    """
    t0 = perf_counter()
    if m.variables.sos:
        raise UnsupportedModelError("SOS constraints are not supported by the solvers layer")
    if m.objective.is_quadratic:
        raise UnsupportedModelError("quadratic objectives are not supported by the solvers layer")
    M = m.matrices
    if M.indicator_A is not None and M.indicator_A.shape[0]:
        raise UnsupportedModelError("indicator constraints are not supported by the solvers layer")

    n_cols = len(M.vlabels)
    integrality = np.zeros(n_cols, dtype=np.uint8)
    vtypes = M.vtypes
    if len(m.binaries) or len(m.integers):
        integrality[(vtypes == "B") | (vtypes == "I")] = INTEGER
    if len(list(m.variables.semi_continuous)):
        integrality[vtypes == "S"] = SEMI_CONTINUOUS
    lb, ub = M.lb, M.ub
    if len(m.binaries):
        binary = vtypes == "B"
        lb = np.where(binary, np.maximum(lb, 0.0), lb)
        ub = np.where(binary, np.minimum(ub, 1.0), ub)

    A = M.A
    if A is None:
        A = sp.csr_array((0, n_cols))
        row_lower = row_upper = np.empty(0)
    else:
        sense, b = M.sense, M.b
        row_lower = np.where(sense == "<", -np.inf, b)
        row_upper = np.where(sense == ">", np.inf, b)

    variable_groups: dict[str, Group] = {}
    start = 0
    for name, var in m.variables.items():
        flat = var.labels.values.ravel()
        active = flat != -1
        count = int(np.count_nonzero(active))
        if count == 0:
            continue
        positions = None if count == flat.size else np.flatnonzero(active)
        dims = tuple(var.labels.dims)
        variable_groups[name] = Group(
            name,
            slice(start, start + count),
            _grid_labels_factory([var.indexes[d] for d in dims], dims, positions),
            count,
            scalar=not dims,
        )
        start += count

    constraint_groups = _linopy_constraint_groups(m, M.clabels, A.shape[0])
    col_scale = None if (M.var_scaling == 1).all() else np.asarray(M.var_scaling, dtype=float)
    row_scale = None
    if A.shape[0] and _has_row_scaling(m):
        from linopy.scaling import constraint_scaling_lookup

        row_scale = constraint_scaling_lookup(m)[M.clabels]
    objective_scale = float(getattr(m.objective, "scaling", 1.0) or 1.0)

    form = StandardForm(
        A=A if isinstance(A, sp.csr_array) else sp.csr_array(A),
        row_lower=np.asarray(row_lower, dtype=float),
        row_upper=np.asarray(row_upper, dtype=float),
        col_lower=np.asarray(lb, dtype=float),
        col_upper=np.asarray(ub, dtype=float),
        integrality=integrality,
        objective=np.asarray(M.c, dtype=float),
        objective_constant=0.0,
        sense="max" if m.objective.sense == "max" else "min",
        variable_groups=variable_groups,
        constraint_groups=constraint_groups,
        col_scale=col_scale,
        row_scale=row_scale,
        objective_scale=objective_scale,
        source="linopy",
    )
    form.build_seconds = perf_counter() - t0
    return form


def _linopy_constraint_groups(m: Any, clabels: np.ndarray, n_rows: int) -> dict[str, Group]:
    """Constraint groups from the exported row labels.

    The matrix rows are the constraints' active labels concatenated in model order, each block
    ascending inside the constraint's ``label_range``; walking that array gives each group's rows without
    recomputing the constraints' masks.
    """
    groups: dict[str, Group] = {}
    start = 0
    for name, con in m.constraints.items():
        if con.is_indicator:
            continue
        first, stop = (int(v) for v in con.attrs["label_range"])
        window = clabels[start : start + (stop - first)]
        inside = (window >= first) & (window < stop)
        count = int(inside.argmin()) if not inside.all() else len(window)
        if count == 0:
            continue
        dims = tuple(con.coord_dims)
        positions = None if count == stop - first else window[:count] - first
        indexes = [con.coords[d].to_index() for d in dims]
        groups[name] = Group(
            name, slice(start, start + count), _grid_labels_factory(indexes, dims, positions), count, scalar=not dims
        )
        start += count
    if start != n_rows:
        raise UnsupportedModelError(
            f"linopy export produced {n_rows} rows but its constraints list {start}; is this linopy version supported?"
        )
    return groups


def _has_row_scaling(m: Any) -> bool:
    """Whether any constraint carries a row scaling other than 1 (cheap check before the full lookup)."""
    for con in m.constraints.data.values():
        stored = getattr(con, "_scaling", None)
        values = stored if stored is not None else con.scaling.values
        if not np.all(np.asarray(values) == 1):
            return True
    return False


def _grid_labels_factory(
    indexes: Sequence[pd.Index], dims: Sequence[Hashable], positions: np.ndarray | None
) -> Callable[[], pd.Index]:
    """Labels of the (active) cells of a coordinate grid, in C order, built on demand."""

    def build() -> pd.Index:
        if not dims:
            return pd.Index([None], dtype=object)
        if len(dims) == 1:
            index = indexes[0]
            if index.name is None and not isinstance(index, pd.MultiIndex):
                index = index.rename(dims[0])
        else:
            index = pd.MultiIndex.from_product(list(indexes), names=list(dims))
        return index if positions is None else index[positions]

    return build


# ============================================================================================== pyomo
def from_pyomo(model: Any) -> StandardForm:
    """Compile a Pyomo model with ``LinearStandardFormCompiler`` (mixed form) into a StandardForm.

    Columns are all variables of the model, grouped by component (block-qualified name) in declaration
    order: the compiler's columns plus any variable it dropped (fixed, or used nowhere), so every group
    is complete. Fixed variables keep their value through equal bounds. Ranged constraints become one
    row with two bounds. Exactly one active objective (or none, for a feasibility model).
    """
    from pyomo.core.base.var import Var
    from pyomo.repn.plugins.standard_form import LinearStandardFormCompiler

    t0 = perf_counter()
    all_vars = list(model.component_data_objects(Var, descend_into=True, sort=False))
    info = LinearStandardFormCompiler().write(model, mixed_form=True, set_sense=None, column_order=all_vars)
    if len(info.objectives) > 1:
        raise UnsupportedModelError(
            f"the Pyomo model has {len(info.objectives)} active objectives; deactivate all but one"
        )

    # -- columns: the compiler's columns mapped into the full, component-ordered variable list
    position_of = {id(v): k for k, v in enumerate(all_vars)}
    compiled_pos = np.fromiter((position_of[id(v)] for v in info.columns), dtype=np.int64, count=len(info.columns))
    n_cols = len(all_vars)
    A_compiled = sp.csc_array(info.A)
    A_coo = A_compiled.tocoo()
    n_rows = A_compiled.shape[0]
    A = sp.csr_array((A_coo.data, (A_coo.row, compiled_pos[A_coo.col])), shape=(n_rows, n_cols))
    objective = np.zeros(n_cols)
    constant = 0.0
    sense = "min"
    if info.objectives:
        c = sp.csr_array(info.c)
        row = c[[0], :].tocoo()
        np.add.at(objective, compiled_pos[row.col], row.data)
        constant = float(np.asarray(info.c_offset).ravel()[0])
        sense = "max" if int(info.objectives[0].sense) == -1 else "min"

    col_lower = np.empty(n_cols)
    col_upper = np.empty(n_cols)
    integrality = np.zeros(n_cols, dtype=np.uint8)
    for k, v in enumerate(all_vars):
        if v.fixed:
            col_lower[k] = col_upper[k] = v.value
        else:
            lo, hi = v.bounds
            col_lower[k] = -np.inf if lo is None else lo
            col_upper[k] = np.inf if hi is None else hi
        if v.is_integer():
            integrality[k] = INTEGER

    # -- rows: mixed form gives bound_type 0 (==), 1 (<=) and -1 (>=); a ranged constraint gives two
    # consecutive rows (<= then >=) that are merged back into one.
    rows = info.rows
    rhs = np.asarray(info.rhs, dtype=float)
    bound_type = np.fromiter((r.bound_type for r in rows), dtype=np.int8, count=len(rows))
    con_ids = np.fromiter((id(r.constraint) for r in rows), dtype=np.int64, count=len(rows))
    row_lower = np.where(bound_type == 1, -np.inf, rhs)
    row_upper = np.where(bound_type == -1, np.inf, rhs)
    if len(rows) > 1:
        second = np.zeros(len(rows), dtype=bool)
        second[1:] = (con_ids[1:] == con_ids[:-1]) & (bound_type[1:] == -1) & (bound_type[:-1] == 1)
        if second.any():
            first = np.flatnonzero(second) - 1
            row_lower[first] = rhs[first + 1]
            keep = ~second
            A, row_lower, row_upper = A[keep], row_lower[keep], row_upper[keep]
            rows = [r for r, k in zip(rows, keep) if k]

    variable_groups = _pyomo_groups([v.parent_component() for v in all_vars], [v.index() for v in all_vars])
    constraint_groups = _pyomo_groups(
        [r.constraint.parent_component() for r in rows], [r.constraint.index() for r in rows]
    )
    form = StandardForm(
        A=sp.csr_array(A),
        row_lower=row_lower,
        row_upper=row_upper,
        col_lower=col_lower,
        col_upper=col_upper,
        integrality=integrality,
        objective=objective,
        objective_constant=constant,
        sense=sense,
        variable_groups=variable_groups,
        constraint_groups=constraint_groups,
        source="pyomo",
    )
    form.build_seconds = perf_counter() - t0
    return form


def _pyomo_groups(components: list[Any], indices: list[Hashable]) -> dict[str, Group]:
    """Group positions by Pyomo component (in first-appearance order), labelled by index."""
    members: dict[int, list[int]] = {}
    owner: dict[int, Any] = {}
    for k, comp in enumerate(components):
        key = id(comp)
        if key not in members:
            members[key] = []
            owner[key] = comp
        members[key].append(k)
    groups: dict[str, Group] = {}
    for key, positions in members.items():
        comp = owner[key]
        name = comp.name
        scalar = not comp.is_indexed()
        labels = [indices[k] for k in positions]
        array = np.asarray(positions, dtype=np.int64)
        contiguous = array[-1] - array[0] + 1 == len(array)
        where: slice | np.ndarray = slice(int(array[0]), int(array[-1]) + 1) if contiguous else array
        groups[name] = Group(name, where, _pyomo_index(labels, comp, scalar), len(positions), scalar=scalar)
    return groups


def _pyomo_index(labels: list[Hashable], comp: Any, scalar: bool) -> pd.Index:
    if scalar:
        return pd.Index([None], dtype=object)
    if labels and isinstance(labels[0], tuple):
        names = _pyomo_dim_names(comp, len(labels[0]))
        return pd.MultiIndex.from_tuples(labels, names=names)
    names = _pyomo_dim_names(comp, 1)
    return pd.Index(labels, name=names[0] if names else None, tupleize_cols=False)


def _pyomo_dim_names(comp: Any, width: int) -> list[str | None]:
    """Names of the index sets (``[site, zone]`` for ``Var(m.site, m.zone)``), None where unknown."""
    try:
        index_set = comp.index_set()
        subsets = list(index_set.subsets()) if hasattr(index_set, "subsets") else [index_set]
        names = [getattr(s, "local_name", None) for s in subsets]
        if len(names) == width:
            return names
    except (AttributeError, TypeError, ValueError):
        pass
    return [None] * width


__all__ = ["from_linopy", "from_pyomo", "to_standard_form", "CONTINUOUS", "INTEGER"]
