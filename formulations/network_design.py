"""Network design / consolidation: which DCs to keep, close or open, what capacity to add, how to route flow.

The model (one period set T, DCs I, sources S, zones Z, products P; flows in units per period)::

    min  sum_i F_i open_i + sum_{i cand} O_i open_i + sum_{i exist} C_i (1 - open_i)         fixed, one-off
       + A * sum_a c_a flow_a  (outbound DC->zone and inbound source->DC legs)                  transport
       + A * h * sum_{outbound a} flow_a                                                         handling
       + A * sum_{i,t} (w_i regular_{i,t} + w'_i overtime_{i,t})                                 labour
       + sum_{i,s} (K_{i,s} crf + E_{i,s}) modules_{i,s}                                          capex, opex
       + A * pi * sum unmet_{z,p,t}                                                              penalty
    s.t. sum_{i} flow_{i,z,p,t} + unmet_{z,p,t} = d_{z,p,t}                                       demand
         flow_{i,z,p,t} <= d_{z,p,t} open_i      (or <= d_{z,p,t} assign_{i,z})                   linking (strong)
         sum_s in_{s,i,p,t} = sum_z flow_{i,z,p,t}                                                DC balance
         sum_i in_{s,i,p,t} <= supply_{s,p,t}                                                     supply
         sum_p flow_{lane,p,t} <= lane capacity                                                    lanes
         throughput_{i,t} <= f u D (c open_i + m modules_{i,s})   for every stage s                 capacity
         regular + overtime >= hours per unit * throughput; regular <= headcount hours * open      labour
         sum_{transit <= N} flow >= share * sum d                                                  service
         sum K modules + sum_{cand} O open <= budget;  min_open <= sum open <= max_open            options
         single sourcing: sum_i assign_{i,z} = 1, assign_{i,z} <= open_i

with A = periods_per_year / number of periods (horizon totals to a year) and crf the capital recovery
factor (:func:`formulations.common.annuity_factor`). Each family is one ``add_*`` function below.

Exact reduction — product aggregation: the only product-dependent data of this model are demand and
supply (lane costs, handling, labour productivity, capacities and the unmet penalty are per unit, whatever
the product). When supply limits cannot bind — no supply table, or every source with a lane to a DC offers
each product in each period at least that product's total demand of the period — every constraint
depends on the flows only through their sums over products, and the per-product linking rows sum to the
aggregate one (and any aggregate solution splits back proportionally to demand shares, meeting each
per-product row). The model is then solved with one product and the flows split back afterwards; the
optimum and the LP relaxation are unchanged (:func:`products_aggregable` states and checks the condition).

Large models — relax and restore (:func:`solve`, ``strategy``): the LP relaxation of the
(aggregated) model gives a lower bound; its rounded sites and modules, fixed on the full model, give a plan;
when both are within the requested gap the plan is optimal within it (eu_fba: 0.15 % in seconds) and no
branch and bound is needed; otherwise the MILP runs from that plan as a warm start.

The aggregated relaxation keeps what products it can: an arc i -> z carries at most the demand of the products
DC i can receive (:func:`_reachable_bounds`), and every product's demand at a zone is covered by the DCs that
receive it (:func:`add_product_cover`): when each product comes from a few sources this lifts the relaxation
to within ~1 % of the per-product LP (a small network: 54.0 M plain, 77.4 M with both, per-product LP 78.1 M).
Large models (:data:`LARGE_LP_ARCS`) take that LP over blocks of periods (:mod:`formulations.period_blocks`, a
relaxation) by interior point without crossover, its bound made safe by weak duality
(:func:`solvers.bounds.dual_bound`), unless the full MILP can start in the time left.

Where a Lagrangian relaxation applies (no lane capacities, service, budget, open-count or single-sourcing rows),
it replaces that LP: the demand and supply rows relaxed, each DC priced by a greedy knapsack
(:mod:`formulations.network_lagrangian`); on the median network (296 DCs, 28 products, 52 weeks) its bound
reaches 0.989 G in about 90 s, where the per-product LP (0.9926 G) takes 1,372 s by interior point and the
aggregated one gives 0.708 G in 362 s.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import linopy
import numpy as np
import pandas as pd
import xarray as xr

import solvers
from formulations import lagrangian, network_lagrangian
from formulations import network_heuristics as nh
from formulations.common import (
    Arcs,
    add_arc_variables,
    add_expansion_modules,
    add_labor,
    add_rows,
    add_stage_capacity,
    add_throughput,
    annualization_factor,
    annuity_factor,
    clean,
    codes,
    costs_table,
    dense_values,
    derate_series,
    expand_arcs,
    gather_labels,
    grid_codes,
    grouped_terms,
    has_members,
    inbound_lanes,
    labor_parameters,
    objective_from_terms,
    outbound_lanes,
    overall_service,
    period_days,
    service_table,
    stage_rates,
    start_plan,
)
from instances.instance import Instance
from instances.plan import PLAN_TABLES, Plan

DECISION = "consolidation"
ALL_PRODUCTS = "*"
"""Product id used inside the model when products are aggregated."""


@dataclass
class NetworkDesignOptions:
    """Options of the network design model (``None`` = take the instance default).

    Attributes
    ----------
    single_source : serve each zone from exactly one DC.
    service_days, service_share : at least ``service_share`` of all demand on lanes of at most
        ``service_days`` transit days (instance defaults; share 0 = no constraint).
    max_distance_km : drop DC->zone lanes longer than this.
    capex_budget : most investment (module capex + opening costs of candidates), currency.
    min_open, max_open : bounds on the number of open DCs.
    force_open, force_closed : DC ids fixed open / closed.
    allow_unmet : demand may go unserved at the penalty (reported in ``unmet``); False = must be met.
    capacity_derate : ``{(site, stage): factor}`` or DataFrame ``site_id, stage, factor``; factor in [0, 1]
        multiplies effective capacity (the repair loop's lever).
    capex_life_years, interest_rate : capex annualisation (instance defaults).
    annualize_one_off : spread opening/closing costs over the capex life like capex (default: charged
        in full in the planning year).
    aggregate_products : True / False / None = aggregate exactly when :func:`products_aggregable` allows;
        ``"relax"`` = aggregate products and supply even when not exact (a relaxation: its optimum is a
        lower bound of the true one; used by the ``relax_restore`` strategy).
    labor : model labour hours and limits (sites with a labour row).
    strategy : ``"direct"`` (one MILP), ``"relax_restore"`` or ``"auto"`` (see :func:`solve`).
    fixed_modules : ``{(site, stage): modules}`` fixing expansion decisions (used when restoring).
    allowed_lanes : DC -> zone pairs that may carry flow (None = all; used when restoring).
    capacity_cut : add the aggregate capacity inequality per period (:func:`add_aggregate_capacity`; valid, so
        the optimum is unchanged; the relax-and-restore MILP phase switches it on).
    """

    single_source: bool = False
    service_days: float | None = None
    service_share: float | None = None
    max_distance_km: float | None = None
    capex_budget: float | None = None
    min_open: int | None = None
    max_open: int | None = None
    force_open: Sequence[str] = field(default_factory=tuple)
    force_closed: Sequence[str] = field(default_factory=tuple)
    allow_unmet: bool = True
    capacity_derate: Mapping[tuple[str, str], float] | pd.DataFrame | None = None
    capex_life_years: float | None = None
    interest_rate: float | None = None
    annualize_one_off: bool = False
    aggregate_products: bool | str | None = None
    labor: bool = True
    strategy: str = "auto"
    fixed_modules: Mapping[tuple[str, str], int] | None = None
    allowed_lanes: Sequence[tuple[str, str]] | None = None
    capacity_cut: bool = False


Options = NetworkDesignOptions
"""The options of this formulation under the protocol's name (:mod:`formulations.protocol`)."""


def plan_instance(instance: Instance, options: NetworkDesignOptions | None = None) -> Instance:
    """The instance a network design plan is expressed on: the instance itself."""
    return instance


@dataclass
class NetworkDesignContext:
    """Everything the build derived from the instance, kept to read the solution back into tables."""

    instance: Instance
    options: NetworkDesignOptions
    dcs: pd.DataFrame
    sites: pd.Index
    zones: pd.Index
    products: pd.Index
    periods: pd.Index
    days: pd.Series
    demand: pd.DataFrame  # model demand (aggregated when products are): zone_id, product_id, period, quantity
    outbound: Arcs
    inbound: Arcs
    supply: pd.DataFrame
    rates: pd.DataFrame
    expandable: pd.DataFrame
    labor: pd.DataFrame
    annual: float
    crf: float
    one_off: float
    service_days: float
    service_share: float
    aggregated: bool
    aggregation_reason: str
    objective_constant: float
    variables: dict[str, linopy.Variable | None] = field(default_factory=dict)
    build_seconds: float = 0.0
    product_cover: tuple[pd.DataFrame, np.ndarray, np.ndarray] | None = None
    """Relaxation only: the (zone, product, period) demand rows some DC cannot serve, with (row, arc) pairs of
    the arcs that can (:func:`add_product_cover`)."""


# ---------------------------------------------------------------------------------------------------
# Exact reductions
# ---------------------------------------------------------------------------------------------------


def products_aggregable(instance: Instance, source_lanes: pd.DataFrame | None = None) -> tuple[bool, str]:
    """Whether products can be aggregated into one without changing the optimum; and why (not).

    Condition: supply limits cannot bind, i.e. the supply table is empty, no source has a lane to a DC,
    or every source with such a lane offers every product in every period at least that product's
    total demand in the period. (All other data of the model are product-independent per unit.)
    """
    if len(instance.products) <= 1:
        return True, "one product"
    supply = instance.supply
    if source_lanes is None:
        dc_ids = instance.dcs["id"].tolist()
        source_lanes = inbound_lanes(instance, instance.sources["id"].tolist(), dc_ids)
    if supply.empty or source_lanes.empty:
        return True, "supply limits cannot bind (no supply table or no source lanes)"
    need = instance.demand.groupby(["product_id", "period"], as_index=False)["quantity"].sum()
    need = need[need["quantity"] > 0]
    srcs = pd.DataFrame({"site_id": source_lanes["origin_id"].unique()})
    grid = srcs.merge(need, how="cross")
    cap = supply.groupby(["site_id", "product_id", "period"], as_index=False)["capacity"].sum()
    grid = grid.merge(cap, on=["site_id", "product_id", "period"], how="left").fillna({"capacity": 0.0})
    short = grid[grid["capacity"] < grid["quantity"] - 1e-9]
    if short.empty:
        return True, "every source offers each product at least its total demand in every period"
    r = short.iloc[0]
    return False, (f"supply of {r['product_id']!r} at {r['site_id']!r} in period {int(r['period'])} "
                   f"({r['capacity']:g}) is below that product's total demand ({r['quantity']:g}) and may bind")


# ---------------------------------------------------------------------------------------------------
# Preparation
# ---------------------------------------------------------------------------------------------------


def _check_site_ids(ids: Sequence[str], known: pd.Index, what: str) -> list[str]:
    ids = [str(s) for s in ids]
    bad = [s for s in ids if s not in known]
    if bad:
        raise ValueError(f"{what}: unknown DC id(s) {bad} (DCs are {list(known)[:10]}"
                         f"{'...' if len(known) > 10 else ''})")
    return ids


def prepare(instance: Instance, options: NetworkDesignOptions | None = None) -> NetworkDesignContext:
    """Index sets, arcs and parameters of the model (no linopy objects yet)."""
    t0 = time.perf_counter()
    opt = options or NetworkDesignOptions()
    d = instance.defaults
    dcs = instance.dcs.reset_index(drop=True)
    sites = pd.Index(dcs["id"].astype(str), name="site")
    if sites.empty:
        raise ValueError("sites.csv: no DC (kind dc or crossdock): nothing to design")
    fo = _check_site_ids(opt.force_open, sites, "force_open")
    fc = _check_site_ids(opt.force_closed, sites, "force_closed")
    both = sorted(set(fo) & set(fc))
    if both:
        raise ValueError(f"force_open and force_closed both name {both}")
    periods = pd.Index(instance.periods["period"].astype(int), name="period")
    days = period_days(instance)
    zones_all = instance.zones["id"].astype(str)

    open_able = sites.difference(pd.Index(fc))  # arcs of forced-closed sites could never carry flow
    out_lanes = outbound_lanes(instance, open_able, zones_all)
    if opt.allowed_lanes is not None:
        allowed = pd.MultiIndex.from_tuples(list(opt.allowed_lanes))
        out_lanes = out_lanes[pd.MultiIndex.from_frame(out_lanes[["origin_id", "destination_id"]]).isin(allowed)]
        out_lanes = out_lanes.reset_index(drop=True)
    if opt.max_distance_km is not None:
        out_lanes = out_lanes[out_lanes["distance_km"] <= float(opt.max_distance_km) + 1e-9].reset_index(drop=True)
    in_lanes = inbound_lanes(instance, instance.sources["id"].astype(str).tolist(), open_able)

    demand = instance.demand[instance.demand["quantity"] > 0][["zone_id", "product_id", "period", "quantity"]]
    relax = opt.aggregate_products == "relax"
    if relax:
        aggregated, reason = True, "relaxation: products and supply aggregated (a lower bound)"
    elif opt.aggregate_products is None:
        aggregated, reason = products_aggregable(instance, in_lanes)
    elif opt.aggregate_products:
        ok, reason = products_aggregable(instance, in_lanes)
        if not ok:
            raise ValueError(f"aggregate_products=True but aggregation is not exact: {reason}")
        aggregated = True
    else:
        aggregated, reason = False, "aggregation switched off"
    if aggregated:
        demand = demand.groupby(["zone_id", "period"], as_index=False)["quantity"].sum()
        demand["product_id"] = ALL_PRODUCTS
        products = pd.Index([ALL_PRODUCTS], name="product")
    else:
        products = pd.Index(instance.products["id"].astype(str), name="product")
    demand = demand[["zone_id", "product_id", "period", "quantity"]].reset_index(drop=True)
    zones = pd.Index(sorted(demand["zone_id"].unique()), name="zone")

    outbound = expand_arcs(out_lanes, demand.rename(columns={"zone_id": "destination_id"}), "destination_id",
                           "outbound")
    product_cover = None
    if relax:
        outbound, product_cover = _reachable_bounds(instance, outbound, in_lanes)
    supply = instance.supply[["site_id", "product_id", "period", "capacity"]]
    if in_lanes.empty:
        inbound = Arcs("inbound", pd.DataFrame(columns=[*in_lanes.columns, "lane", "product_id", "period",
                                                        "bound"]))
        supply = supply.iloc[0:0]
    elif relax and not supply.empty:
        q = supply.groupby(["site_id", "period"], as_index=False)["capacity"].sum()
        q = q[q["capacity"] > 0].assign(product_id=ALL_PRODUCTS)
        supply = q[["site_id", "product_id", "period", "capacity"]].reset_index(drop=True)
        inbound = expand_arcs(in_lanes, supply.rename(columns={"site_id": "origin_id", "capacity": "quantity"}),
                              "origin_id", "inbound")
    elif aggregated or supply.empty:
        per = pd.DataFrame({"product_id": products.repeat(len(periods)),
                            "period": np.tile(periods.to_numpy(), len(products)), "quantity": np.inf})
        inbound = Arcs("inbound", in_lanes.assign(lane=np.arange(len(in_lanes))).merge(per, how="cross")
                       .rename(columns={"quantity": "bound"}))
        supply = supply.iloc[0:0]
    else:
        q = supply.rename(columns={"site_id": "origin_id", "capacity": "quantity"})
        q = q[q["quantity"] > 0]
        inbound = expand_arcs(in_lanes, q, "origin_id", "inbound")
        supply = supply[supply["capacity"] >= 0].reset_index(drop=True)

    rates = stage_rates(instance, sites)
    rates = rates[rates["site_id"].isin(set(sites))].reset_index(drop=True)
    labor = labor_parameters(instance) if opt.labor else instance.labor.iloc[0:0].assign(hours_per_unit=[])
    life = float(opt.capex_life_years if opt.capex_life_years is not None else d["capex_life_years"])
    rate = float(opt.interest_rate if opt.interest_rate is not None else d["interest_rate"])
    crf = annuity_factor(rate, life)
    one_off = crf if opt.annualize_one_off else 1.0
    existing = dcs["status"] == "existing"
    constant = one_off * float(dcs.loc[existing, "closing_cost"].sum())
    return NetworkDesignContext(
        instance=instance, options=opt, dcs=dcs, sites=sites, zones=zones, products=products, periods=periods,
        days=days, demand=demand, outbound=outbound, inbound=inbound, supply=supply, rates=rates,
        expandable=rates.iloc[0:0], labor=labor, annual=annualization_factor(instance), crf=crf, one_off=one_off,
        service_days=float(opt.service_days if opt.service_days is not None else d["service_days"]),
        service_share=float(opt.service_share if opt.service_share is not None else d["service_share"]),
        aggregated=aggregated, aggregation_reason=reason, objective_constant=constant,
        build_seconds=time.perf_counter() - t0, product_cover=product_cover,
    )


def _receivable(instance: Instance, in_lanes: pd.DataFrame) -> pd.DataFrame | None:
    """(origin_id = DC, product_id, period) that a DC can receive: a source with a lane to it offers the product in
    the period. None when every DC can receive everything (no source->DC lanes or no supply table)."""
    supply = instance.supply
    if in_lanes.empty or supply.empty:
        return None
    offered = supply[supply["capacity"] > 0][["site_id", "product_id", "period"]]
    return (in_lanes[["origin_id", "destination_id"]].drop_duplicates()
            .merge(offered, left_on="origin_id", right_on="site_id")[["destination_id", "product_id", "period"]]
            .drop_duplicates().rename(columns={"destination_id": "origin_id"})
            .astype({"product_id": str, "period": int}))


def _reachable_bounds(instance: Instance, outbound: Arcs, in_lanes: pd.DataFrame
                      ) -> tuple[Arcs, tuple[pd.DataFrame, np.ndarray, np.ndarray] | None]:
    """Outbound arcs of the product-aggregated relaxation, bounded by what their DC can receive; and the product
    cover rows (:func:`add_product_cover`) where some DC cannot receive some product.

    In the per-product model a DC ships product p in period t only what it receives of p in t (its balance per
    product), and it receives p only from sources with a lane to it that offer p in t. So the arc i -> z in t
    carries at most ``sum_{p receivable at i in t} d_{z,p,t}``; as the arc's bound this also becomes the coefficient
    of its strong linking row (``flow <= bound * open_i``). Still a relaxation of the per-product model, and a far
    tighter one when each product comes from a few sources (the median network: 2 of 16 ports per product, 3 ports
    per DC). Unchanged when the network has no source->DC lanes or no supply table (every product everywhere).
    """
    rec = _receivable(instance, in_lanes)
    f = outbound.frame
    if rec is None or f.empty:
        return outbound, None
    demand = instance.demand[instance.demand["quantity"] > 0].astype({"product_id": str, "period": int})
    arcs = f[["origin_id", "destination_id", "period"]].assign(arc=np.arange(len(f)))
    pairs = arcs.merge(demand.rename(columns={"zone_id": "destination_id"}), on=["destination_id", "period"])
    pairs = pairs.merge(rec, on=["origin_id", "product_id", "period"])  # (arc, product) the arc can carry
    can = np.bincount(pairs["arc"].to_numpy(), weights=pairs["quantity"].to_numpy(dtype=float), minlength=len(f))
    bound = np.minimum(f["bound"].to_numpy(dtype=float), can)
    # cover rows: (zone, product, period) whose demand not every arc into the zone can carry
    n_arcs = arcs.groupby(["destination_id", "period"]).size().rename("all_arcs")
    n_can = pairs.groupby(["destination_id", "product_id", "period"]).size().rename("can_arcs")
    rows = demand.rename(columns={"zone_id": "destination_id"}).merge(n_can.reset_index(), how="left",
                                                                      on=["destination_id", "product_id", "period"])
    rows = rows.merge(n_arcs.reset_index(), on=["destination_id", "period"], how="left").fillna(
        {"can_arcs": 0, "all_arcs": 0})
    rows = rows[rows["can_arcs"] < rows["all_arcs"]].reset_index(drop=True)
    cover = None
    if len(rows):
        key = pd.MultiIndex.from_frame(rows[["destination_id", "product_id", "period"]])
        row_of = key.get_indexer(pd.MultiIndex.from_frame(pairs[["destination_id", "product_id", "period"]]))
        keep = row_of >= 0
        cover = (rows[["destination_id", "product_id", "period", "quantity"]], row_of[keep],
                 pairs["arc"].to_numpy()[keep])
    return Arcs(outbound.dim, f.assign(bound=bound)), cover


# ---------------------------------------------------------------------------------------------------
# Variables and constraint families
# ---------------------------------------------------------------------------------------------------


def add_site_decisions(m: linopy.Model, ctx: NetworkDesignContext) -> linopy.Variable:
    """open[i] in {0, 1} for every DC; forced sites fixed through their bounds (open = 1 / open = 0)."""
    opt = ctx.options
    lower = np.zeros(len(ctx.sites))
    upper = np.ones(len(ctx.sites))
    lower[codes(np.asarray(opt.force_open, dtype=object), ctx.sites)] = 1.0 if len(opt.force_open) else 0.0
    if len(opt.force_closed):
        upper[codes(np.asarray(opt.force_closed, dtype=object), ctx.sites)] = 0.0
    coords = [ctx.sites]
    # integer in [0, 1] rather than binary so that forced bounds survive the export
    return m.add_variables(lower=xr.DataArray(lower, coords=coords), upper=xr.DataArray(upper, coords=coords),
                           coords=coords, name="open", integer=True)


def add_flows(m: linopy.Model, ctx: NetworkDesignContext) -> tuple[linopy.Variable, linopy.Variable | None]:
    """outbound[a] >= 0 on DC->zone arcs (bounded by the arc's demand) and inbound[a] >= 0 on source->DC arcs."""
    out = add_arc_variables(m, "outbound", ctx.outbound, upper=ctx.outbound.frame["bound"].to_numpy(dtype=float))
    inn = None
    if len(ctx.inbound):
        inn = add_arc_variables(m, "inbound", ctx.inbound, upper=ctx.inbound.frame["bound"].to_numpy(dtype=float))
    return out, inn


def _demand_grid(ctx: NetworkDesignContext) -> tuple[dict[str, pd.Index], np.ndarray]:
    coords = {"zone": ctx.zones, "product": ctx.products, "period": ctx.periods}
    d = np.zeros(tuple(len(i) for i in coords.values()))
    pos = grid_codes(ctx.demand, {"zone_id": ctx.zones, "product_id": ctx.products, "period": ctx.periods})
    np.add.at(d.reshape(-1), pos, ctx.demand["quantity"].to_numpy(dtype=float))
    return coords, d


def uncovered_demand(ctx: NetworkDesignContext) -> np.ndarray:
    """Mask over the demand grid (zone, product, period): positive demand that no outbound arc can serve.

    A zone loses its arcs when every DC with a lane to it is forced closed, or when ``allowed_lanes`` or
    ``max_distance_km`` leave it none (e.g. a restore phase that keeps only some lanes).
    """
    coords, d = _demand_grid(ctx)
    f = ctx.outbound.frame
    served = np.zeros(d.size, dtype=bool)
    if len(f):
        group = grid_codes(f.rename(columns={"destination_id": "zone_id"}),
                           {"zone_id": ctx.zones, "product_id": ctx.products, "period": ctx.periods})
        served[group[group >= 0]] = True
    return (d > 0) & ~served.reshape(d.shape)


def add_unmet(m: linopy.Model, ctx: NetworkDesignContext) -> linopy.Variable | None:
    """unmet[z,p,t] in [0, d_{z,p,t}] where demand is positive, when unmet demand is allowed.

    When it is not, unmet[z,p,t] in [0, 0] still exists for demand that no arc can serve: its demand row
    ``0 + unmet = d`` then makes the model infeasible, instead of the row (with no terms left) being dropped
    and the demand silently lost.
    """
    coords, d = _demand_grid(ctx)
    uncovered = uncovered_demand(ctx)
    if not ctx.options.allow_unmet and not uncovered.any():
        return None
    c = [i.rename(k) for k, i in coords.items()]
    upper = d if ctx.options.allow_unmet else np.zeros_like(d)
    mask = d > 0 if ctx.options.allow_unmet else uncovered
    return m.add_variables(lower=0.0, upper=xr.DataArray(upper, coords=c), coords=c, name="unmet",
                           mask=xr.DataArray(mask, coords=c))


def add_demand_balance(m: linopy.Model, ctx: NetworkDesignContext, out: linopy.Variable,
                       unmet: linopy.Variable | None) -> None:
    """Demand served or reported short: sum_i outbound[i,z,p,t] + unmet[z,p,t] = d[z,p,t]."""
    coords, d = _demand_grid(ctx)
    f = ctx.outbound.frame
    group = grid_codes(f.rename(columns={"destination_id": "zone_id"}),
                       {"zone_id": ctx.zones, "product_id": ctx.products, "period": ctx.periods})
    terms = [grouped_terms(out.labels.values, group, d.size)]
    if unmet is not None:
        terms.append((unmet.labels.values, 1.0))
    add_rows(m, "demand", coords, terms, "=", d, mask=d > 0)


def add_open_linking(m: linopy.Model, ctx: NetworkDesignContext, out: linopy.Variable, open_site: linopy.Variable,
                     assign: linopy.Variable | None) -> None:
    """Strong linking, one row per arc: outbound[i,z,p,t] <= d[z,p,t] * open[i] (or * assign[i,z]).

    Tighter than the aggregate big-M (sum_z outbound <= M open): the LP relaxation cannot open a site
    by a fraction smaller than the largest share of any zone it serves.
    """
    f = ctx.outbound.frame
    if f.empty:
        return
    if assign is None:
        link = gather_labels(open_site, codes(f["origin_id"].to_numpy(), ctx.sites))
    else:
        link = gather_labels(assign, f["lane"].to_numpy())
    add_rows(m, "open_linking", {"outbound": ctx.outbound.index},
             [(out.labels.values, 1.0), (link, -f["bound"].to_numpy(dtype=float))], "<=", 0.0)


def add_single_sourcing(m: linopy.Model, ctx: NetworkDesignContext, open_site: linopy.Variable) -> \
        linopy.Variable | None:
    """One DC per zone: sum_i assign[i,z] = 1 (<= 1 when unmet demand is allowed), assign[i,z] <= open[i]."""
    if not ctx.options.single_source or ctx.outbound.frame.empty:
        return None
    lanes = ctx.outbound.frame.drop_duplicates("lane").sort_values("lane")
    n_lanes = int(ctx.outbound.frame["lane"].max()) + 1
    idx = pd.RangeIndex(n_lanes, name="assignment")
    used = np.zeros(n_lanes, dtype=bool)
    used[lanes["lane"].to_numpy()] = True
    assign = m.add_variables(coords=[idx], name="assign", binary=True, mask=xr.DataArray(used, coords=[idx]))
    lane_site = np.zeros(n_lanes, dtype=np.int64)
    lane_zone = np.full(n_lanes, -1, dtype=np.int64)
    lane_site[lanes["lane"].to_numpy()] = codes(lanes["origin_id"].to_numpy(), ctx.sites)
    lane_zone[lanes["lane"].to_numpy()] = codes(lanes["destination_id"].to_numpy(), ctx.zones)
    add_rows(m, "assign_only_if_open", {"assignment": idx},
             [(assign.labels.values, 1.0), (gather_labels(open_site, lane_site), -1.0)], "<=", 0.0, mask=used)
    add_rows(m, "single_source", {"zone": ctx.zones}, [grouped_terms(assign.labels.values, lane_zone,
                                                                     len(ctx.zones))],
             "<=" if ctx.options.allow_unmet else "=", 1.0, mask=has_members(lane_zone, len(ctx.zones)))
    return assign


def add_dc_balance(m: linopy.Model, ctx: NetworkDesignContext, inn: linopy.Variable | None,
                   out: linopy.Variable) -> None:
    """Flow conservation at every DC when the network has sources: sum_s in[s,i,p,t] = sum_z out[i,z,p,t].

    Without source->DC lanes (e.g. a facility location benchmark) DCs are the sources and this is skipped.
    """
    if inn is None:
        return
    coords = {"site": ctx.sites, "product": ctx.products, "period": ctx.periods}
    keys = {"site_id": ctx.sites, "product_id": ctx.products, "period": ctx.periods}
    g_in = grid_codes(ctx.inbound.frame.rename(columns={"destination_id": "site_id"}), keys)
    g_out = grid_codes(ctx.outbound.frame.rename(columns={"origin_id": "site_id"}), keys)
    n = int(np.prod([len(i) for i in coords.values()]))
    add_rows(m, "dc_balance", coords,
             [grouped_terms(inn.labels.values, g_in, n), grouped_terms(out.labels.values, g_out, n, -1.0)],
             "=", 0.0, mask=has_members(g_in, n) | has_members(g_out, n))


def add_supply_limits(m: linopy.Model, ctx: NetworkDesignContext, inn: linopy.Variable | None) -> None:
    """Port/supplier supply: sum_i in[s,i,p,t] <= supply[s,p,t] (skipped when it cannot bind, see module doc)."""
    if inn is None or ctx.supply.empty:
        return
    sup = ctx.supply.reset_index(drop=True)
    key = pd.MultiIndex.from_frame(sup[["site_id", "product_id", "period"]])
    f = ctx.inbound.frame
    group = key.get_indexer(pd.MultiIndex.from_arrays([f["origin_id"], f["product_id"], f["period"]]))
    add_rows(m, "supply", {"supply_row": pd.RangeIndex(len(sup), name="supply_row")},
             [grouped_terms(inn.labels.values, group, len(sup))], "<=", sup["capacity"].to_numpy(dtype=float),
             mask=has_members(group, len(sup)))


def add_lane_capacity(m: linopy.Model, ctx: NetworkDesignContext, out: linopy.Variable,
                      inn: linopy.Variable | None) -> None:
    """Lane capacity per period, all products together: sum_p flow[lane,p,t] <= capacity[lane]."""
    for name, arcs, var in (("outbound", ctx.outbound, out), ("inbound", ctx.inbound, inn)):
        f = arcs.frame
        if var is None or f.empty or "capacity" not in f or not f["capacity"].notna().any():
            continue
        lanes = f.drop_duplicates("lane")
        lanes = lanes[lanes["capacity"].notna()]
        lane_idx = pd.Index(lanes["lane"].to_numpy(), name=f"{name}_lane")
        group = grid_codes(f, {"lane": lane_idx, "period": ctx.periods})
        cap = np.repeat(lanes["capacity"].to_numpy(dtype=float)[:, None], len(ctx.periods), axis=1)
        add_rows(m, f"{name}_lane_capacity", {lane_idx.name: lane_idx, "period": ctx.periods},
                 [grouped_terms(var.labels.values, group, cap.size)], "<=", cap,
                 mask=has_members(group, cap.size))


def add_service_level(m: linopy.Model, ctx: NetworkDesignContext, out: linopy.Variable) -> None:
    """Service: sum_{arcs with transit <= N days} outbound >= share * total demand."""
    if ctx.service_share <= 0:
        return
    f = ctx.outbound.frame
    fast = (f["transit_days"].to_numpy(dtype=float) <= ctx.service_days + 1e-9).astype(np.int64) - 1  # 0 or -1
    add_rows(m, "service_level", {"service": pd.Index(["all"], name="service")},
             [grouped_terms(out.labels.values, fast, 1)], ">=",
             ctx.service_share * float(ctx.demand["quantity"].sum()))


def _opening_costs(ctx: NetworkDesignContext) -> np.ndarray:
    return np.where(ctx.dcs["status"] == "candidate", ctx.dcs["opening_cost"].to_numpy(dtype=float), 0.0)


def add_capex_budget(m: linopy.Model, ctx: NetworkDesignContext, open_site: linopy.Variable,
                     modules: linopy.Variable | None) -> None:
    """Investment within budget: sum capex * modules + sum_{candidates} opening_cost * open <= budget."""
    if ctx.options.capex_budget is None:
        return
    labels = [np.asarray(open_site.labels.values)]
    coeffs = [_opening_costs(ctx)]
    if modules is not None:
        labels.append(np.asarray(modules.labels.values))
        coeffs.append(ctx.expandable["capex"].to_numpy(dtype=float))
    add_rows(m, "capex_budget", {"budget": pd.Index(["capex"], name="budget")},
             [(np.concatenate(labels)[None, :], np.concatenate(coeffs)[None, :])], "<=",
             float(ctx.options.capex_budget))


def add_fixed_modules(m: linopy.Model, ctx: NetworkDesignContext, modules: linopy.Variable | None) -> None:
    """modules[i,s] = given count for the (site, stage) pairs in ``options.fixed_modules`` (others 0)."""
    fixed = ctx.options.fixed_modules
    if fixed is None or modules is None:
        return
    e = ctx.expandable
    value = np.array([float(fixed.get((a, b), 0)) for a, b in zip(e["site_id"], e["stage"])])
    add_rows(m, "fixed_modules", {"expansion": modules.indexes["expansion"]}, [(modules.labels.values, 1.0)], "=",
             value)


def add_open_count(m: linopy.Model, ctx: NetworkDesignContext, open_site: linopy.Variable) -> None:
    """min_open <= sum_i open[i] <= max_open."""
    row = np.asarray(open_site.labels.values)[None, :]
    for name, bound, sign in (("min_open", ctx.options.min_open, ">="), ("max_open", ctx.options.max_open, "<=")):
        if bound is not None:
            add_rows(m, name, {name: pd.Index([name], name=name)}, [(row, 1.0)], sign, float(bound))


def add_aggregate_capacity(m: linopy.Model, ctx: NetworkDesignContext, open_site: linopy.Variable,
                           modules: linopy.Variable | None, unmet: linopy.Variable | None) -> None:
    """Aggregate capacity (only with ``options.capacity_cut``), one row per period t::

        sum_i cap_{i,t} open_i + sum_e mcap_{e,t} modules_e + sum_{z,p} unmet_{z,p,t} >= sum_{z,p} d_{z,p,t}

    cap_{i,t}: base capacity of site i's tightest stage in period t (derated; the demand the site can reach
    when no stage limits it), mcap_{e,t}: what one module adds to that stage
    (:func:`formulations.network_heuristics.site_capacity`, :func:`~formulations.network_heuristics.module_capacity`).
    Valid: demand is served from open sites or unmet, and any one stage bounds a site's throughput. The LP
    relaxation implies it; the MILP solver derives knapsack cover cuts over the open variables from it.
    """
    if not ctx.options.capacity_cut or ctx.demand.empty:
        return
    n_t = len(ctx.periods)
    cap = nh.site_capacity(ctx)  # (sites, periods)
    open_lab = np.repeat(np.asarray(open_site.labels.values)[None, :], n_t, axis=0)  # (periods, sites)
    terms = [(open_lab, cap.T)]
    if modules is not None and len(ctx.expandable):
        mcap = nh.module_capacity(ctx)  # (expandable, periods)
        terms.append((np.repeat(np.asarray(modules.labels.values)[None, :], n_t, axis=0), mcap.T))
    if unmet is not None:
        lab = np.asarray(unmet.labels.values)  # (zone, product, period), -1 where masked
        terms.append((np.moveaxis(lab, 2, 0).reshape(n_t, -1), 1.0))
    add_rows(m, "aggregate_capacity", {"period": ctx.periods}, terms, ">=", nh.period_demand(ctx),
             mask=nh.period_demand(ctx) > 0)


def add_product_cover(m: linopy.Model, ctx: NetworkDesignContext, out: linopy.Variable,
                      unmet: linopy.Variable | None) -> None:
    """Product cover (the product-aggregated relaxation only), one row per (zone z, product p, period t) whose
    demand not every DC with a lane to z can receive::

        sum_{arcs i -> z in t, i receives p in t} outbound[i,z,t] + unmet[z,t] >= d_{z,p,t}

    Valid for the per-product model: p reaches z only from DCs that receive p, each such arc's aggregate flow is at
    least its flow of p, and the zone's aggregate unmet at least its unmet of p. With the arcs' reachable bounds
    (:func:`_reachable_bounds`) it keeps most of what the per-product model knows about which DC serves what.
    """
    cover = ctx.product_cover
    if cover is None:
        return
    rows, row_of, arc = cover
    n = len(rows)
    idx = pd.RangeIndex(n, name="cover_row")
    terms = [grouped_terms(np.asarray(out.labels.values)[arc], row_of, n)]
    if unmet is not None:
        lab = np.asarray(unmet.labels.values)  # (zone, product '*', period)
        zi = codes(rows["destination_id"].to_numpy(), ctx.zones)
        ti = codes(rows["period"].to_numpy(), ctx.periods)
        terms.append((lab[zi, 0, ti], 1.0))
    add_rows(m, "product_cover", {"cover_row": idx}, terms, ">=", rows["quantity"].to_numpy(dtype=float))


def add_objective(m: linopy.Model, ctx: NetworkDesignContext) -> None:
    """Annualised total cost (see the module docstring); the constant sum of closing costs is kept aside."""
    v = ctx.variables
    dcs = ctx.dcs
    cand = (dcs["status"] == "candidate").to_numpy()
    per_site = (dcs["fixed_cost_per_year"].to_numpy(dtype=float) + ctx.one_off * _opening_costs(ctx)
                - ctx.one_off * np.where(~cand, dcs["closing_cost"].to_numpy(dtype=float), 0.0))
    handling = float(ctx.instance.defaults["handling_cost_per_unit"])
    terms = [(v["open"].labels.values, per_site),
             (v["outbound"].labels.values,
              ctx.annual * (ctx.outbound.frame["cost_per_unit"].to_numpy(dtype=float) + handling))]
    if v.get("inbound") is not None:
        terms.append((v["inbound"].labels.values,
                      ctx.annual * ctx.inbound.frame["cost_per_unit"].to_numpy(dtype=float)))
    if v.get("labor_regular_hours") is not None:
        lab = ctx.labor.set_index("site_id").loc[v["labor_regular_hours"].indexes["labor_site"]]
        n_t = len(ctx.periods)
        for var, col in (("labor_regular_hours", "hourly_rate"), ("labor_overtime_hours", "overtime_rate")):
            terms.append((v[var].labels.values, np.repeat(ctx.annual * lab[col].to_numpy(dtype=float), n_t)))
    if v.get("modules") is not None:
        e = ctx.expandable
        terms.append((v["modules"].labels.values,
                      e["capex"].to_numpy(dtype=float) * ctx.crf + e["opex_per_year"].to_numpy(dtype=float)))
    if v.get("unmet") is not None:
        terms.append((v["unmet"].labels.values, ctx.annual * float(ctx.instance.defaults["unmet_demand_penalty"])))
    m.add_objective(objective_from_terms(m, terms))


def build_model(ctx: NetworkDesignContext) -> linopy.Model:
    """The network design MILP of ``ctx`` (from :func:`prepare`); its variables are kept in ``ctx.variables``."""
    t0 = time.perf_counter()
    m = linopy.Model()
    v = ctx.variables
    v["open"] = add_site_decisions(m, ctx)
    v["outbound"], v["inbound"] = add_flows(m, ctx)
    v["unmet"] = add_unmet(m, ctx)
    add_demand_balance(m, ctx, v["outbound"], v["unmet"])
    v["assign"] = add_single_sourcing(m, ctx, v["open"])
    add_open_linking(m, ctx, v["outbound"], v["open"], v["assign"])
    add_dc_balance(m, ctx, v["inbound"], v["outbound"])
    add_supply_limits(m, ctx, v["inbound"])
    add_lane_capacity(m, ctx, v["outbound"], v["inbound"])
    f = ctx.outbound.frame
    v["throughput"] = add_throughput(m, [(v["outbound"], grid_codes(f.rename(columns={"origin_id": "site_id"}),
                                                                    {"site_id": ctx.sites, "period": ctx.periods}))],
                                     ctx.sites, ctx.periods)
    v["modules"], ctx.expandable = add_expansion_modules(m, ctx.rates, v["open"], ctx.sites)
    add_stage_capacity(m, v["throughput"], ctx.rates, ctx.days, v["open"], v["modules"], ctx.expandable,
                       derate_series(ctx.options.capacity_derate, ctx.rates))
    v["labor_regular_hours"], v["labor_overtime_hours"], _ = add_labor(m, v["throughput"], ctx.labor, ctx.days,
                                                                      v["open"])
    add_service_level(m, ctx, v["outbound"])
    add_fixed_modules(m, ctx, v["modules"])
    add_capex_budget(m, ctx, v["open"], v["modules"])
    add_open_count(m, ctx, v["open"])
    add_aggregate_capacity(m, ctx, v["open"], v["modules"], v["unmet"])
    add_product_cover(m, ctx, v["outbound"], v["unmet"])
    add_objective(m, ctx)
    ctx.build_seconds += time.perf_counter() - t0  # prepare + build, as the plan's meta reports it
    return m


# ---------------------------------------------------------------------------------------------------
# Solve and read back
# ---------------------------------------------------------------------------------------------------


def warm_start_from(ctx: NetworkDesignContext, model: linopy.Model, warm_start: Any) -> Any:
    """A solver warm start from a previous Plan or a SolveResult (passed through).

    From a Plan: open sites, expansion modules and the inbound/outbound flows that match an arc of this
    model (summed over products when products are aggregated); the solver completes the rest.
    """
    passed, warm_start = start_plan(warm_start, DECISION)
    if warm_start is None:
        return passed
    s = warm_start.tables["sites"]
    if s.empty:
        return None
    start: dict[str, pd.Series] = {}
    is_open = pd.Series(s["open"].astype(bool).astype(float).to_numpy(), index=s["site_id"].astype(str))
    start["open"] = is_open.reindex(ctx.sites)
    cap = warm_start.tables["capacity"]
    if ctx.variables.get("modules") is not None and not cap.empty:
        k = cap.set_index(["site_id", "stage"])["modules"].astype(float)
        keys = pd.MultiIndex.from_frame(ctx.expandable[["site_id", "stage"]])
        start["modules"] = pd.Series(k.reindex(keys).to_numpy(), index=ctx.variables["modules"].indexes["expansion"])
    flows = warm_start.tables["flows"]
    for leg, arcs in (("outbound", ctx.outbound), ("inbound", ctx.inbound)):
        if ctx.variables.get(leg) is None or flows.empty:
            continue
        f = flows[flows["leg"] == leg].assign(period=lambda d: d["period"].astype(int))
        if ctx.aggregated:
            f = f.assign(product_id=ALL_PRODUCTS)
        q = f.groupby(["origin_id", "destination_id", "product_id", "period"])["quantity"].sum()
        keys = pd.MultiIndex.from_frame(arcs.frame[["origin_id", "destination_id", "product_id", "period"]])
        # indexed by the arcs' business keys, as :func:`labelled_form` labels them (arc numbers differ between
        # models; with the numbers no flow matched and HiGHS had to solve an LP to complete the start)
        start[leg] = pd.Series(q.reindex(keys).fillna(0.0).to_numpy(), index=keys)
    _complete_start(ctx, warm_start, start)
    if ctx.variables.get("assign") is not None and "outbound" in start:
        # single sourcing: a complete start (a zone is assigned to the DC that ships to it); a partial one makes
        # HiGHS search for the missing assignments in a sub-MIP before its own time limit applies
        lane = ctx.outbound.frame["lane"].to_numpy()
        used = np.zeros(int(lane.max()) + 1 if len(lane) else 0)
        np.maximum.at(used, lane, (start["outbound"].to_numpy() > 1e-9).astype(float))
        idx = ctx.variables["assign"].indexes["assignment"]
        start["assign"] = pd.Series(used[idx.to_numpy()], index=idx)
    return start


def _complete_start(ctx: NetworkDesignContext, plan: Plan, start: dict[str, pd.Series]) -> None:
    """Add the continuous variables a plan also fixes -- throughput, labour hours, unmet demand -- to ``start``.

    A MIP start with only the sites, modules and flows makes HiGHS solve an LP for the rest before its time
    limit applies (111 s on the median network); with every variable given it only checks the start."""
    v = ctx.variables
    thr = plan.tables.get("site_throughput")
    if v.get("throughput") is not None and thr is not None and len(thr):
        q = thr.assign(period=thr["period"].astype(int)).set_index(["site_id", "period"])["outbound_units"]
        keys = pd.MultiIndex.from_product([ctx.sites, ctx.periods])
        start["throughput"] = pd.Series(q.reindex(keys).fillna(0.0).to_numpy(), index=keys)
    lab = plan.tables.get("labor")
    if v.get("labor_regular_hours") is not None and lab is not None and len(lab):
        ls = v["labor_regular_hours"].indexes["labor_site"]
        keys = pd.MultiIndex.from_product([ls, ctx.periods])
        h = lab.assign(period=lab["period"].astype(int)).set_index(["site_id", "period"])
        for name, col in (("labor_regular_hours", "regular_hours"), ("labor_overtime_hours", "overtime_hours")):
            start[name] = pd.Series(h[col].reindex(keys).fillna(0.0).to_numpy(), index=keys)
    if v.get("unmet") is not None:
        u = plan.tables.get("unmet")
        u = u if u is not None else pd.DataFrame(columns=["zone_id", "product_id", "period", "quantity"])
        u = u.assign(period=u["period"].astype(int))
        if ctx.aggregated:
            u = u.assign(product_id=ALL_PRODUCTS)
        q = u.groupby(["zone_id", "product_id", "period"])["quantity"].sum()
        keys = pd.MultiIndex.from_product([ctx.zones, ctx.products, ctx.periods])
        start["unmet"] = pd.Series(q.reindex(keys).fillna(0.0).to_numpy(), index=keys)


RELAX_RESTORE_MIN_ARCS = 20_000
"""``strategy="auto"`` uses relax-and-restore for models with at least this many outbound arcs (after the
exact reductions); smaller models are solved directly."""


def labelled_form(m: linopy.Model, ctx: NetworkDesignContext) -> solvers.StandardForm:
    """The standard form of ``m`` with arc variables and per-arc rows labelled by business keys.

    linopy numbers arcs ``0..n-1``; a label such as ``outbound[DC_MUC, Z_017, *, 3]`` (origin, destination,
    product, period) instead lets a diagnosis name the arc and lets an LP basis be carried to a variant model
    whose arcs are numbered differently (:mod:`solvers.basis`).
    """
    form = solvers.to_standard_form(m)
    keys = ["origin_id", "destination_id", "product_id", "period"]
    for groups, name, arcs in ((form.variable_groups, "outbound", ctx.outbound),
                               (form.variable_groups, "inbound", ctx.inbound),
                               (form.constraint_groups, "open_linking", ctx.outbound)):
        g = groups.get(name)
        if g is not None and g.size == len(arcs):
            g.relabel(lambda frame=arcs.frame: pd.MultiIndex.from_frame(frame[keys]))
    return form


def _solve_direct(instance: Instance, opt: NetworkDesignOptions, *, warm_start: Any = None,
                  basis: Any = None, integers_fixed: bool = False, solver: str = "highs",
                  time_limit: float | None = None, mip_gap: float | None = None, threads: int | None = None,
                  log: Any = None, solver_options: Mapping[str, Any] | None = None,
                  deadline: float | None = None) -> Plan:
    """Build and solve one MILP (``strategy="direct"``).

    ``integers_fixed``: the options fix every integer variable (the restore phase: all sites forced open or
    closed, modules fixed, no single sourcing); the model is then solved as the LP it is, from ``basis`` when
    given, keeping its final basis in ``plan.bases["restore"]``. ``deadline`` (a ``time.perf_counter()``
    instant) caps the solver's time limit at what is left after the build.
    """
    ctx = prepare(instance, opt)
    m = build_model(ctx)
    form = labelled_form(m, ctx)
    if deadline is not None:
        rest = max(0.5, deadline - time.perf_counter())
        time_limit = rest if time_limit is None else min(float(time_limit), rest)
    as_lp = form.is_mip and integers_fixed
    if as_lp:
        form.integrality[:] = 0
    start = basis if as_lp and basis is not None else warm_start_from(ctx, m, warm_start)
    res = solvers.solve(form, solver=solver, time_limit=time_limit, mip_gap=None if as_lp else mip_gap,
                        threads=threads, warm_start=start, options=solver_options, log=log, keep_basis=as_lp,
                        objective_offset=ctx.objective_constant)
    plan = extract_plan(ctx, res)
    plan.meta["strategy"] = "direct"
    if as_lp:
        plan.meta["solved_as_lp"] = True
        plan.meta["basis_start"] = res.basis_start
        if res.basis is not None:
            plan.bases["restore"] = res.basis
    return plan


def _warm_bases(warm_start: Any) -> dict[str, Any]:
    """LP bases carried by a warm start (a Plan or a PlanResult), by phase."""
    plan = getattr(warm_start, "plan", warm_start)
    return dict(getattr(plan, "bases", None) or {})


def solve(instance: Instance, options: NetworkDesignOptions | None = None, *, solver: str = "highs",
          time_limit: float | None = None, mip_gap: float | None = None, threads: int | None = None, log: Any = None,
          warm_start: Any = None, solver_options: Mapping[str, Any] | None = None) -> Plan:
    """Build and solve the network design MILP; the answer as a :class:`Plan` of tables.

    Strategies (``options.strategy``):

    - ``direct``: one MILP (products aggregated when that is exact, see :func:`products_aggregable`);
    - ``relax_restore``: (0) a first plan before any optimisation: the warm start's sites, else today's
      network plus the cheapest candidates per unit of capacity until capacity covers demand
      (:func:`formulations.network_heuristics.greedy_sites`), evaluated with the sites fixed (an LP);
      (1) the LP relaxation of the product-aggregated model (when aggregation is not exact, of its
      relaxation with supply summed over products), given at most :data:`LP_SHARE` of the time limit: a
      valid lower bound of the optimum; (2) its sites rounded (open when >= 0.5, then further sites by LP
      value until capacity covers the demand the LP serves) and modules rounded up, fixed, the rest solved
      as an LP over all lanes of the open sites: a feasible plan. When the best plan and the bound are
      within ``mip_gap`` (default 1e-4) it is returned as optimal within that gap; otherwise (3) the MILP
      runs from the best plan (a MIP start) for all the time left. Where a Lagrangian relaxation applies
      (:func:`formulations.network_lagrangian.applies`) phases 1-2 are instead that relaxation: on
      facility-location-shaped models the one with the aggregate capacity row as a binary knapsack (its bound
      at least the LP's), on the network shape (products, sources, labour, modules) the one of
      :mod:`formulations.network_lagrangian` (its bound the per-product LP's, without solving that LP); its
      site sets and an open/close/swap local search evaluated as plans, Lagrangian fixing against the best
      plan and probing (facility location) or, when the full MILP cannot start in the time left, the
      subgradient continued for the rest (network); the MILP then runs on the sites left free. The answer is
      the best plan of all phases with the best bound of all phases;
    - ``auto``: ``relax_restore`` for models with at least :data:`RELAX_RESTORE_MIN_ARCS` outbound arcs,
      else ``direct`` -- under a time limit with a first plan (the warm start's sites, else the greedy
      network) before the MILP, which starts from it; the better of the two comes back
      (:func:`_direct_from_first_plan`).

    ``warm_start``: a previous :class:`Plan` (its open sites and flows seed the MIP; on the relax-and-restore
    path its LP bases, ``plan.bases``, start the simplex of phases 1 and 2) or a :class:`solvers.SolveResult`.
    The plan's ``status`` is the solver termination (``optimal`` = proven within the gap); without a
    solution the tables are empty. ``time_limit`` bounds the whole call (every phase, the builds included).
    Every plan returned with a solution has passed :func:`formulations.check.check_plan` (else
    :class:`PlanCheckError` names the violations) and its bound is never above its objective.
    ``plan.bases`` holds the LP bases of phases 1 and 2 for the next solve.
    """
    opt = options or NetworkDesignOptions()
    kw = {"solver": solver, "threads": threads, "log": log, "solver_options": solver_options}
    if opt.strategy not in ("auto", "direct", "relax_restore"):
        raise ValueError(f"strategy must be 'auto', 'direct' or 'relax_restore', not {opt.strategy!r}")
    t0 = time.perf_counter()
    strategy = opt.strategy
    # the solver phases end a little before the limit: reading the plan back and checking it take time too
    deadline = None if time_limit is None else t0 + float(time_limit) - min(0.05 * float(time_limit) + 1.0, 10.0,
                                                                            0.5 * float(time_limit))
    if strategy == "direct":
        return _checked(instance, _solve_direct(instance, opt, warm_start=warm_start, deadline=deadline,
                                                mip_gap=mip_gap, **kw))
    sizing = prepare(instance, opt)  # index sets only: the size and whether aggregation is exact
    prepared = time.perf_counter() - t0
    if strategy == "auto":
        # even when a zero gap is asked, the restored plan is a far better MIP start than the solver finds alone
        # (capa8000, 300 s: incumbent 0.24 % above the optimum, against 50 % when solved directly)
        strategy = "relax_restore" if len(sizing.outbound) >= RELAX_RESTORE_MIN_ARCS else "direct"
    if strategy == "direct":
        return _checked(instance, _direct_from_first_plan(instance, opt, sizing, warm_start=warm_start,
                                                          deadline=deadline, mip_gap=mip_gap, **kw))
    plan = _relax_restore(instance, opt, sizing, warm_start=warm_start, time_limit=time_limit, deadline=deadline,
                          mip_gap=mip_gap, **kw)
    plan.meta["prepare_seconds"] = prepared  # phases' ``at_seconds`` count from the end of this preparation
    return _checked(instance, plan)


def _direct_from_first_plan(instance: Instance, opt: NetworkDesignOptions, sizing: NetworkDesignContext, *,
                            warm_start: Any, deadline: float | None, mip_gap: float | None, **kw: Any) -> Plan:
    """``auto`` on a small model: under a time limit, a plan before the MILP starts, the MILP from it.

    The first plan: the warm start's sites and modules, else today's network plus the cheapest candidates
    per unit of capacity until capacity covers demand (:func:`formulations.network_heuristics.greedy_sites`),
    evaluated with the sites fixed (an LP; a MILP over the assignments with single sourcing) within the time
    left. The MILP then runs from it (a MIP start) for the time left. The answer is the better of the two
    plans with the MILP's bound, so a time limit never ends without a plan when the first one exists, and the
    MILP's incumbent never replaces a better first plan. Without a time limit this is the plain MILP.
    """
    direct = replace(opt, strategy="direct")
    if deadline is None:
        return _solve_direct(instance, direct, warm_start=warm_start, mip_gap=mip_gap, **kw)
    t = time.perf_counter()
    fo, fc = nh.forced_masks(sizing)
    tries = []
    ws = getattr(warm_start, "plan", warm_start)
    if isinstance(ws, Plan) and ws.has_solution and ws.decision == DECISION:
        cap = ws.tables["capacity"]
        mods = ({(str(a), str(b)): int(k) for a, b, k in zip(cap["site_id"], cap["stage"], cap["modules"]) if k > 0}
                if len(cap) else None)
        tries.append(("warm_start", (_open_mask(ws, sizing.sites) | fo) & ~fc, mods))
    tries.append(("greedy", nh.greedy_sites(sizing), None))
    first = None
    record: dict[str, Any] = {}
    for name, is_open, mods in tries:
        fixed = replace(_sites_fixed(opt, sizing.sites, is_open, mods),
                        aggregate_products=None if sizing.aggregated else False)
        p = _solve_direct(instance, fixed, integers_fixed=not opt.single_source, deadline=deadline, mip_gap=mip_gap,
                          **kw)
        record = {"source": name, "status": p.status, "objective": p.objective, "open_sites": int(is_open.sum()),
                  "seconds": time.perf_counter() - t}
        if _ok(p):
            first = p
            break
    rest = deadline - time.perf_counter()
    if rest < 0.5 and first is not None:
        out = first
        out.status = "time_limit"
        out.bound, out.gap = None, None
        milp_record: dict[str, Any] = {"status": "skipped: no time left"}
    else:
        full = _solve_direct(instance, direct, warm_start=first if first is not None else warm_start,
                             deadline=deadline, mip_gap=mip_gap, **kw)
        milp_record = {"status": full.status, "objective": full.objective, "bound": full.bound}
        out = full
        if first is not None and (not _ok(full) or first.objective < full.objective * (1 - 1e-12)):
            out = first  # the MILP ended with nothing better: the first plan, with the MILP's bound
            out.status = full.status if full.status in ("time_limit", "interrupted") else "time_limit"
            bound = full.bound if full.bound is not None else None
            out.bound = None if bound is None else min(float(bound), float(out.objective))
            out.gap = None if out.bound is None else \
                max(0.0, (out.objective - out.bound) / max(abs(out.objective), 1e-9))
    out.meta["strategy"] = "direct"
    out.meta["options"] = {k: (list(x) if isinstance(x, tuple) else x) for k, x in opt.__dict__.items()
                           if not isinstance(x, pd.DataFrame)}
    out.meta["first_plan"] = record
    out.meta["milp"] = milp_record
    return out


ROUNDING_THRESHOLDS = (0.5, 0.3, 0.7)
"""Open shares at which the network relaxation's averaged sites are rounded into plans (tried in this order)."""
LP_SHARE = 0.6
"""Most share of the time limit that relax-and-restore gives its LP relaxation when the Lagrangian relaxation does
not apply (the LP is then the source of the bound; the rest goes to the restored plan and to the MILP)."""
START_SHARE = 0.15
"""Most share of the time limit for evaluating a plan once one is in hand (the first plan may use all the time
left: without it, a MILP started from nothing can return an incumbent many times the optimum)."""
LAGRANGIAN_SHARE = 0.2
"""Most share of the time limit for the subgradient optimisation (facility-location-shaped models)."""
LOCAL_SEARCH_SHARE = 0.2
"""Most share of the time limit for the local search around the best plan (facility-location-shaped models)."""
LAGRANGIAN_PLANS = 6
"""Most site sets of the Lagrangian subproblems evaluated as plans (within START_SHARE of the time limit)."""
PROBE_SHARE = 0.15
"""Most share of the time limit for probing (:func:`formulations.lagrangian.probe`) before the MILP."""


class PlanCheckError(RuntimeError):
    """A solved plan fails the independent check (:func:`formulations.check.check_plan`): a bug, never an answer."""


def _checked(instance: Instance, plan: Plan) -> Plan:
    """``plan`` if it has no solution or passes :func:`~formulations.check.check_plan`; else PlanCheckError."""
    if not plan.has_solution:
        return plan
    from formulations.check import check_plan

    found = check_plan(instance, plan)
    if len(found):
        head = "; ".join(f"{r.check}: {r.message}" for r in found.head(5).itertuples())
        raise PlanCheckError(f"the {plan.meta.get('strategy', '')} plan (status {plan.status}) fails the plan "
                             f"check with {len(found)} violation(s): {head}")
    if plan.bound is not None and plan.objective is not None and plan.bound > plan.objective:
        plan.bound = float(plan.objective)  # a lower bound above a checked plan is rounding: the plan proves it
        plan.gap = 0.0
    return plan


def _open_mask(plan: Plan, sites: pd.Index) -> np.ndarray:
    """The plan's open sites as a mask over ``sites``."""
    s = plan.tables["sites"]
    return s.astype({"site_id": str}).set_index("site_id")["open"].astype(bool).reindex(sites).fillna(False) \
        .to_numpy(dtype=bool)


def _ok(plan: Plan | None) -> bool:
    return plan is not None and plan.has_solution and plan.objective is not None


def _sites_fixed(opt: NetworkDesignOptions, sites: pd.Index, is_open: np.ndarray,
                 modules: Mapping[tuple[str, str], int] | None = None) -> NetworkDesignOptions:
    """Options with every site fixed open or closed (and the modules fixed: none unless given)."""
    return replace(opt, strategy="direct", force_open=list(sites[is_open]), force_closed=list(sites[~is_open]),
                   fixed_modules=dict(modules or {}), allowed_lanes=None)


def _relax_restore(instance: Instance, opt: NetworkDesignOptions, sizing: NetworkDesignContext, *,
                   warm_start: Any, time_limit: float | None, deadline: float | None, mip_gap: float | None,
                   **kw: Any) -> Plan:
    """The relax-and-restore strategy (see :func:`solve`); the best plan of all its phases."""
    t0 = time.perf_counter()

    def left() -> float | None:
        return None if deadline is None else max(0.0, deadline - time.perf_counter())

    def share(part: float) -> float | None:
        rest = left()
        return None if rest is None else min(rest, part * float(time_limit))

    bases = _warm_bases(warm_start)
    tol = 1e-4 if mip_gap is None else float(mip_gap)
    exact = sizing.aggregated
    phases: dict[str, Any] = {}
    plans: list[Plan] = []
    new_bases: dict[str, Any] = {}
    fixed_lp = not opt.single_source  # with single sourcing the assignments stay integer: a MILP per evaluation

    def evaluate(name: str, is_open: np.ndarray, modules: Mapping[tuple[str, str], int] | None = None,
                 basis: Any = None) -> Plan | None:
        """The plan with these sites (and modules) fixed, the rest optimised; recorded as phase ``name``.

        While no plan is in hand it may use all the time left (a time limit never ends without a plan when one
        exists); later evaluations get at most START_SHARE of the limit."""
        t = time.perf_counter()
        limit = share(START_SHARE)
        first_try = None
        if not plans:
            # no plan in hand yet: this evaluation (an LP with the sites fixed) may use all the time left -- a
            # plan always comes back, and a MILP started without one can return a far worse incumbent. With
            # single sourcing it is a MILP over the assignments: its incumbent at START_SHARE of the limit is
            # taken (proving it optimal for these sites took capa8000 18-41 s of a 60 s limit), and only
            # without one does it get the time left
            first_try, limit = (None if fixed_lp else limit), left()
        elif limit is not None and limit < 0.5:
            phases[name] = {"status": "skipped: no time left"}
            return None
        fixed = replace(_sites_fixed(opt, sizing.sites, is_open, modules),
                        aggregate_products=None if exact else False)
        p = None
        if first_try is not None and first_try >= 0.5:
            p = _solve_direct(instance, fixed, basis=basis, integers_fixed=fixed_lp, time_limit=first_try,
                              mip_gap=mip_gap, **kw)
        if p is None or (not _ok(p) and not p.status.proves_no_solution):
            p = _solve_direct(instance, fixed, basis=basis, integers_fixed=fixed_lp, time_limit=limit,
                              mip_gap=mip_gap, **kw)
        phases[name] = {"status": p.status, "objective": p.objective, "open_sites": int(is_open.sum()),
                        "seconds": time.perf_counter() - t, "at_seconds": time.perf_counter() - t0,
                        "solve_seconds": p.meta.get("solve_seconds"),
                        "basis_start": p.meta.get("basis_start")}
        new_bases.update(p.bases)
        if _ok(p):
            plans.append(p)
            return p
        return None

    def best_plan() -> Plan | None:
        return min(plans, key=lambda p: p.objective) if plans else None

    def closed(p: Plan | None, bound: float) -> bool:
        # a floor of 1e-9: a zero gap asked for is met up to the rounding of objective and bound
        return _ok(p) and (p.objective - bound) / max(abs(p.objective), 1e-9) <= max(tol, 1e-9)

    # phase 0: a plan before any optimisation -- the warm start's network, else today's sites plus the
    # cheapest candidates per unit of capacity until capacity covers demand
    ws = getattr(warm_start, "plan", warm_start)
    first = None
    if isinstance(ws, Plan) and ws.has_solution:
        s = ws.tables["sites"].astype({"site_id": str}).set_index("site_id")["open"].astype(bool)
        is_open = s.reindex(sizing.sites).fillna(False).to_numpy(dtype=bool)
        fo, fc = nh.forced_masks(sizing)
        cap = ws.tables["capacity"]
        mods = ({(str(a), str(b)): int(k) for a, b, k in zip(cap["site_id"], cap["stage"], cap["modules"]) if k > 0}
                if len(cap) else None)
        first = evaluate("start", (is_open | fo) & ~fc, mods)
    if first is None:
        first = evaluate("start" if "start" not in phases else "start_greedy", nh.greedy_sites(sizing))

    lower = -np.inf
    fix_open: list[str] = []
    fix_closed: list[str] = []
    fix_upper = np.inf
    lag = None
    use_lagrangian, why = lagrangian.applies(sizing)  # the facility-location shape (single sourcing included)
    if not use_lagrangian:
        use_lagrangian, why = network_lagrangian.applies(sizing)
        if use_lagrangian and not _large_lp(sizing):
            # the network relaxation pays off where the LP relaxation is too large to solve (eu_fba, 52,000 arcs:
            # its LP path proves 0.15 % in 5 s, the subgradient and its plans take 40 s to prove the optimum)
            use_lagrangian, why = False, "network shape, but the LP relaxation is small enough to solve"
    if use_lagrangian and _ok(first):
        # phase 1: Lagrangian bound by subgradient (the facility-location relaxation, or the network one with
        # products, sources, labour and modules), its site sets evaluated as plans, Lagrangian fixing for the
        # MILP; it replaces the LP relaxation (as strong, far cheaper)
        t = time.perf_counter()
        fl = network_lagrangian.relaxation(sizing)
        network = isinstance(fl, network_lagrangian.NetworkRelaxation)
        overshoot = network_lagrangian.OVERSHOOT if network else None
        start = getattr(ws, "multipliers", None) if isinstance(ws, Plan) else None
        n_mult = fl.n_cust + fl.n_supply if network else len(fl.demand)
        start = start if start is not None and len(start) == n_mult else None  # a similar model's multipliers
        lag = lagrangian.subgradient(sizing, float(first.objective), seconds=share(LAGRANGIAN_SHARE), tol=tol,
                                     fl=fl, overshoot=overshoot, start=start)
        lower = lag.bound
        phases["lagrangian"] = {"status": "bound", "bound": lag.bound, "iterations": lag.iterations,
                                "seconds": time.perf_counter() - t,
                                "start": "the warm start's multipliers" if start is not None else "default"}
        t_eval = time.perf_counter()
        cands = lag.candidates[:LAGRANGIAN_PLANS]
        if network and lag.open_share is not None:
            # primal recovery: the sites' average open share over the iterations estimates the LP relaxation's open
            # values; rounded at a few thresholds, tried first
            unique: dict[bytes, np.ndarray] = {}
            for q in ROUNDING_THRESHOLDS:
                c = (lag.open_share >= q) & ~fl.forced_closed | fl.forced_open
                unique.setdefault(np.packbits(c).tobytes(), c)
            phases["lagrangian"]["rounded_plans"] = len(unique)
            for c in cands:
                unique.setdefault(np.packbits(c).tobytes(), c)
            cands = list(unique.values())
        for k, cand in enumerate(cands):
            if k and time_limit is not None and time.perf_counter() - t_eval > START_SHARE * float(time_limit):
                break
            evaluate(f"lagrangian_plan_{k + 1}", cand)
        # local search: close / swap / open moves ranked by Lagrangian cost per unit of capacity, each evaluated
        # by LP, first improvement, within LOCAL_SEARCH_SHARE of the time limit
        cap = fl.period_cap
        score = lag.site_costs / np.maximum(cap.sum(axis=1), 1e-9)
        fo, fc = nh.forced_masks(sizing)
        tried: set[bytes] = {np.packbits(_open_mask(p, sizing.sites)).tobytes() for p in plans}
        # with single sourcing each move is a MILP over the assignments (up to START_SHARE of the limit each):
        # the time goes to the MILP over the sites fixing leaves free instead
        t_ls, n_moves, improved = time.perf_counter(), 0, fixed_lp
        while improved and plans:
            improved = False
            incumbent = min(plans, key=lambda p: p.objective)
            demand = nh.period_demand(sizing) if not opt.allow_unmet else np.zeros(len(sizing.periods))
            if closed(incumbent, lower):
                break
            for move in nh.neighbour_moves(_open_mask(incumbent, sizing.sites), score, cap, demand, ~fc, ~fo):
                if time_limit is not None and time.perf_counter() - t_ls > LOCAL_SEARCH_SHARE * float(time_limit):
                    break
                key = np.packbits(move).tobytes()
                if key in tried:
                    continue
                tried.add(key)
                n_moves += 1
                p = evaluate(f"local_search_{n_moves}", move)
                if p is not None and p.objective < incumbent.objective * (1 - 1e-9):
                    improved = True
                    break
        phases["local_search"] = {"moves": n_moves, "seconds": time.perf_counter() - t_ls}
        fix_upper = float(first.objective)
        incumbent = min(plans, key=lambda p: p.objective)
        refix_limit = share(LAGRANGIAN_SHARE)
        if incumbent.objective < fix_upper and (refix_limit is None or refix_limit >= 0.5):
            # the subgradient once more from its multipliers, now against the best plan: a lower fixing threshold
            # fixes more sites (fixings found against the first plan stay valid: they hold for every plan
            # costing at most its objective, which the best plan does)
            t = time.perf_counter()
            fix_upper = float(incumbent.objective)
            lag = lagrangian.subgradient(sizing, fix_upper, seconds=refix_limit, tol=tol, fl=fl,
                                         start=lag.multipliers, fixed_open=lag.fixed_open,
                                         fixed_closed=lag.fixed_closed, overshoot=overshoot)
            lower = max(lower, lag.bound)
            phases["lagrangian_refix"] = {"status": "bound", "bound": lag.bound, "iterations": lag.iterations,
                                          "seconds": time.perf_counter() - t}
        fixed_open, fixed_closed = lag.fixed_open, lag.fixed_closed
        probe_limit = share(PROBE_SHARE)
        open_gap = lower < fix_upper - max(tol, 1e-9) * abs(fix_upper) and np.isfinite(fix_upper)
        if network and open_gap and left() is not None and left() < _milp_setup_seconds(sizing, phases):
            # the full MILP cannot start in the time left (a large model): the rest goes to the bound, the
            # subgradient continued from its multipliers (probing re-optimises the bound once per site: far too
            # slow with hundreds of sites and a million arcs)
            t = time.perf_counter()
            more = lagrangian.subgradient(sizing, fix_upper, seconds=max(0.0, left() - 1.0), tol=tol, fl=fl,
                                          start=lag.multipliers, fixed_open=lag.fixed_open,
                                          fixed_closed=lag.fixed_closed, overshoot=overshoot)
            if more.bound > lower:
                lower, lag = more.bound, more
            fixed_open, fixed_closed = lag.fixed_open, lag.fixed_closed
            phases["lagrangian_more"] = {"status": "bound", "bound": more.bound, "iterations": more.iterations,
                                         "seconds": time.perf_counter() - t}
        elif network and open_gap:
            phases["lagrangian_probe"] = {"status": "skipped: the network relaxation is not probed"}
        elif open_gap and (probe_limit is None or probe_limit >= 1.0):
            # probing: each free site forced the other way, the bound re-optimised; sites whose flip cannot beat
            # the best plan are fixed too (a smaller MILP: capc5000 23 -> 16 free sites)
            t = time.perf_counter()
            fixed_open, fixed_closed, n_probed = lagrangian.probe(sizing, fix_upper, lag, seconds=probe_limit, fl=fl)
            phases["lagrangian_probe"] = {"probed": n_probed, "fixed_closed": int(fixed_closed.sum()),
                                          "fixed_open": int(fixed_open.sum()), "seconds": time.perf_counter() - t}
        fix_closed = list(sizing.sites[fixed_closed])
        fix_open = list(sizing.sites[fixed_open])
        phases["lagrangian"].update(fixed_closed=len(fix_closed), fixed_open=len(fix_open))
    else:
        phases["lagrangian"] = {"status": f"not used: {why}"}
        if _large_lp(sizing) and (left() is None or left() >= _milp_setup_seconds(sizing, phases)):
            # a large model whose full MILP can start in the time left: its root bound (HiGHS's presolve and cuts
            # on the per-product model) beats the LP over period blocks, so the time goes to it
            lower, fixed_sites = -np.inf, None
            phases["lp_relaxation"] = {"status": "skipped: the full MILP starts within the time left"}
        elif _large_lp(sizing):
            lower, fixed_sites = _blocked_lp_phase(instance, opt, sizing, phases, share(LP_SHARE), kw)
        else:
            lower, fixed_sites = _lp_phase(instance, opt, phases, new_bases, bases, share(LP_SHARE), exact, kw)
        # phase 2: the LP's rounded sites and modules, fixed, the rest solved as an LP
        if fixed_sites is not None:
            evaluate("restore", *fixed_sites, basis=bases.get("restore"))

    best = best_plan()
    bound = lower
    full = None
    if not closed(best, bound):
        # phase 3: the MILP itself, from the best plan so far, for the time left
        rest = left()
        setup = _milp_setup_seconds(sizing, phases)
        if rest is not None and rest < setup:
            phases["milp"] = {"status": f"skipped: {rest:.0f} s left, the full MILP needs about {setup:.0f} s to "
                                        "start (its MIP start and presolve)"}
        elif rest is None or rest >= 1.0:
            t = time.perf_counter()
            milp_opt = replace(opt, strategy="direct", force_open=[*opt.force_open, *fix_open],
                               force_closed=[*opt.force_closed, *fix_closed], capacity_cut=True)
            full = _solve_direct(instance, milp_opt, warm_start=best or warm_start, deadline=deadline,
                                 mip_gap=mip_gap, **kw)
            phases["milp"] = {"status": full.status, "objective": full.objective, "bound": full.bound,
                              "seconds": time.perf_counter() - t, "solve_seconds": full.meta.get("solve_seconds"),
                              "start_objective": best.objective if best is not None else None,
                              "sites_fixed": len(fix_open) + len(fix_closed)}
            if _ok(full):
                plans.append(full)
            if full.bound is not None and np.isfinite(full.bound):
                # with Lagrangian fixing the MILP's bound holds for the plans it kept; every plan it excluded
                # costs more than the plan the fixing was measured against
                bound = max(bound, min(float(full.bound), fix_upper))
        else:
            phases["milp"] = {"status": "skipped: no time left"}
    best = best_plan()
    phases["total_seconds"] = time.perf_counter() - t0
    if best is None:
        out = full if full is not None else Plan(DECISION, "time_limit" if deadline is not None else "infeasible")
        out.meta.update(strategy="relax_restore", phases=phases)
        out.bases = new_bases
        return out
    best.bases = new_bases
    if lag is not None:
        best.multipliers = lag.multipliers
    if closed(best, bound) or (_ok(full) and full.status == "optimal" and best.objective <= full.objective):
        # the MILP proved its optimum within the gap (with Lagrangian fixing: every plan it excluded costs more
        # than the plan the fixing was measured against, which is no better than the best plan)
        status = "optimal"
    elif full is not None and full.status not in ("optimal",):
        status = full.status if full.status in ("time_limit", "interrupted") else "time_limit"
    else:
        status = "time_limit" if deadline is not None else "optimal"
    return _as_relax_restore(best, opt, status, bound, phases)


def _lp_phase(instance: Instance, opt: NetworkDesignOptions, phases: dict[str, Any], new_bases: dict[str, Any],
              bases: dict[str, Any], lp_limit: float | None, exact: bool, kw: dict[str, Any]
              ) -> tuple[float, tuple[np.ndarray, dict[tuple[str, str], int]] | None]:
    """Phase 1 of relax-and-restore: the LP relaxation; its bound and its rounded sites and modules.

    Always the relaxation with supply summed over products: when aggregation is exact its supply rows cannot
    bind, and what-if variants of one network then share its structure, so an LP basis carries over as is.
    """
    t = time.perf_counter()
    lower = -np.inf
    fixed_sites = None
    if lp_limit is not None and lp_limit < 1.0:
        phases["lp_relaxation"] = {"status": "skipped: no time left"}
        return lower, None
    ctx = prepare(instance, replace(opt, aggregate_products="relax"))
    m = build_model(ctx)
    form = labelled_form(m, ctx)
    form.integrality[:] = 0
    lp = solvers.solve(form, solver=kw["solver"], time_limit=lp_limit, threads=kw["threads"],
                       options=kw["solver_options"], log=kw["log"], warm_start=bases.get("lp"), keep_basis=True,
                       objective_offset=ctx.objective_constant)
    phases["lp_relaxation"] = {"status": str(lp.termination.value), "seconds": time.perf_counter() - t,
                               "exact_aggregation": exact, "solve_seconds": lp.wall_time.solve,
                               "basis_start": lp.basis_start}
    if lp.basis is not None:
        new_bases["lp"] = lp.basis
    if lp.has_solution and str(lp.termination.value) == "optimal":
        lower = float(lp.objective) + ctx.objective_constant
        phases["lp_relaxation"]["bound"] = lower
        open_lp = dense_values(lp, ctx.variables["open"])
        target = nh.period_demand(ctx)
        if ctx.variables.get("unmet") is not None:  # cover what the LP serves, not what it leaves unmet
            target = target - dense_values(lp, ctx.variables["unmet"]).sum(axis=(0, 1))
        is_open = nh.round_sites(ctx, open_lp, cover=True, demand=target)
        mods = np.ceil(dense_values(lp, ctx.variables["modules"]) - 1e-6) \
            if ctx.variables["modules"] is not None else np.zeros(0)
        e = ctx.expandable
        if len(mods):
            mods = np.where(np.isin(e["site_id"], ctx.sites[is_open]), mods, 0.0)  # no modules at closed sites
        fixed_sites = (is_open, {(a, b): int(k) for a, b, k in zip(e["site_id"], e["stage"], mods) if k > 0})
    return lower, fixed_sites


LARGE_LP_ARCS = 150_000
"""A model whose product-aggregated LP relaxation has at least this many outbound arcs (lanes x periods) gets its
bound from :func:`_blocked_lp_phase` (the 52-week median network: 208,000; eu_fba: about 4,000)."""
BLOCK_MOST_ARCS = 60_000
"""Most outbound arcs of the period-blocked LP relaxation (52 weeks x 4,000 lanes -> blocks of 4 weeks)."""
IPM_OPTIONS = {"solver": "ipm", "run_crossover": "off"}
"""HiGHS options of the large LP relaxation: interior point without crossover (no basis needed, only a bound and
the sites' values to round; the bound is made safe by :func:`solvers.bounds.dual_bound`)."""


def _large_lp(sizing: NetworkDesignContext) -> bool:
    """Whether the LP relaxation is too large to solve by simplex within a typical limit (see LARGE_LP_ARCS)."""
    f = sizing.outbound.frame
    lanes = int(f["lane"].nunique()) if len(f) else 0
    return lanes * len(sizing.periods) >= LARGE_LP_ARCS


MILP_SETUP_FACTOR = 8.0
"""The full MILP of a large model needs about this many times the slowest plan evaluation (build + LP with the
sites fixed) before it can improve anything: HiGHS completes the MIP start with an LP and presolves the whole
model, neither of which stops at its time limit (the median network: 111 s + 142 s against a 35 s evaluation)."""


def _milp_setup_seconds(sizing: NetworkDesignContext, phases: dict[str, Any]) -> float:
    """Least time left worth starting the full MILP with: 1 s, or for a large model (:func:`_large_lp`)
    MILP_SETUP_FACTOR times the slowest plan evaluation so far."""
    if not _large_lp(sizing):
        return 1.0
    evals = [float(p["seconds"]) for p in phases.values()
             if isinstance(p, dict) and "open_sites" in p and p.get("seconds") is not None]
    return max(1.0, MILP_SETUP_FACTOR * max(evals, default=0.0))


def _blocked_lp_phase(instance: Instance, opt: NetworkDesignOptions, sizing: NetworkDesignContext,
                      phases: dict[str, Any], lp_limit: float | None, kw: dict[str, Any]
                      ) -> tuple[float, tuple[np.ndarray, dict[tuple[str, str], int]] | None]:
    """Phase 1 for large models: the LP relaxation of the product-aggregated model over blocks of periods
    (:mod:`formulations.period_blocks`, a relaxation: its bound holds for the original), by interior point
    without crossover; the bound from its duals by weak duality (:func:`solvers.bounds.dual_bound`, valid however
    precise the duals are); its sites rounded and completed until capacity covers every original period's demand.
    """
    from formulations.period_blocks import block_periods, block_size_for
    from solvers.bounds import dual_bound

    t = time.perf_counter()
    if lp_limit is not None and lp_limit < 1.0:
        phases["lp_relaxation"] = {"status": "skipped: no time left"}
        return -np.inf, None
    f = sizing.outbound.frame
    size = block_size_for(len(sizing.periods), int(f["lane"].nunique()), BLOCK_MOST_ARCS)
    blocked = block_periods(instance, size)
    ctx = prepare(blocked, replace(opt, aggregate_products="relax"))
    m = build_model(ctx)
    form = labelled_form(m, ctx)
    form.integrality[:] = 0
    options = {**IPM_OPTIONS, **dict(kw["solver_options"] or {})} if kw["solver"] == "highs" else kw["solver_options"]
    lp = solvers.solve(form, solver=kw["solver"], time_limit=lp_limit, threads=kw["threads"], options=options,
                       log=kw["log"], objective_offset=ctx.objective_constant)
    rec: dict[str, Any] = {"status": str(lp.termination.value), "seconds": time.perf_counter() - t,
                           "solve_seconds": lp.wall_time.solve, "period_block": size,
                           "periods": len(ctx.periods), "method": options.get("solver", kw["solver"])
                           if options else kw["solver"]}
    phases["lp_relaxation"] = rec
    if not lp.has_solution:
        return -np.inf, None
    duals = lp.duals.array  # None without duals (a backend without them, or stopped early): no bound
    # columns without an upper bound (throughput, labour hours) carry at most 1e3 x the total demand (hours per
    # unit are below 1e3): their reduced costs' noise is charged on that span, so the bound stays a bound
    span = 1e3 * float(ctx.demand["quantity"].sum())
    lower = -np.inf if duals is None else dual_bound(form, duals, implied_span=span) + ctx.objective_constant
    rec["bound"] = lower if np.isfinite(lower) else None
    is_open = nh.round_sites(sizing, dense_values(lp, ctx.variables["open"]), cover=True)
    mods = np.ceil(dense_values(lp, ctx.variables["modules"]) - 1e-6) \
        if ctx.variables["modules"] is not None else np.zeros(0)
    e = ctx.expandable
    if len(mods):
        mods = np.where(np.isin(e["site_id"], sizing.sites[is_open]), mods, 0.0)
    rec["open_sites_rounded"] = int(is_open.sum())
    return lower, (is_open, {(a, b): int(k) for a, b, k in zip(e["site_id"], e["stage"], mods) if k > 0})


def _as_relax_restore(plan: Plan, opt: NetworkDesignOptions, status: str, bound: float,
                      phases: dict[str, Any]) -> Plan:
    """The best plan with the best bound, the caller's options and the phase record."""
    plan.status = status
    bound = min(float(bound), float(plan.objective)) if np.isfinite(bound) else -np.inf
    plan.bound = float(bound) if np.isfinite(bound) else None
    plan.gap = max(0.0, (plan.objective - bound) / max(abs(plan.objective), 1e-9)) if np.isfinite(bound) else None
    plan.meta["options"] = {k: (list(x) if isinstance(x, tuple) else x) for k, x in opt.__dict__.items()
                            if not isinstance(x, pd.DataFrame)}
    plan.meta.update(strategy="relax_restore", phases=phases,
                     solve_seconds_total=sum(float(p.get("solve_seconds") or 0.0) for p in phases.values()
                                             if isinstance(p, dict)))
    return plan


def _per_product(arcs: pd.DataFrame, qty: np.ndarray, shares: pd.DataFrame | None,
                 single_product: str | None) -> pd.DataFrame:
    """Arc flows per product: split by ``shares`` (destination_id, period -> product_id, share) when several
    products were aggregated (the exact reduction), else as solved (``single_product`` renames the one)."""
    f = arcs.assign(quantity=qty)
    f = f[f["quantity"] > 0]
    if shares is not None:
        f = f.drop(columns=["product_id"]).merge(shares, on=["destination_id", "period"], how="inner")
        f["quantity"] = f["quantity"] * f["share"]
        return f.drop(columns=["share"])
    return f.assign(product_id=single_product) if single_product is not None else f


def extract_plan(ctx: NetworkDesignContext, result: Any) -> Plan:
    """Read a solve result back into the plan tables (flows split back to products when aggregated)."""
    inst = ctx.instance
    v = ctx.variables
    status = solvers.Termination.parse(result.termination)
    meta: dict[str, Any] = {
        "solver": result.solver, "build_seconds": ctx.build_seconds, "solve_seconds": result.wall_time.solve,
        "aggregated_products": ctx.aggregated, "aggregation_reason": ctx.aggregation_reason,
        "annualization_factor": ctx.annual, "capital_recovery_factor": ctx.crf,
        "n_outbound_arcs": len(ctx.outbound), "n_inbound_arcs": len(ctx.inbound),
        "options": {k: (list(x) if isinstance(x, tuple) else x) for k, x in ctx.options.__dict__.items()
                    if not isinstance(x, pd.DataFrame)},
    }
    if not result.has_solution:
        return Plan(DECISION, status, meta=meta)
    const = ctx.objective_constant
    objective = float(result.objective) + const
    bound = float(result.bound) + const if result.bound is not None and np.isfinite(result.bound) else None
    gap = (abs(objective - bound) / max(abs(objective), 1e-9)) if bound is not None else None

    is_open = clean(dense_values(result, v["open"])) > 0.5
    dcs = ctx.dcs
    existing = (dcs["status"] == "existing").to_numpy()
    sites = pd.DataFrame({"site_id": ctx.sites, "kind": dcs["kind"].to_numpy(), "status": dcs["status"].to_numpy(),
                          "open": is_open, "opened": is_open & ~existing, "closed": ~is_open & existing})
    src = inst.sources
    if len(src):
        sites = pd.concat([sites, pd.DataFrame({"site_id": src["id"].astype(str), "kind": src["kind"],
                                                "status": src["status"], "open": True, "opened": False,
                                                "closed": False})], ignore_index=True)

    # flows (split back to products when aggregated)
    demand = inst.demand[inst.demand["quantity"] > 0]
    split = ctx.aggregated and len(inst.products) > 1
    single = str(inst.products["id"].iloc[0]) if ctx.aggregated and not split else None
    shares = None
    if split:
        tot = demand.groupby(["zone_id", "period"])["quantity"].transform("sum")
        shares = demand.assign(share=demand["quantity"] / tot)[["zone_id", "product_id", "period", "share"]]
        shares = shares.rename(columns={"zone_id": "destination_id"})
    out_flows = _per_product(ctx.outbound.frame, clean(dense_values(result, v["outbound"])), shares, single)
    out_flows = out_flows.assign(leg="outbound")
    flows = [out_flows]
    if v.get("inbound") is not None:
        in_shares = None
        if split:  # a DC receives each product in the proportion it ships it
            by = out_flows.groupby(["origin_id", "product_id", "period"], as_index=False)["quantity"].sum()
            tot = by.groupby(["origin_id", "period"])["quantity"].transform("sum")
            in_shares = by.assign(share=by["quantity"] / tot).rename(columns={"origin_id": "destination_id"})
            in_shares = in_shares[["destination_id", "product_id", "period", "share"]]
        in_flows = _per_product(ctx.inbound.frame, clean(dense_values(result, v["inbound"])), in_shares, single)
        flows.append(in_flows.assign(leg="inbound"))
    cols = list(PLAN_TABLES["flows"])
    flow_table = pd.concat([f[cols] for f in flows], ignore_index=True)
    flow_table["period"] = flow_table["period"].astype(int)

    # throughput
    thr = clean(dense_values(result, v["throughput"]))
    st = pd.DataFrame({"site_id": np.repeat(ctx.sites.to_numpy(), len(ctx.periods)),
                       "period": np.tile(ctx.periods.to_numpy(), len(ctx.sites)), "outbound_units": thr.ravel()})
    inb = flow_table[flow_table["leg"] == "inbound"].groupby(["destination_id", "period"])["quantity"].sum()
    if len(ctx.inbound):
        st["inbound_units"] = inb.reindex(pd.MultiIndex.from_frame(st[["site_id", "period"]])).fillna(0.0).to_numpy()
    else:
        st["inbound_units"] = st["outbound_units"]  # DCs are the sources: what they ship is what they handle
    site_throughput = st[list(PLAN_TABLES["site_throughput"])]

    # capacity
    r = ctx.rates
    mods = np.zeros(len(r))
    capex = np.zeros(len(r))
    if v.get("modules") is not None:
        mv = np.round(clean(dense_values(result, v["modules"])))
        key = pd.MultiIndex.from_frame(ctx.expandable[["site_id", "stage"]])
        pos = key.get_indexer(pd.MultiIndex.from_frame(r[["site_id", "stage"]]))
        mods = np.where(pos >= 0, mv[np.maximum(pos, 0)], 0.0)
        capex = mods * r["capex"].to_numpy(dtype=float)
    site_open = pd.Series(is_open, index=ctx.sites)
    base = r["base_count"].to_numpy(dtype=float)
    added = mods * r["module_size"].to_numpy(dtype=float)
    capacity = pd.DataFrame({"site_id": r["site_id"], "stage": r["stage"], "base_count": base,
                             "added_count": added,
                             "total_count": np.where(site_open.reindex(r["site_id"]).to_numpy(), base + added, 0.0),
                             "modules": mods.astype(int), "capex": capex})

    # labour
    labor = pd.DataFrame(columns=list(PLAN_TABLES["labor"]))
    lab_cost = {"labour_regular": 0.0, "labour_overtime": 0.0}
    if v.get("labor_regular_hours") is not None:
        ls = v["labor_regular_hours"].indexes["labor_site"]
        reg = clean(dense_values(result, v["labor_regular_hours"]))
        ot = clean(dense_values(result, v["labor_overtime_hours"]))
        labor = pd.DataFrame({"site_id": np.repeat(ls.to_numpy(), len(ctx.periods)),
                              "period": np.tile(ctx.periods.to_numpy(), len(ls)), "regular_hours": reg.ravel(),
                              "overtime_hours": ot.ravel(), "temp_hours": 0.0})
        lab = ctx.labor.set_index("site_id").loc[ls]
        lab_cost["labour_regular"] = ctx.annual * float((reg * lab["hourly_rate"].to_numpy()[:, None]).sum())
        lab_cost["labour_overtime"] = ctx.annual * float((ot * lab["overtime_rate"].to_numpy()[:, None]).sum())

    # unmet (split back to products when aggregated)
    unmet_q = clean(dense_values(result, v.get("unmet")))
    unmet = pd.DataFrame(columns=list(PLAN_TABLES["unmet"]))
    if unmet_q.size and (unmet_q > 0).any():
        zi, pi, ti = np.nonzero(unmet_q > 0)
        u = pd.DataFrame({"zone_id": ctx.zones.to_numpy()[zi], "product_id": ctx.products.to_numpy()[pi],
                          "period": ctx.periods.to_numpy()[ti], "quantity": unmet_q[zi, pi, ti]})
        if shares is not None:
            u = u.drop(columns=["product_id"]).merge(shares.rename(columns={"destination_id": "zone_id"}),
                                                     on=["zone_id", "period"])
            u["quantity"] = u["quantity"] * u["share"]
        elif single is not None:
            u["product_id"] = single
        unmet = u[list(PLAN_TABLES["unmet"])].reset_index(drop=True)

    # assignment and service
    a = out_flows.groupby(["destination_id", "origin_id", "period"], as_index=False)["quantity"].sum()
    zd = demand.groupby(["zone_id", "period"])["quantity"].sum()
    a["share"] = a["quantity"].to_numpy() / zd.reindex(pd.MultiIndex.from_frame(a[["destination_id", "period"]])
                                                       ).to_numpy()
    assignment = a.rename(columns={"destination_id": "zone_id", "origin_id": "site_id"})[
        list(PLAN_TABLES["assignment"])]
    service = service_table(out_flows, demand, ctx.service_days)
    overall = overall_service(out_flows, float(demand["quantity"].sum()), ctx.service_days)
    overall["zone_mean_transit_days"] = float(service["avg_transit_days"].mean())  # unweighted, over zones
    overall["zone_mean_distance_km"] = float(service["avg_distance_km"].mean())

    # costs (recomputed from the solution, so that they add up to the objective)
    cand = (dcs["status"] == "candidate").to_numpy()
    handling = float(inst.defaults["handling_cost_per_unit"])
    transport = float((out_flows["quantity"] * out_flows["cost_per_unit"]).sum())
    if len(flows) > 1:
        transport += float((flows[1]["quantity"] * flows[1]["cost_per_unit"]).sum())
    opening_paid = float(dcs["opening_cost"].to_numpy()[is_open & cand].sum())
    components = {
        "fixed": float(dcs["fixed_cost_per_year"].to_numpy()[is_open].sum()),
        "opening": ctx.one_off * opening_paid,
        "closing": ctx.one_off * float(dcs["closing_cost"].to_numpy()[~is_open & ~cand].sum()),
        "transport": ctx.annual * transport,
        "handling": ctx.annual * handling * float(out_flows["quantity"].sum()),
        **lab_cost,
        "capex_annualized": ctx.crf * float(capex.sum()),
        "expansion_opex": float((mods * r["opex_per_year"].to_numpy(dtype=float)).sum()),
        "unmet_penalty": ctx.annual * float(inst.defaults["unmet_demand_penalty"]) * float(unmet["quantity"].sum()
                                                                                          if len(unmet) else 0.0),
    }
    meta.update({"investment": float(capex.sum()) + opening_paid, "capex": float(capex.sum()),
                 "opening_investment": opening_paid, "service_overall": overall,
                 "service_days": ctx.service_days, "objective_constant": const,
                 "labor_hours_total": float(labor["regular_hours"].sum() + labor["overtime_hours"].sum())
                 if len(labor) else 0.0,
                 "unmet_total": float(unmet["quantity"].sum()) if len(unmet) else 0.0})
    tables = {"sites": sites, "flows": flow_table, "site_throughput": site_throughput, "capacity": capacity,
              "labor": labor, "unmet": unmet, "assignment": assignment, "service": service,
              "costs": costs_table(components)}
    return Plan(DECISION, status, objective=objective, bound=bound, gap=gap, tables=tables, meta=meta)
