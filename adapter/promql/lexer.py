"""A small PromQL lexer: where each vector selector is in the text, and its matchers decoded.

``promql_parser`` keeps no source positions, so scope injection finds the selectors itself and
then checks its findings against the parser's (see :mod:`adapter.promql.injection`). The limits
below bound every query before either of them sees it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from adapter.domain.errors import QueryError
from adapter.domain.models import Matcher, MatchOp
from adapter.promql.escape import MATCH_OPS

__all__ = [
    "MAX_DEPTH",
    "MAX_QUERY_LENGTH",
    "MAX_TOKENS",
    "Span",
    "Token",
    "lex_selectors",
    "tokenize",
    "unquote",
]

MAX_QUERY_LENGTH: Final = 16384
"""Longest query (characters) this module accepts."""

MAX_TOKENS: Final = 1024
"""Most lexical tokens (names, numbers, strings, operators, brackets) in one query."""

MAX_DEPTH: Final = 64
"""Deepest nesting of ``(``, ``{`` in one query."""


# --------------------------------------------------------------------------------------------
# Lexer


@dataclass(frozen=True, slots=True)
class Token:
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


def tokenize(query: str) -> list[Token]:
    if len(query) > MAX_QUERY_LENGTH:
        raise QueryError(f"query is longer than {MAX_QUERY_LENGTH} characters")
    tokens: list[Token] = []
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
            tokens.append(Token("string", query[pos:end], pos, end))
        elif char == "[":
            end = query.find("]", pos)
            if end < 0:
                raise QueryError(f"unclosed '[' at offset {pos}")
            bad = _NOT_IN_BRACKETS.intersection(query[pos + 1 : end])
            if bad:
                raise QueryError(f"unexpected {min(bad)!r} inside brackets at offset {pos}")
            end += 1
            tokens.append(Token("range", query[pos:end], pos, end))
        elif char in _PUNCT:
            if char in "({":
                depth += 1
                if depth > MAX_DEPTH:
                    raise QueryError(f"query nests deeper than {MAX_DEPTH} levels")
            elif char in ")}":
                depth -= 1
            end = pos + 1
            tokens.append(Token(char, char, pos, end))
        elif char in _DIGITS_AND_DOT and (match := _NUMBER_RE.match(query, pos)) is not None:
            end = match.end()
            tokens.append(Token("number", match.group(), pos, end))
        elif (match := _IDENT_RE.match(query, pos)) is not None:
            end = match.end()
            tokens.append(Token("ident", match.group(), pos, end))
        elif (match := _OPERATOR_RE.match(query, pos)) is not None:
            end = match.end()
            tokens.append(Token("op", match.group(), pos, end))
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


def unquote(literal: str) -> str:
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
class Span:
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


def _parse_braces(tokens: list[Token], i: int) -> tuple[list[Matcher], int, bool]:
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
        label = tok.text if tok.kind == "ident" else unquote(tok.text)
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is not None and nxt.kind == "op" and nxt.text in MATCH_OPS:
            value = tokens[i + 2] if i + 2 < len(tokens) else None
            if value is None or value.kind != "string":
                raise QueryError(f"expected a string after {nxt.text} at offset {nxt.end}")
            op: MatchOp = nxt.text  # type: ignore[assignment]  # checked against MATCH_OPS
            matchers.append(Matcher(label, op, unquote(value.text)))
            i += 3
        elif tok.kind == "string":
            # A lone quoted string is the metric name: {"my.metric", job="x"}.
            matchers.append(Matcher("__name__", "=", label))
            i += 1
        else:
            raise QueryError(f"expected a matcher operator after {label!r} at offset {tok.end}")
        needs_comma = True


def _skip_label_list(tokens: list[Token], i: int) -> int:
    """Index of the ``)`` closing the label list whose ``(`` is ``tokens[i]``."""
    i += 1
    while i < len(tokens) and tokens[i].kind in ("ident", "string", ","):
        i += 1
    if i >= len(tokens) or tokens[i].kind != ")":
        raise QueryError("malformed label list")
    return i


def lex_selectors(query: str) -> list[Span]:
    """Every vector selector in ``query`` as the lexer sees it, in source order."""
    tokens = tokenize(query)
    spans: list[Span] = []
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
                spans.append(Span(tok.text, (), tok.end, has_braces=False, needs_comma=False))
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


def _span_in_braces(name: str, tokens: list[Token], open_index: int) -> tuple[Span, int]:
    """The selector whose braces open at ``tokens[open_index]``, and the index of its ``}``."""
    matchers, close, needs_comma = _parse_braces(tokens, open_index)
    # Insert right after the last token inside the braces (``{`` itself when they are empty),
    # so whitespace and comments before ``}`` stay where they were.
    insert_at = tokens[close - 1].end
    span = Span(name, tuple(matchers), insert_at, has_braces=True, needs_comma=needs_comma)
    return span, close
