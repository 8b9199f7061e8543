"""An answer and its trace: what the provider produced for one request, and how.

:class:`Trace` is what ``/debug/query`` and ``explain`` show; it also names the inputs a rendered
response depends on (:mod:`adapter.core.responses`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from adapter.core.cache import Cached, CacheState
from adapter.core.translate import Dropped
from adapter.domain.models import MetricValue, QueryResult
from adapter.rules.base import BuiltQuery, MetricRequest, ServedMetric

__all__ = ["Answer", "NotCached", "Trace"]


class NotCached(LookupError):
    """A background render found no result-cache entry to render from."""


@dataclass(slots=True)
class Trace:
    """Everything ``/debug/query`` shows about one answer."""

    metric: ServedMetric | None = None
    request: MetricRequest | None = None
    built: BuiltQuery | None = None
    cache: CacheState | None = None
    result: QueryResult | None = None
    fetched_at: float | None = None
    dropped: list[Dropped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    stale_error: str | None = None
    """With ``cache == "stale"``: why the backend could not give a fresh answer."""
    sample_interval: float | None = None
    """The interval the cache learned for this query's samples (``None``: not yet, or read
    from the pods at the request)."""
    cache_key: tuple[str, str] | None = None
    entry: Cached[QueryResult] | None = None
    """The result-cache entry the answer was translated from (``None``: not from the cache)."""
    refetch: Callable[[], Awaitable[QueryResult]] | None = None
    background: bool = False
    """A render after a prefetch (:mod:`adapter.core.responses`), no client waiting: it reads
    the result cache only (:class:`NotCached` when the entry is gone) and counts nothing."""
    objects_generation: Hashable | None = None
    """The object cache's generation for the request's resource and namespace, read before the
    labelSelector was matched (``None``: the names did not come from the object cache)."""


@dataclass(slots=True)
class Answer:
    body: dict[str, Any]
    values: list[MetricValue]
    trace: Trace
