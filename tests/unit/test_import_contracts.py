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


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for p in sorted(PACKAGE.rglob("*.py")):
        rel = p.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append((".".join(parts), p, ast.parse(p.read_text(), str(p))))
    return out


def test_no_relative_imports():
    # import-linter reads them, but a reader (and grep) should see every layer crossing
    found = [f"{name}: from {'.' * n.level}{n.module or ''}"
             for name, _, tree in _modules() for n in ast.walk(tree)
             if isinstance(n, ast.ImportFrom) and n.level]
    assert found == []


def _dynamic_import_calls(tree: ast.Module) -> list[ast.Call]:
    calls = []
    for n in ast.walk(tree):
        if not isinstance(n, ast.Call):
            continue
        f = n.func
        # engine.lazy.lazy_attributes imports the modules its caller names: the caller counts
        dynamic = ("import_module", "__import__", "lazy_attributes")
        if (isinstance(f, ast.Attribute) and f.attr in dynamic) or (
                isinstance(f, ast.Name) and f.id in dynamic):
            calls.append(n)
    return calls


def test_dynamic_imports_stay_inside_their_own_layer():
    """importlib hides an import from import-linter: a lazy facade may use it only for
    modules of its own layer (minidock.<layer>), named by string constants in its file."""
    users = {}
    for name, _path, tree in _modules():
        calls = _dynamic_import_calls(tree)
        if not calls:
            continue
        package = ".".join(name.split(".")[:2])
        targets = {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str) and n.value.startswith("minidock.")}
        outside = sorted(t for t in targets if not t.startswith(package + "."))
        assert outside == [], f"{name} imports {outside} dynamically"
        users[name] = sorted(targets)
    # the checker sees the facade of engine.containers (and nothing escapes it)
    assert "minidock.engine.containers.record" in users.get("minidock.engine.containers", [])


def test_the_dynamic_import_check_sees_a_call():
    tree = ast.parse("import importlib\nimportlib.import_module('minidock.cli.x')\n")
    assert len(_dynamic_import_calls(tree)) == 1


def test_only_minidock_net_imports_pyroute2():
    importers = sorted(name for name, path, _ in _modules()
                       if any(m == "pyroute2" or m.startswith("pyroute2.")
                              for m in imported_modules(path)))
    assert all(n == "minidock.net" or n.startswith("minidock.net.") for n in importers), \
        importers


def test_data_classes_come_from_minidock_records():
    """`@record`, not `@dataclass` (records.py says why); records.py itself names dataclasses
    only for the type checker."""
    importers = sorted(name for name, path, _ in _modules()
                       if any(m == "dataclasses" or m.startswith("dataclasses.")
                              for m in imported_modules(path)))
    assert importers == ["minidock.records"]
