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


class _Counting:
    """A fetch that counts its calls, takes 10 ms, and returns the call count (or raises)."""

    def __init__(self, error: Exception | None = None) -> None:
        self.calls = 0
        self.error = error

    async def __call__(self) -> int:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.error is not None:
            raise self.error
        return self.calls


async def test_errors_are_shared_but_not_cached() -> None:
    cache: SingleFlightCache[str, int] = SingleFlightCache(ttl=10)
    failing = _Counting(BackendUnavailableError("down", backend="prometheus"))
    results = await asyncio.gather(
        *(cache.get("q", failing) for _ in range(5)), return_exceptions=True
    )
    assert failing.calls == 1
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
    fetch = _Counting()
    results = await asyncio.gather(*(cache.get("q", fetch) for _ in range(3)))
    assert fetch.calls == 1
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


class Scraped:
    """A backend whose series get a new sample every ``interval`` seconds at ``phase`` (wall
    time), queryable ``lag`` seconds after its timestamp: each fetch answers the newest
    queryable sample time of every series."""

    def __init__(
        self, clock: FakeClock, *, interval: float, phases: tuple[float, ...], lag: float = 0.0
    ) -> None:
        self.clock, self.interval, self.phases, self.lag = clock, interval, phases, lag
        self.calls = 0

    def newest(self, phase: float) -> float:
        now = self.clock.wall() - self.lag
        return now - ((now - phase) % self.interval)

    async def __call__(self) -> tuple[tuple[str, float], ...]:
        self.calls += 1
        return tuple((f"pod-{i}", self.newest(p)) for i, p in enumerate(self.phases))


def _sampled_cache(
    clock: FakeClock, *, ttl: float, keep_warm: float = 0.0
) -> SingleFlightCache[str, tuple[tuple[str, float], ...]]:
    return SingleFlightCache(
        ttl=ttl, keep_warm=keep_warm, clock=clock.monotonic, wall=clock.wall, stamps=lambda v: v
    )


async def test_an_entry_ends_when_the_next_sample_is_due_not_at_the_ttl() -> None:
    clock = FakeClock()
    backend = Scraped(clock, interval=15.0, phases=(clock.wall() + 0.5,))
    cache = _sampled_cache(clock, ttl=10.0)
    await cache.get("q", backend)  # the first fetch: the interval is not known yet
    clock.advance(15.0)
    entry, state = await cache.get("q", backend)  # sees the series advance by 15 s: learned
    assert state == "miss" and entry.due == entry.value[0][1] + 15.0
    clock.advance(entry.due - clock.wall() - 0.1)
    assert (await cache.get("q", backend))[1] == "hit"  # just before the sample is due
    clock.advance(0.2)
    entry, state = await cache.get("q", backend)  # just after: refetched, and it has the sample
    assert state == "miss" and entry.value[0][1] == backend.newest(backend.phases[0])
    assert clock.wall() - entry.value[0][1] < 0.2


async def test_an_answer_fetched_while_a_due_sample_is_late_is_not_cached() -> None:
    clock = FakeClock()
    stuck = {"ts": clock.wall()}

    async def fetch() -> tuple[tuple[str, float], ...]:
        return (("pod-0", stuck["ts"]),)

    cache = _sampled_cache(clock, ttl=10.0)
    await cache.get("q", fetch)
    clock.advance(15.0)
    stuck["ts"] += 15.0
    await cache.get("q", fetch)  # interval learned: 15 s
    clock.advance(15.5)  # the next sample is late (an ingestion delay): nothing to reuse
    assert (await cache.get("q", fetch))[1] == "miss"
    assert (await cache.get("q", fetch))[1] == "miss"
    stuck["ts"] += 15.0  # it arrives: cached until the TTL or the next sample, whichever first
    assert (await cache.get("q", fetch))[1] == "miss"
    clock.advance(9.0)
    assert (await cache.get("q", fetch))[1] == "hit"


async def test_the_prefetch_waits_for_a_sample_due_just_before_the_request() -> None:
    """The phase that cost a whole HPA sync: the HPA asks every 15 s, and the backend gets its
    sample 1 s before each request. A prefetch 2 s ahead would serve the sample before it."""
    clock = FakeClock()
    request_at = clock.wall()
    backend = Scraped(clock, interval=15.0, phases=(request_at - 1.0,))
    cache = _sampled_cache(clock, ttl=5.0, keep_warm=60.0)
    for _ in range(3):  # the HPA's rhythm, learned: period 15 s, sample interval 15 s
        await cache.get("q", backend)
        clock.advance(15.0)
    clock.advance(-15.0)
    calls = backend.calls
    served = []
    for _ in range(4):
        # the refresher ticks every 0.5 s until the next request
        for _ in range(30):
            clock.advance(0.5)
            cache.refresh_due()
            await _settle()
        entry, state = await cache.get("q", backend)
        served.append((state, clock.wall() - entry.value[0][1]))
    assert [state for state, _ in served] == ["hit"] * 4
    assert all(age <= 1.0 for _, age in served), served  # the sample of 1 s ago, every time
    assert backend.calls - calls == 4  # one prefetch per request, no more


async def test_the_prefetch_learns_how_long_a_sample_takes_to_become_queryable() -> None:
    """GMP makes a sample queryable seconds after its timestamp. Here it lands 1 s before the
    HPA's request: a prefetch 2 s ahead finds the old sample, so it runs once more just before
    the request (every request still hits, with the sample of the moment), and the wait after
    a due sample grows until one prefetch per request is enough."""
    clock = FakeClock()
    request_at = clock.wall()
    backend = Scraped(clock, interval=15.0, phases=(request_at - 6.0,), lag=5.0)
    cache = _sampled_cache(clock, ttl=5.0, keep_warm=60.0)
    for _ in range(3):
        await cache.get("q", backend)
        clock.advance(15.0)
    clock.advance(-15.0)
    states, calls = [], []
    for _ in range(40):
        before = backend.calls
        for _ in range(30):
            clock.advance(0.5)
            cache.refresh_due()
            await _settle()
        entry, state = await cache.get("q", backend)
        states.append(state)
        calls.append(backend.calls - before)
        assert entry.value[0][1] == backend.newest(backend.phases[0])  # never an older sample
    assert states == ["hit"] * 40
    # Learned: mostly one query per request (the wait probes down by 1 % per on-time prefetch).
    assert calls[0] == 2 and calls[-10:].count(1) >= 8, calls
    assert 4.5 <= cache.settle <= 5.5


async def test_a_prefetch_runs_at_most_twice_per_request_even_when_its_answer_is_overdue() -> None:
    clock = FakeClock()
    stuck = {"ts": clock.wall()}
    calls = 0

    async def fetch() -> tuple[tuple[str, float], ...]:
        nonlocal calls
        calls += 1
        return (("pod-0", stuck["ts"]),)

    cache = _sampled_cache(clock, ttl=5.0, keep_warm=60.0)
    for advance in (15.0, 0.0, 0.0):  # then the backend stops getting samples: overdue answers
        await cache.get("q", fetch)
        clock.advance(15.0)
        stuck["ts"] += advance
    clock.advance(-15.0)
    before = calls
    for _ in range(30):
        clock.advance(0.5)
        cache.refresh_due()
        await _settle()
    assert calls - before == 2  # the prefetch, and its one retry just before the request


def test_the_documented_bound_matches_the_code() -> None:
    from pathlib import Path

    from adapter.core.cache import MAX_SETTLE, RETRY_LEAD, SETTLE

    doc = " ".join((Path(__file__).parents[2] / "docs" / "configuration.md").read_text().split())
    assert (
        "a served answer never lacks a sample that a direct query at that moment would see" in doc
    )
    assert f"{SETTLE * 1000:g} ms after its timestamp at first" in doc
    assert f"longer by {SETTLE * 1000:g} ms each time a prefetch still missed one" in doc
    assert f"up to {MAX_SETTLE:g} s or half the sample interval" in doc
    assert f"runs once more {RETRY_LEAD * 1000:g} ms before the request" in doc


async def test_a_request_served_from_a_rendered_response_still_teaches_the_prefetch() -> None:
    clock = FakeClock()
    fetch = Counting()
    taught, untaught = (_cache(clock, ttl=5.0, keep_warm=60.0) for _ in range(2))
    for cache in (taught, untaught):
        await cache.get("q", fetch)
    clock.advance(15)
    taught.touch("q", fetch)  # the HPA's next sync, answered whole (adapter.core.responses)
    clock.advance(14)  # one second before the sync after it
    assert (taught.refresh_due(), untaught.refresh_due()) == (1, 0)


async def test_a_background_refresh_and_only_that_is_announced() -> None:
    clock = FakeClock()
    cache = _cache(clock, ttl=5.0, keep_warm=60.0)
    announced: list[str] = []
    cache.on_refreshed = announced.append
    fetch = Counting()
    await cache.get("q", fetch)
    clock.advance(15)
    await cache.get("q", fetch)  # a request's own fetch
    assert announced == []
    clock.advance(14)
    assert cache.refresh_due() == 1
    await _settle()
    assert announced == ["q"] and fetch.calls == 3
