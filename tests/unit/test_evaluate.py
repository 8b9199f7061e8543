"""adapter.promql.evaluate and its helpers: each operator and function, and the edge cases.

The expected numbers are computed by hand from Prometheus' source (engine.go, functions.go,
quantile.go); tests/integration/test_evaluator_differential.py compares with a real Prometheus.
"""

from __future__ import annotations

import math

import pytest

from adapter.domain.errors import QueryError
from adapter.promql import functions as fn
from adapter.promql import ieee
from adapter.promql.evaluate import (
    PROMETHEUS_2,
    PROMETHEUS_3,
    EvaluationError,
    Semantics,
    UnsupportedQueryError,
    compile_query,
    evaluate,
    required_history,
    unsupported_reason,
)
from adapter.promql.re2 import UnsupportedRegex, compile_anchored
from adapter.promql.window import SampleWindow

NAN = math.nan
INF = math.inf
T = 1000.0  # the evaluation time of most cases, seconds

SERIES: dict[str, list[tuple[float, float]]] = {
    'g{pod="a",ns="x"}': [(940, 1.0), (1000, 5.0)],
    'g{pod="b",ns="x"}': [(1000, 3.0)],
    'g{pod="c",ns="y"}': [(1000, NAN)],
    'h{pod="a"}': [(1000, 2.0)],
    'h{pod="b",extra="1"}': [(1000, 4.0)],
    'old{pod="a"}': [(699.999, 1.0)],
    'edge{pod="a"}': [(700, 1.0)],
    'gone{pod="a"}': [(990, 1.0), (995, ieee.STALE_NAN)],
    'c_total{pod="a"}': [(940, 0.0), (955, 10.0), (970, 20.0), (985, 30.0), (1000, 40.0)],
    'c_total{pod="b"}': [(940, 5.0), (955, 10.0), (970, 2.0), (985, 6.0), (1000, 9.0)],
    'late_total{pod="a"}': [(970, 5.0), (980, 10.0), (990, 15.0), (1000, 20.0)],
    'one_total{pod="a"}': [(1000, 7.0)],
    'lat_bucket{pod="a",le="0.1"}': [(1000, 1.0)],
    'lat_bucket{pod="a",le="0.5"}': [(1000, 3.0)],
    'lat_bucket{pod="a",le="1"}': [(1000, 4.0)],
    'lat_bucket{pod="a",le="+Inf"}': [(1000, 4.0)],
    'noinf_bucket{pod="a",le="1"}': [(1000, 4.0)],
    'noinf_bucket{pod="a",le="2"}': [(1000, 5.0)],
    'mono_bucket{le="1"}': [(1000, 5.0)],
    'mono_bucket{le="2"}': [(1000, 3.0)],
    'mono_bucket{le="+Inf"}': [(1000, 6.0)],
    'neg_bucket{le="-1"}': [(1000, 2.0)],
    'neg_bucket{le="+Inf"}': [(1000, 4.0)],
    'bad_bucket{le="x"}': [(1000, 1.0)],
    'bad_bucket{le="+Inf"}': [(1000, 1.0)],
    'zero_bucket{le="1"}': [(1000, 0.0)],
    'zero_bucket{le="+Inf"}': [(1000, 0.0)],
}


def _parse_key(key: str) -> dict[str, str]:
    name, _, rest = key.partition("{")
    labels = {"__name__": name}
    for pair in filter(None, rest.rstrip("}").split(",")):
        k, _, v = pair.partition("=")
        labels[k] = v.strip('"')
    return labels


def _window() -> SampleWindow:
    window = SampleWindow()
    for key, points in SERIES.items():
        for t, v in points:
            window.append(_parse_key(key), round(t * 1000), v)
    return window


WINDOW = _window()
Answer = dict[frozenset[tuple[str, str]], float]


def _eval(query: str, at: float = T, semantics: Semantics = PROMETHEUS_2) -> Answer:
    result = evaluate(query, WINDOW, at, semantics=semantics)
    assert all(s.timestamp == at for s in result.samples)
    answer = {frozenset(s.labels.items()): s.value for s in result.samples}
    assert len(answer) == len(result.samples)
    return answer


def _want(*pairs: tuple[dict[str, str], float]) -> Answer:
    return {frozenset(labels.items()): value for labels, value in pairs}


def _assert_answer(got: Answer, want: Answer) -> None:
    assert set(got) == set(want), (got, want)
    for key, value in want.items():
        other = got[key]
        assert (math.isnan(value) and math.isnan(other)) or math.isclose(
            other, value, rel_tol=1e-12, abs_tol=1e-12
        ), (dict(key), other, value)


A = {"pod": "a"}
B = {"pod": "b"}

CASES: list[tuple[str, Answer]] = [
    # Selectors and matchers (anchored regexes, missing labels match "")
    ('g{pod="a"}', _want(({"__name__": "g", "pod": "a", "ns": "x"}, 5.0))),
    ('g{ns!="x"}', _want(({"__name__": "g", "pod": "c", "ns": "y"}, NAN))),
    ('h{pod=~"a|b", extra=""}', _want(({"__name__": "h", "pod": "a"}, 2.0))),
    ('h{pod=~"."}', _want(({"__name__": "h", "pod": "a"}, 2.0), ({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    ('h{pod=~"b.+"}', {}),
    ('h{pod!~"a"}', _want(({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    ('{__name__=~"h|one_", pod="a"}', _want(({"__name__": "h", "pod": "a"}, 2.0))),
    ('{__name__="h", extra!=""}', _want(({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    ("nonexistent", {}),
    # The 5-minute lookback and staleness
    ("old", {}),
    ("edge", _want(({"__name__": "edge", "pod": "a"}, 1.0))),
    ("gone", {}),
    ("g offset 30s", _want(({"__name__": "g", "pod": "a", "ns": "x"}, 1.0))),
    # Aggregations
    ("sum(g)", _want(({}, NAN))),
    ('sum(g{pod!="c"})', _want(({}, 8.0))),
    ("sum by (ns) (g)", _want(({"ns": "x"}, 8.0), ({"ns": "y"}, NAN))),
    ("sum without (pod) (g)", _want(({"ns": "x"}, 8.0), ({"ns": "y"}, NAN))),
    ("sum by (__name__) (h)", _want(({"__name__": "h"}, 6.0))),
    ("avg by (ns) (g)", _want(({"ns": "x"}, 4.0), ({"ns": "y"}, NAN))),
    ("max(g)", _want(({}, 5.0))),  # NaN loses to numbers
    ("min(g)", _want(({}, 3.0))),
    ('max(g{pod="c"})', _want(({}, NAN))),
    ("count(g)", _want(({}, 3.0))),
    ("group by (ns) (g)", _want(({"ns": "x"}, 1.0), ({"ns": "y"}, 1.0))),
    ('stddev(g{ns="x"})', _want(({}, 1.0))),
    ('stdvar(g{ns="x"})', _want(({}, 1.0))),
    ('quantile(0.5, g{ns="x"})', _want(({}, 4.0))),
    ('quantile(2, g{ns="x"})', _want(({}, INF))),
    ("sum(nonexistent)", {}),
    # Vector/scalar arithmetic and comparisons
    ("h * 2", _want((A, 4.0), ({"pod": "b", "extra": "1"}, 8.0))),
    ("h / 0", _want((A, INF), ({"pod": "b", "extra": "1"}, INF))),
    ("(h - 2) / 0", _want((A, NAN), ({"pod": "b", "extra": "1"}, INF))),
    ("-h % 3", _want((A, -2.0), ({"pod": "b", "extra": "1"}, -1.0))),
    ("h ^ 2", _want((A, 4.0), ({"pod": "b", "extra": "1"}, 16.0))),
    ("h > 3", _want(({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    ("3 < h", _want(({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),  # keeps h's value
    ("h > bool 3", _want((A, 0.0), ({"pod": "b", "extra": "1"}, 1.0))),
    ("g != g", _want(({"__name__": "g", "pod": "c", "ns": "y"}, NAN))),  # NaN != NaN
    ("1 + 2 * 3", _want(({}, 7.0))),
    ("2 ^ 3 ^ 2", _want(({}, 512.0))),
    ("1 > bool 2", _want(({}, 0.0))),
    ("-(1 / 0)", _want(({}, -INF))),
    # Vector/vector matching
    ("h + on (pod) g", _want((A, 7.0), (B, 7.0))),
    ("h + ignoring (extra, ns) g", _want((A, 7.0), (B, 7.0))),
    ("h > on (pod) g", _want((B, 4.0))),
    ("h > on (pod) g + 1", {}),
    ("g >= on (pod) h", _want((A, 5.0))),  # one-to-one on(): only the on labels stay
    ("g - on (pod) group_left h", _want(({"pod": "a", "ns": "x"}, 3.0), ({"pod": "b", "ns": "x"}, -1.0))),
    ("g - on (pod) group_left (extra) h", _want(({"pod": "a", "ns": "x"}, 3.0), ({"pod": "b", "ns": "x", "extra": "1"}, -1.0))),
    ("h - on (pod) group_right g", _want(({"pod": "a", "ns": "x"}, -3.0), ({"pod": "b", "ns": "x"}, 1.0))),
    ("g == bool on (pod) h", _want((A, 0.0), (B, 0.0))),
    ("h and on (pod) g", _want(({"__name__": "h", "pod": "a"}, 2.0), ({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    ('h unless on (pod) g{pod="a"}', _want(({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    ('h{pod="a"} or g', _want(
        ({"__name__": "h", "pod": "a"}, 2.0),
        ({"__name__": "g", "pod": "b", "ns": "x"}, 3.0),
        ({"__name__": "g", "pod": "c", "ns": "y"}, NAN),
        ({"__name__": "g", "pod": "a", "ns": "x"}, 5.0),
    )),
    ("nonexistent + on (pod) h", {}),
    ("h or nonexistent", _want(({"__name__": "h", "pod": "a"}, 2.0), ({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    # Counters: rate, increase, irate, delta, idelta (resets, extrapolation)
    ('rate(c_total{pod="a"}[1m])', _want((A, 40 / 60))),
    ('increase(c_total{pod="b"}[1m])', _want((B, 14.0))),
    ('rate(c_total{pod="b"}[1m])', _want((B, 14 / 60))),
    ('irate(c_total{pod="b"}[1m])', _want((B, 3 / 15))),
    ('irate(c_total{pod="b"}[1m] offset 30s)', _want((B, 2 / 15))),  # a reset: the new value
    ('delta(c_total{pod="b"}[1m])', _want((B, 4.0))),
    ('idelta(c_total{pod="b"}[1m] offset 30s)', _want((B, -8.0))),
    ('increase(late_total[1m])', _want((A, 20.0))),  # the zero point limits extrapolation
    ("rate(one_total[1m])", {}),  # a single point
    ("rate(nonexistent[1m])", {}),
    ('max_over_time(c_total{pod="b"}[1m])', _want((B, 10.0))),
    ('min_over_time(c_total{pod="b"}[1m])', _want((B, 2.0))),
    ('avg_over_time(c_total{pod="b"}[1m])', _want((B, 6.4))),
    ('sum_over_time(c_total{pod="b"}[1m])', _want((B, 32.0))),
    ('count_over_time(c_total{pod="b"}[30s])', _want((B, 3.0))),
    ('last_over_time(c_total{pod="b"}[1m])', _want(({"__name__": "c_total", "pod": "b"}, 9.0))),
    ('count_over_time(gone[1m])', _want((A, 1.0))),  # the staleness marker is not a sample
    # histogram_quantile
    ("histogram_quantile(0.5, lat_bucket)", _want((A, 0.3))),
    ("histogram_quantile(0.99, lat_bucket)", _want((A, 0.98))),
    ("histogram_quantile(1, lat_bucket)", _want((A, 1.0))),
    ("histogram_quantile(0, lat_bucket)", _want((A, 0.0))),
    ("histogram_quantile(-1, lat_bucket)", _want((A, -INF))),
    ("histogram_quantile(1.5, lat_bucket)", _want((A, INF))),
    ("histogram_quantile(NaN, lat_bucket)", _want((A, NAN))),
    ("histogram_quantile(0.5, noinf_bucket)", _want((A, NAN))),
    ("histogram_quantile(0.5, mono_bucket)", _want(({}, 0.6))),  # counts made monotonic
    ("histogram_quantile(0.9, mono_bucket)", _want(({}, 2.0))),  # rank in +Inf: 2nd bound
    ("histogram_quantile(0.1, neg_bucket)", _want(({}, -1.0))),  # lowest bound <= 0
    ("histogram_quantile(0.5, bad_bucket)", _want(({}, NAN))),  # le="x" skipped: 1 bucket
    ("histogram_quantile(0.5, zero_bucket)", _want(({}, NAN))),  # no observations
    ("histogram_quantile(0.5, sum by (le) (lat_bucket))", _want(({}, 0.3))),
    ("histogram_quantile(0.5, h)", {}),  # no le label
    # Labels
    ('label_replace(h, "dst", "$1-${1}x-$1x", "pod", "(.)")', _want(
        ({"__name__": "h", "pod": "a", "dst": "a-ax-"}, 2.0),
        ({"__name__": "h", "pod": "b", "extra": "1", "dst": "b-bx-"}, 4.0),
    )),
    ('label_replace(h, "pod", "", "pod", "a")', _want(({"__name__": "h"}, 2.0), ({"__name__": "h", "pod": "b", "extra": "1"}, 4.0))),
    ('label_replace(h, "x", "$name", "pod", "(?P<name>b)")', _want(({"__name__": "h", "pod": "a"}, 2.0), ({"__name__": "h", "pod": "b", "extra": "1", "x": "b"}, 4.0))),
    ('label_replace(h{pod="a"}, "__name__", "renamed", "", "")', _want(({"__name__": "renamed", "pod": "a"}, 2.0))),
    ('label_join(h, "j", "-", "pod", "extra", "none")', _want(({"__name__": "h", "pod": "a", "j": "a--"}, 2.0), ({"__name__": "h", "pod": "b", "extra": "1", "j": "b-1-"}, 4.0))),
    # timestamp(), time(), vector(), scalar()
    ("timestamp(g offset 30s)", _want(({"pod": "a", "ns": "x"}, 940.0))),
    ("timestamp((edge))", _want((A, 700.0))),
    ("timestamp(-edge)", _want((A, T))),
    ("time()", _want(({}, T))),
    ("vector(time() - 1)", _want(({}, T - 1))),
    ('scalar(h{pod="a"})', _want(({}, 2.0))),
    ("scalar(h)", _want(({}, NAN))),
    # Element-wise functions
    ("abs(-h)", _want((A, 2.0), ({"pod": "b", "extra": "1"}, 4.0))),
    ("ceil(h / 3)", _want((A, 1.0), ({"pod": "b", "extra": "1"}, 2.0))),
    ("floor(h / 3)", _want((A, 0.0), ({"pod": "b", "extra": "1"}, 1.0))),
    ("round(h / 4, 0.5)", _want((A, 0.5), ({"pod": "b", "extra": "1"}, 1.0))),
    ("round(-h / 4)", _want((A, 0.0), ({"pod": "b", "extra": "1"}, -1.0))),  # ties go up
    ("sqrt(-h)", _want((A, NAN), ({"pod": "b", "extra": "1"}, NAN))),
    ("ln(h - 2)", _want((A, -INF), ({"pod": "b", "extra": "1"}, math.log(2)))),
    ("log2(h)", _want((A, 1.0), ({"pod": "b", "extra": "1"}, 2.0))),
    ("log10(h * 5)", _want((A, 1.0), ({"pod": "b", "extra": "1"}, math.log10(20)))),
    ("exp(h * 1000)", _want((A, INF), ({"pod": "b", "extra": "1"}, INF))),
    ("sgn(h - 3)", _want((A, -1.0), ({"pod": "b", "extra": "1"}, 1.0))),
    ("clamp(h, 3, 3.5)", _want((A, 3.0), ({"pod": "b", "extra": "1"}, 3.5))),
    ("clamp(h, 4, 3)", {}),
    ("clamp_min(g, 4)", _want(({"pod": "a", "ns": "x"}, 5.0), ({"pod": "b", "ns": "x"}, 4.0), ({"pod": "c", "ns": "y"}, NAN))),
    ("clamp_max(h, 3)", _want((A, 2.0), ({"pod": "b", "extra": "1"}, 3.0))),
]  # fmt: skip


@pytest.mark.parametrize(("query", "want"), CASES)
def test_operators_and_functions(query: str, want: Answer) -> None:
    assert unsupported_reason(query) is None
    _assert_answer(_eval(query), want)


@pytest.mark.parametrize(
    ("query", "prometheus_2", "prometheus_3"),
    [
        ("edge", _want(({"__name__": "edge", "pod": "a"}, 1.0)), {}),  # lookback boundary
        ('rate(c_total{pod="b"}[1m])', _want((B, 14 / 60)), _want((B, 0.2))),  # range start
        ("increase(late_total[1m])", _want((A, 20.0)), _want((A, 17.5))),  # zero point, 2.51+
    ],
)
def test_version_semantics(query: str, prometheus_2: Answer, prometheus_3: Answer) -> None:
    _assert_answer(_eval(query), prometheus_2)
    _assert_answer(_eval(query, semantics=PROMETHEUS_3), prometheus_3)


def test_a_shorter_lookback() -> None:
    short = Semantics(lookback=30_000)
    _assert_answer(_eval("g", semantics=short), _eval("g"))
    assert _eval("g", at=1031, semantics=short) == {}
    _assert_answer(
        _eval('g{pod="a"}', at=1030, semantics=short),
        _want(({"__name__": "g", "pod": "a", "ns": "x"}, 5.0)),
    )


def test_nothing_is_selected_before_the_first_sample() -> None:
    assert _eval("g", at=900) == {}
    assert _eval("rate(c_total[1m])", at=900) == {}
    _assert_answer(_eval("gone", at=992), _want(({"__name__": "gone", "pod": "a"}, 1.0)))


def test_scalar_results_are_one_sample_without_labels() -> None:
    result = evaluate("1 + 1", WINDOW, 12.3456)
    assert [(s.labels, s.value, s.timestamp) for s in result.samples] == [({}, 2.0, 12.346)]
    assert result.query == "1 + 1" and result.backend == "local"


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("h + ignoring (pod, extra) h", "found duplicate series"),
        ('g + ignoring (pod, ns) h{pod="a"}', "many-to-one matching must be explicit"),
        ("h - on () group_left h", "found duplicate series"),
        ("g + on (ns) group_left h", "found duplicate series"),
        ("rate(c_total[1m]) or rate(late_total[1m])", None),
        ("sum by (pod) (h) + on () group_left h", "found duplicate series"),
        ("h * on (__name__) group_left g", "duplicate series"),
        ('label_replace(h, "extra", "", "", "")', None),
        ('label_replace(h, "extra", "1", "", "")', None),
        ('label_replace(g, "pod", "x", "", "")', "same labelset"),
        ('{__name__=~"h|one_total", pod="a"} * 1', "same labelset"),
        ('-{__name__=~"h|one_total", pod="a"}', "same labelset"),
        ('rate({__name__=~"c_total|late_total", pod="a"}[1m])', "same labelset"),
        ('label_replace(h, "1bad", "x", "pod", ".*")', "invalid destination label name"),
    ],
)
def test_what_prometheus_refuses_is_an_evaluation_error(query: str, message: str | None) -> None:
    if message is None:
        _eval(query)  # no error: different label sets
        return
    with pytest.raises(EvaluationError, match=message):
        _eval(query)


@pytest.mark.parametrize(
    ("query", "construct"),
    [
        ("topk(1, h)", "topk"),
        ('count_values("v", h)', "count_values"),
        ("absent(h)", "absent()"),
        ("rate(h[5m:1m])", "subqueries"),
        ("h @ 100", "@ modifier"),
        ("h[5m]", "matrix result"),
        ('"text"', "string"),
        ("deriv(h[1m])", "deriv()"),
        ('h{pod=~"\\\\pL"}', "escape \\p"),
        ('h{pod=~"[[:alpha:]]"}', "POSIX class"),
        ('label_replace(h, "a", "b", "pod", "\\\\bx")', "escape \\b"),
        ('h{pod="a" or pod="b"}', "'or' between matchers"),
        ("h + on (pod) fill(0) h", "fill()"),
        ("predict_linear(h[1m], 60)", "predict_linear()"),
    ],
)
def test_constructs_outside_the_subset_are_named(query: str, construct: str) -> None:
    reason = unsupported_reason(query)
    assert reason is not None and construct in reason
    with pytest.raises(UnsupportedQueryError) as info:
        evaluate(query, WINDOW, T)
    assert construct in str(info.value)


def test_invalid_queries() -> None:
    reason = unsupported_reason("sum(")
    assert reason is not None and reason.startswith("invalid PromQL")
    with pytest.raises(QueryError):
        evaluate("sum(", WINDOW, T)
    with pytest.raises(QueryError):
        evaluate(42, WINDOW, T)  # type: ignore[arg-type]
    with pytest.raises(QueryError):
        evaluate("h", WINDOW, math.nan)
    deep = "h" + " + h" * 300
    assert unsupported_reason(deep) is not None  # bounded, not a RecursionError


def test_required_history() -> None:
    assert compile_query("rate(x[2m])").history == 120.0
    assert compile_query("rate(x[2m] offset 1m) + y").history == 300.0
    assert compile_query("rate(x[10m] offset 1m)").history == 660.0
    assert required_history(["rate(x[1m])", "topk(1, y[1h])", "max_over_time(z[90s])"]) == 90.0
    assert required_history([]) == 0.0
    assert compile_query("x", Semantics(lookback=5000)).history == 5.0


# --------------------------------------------------------------------------------------------
# The window: ingestion rules and staleness


def test_window_drops_out_of_order_and_conflicting_samples() -> None:
    window = SampleWindow()
    assert window.append({"__name__": "x"}, 2000, 1.0)
    assert not window.append({"__name__": "x"}, 1000, 1.0)  # out of order
    assert not window.append({"__name__": "x"}, 2000, 2.0)  # another value at the same time
    assert window.append({"__name__": "x"}, 2000, 1.0)  # the same again: accepted, no change
    assert window.append({"__name__": "x", "empty": ""}, 3000, 3.0)  # empty label dropped
    [series] = list(window.series("x"))
    assert (series.times, series.values) == ([2000, 3000], [1.0, 3.0])
    with pytest.raises(ValueError, match="non-empty label"):
        window.append({"a": ""}, 1, 1.0)


def test_a_series_missing_from_a_scrape_goes_stale_at_once() -> None:
    window = SampleWindow()
    scrape = [({"__name__": "x", "pod": "a"}, 1.0, None), ({"__name__": "y"}, 2.0, None)]
    report = window.ingest_scrape("pod-a", scrape, 10_000)
    assert (report.appended, report.stale) == (2, 0)
    report = window.ingest_scrape("pod-a", scrape[1:], 20_000)
    assert report.stale == 1
    assert evaluate("x", window, 20).samples == ()
    assert [s.value for s in evaluate("x", window, 19.999).samples] == [1.0]
    assert [s.value for s in evaluate("y", window, 20).samples] == [2.0]
    assert window.target_down("pod-a", 30_000) == 1
    assert evaluate("y", window, 30).samples == ()
    assert window.target_down("unknown", 30_000) == 0


def test_explicit_timestamps_are_exempt_from_staleness() -> None:
    window = SampleWindow()
    window.ingest_scrape("t", [({"__name__": "x"}, 1.0, 5_000)], 10_000)
    report = window.ingest_scrape("t", [], 20_000)
    assert report.stale == 0
    assert [s.value for s in evaluate("x", window, 20).samples] == [1.0]
    report = window.ingest_scrape("t", [({"__name__": "x"}, 2.0, 4_000)], 30_000)
    assert (report.appended, report.dropped) == (0, 1)


def test_forgetting_a_target_and_pruning() -> None:
    window = SampleWindow()
    for t in range(0, 100_000, 10_000):
        window.ingest_scrape("t", [({"__name__": "x"}, float(t), None)], t)
    assert window.forget_target("t", 100_000) == 1
    assert evaluate("x", window, 100).samples == ()
    window.prune(95_000)
    [series] = list(window.series())
    assert series.times == [100_000]
    window.prune(200_000)
    assert len(window) == 0 and list(window.series("x")) == []


# --------------------------------------------------------------------------------------------
# Helpers: Go float semantics, RE2 translation, Go's template expansion


@pytest.mark.parametrize(
    ("a", "b", "div", "mod", "pow_"),
    [
        (1.0, 0.0, INF, NAN, 1.0),
        (-1.0, 0.0, -INF, NAN, 1.0),
        (1.0, -0.0, -INF, NAN, 1.0),
        (0.0, 0.0, NAN, NAN, 1.0),
        (INF, 0.0, INF, NAN, 1.0),
        (NAN, 2.0, NAN, NAN, NAN),
        (7.0, INF, 0.0, 7.0, INF),
        (-7.0, 3.0, -7 / 3, -1.0, -343.0),
        (0.0, -1.0, -0.0, 0.0, INF),
        (-8.0, 1 / 3, -24.0, math.fmod(-8.0, 1 / 3), NAN),
        (10.0, 400.0, 0.025, 10.0, INF),
        (-10.0, 401.0, -10 / 401, -10.0, -INF),
    ],
)
def test_go_arithmetic(a: float, b: float, div: float, mod: float, pow_: float) -> None:
    for got, want in ((ieee.div(a, b), div), (ieee.mod(a, b), mod), (ieee.pow_(a, b), pow_)):
        assert (math.isnan(got) and math.isnan(want)) or got == want, (a, b, got, want)


def test_go_math_functions() -> None:
    assert ieee.log2(8) == 3.0 and math.isnan(ieee.log2(-8)) and ieee.log2(0) == -INF
    assert ieee.ln(0) == -INF and math.isnan(ieee.ln(-1)) and ieee.ln(INF) == INF
    assert ieee.exp(1e6) == INF and math.isnan(ieee.sqrt(-4)) and ieee.sqrt(4) == 2.0
    assert ieee.to_integral(INF, "floor") == INF and math.isnan(ieee.to_integral(NAN, "ceil"))
    assert ieee.go_max(NAN, INF) == INF and math.isnan(ieee.go_max(NAN, 1.0))
    assert ieee.go_min(NAN, -INF) == -INF and math.isnan(ieee.go_min(1.0, NAN))
    assert (
        math.copysign(1, ieee.go_max(-0.0, 0.0)) == 1
        and math.copysign(1, ieee.go_min(0.0, -0.0)) == -1
    )
    assert ieee.is_stale(ieee.STALE_NAN) and not ieee.is_stale(NAN) and not ieee.is_stale(1.0)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("1", 1.0), ("-1.5e3", -1500.0), (".5", 0.5), ("5.", 5.0), ("+Inf", INF), ("-inf", -INF),
        ("Infinity", INF), ("NaN", NAN), ("nan", NAN), ("0x1p-2", 0.25), ("1e-400", 0.0),
        ("1e400", None), ("-nan", None), ("1_000", None), ("", None), ("0x10", None), ("1e", None),
        (" 1", None), ("١", None), ("inF", INF),
    ],
)  # fmt: skip
def test_parse_go_float(text: str, want: float | None) -> None:
    if want is None:
        with pytest.raises(ValueError, match="number"):
            ieee.parse_go_float(text)
        return
    got = ieee.parse_go_float(text)
    assert (math.isnan(got) and math.isnan(want)) or got == want


@pytest.mark.parametrize(
    ("pattern", "matches", "misses"),
    [
        ("p.*", ["p", "pod"], ["xp", "p\n"]),
        ("a|b", ["a", "b"], ["ab", ""]),
        ("", [""], ["a"]),
        ("a$", ["a"], ["a\n"]),
        ("\\d+", ["123"], ["١٢٣", "12a"]),
        ("\\w", ["_", "Z"], ["é"]),
        ("\\s", [" ", "\t"], ["\u00a0", "\v"]),
        ("[\\d.]+", ["1.5"], ["1,5"]),
        ("[^a-c]", ["d"], ["b"]),
        ("[]a]", ["]", "a"], ["b"]),
        ("[a-]", ["-", "a"], ["b"]),
        ("[[x]", ["[", "x"], ["]"]),
        ("a{2}", ["aa"], ["a", "aaa"]),
        ("a{,2}", ["a{,2}"], ["aa"]),
        ("a{", ["a{"], ["a"]),
        ("(?i)abc", ["ABC", "aBc"], ["abd"]),
        ("(?s).", ["\n"], []),
        ("(?i:a)b", ["Ab"], ["AB"]),
        ("\\x41\\x{263a}", ["A\u263a"], ["A"]),
        ("a.c", ["abc"], ["a\nc"]),
        ("(?P<n>x)+?", ["xx"], [""]),
        ("\\.\\*", [".*"], ["a"]),
        ("#-/ =", ["#-/ ="], [""]),
    ],
)
def test_re2_patterns_mean_what_they_mean_in_go(
    pattern: str, matches: list[str], misses: list[str]
) -> None:
    regex = compile_anchored(pattern)
    for text in matches:
        assert regex.fullmatch(text), (pattern, text)
    for text in misses:
        assert not regex.fullmatch(text), (pattern, text)


def test_dot_matches_newline_in_prometheus_3() -> None:
    assert compile_anchored("a.c", dot_all=True).fullmatch("a\nc")


@pytest.mark.parametrize(
    "pattern",
    ["\\pL", "\\p{Greek}", "\\bx", "\\Qa\\E", "[[:alpha:]]", "a(?i)b", "(?U)a", "(?<n>a)", "(?=a)",
     "a*+", "a**", "a{1001}", "a{3,2}", "\\1", "[\\D]", "[a-\\d]", "(", "a\\", "[a", "\\x{110000}",
     "\\xZZ", "\\é", "*a"],
)  # fmt: skip
def test_re2_constructs_that_are_not_translated_are_refused(pattern: str) -> None:
    with pytest.raises(UnsupportedRegex):
        compile_anchored(pattern)


@pytest.mark.parametrize(
    ("template", "want"),
    [
        ("$1", "a"), ("${1}x", "ax"), ("$1x", ""), ("$$1", "$1"), ("$", "$"), ("${1", "${1"),
        ("$name-$2", "a-"), ("$9", ""), ("$01", ""), ("x$0y", "x"), ("x${0}y", "xaby"), ("${name}", "a"),
        ("$é", ""), ("plain", "plain"),
    ],
)  # fmt: skip
def test_go_template_expansion(template: str, want: str) -> None:
    assert fn.expand_template(template, ["ab", "a", None], {"name": 1}) == want


def test_bucket_quantile_edges() -> None:
    assert math.isnan(fn.bucket_quantile(0.5, [(INF, 0.0), (1.0, 0.0)]))
    assert math.isnan(fn.bucket_quantile(0.5, [(INF, 3.0)]))  # one bucket
    assert fn.bucket_quantile(0.5, [(1.0, 2.0), (1.0, 2.0), (INF, 4.0)]) == 0.5  # merged bounds
    assert fn.bucket_quantile(0.25, [(INF, 4.0), (2.0, 4.0)]) == 0.5  # from 0, in any order
    assert fn.go_search(4, lambda i: i >= 2) == 2 and fn.go_search(0, lambda i: True) == 0


def test_extrapolation_uses_half_an_interval_far_from_the_boundaries() -> None:
    # Samples every 10 s in the middle of a 60 s range: half an interval (5 s) on each side.
    got = fn.extrapolated_rate(
        [20_000, 30_000, 40_000], [0.0, 1.0, 2.0], 0, 60_000, counter=False, rate=False
    )
    assert got == 2.0 * (20 + 5 + 5) / 20
    assert fn.instant_value([1, 1], [1.0, 2.0], rate=True) is None
    assert fn.seconds(1500) == 1.5
