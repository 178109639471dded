"""Formulations: one MILP per network-level decision, each returning a :class:`~instances.plan.Plan`.

- :mod:`formulations.network_design`: consolidation (open/close DCs, add capacity, route flows);
- :mod:`formulations.common`: the shared building blocks (arcs, flows, stage capacity, labour, costs);
- :mod:`formulations.check`: :func:`check_plan`, the solver-independent re-check of any plan.

Submodules are imported lazily by their users (``from formulations.network_design import ...``) so that
reading a saved plan does not import linopy.
"""
