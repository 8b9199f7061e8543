"""The fake backend's set operators, comparisons, rate/increase and histogram_quantile: what
the engine presets' queries use, with Prometheus' semantics."""

from __future__ import annotations

import math

import pytest

from adapter.domain.errors import BackendResponseError
from sim.fake_backend import FakeBackend


async def values(fake: FakeBackend, query: str) -> dict[tuple[tuple[str, str], ...], float]:
    result = await fake.query(query, timeout=1)
    return {tuple(sorted(s.labels.items())): s.value for s in result.samples}


@pytest.fixture
def fake() -> FakeBackend:
    backend = FakeBackend()
    buckets = {"0.1": 2.0, "0.5": 8.0, "1.0": 10.0, "+Inf": 10.0}
    backend.set_series(
        [
            *(({"__name__": "h_bucket", "pod": "a", "le": le}, v) for le, v in buckets.items()),
            *(({"__name__": "h_bucket", "pod": "b", "le": le}, 0.0) for le in buckets),
            ({"__name__": "h_count", "pod": "a"}, 10.0),
            ({"__name__": "h_count", "pod": "b"}, 0.0),
            ({"__name__": "g", "pod": "a"}, 1.0),
            ({"__name__": "g", "pod": "b"}, 5.0),
            ({"__name__": "t", "pod": "a", "kind": "x"}, 1.0),
            ({"__name__": "t", "pod": "a", "kind": "y"}, 2.0),
            ({"__name__": "t", "pod": "b", "kind": "x"}, 3.0),
        ]
    )
    return backend


async def test_histogram_quantile_interpolates_like_prometheus(fake: FakeBackend) -> None:
    got = await values(fake, "histogram_quantile(0.5, rate(h_bucket[2m]))")
    # pod a: rank 5 in (0.1, 0.5] holding 6 of the 10: 0.1 + 0.4 * (5 - 2) / 6
    assert got[(("pod", "a"),)] == pytest.approx(0.3)
    assert math.isnan(got[(("pod", "b"),)])  # no observations
    summed = await values(fake, "histogram_quantile(0.95, sum by (le) (rate(h_bucket[2m])))")
    assert summed[()] == pytest.approx(0.5 + 0.5 * (9.5 - 8) / 2)
    top = await values(fake, "histogram_quantile(1, sum by (le) (h_bucket))")
    assert top[()] == 1.0


async def test_comparison_filters_drop_nan(fake: FakeBackend) -> None:
    got = await values(fake, "histogram_quantile(0.5, rate(h_bucket[2m])) >= 0")
    assert list(got) == [(("pod", "a"),)]
    assert await values(fake, "g > 2") == {(("__name__", "g"), ("pod", "b")): 5.0}
    assert await values(fake, "2 > g") == {(("__name__", "g"), ("pod", "a")): 1.0}
    with pytest.raises(BackendResponseError, match="BOOL"):
        await fake.query("1 > 2", timeout=1)


async def test_rate_and_increase_read_the_stored_value(fake: FakeBackend) -> None:
    assert await values(fake, "sum(rate(h_count[2m]))") == {(): 10.0}
    assert await values(fake, "sum(increase(h_count[2m]))") == {(): 1200.0}


async def test_and_unless_with_on(fake: FakeBackend) -> None:
    one_type = "count by (pod) (count by (pod, kind) (t)) == 1"
    assert await values(fake, f"sum by (pod) (t) and on (pod) ({one_type})") == {
        (("pod", "b"),): 3.0
    }
    assert await values(fake, f"sum by (pod) (t) unless on (pod) ({one_type})") == {
        (("pod", "a"),): 3.0
    }
    assert await values(
        fake, 'sum(t{kind="x"}) and on () (count(count by (kind) (t{kind="x"})) == 1)'
    ) == {(): 4.0}
    with pytest.raises(BackendResponseError, match="set operator"):
        await fake.query("g and 1", timeout=1)
