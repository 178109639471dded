"""Shared building blocks of the formulations: index sets, sparse arcs, flows, stage capacity, labour, costs.

Every formulation (network design, redistribution, capacity) is built from the same pieces:

- **arcs**: a flow variable lives on a sparse set of (lane, product, period) rows, held as a DataFrame (one row
  per variable element) next to a linopy variable with one flat dimension over those rows. Nothing loops
  in Python over elements; sums over arcs are built as padded term arrays (:func:`grouped_terms`) and
  written straight into constraints (:func:`add_rows`), which is what keeps a million-arc model buildable in
  seconds.
- **dense grids** for small sets (site x stage x period, zone x product x period) use named linopy dims.
- **parameters** read from the instance tables with declared units: stage capacity per period
  (resource count x rate x hours x days), labour limits, annualisation factors.
- **extraction**: solved values back into plan tables (:mod:`instances.plan`).

Conventions
-----------
- Periods are the instance's 1-based ``period`` numbers; ``days`` per period come from ``inst.periods``.
- Flows are units per period. Costs are currency; strategic formulations annualise per-period costs with
  :func:`annualization_factor` and capex with :func:`annuity_factor`.
- A DC with no ``resources`` row at all cannot process flow (capacity 0, as the validator warns); a DC with
  some rows is limited at the stages it lists (plus stages it may expand).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import linopy
import linopy.constraints
import numpy as np
import pandas as pd
import xarray as xr
from linopy.constants import TERM_DIM
from linopy.expressions import LinearExpression

from instances.instance import Instance, cheapest_lanes
from instances.schema import FLOW_STAGES, LABOR_STAGES

EPS = 1e-6
"""Values below this (units, hours, trucks) are solver noise and left out of plan tables."""


def round_values(df: pd.DataFrame, columns: list[str] | tuple[str, ...], digits: int = 9) -> pd.DataFrame:
    """Round float noise off numeric columns at 1e-9 (``-0.0`` becomes ``0.0``): fine enough that sums of
    rounded values (balances over dozens of flows) stay exact to far below the checks' tolerances."""
    df = df.copy()
    for c in columns:
        df[c] = df[c].astype(float).round(digits) + 0.0
    return df


# ---------------------------------------------------------------------------------------------------
# Parameters
# ---------------------------------------------------------------------------------------------------


def annuity_factor(interest_rate: float, life_years: float) -> float:
    """Capital recovery factor: the yearly payment that repays one unit of capex over ``life_years``.

    ``r (1+r)^n / ((1+r)^n - 1)``; ``1/n`` when ``r = 0``.
    """
    if life_years <= 0:
        raise ValueError(f"capex life must be positive, got {life_years!r} years")
    r = float(interest_rate)
    if abs(r) < 1e-12:
        return 1.0 / life_years
    g = (1.0 + r) ** life_years
    return r * g / (g - 1.0)


def annualization_factor(instance: Instance) -> float:
    """Multiplier from horizon totals to a year: ``periods_per_year / number of periods``."""
    n = len(instance.periods)
    if n == 0:
        raise ValueError("instance.yaml: the horizon has no periods")
    return float(instance.defaults["periods_per_year"]) / n


def period_days(instance: Instance) -> pd.Series:
    """Days per period, indexed by period number."""
    p = instance.periods
    return pd.Series(p["days"].to_numpy(dtype=float), index=pd.Index(p["period"].astype(int), name="period"),
                     name="days")


def stage_rates(instance: Instance, sites: Sequence[str] | None = None) -> pd.DataFrame:
    """Throughput parameters per site and flow stage.

    Returns one row per (site_id, stage) that is limited: stages with a ``resources`` row, stages that
    have an expansion, and every flow stage of a DC listed in ``sites`` that has no resources at all
    (count 0: it cannot process flow). Columns: ``site_id, stage, base_count, rate_per_hour,
    hours_per_day, units_per_count_day`` (= rate x hours: units per resource unit and day),
    ``module_size, max_modules, capex, opex_per_year`` (0 where the stage cannot expand).
    """
    res = instance.resources
    res = res[res["stage"].isin(FLOW_STAGES)][["site_id", "stage", "count", "rate_per_hour", "hours_per_day"]]
    res = res.rename(columns={"count": "base_count"})
    exp = instance.expansions
    exp = exp[exp["stage"].isin(FLOW_STAGES)][["site_id", "stage", "module_size", "max_modules", "capex",
                                              "opex_per_year"]]
    out = res.merge(exp, on=["site_id", "stage"], how="outer")
    missing_rate = out["rate_per_hour"].isna()
    if missing_rate.any():
        row = out[missing_rate].iloc[0]
        raise ValueError(f"expansions.csv: site {row['site_id']!r} stage {row['stage']!r}: an expansion needs "
                         "a resources row for the same site and stage (to know the rate per resource unit)")
    if sites is not None:
        bare = [s for s in sites if s not in set(res["site_id"])]
        if bare:
            zero = pd.DataFrame([(s, st) for s in bare for st in FLOW_STAGES], columns=["site_id", "stage"])
            zero["base_count"], zero["rate_per_hour"], zero["hours_per_day"] = 0.0, 1.0, 1.0
            out = pd.concat([out, zero], ignore_index=True)
    out["base_count"] = out["base_count"].fillna(0.0)
    for c in ("module_size", "max_modules", "capex", "opex_per_year"):
        out[c] = out[c].fillna(0.0).astype(float)
    out["units_per_count_day"] = out["rate_per_hour"] * out["hours_per_day"]
    return out.sort_values(["site_id", "stage"]).reset_index(drop=True)


def derate_series(derate: Mapping[tuple[str, str], float] | pd.DataFrame | None, keys: pd.DataFrame) -> np.ndarray:
    """Capacity derate factor per row of ``keys`` (``site_id, stage``); 1 where none is given.

    ``derate`` is a mapping ``(site, stage) -> factor`` or a DataFrame with ``site_id, stage, factor``;
    a factor in [0, 1] multiplies the effective capacity (the repair loop tightens a failing stage).
    """
    if derate is None or len(derate) == 0:
        return np.ones(len(keys))
    if isinstance(derate, pd.DataFrame):
        d = {(s, st): f for s, st, f in zip(derate["site_id"], derate["stage"], derate["factor"])}
    else:
        d = dict(derate)
    for (s, st), f in d.items():
        if not 0.0 <= float(f) <= 1.0 + 1e-12 or not np.isfinite(float(f)):
            raise ValueError(f"capacity_derate[{s!r}, {st!r}] = {f!r}: a factor must lie in [0, 1]")
    return np.array([float(d.get((s, st), 1.0)) for s, st in zip(keys["site_id"], keys["stage"])])


def labor_parameters(instance: Instance) -> pd.DataFrame:
    """Labour data per site with ``hours_per_unit`` = sum over labour stages of 1 / productivity (h/unit).

    Every unit through a DC passes each labour stage once, so a throughput of q units needs
    ``q * hours_per_unit`` labour hours.
    """
    lab = instance.labor.copy()
    lab["hours_per_unit"] = sum(1.0 / lab[f"productivity_{s}"] for s in LABOR_STAGES) if len(lab) else []
    return lab.reset_index(drop=True)


# ---------------------------------------------------------------------------------------------------
# Index sets and arcs
# ---------------------------------------------------------------------------------------------------


def codes(values: pd.Series | np.ndarray, index: pd.Index) -> np.ndarray:
    """Position of every value in ``index`` (-1 where absent)."""
    return index.get_indexer(pd.Index(np.asarray(values)))


def grid_codes(frame: pd.DataFrame, by: Mapping[str, pd.Index]) -> np.ndarray:
    """Flat C-order position of every row of ``frame`` on the dense grid ``by`` (dim -> index); -1 if off-grid.

    ``by`` keys are column names of ``frame``.
    """
    parts = [codes(frame[c].to_numpy(), idx) for c, idx in by.items()]
    if not parts:
        return np.zeros(len(frame), dtype=np.int64)
    ok = np.all([p >= 0 for p in parts], axis=0)
    shape = tuple(len(i) for i in by.values())
    flat = np.full(len(frame), -1, dtype=np.int64)
    if ok.any():
        flat[ok] = np.ravel_multi_index(tuple(p[ok] for p in parts), shape)
    return flat


@dataclass(frozen=True)
class Arcs:
    """A sparse set of flow variable elements: ``frame`` (one row per element) and its linopy dim name."""

    dim: str
    frame: pd.DataFrame

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def index(self) -> pd.RangeIndex:
        """The arc dimension as a range index named ``dim`` (one position per arc row)."""
        return pd.RangeIndex(len(self.frame), name=self.dim)


def add_arc_variables(model: linopy.Model, name: str, arcs: Arcs, upper: np.ndarray | float = np.inf,
                      binary: bool = False, integer: bool = False) -> linopy.Variable:
    """One variable per arc row, lower bound 0, over the flat dim ``arcs.dim``."""
    coords = [arcs.index]
    if binary:
        return model.add_variables(coords=coords, name=name, binary=True)
    ub = xr.DataArray(np.broadcast_to(np.asarray(upper, dtype=float), (len(arcs),)).copy(), coords=coords)
    return model.add_variables(lower=0.0, upper=ub, coords=coords, name=name, integer=integer)


def grouped_terms(labels: np.ndarray, group: np.ndarray, n_cells: int,
                  coeffs: np.ndarray | float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Term arrays of ``sum_{a : group[a] = g} coeffs[a] x[labels[a]]`` for cells g = 0..n_cells-1.

    Returns ``(labels, coeffs)`` shaped ``(n_cells, max members)``, padded with label -1. Built with one
    stable sort: O(n log n), no Python loop.
    """
    labels = np.asarray(labels).ravel()
    coef = np.broadcast_to(np.asarray(coeffs, dtype=float), labels.shape)
    keep = (group >= 0) & (labels >= 0)
    g, lab, cf = group[keep], labels[keep], coef[keep]
    order = np.argsort(g, kind="stable")
    g, lab, cf = g[order], lab[order], cf[order]
    counts = np.bincount(g, minlength=n_cells)
    width = max(int(counts.max()) if len(counts) else 0, 1)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    pos = np.arange(len(g)) - starts[g]
    term_labels = np.full((n_cells, width), -1, dtype=np.int64)
    term_coeffs = np.zeros((n_cells, width))
    term_labels[g, pos] = lab
    term_coeffs[g, pos] = cf
    return term_labels, term_coeffs


def _term_coeffs(cf: np.ndarray | float, shape: tuple[int, ...]) -> np.ndarray:
    """Coefficients broadcast to a term array's ``shape`` (grid + term axis): one per term, cell or all."""
    cf = np.asarray(cf, dtype=float)
    n_cells = int(np.prod(shape[:-1], dtype=np.int64))
    if cf.size == int(np.prod(shape, dtype=np.int64)):
        return cf.reshape(shape)
    if cf.size == n_cells:
        return np.broadcast_to(cf.reshape(*shape[:-1], 1), shape)
    return np.broadcast_to(cf.reshape(()), shape)


def add_rows(model: linopy.Model, name: str, coords: Mapping[str, pd.Index],
             terms: Sequence[tuple[np.ndarray, np.ndarray | float]], sign: str, rhs: np.ndarray | float,
             mask: np.ndarray | None = None) -> linopy.constraints.Constraint | None:
    """Add constraints ``sum_k coeffs_k x[labels_k] (sign) rhs`` over the grid ``coords`` straight from term arrays.

    Each ``(labels, coeffs)`` pair is shaped like the grid (one term per cell) or ``(*grid, k)`` (k terms
    per cell, label -1 = none); coefficients broadcast. ``sign`` is ``"<="``, ``">="`` or ``"="``. Skips
    linopy's expression arithmetic (alignment and merging), which dominates build time on small models.
    """
    dims = list(coords)
    shape = tuple(len(i) for i in coords.values())
    if 0 in shape:
        return None  # an empty family (e.g. no demand): nothing to add
    labs, cfs = [], []
    for lab, cf in terms:
        lab = np.asarray(lab, dtype=np.int64).reshape(*shape, -1)
        labs.append(lab)
        cfs.append(_term_coeffs(cf, lab.shape))
    labels = np.concatenate(labs, axis=-1)
    coeffs = np.concatenate(cfs, axis=-1)
    rhs_arr = np.broadcast_to(np.asarray(rhs, dtype=float), shape).copy()
    ds = xr.Dataset(
        {"coeffs": ((*dims, TERM_DIM), coeffs), "vars": ((*dims, TERM_DIM), labels),
         "sign": (dims, np.full(shape, sign, dtype=object).astype(str)), "rhs": (dims, rhs_arr)},
        coords={d: pd.Index(i, name=d) for d, i in coords.items()},
    )
    con = linopy.constraints.Constraint(ds, model, skip_broadcast=True)
    m = None if mask is None else xr.DataArray(np.asarray(mask, dtype=bool).reshape(shape),
                                               coords=[pd.Index(i, name=d) for d, i in coords.items()])
    return model.add_constraints(con, name=name, mask=m)


def objective_from_terms(model: linopy.Model, terms: Sequence[tuple[np.ndarray, np.ndarray | float]]
                         ) -> LinearExpression:
    """A scalar expression ``sum_k coeffs_k . x[labels_k]`` from flat term arrays (for the objective)."""
    labs = [np.asarray(lab, dtype=np.int64).ravel() for lab, _ in terms]
    cfs = [np.broadcast_to(np.asarray(c, dtype=float).ravel() if np.ndim(c) else float(c), lab.shape)
           for lab, (_, c) in zip(labs, terms)]
    labels = np.concatenate(labs) if labs else np.full(1, -1, dtype=np.int64)
    coeffs = np.concatenate(cfs) if cfs else np.zeros(1)
    keep = (labels >= 0) & (coeffs != 0)
    if not keep.any():
        labels, coeffs = np.full(1, -1, dtype=np.int64), np.zeros(1)
    else:
        labels, coeffs = labels[keep], coeffs[keep]
    ds = xr.Dataset({"coeffs": ((TERM_DIM,), coeffs), "vars": ((TERM_DIM,), labels), "const": 0.0})
    return LinearExpression(ds, model)


def has_members(group: np.ndarray, n_cells: int) -> np.ndarray:
    """Boolean per grid cell: does any element map to it (for masking constraints)?"""
    out = np.zeros(n_cells, dtype=bool)
    out[group[group >= 0]] = True
    return out


def gather_labels(var: linopy.Variable, positions: np.ndarray) -> np.ndarray:
    """Labels of ``var`` (flattened C-order) at ``positions`` (e.g. the open[site] of every arc)."""
    return np.asarray(var.labels.values).ravel()[positions]


def outbound_lanes(instance: Instance, dc_ids: Sequence[str], zone_ids: Sequence[str]) -> pd.DataFrame:
    """DC -> zone lanes (cheapest mode per pair kept), with ``distance_km`` filled (0 where unknown)."""
    lanes = instance.lanes
    lanes = lanes[lanes["origin_id"].isin(set(dc_ids)) & lanes["destination_id"].isin(set(zone_ids))]
    return _cheapest(lanes)


def inbound_lanes(instance: Instance, source_ids: Sequence[str], dc_ids: Sequence[str]) -> pd.DataFrame:
    """Source (port/supplier) -> DC lanes (cheapest mode per pair kept)."""
    lanes = instance.lanes
    lanes = lanes[lanes["origin_id"].isin(set(source_ids)) & lanes["destination_id"].isin(set(dc_ids))]
    return _cheapest(lanes)


def _cheapest(lanes: pd.DataFrame) -> pd.DataFrame:
    lanes = cheapest_lanes(lanes).copy()
    lanes["distance_km"] = lanes["distance_km"].fillna(0.0)
    return lanes


def expand_arcs(lanes: pd.DataFrame, quantities: pd.DataFrame, lane_key: str, dim: str) -> Arcs:
    """Cross lanes with (key, product_id, period, quantity) rows sharing ``lane_key`` (e.g. zone or site).

    Returns :class:`Arcs` with every lane column plus ``product_id, period, bound`` (the quantity, an
    upper bound of the arc's flow) and ``lane`` (the lane row number).
    """
    lanes = lanes.reset_index(drop=True).assign(lane=np.arange(len(lanes)))
    frame = lanes.merge(quantities.rename(columns={"quantity": "bound"}), on=lane_key, how="inner")
    frame = frame.sort_values(["lane", "period", "product_id"], kind="stable").reset_index(drop=True)
    return Arcs(dim, frame)


# ---------------------------------------------------------------------------------------------------
# Results back to tables
# ---------------------------------------------------------------------------------------------------


def clean(x: np.ndarray, tol: float = 1e-7) -> np.ndarray:
    """Round solver noise: values within ``tol`` of an integer (or of 0) snap to it."""
    x = np.asarray(x, dtype=float)
    r = np.round(x)
    return np.where(np.abs(x - r) <= tol * np.maximum(1.0, np.abs(x)), r, x) + 0.0


def costs_table(components: Mapping[str, float]) -> pd.DataFrame:
    """The plan's ``costs`` table from component -> amount."""
    return pd.DataFrame({"component": list(components), "amount": [float(v) for v in components.values()]})


def service_table(flows_out: pd.DataFrame, demand: pd.DataFrame, service_days: float) -> pd.DataFrame:
    """Demand-weighted delivery time and distance per zone.

    ``flows_out``: outbound flows with ``destination_id, quantity, transit_days, distance_km``; ``demand``:
    ``zone_id, quantity``. ``within_sla_share`` = units on lanes with transit <= ``service_days`` / demand.
    """
    f = flows_out[flows_out["quantity"] > 0]
    w = f.assign(td=f["quantity"] * f["transit_days"], dk=f["quantity"] * f["distance_km"],
                 ok=f["quantity"] * (f["transit_days"] <= service_days + 1e-9))
    g = w.groupby("destination_id")[["quantity", "td", "dk", "ok"]].sum()
    dem = demand.groupby("zone_id")["quantity"].sum()
    out = pd.DataFrame({"zone_id": dem.index.astype(str), "demand": dem.to_numpy()})
    g = g.reindex(out["zone_id"]).fillna(0.0)
    served = g["quantity"].to_numpy()
    with np.errstate(invalid="ignore", divide="ignore"):
        out["avg_transit_days"] = np.where(served > 0, g["td"].to_numpy() / served, np.nan)
        out["avg_distance_km"] = np.where(served > 0, g["dk"].to_numpy() / served, np.nan)
        out["within_sla_share"] = np.where(out["demand"] > 0, g["ok"].to_numpy() / out["demand"], 1.0)
    return out


def overall_service(flows_out: pd.DataFrame, total_demand: float, service_days: float) -> dict[str, float]:
    """Network-wide demand-weighted transit days, distance and share of demand within ``service_days``."""
    f = flows_out[flows_out["quantity"] > 0]
    q = float(f["quantity"].sum())
    if q <= 0:
        return {"avg_transit_days": float("nan"), "avg_distance_km": float("nan"),
                "within_sla_share": 0.0 if total_demand > 0 else 1.0}
    return {
        "avg_transit_days": float((f["quantity"] * f["transit_days"]).sum() / q),
        "avg_distance_km": float((f["quantity"] * f["distance_km"]).sum() / q),
        "within_sla_share": float((f["quantity"] * (f["transit_days"] <= service_days + 1e-9)).sum()
                                  / total_demand) if total_demand > 0 else 1.0,
    }


# ---------------------------------------------------------------------------------------------------
# Constraint families shared by the formulations
# ---------------------------------------------------------------------------------------------------


def add_throughput(model: linopy.Model, flows: Sequence[tuple[linopy.Variable, np.ndarray]], sites: pd.Index,
                   periods: pd.Index, name: str = "throughput") -> linopy.Variable:
    """Units handled per site and period as a variable, defined by the flows through the site.

    .. math:: \\mathrm{throughput}_{i,t} = \\sum_{a \\in A(i,t)} \\mathrm{flow}_a

    ``flows`` lists (flat flow variable, cell of each element on the (site, period) grid, -1 = not counted).
    Stage capacity and labour constraints refer to this one variable instead of repeating every flow.
    """
    coords = {"site": sites.rename("site"), "period": periods.rename("period")}
    thr = model.add_variables(lower=0.0, coords=list(coords.values()), name=name)
    n = len(sites) * len(periods)
    terms = [(thr.labels.values, 1.0)]
    for var, group in flows:
        terms.append(grouped_terms(var.labels.values, group, n, -1.0))
    add_rows(model, f"{name}_definition", coords, terms, "=", 0.0)
    return thr


def add_expansion_modules(model: linopy.Model, rates: pd.DataFrame, open_site: linopy.Variable | None = None,
                          sites: pd.Index | None = None, name: str = "modules") -> tuple[linopy.Variable | None,
                                                                                       pd.DataFrame]:
    """Integer expansion modules per expandable (site, stage), over a flat dim ``expansion``.

    .. math:: 0 \\le \\mathrm{modules}_{i,s} \\le M_{i,s}\\, \\mathrm{open}_i, \\quad \\mathrm{modules} \\in \\mathbb{Z}

    Returns the variable (None when nothing can expand) and the expandable rows of ``rates``.
    """
    exp = rates[(rates["max_modules"] > 0) & (rates["module_size"] > 0)].reset_index(drop=True)
    if exp.empty:
        return None, exp
    idx = pd.RangeIndex(len(exp), name="expansion")
    ub = xr.DataArray(exp["max_modules"].to_numpy(dtype=float), coords=[idx])
    mod = model.add_variables(lower=0.0, upper=ub, coords=[idx], name=name, integer=True)
    if open_site is not None and sites is not None:
        pos = codes(exp["site_id"].to_numpy(), sites)
        add_rows(model, f"{name}_only_if_open", {"expansion": idx},
                 [(mod.labels.values, 1.0), (gather_labels(open_site, pos), -exp["max_modules"].to_numpy(float))],
                 "<=", 0.0)
    return mod, exp


def add_stage_capacity(model: linopy.Model, throughput: linopy.Variable, rates: pd.DataFrame, days: pd.Series,
                       open_site: linopy.Variable | None = None, modules: linopy.Variable | None = None,
                       expandable: pd.DataFrame | None = None, derate: np.ndarray | None = None,
                       name: str = "stage_capacity") -> None:
    """Throughput within every limited stage's capacity, per site, stage and period.

    .. math::
        \\mathrm{throughput}_{i,t} \\le f_{i,s}\\, u_{i,s}\\, D_t\\,
            (c_{i,s}\\, \\mathrm{open}_i + m_{i,s}\\, \\mathrm{modules}_{i,s})

    with :math:`u` = rate x hours (units per resource unit and day), :math:`D_t` days in period t,
    :math:`c` installed resource units, :math:`m` resource units per module, :math:`f` the derate factor.
    Without ``open_site`` the installed part is a constant. Rows of ``rates`` whose site is not on the
    throughput's ``site`` dim are ignored.
    """
    sites = throughput.indexes["site"]
    periods = throughput.indexes["period"]
    rates = rates.reset_index(drop=True)
    on = codes(rates["site_id"].to_numpy(), sites) >= 0
    if not on.any():
        return
    f = np.ones(len(rates)) if derate is None else np.asarray(derate, dtype=float)
    r, f = rates[on].reset_index(drop=True), f[on]
    d = days.reindex(periods).to_numpy(dtype=float)
    n_t = len(periods)
    per_day = (f * r["units_per_count_day"].to_numpy())[:, None] * d[None, :]  # (rows, periods)
    site_pos = codes(r["site_id"].to_numpy(), sites)
    terms = [(np.asarray(throughput.labels.values)[site_pos, :], 1.0)]
    base = r["base_count"].to_numpy(dtype=float)[:, None] * per_day
    rhs: np.ndarray | float = 0.0
    if open_site is not None:
        terms.append((np.repeat(gather_labels(open_site, site_pos)[:, None], n_t, axis=1), -base))
    else:
        rhs = base
    if modules is not None and expandable is not None and len(expandable):
        key = pd.MultiIndex.from_frame(expandable[["site_id", "stage"]])
        mpos = key.get_indexer(pd.MultiIndex.from_frame(r[["site_id", "stage"]]))
        mlab = np.where(mpos >= 0, gather_labels(modules, np.maximum(mpos, 0)), -1)
        msize = np.where(mpos >= 0, expandable["module_size"].to_numpy(dtype=float)[np.maximum(mpos, 0)], 0.0)
        terms.append((np.repeat(mlab[:, None], n_t, axis=1), -msize[:, None] * per_day))
    idx = pd.RangeIndex(len(r), name=f"{name}_row")
    add_rows(model, name, {idx.name: idx, "period": periods}, terms, "<=", rhs)


def add_labor(model: linopy.Model, throughput: linopy.Variable, labor: pd.DataFrame, days: pd.Series,
              open_site: linopy.Variable | None = None, name: str = "labor") -> tuple[linopy.Variable | None,
                                                                                   linopy.Variable | None,
                                                                                   pd.Index]:
    """Labour hours per site and period: enough for the throughput, within headcount and overtime limits.

    .. math::
        \\mathrm{regular}_{i,t} + \\mathrm{overtime}_{i,t} \\ge h_i\\, \\mathrm{throughput}_{i,t}, \\quad
        \\mathrm{regular}_{i,t} \\le H_i\\, W_i\\, \\tfrac{D_t}{7}\\, \\mathrm{open}_i, \\quad
        \\mathrm{overtime}_{i,t} \\le O_i\\, \\tfrac{D_t}{7}\\, \\mathrm{open}_i

    :math:`h` labour hours per unit (:func:`labor_parameters`), :math:`H` headcount, :math:`W` regular hours
    per person and week, :math:`O` overtime hours per week. Sites without a labour row are not limited.
    Returns (regular, overtime, labour sites) — None, None, empty when no site has labour data.
    """
    sites = throughput.indexes["site"]
    periods = throughput.indexes["period"]
    lab = labor[labor["site_id"].isin(set(sites))].drop_duplicates("site_id").reset_index(drop=True)
    lsites = pd.Index(lab["site_id"].to_numpy(), name="labor_site")
    if lab.empty:
        return None, None, lsites
    coords = [lsites, periods.rename("period")]
    weeks = days.reindex(periods).to_numpy(dtype=float) / 7.0
    reg_cap = (lab["max_headcount"] * lab["hours_per_person_week"]).to_numpy()[:, None] * weeks[None, :]
    ot_cap = lab["max_overtime_hours"].to_numpy()[:, None] * weeks[None, :]
    regular = model.add_variables(lower=0.0, upper=xr.DataArray(reg_cap, coords=coords), coords=coords,
                                  name=f"{name}_regular_hours")
    overtime = model.add_variables(lower=0.0, upper=xr.DataArray(ot_cap, coords=coords), coords=coords,
                                   name=f"{name}_overtime_hours")
    pos = codes(lab["site_id"].to_numpy(), sites)
    cdict = {"labor_site": lsites, "period": periods.rename("period")}
    hpu = lab["hours_per_unit"].to_numpy(dtype=float)[:, None]
    add_rows(model, f"{name}_hours_needed", cdict,
             [(regular.labels.values, 1.0), (overtime.labels.values, 1.0),
              (np.asarray(throughput.labels.values)[pos, :], -np.broadcast_to(hpu, reg_cap.shape))], ">=", 0.0)
    if open_site is not None:
        olab = np.repeat(gather_labels(open_site, pos)[:, None], len(periods), axis=1)
        for var, cap, what in ((regular, reg_cap, "headcount"), (overtime, ot_cap, "overtime")):
            add_rows(model, f"{name}_{what}_if_open", cdict, [(var.labels.values, 1.0), (olab, -cap)], "<=", 0.0)
    return regular, overtime, lsites


def dense_values(result: object, var: linopy.Variable | None) -> np.ndarray:
    """Solved values of ``var`` shaped like its labels (0 for masked elements or an absent variable).

    ``result`` is a :class:`solvers.SolveResult`; its ``values[name]`` lists the active (unmasked) elements
    in C order of the variable's dims, which is how the linopy front door numbers columns.
    """
    if var is None:
        return np.zeros(0)
    labels = np.asarray(var.labels.values)
    out = np.zeros(labels.shape)
    name = str(var.name)
    values = getattr(result, "values", None)
    if values is None or name not in values:
        return out
    active = labels != -1
    v = np.asarray(values[name].to_numpy(), dtype=float)
    if v.size != int(active.sum()):
        raise ValueError(f"solution of {name!r} has {v.size} values for {int(active.sum())} active elements")
    out[active] = np.nan_to_num(v, nan=0.0)
    return out


def start_plan(warm_start: object, decision: str) -> tuple[object, object]:
    """Sort out a formulation's ``warm_start`` argument: ``(pass_through, plan)``.

    None, a :class:`solvers.SolveResult` or a ``{variable: Series}`` dict pass through to
    :func:`solvers.solve` unchanged (``plan`` None); a :class:`~instances.plan.Plan` (or a pipeline
    PlanResult holding one) of ``decision`` with a solution comes back as ``plan``, for the formulation to
    translate into its variables; a plan without a solution or of another decision gives ``(None, None)``.
    """
    import solvers
    from instances.plan import Plan

    if warm_start is None or isinstance(warm_start, solvers.SolveResult | Mapping):
        return warm_start, None
    inner = getattr(warm_start, "plan", None)
    if isinstance(inner, Plan):
        warm_start = inner
    if not isinstance(warm_start, Plan):
        raise TypeError(f"warm_start must be a Plan, a SolveResult or a dict, not {type(warm_start).__name__}")
    if not warm_start.has_solution or warm_start.decision != decision:
        return None, None
    return None, warm_start


def start_violation(form: object, start: Mapping[str, pd.Series], tol: float = 1e-6) -> str | None:
    """Why a complete MIP start breaks ``form`` (a :class:`solvers.StandardForm`); None when it is feasible.

    Checked like the solver checks a start (absolute tolerance ``tol``): every column has a value, within
    its bounds, integral where it must be, and every row's activity within its bounds. A start that fails is
    better not passed: HiGHS then solves an extra LP with the start's integers fixed to repair it, which on a
    large model costs about as much as the root LP it was meant to save.
    """
    import solvers

    x = solvers.warm_start_vector(form, start)
    if form.col_scale is not None:
        x = x / form.col_scale
    missing = np.isnan(x)
    if missing.any():
        first = form.column_name(int(np.argmax(missing)))
        return f"{int(missing.sum())} of {x.size} columns have no value (first: {first})"
    excess = np.maximum(form.col_lower - x, x - form.col_upper)
    if excess.size and excess.max() > tol:
        return f"column {form.column_name(int(np.argmax(excess)))} is {excess.max():.6g} outside its bounds"
    integer = form.integrality != 0
    frac = np.abs(x - np.round(x)) * integer
    if frac.size and frac.max() > tol:
        return f"column {form.column_name(int(np.argmax(frac)))} is not integral"
    if form.n_rows:
        act = form.A @ x
        excess = np.maximum(form.row_lower - act, act - form.row_upper)
        if excess.max() > tol:
            return f"row {form.row_name(int(np.argmax(excess)))} is violated by {excess.max():.6g}"
    return None
