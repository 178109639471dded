r"""Productivity normalisation: one standard "time per order line" that makes sites comparable.

WMS and WCS platforms report productivity differently: a manual site reports minutes per pick line
including the walk, an automated goods-to-person site seconds per line with no walk, one counts single
units, the other multi-unit lines. A ``productivity`` source gives, per site and stage, measurements of

- ``minutes_per_line`` :math:`t`: labour minutes per order line, as observed (travel included);
- ``units_per_line`` :math:`u`: units per order line;
- ``travel_m_per_line`` :math:`d`: travel distance per line (0 at goods-to-person stations);
- ``complexity`` :math:`c`: task complexity relative to a standard line (1 = standard; e.g. 1.3 for
  fragile goods or extra scanning), from the WMS task type;
- ``lines`` :math:`n`: how many lines the measurement covers (weight).

With walking speed :math:`v` (``walk_speed_m_per_min``, default 60 m/min) and the extra handling share of
each additional unit on a line :math:`\beta` (``extra_unit_share``, default 0.15), the complexity index
of a line is :math:`\kappa(u, c) = c\,(1 + \beta (u - 1))` and the **standard minutes per line** — the
handling time of a one-unit, standard-complexity line without travel — is

.. math:: h = \frac{t - d / v}{\kappa(u, c)}

It is the figure to compare between a manual and an automated site. Rows are combined per site and
stage with weights :math:`n` (:math:`\bar h`, :math:`\bar d`). The labour productivity written to
``labor.productivity_<stage>`` (units per labour hour) is the one for the network's reference order
profile (``reference_units_per_line`` :math:`u_r`, ``reference_complexity`` :math:`c_r`, default 1) at
the site's own travel distance:

.. math:: P = \frac{60\, u_r}{\bar h\, \kappa(u_r, c_r) + \bar d / v}

When no reference profile is given, :math:`u_r` and :math:`c_r` are the site's own line-weighted
:math:`\bar u, \bar c`, so a single measurement row returns exactly the observed :math:`60\,u/t`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from instances.schema import LABOR_STAGES, Column, TableSchema

PRODUCTIVITY = TableSchema(
    "productivity",
    "Labour productivity measurements per site and stage (normalised during ingestion).",
    (
        Column("site_id", "str", description="site"),
        Column("stage", "str", description="process stage", choices=LABOR_STAGES),
        Column("minutes_per_line", "float", "min/line", description="observed labour minutes per order line",
               min=0.0, min_exclusive=True),
        Column("units_per_line", "float", "units/line", description="units per order line", required=False,
               default=1.0, min=0.0, min_exclusive=True),
        Column("travel_m_per_line", "float", "m/line", description="travel distance per line", required=False,
               default=0.0, min=0.0),
        Column("complexity", "float", "", description="task complexity relative to a standard line",
               required=False, default=1.0, min=0.0, min_exclusive=True),
        Column("lines", "float", "lines", description="order lines measured (weight)", required=False,
               default=1.0, min=0.0, min_exclusive=True),
    ),
)

NORMALISED_COLUMNS = ("site_id", "stage", "lines", "observed_min_per_line", "units_per_line", "travel_m_per_line",
                      "travel_min_per_line", "complexity", "standard_min_per_line", "units_per_labour_hour")

DEFAULT_PARAMETERS = {"walk_speed_m_per_min": 60.0, "extra_unit_share": 0.15}


def complexity_index(units_per_line: np.ndarray | float, complexity: np.ndarray | float,
                     extra_unit_share: float) -> np.ndarray:
    """:math:`\\kappa(u, c) = c (1 + \\beta (u - 1))`."""
    return np.asarray(complexity, dtype=float) * (1.0 + extra_unit_share * (np.asarray(units_per_line) - 1.0))


def standard_minutes(measurements: pd.DataFrame, parameters: dict[str, float] | None = None) -> pd.Series:
    """Standard minutes per line :math:`h` for each measurement row (may be <= 0 for impossible rows)."""
    p = {**DEFAULT_PARAMETERS, **(parameters or {})}
    travel_min = measurements["travel_m_per_line"] / p["walk_speed_m_per_min"]
    kappa = complexity_index(measurements["units_per_line"], measurements["complexity"], p["extra_unit_share"])
    return (measurements["minutes_per_line"] - travel_min) / kappa


def normalise(measurements: pd.DataFrame, parameters: dict[str, float] | None = None) -> pd.DataFrame:
    """Per site and stage: the standard minutes per line and the labour productivity (units/labour-h).

    ``measurements`` has the columns of :data:`PRODUCTIVITY` (typed); rows with :math:`h \\le 0`
    must have been rejected by the caller. Returns :data:`NORMALISED_COLUMNS`.
    """
    p = {**DEFAULT_PARAMETERS, **(parameters or {})}
    m = measurements.copy()
    m["h"] = standard_minutes(m, p)
    w = m["lines"]
    cols = {"h": "standard_min_per_line", "minutes_per_line": "observed_min_per_line",
            "units_per_line": "units_per_line", "travel_m_per_line": "travel_m_per_line",
            "complexity": "complexity"}
    weighted = m[list(cols)].mul(w, axis=0).assign(lines=w, site_id=m["site_id"], stage=m["stage"])
    g = weighted.groupby(["site_id", "stage"], sort=False).sum()
    out = g[list(cols)].div(g["lines"], axis=0).rename(columns=cols)
    out["lines"] = g["lines"]
    out["travel_min_per_line"] = out["travel_m_per_line"] / p["walk_speed_m_per_min"]
    u_ref = p.get("reference_units_per_line")
    u_r = out["units_per_line"] if u_ref is None else float(u_ref)
    c_ref = p.get("reference_complexity")
    c_r = out["complexity"] if c_ref is None else float(c_ref)
    kappa_r = complexity_index(u_r, c_r, p["extra_unit_share"])
    out["units_per_labour_hour"] = 60.0 * u_r / (out["standard_min_per_line"] * kappa_r
                                                 + out["travel_min_per_line"])
    return out.reset_index()[list(NORMALISED_COLUMNS)]
