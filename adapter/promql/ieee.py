"""Float arithmetic as Prometheus (Go) does it: IEEE 754 results where Python raises. Pure.

Python raises on ``1/0``, ``math.fmod(1, 0)``, ``math.sqrt(-1)``, ``math.log(0)``,
``math.exp(1000)`` and ``math.floor(inf)``; Go answers ``Inf`` or ``NaN``. The local evaluator
(:mod:`adapter.promql.evaluate`) uses these helpers so an answer never depends on which
language computed it. :func:`parse_go_float` reads numbers the way Go's ``strconv.ParseFloat``
does (the exposition parser and ``histogram_quantile``'s ``le`` labels use it).
"""

from __future__ import annotations

import math
import re
import struct
from typing import Final

__all__ = [
    "INF",
    "NAN",
    "STALE_NAN",
    "div",
    "exp",
    "go_max",
    "go_min",
    "is_stale",
    "ln",
    "log2",
    "log10",
    "mod",
    "parse_go_float",
    "pow_",
    "sqrt",
    "to_integral",
]

INF: Final = math.inf
NAN: Final = math.nan

_STALE_BITS: Final = 0x7FF0000000000002
STALE_NAN: Final[float] = struct.unpack("<d", struct.pack("<Q", _STALE_BITS))[0]
"""Prometheus' staleness marker: a NaN with a payload no arithmetic produces."""


def is_stale(value: float) -> bool:
    """True for the staleness marker (and only for it: an ordinary NaN is a value)."""
    return value != value and struct.unpack("<Q", struct.pack("<d", value))[0] == _STALE_BITS


# --------------------------------------------------------------------------------------------
# Parsing

_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_HEX: Final = re.compile(r"[+-]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+")
_SPECIAL: Final = {
    "inf": INF,
    "+inf": INF,
    "-inf": -INF,
    "infinity": INF,
    "+infinity": INF,
    "-infinity": -INF,
    "nan": NAN,
}


def parse_go_float(text: str) -> float:
    """``text`` as Go's ``strconv.ParseFloat(text, 64)`` reads it; :class:`ValueError` otherwise.

    Accepts decimal and hexadecimal (``0x1p-2``) literals, ``Inf``/``Infinity`` with an optional
    sign and ``NaN`` without one, in any case. A literal beyond the float64 range is an error,
    as in Go. Refused although Go accepts them: ``_`` digit separators (no exporter writes them).
    """
    special = _SPECIAL.get(text.lower()) if len(text) <= 9 else None
    if special is not None:
        return special
    if _DECIMAL.fullmatch(text):
        value = float(text)
        if math.isinf(value):
            raise ValueError(f"number out of the float64 range: {text[:40]!r}")
        return value
    if _HEX.fullmatch(text):
        try:
            return float.fromhex(text)
        except OverflowError:
            raise ValueError(f"number out of the float64 range: {text[:40]!r}") from None
    raise ValueError(f"not a number: {text[:40]!r}")


# --------------------------------------------------------------------------------------------
# Arithmetic


def div(a: float, b: float) -> float:
    """``a / b`` with IEEE results for a zero divisor (``±Inf``, or ``NaN`` for ``0/0``)."""
    try:
        return a / b
    except ZeroDivisionError:
        if a != a or a == 0:
            return NAN
        return math.copysign(INF, a) * math.copysign(1.0, b)


def mod(a: float, b: float) -> float:
    """Go's ``math.Mod``: the sign of ``a``; ``NaN`` for ``b == 0`` or an infinite ``a``."""
    try:
        return math.fmod(a, b)
    except ValueError:
        return NAN


def _is_odd_int(y: float) -> bool:
    if not math.isfinite(y) or y != math.floor(y):
        return False
    return abs(y) < 2**53 and int(y) % 2 == 1


def pow_(x: float, y: float) -> float:
    """Go's ``math.Pow`` special cases with C's ``pow`` otherwise (within an ulp or two)."""
    try:
        return math.pow(x, y)
    except OverflowError:
        return -INF if x < 0 and _is_odd_int(y) else INF
    except ValueError:
        if x == 0:  # and y < 0
            return -INF if math.copysign(1.0, x) < 0 and _is_odd_int(y) else INF
        return NAN  # a negative base and a non-integer exponent


def sqrt(x: float) -> float:
    return NAN if x < 0 else math.sqrt(x)


def exp(x: float) -> float:
    try:
        return math.exp(x)
    except OverflowError:
        return INF


def ln(x: float) -> float:
    if x != x or x < 0:
        return NAN
    if x == 0:
        return -INF
    return math.log(x)


_INV_LN2: Final = 1 / math.log(2)
_INV_LN10: Final = 1 / math.log(10)


def log2(x: float) -> float:
    """Go's ``math.Log2``: exact for powers of two, ``Log(frac)/Ln2 + exp`` otherwise."""
    frac, exponent = math.frexp(x)
    if frac == 0.5:
        return float(exponent - 1)
    return ln(frac) * _INV_LN2 + exponent


def log10(x: float) -> float:
    """Go's ``math.Log10``: ``Log(x) * (1/Ln10)``."""
    return ln(x) * _INV_LN10


def to_integral(x: float, how: str) -> float:
    """``math.Floor``/``math.Ceil`` on floats: infinities and NaN pass through."""
    if not math.isfinite(x):
        return x
    return float(math.floor(x) if how == "floor" else math.ceil(x))


def go_max(x: float, y: float) -> float:
    """Go's ``math.Max``: ``+Inf`` wins over ``NaN``, ``NaN`` over everything else."""
    if x == INF or y == INF:
        return INF
    if x != x or y != y:
        return NAN
    if x == 0 and y == 0:
        return y if math.copysign(1.0, x) < 0 else x
    return x if x > y else y


def go_min(x: float, y: float) -> float:
    """Go's ``math.Min``: ``-Inf`` wins over ``NaN``, ``NaN`` over everything else."""
    if x == -INF or y == -INF:
        return -INF
    if x != x or y != y:
        return NAN
    if x == 0 and y == 0:
        return x if math.copysign(1.0, x) < 0 else y
    return x if x < y else y
