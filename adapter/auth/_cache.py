"""A small TTL cache of review results with one in-flight review per key.

Allowed and denied answers may live for different times (``ttl_for``); errors are never cached.
Sizes are bounded, so a flood of distinct users or tokens cannot grow memory without limit.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

from cachetools import TLRUCache

__all__ = ["ReviewCache"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ReviewCache(Generic[K, V]):
    """``ttl_for(value)`` gives seconds to keep ``value`` (``<= 0``: do not keep it)."""

    def __init__(
        self,
        *,
        ttl_for: Callable[[V], float],
        maxsize: int = 4096,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl_for = ttl_for
        self._entries: TLRUCache[K, V] = TLRUCache(
            maxsize=maxsize, ttu=lambda _k, v, now: now + ttl_for(v), timer=timer
        )
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]]) -> V:
        """The cached value, or the result of ``fetch`` (shared by concurrent callers)."""
        try:
            value = self._entries[key]
        except KeyError:
            pass
        else:
            self.hits += 1
            return value
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await fetch()
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)
            # Nobody may be waiting: mark the exception retrieved so asyncio does not warn.
            future.exception()
            raise
        else:
            future.set_result(value)
            if self._ttl_for(value) > 0:
                self._entries[key] = value
            return value
        finally:
            self._inflight.pop(key, None)
