"""adapter.scrape.exposition: Prometheus' ingestion rules, and equality with prometheus_client.

Table-driven cases pin the grammar of Prometheus' lexers (2.42); a property test renders
generated metric families with prometheus_client's own exposition code, in text format and in
OpenMetrics, and checks that both parsers read the same samples; arbitrary bytes never crash.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
    SummaryMetricFamily,
    UnknownMetricFamily,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics_client,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text_client
from prometheus_client.registry import Collector

from adapter.domain.errors import BackendResponseError
from adapter.scrape import (
    Exposition,
    ExpositionError,
    ScrapedSample,
    exposition_format,
    parse_exposition,
)


def _samples(body: str, fmt: str = "text") -> list[tuple[dict[str, str], float, int | None]]:
    parsed = parse_exposition(body, fmt=fmt)  # type: ignore[arg-type]
    return [(s.labels, s.value, s.timestamp) for s in parsed.samples]


# --------------------------------------------------------------------------------------------
# Text format

TEXT_CASES: list[tuple[str, list[tuple[dict[str, str], float, int | None]]]] = [
    ("up 1\n", [({"__name__": "up"}, 1.0, None)]),
    ("up 1", [({"__name__": "up"}, 1.0, None)]),  # no final newline
    ("up 1 1700000000123\n", [({"__name__": "up"}, 1.0, 1700000000123)]),
    ("  up \t 2.5e3  \t 7 \n", [({"__name__": "up"}, 2500.0, 7)]),
    ('x{a="1",b="2"} 3\n', [({"__name__": "x", "a": "1", "b": "2"}, 3.0, None)]),
    ('x{a="1",} 3\n', [({"__name__": "x", "a": "1"}, 3.0, None)]),  # trailing comma
    ('x{a="1" b="2"} 3\n', [({"__name__": "x", "a": "1", "b": "2"}, 3.0, None)]),  # no comma
    ('x { a = "1" , b="2" }3\n', [({"__name__": "x", "a": "1", "b": "2"}, 3.0, None)]),
    ("x{} 3\n", [({"__name__": "x"}, 3.0, None)]),
    ('x{a=""} 3\n', [({"__name__": "x"}, 3.0, None)]),  # empty values are dropped
    ('x{a="q\\"\\\\\\n\\t}"} 1\n', [({"__name__": "x", "a": 'q"\\\n\\t}'}, 1.0, None)]),
    ('x{a="héllo ✓"} 1\n', [({"__name__": "x", "a": "héllo ✓"}, 1.0, None)]),
    ("x:y_z 1\n", [({"__name__": "x:y_z"}, 1.0, None)]),
    ("x-1\n", [({"__name__": "x"}, -1.0, None)]),  # Prometheus' lexer reads this too
    ("x NaN\n", [({"__name__": "x"}, math.nan, None)]),
    (
        "x +Inf\nx2 -inf\nx3 Infinity\n",
        [
            ({"__name__": "x"}, math.inf, None),
            ({"__name__": "x2"}, -math.inf, None),
            ({"__name__": "x3"}, math.inf, None),
        ],
    ),
    ("x 0x1p-2\n", [({"__name__": "x"}, 0.25, None)]),
    ("x 1e-400\n", [({"__name__": "x"}, 0.0, None)]),  # underflow is not an error in Go
    ("# TYPE x counter\nx 1\n", [({"__name__": "x"}, 1.0, None)]),  # no _total added
    (
        "# HELP x some help\n# TYPE x gauge\n# random comment\n#nospace\n\n\nx 1\n",
        [
            ({"__name__": "x"}, 1.0, None),
        ],
    ),
    ("# HELPER is a comment\n# TYPE x untyped\nx 1\n", [({"__name__": "x"}, 1.0, None)]),
    ("x 1\nx 2\n", [({"__name__": "x"}, 1.0, None)]),  # a repeat keeps the first
    ("", []),
]


@pytest.mark.parametrize(("body", "want"), TEXT_CASES)
def test_text_format_is_read_as_prometheus_reads_it(
    body: str, want: list[tuple[dict[str, str], float, int | None]]
) -> None:
    got = _samples(body)
    assert [(labels, ts) for labels, _, ts in got] == [(labels, ts) for labels, _, ts in want]
    for (_, a, _), (_, b, _) in zip(got, want, strict=True):
        assert a == b or (math.isnan(a) and math.isnan(b))


TEXT_ERRORS = [
    ("x\n", "not a sample line"),
    ("x 1 2 3\n", "not a sample line"),
    ("x 1 -5\n", "not a sample line"),  # negative timestamps are not in the grammar
    ("x 1 1.5\n", "not a sample line"),
    ("x abc\n", "invalid sample value"),
    ("x 1e400\n", "float64 range"),
    ("x 1_000\n", "invalid sample value"),
    ("x -nan\n", "invalid sample value"),
    ("x 1\r\n", "invalid sample value"),
    ("1x 1\n", "not a sample line"),
    ('x{a="1",,} 1\n', "malformed labels"),
    ('x{,a="1"} 1\n', "malformed labels"),
    ("x{a=1} 1\n", "malformed labels"),
    ('x{a:b="1"} 1\n', "malformed labels"),
    ('x{a="1",a="2"} 1\n', "repeated"),
    ('x{__name__="y"} 1\n', "repeated"),
    ('x{a="1"\n', "not a sample line"),
    ("# TYPE x\n", "invalid metric type"),
    ("# TYPE x  counter\n", "invalid metric type"),
    ("# TYPE x countr\n", "invalid metric type"),
    ("# HELP 1x help\n", "expected a metric name"),
    ("x 99999999999999999999\n", None),  # a value, not a timestamp: fine
    ("x 1 99999999999999999999\n", "int64"),
]


@pytest.mark.parametrize(("body", "message"), TEXT_ERRORS)
def test_text_format_errors_name_the_line(body: str, message: str | None) -> None:
    if message is None:
        parse_exposition(body)
        return
    with pytest.raises(ExpositionError) as info:
        parse_exposition("ok 1\n" + body, target="10.0.0.7:9090")
    assert message in str(info.value)
    assert "line 2" in str(info.value)
    assert "10.0.0.7:9090" in str(info.value)
    assert isinstance(info.value, BackendResponseError)


# --------------------------------------------------------------------------------------------
# OpenMetrics

OM_CASES: list[tuple[str, list[tuple[dict[str, str], float, int | None]]]] = [
    ("# EOF\n", []),
    ("# EOF", []),
    ("x 1\n# EOF\n", [({"__name__": "x"}, 1.0, None)]),
    (
        'x{a="1",b="2"} 1 1700000000.25\n# EOF\n',
        [
            ({"__name__": "x", "a": "1", "b": "2"}, 1.0, 1700000000250),
        ],
    ),
    ("x 1 -1.5\n# EOF\n", [({"__name__": "x"}, 1.0, -1500)]),  # truncated toward zero
    ('x_total 1 # {trace_id="a"} 1 1.5\n# EOF\n', [({"__name__": "x_total"}, 1.0, None)]),
    (
        'x_bucket{le="+Inf"} 2 # {} 1\n# EOF\n',
        [({"__name__": "x_bucket", "le": "+Inf"}, 2.0, None)],
    ),
    (
        "# HELP x help\n# TYPE x counter\n# UNIT x_seconds seconds\nx_total 1\nx_created 2\n# EOF\n",
        [({"__name__": "x_total"}, 1.0, None), ({"__name__": "x_created"}, 2.0, None)],
    ),
]


@pytest.mark.parametrize(("body", "want"), OM_CASES)
def test_openmetrics_is_read_as_prometheus_reads_it(
    body: str, want: list[tuple[dict[str, str], float, int | None]]
) -> None:
    assert _samples(body, "openmetrics") == want


OM_ERRORS = [
    ("x 1\n", "does not end with # EOF"),
    ("x 1\n# EOF\n\n", "does not end with # EOF"),
    ("# EOF\nx 1\n# EOF\n", "data after # EOF"),
    ("x  1\n# EOF\n", "not a sample line"),
    ("x 1 \n# EOF\n", "not a sample line"),
    ('x{a="1",} 1\n# EOF\n', "malformed labels"),
    ('x{a="1" b="2"} 1\n# EOF\n', "malformed labels"),
    ("\n# EOF\n", "not a sample line"),
    ("# random comment\n# EOF\n", "not a # HELP"),
    ("# TYPE x untyped\n# EOF\n", "invalid metric type"),
    ("# UNIT x_bytes seconds\n# EOF\n", "not a suffix"),
    ("x 1 NaN\n# EOF\n", "invalid timestamp"),
    ('x 1 # {a="b"} 1\n# EOF\n', "cannot have exemplars"),
    ("x_total 1 # {a} 1\n# EOF\n", "malformed exemplar"),
]


@pytest.mark.parametrize(("body", "message"), OM_ERRORS)
def test_openmetrics_errors(body: str, message: str) -> None:
    with pytest.raises(ExpositionError, match=message):
        parse_exposition(body, fmt="openmetrics")


# --------------------------------------------------------------------------------------------
# Limits, formats, garbage


@pytest.mark.parametrize(
    ("content_type", "want"),
    [
        (None, "text"),
        ("text/plain; version=0.0.4; charset=utf-8", "text"),
        ("application/openmetrics-text; version=1.0.0; charset=utf-8", "openmetrics"),
        ("Application/OpenMetrics-Text", "openmetrics"),
        ("application/json", "text"),  # Prometheus 2 falls back to the text parser
    ],
)
def test_the_content_type_picks_the_parser(content_type: str | None, want: str) -> None:
    assert exposition_format(content_type) == want


def test_protobuf_is_refused_clearly() -> None:
    with pytest.raises(ExpositionError, match="protobuf"):
        parse_exposition(b"\x00", content_type="application/vnd.google.protobuf; proto=x")


def test_limits_and_encoding() -> None:
    with pytest.raises(ExpositionError, match="9 bytes is over the limit of 8"):
        parse_exposition(b"x 1\nyy 2\n", max_bytes=8)
    with pytest.raises(ExpositionError, match="more than 2 samples"):
        parse_exposition(b"a 1\nb 2\nc 3\n", max_samples=2)
    with pytest.raises(ExpositionError, match="not UTF-8"):
        parse_exposition(b'x{a="\xff"} 1\n')
    with pytest.raises(ExpositionError, match="invalid sample value"):
        parse_exposition(b"x 1\x00\n")
    assert parse_exposition(b'x{a="\x00"} 1\n').samples[0].labels["a"] == "\x00"
    body = parse_exposition(b"x 1\n" * 3)
    assert body == Exposition("text", (ScrapedSample({"__name__": "x"}, 1.0),), duplicates=2)


def test_a_very_long_label_set_is_parsed_without_being_cached() -> None:
    value = "v" * 5000
    got = _samples(f'x{{a="{value}"}} 1\n')
    assert got == [({"__name__": "x", "a": value}, 1.0, None)]


def test_returned_labels_are_copies() -> None:
    first = parse_exposition(b'x{a="1"} 1\n').samples[0]
    first.labels["a"] = "changed"
    assert parse_exposition(b'x{a="1"} 1\n').samples[0].labels["a"] == "1"


@settings(max_examples=300, deadline=None)
@given(body=st.binary(max_size=300), fmt=st.sampled_from(["text", "openmetrics"]))
def test_arbitrary_bytes_never_crash(body: bytes, fmt: str) -> None:
    with contextlib.suppress(ExpositionError):
        parse_exposition(body, fmt=fmt)  # type: ignore[arg-type]


_LINE_PARTS = st.sampled_from(
    [
        "x",
        "y_total",
        "{",
        "}",
        '"',
        "=",
        ",",
        " ",
        "\t",
        "a",
        "1",
        "-",
        ".",
        "e",
        "#",
        "\\",
        "\n",
        "NaN",
        "+Inf",
        "le",
        "# TYPE",
        "# HELP",
        "# EOF",
        "counter",
        ":",
        "_",
        "é",
    ]
)


@settings(max_examples=400, deadline=None)
@given(parts=st.lists(_LINE_PARTS, max_size=30), fmt=st.sampled_from(["text", "openmetrics"]))
def test_near_valid_garbage_never_crashes(parts: list[str], fmt: str) -> None:
    with contextlib.suppress(ExpositionError):
        parse_exposition("".join(parts), fmt=fmt)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Equality with prometheus_client on generated bodies

_LABEL_NAMES = ("pod", "namespace", "id", "idx", "model_name", "Code_2")
_LABEL_VALUES = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12
)
_BOUNDS = ("0.005", "0.1", "1.0", "2.5", "+Inf")
_VALUE = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(2**40), 2**40).map(float),
    st.sampled_from([0.0, -0.0, 1.0, 0.1, 1e-300, 1.7976931348623157e308]),
)
_COUNT = st.integers(0, 10**6).map(float)
_TIMESTAMP = st.one_of(st.none(), st.integers(0, 4 * 10**9).map(lambda s: s / 8))


@st.composite
def _family(draw: st.DrawFn, index: int) -> Metric:
    kind = draw(st.sampled_from(["counter", "gauge", "histogram", "summary", "unknown"]))
    name = f"m{index}_{kind}"
    labels = draw(st.lists(st.sampled_from(_LABEL_NAMES), max_size=3, unique=True))
    family: Any
    if kind == "counter":
        family = CounterMetricFamily(name, "help", labels=labels)
    elif kind == "gauge":
        family = GaugeMetricFamily(name, 'help with "quotes" and \\ and\nnewline', labels=labels)
    elif kind == "histogram":
        family = HistogramMetricFamily(name, "help", labels=labels)
    elif kind == "summary":
        family = SummaryMetricFamily(name, "help", labels=labels)
    else:
        family = UnknownMetricFamily(name, "help", labels=labels)
    seen: set[tuple[str, ...]] = set()
    for _ in range(draw(st.integers(1, 3))):
        values = tuple(draw(_LABEL_VALUES) for _ in labels)
        if values in seen:
            continue
        seen.add(values)
        if kind == "histogram":
            counts = sorted(draw(st.lists(_COUNT, min_size=len(_BOUNDS), max_size=len(_BOUNDS))))
            family.add_metric(
                list(values),
                buckets=list(zip(_BOUNDS, counts, strict=True)),
                sum_value=draw(st.floats(0, 1e9)),
            )
        elif kind == "summary":
            family.add_metric(list(values), count_value=draw(_COUNT), sum_value=draw(_COUNT))
        elif kind == "counter":
            value = draw(st.floats(0, 1e15))
            family.add_metric(list(values), value, timestamp=draw(_TIMESTAMP))
        else:
            family.add_metric(list(values), draw(_VALUE), timestamp=draw(_TIMESTAMP))
    metric: Metric = family
    return metric


class _Families(Collector):
    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterable[Metric]:
        return self.families


def _client_samples(families: Iterable[Any]) -> list[tuple[dict[str, str], float, int | None]]:
    out = []
    for family in families:
        for sample in family.samples:
            labels = {"__name__": sample.name, **{k: v for k, v in sample.labels.items() if v}}
            ts = sample.timestamp
            if ts is not None:  # a float (text) or a Timestamp (OpenMetrics)
                ts = (
                    round(float(ts) * 1000)
                    if isinstance(ts, float | int)
                    else ts.sec * 1000 + ts.nsec // 10**6
                )
            out.append((labels, float(sample.value), ts))
    return out


def _same(
    a: list[tuple[dict[str, str], float, int | None]],
    b: list[tuple[dict[str, str], float, int | None]],
) -> None:
    assert [(x[0], x[2]) for x in a] == [(x[0], x[2]) for x in b]
    for x, y in zip(a, b, strict=True):
        assert x[1] == y[1] or (math.isnan(x[1]) and math.isnan(y[1])), (x, y)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), count=st.integers(1, 5))
def test_equal_to_prometheus_client_on_generated_bodies(data: st.DataObject, count: int) -> None:
    families = [data.draw(_family(i)) for i in range(count)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Families(families))
    text = generate_latest(registry).decode()
    openmetrics = generate_openmetrics(registry).decode()  # type: ignore[no-untyped-call]
    _same(_samples(text), _client_samples(parse_text_client(text)))
    client_om = parse_openmetrics_client(openmetrics)  # type: ignore[no-untyped-call]
    _same(_samples(openmetrics, "openmetrics"), _client_samples(client_om))


def test_a_jetstream_pod_is_read_alike_by_both_parsers() -> None:
    from bench.exposition_parse import bodies

    text, openmetrics = bodies(engines=2)
    mine = _samples(text.decode())
    sample_lines = [ln for ln in text.decode().splitlines() if ln and not ln.startswith("#")]
    assert len(mine) == len(sample_lines) > 0
    _same(mine, _client_samples(parse_text_client(text.decode())))
    _same(
        _samples(openmetrics.decode(), "openmetrics"),
        _client_samples(parse_openmetrics_client(openmetrics.decode())),  # type: ignore[no-untyped-call]
    )
