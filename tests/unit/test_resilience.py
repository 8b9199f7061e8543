"""The circuit breaker's state machine on a fake clock, and the stale-if-error windows of the cache."""

from __future__ import annotations

import asyncio

import pytest

from adapter.core.cache import SingleFlightCache
from adapter.core.resilience import BreakerPolicy, BreakerState, CircuitBreaker
from adapter.domain.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
)

T0_WALL = 1_800_000_000.0  # 2027-01-15T08:00:00Z


class Clock:
    def __init__(self) -> None:
        self.mono = 100.0
        self.wall = T0_WALL

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self.wall += seconds


class Backend:
    """Counts calls; fails with ``error`` when set."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: BackendError | None = None

    async def __call__(self) -> str:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return "ok"


def refused() -> BackendUnavailableError:
    return BackendUnavailableError("connection refused to /api/v1/query", backend="prometheus")


def make(
    policy: BreakerPolicy | None = None,
) -> tuple[CircuitBreaker, Clock, list[BreakerState], list[int]]:
    clock = Clock()
    changes: list[BreakerState] = []
    rejects: list[int] = []
    breaker = CircuitBreaker(
        "prometheus",
        policy or BreakerPolicy(failure_threshold=3, cooldown=5, max_cooldown=20),
        clock=lambda: clock.mono,
        wall=lambda: clock.wall,
        on_change=changes.append,
        on_reject=lambda: rejects.append(1),
    )
    return breaker, clock, changes, rejects


def state_of(breaker: CircuitBreaker) -> BreakerState:
    # A function, not the property: mypy would keep an earlier narrowing across calls.
    return breaker.state


async def fail_n(breaker: CircuitBreaker, backend: Backend, n: int) -> list[BackendError]:
    errors = []
    for _ in range(n):
        with pytest.raises(BackendError) as info:
            await breaker.call(backend)
        errors.append(info.value)
    return errors


async def test_opens_after_threshold_and_fails_fast_without_calling() -> None:
    breaker, clock, changes, rejects = make()
    backend = Backend()
    backend.error = refused()
    await fail_n(breaker, backend, 2)
    assert state_of(breaker) == "closed" and backend.calls == 2
    clock.advance(42)
    (third,) = await fail_n(breaker, backend, 1)
    assert state_of(breaker) == "open" and changes == ["open"]
    # The error names the backend, when the failures began, how long ago, and the last error.
    assert isinstance(third, BackendUnavailableError) and third.code == 503
    assert third.message.startswith(
        "prometheus: unavailable since 2027-01-15T08:00:00Z (42 s): connection refused"
    )
    fast = await fail_n(breaker, backend, 10)
    assert backend.calls == 3, "an open circuit must not touch the backend"
    assert len(rejects) == 10
    assert all(e.code == 503 and "circuit open, next try in 5.0 s" in e.message for e in fast)


async def test_half_open_lets_exactly_one_probe_through() -> None:
    breaker, clock, changes, _ = make()
    backend = Backend()
    backend.error = refused()
    await fail_n(breaker, backend, 3)
    clock.advance(5)
    assert state_of(breaker) == "half-open"
    release = asyncio.Event()

    async def slow_probe() -> str:
        backend.calls += 1
        await release.wait()
        return "ok"

    probe = asyncio.create_task(breaker.call(slow_probe))
    await asyncio.sleep(0)
    # While the probe is in flight every other call fails fast.
    with pytest.raises(BackendUnavailableError, match="probe query is in flight"):
        await breaker.call(backend)
    assert backend.calls == 4
    release.set()
    assert await probe == "ok"
    assert state_of(breaker) == "closed" and changes == ["open", "half-open", "closed"]
    assert breaker.consecutive_failures == 0 and breaker.failing_since is None
    backend.error = None
    assert await breaker.call(backend) == "ok"


async def test_failed_probe_doubles_the_cooldown_up_to_the_cap() -> None:
    breaker, clock, _, _ = make()
    backend = Backend()
    backend.error = refused()
    await fail_n(breaker, backend, 3)
    cooldowns = []
    for _ in range(4):
        cooldown = breaker.snapshot()["cooldownSeconds"]
        cooldowns.append(cooldown)
        clock.advance(cooldown - 0.1)
        await fail_n(breaker, backend, 1)
        calls = backend.calls
        assert state_of(breaker) == "open"
        clock.advance(0.1)
        assert state_of(breaker) == "half-open"
        await fail_n(breaker, backend, 1)  # the probe, failing
        assert backend.calls == calls + 1
    assert cooldowns == [5, 10, 20, 20]
    # A success resets the cool-down to its base.
    clock.advance(20)
    backend.error = None
    await breaker.call(backend)
    backend.error = refused()
    await fail_n(breaker, backend, 3)
    assert breaker.snapshot()["cooldownSeconds"] == 5


async def test_answers_with_errors_do_not_open_the_circuit() -> None:
    breaker, _, _, _ = make()
    backend = Backend()
    backend.error = BackendResponseError("bad_data: parse error", backend="prometheus")
    errors = await fail_n(breaker, backend, 10)
    assert state_of(breaker) == "closed" and backend.calls == 10
    assert all(isinstance(e, BackendResponseError) and e.code == 502 for e in errors)
    # ... and they reset a run of real failures.
    backend.error = refused()
    await fail_n(breaker, backend, 2)
    backend.error = BackendResponseError("garbage", backend="prometheus")
    await fail_n(breaker, backend, 1)
    backend.error = refused()
    await fail_n(breaker, backend, 2)
    assert state_of(breaker) == "closed"


async def test_timeouts_count_and_keep_their_504() -> None:
    breaker, _, _, _ = make()
    backend = Backend()
    backend.error = BackendTimeoutError("deadline of 10s exceeded", backend="prometheus")
    errors = await fail_n(breaker, backend, 3)
    assert state_of(breaker) == "open"
    assert [e.code for e in errors] == [504, 504, 504]
    assert "deadline of 10s exceeded" in errors[-1].message


async def test_cancelled_probe_frees_the_probe_slot() -> None:
    breaker, clock, _, _ = make()
    backend = Backend()
    backend.error = refused()
    await fail_n(breaker, backend, 3)
    clock.advance(5)

    async def hang() -> str:
        await asyncio.sleep(60)
        return "never"

    task = asyncio.create_task(breaker.call(hang))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    backend.error = None
    assert await breaker.call(backend) == "ok"
    assert state_of(breaker) == "closed"


async def test_threshold_zero_disables_the_breaker() -> None:
    breaker, _, _, _ = make(BreakerPolicy(failure_threshold=0))
    backend = Backend()
    backend.error = refused()
    await fail_n(breaker, backend, 20)
    assert backend.calls == 20 and state_of(breaker) == "closed"


def test_snapshot_shows_state_and_last_error() -> None:
    breaker, clock, _, _ = make()
    assert breaker.snapshot()["state"] == "closed"
    for _ in range(3):
        breaker.record_failure(refused())
    clock.advance(2)
    snap = breaker.snapshot()
    assert snap["state"] == "open" and snap["retryInSeconds"] == 3.0
    assert snap["failingSince"] == "2027-01-15T08:00:00Z"
    assert snap["lastError"] == "prometheus: connection refused to /api/v1/query"
    assert [CircuitBreaker.gauge_value(s) for s in ("closed", "half-open", "open")] == [0, 1, 2]


@pytest.mark.parametrize(
    "kwargs",
    [{"failure_threshold": -1}, {"cooldown": 0}, {"cooldown": 10, "max_cooldown": 5}],
)
def test_bad_policy_is_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must be"):
        BreakerPolicy(**kwargs)  # type: ignore[arg-type]


# -- stale-if-error windows of the cache ------------------------------------------------------


async def test_last_good_answer_outlives_the_ttl_within_the_stale_window() -> None:
    now = [100.0]
    cache: SingleFlightCache[str, int] = SingleFlightCache(
        ttl=0.05, stale_ttl=30, clock=lambda: now[0], wall=lambda: 1_700_000_000.0 + now[0]
    )
    entry, _ = await cache.get("q", lambda: asyncio.sleep(0, result=7))
    now[0] += 0.06
    assert cache.peek("q") is None, "the fresh entry has expired"
    stale = cache.stale("q")
    assert stale is not None and stale.value == 7
    # The window is measured from when the answer was fetched.
    assert cache.stale("q", now=entry.fetched_at + 30) is not None
    assert cache.stale("q", now=entry.fetched_at + 30.01) is None
    assert cache.stale("other") is None


async def test_stale_is_off_by_default_and_errors_do_not_replace_the_last_good() -> None:
    off: SingleFlightCache[str, int] = SingleFlightCache(ttl=5)
    await off.get("q", lambda: asyncio.sleep(0, result=1))
    assert off.stale("q") is None

    cache: SingleFlightCache[str, int] = SingleFlightCache(ttl=0, stale_ttl=30)
    await cache.get("q", lambda: asyncio.sleep(0, result=1))

    async def boom() -> int:
        raise refused()

    with pytest.raises(BackendUnavailableError):
        await cache.get("q", boom)
    stale = cache.stale("q")
    assert stale is not None and stale.value == 1
    cache.clear()
    assert cache.stale("q") is not None, "clear() drops fresh entries only"
