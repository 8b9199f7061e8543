"""The HPA controller's rhythm at scale, as the ``rhythm`` scenario drives it.

Every HPA has a fixed phase in the sync period (:func:`build_schedule`). At its time it is put on
a queue; ``workers`` concurrent syncs (the controller's default
``--concurrent-horizontal-pod-autoscaler-syncs`` is 5) take HPAs off the queue and make the
HPA's requests one after the other, as the controller does. The schedule never waits for the
server: if the workers fall behind, the queue grows and the *dispatch lag* (when a worker took
the HPA − when it was due) says by how much.

For every answer the driver records the latency and the **age of each value served**: receive
time − the item's ``timestamp`` (both adapters put the sample's time there). The timestamps are
RFC 3339 with whole seconds, so one age is only known to within a second (:func:`value_ages`).
"""

from __future__ import annotations

import asyncio
import bisect
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx

from bench.load import percentile

__all__ = [
    "RhythmResult",
    "Tick",
    "build_schedule",
    "drive",
    "floor_ages",
    "last_scrape",
    "summarize",
    "value_ages",
]


@dataclass(frozen=True, slots=True)
class Tick:
    """HPA ``hpa`` is due ``offset`` seconds into every period."""

    offset: float
    hpa: int


def build_schedule(hpas: int, period: float) -> list[Tick]:
    """One tick per HPA, phases spread evenly over ``period``, sorted by phase.

    HPA ``i`` gets phase ``i * period / hpas``: a controller that created its HPAs over time has
    them spread across the period, and even spreading is the steady state's mean rate with no
    accidental clumps (the measured tails are the servers', not the schedule's).
    """
    if hpas <= 0:
        raise ValueError(f"hpas must be positive, got {hpas}")
    if period <= 0:
        raise ValueError(f"period must be positive, got {period}")
    return [Tick(offset=i * period / hpas, hpa=i) for i in range(hpas)]


def _parse_timestamp(value: str) -> float:
    """RFC 3339 (``2026-12-05T13:49:36Z``, optionally with a fraction or an offset) → epoch s."""
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        raise ValueError(f"timestamp without a time zone: {value!r}")
    return parsed.timestamp()


def value_ages(body: bytes | str, received: float) -> list[float]:
    """Seconds between ``received`` (epoch) and each item's ``timestamp`` in a metrics API answer.

    Raises ``ValueError`` on a body that is not a metrics list or an item without a parseable
    timestamp: an answer the benchmark cannot date is an error, not an age of zero.
    """
    try:
        doc = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ValueError(f"answer is not JSON: {exc}") from exc
    items = doc.get("items") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise ValueError("answer has no items list")
    ages: list[float] = []
    for item in items:
        stamp = item.get("timestamp") if isinstance(item, dict) else None
        if not isinstance(stamp, str):
            raise ValueError(f"item without a timestamp: {str(item)[:200]}")
        ages.append(received - _parse_timestamp(stamp))
    return ages


def last_scrape(targets_doc: Any, address: str) -> float | None:
    """The ``lastScrape`` (epoch s) of the active target at ``address`` in Prometheus'
    ``/api/v1/targets`` answer; None before its first scrape. Raises ``ValueError`` if the answer
    has no such target."""
    try:
        active = targets_doc["data"]["activeTargets"]
        for target in active:
            if f"//{address}/" in target["scrapeUrl"]:
                stamp = target.get("lastScrape") or ""
                if not stamp or stamp.startswith("0001-"):
                    return None
                # Prometheus writes nanoseconds; fromisoformat takes at most microseconds.
                head, dot, frac = stamp.partition(".")
                if dot:
                    digits = "".join(c for c in frac if c.isdigit())
                    stamp = f"{head}.{digits[:6]}{frac[len(digits) :]}"
                return _parse_timestamp(stamp)
    except (KeyError, TypeError) as exc:
        raise ValueError(f"not a Prometheus targets answer: {exc!r}") from exc
    raise ValueError(f"Prometheus has no active target {address}")


def floor_ages(received: Sequence[float], scrapes: Sequence[float]) -> list[float]:
    """For each receive time, its distance to the latest scrape at or before it: the age of the
    newest sample Prometheus held (what a direct query at that moment returns, give or take the
    scrape's ingestion). Receive times before the first known scrape are skipped."""
    ordered = sorted(set(scrapes))
    out: list[float] = []
    for t in received:
        i = bisect.bisect_right(ordered, t)
        if i:
            out.append(t - ordered[i - 1])
    return out


@dataclass
class RhythmResult:
    """What the measured window saw (warm-up excluded). Latencies in ms, lags and ages in s."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    lags_s: list[float] = field(default_factory=list)
    ages_s: list[float] = field(default_factory=list)
    received: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    dispatched: int = 0
    client_cpu_s: float = 0.0


def summarize(
    res: RhythmResult,
    *,
    period: float,
    distinct_queries: int,
    scrapes: Sequence[float] = (),
) -> dict[str, Any]:
    """The per-adapter figures of the scenario (``requests``/``seconds``/``p50_ms``/``p99_ms``/
    ``errors`` as :class:`bench.load.LoadResult` has them, for :meth:`Bench.measure`).
    ``scrapes``: the HPA target's scrape times seen during the run (for the freshness floor)."""
    lat, ages, lags = res.latencies_ms, res.ages_s, res.lags_s
    floor = floor_ages(res.received, scrapes)

    def r(v: float, d: int = 3) -> float | None:
        return None if v != v else round(v, d)  # NaN (nothing measured) → None

    return {
        "requests": len(lat),
        "seconds": round(res.seconds, 3),
        "rps": round(len(lat) / res.seconds, 1) if res.seconds > 0 else 0.0,
        "p50_ms": r(percentile(lat, 50)),
        "p99_ms": r(percentile(lat, 99)),
        "max_ms": r(max(lat) if lat else float("nan")),
        "errors": res.errors,
        "error_samples": res.error_samples[:5],
        "dispatched": res.dispatched,
        "lag_max_s": r(max(lags) if lags else float("nan")),
        "lag_p99_s": r(percentile(lags, 99)),
        "age_p50_s": r(percentile(ages, 50)),
        "age_p99_s": r(percentile(ages, 99)),
        "age_max_s": r(max(ages) if ages else float("nan")),
        "ages": len(ages),
        "floor_age_p50_s": r(percentile(floor, 50)),
        "floor_age_p99_s": r(percentile(floor, 99)),
        "floor_age_max_s": r(max(floor) if floor else float("nan")),
        "client_cpu_s": round(res.client_cpu_s, 2),
        "client_cpu_pct": round(100 * res.client_cpu_s / res.seconds, 1) if res.seconds else None,
        "period_s": period,
        "distinct_queries": distinct_queries,
        "query_bound_per_min": round(distinct_queries * 60 / period, 1),
    }


async def drive(
    base_url: str,
    requests_of: Sequence[Sequence[str]],
    *,
    token: str,
    period: float,
    warmup: float,
    seconds: float,
    workers: int = 5,
    connections: int = 5,
    on_measure: Callable[[], Awaitable[None]] | None = None,
) -> RhythmResult:
    """Run the rhythm for ``warmup`` + ``seconds``; only HPAs due in the last ``seconds`` count.

    ``requests_of[i]`` are HPA ``i``'s paths, requested one after the other by one worker.
    ``on_measure`` is awaited when the measured window opens (the caller starts its counters).
    Returns when every HPA due before the end was served (bounded by the client's timeout).
    """
    schedule = build_schedule(len(requests_of), period)
    res = RhythmResult(seconds=seconds)
    queue: asyncio.Queue[tuple[int, float, bool] | None] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2
    measure_from = start + warmup
    end = measure_from + seconds

    async def worker(client: httpx.AsyncClient) -> None:
        while (job := await queue.get()) is not None:
            hpa, due, counted = job
            if counted:
                res.lags_s.append(loop.time() - due)
            for path in requests_of[hpa]:
                await _one(client, base_url + path, res if counted else None)

    async with httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        verify=False,  # noqa: S501 - each adapter's self-signed serving cert, on loopback
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(15.0),
        trust_env=False,
    ) as client:
        tasks = [asyncio.create_task(worker(client)) for _ in range(workers)]
        measuring = False
        cpu0 = 0.0
        cycle = 0
        try:
            while True:
                base = start + cycle * period
                if base >= end:
                    break
                for tick in schedule:
                    due = base + tick.offset
                    if due >= end:
                        break
                    if not measuring and due >= measure_from:
                        measuring = True
                        await _sleep_until(loop, measure_from)
                        if on_measure is not None:
                            await on_measure()
                        cpu0 = time.process_time()
                    await _sleep_until(loop, due)
                    if measuring:
                        res.dispatched += 1
                    queue.put_nowait((tick.hpa, due, measuring))
                cycle += 1
            for _ in tasks:
                queue.put_nowait(None)
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
        res.client_cpu_s = time.process_time() - cpu0 if measuring else 0.0
    return res


async def _sleep_until(loop: asyncio.AbstractEventLoop, when: float) -> None:
    delay = when - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)


async def _one(client: httpx.AsyncClient, url: str, res: RhythmResult | None) -> None:
    started = time.perf_counter()
    try:
        response = await client.get(url)
        received = time.time()
        ms = (time.perf_counter() - started) * 1000
        problem = "" if response.status_code == 200 else f"{response.status_code} {url}"
        ages = value_ages(response.content, received) if not problem else []
    except (httpx.HTTPError, ValueError) as exc:
        ms, ages, problem = (time.perf_counter() - started) * 1000, [], f"{exc!r}"[:200]
    if res is None:
        return
    res.latencies_ms.append(ms)
    res.ages_s.extend(ages)
    if not problem:
        res.received.append(received)
    if problem:
        res.errors += 1
        if len(res.error_samples) < 5:
            res.error_samples.append(problem)
