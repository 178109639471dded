"""Physical units for ingestion: parse a unit string, check its dimension, convert to the schema unit.

A unit string is a product / quotient of named units with optional integer exponents, e.g. ``lb``,
``ft3`` (or ``ft^3``, ``ft³``), ``units/min``, ``GBP/h``, ``units/(resource unit * h)``. Each named unit
has a factor to a base unit of one dimension:

=========  ======================  =====================================================
dimension  base unit               named units
=========  ======================  =====================================================
mass       kg                      kg, g, t, lb, oz
length     m                       m, cm, mm, km, in, ft, yd, mi
volume     m3 (= length^3)         l, cm3/ft3/in3 by exponent
time       h                       h, min, s, day, week
currency   the instance currency   ``currency`` and any code given a rate (``GBP``, ``USD``)
angle      deg                     deg
period     period                  period (a planning period; not convertible to days)
count      1 (dimensionless)       unit(s), line(s), each, ea, case(s), person(s), module(s),
                                   resource unit(s), station(s), door(s), position(s), fte
=========  ======================  =====================================================

Conversions never guess: a source unit whose dimension differs from the target's is a *unit mismatch*.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_DIMS = ("mass", "length", "time", "currency", "angle", "period")

# name -> (factor to base, dimension index or None for count)
_NAMED: dict[str, tuple[float, str | None]] = {
    "kg": (1.0, "mass"), "g": (1e-3, "mass"), "t": (1000.0, "mass"), "lb": (0.45359237, "mass"),
    "lbs": (0.45359237, "mass"), "oz": (0.028349523125, "mass"),
    "m": (1.0, "length"), "cm": (0.01, "length"), "mm": (0.001, "length"), "km": (1000.0, "length"),
    "in": (0.0254, "length"), "ft": (0.3048, "length"), "yd": (0.9144, "length"), "mi": (1609.344, "length"),
    "h": (1.0, "time"), "hr": (1.0, "time"), "hour": (1.0, "time"), "hours": (1.0, "time"),
    "labour-h": (1.0, "time"), "labor-h": (1.0, "time"),
    "min": (1.0 / 60.0, "time"), "minutes": (1.0 / 60.0, "time"), "s": (1.0 / 3600.0, "time"),
    "sec": (1.0 / 3600.0, "time"), "day": (24.0, "time"), "days": (24.0, "time"),
    "week": (168.0, "time"), "year": (8760.0, "time"),
    "currency": (1.0, "currency"), "deg": (1.0, "angle"), "period": (1.0, "period"),
}
_COUNT = {"unit", "units", "line", "lines", "each", "ea", "case", "cases", "person", "persons", "fte",
          "module", "modules", "resource unit", "resource units", "station", "stations", "door", "doors",
          "position", "positions", "order", "orders", "1", ""}
_LITRE = {"l": 1e-3, "litre": 1e-3, "liter": 1e-3}

_SUPERSCRIPT = str.maketrans({"²": "2", "³": "3"})


@dataclass(frozen=True)
class Unit:
    """A parsed unit: ``factor`` to base units and the exponent of each base dimension."""

    text: str
    factor: float
    dims: tuple[int, ...]

    @property
    def dimension(self) -> str:
        """Readable dimension, e.g. ``mass``, ``length^3``, ``count/time``."""
        num = [d if e == 1 else f"{d}^{e}" for d, e in zip(_DIMS, self.dims) if e > 0]
        den = [d if e == -1 else f"{d}^{-e}" for d, e in zip(_DIMS, self.dims) if e < 0]
        top = "*".join(num) or "count"
        return f"{top}/{'*'.join(den)}" if den else top


class UnitError(ValueError):
    """A unit string that cannot be parsed, or two units of different dimensions."""


def _atom(token: str, rates: dict[str, float]) -> tuple[float, list[int]]:
    token = token.strip()
    m = re.fullmatch(r"(.*?)\s*(?:\^?\s*(-?\d+))?", token)
    name, exp = (m.group(1).strip(), int(m.group(2))) if m and m.group(2) else (token, 1)
    if name.lower() in _COUNT:
        return 1.0, [0] * len(_DIMS)
    dims = [0] * len(_DIMS)
    if name.lower() in _LITRE:
        dims[_DIMS.index("length")] = 3 * exp
        return _LITRE[name.lower()] ** exp, dims
    if name in rates:
        dims[_DIMS.index("currency")] = exp
        return float(rates[name]) ** exp, dims
    key = name if name in _NAMED else name.lower()
    if key not in _NAMED:
        raise UnitError(f"unknown unit {name!r}")
    factor, dim = _NAMED[key]
    if dim is not None:
        dims[_DIMS.index(dim)] = exp
    return factor**exp, dims


def _product(expr: str, rates: dict[str, float]) -> tuple[float, list[int]]:
    factor, dims = 1.0, [0] * len(_DIMS)
    for part in expr.split("*"):
        f, d = _atom(part, rates)
        factor *= f
        dims = [a + b for a, b in zip(dims, d)]
    return factor, dims


def parse_unit(text: str, rates: dict[str, float] | None = None) -> Unit:
    """Parse ``text`` (``a*b/(c*d)``); currency codes in ``rates`` convert at the given rate.

    ``rates`` maps a currency code to the instance currency per one unit of that code.
    """
    rates = rates or {}
    s = str(text).translate(_SUPERSCRIPT).strip()
    if s.count("/") > 1:
        raise UnitError(f"unit {text!r}: at most one '/' (group the denominator in parentheses)")
    top, _, bottom = s.partition("/")
    bottom = bottom.strip()
    if bottom.startswith("(") and bottom.endswith(")"):
        bottom = bottom[1:-1]
    if "(" in top or "(" in bottom or ")" in top or ")" in bottom:
        raise UnitError(f"unit {text!r}: unbalanced parentheses")
    f1, d1 = _product(top, rates)
    f2, d2 = _product(bottom, rates) if bottom else (1.0, [0] * len(_DIMS))
    return Unit(str(text), f1 / f2, tuple(a - b for a, b in zip(d1, d2)))


def conversion_factor(source: str, target: str, rates: dict[str, float] | None = None) -> float:
    """Multiply a value in ``source`` units by this to get ``target`` units; UnitError on mismatch."""
    a, b = parse_unit(source, rates), parse_unit(target, rates)
    if a.dims != b.dims:
        raise UnitError(f"unit mismatch: {source!r} is {a.dimension}, but the target is {target!r} ({b.dimension})")
    return a.factor / b.factor
