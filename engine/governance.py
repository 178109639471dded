"""Governance: who may run what, decided before any solve, and recorded in the audit table.

A policy is a YAML file mapping roles to what they may run, and users to roles::

    roles:
      planner:                          # may run tactical what-ifs on any instance
        scenario_classes: [tactical]    # strategic | tactical | "*"
        decisions: ["*"]                # consolidation | redistribution | capacity | "*"
        instances: ["*"]                # instance names; shell-style patterns (eu_*) allowed
      network_strategist:
        scenario_classes: [strategic, tactical]
        decisions: [consolidation, capacity]
        instances: [eu_fba, tiny]
        max_runs: 500                   # optional: the largest sweep the role may start
    users:
      alice: [network_strategist, planner]
      bob: planner
    default_roles: []                   # roles of users not listed (none: they may run nothing)

A run is allowed when at least one of the user's roles allows its scenario class, decision and instance
(and, for a sweep, its size). The verdict names the rule that allowed it (``roles.planner``) or, when refused,
every role considered and the first dimension each one refused.

The user is ``--as USER`` when given, else ``$TWINPLAN_USER``, else the login name. The policy is ``--policy
FILE``, else ``$TWINPLAN_POLICY``; with neither, the *open* policy allows everything (and says so in the
audit). The user name is self-declared: the policy makes runs attributable and stops mistakes; it is not an
authentication system.
"""

from __future__ import annotations

import fnmatch
import getpass
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, Field

from engine.scenario import SCENARIO_CLASSES
from formulations.registry import DECISIONS
from instances.validation import (
    Finding,
    Name,
    Names,
    Text,
    YamlInputError,
    YamlModel,
    raise_findings,
    read_yaml_file,
    validate_yaml,
)

OPEN_POLICY_SOURCE = "<open policy: no policy file given>"


class PolicyError(YamlInputError):
    """The policy file is invalid; the message names the file and the key (every finding)."""


def _pattern_of(allowed: tuple[str, ...]) -> Any:
    """A name type whose shell-style pattern must match one of ``allowed``."""
    def check(v: str) -> str:
        if not any(fnmatch.fnmatchcase(a, v) for a in allowed):
            raise ValueError(f"unknown value {v!r} (allowed: {list(allowed)} or '*')")
        return v
    return Annotated[Name, AfterValidator(check)]


def _one_or_list(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


class RoleSpec(YamlModel):
    """``roles.<name>``: what the role may run (shell-style patterns, ``*`` = anything)."""

    description: Text | None = None
    scenario_classes: Annotated[list[_pattern_of(SCENARIO_CLASSES)], BeforeValidator(_one_or_list)] | None = None
    decisions: Annotated[list[_pattern_of(DECISIONS)], BeforeValidator(_one_or_list)] | None = None
    instances: Names | None = None
    max_runs: Annotated[int, Field(ge=0)] | None = None


class PolicyFile(YamlModel):
    """A policy file (see the module docstring)."""

    description: Text | None = None
    roles: dict[Name, RoleSpec | None] | None = None
    users: dict[Name, Names] | None = None
    default_roles: Names | None = None


@dataclass(frozen=True)
class Role:
    """What one role may run; each field is a tuple of shell-style patterns (``*`` = anything)."""

    name: str
    scenario_classes: tuple[str, ...] = ()
    decisions: tuple[str, ...] = ()
    instances: tuple[str, ...] = ()
    max_runs: int | None = None

    def refusal(self, scenario_class: str, decision: str, instance: str, runs: int = 1) -> str | None:
        """Why this role may not run the request (None when it may)."""
        for what, value, allowed in (("scenario class", scenario_class, self.scenario_classes),
                                     ("decision", decision, self.decisions),
                                     ("instance", instance, self.instances)):
            if not any(fnmatch.fnmatchcase(value, pat) for pat in allowed):
                key = {"scenario class": "scenario_classes", "decision": "decisions",
                       "instance": "instances"}[what]
                return f"roles.{self.name}.{key} allows {list(allowed)}, not {what} {value!r}"
        if self.max_runs is not None and runs > self.max_runs:
            return f"roles.{self.name}.max_runs is {self.max_runs}, the sweep has {runs} runs"
        return None


@dataclass(frozen=True)
class Verdict:
    """The decision on one request: allowed or refused, by which rule, and why."""

    allowed: bool
    user: str
    roles: tuple[str, ...]
    rule: str
    reason: str
    scenario_class: str
    decision: str
    instance: str
    policy: str

    @property
    def message(self) -> str:
        """One line for the user: who may (not) run what, by which rule, under which policy."""
        what = f"{self.scenario_class} {self.decision} on instance {self.instance!r}"
        if self.allowed:
            return f"user {self.user!r} may run {what} ({self.rule}; policy {self.policy})"
        roles = ", ".join(self.roles) if self.roles else "no role"
        return (f"refused: user {self.user!r} ({roles}) may not run {what}: {self.reason} "
                f"(policy {self.policy})")


class PolicyRefused(PermissionError):
    """A run the policy forbids; raised before any solve. ``exit_code`` is the CLI's (5)."""

    exit_code = 5

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        super().__init__(verdict.message)


@dataclass(frozen=True)
class Policy:
    """Roles, the roles of each user, and the roles of users not listed."""

    roles: dict[str, Role] = field(default_factory=dict)
    users: dict[str, tuple[str, ...]] = field(default_factory=dict)
    default_roles: tuple[str, ...] = ()
    source: str = OPEN_POLICY_SOURCE
    open: bool = False

    def roles_of(self, user: str) -> tuple[str, ...]:
        """The roles of ``user``: its ``users`` entry, else ``default_roles``."""
        return self.users.get(user, self.default_roles)

    def check(self, user: str, scenario_class: str, decision: str, instance: str, runs: int = 1) -> Verdict:
        """Allowed when one of the user's roles allows class, decision, instance and size."""
        common = {"user": user, "scenario_class": scenario_class, "decision": decision, "instance": instance,
                  "policy": self.source}
        if self.open:
            return Verdict(True, roles=(), rule="open policy", reason="no policy file: everything allowed",
                           **common)
        roles = self.roles_of(user)
        if not roles:
            listed = "not listed in users and default_roles is empty" if user not in self.users else "has no role"
            return Verdict(False, roles=(), rule="users", reason=f"user {user!r} {listed}", **common)
        reasons = []
        for name in roles:
            why = self.roles[name].refusal(scenario_class, decision, instance, runs)
            if why is None:
                return Verdict(True, roles=roles, rule=f"roles.{name}", reason="allowed", **common)
            reasons.append(why)
        return Verdict(False, roles=roles, rule=reasons[0].split(" ", 1)[0], reason="; ".join(reasons), **common)


def _unknown_roles(data: dict[str, Any], source: str) -> list[Finding]:
    """Users and default roles naming roles the policy does not define (checked on the raw mapping, so they are
    reported together with any other finding)."""
    roles = data.get("roles") if isinstance(data.get("roles"), dict) else {}
    users = data.get("users") if isinstance(data.get("users"), dict) else {}
    out = []
    for where, names in [(f"users.{u}", r) for u, r in users.items()] + [("default_roles", data.get("default_roles"))]:
        names = [names] if isinstance(names, str) else names if isinstance(names, list) else []
        out += [Finding(source, None, where, f"unknown role {r!r} (roles: {sorted(map(str, roles))})")
                for r in names if isinstance(r, str) and r not in roles]
    return out


def policy_from_dict(data: Any, source: str = "<inline>") -> Policy:
    """Build and check a Policy from a parsed mapping; raises PolicyError with every finding (file and key)."""
    if not isinstance(data, dict):
        raise PolicyError(f"{source}: must be a mapping with roles and users")
    model, findings = validate_yaml(PolicyFile, data, source)
    findings += _unknown_roles(data, source)
    raise_findings(findings, PolicyError)
    assert model is not None
    roles = {name: Role(name=name, scenario_classes=tuple(spec.scenario_classes or ()) if spec else (),
                        decisions=tuple(spec.decisions or ()) if spec else (),
                        instances=tuple(spec.instances or ()) if spec else (),
                        max_runs=spec.max_runs if spec else None)
             for name, spec in (model.roles or {}).items()}
    users = {u: tuple(r) for u, r in (model.users or {}).items()}
    return Policy(roles=roles, users=users, default_roles=tuple(model.default_roles or ()), source=source)


def load_policy(path: str | Path) -> Policy:
    """Read a policy YAML file (safe YAML only)."""
    return policy_from_dict(read_yaml_file(path, "policy", PolicyError), str(Path(path)))


def find_policy(path: str | Path | None = None) -> Policy:
    """The policy in force: ``path``, else ``$TWINPLAN_POLICY``, else the open policy."""
    path = path or os.environ.get("TWINPLAN_POLICY") or None
    if path is None:
        return Policy(open=True)
    return load_policy(path)


def current_user(as_user: str | None = None) -> str:
    """``as_user``, else ``$TWINPLAN_USER``, else the login name."""
    if as_user:
        return as_user
    env = os.environ.get("TWINPLAN_USER")
    if env:
        return env
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return os.environ.get("USER") or f"uid{os.getuid()}"


def authorize(policy: Policy, user: str, scenario: Any, instance: str, runs: int = 1) -> Verdict:
    """The verdict for ``user`` running ``scenario`` (a Scenario, or None = tactical base run) on ``instance``."""
    scenario_class = getattr(scenario, "scenario_class", "tactical") if scenario is not None else "tactical"
    decision = getattr(scenario, "decision", "consolidation") if scenario is not None else "consolidation"
    return policy.check(user, scenario_class, decision, instance, runs)


def audit_row(verdict: Verdict, action: str, scenario_name: str | None = None, **fields: Any) -> dict[str, Any]:
    """An audit-table row (see :mod:`engine.store`) for a verdict plus run facts (run_id, hashes, status...)."""
    row = {"user_name": verdict.user, "action": action, "allowed": verdict.allowed, "rule": verdict.rule,
           "reason": verdict.reason, "policy": verdict.policy, "instance": verdict.instance,
           "scenario": scenario_name, "scenario_class": verdict.scenario_class, "decision": verdict.decision}
    hashes = fields.get("hashes")
    if isinstance(hashes, dict) and "input_hash" in hashes:
        row["input_hash"] = hashes["input_hash"]
    row.update(fields)
    return row


def enforce(policy: Policy, user: str, scenario: Any, instance: str, *, store: Any = None, action: str = "plan",
            runs: int = 1, **fields: Any) -> Verdict:
    """Authorize a request; when refused, append an audit row to ``store`` (if given) and raise PolicyRefused.

    Call it before any solve. ``fields`` (run_id, sweep_id, hashes...) go into the refusal's audit row.
    """
    verdict = authorize(policy, user, scenario, instance, runs)
    if not verdict.allowed:
        if store is not None:
            store.append_audit(audit_row(verdict, action, getattr(scenario, "name", None), status="refused",
                                         **fields))
        raise PolicyRefused(verdict)
    return verdict


__all__ = ["Policy", "PolicyError", "PolicyRefused", "Role", "Verdict", "audit_row", "authorize", "current_user",
           "enforce", "find_policy", "load_policy", "parse_since", "policy_from_dict"]


def parse_since(text: str) -> Any:
    """A time for ``--since``: ISO date/time (UTC) or a duration back from now (``90m``, ``12h``, ``7d``)."""
    import re
    from datetime import UTC, datetime, timedelta

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text)
    if m:
        unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[m.group(2)]
        return datetime.now(UTC).replace(tzinfo=None) - timedelta(**{unit: float(m.group(1))})
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since: {text!r} is neither an ISO date/time nor a duration like 12h or 7d") from None


