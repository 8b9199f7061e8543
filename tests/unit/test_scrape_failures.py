"""PodScraper's failure causes, one pod at a time (timeout, garbage, a body over the cap, not
200, refused), what each does to the answer with ``--scrape-fallback omit`` and ``backend``
(the failed pod's value from the backend when the answer is per pod, the backend's whole answer
for an aggregate), and single flight: concurrent requests for one pod share one scrape."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from adapter.core.sources import ScrapeFirst
from adapter.scrape.source import SCRAPE_SOURCE, PodScraper
from adapter.scrape.targets import ScrapeTarget
from sim.fake_backend import FakeBackend

METRIC = "jetstream_prefill_backlog_size"
PER_POD = f'sum by (pod) ({METRIC}{{cluster="c1",namespace="team-a"}})'
TOTAL = f'sum({METRIC}{{cluster="c1",namespace="team-a"}})'
TARGETS = [
    ScrapeTarget("team-a", "p0", "http://10.0.0.1:9988/metrics"),
    ScrapeTarget("team-a", "p1", "http://10.0.0.2:9988/metrics"),
]
CAP = 4096


def _body(value: float) -> bytes:
    return f'# TYPE {METRIC} gauge\n{METRIC}{{id="x"}} {value}\n'.encode()


def _ok(value: float) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(200, content=_body(value))


def _raise(exc: type[httpx.TransportError]) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("simulated", request=request)

    return handler


FAILURES: dict[str, Callable[[httpx.Request], httpx.Response]] = {
    "timeout": _raise(httpx.ReadTimeout),
    "invalid": lambda request: httpx.Response(200, content=b"{not: an exposition}\n\x00\x01"),
    "too_large": lambda request: httpx.Response(
        200, content=_body(1) + b"# filler\n" * (CAP // 9 + 1)
    ),
    "http_5xx": lambda request: httpx.Response(503, content=_body(1)),
    "unreachable": _raise(httpx.ConnectError),
}


def _scraper(p1: Callable[[httpx.Request], httpx.Response], on_failure: str = "omit") -> PodScraper:
    handlers = {"10.0.0.1": _ok(3), "10.0.0.2": p1}
    return PodScraper(
        TARGETS,
        cluster="c1",
        on_failure=on_failure,  # type: ignore[arg-type]
        max_bytes=CAP,
        transport=httpx.MockTransport(lambda request: handlers[request.url.host](request)),
    )


def _backend() -> FakeBackend:
    fake = FakeBackend(name="prometheus")
    series = {"cluster": "c1", "namespace": "team-a", "__name__": METRIC}
    fake.set_series([({**series, "pod": "p0"}, 50.0), ({**series, "pod": "p1"}, 99.0)])
    return fake


def _values(samples: object) -> dict[str, float]:
    return {s.labels.get("pod", ""): s.value for s in samples}  # type: ignore[attr-defined]


@pytest.mark.parametrize("cause", sorted(FAILURES))
async def test_a_failed_pod_is_counted_by_cause_and_left_out(cause: str) -> None:
    scraper = _scraper(FAILURES[cause])
    result, failed = await scraper.read(PER_POD)
    assert [t.pod for t in failed] == ["p1"]
    assert _values(result.samples) == {"p0": 3.0}
    assert scraper.stats.results == {"ok": 1, cause: 1}
    assert len(scraper.stats.seconds) == 2
    assert (await scraper.answer(TOTAL)) is not None  # omit: the rest still answer
    await scraper.aclose()


@pytest.mark.parametrize("cause", sorted(FAILURES))
async def test_with_backend_fallback_only_the_failed_pod_comes_from_the_backend(cause: str) -> None:
    backend = _backend()
    source = ScrapeFirst(backend, _scraper(FAILURES[cause], "backend"))
    answer = await source.query(PER_POD, timeout=1)
    assert _values(answer.samples) == {"p0": 3.0, "p1": 99.0}
    assert answer.backend == f"{SCRAPE_SOURCE}+prometheus"
    assert answer.raw["podSources"] == {"p0": SCRAPE_SOURCE, "p1": "prometheus"}  # type: ignore[index]
    assert backend.queries == [PER_POD]
    await source.aclose()


async def test_an_aggregate_falls_back_to_the_backend_whole() -> None:
    backend = _backend()
    source = ScrapeFirst(backend, _scraper(FAILURES["timeout"], "backend"))
    answer = await source.query(TOTAL, timeout=1)
    assert answer.backend == "prometheus"
    assert [s.value for s in answer.samples] == [149.0]
    await source.aclose()


async def test_a_per_pod_answer_that_depends_on_other_pods_falls_back_to_the_backend_whole() -> (
    None
):
    """Per pod in its labels, but each pod is kept only while its namespace's total is over
    100: without the failed pod the pods that answered would be judged on a smaller total, so
    nothing is mixed (mixed, this would answer p1 alone)."""
    by_namespace = TOTAL.replace("sum(", "sum by (namespace) (")
    per_pod = PER_POD.replace("by (pod)", "by (namespace, pod)")
    busy = f"{per_pod} and on (namespace) ({by_namespace} > 100)"
    backend = _backend()
    source = ScrapeFirst(backend, _scraper(FAILURES["timeout"], "backend"))
    assert source.scraper.declines(busy) is None  # the pods could answer it
    answer = await source.query(busy, timeout=1)
    assert answer.backend == "prometheus"
    assert _values(answer.samples) == {"p0": 50.0, "p1": 99.0}
    await source.aclose()


@pytest.mark.parametrize(
    ("query", "apart"),
    [
        (PER_POD, True),
        (f"avg by (pod, id) ({METRIC})", True),
        (f"sum without (container) ({METRIC})", True),
        (f"{METRIC} / on (pod) {METRIC}", True),
        (f"{METRIC} * 2 + 1", True),
        ("histogram_quantile(0.9, sum by (pod, le) (rate(b[1m])))", True),
        (TOTAL, False),
        (f"sum without (pod) ({METRIC})", False),
        (f"{METRIC} / ignoring (pod) group_left sum by (namespace) ({METRIC})", False),
        (f"{METRIC} and on (namespace) {METRIC} > 3", False),
        (f"{METRIC} > scalar(sum({METRIC}))", False),
        (f'label_replace({METRIC}, "pod", "p1", "pod", "p0")', False),
        (f'label_replace({METRIC}, "part", "value", "", "")', True),  # the freshness companion's
        (f"topk(1, {METRIC})", False),
        ("histogram_quantile(0.9, sum by (le) (rate(b[1m])))", False),
        ("sum by (pod) (", False),
    ],
)
def test_keeps_apart_says_whether_each_value_comes_from_its_own_pod(
    query: str, apart: bool
) -> None:
    from adapter.promql.evaluate import keeps_apart

    assert keeps_apart(query, "pod") is apart


async def test_omit_serves_the_pods_that_answered_and_asks_the_backend_nothing() -> None:
    backend = _backend()
    source = ScrapeFirst(backend, _scraper(FAILURES["unreachable"], "omit"))
    assert _values((await source.query(PER_POD, timeout=1)).samples) == {"p0": 3.0}
    assert [s.value for s in (await source.query(TOTAL, timeout=1)).samples] == [3.0]
    assert backend.queries == []
    await source.aclose()


async def test_when_every_pod_answers_the_backend_is_not_asked() -> None:
    backend = _backend()
    source = ScrapeFirst(backend, _scraper(_ok(4), "backend"))
    answer = await source.query(PER_POD, timeout=1)
    assert (_values(answer.samples), answer.backend) == ({"p0": 3.0, "p1": 4.0}, SCRAPE_SOURCE)
    assert backend.queries == []
    await source.aclose()


async def test_concurrent_requests_for_one_pod_share_one_scrape() -> None:
    calls: list[str] = []

    async def slow(request: httpx.Request) -> httpx.Response:
        calls.append(str(request.url))
        await asyncio.sleep(0.2)
        return httpx.Response(200, content=_body(7))

    target = TARGETS[:1]
    scraper = PodScraper(target, cluster="c1", transport=httpx.MockTransport(slow))
    one = f'{METRIC}{{cluster="c1",namespace="team-a",pod="p0"}}'
    reads: list[Awaitable[object]] = [scraper.answer(one), scraper.answer(PER_POD)]
    answers = await asyncio.gather(*reads)
    assert calls == [TARGETS[0].url]
    assert all(a is not None and [s.value for s in a.samples] == [7.0] for a in answers)  # type: ignore[attr-defined]
    await scraper.answer(one)  # within --scrape-min-interval: the last scrape again
    assert len(calls) == 1
    assert scraper.stats.results == {"ok": 1}
    await scraper.aclose()


def test_the_per_pod_merge_needs_each_series_to_name_one_covered_pod() -> None:
    from adapter.core.sources import per_pod_merge
    from adapter.domain.models import QueryResult, Sample

    def result(backend: str, *pods: str) -> QueryResult:
        samples = tuple(Sample(labels={"pod": p}, value=1.0, timestamp=0.0) for p in pods)
        return QueryResult(query="q", samples=samples, backend=backend)

    two_endpoints = [
        ScrapeTarget("team-a", "p0", "http://10.0.0.1:9988/metrics", {"instance": "p0:9988"}),
        ScrapeTarget("team-a", "p0", "http://10.0.0.1:2112/metrics", {"instance": "p0:2112"}),
        TARGETS[1],
    ]
    merged = per_pod_merge(
        result("scrape", "p1"), result("b", "p0", "p1"), [two_endpoints[0]], two_endpoints
    )
    assert merged is not None and merged.raw["podSources"] == {"p0": "b", "p1": "scrape"}  # type: ignore[index]
    # The same pod name in two namespaces: which one a series is cannot be told.
    other = ScrapeTarget("team-b", "p1", "http://10.0.0.3:9988/metrics")
    assert (
        per_pod_merge(result("scrape", "p0"), result("b", "p1"), [TARGETS[1]], [*TARGETS, other])
        is None
    )
    # A series without a pod label, or of a pod the query does not cover: not per pod.
    assert per_pod_merge(result("scrape", "p0"), result("b", ""), [TARGETS[1]], TARGETS) is None
    assert per_pod_merge(result("scrape", "p0"), result("b", "p9"), [TARGETS[1]], TARGETS) is None
