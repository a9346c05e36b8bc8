#!/usr/bin/env python3
"""Check a built wheel: no protocol sandbox inside, and no shipped module imports one at import time.

Usage: scripts/check-wheel.py dist/wojia-*.whl
Sandboxes are development tools (``<package>/sandbox/``); production code may reach one only through
a lazy import inside a development-only factory, which this check allows (function bodies are skipped).
"""

from __future__ import annotations

import ast
import sys
import zipfile


def module_level_imports(tree: ast.Module) -> list[str]:
    names: list[str] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.Import):
                names.extend(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module:
                names.append(node.module)
                names.extend(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.If) and _is_type_checking(node.test):
                visit(node.orelse)  # ``if TYPE_CHECKING:`` never runs
            elif isinstance(node, ast.If | ast.Try | ast.With):
                for field in ("body", "orelse", "finalbody", "handlers"):
                    for child in getattr(node, field, []):
                        visit(child.body if isinstance(child, ast.ExceptHandler) else [child])

    visit(tree.body)
    return names


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def main(path: str) -> int:
    problems: list[str] = []
    with zipfile.ZipFile(path) as wheel:
        members = wheel.namelist()
        for name in members:
            parts = name.split("/")
            if "sandbox" in parts[:-1] or parts[-1] == "sandbox.py":
                problems.append(f"sandbox file shipped: {name}")
        for name in members:
            if not name.endswith(".py") or "/migrations/" in name:
                continue
            tree = ast.parse(wheel.read(name), filename=name)
            for imported in module_level_imports(tree):
                if "sandbox" in imported.split("."):
                    problems.append(f"{name} imports {imported} at import time")
    for p in problems:
        print(p)
    print(f"{path}: {len(members)} files, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1]))
