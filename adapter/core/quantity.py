"""Numbers to Kubernetes quantity strings.

The HPA reads every metric value with ``Quantity.MilliValue()``, so values are rounded to the
nearest milli-unit and rendered in the canonical decimal-SI form the Go library prints:
``1.5 → "1500m"``, ``42 → "42"``, ``3000 → "3k"``. NaN and ±Inf have no quantity form and are
rejected here; callers drop those samples before rendering.
"""

from __future__ import annotations

import math

__all__ = ["format_quantity"]

_SUFFIXES = ("", "k", "M", "G", "T", "P", "E")
_INT64_MAX = 2**63 - 1


def format_quantity(value: float) -> str:
    """Render a finite float as a canonical Kubernetes quantity. Raises ``ValueError`` otherwise."""
    if not math.isfinite(value):
        raise ValueError(f"{value!r} has no Kubernetes quantity form")
    milli = round(value * 1000)
    if abs(milli) > _INT64_MAX:
        # Beyond int64 milli-units the Go client saturates; keep the magnitude honest instead
        # of wrapping around (prometheus-adapter's -9223372036854775808m).
        mantissa, _, exponent = f"{value:.15e}".partition("e")
        digits = mantissa.rstrip("0").rstrip(".")
        return f"{digits}e{int(exponent)}"
    if milli % 1000:
        return f"{milli}m"
    units = milli // 1000
    index = 0
    while units and units % 1000 == 0 and index < len(_SUFFIXES) - 1:
        units //= 1000
        index += 1
    return f"{units}{_SUFFIXES[index]}"
