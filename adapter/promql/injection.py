"""Scope injection: matchers spliced into every vector selector of a query. Pure.

Label values are rendered by :mod:`adapter.promql.escape`; selectors are found by
:mod:`adapter.promql.lexer`.

:func:`inject` scopes a query by construction: every vector selector of the result carries the
given matchers. It cannot print the parsed AST back (``promql_parser`` 0.12 keeps no source
positions and prints string literals unescaped), so it works on the original text:

1. a small PromQL lexer finds the span of every vector selector and decodes its matchers;
2. ``promql_parser`` parses the same text, and the two lists of selectors (count, order, names,
   matchers) must agree exactly, or the query is refused (fail closed);
3. rendered matchers are spliced into each selector's braces (or ``{...}`` is appended to a bare
   metric name), and nothing else in the text changes;
4. the result is analysed again and every selector must be exactly the original one plus the
   injected matchers.

``promql_parser`` is slow and recursive on deep or long expressions (quadratic time; a stack
overflow that kills the process past a few thousand nested operators), so queries are bounded
by :data:`MAX_QUERY_LENGTH`, :data:`MAX_TOKENS` and :data:`MAX_DEPTH` before it sees them.
Its ``walk`` is also avoided: it copies subtrees into Python objects at every node (cubic time),
so the AST is traversed by hand.

Constructs refused on purpose (:class:`QueryError`): ``or`` inside a selector's braces (injected
matchers would bind to only one alternative), ``\\x``/octal escapes above 0x7f in matcher strings
(Prometheus decodes them as raw bytes, ``promql_parser`` as code points) and raw (backquoted)
matcher strings containing a carriage return (Go's unquote drops it).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

import promql_parser

from adapter.domain.errors import QueryError
from adapter.domain.models import Matcher, MatchOp
from adapter.promql.escape import escape_string, render_matcher, render_matchers
from adapter.promql.lexer import Span, lex_selectors, tokenize

__all__ = ["SelectorInfo", "check_type", "inject", "parse", "selectors", "validate"]


@dataclass(frozen=True, slots=True)
class SelectorInfo:
    """One vector selector of a query.

    ``name`` is the metric name written before the braces, ``""`` when absent (``{__name__="x"}``
    shows up as a ``__name__`` matcher instead). ``matchers`` are in source order, values decoded.
    """

    name: str
    matchers: tuple[Matcher, ...]


# --------------------------------------------------------------------------------------------
# The parser's view


# promql_parser.MatchOp members are neither hashable nor Python enums: compare with ==.
_AST_OPS: Final[tuple[tuple[object, MatchOp], ...]] = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)


def _ast_op(op: object) -> MatchOp:
    for member, text in _AST_OPS:
        if op == member:
            return text
    raise QueryError(f"unknown matcher operator {op}")


def parse(query: str) -> promql_parser.Expr:
    try:
        return promql_parser.parse(query)
    except Exception as exc:
        raise QueryError(f"invalid PromQL: {exc}") from exc
    except BaseException as exc:
        # A Rust panic surfaces as pyo3's PanicException, which derives from BaseException.
        if type(exc).__name__ != "PanicException":
            raise
        raise QueryError(f"invalid PromQL (parser panic): {exc}") from exc


def _ast_selectors(expr: promql_parser.Expr) -> list[SelectorInfo]:
    """Vector selectors of the AST in source order (pre-order, left to right)."""
    found: list[SelectorInfo] = []
    stack: list[object] = [expr]
    while stack:
        node = stack.pop()
        if isinstance(node, promql_parser.MatrixSelector):
            node = node.vector_selector
        if isinstance(node, promql_parser.VectorSelector):
            group = node.matchers
            if group.or_matchers:
                raise QueryError("'or' between matchers inside a selector is not supported")
            matchers = tuple(Matcher(m.name, _ast_op(m.op), m.value) for m in group.matchers)
            found.append(SelectorInfo(node.name or "", matchers))
        elif isinstance(node, promql_parser.BinaryExpr):
            stack.extend((node.rhs, node.lhs))
        elif isinstance(
            node, promql_parser.ParenExpr | promql_parser.UnaryExpr | promql_parser.SubqueryExpr
        ):
            stack.append(node.expr)
        elif isinstance(node, promql_parser.AggregateExpr):
            stack.append(node.expr)
            if node.param is not None:
                stack.append(node.param)
        elif isinstance(node, promql_parser.Call):
            stack.extend(reversed(node.args))
        elif not isinstance(node, promql_parser.NumberLiteral | promql_parser.StringLiteral):
            raise QueryError(f"unsupported PromQL node {type(node).__name__}")
    return found


@functools.lru_cache(maxsize=1024)
def _analyse(query: str) -> tuple[Span, ...]:
    """The selectors of ``query``, found by the lexer and confirmed by the parser."""
    spans = lex_selectors(query)
    parsed = _ast_selectors(parse(query))
    lexed = [SelectorInfo(span.name, span.matchers) for span in spans]
    if lexed != parsed:
        raise QueryError(
            "cannot locate the vector selectors of this query reliably"
            f" (lexer found {len(lexed)}, parser {len(parsed)}); refusing to rewrite it"
        )
    return tuple(spans)


# --------------------------------------------------------------------------------------------
# Public entry points


def check_type(query: object) -> None:
    # Callers are typed, but rules come from YAML: a number or None must not reach the parser.
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, not {type(query).__name__}")


def validate(query: str) -> None:
    """Raise :class:`QueryError` (with the parser's message) unless ``query`` parses."""
    check_type(query)
    _validated(query)


@functools.lru_cache(maxsize=4096)
def _validated(query: str) -> None:
    # Every HPA sync renders the same query again: lexing and parsing it costs about 0.3 ms,
    # a tenth of a cached answer's CPU. lru_cache keeps only returns, so a query that fails
    # is checked, and fails, every time.
    # The lexer bounds tokens and depth before the recursive parser sees the text.
    tokenize(query)
    parse(query)


def selectors(query: str) -> list[SelectorInfo]:
    """Every vector selector of ``query`` in source order, including those inside range
    selectors and subqueries. Raises :class:`QueryError` when the query does not parse or its
    selectors cannot be located reliably (the same queries :func:`inject` refuses).
    """
    check_type(query)
    return [SelectorInfo(span.name, span.matchers) for span in _analyse(query)]


def _checked_scope(matchers: Sequence[Matcher]) -> list[Matcher]:
    scope: list[Matcher] = []
    for m in matchers:
        render_matcher(m)  # validates label and op
        if m in scope:
            continue
        for other in scope:
            if m.op == "=" and other.op == "=" and other.label == m.label:
                raise QueryError(
                    f"injected matchers contradict each other on label {m.label}:"
                    f" {escape_string(other.value)} and {escape_string(m.value)}"
                )
        scope.append(m)
    return scope


def _additions(span: Span, scope: list[Matcher], source: str) -> list[Matcher]:
    added: list[Matcher] = []
    for m in scope:
        if m in span.matchers:
            continue
        if m.op == "=":
            for existing in span.matchers:
                if existing.label == m.label and existing.op == "=":
                    raise QueryError(
                        f"selector {span.name or '{...}'} has {m.label}="
                        f"{escape_string(existing.value)}, which contradicts {source}"
                        f" {m.label}={escape_string(m.value)}"
                    )
        added.append(m)
    return added


def inject(query: str, matchers: Sequence[Matcher], *, source: str = "the injected scope") -> str:
    """``query`` with every vector selector carrying all of ``matchers``; nothing else changes.

    ``source`` names where the matchers come from in a contradiction's message (the scope, or
    the client's metric selector).

    A selector that already has an identical matcher does not get it twice. An injected ``=``
    matcher on a label the selector already constrains with ``=`` to another value raises
    :class:`QueryError` (the rule contradicts the scope); other matchers on that label are kept
    and the injected one is added (matchers AND, so this only narrows). Raises
    :class:`QueryError` for unparsable queries and for queries whose selectors cannot be
    located reliably.
    """
    check_type(query)
    scope = _checked_scope(matchers)
    spans = _analyse(query)
    expected: list[SelectorInfo] = []
    inserts: list[tuple[int, str]] = []
    for span in spans:
        added = _additions(span, scope, source)
        expected.append(SelectorInfo(span.name, span.matchers + tuple(added)))
        if not added:
            continue
        rendered = render_matchers(added)
        if not span.has_braces:
            inserts.append((span.insert_at, "{" + rendered + "}"))
        else:
            inserts.append((span.insert_at, ("," if span.needs_comma else "") + rendered))
    if not inserts:
        return query
    parts: list[str] = []
    previous = 0
    for offset, text in inserts:  # spans are in source order, so offsets increase
        parts.extend((query[previous:offset], text))
        previous = offset
    parts.append(query[previous:])
    result = "".join(parts)
    # Fail closed: the rewritten text must parse to exactly the selectors we meant.
    if selectors(result) != expected:
        raise QueryError("scoping the query changed more than its selectors; refusing it")
    return result
