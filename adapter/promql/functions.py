"""The arithmetic of PromQL's functions, as Prometheus computes it, on plain floats. Pure.

Each function here mirrors its Go original in ``promql/functions.go`` or ``promql/quantile.go``
statement by statement, in the same order of floating-point operations, so the local evaluator
(:mod:`adapter.promql.evaluate`) gives the same bits, not merely close numbers. Times are integer
milliseconds, as in Prometheus' storage.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from typing import Final

from adapter.promql import ieee

__all__ = [
    "SIMPLE_FUNCTIONS",
    "avg_over_time",
    "bucket_quantile",
    "expand_template",
    "extrapolated_rate",
    "go_search",
    "instant_value",
    "max_over_time",
    "min_over_time",
    "quantile",
    "round_to",
    "seconds",
    "sum_over_time",
]


def seconds(ms: int) -> float:
    """A duration's ``.Seconds()`` as Go computes it from nanoseconds."""
    return ms // 1000 + (ms % 1000) * 1_000_000 / 1e9


# --------------------------------------------------------------------------------------------
# Range functions


def extrapolated_rate(
    times: Sequence[int],
    values: Sequence[float],
    range_start: int,
    range_end: int,
    *,
    counter: bool,
    rate: bool,
    zero_point_after_threshold: bool = False,
) -> float | None:
    """``rate`` (counter, rate), ``increase`` (counter) or ``delta`` (neither) of the points.

    ``extrapolatedRate``: at least two points; counter resets add the value before the drop;
    the result is extrapolated to the range boundaries when the first/last point is within 110%
    of the average interval from them, else by half an interval; a counter is not extrapolated
    below zero. ``zero_point_after_threshold`` selects Prometheus 2.51+'s order of the last two
    rules (the zero point limits the half-interval guess too); before 2.51 it limited only the
    full extrapolation.
    """
    n = len(times)
    if n < 2:
        return None
    result = values[-1] - values[0]
    if counter:
        previous = values[0]
        for v in values[1:]:
            if v < previous:
                result += previous
            previous = v
    to_start = (times[0] - range_start) / 1000
    to_end = (range_end - times[-1]) / 1000
    sampled = (times[-1] - times[0]) / 1000
    average = sampled / (n - 1)
    threshold = average * 1.1
    interval = sampled
    if zero_point_after_threshold:
        if to_start >= threshold:
            to_start = average / 2
        if counter and result > 0 and values[0] >= 0:
            to_zero = sampled * (values[0] / result)
            if to_zero < to_start:
                to_start = to_zero
        if to_end >= threshold:
            to_end = average / 2
        interval += to_start
        interval += to_end
    else:
        if counter and result > 0 and values[0] >= 0:
            to_zero = sampled * (values[0] / result)
            if to_zero < to_start:
                to_start = to_zero
        interval += to_start if to_start < threshold else average / 2
        interval += to_end if to_end < threshold else average / 2
    factor = ieee.div(interval, sampled)
    if rate:
        factor /= seconds(range_end - range_start)
    return result * factor


def instant_value(times: Sequence[int], values: Sequence[float], *, rate: bool) -> float | None:
    """``irate`` (rate) or ``idelta``: from the last two points only (``instantValue``)."""
    if len(times) < 2:
        return None
    last, previous = values[-1], values[-2]
    result = last if rate and last < previous else last - previous
    interval = times[-1] - times[-2]
    if interval == 0:
        return None
    if rate:
        result /= interval / 1000
    return result


def _kahan_inc(inc: float, total: float, c: float) -> tuple[float, float]:
    t = total + inc
    if abs(total) >= abs(inc):
        c += (total - t) + inc
    else:
        c += (inc - t) + total
    return t, c


def avg_over_time(values: Sequence[float]) -> float:
    """Incremental mean with Kahan compensation; infinities kept (``funcAvgOverTime``)."""
    mean = c = count = 0.0
    for v in values:
        count += 1
        if math.isinf(mean):
            if math.isinf(v) and (mean > 0) == (v > 0):
                continue
            if not math.isinf(v) and v == v:
                continue
        mean, c = _kahan_inc(v / count - mean / count, mean, c)
    return mean if math.isinf(mean) else mean + c


def sum_over_time(values: Sequence[float]) -> float:
    """Kahan (Neumaier) sum (``funcSumOverTime``)."""
    total = c = 0.0
    for v in values:
        total, c = _kahan_inc(v, total, c)
    return total if math.isinf(total) else total + c


def max_over_time(values: Sequence[float]) -> float:
    """The largest value; a NaN only when every value is NaN."""
    best = values[0]
    for v in values:
        if v > best or best != best:
            best = v
    return best


def min_over_time(values: Sequence[float]) -> float:
    """The smallest value; a NaN only when every value is NaN."""
    best = values[0]
    for v in values:
        if v < best or best != best:
            best = v
    return best


# --------------------------------------------------------------------------------------------
# Element-wise functions


def round_to(v: float, to_nearest: float) -> float:
    """``round(v, to_nearest)``: ties go up (``math.Floor(v*inv+0.5) / inv``)."""
    inverse = ieee.div(1.0, to_nearest)
    return ieee.div(ieee.to_integral(v * inverse + 0.5, "floor"), inverse)


def _sgn(v: float) -> float:
    if v < 0:
        return -1.0
    if v > 0:
        return 1.0
    return v


SIMPLE_FUNCTIONS: Final[dict[str, Callable[[float], float]]] = {
    "abs": abs,
    "ceil": lambda v: ieee.to_integral(v, "ceil"),
    "floor": lambda v: ieee.to_integral(v, "floor"),
    "sqrt": ieee.sqrt,
    "exp": ieee.exp,
    "ln": ieee.ln,
    "log2": ieee.log2,
    "log10": ieee.log10,
    "sgn": _sgn,
}
"""Functions of one value that drop the metric name and keep everything else."""


# --------------------------------------------------------------------------------------------
# Quantiles


def go_search(n: int, predicate: Callable[[int], bool]) -> int:
    """Go's ``sort.Search``: a binary search, exactly (its answer matters for NaN counts)."""
    i, j = 0, n
    while i < j:
        h = (i + j) >> 1
        if not predicate(h):
            i = h + 1
        else:
            j = h
    return i


def bucket_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float:
    """``bucketQuantile`` over ``(upper bound, cumulative count)`` pairs, in any order.

    ``NaN`` for ``q`` NaN, without a ``+Inf`` bucket, with fewer than two buckets or no
    observations; ``±Inf`` for ``q`` outside [0, 1]; buckets with one bound are merged and
    counts made monotonic; in the ``+Inf`` bucket, the highest finite bound; in a lowest bucket
    with a bound ``<= 0``, that bound; otherwise linear interpolation (from 0 in the first).
    """
    if q != q:
        return ieee.NAN
    if q < 0:
        return -ieee.INF
    if q > 1:
        return ieee.INF
    ordered = sorted(buckets, key=lambda b: b[0])
    if ordered[-1][0] != ieee.INF:
        return ieee.NAN
    bounds: list[float] = []
    counts: list[float] = []
    for bound, count in ordered:  # coalesceBuckets
        if bounds and bounds[-1] == bound:
            counts[-1] += count
        else:
            bounds.append(bound)
            counts.append(count)
    highest = counts[0]  # ensureMonotonic
    for i in range(1, len(counts)):
        if counts[i] > highest:
            highest = counts[i]
        elif counts[i] < highest:
            counts[i] = highest
    if len(bounds) < 2:
        return ieee.NAN
    observations = counts[-1]
    if observations == 0:
        return ieee.NAN
    rank = q * observations
    b = go_search(len(bounds) - 1, lambda i: counts[i] >= rank)
    if b == len(bounds) - 1:
        return bounds[-2]
    if b == 0 and bounds[0] <= 0:
        return bounds[0]
    start = 0.0
    end, count = bounds[b], counts[b]
    if b > 0:
        start = bounds[b - 1]
        count -= counts[b - 1]
        rank -= counts[b - 1]
    return start + (end - start) * ieee.div(rank, count)


def quantile(q: float, values: Sequence[float]) -> float:
    """The ``quantile`` aggregation: NaN sorts first, linear interpolation between ranks."""
    if not values or q != q:
        return ieee.NAN
    if q < 0:
        return -ieee.INF
    if q > 1:
        return ieee.INF
    ordered = sorted(values, key=lambda v: (v == v, v if v == v else 0.0))
    n = float(len(ordered))
    rank = q * (n - 1)
    lower = max(0.0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[int(lower)] * (1 - weight) + ordered[int(upper)] * weight


# --------------------------------------------------------------------------------------------
# label_replace's replacement: Go's regexp.Expand


def _name_char(c: str) -> bool:
    return c == "_" or c.isalpha() or unicodedata.category(c) == "Nd"


def expand_template(template: str, groups: Sequence[str | None], names: dict[str, int]) -> str:
    """``template`` with ``$1``, ``${1}``, ``$name``, ``${name}`` replaced, as Go does it.

    ``groups[0]`` is the whole match. A name extends as far as letters, digits and ``_`` go
    (``$1x`` is the group named ``1x``: empty); ``$$`` is a literal ``$``; a malformed
    reference keeps its ``$``; a missing or non-participating group expands to nothing.
    """
    out: list[str] = []
    rest = template
    while True:
        before, dollar, after = rest.partition("$")
        if not dollar:
            break
        out.append(before)
        rest = after
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        brace = rest.startswith("{")
        body = rest[1:] if brace else rest
        i = 0
        while i < len(body) and _name_char(body[i]):
            i += 1
        if i == 0 or (brace and (i >= len(body) or body[i] != "}")):
            out.append("$")  # malformed: the $ is literal text
            continue
        name = body[:i]
        rest = body[i + 1 :] if brace else body[i:]
        index = -1
        if name.isascii() and name.isdigit() and not (name[0] == "0" and len(name) > 1):
            index = int(name) if len(name) <= 8 else -1
        else:
            index = names.get(name, -1)
        if 0 <= index < len(groups):
            out.append(groups[index] or "")
    out.append(rest)
    return "".join(out)
