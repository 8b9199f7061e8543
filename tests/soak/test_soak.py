"""Bounded load and soak: ``python -m adapter serve --standalone`` on a free loopback port, in
front of a fault-injecting proxy (20% 503, 5% slow past the deadline) to the real Prometheus.

A load generator plays 200 HPAs × 3 metrics every second (600 requests/s offered, open loop,
at most ``CONCURRENCY`` in flight) for ``LOAD_S`` seconds while a prober in its own process times
``/healthz``. Then: health p99 < 250 ms (target 100 ms, measured ~19 ms: docs/security.md),
resident memory grows < 10% after warm-up, threads stay flat, open file descriptors with no
client connected are the same before and after the load (give or take the backend's keep-alive
pool), every answer is a value list or a Status, and SIGTERM with requests in flight lets each
finish with a valid answer and the process exit 0 within the shutdown timeout.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from sim.prometheus import LocalPrometheus
from tests.support.adapter_process import AdapterProcess
from tests.support.answers import REASONS, quantity_value
from tests.support.fault_proxy import Fault, FaultProxy, fault_proxy, mix
from tests.support.fleet import Fleet

HPAS = 200
METRICS = (
    "jetstream_prefill_backlog_size",
    "jetstream_slots_used_percentage",
    "num_requests_waiting",
)
RATE = HPAS * len(METRICS)  # requests per second offered
LOAD_S = 60.0  # seconds of load
WARMUP_S = 15.0  # seconds before the memory and fd baseline is taken
CONCURRENCY = 64
QUERY_TIMEOUT = 2.0
SHUTDOWN_TIMEOUT = 5.0
IN_FLIGHT = 40  # requests in flight when SIGTERM arrives


def _status_kib(pid: int, field: str) -> int:
    match = re.search(rf"^{field}:\s+(\d+)", Path(f"/proc/{pid}/status").read_text(), re.M)
    assert match is not None, field
    return int(match.group(1))


def _fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _adapter_args(prometheus_url: str) -> list[str]:
    return [
        "--standalone",
        "--prometheus-url",
        prometheus_url,
        "--cluster",
        "c1",
        "--cache-ttl",
        "1",
        "--query-timeout",
        str(QUERY_TIMEOUT),
        "--shutdown-timeout",
        str(SHUTDOWN_TIMEOUT),
        "--log-level",
        "error",
    ]


def _judge(response: httpx.Response, outcomes: Counter[str]) -> None:
    """Each answer is a value list of finite quantities or a consistent Status."""
    body = response.json()
    if response.status_code == 200:
        assert body["kind"] == "MetricValueList", body
        for item in body["items"]:
            quantity_value(item["value"])
            assert item["describedObject"]["namespace"] in {"team-a", "team-b"}
        outcomes["200"] += 1
    else:
        assert body["kind"] == "Status" and body["code"] == response.status_code, body
        assert body["reason"] == REASONS[response.status_code], body
        outcomes[str(response.status_code)] += 1


def _path(i: int) -> str:
    namespace = ("team-a", "team-b")[i % 2]
    metric = METRICS[i % len(METRICS)]
    return f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/{metric}"


@pytest.mark.timeout(240)
async def test_load_soak_and_graceful_shutdown(
    prometheus: LocalPrometheus, fleet: Fleet, tmp_path: Path
) -> None:
    failing = Fault(pick=mix({"pass": 0.75, "status": 0.20, "slow": 0.05}, delay=QUERY_TIMEOUT + 1))
    async with fault_proxy(prometheus.url, failing) as proxy:
        log = tmp_path / "adapter.log"
        with AdapterProcess.running(_adapter_args(proxy.url), log=log, wait=False) as adapter:
            async with _load_client(adapter.url) as client:
                # In a thread: the fault proxy in front of Prometheus runs on this event loop.
                await asyncio.to_thread(adapter.wait_healthy, 30)
                report = await _soak(adapter.url, adapter.process.pid)
                print(f"\nsoak: {report}")  # quoted in docs/security.md
                await _shutdown(client, proxy, adapter.process)


def _load_client(base_url: str) -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    return httpx.AsyncClient(base_url=base_url, limits=limits, timeout=15, trust_env=False)


async def _quiet_fds(pid: int, at_most: int) -> int:
    """Open descriptors once the server has closed the connections of a departed client."""
    deadline = time.monotonic() + 5
    count = _fds(pid)
    while count > at_most and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
        count = _fds(pid)
    return count


async def _soak(base_url: str, pid: int) -> dict[str, object]:
    # The load client is the soak's own and is closed before descriptors are compared: open
    # sockets then no longer depend on how many requests happened to be in flight at the sample.
    quiet_fd_before = _fds(pid)
    async with _load_client(base_url) as client:
        report = await _load(client, base_url, pid)
    # What may stay open besides a leak: the backend pool's keep-alive connections (16 at most,
    # adapter/backends/prometheus.py) and a few descriptors of lazily created state. A leak of
    # one descriptor per 250 requests would exceed it (the soak sends over 5,000).
    bound = quiet_fd_before + 16 + 4
    quiet_fd_after = await _quiet_fds(pid, bound)
    report |= {"fds_quiet_before": quiet_fd_before, "fds_quiet_after": quiet_fd_after}
    assert quiet_fd_after <= bound, report
    return report


async def _probe(base_url: str, seconds: float) -> tuple[list[float], list[str]]:
    """``/healthz`` latencies timed by :mod:`tests.soak.prober` in its own process."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.soak.prober",
        base_url,
        str(seconds),
        stdout=asyncio.subprocess.PIPE,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    try:
        out, _ = await asyncio.wait_for(process.communicate(), timeout=seconds + 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode == 0, f"the prober exited {process.returncode}"
    doc = json.loads(out)
    return [float(v) for v in doc["latencies"]], [str(e) for e in doc["errors"]]


async def _load(client: httpx.AsyncClient, base_url: str, pid: int) -> dict[str, object]:
    outcomes: Counter[str] = Counter()
    rss: list[tuple[float, int]] = []
    fds: list[tuple[float, int]] = []
    threads: list[tuple[float, int]] = []
    slots = asyncio.Semaphore(CONCURRENCY)
    pending: set[asyncio.Task[None]] = set()
    started = time.monotonic()
    stop = started + LOAD_S

    async def one(i: int) -> None:
        try:
            _judge(await client.get(_path(i)), outcomes)
        finally:
            slots.release()

    async def sample() -> None:
        while time.monotonic() < stop:
            now = time.monotonic() - started
            rss.append((now, _status_kib(pid, "VmRSS")))
            fds.append((now, _fds(pid)))
            threads.append((now, _status_kib(pid, "Threads")))
            await asyncio.sleep(1.0)

    prober = asyncio.create_task(_probe(base_url, LOAD_S))
    side = [asyncio.create_task(sample())]
    sent = dropped = 0
    interval = 1.0 / RATE
    next_at = started
    while time.monotonic() < stop:
        # Open loop: the schedule does not wait for answers; a full pipe counts as dropped.
        next_at += interval
        delay = next_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if slots.locked():
            dropped += 1
            continue
        await slots.acquire()
        task = asyncio.create_task(one(sent))
        pending.add(task)
        task.add_done_callback(pending.discard)
        sent += 1
    await asyncio.wait_for(asyncio.gather(*pending), timeout=30)
    await asyncio.wait_for(asyncio.gather(*side), timeout=10)
    health, health_errors = await prober
    elapsed = time.monotonic() - started

    health.sort()
    p99 = health[int(len(health) * 0.99) - 1]
    base_rss = next(v for t, v in rss if t >= WARMUP_S)
    end_rss = max(v for t, v in rss[-5:])
    growth = (end_rss - base_rss) / base_rss
    report: dict[str, object] = {
        "seconds": round(elapsed, 1),
        "requests": sent,
        "answered_per_s": round(sent / elapsed),
        "not_sent_pipe_full": dropped,
        "outcomes": dict(outcomes),
        "health_p50_ms": round(statistics.median(health) * 1000, 1),
        "health_p99_ms": round(p99 * 1000, 1),
        "health_probes": len(health),
        "health_errors": health_errors,
        "rss_kib_after_warmup": base_rss,
        "rss_kib_end": end_rss,
        "rss_growth_pct": round(growth * 100, 2),
        "fds_max_under_load": max(v for _, v in fds),
        "threads": sorted({v for _, v in threads}),
    }
    assert not health_errors and len(health) >= 100, report
    assert sum(outcomes.values()) == sent, report
    assert outcomes["200"] > sent * 0.5, report
    # Target 100 ms; measured ~19 ms from the prober's own process (docs/security.md). Speed
    # belongs to the benchmark: the bound here only catches a loop that stalls under load.
    assert p99 < 0.25, report
    assert growth < 0.10, report
    # Under load, open descriptors follow the connections in flight at the instant of sampling;
    # they are reported here and compared for leaks once the load client is gone (_soak).
    assert max(v for _, v in threads) - min(v for t, v in threads if t >= WARMUP_S) <= 2, report
    return report


async def _shutdown(
    client: httpx.AsyncClient, proxy: FaultProxy, process: subprocess.Popen[bytes]
) -> None:
    """SIGTERM with ``IN_FLIGHT`` requests held at the backend: all finish with a valid answer."""
    proxy.fault = Fault("slow", delay=QUERY_TIMEOUT - 0.5)
    before = proxy.requests
    # Distinct selectors: each request is its own backend call (no cache, no single-flight).
    paths = [_path(i) + f"?metricLabelSelector=soak%3Dx{i}" for i in range(IN_FLIGHT)]
    tasks = [asyncio.create_task(client.get(p)) for p in paths]
    # SIGTERM only once the adapter has read every request and is waiting on the backend.
    deadline = time.monotonic() + 5
    while proxy.requests - before < IN_FLIGHT:
        assert time.monotonic() < deadline, f"only {proxy.requests - before} reached the backend"
        await asyncio.sleep(0.02)
    sent_at = time.monotonic()
    process.send_signal(signal.SIGTERM)
    outcomes: Counter[str] = Counter()
    for response in await asyncio.wait_for(asyncio.gather(*tasks), timeout=SHUTDOWN_TIMEOUT + 5):
        _judge(response, outcomes)
    code = await asyncio.to_thread(process.wait, SHUTDOWN_TIMEOUT + 5)
    took = time.monotonic() - sent_at
    print(f"\nshutdown: {IN_FLIGHT} in flight → {dict(outcomes)}, exit {code} after {took:.2f}s")
    # uvicorn re-raises the SIGTERM it caught once the graceful shutdown is done (as the e2e
    # test_sigterm_stops_the_adapter_cleanly notes): -15 is that clean exit, as is 0.
    assert code in {0, -signal.SIGTERM}, code
    assert took <= SHUTDOWN_TIMEOUT + 1
    assert outcomes["200"] == IN_FLIGHT, outcomes
