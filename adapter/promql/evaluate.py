"""A local PromQL evaluator over a window of scraped samples, for the pod-scrape path. Pure.

:func:`evaluate` answers an instant query at a time over a :class:`SampleWindow` with the same
:class:`QueryResult` a backend returns, and the same numbers Prometheus would: the operators and
functions below follow Prometheus' engine (``promql/engine.go``, ``functions.go``,
``quantile.go``) step by step, including the order of floating-point operations, and a
differential test compares the answers with a real Prometheus scraping the same exporters.

The subset (:data:`SUPPORTED_FUNCTIONS`, :data:`SUPPORTED_AGGREGATIONS`):

- vector selectors with ``=``, ``!=``, ``=~``, ``!~`` (anchored RE2, see :mod:`adapter.promql.re2`)
  on any label including ``__name__``, ``offset``, the lookback window and staleness markers;
- ``sum``, ``avg``, ``min``, ``max``, ``count``, ``group``, ``stddev``, ``stdvar``, ``quantile``
  with ``by``/``without``;
- ``+ - * / % ^ atan2`` and ``== != > < >= <=`` (filtering or ``bool``) between scalars, between
  a vector and a scalar, and between vectors (``on``/``ignoring``, ``group_left``/``group_right``);
  ``and``, ``or``, ``unless``; unary minus;
- ``rate``, ``irate``, ``increase``, ``delta``, ``idelta`` (extrapolation, counter resets) and
  ``avg|min|max|sum|count|last_over_time`` over range selectors;
- ``histogram_quantile`` over classic buckets, ``label_replace``, ``label_join``, ``timestamp``,
  ``vector``, ``scalar``, ``time``, ``abs``, ``ceil``, ``floor``, ``round``, ``sqrt``, ``exp``,
  ``ln``, ``log2``, ``log10``, ``sgn``, ``clamp``, ``clamp_min``, ``clamp_max``.

Everything else (subqueries, ``@``, ``topk``, ``count_values``, ``absent``, native histograms, a
matrix or string result, …) raises :class:`UnsupportedQueryError` naming the construct, before
any evaluation; :func:`unsupported_reason` tells callers in advance, so they can send such a rule
to the backend. What Prometheus itself refuses at evaluation time (many-to-many matching, two
results with one label set) raises :class:`EvaluationError` with Prometheus' message.

Semantics that changed between Prometheus versions are a :class:`Semantics` value:
:data:`PROMETHEUS_2` (the default; closed range and lookback boundaries, the rate zero-point
rule of 2.0–2.50) or :data:`PROMETHEUS_3` (left-open boundaries, the 2.51+ zero-point rule and
``.`` matching newlines).
"""

from __future__ import annotations

import bisect
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Final, Literal

import promql_parser

from adapter.domain.errors import QueryError
from adapter.domain.models import QueryResult, Sample
from adapter.promql import functions as fn
from adapter.promql import ieee
from adapter.promql.injection import check_type, parse
from adapter.promql.lexer import tokenize
from adapter.promql.re2 import UnsupportedRegex, compile_anchored, label_test
from adapter.promql.window import NAME, LabelSet, SampleWindow, Series

__all__ = [
    "PROMETHEUS_2",
    "PROMETHEUS_3",
    "SUPPORTED_AGGREGATIONS",
    "SUPPORTED_FUNCTIONS",
    "CompiledQuery",
    "EvaluationError",
    "Semantics",
    "UnsupportedQueryError",
    "compile_query",
    "evaluate",
    "keeps_apart",
    "required_history",
    "unsupported_reason",
]


class UnsupportedQueryError(QueryError):
    """The query is valid PromQL outside the local evaluator's subset (the message names why)."""


class EvaluationError(QueryError):
    """Prometheus would fail this evaluation too (e.g. many-to-many matching)."""


@dataclass(frozen=True, slots=True)
class Semantics:
    """What differs between Prometheus versions. Times are integer milliseconds.

    ``left_open``: a sample exactly at the start of a range or of the lookback window is
    excluded (Prometheus 3) rather than included (2.x). ``zero_point_after_threshold``: rate's
    zero-point limit applies after the half-interval limit (2.51+), not before (2.0–2.50).
    ``dot_matches_newline``: ``.`` in regexes matches ``\\n`` (Prometheus 3).
    """

    lookback: int = 300_000
    left_open: bool = False
    zero_point_after_threshold: bool = False
    dot_matches_newline: bool = False


PROMETHEUS_2: Final = Semantics()
PROMETHEUS_3: Final = Semantics(
    left_open=True, zero_point_after_threshold=True, dot_matches_newline=True
)

MAX_NESTING: Final = 200
"""Deepest expression tree evaluated (the lexer bounds tokens; this bounds recursion)."""


# --------------------------------------------------------------------------------------------
# Values


class _El:
    """One instant-vector element; ``t`` is the sample's time (for ``timestamp()``)."""

    __slots__ = ("labels", "t", "value")

    def __init__(self, labels: LabelSet, value: float, t: int) -> None:
        self.labels = labels
        self.value = value
        self.t = t


_Vector = list[_El]
_Value = float | _Vector


@dataclass(slots=True)
class _Ctx:
    window: SampleWindow
    t: int
    sem: Semantics
    selected: dict[object, list[Series]] = field(default_factory=dict)


_Eval = Callable[[_Ctx], _Value]
_Kind = Literal["scalar", "vector"]


def _drop_name(labels: LabelSet) -> LabelSet:
    return tuple(p for p in labels if p[0] != NAME)


def _get(labels: LabelSet, name: str) -> str:
    for k, v in labels:
        if k == name:
            return v
    return ""


def _set(labels: LabelSet, name: str, value: str) -> LabelSet:
    rest = [p for p in labels if p[0] != name]
    if value:
        rest.append((name, value))
        rest.sort()
    return tuple(rest)


def _check_unique(vector: _Vector) -> _Vector:
    if len(vector) > 1 and len({el.labels for el in vector}) != len(vector):
        raise EvaluationError("vector cannot contain metrics with the same labelset")
    return vector


def _millis(delta: timedelta | None) -> int:
    if delta is None:
        return 0
    return delta // timedelta(milliseconds=1)


# --------------------------------------------------------------------------------------------
# Selectors


_MATCH_OPS: Final[tuple[tuple[object, str], ...]] = (
    (promql_parser.MatchOp.Equal, "="),
    (promql_parser.MatchOp.NotEqual, "!="),
    (promql_parser.MatchOp.Re, "=~"),
    (promql_parser.MatchOp.NotRe, "!~"),
)


def _matcher(name: str, op_obj: object, value: str, sem: Semantics) -> Callable[[str], bool]:
    op = next((text for member, text in _MATCH_OPS if op_obj == member), None)
    if op is None:
        raise UnsupportedQueryError(f"matcher operator {op_obj}")
    try:
        return label_test(op, value, dot_all=sem.dot_matches_newline)
    except UnsupportedRegex as exc:
        raise UnsupportedQueryError(f"regex {value!r} on label {name}: {exc}") from None


class _Selector:
    """A vector selector: its matchers, offset and how to pick samples from the window."""

    def __init__(self, node: promql_parser.VectorSelector, sem: Semantics) -> None:
        if node.at is not None:
            raise UnsupportedQueryError("the @ modifier")
        group = node.matchers
        if group.or_matchers:
            raise UnsupportedQueryError("'or' between matchers inside a selector")
        self.name: str | None = node.name or None
        self.matchers: list[tuple[str, Callable[[str], bool]]] = []
        key: list[tuple[str, str, str]] = []
        for m in group.matchers:
            if m.name == NAME and m.op == promql_parser.MatchOp.Equal and self.name is None:
                self.name = m.value
            self.matchers.append((m.name, _matcher(m.name, m.op, m.value, sem)))
            key.append((m.name, str(m.op), m.value))
        if node.name:
            equal = promql_parser.MatchOp.Equal
            self.matchers.append((NAME, _matcher(NAME, equal, node.name, sem)))
            key.append((NAME, "=", node.name))
        self.key = (self.name, tuple(sorted(key)))  # identical selectors share one selection
        self.offset = _millis(node.offset)

    def select(self, ctx: _Ctx) -> list[Series]:
        found = ctx.selected.get(self.key)
        if found is None:
            found = [
                s
                for s in ctx.window.series(self.name)
                if all(test(s.label_map.get(label, "")) for label, test in self.matchers)
            ]
            ctx.selected[self.key] = found
        return found

    def instant(self, ctx: _Ctx) -> _Vector:
        ref = ctx.t - self.offset
        oldest = ref - ctx.sem.lookback
        out: _Vector = []
        for s in self.select(ctx):
            i = bisect.bisect_right(s.times, ref) - 1
            if i < 0:
                continue
            t = s.times[i]
            if t < oldest or (ctx.sem.left_open and t == oldest):
                continue
            value = s.values[i]
            if value != value and ieee.is_stale(value):
                continue
            out.append(_El(s.labels, value, t))
        return out


class _Range:
    """A range selector ``selector[range]``: the points of each series inside the range."""

    def __init__(self, node: promql_parser.MatrixSelector, sem: Semantics) -> None:
        inner = node.vector_selector
        if not isinstance(inner, promql_parser.VectorSelector):
            raise UnsupportedQueryError(f"range over {type(inner).__name__}")
        self.selector = _Selector(inner, sem)
        self.range = _millis(node.range)

    def points(self, ctx: _Ctx, s: Series) -> tuple[list[int], list[float]]:
        end = ctx.t - self.selector.offset
        start = end - self.range
        lo = (
            bisect.bisect_right(s.times, start)
            if ctx.sem.left_open
            else bisect.bisect_left(s.times, start)
        )
        hi = bisect.bisect_right(s.times, end)
        times = s.times[lo:hi]
        values = s.values[lo:hi]
        if any(v != v for v in values):
            kept = [(t, v) for t, v in zip(times, values, strict=True) if not ieee.is_stale(v)]
            times = [t for t, _ in kept]
            values = [v for _, v in kept]
        return times, values


# --------------------------------------------------------------------------------------------
# Functions (the arithmetic is in adapter.promql.functions)

_RangeFn = Callable[[_Ctx, "_Range", list[int], list[float]], float | None]


def _rate(counter: bool, rate: bool) -> _RangeFn:
    def run(ctx: _Ctx, rng: _Range, times: list[int], values: list[float]) -> float | None:
        end = ctx.t - rng.selector.offset
        return fn.extrapolated_rate(
            times,
            values,
            end - rng.range,
            end,
            counter=counter,
            rate=rate,
            zero_point_after_threshold=ctx.sem.zero_point_after_threshold,
        )

    return run


_RANGE_FUNCTIONS: Final[dict[str, _RangeFn]] = {
    "rate": _rate(True, True),
    "increase": _rate(True, False),
    "delta": _rate(False, False),
    "irate": lambda ctx, r, t, v: fn.instant_value(t, v, rate=True),
    "idelta": lambda ctx, r, t, v: fn.instant_value(t, v, rate=False),
    "avg_over_time": lambda ctx, r, t, v: fn.avg_over_time(v),
    "sum_over_time": lambda ctx, r, t, v: fn.sum_over_time(v),
    "max_over_time": lambda ctx, r, t, v: fn.max_over_time(v),
    "min_over_time": lambda ctx, r, t, v: fn.min_over_time(v),
    "count_over_time": lambda ctx, r, t, v: float(len(v)),
    "last_over_time": lambda ctx, r, t, v: v[-1],
}


def _histogram_quantile(q: float, vector: _Vector, t: int) -> _Vector:
    """``funcHistogramQuantile`` for classic buckets: grouped by every label but ``le``."""
    groups: dict[LabelSet, tuple[LabelSet, list[tuple[float, float]]]] = {}
    for el in vector:
        try:
            bound = ieee.parse_go_float(_get(el.labels, "le"))
        except ValueError:
            continue  # no le label, or not a number: Prometheus skips the sample
        key = tuple(p for p in el.labels if p[0] != "le")
        group = groups.get(key)
        if group is None:
            group = (tuple(p for p in key if p[0] != NAME), [])
            groups[key] = group
        group[1].append((bound, el.value))
    return [_El(labels, fn.bucket_quantile(q, buckets), t) for labels, buckets in groups.values()]


# --------------------------------------------------------------------------------------------
# Binary operators (engine.go: scalarBinop, vectorElemBinop, VectorBinop, resultMetric)

_ARITHMETIC: Final[dict[str, Callable[[float, float], float]]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": ieee.div,
    "%": ieee.mod,
    "^": ieee.pow_,
    "atan2": math.atan2,
}
_COMPARISON: Final[dict[str, Callable[[float, float], bool]]] = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
}
_SET_OPS: Final = frozenset({"and", "or", "unless"})
_DROPS_NAME: Final = frozenset({"+", "-", "*", "/", "%", "^"})  # shouldDropMetricName


def _elem(op: str, lhs: float, rhs: float) -> tuple[float, bool]:
    """``vectorElemBinop``: the value and whether to keep it."""
    compare = _COMPARISON.get(op)
    if compare is not None:
        return lhs, compare(lhs, rhs)
    return _ARITHMETIC[op](lhs, rhs), True


_Card = Literal["one-to-one", "many-to-one", "one-to-many", "many-to-many"]


@dataclass(frozen=True, slots=True)
class _Matching:
    card: _Card
    on: bool
    labels: frozenset[str]
    include: tuple[str, ...]

    def signature(self, labels: LabelSet) -> LabelSet:
        if self.on:
            return tuple(p for p in labels if p[0] in self.labels)
        return tuple(p for p in labels if p[0] != NAME and p[0] not in self.labels)


def _result_labels(op: str, lhs: LabelSet, rhs: LabelSet, matching: _Matching) -> LabelSet:
    labels = lhs
    if op in _DROPS_NAME:
        labels = _drop_name(labels)
    if matching.card == "one-to-one":
        if matching.on:
            labels = tuple(p for p in labels if p[0] in matching.labels)
        else:
            labels = tuple(p for p in labels if p[0] not in matching.labels)
    for name in matching.include:
        labels = _set(labels, name, _get(rhs, name))
    return labels


def _vector_binop(
    op: str, lhs: _Vector, rhs: _Vector, matching: _Matching, return_bool: bool, t: int
) -> _Vector:
    if not lhs or not rhs:
        return []
    swapped = matching.card == "one-to-many"
    if swapped:
        lhs, rhs = rhs, lhs
    right: dict[LabelSet, _El] = {}
    for el in rhs:
        sig = matching.signature(el.labels)
        duplicate = right.get(sig)
        if duplicate is not None:
            side = "left" if swapped else "right"
            raise EvaluationError(
                f"found duplicate series for the match group {dict(sig)} on the {side} hand-side"
                " of the operation: many-to-many matching not allowed: matching labels must be"
                " unique on one side"
            )
        right[sig] = el
    matched: dict[LabelSet, set[LabelSet] | None] = {}
    out: _Vector = []
    for el in lhs:
        sig = matching.signature(el.labels)
        other = right.get(sig)
        if other is None:
            continue
        left_value, right_value = el.value, other.value
        if swapped:
            left_value, right_value = right_value, left_value
        value, keep = _elem(op, left_value, right_value)
        if return_bool:
            value = 1.0 if keep else 0.0
        elif not keep:
            continue
        labels = _result_labels(op, el.labels, other.labels, matching)
        if return_bool:
            labels = _drop_name(labels)
        if matching.card == "one-to-one":
            if sig in matched:
                raise EvaluationError(
                    "multiple matches for labels: many-to-one matching must be explicit"
                    " (group_left/group_right)"
                )
            matched[sig] = None
        else:
            inserted = matched.setdefault(sig, set())
            assert inserted is not None
            if labels in inserted:
                raise EvaluationError(
                    "multiple matches for labels: grouping labels must ensure unique matches"
                )
            inserted.add(labels)
        out.append(_El(labels, value, t))
    return out


def _set_op(op: str, lhs: _Vector, rhs: _Vector, matching: _Matching) -> _Vector:
    if op == "and":
        if not lhs or not rhs:
            return []
        right = {matching.signature(el.labels) for el in rhs}
        return [el for el in lhs if matching.signature(el.labels) in right]
    if op == "or":
        if not lhs or not rhs:
            return lhs + rhs
        left = {matching.signature(el.labels) for el in lhs}
        return lhs + [el for el in rhs if matching.signature(el.labels) not in left]
    if not lhs or not rhs:  # unless
        return list(lhs)
    right = {matching.signature(el.labels) for el in rhs}
    return [el for el in lhs if matching.signature(el.labels) not in right]


def _vector_scalar(
    op: str, vector: _Vector, scalar: float, swap: bool, return_bool: bool, t: int
) -> _Vector:
    out: _Vector = []
    comparison = op in _COMPARISON
    for el in vector:
        lv, rv = (scalar, el.value) if swap else (el.value, scalar)
        value, keep = _elem(op, lv, rv)
        if comparison and swap:
            value = rv
        if return_bool:
            value = 1.0 if keep else 0.0
            keep = True
        if keep:
            labels = _drop_name(el.labels) if op in _DROPS_NAME or return_bool else el.labels
            out.append(_El(labels, value, t))
    return out


def _scalar_binop(op: str, lhs: float, rhs: float) -> float:
    compare = _COMPARISON.get(op)
    if compare is not None:
        return 1.0 if compare(lhs, rhs) else 0.0
    return _ARITHMETIC[op](lhs, rhs)


# --------------------------------------------------------------------------------------------
# Aggregations (engine.go: aggregation)

SUPPORTED_AGGREGATIONS: Final = frozenset(
    {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "quantile"}
)


class _Group:
    __slots__ = ("count", "labels", "mean", "value", "values")

    def __init__(self, labels: LabelSet, value: float) -> None:
        self.labels = labels
        self.value = value
        self.mean = value
        self.count = 1
        self.values = [value]


def _group_key(labels: LabelSet, grouping: frozenset[str], without: bool, by: bool) -> LabelSet:
    if without:
        return tuple(p for p in labels if p[0] != NAME and p[0] not in grouping)
    if by:
        return tuple(p for p in labels if p[0] in grouping)
    return ()


def _new_group(op: str, key: LabelSet, v: float) -> _Group:
    group = _Group(key, v)
    if op in ("stddev", "stdvar"):
        group.value = 0.0
    elif op == "group":
        group.value = 1.0
    return group


def _accumulate_avg(group: _Group, v: float) -> None:
    group.count += 1
    mean = group.mean
    if math.isinf(mean):
        if math.isinf(v) and (mean > 0) == (v > 0):
            return
        if not math.isinf(v) and v == v:
            return
    group.mean += v / group.count - mean / group.count


def _accumulate(op: str, group: _Group, v: float) -> None:
    """Fold one more sample into its group, as Prometheus' aggregation does (NaN-aware min/max)."""
    if op == "sum":
        group.value += v
    elif op == "avg":
        _accumulate_avg(group, v)
    elif op == "max":
        if group.value < v or group.value != group.value:
            group.value = v
    elif op == "min":
        if group.value > v or group.value != group.value:
            group.value = v
    elif op == "count":
        group.count += 1
    elif op in ("stddev", "stdvar"):
        group.count += 1
        delta = v - group.mean
        group.mean += delta / group.count
        group.value += delta * (v - group.mean)
    elif op == "quantile":
        group.values.append(v)


def _finish(op: str, group: _Group, param: float) -> float:
    if op == "avg":
        return group.mean
    if op == "count":
        return float(group.count)
    if op == "stdvar":
        return group.value / group.count
    if op == "stddev":
        return ieee.sqrt(group.value / group.count)
    if op == "quantile":
        return fn.quantile(param, group.values)
    return group.value


def _aggregate(
    op: str, vector: _Vector, grouping: frozenset[str], without: bool, by: bool, param: float
) -> list[tuple[LabelSet, float]]:
    groups: dict[LabelSet, _Group] = {}
    for el in vector:
        key = _group_key(el.labels, grouping, without, by)
        group = groups.get(key)
        if group is None:
            groups[key] = _new_group(op, key, el.value)
        else:
            _accumulate(op, group, el.value)
    return [(group.labels, _finish(op, group, param)) for group in groups.values()]


# --------------------------------------------------------------------------------------------
# Compilation: the AST, checked against the subset, becomes a tree of closures

SUPPORTED_FUNCTIONS: Final = frozenset(
    {
        *_RANGE_FUNCTIONS,
        *fn.SIMPLE_FUNCTIONS,
        "round",
        "clamp",
        "clamp_min",
        "clamp_max",
        "histogram_quantile",
        "label_replace",
        "label_join",
        "timestamp",
        "vector",
        "scalar",
        "time",
    }
)

_LABEL_NAME_CHARS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"
)


def _valid_label_name(name: str) -> bool:
    return bool(name) and not name[0].isdigit() and set(name) <= _LABEL_NAME_CHARS


def _unwrap(node: object) -> object:
    while isinstance(node, promql_parser.ParenExpr):
        node = node.expr
    return node


class _Compiler:
    def __init__(self, sem: Semantics) -> None:
        self.sem = sem
        self.history = 0  # ms of samples the query reads before the evaluation time

    def _need(self, ms: int) -> None:
        self.history = max(self.history, ms)

    def compile(self, node: object, depth: int = 0) -> tuple[_Kind, _Eval]:
        if depth > MAX_NESTING:
            raise UnsupportedQueryError(f"an expression nested deeper than {MAX_NESTING}")
        d = depth + 1
        if isinstance(node, promql_parser.NumberLiteral):
            value = float(node.val)
            return "scalar", lambda ctx: value
        if isinstance(node, promql_parser.ParenExpr):
            return self.compile(node.expr, d)
        if isinstance(node, promql_parser.VectorSelector):
            selector = _Selector(node, self.sem)
            self._need(self.sem.lookback + selector.offset)
            return "vector", selector.instant
        if isinstance(node, promql_parser.UnaryExpr):
            kind, inner = self.compile(node.expr, d)
            if kind == "scalar":
                return kind, lambda ctx: -_scalar(inner(ctx))
            return kind, lambda ctx: _check_unique(
                [_El(_drop_name(el.labels), -el.value, el.t) for el in _vector(inner(ctx))]
            )
        if isinstance(node, promql_parser.BinaryExpr):
            return self._binary(node, d)
        if isinstance(node, promql_parser.AggregateExpr):
            return self._aggregate(node, d)
        if isinstance(node, promql_parser.Call):
            return self._call(node, d)
        if isinstance(node, promql_parser.MatrixSelector):
            raise UnsupportedQueryError("a range vector outside a function (a matrix result)")
        if isinstance(node, promql_parser.SubqueryExpr):
            raise UnsupportedQueryError("subqueries")
        if isinstance(node, promql_parser.StringLiteral):
            raise UnsupportedQueryError("a string outside a function argument")
        raise UnsupportedQueryError(f"the PromQL node {type(node).__name__}")

    # -- binary operators ----------------------------------------------------------------

    def _binary(self, node: promql_parser.BinaryExpr, d: int) -> tuple[_Kind, _Eval]:
        op = str(node.op)
        modifier = node.modifier
        return_bool = bool(modifier is not None and modifier.return_bool)
        if modifier is not None:
            fill = modifier.fill_values
            if fill is not None and (fill.lhs is not None or fill.rhs is not None):
                raise UnsupportedQueryError("fill() in vector matching")
        if op not in _ARITHMETIC and op not in _COMPARISON and op not in _SET_OPS:
            raise UnsupportedQueryError(f"the operator {op}")
        lkind, lhs = self.compile(node.lhs, d)
        rkind, rhs = self.compile(node.rhs, d)
        if lkind == "scalar" and rkind == "scalar":
            return "scalar", lambda ctx: _scalar_binop(op, _scalar(lhs(ctx)), _scalar(rhs(ctx)))
        if lkind == "vector" and rkind == "scalar":
            return "vector", lambda ctx: _check_unique(
                _vector_scalar(op, _vector(lhs(ctx)), _scalar(rhs(ctx)), False, return_bool, ctx.t)
            )
        if lkind == "scalar" and rkind == "vector":
            return "vector", lambda ctx: _check_unique(
                _vector_scalar(op, _vector(rhs(ctx)), _scalar(lhs(ctx)), True, return_bool, ctx.t)
            )
        matching = self._matching(node, op)
        if op in _SET_OPS:
            return "vector", lambda ctx: _check_unique(
                _set_op(op, _vector(lhs(ctx)), _vector(rhs(ctx)), matching)
            )
        return "vector", lambda ctx: _check_unique(
            _vector_binop(op, _vector(lhs(ctx)), _vector(rhs(ctx)), matching, return_bool, ctx.t)
        )

    @staticmethod
    def _matching(node: promql_parser.BinaryExpr, op: str) -> _Matching:
        modifier = node.modifier
        if modifier is None:
            return _Matching(
                "many-to-many" if op in _SET_OPS else "one-to-one", False, frozenset(), ()
            )
        cards: tuple[tuple[object, _Card], ...] = (  # pyo3 enums are not hashable: use ==
            (promql_parser.VectorMatchCardinality.OneToOne, "one-to-one"),
            (promql_parser.VectorMatchCardinality.ManyToOne, "many-to-one"),
            (promql_parser.VectorMatchCardinality.OneToMany, "one-to-many"),
            (promql_parser.VectorMatchCardinality.ManyToMany, "many-to-many"),
        )
        card: _Card | None = next((c for member, c in cards if modifier.card == member), None)
        if card is None:
            raise UnsupportedQueryError(f"vector matching {modifier.card}")
        if op in _SET_OPS:
            card = "many-to-many"
        matching = modifier.matching
        on = bool(matching is not None and matching.type == promql_parser.LabelModifierType.Include)
        labels = frozenset(matching.labels) if matching is not None else frozenset()
        include = tuple(modifier.group_labels or ()) if card != "one-to-one" else ()
        return _Matching(card, on, labels, include)

    # -- aggregations --------------------------------------------------------------------

    def _aggregate(self, node: promql_parser.AggregateExpr, d: int) -> tuple[_Kind, _Eval]:
        op = str(node.op)
        if op not in SUPPORTED_AGGREGATIONS:
            raise UnsupportedQueryError(f"the aggregation {op}")
        modifier = node.modifier
        without = bool(
            modifier is not None and modifier.type == promql_parser.AggModifierType.Without
        )
        by = modifier is not None and not without
        grouping = frozenset(modifier.labels) if modifier is not None else frozenset()
        kind, inner = self.compile(node.expr, d)
        if kind != "vector":
            raise UnsupportedQueryError(f"{op} over a scalar")
        param: _Eval = lambda ctx: 0.0  # noqa: E731
        if op == "quantile":
            if node.param is None:
                raise UnsupportedQueryError("quantile without its parameter")
            pkind, param = self.compile(node.param, d)
            if pkind != "scalar":
                raise UnsupportedQueryError("a non-scalar quantile parameter")

        def run(ctx: _Ctx) -> _Value:
            q = _scalar(param(ctx))
            groups = _aggregate(op, _vector(inner(ctx)), grouping, without, by, q)
            return [_El(labels, value, ctx.t) for labels, value in groups]

        return "vector", run

    # -- functions -----------------------------------------------------------------------

    def _call(self, node: promql_parser.Call, d: int) -> tuple[_Kind, _Eval]:
        name = node.func.name
        args = list(node.args)
        if name not in SUPPORTED_FUNCTIONS:
            raise UnsupportedQueryError(f"the function {name}()")
        if name in _RANGE_FUNCTIONS:
            return self._range_call(name, args)
        if name == "time":
            return "scalar", lambda ctx: ctx.t / 1000
        if name == "vector":
            _, arg = self.compile(args[0], d)
            return "vector", lambda ctx: [_El((), _scalar(arg(ctx)), ctx.t)]
        if name == "scalar":
            _, arg = self.compile(args[0], d)

            def to_scalar(ctx: _Ctx) -> _Value:
                vector = _vector(arg(ctx))
                return vector[0].value if len(vector) == 1 else ieee.NAN

            return "scalar", to_scalar
        if name == "timestamp":
            return self._timestamp(args[0], d)
        if name == "histogram_quantile":
            _, q = self.compile(args[0], d)
            _, vec = self.compile(args[1], d)
            return "vector", lambda ctx: _check_unique(
                _histogram_quantile(_scalar(q(ctx)), _vector(vec(ctx)), ctx.t)
            )
        if name == "label_replace":
            return self._label_replace(args, d)
        if name == "label_join":
            return self._label_join(args, d)
        _, vec = self.compile(args[0], d)
        scalars = [self.compile(a, d)[1] for a in args[1:]]
        if name in fn.SIMPLE_FUNCTIONS:
            simple = fn.SIMPLE_FUNCTIONS[name]
            return "vector", lambda ctx: _check_unique(
                [_El(_drop_name(el.labels), simple(el.value), ctx.t) for el in _vector(vec(ctx))]
            )

        def elementwise(ctx: _Ctx) -> _Value:
            vector = _vector(vec(ctx))
            params = [_scalar(s(ctx)) for s in scalars]
            if name == "round":
                to_nearest = params[0] if params else 1.0
                each: Callable[[float], float] = lambda v: fn.round_to(v, to_nearest)  # noqa: E731
            elif name == "clamp":
                low, high = params
                if high < low:
                    return []
                each = lambda v: ieee.go_max(low, ieee.go_min(high, v))  # noqa: E731
            elif name == "clamp_min":
                each = lambda v: ieee.go_max(params[0], v)  # noqa: E731
            else:  # clamp_max
                each = lambda v: ieee.go_min(params[0], v)  # noqa: E731
            return _check_unique(
                [_El(_drop_name(el.labels), each(el.value), ctx.t) for el in vector]
            )

        return "vector", elementwise

    def _range_call(self, name: str, args: list[object]) -> tuple[_Kind, _Eval]:
        arg = _unwrap(args[0])
        if isinstance(arg, promql_parser.SubqueryExpr):
            raise UnsupportedQueryError("subqueries")
        if not isinstance(arg, promql_parser.MatrixSelector):
            raise UnsupportedQueryError(f"{name}() over {type(arg).__name__}")
        rng = _Range(arg, self.sem)
        self._need(rng.range + rng.selector.offset)
        function = _RANGE_FUNCTIONS[name]
        keep_name = name == "last_over_time"

        def run(ctx: _Ctx) -> _Value:
            out: _Vector = []
            for s in rng.selector.select(ctx):
                times, values = rng.points(ctx, s)
                if not times:
                    continue
                value = function(ctx, rng, times, values)
                if value is not None:
                    out.append(_El(s.labels if keep_name else _drop_name(s.labels), value, ctx.t))
            return _check_unique(out)

        return "vector", run

    def _timestamp(self, arg: object, d: int) -> tuple[_Kind, _Eval]:
        inner = _unwrap(arg)
        if isinstance(inner, promql_parser.VectorSelector):
            # Prometheus special-cases a selector: the samples' own times, not the evaluation's.
            _, vec = self.compile(inner, d)
            return "vector", lambda ctx: _check_unique(
                [_El(_drop_name(el.labels), el.t / 1000, ctx.t) for el in _vector(vec(ctx))]
            )
        _, vec = self.compile(arg, d)
        return "vector", lambda ctx: _check_unique(
            [_El(_drop_name(el.labels), ctx.t / 1000, ctx.t) for el in _vector(vec(ctx))]
        )

    def _string(self, node: object) -> str:
        node = _unwrap(node)
        if not isinstance(node, promql_parser.StringLiteral):
            raise UnsupportedQueryError("a computed string argument")
        return str(node.val)

    def _label_replace(self, args: list[object], d: int) -> tuple[_Kind, _Eval]:
        _, vec = self.compile(args[0], d)
        dst, replacement, src, pattern = (self._string(a) for a in args[1:5])
        try:
            regex = compile_anchored(pattern, dot_all=self.sem.dot_matches_newline)
        except UnsupportedRegex as exc:
            raise UnsupportedQueryError(f"label_replace() regex {pattern!r}: {exc}") from None
        if not _valid_label_name(dst):
            raise EvaluationError(f"invalid destination label name in label_replace(): {dst}")
        names = dict(regex.groupindex)

        def run(ctx: _Ctx) -> _Value:
            out: _Vector = []
            for el in _vector(vec(ctx)):
                match = regex.fullmatch(_get(el.labels, src))
                labels = el.labels
                if match is not None:
                    groups = (match.group(0), *match.groups())
                    labels = _set(labels, dst, fn.expand_template(replacement, groups, names))
                out.append(_El(labels, el.value, ctx.t))
            return _check_unique(out)

        return "vector", run

    def _label_join(self, args: list[object], d: int) -> tuple[_Kind, _Eval]:
        _, vec = self.compile(args[0], d)
        dst, separator = self._string(args[1]), self._string(args[2])
        sources = [self._string(a) for a in args[3:]]
        if not _valid_label_name(dst):
            raise EvaluationError(f"invalid destination label name in label_join(): {dst}")
        for source in sources:
            if not _valid_label_name(source):
                raise EvaluationError(f"invalid source label name in label_join(): {source}")

        def run(ctx: _Ctx) -> _Value:
            out: _Vector = []
            for el in _vector(vec(ctx)):
                joined = separator.join(_get(el.labels, s) for s in sources)
                out.append(_El(_set(el.labels, dst, joined), el.value, ctx.t))
            return _check_unique(out)

        return "vector", run


def _scalar(value: _Value) -> float:
    assert isinstance(value, float), "a scalar was expected"
    return value


def _vector(value: _Value) -> _Vector:
    assert isinstance(value, list), "an instant vector was expected"
    return value


# --------------------------------------------------------------------------------------------
# Public entry points


@dataclass(frozen=True, slots=True)
class CompiledQuery:
    """A query checked against the subset, ready to evaluate many times.

    ``history`` is how far back (seconds) the query reads samples: keep at least that much in
    the window (the largest range plus offset, or the lookback for instant selectors).
    """

    query: str
    kind: _Kind
    history: float
    semantics: Semantics
    _run: _Eval = field(repr=False, compare=False)

    def evaluate(self, window: SampleWindow, at: float, *, backend: str = "local") -> QueryResult:
        """The answer at ``at`` (unix seconds, rounded to the millisecond as Prometheus does)."""
        started = time.perf_counter()
        t = _to_millis(at)
        value = self._run(_Ctx(window, t, self.semantics))
        stamp = t / 1000
        if isinstance(value, float):
            samples: tuple[Sample, ...] = (Sample(labels={}, value=value, timestamp=stamp),)
        else:
            samples = tuple(
                Sample(labels=dict(el.labels), value=el.value, timestamp=stamp) for el in value
            )
        return QueryResult(
            query=self.query,
            samples=samples,
            duration=time.perf_counter() - started,
            backend=backend,
        )


def _to_millis(at: float) -> int:
    """Prometheus' ``parseTime`` for a float: whole seconds plus the fraction rounded to ms."""
    if not math.isfinite(at):
        raise QueryError(f"evaluation time must be finite, not {at}")
    whole = math.trunc(at)
    fraction = math.floor(abs(at - whole) * 1000 + 0.5)  # Go's math.Round: half away from 0
    return int(whole) * 1000 + int(math.copysign(fraction, at))


@functools.lru_cache(maxsize=1024)
def _compile(query: str, semantics: Semantics) -> CompiledQuery:
    tokenize(query)  # bounds length, tokens and depth before the recursive parser runs
    expr = parse(query)
    compiler = _Compiler(semantics)
    kind, run = compiler.compile(expr)
    return CompiledQuery(query, kind, compiler.history / 1000, semantics, run)


def compile_query(query: str, semantics: Semantics = PROMETHEUS_2) -> CompiledQuery:
    """Parse and check ``query``; raise :class:`UnsupportedQueryError` outside the subset and
    :class:`QueryError` when it is not valid PromQL."""
    check_type(query)
    return _compile(query, semantics)


def evaluate(
    query: str,
    window: SampleWindow,
    at: float,
    *,
    semantics: Semantics = PROMETHEUS_2,
    backend: str = "local",
) -> QueryResult:
    """Evaluate the instant query ``query`` at ``at`` (unix seconds) over ``window``.

    Samples carry the evaluation time, as Prometheus stamps instant-query results; a scalar
    result is one sample without labels, as :func:`adapter.backends.prometheus.parse_query_data`
    returns it.
    """
    return compile_query(query, semantics).evaluate(window, at, backend=backend)


def unsupported_reason(query: str, semantics: Semantics = PROMETHEUS_2) -> str | None:
    """``None`` when :func:`evaluate` can answer ``query``; otherwise why not, in a sentence.

    Invalid PromQL is reported too (``"invalid PromQL: …"``): the local evaluator cannot answer
    it either. Cached: a caller may ask on every HPA sync.
    """
    check_type(query)
    return _unsupported_reason(query, semantics)


@functools.lru_cache(maxsize=1024)
def _unsupported_reason(query: str, semantics: Semantics) -> str | None:
    try:
        _compile(query, semantics)
    except UnsupportedQueryError as exc:
        return f"outside the local evaluator's subset: {exc.message}"
    except QueryError as exc:
        return exc.message
    return None


def required_history(queries: Sequence[str], semantics: Semantics = PROMETHEUS_2) -> float:
    """Seconds of history a window needs to answer every supported query of ``queries``."""
    longest = 0.0
    for query in queries:
        try:
            longest = max(longest, compile_query(query, semantics).history)
        except QueryError:
            continue
    return longest


_LABEL_REWRITES: Final = frozenset({"label_replace", "label_join"})
"""Functions that set a label (their second argument): a series that sets ``pod`` can take
another pod's name; one that sets another label stays its own pod's."""


@functools.lru_cache(maxsize=1024)
def keeps_apart(query: str, label: str) -> bool:
    """Whether each value of ``query`` is computed only from series with the same ``label``
    value (``pod``): every aggregation keeps ``label`` in its groups, every vector matching
    matches on it, no ``scalar()`` and no label rewrite that sets ``label``. ``False`` when unsure,
    for invalid PromQL too. The pod-scrape path may then mix pods read from two sources."""
    try:
        tokenize(query)
        expr = parse(query)
    except QueryError:
        return False
    return _keeps_apart(expr, label, 0)


def _keeps_apart(node: object, label: str, depth: int) -> bool:
    if depth > MAX_NESTING:
        return False
    d = depth + 1
    if isinstance(node, (promql_parser.NumberLiteral, promql_parser.StringLiteral)):
        return True
    if isinstance(node, (promql_parser.VectorSelector, promql_parser.MatrixSelector)):
        return True
    if isinstance(node, (promql_parser.ParenExpr, promql_parser.UnaryExpr)):
        return _keeps_apart(node.expr, label, d)
    if isinstance(node, promql_parser.AggregateExpr):
        return _aggregation_keeps_apart(node, label, d)
    if isinstance(node, promql_parser.BinaryExpr):
        return _matching_keeps_apart(node, label, d)
    if isinstance(node, promql_parser.Call):
        return _call_keeps_apart(node, label, d)
    return False


def _aggregation_keeps_apart(node: promql_parser.AggregateExpr, label: str, d: int) -> bool:
    modifier = node.modifier
    if modifier is None:
        return False
    without = modifier.type == promql_parser.AggModifierType.Without
    if (label in modifier.labels) == without:
        return False
    return _keeps_apart(node.expr, label, d) and (
        node.param is None or _keeps_apart(node.param, label, d)
    )


def _matching_keeps_apart(node: promql_parser.BinaryExpr, label: str, d: int) -> bool:
    binary = node.modifier
    matching = binary.matching if binary is not None else None
    if matching is not None:
        on = matching.type == promql_parser.LabelModifierType.Include
        if (label in matching.labels) != on:
            return False
    return _keeps_apart(node.lhs, label, d) and _keeps_apart(node.rhs, label, d)


def _call_keeps_apart(node: promql_parser.Call, label: str, d: int) -> bool:
    name = node.func.name
    if name == "scalar":  # a scalar stands for every series alike
        return False
    if name in _LABEL_REWRITES:
        target = node.args[1] if len(node.args) > 1 else None
        if not isinstance(target, promql_parser.StringLiteral) or target.val == label:
            return False
    return all(_keeps_apart(arg, label, d) for arg in node.args)
