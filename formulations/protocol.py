"""The formulation protocol: what every decision's model module answers, under the same names and signatures.

A formulation is a module (``formulations.network_design``, ``formulations.redistribution``,
``formulations.capacity``) that provides, for its decision:

=====================================  ===========================================================================
``DECISION``                           the decision it answers (``"consolidation"``, ``"redistribution"``, ...)
``Options``                            the dataclass of its parameters (every field has a default)
``plan_instance(instance, options)``   the instance its plans are expressed on (the daily peak for capacity)
``prepare(instance, options)``         index sets, arcs and parameters read from the instance (no linopy yet)
``build_model(data)``                  the linopy MILP built from ``prepare``'s data, one ``add_*`` per family
``warm_start_from(data, model, ws)``   a solver warm start from a previous :class:`~instances.plan.Plan`
``extract_plan(data, result)``         a :class:`solvers.SolveResult` read back into plan tables
``solve(instance, options, ...)``      all of the above with the formulation's solve strategy: a Plan
=====================================  ===========================================================================

``solve`` has the same keyword arguments and defaults everywhere (:data:`SOLVE_DEFAULTS`): no time limit and
the solver's own gap unless asked. A formulation may accept further keyword-only arguments of its own (e.g.
redistribution's ``baseline=``). Modules satisfy :class:`Formulation` structurally (PEP 544 allows a module as
a protocol implementation); :mod:`formulations.registry` maps decision names to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from instances.instance import Instance
from instances.plan import Plan

SOLVE_DEFAULTS: dict[str, Any] = {"solver": "highs", "time_limit": None, "mip_gap": None, "threads": None,
                                  "log": None, "warm_start": None, "solver_options": None}
"""Keyword defaults of every formulation's ``solve``: HiGHS, no time limit, the solver's default relative gap,
the solver's thread count, no log file, a cold start, no solver-specific options."""


class Formulation(Protocol):
    """The names and signatures every formulation module provides (see the module docstring)."""

    DECISION: str
    Options: type

    def plan_instance(self, instance: Instance, options: Any = None) -> Instance:
        """The instance the decision's plans are expressed on (and checked and simulated against)."""
        ...

    def prepare(self, instance: Instance, options: Any = None) -> Any:
        """The model's data: index sets, sparse arcs and parameters, read from ``instance``."""
        ...

    def build_model(self, data: Any) -> Any:
        """The linopy model of ``data`` (variables recorded in ``data`` for the read-back)."""
        ...

    def warm_start_from(self, data: Any, model: Any, warm_start: Any) -> Any:
        """A warm start for :func:`solvers.solve` from a Plan (a SolveResult or a dict passes through)."""
        ...

    def extract_plan(self, data: Any, result: Any) -> Plan:
        """The plan tables of a solve result (costs recomputed from the solved values)."""
        ...

    def solve(self, instance: Instance, options: Any = None, *, solver: str = "highs",
              time_limit: float | None = None, mip_gap: float | None = None, threads: int | None = None,
              log: Any = None, warm_start: Any = None, solver_options: Mapping[str, Any] | None = None) -> Plan:
        """Prepare, build, solve and read back: the decision's plan."""
        ...
