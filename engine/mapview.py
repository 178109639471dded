"""The network map of the report: extent, projection, base layer, flows, site markers and labels that never
overlap, as data for the ``map.svg.j2`` template (which escapes every name).

- **Extent**: the box of the sites and zones, less far outliers: a zone whose removal shrinks the box's area
  by more than :data:`OUTLIER_SHRINK` (e.g. the Canaries in a European network) is left off the map, with an
  arrow at the edge pointing to it and a note under the map. Sites are always on the map.
- **Projection**: equirectangular around the middle latitude (``x = lon cos(lat0)``, ``y = -lat``), scaled
  uniformly into the box: distances read true near the middle of a continental network.
- **Base layer**: Natural Earth countries, borders and coastlines (:mod:`engine.basemap`, shipped offline).
- **Labels**: placed greedily, busiest site first, at the first of eight positions around its marker, then
  along a leader line, that neither overlaps a label already placed nor a marker nor leaves the map; a site
  whose label finds no room gets a number, listed under the map (:func:`place_labels`).
- **States**: open, opened, closed (a cross), candidate not opened, port, port closed (a cross, with the days).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from engine.basemap import base_layer

OUTLIER_SHRINK = 0.2
"""A zone is an outlier when leaving it out shrinks the map's area by more than this share."""
MAX_MAP_FLOWS = 80
LEG_COLOURS = {"inbound": "#7b5ea7", "outbound": "#2f6fb0", "transfer": "#e8710a"}
SITE_STYLE = {  # fill, stroke, legend label
    "open": ("#2f6fb0", "#102a43", "open DC"),
    "opened": ("#1e7b34", "#0b3d18", "opened DC"),
    "closed": ("#b42318", "#5c1009", "closed DC"),
    "not opened": ("#ffffff", "#7b8794", "candidate, not opened"),
    "port": ("#7b5ea7", "#3d2a5c", "port / supplier"),
    "supplier": ("#7b5ea7", "#3d2a5c", "port / supplier"),
    "port closed": ("#d5d9de", "#b42318", "port / supplier closed"),
}
CHAR_WIDTH = 0.62
"""Width of a label character in em (bold system sans-serif, generous so that real text fits its box)."""


def project(lat: np.ndarray, lon: np.ndarray, bounds: tuple[float, float, float, float], width: float,
            height: float, pad: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    """Equirectangular projection of degrees into an SVG box, aspect kept.

    ``x = lon * cos(lat0)``, ``y = -lat`` with ``lat0`` the middle latitude of ``bounds = (lat_min, lat_max,
    lon_min, lon_max)``; the result is scaled uniformly to fit ``width x height`` less ``pad`` and centred.
    """
    lat_min, lat_max, lon_min, lon_max = bounds
    k = math.cos(math.radians((lat_min + lat_max) / 2))
    span_x = max((lon_max - lon_min) * k, 1e-6)
    span_y = max(lat_max - lat_min, 1e-6)
    scale = min((width - 2 * pad) / span_x, (height - 2 * pad) / span_y)
    off_x = (width - span_x * scale) / 2
    off_y = (height - span_y * scale) / 2
    x = off_x + (np.asarray(lon, float) - lon_min) * k * scale
    y = off_y + (lat_max - np.asarray(lat, float)) * scale
    return x, y


def map_extent(sites: pd.DataFrame, zones: pd.DataFrame, margin: float = 0.4
               ) -> tuple[tuple[float, float, float, float], list[str]]:
    """``(lat_min, lat_max, lon_min, lon_max)`` of the sites and zones less the outlying zones, and the ids of
    the zones left off.

    On each side of the box, the ``k`` outermost points (``k`` at most a twentieth of the zones) are an outlier
    group when they are all zones, a gap of more than a quarter of the remaining span separates them from the
    rest, and leaving them off shrinks the box's area by more than :data:`OUTLIER_SHRINK` (the Canaries south
    of Iberia: two zones, 8 degrees of sea). Repeated while a side has such a group.
    """
    pts = pd.concat([sites[["id", "lat", "lon"]].assign(site=True), zones[["id", "lat", "lon"]].assign(site=False)],
                    ignore_index=True).dropna(subset=["lat", "lon"])
    lat, lon = pts["lat"].to_numpy(float), pts["lon"].to_numpy(float)
    is_site = pts["site"].to_numpy(bool)
    keep = np.ones(len(pts), bool)
    k_cos = math.cos(math.radians(float(np.median(lat)))) if len(lat) else 1.0
    most = int(len(zones) / 20)  # small networks keep every point

    def area(mask: np.ndarray) -> float:
        return max(np.ptp(lat[mask]), 0.1) * max(np.ptp(lon[mask]) * k_cos, 0.1)

    dropped: list[str] = []
    changed = True
    while changed and most and keep.sum() > 4:
        changed = False
        for values, sign in ((lat, 1), (lat, -1), (lon, 1), (lon, -1)):
            idx = np.flatnonzero(keep)
            order = idx[np.argsort(-sign * values[idx], kind="stable")]  # outermost first
            full = area(keep)
            for k in range(1, min(most, len(order) - 3) + 1):
                group, rest = order[:k], order[k:]
                if is_site[group].any():
                    break
                gap = abs(values[order[k - 1]] - values[order[k]])
                span = max(np.ptp(values[rest]), 1e-6)
                trial = keep.copy()
                trial[group] = False
                if gap > 0.25 * span and 1 - area(trial) / full > OUTLIER_SHRINK:
                    keep = trial
                    dropped += [str(pts["id"].iloc[i]) for i in group]
                    changed = True
                    break
    bounds = (lat[keep].min() - margin, lat[keep].max() + margin, lon[keep].min() - margin / k_cos,
              lon[keep].max() + margin / k_cos)
    return bounds, dropped


def map_size(bounds: tuple[float, float, float, float], width: float, pad: float = 30.0,
             min_height: float = 300.0, max_height: float = 620.0) -> float:
    """Height of a map ``width`` wide that fits ``bounds`` at the projection's aspect (clamped)."""
    lat_min, lat_max, lon_min, lon_max = bounds
    k = math.cos(math.radians((lat_min + lat_max) / 2))
    aspect = max(lat_max - lat_min, 1e-6) / max((lon_max - lon_min) * k, 1e-6)
    return float(min(max((width - 2 * pad) * aspect + 2 * pad, min_height), max_height))


def main_flows(flows: pd.DataFrame, share: float = 0.95, most: int = MAX_MAP_FLOWS) -> pd.DataFrame:
    """Flows summed over products and periods per (origin, destination, leg), largest first, cut where
    they carry ``share`` of the volume (at most ``most`` lines)."""
    if flows is None or flows.empty:
        return pd.DataFrame(columns=["origin_id", "destination_id", "leg", "quantity"])
    f = flows.assign(quantity=pd.to_numeric(flows["quantity"], errors="coerce").fillna(0.0))
    f = f[f["quantity"] > 1e-9]
    g = (f.groupby(["origin_id", "destination_id", "leg"], as_index=False)["quantity"].sum()
         .sort_values(["quantity", "origin_id", "destination_id"], ascending=[False, True, True]))
    if g.empty:
        return g
    cum = g["quantity"].cumsum() / g["quantity"].sum()
    keep = int(np.searchsorted(cum.to_numpy(), share - 1e-12)) + 1
    return g.head(min(keep, most)).reset_index(drop=True)


def site_states(sites: pd.DataFrame, plan_sites: pd.DataFrame | None,
                closed_ports: Sequence[str] = ()) -> pd.Series:
    """Per site id: ``port`` | ``port closed`` | ``opened`` | ``closed`` | ``open`` | ``not opened``."""
    state = {}
    ps = plan_sites.set_index("site_id") if plan_sites is not None and len(plan_sites) else None
    closed_ports = set(closed_ports)

    def flag(row: pd.Series, col: str) -> bool:
        v = row.get(col, 0)
        return bool(v) if isinstance(v, bool | np.bool_) else float(v or 0) > 0.5

    for sid, kind, status in zip(sites["id"], sites["kind"], sites["status"]):
        if kind in ("port", "supplier"):
            state[sid] = "port closed" if sid in closed_ports else kind
            continue
        if ps is not None and sid in ps.index:
            row = ps.loc[sid]
            if flag(row, "opened"):
                state[sid] = "opened"
            elif flag(row, "closed"):
                state[sid] = "closed"
            else:
                state[sid] = "open" if flag(row, "open") else "not opened"
        else:
            state[sid] = "not opened" if status == "candidate" else ("closed" if status == "closed" else "open")
    return pd.Series(state, dtype=object)


# ------------------------------------------------------------------------------------------------ labels

@dataclass
class Label:
    """A label to place next to a marker at (x, y) of half-size ``r``."""

    text: str
    x: float
    y: float
    r: float
    size: float = 11.0
    weight: int = 600
    priority: float = 0.0
    number_if_no_room: bool = True


def _box(x: float, y: float, w: float, h: float, anchor: str) -> tuple[float, float, float, float]:
    """Box of a text at (x, baseline y): (x0, y0, x1, y1)."""
    x0 = x if anchor == "start" else (x - w if anchor == "end" else x - w / 2)
    return (x0, y - h * 0.8, x0 + w, y + h * 0.25)


def _overlaps(a: tuple[float, float, float, float], b: tuple[float, float, float, float], gap: float = 1.0) -> bool:
    return not (a[2] + gap <= b[0] or b[2] + gap <= a[0] or a[3] + gap <= b[1] or b[3] + gap <= a[1])


def place_labels(labels: Sequence[Label], width: float, height: float,
                 obstacles: Sequence[tuple[float, float, float, float]] = ()) -> list[dict[str, Any]]:
    """Positions for labels that overlap no other label, no obstacle box (markers) and stay inside the map.

    Highest ``priority`` first; each tries 8 positions around its marker, then 16 directions along a leader
    line of 28 and 48 px. A label with no room is dropped, or (``number_if_no_room``) replaced by a number
    beside its marker (the caller lists the numbers under the map). Returns one dict per label placed:
    ``text, x, y, anchor, size, weight, leader (x1, y1, x2, y2) or None, number or None, box``.
    """
    placed: list[tuple[float, float, float, float]] = list(obstacles)
    out: list[dict[str, Any]] = []
    number = 0
    for lab in sorted(labels, key=lambda label: -label.priority):
        w, h = len(lab.text) * lab.size * CHAR_WIDTH, lab.size * 1.15
        d = lab.r + 3
        around = [(lab.x + d, lab.y + h * 0.3, "start"), (lab.x - d, lab.y + h * 0.3, "end"),
                  (lab.x, lab.y - d - 4, "middle"), (lab.x, lab.y + d + h * 0.8 + 1, "middle"),
                  (lab.x + d, lab.y - d, "start"), (lab.x + d, lab.y + d + h * 0.6, "start"),
                  (lab.x - d, lab.y - d, "end"), (lab.x - d, lab.y + d + h * 0.6, "end")]
        candidates = [(x, y, a, None) for x, y, a in around]
        for dist in (28.0, 48.0):
            for k in range(16):
                ang = 2 * math.pi * k / 16
                ex, ey = lab.x + dist * math.cos(ang), lab.y - dist * math.sin(ang)
                anchor = "start" if math.cos(ang) > 0.3 else ("end" if math.cos(ang) < -0.3 else "middle")
                ty = ey + h * 0.3 if anchor != "middle" else (ey - 2 if math.sin(ang) > 0 else ey + h * 0.8)
                tx = ex + (2 if anchor == "start" else -2 if anchor == "end" else 0)
                candidates.append((tx, ty, anchor, (lab.x, lab.y, ex, ey)))
        chosen = None
        for x, y, anchor, leader in candidates:
            box = _box(x, y, w, h, anchor)
            if box[0] < 2 or box[1] < 2 or box[2] > width - 2 or box[3] > height - 14:
                continue
            if any(_overlaps(box, p) for p in placed):
                continue
            if leader is not None and any(_segment_hits(leader, p) for p in placed[len(obstacles):]):
                continue
            chosen = (x, y, anchor, leader, box)
            break
        if chosen is None:
            if not lab.number_if_no_room:
                continue
            number += 1
            text = str(number)
            w2 = len(text) * 9 * CHAR_WIDTH
            x, y = lab.x + lab.r + 1, lab.y - lab.r - 1
            box = _box(x, y, w2, 9 * 1.15, "start")
            placed.append(box)
            out.append({"text": text, "x": round(x, 1), "y": round(y, 1), "anchor": "start", "size": 9,
                        "weight": 700, "leader": None, "number": number, "full": lab.text, "box": box})
            continue
        x, y, anchor, leader, box = chosen
        placed.append(box)
        out.append({"text": lab.text, "x": round(x, 1), "y": round(y, 1), "anchor": anchor, "size": lab.size,
                    "weight": lab.weight, "number": None, "full": lab.text, "box": box,
                    "leader": tuple(round(v, 1) for v in leader) if leader else None})
    return out


def _segment_hits(seg: tuple[float, float, float, float], box: tuple[float, float, float, float]) -> bool:
    """Whether a leader line crosses a label box (sampled: leaders are short)."""
    x1, y1, x2, y2 = seg
    for t in np.linspace(0.25, 0.95, 8):
        x, y = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t
        if box[0] <= x <= box[2] and box[1] <= y <= box[3]:
            return True
    return False


# ------------------------------------------------------------------------------------------------ the map

def network_map(key: str, sites: pd.DataFrame, zones: pd.DataFrame, bounds: tuple[float, float, float, float],
                width: float, height: float, flows: pd.DataFrame | None = None,
                plan_sites: pd.DataFrame | None = None, transfers: pd.DataFrame | None = None,
                demand: pd.DataFrame | None = None, closed_ports: dict[str, str] | None = None,
                offmap: Sequence[str] = (), volume: dict[str, float] | None = None,
                base_ref: str | None = None) -> dict[str, Any]:
    """Everything ``map.svg.j2`` draws for one plan (see the module docstring).

    ``closed_ports`` maps a closed port's id to the words of when it is closed ("days 1-14");
    ``volume`` (site id -> units) orders the labels (busiest first); ``offmap`` are zone ids off the map;
    ``base_ref`` the id of a base layer already on the page (same bounds and size) to reuse instead of a copy.
    """
    closed_ports = closed_ports or {}

    def proj(lat: Any, lon: Any) -> tuple[np.ndarray, np.ndarray]:
        return project(np.asarray(lat, float), np.asarray(lon, float), bounds, width, height)

    names = {str(i): str(n) for i, n in zip(sites["id"], sites.get("name", sites["id"]))}
    names.update({str(i): str(n) for i, n in zip(zones["id"], zones.get("name", zones["id"]))})
    sx, sy = proj(sites["lat"], sites["lon"])
    zx, zy = proj(zones["lat"], zones["lon"])
    where = {str(i): (float(x), float(y)) for i, x, y in zip(sites["id"], sx, sy)}
    where.update({str(i): (float(x), float(y)) for i, x, y in zip(zones["id"], zx, zy)})
    # off-map zones sit on the edge, in their direction from the centre
    cx, cy = width / 2, height / 2
    offmap_items, offmap_labels = [], []
    for zid in offmap:
        x, y = where[str(zid)]
        dx, dy = x - cx, y - cy
        t = min((width / 2 - 14) / abs(dx) if dx else 1e9, (height / 2 - 22) / abs(dy) if dy else 1e9)
        ex, ey = cx + dx * t, cy + dy * t
        where[str(zid)] = (ex, ey)
        ang = math.atan2(dy, dx)
        tip = (ex + 9 * math.cos(ang), ey + 9 * math.sin(ang))
        left = (ex + 6 * math.cos(ang + 2.5), ey + 6 * math.sin(ang + 2.5))
        right = (ex + 6 * math.cos(ang - 2.5), ey + 6 * math.sin(ang - 2.5))
        offmap_items.append({"arrow": f"M{tip[0]:.1f},{tip[1]:.1f}L{left[0]:.1f},{left[1]:.1f}"
                                      f"L{right[0]:.1f},{right[1]:.1f}Z"})
        offmap_labels.append(Label(f"{names[str(zid)]} (off map)", ex, ey, 6.0, 10.5, 400, priority=-1.0,
                                   number_if_no_room=False))
    base = None if base_ref else base_layer(bounds, proj, tolerance=1.0, viewport=(width, height))
    lines = main_flows(flows) if flows is not None else pd.DataFrame()
    if transfers is not None and len(transfers):
        t = transfers.assign(leg="transfer", quantity=pd.to_numeric(transfers["quantity"]))
        t = t.groupby(["origin_id", "destination_id", "leg"], as_index=False)["quantity"].sum()
        lines = pd.concat([lines[lines["leg"] != "transfer"] if len(lines) else lines, t], ignore_index=True)
    flow_items = []
    if len(lines):
        qmax = float(lines["quantity"].max())
        for o, d, leg, q in zip(lines["origin_id"], lines["destination_id"], lines["leg"], lines["quantity"]):
            if str(o) not in where or str(d) not in where:
                continue
            (x1, y1), (x2, y2) = where[str(o)], where[str(d)]
            flow_items.append({"x1": f"{x1:.1f}", "y1": f"{y1:.1f}", "x2": f"{x2:.1f}", "y2": f"{y2:.1f}",
                               "colour": LEG_COLOURS.get(str(leg), "#52606d"),
                               "opacity": 0.9 if leg == "transfer" else 0.5, "dash": leg == "transfer",
                               "width": f"{0.8 + 5.0 * math.sqrt(float(q) / qmax) if qmax > 0 else 1.0:.2f}",
                               "title": f"{names.get(str(o), o)} \u2192 {names.get(str(d), d)}: "
                                        f"{float(q):,.0f} units ({leg})"})
    dz = (pd.to_numeric(demand["quantity"]).groupby(demand["zone_id"]).sum()
          if demand is not None and len(demand) else pd.Series(dtype=float))
    dmax = float(dz.max()) if len(dz) else 0.0
    zone_items, labels = [], []
    label_zones = len(zones) <= 15
    for zid in zones["id"]:
        if str(zid) in set(map(str, offmap)):
            continue
        x, y = where[str(zid)]
        q = float(dz.get(zid, 0.0))
        r = 2.0 + 7.0 * math.sqrt(q / dmax) if dmax > 0 else 3.0
        zone_items.append({"x": f"{x:.1f}", "y": f"{y:.1f}", "r": f"{r:.1f}",
                           "title": f"zone {names[str(zid)]}: {q:,.0f} units demand"})
        if label_zones:
            labels.append(Label(names[str(zid)], x, y, r, 10.0, 400, priority=-2.0 + q / (dmax or 1.0),
                                number_if_no_room=False))
    states = site_states(sites, plan_sites, list(closed_ports))
    site_items, obstacles = [], []
    volume = volume or {}
    for sid, x, y, kind in zip(sites["id"], sx, sy, sites["kind"]):
        st = states.get(sid, "open")
        fill, stroke, legend = SITE_STYLE.get(st, SITE_STYLE["open"])
        when = f", closed {closed_ports[sid]}" if sid in closed_ports else ""
        item = {"id": str(sid), "state": st, "fill": fill, "stroke": stroke,
                "title": f"{names[str(sid)]}: {legend}{when}", "cross": "", "cross_colour": "#ffffff"}
        if kind in ("port", "supplier"):
            item.update(shape="diamond", points=f"{x:.1f},{y - 7:.1f} {x + 7:.1f},{y:.1f} {x:.1f},{y + 7:.1f} "
                                                f"{x - 7:.1f},{y:.1f}")
        else:
            item.update(shape="square", x0=f"{x - 6:.1f}", y0=f"{y - 6:.1f}", size=12)
        if st in ("closed", "port closed"):
            item["cross"] = (f"M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}"
                             f"M{x + 5:.1f},{y - 5:.1f}L{x - 5:.1f},{y + 5:.1f}")
            item["cross_colour"] = "#ffffff" if st == "closed" else "#b42318"
        site_items.append(item)
        obstacles.append((x - 7, y - 7, x + 7, y + 7))
        text = names[str(sid)] + (" (closed)" if st in ("closed", "port closed") else "")
        pri = 1e12 if st in ("closed", "opened", "port closed") else float(volume.get(str(sid), 0.0))
        labels.append(Label(text, float(x), float(y), 7.0, 11.0, 600, priority=pri))
    labels += offmap_labels
    placed = place_labels(labels, width, height, obstacles)
    label_items, key_items = [], []
    for p in placed:
        is_site = p["weight"] >= 600
        label_items.append({**p, "colour": "#1f2933" if is_site else "#52606d",
                            "kind": "number" if p["number"] else ("site" if is_site else "zone")})
        if p["number"]:
            key_items.append({"n": p["number"], "text": p["full"]})
    # changed sites (closed, opened, closed ports) on top of their neighbours
    site_items.sort(key=lambda it: it["state"] in ("closed", "opened", "port closed"))
    return {"key": key, "width": round(width), "height": round(height), "base": base, "base_ref": base_ref,
            "flows": flow_items,
            "zones": zone_items, "sites": site_items, "labels": label_items, "offmap": offmap_items,
            "key_items": key_items, "label": f"map of sites, zones and main flows ({key})",
            "projection": "equirectangular", "states": sorted(set(states.tolist())),
            "legs": sorted(set(lines["leg"].astype(str))) if len(lines) else []}


def map_legend(states: Sequence[str], legs: Sequence[str]) -> list[dict[str, Any]]:
    """Legend items (fill, stroke, label) of the states and flow legs drawn."""
    seen: dict[str, dict[str, Any]] = {}
    for st in states:
        fill, stroke, label = SITE_STYLE.get(st, SITE_STYLE["open"])
        seen.setdefault(label, {"fill": fill, "stroke": stroke, "label": label})
    items = list(seen.values())
    items += [{"fill": LEG_COLOURS[leg], "label": f"{leg} flow"} for leg in LEG_COLOURS if leg in set(legs)]
    items.append({"fill": "#9aa5b1", "round": True, "label": "zone (area ~ demand)"})
    return items


__all__ = ["Label", "main_flows", "map_extent", "map_legend", "map_size", "network_map", "place_labels", "project",
           "site_states"]
