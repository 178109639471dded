"""The supervisor's daily Labour Stress Index: one day's forecast volume by site -> stress, peak hour, staffing.

``twinplan lsi INSTANCE --forecast FILE [--date D]`` reads a CSV of one day's forecast volume per DC::

    site_id,date,inbound_units,outbound_units      (date optional; inbound/outbound: at least one column)
    DC_A,2026-11-27,5200,6100

and simulates that day (deterministic expected values, the DC's staffed hours from ``labor.csv`` as the
simulator uses them) to give, per site and stage:

- the Labour Stress Index of :mod:`engine.kpi` (labour hours the day's work needs / labour hours staffed) and
  its band (comfortable < 0.85 <= stretched < 1.00 <= overload < 1.15 <= critical). Work: the forecast
  units of the stage's chain (inbound: inbound dock, putaway; orders: pick, pack, outbound dock) / the
  stage's productivity; staffed: the site's staffed hours of that day as the simulator staffs it, shared
  among stages by workload as the simulator shares them (so a stage's index equals its site's; the stages
  differ in hours and peak hour);
- the peak hour: when the stage's queue of waiting units is longest over the day (expected arrivals per hour
  against the hour's capacity, equipment and labour, from :func:`engine.simulator.hourly_inputs`); the hour of
  most arrivals when nothing queues;
- the staffing change that brings the site back to comfortable: ``hours = needed / 0.85 - staffed`` (0 when
  already comfortable) and ``heads = ceil(hours / (hours_per_person_week / 5))`` (one person works a fifth of
  the weekly hours a day).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from engine.kpi import LSI_THRESHOLDS, lsi_band
from engine.simulator import STAGES_SIM, Profile, hourly_inputs, prepare, run_setup
from instances.instance import Instance
from instances.plain import to_plain
from instances.validation import InstanceValidationError, ValidationReport, read_csv_located

COMFORTABLE = LSI_THRESHOLDS[0][0]
"""Upper bound of the comfortable band (0.85)."""
INBOUND = ("inbound_dock", "putaway")
VOLUME_COLUMNS = ("inbound_units", "outbound_units")


@dataclass
class LsiResult:
    """Per site and stage: LSI, band, peak hour, staffing change; per site: the same summed up."""

    date: str
    stages: pd.DataFrame
    sites: pd.DataFrame
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict (non-finite numbers as null)."""
        return to_plain({"date": self.date, "sites": self.sites.to_dict(orient="records"),
                         "stages": self.stages.to_dict(orient="records"), "notes": self.notes})


def read_forecast(path: str | Path, instance: Instance, date: str | None = None) -> tuple[pd.DataFrame, str]:
    """The forecast rows of one day (site_id, inbound_units, outbound_units) and that day (ISO).

    Raises :class:`instances.validation.InstanceValidationError` with ``FILE:ROW:COLUMN`` findings.
    """
    fname = str(path)
    report = ValidationReport()
    if not Path(path).is_file():
        report.error(fname, 0, "", "no such file")
        raise InstanceValidationError(report, fname)
    df = read_csv_located(path, fname, report)
    if df is None:
        raise InstanceValidationError(report, fname)
    df.columns = [str(c).strip() for c in df.columns]
    if "site_id" not in df.columns:
        report.error(fname, 1, "site_id", "missing required column (header: site_id, [date], inbound_units, "
                                          "outbound_units)")
    vols = [c for c in VOLUME_COLUMNS if c in df.columns]
    if not vols:
        report.error(fname, 1, "inbound_units", "need inbound_units and/or outbound_units columns")
    if not report.ok:
        raise InstanceValidationError(report, fname)
    if df.empty:
        report.error(fname, 0, "", "no data rows")
        raise InstanceValidationError(report, fname)
    dcs = set(instance.dcs["id"].astype(str))
    all_sites = set(instance.sites["id"].astype(str))
    out = pd.DataFrame({"site_id": df["site_id"].astype(str).str.strip()})
    for i, s in enumerate(out["site_id"]):
        if s not in dcs:
            why = "is not a DC" if s in all_sites else "is not a site"
            report.error(fname, i + 2, "site_id", f"{s!r} {why} of instance {instance.name!r} (DCs: {sorted(dcs)})")
    for c in VOLUME_COLUMNS:
        if c not in df.columns:
            out[c] = 0.0
            continue
        v = pd.to_numeric(df[c].replace("", "0"), errors="coerce")
        for i in np.flatnonzero(~np.isfinite(v.to_numpy(float)) | (v.to_numpy(float) < 0)):
            report.error(fname, int(i) + 2, c, f"must be a non-negative number, got {df[c].iloc[i]!r}")
        out[c] = v.fillna(0.0).astype(float)
    day: str | None = None
    if "date" in df.columns:
        d = pd.to_datetime(df["date"].str.strip(), errors="coerce", format="%Y-%m-%d")
        for i in np.flatnonzero(d.isna().to_numpy()):
            report.error(fname, int(i) + 2, "date", f"not a date (YYYY-MM-DD): {df['date'].iloc[i]!r}")
        if report.ok:
            out["date"] = d.dt.date.astype(str)
            if date is not None:
                want = _iso(date, report, fname)
                out = out[out["date"] == want]
                if report.ok and out.empty:
                    report.error(fname, 0, "date", f"no rows for {want} (dates in the file: "
                                                   f"{sorted(set(d.dt.date.astype(str)))})")
                day = want
            elif out["date"].nunique() > 1:
                report.error(fname, 0, "date", f"{out['date'].nunique()} dates in the file; choose one with --date")
            else:
                day = str(out["date"].iloc[0])
    else:
        day = _iso(date, report, fname) if date is not None else \
            pd.Timestamp(instance.periods["start"].iloc[0]).date().isoformat()
    if report.ok:
        dup = out["site_id"].duplicated(keep=False)
        for i in np.flatnonzero(dup.to_numpy()):
            report.error(fname, int(out.index[i]) + 2, "site_id", f"{out['site_id'].iloc[i]!r} appears more than once "
                                                                  f"for {day}")
    if not report.ok:
        raise InstanceValidationError(report, fname)
    return out[["site_id", *VOLUME_COLUMNS]].reset_index(drop=True), str(day)


def _iso(date: str, report: ValidationReport, fname: str) -> str:
    d = pd.to_datetime(str(date), errors="coerce", format="%Y-%m-%d")
    if pd.isna(d):
        report.error(fname, 0, "--date", f"not a date (YYYY-MM-DD): {date!r}")
        return str(date)
    return d.date().isoformat()


def one_day_instance(instance: Instance, day: str) -> Instance:
    """The instance cut to one daily period starting on ``day`` (no demand: the forecast is the volume)."""
    meta = dict(instance.meta)
    meta["horizon"] = {"start": day, "periods": 1, "period_days": 1}
    meta.pop("periods", None)
    return instance.replace(meta=meta, demand=instance.demand.iloc[0:0])


def _peak_hours(setup: Any, profile: Profile) -> np.ndarray:
    """(S, K) hour of the day at which each stage's expected queue is longest (most arrivals when none)."""
    orders, inbound, cap = hourly_inputs(setup, profile)  # (T, S), (T, S), (T, S, K)
    T, S, K = cap.shape
    arrivals = np.where(np.isin(np.arange(K), [STAGES_SIM.index(s) for s in INBOUND])[None, None, :],
                        inbound[:, :, None], orders[:, :, None])
    q = np.zeros((S, K))
    queue = np.zeros((T, S, K))
    for t in range(T):
        q = np.maximum(q + arrivals[t] - np.nan_to_num(cap[t], posinf=1e18), 0.0)
        queue[t] = q
    peak = queue.argmax(axis=0)
    busiest = arrivals.argmax(axis=0)
    steps_per_day = T  # one day of one-hour steps
    return np.where(queue.max(axis=0) > 1e-9, peak, busiest) % steps_per_day


def labour_stress_index(instance: Instance, forecast: pd.DataFrame, day: str,
                        profile: Profile | None = None) -> LsiResult:
    """LSI, band, peak hour and staffing change per site and stage for one day's forecast volume."""
    profile = profile or Profile(noise="deterministic")
    inst = one_day_instance(instance, day)
    st = forecast.assign(period=1)[["site_id", "period", "inbound_units", "outbound_units"]]
    setup = prepare(inst, st)
    sim = run_setup(setup, np.array([1.0]), replications=1, seed=0, profile=profile, detail=True)
    peak = _peak_hours(setup, profile)
    staffed_site = sim.daily.groupby("site_id")["labour_hours_staffed"].sum()
    rows = []
    for i, sid in enumerate(setup.site_ids):
        vol = np.array([setup.inbound[0, i] if stage in INBOUND else setup.outbound[0, i] for stage in STAGES_SIM])
        need = vol / setup.productivity[i]  # nan: no labour row
        total = float(np.nansum(need))
        staffed = float(staffed_site.get(sid, math.inf))
        for k, stage in enumerate(STAGES_SIM):
            share = need[k] / total if total > 0 and np.isfinite(need[k]) else 0.0
            st_k = staffed * share if math.isfinite(staffed) else math.inf
            lsi = need[k] / st_k if st_k > 0 and math.isfinite(st_k) else 0.0
            rows.append({"site_id": sid, "stage": stage, "workload_units": float(vol[k]),
                         "hours_needed": float(np.nan_to_num(need[k])), "hours_staffed": st_k, "lsi": lsi,
                         "band": lsi_band(lsi), "peak_hour": int(peak[i, k]),
                         "extra_hours": max(0.0, float(np.nan_to_num(need[k])) / COMFORTABLE - st_k)
                         if math.isfinite(st_k) else 0.0})
    stages = pd.DataFrame(rows)
    names = dict(zip(inst.sites["id"].astype(str), inst.sites["name"].astype(str)))
    lab = inst.labor.set_index("site_id")
    srows = []
    for sid in setup.site_ids:
        g = stages[stages["site_id"] == sid]
        need = float(g["hours_needed"].sum())
        staffed = float(staffed_site.get(sid, math.inf))
        lsi = need / staffed if 0 < staffed < math.inf else (math.inf if need > 0 and staffed == 0 else 0.0)
        extra = max(0.0, need / COMFORTABLE - staffed) if math.isfinite(staffed) else 0.0
        per_person = float(lab.at[sid, "hours_per_person_week"]) / 5.0 if sid in lab.index else math.nan
        heads = int(math.ceil(extra / per_person - 1e-9)) if extra > 0 and per_person > 0 else 0
        worst = g.sort_values("hours_needed", ascending=False).iloc[0] if len(g) else None
        srows.append({"site_id": sid, "site_name": names.get(sid, sid), "hours_needed": need,
                      "hours_staffed": staffed, "lsi": lsi, "band": lsi_band(lsi),
                      "peak_stage": None if worst is None else str(worst["stage"]),
                      "peak_hour": None if worst is None else int(worst["peak_hour"]),
                      "extra_hours": extra, "hours_per_person_day": per_person, "extra_heads": heads})
    notes = [f"staffed hours: labor.csv (max_headcount x hours_per_person_week + max_overtime_hours) / 7 per day; "
             f"comfortable below {COMFORTABLE:.2f}"]
    return LsiResult(day, stages, pd.DataFrame(srows), notes)


def lsi_text(result: LsiResult) -> str:
    """The supervisor's view: one line per site, then its stages."""
    lines = [f"Labour Stress Index for {result.date} (hours needed / hours staffed):"]
    for r in result.sites.itertuples():
        change = (f"add {r.extra_hours:,.0f} h ({r.extra_heads} people) to be comfortable" if r.extra_hours > 0
                  else "no change needed")
        lines.append(f"  {r.site_name}: LSI {r.lsi:.2f} ({r.band}); {r.hours_needed:,.0f} h needed, "
                     f"{r.hours_staffed:,.0f} h staffed; peak {r.peak_hour:02d}:00 at "
                     f"{str(r.peak_stage).replace('_', ' ')}; {change}")
        for s in result.stages[result.stages["site_id"] == r.site_id].itertuples():
            lines.append(f"    {s.stage.replace('_', ' '):<14} LSI {s.lsi:.2f} ({s.band}), peak {s.peak_hour:02d}:00, "
                         f"{s.workload_units:,.0f} units, {s.hours_needed:,.1f} h needed"
                         + (f", +{s.extra_hours:,.1f} h" if s.extra_hours > 0 else ""))
    return "\n".join(lines)
