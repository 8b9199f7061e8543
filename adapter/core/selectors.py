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


def _tokens(text: str) -> list[str]:
    out: list[str] = []
    pos = 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN_RE.match(text, pos)
        if match is None:
            raise BadRequestError(f"invalid label selector {text!r}: unexpected character at {pos}")
        out.append(match.group("op") or match.group("word"))
        pos = match.end()
    return out


def _check_key(key: str, text: str) -> str:
    if len(key) > 316 or not _KEY_RE.match(key) or len(key.rpartition("/")[2]) > 63:
        raise BadRequestError(f"invalid label selector {text!r}: invalid label key {key!r}")
    return key


def _check_value(value: str, text: str) -> str:
    if len(value) > 63 or not _VALUE_RE.match(value):
        raise BadRequestError(f"invalid label selector {text!r}: invalid label value {value!r}")
    return value


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

    def expect_value(index: int) -> str:
        if index >= len(tokens) or tokens[index] in {"(", ")", ",", "!", "=", "==", "!=", "<", ">"}:
            # An empty value is legal in ``a=`` (``a=,b=c`` or a trailing ``a=``).
            return ""
        return tokens[index]

    while i < len(tokens):
        word = tokens[i]
        if word == "!":
            if i + 1 >= len(tokens):
                raise BadRequestError(f"invalid label selector {text!r}: '!' needs a key")
            requirements.append(Requirement(_check_key(tokens[i + 1], text), "!"))
            i += 2
        elif word in {"(", ")", ",", "=", "==", "!=", "<", ">"}:
            raise BadRequestError(f"invalid label selector {text!r}: unexpected {word!r}")
        else:
            key = _check_key(word, text)
            op = tokens[i + 1] if i + 1 < len(tokens) else ","
            if op == ",":
                requirements.append(Requirement(key, "exists"))
                i += 1
            elif op in {"=", "==", "!="}:
                value = expect_value(i + 2)
                requirements.append(
                    Requirement(key, "!=" if op == "!=" else "=", (_check_value(value, text),))
                )
                i += 3 if value else 2
            elif op in {"in", "notin"}:
                if i + 2 >= len(tokens) or tokens[i + 2] != "(":
                    raise BadRequestError(f"invalid label selector {text!r}: {op} needs '('")
                j = i + 3
                values: list[str] = []
                while True:
                    if j >= len(tokens):
                        raise BadRequestError(f"invalid label selector {text!r}: missing ')'")
                    if tokens[j] == ")":
                        break
                    if tokens[j] == ",":
                        j += 1
                        continue
                    values.append(_check_value(tokens[j], text))
                    j += 1
                if not values:
                    raise BadRequestError(f"invalid label selector {text!r}: {op} () needs a value")
                requirements.append(Requirement(key, op, tuple(sorted(set(values)))))  # type: ignore[arg-type]
                i = j + 1
            elif op in {">", "<"}:
                value = expect_value(i + 2)
                if not re.fullmatch(r"-?[0-9]+", value):
                    raise BadRequestError(
                        f"invalid label selector {text!r}: {op} needs an integer, got {value!r}"
                    )
                requirements.append(Requirement(key, "gt" if op == ">" else "lt", (value,)))
                i += 3
            else:
                raise BadRequestError(f"invalid label selector {text!r}: unknown operator {op!r}")
        if i < len(tokens):
            if tokens[i] != ",":
                raise BadRequestError(
                    f"invalid label selector {text!r}: expected ',' at {tokens[i]!r}"
                )
            i += 1
            if i >= len(tokens):
                raise BadRequestError(f"invalid label selector {text!r}: trailing ','")
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
