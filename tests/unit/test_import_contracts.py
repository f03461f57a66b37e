"""Import contracts that import-linter cannot check (it does not see compiled modules)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "minidock"


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_only_minidock_linux_imports_the_cffi_module():
    importers = sorted(
        str(p.relative_to(PACKAGE.parent))
        for p in PACKAGE.rglob("*.py")
        if any(m == "minidock._native" or m.startswith("minidock._native.")
               for m in imported_modules(p))
    )
    assert importers == ["minidock/linux/__init__.py"]


def test_the_contract_test_sees_imports():
    assert "minidock._native" in imported_modules(PACKAGE / "linux" / "__init__.py")
