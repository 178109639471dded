"""twinplan engine: data model, validation, scenarios, simulator, KPIs, CLI."""

from engine.instance import Instance, load_instance, validate_instance
from engine.validation import Finding, InstanceValidationError, ValidationReport

__all__ = ["Finding", "Instance", "InstanceValidationError", "ValidationReport", "load_instance",
           "validate_instance"]
