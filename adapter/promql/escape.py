"""Label values and matchers rendered as PromQL text, exactly as Prometheus reads them back.

The only place that writes a label value into PromQL: :func:`escape_string` quotes like Go's
``strconv.Quote``, :func:`escape_regex` like ``regexp.QuoteMeta``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Final

from adapter.domain.errors import BadRequestError, QueryError
from adapter.domain.models import Matcher, Requirement

__all__ = [
    "LABEL_NAME_RE",
    "MATCH_OPS",
    "escape_regex",
    "escape_string",
    "render_matcher",
    "render_matchers",
    "requirements_to_matchers",
]

LABEL_NAME_RE: Final = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
MATCH_OPS: Final[frozenset[str]] = frozenset({"=", "!=", "=~", "!~"})

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
    if not LABEL_NAME_RE.fullmatch(label):
        raise QueryError(f"{label!r} is not a valid PromQL label name")


def render_matcher(m: Matcher) -> str:
    """``label op "value"``, e.g. ``namespace="default"`` (no spaces).

    Raises :class:`QueryError` when the label is not a PromQL label name or the op is unknown.
    """
    _check_label(m.label)
    if m.op not in MATCH_OPS:
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
        if not LABEL_NAME_RE.fullmatch(label):
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
