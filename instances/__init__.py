"""The data model and the bundled data: table schemas, :class:`Instance`, validation, plan tables, generators.

This layer sits above :mod:`solvers` (a plan's status is a :class:`solvers.Termination`) and below everything
else: it imports neither :mod:`formulations` nor :mod:`engine`.
Bundled instances live in sub-folders (``tiny``, ``eu_fba``, ``us_west_port``) next to the seeded generator
(:mod:`instances.generator`) and the OR-Library reader (:mod:`instances.orlib`).
"""

from instances.instance import Instance, load_instance, validate_instance
from instances.validation import Finding, InstanceValidationError, ValidationReport

__all__ = ["Finding", "Instance", "InstanceValidationError", "ValidationReport", "load_instance",
           "validate_instance"]
