"""Executive reports: one self-contained HTML file per run, and a sweep report for many runs.

``write_report(run_dir)`` reads a run folder written by :meth:`engine.pipeline.PlanResult.save` (and
``twinplan solve``) and writes ``run_dir/report.html``: headline KPIs with their change against the
baseline in money, hours and days; a map of sites, zones and main flows; the decisions as tables; the cost
breakdown; utilisation and the Labour Stress Index heat map (site x day); failure points; the
optimize -> simulate rounds; assumptions, a data summary and input hashes.

``write_sweep_report(runs, out)`` takes a DataFrame of runs (one row per run, ``param_<name>`` columns
and one column per KPI, as :func:`engine.store.runs` returns) and shows them side by side: cost against
service level with the Pareto front, and a tornado chart of each headline KPI's sensitivity to each varied
parameter.

Both files open offline: charts and the map are inline SVG drawn here (no tile server, no CDN, no web
fonts, no JavaScript), and a Content-Security-Policy forbids the page from loading anything. Every string
that comes from the user's data (site and zone names, scenario names, parameters) is HTML-escaped.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from engine.kpi import DELTA_KPIS, LSI_THRESHOLDS, labour_stress, lsi_band, utilisation
from instances.plan import Plan
from solvers.result import Termination

# --------------------------------------------------------------------------------------------------------
# what is shown
# --------------------------------------------------------------------------------------------------------

HEADLINE_KPIS: tuple[tuple[str, str, str], ...] = (
    ("total_cost", "Total cost", "money"),
    ("investment", "Investment", "money"),
    ("labour_hours", "Labour hours", "hours"),
    ("avg_delivery_days", "Average delivery time", "days"),
    ("cycle_time_p50_h", "Order-to-ship time (p50)", "hours"),
    ("service_level", "Service level", "share"),
    ("fill_rate", "Fill rate", "share"),
    ("max_utilisation", "Peak utilisation", "share"),
    ("max_labour_stress", "Max Labour Stress Index", "index"),
)
"""Headline KPI cards: key in ``kpis.json``, label, unit (money | hours | days | share | index)."""

LOWER_IS_BETTER = {"total_cost", "investment", "labour_hours", "avg_delivery_days", "cycle_time_p50_h",
                   "cycle_time_p95_h", "p95_delivery_days", "max_utilisation", "max_labour_stress", "stress_days",
                   "unmet_units", "avg_distance_km"} | {f"cost_{c}" for c in
                                                       ("fixed", "transport", "handling", "labour", "capex",
                                                        "penalty", "other")}
"""KPIs whose decrease is good news (coloured green in deltas); the others read higher-is-better."""

COST_KPIS: tuple[tuple[str, str], ...] = (
    ("cost_fixed", "fixed sites"), ("cost_transport", "transport"), ("cost_handling", "handling"),
    ("cost_labour", "labour"), ("cost_capex", "capex"), ("cost_penalty", "penalties"), ("cost_other", "other"))

SWEEP_KPIS: tuple[str, ...] = ("total_cost", "service_level", "labour_hours", "avg_delivery_days", "investment")
"""KPIs the sweep report shows by default (those present in the runs table)."""

LSI_COLOURS = {"comfortable": "#cfe8cf", "stretched": "#fff1a8", "overload": "#ffc078", "critical": "#f28b82"}
LEG_COLOURS = {"inbound": "#7b5ea7", "outbound": "#2f6fb0", "transfer": "#e8710a"}
MAX_TABLE_ROWS = 40
MAX_MAP_FLOWS = 80

CSS = """
:root{--ink:#1f2933;--muted:#616e7c;--line:#d9e2ec;--bg:#f5f7fa;--good:#1e7b34;--bad:#b42318}
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;color:var(--ink);
margin:0;background:#fff;line-height:1.4}
header{background:#102a43;color:#fff;padding:18px 28px}
header h1{margin:0;font-size:1.5em}
header .sub{color:#bcccdc;margin-top:4px}
main{padding:10px 28px 40px;max-width:1280px}
h2{border-bottom:2px solid var(--line);padding-bottom:4px;margin-top:34px;font-size:1.2em}
h3{font-size:1em;margin:18px 0 6px}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px;margin-top:14px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 12px;background:var(--bg)}
.card .label{color:var(--muted);font-size:.85em}
.card .value{font-size:1.35em;font-weight:600;margin:2px 0}
.card .delta{font-size:.85em}
.good{color:var(--good)} .bad{color:var(--bad)} .flat{color:var(--muted)}
table{border-collapse:collapse;font-size:.85em;margin:6px 0 4px}
th,td{border:1px solid var(--line);padding:3px 7px;text-align:left;vertical-align:top}
th{background:var(--bg)}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.note{color:var(--muted);font-size:.85em}
.scroll{overflow-x:auto;max-width:100%}
.heat td{text-align:center;min-width:44px;font-variant-numeric:tabular-nums}
.bar{background:#2f6fb0;height:10px;display:inline-block;vertical-align:middle;margin-right:6px}
.status{display:inline-block;padding:2px 8px;border-radius:10px;font-size:.85em;background:#334e68;margin-right:6px}
.ok{background:#1e7b34} .ko{background:#b42318}
svg{max-width:100%;height:auto;font-family:inherit}
.legend span{display:inline-block;margin-right:14px;font-size:.85em}
.swatch{display:inline-block;width:12px;height:12px;border-radius:2px;vertical-align:-1px;margin-right:4px}
pre{background:var(--bg);padding:8px;border-radius:6px;overflow-x:auto;font-size:.85em}
code{font-size:.9em}
"""

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""The page may load nothing and run no script: it is self-contained by construction."""


# --------------------------------------------------------------------------------------------------------
# formatting (every user string goes through esc)
# --------------------------------------------------------------------------------------------------------

def esc(value: Any) -> str:
    """HTML-escape any value as text (quotes too, so it is safe in attributes)."""
    return html.escape("" if value is None else str(value), quote=True)


def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def fmt_value(value: Any, unit: str, currency: str = "") -> str:
    """A KPI value as shown on the page: ``EUR 1,234,567``, ``1,234.5 h``, ``2.35 d``, ``97.2 %``, ``0.93``."""
    if not _finite(value):
        return "n/a"
    v = float(value)
    if unit == "money":
        return f"{currency} {v:,.0f}".strip()
    if unit == "hours":
        return f"{v:,.1f} h"
    if unit == "days":
        return f"{v:,.2f} d"
    if unit == "share":
        return f"{v * 100:.1f} %"
    if unit == "km":
        return f"{v:,.0f} km"
    if unit == "units":
        return f"{v:,.0f}"
    return f"{v:,.2f}"


def fmt_delta(delta: float, unit: str, currency: str = "") -> str:
    """A signed change: ``+EUR 12,000``, ``-35.0 h``, ``+0.25 d``, ``+1.5 pts``."""
    if not _finite(delta):
        return "n/a"
    a = abs(float(delta))
    shown = fmt_value(a, "share" if unit == "share" else unit, currency)
    sign = "\u00b1" if shown == fmt_value(0.0, unit, currency) else ("+" if delta > 0 else "-")
    if unit == "money":
        return f"{sign}{currency} {a:,.0f}".strip()
    if unit == "share":
        return f"{sign}{a * 100:.1f} pts"
    return sign + fmt_value(a, unit, currency)


def _compact(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g} bn"
    if a >= 1e6:
        return f"{v / 1e6:.3g} M"
    if a >= 1e4:
        return f"{v / 1e3:.3g} k"
    return f"{v:.4g}"


def _formatter(unit: str, currency: str = "") -> Callable[[Any], str]:
    """``fmt_value`` with a fixed unit, for :func:`html_table`'s ``formats``."""
    return lambda v: fmt_value(v, unit, currency)


def _tone(key: str, delta: float, shown: str = "") -> str:
    """CSS class of a change: good / bad news for this KPI, or flat (zero at the precision shown)."""
    if not _finite(delta) or abs(delta) < 1e-12 or shown.startswith("\u00b1"):
        return "flat"
    better = delta < 0 if key in LOWER_IS_BETTER else delta > 0
    return "good" if better else "bad"


def html_table(df: pd.DataFrame, formats: dict[str, Callable[[Any], str]] | None = None,
               max_rows: int = MAX_TABLE_ROWS, empty: str = "none") -> str:
    """An escaped HTML table of ``df`` (numbers right-aligned); longer tables are cut with a note."""
    if df is None or len(df) == 0:
        return f'<p class="note">{esc(empty)}</p>'
    formats = formats or {}
    shown = df.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in shown.columns)
    rows = []
    for rec in shown.itertuples(index=False):
        cells = []
        for col, v in zip(shown.columns, rec):
            if col in formats:
                cells.append(f'<td class="num">{esc(formats[col](v))}</td>')
            elif isinstance(v, bool | np.bool_):
                cells.append(f"<td>{'yes' if v else 'no'}</td>")
            elif isinstance(v, int | float | np.integer | np.floating):
                text = "" if not _finite(v) else (f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}")
                cells.append(f'<td class="num">{esc(text)}</td>')
            else:
                cells.append(f"<td>{esc('' if v is None or (isinstance(v, float) and math.isnan(v)) else v)}</td>")
        rows.append("<tr>" + "".join(cells) + "</tr>")
    more = (f'<p class="note">{len(df) - max_rows:,} more rows not shown (see the CSV files of the run).</p>'
            if len(df) > max_rows else "")
    return f'<div class="scroll"><table><tr>{head}</tr>{"".join(rows)}</table></div>{more}'


# --------------------------------------------------------------------------------------------------------
# reading a run folder
# --------------------------------------------------------------------------------------------------------

@dataclass
class RunData:
    """Everything a report shows, read from one run folder (see :func:`load_run`)."""

    path: Path
    kpis: dict[str, Any]
    result: dict[str, Any] = field(default_factory=dict)
    rounds: list[dict[str, Any]] = field(default_factory=list)
    scenario: dict[str, Any] = field(default_factory=dict)
    plan: Plan | None = None
    simulation: SimpleNamespace | None = None
    violations: pd.DataFrame = field(default_factory=pd.DataFrame)
    stress: pd.DataFrame | None = None
    instance: Any | None = None
    sites: pd.DataFrame = field(default_factory=pd.DataFrame)
    zones: pd.DataFrame = field(default_factory=pd.DataFrame)
    demand: pd.DataFrame = field(default_factory=pd.DataFrame)
    summary_text: str = ""

    @property
    def name(self) -> str:
        """Display name of the run: its scenario name, else the folder name."""
        return str(self.result.get("scenario") or self.scenario.get("name") or self.path.name)

    @property
    def instance_name(self) -> str:
        """Name of the instance the run was solved on (empty when unknown)."""
        return str(self.result.get("instance") or (self.instance.name if self.instance is not None else ""))

    @property
    def currency(self) -> str:
        """Currency code of the run's instance (empty when the instance was not saved)."""
        if self.instance is not None:
            return self.instance.currency
        return ""


def _read_json(path: Path, default: Any) -> Any:
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}:{exc.lineno}:{exc.colno}: not valid JSON ({exc.msg})") from None


def _read_table(folder: Path, name: str) -> pd.DataFrame | None:
    for ext, reader in (("parquet", pd.read_parquet), ("csv", pd.read_csv)):
        f = folder / f"{name}.{ext}"
        if f.is_file():
            return reader(f)
    return None


def _load_instance(run_dir: Path, result: dict[str, Any]) -> Any | None:
    """The planned instance saved with the run, else the bundled instance the run names, else None."""
    from instances.instance import bundled_instance_path, load_instance

    candidates = [run_dir / "instance"]
    name = result.get("instance")
    if name:
        with contextlib.suppress(FileNotFoundError):
            candidates.append(bundled_instance_path(str(name)))
    for folder in candidates:
        if (folder / "instance.yaml").is_file():
            try:
                return load_instance(folder)
            except Exception:  # noqa: BLE001 - a report still renders without the map
                continue
    return None


def load_run(run_dir: str | Path, with_instance: bool = True) -> RunData:
    """Read a run folder written by :meth:`engine.pipeline.PlanResult.save` (and its instance, unless
    ``with_instance`` is false).

    Raises
    ------
    FileNotFoundError : the folder has no ``kpis.json`` (not a run folder).
    ValueError : a JSON file of the run is corrupt (file, line and column named).
    """
    run_dir = Path(run_dir)
    if not (run_dir / "kpis.json").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (kpis.json missing); write one with `twinplan solve`")
    result = _read_json(run_dir / "result.json", {})
    run = RunData(path=run_dir, kpis=_read_json(run_dir / "kpis.json", {}), result=result,
                  rounds=_read_json(run_dir / "loop.json", result.get("rounds", [])),
                  scenario=_read_json(run_dir / "scenario.json", {}))
    if (run_dir / "plan" / "plan.json").is_file():
        run.plan = Plan.load(run_dir / "plan")
    sim_dir = run_dir / "simulation"
    if sim_dir.is_dir():
        tables = {n: _read_table(sim_dir, n) for n in ("stage_period", "site", "daily")}
        run.simulation = SimpleNamespace(**{n: (t if t is not None else pd.DataFrame()) for n, t in tables.items()})
    if (run_dir / "violations.csv").is_file():
        run.violations = pd.read_csv(run_dir / "violations.csv")
    for name in ("stress", "stress_test", "failure_points"):
        t = _read_table(run_dir, name)
        if t is not None:
            run.stress = t
            break
    if (run_dir / "summary.txt").is_file():
        run.summary_text = (run_dir / "summary.txt").read_text()
    run.instance = _load_instance(run_dir, result) if with_instance else None
    if run.instance is not None:
        run.sites, run.zones, run.demand = run.instance.sites, run.instance.zones, run.instance.demand
    return run


# --------------------------------------------------------------------------------------------------------
# SVG charts
# --------------------------------------------------------------------------------------------------------

def _svg(width: float, height: float, body: str, label: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width:.0f} {height:.0f}" '
            f'width="{width:.0f}" height="{height:.0f}" role="img" aria-label="{esc(label)}">{body}</svg>')


def nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """Round tick values (1, 2, 2.5, 5 x 10^k steps) covering ``[lo, hi]`` with about ``n`` intervals."""
    if not (_finite(lo) and _finite(hi)):
        return []
    if hi <= lo:
        hi = lo + (abs(lo) if lo else 1.0)
    raw = (hi - lo) / max(n, 1)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw - 1e-12 * mag)
    start = math.floor(lo / step + 1e-9) * step
    ticks, t = [], start
    while t <= hi + step * 1e-9:
        ticks.append(round(t, 12))
        t += step
    if ticks[-1] < hi - 1e-12 * step:
        ticks.append(round(t, 12))
    return ticks


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


def site_states(sites: pd.DataFrame, plan_sites: pd.DataFrame | None) -> pd.Series:
    """Per site id: ``port`` | ``opened`` | ``closed`` | ``open`` | ``not opened`` | ``closed before``."""
    state = {}
    ps = plan_sites.set_index("site_id") if plan_sites is not None and len(plan_sites) else None
    for sid, kind, status in zip(sites["id"], sites["kind"], sites["status"]):
        if kind in ("port", "supplier"):
            state[sid] = kind
            continue
        if ps is not None and sid in ps.index:
            row = ps.loc[sid]
            if float(row.get("opened", 0) or 0) > 0.5:
                state[sid] = "opened"
            elif float(row.get("closed", 0) or 0) > 0.5:
                state[sid] = "closed"
            else:
                state[sid] = "open" if float(row.get("open", 0) or 0) > 0.5 else "not opened"
        else:
            state[sid] = "not opened" if status == "candidate" else ("closed" if status == "closed" else "open")
    return pd.Series(state, dtype=object)


SITE_STYLE = {  # fill, stroke, label for the legend
    "open": ("#2f6fb0", "#102a43", "open DC"),
    "opened": ("#1e7b34", "#0b3d18", "opened DC"),
    "closed": ("#b42318", "#5c1009", "closed DC"),
    "not opened": ("#ffffff", "#7b8794", "candidate, not opened"),
    "port": ("#7b5ea7", "#3d2a5c", "port / supplier"),
    "supplier": ("#7b5ea7", "#3d2a5c", "port / supplier"),
}


def svg_network_map(sites: pd.DataFrame, zones: pd.DataFrame, flows: pd.DataFrame | None = None,
                    plan_sites: pd.DataFrame | None = None, transfers: pd.DataFrame | None = None,
                    demand: pd.DataFrame | None = None, width: float = 760, height: float = 540) -> str:
    """Sites, zones (area ~ demand) and the main flows on an equirectangular map (no tiles), as SVG."""
    pts = pd.concat([sites[["lat", "lon"]], zones[["lat", "lon"]]], ignore_index=True).astype(float).dropna()
    if pts.empty:
        return '<p class="note">no coordinates to draw</p>'
    margin = 0.3
    bounds = (pts["lat"].min() - margin, pts["lat"].max() + margin, pts["lon"].min() - margin,
              pts["lon"].max() + margin)
    where: dict[str, tuple[float, float]] = {}
    sx, sy = project(sites["lat"], sites["lon"], bounds, width, height)
    where.update({str(i): (x, y) for i, x, y in zip(sites["id"], sx, sy)})
    zx, zy = project(zones["lat"], zones["lon"], bounds, width, height)
    where.update({str(i): (x, y) for i, x, y in zip(zones["id"], zx, zy)})
    parts = [f'<rect width="{width}" height="{height}" fill="#f3f8fc" stroke="#d9e2ec"/>']
    # graticule every 1, 2 or 5 degrees
    for deg_lo, deg_hi, is_lat in ((bounds[0], bounds[1], True), (bounds[2], bounds[3], False)):
        for t in nice_ticks(deg_lo, deg_hi, 6):
            if not deg_lo <= t <= deg_hi:
                continue
            if is_lat:
                _, (y,) = project([t], [bounds[2]], bounds, width, height)
                parts.append(f'<line x1="0" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#dde7f0"/>'
                             f'<text x="3" y="{y - 2:.1f}" font-size="9" fill="#9aa5b1">{t:g}\u00b0</text>')
            else:
                (x,), _ = project([bounds[0]], [t], bounds, width, height)
                parts.append(f'<line y1="0" y2="{height}" x1="{x:.1f}" x2="{x:.1f}" stroke="#dde7f0"/>'
                             f'<text x="{x + 2:.1f}" y="{height - 3}" font-size="9" fill="#9aa5b1">{t:g}\u00b0</text>')
    names = {str(i): str(n) for i, n in zip(sites["id"], sites.get("name", sites["id"]))}
    names.update({str(i): str(n) for i, n in zip(zones["id"], zones.get("name", zones["id"]))})
    lines = main_flows(flows) if flows is not None else pd.DataFrame()
    if transfers is not None and len(transfers):
        t = transfers.assign(leg="transfer")
        t = t.groupby(["origin_id", "destination_id", "leg"], as_index=False)["quantity"].sum()
        lines = pd.concat([lines[lines.get("leg", pd.Series(dtype=object)) != "transfer"] if len(lines) else lines,
                           t], ignore_index=True)
    if len(lines):
        qmax = float(lines["quantity"].max())
        for o, d, leg, q in zip(lines["origin_id"], lines["destination_id"], lines["leg"], lines["quantity"]):
            if str(o) not in where or str(d) not in where:
                continue
            (x1, y1), (x2, y2) = where[str(o)], where[str(d)]
            w = 0.8 + 5.0 * math.sqrt(float(q) / qmax) if qmax > 0 else 1.0
            dash = ' stroke-dasharray="6 3"' if leg == "transfer" else ""
            colour = LEG_COLOURS.get(str(leg), "#52606d")
            opacity = 0.9 if leg == "transfer" else 0.55
            parts.append(f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}" '
                         f'stroke-opacity="{opacity}" stroke-width="{w:.2f}" stroke-linecap="round"{dash}>'
                         f'<title>{esc(names.get(str(o), o))} \u2192 {esc(names.get(str(d), d))}: '
                         f'{float(q):,.0f} units ({esc(leg)})</title></line>')
    dz = (pd.to_numeric(demand["quantity"]).groupby(demand["zone_id"]).sum()
          if demand is not None and len(demand) else pd.Series(dtype=float))
    dmax = float(dz.max()) if len(dz) else 0.0
    label_zones = len(zones) <= 15
    for zid, x, y in zip(zones["id"], zx, zy):
        q = float(dz.get(zid, 0.0))
        r = 2.0 + 8.0 * math.sqrt(q / dmax) if dmax > 0 else 3.0
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="#9aa5b1" fill-opacity="0.45" '
                     f'stroke="#616e7c" stroke-width="0.6"><title>zone {esc(names[str(zid)])}: '
                     f'{q:,.0f} units demand</title></circle>')
        if label_zones:
            parts.append(f'<text x="{x + r + 2:.1f}" y="{y + 3:.1f}" font-size="10" fill="#616e7c">'
                         f'{esc(names[str(zid)])}</text>')
    states = site_states(sites, plan_sites)
    for sid, x, y in zip(sites["id"], sx, sy):
        st = states.get(sid, "open")
        fill, stroke, legend = SITE_STYLE.get(st, SITE_STYLE["open"])
        tip = f"<title>{esc(names[str(sid)])} ({esc(sid)}): {esc(legend)}</title>"
        if st in ("port", "supplier"):
            parts.append(f'<polygon points="{x:.1f},{y - 7:.1f} {x + 7:.1f},{y:.1f} {x:.1f},{y + 7:.1f} '
                         f'{x - 7:.1f},{y:.1f}" fill="{fill}" stroke="{stroke}" stroke-width="1.2">{tip}</polygon>')
        else:
            parts.append(f'<rect x="{x - 6:.1f}" y="{y - 6:.1f}" width="12" height="12" rx="2" fill="{fill}" '
                         f'stroke="{stroke}" stroke-width="1.5">{tip}</rect>')
            if st == "closed":
                parts.append(f'<path d="M{x - 5:.1f},{y - 5:.1f}L{x + 5:.1f},{y + 5:.1f}M{x + 5:.1f},{y - 5:.1f}'
                             f'L{x - 5:.1f},{y + 5:.1f}" stroke="#fff" stroke-width="2"/>')
        parts.append(f'<text x="{x + 9:.1f}" y="{y - 7:.1f}" font-size="11" font-weight="600" fill="#1f2933" '
                     f'paint-order="stroke" stroke="#ffffff" stroke-width="3">{esc(names[str(sid)])}</text>')
    return _svg(width, height, "".join(parts), "map of sites, zones and main flows")


def _map_legend(present_states: Iterable[str], legs: Iterable[str]) -> str:
    seen: dict[str, tuple[str, str]] = {}
    for st in present_states:
        fill, stroke, label = SITE_STYLE.get(st, SITE_STYLE["open"])
        seen.setdefault(label, (fill, stroke))
    items = [f'<span><i class="swatch" style="background:{f};border:1px solid {s}"></i>{esc(lbl)}</span>'
             for lbl, (f, s) in seen.items()]
    items += [f'<span><i class="swatch" style="background:{LEG_COLOURS[leg]}"></i>{esc(leg)} flow</span>'
              for leg in LEG_COLOURS if leg in set(legs)]
    items.append('<span><i class="swatch" style="background:#9aa5b1;border-radius:6px"></i>'
                 'zone (area ~ demand)</span>')
    return f'<p class="legend">{"".join(items)}</p>'


def svg_bars(labels: Sequence[str], series: dict[str, Sequence[float]], unit: str = "", width: float = 760,
             colours: Sequence[str] = ("#2f6fb0", "#9aa5b1")) -> str:
    """Horizontal grouped bars: one group per label, one bar per series (e.g. scenario and baseline); SVG
    followed by an HTML legend."""
    names = list(series)
    values = np.array([[float(v) if _finite(v) else 0.0 for v in series[n]] for n in names])
    bar_h, gap, left, right = 14, 10, 150, 90
    height = 20 + len(labels) * (bar_h * len(names) + gap)
    lo, hi = min(0.0, float(values.min(initial=0.0))), max(0.0, float(values.max(initial=0.0)))
    span = hi - lo or 1.0
    plot_w = width - left - right

    def sx(v: float) -> float:
        return left + (v - lo) / span * plot_w

    parts = [f'<line x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="10" y2="{height - 5}" stroke="#9aa5b1"/>']
    y = 15.0
    for i, label in enumerate(labels):
        parts.append(f'<text x="{left - 6}" y="{y + bar_h * len(names) / 2 + 4:.1f}" font-size="11" '
                     f'text-anchor="end">{esc(label)}</text>')
        for j, n in enumerate(names):
            v = values[j, i]
            x0, x1 = sorted((sx(0), sx(v)))
            parts.append(f'<rect x="{x0:.1f}" y="{y:.1f}" width="{max(x1 - x0, 0.5):.1f}" height="{bar_h - 2}" '
                         f'fill="{colours[j % len(colours)]}"><title>{esc(n)} {esc(label)}: {v:,.0f} '
                         f'{esc(unit)}</title></rect>'
                         f'<text x="{x1 + 4:.1f}" y="{y + bar_h - 4:.1f}" font-size="10" fill="#52606d">'
                         f'{esc(_compact(v))}</text>')
            y += bar_h
        y += gap
    legend = "".join(f'<span><i class="swatch" style="background:{colours[k % len(colours)]}"></i>{esc(n)}</span>'
                     for k, n in enumerate(names))
    return _svg(width, height, "".join(parts), "bar chart") + f'<p class="legend">{legend}</p>'


def svg_scatter(x: Sequence[float], y: Sequence[float], labels: Sequence[str], front: Sequence[bool],
                x_label: str, y_label: str, width: float = 640, height: float = 400) -> str:
    """Scatter of runs (x against y) with the Pareto-efficient ones highlighted and joined by a step line."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    left, bottom, top, right = 70, 45, 15, 20
    pw, ph = width - left - right, height - top - bottom
    xt, yt = nice_ticks(float(xs.min()), float(xs.max())), nice_ticks(float(ys.min()), float(ys.max()))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(v: float) -> float:
        return left + (v - x0) / ((x1 - x0) or 1.0) * pw

    def py(v: float) -> float:
        return top + ph - (v - y0) / ((y1 - y0) or 1.0) * ph

    parts = []
    for t in xt:
        parts.append(f'<line x1="{px(t):.1f}" x2="{px(t):.1f}" y1="{top}" y2="{top + ph}" stroke="#eef2f6"/>'
                     f'<text x="{px(t):.1f}" y="{top + ph + 14}" font-size="10" text-anchor="middle">'
                     f'{esc(_compact(t))}</text>')
    for t in yt:
        parts.append(f'<line x1="{left}" x2="{left + pw}" y1="{py(t):.1f}" y2="{py(t):.1f}" stroke="#eef2f6"/>'
                     f'<text x="{left - 5}" y="{py(t) + 3:.1f}" font-size="10" text-anchor="end">'
                     f'{esc(_compact(t))}</text>')
    parts.append(f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="none" stroke="#9aa5b1"/>'
                 f'<text x="{left + pw / 2}" y="{height - 8}" font-size="11" text-anchor="middle">{esc(x_label)}</text>'
                 f'<text transform="translate(14 {top + ph / 2}) rotate(-90)" font-size="11" text-anchor="middle">'
                 f'{esc(y_label)}</text>')
    fr = np.asarray(front, bool)
    if fr.any():
        order = np.argsort(xs[fr])
        fx, fy = xs[fr][order], ys[fr][order]
        d = f"M{px(fx[0]):.1f},{py(fy[0]):.1f}" + "".join(
            f"H{px(fx[i]):.1f}V{py(fy[i]):.1f}" for i in range(1, len(fx)))
        parts.append(f'<path d="{d}" fill="none" stroke="#e8710a" stroke-width="1.5"/>')
    for xi, yi, lab, f in zip(xs, ys, labels, fr):
        colour, r = ("#e8710a", 5) if f else ("#2f6fb0", 3.5)
        parts.append(f'<circle cx="{px(xi):.1f}" cy="{py(yi):.1f}" r="{r}" fill="{colour}" fill-opacity="0.8">'
                     f'<title>{esc(lab)}: {esc(x_label)} {xi:,.4g}, {esc(y_label)} {yi:,.4g}'
                     f'{" (Pareto-efficient)" if f else ""}</title></circle>')
    return _svg(width, height, "".join(parts), f"{x_label} against {y_label}")


def svg_tornado(sens: pd.DataFrame, kpi_label: str, width: float = 640) -> str:
    """Tornado chart of :func:`sensitivity`: one bar per parameter from the KPI at its lowest value to the
    KPI at its highest, around the reference (mean over runs); widest swing on top."""
    if sens.empty:
        return '<p class="note">no parameter varies</p>'
    ref = float(sens["reference"].iloc[0])
    lo = float(min(sens["kpi_low"].min(), sens["kpi_high"].min(), ref))
    hi = float(max(sens["kpi_low"].max(), sens["kpi_high"].max(), ref))
    if hi - lo < 1e-12:
        lo, hi = lo - 1.0, hi + 1.0
    left, right, bar_h = 170, 90, 22
    height = 30 + len(sens) * (bar_h + 8)
    pw = width - left - right

    def sx(v: float) -> float:
        return left + (v - lo) / (hi - lo) * pw

    parts = [f'<line x1="{sx(ref):.1f}" x2="{sx(ref):.1f}" y1="5" y2="{height - 18}" stroke="#52606d" '
             f'stroke-dasharray="3 2"/><text x="{sx(ref):.1f}" y="{height - 5}" font-size="10" '
             f'text-anchor="middle">{esc(kpi_label)} mean {esc(_compact(ref))}</text>']
    y = 8.0
    for rec in sens.itertuples(index=False):
        for v, colour, val in ((rec.kpi_low, "#2f6fb0", rec.low_value), (rec.kpi_high, "#e8710a", rec.high_value)):
            a, b = sorted((sx(ref), sx(float(v))))
            parts.append(f'<rect x="{a:.1f}" y="{y:.1f}" width="{max(b - a, 0.5):.1f}" height="{bar_h}" '
                         f'fill="{colour}" fill-opacity="0.85"><title>{esc(rec.parameter)} = {esc(val)}: '
                         f'{esc(kpi_label)} {float(v):,.4g}</title></rect>')
            tx, anchor = (b + 3, "start") if float(v) >= ref else (a - 3, "end")
            parts.append(f'<text x="{tx:.1f}" y="{y + bar_h / 2 + 4:.1f}" font-size="10" text-anchor="{anchor}">'
                         f'{esc(val)}</text>')
        parts.append(f'<text x="6" y="{y + bar_h / 2 + 4:.1f}" font-size="11">{esc(rec.parameter)}</text>')
        y += bar_h + 8
    return _svg(width, height, "".join(parts), f"sensitivity of {kpi_label}")


# --------------------------------------------------------------------------------------------------------
# the run report
# --------------------------------------------------------------------------------------------------------

def _cards(kpis: dict[str, Any], base: dict[str, Any] | None, currency: str) -> str:
    out = []
    for key, label, unit in HEADLINE_KPIS:
        if key not in kpis:
            continue
        v = kpis.get(key)
        delta_html = ""
        if base is not None and _finite(v) and _finite(base.get(key)):
            d = float(v) - float(base[key])
            rel = f" ({d / abs(float(base[key])):+.1%})" if abs(float(base[key])) > 1e-12 and unit != "share" else ""
            shown = fmt_delta(d, unit, currency)
            delta_html = (f'<div class="delta {_tone(key, d, shown)}" data-delta="{d!r}">{esc(shown)}{esc(rel)} '
                          "vs baseline</div>")
        raw = repr(float(v)) if _finite(v) else ""
        band = (f'<div class="note">{esc(lsi_band(float(v)))}</div>' if key == "max_labour_stress" and _finite(v)
                else "")
        out.append(f'<div class="card" data-kpi="{esc(key)}" data-value="{esc(raw)}"><div class="label">'
                   f'{esc(label)}</div><div class="value">{esc(fmt_value(v, unit, currency))}</div>{band}'
                   f'{delta_html}</div>')
    return f'<div class="cards" id="headline">{"".join(out)}</div>'


def _delta_table(kpis: dict[str, Any], base: dict[str, Any], currency: str) -> str:
    units = {k: u for k, _, u in HEADLINE_KPIS}
    units.update({k: u for k, (u, _) in DELTA_KPIS.items()})
    units.update({k: "money" for k, _ in COST_KPIS})
    labels = {k: lbl for k, lbl, _ in HEADLINE_KPIS}
    labels.update({k: lbl for k, (_, lbl) in DELTA_KPIS.items()})
    labels.update({k: f"cost: {lbl}" for k, lbl in COST_KPIS})
    rows = []
    for key, unit in units.items():
        v, b = kpis.get(key), base.get(key)
        if not (_finite(v) and _finite(b)):
            continue
        d = float(v) - float(b)
        rel = f"{d / abs(float(b)):+.1%}" if abs(float(b)) > 1e-12 else ""
        shown = fmt_delta(d, unit, currency)
        label = labels.get(key, key)
        rows.append(f'<tr data-kpi="{esc(key)}"><td>{esc(label[:1].lower() + label[1:])}</td><td class="num">'
                    f'{esc(fmt_value(v, unit, currency))}</td><td class="num">{esc(fmt_value(b, unit, currency))}</td>'
                    f'<td class="num {_tone(key, d, shown)}">{esc(shown)}</td><td class="num">{esc(rel)}</td></tr>')
    return ('<div class="scroll"><table id="deltas"><tr><th>KPI</th><th>scenario</th><th>baseline</th><th>change</th>'
            f'<th>relative</th></tr>{"".join(rows)}</table></div>')


def _site_names(run: RunData) -> dict[str, str]:
    if run.sites is None or run.sites.empty:
        return {}
    return {str(i): str(n) for i, n in zip(run.sites["id"], run.sites["name"])}


def _decisions(run: RunData, currency: str) -> str:
    plan = run.plan
    if plan is None:
        return '<p class="note">no plan in this run (no solution)</p>'
    names = _site_names(run)
    parts = []
    s = plan.tables["sites"]
    if len(s):
        s = s.copy()
        changed = s[(pd.to_numeric(s["opened"]).fillna(0) > 0.5) | (pd.to_numeric(s["closed"]).fillna(0) > 0.5)]
        parts.append("<h3>Sites opened and closed</h3>")
        if len(changed):
            t = pd.DataFrame({"site": [names.get(str(i), str(i)) for i in changed["site_id"]],
                              "id": changed["site_id"].astype(str),
                              "decision": np.where(pd.to_numeric(changed["opened"]).fillna(0) > 0.5, "open", "close"),
                              "status before": changed["status"].astype(str)})
            parts.append(html_table(t))
        else:
            parts.append('<p class="note">no site opened or closed</p>')
        open_ids = s.loc[pd.to_numeric(s["open"]).fillna(0) > 0.5, "site_id"].astype(str)
        parts.append(f'<p class="note">open in the plan: {esc(", ".join(names.get(i, i) for i in open_ids))}</p>')
    cap = plan.tables["capacity"]
    parts.append("<h3>Capacity added</h3>")
    if len(cap):
        cap = cap[pd.to_numeric(cap["added_count"]).fillna(0) > 1e-9]
    money = {"capex": _formatter("money", currency)}
    if len(cap):
        t = cap.assign(site=[names.get(str(i), str(i)) for i in cap["site_id"]])
        parts.append(html_table(t[["site", "stage", "base_count", "added_count", "total_count", "modules", "capex"]],
                                money))
    else:
        parts.append('<p class="note">no capacity added</p>')
    tr = plan.tables["transfers"]
    parts.append("<h3>Stock transfers</h3>")
    if len(tr):
        t = tr.assign(origin=[names.get(str(i), str(i)) for i in tr["origin_id"]],
                      destination=[names.get(str(i), str(i)) for i in tr["destination_id"]])
        t = t.sort_values("quantity", ascending=False)
        parts.append(html_table(t[["origin", "destination", "product_id", "quantity", "trucks", "transit_days"]]))
    else:
        parts.append('<p class="note">no transfers</p>')
    un = plan.tables["unmet"]
    parts.append("<h3>Unmet demand</h3>")
    if len(un) and float(pd.to_numeric(un["quantity"]).sum()) > 1e-9:
        zn = {str(i): str(n) for i, n in zip(run.zones["id"], run.zones["name"])} if len(run.zones) else {}
        g = un.groupby("zone_id", as_index=False)["quantity"].sum().sort_values("quantity", ascending=False)
        g.insert(0, "zone", [zn.get(str(z), str(z)) for z in g["zone_id"]])
        parts.append(html_table(g))
    else:
        parts.append('<p class="note">all demand served</p>')
    return "".join(parts)


def _costs(run: RunData, base: RunData | None, currency: str) -> str:
    labels = [lbl for k, lbl in COST_KPIS if _finite(run.kpis.get(k))]
    keys = [k for k, _ in COST_KPIS if _finite(run.kpis.get(k))]
    series = {run.name: [float(run.kpis[k]) for k in keys]}
    if base is not None:
        series[f"baseline ({base.name})"] = [float(base.kpis.get(k) or 0.0) for k in keys]
    chart = svg_bars(labels, series, unit=currency) if keys else ""
    detail = ""
    if run.plan is not None and len(run.plan.tables["costs"]):
        c = run.plan.tables["costs"].copy()
        c["amount"] = pd.to_numeric(c["amount"])
        c = c.groupby("component", as_index=False, sort=False)["amount"].sum()
        if base is not None and base.plan is not None and len(base.plan.tables["costs"]):
            bc = base.plan.tables["costs"].assign(amount=lambda d: pd.to_numeric(d["amount"]))
            bc = bc.groupby("component")["amount"].sum()
            c["baseline"] = c["component"].map(bc).fillna(0.0)
            c["change"] = c["amount"] - c["baseline"]
        money = {col: _formatter("money", currency) for col in ("amount", "baseline")}
        money["change"] = lambda v: fmt_delta(v, "money", currency)
        detail = "<h3>By component</h3>" + html_table(c, money)
    return chart + detail


def _utilisation(run: RunData) -> str:
    if run.simulation is None or run.simulation.stage_period.empty:
        return '<p class="note">not simulated</p>'
    u = utilisation(run.simulation)
    names = _site_names(run)
    rows = []
    for rec in u.sort_values(["site_id", "stage"]).itertuples(index=False):
        m, p = float(rec.mean), float(rec.peak)
        colour = "#b42318" if p > 1.0 else ("#e8710a" if p > 0.85 else "#2f6fb0")
        rows.append(f'<tr><td>{esc(names.get(str(rec.site_id), rec.site_id))}</td><td>{esc(rec.stage)}</td>'
                    f'<td><span class="bar" style="width:{min(m, 1.5) * 80:.0f}px;background:{colour}">'
                    f'</span>{m * 100:.1f} %</td><td class="num">{p * 100:.1f} %</td></tr>')
    return ('<div class="scroll"><table id="utilisation"><tr><th>site</th><th>stage</th><th>mean utilisation</th>'
            f'<th>peak (a period)</th></tr>{"".join(rows)}</table></div>')


def lsi_heatmap(lsi: pd.DataFrame, names: dict[str, str] | None = None) -> str:
    """The Labour Stress Index as an HTML heat map: one row per site, one column per day, coloured by band."""
    if lsi is None or lsi.empty:
        return '<p class="note">no daily labour data (not simulated)</p>'
    names = names or {}
    days = sorted(lsi["day"].unique(), key=lambda d: (str(type(d)), d))
    table = lsi.pivot_table(index="site_id", columns="day", values="lsi", aggfunc="max")
    head = "".join(f"<th>{esc(d + 1 if isinstance(d, int | np.integer) else d)}</th>" for d in days)
    rows = []
    for sid in table.index:
        cells = []
        for d in days:
            v = table.at[sid, d] if d in table.columns else float("nan")
            if not _finite(v) and not (isinstance(v, float) and math.isinf(v)):
                cells.append("<td></td>")
                continue
            band = lsi_band(float(v))
            text = "\u221e" if math.isinf(float(v)) else f"{float(v):.2f}"
            cells.append(f'<td style="background:{LSI_COLOURS[band]}" title="{esc(band)}">{text}</td>')
        rows.append(f'<tr><th>{esc(names.get(str(sid), sid))}</th>{"".join(cells)}</tr>')
    bands, lo = [], 0.0
    for upper, band in LSI_THRESHOLDS:
        rng = f"{lo:.2f}\u2013{upper:.2f}" if math.isfinite(upper) else f"\u2265 {lo:.2f}"
        bands.append(f'<span><i class="swatch" style="background:{LSI_COLOURS[band]}"></i>{band} {rng}</span>')
        lo = upper
    return (f'<div class="scroll"><table class="heat" id="lsi"><tr><th>site \\ day</th>{head}</tr>{"".join(rows)}'
            f'</table></div><p class="legend">{"".join(bands)}</p>')


def _failure_points(run: RunData) -> str:
    parts = []
    sim = run.result.get("simulation") or {}
    if sim:
        ok = bool(sim.get("feasible"))
        msg = sim.get("message") or ("the plan is executable" if ok else "the simulator found the plan infeasible")
        parts.append(f'<p><span class="status {"ok" if ok else "ko"}" style="color:#fff">'
                     f'{"executable" if ok else "not executable"}</span>{esc(msg)}</p>')
    failed = [r for r in run.rounds if r.get("failed_site") is not None]
    if failed:
        t = pd.DataFrame([{k: r.get(k) for k in ("round", "failed_site", "failed_stage", "failed_period",
                                                  "shortfall_units_per_day", "message")} for r in failed])
        parts.append("<h3>Failures found by the simulator during the rounds</h3>" + html_table(t))
    parts.append("<h3>Stress test</h3>")
    if run.stress is not None and len(run.stress):
        parts.append(html_table(run.stress))
    else:
        parts.append('<p class="note">no stress test recorded with this run (<code>twinplan stress</code> '
                     'finds the demand multiplier at which each site and stage first fails)</p>')
    if len(run.violations):
        parts.append("<h3>Plan check violations</h3>" + html_table(run.violations))
    return "".join(parts)


def _rounds(run: RunData) -> str:
    if not run.rounds:
        return '<p class="note">no rounds recorded</p>'
    cols = ["round", "status", "objective", "objective_change", "violations", "simulation_feasible", "failed_site",
            "failed_stage", "shortfall_units_per_day", "change", "outcome"]
    t = pd.DataFrame([{c: r.get(c) for c in cols} for r in run.rounds])
    t = t[[c for c in cols if t[c].notna().any()]]
    return html_table(t)


def _kv_table(items: Iterable[tuple[str, Any]], table_id: str = "") -> str:
    rows = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in items)
    ident = f' id="{esc(table_id)}"' if table_id else ""
    return f"<table{ident}>{rows}</table>"


def _assumptions(run: RunData) -> str:
    parts = []
    sc = run.scenario or {}
    parts.append("<h3>Scenario</h3>")
    parts.append(_kv_table([(k, json.dumps(v, default=str) if isinstance(v, dict | list) else v)
                            for k, v in sc.items()]) if sc else '<p class="note">base instance</p>')
    if run.instance is not None:
        parts.append("<h3>Planning parameters</h3>" + _kv_table(sorted(run.instance.defaults.items())))
        s = run.instance.summary()
        items = [("instance", s["name"]), ("currency", s["currency"]),
                 ("sites", ", ".join(f"{n} {k}" for k, n in s["sites_by_kind_status"].items())),
                 ("zones", s["zones"]), ("products", s["products"]), ("periods", s["periods"]),
                 ("lanes", s["lanes"]), ("total demand (units)", f"{s['total_demand']:,.0f}")]
        items += [(f"capacity {st} (units/day)", f"{v:,.0f}") for st, v in s["capacity_units_per_day"].items()]
        parts.append("<h3>Data summary</h3>" + _kv_table(items, "data-summary"))
    if run.plan is not None:
        meta = {k: v for k, v in run.plan.meta.items() if not isinstance(v, dict | list)}
        solve = [("decision", run.plan.decision), ("status", run.plan.status), ("objective", run.plan.objective),
                 ("bound", run.plan.bound), ("gap", run.plan.gap), *sorted(meta.items())]
        parts.append("<h3>Solve</h3>" + _kv_table(solve))
    if run.result.get("timings"):
        parts.append("<h3>Timings (s)</h3>" + _kv_table(run.result["timings"].items()))
    parts.append("<h3>Input hashes (SHA-256)</h3>" + _hashes(run))
    return "".join(parts)


def _hashes(run: RunData) -> str:
    from engine.hashing import hash_json, instance_hashes, plan_hash

    items: list[tuple[str, str]] = []
    if run.instance is not None:
        tables = instance_hashes(run.instance)
        items.append(("instance (planned, all tables)", hash_json(tables)))
        items += [(f"  {name}", h) for name, h in sorted(tables.items())]
    if run.scenario:
        items.append(("scenario", hash_json(run.scenario)))
    if run.plan is not None:
        items.append(("plan tables", plan_hash(run.plan.tables)))
    recorded = run.result.get("input_hashes") or {}
    if isinstance(recorded, dict) and recorded.get("input_hash"):
        items.append(("run input hash (recorded)", str(recorded["input_hash"])))
    if not items:
        return '<p class="note">no inputs recorded</p>'
    rows = "".join(f"<tr><th>{esc(k)}</th><td><code>{esc(h)}</code></td></tr>" for k, h in items)
    return f'<table id="hashes">{rows}</table>'


def _page(title: str, subtitle: str, sections: list[tuple[str, str, str]]) -> str:
    nav = " \u00b7 ".join(f'<a href="#{sid}" style="color:#bcccdc">{esc(t)}</a>' for sid, t, _ in sections)
    body = "".join(f'<section id="{sid}"><h2>{esc(t)}</h2>{content}</section>' for sid, t, content in sections)
    return ("<!DOCTYPE html>\n"
            f'<html lang="en"><head><meta charset="utf-8"><meta http-equiv="Content-Security-Policy" '
            f'content="{CSP}"><meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<link rel="icon" href="data:,"><title>{esc(title)}</title><style>{CSS}</style></head>'
            f'<body><header><h1>{esc(title)}</h1><div class="sub">{subtitle}</div>'
            f'<div class="sub" style="margin-top:6px">{nav}</div></header><main>{body}'
            '<p class="note" style="margin-top:40px">Generated by twinplan. Self-contained: opens offline, '
            "loads nothing, runs no script.</p></main></body></html>\n")


def render_report(run: RunData, baseline: RunData | None = None) -> str:
    """The executive report of a run (against a baseline run, if given) as one HTML page."""
    cur = run.currency
    base_kpis = baseline.kpis if baseline is not None else None
    status_ok = (Termination.parse(run.result.get("status")) in (Termination.OPTIMAL, Termination.TIME_LIMIT)
                 and run.plan is not None)
    sim_ok = bool((run.result.get("simulation") or {}).get("feasible"))
    subtitle = (f'<span class="status {"ok" if status_ok else "ko"}">{esc(run.result.get("status", "unknown"))}'
                f'</span><span class="status {"ok" if sim_ok else "ko"}">'
                f'{"executable" if sim_ok else "not shown executable"}</span> '
                f'decision {esc(run.result.get("decision") or run.scenario.get("decision", ""))} on instance '
                f'{esc(run.instance_name)}'
                + (f" \u00b7 compared with baseline <b>{esc(baseline.name)}</b>" if baseline is not None else ""))
    head = _cards(run.kpis, base_kpis, cur)
    if baseline is not None:
        head += "<h3>Change against the baseline</h3>" + _delta_table(run.kpis, baseline.kpis, cur)
    if run.summary_text:
        head += f"<pre>{esc(run.summary_text.strip())}</pre>"
    if len(run.sites) and len(run.zones):
        plan = run.plan
        flows = plan.tables["flows"] if plan is not None else None
        transfers = plan.tables["transfers"] if plan is not None else None
        plan_sites = plan.tables["sites"] if plan is not None else None
        states = site_states(run.sites, plan_sites)
        legs = main_flows(flows)["leg"].astype(str).tolist() if flows is not None else []
        if transfers is not None and len(transfers):
            legs.append("transfer")
        network = (svg_network_map(run.sites, run.zones, flows, plan_sites, transfers, run.demand)
                   + _map_legend(states.tolist(), legs)
                   + '<p class="note">Equirectangular projection; lines carry 95 % of the volume (width ~ '
                     'square root of units), hover for names and quantities.</p>')
    else:
        network = '<p class="note">the run has no instance recorded: no map</p>'
    lsi = labour_stress(run.simulation) if run.simulation is not None else None
    sections = [
        ("headline", "Headline", head),
        ("map", "Network", network),
        ("decisions", "Decisions", _decisions(run, cur)),
        ("costs", "Cost breakdown", _costs(run, baseline, cur)),
        ("utilisation", "Utilisation", _utilisation(run)),
        ("labour-stress", "Labour Stress Index (site \u00d7 day)", lsi_heatmap(lsi, _site_names(run))),
        ("failures", "Failure points", _failure_points(run)),
        ("rounds", "Optimize \u2192 simulate rounds", _rounds(run)),
        ("assumptions", "Assumptions, data and inputs", _assumptions(run)),
    ]
    return _page(f"{run.name} \u2014 twinplan report", subtitle, sections)


def write_report(run_dir: str | Path, baseline_dir: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write the executive report of a run folder; returns the path of the HTML file.

    Parameters
    ----------
    run_dir : folder written by ``twinplan solve`` / :meth:`engine.pipeline.PlanResult.save`.
    baseline_dir : a run folder to compare against; default ``run_dir/baseline`` when it holds a run.
    out : the HTML file to write (default ``run_dir/report.html``).
    """
    run_dir = Path(run_dir)
    run = load_run(run_dir)
    if baseline_dir is None and (run_dir / "baseline" / "kpis.json").is_file():
        baseline_dir = run_dir / "baseline"
    baseline = load_run(baseline_dir, with_instance=False) if baseline_dir is not None else None
    path = Path(out) if out is not None else run_dir / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_report(run, baseline), encoding="utf-8")
    return path


# --------------------------------------------------------------------------------------------------------
# the sweep report
# --------------------------------------------------------------------------------------------------------

def pareto_front(cost: Sequence[float], service: Sequence[float]) -> np.ndarray:
    """Boolean mask of the Pareto-efficient runs: no other run costs no more *and* serves no worse, with one
    of the two strictly better (cost minimised, service maximised). Ties are all efficient."""
    c, s = np.asarray(cost, float), np.asarray(service, float)
    n = len(c)
    front = np.ones(n, bool)
    for i in range(n):
        dominated = (c <= c[i]) & (s >= s[i]) & ((c < c[i]) | (s > s[i]))
        front[i] = not dominated.any()
    return front


def varied_parameters(runs: pd.DataFrame) -> list[str]:
    """The ``param_*`` columns that take more than one value among the runs."""
    return [c for c in runs.columns if c.startswith("param_") and runs[c].astype(str).nunique(dropna=False) > 1]


def sensitivity(runs: pd.DataFrame, kpi: str, params: Sequence[str] | None = None) -> pd.DataFrame:
    """One-parameter-at-a-time sensitivity of ``kpi`` (the data of a tornado chart).

    For each parameter p the KPI is averaged over the runs at each value of p (its marginal mean); for a
    numeric p, ``kpi_low`` / ``kpi_high`` are the means at its lowest / highest value; for a categorical p,
    the smallest / largest mean. ``swing = |kpi_high - kpi_low|``; rows sorted by swing (largest first);
    ``reference`` is the mean of the KPI over all runs. In a full grid this is the main effect of p; in a
    one-at-a-time design (others held at their base value) it is exactly the KPI at p's extremes.
    """
    ok = runs[pd.to_numeric(runs[kpi], errors="coerce").notna()] if kpi in runs.columns else runs.iloc[0:0]
    params = list(params) if params is not None else varied_parameters(ok)
    rows = []
    y = pd.to_numeric(ok[kpi], errors="coerce")
    for p in params:
        x = ok[p]
        numeric = pd.to_numeric(x, errors="coerce")
        if numeric.notna().all():
            means = y.groupby(numeric).mean().sort_index()
            lo_v, hi_v = means.index[0], means.index[-1]
        else:
            means = y.groupby(x.astype(str)).mean().sort_values()
            lo_v, hi_v = means.index[0], means.index[-1]
        if len(means) < 2:
            continue
        rows.append({"parameter": p.removeprefix("param_"), "low_value": lo_v, "high_value": hi_v,
                     "kpi_low": float(means[lo_v]), "kpi_high": float(means[hi_v]),
                     "swing": abs(float(means[hi_v]) - float(means[lo_v])), "reference": float(y.mean())})
    out = pd.DataFrame(rows, columns=["parameter", "low_value", "high_value", "kpi_low", "kpi_high", "swing",
                                      "reference"])
    return out.sort_values("swing", ascending=False, kind="stable").reset_index(drop=True)


def _run_labels(runs: pd.DataFrame) -> list[str]:
    for col in ("name", "run_id"):
        if col in runs.columns:
            return [str(v) for v in runs[col]]
    return [f"run {i}" for i in range(len(runs))]


def render_sweep_report(runs: pd.DataFrame, kpis: Sequence[str] | None = None, cost: str = "total_cost",
                        service: str = "service_level", title: str = "Sweep report", currency: str = "") -> str:
    """Many runs side by side as one HTML page (see :func:`write_sweep_report`)."""
    runs = runs.reset_index(drop=True)
    kpis = [k for k in (kpis or SWEEP_KPIS) if k in runs.columns]
    failed = runs["status"].astype(str).eq("failed") if "status" in runs.columns else pd.Series(False, runs.index)
    good = runs[~failed]
    params = varied_parameters(good)
    labels = _run_labels(runs)
    units = {k: u for k, _, u in HEADLINE_KPIS}
    sections = []
    overview = [("runs", len(runs)), ("finished", int((~failed).sum())), ("failed", int(failed.sum())),
                ("varied parameters", ", ".join(p.removeprefix("param_") for p in params) or "none")]
    sections.append(("overview", "Overview", _kv_table(overview, "sweep-overview")))
    # cost against service with the Pareto front
    if cost in good.columns and service in good.columns:
        c = pd.to_numeric(good[cost], errors="coerce")
        s = pd.to_numeric(good[service], errors="coerce")
        both = c.notna() & s.notna()
        if both.any():
            front = pareto_front(c[both], s[both])
            lab = [labels[i] for i in good.index[both]]
            chart = svg_scatter(c[both], s[both], lab, front, cost, service)
            eff = good[both][front].assign(**{cost: c[both][front], service: s[both][front]})
            eff = eff.sort_values(cost)
            show = [col for col in ("name", "run_id") if col in eff.columns][:1] + params + [cost, service]
            fmts = {k: _formatter(units.get(k, ""), currency) for k in (cost, service)}
            content = (chart + f'<p class="note">{int(front.sum())} of {int(both.sum())} runs are Pareto-efficient '
                       f"(orange): no other run is cheaper and serves at least as well.</p>"
                       + html_table(eff[show], fmts))
        else:
            content = '<p class="note">no run has both KPIs</p>'
        sections.append(("pareto", f"{cost} against {service}", content))
    # tornado charts
    if params:
        charts = []
        for k in kpis:
            sens = sensitivity(good, k, params)
            if sens.empty:
                continue
            charts.append(f"<h3>{esc(k)}</h3>" + svg_tornado(sens, k))
        note = ('<p class="note">Each bar runs from the KPI at the lowest value of the parameter (blue) to the KPI at '
                "its highest (orange), averaged over the other runs at that value; widest swing on top.</p>")
        sections.append(("sensitivity", "Sensitivity (tornado)", note + "".join(charts)))
    # all runs
    base_cols = [col for col in ("name", "run_id", "status", "solve_status") if col in runs.columns]
    table = runs[base_cols + [p for p in runs.columns if p.startswith("param_")] + kpis]
    fmts = {k: _formatter(units.get(k, ""), currency) for k in kpis}
    sections.append(("runs", "All runs", html_table(table, fmts, max_rows=500)))
    if failed.any() and "error" in runs.columns:
        sections.append(("failed", "Failed runs", html_table(runs.loc[failed, base_cols + ["error"]])))
    return _page(title, f"{len(runs)} runs", sections)


def write_sweep_report(runs: pd.DataFrame, out: str | Path, kpis: Sequence[str] | None = None,
                       cost: str = "total_cost", service: str = "service_level", title: str = "Sweep report",
                       currency: str = "") -> Path:
    """Write the sweep report of a runs table (e.g. :func:`engine.store.runs`) to ``out``; returns its path.

    Parameters
    ----------
    runs : one row per run: ``param_<name>`` columns for the varied parameters, one column per KPI, and
        optionally ``name`` / ``run_id``, ``status`` (``failed`` rows are listed, not plotted) and ``error``.
    kpis : the KPIs to show (default :data:`SWEEP_KPIS` present in ``runs``).
    cost, service : the two KPIs of the Pareto chart (cost minimised, service maximised).
    """
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_sweep_report(runs, kpis, cost, service, title, currency), encoding="utf-8")
    return path


__all__ = ["HEADLINE_KPIS", "RunData", "esc", "fmt_delta", "fmt_value", "html_table", "load_run", "lsi_heatmap",
           "main_flows", "nice_ticks", "pareto_front", "project", "render_report", "render_sweep_report",
           "sensitivity", "site_states", "svg_bars", "svg_network_map", "svg_scatter", "svg_tornado",
           "varied_parameters", "write_report", "write_sweep_report"]
