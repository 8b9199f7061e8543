"""The freshness budget explain shows per metric: each path's stages and the reaction time."""

from __future__ import annotations

from adapter.core.cache import CacheState
from adapter.core.provider import Trace
from adapter.domain.models import QueryResult
from adapter.hpa.freshness import freshness_budget


def _trace(backend: str, interval: float | None = None, cache: CacheState = "miss") -> Trace:
    trace = Trace()
    trace.result = QueryResult(query="q", samples=(), backend=backend)
    trace.sample_interval = interval
    trace.cache = cache
    return trace


def test_read_from_the_pods_a_step_waits_for_the_next_sync_only() -> None:
    doc = freshness_budget(_trace("scrape"), [0.2, 0.4], sync_s=15, cache_ttl=5, scrape_floor_s=1.0)
    assert doc["source"] == "scrape" and doc["valueAgeSeconds"] == 0.4
    assert doc["reactionSeconds"] == {"typical": 7.5, "worst": 16.0}
    assert doc["cache"].startswith("not cached")


def test_the_worst_case_from_the_pods_adds_the_configured_scrape_min_interval() -> None:
    for floor in (0.5, 2.5, 5.0):
        doc = freshness_budget(
            _trace("scrape"), [0.2], sync_s=30, cache_ttl=5, scrape_floor_s=floor
        )
        assert doc["reactionSeconds"] == {"typical": 15.0, "worst": 30 + floor}


def test_through_the_backend_the_scrape_interval_and_the_lag_add_up() -> None:
    # 15 s scrapes, a value 20 s old: 5 s the interval does not explain is ingestion lag.
    doc = freshness_budget(_trace("gmp", interval=15.0), [20.0, 12.0], sync_s=15, cache_ttl=5)
    assert (doc["sampleIntervalSeconds"], doc["ingestionLagSeconds"]) == (15.0, 5.0)
    assert doc["reactionSeconds"] == {"typical": 20.0, "worst": 35.0}
    assert "next sample is due" in doc["cache"]


def test_before_the_interval_is_learned_the_cache_ttl_counts_whole() -> None:
    doc = freshness_budget(_trace("prometheus"), [10.0], sync_s=15, cache_ttl=5)
    assert doc["sampleIntervalSeconds"] is None and doc["ingestionLagSeconds"] == 0.0
    assert doc["reactionSeconds"] == {"typical": 15.0, "worst": 30.0}
    assert "--cache-ttl 5 s" in doc["cache"]


def test_no_value_no_reaction_estimate() -> None:
    doc = freshness_budget(_trace("prometheus", interval=15.0), [], sync_s=15, cache_ttl=5)
    assert doc["valueAgeSeconds"] is None and doc["reactionSeconds"] is None
