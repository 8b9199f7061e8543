"""A TTL cache of backend answers with single-flight.

Two HPAs asking for the same rendered query share one cache entry, and however many requests
arrive while that query is in flight, the backend sees it once: the first caller fetches, the rest
await the same future. Errors are not cached; every waiter receives the error of the fetch it
joined.

With ``stale_ttl > 0`` the cache also keeps each key's last good answer for that many seconds
(a separate bounded map, so it outlives the short freshness TTL): :meth:`SingleFlightCache.stale`
hands it out when a fetch fails (``--stale-if-error``).

With ``keep_warm > 0``, a key asked for periodically, less often than the TTL (an HPA syncs every
15 s; the TTL is 5 s), is fetched in the background just before its next expected request
(:meth:`SingleFlightCache.run_refresher`), so that request hits. The backend sees what it would
without the prefetch — one query per request period — only earlier. Keys asked for more often than
the TTL need no prefetch; keys not asked for within ``keep_warm`` seconds are forgotten.

Sample-aware expiry (``stamps``): the cache also learns, per key, the interval at which its series
get new samples (the smallest advance of one series' timestamp between two fetches) and ends an
entry when the next sample of any of its series is due, not only after the TTL; an answer fetched
while a due sample had not arrived yet (an ingestion delay) is not cached at all. The prefetch waits
for a sample due before the expected request (plus :attr:`SingleFlightCache.settle`, learned) instead
of fetching just ahead of it. The bound, once the interval is learned: a served answer never lacks
a sample that a direct query at that moment would see; before it is learned, and in any case, an
answer is at most the TTL old.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from cachetools import TLRUCache, TTLCache

__all__ = ["MAX_SETTLE", "RETRY_LEAD", "SETTLE", "CacheState", "Cached", "SingleFlightCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CacheState = Literal["hit", "miss", "shared", "disabled", "stale"]
"""``hit``: served from the cache; ``miss``: this call fetched; ``shared``: joined an in-flight fetch;
``stale``: the fetch failed and the last good answer was served instead (set by the provider)."""


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    """A value and when it was fetched (unix seconds); ``due``: when the next sample of one of
    its series is expected (unix seconds), ``None`` while the sample interval is unknown."""

    value: V
    fetched_at: float
    due: float | None = None


Stamps = Callable[[Any], Iterable[tuple[Hashable, float]]]
"""A value's series, each as (identity, unix timestamp of its newest sample)."""

SETTLE = 0.25
"""Seconds after a sample is due before the prefetch reads it, at first: the scrape's own
duration. Learned from then on (:attr:`SingleFlightCache.settle`): a large target takes longer
to scrape, and GMP makes a sample queryable 3–7 s after its timestamp."""

MAX_SETTLE = 10.0
"""The longest :attr:`SingleFlightCache.settle`."""

RETRY_LEAD = 0.5
"""Seconds before the expected request a prefetch that found its sample not in yet runs once
more (at most once per request): one extra query, only on the phases where the sample lands
just before the request."""

_MISSED_SCRAPES = 3
"""A series this many intervals behind is not expected back on schedule (a deleted pod's last
sample, still inside the backend's lookback): it does not bring the entry's end forward."""


class SingleFlightCache(Generic[K, V]):
    """``ttl`` in seconds; ``ttl <= 0`` disables caching but keeps single-flight.

    ``stale_ttl`` in seconds (``0``: off): how long a key's last good answer stays available to
    :meth:`stale`; at most ``maxsize`` such answers are kept.

    ``clock`` (monotonic seconds: expiry and request periods) and ``wall`` (unix seconds: when
    an answer was fetched) are injectable, so tests move time instead of sleeping.
    """

    def __init__(
        self,
        *,
        ttl: float,
        maxsize: int = 10_000,
        stale_ttl: float = 0.0,
        keep_warm: float = 0.0,
        refresh_concurrency: int = 8,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        stamps: Stamps | None = None,
    ) -> None:
        self._clock = clock
        self._wall = wall
        self._stamps_of = stamps
        # key -> (each series' newest sample time at the last fetch, the learned sample interval,
        # when the next sample is due)
        self._series: dict[K, tuple[dict[Hashable, float], float | None, float | None]] = {}
        self.ttl = ttl
        self.stale_ttl = stale_ttl
        self.keep_warm = keep_warm if ttl > 0 else 0.0
        self.maxsize = maxsize
        # key -> (monotonic time of the last request, seconds since the one before, how to fetch)
        self._warm: dict[K, tuple[float, float | None, Callable[[], Awaitable[V]]]] = {}
        # key -> the request (its monotonic time) after which it was last prefetched: once per period
        self._prefetched: dict[K, float] = {}
        # key -> the request for which a prefetch found its sample not in yet (one retry)
        self._retry: dict[K, float] = {}
        self._refresh_slots = asyncio.Semaphore(max(1, refresh_concurrency))
        self.refreshes = 0
        """Background refreshes started (for tests and ``/debug``)."""
        self._entries: TLRUCache[K, Cached[V]] | None = (
            TLRUCache(maxsize=maxsize, ttu=self._expiry, timer=clock) if ttl > 0 else None
        )
        self._last_good: TTLCache[K, Cached[V]] | None = (
            TTLCache(maxsize=maxsize, ttl=stale_ttl, timer=clock) if stale_ttl > 0 else None
        )
        self._inflight: dict[K, asyncio.Future[Cached[V]]] = {}
        self.settle = SETTLE
        """Seconds after a sample's timestamp the prefetch waits for it to be queryable: longer
        by :data:`SETTLE` when a prefetch still missed it, shorter by 1 % when a first prefetch
        found it (from :data:`SETTLE` up to :data:`MAX_SETTLE` or half the sample interval).
        One value for all keys: they share the ingestion pipeline."""
        self.on_refreshed: Callable[[K], None] | None = None
        """Called with a key after a background fetch stored a new entry for it (the rendered
        responses built from the key are rendered again: :mod:`adapter.core.responses`)."""

    def __len__(self) -> int:
        return len(self._entries) if self._entries is not None else 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def peek(self, key: K) -> Cached[V] | None:
        """The cached entry without fetching, or ``None``."""
        return self._entries.get(key) if self._entries is not None else None

    def touch(self, key: K, fetch: Callable[[], Awaitable[V]]) -> None:
        """Count a request for ``key`` that was answered without :meth:`get` (a response rendered
        from :meth:`peek`'s entry and served whole): the prefetch learns its period all the same."""
        if self.keep_warm > 0:
            self._remember(key, fetch)

    def sample_interval(self, key: K) -> float | None:
        """The sample interval learned for ``key`` (``None`` until two reads show it)."""
        learned = self._series.get(key)
        return learned[1] if learned is not None else None

    def stale(self, key: K, *, now: float | None = None) -> Cached[V] | None:
        """The last good answer for ``key`` if it was fetched at most ``stale_ttl`` seconds ago
        (``now``: unix seconds, default the current time); else ``None``."""
        if self._last_good is None:
            return None
        entry = self._last_good.get(key)
        if entry is None:
            return None
        age = (self._wall() if now is None else now) - entry.fetched_at
        return entry if age <= self.stale_ttl else None

    def clear(self) -> None:
        """Drop the fresh entries (the next lookup of every key fetches). Last good answers stay:
        a key is the query text itself, so they remain the right answer for it."""
        if self._entries is not None:
            self._entries.clear()

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> tuple[Cached[V], CacheState]:
        """Return the cached value for ``key``, fetching it with ``fetch()`` at most once at a time.

        The fetch runs in its own task: a caller that is cancelled (a client that hung up) does
        not cancel the fetch other callers are waiting on.
        """
        if self.keep_warm > 0:
            self._remember(key, fetch)
        if self._entries is not None:
            entry = self._entries.get(key)
            if entry is not None:
                return entry, "hit"
        task = self._inflight.get(key)
        state: CacheState = "shared"
        if task is None:
            task = asyncio.ensure_future(self._fetch(key, fetch))
            task.add_done_callback(_retrieve_exception)
            self._inflight[key] = task
            state = "miss" if self._entries is not None else "disabled"
        return await asyncio.shield(task), state

    def _remember(self, key: K, fetch: Callable[[], Awaitable[V]]) -> None:
        now = self._clock()
        previous = self._warm.pop(key, None)  # re-insert: the dict is kept in last-asked order
        period = now - previous[0] if previous is not None else None
        self._warm[key] = (now, period, fetch)
        while len(self._warm) > self.maxsize:
            oldest = next(iter(self._warm))
            del self._warm[oldest]
            self._prefetched.pop(oldest, None)
            self._retry.pop(oldest, None)

    def _fresh_for(self, entry: Cached[V]) -> float:
        """Seconds ``entry`` is served after its fetch: the TTL, cut at the time a sample of one
        of its series is due; none when one was already due (and late) at the fetch."""
        if entry.due is None:
            return self.ttl
        return max(0.0, min(self.ttl, entry.due - entry.fetched_at))

    def _expiry(self, _key: K, entry: Cached[V], now: float) -> float:
        return now + self._fresh_for(entry)

    def _learn(self, key: K, value: V, fetched_at: float) -> float | None:
        """Record ``value``'s sample times for ``key``; the time its next sample is due."""
        if self._stamps_of is None:
            return None
        stamps = dict(self._stamps_of(value))
        previous, interval, _ = self._series.pop(key, ({}, None, None))
        for series, ts in stamps.items():
            before = previous.get(series)
            if before is not None and ts > before and (interval is None or ts - before < interval):
                interval = ts - before
        due = None
        if interval is not None:
            horizon = fetched_at - _MISSED_SCRAPES * interval
            current = [ts for ts in stamps.values() if ts > horizon]
            due = min(current) + interval if current else None
        self._series[key] = (stamps, interval, due)
        while len(self._series) > self.maxsize:
            del self._series[next(iter(self._series))]
        return due

    def refresh_due(self) -> int:
        """Start a background fetch for every periodic key whose next request is less than
        ``lead`` seconds away and would find its entry expired; forget keys not asked for within
        ``keep_warm``. Returns how many fetches it started. Fetch errors are left for the next
        request to meet."""
        if self._entries is None or self.keep_warm <= 0:
            return 0
        now_mono, now = self._clock(), self._wall()
        lead = min(2.0, self.ttl / 2)
        started = 0
        for key, (asked, period, fetch) in list(self._warm.items()):
            if now_mono - asked > self.keep_warm:
                del self._warm[key]
                self._prefetched.pop(key, None)
                self._retry.pop(key, None)
                continue
            if self._prefetched.get(key) == asked:
                continue  # prefetched once for the coming request already
            if period is None or period <= self.ttl or key in self._inflight:
                continue  # not periodic yet, or asked often enough for the TTL to serve it
            if self._retry.get(key) == asked and asked + period - now_mono > RETRY_LEAD:
                continue  # the first prefetch came before the sample: once more, just in time
            until_next = asked + period - now_mono
            if until_next > lead or until_next < -lead:
                continue  # not due yet, or the expected request did not come
            entry = self._entries.get(key)
            if entry is not None and now + until_next - entry.fetched_at < self._fresh_for(entry):
                continue  # still fresh when the request comes
            due = self._series[key][2] if key in self._series else None
            if due is not None and now < due + self.settle and due <= now + until_next:
                continue  # a new sample is due before the request: fetch after it, not before
            awaited = due is not None and due <= now
            task = asyncio.ensure_future(self._fetch(key, self._limited(fetch)))
            task.add_done_callback(_retrieve_exception)
            task.add_done_callback(functools.partial(self._refreshed, key, asked, awaited))
            self._inflight[key] = task
            self._prefetched[key] = asked
            started += 1
        self.refreshes += started
        return started

    def _refreshed(
        self, key: K, asked: float, awaited: bool, task: asyncio.Future[Cached[V]]
    ) -> None:
        """After a prefetch: learn :attr:`settle` from whether the sample it waited for was in
        (if not, the entry is not served, the next prefetches wait longer, and this one runs
        once more :data:`RETRY_LEAD` seconds before the request); announce a usable entry."""
        if task.cancelled() or task.exception() is not None:
            return
        entry = task.result()
        late = entry.due is not None and entry.due <= entry.fetched_at
        if awaited:
            learned = self._series.get(key)
            interval = learned[1] if learned is not None and learned[1] else 2 * MAX_SETTLE
            if late:
                self.settle = min(self.settle + SETTLE, MAX_SETTLE, interval / 2)
                if self._retry.get(key) != asked:
                    self._retry[key] = asked
                    self._prefetched.pop(key, None)
            elif self._retry.get(key) != asked:  # a first prefetch found it: maybe shorter
                self.settle = max(SETTLE, self.settle * 0.99)
        if not late and self.on_refreshed is not None:
            self.on_refreshed(key)

    def _limited(self, fetch: Callable[[], Awaitable[V]]) -> Callable[[], Awaitable[V]]:
        async def run() -> V:
            # Many keys come due together after a restart: don't send them all at once.
            async with self._refresh_slots:
                return await fetch()

        return run

    async def run_refresher(self) -> None:
        """Prefetch due keys until cancelled; ticks every tenth of the TTL (at most 0.5 s)."""
        if self.keep_warm <= 0 or self._entries is None:
            return
        tick = min(0.5, self.ttl / 10)
        while True:
            await asyncio.sleep(tick)
            self.refresh_due()

    async def _fetch(self, key: K, fetch: Callable[[], Awaitable[V]]) -> Cached[V]:
        try:
            value = await fetch()
            fetched_at = self._wall()
            entry = Cached(
                value=value, fetched_at=fetched_at, due=self._learn(key, value, fetched_at)
            )
            if self._entries is not None:
                self._entries[key] = entry
            if self._last_good is not None:
                self._last_good[key] = entry
            return entry
        finally:
            self._inflight.pop(key, None)


def _retrieve_exception(task: asyncio.Future[Any]) -> None:
    # Every waiter may have been cancelled; mark the error seen so asyncio does not log it.
    if not task.cancelled():
        task.exception()
