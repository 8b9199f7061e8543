"""Prometheus (Go RE2) regular expressions run by Python's ``re``, or refused. Pure.

PromQL regexes are RE2 syntax, anchored at both ends. Python's ``re`` reads most of that syntax
identically but not all: ``\\d``, ``\\w``, ``\\s`` are Unicode there and ASCII in Go, ``$``
also matches before a final newline, ``{,3}`` is a repetition, ``a*+`` is possessive (Go refuses
it), ``[[`` opens a nested set, and Go has ``\\x{…}``, ``\\z`` and POSIX classes that Python
lacks. :func:`compile_anchored` therefore rewrites the pattern token by token into a Python
pattern with the same meaning, and refuses (:class:`UnsupportedRegex`, naming the construct)
whatever it cannot translate exactly: Unicode classes ``\\p{…}``, word boundaries ``\\b``,
``\\Q…\\E``, POSIX classes ``[[:alpha:]]``, flags other than a leading ``(?i)``/``(?s)``, and
anything RE2 itself rejects.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Final

__all__ = ["UnsupportedRegex", "compile_anchored", "label_test"]

_MAX_REPEAT: Final = 1000  # RE2 refuses larger counts
_REPEAT: Final = re.compile(r"\{([0-9]+)(,([0-9]*))?\}")
_FLAGS: Final = re.compile(r"\(\?([is]+)\)")
_SCOPED_FLAGS: Final = re.compile(r"\(\?(-?[is]+|[is]+-[is]+):")
_NAMED_GROUP: Final = re.compile(r"\(\?P<[A-Za-z_][A-Za-z0-9_]*>")
_HEX2: Final = re.compile(r"x[0-9A-Fa-f]{2}")
_HEX_BRACED: Final = re.compile(r"x\{([0-9A-Fa-f]{1,6})\}")

# Perl classes, ASCII as in RE2; inside a class only the positive ones can be inlined.
_PERL_CLASSES: Final = {"d": "0-9", "w": "0-9A-Za-z_", "s": "\\t\\n\\f\\r "}
_CONTROL_ESCAPES: Final = frozenset("tnrfva")


class UnsupportedRegex(ValueError):
    """The pattern is not RE2, or uses RE2 syntax that is not translated (the message says)."""


def _char(c: str) -> str:
    """One literal character, safe both outside and inside a Python character class."""
    if c.isascii() and not c.isalnum():
        return "\\" + c
    return c


def _escape(pattern: str, i: int, *, in_class: bool) -> tuple[str, int, bool]:
    """The escape at ``pattern[i] == '\\\\'``: (Python text, next index, is a single char)."""
    if i + 1 >= len(pattern):
        raise UnsupportedRegex("trailing backslash")
    n = pattern[i + 1]
    if n in _PERL_CLASSES:
        body = _PERL_CLASSES[n]
        return (body if in_class else f"[{body}]"), i + 2, False
    if n in "DWS":
        if in_class:
            raise UnsupportedRegex(f"negated class \\{n} inside [...]")
        return f"[^{_PERL_CLASSES[n.lower()]}]", i + 2, False
    if n in _CONTROL_ESCAPES:
        return "\\" + n, i + 2, True
    if n == "x":
        if m := _HEX_BRACED.match(pattern, i + 1):
            code = int(m.group(1), 16)
            if code > 0x10FFFF:
                raise UnsupportedRegex("\\x{...} beyond Unicode")
            return _char(chr(code)), m.end(), True
        if m := _HEX2.match(pattern, i + 1):
            return _char(chr(int(m.group(0)[1:], 16))), m.end(), True
        raise UnsupportedRegex("malformed \\x escape")
    if not in_class and n == "A":
        return "\\A", i + 2, False
    if not in_class and n == "z":
        return "\\Z", i + 2, False
    if n.isascii() and not n.isalnum() and n.isprintable():
        return "\\" + n, i + 2, True
    raise UnsupportedRegex(f"escape \\{n}")


def _class(pattern: str, i: int) -> tuple[str, int]:
    """The character class opening at ``pattern[i] == '['``: (Python text, next index)."""
    i += 1
    out = ["["]
    if i < len(pattern) and pattern[i] == "^":
        out.append("^")
        i += 1
    first = True
    previous_single: str | None = None  # last item, when a range may start from it
    while True:
        if i >= len(pattern):
            raise UnsupportedRegex("missing ] in a character class")
        c = pattern[i]
        if c == "]" and not first:
            out.append("]")
            return "".join(out), i + 1
        first = False
        if c == "[" and pattern.startswith("[:", i):
            raise UnsupportedRegex("POSIX class [[:...:]]")
        if (
            c == "-"
            and previous_single is not None
            and i + 1 < len(pattern)
            and pattern[i + 1] != "]"
        ):
            # A range: previous_single - next single character.
            i += 1
            if pattern[i] == "\\":
                text, i, single = _escape(pattern, i, in_class=True)
                if not single:
                    raise UnsupportedRegex("a class shorthand as the end of a range")
            else:
                text, i = _char(pattern[i]), i + 1
            out.append("-" + text)
            previous_single = None
            continue
        if c == "\\":
            text, i, single = _escape(pattern, i, in_class=True)
            out.append(text)
            previous_single = text if single else None
            continue
        text = _char(c)
        out.append(text)
        previous_single = text
        i += 1


def _lazy_and_single(pattern: str, i: int, out: list[str]) -> int:
    """After a quantifier ending before ``i``: keep a lazy ``?``, refuse a second quantifier."""
    if i < len(pattern) and pattern[i] == "?":
        out.append("?")
        i += 1
    if i < len(pattern) and (
        pattern[i] in "*+?" or (pattern[i] == "{" and _REPEAT.match(pattern, i))
    ):
        raise UnsupportedRegex("a repetition of a repetition (e.g. a*+ or a**)")
    return i


def _group_open(pattern: str, i: int, out: list[str]) -> int:
    if not pattern.startswith("(?", i):
        out.append("(")
        return i + 1
    if pattern.startswith("(?:", i):
        out.append("(?:")
        return i + 3
    if (m := _NAMED_GROUP.match(pattern, i)) or (m := _SCOPED_FLAGS.match(pattern, i)):
        out.append(m.group(0))
        return m.end()
    raise UnsupportedRegex(f"group syntax {pattern[i : i + 4]!r}")


def _brace(pattern: str, i: int, out: list[str]) -> int:
    m = _REPEAT.match(pattern, i)
    if not m:
        out.append("\\{")
        return i + 1
    low, high = int(m.group(1)), m.group(3)
    if low > _MAX_REPEAT or (high and int(high) > _MAX_REPEAT):
        raise UnsupportedRegex(f"repeat count over {_MAX_REPEAT}")
    if high and int(high) < low:
        raise UnsupportedRegex("invalid repeat count")
    out.append(m.group(0))
    return _lazy_and_single(pattern, m.end(), out)


# Characters that translate one for one: RE2's `}` and `$` differ from Python's; the rest mean the same.
_LITERAL_TRANSLATIONS = {"}": "\\}", "$": "\\Z", "^": "^", ".": ".", "|": "|", ")": ")"}


def _step(pattern: str, i: int, out: list[str]) -> int:
    c = pattern[i]
    if c == "\\":
        text, i, _ = _escape(pattern, i, in_class=False)
        out.append(text)
        return i
    if c == "[":
        text, i = _class(pattern, i)
        out.append(text)
        return i
    if c == "(":
        return _group_open(pattern, i, out)
    if c in "*+?":
        out.append(c)
        return _lazy_and_single(pattern, i + 1, out)
    if c == "{":
        return _brace(pattern, i, out)
    out.append(_LITERAL_TRANSLATIONS.get(c) or _char(c))
    return i + 1


def translate(pattern: str, *, dot_all: bool = False) -> tuple[str, int]:
    """``pattern`` (RE2) as an unanchored Python pattern and ``re`` flags."""
    flags = re.DOTALL if dot_all else 0
    i = 0
    if m := _FLAGS.match(pattern):
        if "i" in m.group(1):
            flags |= re.IGNORECASE
        if "s" in m.group(1):
            flags |= re.DOTALL
        i = m.end()
    out: list[str] = []
    while i < len(pattern):
        i = _step(pattern, i, out)
    return "".join(out), flags


@functools.lru_cache(maxsize=1024)
def compile_anchored(pattern: str, *, dot_all: bool = False) -> re.Pattern[str]:
    """``pattern`` compiled for :meth:`re.Pattern.fullmatch`, as Prometheus anchors it.

    Raises :class:`UnsupportedRegex` for patterns RE2 refuses or this module does not translate.
    """
    text, flags = translate(pattern, dot_all=dot_all)
    try:
        return re.compile(f"(?:{text})", flags)
    except re.error as exc:
        raise UnsupportedRegex(f"invalid regular expression: {exc}") from None


def label_test(op: str, value: str, *, dot_all: bool = False) -> Callable[[str], bool]:
    """A label matcher (``=``, ``!=``, ``=~``, ``!~`` against ``value``) as a test of a label's
    value, regexes anchored as Prometheus anchors them. Raises :class:`UnsupportedRegex` for a
    pattern :func:`compile_anchored` refuses, :class:`ValueError` for another operator."""
    if op == "=":
        return lambda v: v == value
    if op == "!=":
        return lambda v: v != value
    if op not in ("=~", "!~"):
        raise ValueError(f"matcher operator {op!r}")
    regex = compile_anchored(value, dot_all=dot_all)
    if op == "=~":
        return lambda v: regex.fullmatch(v) is not None
    return lambda v: regex.fullmatch(v) is None
