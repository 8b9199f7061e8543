"""What the adapter does when a backend fails: a circuit breaker per backend, and the error that
says which backend failed and since when.

The breaker counts *consecutive* failed backend queries. Only failures that say the backend is
unreachable or too slow count (:class:`BackendUnavailableError`, :class:`BackendTimeoutError`);
a backend that answers, even with an error document (:class:`BackendResponseError`, e.g. a query
Prometheus rejects), is up, and resets the count.

States::

    closed ──(failure_threshold consecutive failures)──▶ open
    open ──(cool-down elapsed)──▶ half-open: ONE probe query goes through, others fail fast
    half-open ──(probe succeeds)──▶ closed (cool-down back to its base)
    half-open ──(probe fails)──▶ open, cool-down doubled (capped at max_cooldown)

While open, queries fail fast without touching the backend, with a 503 whose message reads
``prometheus: unavailable since 2026-05-01T10:00:00Z (42 s): <last error>; circuit open, next
try in 3.1 s``. The provider may still serve a stale answer (``--stale-if-error``) instead.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

from adapter.backends.base import Backend, DelegatingBackend
from adapter.core.translate import format_timestamp
from adapter.domain.errors import BackendError, BackendTimeoutError, BackendUnavailableError
from adapter.domain.models import QueryResult
from adapter.observability.telemetry import Telemetry

__all__ = ["BreakerPolicy", "BreakerState", "CircuitBreaker", "GuardedBackend", "counts_as_failure"]

T = TypeVar("T")

BreakerState = Literal["closed", "open", "half-open"]

_STATE_VALUE: dict[BreakerState, float] = {"closed": 0.0, "half-open": 1.0, "open": 2.0}
"""The circuit-state gauge's encoding: 0 closed, 1 half-open, 2 open."""


@dataclass(frozen=True, slots=True)
class BreakerPolicy:
    """``failure_threshold``: consecutive failures that open the circuit (``0`` disables the
    breaker). ``cooldown`` and ``max_cooldown`` in seconds: the first open period, and the cap
    it doubles up to while probes keep failing."""

    failure_threshold: int = 5
    cooldown: float = 5.0
    max_cooldown: float = 60.0

    def __post_init__(self) -> None:
        if self.failure_threshold < 0:
            raise ValueError("failure_threshold must be >= 0")
        if not (math.isfinite(self.cooldown) and self.cooldown > 0):
            raise ValueError("cooldown must be a positive number of seconds")
        if not (math.isfinite(self.max_cooldown) and self.max_cooldown >= self.cooldown):
            raise ValueError("max_cooldown must be >= cooldown")


def counts_as_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the backend is down or too slow (and so counts toward opening)."""
    return isinstance(exc, BackendUnavailableError | BackendTimeoutError)


def _detail(exc: BackendError) -> str:
    # BackendError messages start with "<backend>: "; the breaker's message names it once.
    prefix = f"{exc.backend}: "
    return exc.message[len(prefix) :] if exc.message.startswith(prefix) else exc.message


class CircuitBreaker:
    """One backend's breaker. Not thread-safe: used from the event loop only.

    ``clock`` is monotonic seconds (cool-downs), ``wall`` unix seconds (the "since" in messages);
    both are injectable for tests. ``on_change(state)`` is called on every state change (the
    circuit-state gauge); ``on_reject()`` each time a query is refused without being sent.
    """

    def __init__(
        self,
        backend: str,
        policy: BreakerPolicy | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        on_change: Callable[[BreakerState], None] | None = None,
        on_reject: Callable[[], None] | None = None,
    ) -> None:
        self.backend = backend
        self.policy = policy or BreakerPolicy()
        self._clock = clock
        self._wall = wall
        self._on_change = on_change
        self._on_reject = on_reject
        self._state: BreakerState = "closed"
        self._failures = 0
        self._cooldown = self.policy.cooldown
        self._opened_at = 0.0  # monotonic
        self._probe_in_flight = False
        self._failing_since: float | None = None  # unix seconds of the first consecutive failure
        self._last_error: BackendError | None = None

    # -- state -------------------------------------------------------------------------------

    @property
    def state(self) -> BreakerState:
        """The current state; an open circuit whose cool-down has passed reads ``half-open``."""
        if self._state == "open" and self._clock() >= self._opened_at + self._cooldown:
            self._set("half-open")
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    @property
    def failing_since(self) -> float | None:
        """Unix seconds of the first of the current run of failures; ``None`` when healthy."""
        return self._failing_since

    def _set(self, state: BreakerState) -> None:
        if state != self._state:
            self._state = state
            if self._on_change is not None:
                self._on_change(state)

    def snapshot(self) -> dict[str, Any]:
        """The breaker as ``/debug/metrics`` shows it (no credentials: messages never hold any)."""
        state = self.state
        retry_in = (
            max(0.0, self._opened_at + self._cooldown - self._clock()) if state == "open" else None
        )
        return {
            "state": state,
            "consecutiveFailures": self._failures,
            "failureThreshold": self.policy.failure_threshold,
            "cooldownSeconds": self._cooldown,
            "retryInSeconds": round(retry_in, 3) if retry_in is not None else None,
            "failingSince": format_timestamp(self._failing_since)
            if self._failing_since is not None
            else None,
            "lastError": self._last_error.message if self._last_error is not None else None,
        }

    @staticmethod
    def gauge_value(state: BreakerState) -> float:
        """The circuit-state gauge's value for ``state``: 0 closed, 1 half-open, 2 open."""
        return _STATE_VALUE[state]

    # -- the error ---------------------------------------------------------------------------

    def unavailable_error(self, cause: BackendError | None = None) -> BackendError:
        """The error a failed or refused query gets: which backend, since when, the last error.

        A timeout keeps its 504; everything else is a 503 ``BackendUnavailableError``.
        """
        cause = cause or self._last_error
        now = self._wall()
        since = self._failing_since if self._failing_since is not None else now
        text = f"unavailable since {format_timestamp(since)} ({max(0, round(now - since))} s)"
        if cause is not None:
            text += f": {_detail(cause)}"
        if self._state == "open":
            retry_in = max(0.0, self._opened_at + self._cooldown - self._clock())
            text += f"; circuit open, next try in {retry_in:.1f} s"
        elif self._state == "half-open":
            text += "; circuit half-open, a probe query is in flight"
        cls = BackendTimeoutError if isinstance(cause, BackendTimeoutError) else None
        # The name the backend gives itself in its errors is what an operator knows it by.
        name = cause.backend if cause is not None else self.backend
        return (cls or BackendUnavailableError)(text, backend=name)

    # -- calls -------------------------------------------------------------------------------

    def _admit(self) -> bool:
        """Let a call through or raise the fail-fast error. Returns whether it is the probe."""
        if self.policy.failure_threshold == 0:
            return False
        state = self.state
        if state == "closed":
            return False
        if state == "half-open" and not self._probe_in_flight:
            self._probe_in_flight = True
            return True
        if self._on_reject is not None:
            self._on_reject()
        raise self.unavailable_error()

    def record_success(self) -> None:
        self._failures = 0
        self._failing_since = None
        self._last_error = None
        self._probe_in_flight = False
        self._cooldown = self.policy.cooldown
        self._set("closed")

    def record_failure(self, exc: BackendError) -> None:
        self._failures += 1
        self._last_error = exc
        if self._failing_since is None:
            self._failing_since = self._wall()
        threshold = self.policy.failure_threshold
        if threshold == 0:
            return
        if self._probe_in_flight or self._state == "half-open":
            # The probe failed: stay away twice as long (capped).
            self._probe_in_flight = False
            self._cooldown = min(self._cooldown * 2, self.policy.max_cooldown)
            self._open()
        elif self._state == "closed" and self._failures >= threshold:
            self._open()

    def _open(self) -> None:
        self._opened_at = self._clock()
        # Re-opening from half-open must notify even though _state may read "open" already.
        self._set("open")

    async def call(self, fetch: Callable[[], Awaitable[T]]) -> T:
        """Run ``fetch()`` through the breaker.

        Raises the fail-fast error while open. A failure that counts is recorded and re-raised as
        :meth:`unavailable_error` (which backend, since when); any other ``BackendError`` means the
        backend answered, so it closes the circuit and propagates unchanged.
        """
        probe = self._admit()
        try:
            result = await fetch()
        except BackendError as exc:
            if counts_as_failure(exc):
                self.record_failure(exc)
                raise self.unavailable_error(exc) from exc
            self.record_success()
            raise
        except BaseException:
            # Cancelled or a bug: no verdict on the backend; let the next caller probe.
            if probe:
                self._probe_in_flight = False
            raise
        self.record_success()
        return result


class GuardedBackend(DelegatingBackend):
    """A :class:`Backend` behind its :class:`CircuitBreaker`, its queries counted and timed.

    What the provider queries: the breaker fails fast while open (without touching the
    backend), and every query that reaches the backend is counted by result and its latency
    observed (``llm_metrics_adapter_backend_*``). Discovery and readiness calls pass straight
    through: they have their own schedule and must not open or probe the circuit.
    """

    def __init__(self, backend: Backend, breaker: CircuitBreaker, telemetry: Telemetry) -> None:
        super().__init__(backend)
        self.breaker = breaker
        self.telemetry = telemetry

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        return await self.breaker.call(lambda: self._counted(query, timeout))

    async def _counted(self, query: str, timeout: float) -> QueryResult:
        started = time.perf_counter()
        try:
            result = await self.backend.query(query, timeout=timeout)
        except BackendError as exc:
            self.telemetry.backend_queries.labels(self.name, type(exc).__name__).inc()
            raise
        self.telemetry.backend_queries.labels(self.name, "ok").inc()
        self.telemetry.backend_seconds.labels(self.name).observe(time.perf_counter() - started)
        return result
