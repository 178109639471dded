"""Validation findings, located as ``FILE:ROW:COLUMN: message`` (tables) or ``FILE: key.path: message`` (YAML).

ROW is the 1-based data row of the file (the header is not counted); 0 means the file as a whole. A finding
about a YAML-shaped input has no row (None) and names the key path instead (``modifications[0].capacity``).

YAML-shaped inputs (scenario, sweep spec, policy, ingestion mapping, ``instance.yaml``) are validated by
pydantic models derived from :class:`YamlModel`; :func:`validate_yaml` runs one and turns every error into a
located finding (:func:`yaml_findings`), and :class:`YamlInputError` carries the findings to the CLI (exit 2).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Annotated, Any, TypeVar

import pandas as pd
import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

MAX_YAML_NODES = 100_000
"""Most nodes a YAML document may expand to, counting every use of an anchor (``*alias``) in full: a guard
against alias bombs (a few hundred bytes of nested aliases that expand to millions of nodes)."""

MAX_YAML_DEPTH = 100
"""Deepest nesting of mappings and lists a YAML document may have."""


class YAMLLimitError(yaml.YAMLError):
    """A YAML document beyond :data:`MAX_YAML_NODES` or :data:`MAX_YAML_DEPTH` (an alias bomb, a runaway file)."""


class BoundedSafeLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # type: ignore[misc]
    """The safe loader, plus a bound on the size a document expands to (aliases counted in full) and its depth.

    The node graph is measured after composing and before constructing: composing is linear in the text
    (an alias is a reference to the node already built), so the bomb is caught before anything is expanded.
    """

    def get_single_node(self) -> Any:
        """The document's composed node graph, refused (:class:`YAMLLimitError`) when it expands too far."""
        node = super().get_single_node()
        if node is not None:
            _check_yaml_size(node)
        return node


def _check_yaml_size(root: Any) -> None:
    """Raise :class:`YAMLLimitError` when ``root`` expands to more than MAX_YAML_NODES nodes or is too deep."""
    sizes: dict[int, int] = {}
    depths: dict[int, int] = {}

    def visit(node: Any, depth: int) -> tuple[int, int]:
        key = id(node)
        if key in sizes:
            return sizes[key], depths[key]
        if depth > MAX_YAML_DEPTH:
            raise YAMLLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        sizes[key], depths[key] = 1, 1  # a cycle (recursive alias) counts once while being visited
        if isinstance(node, yaml.MappingNode):
            children = [c for pair in node.value for c in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            children = []
        size, deepest = 1, 0
        for c in children:
            s, d = visit(c, depth + 1)
            size += s
            deepest = max(deepest, d)
            if size > MAX_YAML_NODES:
                raise YAMLLimitError(f"expands to more than {MAX_YAML_NODES:,} values (anchors and aliases "
                                     "counted at every use): refused as a possible alias bomb")
        sizes[key], depths[key] = size, deepest + 1
        if deepest + 1 + depth > MAX_YAML_DEPTH:
            raise YAMLLimitError(f"nested deeper than {MAX_YAML_DEPTH} levels")
        return size, deepest + 1

    visit(root, 0)


def safe_load_bounded(text: str | bytes) -> Any:
    """``yaml.safe_load`` with :class:`BoundedSafeLoader`: no Python tags, no alias bombs, bounded depth."""
    loader = BoundedSafeLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


@dataclass(frozen=True)
class Finding:
    """One error or warning about an input file: a table cell (``row`` >= 0) or a YAML key (``row`` None)."""

    file: str
    row: int | None
    column: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        if self.row is None:
            return f"{self.file}: {self.column}: {self.message}" if self.column else f"{self.file}: {self.message}"
        return f"{self.file}:{self.row}:{self.column}: {self.message}"


@dataclass
class ValidationReport:
    """All findings of one validation pass."""

    findings: list[Finding] = field(default_factory=list)

    def error(self, file: str, row: int | None, column: str, message: str) -> None:
        """Add an error located at ``file:row:column`` (row None: ``column`` is a YAML key path)."""
        self.findings.append(Finding(file, None if row is None else int(row), column, message, "error"))

    def warning(self, file: str, row: int | None, column: str, message: str) -> None:
        """Add a warning located like :meth:`error`."""
        self.findings.append(Finding(file, None if row is None else int(row), column, message, "warning"))

    def extend(self, other: ValidationReport | list[Finding]) -> None:
        """Add the findings of another report (or a list of findings)."""
        self.findings.extend(other.findings if isinstance(other, ValidationReport) else other)

    @property
    def errors(self) -> list[Finding]:
        """The findings of severity ``error``."""
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        """The findings of severity ``warning``."""
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        """True when there is no error (warnings allowed)."""
        return not self.errors

    def to_frame(self) -> pd.DataFrame:
        """The findings as a table (file, row, column, message, severity)."""
        df = pd.DataFrame([vars(f) for f in self.findings], columns=["file", "row", "column", "message", "severity"])
        return df.astype({"row": "Int64"})  # a YAML finding has no row: <NA>, not a float NaN

    def format(self) -> str:
        """Every finding on its own line, errors first, prefixed ``error:`` / ``warning:``."""
        lines = [f"error: {f}" for f in self.errors] + [f"warning: {f}" for f in self.warnings]
        return "\n".join(lines)


class InstanceValidationError(ValueError):
    """An instance failed validation; ``report`` holds every finding."""

    def __init__(self, report: ValidationReport, source: str = "") -> None:
        self.report = report
        head = f"invalid instance {source}: " if source else "invalid instance: "
        lines = [str(f) for f in report.errors]
        shown = "\n".join(lines[:50])
        more = f"\n... and {len(lines) - 50} more" if len(lines) > 50 else ""
        super().__init__(f"{head}{len(lines)} error(s)\n{shown}{more}")


def read_yaml_file(path: str | Path, what: str, error: type[Exception]) -> Any:
    """Parse a YAML file with the safe loader; a missing file or bad YAML raises ``error`` naming the file.

    ``what`` names the kind of file in the message (``scenario``, ``policy``, ``sweep spec``).
    """
    p = Path(path)
    try:
        if not p.is_file():
            raise error(f"{p}: no such {what} file")
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise error(f"{p}: not valid YAML: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise error(f"{p}: cannot read {what} file: {exc.strerror or exc}") from None
    try:
        return safe_load_bounded(text)
    except yaml.YAMLError as exc:
        raise error(f"{p}: not valid YAML: {exc}") from None
    except RecursionError:
        raise error(f"{p}: not valid YAML: nested too deeply") from None


def read_csv_located(path: str | Path, fname: str, report: ValidationReport, **read_kw: Any) -> pd.DataFrame | None:
    """``pd.read_csv`` as strings; unreadable files become a located finding in ``report`` (and None).

    Covers wrong encodings, empty files and malformed CSV, each named ``FILE:0:: message``, and the structure
    pandas would silently repair: a duplicate column name in the header (``FILE:0:NAME``, unless the caller
    reads the header itself with ``header=None``) and a ragged row, one with more or fewer fields than the header
    (``FILE:ROW:`` at that data row; pandas would shift a longer first row into an index, pad shorter ones).
    """
    try:
        if not _csv_structure_ok(path, fname, report, read_kw):
            return None
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", **read_kw)
    except UnicodeDecodeError as exc:
        report.error(fname, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except pd.errors.EmptyDataError:
        report.error(fname, 0, "", "file is empty (expected a header row)")
    except (pd.errors.ParserError, ValueError) as exc:
        report.error(fname, 0, "", f"cannot parse CSV: {str(exc).strip().splitlines()[-1]}")
    except OSError as exc:
        report.error(fname, 0, "", f"cannot read file: {exc.strerror or exc}")
    return None


# ---------------------------------------------------------------------------------------------------
# YAML-shaped inputs (scenario, sweep spec, policy, mapping, instance.yaml): pydantic models, one error format
# ---------------------------------------------------------------------------------------------------
class YamlModel(BaseModel):
    """Base of every model of a YAML-shaped input.

    Unknown keys are errors (``extra="forbid"``), numbers and booleans are strict (``"5"`` is not 5, ``yes`` is
    only true when YAML parses it so), NaN and infinity are refused, and validated models are frozen.
    """

    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _scalar_text(v: Any) -> Any:
    """YAML scalars that name things (``1234`` as a site code, ``2026`` as a name) as text; others unchanged."""
    if isinstance(v, int | float | date) and not isinstance(v, bool):
        return str(v)
    return v


Name = Annotated[str, BeforeValidator(_scalar_text), Field(min_length=1)]
"""A non-empty name or id; a YAML number (``name: 2026``) counts as its text."""

Text = Annotated[str, BeforeValidator(_scalar_text)]
"""Free text (a description); a YAML number counts as its text."""

Names = Annotated[list[Name], BeforeValidator(lambda v: [v] if isinstance(v, str | int) and
                                             not isinstance(v, bool) else v)]
"""A list of names; a single name stands for a one-element list."""


def error_at(key: str | int | tuple[str | int, ...], message: str) -> PydanticCustomError:
    """An error a model validator raises to locate ``message`` at ``key`` below the object it validates.

    A ``model_validator`` error is located at the model itself; ``raise error_at("periods", "...")`` makes
    :func:`yaml_findings` report it at ``<model path>.periods`` instead.
    """
    at = key if isinstance(key, tuple) else (key,)
    return PydanticCustomError("located", "{message}", {"message": message, "at": at})


def key_path(loc: tuple[str | int, ...] | list[str | int]) -> str:
    """A pydantic error location as a key path.

    ``("modifications", 0, "capacity")`` -> ``modifications[0].capacity``.
    """
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _allowed_keys(model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> list[str] | None:
    """The keys a model accepts at ``loc`` (for an unknown-key message), None when it cannot be told."""
    import types
    import typing

    tp: Any = model
    for part in loc:
        while True:  # unwrap Annotated, Optional and the one model of a union
            origin = typing.get_origin(tp)
            if origin is Annotated:
                tp = typing.get_args(tp)[0]
            elif origin in (typing.Union, types.UnionType):
                members = [a for a in typing.get_args(tp) if a is not type(None)]
                models = [a for a in members if isinstance(a, type) and issubclass(a, BaseModel)]
                tp = models[0] if len(models) == 1 else (members[0] if len(members) == 1 else None)
            else:
                break
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            field = tp.model_fields.get(str(part)) or next(
                (f for f in tp.model_fields.values() if f.alias == part), None)
            if field is None:
                return None
            tp = field.annotation
        elif typing.get_origin(tp) in (list, tuple) and isinstance(part, int):
            tp = typing.get_args(tp)[0]
        elif typing.get_origin(tp) is dict:
            tp = typing.get_args(tp)[1]
        else:
            return None
    while typing.get_origin(tp) is Annotated or typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = args[0] if typing.get_origin(tp) is Annotated or len(args) == 1 else None
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return sorted(f.alias or n for n, f in tp.model_fields.items())
    return None


def _message(err: Any, model: type[BaseModel] | None, loc: tuple[str | int, ...]) -> str:
    """One pydantic error as a message: pydantic's own text plus the offending value, or the allowed keys."""
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        allowed = _allowed_keys(model, loc[:-1])
        return "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
    if kind == "missing":
        return "missing required key"
    if kind == "located":
        return str(err["ctx"]["message"])
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        allowed = _allowed_keys(model, loc) if kind != "dict_type" else None
        msg = "must be a mapping" + (f" (keys: {', '.join(allowed)})" if allowed else "")
    msg = msg.removeprefix("Value error, ").removeprefix("Assertion failed, ")
    value = err.get("input")
    if kind != "value_error" and not isinstance(value, dict | list) and len(repr(value)) <= 60:
        msg = f"{msg}, got {value!r}"
    return msg


def yaml_findings(exc: ValidationError, file: str, model: type[BaseModel] | None = None,
                  prefix: tuple[str | int, ...] = ()) -> list[Finding]:
    """Every error of a pydantic ``ValidationError`` as a located finding ``FILE: key.path: message``.

    Parameters
    ----------
    exc : the error raised by ``model.model_validate``.
    file : the file named in each finding.
    model : the validated model (lets an unknown-key message list the allowed keys).
    prefix : key path of the validated object inside the file (e.g. ``("options",)``).
    """
    out = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        if err["type"] == "located":
            loc = loc + tuple(err["ctx"]["at"])
        out.append(Finding(file, None, key_path(prefix + loc), _message(err, model, loc)))
    return out


M = TypeVar("M", bound=BaseModel)


def validate_yaml(model: type[M], data: Any, file: str, *, prefix: tuple[str | int, ...] = (),
                  context: dict[str, Any] | None = None) -> tuple[M | None, list[Finding]]:
    """Validate parsed YAML ``data`` against ``model``: the model (None when invalid) and every finding."""
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        return None, yaml_findings(exc, file, model, prefix)


class YamlInputError(ValueError):
    """A YAML-shaped input is invalid: one message, or every located finding (``FILE: key.path: message``).

    Subclassed per input (``ScenarioError``, ``SweepSpecError``, ``PolicyError``); a ``ValueError``, so the
    CLI reports it as bad input (exit 2).
    """

    def __init__(self, message: str | list[Finding]) -> None:
        self.findings: list[Finding] = [] if isinstance(message, str) else list(message)
        super().__init__(message if isinstance(message, str) else "\n".join(str(f) for f in self.findings))

    @classmethod
    def at(cls, file: str, key: str, message: str) -> YamlInputError:
        """One located error ``FILE: key: message``."""
        return cls([Finding(file, None, key, message)])


def raise_findings(findings: list[Finding], error: type[YamlInputError]) -> None:
    """Raise ``error`` with every finding when there is any."""
    if findings:
        raise error(findings)


MAX_RAGGED_FINDINGS = 50
"""Most ragged rows reported per file (the rest are counted in one more finding)."""


def _csv_structure_ok(path: str | Path, fname: str, report: ValidationReport, read_kw: dict[str, Any]) -> bool:
    """Check the header for duplicate names and every record for the header's number of fields.

    Data rows are numbered as the validator numbers them: 1-based after the header, blank lines skipped.
    """
    sep = read_kw.get("sep", read_kw.get("delimiter")) or ","
    if len(sep) != 1:  # a regex separator: leave the structure to pandas
        return True
    ok = True
    bad: list[tuple[int, int]] = []
    header: list[str] | None = None
    with open(path, encoding="utf-8-sig", newline="") as f:
        row = 0
        for record in csv.reader(f, delimiter=sep, skipinitialspace=bool(read_kw.get("skipinitialspace"))):
            if not record or record == [""]:
                continue
            if header is None:
                header = [c.strip() for c in record]
                continue
            row += 1
            if len(record) != len(header):
                bad.append((row, len(record)))
    if header is None:
        return True  # an empty file: pandas reports it
    if read_kw.get("header", "infer") is not None:
        seen: dict[str, int] = {}
        for i, name in enumerate(header, start=1):
            if name in seen:
                report.error(fname, 0, name, f"duplicate column name in the header (columns {seen[name]} and {i})")
                ok = False
            else:
                seen[name] = i
    for r, n in bad[:MAX_RAGGED_FINDINGS]:
        report.error(fname, r, "", f"row has {n} field(s), the header has {len(header)}")
        ok = False
    if len(bad) > MAX_RAGGED_FINDINGS:
        report.error(fname, bad[MAX_RAGGED_FINDINGS][0], "",
                     f"... and {len(bad) - MAX_RAGGED_FINDINGS} more rows with the wrong number of fields")
    return ok


def did_you_mean(name: str, choices: Any) -> str:
    """``"did you mean 'eu_fba'? "`` for the closest of ``choices`` (empty when none is close)."""
    import difflib

    close = difflib.get_close_matches(str(name), sorted({str(c) for c in choices}), n=2, cutoff=0.6)
    return f"did you mean {' or '.join(repr(c) for c in close)}? " if close else ""
