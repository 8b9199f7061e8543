from __future__ import annotations

import asyncio

import pytest

from adapter.core.cache import SingleFlightCache
from adapter.domain.errors import BackendUnavailableError


class FakeClock:
    """Monotonic and wall time that move only when the test says so."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return 1_700_000_000.0 + self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def _cache(clock: FakeClock, *, ttl: float, keep_warm: float = 0.0) -> SingleFlightCache[str, int]:
    return SingleFlightCache(ttl=ttl, keep_warm=keep_warm, clock=clock.monotonic, wall=clock.wall)


class Counting:
    """A fetch that answers how many times it was called."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        return self.calls


async def _settle() -> None:
    """Let started fetch tasks run to completion (no time passes on the fake clock)."""
    for _ in range(5):
        await asyncio.sleep(0)


async def test_hit_after_miss_and_expiry() -> None:
    clock = FakeClock()
    cache = _cache(clock, ttl=0.2)
    fetch = Counting()

    first, state1 = await cache.get("q", fetch)
    second, state2 = await cache.get("q", fetch)
    assert (first.value, state1, second.value, state2) == (1, "miss", 1, "hit")
    clock.advance(0.25)
    third, state3 = await cache.get("q", fetch)
    assert (third.value, state3) == (2, "miss")


async def test_concurrent_callers_share_one_fetch() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(ttl=10)
    calls = 0
    release = asyncio.Event()

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await release.wait()
        return 42

    tasks = [asyncio.create_task(cache.get("q", fetch)) for _ in range(200)]
    await asyncio.sleep(0.01)
    assert cache.inflight == 1
    release.set()
    results = await asyncio.gather(*tasks)
    assert calls == 1
    assert {r[0].value for r in results} == {42}
    assert sorted(r[1] for r in results).count("miss") == 1
    assert [r[1] for r in results].count("shared") == 199


async def test_errors_are_shared_but_not_cached() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(ttl=10)
    calls = 0

    async def failing() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        raise BackendUnavailableError("down", backend="prometheus")

    results = await asyncio.gather(
        *(cache.get("q", failing) for _ in range(5)), return_exceptions=True
    )
    assert calls == 1
    assert all(isinstance(r, BackendUnavailableError) for r in results)

    async def ok() -> int:
        return 7

    entry, state = await cache.get("q", ok)
    assert (entry.value, state) == (7, "miss")


async def test_a_cancelled_caller_does_not_cancel_the_shared_fetch() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(ttl=10)

    async def slow() -> int:
        await asyncio.sleep(0.05)
        return 1

    first = asyncio.create_task(cache.get("q", slow))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(cache.get("q", slow))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    entry, state = await second
    assert (entry.value, state) == (1, "shared")


async def test_ttl_zero_disables_caching_but_keeps_single_flight() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(ttl=0)
    calls = 0

    async def fetch() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    results = await asyncio.gather(*(cache.get("q", fetch) for _ in range(3)))
    assert calls == 1
    assert [r[1] for r in results].count("disabled") == 1
    entry, _ = await cache.get("q", fetch)
    assert entry.value == 2


async def test_periodic_keys_are_prefetched_just_before_their_next_request() -> None:
    clock = FakeClock()
    cache = _cache(clock, ttl=0.6, keep_warm=3.0)
    fetch = Counting()

    async def wait(seconds: float) -> None:
        # What run_refresher does, on the fake clock: a refresh check every 0.05 s.
        for _ in range(round(seconds / 0.05)):
            clock.advance(0.05)
            cache.refresh_due()
            await _settle()

    # Like an HPA: asked every 1 s, longer than the 0.6 s TTL.
    states = []
    for _ in range(5):
        entry, state = await cache.get("q", fetch)
        states.append(state)
        assert clock.wall() - entry.fetched_at <= 0.6
        await wait(1.0)
    # The first two requests teach the period; after that every request hits.
    assert states == ["miss", "miss", "hit", "hit", "hit"]
    # One backend query per request, as without the prefetch, only earlier — plus the one
    # prefetched for a sixth request that never came.
    assert fetch.calls == 6, fetch.calls
    # Nobody asks any more: no more prefetching.
    await wait(2.0)
    assert fetch.calls == 6, fetch.calls


async def test_the_refresher_task_prefetches_on_its_own() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(ttl=0.2, keep_warm=3.0)
    fetch = Counting()

    refresher = asyncio.create_task(cache.run_refresher())
    try:
        await cache.get("q", fetch)
        await asyncio.sleep(0.3)
        await cache.get("q", fetch)  # the period (0.3 s) is learnt: the next one is prefetched
        for _ in range(40):
            if cache.refreshes:
                break
            await asyncio.sleep(0.02)
        assert cache.refreshes >= 1
    finally:
        refresher.cancel()
        with pytest.raises(asyncio.CancelledError):
            await refresher


async def test_keys_asked_more_often_than_the_ttl_are_not_prefetched() -> None:
    clock = FakeClock()
    cache = _cache(clock, ttl=0.5, keep_warm=2.0)
    fetch = Counting()

    for _ in range(6):
        await cache.get("q", fetch)
        assert cache.refresh_due() == 0
        clock.advance(0.1)
    assert fetch.calls == 2


async def test_a_failing_prefetch_leaves_the_error_to_the_next_request() -> None:
    clock = FakeClock()
    cache = _cache(clock, ttl=0.2, keep_warm=5.0)
    fail = False

    async def fetch() -> int:
        if fail:
            raise BackendUnavailableError("down", backend="prometheus")
        return 1

    await cache.get("q", fetch)
    clock.advance(0.3)
    await cache.get("q", fetch)
    fail = True
    clock.advance(0.25)  # next request expected at +0.3 s; lead is 0.1 s
    assert cache.refresh_due() == 1
    await _settle()
    with pytest.raises(BackendUnavailableError):
        await cache.get("q", fetch)
