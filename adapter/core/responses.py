"""Whole responses, rendered once and served again while everything they were made of holds.

A metrics API answer is made of: the backend answer it was translated from (an entry of the
result cache), the metric the registry serves under the requested name, the objects the request's
``labelSelector`` matched (the object cache's generation for that resource and namespace) and the
clock (a value older than ``--max-sample-age`` is not served). :class:`ResponseCache` keeps the
rendered bytes of an answer with each of those and serves the bytes again — no parsing, rule
lookup, query building, translation or JSON encoding — while every one is unchanged: the entry is
still the result cache's current one for its key, the registry still serves the same metric, the
generation is the same and no value has aged out. So a response is never older than the result
cache's answer for the same request, and a change of any input is seen at the next request.

A response is kept only when all of this can be checked: answers read from the pods
(``--scrape-pods``), stale answers (``--stale-if-error``), answers with the cache off and answers
for every series because the object list was not in yet are rendered for each request.

A hit is counted as the full path counts a result-cache hit: the ``cache`` counter, the served
values' ages, the prefetch's request period and the observers (the UI's history).

At the HPA's rhythm every request finds a new entry, fetched by the prefetch just before it
(:class:`adapter.core.cache.SingleFlightCache`). So when the prefetch stores one, the responses
made from the old one are rendered again in the background, from the cache only and counting
nothing, and the request is served whole.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapter.core.answer import Answer, NotCached, Trace
from adapter.core.request import ApiRequest
from adapter.domain.errors import AdapterError
from adapter.domain.models import QueryResult
from adapter.rules.base import ServedMetric

if TYPE_CHECKING:
    from adapter.core.provider import MetricsProvider

__all__ = ["ResponseCache"]

log = logging.getLogger(__name__)

ResponseKey = tuple[str, bytes]
"""The request's path and raw query string: two spellings of one request are two entries."""


@dataclass(frozen=True, slots=True)
class _Rendered:
    body: bytes
    request: ApiRequest
    answer: Answer
    """What the observers are given on a hit: the values, without the backend's answer."""
    served: ServedMetric
    cache_key: tuple[str, str]
    fetched_at: float
    """The result-cache entry it was made from, by its fetch time (holding the entry itself
    would keep its backend answer alive after the result cache let it go)."""
    refetch: Callable[[], Awaitable[QueryResult]]
    generation: Hashable | None
    until: float
    """Unix seconds at which the oldest value passes the maximum sample age (``inf``: never)."""
    params: Mapping[str, str]
    """The decoded query parameters, to render the request again after a prefetch."""


def _same_metric(found: ServedMetric | None, kept: ServedMetric) -> bool:
    """Whether the registry still serves ``kept``: the same object, or one discovery rebuilt
    from the same rule with the same object label and resource mapping."""
    if found is kept:
        return True
    return (
        found is not None
        and found == kept
        and found.rule is kept.rule
        and found.object_label == kept.object_label
        and found.described == kept.described
    )


class ResponseCache:
    """Rendered responses of ``provider`` (see the module docstring); at most ``maxsize``,
    the oldest dropped first. ``clock``: unix seconds."""

    def __init__(
        self,
        provider: MetricsProvider,
        *,
        maxsize: int = 10_000,
        render_concurrency: int = 4,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._provider = provider
        self._entries: dict[ResponseKey, _Rendered] = {}
        # result-cache key -> the responses rendered from it
        self._dependents: dict[tuple[str, str], set[ResponseKey]] = {}
        self._rendering: set[ResponseKey] = set()
        self._slots = asyncio.Semaphore(render_concurrency)
        self.maxsize = maxsize
        self._clock = clock
        self.rerenders = 0
        """Responses rendered again after a prefetch (for tests and ``/debug``)."""
        provider.cache.on_refreshed = self.refreshed

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        self._entries.clear()
        self._dependents.clear()

    def _drop(self, key: ResponseKey) -> None:
        kept = self._entries.pop(key, None)
        if kept is not None:
            dependents = self._dependents.get(kept.cache_key)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[kept.cache_key]

    def refreshed(self, cache_key: tuple[str, str]) -> None:
        """The prefetch stored a new entry for ``cache_key``: render the responses made from it
        again in the background, so the request the prefetch was for is served whole."""
        for key in tuple(self._dependents.get(cache_key, ())):
            if key not in self._rendering:
                self._rendering.add(key)
                task = asyncio.ensure_future(self._render_again(key))
                task.add_done_callback(functools.partial(self._rendered, key))

    def _rendered(self, key: ResponseKey, _: object) -> None:
        self._rendering.discard(key)

    async def _render_again(self, key: ResponseKey) -> None:
        kept = self._entries.get(key)
        if kept is None:
            return
        async with self._slots:
            try:
                await self._provider.respond(key[0], key[1], kept.params, background=True)
                self.rerenders += 1
            except NotCached:
                pass  # the entry ended before its turn: the request renders it
            except AdapterError as exc:
                log.debug("rendering %s again failed: %s", key[0], exc.message)
                self._drop(key)
            except Exception:
                log.exception("rendering %s again failed", key[0])
                self._drop(key)

    def lookup(self, path: str, query: bytes) -> bytes | None:
        """The rendered response for this request if everything it was made of still holds
        (and the hit counted); else ``None`` and the request takes the full path."""
        key = (path, query)
        kept = self._entries.get(key)
        if kept is None:
            return None
        if not self._holds(kept):
            self._drop(key)
            return None
        provider = self._provider
        provider.cache.touch(kept.cache_key, kept.refetch)
        provider.telemetry.cache.labels("hit").inc()
        provider.served(kept.request, kept.answer)
        return kept.body

    def _holds(self, kept: _Rendered) -> bool:
        provider = self._provider
        if self._clock() >= kept.until:
            return False
        entry = provider.cache.peek(kept.cache_key)
        if entry is None or entry.fetched_at != kept.fetched_at:
            return False
        request = kept.request
        if request.group == "external":
            found = provider.registry.find_external(request.metric)
        else:
            assert request.resource is not None
            found = provider.registry.find_custom(request.resource, request.metric)
        if not _same_metric(found, kept.served):
            return False
        if kept.generation is None:
            return True
        objects = provider.object_generations
        return (
            objects is not None
            and request.resource is not None
            and objects.generation(request.resource, request.namespace) == kept.generation
        )

    def store(
        self,
        path: str,
        query: bytes,
        request: ApiRequest,
        answer: Answer,
        body: bytes,
        *,
        params: Mapping[str, str],
    ) -> None:
        """Keep ``body`` for this request if every input of ``answer`` can be checked later."""
        trace = answer.trace
        if trace.entry is None or trace.cache_key is None or trace.refetch is None:
            return  # not from the result cache: live, stale or the cache is off
        if trace.metric is None or trace.cache not in {"hit", "miss", "shared"}:
            return
        lists_objects = (
            request.group == "custom"
            and request.name is None
            and self._provider.objects is not None
        )
        if lists_objects and (
            trace.objects_generation is None
            or trace.request is None
            or trace.request.object_names is None
        ):
            return  # the names did not come from an object cache that can tell when they change
        max_age = self._provider.max_sample_age
        until = (
            min((v.timestamp + max_age for v in answer.values), default=math.inf)
            if max_age is not None
            else math.inf
        )
        key = (path, query)
        self._drop(key)
        if len(self._entries) >= self.maxsize:
            self._drop(next(iter(self._entries)))
        self._dependents.setdefault(trace.cache_key, set()).add(key)
        self._entries[key] = _Rendered(
            body=body,
            request=request,
            answer=Answer(body=answer.body, values=answer.values, trace=Trace(metric=trace.metric)),
            served=trace.metric,
            cache_key=trace.cache_key,
            fetched_at=trace.entry.fetched_at,
            refetch=trace.refetch,
            generation=trace.objects_generation if lists_objects else None,
            until=until,
            params=dict(params),
        )
