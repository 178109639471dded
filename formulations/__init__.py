"""Formulations: one MILP per network-level decision, each returning a :class:`~instances.plan.Plan`.

- :mod:`formulations.protocol`: :class:`~formulations.protocol.Formulation`, the names and signatures every
  formulation module provides (``Options``, ``plan_instance``, ``prepare``, ``build_model``, ``warm_start_from``,
  ``extract_plan``, ``solve``);
- :mod:`formulations.registry`: :func:`~formulations.registry.formulation`, decision name -> its module;
- :mod:`formulations.network_design`: consolidation (open/close DCs, add capacity, route flows);
- :mod:`formulations.redistribution`: truckload transfers and zone re-assignment after a disruption;
- :mod:`formulations.capacity`: the cheapest capacity mix for a daily peak;
- :mod:`formulations.common`: the shared building blocks (arcs, flows, stage capacity, labour, costs);
- :mod:`formulations.check`: :func:`check_plan`, the solver-independent re-check of any plan.

Submodules are imported lazily by their users (``from formulations import network_design``, or through the
registry) so that reading a saved plan does not import linopy.
"""
