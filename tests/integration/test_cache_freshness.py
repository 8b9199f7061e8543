"""The cache never serves a value older than a direct query would, at the HPA's rhythm, against a
real Prometheus: the phase that cost a whole sync (the sample lands just before the HPA asks, and
the keep-warm prefetch used to read Prometheus just before the sample)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest

from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.rules.loader import load_rules
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.jetstream import SimServer
from sim.prometheus import LocalPrometheus
from tests.support.app import client_for

pytestmark = pytest.mark.integration

INTERVAL = 2.0  # Prometheus' scrape interval and the "HPA's" request period
AFTER_SCRAPE = 0.5  # the request comes this long after the sample's scrape
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"
DIRECT = 'sum(jetstream_prefill_backlog_size{cluster="c1",namespace="team-a"})'


@pytest.fixture(scope="module")
def exporter_and_prometheus() -> Iterator[tuple[SimServer, LocalPrometheus]]:
    server = SimServer(pod="jetstream-0", namespace="team-a", cluster="c1", engines=1).start()
    prom = LocalPrometheus([server.target], scrape_interval=f"{INTERVAL:g}s").start()
    try:
        yield server, prom
    finally:
        prom.stop()
        server.stop()


async def _sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


async def test_a_step_is_served_at_the_first_request_after_its_scrape_and_from_the_cache(
    exporter_and_prometheus: tuple[SimServer, LocalPrometheus],
) -> None:
    server, prom = exporter_and_prometheus
    server.set_backlog(1)
    samples = prom.wait_for("timestamp(jetstream_prefill_backlog_size)", bool, timeout=30)
    phase = samples[0].value  # a scrape time: the next ones are INTERVAL apart
    backend = PrometheusBackend(PrometheusSettings(url=prom.url))
    settings = Settings.from_options(
        cluster="c1", standalone=True, cache_ttl=1.5, cache_keep_warm=60.0
    )
    ctx = build_context(settings, backend=backend, rules=load_rules(None, presets=True))
    ctx.backend_ready = True
    await ctx.registry.refresh()
    ctx.start_task(ctx.provider.cache.run_refresher(), name="cache-refresh")
    hits = ctx.telemetry.cache.labels("hit")
    async with ctx, await client_for(ctx) as client:
        scrape = phase + INTERVAL * (int((time.time() - phase) / INTERVAL) + 2)
        served: list[tuple[int, float, float]] = []
        for step in range(6):
            await _sleep_until(scrape + AFTER_SCRAPE)
            r = await client.get(PATH)
            assert r.status_code == 200, r.text
            value = float(r.json()["items"][0]["value"])
            direct = prom.query(DIRECT)[0].value
            served.append((step, value, direct))
            server.set_backlog(10 + step)  # picked up by the next scrape
            scrape += INTERVAL
        hits_before_steady = hits._value.get()
        for step in range(6, 11):
            await _sleep_until(scrape + AFTER_SCRAPE)
            r = await client.get(PATH)
            value = float(r.json()["items"][0]["value"])
            served.append((step, value, prom.query(DIRECT)[0].value))
            server.set_backlog(10 + step)
            scrape += INTERVAL
        steady_hits = hits._value.get() - hits_before_steady
    await backend.aclose()
    # Every answer from the first one on: the value a direct query gives at that moment, which
    # is the step set before the scrape that just happened (never the one before it).
    wrong = [(s, v, d) for s, v, d in served[1:] if v != d or v != 10 + s - 1]
    assert not wrong, f"served (step, value, direct query) that lag a scrape: {wrong}"
    # Once the rhythm and the sample interval are learned, the prefetch lands after the scrape
    # and the request is a cache hit.
    assert steady_hits >= 4, f"{steady_hits} hits in 5 steady requests: {served}"
