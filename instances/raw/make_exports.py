"""Write the two example WMS/WCS export sets (deterministic): ``python instances/raw/make_exports.py``.

- ``wms_a/``: a legacy WMS at UK sites. One CSV per entity, imperial units (lb, ft3, ft, miles), GBP,
  minutes, its own codes (facility codes, process codes RCV/PTW/PCK/PAK/SHP/STO), naive local timestamps
  (Europe/London), shift-level operations records.
- ``wms_b/``: a vendor WCS platform at Benelux/Rhineland sites. Wide exports (stages as column groups,
  weeks as columns), metric units (g, litres, seconds), EUR, ``;`` separated with decimal commas, other
  codes (GI/PTW/PICK/PACK/GO/STOR), UTC timestamps.

Both describe the same four products under different item codes. The operations records follow the
calibration model of :mod:`engine.calibration` (:func:`_operations`) with known efficiencies, congestion and
absence rates, so calibrating the ingested instance shows what it recovers. The ``mapping.yaml`` files are
written by hand, not by this script.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
SEED = 20260302
HORIZON_START = np.datetime64("2026-03-02")
WEEKS = 4
HISTORY_START = np.datetime64("2026-02-02")
HISTORY_DAYS = 28

# canonical product -> (kg, m3, EUR, class, A item number, B article)
PRODUCTS = {
    "SKU_PHONECASE": (0.15, 0.0008, 12.0, "standard", "100101", "ART-7001"),
    "SKU_KETTLE": (1.40, 0.0090, 35.0, "standard", "100102", "ART-7002"),
    "SKU_DUVET": (2.20, 0.0450, 55.0, "bulky", "100103", "ART-7003"),
    "SKU_GLASSWARE": (3.00, 0.0120, 40.0, "fragile", "100104", "ART-7004"),
}
PRODUCT_SHARE = {"SKU_PHONECASE": 0.45, "SKU_KETTLE": 0.25, "SKU_DUVET": 0.12, "SKU_GLASSWARE": 0.18}
GBP_PER_EUR = 1 / 1.17
LB_PER_KG = 1 / 0.45359237
FT3_PER_M3 = 1 / 0.028316846592
STAGES = ("inbound_dock", "putaway", "pick", "pack", "outbound_dock")

A_STAGE = {"inbound_dock": "RCV", "putaway": "PTW", "pick": "PCK", "pack": "PAK", "outbound_dock": "SHP",
           "storage": "STO"}
B_STAGE = {"inbound_dock": "GI", "putaway": "PTW", "pick": "PICK", "pack": "PACK", "outbound_dock": "GO",
           "storage": "STOR"}

# A sites: code, name, type, lat, lon, status, automation, fixed GBP/yr
A_SITES = [
    ("LHR1", "London Heathrow DC", "D", 51.4700, -0.4543, "A", "MAN", 1_450_000),
    ("MAN2", "Manchester Trafford DC", "D", 53.4631, -2.2913, "A", "MEC", 1_100_000),
    ("BHX9", "Birmingham Hams Hall (planned)", "D", 52.5225, -1.7136, "P", "AUT", 1_250_000),
    ("FXT", "Port of Felixstowe", "P", 51.9550, 1.3510, "A", "MAN", 0),
]
A_ZONES = [  # code, name, lat, lon, weight
    ("LDN", "Greater London", 51.5074, -0.1278, 9.0), ("BHM", "West Midlands", 52.4862, -1.8904, 2.9),
    ("MCR", "Greater Manchester", 53.4808, -2.2426, 2.8), ("LDS", "West Yorkshire", 53.8008, -1.5491, 2.3),
    ("GLA", "Glasgow", 55.8642, -4.2518, 1.8), ("BRS", "Bristol", 51.4545, -2.5879, 1.2),
    ("CDF", "Cardiff", 51.4816, -3.1791, 1.1), ("NCL", "Tyneside", 54.9783, -1.6178, 1.1),
    ("LPL", "Merseyside", 53.4084, -2.9916, 1.4), ("SOU", "Hampshire", 50.9097, -1.4044, 1.8),
    ("NTM", "Nottingham", 52.9548, -1.1581, 1.1), ("EDI", "Edinburgh", 55.9533, -3.1883, 0.9),
]
# B sites: code, name, type, lat, lon, state, automation, fixed EUR/yr
B_SITES = [
    ("DUS", "Duesseldorf Reisholz FC", "FC", 51.1740, 6.8640, "live", "auto", 1_600_000),
    ("VNO", "Venlo Trade Port DC", "FC", 51.3960, 6.1320, "live", "semi", 1_050_000),
    ("RTM", "Port of Rotterdam Maasvlakte", "PORT", 51.9540, 4.0410, "live", "manual", 0),
]
B_ZONES = [
    ("NL-AMS", "Amsterdam", 52.3676, 4.9041, 2.4), ("NL-RTD", "Rotterdam", 51.9244, 4.4777, 1.7),
    ("NL-UTR", "Utrecht", 52.0907, 5.1214, 1.2), ("NL-EIN", "Eindhoven", 51.4416, 5.4697, 0.9),
    ("BE-ANR", "Antwerp", 51.2194, 4.4025, 1.4), ("BE-BRU", "Brussels", 50.8503, 4.3517, 2.1),
    ("BE-GNT", "Ghent", 51.0543, 3.7174, 0.8), ("BE-LGG", "Liege", 50.6326, 5.5797, 0.8),
    ("DE-CGN", "Cologne", 50.9375, 6.9603, 1.9), ("DE-DUS", "Duesseldorf", 51.2277, 6.7735, 1.3),
    ("DE-DTM", "Dortmund", 51.5136, 7.4653, 1.2), ("DE-ESS", "Essen", 51.4556, 7.0116, 1.1),
    ("DE-FRA", "Frankfurt", 50.1109, 8.6821, 1.6), ("LU-LUX", "Luxembourg", 49.6116, 6.1319, 0.5),
]
# equipment per canonical site: stage -> (count, units per hour per unit), hours per day
EQUIPMENT = {
    "LHR1": ({"inbound_dock": (6, 220), "putaway": (10, 70), "pick": (24, 45), "pack": (14, 70),
              "outbound_dock": (6, 230), "storage": (18000, 12)}, 16.0),
    "MAN2": ({"inbound_dock": (4, 220), "putaway": (7, 80), "pick": (14, 55), "pack": (9, 80),
              "outbound_dock": (4, 230), "storage": (12000, 12)}, 16.0),
    "BHX9": ({"inbound_dock": (5, 240), "putaway": (4, 200), "pick": (8, 140), "pack": (8, 110),
              "outbound_dock": (5, 240), "storage": (20000, 14)}, 20.0),
    "DUS": ({"inbound_dock": (5, 250), "putaway": (4, 220), "pick": (10, 150), "pack": (10, 120),
             "outbound_dock": (5, 250), "storage": (24000, 14)}, 20.0),
    "VNO": ({"inbound_dock": (4, 220), "putaway": (6, 90), "pick": (14, 60), "pack": (9, 85),
             "outbound_dock": (4, 230), "storage": (15000, 12)}, 16.0),
}
# productivity measurements: stage -> (minutes per line, units per line, travel metres per line, complexity)
MEASURES = {
    "LHR1": {"inbound_dock": (0.30, 1.8, 6, 1.0), "putaway": (0.95, 1.4, 38, 1.0),
             "pick": (1.55, 1.6, 45, 1.05), "pack": (0.85, 1.6, 0, 1.0), "outbound_dock": (0.28, 1.8, 5, 1.0)},
    "MAN2": {"inbound_dock": (0.28, 1.8, 5, 1.0), "putaway": (0.80, 1.4, 25, 1.0),
             "pick": (1.10, 1.5, 22, 1.05), "pack": (0.75, 1.5, 0, 1.0), "outbound_dock": (0.27, 1.8, 5, 1.0)},
    "BHX9": {"inbound_dock": (0.25, 1.8, 4, 1.0), "putaway": (0.35, 1.4, 0, 1.0),
             "pick": (0.42, 1.3, 0, 1.0), "pack": (0.60, 1.3, 0, 1.0), "outbound_dock": (0.25, 1.8, 4, 1.0)},
    "DUS": {"inbound_dock": (0.24, 1.8, 4, 1.0), "putaway": (0.30, 1.3, 0, 1.0),
            "pick": (0.38, 1.2, 0, 1.0), "pack": (0.55, 1.2, 0, 1.0), "outbound_dock": (0.24, 1.8, 4, 1.0)},
    "VNO": {"inbound_dock": (0.29, 1.8, 5, 1.0), "putaway": (0.85, 1.4, 30, 1.0),
            "pick": (1.20, 1.5, 28, 1.1), "pack": (0.78, 1.5, 0, 1.0), "outbound_dock": (0.28, 1.8, 5, 1.0)},
}
TRUE_EFFICIENCY = {"LHR1": 0.88, "MAN2": 0.93, "DUS": 0.97, "VNO": 0.91}
TRUE_CONGESTION = 0.15
TRUE_ABSENCE = {"LHR1": 0.07, "MAN2": 0.05, "DUS": 0.04, "VNO": 0.06}
"""Share of rostered shifts absent per site (``twinplan calibrate --absenteeism`` recovers it)."""
CHAINS = (("inbound_dock", "putaway"), ("pick", "pack", "outbound_dock"))
SITE_STREAM = {"LHR1": 1, "MAN2": 2, "DUS": 3, "VNO": 4}
"""Each site's operations come from their own random stream ``default_rng([SEED, stream])``."""


def _write(path: Path, header: list[str], rows: list[list], sep: str = ",") -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, delimiter=sep, lineterminator="\n")
        w.writerow(header)
        w.writerows(rows)


def _dec(x: float, nd: int = 2) -> str:
    """A number with a decimal comma (WMS B)."""
    return f"{x:.{nd}f}".replace(".", ",")


def _weekly_demand(rng: np.random.Generator, zones: list[tuple], total_per_week: float) -> dict:
    w = np.array([z[4] for z in zones])
    out = {}
    for zi, z in enumerate(zones):
        for p, share in PRODUCT_SHARE.items():
            for week in range(WEEKS):
                season = 1.0 + 0.08 * week
                mean = total_per_week * w[zi] / w.sum() * share * season
                out[(z[0], p, week)] = int(round(mean * rng.uniform(0.9, 1.1)))
    return out


WALK_M_PER_MIN, EXTRA_UNIT_SHARE, REFERENCE_UNITS_PER_LINE = 60.0, 0.15, 1.5
"""The productivity parameters of both ``mapping.yaml`` files (``productivity:``)."""


def _reference_productivity(minutes: float, units: float, travel_m: float, complexity: float) -> float:
    """Units per labour hour at the mappings' reference order profile: what ingestion writes to
    ``labor.productivity_<stage>`` (:mod:`engine.ingest.productivity`: standard minutes per line
    ``h = (t - d / v) / k(u, c)``, ``P = 60 u_r / (h k(u_r, c) + d / v)``, ``k(u, c) = c (1 + beta (u - 1))``;
    the mappings set no reference complexity, so the site's own ``c`` stays)."""
    def k(u: float, c: float) -> float:
        return c * (1.0 + EXTRA_UNIT_SHARE * (u - 1.0))

    standard = (minutes - travel_m / WALK_M_PER_MIN) / k(units, complexity)
    return 60.0 * REFERENCE_UNITS_PER_LINE / (standard * k(REFERENCE_UNITS_PER_LINE, complexity)
                                              + travel_m / WALK_M_PER_MIN)


def _operations(site: str) -> list[tuple[str, np.datetime64, float, float, float, float]]:
    """Daily (stage, date, throughput, labour hours, backlog, rostered hours) of a site, drawn from the model that
    :mod:`engine.calibration` fits (and the simulator runs), from the site's own random stream.

    Per chain (inbound dock -> putaway; pick -> pack -> outbound dock) the day's work entering the head is a
    uniform 0.55-1.02 share of the chain's smallest nominal capacity; each stage is a queue fed by the stage
    before it the same day, with the effective capacity ``e N (1 - kappa u^2)``, ``u = min(1, a_head / (e N))``:
    congestion comes with the work *offered* to the chain's head that day, as in the model (the backlog waiting
    does not congest). Labour hours are the throughput over the efficiency times the productivity the ingested
    instance will hold (:func:`_reference_productivity`). Throughput and labour hours carry 1 % noise.
    Absenteeism: each day the site rosters ``n = round(W / (8 (1 - p)))`` shifts for its W hours worked,
    ``x ~ Binomial(n, p)`` stay away, so the hours rostered are the hours worked / (1 - x / n) at every stage
    (``p`` = :data:`TRUE_ABSENCE`).
    """
    rng = np.random.default_rng([SEED, SITE_STREAM[site]])
    eq, hours = EQUIPMENT[site]
    eff = TRUE_EFFICIENCY[site]
    nominal = {stage: eq[stage][0] * eq[stage][1] * hours for stage in STAGES}
    prod = {stage: _reference_productivity(*MEASURES[site][stage]) for stage in STAGES}
    out: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for chain in CHAINS:
        head = min(nominal[k] for k in chain) * rng.uniform(0.55, 1.02, HISTORY_DAYS)
        offered = head
        for stage in chain:
            util = np.minimum(1.0, head / (eff * nominal[stage]))
            cap = eff * nominal[stage] * (1.0 - TRUE_CONGESTION * util**2)
            done, backlog, q = np.zeros(HISTORY_DAYS), np.zeros(HISTORY_DAYS), 0.0
            for day in range(HISTORY_DAYS):
                done[day] = min(q + offered[day], cap[day])
                q = q + offered[day] - done[day]
                backlog[day] = q
            labour = done / (eff * prod[stage]) * rng.normal(1.0, 0.01, HISTORY_DAYS)
            out[stage] = (done * rng.normal(1.0, 0.01, HISTORY_DAYS), labour, backlog)
            offered = done  # the next stage of the chain gets this stage's output the same day
    worked = sum(out[stage][1] for stage in STAGES)
    p = TRUE_ABSENCE[site]
    shifts = np.maximum(np.round(worked / (8.0 * (1.0 - p))), 1.0)
    present = 1.0 - rng.binomial(shifts.astype(np.int64), p) / shifts
    return [(stage, HISTORY_START + day, out[stage][0][day], out[stage][1][day], out[stage][2][day],
             out[stage][1][day] / present[day]) for stage in STAGES for day in range(HISTORY_DAYS)]


def wms_a(rng: np.random.Generator) -> None:
    """Write the WMS A exports (UK legacy WMS: imperial units, GBP, its own codes) into ``raw/wms_a``."""
    out = HERE / "wms_a"
    _write(out / "facilities.csv", ["FAC_CD", "FAC_NAME", "FAC_TYPE", "LAT_DEG", "LON_DEG", "CTRY", "RGN",
                                    "STAT", "FIXED_COST_GBP_YR", "AUTO_LVL", "TZ", "SQ_FT"],
           [[c, n, t, la, lo, "GB", "uk", s, f, a, "Europe/London", 250000 + 10000 * i]
            for i, (c, n, t, la, lo, s, a, f) in enumerate(A_SITES)])
    eq_rows = []
    for code in ("LHR1", "MAN2", "BHX9"):
        eq, hours = EQUIPMENT[code]
        for stage, (count, rate) in eq.items():
            if stage != "storage":  # the legacy WMS keeps rates per minute, some per hour
                unit = "EA/HR" if stage == "outbound_dock" else "EA/MIN"
                eq_rows.append([code, A_STAGE[stage], count, rate if unit == "EA/HR" else round(rate / 60.0, 4),
                                unit, hours])
    _write(out / "equipment.csv", ["FAC_CD", "PROC_CD", "UNITS", "RATE", "RATE_UOM", "SHIFT_HRS"], eq_rows)
    _write(out / "locations.csv", ["FAC_CD", "LOC_COUNT", "EA_PER_LOC"],
           [[code, *EQUIPMENT[code][0]["storage"]] for code in ("LHR1", "MAN2", "BHX9")])
    _write(out / "items.csv", ["ITEM_NBR", "ITEM_DESC", "WT_LB", "CUBE_FT3", "UNIT_COST_GBP", "HNDL_CLS"],
           [[a, p.replace("SKU_", "").title(), round(kg * LB_PER_KG, 3), round(m3 * FT3_PER_M3, 4),
             round(v * GBP_PER_EUR, 2), cls] for p, (kg, m3, v, cls, a, _) in PRODUCTS.items()])
    _write(out / "customers.csv", ["CUST_RGN", "RGN_NAME", "LAT_DEG", "LON_DEG", "POP_IDX"],
           [[c, n, la, lo, w] for c, n, la, lo, w in A_ZONES])
    demand = _weekly_demand(rng, A_ZONES, 60000.0)
    item = {p: v[4] for p, v in PRODUCTS.items()}
    lines = []
    for (zone, p, week), qty in demand.items():
        # two order-line extracts per zone, product and week, at local times (one late on Sunday)
        first = int(qty * 0.6)
        day0 = HORIZON_START + 7 * week
        lines.append([f"{day0 + 1} 09:{rng.integers(10, 59)}:00", zone, item[p], first])
        lines.append([f"{day0 + 6} 23:{rng.integers(10, 59)}:00", zone, item[p], qty - first])
    lines.sort()
    _write(out / "orders.csv", ["ORD_TS", "CUST_RGN", "ITEM_NBR", "QTY_EA"], lines)
    _write(out / "onhand.csv", ["FAC_CD", "ITEM_NBR", "OH_QTY"],
           [[f, item[p], int(9000 * s * (1.3 if f == "LHR1" else 1.0))]
            for f in ("LHR1", "MAN2") for p, s in PRODUCT_SHARE.items()])
    _write(out / "port_receipts.csv", ["FAC_CD", "ITEM_NBR", "WEEK_START", "MAX_QTY"],
           [["FXT", item[p], str(HORIZON_START + 7 * w), 45000] for p in PRODUCTS for w in range(WEEKS)])
    _write(out / "labor.csv", ["FAC_CD", "WAGE_GBP_HR", "HEADCOUNT", "OT_WAGE_GBP_HR", "OT_MAX_HRS_WK",
                               "STD_HRS_WK"],
           [["LHR1", 13.90, 160, 20.85, 900, 37.5], ["MAN2", 12.40, 110, 18.60, 700, 37.5],
            ["BHX9", 12.80, 80, 19.20, 500, 37.5]])
    _write(out / "labor_std.csv", ["FAC_CD", "PROC_CD", "MIN_PER_LINE", "UNITS_PER_LINE", "TRAVEL_FT_PER_LINE",
                                   "TASK_CPLX", "LINES_MEASURED"],
           [[f, A_STAGE[s], t, u, round(d / 0.3048, 1), c, int(rng.integers(4000, 9000))]
            for f, m in MEASURES.items() if f in ("LHR1", "MAN2", "BHX9") for s, (t, u, d, c) in m.items()])
    ops = []
    for site in ("LHR1", "MAN2"):
        for stage, day, done, labour, backlog, rostered in _operations(site):
            # two shifts a day; backlog is reported at the end of each shift; minutes worked and rostered
            ops.append([site, A_STAGE[stage], f"{day} 06:00", round(done * 0.55), round(labour * 0.55 * 60),
                        round(rostered * 0.55 * 60), round(backlog + done * 0.45)])
            ops.append([site, A_STAGE[stage], f"{day} 14:00", round(done) - round(done * 0.55),
                        round(labour * 60) - round(labour * 0.55 * 60),
                        round(rostered * 60) - round(rostered * 0.55 * 60), round(backlog)])
    _write(out / "daily_ops.csv", ["FAC_CD", "PROC_CD", "SHIFT_START", "UNITS", "LABOR_MIN", "ROSTER_MIN",
                                   "BACKLOG_EOS"], ops)


def wms_b(rng: np.random.Generator) -> None:
    """Write the WMS B exports (Benelux WCS: wide, metric, decimal commas, UTC) into ``raw/wms_b``."""
    out = HERE / "wms_b"
    cap_cols = [f"cap_{B_STAGE[s]}_{m}" for s in (*STAGES, "storage") for m in ("units", "uph")]
    rows = []
    for code, name, typ, la, lo, state, auto, fixed in B_SITES:
        eq, hours = EQUIPMENT.get(code, ({}, 0.0))
        caps = []
        for s in (*STAGES, "storage"):
            count, rate = eq.get(s, (None, None))
            caps += ["" if count is None else _dec(count, 0), "" if rate is None else _dec(rate, 1)]
        country = {"DUS": "DE"}.get(code, "NL")
        rows.append([code, name, typ, _dec(la, 4), _dec(lo, 4), country, "benelux-rhine", state, _dec(fixed, 0),
                     auto, _dec(hours, 1) if hours else "", *caps])
    _write(out / "site_master.csv", ["Site", "Description", "Type", "Latitude", "Longitude", "Country", "Region",
                                     "State", "FixCostEURyr", "Automation", "OpHours", *cap_cols], rows, sep=";")
    _write(out / "articles.csv", ["Article", "Weight_g", "Volume_l", "Value_EUR", "Class"],
           [[b, _dec(kg * 1000, 0), _dec(m3 * 1000, 2), _dec(v, 2), cls.upper()]
            for _, (kg, m3, v, cls, _, b) in PRODUCTS.items()], sep=";")
    _write(out / "customer_areas.csv", ["Area", "AreaName", "Lat", "Lon", "Weight"],
           [[c, n, _dec(la, 4), _dec(lo, 4), _dec(w, 1)] for c, n, la, lo, w in B_ZONES], sep=";")
    demand = _weekly_demand(rng, B_ZONES, 52000.0)
    weeks = [f"2026-W{10 + w:02d}" for w in range(WEEKS)]
    art = {p: v[5] for p, v in PRODUCTS.items()}
    _write(out / "demand_weekly.csv", ["Area", "Article", *weeks],
           [[z[0], art[p], *[demand[(z[0], p, w)] for w in range(WEEKS)]] for z in B_ZONES for p in PRODUCTS],
           sep=";")
    _write(out / "stock.csv", ["Site", "Article", "Qty"],
           [[s, art[p], int(8000 * sh)] for s in ("DUS", "VNO") for p, sh in PRODUCT_SHARE.items()], sep=";")
    _write(out / "inbound_plan.csv", ["Site", "Article", *weeks],
           [["RTM", art[p], *([40000] * WEEKS)] for p in PRODUCTS], sep=";")
    _write(out / "labour.csv", ["Site", "Wage_EUR_h", "OT_Wage_EUR_h", "FTE_max", "OT_cap_h_wk", "Hours_FTE_wk"],
           [["DUS", _dec(19.5), _dec(29.25), 70, 400, 38], ["VNO", _dec(17.8), _dec(26.7), 95, 600, 40]], sep=";")
    perf = []
    for site in ("DUS", "VNO"):
        row = [site]
        for s in STAGES:
            t, u, d, c = MEASURES[site][s]
            row += [_dec(t * 60, 1), _dec(u, 2), _dec(d, 0), _dec(c, 2)]
        perf.append(row)
    _write(out / "perf_wide.csv", ["Site", *[f"{B_STAGE[s]}_{m}" for s in STAGES
                                             for m in ("sec_per_line", "units_per_line", "travel_m", "cplx")]],
           perf, sep=";")
    kpi: dict[tuple[str, np.datetime64], dict[str, str]] = {}
    for site in ("DUS", "VNO"):
        for stage, day, done, labour, backlog, rostered in _operations(site):
            # the WCS stamps each operating day at its local midnight, in UTC (CET = UTC+1 in February)
            ts = f"{day - 1}T23:00:00Z"
            rec = kpi.setdefault((site, day), {"ts": ts})
            rec[f"{B_STAGE[stage]}_qty"] = _dec(done, 1)
            rec[f"{B_STAGE[stage]}_hrs"] = _dec(labour, 2)
            rec[f"{B_STAGE[stage]}_ros"] = _dec(rostered, 2)
            rec[f"{B_STAGE[stage]}_bl"] = _dec(backlog, 1)
    cols = [f"{B_STAGE[s]}_{m}" for s in STAGES for m in ("qty", "hrs", "ros", "bl")]
    _write(out / "kpi_daily.csv", ["ts_utc", "site", *cols],
           [[r["ts"], site, *[r[c] for c in cols]] for (site, _), r in sorted(kpi.items())], sep=";")


if __name__ == "__main__":
    generator = np.random.default_rng(SEED)
    wms_a(generator)
    wms_b(generator)
