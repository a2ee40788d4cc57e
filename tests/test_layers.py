"""Who may import whom (docs/DESIGN.md, "Apps and who may import whom"), checked by walking
every import of every module, function-level imports included. A lower package never
imports a higher one, and nothing imports the wiring package (orderproj)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# package -> the project packages its code may import (itself always).
MAY_IMPORT = {
    "core": set(),
    "webhooks": {"core"},  # the outbox every app writes events to; subjects rendered by them
    "catalog": {"core"},
    "inventory": {"core", "catalog", "webhooks"},
    "payments": {"core", "webhooks"},
    "orders": {"core", "catalog", "inventory", "payments", "webhooks"},
    "orderproj": {"core", "catalog", "inventory", "payments", "orders", "simulators", "webhooks"},
    "simulators": set(),  # "external" systems: they share no code with the apps
}


def project_imports(path: Path) -> set[tuple[str, int]]:
    """(top-level project package, line) of every import in the module."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found |= {(name.split(".")[0], node.lineno) for name in names}
    return {(top, line) for top, line in found if top in MAY_IMPORT}


def modules_of(package: str) -> list[Path]:
    """The package's code: its tests (which may use other apps' factories) excluded."""
    return [
        path
        for path in sorted((ROOT / package).rglob("*.py"))
        if "tests" not in path.relative_to(ROOT).parts
    ]


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_a_package_imports_only_the_packages_below_it(package):
    allowed = MAY_IMPORT[package] | {package}
    wrong = [
        f"{path.relative_to(ROOT)}:{line} imports {top}"
        for path in modules_of(package)
        for top, line in sorted(project_imports(path))
        if top not in allowed
    ]
    assert wrong == []


def test_every_package_is_known():
    """A new top-level package must be placed in MAY_IMPORT (and in DESIGN.md)."""
    packages = {
        path.parent.name
        for path in ROOT.glob("*/__init__.py")
        if path.parent.name not in {"tests", "bench"}
    }
    assert packages == set(MAY_IMPORT)
