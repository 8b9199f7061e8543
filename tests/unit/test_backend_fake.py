"""FakeBackend evaluates a PromQL subset over its series like Prometheus would."""

from __future__ import annotations

import math
import time

import pytest

from adapter.backends.base import Backend
from adapter.domain.errors import BackendResponseError, BackendTimeoutError, BackendUnavailableError
from adapter.domain.models import Sample
from sim.fake_backend import FakeBackend, SeriesSpec

BACKLOG = "jetstream_prefill_backlog_size"
SLOTS = "jetstream_slots_used_percentage"

PODS = {
    ("team-a", "a-0"): 3.0,
    ("team-a", "a-1"): 5.0,
    ("team-b", "b-0"): 11.0,
}
SLOT_VALUES = {
    ("team-a", "a-0", "0"): 0.5,
    ("team-a", "a-0", "1"): 0.25,
    ("team-b", "b-0", "0"): 1.0,
}


def series() -> list[SeriesSpec]:
    out: list[SeriesSpec] = []
    for (ns, pod), value in PODS.items():
        out.append(({"__name__": BACKLOG, "namespace": ns, "pod": pod, "cluster": "c1"}, value))
    for (ns, pod, idx), value in SLOT_VALUES.items():
        labels = {"__name__": SLOTS, "namespace": ns, "pod": pod, "idx": idx, "cluster": "c1"}
        out.append((labels, value))
    return out


@pytest.fixture
def fake() -> FakeBackend:
    backend = FakeBackend()
    backend.set_series(series())
    return backend


def by(samples: tuple[Sample, ...], label: str) -> dict[str, float]:
    return {s.labels.get(label, ""): s.value for s in samples}


async def values(fake: FakeBackend, query: str) -> tuple[Sample, ...]:
    return (await fake.query(query, timeout=1)).samples


def test_is_a_backend() -> None:
    assert isinstance(FakeBackend(), Backend)


async def test_selector_keeps_labels_and_records_query(fake: FakeBackend) -> None:
    samples = await values(fake, f'{BACKLOG}{{namespace="team-a"}}')
    assert {s.labels["pod"]: s.value for s in samples} == {
        pod: v for (ns, pod), v in PODS.items() if ns == "team-a"
    }
    assert all(s.labels["__name__"] == BACKLOG for s in samples)
    assert fake.queries == [f'{BACKLOG}{{namespace="team-a"}}']


@pytest.mark.parametrize(
    ("matcher", "keep"),
    [
        ('pod!="a-0"', lambda ns, pod: pod != "a-0"),
        ('pod=~"a-.*"', lambda ns, pod: pod.startswith("a-")),
        ('pod=~"a"', lambda ns, pod: pod == "a"),  # anchored: "a" does not match "a-0"
        ('pod!~"a-.*"', lambda ns, pod: not pod.startswith("a-")),
        ('namespace=~"team-a|team-b"', lambda ns, pod: True),
        ('missing=""', lambda ns, pod: True),  # absent labels match the empty string
        ('missing!=""', lambda ns, pod: False),
    ],
)
async def test_matchers(fake: FakeBackend, matcher: str, keep: object) -> None:
    samples = await values(fake, f"{BACKLOG}{{{matcher}}}")
    expected = {pod for (ns, pod) in PODS if keep(ns, pod)}  # type: ignore[operator]
    assert {s.labels["pod"] for s in samples} == expected


async def test_name_matcher_in_braces(fake: FakeBackend) -> None:
    samples = await values(fake, f'{{__name__="{BACKLOG}", pod="b-0"}}')
    assert [s.value for s in samples] == [PODS[("team-b", "b-0")]]


@pytest.mark.parametrize(
    ("agg", "fn"),
    [
        ("sum", sum),
        ("avg", lambda v: sum(v) / len(v)),
        ("max", max),
        ("min", min),
        ("count", len),
    ],
)
async def test_aggregations_by_namespace(fake: FakeBackend, agg: str, fn: object) -> None:
    samples = await values(fake, f"{agg} by (namespace) ({BACKLOG})")
    expected: dict[str, float] = {}
    for ns in {ns for ns, _ in PODS}:
        group = [v for (n, _), v in PODS.items() if n == ns]
        expected[ns] = float(fn(group))  # type: ignore[operator]
    assert by(samples, "namespace") == expected
    assert all(set(s.labels) == {"namespace"} for s in samples)


async def test_aggregation_without_labels_and_without_clause(fake: FakeBackend) -> None:
    total = await values(fake, f"sum({BACKLOG})")
    assert [(s.labels, s.value) for s in total] == [({}, sum(PODS.values()))]
    per_pod = await values(fake, f"max without (idx) ({SLOTS})")
    expected: dict[str, float] = {}
    for (_, pod, _), v in SLOT_VALUES.items():
        expected[pod] = max(expected.get(pod, -1.0), v)
    assert by(per_pod, "pod") == expected
    assert all("__name__" not in s.labels and "idx" not in s.labels for s in per_pod)


async def test_vector_division_matches_one_to_one(fake: FakeBackend) -> None:
    samples = await values(fake, f"sum by (pod) ({SLOTS}) / count by (pod) ({SLOTS})")
    expected: dict[str, list[float]] = {}
    for (_, pod, _), v in SLOT_VALUES.items():
        expected.setdefault(pod, []).append(v)
    assert by(samples, "pod") == {pod: sum(v) / len(v) for pod, v in expected.items()}


async def test_on_and_ignoring(fake: FakeBackend) -> None:
    q = f"sum by (namespace, pod) ({SLOTS}) / on (pod) sum by (pod) ({BACKLOG})"
    samples = await values(fake, q)
    slot_sum: dict[str, float] = {}
    for (_, pod, _), v in SLOT_VALUES.items():
        slot_sum[pod] = slot_sum.get(pod, 0.0) + v
    assert {s.labels["pod"]: s.value for s in samples} == {
        pod: slot_sum[pod] / v for (_, pod), v in PODS.items() if pod in slot_sum
    }
    assert all(set(s.labels) == {"pod"} for s in samples)  # on() keeps only its labels
    q2 = f"{BACKLOG} - ignoring (idx) max without () ({SLOTS})"
    with pytest.raises(BackendResponseError):  # several idx per pod on the right
        await values(fake, q2)


async def test_scalar_arithmetic_and_literals(fake: FakeBackend) -> None:
    samples = await values(fake, f"({BACKLOG}{{pod='a-0'}} * 2 + 1) / 4")
    assert [s.value for s in samples] == [(PODS[("team-a", "a-0")] * 2 + 1) / 4]
    assert "__name__" not in samples[0].labels
    scalar = await values(fake, "(1 + 2) * 3 - 4 / 2")
    assert [(s.labels, s.value) for s in scalar] == [({}, 7.0)]
    neg = await values(fake, f"-{BACKLOG}{{pod='b-0'}}")
    assert [s.value for s in neg] == [-PODS[("team-b", "b-0")]]


async def test_division_by_zero_is_ieee(fake: FakeBackend) -> None:
    assert math.isnan((await values(fake, "0/0"))[0].value)
    assert (await values(fake, f"sum({BACKLOG}) / 0"))[0].value == math.inf
    assert (await values(fake, "-1/0"))[0].value == -math.inf


async def test_max_ignores_nan_unless_all_nan() -> None:
    fake = FakeBackend()
    fake.set_series([({"__name__": "m", "a": "1"}, math.nan), ({"__name__": "m", "a": "2"}, 2.0)])
    assert [s.value for s in await values(fake, "max(m)")] == [2.0]
    assert math.isnan((await values(fake, "sum(m)"))[0].value)
    fake.set_series([({"__name__": "m"}, math.nan)])
    assert math.isnan((await values(fake, "max(m)"))[0].value)


async def test_timestamps_given_or_query_time() -> None:
    fake = FakeBackend()
    fake.set_series(
        [({"__name__": "m", "a": "1"}, 1.0, 1000.0), ({"__name__": "m", "a": "2"}, 2.0)]
    )
    before = time.time()
    samples = await values(fake, "m")
    newest = (await values(fake, "sum(m)"))[0].timestamp
    after = time.time()
    stamps = {s.labels["a"]: s.timestamp for s in samples}
    assert stamps["1"] == 1000.0
    assert before <= stamps["2"] <= after
    assert before <= newest <= after


async def test_raw_looks_like_prometheus(fake: FakeBackend) -> None:
    result = await fake.query(f"sum({BACKLOG})", timeout=1)
    assert isinstance(result.raw, dict)
    assert result.raw["resultType"] == "vector"
    assert result.raw["result"][0]["value"][1] == repr(sum(PODS.values()))
    scalar = await fake.query("0/0", timeout=1)
    assert isinstance(scalar.raw, dict)
    assert scalar.raw["resultType"] == "scalar"
    assert scalar.raw["result"][1] == "NaN"


@pytest.mark.parametrize(
    "query",
    [
        f"irate({BACKLOG}[1m])",
        f"topk(1, {BACKLOG})",
        f"{BACKLOG} > bool 1",
        f"{BACKLOG} offset 1m",
        '"a string"',
        f"{BACKLOG} / on (pod) group_left {BACKLOG}",
    ],
)
async def test_unsupported_nodes_say_so(fake: FakeBackend, query: str) -> None:
    with pytest.raises(BackendResponseError, match="fake backend does not evaluate"):
        await fake.query(query, timeout=1)


@pytest.mark.parametrize("query", ["sum(", f'{BACKLOG}{{pod=~"("}}', "sum(1)"])
async def test_bad_queries_are_response_errors(fake: FakeBackend, query: str) -> None:
    with pytest.raises(BackendResponseError):
        await fake.query(query, timeout=1)


async def test_metric_and_label_names_filter_by_match(fake: FakeBackend) -> None:
    assert await fake.metric_names([], timeout=1) == sorted({BACKLOG, SLOTS})
    assert await fake.metric_names(['{namespace="team-b", idx="0"}'], timeout=1) == [SLOTS]
    assert await fake.label_names([BACKLOG], timeout=1) == [
        "__name__",
        "cluster",
        "namespace",
        "pod",
    ]
    assert await fake.label_names([BACKLOG, SLOTS], timeout=1) == [
        "__name__",
        "cluster",
        "idx",
        "namespace",
        "pod",
    ]
    with pytest.raises(BackendResponseError):
        await fake.metric_names(["sum(x)"], timeout=1)


async def test_fail_with_and_recover(fake: FakeBackend) -> None:
    fake.fail_with(BackendUnavailableError("down", backend="fake"))
    with pytest.raises(BackendUnavailableError):
        await fake.query(BACKLOG, timeout=1)
    with pytest.raises(BackendUnavailableError):
        await fake.metric_names([], timeout=1)
    fake.fail_with(None)
    assert len(await values(fake, BACKLOG)) == len(PODS)


async def test_ping_follows_failures(fake: FakeBackend) -> None:
    await fake.ping(timeout=1)
    fake.fail_with(BackendUnavailableError("down", backend="fake"))
    with pytest.raises(BackendUnavailableError):
        await fake.ping(timeout=1)


async def test_delay_longer_than_timeout_is_a_timeout(fake: FakeBackend) -> None:
    fake.delay = 0.2
    started = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        await fake.query(BACKLOG, timeout=0.05)
    assert time.monotonic() - started < 0.2
    assert len(await values(fake, BACKLOG)) == len(PODS)
