r"""Calibration: fit the twin's effective rates to what the sites actually did, and watch for drift.

Model (the simulator's queue recursion, :func:`engine.simulator.simulate_arrays`, at daily steps)
-----------------------------------------------------------------------------------------------------
For each observed site and flow stage :math:`j` (from ``actuals.csv``: throughput :math:`y`, labour hours
:math:`h`, end-of-day backlog :math:`q` per day), the work offered on day :math:`t` is recovered from the
records, :math:`a_t = \max(0,\ y_t + q_t - q_{t-1})`, and replayed through one queue per stage
(each stage fed by its own offered work; within a day units pass several stages, so the simulator's
one-step lag between stages would be a one-*day* lag here)::

    y_t = min(q_{t-1} + a_t, c_t)          throughput
    q_t = q_{t-1} + a_t - y_t              backlog  (q_0 = the first recorded backlog)

with the **effective capacity**

.. math:: c_t = e_j\, N_j \left(1 - \kappa\, u_t^2\right), \qquad u_t = \min\!\left(1, \frac{a^h_t}{e_j N_j}\right)

where :math:`N_j` = count x rate_per_hour x hours_per_day (resources.csv, units/day) is the nominal
capacity, :math:`e_j` the **efficiency** of site and stage (multiplying the stage's rates: equipment rate
and labour productivity) and :math:`\kappa` the network **congestion coefficient** (the share of capacity
lost on a day offered exactly the effective capacity). The load :math:`a^h_t` is the work offered that day
to the head of the stage's chain (inbound dock for inbound dock and putaway, pick for pick, pack and outbound
dock; the stage's own offered work when its head is not observed): congestion comes with the chain's work
entering the building, as in the simulator (:func:`engine.simulator._congestion_factor`). Predicted labour
hours are
:math:`\hat h_t = \hat y_t / (e_j\, p_j)` with :math:`p_j` = ``labor.productivity_<stage>``.

Fit: :func:`scipy.optimize.least_squares` (bounded, trust-region reflective) over all :math:`e_j` and
:math:`\kappa`, residuals :math:`(\hat y - y)/\bar y_j`, :math:`(\hat q - q)/\bar y_j` and
:math:`(\hat h - h)/\bar h_j` (scaled per site and stage by the mean observed throughput and hours).
Errors are reported before (:math:`e = 1, \kappa = 0`: the nominal twin) and after, as the relative mean
absolute error :math:`\sum|\hat x - x| / \sum x` (backlog relative to throughput).

Drift: with a stored calibration, the predictions for new actuals are summed over a rolling window
(``window`` days); a window whose predicted throughput or labour hours differ from the actual by more
than ``threshold`` (relative) is flagged for its site and stage. The parameter most likely responsible is
the one whose re-fit on that window alone (efficiency of the site and stage, or the congestion coefficient)
removes more of the window's squared error.

One set of parameters for every predictor: the efficiencies go into the rates and productivities
(:func:`apply_calibration`), so the MILP, the checker and the simulator see them alike; kappa and the optional
stochastic effects go into ``meta['calibration']``, which the simulator reads (the daily congestion derate above;
breakdowns; absenteeism) and the MILP reads as the exact capacity derate :func:`congestion_derate` times the
breakdown availability (:func:`calibrated_derate`) and as labour productivity per rostered hour times the
attendance ``1 - p`` (:func:`calibrated_attendance`), both applied in :func:`engine.pipeline.solve_decision`.

Breakdowns (optional, ``fit(breakdowns=True)``): :func:`fit_breakdowns`, a joint maximum-likelihood fit of the
network MTBF (operating hours, given MTTR), kappa and the up-state efficiencies. Service-time variability
(``variability=True``): :func:`fit_service_cv`. Absenteeism (``absenteeism=True``): :func:`fit_absenteeism`, the
binomial maximum-likelihood absence rate of each site from the optional ``rostered_hours`` column (hours
scheduled) against ``labor_hours`` (hours worked); the simulator draws each site's attendance with its rate.

The loop around it:

- :func:`backtest` (``twinplan backtest``): fit on the earlier actuals, predict the held-out weeks from the work
  actually offered; per site and stage errors of throughput, backlog, labour hours and queueing time, nominal
  twin against calibrated twin; with rostered hours on record also the absence rates and the hours to roster
  (:data:`ROSTER_METRIC`).
- :func:`track` (``twinplan track``): what a recorded run predicted per site and stage against the actuals
  recorded after it (:func:`plan_vs_actuals`); gaps beyond a threshold are flagged, traced to the most likely
  parameter (efficiency, congestion, or absenteeism when rostered hours are on record, ranked by the share of the
  error each explains: :func:`_responsible`), stored with the run (run-store table ``calibration_findings``) and
  audited.
- :func:`module_status` (``twinplan status``; result.json's ``"calibration"`` key via
  :func:`calibration_summary`): each site and stage ``not_calibrated``, ``validated`` (error within tolerance)
  or ``drifted``.

Versions: :func:`save_calibration` writes ``INSTANCE/calibration/v0001.yaml`` (next number each time) and
appends to ``history.csv``; instance tables are never touched. :func:`apply_calibration` returns an
Instance with the efficiencies applied to ``resources.rate_per_hour`` and ``labor.productivity_<stage>``
and the version recorded in ``meta['calibration']`` (read it with :func:`calibration_version`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from scipy.optimize import least_squares

from instances.instance import Instance, coerce_table, load_instance, resolve_instance_path
from instances.schema import ACTUALS, FLOW_STAGES
from instances.validation import InstanceValidationError, ValidationReport

CALIBRATION_DIR = "calibration"
HISTORY_FILE = "history.csv"
EFFICIENCY_BOUNDS = (0.2, 2.0)
CONGESTION_BOUNDS = (0.0, 0.95)
METRICS = ("throughput", "backlog", "labor_hours")
ROSTER_TOLERANCE = 1e-6
"""Relative tolerance of the check ``labor_hours <= rostered_hours`` (rounding of exported minutes)."""
CHAIN_HEAD = {"inbound_dock": "inbound_dock", "putaway": "inbound_dock", "pick": "pick", "pack": "pick",
              "outbound_dock": "pick"}
"""The head of each flow stage's chain (whose offered work drives the congestion of the chain's stages)."""


# ---------------------------------------------------------------------------------------------------
# Observations and the prediction model
# ---------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Observations:
    """Actuals as (day x site-stage) arrays, with the nominal rates of each site and stage."""

    pairs: pd.DataFrame  # site_id, stage, nominal (units/day), productivity (units/labour-h)
    dates: pd.DatetimeIndex
    throughput: np.ndarray  # (T, P)
    labor_hours: np.ndarray
    backlog: np.ndarray
    observed: np.ndarray  # (T, P) bool: the day has a record
    load_override: np.ndarray | None = None  # (T-1, P) congestion load when not computed from these pairs

    @property
    def offered(self) -> np.ndarray:
        """Work offered per day (days 2..T): y_t + q_t - q_{t-1}, floored at 0."""
        return np.maximum(self.throughput[1:] + self.backlog[1:] - self.backlog[:-1], 0.0)

    @property
    def load(self) -> np.ndarray:
        """Congestion load per day (days 2..T): the work offered to each pair's chain head."""
        if self.load_override is not None:
            return self.load_override
        return self.offered[:, self.pairs["load_index"].to_numpy()]


def read_actuals(path: str | Path, instance: Instance) -> pd.DataFrame:
    """Read and check an actuals CSV (schema ``actuals``); raises InstanceValidationError, located."""
    path = Path(path)
    report = ValidationReport()
    if not path.is_file():
        report.error(str(path), 0, "", "actuals file not found")
        raise InstanceValidationError(report, str(path))
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    actuals = coerce_table(raw, ACTUALS, report, str(path))
    check_actuals(actuals, instance, report, str(path))
    if not report.ok:
        raise InstanceValidationError(report, str(path))
    return actuals


def check_actuals(actuals: pd.DataFrame, instance: Instance, report: ValidationReport, fname: str) -> None:
    """Sites and stages must have nominal capacity and productivity; no duplicate days."""
    cap = instance.stage_capacity().set_index(["site_id", "stage"])["units_per_day"]
    prod = instance.labor.set_index("site_id")
    for r, (site, stage) in enumerate(zip(actuals["site_id"], actuals["stage"]), start=1):
        if stage not in FLOW_STAGES:
            report.error(fname, r, "stage", f"stage {stage!r} has no throughput to calibrate (a flow stage, please)")
        elif (site, stage) not in cap.index:
            report.error(fname, r, "site_id", f"no resources for {site}/{stage} in instance {instance.name!r}")
        elif site not in prod.index:
            report.error(fname, r, "site_id", f"no labour productivity for {site} in instance {instance.name!r}")
    if "rostered_hours" in actuals:
        worked, rostered = actuals["labor_hours"].to_numpy(float), actuals["rostered_hours"].to_numpy(float)
        with np.errstate(invalid="ignore"):
            over = np.flatnonzero(worked > rostered * (1.0 + ROSTER_TOLERANCE) + 1e-9)
        for r in over:
            report.error(fname, int(r) + 1, "labor_hours", f"{worked[r]:g} hours worked exceed the {rostered[r]:g} "
                         "rostered (rostered_hours): the hours worked are at most the hours rostered")
    dup = actuals.duplicated(["site_id", "stage", "date"], keep="first")
    for r in np.flatnonzero(dup.to_numpy()) + 1:
        report.error(fname, int(r), "date", "duplicate day for this site and stage")


def observations(instance: Instance, actuals: pd.DataFrame) -> Observations:
    """Pivot actuals to arrays over every day from the first to the last record."""
    a = actuals.copy()
    a["date"] = pd.to_datetime(a["date"])
    pairs = a[["site_id", "stage"]].drop_duplicates().sort_values(["site_id", "stage"]).reset_index(drop=True)
    cap = instance.stage_capacity().set_index(["site_id", "stage"])["units_per_day"]
    lab = instance.labor.set_index("site_id")
    pairs["nominal"] = [float(cap[(s, k)]) for s, k in zip(pairs["site_id"], pairs["stage"])]
    pairs["productivity"] = [float(lab.loc[s, f"productivity_{k}"]) for s, k in zip(pairs["site_id"], pairs["stage"])]
    index = {(s, k): j for j, (s, k) in enumerate(zip(pairs["site_id"], pairs["stage"]))}
    pairs["load_index"] = [index.get((s, CHAIN_HEAD[k]), j) for j, (s, k) in enumerate(zip(pairs["site_id"],
                                                                                          pairs["stage"]))]
    dates = pd.date_range(a["date"].min(), a["date"].max(), freq="D")
    cols = pd.MultiIndex.from_frame(pairs[["site_id", "stage"]])
    wide = a.pivot_table(index="date", columns=["site_id", "stage"], values=list(METRICS), aggfunc="first")

    def arr(metric: str) -> np.ndarray:
        return wide[metric].reindex(index=dates, columns=cols).to_numpy(dtype=float)

    y, h, q = arr("throughput"), arr("labor_hours"), arr("backlog")
    observed = ~np.isnan(y)
    # a missing day: carry the backlog, no work (keeps the recursion defined; its residuals are masked)
    q = pd.DataFrame(q).ffill().fillna(0.0).to_numpy()
    return Observations(pairs, dates, np.nan_to_num(y), np.nan_to_num(h), q, observed)


def effective_capacity(nominal: np.ndarray, efficiency: np.ndarray, congestion: float,
                       offered: np.ndarray) -> np.ndarray:
    """c = e N (1 - kappa min(1, a / (e N))^2), units/day; shapes broadcast (T, P)."""
    base = efficiency * nominal
    u = np.minimum(1.0, offered / np.maximum(base, 1e-12))
    return base * (1.0 - congestion * u**2)


def predict(obs: Observations, efficiency: np.ndarray, congestion: float, *,
            capacity_limit: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Predicted throughput, backlog and labour hours for days 2..T, by the simulator's queue recursion.

    ``capacity_limit`` (T-1, P), units/day, caps the effective capacity where finite (the staff present:
    :func:`staff_capacity`)."""
    from engine.simulator import simulate_arrays

    a = obs.offered  # (T-1, P)
    cap = effective_capacity(obs.pairs["nominal"].to_numpy(), efficiency, congestion, obs.load)
    if capacity_limit is not None:
        cap = np.where(np.isfinite(capacity_limit), np.minimum(cap, capacity_limit), cap)
    n_pairs = a.shape[1]
    run = simulate_arrays(a[:, None, :, None].copy(), cap[:, None, :, None], upstream=[-1] * n_pairs,
                          backlog_initial=obs.backlog[0][None, :, None])
    y = run.throughput[:, 0, :, 0]
    q = run.backlog[:, 0, :, 0]
    h = y / (efficiency * obs.pairs["productivity"].to_numpy())
    return {"throughput": y, "backlog": q, "labor_hours": h}


def _residuals(obs: Observations, efficiency: np.ndarray, congestion: float, *,
               capacity_limit: np.ndarray | None = None) -> np.ndarray:
    p = predict(obs, efficiency, congestion, capacity_limit=capacity_limit)
    mask = obs.observed[1:]
    y_scale = np.maximum(obs.throughput[1:].sum(0) / np.maximum(mask.sum(0), 1), 1e-9)
    h_scale = np.maximum(obs.labor_hours[1:].sum(0) / np.maximum(mask.sum(0), 1), 1e-9)
    r = [(p["throughput"] - obs.throughput[1:]) / y_scale, (p["backlog"] - obs.backlog[1:]) / y_scale,
         (p["labor_hours"] - obs.labor_hours[1:]) / h_scale]
    return np.concatenate([np.where(mask, x, 0.0).ravel() for x in r])


def errors(obs: Observations, efficiency: np.ndarray, congestion: float) -> pd.DataFrame:
    """Relative mean absolute error per site, stage and metric (backlog relative to throughput)."""
    p = predict(obs, efficiency, congestion)
    mask = obs.observed[1:]
    act = {"throughput": obs.throughput[1:], "backlog": obs.backlog[1:], "labor_hours": obs.labor_hours[1:]}
    rows = []
    for j, (site, stage) in enumerate(zip(obs.pairs["site_id"], obs.pairs["stage"])):
        m = mask[:, j]
        row = {"site_id": site, "stage": stage}
        for metric in METRICS:
            denom = act["labor_hours" if metric == "labor_hours" else "throughput"][m, j].sum()
            row[metric] = float(np.abs(p[metric][m, j] - act[metric][m, j]).sum() / max(denom, 1e-9))
        rows.append(row)
    return pd.DataFrame(rows)


def _overall(obs: Observations, efficiency: np.ndarray, congestion: float) -> dict[str, float]:
    p = predict(obs, efficiency, congestion)
    m = obs.observed[1:]
    y, h, q = obs.throughput[1:], obs.labor_hours[1:], obs.backlog[1:]
    return {"throughput": float(np.abs(p["throughput"] - y)[m].sum() / max(y[m].sum(), 1e-9)),
            "backlog": float(np.abs(p["backlog"] - q)[m].sum() / max(y[m].sum(), 1e-9)),
            "labor_hours": float(np.abs(p["labor_hours"] - h)[m].sum() / max(h[m].sum(), 1e-9))}


# ---------------------------------------------------------------------------------------------------
# Fit
# ---------------------------------------------------------------------------------------------------
@dataclass
class Calibration:
    """Fitted parameters with the error of the nominal twin (before) and the calibrated one (after)."""

    efficiency: pd.DataFrame  # site_id, stage, efficiency
    congestion: float
    error_before: dict[str, float]
    error_after: dict[str, float]
    errors: pd.DataFrame  # site_id, stage, metric columns before_/after_
    period: tuple[str, str]
    n_days: int
    cost: float
    drift: pd.DataFrame = field(default_factory=pd.DataFrame)
    version: str | None = None
    effects: dict[str, float] = field(default_factory=dict)  # stochastic effects (mtbf_hours, mttr_hours)
    absenteeism: pd.DataFrame = field(default_factory=pd.DataFrame)  # per site (:func:`fit_absenteeism`)

    def efficiency_of(self, obs: Observations) -> np.ndarray:
        """Efficiency factor of each observed (site, stage) pair, in ``obs.pairs`` order (1 when not calibrated)."""
        e = self.efficiency.set_index(["site_id", "stage"])["efficiency"]
        return np.array([float(e.get((s, k), 1.0)) for s, k in zip(obs.pairs["site_id"], obs.pairs["stage"])])

    def to_dict(self) -> dict[str, Any]:
        """The calibration as plain JSON data (version, period, days, congestion, efficiencies)."""
        return {
            "version": self.version, "period": list(self.period), "days": self.n_days,
            "congestion": round(self.congestion, 6),
            "efficiency": [{"site_id": s, "stage": k, "efficiency": round(float(e), 6)}
                           for s, k, e in self.efficiency.itertuples(index=False)],
            "error_before": {k: round(v, 6) for k, v in self.error_before.items()},
            "error_after": {k: round(v, 6) for k, v in self.error_after.items()},
            "drift": json.loads(self.drift.to_json(orient="records")) if len(self.drift) else [],
            "effects": {k: round(float(v), 6) for k, v in self.effects.items()},
            "absenteeism": [{k: (v if k == "site_id" else int(v) if k in ("days", "shifts") else round(float(v), 6))
                             for k, v in r.items()} for r in self.absenteeism.to_dict("records")],
            "modules": [{"site_id": r["site_id"], "stage": r["stage"],
                         **{m: round(float(r[f"{m}_after"]), 6) for m in METRICS if f"{m}_after" in r}}
                        for r in self.errors.to_dict("records")] if len(self.errors) else [],
        }


def fit(instance: Instance, actuals: pd.DataFrame, *, congestion: float | None = None,
        breakdowns: bool = False, mttr_hours: float = 2.0, variability: bool = False,
        absenteeism: bool = False) -> Calibration:
    """Least-squares efficiencies per site and stage and one congestion coefficient (see the module doc).

    ``congestion`` fixes the coefficient instead of fitting it. ``breakdowns``: also fit the network's mean
    time between breakdowns for a given mean repair time (:func:`fit_breakdowns`); the efficiencies are then
    those of a stage that is up, and the calibration's ``effects`` switch breakdowns on in the simulator.
    ``variability``: also the service-time variability (:func:`fit_service_cv`). ``absenteeism``: also the
    absence rate of each site from the rostered and worked hours (:func:`fit_absenteeism`; ValueError when the
    actuals record no rostered hours).
    """
    absence = fit_absenteeism(actuals) if absenteeism else pd.DataFrame()
    obs = observations(instance, actuals)
    if len(obs.dates) < 3:
        raise ValueError(f"calibration needs at least 3 days of actuals, got {len(obs.dates)}")
    n = len(obs.pairs)
    fixed = congestion is not None

    def unpack(theta: np.ndarray) -> tuple[np.ndarray, float]:
        return theta[:n], (float(congestion) if fixed else float(theta[n]))

    x0 = np.concatenate([np.full(n, 0.9), [] if fixed else [0.1]])
    lo = np.concatenate([np.full(n, EFFICIENCY_BOUNDS[0]), [] if fixed else [CONGESTION_BOUNDS[0]]])
    hi = np.concatenate([np.full(n, EFFICIENCY_BOUNDS[1]), [] if fixed else [CONGESTION_BOUNDS[1]]])
    sol = least_squares(lambda th: _residuals(obs, *unpack(th)), x0, bounds=(lo, hi), method="trf",
                        x_scale="jac", diff_step=1e-4)
    eff, kappa = unpack(sol.x)
    effects: dict[str, float] = {}
    if breakdowns:
        up_eff, up_kappa, mtbf = fit_breakdowns(instance, obs, eff, kappa, mttr_hours=mttr_hours)
        if mtbf is not None:
            eff, effects = up_eff, {"mtbf_hours": mtbf, "mttr_hours": float(mttr_hours)}
            kappa = kappa if fixed else up_kappa
    if variability:
        cv = fit_service_cv(instance, obs, eff, kappa)
        if cv is not None:
            effects["service_cv"] = cv
    if len(absence):
        effects["absenteeism"] = pooled_absence(absence)
    ones = np.ones(n)
    before, after = errors(obs, ones, 0.0), errors(obs, eff, kappa)
    err = before.merge(after, on=["site_id", "stage"], suffixes=("_before", "_after"))
    return Calibration(
        efficiency=obs.pairs[["site_id", "stage"]].assign(efficiency=eff),
        congestion=kappa, error_before=_overall(obs, ones, 0.0), error_after=_overall(obs, eff, kappa),
        errors=err, period=(str(obs.dates[0].date()), str(obs.dates[-1].date())), n_days=len(obs.dates),
        cost=float(sol.cost), effects=effects, absenteeism=absence)


ABSENCE_COLUMNS = ("site_id", "rate", "std_error", "days", "shifts", "dispersion")
"""One row per site of :func:`fit_absenteeism`."""


def fit_absenteeism(actuals: pd.DataFrame) -> pd.DataFrame:
    r"""Absence rate per site from the hours rostered and the hours worked (the simulator's absenteeism model).

    Model (:class:`engine.simulator.Profile`, ``absenteeism``): on day d a site rosters
    :math:`n_d = \max(1, \mathrm{round}(R_d / 8))` shifts (:data:`engine.simulator.SHIFT_HOURS`), :math:`R_d`
    its rostered hours summed over stages; each shift turns up independently with probability :math:`1 - p`, so
    the absent shifts are :math:`x_d \sim \mathrm{Binomial}(n_d, p)` and the share of rostered hours lost is
    :math:`x_d / n_d = 1 - W_d / R_d` (:math:`W_d` the hours worked, ``labor_hours``). The maximum-likelihood rate
    is :math:`\hat p = \sum_d x_d / \sum_d n_d`, standard error :math:`\sqrt{\hat p (1 - \hat p) / \sum n_d}`.
    ``dispersion`` is the Pearson statistic :math:`\sum_d (x_d - \hat p n_d)^2 / (n_d \hat p (1 - \hat p))`
    over its :math:`D - 1` degrees of freedom: about 1 when the day-to-day scatter is the binomial one the
    simulator draws, well above 1 when absence comes in waves (then the simulator's days are too alike and the
    standard error is scaled by its square root).

    Rows without ``rostered_hours`` are left out; ValueError when no row has them (the rate cannot be fitted).
    """
    from engine.simulator import SHIFT_HOURS

    has = actuals[actuals["rostered_hours"].notna()] if "rostered_hours" in actuals else actuals.iloc[:0]
    if has.empty:
        raise ValueError("absenteeism cannot be fitted: the actuals record no rostered hours (add the optional "
                         "column rostered_hours, the labour hours scheduled per site, stage and day, beside "
                         "labor_hours, the hours worked)")
    day = has.groupby(["site_id", "date"])[["rostered_hours", "labor_hours"]].sum()
    day = day[day["rostered_hours"] > 0]
    rows = []
    for site, g in day.groupby(level="site_id"):
        rostered, worked = g["rostered_hours"].to_numpy(float), g["labor_hours"].to_numpy(float)
        n = np.maximum(np.round(rostered / SHIFT_HOURS), 1.0)
        x = n * np.clip(1.0 - worked / rostered, 0.0, 1.0)
        p = float(x.sum() / n.sum())
        var = p * (1.0 - p)
        dof = max(len(g) - 1, 1)
        dispersion = float(((x - p * n) ** 2 / np.maximum(n * var, 1e-12)).sum() / dof) if var > 0 else 1.0
        rows.append({"site_id": str(site), "rate": p,
                     "std_error": float(np.sqrt(var / n.sum() * max(dispersion, 1.0))),
                     "days": len(g), "shifts": int(n.sum()), "dispersion": dispersion})
    return pd.DataFrame(rows, columns=list(ABSENCE_COLUMNS))


def absence_drift(before: pd.DataFrame, after: pd.DataFrame, period: tuple[str, str], *,
                  min_change: float = 0.01) -> pd.DataFrame:
    """Sites whose absence rate moved between two fits (:func:`fit_absenteeism` tables): the change exceeds both
    1.96 standard errors of the difference (``sqrt(se_before^2 + se_after^2)``) and ``min_change`` (absolute).
    Rows in :data:`DRIFT_COLUMNS` form: metric ``absence``, stage empty (absence is a site's), ``predicted`` /
    ``current`` the calibrated rate, ``actual`` / ``refit`` the new one, parameter ``absenteeism``."""
    old = before.set_index("site_id")
    rows = []
    for r in after.itertuples(index=False):
        if r.site_id not in old.index:
            continue
        p0, se0 = float(old.loc[r.site_id, "rate"]), float(old.loc[r.site_id, "std_error"])
        change = float(r.rate) - p0
        if abs(change) > max(1.96 * float(np.hypot(se0, r.std_error)), min_change):
            rows.append({"site_id": r.site_id, "stage": "", "metric": "absence", "window_start": period[0],
                         "window_end": period[1], "predicted": p0, "actual": float(r.rate),
                         "rel_error": change / p0 if p0 > 0 else np.inf, "parameter": "absenteeism",
                         "current": p0, "refit": float(r.rate), "windows_flagged": 1})
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))


def pooled_absence(absence: pd.DataFrame) -> float:
    """The network's absence rate: absent over rostered shifts of every fitted site (the rate of a site with no
    rostered hours of its own)."""
    shifts = absence["shifts"].to_numpy(float)
    return float((absence["rate"].to_numpy(float) * shifts).sum() / max(shifts.sum(), 1.0))


def fit_service_cv(instance: Instance, obs: Observations, efficiency: np.ndarray, congestion: float, *,
                   step_hours: float = 1.0, min_days: int = 10) -> float | None:
    r"""Service-time variability from the day-to-day scatter of capacity-bound days.

    With each operating step's capacity multiplied by an independent factor of mean 1 and CV :math:`c` (the
    simulator's ``service_cv``), a day of H open steps has a capacity of CV :math:`c / \sqrt{H}`. On days that
    end with a backlog the throughput is the capacity, so :math:`c = s \sqrt{H}` with :math:`s` the robust
    scatter (1.4826 x median absolute deviation, so breakdown dips do not count) of
    :math:`y_t / (e N (1 - \kappa u_t^2))` pooled over sites and stages. Measurement noise of the WMS counts
    adds to :math:`s`: the estimate is an upper bound when the counts are noisy. None with fewer than
    ``min_days`` bound days.
    """
    res = instance.resources.set_index(["site_id", "stage"])["hours_per_day"]
    nominal = obs.pairs["nominal"].to_numpy()
    y, q, load, mask = obs.throughput[1:], obs.backlog[1:], obs.load, obs.observed[1:]
    scaled = []
    for j, (s, k) in enumerate(zip(obs.pairs["site_id"], obs.pairs["stage"])):
        scale = y[mask[:, j], j].mean() if mask[:, j].any() else 0.0
        bound = mask[:, j] & (q[:, j] > 1e-3 * max(scale, 1e-9))
        if bound.sum() < 3:
            continue
        cap = effective_capacity(nominal[j], efficiency[j], congestion, load[bound, j])
        r = y[bound, j] / cap
        steps = float(res.get((s, k), 24.0)) / step_hours
        scaled.append((r / np.median(r) - 1.0) * np.sqrt(steps))
    if not scaled or sum(len(x) for x in scaled) < min_days:
        return None
    z = np.concatenate(scaled)
    return float(1.4826 * np.median(np.abs(z - np.median(z))))


def fit_breakdowns(instance: Instance, obs: Observations, efficiency: np.ndarray, congestion: float, *,
                   mttr_hours: float = 2.0, min_days: int = 5) -> tuple[np.ndarray, float, float | None]:
    r"""Maximum-likelihood breakdown rate (one network MTBF, operating hours), congestion and up-state
    efficiencies, jointly.

    Model: on day t a stage breaks down :math:`n_t \sim \mathrm{Poisson}(H / \mathrm{MTBF})` times (H its
    operating hours a day), each breakdown costing ``mttr_hours`` of its H hours, so on a day that ends with a
    backlog (capacity-bound) the throughput is
    :math:`y_t = e N (1 - \kappa u_t^2) (1 - \min(1, n_t\, \mathrm{MTTR} / H))\, \varepsilon_t`,
    :math:`u_t = \min(1, a^h_t / (e N))`, with noise :math:`\varepsilon_t \sim N(1, \sigma^2)`. The least-squares
    fit (the starting point) lets efficiency and congestion absorb the mean availability; the likelihood of the
    mixture over :math:`n_t` separates them: the top level is the efficiency of a stage that is up, the share and
    depth of the dips give the rate. A capacity-bound day (it ends with a backlog) observes the capacity; a day
    that processed all its work is censored (the capacity was at least its throughput), which keeps the
    breakdown days (more often bound) from biasing the rate. Pairs with fewer than ``min_days`` bound days keep
    their least-squares efficiency. The breakdown model is kept only when a likelihood-ratio test against no
    breakdowns rejects the latter at 1 %. Returns (efficiencies, congestion, MTBF or None when not
    identifiable or not significant).
    """
    from scipy.optimize import minimize
    from scipy.stats import norm, poisson

    res = instance.resources.set_index(["site_id", "stage"])["hours_per_day"]
    hours = np.array([float(res.get((s, k), 24.0)) for s, k in zip(obs.pairs["site_id"], obs.pairs["stage"])])
    nominal = obs.pairs["nominal"].to_numpy()
    y, q, load, mask = obs.throughput[1:], obs.backlog[1:], obs.load, obs.observed[1:]
    data = []
    for j in range(len(obs.pairs)):
        scale = y[mask[:, j], j].mean() if mask[:, j].any() else 0.0
        bound = mask[:, j] & (q[:, j] > 1e-3 * max(scale, 1e-9))
        if bound.sum() >= min_days:
            data.append((j, y[mask[:, j], j] / nominal[j], load[mask[:, j], j] / nominal[j], bound[mask[:, j]]))
    if not data:
        return efficiency, congestion, None
    counts = np.arange(7)

    def nll(theta: np.ndarray) -> float:
        rate, sigma, kappa, e = np.exp(theta[0]), np.exp(theta[1]), theta[2], theta[3:]
        total = 0.0
        for k, (j, x, a, b) in enumerate(data):
            u = np.minimum(1.0, a / e[k])
            level = e[k] * (1.0 - kappa * u**2)[:, None] * np.maximum(0.0, 1.0 - counts * mttr_hours / hours[j])
            p_n = poisson.pmf(counts, hours[j] * rate)[None, :]
            dens = np.where(b[:, None], norm.pdf(x[:, None], level, sigma * e[k]),  # capacity-bound: y = capacity
                            norm.sf(x[:, None], level, sigma * e[k]))  # all work done: capacity was at least y
            total -= np.log((dens * p_n).sum(axis=1) + 1e-300).sum()
        return float(total)

    e0 = np.array([efficiency[j] for j, *_ in data])
    theta0 = np.concatenate([[np.log(1.0 / 100.0), np.log(0.02), congestion], e0 * 1.05])
    bounds = [(np.log(1e-5), np.log(10.0)), (np.log(1e-4), np.log(0.5)), CONGESTION_BOUNDS,
              *[EFFICIENCY_BOUNDS] * len(data)]
    sol = minimize(nll, theta0, method="L-BFGS-B", bounds=bounds)
    rate = float(np.exp(sol.x[0]))
    # likelihood-ratio test against no breakdowns (rate at its lower bound, the rest re-fitted): keep the
    # breakdown model only when it explains the dips significantly better (chi2 1 d.o.f., 1 %: 6.63)
    none = minimize(lambda th: nll(np.concatenate([[bounds[0][0]], th])), theta0[1:], method="L-BFGS-B",
                    bounds=bounds[1:])
    if rate <= 2e-5 or 2.0 * (none.fun - sol.fun) < 6.63:
        return efficiency, congestion, None
    out = efficiency.copy()
    out[[j for j, *_ in data]] = sol.x[3:]
    return out, float(sol.x[2]), 1.0 / rate


# ---------------------------------------------------------------------------------------------------
# Drift
# ---------------------------------------------------------------------------------------------------
DRIFT_COLUMNS = ("site_id", "stage", "metric", "window_start", "window_end", "predicted", "actual", "rel_error",
                 "parameter", "current", "refit", "windows_flagged")


def detect_drift(instance: Instance, actuals: pd.DataFrame, calibration: Calibration, *, window: int = 7,
                 threshold: float = 0.05) -> pd.DataFrame:
    """Windows where the calibrated twin and the actuals part by more than ``threshold`` (relative).

    One row per drifting site and stage: its worst window, the metric, and the parameter most likely
    responsible (``efficiency`` of that site and stage, or ``congestion``) with its current and re-fitted
    value on that window.
    """
    obs = observations(instance, actuals)
    eff, kappa = calibration.efficiency_of(obs), calibration.congestion
    p = predict(obs, eff, kappa)
    mask = obs.observed[1:]
    rows = []
    for j, (site, stage) in enumerate(zip(obs.pairs["site_id"], obs.pairs["stage"])):
        worst = None
        flagged = 0
        for metric, act in (("throughput", obs.throughput[1:, j]), ("labor_hours", obs.labor_hours[1:, j])):
            pred = np.where(mask[:, j], p[metric][:, j], 0.0)
            act = np.where(mask[:, j], act, 0.0)
            ps = np.convolve(pred, np.ones(window), "valid")
            as_ = np.convolve(act, np.ones(window), "valid")
            rel = (ps - as_) / np.maximum(as_, 1e-9)
            bad = np.flatnonzero(np.abs(rel) > threshold)
            flagged += len(bad)
            if len(bad):
                i = int(bad[np.argmax(np.abs(rel[bad]))])
                if worst is None or abs(rel[i]) > abs(worst["rel_error"]):
                    worst = {"site_id": site, "stage": stage, "metric": metric,
                             "window_start": str(obs.dates[1 + i].date()),
                             "window_end": str(obs.dates[i + window].date()),
                             "predicted": float(ps[i]), "actual": float(as_[i]), "rel_error": float(rel[i]), "i": i}
        if worst is not None:
            worst.update(_responsible(obs, j, worst.pop("i"), window, eff, kappa))
            worst["windows_flagged"] = flagged
            rows.append(worst)
    return pd.DataFrame(rows, columns=list(DRIFT_COLUMNS))


def staff_capacity(rostered: np.ndarray, absence: float, efficiency: float | np.ndarray,
                   productivity: float | np.ndarray) -> np.ndarray:
    """Units a day the staff present can process: rostered hours x attendance ``1 - absence`` x efficiency x
    labour productivity (units per hour worked); nan (no limit) where no rostered hours are on record."""
    return np.asarray(rostered, dtype=float) * (1.0 - absence) * efficiency * productivity


def _responsible(obs: Observations, j: int, start: int, window: int, eff: np.ndarray, kappa: float,
                 absence: dict[str, Any] | None = None) -> dict[str, Any]:
    r"""The parameter most likely responsible for pair j's error in a window: the candidate whose change removes
    the largest share of the window's squared error (throughput, backlog and labour hours, as in :func:`fit`).

    Candidates: the efficiency of the pair and the congestion coefficient, each re-fitted on the window; with
    ``absence`` (``rostered``: the pair's rostered hours per day of ``obs``, nan where none; ``assumed``: the
    absence rate the twin assumed; ``observed``: the rate observed in the window, :func:`fit_absenteeism`),
    absenteeism: the stage's capacity capped by its staff (:func:`staff_capacity`) at the observed attendance
    instead of the assumed one. The labour hours tell them apart: a slower stage (efficiency) works more hours
    per unit, a stage short of staff (absenteeism) works fewer hours at the same pace. Returns ``parameter``,
    ``current``, ``refit`` (for absenteeism: the assumed and the observed rate), ``explained`` (the share of the
    squared error the named candidate removes, against the twin as it was: with the staff cap at the assumed
    attendance for absenteeism) and ``candidates`` (all of them, the best first).
    """
    # the recursion needs the days before the window; residuals count only inside it
    sub = Observations(obs.pairs.iloc[[j]].reset_index(drop=True), obs.dates[: start + window + 1],
                       obs.throughput[: start + window + 1, [j]], obs.labor_hours[: start + window + 1, [j]],
                       obs.backlog[: start + window + 1, [j]], obs.observed[: start + window + 1, [j]].copy(),
                       obs.load[: start + window, [j]])
    sub.observed[: start + 1] = False

    def cost(e: float, k: float, limit: np.ndarray | None = None) -> float:
        return float(np.sum(_residuals(sub, np.array([e]), k, capacity_limit=limit) ** 2))

    base = cost(eff[j], kappa)
    fe = least_squares(lambda t: _residuals(sub, t, kappa), [eff[j]], bounds=EFFICIENCY_BOUNDS, diff_step=1e-4)
    fk = least_squares(lambda t: _residuals(sub, np.array([eff[j]]), float(t[0])), [max(kappa, 1e-3)],
                       bounds=CONGESTION_BOUNDS, diff_step=1e-4)

    def share(reference: float, after: float) -> float:
        return float(np.clip((reference - after) / reference, 0.0, 1.0)) if reference > 1e-12 else 0.0

    candidates = [{"parameter": "efficiency", "current": float(eff[j]), "refit": float(fe.x[0]),
                   "explained": share(base, 2 * fe.cost)},
                  {"parameter": "congestion", "current": float(kappa), "refit": float(fk.x[0]),
                   "explained": share(base, 2 * fk.cost)}]
    if absence is not None:
        rostered = np.asarray(absence["rostered"], dtype=float)[1: start + window + 1, None]
        prod = float(sub.pairs["productivity"].iloc[0])
        as_run = staff_capacity(rostered, absence["assumed"], eff[j], prod)
        seen = as_run.copy()  # the days before the window keep the assumed attendance
        seen[start:] = staff_capacity(rostered[start:], absence["observed"], eff[j], prod)
        as_run, seen = cost(eff[j], kappa, as_run), cost(eff[j], kappa, seen)
        candidates.append({"parameter": "absenteeism", "current": float(absence["assumed"]),
                           "refit": float(absence["observed"]), "explained": share(as_run, seen)})
    # ties (e.g. nothing explains anything) keep the order above: efficiency first, as before absenteeism
    ranked = sorted(candidates, key=lambda c: -c["explained"])
    return {**ranked[0], "candidates": ranked}


# ---------------------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------------------
def _folder(instance_or_path: Instance | str | Path) -> Path:
    if isinstance(instance_or_path, Instance):
        if instance_or_path.source is None:
            raise ValueError("the instance has no folder (load it with load_instance) to hold calibrations")
        return Path(instance_or_path.source) / CALIBRATION_DIR
    return Path(instance_or_path) / CALIBRATION_DIR


def list_versions(instance_or_path: Instance | str | Path) -> list[str]:
    """Calibration version ids of an instance, oldest first (``v0001``, ``v0002``, ...)."""
    folder = _folder(instance_or_path)
    return sorted(p.stem for p in folder.glob("v[0-9][0-9][0-9][0-9].yaml")) if folder.is_dir() else []


def load_calibration(instance_or_path: Instance | str | Path, version: str = "latest") -> dict[str, Any]:
    """The stored calibration ``version`` (``latest`` = the newest) as a dict."""
    versions = list_versions(instance_or_path)
    if not versions:
        raise FileNotFoundError(f"no calibration in {_folder(instance_or_path)}")
    vid = versions[-1] if version == "latest" else version
    path = _folder(instance_or_path) / f"{vid}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no calibration version {version!r} (have {versions})")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def as_calibration(stored: dict[str, Any]) -> Calibration:
    """A stored version back as a :class:`Calibration` (for drift checks)."""
    eff = pd.DataFrame(stored["efficiency"], columns=["site_id", "stage", "efficiency"])
    return Calibration(eff, float(stored["congestion"]), stored.get("error_before", {}),
                       stored.get("error_after", {}), pd.DataFrame(), tuple(stored.get("period", ("", ""))),
                       int(stored.get("days", 0)), 0.0, version=stored.get("version"),
                       effects=dict(stored.get("effects") or {}),
                       absenteeism=pd.DataFrame(stored.get("absenteeism") or [], columns=list(ABSENCE_COLUMNS)))


def save_calibration(instance_path: str | Path, calibration: Calibration, *, actuals_file: str | Path | None = None
                     ) -> str:
    """Write the next version ``calibration/vNNNN.yaml`` and append to ``history.csv``; returns the id."""
    folder = Path(instance_path) / CALIBRATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    versions = list_versions(instance_path)
    vid = f"v{int(versions[-1][1:]) + 1 if versions else 1:04d}"
    calibration.version = vid
    created = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    digest = hashlib.sha256(Path(actuals_file).read_bytes()).hexdigest() if actuals_file else ""
    doc = {**calibration.to_dict(), "created": created, "actuals": str(actuals_file or ""),
           "actuals_sha256": digest, "based_on": versions[-1] if versions else None}
    tmp = folder / f".{vid}.yaml.tmp"
    tmp.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    tmp.replace(folder / f"{vid}.yaml")
    row = {"version": vid, "created": created, "period_start": calibration.period[0],
           "period_end": calibration.period[1], "days": calibration.n_days, "congestion": calibration.congestion,
           **{f"before_{k}": v for k, v in calibration.error_before.items()},
           **{f"after_{k}": v for k, v in calibration.error_after.items()},
           "drift_flags": len(calibration.drift), "actuals_sha256": digest}
    hist = folder / HISTORY_FILE
    pd.DataFrame([row]).to_csv(hist, mode="a", header=not hist.exists(), index=False)
    return vid


def apply_calibration(instance: Instance, version: str = "latest", *, folder: str | Path | None = None
                      ) -> Instance:
    """An Instance with a calibration's efficiencies applied (rates and labour productivity x efficiency).

    ``meta['calibration']`` records ``{version, congestion, effects}`` (and ``absenteeism_by_site`` when fitted)
    so that runs can store which version they used (:func:`calibration_version`) and the simulator reads the
    congestion and the stochastic effects.
    """
    stored = load_calibration(folder if folder is not None else instance, version)
    eff = pd.DataFrame(stored["efficiency"]).set_index(["site_id", "stage"])["efficiency"]
    res = instance.resources.copy()
    factor = [float(eff.get((s, k), 1.0)) for s, k in zip(res["site_id"], res["stage"])]
    res["rate_per_hour"] = res["rate_per_hour"] * np.array(factor)
    lab = instance.labor.copy()
    for stage in FLOW_STAGES:
        col = f"productivity_{stage}"
        lab[col] = lab[col] * np.array([float(eff.get((s, stage), 1.0)) for s in lab["site_id"]])
    by_site = {str(r["site_id"]): float(r["rate"]) for r in stored.get("absenteeism") or []}
    meta = {**instance.meta, "calibration": {"version": stored["version"], "congestion": stored["congestion"],
                                             "effects": dict(stored.get("effects") or {}),
                                             **({"absenteeism_by_site": by_site} if by_site else {})}}
    return instance.replace(meta=meta, resources=res, labor=lab)


def congestion_derate(kappa: float) -> float:
    r"""The share of capacity a stage can sustain under congestion :math:`\kappa`: :math:`\rho^*` with
    :math:`\rho^* + \kappa \rho^{*2} = 1`, i.e. :math:`(\sqrt{1 + 4\kappa} - 1) / (2\kappa)` (1 at
    :math:`\kappa = 0`).

    A steady flow y through a stage of capacity C offers y a day, so it is processed when
    :math:`y \le C (1 - \kappa (y/C)^2)`; the left side grows and the right side falls with y, so this holds
    exactly when :math:`y \le \rho^* C`. The MILP's linear capacity row with C derated by :math:`\rho^*` is
    therefore the calibration's congestion model, not an approximation of it: a derate that only binds at high
    utilisation (above :math:`\rho^*`).
    """
    if kappa <= 0:
        return 1.0
    return float((np.sqrt(1.0 + 4.0 * kappa) - 1.0) / (2.0 * kappa))


def calibrated_derate(instance: Instance, derate: dict[tuple[str, str], float] | None = None
                      ) -> dict[tuple[str, str], float] | None:
    """The MILP's capacity derate per (site, flow stage): a calibration's congestion (:func:`congestion_derate`)
    times its breakdown availability ``MTBF / (MTBF + MTTR)`` times any other derate (e.g. the repair loop's);
    ``derate`` unchanged for an uncalibrated instance."""
    cal = instance.meta.get("calibration")
    cal = cal if isinstance(cal, dict) else {}
    kappa = float(cal.get("congestion") or 0.0)
    effects = cal.get("effects") or {}
    availability = 1.0
    if effects.get("mtbf_hours"):  # breakdowns: the share of operating hours a stage is up, MTBF / (MTBF + MTTR)
        mtbf, mttr = float(effects["mtbf_hours"]), float(effects.get("mttr_hours") or 2.0)
        availability = mtbf / (mtbf + mttr)
    if kappa <= 0 and availability == 1.0:
        return derate
    f = congestion_derate(kappa) * availability
    res = instance.resources
    keys = {(str(s), str(k)) for s, k in zip(res["site_id"], res["stage"]) if k in FLOW_STAGES}
    keys |= set(derate or {})
    return {key: float((derate or {}).get(key, 1.0)) * f for key in sorted(keys)}


def calibrated_attendance(instance: Instance) -> dict[str, float]:
    """The MILP's labour productivity factor per site under a calibration's absenteeism: ``1 - p``, the share of
    rostered hours worked (each site's fitted rate, the pooled rate for sites without one), so the MILP plans the
    hours to roster and the simulator draws who turns up from them; {} for a calibration without absenteeism
    (applied in :func:`engine.pipeline.solve_decision`)."""
    cal = instance.meta.get("calibration")
    cal = cal if isinstance(cal, dict) else {}
    pooled = float((cal.get("effects") or {}).get("absenteeism") or 0.0)
    by_site = cal.get("absenteeism_by_site") or {}
    if pooled <= 0 and not by_site:
        return {}
    return {str(s): 1.0 - float(by_site.get(str(s), pooled)) for s in instance.labor["site_id"]}


def calibration_version(instance: Instance) -> str | None:
    """The calibration version an instance was built with (None: uncalibrated)."""
    cal = instance.meta.get("calibration")
    return cal.get("version") if isinstance(cal, dict) else None


# ---------------------------------------------------------------------------------------------------
# One call for the CLI and notebooks
# ---------------------------------------------------------------------------------------------------
def calibrate(instance_path: str | Path, actuals_file: str | Path | None = None, *, window: int = 7,
              threshold: float = 0.05, write: bool = True, breakdowns: bool = False,
              mttr_hours: float = 2.0, variability: bool = False, absenteeism: bool = False) -> Calibration:
    """Drift check against the latest version (if any), fit on the actuals (with ``breakdowns``: also the
    breakdown rate, :func:`fit_breakdowns`; ``variability``: :func:`fit_service_cv`; ``absenteeism``:
    :func:`fit_absenteeism`), write the next version. Asking for absenteeism from actuals without rostered hours
    is a ``FILE: rostered_hours: ...`` ValueError before anything is fitted or written."""
    path = resolve_instance_path(instance_path)
    inst = load_instance(path)
    actuals_file = Path(actuals_file) if actuals_file is not None else path / ACTUALS.file_name
    actuals = read_actuals(actuals_file, inst)
    if absenteeism and not actuals["rostered_hours"].notna().any():
        raise ValueError(f"{actuals_file}: rostered_hours: absenteeism cannot be fitted: no row records the hours "
                         "rostered (add the optional column rostered_hours, the labour hours scheduled per site, "
                         "stage and day; labor_hours are the hours worked); nothing written")
    drift = pd.DataFrame(columns=list(DRIFT_COLUMNS))
    previous = as_calibration(load_calibration(path)) if list_versions(path) else None
    if previous is not None:
        drift = detect_drift(inst, actuals, previous, window=window, threshold=threshold)
    cal = fit(inst, actuals, breakdowns=breakdowns, mttr_hours=mttr_hours, variability=variability,
              absenteeism=absenteeism)
    if previous is not None and len(cal.absenteeism) and len(previous.absenteeism):
        moved = absence_drift(previous.absenteeism, cal.absenteeism, cal.period)
        drift = pd.concat([drift, moved], ignore_index=True) if len(drift) else moved
    cal.drift = drift
    if write:
        save_calibration(path, cal, actuals_file=actuals_file)
    return cal




# ---------------------------------------------------------------------------------------------------
# Backtest: fit on the earlier actuals, predict the held-out weeks
# ---------------------------------------------------------------------------------------------------
BACKTEST_METRICS = ("throughput", "backlog", "labor_hours", "cycle_time_h")
"""Backtest metrics: relative mean absolute errors of daily throughput, backlog (relative to throughput) and
labour hours, and the absolute error (hours) of the Little's-law queueing time ``24 sum(q) / sum(y)``."""
ROSTER_METRIC = "rostered_hours"
"""Backtest metric when the actuals record rostered hours: relative mean absolute error of the hours the twin
rosters for each day's work (hours worked / attendance ``1 - p``, the MILP's labour) against the hours rostered."""
BACKTEST_FILE = "backtest.json"


@dataclass
class Backtest:
    """Out-of-sample errors of the nominal and the calibrated twin on held-out weeks."""

    calibration: Calibration  # fitted on the training days
    train: tuple[str, str]
    holdout: tuple[str, str]
    errors: pd.DataFrame  # site_id, stage, metric, nominal, calibrated
    overall: dict[str, dict[str, float]]  # metric -> {nominal, calibrated}
    absenteeism_note: str = ""  # why absenteeism was not fitted ("" when it was)

    @property
    def metrics(self) -> tuple[str, ...]:
        """The metrics reported: :data:`BACKTEST_METRICS`, and :data:`ROSTER_METRIC` when rostered hours are on
        record."""
        return (*BACKTEST_METRICS, *((ROSTER_METRIC,) if ROSTER_METRIC in self.overall else ()))

    @property
    def calibrated_wins(self) -> bool:
        """The calibrated twin's throughput, backlog and labour-hour errors (and rostered hours, when on record)
        are all below the nominal ones."""
        return all(self.overall[m]["calibrated"] < self.overall[m]["nominal"]
                   for m in (*METRICS, *((ROSTER_METRIC,) if ROSTER_METRIC in self.overall else ())))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict: weeks fitted and held out, κ, overall and per-module errors, the absence rates
        fitted on the training weeks (``absenteeism``, [] when not fitted, with ``absenteeism_note`` saying why)."""
        absence = self.calibration.absenteeism
        return {"train": list(self.train), "holdout": list(self.holdout),
                "congestion": round(self.calibration.congestion, 6),
                "overall": {m: {k: round(v, 6) for k, v in d.items()} for m, d in self.overall.items()},
                "errors": json.loads(self.errors.round(6).to_json(orient="records")),
                "calibrated_wins": self.calibrated_wins,
                "absenteeism": [{"site_id": r.site_id, "rate": round(float(r.rate), 6),
                                 "std_error": round(float(r.std_error), 6), "days": int(r.days)}
                                for r in absence.itertuples(index=False)],
                "absenteeism_pooled": (round(float(self.calibration.effects["absenteeism"]), 6)
                                       if "absenteeism" in self.calibration.effects else None),
                "absenteeism_note": self.absenteeism_note}


def _pair_errors(obs: Observations, pred: dict[str, np.ndarray]) -> dict[tuple[str, str], dict[str, float]]:
    """Per site and stage: the backtest metrics of a prediction over the observed days 2..T."""
    mask = obs.observed[1:]
    y, q, h = obs.throughput[1:], obs.backlog[1:], obs.labor_hours[1:]
    out = {}
    for j, (site, stage) in enumerate(zip(obs.pairs["site_id"], obs.pairs["stage"])):
        m = mask[:, j]
        ys, hs = max(y[m, j].sum(), 1e-9), max(h[m, j].sum(), 1e-9)
        w_act = 24.0 * q[m, j].sum() / ys
        w_pred = 24.0 * pred["backlog"][m, j].sum() / max(pred["throughput"][m, j].sum(), 1e-9)
        out[(site, stage)] = {
            "throughput": float(np.abs(pred["throughput"][m, j] - y[m, j]).sum() / ys),
            "backlog": float(np.abs(pred["backlog"][m, j] - q[m, j]).sum() / ys),
            "labor_hours": float(np.abs(pred["labor_hours"][m, j] - h[m, j]).sum() / hs),
            "cycle_time_h": float(abs(w_pred - w_act))}
    return out


def backtest(instance: Instance, actuals: pd.DataFrame, *, holdout_weeks: int = 1) -> Backtest:
    """Fit on the actuals before the last ``holdout_weeks`` weeks; predict those weeks with the nominal twin
    (efficiency 1, no congestion) and the calibrated one, from the work actually offered and the backlog left
    on the last training day; errors per site and stage (:data:`BACKTEST_METRICS`).

    When the training weeks record ``rostered_hours`` the calibration also fits each site's absence rate
    (:func:`fit_absenteeism`) and, where the held-out weeks record them, the hours to roster are predicted
    (:data:`ROSTER_METRIC`): the nominal twin rosters the hours the work needs (everyone turns up), the
    calibrated one those hours / ``(1 - p)`` with the site's fitted rate (the pooled rate for a site without
    one), as the MILP does (:func:`calibrated_attendance`). Without rostered hours ``absenteeism_note`` says so."""
    if holdout_weeks < 1:
        raise ValueError("holdout_weeks must be at least 1")
    a = actuals.assign(date=pd.to_datetime(actuals["date"]))
    last = a["date"].max()
    cut = last - pd.Timedelta(days=7 * holdout_weeks - 1)
    train = a[a["date"] < cut]
    if train["date"].nunique() < 7:
        raise ValueError(f"backtest: {holdout_weeks} holdout week(s) leave {train['date'].nunique()} training "
                         "days (need at least 7)")
    hold = a[a["date"] >= cut - pd.Timedelta(days=1)]  # the last training day seeds the backlog
    trained_roster = "rostered_hours" in train and bool(train["rostered_hours"].notna().any())
    cal = fit(instance, train, absenteeism=trained_roster)
    note = "" if trained_roster else ("absenteeism not fitted: the training weeks record no rostered_hours "
                                      "(the hours scheduled beside labor_hours, the hours worked)")
    obs = observations(instance, hold)
    n = len(obs.pairs)
    pred_nominal = predict(obs, np.ones(n), 0.0)
    pred_calibrated = predict(obs, cal.efficiency_of(obs), cal.congestion)
    nominal = _pair_errors(obs, pred_nominal)
    calibrated = _pair_errors(obs, pred_calibrated)
    metrics = list(BACKTEST_METRICS)
    roster = _roster_errors(obs, hold, cal, pred_nominal, pred_calibrated) if trained_roster else None
    if roster is not None:
        metrics.append(ROSTER_METRIC)
        for key, (nom, calib) in roster["pairs"].items():
            nominal[key][ROSTER_METRIC], calibrated[key][ROSTER_METRIC] = nom, calib
    elif trained_roster:
        note = "absenteeism fitted, but the held-out weeks record no rostered_hours: rostered hours not predicted"
    rows = [{"site_id": s, "stage": k, "metric": metric, "nominal": nominal[(s, k)][metric],
             "calibrated": calibrated[(s, k)][metric]} for (s, k) in nominal for metric in metrics
            if metric in nominal[(s, k)]]
    errors = pd.DataFrame(rows, columns=["site_id", "stage", "metric", "nominal", "calibrated"])
    mask = obs.observed[1:]
    overall = {}
    for metric, pred in (("nominal", pred_nominal), ("calibrated", pred_calibrated)):
        y, q, h = obs.throughput[1:], obs.backlog[1:], obs.labor_hours[1:]
        ys, hs = max(y[mask].sum(), 1e-9), max(h[mask].sum(), 1e-9)
        for name, value in (("throughput", np.abs(pred["throughput"] - y)[mask].sum() / ys),
                            ("backlog", np.abs(pred["backlog"] - q)[mask].sum() / ys),
                            ("labor_hours", np.abs(pred["labor_hours"] - h)[mask].sum() / hs),
                            ("cycle_time_h", errors.loc[errors["metric"] == "cycle_time_h", metric].mean())):
            overall.setdefault(name, {})[metric] = float(value)
    if roster is not None:
        overall[ROSTER_METRIC] = roster["overall"]
    return Backtest(cal, (str(train["date"].min().date()), str(train["date"].max().date())),
                    (str(cut.date()), str(last.date())), errors, overall, note)


def _roster_errors(obs: Observations, hold: pd.DataFrame, cal: Calibration, pred_nominal: dict[str, np.ndarray],
                   pred_calibrated: dict[str, np.ndarray]) -> dict[str, Any] | None:
    """Relative mean absolute errors of the hours to roster (:data:`ROSTER_METRIC`), per (site, stage) pair and
    overall, nominal and calibrated twin, over the held-out days that record rostered hours; None when none do."""
    if "rostered_hours" not in hold or not hold["rostered_hours"].notna().any():
        return None
    wide = hold.pivot_table(index="date", columns=["site_id", "stage"], values="rostered_hours", aggfunc="first")
    rostered = wide.reindex(index=obs.dates, columns=pd.MultiIndex.from_frame(obs.pairs[["site_id", "stage"]])
                            ).to_numpy(dtype=float)[1:]
    mask = obs.observed[1:] & np.isfinite(rostered)
    attendance = np.array([1.0 - assumed_absence(cal, s) for s in obs.pairs["site_id"]])
    nom = pred_nominal["labor_hours"]  # the nominal twin: every rostered hour worked
    calib = pred_calibrated["labor_hours"] / attendance
    r = np.nan_to_num(rostered)
    pairs = {}
    for j, key in enumerate(zip(obs.pairs["site_id"], obs.pairs["stage"])):
        m = mask[:, j]
        if m.any():
            scale = max(r[m, j].sum(), 1e-9)
            pairs[key] = (float(np.abs(nom[m, j] - r[m, j]).sum() / scale),
                          float(np.abs(calib[m, j] - r[m, j]).sum() / scale))
    scale = max(r[mask].sum(), 1e-9)
    return {"pairs": pairs, "overall": {"nominal": float(np.abs(nom - r)[mask].sum() / scale),
                                        "calibrated": float(np.abs(calib - r)[mask].sum() / scale)}}


def run_backtest(instance_path: str | Path, actuals_file: str | Path | None = None, *, holdout_weeks: int = 1,
                 write: bool = True) -> Backtest:
    """:func:`backtest` on an instance folder (default actuals: its ``actuals.csv``); with ``write`` the
    per-module errors go to ``calibration/backtest.json`` (read by :func:`module_status`)."""
    path = resolve_instance_path(instance_path)
    inst = load_instance(path)
    actuals_file = Path(actuals_file) if actuals_file is not None else path / ACTUALS.file_name
    result = backtest(inst, read_actuals(actuals_file, inst), holdout_weeks=holdout_weeks)
    if write:
        folder = path / CALIBRATION_DIR
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{BACKTEST_FILE}.tmp"
        tmp.write_text(json.dumps({**result.to_dict(), "actuals": str(actuals_file)}, indent=1), encoding="utf-8")
        tmp.replace(folder / BACKTEST_FILE)
    return result


# ---------------------------------------------------------------------------------------------------
# Plan versus outcome: what a recorded run predicted against what then happened
# ---------------------------------------------------------------------------------------------------
FINDING_COLUMNS = ("site_id", "stage", "metric", "window_start", "window_end", "predicted", "actual",
                   "predicted_change", "actual_change", "gap", "flagged", "parameter", "current", "refit",
                   "calibration", "actuals_file", "actuals_sha256", "user_name")
"""One finding per site and stage (the ``calibration_findings`` table of the run store)."""
FINDING_EXTRA_COLUMNS = ("explained", "candidates", "absence_assumed", "absence_observed")
"""Columns :func:`plan_vs_actuals` adds to a finding (shown by ``track`` and its ``--json``; not stored)."""
INBOUND_STAGES = ("inbound_dock", "putaway")


def plan_vs_actuals(instance: Instance, site_throughput: pd.DataFrame, actuals: pd.DataFrame, *,
                    threshold: float = 0.02, calibration: Calibration | None = None) -> pd.DataFrame:
    """Compare a plan's predicted throughput per site and stage with the actuals recorded in its periods.

    Predicted: the plan's ``inbound_units`` (inbound dock, putaway) or ``outbound_units`` (pick, pack, outbound
    dock) of each period, pro rata to the days the actuals cover. With actuals from before the plan's first
    period the comparison is of *changes* against that level (``predicted_change`` = predicted / before - 1,
    ``actual_change`` = actual / before - 1, ``gap`` = their difference: the twin predicts +5 %, the WMS shows
    +2 %, the gap is -3 points); without, ``gap`` = actual / predicted - 1. A gap beyond ``threshold`` is
    flagged and traced to the parameter most likely responsible: ``demand`` (the chain's head was offered less
    work than planned and processed it: the forecast, not the twin), ``upstream`` (the stage got less from the
    stage before it), else the candidate that explains the largest share of the window's error
    (:func:`_responsible`): ``efficiency`` of the site and stage or ``congestion`` (re-fitted on the window, as
    :func:`detect_drift`), or, when the actuals carry ``rostered_hours``, ``absenteeism``: the site's absence rate
    observed in the window (:func:`fit_absenteeism`, i.e. ``1 - labor_hours / rostered_hours`` in shifts) against
    the rate the run assumed (its calibration's rate of the site, else the pooled one, else 0), with ``current``
    the assumed and ``refit`` the observed rate. Added columns: ``explained`` (share of the window's error the
    named parameter removes), ``candidates`` (every candidate with its share, best first), ``absence_assumed``
    and ``absence_observed`` (the site's rates; nan without rostered hours).

    ``instance`` is the uncalibrated instance: ``calibration``'s efficiencies are applied here.
    """
    per = instance.periods.assign(start=lambda d: pd.to_datetime(d["start"]))
    a = actuals.assign(date=pd.to_datetime(actuals["date"]))
    first_start = per["start"].min()
    day_period = {}
    for p, start, days in zip(per["period"], per["start"], per["days"]):
        for i in range(int(round(days))):
            day_period[start + pd.Timedelta(days=i)] = (int(p), float(days))
    st = site_throughput.assign(period=pd.to_numeric(site_throughput["period"]).astype(int))
    vol = st.groupby(["site_id", "period"])[["inbound_units", "outbound_units"]].sum()
    after = a[a["date"].isin(day_period)]
    before = a[a["date"] < first_start]
    if after.empty:
        raise ValueError("track: no actuals fall in the plan's periods "
                         f"({per['start'].min().date()} .. {(per['start'].max()).date()} and after)")
    obs = observations(instance, pd.concat([before, after]))
    eff = calibration.efficiency_of(obs) if calibration is not None else np.ones(len(obs.pairs))
    kappa = calibration.congestion if calibration is not None else 0.0
    index = {(s, k): j for j, (s, k) in enumerate(zip(obs.pairs["site_id"], obs.pairs["stage"]))}
    offered = obs.offered
    rostered = None
    if "rostered_hours" in a and a["rostered_hours"].notna().any():
        wide = a.pivot_table(index="date", columns=["site_id", "stage"], values="rostered_hours", aggfunc="first")
        rostered = wide.reindex(index=obs.dates, columns=pd.MultiIndex.from_frame(obs.pairs[["site_id", "stage"]])
                                ).to_numpy(dtype=float)
    rows = []
    for (site, stage), g in after.groupby(["site_id", "stage"]):
        col = "inbound_units" if stage in INBOUND_STAGES else "outbound_units"
        predicted = 0.0
        for d in g["date"]:
            p, days = day_period[d]
            predicted += float(vol[col].get((site, p), 0.0)) / days
        actual = float(g["throughput"].sum())
        n_days = len(g)
        b = before[(before["site_id"] == site) & (before["stage"] == stage)]
        if len(b) and b["throughput"].mean() > 0:
            level = float(b["throughput"].mean()) * n_days
            pc, ac = predicted / level - 1.0, actual / level - 1.0
            gap = ac - pc
        else:
            pc = ac = np.nan
            gap = actual / predicted - 1.0 if predicted > 0 else np.nan
        row = {"site_id": site, "stage": stage, "metric": "throughput",
               "window_start": str(g["date"].min().date()), "window_end": str(g["date"].max().date()),
               "predicted": predicted, "actual": actual, "predicted_change": pc, "actual_change": ac, "gap": gap,
               "flagged": bool(np.isfinite(gap) and abs(gap) > threshold), "parameter": None,
               "current": np.nan, "refit": np.nan, "explained": np.nan, "candidates": None,
               "absence_assumed": np.nan, "absence_observed": np.nan}
        j = index[(site, stage)]
        absence = None
        if rostered is not None and "rostered_hours" in g and g["rostered_hours"].notna().any():
            seen = after[(after["site_id"] == site) & after["date"].isin(g["date"])]
            observed = fit_absenteeism(seen)
            if len(observed):
                absence = {"rostered": rostered[:, j], "assumed": assumed_absence(calibration, site),
                           "observed": float(observed["rate"].iloc[0])}
                row["absence_assumed"], row["absence_observed"] = absence["assumed"], absence["observed"]
        if row["flagged"]:
            days_idx = np.flatnonzero(obs.dates.isin(g["date"]))
            days_idx = days_idx[days_idx >= 1] - 1  # offered is defined from the second day
            work = float(offered[days_idx, j].sum())
            processed = abs(work - actual) <= threshold * max(predicted, 1e-9) / 2
            if gap < 0 and processed and work < predicted * (1 - threshold):
                row["parameter"] = "demand" if CHAIN_HEAD[stage] == stage else "upstream"
                row["current"], row["refit"] = predicted, work
            else:
                start = int(days_idx.min()) if len(days_idx) else 0
                row.update(_responsible(obs, j, start, len(days_idx), eff, kappa, absence))
        rows.append(row)
    return pd.DataFrame(rows, columns=[*FINDING_COLUMNS[:14], *FINDING_EXTRA_COLUMNS])


def assumed_absence(calibration: Calibration | None, site: str) -> float:
    """The absence rate a twin assumed for a site: its calibration's rate of the site, else the pooled rate
    (``effects['absenteeism']``), else 0 (the nominal twin: every rostered hour worked)."""
    if calibration is None:
        return 0.0
    table = calibration.absenteeism
    if len(table) and (table["site_id"] == site).any():
        return float(table.loc[table["site_id"] == site, "rate"].iloc[0])
    return float(calibration.effects.get("absenteeism") or 0.0)


def track(run_id: str, actuals_file: str | Path, *, store: Any = None, threshold: float = 0.02,
          write: bool = True, user: str | None = None) -> pd.DataFrame:
    """``twinplan track``: a recorded run's predicted throughput per site and stage against actuals recorded
    after it (:func:`plan_vs_actuals`); the findings are stored with the run (``calibration_findings``) with an
    audit row (action ``track``). Returns the findings."""
    from engine.store import RunStore

    run_store = store if isinstance(store, RunStore) else RunStore(store)
    run = run_store.run(run_id)
    if not run.get("instance_path"):
        raise ValueError(f"run {run_id}: no instance path recorded; cannot read its instance")
    inst = load_instance(resolve_instance_path(run["instance_path"]))
    version = run.get("calibration")
    # the run's calibration enters through ``cal`` (efficiencies, congestion, absence rates); the instance stays
    # uncalibrated, or its efficiencies would count twice
    cal = as_calibration(load_calibration(inst, version)) if version else None
    plan_tables = run_store.plan_tables(run["run_id"])
    st = plan_tables.get("site_throughput")
    if st is None or st.empty:
        raise ValueError(f"run {run_id}: no site_throughput recorded; nothing to compare")
    actuals_file = Path(actuals_file)
    found = plan_vs_actuals(inst, st, read_actuals(actuals_file, inst), threshold=threshold, calibration=cal)
    found = found.assign(calibration=version, actuals_file=str(actuals_file),
                         actuals_sha256=hashlib.sha256(actuals_file.read_bytes()).hexdigest(), user_name=user)
    if write:
        flagged = found[found["flagged"]]
        detail = "; ".join(f"{r.site_id}/{r.stage} {r.gap:+.1%} ({r.parameter})" for r in flagged.itertuples())
        run_store.record_findings(run["run_id"], found, audit_row={
            "action": "track", "allowed": True, "user_name": user, "instance": run.get("instance"),
            "scenario": run.get("scenario"), "decision": run.get("decision"), "run_id": run["run_id"],
            "status": f"{len(flagged)} flagged", "detail": detail or "no gap beyond the threshold",
            "calibration": version})
    return found


# ---------------------------------------------------------------------------------------------------
# Phased rollout: the status of every module (site x stage)
# ---------------------------------------------------------------------------------------------------
STATUS_NOT_CALIBRATED, STATUS_VALIDATED, STATUS_DRIFTED = "not_calibrated", "validated", "drifted"
MODULE_COLUMNS = ("site_id", "stage", "status", "error", "source", "version")


def module_status(instance: Instance, *, tolerance: float = 0.05, findings: pd.DataFrame | None = None,
                  folder: str | Path | None = None, version: str | None = None) -> pd.DataFrame:
    """Status of every DC's flow stage (a module: inbound dock, putaway, pick, pack, outbound dock).

    ``not_calibrated``: no calibration version covers it; ``drifted``: the latest version's drift check or a
    flagged plan-versus-outcome finding (``findings``, e.g. ``RunStore.findings(instance=...)``, newer than the
    version) names it, or its error exceeds ``tolerance``; ``validated``: its throughput error is within
    ``tolerance``. ``error`` is the backtest's out-of-sample relative throughput error when a backtest of that
    version's actuals exists (``source`` = ``backtest``), else the fit's in-sample one (``fit``) or the
    finding's gap (``track``). The instance's own folder holds the versions unless ``folder`` is given.
    ``version``: the calibration judged (``latest``, ``vNNNN``); default: the one applied to ``instance``
    (:func:`apply_calibration`), none for an uncalibrated instance (every module ``not_calibrated``: a plan
    made on it relies on no validated module).
    """
    dcs = instance.dcs["id"].astype(str).tolist()
    res = instance.resources
    modules = [(s, k) for s in dcs for k in FLOW_STAGES
               if ((res["site_id"] == s) & (res["stage"] == k)).any()]
    base = folder if folder is not None else (instance if instance.source is not None else None)
    stored = None
    version = version or calibration_version(instance)
    if base is not None and version is not None and list_versions(base):
        stored = load_calibration(base, version)
    rows = {m: {"site_id": m[0], "stage": m[1], "status": STATUS_NOT_CALIBRATED, "error": None, "source": None,
                "version": None} for m in modules}
    if stored is not None:
        fit_err = {(e["site_id"], e["stage"]): e.get("throughput") for e in stored.get("modules") or []}
        bt = {}
        bt_file = _folder(base) / BACKTEST_FILE
        if bt_file.is_file():
            doc = json.loads(bt_file.read_text(encoding="utf-8"))
            bt = {(e["site_id"], e["stage"]): e["calibrated"] for e in doc.get("errors", [])
                  if e["metric"] == "throughput"}
        drifted = {(d["site_id"], d["stage"]) for d in stored.get("drift") or []}
        for e in stored["efficiency"]:
            m = (e["site_id"], e["stage"])
            if m not in rows:
                continue
            err, src = (bt[m], "backtest") if m in bt else (fit_err.get(m), "fit")
            if err is None and m not in drifted:  # fitted, but no error on record: nothing validated it
                rows[m].update(version=stored.get("version"), source="fit (no error recorded)")
                continue
            ok = err is not None and err <= tolerance and m not in drifted
            rows[m].update(status=STATUS_VALIDATED if ok else STATUS_DRIFTED, error=err, source=src,
                           version=stored.get("version"))
    if findings is not None and len(findings):
        for f in findings[findings["flagged"].astype(bool)].itertuples():
            m = (f.site_id, f.stage)
            if m in rows and rows[m]["status"] != STATUS_NOT_CALIBRATED:
                rows[m].update(status=STATUS_DRIFTED, error=float(f.gap), source="track")
    return pd.DataFrame(list(rows.values()), columns=list(MODULE_COLUMNS))


def finding_message(f: dict[str, Any]) -> str:
    """One line for a plan-versus-outcome finding, e.g. "DC_A/pick 2026-01-05..2026-01-18: predicted +5.0 %,
    actual +2.0 % (gap -3.0 points); most likely efficiency 1.000 -> 0.797"."""
    def num(key: str) -> float | None:
        v = f.get(key)
        return None if v is None or (isinstance(v, float) and np.isnan(v)) else float(v)

    pc, ac, gap = num("predicted_change"), num("actual_change"), num("gap")
    head = f"{f.get('run_id') + ': ' if f.get('run_id') else ''}{f['site_id']}/{f['stage']} " \
           f"{f.get('window_start')}..{f.get('window_end')}: "
    if pc is not None and ac is not None:
        head += f"predicted {pc:+.1%}, actual {ac:+.1%} (gap {100 * (gap or 0):+.1f} points)"
    else:
        head += f"predicted {num('predicted') or 0:,.0f}, actual {num('actual') or 0:,.0f} units ({gap or 0:+.1%})"
    par, cur, ref, share = f.get("parameter"), num("current"), num("refit"), num("explained")
    if par in ("efficiency", "congestion") and cur is not None and ref is not None:
        head += f"; most likely {par} {cur:.3f} -> {ref:.3f}"
    elif par == "absenteeism" and cur is not None and ref is not None:
        head += f"; most likely absenteeism {cur:.1%} assumed -> {ref:.1%} absent"
    elif par:
        head += f"; most likely {par} (work offered {ref or 0:,.0f} vs planned {cur or 0:,.0f})"
    if par in ("efficiency", "congestion", "absenteeism") and share is not None:
        head += f" (explains {share:.0%} of the error)"
    return head


def calibration_summary(instance: Instance, *, findings: pd.DataFrame | None = None, tolerance: float = 0.05
                        ) -> dict[str, Any]:
    """The ``"calibration"`` key of result.json: ``{"version", "modules": [{site_id, stage, status, error,
    source}], "findings": [flagged plan-versus-outcome findings with a one-line "message"], "unvalidated":
    ["SITE/stage", ...]}`` (the report shows it; :func:`module_status` for the statuses)."""
    mods = module_status(instance, tolerance=tolerance, findings=findings)
    recs = []
    for r in mods.itertuples(index=False):
        recs.append({"site_id": r.site_id, "stage": r.stage, "status": r.status,
                     "error": None if r.error is None or pd.isna(r.error) else round(float(r.error), 6),
                     "source": r.source})
    found = []
    if findings is not None and len(findings):
        flagged = findings[findings["flagged"].astype(bool)]
        keep = [c for c in ("run_id", *FINDING_COLUMNS[:14]) if c in flagged.columns]
        found = json.loads(flagged[keep].to_json(orient="records"))
        for f in found:
            f["message"] = finding_message(f)
    unvalidated = [f"{r['site_id']}/{r['stage']}" for r in recs if r["status"] != STATUS_VALIDATED]
    return {"version": calibration_version(instance), "modules": recs, "findings": found,
            "unvalidated": unvalidated}
