"""Load generators, all bounded in count and time, all loopback.

- :func:`run_wrk`: closed-loop saturation with Debian's ``wrk`` (C, cheap per request, so the
  client does not eat the CPU the adapters need), cycling through a list of paths.
- :func:`burst`: ``k`` identical requests released at the same instant over ``k`` warm
  connections (httpx), to see how many backend queries a thundering herd causes.
- :func:`paced`: the HPA controller's own rhythm: every ``period`` seconds each HPA asks for
  each of its metrics, through ``workers`` concurrent syncs (the controller's default is 5).
- :func:`sequential`: one request at a time, for the cache-miss overhead.

Latencies are in milliseconds.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

__all__ = ["LoadResult", "burst", "paced", "percentile", "run_wrk", "sequential"]

_LUA = Path(__file__).with_name("paths.lua")


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile ``q`` (0–100) of ``values``; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    # Nearest rank: the smallest value with at least q % of the values at or below it.
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered) - 1e-9) - 1))
    return ordered[rank]


@dataclass(slots=True)
class LoadResult:
    """``rps`` in requests/s; latencies in ms; ``errors`` counts non-2xx and transport errors."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "p50_ms": round(self.p50_ms, 3),
            "p99_ms": round(self.p99_ms, 3),
            "errors": self.errors,
            **self.extra,
        }


def _from_latencies(
    latencies: Sequence[float], errors: int, seconds: float, **extra: Any
) -> LoadResult:
    return LoadResult(
        requests=len(latencies),
        seconds=seconds,
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        errors=errors,
        extra=extra,
    )


def run_wrk(
    base_url: str,
    paths: Sequence[str],
    *,
    token: str,
    connections: int,
    seconds: float,
    threads: int = 1,
) -> LoadResult:
    """Saturate ``base_url`` for ``seconds`` with ``connections`` keep-alive connections."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk not found: `apt-get install wrk` (Debian package wrk)")
    with tempfile.NamedTemporaryFile("w", suffix=".paths", delete=False) as handle:
        handle.write("\n".join(paths) + "\n")
        paths_file = handle.name
    try:
        proc = subprocess.run(
            [
                wrk,
                f"-t{threads}",
                f"-c{connections}",
                f"-d{max(1, round(seconds))}s",
                "--timeout=10s",
                "-s",
                str(_LUA),
                base_url,
            ],
            env={**os.environ, "BENCH_PATHS": paths_file, "BENCH_TOKEN": token},
            capture_output=True,
            text=True,
            timeout=seconds + 60,
            check=False,
        )
    finally:
        os.unlink(paths_file)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("BENCHJSON ")), None)
    if proc.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr[-500:]}")
    data = json.loads(line.removeprefix("BENCHJSON "))
    errors = sum(v for k, v in data.items() if k.startswith("errors_"))
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        errors=errors,
        extra={"p90_ms": data["p90_us"] / 1000, "max_ms": data["max_us"] / 1000},
    )


def _client(token: str, connections: int) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
        verify=False,  # noqa: S501 - each adapter's self-signed serving cert, on loopback
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        timeout=httpx.Timeout(15.0),
        trust_env=False,
    )


async def _timed(client: httpx.AsyncClient, url: str) -> tuple[float, bool]:
    started = time.perf_counter()
    try:
        response = await client.get(url)
        ok = response.status_code == 200
    except httpx.HTTPError:
        ok = False
    return (time.perf_counter() - started) * 1000, ok


async def burst(
    base_url: str,
    path: str,
    *,
    token: str,
    k: int,
    settle: float,
    on_release: Callable[[], None] | None = None,
) -> LoadResult:
    """Warm ``k`` connections on ``path``, wait ``settle`` s (past the result cache's TTL, within
    the auth caches'), then release ``k`` identical requests together. ``on_release`` runs just
    before the release (the caller starts counting there)."""
    async with _client(token, k) as client:
        warm = await asyncio.gather(*(_timed(client, base_url + path) for _ in range(k)))
        await asyncio.sleep(settle)
        gate = asyncio.Event()

        async def one() -> tuple[float, bool]:
            await gate.wait()
            return await _timed(client, base_url + path)

        tasks = [asyncio.create_task(one()) for _ in range(k)]
        await asyncio.sleep(0.05)  # every task parked on the gate
        if on_release is not None:
            on_release()
        started = time.perf_counter()
        gate.set()
        results = await asyncio.gather(*tasks)
        seconds = time.perf_counter() - started
    latencies = [ms for ms, _ in results]
    errors = sum(1 for _, ok in results if not ok)
    return _from_latencies(
        latencies, errors, seconds, k=k, warmup_errors=sum(1 for _, ok in warm if not ok)
    )


async def paced(
    base_url: str,
    paths: Sequence[str],
    *,
    token: str,
    period: float,
    rounds: int,
    workers: int = 5,
) -> LoadResult:
    """Every ``period`` s, request each path once through ``workers`` concurrent syncs."""
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    async with _client(token, workers) as client:
        for r in range(rounds):
            round_start = time.perf_counter()
            queue: asyncio.Queue[str] = asyncio.Queue()
            for p in paths:
                queue.put_nowait(p)

            async def worker(queue: asyncio.Queue[str] = queue) -> None:
                nonlocal errors
                while not queue.empty():
                    p = queue.get_nowait()
                    ms, ok = await _timed(client, base_url + p)
                    latencies.append(ms)
                    errors += not ok

            await asyncio.gather(*(worker() for _ in range(workers)))
            if r < rounds - 1:
                await asyncio.sleep(max(0.0, period - (time.perf_counter() - round_start)))
    return _from_latencies(latencies, errors, time.perf_counter() - started, period=period)


async def sequential(
    url: str, *, n: int, headers: dict[str, str] | None = None, params: dict[str, str] | None = None
) -> LoadResult:
    """``n`` requests one after another on one keep-alive connection."""
    latencies: list[float] = []
    errors = 0
    started = time.perf_counter()
    async with httpx.AsyncClient(
        headers=headers or {},
        verify=False,  # noqa: S501 - the adapters' self-signed certs, on loopback
        timeout=httpx.Timeout(15.0),
        trust_env=False,
    ) as client:
        for _ in range(n):
            t0 = time.perf_counter()
            try:
                response = await client.get(url, params=params)
                errors += response.status_code != 200
            except httpx.HTTPError:
                errors += 1
            latencies.append((time.perf_counter() - t0) * 1000)
    return _from_latencies(latencies, errors, time.perf_counter() - started)
