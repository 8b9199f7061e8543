"""The local evaluator against a real Prometheus, on the same samples (differential test).

Three exporters (one ``prometheus_client`` registry each, on 127.0.0.1) expose counters with
resets, gauges (some NaN or infinite now and then), a gauge with explicit timestamps that stops
moving halfway (so the lookback window expires), and classic histograms (with a reset and a
non-monotonic scrape). One :class:`LocalPrometheus` scrapes them every second while the values
change, with a 4-second lookback so expiry happens within the test. Then the raw samples are read
back from Prometheus (a range selector over every series) and loaded into a
:class:`SampleWindow`: both sides see exactly the same samples, without timing races.

Hypothesis generates queries inside the evaluator's subset and evaluation times inside the
scraped span; each answer must equal Prometheus' ``/api/v1/query`` at the same time: the same
label sets, values equal within 1e-9 relative (NaN equals NaN), or both refuse to evaluate.
A fixed table of hand-written queries (the presets' shapes, rate over resets,
``histogram_quantile``, the freshness companion) runs at evenly spaced times as well. Last,
:mod:`adapter.scrape.exposition` parses each target's final body (OpenMetrics, as Prometheus
negotiates it, and text) and must find the very samples Prometheus stored.
Runtime: about 15 s of scraping plus 15-20 s of queries (400 generated, 260 fixed).
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from adapter.domain.errors import QueryError
from adapter.promql import escape_regex, escape_string, with_freshness
from adapter.promql.evaluate import EvaluationError, Semantics, evaluate, unsupported_reason
from adapter.promql.ieee import STALE_NAN
from adapter.promql.window import SampleWindow, label_set
from adapter.scrape import parse_exposition
from sim.prometheus import LocalPrometheus

pytestmark = pytest.mark.integration

PODS = ("p0", "p1", "p2")
STEPS = 18
STEP_SECONDS = 0.7
LOOKBACK_MS = 4000
SEMANTICS = Semantics(lookback=LOOKBACK_MS)
SEED = 20240611
BOUNDS = ("0.1", "0.5", "1.0", "+Inf")


# --------------------------------------------------------------------------------------------
# Exporters


class _PodCollector(Collector):
    """One pod's metrics, changed by :meth:`step` under a lock, exposed atomically."""

    def __init__(self, pod: str, rng: random.Random) -> None:
        self.pod = pod
        self.rng = rng
        self.lock = threading.Lock()
        self.requests = {"200": rng.uniform(0, 50), "500": 0.0}
        self.queue = {"0": 0.0, "1": 3.0}
        self.load = 0.5
        self.buckets = [0.0, 0.0, 0.0, 0.0]
        self.latency_sum = 0.0
        self.heartbeat: tuple[float, float] = (1.0, round(time.time(), 3))

    def step(self, i: int) -> None:
        rng = self.rng
        with self.lock:
            for code in self.requests:
                if rng.random() < 0.12:
                    self.requests[code] = rng.uniform(0, 3)  # a counter reset (restart)
                else:
                    self.requests[code] += rng.choice((0.0, 1.0, 2.5, rng.uniform(0, 40)))
            for engine in self.queue:
                self.queue[engine] = rng.choice(
                    (0.0, 1.0, 7.0, -2.0, round(rng.uniform(-5, 50), 3))
                )
            self.load = rng.choice(
                (rng.uniform(0, 1), 0.0, 1.0, math.nan, math.inf, 1e-9)
                if i % 5 == 4
                else (rng.uniform(0, 1),)
            )
            if self.pod == "p1" and i == STEPS // 2:
                self.buckets = [0.0, 1.0, 1.0, 2.0]  # the histogram resets
                self.latency_sum = 0.7
            else:
                for _ in range(rng.randint(0, 6)):
                    observed = rng.expovariate(2.0)
                    self.latency_sum += observed
                    for b, bound in enumerate(BOUNDS):
                        if observed <= float(bound):
                            self.buckets[b] += 1
            if i < STEPS // 2 - (2 if self.pod == "p2" else 0):
                self.heartbeat = (float(i), round(time.time(), 3))  # ms: one per step

    def collect(self) -> Iterable[Metric]:
        with self.lock:
            requests = CounterMetricFamily(
                "diff_requests", "Requests served", labels=["pod", "code"]
            )
            for code, value in self.requests.items():
                requests.add_metric([self.pod, code], value)
            queue = GaugeMetricFamily("diff_queue", "Queue size", labels=["pod", "engine"])
            for engine, value in self.queue.items():
                queue.add_metric([self.pod, engine], value)
            load = GaugeMetricFamily("diff_load", "Load", labels=["pod"])
            load.add_metric([self.pod], self.load)
            heartbeat = GaugeMetricFamily("diff_heartbeat", "Last beat", labels=["pod"])
            heartbeat.add_metric([self.pod], self.heartbeat[0], timestamp=self.heartbeat[1])
            buckets = list(self.buckets)
            if self.pod == "p2":
                buckets[1] = max(0.0, buckets[1] - 1)  # a non-monotonic scrape
                buckets[2] = max(buckets[2], buckets[1])
            latency = HistogramMetricFamily("diff_latency_seconds", "Latency", labels=["pod"])
            latency.add_metric(
                [self.pod],
                buckets=list(zip(BOUNDS, buckets, strict=True)),
                sum_value=self.latency_sum,
            )
        return [requests, queue, load, heartbeat, latency]


@dataclass
class World:
    prometheus: LocalPrometheus
    window: SampleWindow
    first_ms: int
    last_ms: int
    targets: list[str]


def _fmt(ms: int) -> str:
    return f"{ms // 1000}.{ms % 1000:03d}"


def _get(prometheus: LocalPrometheus, query: str, at_ms: int) -> dict[str, Any]:
    response = httpx.get(
        f"{prometheus.url}/api/v1/query",
        params={"query": query, "time": _fmt(at_ms)},
        timeout=10,
        trust_env=False,
    )
    body: dict[str, Any] = response.json()
    return body


def _load_window(prometheus: LocalPrometheus, at_ms: int) -> tuple[SampleWindow, int]:
    """Every raw sample Prometheus holds for the exporters, plus the stale markers it wrote."""
    body = _get(prometheus, '{__name__=~"diff_.+|up"}[10m]', at_ms)
    assert body["status"] == "success", body
    series: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    down: dict[str, list[int]] = {}
    first = at_ms
    for element in body["data"]["result"]:
        labels = element["metric"]
        points = [(round(float(t) * 1000), float(v)) for t, v in element["values"]]
        if labels["__name__"] == "up":
            down[labels["instance"]] = [t for t, v in points if v == 0]
            continue
        first = min(first, points[0][0])
        series[tuple(sorted(labels.items()))] = points
    window = SampleWindow()
    for key, points in series.items():
        labels = dict(key)
        # A failed scrape makes Prometheus write staleness markers, which a range read omits.
        if labels["__name__"] != "diff_heartbeat":
            points = points + [(t, STALE_NAN) for t in down.get(labels["instance"], ())]
        for t, value in sorted(points, key=lambda p: p[0]):
            window.append(labels, t, value)
    return window, first


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    rng = random.Random(SEED)
    collectors = [_PodCollector(pod, rng) for pod in PODS]
    servers = []
    for collector in collectors:
        registry = CollectorRegistry(auto_describe=False)
        registry.register(collector)
        servers.append(start_http_server(0, addr="127.0.0.1", registry=registry))
    try:
        targets = [f"127.0.0.1:{server.server_port}" for server, _ in servers]
        with LocalPrometheus(
            targets, extra_args=[f"--query.lookback-delta={LOOKBACK_MS // 1000}s"]
        ) as prometheus:
            prometheus.wait_for(
                "count(diff_load)", lambda s: bool(s) and s[0].value == len(PODS), timeout=30
            )
            for i in range(STEPS):
                for collector in collectors:
                    collector.step(i)
                time.sleep(STEP_SECONDS)
            time.sleep(2.5)  # two scrapes more: every sample up to last_ms is committed
            last_ms = int(time.time() * 1000) - 2000
            window, first_ms = _load_window(prometheus, last_ms)
            yield World(prometheus, window, first_ms, last_ms, targets)
    finally:
        for server, thread in servers:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)


# --------------------------------------------------------------------------------------------
# Comparison


def _prometheus_answer(
    world: World, query: str, at_ms: int
) -> dict[tuple[tuple[str, str], ...], float] | None:
    body = _get(world.prometheus, query, at_ms)
    if body["status"] != "success":
        assert body.get("errorType") == "execution", f"{query!r}: {body}"
        return None
    data = body["data"]
    if data["resultType"] == "scalar":
        return {(): float(data["result"][1])}
    assert data["resultType"] == "vector", body
    return {tuple(sorted(e["metric"].items())): float(e["value"][1]) for e in data["result"]}


def _local_answer(
    world: World, query: str, at_ms: int
) -> dict[tuple[tuple[str, str], ...], float] | None:
    try:
        result = evaluate(query, world.window, at_ms / 1000, semantics=SEMANTICS)
    except EvaluationError:
        return None
    answer = {tuple(sorted(s.labels.items())): s.value for s in result.samples}
    assert len(answer) == len(result.samples), f"{query!r}: duplicate label sets"
    assert all(s.timestamp == at_ms / 1000 for s in result.samples)
    return answer


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=1e-9)


def _check(world: World, query: str, at_ms: int) -> str:
    reason = unsupported_reason(query, SEMANTICS)
    assert reason is None, f"{query!r} should be inside the subset: {reason}"
    want = _prometheus_answer(world, query, at_ms)
    got = _local_answer(world, query, at_ms)
    where = f"{query!r} at {_fmt(at_ms)}"
    if want is None or got is None:
        assert want is None and got is None, f"{where}: prometheus {want}, local {got}"
        return "error"
    assert set(got) == set(want), (
        f"{where}: label sets differ\n only local: {set(got) - set(want)}\n"
        f" only prometheus: {set(want) - set(got)}"
    )
    for labels, value in want.items():
        assert _same(got[labels], value), (
            f"{where} {dict(labels)}: local {got[labels]!r}, prometheus {value!r}"
        )
    return "empty" if not want else "values"


# --------------------------------------------------------------------------------------------
# Generated queries

_GAUGES = ("diff_queue", "diff_load", "diff_heartbeat")
_COUNTERS = ("diff_requests_total", "diff_latency_seconds_count", "diff_latency_seconds_sum")
_BUCKETS = "diff_latency_seconds_bucket"
_VALUES = {
    "pod": ("p0", "p1", "p2"),
    "code": ("200", "500"),
    "engine": ("0", "1"),
    "le": ("0.1", "0.5", "1.0", "+Inf"),
    "job": ("sim",),
}
_LABELS = {  # the labels each metric has, besides instance and job
    "diff_queue": ("pod", "engine"),
    "diff_load": ("pod",),
    "diff_heartbeat": ("pod",),
    "diff_requests_total": ("pod", "code"),
    "diff_latency_seconds_count": ("pod",),
    "diff_latency_seconds_sum": ("pod",),
    _BUCKETS: ("pod", "le"),
}
_REGEXES = (
    "p[01]",
    "p.*",
    ".+",
    "",
    "5..|2.*",
    "(?i)P1",
    "p\\d",
    "[^p].*",
    ".*1",
    "p(0|2)?",
    "0\\..*",
)
_OPS = ("=", "=", "!=", "=~", "=~", "!~")
_RANGES = ("2s", "3s", "5s", "7s", "10s", "30s", "1m")
_OFFSETS = ("", "", "", " offset 1s", " offset 3s")
_AGGREGATIONS = ("sum", "avg", "min", "max", "count", "group", "stddev", "stdvar")
_GROUP_LABELS = ("pod", "code", "engine", "le", "job", "instance", "__name__")
_FUNCTIONS = ("abs", "ceil", "floor", "sqrt", "exp", "ln", "log2", "log10", "sgn")
_ARITHMETIC = ("+", "-", "*", "/", "%", "^", "atan2")
_COMPARISONS = ("==", "!=", ">", "<", ">=", "<=")
_NUMBERS = ("0", "1", "2", "0.5", "-1", "1e-3", "100", "3")


@st.composite
def _matcher(draw: st.DrawFn, name: str) -> str:
    labels = (*_LABELS[name], "job")
    label = draw(st.sampled_from(labels))
    op = draw(st.sampled_from(_OPS))
    if draw(st.integers(0, 9)) == 0:  # a label the series lack, or a value none has
        return draw(st.sampled_from(('code!="p9"', 'engine=""', 'pod!~"p9"', 'pod="p9"')))
    if op in ("=~", "!~") and draw(st.booleans()):
        value = draw(st.sampled_from(_REGEXES))
    else:
        value = draw(st.sampled_from(_VALUES[label]))
        if op in ("=~", "!~"):
            value = escape_regex(value)
    return f"{label}{op}{escape_string(value)}"


@st.composite
def _selector(draw: st.DrawFn, names: tuple[str, ...]) -> str:
    name = draw(st.sampled_from(names))
    matchers = draw(st.lists(_matcher(name), max_size=2))
    if not matchers and draw(st.integers(0, 5)) == 0:
        return f'{{__name__=~"{name}|diff_load"}}'
    return f"{name}{{{', '.join(matchers)}}}" if matchers else name


def _grouping() -> st.SearchStrategy[str]:
    return st.one_of(
        st.just(""),
        st.builds(
            lambda kw, labels: f" {kw} ({', '.join(labels)})",
            st.sampled_from(("by", "without")),
            st.lists(st.sampled_from(_GROUP_LABELS), max_size=2, unique=True),
        ),
    )


def _scalar() -> st.SearchStrategy[str]:
    return st.sampled_from(_NUMBERS)


@st.composite
def _leaf(draw: st.DrawFn) -> str:
    kind = draw(st.integers(0, 9))
    if kind <= 2:
        return draw(_selector(_GAUGES + _COUNTERS)) + draw(st.sampled_from(_OFFSETS))
    rng = draw(st.sampled_from(_RANGES))
    offset = draw(st.sampled_from(_OFFSETS))
    if kind <= 5:
        fn = draw(st.sampled_from(("rate", "irate", "increase", "delta", "idelta")))
        return f"{fn}({draw(_selector(_COUNTERS))}[{rng}]{offset})"
    if kind == 6:
        fn = draw(st.sampled_from(("avg", "min", "max", "sum", "count", "last")))
        return f"{fn}_over_time({draw(_selector(_GAUGES))}[{rng}]{offset})"
    q = draw(st.sampled_from(("0.5", "0.9", "0.99", "0", "1", "-1", "2")))
    if kind == 7:
        by = draw(st.sampled_from(("le", "le, pod", "le, instance, job, pod")))
        return f"histogram_quantile({q}, sum by ({by}) (rate({_BUCKETS}[{rng}]{offset})))"
    if kind == 8:
        return f"histogram_quantile({q}, {draw(_selector((_BUCKETS,)))})"
    return f"timestamp({draw(_selector(_GAUGES))})"


def _extend(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    @st.composite
    def extended(draw: st.DrawFn) -> str:
        kind = draw(st.integers(0, 10))
        v = draw(inner)
        if kind == 0:
            op = draw(st.sampled_from(_AGGREGATIONS))
            return f"{op}{draw(_grouping())} ({v})"
        if kind == 1:
            return f"quantile{draw(_grouping())} ({draw(st.sampled_from(('0.5', '0.9', '0', '1')))}, {v})"
        if kind in (2, 3):
            op = draw(st.sampled_from(_ARITHMETIC + _COMPARISONS))
            bool_ = " bool" if op in _COMPARISONS and draw(st.booleans()) else ""
            scalar = draw(_scalar())
            return (
                f"({v}) {op}{bool_} {scalar}"
                if draw(st.booleans())
                else f"{scalar} {op}{bool_} ({v})"
            )
        if kind in (4, 5):
            w = draw(inner)
            op = draw(st.sampled_from(_ARITHMETIC + _COMPARISONS + ("and", "or", "unless")))
            bool_ = " bool" if op in _COMPARISONS and draw(st.booleans()) else ""
            matching = draw(
                st.sampled_from(
                    (
                        "",
                        " on (pod)",
                        " ignoring (code, engine)",
                        " on ()",
                        " on (pod) group_left ()",
                        " ignoring (engine) group_left (engine)",
                        " on (pod, instance) group_right ()",
                    )
                )
            )
            if op in ("and", "or", "unless") and "group" in matching:
                matching = ""
            if draw(st.booleans()):  # aggregated sides usually match
                return f"sum by (pod) ({v}) {op}{bool_} on (pod) sum by (pod) ({w})"
            return f"({v}) {op}{bool_}{matching} ({w})"
        if kind == 6:
            return f"{draw(st.sampled_from(_FUNCTIONS))}({v})"
        if kind == 7:
            fn = draw(
                st.sampled_from(
                    (
                        "round({}, 0.5)",
                        "round({})",
                        "clamp({}, 0, 5)",
                        "clamp_min({}, 1)",
                        "clamp_max({}, 1)",
                        "clamp({}, 2, 1)",
                    )
                )
            )
            return fn.format(v)
        if kind == 8:
            return draw(
                st.sampled_from(
                    (
                        f'label_replace({v}, "dst", "$1-x", "pod", "p(.*)")',
                        f'label_replace({v}, "pod", "", "pod", "p1")',
                        f'label_replace({v}, "__name__", "renamed_$2", "instance", "(.*):(.*)")',
                        f'label_join({v}, "both", "/", "pod", "code")',
                    )
                )
            )
        if kind == 9:
            return f"-({v})"
        return draw(
            st.sampled_from((f"timestamp({v})", f"vector(scalar({v}))", f"({v}) * scalar({v})"))
        )

    return extended()


# Integers shrink towards (and are drawn near) their bounds; a shuffled list of fractions of
# the scraped span spreads evaluation times evenly instead, a few before the first sample.
_FRACTIONS = random.Random(SEED).sample(range(-50, 1001, 7), k=len(range(-50, 1001, 7)))


OUTCOMES: Counter[str] = Counter()
QUERIES = st.recursive(_leaf(), _extend, max_leaves=4)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(query=QUERIES, fraction=st.sampled_from(_FRACTIONS))
def test_generated_queries_match_prometheus(world: World, query: str, fraction: int) -> None:
    span = world.last_ms - world.first_ms
    at_ms = world.first_ms + span * fraction // 1000
    OUTCOMES[_check(world, query, at_ms)] += 1


def test_generated_queries_were_mostly_answered() -> None:
    # Runs after the generated test (file order): most generated queries must return values,
    # or the comparison above proves little.
    total = sum(OUTCOMES.values())
    if not total:
        pytest.skip("the generated test did not run in this session")
    print(f"generated queries: {dict(OUTCOMES)}")  # shown by pytest -rP
    assert OUTCOMES["values"] >= 0.4 * total, OUTCOMES


# --------------------------------------------------------------------------------------------
# Hand-written queries: the presets' shapes and the hard cases, at evenly spaced times

FIXED = (
    "sum by (pod) (diff_queue)",
    "avg by (pod) (diff_queue)",
    "sum(avg by (pod) (diff_queue))",
    "sum(sum by (pod) (diff_queue) / sum by (pod) (diff_load))",
    "rate(diff_requests_total[5s])",
    "increase(diff_requests_total[10s])",
    "irate(diff_requests_total[3s])",
    "sum by (pod) (rate(diff_requests_total[1m]))",
    "histogram_quantile(0.9, sum by (le, pod) (rate(diff_latency_seconds_bucket[10s])))",
    "histogram_quantile(0.5, sum by (le) (increase(diff_latency_seconds_bucket[1m])))",
    "histogram_quantile(0.99, diff_latency_seconds_bucket)",
    "rate(diff_latency_seconds_sum[10s]) / rate(diff_latency_seconds_count[10s])",
    "diff_heartbeat",
    "timestamp(diff_heartbeat)",
    "time() - timestamp(diff_load)",
    "diff_queue > on (pod) group_left diff_load",
    'diff_queue{pod=~"p[02]", engine!="1"} * 2',
    "max_over_time(diff_load[5s]) or avg_over_time(diff_queue[5s])",
    "count without (engine) (diff_queue) unless on (pod) diff_load > 0.5",
)


@pytest.mark.parametrize("query", FIXED)
def test_fixed_queries_match_prometheus(world: World, query: str) -> None:
    outcomes = set()
    for i in range(12):
        at_ms = world.first_ms + (world.last_ms - world.first_ms) * i // 11
        outcomes.add(_check(world, query, at_ms))
    assert "values" in outcomes, f"{query!r} never answered anything: a useless case"


def test_freshness_companion_matches_prometheus(world: World) -> None:
    query = with_freshness("sum by (pod) (rate(diff_requests_total[10s]))", by=["pod"])
    assert query is not None
    for i in range(6):
        _check(world, query, world.first_ms + (world.last_ms - world.first_ms) * i // 5)


def test_the_lookback_expired_within_the_scraped_span(world: World) -> None:
    # The frozen heartbeat must disappear before the end: the lookback rule was exercised.
    assert _check(world, "diff_heartbeat", world.last_ms) == "empty"


def test_local_errors_are_query_errors() -> None:
    with pytest.raises(QueryError):
        evaluate("diff_queue +", SampleWindow(), 0)


# Prometheus 2.42 asks for OpenMetrics first, as it does when it scrapes.
_ACCEPT = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"


@pytest.mark.parametrize("accept", [_ACCEPT, "text/plain"])
def test_the_exposition_parser_reads_what_prometheus_stored(world: World, accept: str) -> None:
    # The values stopped changing after the last step: each target's body now holds the last
    # sample Prometheus stored for every series (explicit timestamps included).
    for target in world.targets:
        response = httpx.get(f"http://{target}/metrics", headers={"Accept": accept}, timeout=10)
        parsed = parse_exposition(response.content, content_type=response.headers["content-type"])
        assert parsed.format == ("openmetrics" if accept == _ACCEPT else "text")
        assert parsed.duplicates == 0
        stored = {
            series.labels: (series.times[-1], series.values[-1])
            for series in world.window.series()
            if series.label_map["instance"] == target
        }
        assert len(parsed.samples) == len(stored)
        for sample in parsed.samples:
            labels = {**sample.labels, "instance": target, "job": "sim"}
            t, value = stored[label_set(labels)]
            assert value == sample.value or (math.isnan(value) and math.isnan(sample.value))
            assert sample.timestamp is None or sample.timestamp == t
