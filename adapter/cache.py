"""A TTL cache of backend answers with single-flight.

Two HPAs asking for the same rendered query share one cache entry, and however many requests
arrive while that query is in flight, the backend sees it once: the first caller fetches, the rest
await the same future. Errors are not cached; every waiter receives the error of the fetch it
joined.

With ``stale_ttl > 0`` the cache also keeps each key's last good answer for that many seconds
(a separate bounded map, so it outlives the short freshness TTL): :meth:`SingleFlightCache.stale`
hands it out when a fetch fails (``--stale-if-error``).

With ``keep_warm > 0``, keys asked for within the last ``keep_warm`` seconds are refreshed in the
background shortly before they expire (:meth:`SingleFlightCache.run_refresher`): an HPA that asks
every 15 s with a 5 s TTL then always hits, and the backend still sees at most about one query per
key per TTL. Keys nobody asks for any more stop being refreshed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from cachetools import TTLCache

__all__ = ["CacheState", "Cached", "SingleFlightCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

CacheState = Literal["hit", "miss", "shared", "disabled", "stale"]
"""``hit``: served from the cache; ``miss``: this call fetched; ``shared``: joined an in-flight fetch;
``stale``: the fetch failed and the last good answer was served instead (set by the provider)."""


@dataclass(frozen=True, slots=True)
class Cached(Generic[V]):
    """A value and when it was fetched (unix seconds)."""

    value: V
    fetched_at: float


class SingleFlightCache(Generic[K, V]):
    """``ttl`` in seconds; ``ttl <= 0`` disables caching but keeps single-flight.

    ``stale_ttl`` in seconds (``0``: off): how long a key's last good answer stays available to
    :meth:`stale`; at most ``maxsize`` such answers are kept.
    """

    def __init__(
        self,
        *,
        ttl: float,
        maxsize: int = 10_000,
        stale_ttl: float = 0.0,
        keep_warm: float = 0.0,
        refresh_concurrency: int = 8,
    ) -> None:
        self.ttl = ttl
        self.stale_ttl = stale_ttl
        self.keep_warm = keep_warm if ttl > 0 else 0.0
        self.maxsize = maxsize
        # key -> (monotonic time of the last request for it, how to fetch it)
        self._warm: dict[K, tuple[float, Callable[[], Awaitable[V]]]] = {}
        self._refresh_slots = asyncio.Semaphore(max(1, refresh_concurrency))
        self.refreshes = 0
        """Background refreshes started (for tests and ``/debug``)."""
        self._entries: TTLCache[K, Cached[V]] | None = (
            TTLCache(maxsize=maxsize, ttl=ttl, timer=time.monotonic) if ttl > 0 else None
        )
        self._last_good: TTLCache[K, Cached[V]] | None = (
            TTLCache(maxsize=maxsize, ttl=stale_ttl, timer=time.monotonic)
            if stale_ttl > 0
            else None
        )
        self._inflight: dict[K, asyncio.Future[Cached[V]]] = {}

    def __len__(self) -> int:
        return len(self._entries) if self._entries is not None else 0

    @property
    def inflight(self) -> int:
        return len(self._inflight)

    def peek(self, key: K) -> Cached[V] | None:
        """The cached entry without fetching, or ``None``."""
        return self._entries.get(key) if self._entries is not None else None

    def stale(self, key: K, *, now: float | None = None) -> Cached[V] | None:
        """The last good answer for ``key`` if it was fetched at most ``stale_ttl`` seconds ago
        (``now``: unix seconds, default the current time); else ``None``."""
        if self._last_good is None:
            return None
        entry = self._last_good.get(key)
        if entry is None:
            return None
        age = (time.time() if now is None else now) - entry.fetched_at
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
        self._warm.pop(key, None)  # re-insert: the dict is kept in last-asked order
        self._warm[key] = (time.monotonic(), fetch)
        while len(self._warm) > self.maxsize:
            del self._warm[next(iter(self._warm))]

    def refresh_due(self) -> int:
        """Start a background fetch for every warm key whose entry is missing or in the last
        tenth of its TTL; forget keys not asked for within ``keep_warm``. Returns how many
        fetches it started. Fetch errors are left for the next request to meet."""
        if self._entries is None or self.keep_warm <= 0:
            return 0
        now_mono, now = time.monotonic(), time.time()
        started = 0
        for key, (asked, fetch) in list(self._warm.items()):
            if now_mono - asked > self.keep_warm:
                del self._warm[key]
                continue
            entry = self._entries.get(key)
            if key in self._inflight or (
                entry is not None and now - entry.fetched_at < 0.9 * self.ttl
            ):
                continue
            task = asyncio.ensure_future(self._fetch(key, self._limited(fetch)))
            task.add_done_callback(_retrieve_exception)
            self._inflight[key] = task
            started += 1
        self.refreshes += started
        return started

    def _limited(self, fetch: Callable[[], Awaitable[V]]) -> Callable[[], Awaitable[V]]:
        async def run() -> V:
            # Many keys come due together after a restart: don't send them all at once.
            async with self._refresh_slots:
                return await fetch()

        return run

    async def run_refresher(self) -> None:
        """Refresh warm keys until cancelled; ticks every tenth of the TTL (at most 1 s)."""
        if self.keep_warm <= 0 or self._entries is None:
            return
        tick = min(1.0, self.ttl / 10)
        while True:
            await asyncio.sleep(tick)
            self.refresh_due()

    async def _fetch(self, key: K, fetch: Callable[[], Awaitable[V]]) -> Cached[V]:
        try:
            entry = Cached(value=await fetch(), fetched_at=time.time())
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
