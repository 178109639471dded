"""Every public function, class and method of the packages has a docstring (numpy style, see STYLE.md)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "formulations", "instances", "solvers")


def _public(name: str) -> bool:
    return not name.startswith("_")


def missing_docstrings() -> list[str]:
    """``file:line name`` of every public module-level function or class, and every public method of a public
    class, without a docstring."""
    out = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            rel = path.relative_to(ROOT)
            for node in tree.body:
                kinds = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef
                if not isinstance(node, kinds) or not _public(node.name):
                    continue
                if ast.get_docstring(node) is None:
                    out.append(f"{rel}:{node.lineno} {node.name}")
                if isinstance(node, ast.ClassDef):
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and _public(item.name) \
                                and ast.get_docstring(item) is None:
                            out.append(f"{rel}:{item.lineno} {node.name}.{item.name}")
    return out


def test_every_public_function_class_and_method_has_a_docstring() -> None:
    missing = missing_docstrings()
    assert missing == [], f"{len(missing)} without a docstring:\n" + "\n".join(missing)
