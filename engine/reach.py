"""Can the network serve its demand at all? Reachability and aggregate capacity before any MILP is solved.

When a scenario forbids unmet demand (``options: {allow_unmet: false}``) and some demand cannot be served,
the answer is "infeasible" with the reason in business terms, not a solver status:

- **lanes**: a zone with demand that no usable DC reaches over the lanes -- found as the zones outside the
  descendants of a super-source linked to every usable DC in the directed lane graph (networkx), so a zone
  served through a cross-dock or a DC -> DC transfer counts as reachable;
- **capacity**: per period, the demand of the zones that are reachable beyond what the usable DCs can ship
  (the bottleneck stage of each DC: min over its flow stages of count x rate x hours x days).

A usable DC is a DC or cross-dock not closed by the scenario (``force_closed``, ``closed_sites``,
``close_site``).
"""

from __future__ import annotations

from typing import Any

import networkx as nx
import pandas as pd

from instances.instance import Instance
from instances.schema import FLOW_STAGES

SOURCE = "__usable_dcs__"


def usable_dcs(instance: Instance) -> list[str]:
    """DCs (and cross-docks) the scenario leaves available."""
    sc = instance.meta.get("scenario") or {}
    closed = {str(s) for s in sc.get("force_closed") or ()}
    closed |= {str(s) for s in (sc.get("options") or {}).get("force_closed") or ()}
    for entry in sc.get("closed_sites") or ():  # close_site: closed for the whole horizon when no periods
        if isinstance(entry, dict):
            if not entry.get("periods"):
                closed.add(str(entry["site"]))
        else:
            closed.add(str(entry))
    return [str(s) for s in instance.dcs["id"] if str(s) not in closed]


def lane_graph(instance: Instance) -> nx.DiGraph:
    """Directed graph of the lanes (site -> site, site -> zone)."""
    g = nx.DiGraph()
    lanes = instance.lanes
    g.add_edges_from(zip(lanes["origin_id"].astype(str), lanes["destination_id"].astype(str)))
    g.add_nodes_from(instance.zones["id"].astype(str))
    return g


def unreachable_zones(instance: Instance, dcs: list[str] | None = None) -> list[str]:
    """Zones with demand that no usable DC reaches over the lanes (sorted by demand, largest first)."""
    dcs = usable_dcs(instance) if dcs is None else dcs
    g = lane_graph(instance)
    g.add_node(SOURCE)
    g.add_edges_from((SOURCE, d) for d in dcs)
    # a closed DC relays nothing: remove it so that a path through it does not count
    g.remove_nodes_from([str(s) for s in instance.dcs["id"] if str(s) not in set(dcs)])
    reached = nx.descendants(g, SOURCE)
    dem = instance.demand.groupby(instance.demand["zone_id"].astype(str))["quantity"].sum()
    dem = dem[dem > 0]
    return [z for z in dem.sort_values(ascending=False).index if z not in reached]


def shipping_capacity(instance: Instance, dcs: list[str]) -> pd.Series:
    """Units per day each DC can ship: its bottleneck flow stage (count x rate x hours)."""
    res = instance.resources
    res = res[res["site_id"].astype(str).isin(dcs) & res["stage"].isin(FLOW_STAGES)]
    if res.empty:
        return pd.Series(0.0, index=pd.Index(dcs, name="site_id"))
    cap = pd.to_numeric(res["count"]) * pd.to_numeric(res["rate_per_hour"]) * pd.to_numeric(res["hours_per_day"])
    out = cap.groupby(res["site_id"].astype(str)).min()
    return out.reindex(dcs).fillna(0.0)


def unserved_demand(instance: Instance, max_items: int = 12) -> list[str]:
    """Why demand cannot all be served (empty list: nothing found): zones without lanes, capacity short."""
    names = dict(zip(instance.zones["id"].astype(str), instance.zones["name"].astype(str))) \
        if "name" in instance.zones else {}
    dcs = usable_dcs(instance)
    lines: list[str] = []
    dem = instance.demand.groupby(instance.demand["zone_id"].astype(str))["quantity"].sum()
    lost = unreachable_zones(instance, dcs)
    if lost:
        lanes = instance.lanes
        for z in lost[:max_items]:
            into = sorted(set(lanes.loc[lanes["destination_id"].astype(str) == z, "origin_id"].astype(str)))
            via = (f"its lanes come only from {', '.join(into)}, closed in this scenario" if into
                   else "it has no lane at all")
            lines.append(f"zone {names.get(z, z)} ({z}): {dem[z]:,.0f} units of demand cannot be served -- no lane "
                         f"from an open DC ({via}); open one of those DCs or add a lane from "
                         f"{', '.join(dcs) if dcs else 'a DC'}")
        if len(lost) > max_items:
            lines.append(f"... and {len(lost) - max_items} more zones without a lane from an open DC "
                         f"({float(dem.reindex(lost[max_items:]).sum()):,.0f} units)")
        if not dcs:
            lines.insert(0, "every DC is closed in this scenario: no demand can be served "
                            f"({float(dem.sum()):,.0f} units over the horizon)")
    cap = shipping_capacity(instance, dcs).sum() if dcs else 0.0
    per = instance.periods.set_index("period")["days"]
    reach = instance.demand[~instance.demand["zone_id"].astype(str).isin(lost)]
    by_period = reach.groupby(reach["period"].astype(int))["quantity"].sum()
    short = [(int(p), float(q), float(cap * per.get(p, 1.0))) for p, q in by_period.items()
             if q > cap * per.get(p, 1.0) * (1 + 1e-9)]
    if dcs and short:
        p, q, c = max(short, key=lambda x: x[1] - x[2])
        lines.append(f"capacity: the open DCs ({', '.join(dcs)}) can ship at most {c:,.0f} units in period {p} "
                     f"(bottleneck stages, {cap:,.0f} units/day) against {q:,.0f} units of reachable demand: "
                     f"{q - c:,.0f} units/period of capacity missing ({len(short)} period(s) short)")
    return lines


def demand_must_be_met(instance: Instance, decision: str) -> bool:
    """Does the decision's model forbid unmet demand (network design with ``allow_unmet: false``)?"""
    sc: dict[str, Any] = instance.meta.get("scenario") or {}
    return decision == "consolidation" and (sc.get("options") or {}).get("allow_unmet", True) is False
