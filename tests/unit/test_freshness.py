"""with_freshness + restamp: values carry the time of the data they were computed from."""

from __future__ import annotations

import time

import pytest

from adapter import promql
from adapter.core.translate import restamp
from sim.fake_backend import FakeBackend


@pytest.mark.parametrize(
    "query",
    [
        'sum by (pod, id) (jetstream_prefill_backlog_size{cluster="c",namespace="n"})',
        'sum(sum by (exported_pod) (memory_used{a="1"}) / sum by (exported_pod) (memory_total{a="1"}))',
        'rate(x{a="b\\"c"}[5m])',
        "hour(x)",
    ],
)
def test_the_combined_query_parses_and_keeps_every_matcher(query: str) -> None:
    combined = promql.with_freshness(query, by=("pod",))
    assert combined is not None
    promql.validate(combined)
    original = promql.selectors(query)
    # the rule's query is there verbatim, and every selector is read again for its timestamp
    assert query in combined
    assert len(promql.selectors(combined)) == 2 * len(original)
    for info in original:
        assert info in promql.selectors(combined)


@pytest.mark.parametrize("query", ["scalar(x)", "1 + 2", "time()", "vector(1)", "pi()"])
def test_scalars_and_selector_free_queries_have_no_freshness(query: str) -> None:
    assert promql.with_freshness(query, by=()) is None


async def test_fake_backend_evaluates_it_like_prometheus_would() -> None:
    now = time.time()
    fake = FakeBackend()
    fake.set_series(
        [
            ({"__name__": "used", "pod": "a"}, 1.0, now - 5),
            ({"__name__": "total", "pod": "a"}, 4.0, now - 30),
            ({"__name__": "used", "pod": "b"}, 2.0, now - 50),
            ({"__name__": "total", "pod": "b"}, 4.0, now - 2),
        ]
    )
    query = "sum by (pod) (used) / sum by (pod) (total)"
    combined = promql.with_freshness(query, by=("pod",))
    assert combined is not None
    result = restamp(await fake.query(combined, timeout=1), by=("pod",))
    got = {s.labels["pod"]: (s.value, round(now - s.timestamp)) for s in result.samples}
    # each pod's value is as old as its oldest input
    assert got == {"a": (0.25, 30), "b": (0.5, 50)}
