"""Plain Python for JSON and YAML: the one converter every writer of ``*.json`` / ``*.yaml`` and every hash uses.

:func:`to_plain` turns what the data model and the engine hold (numpy scalars and arrays, tuples and sets,
dataclasses, enums such as :class:`solvers.Termination`, dates, tuple-keyed dicts such as a capacity derate
``{(site, stage): factor}``) into dicts, lists, strings, numbers, booleans and None.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, Literal

import numpy as np


def _key(k: Any) -> str:
    """A dict key as text: a tuple key such as ``(site, stage)`` becomes ``"site/stage"``."""
    if isinstance(k, tuple):
        return "/".join(map(str, k))
    if isinstance(k, enum.Enum):
        return str(k.value)
    return k if isinstance(k, str) else str(k)


def to_plain(obj: Any, *, non_finite: Literal["null", "repr", "keep"] = "null",
             other: Literal["str", "keep"] = "str") -> Any:
    """``obj`` as plain Python that ``json.dumps`` / ``yaml.safe_dump`` write without a ``default=``.

    - dataclass instances become dicts of their fields; dict keys become strings (tuple keys ``"a/b"``);
    - lists and tuples become lists, sets sorted lists; numpy arrays lists, numpy scalars Python numbers;
    - enum members become their values (a :class:`solvers.Termination` its string);
    - dates and times become ISO strings;
    - a NaN or infinite float becomes None (``non_finite="null"``, valid JSON), its repr (``"repr"``: ``'nan'``,
      ``'inf'``, as canonical hashes want them told apart from None) or stays (``"keep"``: YAML's ``.nan``);
    - anything else becomes ``str(obj)`` (``other="str"``) or is left as it is (``other="keep"``).
    """
    def plain(o: Any) -> Any:
        if isinstance(o, enum.Enum):
            o = o.value
        if dataclasses.is_dataclass(o) and not isinstance(o, type):
            return plain({f.name: getattr(o, f.name) for f in dataclasses.fields(o)})
        if isinstance(o, dict):
            return {_key(k): plain(v) for k, v in o.items()}
        if isinstance(o, list | tuple):
            return [plain(v) for v in o]
        if isinstance(o, set | frozenset):
            return sorted(plain(v) for v in o)
        if isinstance(o, np.ndarray):
            return [plain(v) for v in o.tolist()]
        if isinstance(o, np.generic):
            o = o.item()
        if isinstance(o, float) and not math.isfinite(o):
            return None if non_finite == "null" else (repr(o) if non_finite == "repr" else o)
        if isinstance(o, str | int | float | bool) or o is None:
            return o
        if hasattr(o, "isoformat"):
            return o.isoformat()
        return str(o) if other == "str" else o

    return plain(obj)
