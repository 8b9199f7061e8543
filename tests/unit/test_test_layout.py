"""The test tree's layout: shared helpers live in ``tests/support``, so no module under ``tests/``
imports a test module (``tests.<tier>.test_*``) or any ``conftest`` — absolute, relative, or as a
name from its package (``from tests.api import conftest``). Fixtures shared by tiers are a
``pytest_plugins`` module, declared in ``tests/conftest.py``."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def _package(path: Path) -> str:
    """The dotted package of a file under the repository root (``tests/e2e/x.py`` → ``tests.e2e``)."""
    return ".".join(path.relative_to(TESTS.parent).parent.parts)


def _imported(tree: ast.AST, package: str) -> Iterator[tuple[int, str]]:
    """(line, dotted module) of every import in ``tree``, relative ones resolved from ``package``;
    for ``from M import n`` both ``M`` and ``M.n`` (``n`` may be a module)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            yield node.lineno, module
            for alias in node.names:
                yield node.lineno, f"{module}.{alias.name}"


def _forbidden(module: str) -> str | None:
    """The test module or conftest that importing ``module`` imports, if any."""
    parts = module.split(".")
    if parts[0] != "tests":
        return None
    for i, part in enumerate(parts[1:], start=1):
        if part == "conftest" or part.startswith("test_"):
            return ".".join(parts[: i + 1])
    return None


def offenders(source: str, path: Path) -> list[str]:
    """``path:line imports module`` for each import of a test module or a conftest."""
    tree = ast.parse(source, filename=str(path))
    found = {
        (line, target)
        for line, module in _imported(tree, _package(path))
        if (target := _forbidden(module)) is not None
    }
    where = path.relative_to(TESTS.parent)
    return [f"{where}:{line} imports {module}" for line, module in sorted(found)]


def test_no_test_module_imports_a_test_module_or_a_conftest() -> None:
    # The check sees each way of writing such an import (else the scan below proves nothing).
    sample = TESTS / "e2e" / "test_sample.py"
    for bad in (
        "from tests.api.conftest import client_for",
        "from tests.unit.test_deploy_manifests import BASE",
        "import tests.fuzz.conftest",
        "from .test_auth import Adapter",
        "from . import conftest",
        "from tests.api import test_seed_manifests",
        "def f() -> None:\n    from ..faults.test_token_faults import App",
    ):
        assert offenders(bad, sample), bad
    assert not offenders(
        "from tests.support.fleet import Fleet\nfrom .scenario import Load", sample
    )

    found = [
        problem
        for path in sorted(TESTS.rglob("*.py"))
        for problem in offenders(path.read_text(encoding="utf-8"), path)
    ]
    assert not found, "move what is shared to tests/support/:\n" + "\n".join(found)
