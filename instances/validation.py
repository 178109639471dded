"""Validation findings, located as ``FILE:ROW:COLUMN: message``.

ROW is the 1-based data row of the file (the header is not counted); 0 means the file as a whole.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml


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
    if not p.is_file():
        raise error(f"{p}: no such {what} file")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise error(f"{p}: not valid YAML: {exc}") from None


def read_csv_located(path: str | Path, fname: str, report: ValidationReport, **read_kw: Any) -> pd.DataFrame | None:
    """``pd.read_csv`` as strings; unreadable files become a located finding in ``report`` (and None).

    Covers wrong encodings, empty files and malformed CSV, each named ``FILE:0:: message``.
    """
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig", **read_kw)
    except UnicodeDecodeError as exc:
        report.error(fname, 0, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})")
    except pd.errors.EmptyDataError:
        report.error(fname, 0, "", "file is empty (expected a header row)")
    except (pd.errors.ParserError, ValueError) as exc:
        report.error(fname, 0, "", f"cannot parse CSV: {str(exc).strip().splitlines()[-1]}")
    return None
