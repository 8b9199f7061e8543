"""The freshness budget of one HPA metric: where its value came from, how old it is, what each
stage adds, and how long the HPA takes to act on a step in the servers' load. Pure.

Stages, for a value read through a backend (Prometheus, GMP): the servers are sampled every
``S`` seconds (the scrape interval, learned by the result cache from the series' own timestamps);
the backend makes a sample queryable some seconds later (GMP: 3-7 s; estimated as the part of the
value's age one interval does not explain); the cache ends an answer when the next sample is due,
so it adds at most a fraction of a second once ``S`` is learned and up to ``--cache-ttl`` before;
the HPA reads every sync period (15 s by default). A step right after a scrape waits for the next
scrape, the ingestion, then the next sync: worst ``S + lag + sync``, typically half of ``S`` and of
the sync plus the lag. Read from the pods (``--scrape-pods``), the value is read at the HPA's own
request: a step waits for the next sync, plus at most ``--scrape-min-interval`` when the request
shares a scrape made just before it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter.core.answer import Trace
from adapter.scrape.source import SCRAPE_SOURCE

__all__ = ["DEFAULT_SYNC_PERIOD_S", "freshness_budget"]

DEFAULT_SYNC_PERIOD_S = 15.0
"""kube-controller-manager's ``--horizontal-pod-autoscaler-sync-period`` default."""


def _round(value: float) -> float:
    return round(value, 2)


def freshness_budget(
    trace: Trace,
    ages: Sequence[float],
    *,
    sync_s: float,
    cache_ttl: float,
    scrape_floor_s: float | None = None,
) -> dict[str, Any]:
    """The budget of one answered metric request (``ages``: each value's age, seconds).
    ``scrape_floor_s``: ``--scrape-min-interval`` when the pods are read, what a read from them
    may add (a request within it shares the last scrape)."""
    oldest = max(ages) if ages else None
    source = trace.result.backend if trace.result is not None else None
    doc: dict[str, Any] = {
        "source": source,
        "valueAgeSeconds": None if oldest is None else _round(oldest),
        "hpaSyncSeconds": sync_s,
    }
    if source == SCRAPE_SOURCE:
        doc["cache"] = "not cached: read from the pods at each request"
        doc["sampleIntervalSeconds"] = None
        doc["ingestionLagSeconds"] = 0.0
        doc["reactionSeconds"] = {
            "typical": _round(sync_s / 2),
            "worst": _round(sync_s + (scrape_floor_s or 0.0)),
        }
        return doc
    interval = trace.sample_interval
    cached = (
        f"{trace.cache}; an answer ends when its next sample is due"
        if interval is not None
        else f"{trace.cache}; up to --cache-ttl {cache_ttl:g} s until the sample interval is learned"
    )
    doc["cache"] = cached
    doc["sampleIntervalSeconds"] = None if interval is None else _round(interval)
    if oldest is None:
        doc["ingestionLagSeconds"] = None
        doc["reactionSeconds"] = None
        return doc
    # Unknown interval: the value's age is all that is known; take it as one interval.
    step = interval if interval is not None else oldest
    lag = max(0.0, oldest - step)
    cache_extra = 0.0 if interval is not None else cache_ttl
    doc["ingestionLagSeconds"] = _round(lag)
    doc["reactionSeconds"] = {
        "typical": _round(step / 2 + lag + cache_extra / 2 + sync_s / 2),
        "worst": _round(step + lag + cache_extra + sync_s),
    }
    return doc
