"""The registry of decisions: decision name -> the formulation that answers it.

The pipeline, sweeps and the CLI dispatch through :func:`formulation` instead of ``if``/``elif`` on the decision::

    from formulations.registry import formulation

    f = formulation("redistribution")
    plan = f.solve(instance, f.Options(horizon_periods=14), time_limit=60)

The modules are imported on first use, so that reading a saved plan or validating a scenario does not import
linopy.
"""

from __future__ import annotations

from typing import cast

from formulations.protocol import Formulation

DECISIONS: tuple[str, ...] = ("consolidation", "redistribution", "capacity")
"""Every decision twinplan answers, in the order the documentation lists them."""


def _network_design() -> Formulation:
    from formulations import network_design

    return cast(Formulation, network_design)


def _redistribution() -> Formulation:
    from formulations import redistribution

    return cast(Formulation, redistribution)


def _capacity() -> Formulation:
    from formulations import capacity

    return cast(Formulation, capacity)


_LOADERS = {"consolidation": _network_design, "redistribution": _redistribution, "capacity": _capacity}


def formulation(decision: str) -> Formulation:
    """The formulation of ``decision`` (one of :data:`DECISIONS`); ValueError names the known ones."""
    try:
        loader = _LOADERS[decision]
    except (KeyError, TypeError):
        raise ValueError(f"unknown decision {decision!r}; one of {list(DECISIONS)}") from None
    return loader()
