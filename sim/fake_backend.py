"""An in-memory backend that evaluates a useful subset of PromQL, for unit and API tests.

The "TSDB" is a list of series set with :meth:`FakeBackend.set_series`: labels (``__name__``
included) and one value each. Supported PromQL: vector selectors with ``=``, ``!=``, ``=~``,
``!~`` (regexes anchored, as in Prometheus); ``sum``/``avg``/``max``/``min``/``count`` with or
without ``by (…)``/``without (…)``; ``+ - * /`` between vectors (one-to-one, optionally with
``on (…)``/``ignoring (…)``), between a vector and a scalar, and between scalars; unary minus;
number literals; parentheses; ``or``; ``and``/``unless`` (optionally with ``on (…)``/``ignoring
(…)``); the filtering comparisons ``== != > < >= <=`` between a vector and a scalar;
``timestamp()`` and ``label_replace()`` (what :func:`adapter.promql.with_freshness` uses);
``histogram_quantile()`` (Prometheus' interpolation over classic ``le`` buckets); ``rate()`` and
``increase()`` of a range selector. The store holds one value per series and no history, so a
range selector reads that value: ``rate(x[w])`` is the stored value itself (store a counter's
per-second rate in it) and ``increase(x[w])`` that value times ``w`` in seconds. Anything else
raises :class:`BackendResponseError` ("fake backend does not evaluate …"), so a test never gets
a silently wrong number.

Differences from Prometheus, on purpose: a selected sample keeps the timestamp it was given (or
the query time), and aggregations and operations carry the newest timestamp of their inputs, so
tests can exercise staleness; Prometheus would stamp every result with the evaluation time.
"""

from __future__ import annotations

import asyncio
import math
import operator
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import promql_parser

from adapter.domain.errors import BackendError, BackendResponseError, BackendTimeoutError
from adapter.domain.models import QueryResult, Sample

__all__ = ["FakeBackend", "SeriesSpec"]

SeriesSpec = tuple[dict[str, str], float] | tuple[dict[str, str], float, float]
"""``(labels, value)`` or ``(labels, value, unix_timestamp_seconds)``."""

_NAME = "__name__"


@dataclass(frozen=True, slots=True)
class _Element:
    labels: dict[str, str]
    value: float
    timestamp: float


_Vector = list[_Element]
_Value = _Vector | float  # an instant vector or a scalar


class FakeBackend:
    """:class:`adapter.backends.base.Backend` over an in-memory list of series.

    ``queries`` records every query string received (by :meth:`query`), in order.
    ``delay`` (seconds) makes every call slow; a call whose ``timeout`` is shorter than the delay
    raises :class:`BackendTimeoutError` after ``timeout`` seconds, as a real backend would.
    """

    def __init__(self, *, name: str = "fake") -> None:
        self.name = name
        self.queries: list[str] = []
        self.delay = 0.0
        self._series: list[tuple[dict[str, str], float, float | None]] = []
        self._failure: BackendError | None = None
        self._closed = False

    def set_series(self, series: Sequence[SeriesSpec]) -> None:
        """Replace the stored series. A series without a timestamp is stamped at query time."""
        stored: list[tuple[dict[str, str], float, float | None]] = []
        for spec in series:
            labels = dict(spec[0])
            if not all(isinstance(k, str) and isinstance(v, str) for k, v in labels.items()):
                raise TypeError("series labels must map str to str")
            ts = float(spec[2]) if len(spec) == 3 else None
            stored.append((labels, float(spec[1]), ts))
        self._series = stored

    def fail_with(self, exc: BackendError | None) -> None:
        """Make every later call raise ``exc`` (``None`` restores normal answers)."""
        self._failure = exc

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        """Evaluate ``query`` over the stored series at the current time."""
        self.queries.append(query)
        started = time.monotonic()
        await self._enter(timeout)
        now = time.time()
        try:
            expr = promql_parser.parse(query)
        except (ValueError, TypeError) as exc:
            raise BackendResponseError(f"bad_data: {exc}", backend=self.name) from exc
        result = _Evaluator(self._snapshot(now), now=now, backend=self.name).eval(expr)
        if isinstance(result, float):
            samples: tuple[Sample, ...] = (Sample(labels={}, value=result, timestamp=now),)
            raw: object = {"resultType": "scalar", "result": [now, _fmt(result)]}
        else:
            samples = tuple(
                Sample(labels=dict(e.labels), value=e.value, timestamp=e.timestamp) for e in result
            )
            raw = {
                "resultType": "vector",
                "result": [
                    {"metric": e.labels, "value": [e.timestamp, _fmt(e.value)]} for e in result
                ],
            }
        return QueryResult(
            query=query,
            samples=samples,
            raw=raw,
            duration=time.monotonic() - started,
            backend=self.name,
        )

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        """Distinct ``__name__`` values of series matching any selector in ``match`` (or all)."""
        await self._enter(timeout)
        return sorted({e.labels[_NAME] for e in self._matching(match) if _NAME in e.labels})

    async def label_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        """Distinct label names of series matching any selector in ``match`` (all if empty)."""
        await self._enter(timeout)
        return sorted({name for e in self._matching(match) for name in e.labels})

    async def ping(self, *, timeout: float) -> None:
        """Succeeds unless :meth:`fail_with` set a failure (or ``delay`` exceeds ``timeout``)."""
        await self._enter(timeout)

    async def aclose(self) -> None:
        """Nothing to release; idempotent."""
        self._closed = True

    # -- internals ---------------------------------------------------------------------------

    async def _enter(self, timeout: float) -> None:
        if self.delay > 0:
            if timeout < self.delay:
                await asyncio.sleep(max(timeout, 0.0))
                raise BackendTimeoutError(f"no answer within {timeout:g}s", backend=self.name)
            await asyncio.sleep(self.delay)
        if self._failure is not None:
            raise self._failure

    def _snapshot(self, now: float) -> _Vector:
        return [
            _Element(labels=labels, value=value, timestamp=now if ts is None else ts)
            for labels, value, ts in self._series
        ]

    def _matching(self, match: Sequence[str]) -> _Vector:
        now = time.time()
        series = self._snapshot(now)
        if not match:
            return series
        evaluator = _Evaluator(series, now=now, backend=self.name)
        chosen: dict[int, _Element] = {}
        for text in match:
            try:
                expr = promql_parser.parse(text)
            except (ValueError, TypeError) as exc:
                raise BackendResponseError(f"bad_data: {exc}", backend=self.name) from exc
            if not isinstance(expr, promql_parser.VectorSelector):
                raise BackendResponseError(
                    f"bad_data: match[] must be a series selector, got {text!r}", backend=self.name
                )
            for element in evaluator.select(expr):
                chosen[id(element)] = element
        return list(chosen.values())


def _fmt(value: float) -> str:
    """A value as Prometheus' JSON writes it."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def _divide(a: float, b: float) -> float:
    # IEEE 754 division, as Prometheus (Go) does it: x/0 is ±Inf, 0/0 is NaN.
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _safe(fn: Callable[[float, float], float]) -> Callable[[float, float], float]:
    def apply(a: float, b: float) -> float:
        try:
            return fn(a, b)
        except OverflowError:
            return math.copysign(math.inf, a)

    return apply


_ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": _safe(lambda a, b: a * b),
    "/": _divide,
}


def _agg_sum(values: list[float]) -> float:
    return sum(values)


def _agg_avg(values: list[float]) -> float:
    return sum(values) / len(values)


def _agg_max(values: list[float]) -> float:
    # Prometheus: NaN loses to any number and wins only when every input is NaN.
    numbers = [v for v in values if not math.isnan(v)]
    return max(numbers) if numbers else math.nan


def _agg_min(values: list[float]) -> float:
    numbers = [v for v in values if not math.isnan(v)]
    return min(numbers) if numbers else math.nan


def _agg_count(values: list[float]) -> float:
    return float(len(values))


_COMPARISONS: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' ``histogram_quantile`` over ``(upper bound, cumulative count)`` pairs."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return math.nan
    # Cumulative counts must not decrease (Prometheus repairs them the same way).
    fixed: list[tuple[float, float]] = []
    highest = -math.inf
    for upper, count in buckets:
        highest = max(highest, count)
        fixed.append((upper, highest))
    observations = fixed[-1][1]
    if observations == 0 or math.isnan(observations):
        return math.nan
    rank = q * observations
    b = next(i for i, (_, count) in enumerate(fixed) if count >= rank)
    if b == len(fixed) - 1:
        return fixed[-2][0]
    if b == 0 and fixed[0][0] <= 0:
        return fixed[0][0]
    start, end, count = 0.0, fixed[b][0], fixed[b][1]
    if b > 0:
        start = fixed[b - 1][0]
        count -= fixed[b - 1][1]
        rank -= fixed[b - 1][1]
    return start + (end - start) * (rank / count)


_AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": _agg_sum,
    "avg": _agg_avg,
    "max": _agg_max,
    "min": _agg_min,
    "count": _agg_count,
}


class _Evaluator:
    def __init__(self, series: _Vector, *, now: float, backend: str) -> None:
        self._series = series
        self._now = now
        self._backend = backend
        self._regexes: dict[str, re.Pattern[str]] = {}

    def _unsupported(self, what: str) -> BackendResponseError:
        return BackendResponseError(f"fake backend does not evaluate {what}", backend=self._backend)

    def eval(self, expr: object) -> _Value:
        if isinstance(expr, promql_parser.NumberLiteral):
            return float(expr.val)
        if isinstance(expr, promql_parser.ParenExpr):
            return self.eval(expr.expr)
        if isinstance(expr, promql_parser.VectorSelector):
            return self.select(expr)
        if isinstance(expr, promql_parser.AggregateExpr):
            return self._aggregate(expr)
        if isinstance(expr, promql_parser.BinaryExpr):
            return self._binary(expr)
        if isinstance(expr, promql_parser.Call):
            return self._call(expr)
        if isinstance(expr, promql_parser.UnaryExpr):
            inner = self.eval(expr.expr)
            if isinstance(inner, float):
                return -inner
            return [_Element(_drop_name(e.labels), -e.value, e.timestamp) for e in inner]
        return self._fail_node(expr)

    def _fail_node(self, expr: object) -> _Value:
        raise self._unsupported(f"{type(expr).__name__} ({expr})")

    # -- selectors ---------------------------------------------------------------------------

    def _regex(self, pattern: str) -> re.Pattern[str]:
        compiled = self._regexes.get(pattern)
        if compiled is None:
            try:
                # Prometheus anchors regex matchers: the whole value must match.
                compiled = re.compile(f"(?:{pattern})\\Z", re.DOTALL)
            except re.error as exc:
                raise BackendResponseError(
                    f"bad_data: invalid regular expression {pattern!r}: {exc}",
                    backend=self._backend,
                ) from exc
            self._regexes[pattern] = compiled
        return compiled

    def _matches(self, labels: dict[str, str], name: str, op: str, value: str) -> bool:
        actual = labels.get(name, "")  # a missing label matches as the empty string
        if op == "=":
            return actual == value
        if op == "!=":
            return actual != value
        if op == "=~":
            return self._regex(value).match(actual) is not None
        if op == "!~":
            return self._regex(value).match(actual) is None
        raise self._unsupported(f"matcher operator {op}")

    def select(self, selector: promql_parser.VectorSelector) -> _Vector:
        if selector.offset is not None or selector.at is not None:
            raise self._unsupported(f"offset or @ modifiers ({selector})")
        if selector.matchers.or_matchers:
            raise self._unsupported(f"'or' inside a selector ({selector})")
        conditions: list[tuple[str, str, str]] = []
        if selector.name:
            conditions.append((_NAME, "=", selector.name))
        for matcher in selector.matchers.matchers:
            conditions.append((matcher.name, _op(matcher.op), matcher.value))
        return [
            e
            for e in self._series
            if all(self._matches(e.labels, n, op, v) for n, op, v in conditions)
        ]

    # -- aggregation -------------------------------------------------------------------------

    def _aggregate(self, expr: promql_parser.AggregateExpr) -> _Vector:
        name = str(expr.op)
        fn = _AGGREGATIONS.get(name)
        if fn is None or expr.param is not None:
            raise self._unsupported(f"the aggregation {name}")
        inner = self.eval(expr.expr)
        if isinstance(inner, float):
            raise BackendResponseError(
                f"bad_data: expected an instant vector in aggregation {name}, got a scalar",
                backend=self._backend,
            )
        modifier = expr.modifier
        groups: dict[tuple[tuple[str, str], ...], list[_Element]] = {}
        for element in inner:
            if modifier is None:
                key: dict[str, str] = {}
            elif modifier.type == promql_parser.AggModifierType.By:
                key = {k: v for k, v in element.labels.items() if k in modifier.labels}
            else:
                drop = {*modifier.labels, _NAME}
                key = {k: v for k, v in element.labels.items() if k not in drop}
            groups.setdefault(tuple(sorted(key.items())), []).append(element)
        return [
            _Element(
                labels=dict(key),
                value=fn([e.value for e in members]),
                timestamp=max(e.timestamp for e in members),
            )
            for key, members in groups.items()
        ]

    # -- binary operators --------------------------------------------------------------------

    def _binary(self, expr: promql_parser.BinaryExpr) -> _Value:
        op = str(expr.op)
        if op == "or":
            return self._union(expr)
        if op in ("and", "unless"):
            return self._intersect(expr, keep=op == "and")
        if op in _COMPARISONS:
            return self._compare(expr, _COMPARISONS[op])
        fn = _ARITHMETIC.get(op)
        if fn is None:
            raise self._unsupported(f"the operator {op}")
        modifier = expr.modifier
        on: list[str] | None = None
        ignoring: list[str] = []
        if modifier is not None:
            if (
                modifier.return_bool
                or modifier.card != promql_parser.VectorMatchCardinality.OneToOne
            ):
                raise self._unsupported(f"bool or group_left/group_right ({expr})")
            if modifier.matching is not None:
                if modifier.matching.type == promql_parser.LabelModifierType.Include:
                    on = list(modifier.matching.labels)
                else:
                    ignoring = list(modifier.matching.labels)
        lhs = self.eval(expr.lhs)
        rhs = self.eval(expr.rhs)
        if isinstance(lhs, float):
            if isinstance(rhs, float):
                return fn(lhs, rhs)
            return [_Element(_drop_name(e.labels), fn(lhs, e.value), e.timestamp) for e in rhs]
        if isinstance(rhs, float):
            return [_Element(_drop_name(e.labels), fn(e.value, rhs), e.timestamp) for e in lhs]
        return self._match(lhs, rhs, fn, on=on, ignoring=ignoring)

    def _union(self, expr: promql_parser.BinaryExpr) -> _Vector:
        if expr.modifier is not None and expr.modifier.matching is not None:
            raise self._unsupported(f"'or' with on/ignoring ({expr})")
        lhs, rhs = self.eval(expr.lhs), self.eval(expr.rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            raise BackendResponseError(
                "bad_data: set operator 'or' not allowed in binary scalar expression",
                backend=self._backend,
            )
        seen = {self._signature(e.labels, None, []) for e in lhs}
        return lhs + [e for e in rhs if self._signature(e.labels, None, []) not in seen]

    def _matching_labels(
        self, expr: promql_parser.BinaryExpr
    ) -> tuple[list[str] | None, list[str]]:
        """``(on, ignoring)`` of a binary expression's vector matching."""
        matching = expr.modifier.matching if expr.modifier is not None else None
        if matching is None:
            return None, []
        if matching.type == promql_parser.LabelModifierType.Include:
            return list(matching.labels), []
        return None, list(matching.labels)

    def _intersect(self, expr: promql_parser.BinaryExpr, *, keep: bool) -> _Vector:
        lhs, rhs = self.eval(expr.lhs), self.eval(expr.rhs)
        if isinstance(lhs, float) or isinstance(rhs, float):
            raise BackendResponseError(
                f"bad_data: set operator {expr.op} not allowed in binary scalar expression",
                backend=self._backend,
            )
        on, ignoring = self._matching_labels(expr)
        present = {self._signature(e.labels, on, ignoring) for e in rhs}
        return [e for e in lhs if (self._signature(e.labels, on, ignoring) in present) == keep]

    def _compare(
        self, expr: promql_parser.BinaryExpr, test: Callable[[float, float], bool]
    ) -> _Value:
        if expr.modifier is not None and expr.modifier.return_bool:
            raise self._unsupported(f"comparisons with bool ({expr})")
        lhs, rhs = self.eval(expr.lhs), self.eval(expr.rhs)
        if isinstance(lhs, float) and isinstance(rhs, float):
            raise BackendResponseError(
                "bad_data: comparisons between scalars must use BOOL modifier",
                backend=self._backend,
            )
        if isinstance(rhs, float):
            return [e for e in lhs if test(e.value, rhs)]  # type: ignore[union-attr]
        if isinstance(lhs, float):
            return [e for e in rhs if test(lhs, e.value)]
        raise self._unsupported(f"comparisons between two vectors ({expr})")

    def _range(self, arg: object, function: str) -> tuple[_Vector, float]:
        if not isinstance(arg, promql_parser.MatrixSelector):
            raise BackendResponseError(
                f"bad_data: expected a range vector in {function}", backend=self._backend
            )
        return self.select(arg.vector_selector), arg.range.total_seconds()

    def _call(self, expr: promql_parser.Call) -> _Vector:
        name = expr.func.name
        args = list(expr.args)
        if name in ("rate", "increase") and len(args) == 1:
            inner, seconds = self._range(args[0], name)
            factor = 1.0 if name == "rate" else seconds
            return [_Element(_drop_name(e.labels), e.value * factor, e.timestamp) for e in inner]
        if name == "histogram_quantile" and len(args) == 2:
            q = self.eval(args[0])
            if not isinstance(q, float):
                raise BackendResponseError(
                    "bad_data: expected a scalar quantile in histogram_quantile",
                    backend=self._backend,
                )
            groups: dict[tuple[tuple[str, str], ...], list[_Element]] = {}
            for e in self._vector_arg(args[1], name):
                if "le" not in e.labels:
                    continue
                key = tuple(sorted((k, v) for k, v in e.labels.items() if k not in {"le", _NAME}))
                groups.setdefault(key, []).append(e)
            return [
                _Element(
                    dict(key),
                    _bucket_quantile(q, [(float(e.labels["le"]), e.value) for e in members]),
                    max(e.timestamp for e in members),
                )
                for key, members in groups.items()
            ]
        if name == "timestamp" and len(args) == 1:
            inner = self._vector_arg(args[0], name)
            return [_Element(_drop_name(e.labels), e.timestamp, self._now) for e in inner]
        if name == "label_replace" and len(args) == 5:
            inner = self._vector_arg(args[0], name)
            dst, replacement, src, pattern = (self._string_arg(a) for a in args[1:])
            regex = self._regex(pattern)
            template = re.sub(r"\$\{?(\w+)\}?", r"\\g<\1>", replacement)
            out = []
            for e in inner:
                match = regex.match(e.labels.get(src, ""))
                labels = dict(e.labels)
                if match is not None:
                    value = match.expand(template)
                    if value:
                        labels[dst] = value
                    else:
                        labels.pop(dst, None)
                out.append(_Element(labels, e.value, e.timestamp))
            return out
        raise self._unsupported(f"the function {name}")

    def _vector_arg(self, arg: object, function: str) -> _Vector:
        value = self.eval(arg)
        if isinstance(value, float):
            raise BackendResponseError(
                f"bad_data: expected an instant vector in {function}, got a scalar",
                backend=self._backend,
            )
        return value

    def _string_arg(self, arg: object) -> str:
        if not isinstance(arg, promql_parser.StringLiteral):
            raise self._unsupported(f"a non-literal string argument ({arg})")
        return str(arg.val)

    def _signature(
        self, labels: dict[str, str], on: list[str] | None, ignoring: list[str]
    ) -> tuple[tuple[str, str], ...]:
        if on is not None:
            return tuple(sorted((k, v) for k, v in labels.items() if k in on))
        drop = {*ignoring, _NAME}
        return tuple(sorted((k, v) for k, v in labels.items() if k not in drop))

    def _match(
        self,
        lhs: _Vector,
        rhs: _Vector,
        fn: Callable[[float, float], float],
        *,
        on: list[str] | None,
        ignoring: list[str],
    ) -> _Vector:
        right: dict[tuple[tuple[str, str], ...], _Element] = {}
        for element in rhs:
            sig = self._signature(element.labels, on, ignoring)
            if sig in right:
                raise BackendResponseError(
                    "execution: found duplicate series for the match group on the right-hand "
                    "side of the operation: many-to-many matching not allowed",
                    backend=self._backend,
                )
            right[sig] = element
        seen: set[tuple[tuple[str, str], ...]] = set()
        out: _Vector = []
        for element in lhs:
            sig = self._signature(element.labels, on, ignoring)
            other = right.get(sig)
            if other is None:
                continue
            if sig in seen:
                raise BackendResponseError(
                    "execution: multiple matches for labels: many-to-one matching must be explicit "
                    "(group_left/group_right)",
                    backend=self._backend,
                )
            seen.add(sig)
            if on is not None:
                labels = dict(sig)
            else:
                labels = {k: v for k, v in element.labels.items() if k not in {*ignoring, _NAME}}
            out.append(
                _Element(
                    labels=labels,
                    value=fn(element.value, other.value),
                    timestamp=max(element.timestamp, other.timestamp),
                )
            )
        return out


def _drop_name(labels: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in labels.items() if k != _NAME}


def _op(op: object) -> str:
    # MatchOp values are not hashable: compare one by one.
    pairs = (
        (promql_parser.MatchOp.Equal, "="),
        (promql_parser.MatchOp.NotEqual, "!="),
        (promql_parser.MatchOp.Re, "=~"),
        (promql_parser.MatchOp.NotRe, "!~"),
    )
    for key, value in pairs:
        if op == key:
            return value
    return str(op)
