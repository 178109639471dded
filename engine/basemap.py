"""The offline base map of the report: country shapes, borders and coastlines from Natural Earth.

The data (Natural Earth 1:50m Admin-0 countries, public domain; see ``engine/data/NOTICE.md``) ships with the
package as gzipped TopoJSON: ``arcs`` are delta-encoded integer polylines, quantized by ``transform``
(``lon = x * scale_x + translate_x``, likewise for lat); a country polygon is a list of rings, a ring a list of
arc indices (``~i`` = arc ``i`` reversed). Nothing is fetched at run time.

An arc used by two countries is a land border; an arc used by one only is a coastline. :func:`base_layer`
returns the countries, borders and coastlines that meet a lon/lat box, projected by the caller's function and
thinned to what can be seen (points closer than ``tolerance`` pixels to the last kept one are dropped).
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib.resources import files

import numpy as np

DATA_FILE = "natural_earth_countries_50m.topo.json.gz"

Projector = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``(lat, lon) -> (x, y)`` in SVG pixels."""


@dataclass(frozen=True)
class Topology:
    """Decoded arcs (lon/lat arrays), each arc's bounding box and use count, and the countries' rings."""

    arcs: list[np.ndarray]
    """One ``(n, 2)`` array of (lon, lat) per arc."""
    arc_bbox: np.ndarray
    """``(n_arcs, 4)``: lon_min, lat_min, lon_max, lat_max."""
    arc_uses: np.ndarray
    """How many country rings use each arc: 1 = coastline, 2 = border."""
    countries: list[tuple[str, list[list[list[int]]]]]
    """(name, polygons); a polygon is a list of rings, a ring a list of arc references."""


@cache
def topology() -> Topology:
    """The shipped Natural Earth countries, decoded once per process."""
    raw = json.loads(gzip.decompress(files("engine.data").joinpath(DATA_FILE).read_bytes()))
    (sx, sy), (tx, ty) = raw["transform"]["scale"], raw["transform"]["translate"]
    arcs = []
    for arc in raw["arcs"]:
        q = np.cumsum(np.asarray(arc, dtype=float), axis=0)
        arcs.append(np.column_stack([q[:, 0] * sx + tx, q[:, 1] * sy + ty]))
    bbox = np.array([[a[:, 0].min(), a[:, 1].min(), a[:, 0].max(), a[:, 1].max()] for a in arcs])
    uses = np.zeros(len(arcs), int)
    countries = []
    for g in raw["objects"]["countries"]["geometries"]:
        polygons = [g["arcs"]] if g["type"] == "Polygon" else g["arcs"]
        for poly in polygons:
            for ring in poly:
                for ref in ring:
                    uses[ref if ref >= 0 else ~ref] += 1
        countries.append((str(g["properties"].get("name", "")), polygons))
    return Topology(arcs, bbox, uses, countries)


def _ring(topo: Topology, refs: list[int]) -> np.ndarray:
    parts = [topo.arcs[r] if r >= 0 else topo.arcs[~r][::-1] for r in refs]
    return np.concatenate(parts) if parts else np.empty((0, 2))


def _thin(x: np.ndarray, y: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """Keep a point only when it is more than ``tolerance`` px (Chebyshev) from the last kept point."""
    if len(x) <= 2 or tolerance <= 0:
        return x, y
    keep = [0]
    lx, ly = x[0], y[0]
    for i in range(1, len(x) - 1):
        if abs(x[i] - lx) > tolerance or abs(y[i] - ly) > tolerance:
            keep.append(i)
            lx, ly = x[i], y[i]
    keep.append(len(x) - 1)
    return x[keep], y[keep]


def _path(x: np.ndarray, y: np.ndarray, close: bool) -> str:
    if len(x) < 2:
        return ""
    pts = "L".join(f"{a:.1f},{b:.1f}" for a, b in zip(x, y))
    return f"M{pts}{'Z' if close else ''}"


def _meets(box: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    lat_min, lat_max, lon_min, lon_max = bounds
    return (box[..., 0] <= lon_max) & (box[..., 2] >= lon_min) & (box[..., 1] <= lat_max) & (box[..., 3] >= lat_min)


@dataclass(frozen=True)
class BaseLayer:
    """SVG path data of the base map inside a box: land (one path per country), borders, coastlines."""

    land: list[tuple[str, str]]
    """(country name, path data) per country that meets the box."""
    borders: str
    coastlines: str


def base_layer(bounds: tuple[float, float, float, float], projector: Projector, tolerance: float = 0.7,
               margin_deg: float = 3.0, viewport: tuple[float, float] | None = None) -> BaseLayer:
    """The countries, borders and coastlines meeting ``bounds = (lat_min, lat_max, lon_min, lon_max)``
    (widened by ``margin_deg`` so that shapes run off the edge), projected and thinned to ``tolerance`` px.

    With ``viewport = (width, height)`` points are clamped to the viewport plus 20 px on each side before
    thinning: what lies outside collapses onto the frame (invisible under the map's clip), and the file stays
    small. The 1:50m segments are short, so no clamped edge can cut through the visible area."""
    topo = topology()
    lat_min, lat_max, lon_min, lon_max = bounds
    wide = (lat_min - margin_deg, lat_max + margin_deg, lon_min - margin_deg, lon_max + margin_deg)
    arc_in = _meets(topo.arc_bbox, wide)

    def project(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = projector(xy[:, 1], xy[:, 0])
        x, y = np.asarray(x, float), np.asarray(y, float)
        if viewport is not None:
            x, y = np.clip(x, -20.0, viewport[0] + 20.0), np.clip(y, -20.0, viewport[1] + 20.0)
        return _thin(x, y, tolerance)

    land = []
    for name, polygons in topo.countries:
        d = []
        for poly in polygons:
            if not any(arc_in[r if r >= 0 else ~r] for ring in poly for r in ring):
                continue
            for ring in poly:
                x, y = project(_ring(topo, ring))
                if viewport is not None and (np.ptp(x) < 0.5 or np.ptp(y) < 0.5):
                    continue  # wholly outside: collapsed onto the frame
                d.append(_path(x, y, close=True))
        if d:
            land.append((name, "".join(d)))
    borders, coasts = [], []
    for i in np.flatnonzero(arc_in):
        x, y = project(topo.arcs[i])
        if viewport is not None and (np.ptp(x) < 0.5 or np.ptp(y) < 0.5):
            continue
        path = _path(x, y, close=False)
        (borders if topo.arc_uses[i] > 1 else coasts).append(path)
    return BaseLayer(land, "".join(borders), "".join(coasts))


__all__ = ["BaseLayer", "Topology", "base_layer", "topology"]
