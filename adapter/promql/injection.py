"""PromQL text: escaping, selector → matcher translation and scope injection.

This is the only module that renders label values into PromQL. Everything here is pure.

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
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import promql_parser

from adapter.domain.errors import BadRequestError, QueryError
from adapter.domain.models import Matcher, MatchOp, Requirement

__all__ = [
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "MAX_TOKENS",
    "SelectorInfo",
    "escape_regex",
    "escape_string",
    "inject",
    "render_matcher",
    "render_matchers",
    "requirements_to_matchers",
    "selectors",
    "validate",
]

MAX_QUERY_LENGTH: Final = 16384
"""Longest query (characters) this module accepts."""

MAX_TOKENS: Final = 1024
"""Most lexical tokens (names, numbers, strings, operators, brackets) in one query."""

MAX_DEPTH: Final = 64
"""Deepest nesting of ``(``, ``{`` in one query."""

_LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_MATCH_OPS: Final[frozenset[str]] = frozenset({"=", "!=", "=~", "!~"})

# Go's strconv.Quote names these control characters; everything else below 0x20 is \xNN.
_NAMED_ESCAPES: Final[dict[str, str]] = {
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
    "\\": "\\\\",
    '"': '\\"',
}
# RE2's metacharacters, as regexp.QuoteMeta escapes them.
_REGEX_META: Final[frozenset[str]] = frozenset("\\.+*?()|[]{}^$")


@dataclass(frozen=True, slots=True)
class SelectorInfo:
    """One vector selector of a query.

    ``name`` is the metric name written before the braces, ``""`` when absent (``{__name__="x"}``
    shows up as a ``__name__`` matcher instead). ``matchers`` are in source order, values decoded.
    """

    name: str
    matchers: tuple[Matcher, ...]


# --------------------------------------------------------------------------------------------
# Escaping and rendering


def escape_string(value: str) -> str:
    """A double-quoted PromQL string literal that Prometheus decodes back to exactly ``value``.

    Escapes as Go's ``strconv.Quote``: backslash, double quote, the named control characters
    (``\\n``, ``\\t``...), other ASCII controls as ``\\xNN``, non-printable code points as
    ``\\uNNNN``/``\\UNNNNNNNN``; printable text (including non-ASCII) is kept as is.
    Raises :class:`QueryError` for a lone surrogate, which no PromQL string can carry.
    """
    out = ['"']
    for char in value:
        code = ord(char)
        named = _NAMED_ESCAPES.get(char)
        if named is not None:
            out.append(named)
        elif 0xD800 <= code <= 0xDFFF:
            raise QueryError(f"string contains a lone surrogate U+{code:04X}")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif char.isprintable():
            out.append(char)
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def escape_regex(value: str) -> str:
    """``value`` with RE2 metacharacters escaped, so that it matches itself literally.

    The result is a regex, not PromQL text: render it with :func:`escape_string` (as
    :func:`render_matcher` does). Prometheus anchors it as ``^(?:...)$``.
    """
    return "".join("\\" + char if char in _REGEX_META else char for char in value)


def _check_label(label: str) -> None:
    if not _LABEL_NAME_RE.fullmatch(label):
        raise QueryError(f"{label!r} is not a valid PromQL label name")


def render_matcher(m: Matcher) -> str:
    """``label op "value"``, e.g. ``namespace="default"`` (no spaces).

    Raises :class:`QueryError` when the label is not a PromQL label name or the op is unknown.
    """
    _check_label(m.label)
    if m.op not in _MATCH_OPS:
        raise QueryError(f"{m.op!r} is not a PromQL matcher operator")
    return f"{m.label}{m.op}{escape_string(m.value)}"


def render_matchers(ms: Sequence[Matcher]) -> str:
    """The matchers rendered and joined with ``,`` (no braces, no spaces)."""
    return ",".join(render_matcher(m) for m in ms)


def requirements_to_matchers(
    reqs: Sequence[Requirement], *, rename: Mapping[str, str] | None = None
) -> list[Matcher]:
    """Kubernetes selector requirements → PromQL matchers, one per requirement, in order.

    ``=`` → ``=``, ``!=`` → ``!=``, ``in (a,b)`` → ``=~"a|b"``, ``notin (a,b)`` → ``!~"a|b"``
    (each value regex-escaped), ``exists`` → ``!=""``, ``!`` (does not exist) → ``=""``.
    ``rename`` maps a selector key to the label name to use. Raises :class:`BadRequestError`
    for ``gt``/``lt`` and for keys whose label name is not a valid PromQL label name.
    """
    out: list[Matcher] = []
    for req in reqs:
        label = rename.get(req.key, req.key) if rename else req.key
        if req.op in ("gt", "lt"):
            raise BadRequestError(f"operator {req.op} is not supported for PromQL-backed metrics")
        if not _LABEL_NAME_RE.fullmatch(label):
            raise BadRequestError(
                f"label selector key {req.key!r} is not a valid PromQL label name"
                " ([a-zA-Z_][a-zA-Z0-9_]*)"
            )
        if req.op in ("=", "!="):
            if len(req.values) != 1:
                raise BadRequestError(f"operator {req.op} on {req.key!r} needs exactly one value")
            out.append(Matcher(label, req.op, req.values[0]))
        elif req.op in ("in", "notin"):
            if not req.values:
                raise BadRequestError(f"operator {req.op} on {req.key!r} needs at least one value")
            pattern = "|".join(escape_regex(v) for v in req.values)
            out.append(Matcher(label, "=~" if req.op == "in" else "!~", pattern))
        elif req.op == "exists":
            out.append(Matcher(label, "!=", ""))
        elif req.op == "!":
            out.append(Matcher(label, "=", ""))
        else:  # pragma: no cover - RequirementOp is a closed Literal
            raise BadRequestError(f"operator {req.op} is not supported for PromQL-backed metrics")
    return out


# --------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ident, number, string, range, op, "(", ")", "{", "}", ","
    text: str
    start: int
    end: int


_WHITESPACE: Final = " \t\r\n"
_IDENT_RE: Final = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")
# Numbers and durations: hex, decimal with optional exponent, then duration units (5m, 1h30m).
_NUMBER_RE: Final = re.compile(
    r"0[xX][0-9A-Fa-f]+|(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?[A-Za-z0-9_]*"
)
_OPERATOR_RE: Final = re.compile(r"==|!=|<=|>=|=~|!~|[-+*/%^<>=@:]")
_PUNCT: Final = "(){},"
_DIGITS_AND_DOT: Final = frozenset("0123456789.")
# Characters that cannot appear in a range or subquery bracket; skipping one blindly could hide
# a string or a selector from the lexer.
_NOT_IN_BRACKETS: Final = frozenset("\"'`#[]{}(),")


def _scan_string(query: str, start: int) -> int:
    """End offset (exclusive) of the string literal opening at ``start``."""
    quote = query[start]
    if quote == "`":
        end = query.find("`", start + 1)
        if end < 0:
            raise QueryError(f"unterminated raw string at offset {start}")
        return end + 1
    pos = start + 1
    while pos < len(query):
        char = query[pos]
        if char == "\\":
            pos += 2
            continue
        if char == "\n":
            break
        if char == quote:
            return pos + 1
        pos += 1
    raise QueryError(f"unterminated string at offset {start}")


def _tokenize(query: str) -> list[_Token]:
    if len(query) > MAX_QUERY_LENGTH:
        raise QueryError(f"query is longer than {MAX_QUERY_LENGTH} characters")
    tokens: list[_Token] = []
    pos = 0
    depth = 0
    while pos < len(query):
        char = query[pos]
        if char in _WHITESPACE:
            pos += 1
            continue
        if char == "#":
            newline = query.find("\n", pos)
            pos = len(query) if newline < 0 else newline + 1
            continue
        if len(tokens) >= MAX_TOKENS:
            raise QueryError(f"query has more than {MAX_TOKENS} tokens")
        if char in "\"'`":
            end = _scan_string(query, pos)
            tokens.append(_Token("string", query[pos:end], pos, end))
        elif char == "[":
            end = query.find("]", pos)
            if end < 0:
                raise QueryError(f"unclosed '[' at offset {pos}")
            bad = _NOT_IN_BRACKETS.intersection(query[pos + 1 : end])
            if bad:
                raise QueryError(f"unexpected {min(bad)!r} inside brackets at offset {pos}")
            end += 1
            tokens.append(_Token("range", query[pos:end], pos, end))
        elif char in _PUNCT:
            if char in "({":
                depth += 1
                if depth > MAX_DEPTH:
                    raise QueryError(f"query nests deeper than {MAX_DEPTH} levels")
            elif char in ")}":
                depth -= 1
            end = pos + 1
            tokens.append(_Token(char, char, pos, end))
        elif char in _DIGITS_AND_DOT and (match := _NUMBER_RE.match(query, pos)) is not None:
            end = match.end()
            tokens.append(_Token("number", match.group(), pos, end))
        elif (match := _IDENT_RE.match(query, pos)) is not None:
            end = match.end()
            tokens.append(_Token("ident", match.group(), pos, end))
        elif (match := _OPERATOR_RE.match(query, pos)) is not None:
            end = match.end()
            tokens.append(_Token("op", match.group(), pos, end))
        else:
            raise QueryError(f"unexpected character {char!r} at offset {pos}")
        pos = end
    return tokens


_SIMPLE_UNESCAPES: Final[dict[str, str]] = {
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "n": "\n",
    "r": "\r",
    "t": "\t",
    "v": "\v",
    "\\": "\\",
}
_HEX_WIDTH: Final[dict[str, int]] = {"x": 2, "u": 4, "U": 8}
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _unquote(literal: str) -> str:
    """Decode a PromQL string literal as Prometheus (Go's strconv.Unquote rules) does.

    Refuses what Prometheus and ``promql_parser`` would decode differently (see module doc).
    """
    quote, body = literal[0], literal[1:-1]
    if quote == "`":
        if "\r" in body:
            raise QueryError("raw string matcher values must not contain a carriage return")
        return body
    out: list[str] = []
    pos = 0
    while pos < len(body):
        char = body[pos]
        if char != "\\":
            out.append(char)
            pos += 1
            continue
        kind = body[pos + 1]  # the lexer guarantees a character after every backslash
        if kind in _SIMPLE_UNESCAPES:
            out.append(_SIMPLE_UNESCAPES[kind])
            pos += 2
        elif kind == quote:
            out.append(quote)
            pos += 2
        elif kind in _HEX_WIDTH:
            digits = body[pos + 2 : pos + 2 + _HEX_WIDTH[kind]]
            if len(digits) != _HEX_WIDTH[kind] or not _HEX_DIGITS.issuperset(digits):
                raise QueryError(f"invalid escape \\{kind}{digits} in {literal}")
            code = int(digits, 16)
            if kind == "x" and code > 0x7F:
                raise QueryError(f"byte escape \\x{digits} above 0x7f is not supported")
            if 0xD800 <= code <= 0xDFFF or code > 0x10FFFF:
                raise QueryError(f"invalid code point escape \\{kind}{digits}")
            out.append(chr(code))
            pos += 2 + len(digits)
        elif kind in "01234567":
            digits = body[pos + 1 : pos + 4]
            if len(digits) != 3 or any(d not in "01234567" for d in digits):
                raise QueryError(f"invalid octal escape \\{digits} in {literal}")
            code = int(digits, 8)
            if code > 0x7F:
                raise QueryError(f"octal escape \\{digits} above 0x7f is not supported")
            out.append(chr(code))
            pos += 4
        else:
            raise QueryError(f"unknown escape sequence \\{kind} in {literal}")
    return "".join(out)


# --------------------------------------------------------------------------------------------
# Finding selectors in the text


@dataclass(frozen=True, slots=True)
class _Span:
    """A vector selector found by the lexer, and where injected matchers go."""

    name: str
    matchers: tuple[Matcher, ...]
    insert_at: int  # offset where rendered text is inserted
    has_braces: bool  # False: append "{...}" after the name
    needs_comma: bool  # braces hold a matcher not followed by a trailing comma


_AGGREGATIONS: Final = frozenset(
    {
        "avg",
        "bottomk",
        "count",
        "count_values",
        "group",
        "limit_ratio",
        "limitk",
        "max",
        "min",
        "quantile",
        "stddev",
        "stdvar",
        "sum",
        "topk",
    }
)
_LABEL_LIST_KEYWORDS: Final = frozenset(
    {"by", "without", "on", "ignoring", "group_left", "group_right"}
)
# Keywords the parser never takes as a metric name (``and``/``or``/``offset``... it does, when
# they stand where an operand is expected).
_NEVER_NAMES: Final = frozenset({"atan2", "bool", "group_left", "group_right", "ignoring", "on"})
_NUMBER_WORDS: Final = frozenset({"inf", "nan"})


def _parse_braces(tokens: list[_Token], i: int) -> tuple[list[Matcher], int, bool]:
    """Matchers of the braces opening at ``tokens[i]``.

    Returns (matchers, index of the closing brace, whether a comma is needed before an added
    matcher).
    """
    matchers: list[Matcher] = []
    i += 1
    needs_comma = False
    while True:
        if i >= len(tokens):
            raise QueryError("unclosed '{'")
        tok = tokens[i]
        if tok.kind == "}":
            return matchers, i, needs_comma
        if needs_comma:
            if tok.kind == "ident" and tok.text.lower() == "or":
                raise QueryError(
                    "'or' between matchers inside a selector is not supported: scope matchers"
                    " cannot be injected into it safely"
                )
            if tok.kind != ",":
                raise QueryError(f"expected ',' or '}}' at offset {tok.start}")
            needs_comma = False
            i += 1
            continue
        if tok.kind not in ("ident", "string"):
            raise QueryError(f"expected a label name at offset {tok.start}")
        label = tok.text if tok.kind == "ident" else _unquote(tok.text)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is not None and nxt.kind == "op" and nxt.text in _MATCH_OPS:
            value = tokens[i + 2] if i + 2 < len(tokens) else None
            if value is None or value.kind != "string":
                raise QueryError(f"expected a string after {nxt.text} at offset {nxt.end}")
            op: MatchOp = nxt.text  # type: ignore[assignment]  # checked against _MATCH_OPS
            matchers.append(Matcher(label, op, _unquote(value.text)))
            i += 3
        elif tok.kind == "string":
            # A lone quoted string is the metric name: {"my.metric", job="x"}.
            matchers.append(Matcher("__name__", "=", label))
            i += 1
        else:
            raise QueryError(f"expected a matcher operator after {label!r} at offset {tok.end}")
        needs_comma = True


def _skip_label_list(tokens: list[_Token], i: int) -> int:
    """Index of the ``)`` closing the label list whose ``(`` is ``tokens[i]``."""
    i += 1
    while i < len(tokens) and tokens[i].kind in ("ident", "string", ","):
        i += 1
    if i >= len(tokens) or tokens[i].kind != ")":
        raise QueryError("malformed label list")
    return i


def _lex_selectors(query: str) -> list[_Span]:
    """Every vector selector in ``query`` as the lexer sees it, in source order."""
    tokens = _tokenize(query)
    spans: list[_Span] = []
    # Whether the previous token ends an operand; an identifier after one is a keyword.
    value_end = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if tok.kind == "ident":
            word = tok.text.lower()
            if nxt is not None and nxt.kind == "(":
                if word in _LABEL_LIST_KEYWORDS:
                    i = _skip_label_list(tokens, i + 1)
                    # ``sum(x) by (a)`` ends an operand; ``on(a)`` is followed by one.
                    value_end = word in ("by", "without")
                else:
                    value_end = False  # function or aggregation name; its ( follows
                i += 1
                continue
            if (
                value_end
                or word in _NEVER_NAMES
                or (
                    word in _AGGREGATIONS
                    and nxt is not None
                    and nxt.kind == "ident"
                    and nxt.text.lower() in ("by", "without")
                )
            ):
                value_end = False
                i += 1
                continue
            if word in _NUMBER_WORDS:
                value_end = True
                i += 1
                continue
            if nxt is not None and nxt.kind == "{":
                span, close = _span_in_braces(tok.text, tokens, i + 1)
                spans.append(span)
                i = close + 1
            else:
                spans.append(_Span(tok.text, (), tok.end, has_braces=False, needs_comma=False))
                i += 1
            value_end = True
            continue
        if tok.kind == "{":
            span, close = _span_in_braces("", tokens, i)
            spans.append(span)
            i = close + 1
            value_end = True
            continue
        value_end = tok.kind in ("number", "string", "range", ")", "}")
        i += 1
    return spans


def _span_in_braces(name: str, tokens: list[_Token], open_index: int) -> tuple[_Span, int]:
    """The selector whose braces open at ``tokens[open_index]``, and the index of its ``}``."""
    matchers, close, needs_comma = _parse_braces(tokens, open_index)
    # Insert right after the last token inside the braces (``{`` itself when they are empty),
    # so whitespace and comments before ``}`` stay where they were.
    insert_at = tokens[close - 1].end
    span = _Span(name, tuple(matchers), insert_at, has_braces=True, needs_comma=needs_comma)
    return span, close


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


def _parse(query: str) -> promql_parser.Expr:
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
def _analyse(query: str) -> tuple[_Span, ...]:
    """The selectors of ``query``, found by the lexer and confirmed by the parser."""
    spans = _lex_selectors(query)
    parsed = _ast_selectors(_parse(query))
    lexed = [SelectorInfo(span.name, span.matchers) for span in spans]
    if lexed != parsed:
        raise QueryError(
            "cannot locate the vector selectors of this query reliably"
            f" (lexer found {len(lexed)}, parser {len(parsed)}); refusing to rewrite it"
        )
    return tuple(spans)


# --------------------------------------------------------------------------------------------
# Public entry points


def _check_type(query: object) -> None:
    # Callers are typed, but rules come from YAML: a number or None must not reach the parser.
    if not isinstance(query, str):
        raise QueryError(f"query must be a string, not {type(query).__name__}")


def validate(query: str) -> None:
    """Raise :class:`QueryError` (with the parser's message) unless ``query`` parses."""
    _check_type(query)
    _validated(query)


@functools.lru_cache(maxsize=4096)
def _validated(query: str) -> None:
    # Every HPA sync renders the same query again: lexing and parsing it costs about 0.3 ms,
    # a tenth of a cached answer's CPU. lru_cache keeps only returns, so a query that fails
    # is checked, and fails, every time.
    # The lexer bounds tokens and depth before the recursive parser sees the text.
    _tokenize(query)
    _parse(query)


def selectors(query: str) -> list[SelectorInfo]:
    """Every vector selector of ``query`` in source order, including those inside range
    selectors and subqueries. Raises :class:`QueryError` when the query does not parse or its
    selectors cannot be located reliably (the same queries :func:`inject` refuses).
    """
    _check_type(query)
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


def _additions(span: _Span, scope: list[Matcher]) -> list[Matcher]:
    added: list[Matcher] = []
    for m in scope:
        if m in span.matchers:
            continue
        if m.op == "=":
            for existing in span.matchers:
                if existing.label == m.label and existing.op == "=":
                    raise QueryError(
                        f"selector {span.name or '{...}'} has {m.label}="
                        f"{escape_string(existing.value)}, which contradicts the injected scope"
                        f" {m.label}={escape_string(m.value)}"
                    )
        added.append(m)
    return added


def inject(query: str, matchers: Sequence[Matcher]) -> str:
    """``query`` with every vector selector carrying all of ``matchers``; nothing else changes.

    A selector that already has an identical matcher does not get it twice. An injected ``=``
    matcher on a label the selector already constrains with ``=`` to another value raises
    :class:`QueryError` (the rule contradicts the scope); other matchers on that label are kept
    and the injected one is added (matchers AND, so this only narrows). Raises
    :class:`QueryError` for unparsable queries and for queries whose selectors cannot be
    located reliably.
    """
    _check_type(query)
    scope = _checked_scope(matchers)
    spans = _analyse(query)
    expected: list[SelectorInfo] = []
    inserts: list[tuple[int, str]] = []
    for span in spans:
        added = _additions(span, scope)
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


# -- freshness ---------------------------------------------------------------------------------

FRESHNESS_LABEL = "__lma_part"
"""Label that tells the two halves of :func:`with_freshness`'s answer apart (``value``/``ts``)."""

_SCALAR_FUNCTIONS = frozenset(
    {"scalar", "time", "pi", "minute", "hour", "day_of_month", "day_of_week", "day_of_year",
     "days_in_month", "month", "year"}
)  # fmt: skip


def _is_instant_vector(expr: object) -> bool:
    """Static type of an expression: False for scalars and strings (conservative)."""
    if isinstance(expr, promql_parser.NumberLiteral | promql_parser.StringLiteral):
        return False
    if isinstance(expr, promql_parser.ParenExpr | promql_parser.UnaryExpr):
        return _is_instant_vector(expr.expr)
    if isinstance(expr, promql_parser.Call):
        name = expr.func.name
        if name in _SCALAR_FUNCTIONS:
            # hour(), minute() … take an optional vector: with an argument they return a vector.
            return bool(expr.args) and name not in {"scalar", "time", "pi"}
        return True
    if isinstance(expr, promql_parser.BinaryExpr):
        return _is_instant_vector(expr.lhs) or _is_instant_vector(expr.rhs)
    return isinstance(expr, promql_parser.AggregateExpr | promql_parser.VectorSelector)


def with_freshness(query: str, *, by: Sequence[str]) -> str | None:
    """One query that answers ``query`` and, per ``by`` group, how fresh its inputs are.

    Prometheus stamps instant-query results with the evaluation time, not the time of the samples
    they were computed from. The returned query is the union of ``query`` (series labelled
    ``__lma_part="value"``) and, labelled ``__lma_part="ts"``, for each ``by`` group the *oldest*
    among the selectors of the *newest* raw sample time: ``min by (by) (max by (by)
    (timestamp(selector_i)) for each selector)``. One backend round trip; the selectors are
    rendered from the parsed query, so the scope matchers injected there apply here too.
    Returns ``None`` when the query is not an instant vector (a scalar has no labels to join).
    """
    _check_type(query)
    return _with_freshness(query, tuple(by))


@functools.lru_cache(maxsize=4096)
def _with_freshness(query: str, by: tuple[str, ...]) -> str | None:
    # Every cache miss of an HPA's query builds this again: parsing is most of a miss's own CPU.
    expr = _parse(query)
    if not _is_instant_vector(expr):
        return None
    infos = selectors(query)
    if not infos:
        return None
    group = f" by ({', '.join(by)})" if by else ""
    parts = []
    for index, info in enumerate(infos):
        body = render_matchers(info.matchers)
        selector = f"{info.name}{{{body}}}" if info.name else f"{{{body}}}"
        parts.append(
            f'label_replace(max{group} (timestamp({selector})), "__lma_sel", "{index}", "", "")'
        )
    freshness = f"min{group} ({' or '.join(parts)})"
    return (
        f'label_replace({query}, "{FRESHNESS_LABEL}", "value", "", "") or '
        f'label_replace({freshness}, "{FRESHNESS_LABEL}", "ts", "", "")'
    )
