"""The runtime code keeps its shape: no function in adapter/ spans more than 100 lines or has a
cyclomatic complexity above 20, declarative tables excepted.

How it is measured, for every function, method, nested function and method of a nested class:

- complexity: radon's cyclomatic complexity, the number ``radon cc`` prints (1, plus 1 for each
  ``if``/``elif``/conditional expression, loop and its ``else``, ``except`` and ``try``'s
  ``else``, ``assert``, comprehension and each of its ``if``, ``case``, and each operand of
  ``and``/``or`` after the first); a nested function counts on its own, not in its parent;
- length: the lines from the ``def`` line to the function's last line, as Python's AST has them
  (decorators not counted; docstring, comments and blank lines inside counted).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from radon.visitors import ComplexityVisitor  # type: ignore[import-untyped]

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "adapter"
MAX_COMPLEXITY = 20
MAX_LINES = 100

# Declarative tables: data written as code, long because the table is long, not because its
# code branches. Only the length limit is lifted; their complexity is still checked. An entry
# is (path, qualified name).
TABLES = {
    # The OpenAPI v2 schema the API serves: one dictionary literal of definitions.
    ("adapter/api/openapi.py", "_definitions"),
}

_Def = ast.FunctionDef | ast.AsyncFunctionDef


@dataclass(frozen=True, slots=True)
class Shape:
    path: str
    line: int
    name: str
    complexity: int
    lines: int

    def where(self) -> str:
        return f"{self.path}:{self.line} {self.name}"


def complexity(node: _Def) -> int:
    """radon's cyclomatic complexity of one function (what ``radon cc`` reports for it)."""
    visitor = ComplexityVisitor.from_ast(node)
    return int(visitor.functions[0].complexity)


def _defs(node: ast.AST, prefix: str = "") -> Iterator[tuple[str, _Def]]:
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
            name = prefix + child.name
            yield name, child
            yield from _defs(child, name + ".")
        elif isinstance(child, ast.ClassDef):
            yield from _defs(child, prefix + child.name + ".")
        else:
            yield from _defs(child, prefix)


def shapes_of(source: str, path: str) -> list[Shape]:
    tree = ast.parse(source)
    return [
        Shape(
            path=path,
            line=node.lineno,
            name=name,
            complexity=complexity(node),
            lines=(node.end_lineno or node.lineno) - node.lineno + 1,
        )
        for name, node in _defs(tree)
    ]


def _all_shapes() -> list[Shape]:
    out: list[Shape] = []
    for file in sorted(PACKAGE.rglob("*.py")):
        out += shapes_of(file.read_text(encoding="utf-8"), file.relative_to(ROOT).as_posix())
    return out


SHAPES = _all_shapes()


def test_no_function_is_more_complex_than_20() -> None:
    offenders = [s for s in SHAPES if s.complexity > MAX_COMPLEXITY]
    assert not offenders, "cyclomatic complexity above 20 (radon cc):\n" + "\n".join(
        f"  {s.where()}: complexity {s.complexity}" for s in offenders
    )


def test_no_function_is_longer_than_100_lines() -> None:
    offenders = [s for s in SHAPES if s.lines > MAX_LINES and (s.path, s.name) not in TABLES]
    assert not offenders, "longer than 100 lines:\n" + "\n".join(
        f"  {s.where()}: {s.lines} lines" for s in offenders
    )


@pytest.mark.parametrize(("path", "name"), sorted(TABLES))
def test_every_allowed_table_exists(path: str, name: str) -> None:
    assert any((s.path, s.name) == (path, name) for s in SHAPES), (
        f"{path} {name} is allowed as a table but no longer exists: remove it from TABLES"
    )


SAMPLE = """
def flat(x):
    return x


class Box:
    def pick(self, items, wanted):
        for item in items:
            if item in wanted and item:
                return item

        def nested(y):
            return [z for z in y if z]

        return None
"""


def test_the_measure() -> None:
    """What the limits count, on a known sample."""
    got = {s.name: (s.line, s.complexity, s.lines) for s in shapes_of(SAMPLE, "sample.py")}
    assert got == {
        "flat": (2, 1, 2),
        # 1 + for + if + one extra `and` operand; the nested function is not counted here.
        "Box.pick": (7, 4, 9),
        # 1 + comprehension + its if.
        "Box.pick.nested": (12, 3, 2),
    }
