"""Kubernetes label selectors: parsed strictly, as ``k8s.io/apimachinery/pkg/labels`` does.

``parse_selector("app=a,tier in (x,y),!legacy")`` → a tuple of :class:`Requirement`. Keys must be
qualified names and values valid label values, so a selector can never carry PromQL syntax; the
PromQL layer still escapes every value it renders. ``key>N``/``key<N`` parse to ``gt``/``lt``
requirements; callers that cannot honour them (PromQL) reject them with :class:`BadRequestError`.
"""

from __future__ import annotations

import re

from adapter.domain.errors import BadRequestError
from adapter.domain.models import Requirement

__all__ = ["UNSUPPORTED_OPS", "parse_selector", "selector_to_string"]

UNSUPPORTED_OPS = frozenset({"gt", "lt"})

_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_PREFIX = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_KEY_RE = re.compile(rf"^(({_PREFIX})/)?{_NAME}$")
_VALUE_RE = re.compile(rf"^({_NAME})?$")
_TOKEN_RE = re.compile(r"\s*(?:(?P<op>==|!=|=|\(|\)|,|!|>|<)|(?P<word>[^\s=!(),<>]+))")
_MAX_LENGTH = 16384


_OPERATORS = frozenset({"(", ")", ",", "=", "==", "!=", "<", ">"})
# Tokens that cannot be a value: after ``a=`` they leave the value empty.
_NOT_VALUES = _OPERATORS | {"!"}


def _invalid(text: str, why: str) -> BadRequestError:
    return BadRequestError(f"invalid label selector {text!r}: {why}")


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise _invalid(text, f"unexpected character at {pos}")
        out.append(match.group("op") or match.group("word"))
        pos = match.end()
    return out


def _check_key(key: str, text: str) -> str:
    if len(key) > 316 or not _KEY_RE.match(key) or len(key.rpartition("/")[2]) > 63:
        raise _invalid(text, f"invalid label key {key!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise _invalid(text, f"invalid label value {value!r}")
    return value


def _value_at(tokens: list[str], index: int) -> str:
    """The value at ``index``; empty when there is none, as ``a=`` (``a=,b=c`` or a trailing
    ``a=``) is legal."""
    if index >= len(tokens) or tokens[index] in _NOT_VALUES:
        return ""
    return tokens[index]


def _equality(tokens: list[str], i: int, text: str, key: str, op: str) -> tuple[Requirement, int]:
    """``key=value``, ``key==value``, ``key!=value`` (the value may be empty)."""
    value = _value_at(tokens, i + 2)
    requirement = Requirement(key, "!=" if op == "!=" else "=", (_check_value(value, text),))
    return requirement, i + (3 if value else 2)


def _set(tokens: list[str], i: int, text: str, key: str, op: str) -> tuple[Requirement, int]:
    """``key in (a,b)`` and ``key notin (a,b)``: at least one value, kept sorted and unique."""
    if i + 2 >= len(tokens) or tokens[i + 2] != "(":
        raise _invalid(text, f"{op} needs '('")
    j = i + 3
    values: list[str] = []
    while True:
        if j >= len(tokens):
            raise _invalid(text, "missing ')'")
        if tokens[j] == ")":
            break
        if tokens[j] != ",":
            values.append(_check_value(tokens[j], text))
        j += 1
    if not values:
        raise _invalid(text, f"{op} () needs a value")
    return Requirement(key, op, tuple(sorted(set(values)))), j + 1  # type: ignore[arg-type]


def _comparison(tokens: list[str], i: int, text: str, key: str, op: str) -> tuple[Requirement, int]:
    """``key>N`` and ``key<N`` with an integer ``N``."""
    value = _value_at(tokens, i + 2)
    if not re.fullmatch(r"-?[0-9]+", value):
        raise _invalid(text, f"{op} needs an integer, got {value!r}")
    return Requirement(key, "gt" if op == ">" else "lt", (value,)), i + 3


def _requirement(tokens: list[str], i: int, text: str) -> tuple[Requirement, int]:
    """The requirement starting at ``tokens[i]``, and the index just after it."""
    word = tokens[i]
    if word == "!":
        if i + 1 >= len(tokens):
            raise _invalid(text, "'!' needs a key")
        return Requirement(_check_key(tokens[i + 1], text), "!"), i + 2
    if word in _OPERATORS:
        raise _invalid(text, f"unexpected {word!r}")
    key = _check_key(word, text)
    op = tokens[i + 1] if i + 1 < len(tokens) else ","
    if op == ",":
        return Requirement(key, "exists"), i + 1
    if op in {"=", "==", "!="}:
        return _equality(tokens, i, text, key, op)
    if op in {"in", "notin"}:
        return _set(tokens, i, text, key, op)
    if op in {">", "<"}:
        return _comparison(tokens, i, text, key, op)
    raise _invalid(text, f"unknown operator {op!r}")


def _after_separator(tokens: list[str], i: int, text: str) -> int:
    """Past the ``,`` that separates a requirement from the next one (none after the last)."""
    if i >= len(tokens):
        return i
    if tokens[i] != ",":
        raise _invalid(text, f"expected ',' at {tokens[i]!r}")
    if i + 1 >= len(tokens):
        raise _invalid(text, "trailing ','")
    return i + 1


def parse_selector(text: str | None) -> tuple[Requirement, ...]:
    """Parse a label selector string. Empty or ``None`` selects everything (no requirements).

    Requirements come back sorted by key then operator, as the Go library sorts them.
    """
    if not text or not text.strip():
        return ()
    if len(text) > _MAX_LENGTH:
        raise BadRequestError(f"label selector is longer than {_MAX_LENGTH} characters")
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    i = 0
    while i < len(tokens):
        requirement, i = _requirement(tokens, i, text)
        requirements.append(requirement)
        i = _after_separator(tokens, i, text)
    return tuple(sorted(requirements, key=lambda r: (r.key, r.op, r.values)))


def selector_to_string(requirements: tuple[Requirement, ...]) -> str:
    """The canonical string form of parsed requirements (what the API echoes as ``selector``)."""
    parts: list[str] = []
    for r in requirements:
        if r.op == "exists":
            parts.append(r.key)
        elif r.op == "!":
            parts.append(f"!{r.key}")
        elif r.op in {"=", "!="}:
            parts.append(f"{r.key}{r.op}{r.values[0]}")
        elif r.op in {"gt", "lt"}:
            parts.append(f"{r.key}{'>' if r.op == 'gt' else '<'}{r.values[0]}")
        else:
            parts.append(f"{r.key} {r.op} ({','.join(r.values)})")
    return ",".join(parts)
