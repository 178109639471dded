"""Validation findings, located as ``FILE:ROW:COLUMN: message``.

ROW is the 1-based data row of the file (the header is not counted); 0 means the file as a whole.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

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
    """One error or warning about an instance file."""

    file: str
    row: int
    column: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.file}:{self.row}:{self.column}: {self.message}"


@dataclass
class ValidationReport:
    """All findings of one validation pass."""

    findings: list[Finding] = field(default_factory=list)

    def error(self, file: str, row: int, column: str, message: str) -> None:
        self.findings.append(Finding(file, int(row), column, message, "error"))

    def warning(self, file: str, row: int, column: str, message: str) -> None:
        self.findings.append(Finding(file, int(row), column, message, "warning"))

    def extend(self, other: ValidationReport) -> None:
        self.findings.extend(other.findings)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            [vars(f) for f in self.findings], columns=["file", "row", "column", "message", "severity"]
        )

    def format(self) -> str:
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
