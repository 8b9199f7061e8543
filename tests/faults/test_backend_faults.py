"""Backend faults through the real app: a clear Status within the deadline, never a wrong number,
and recovery by itself when the backend comes back.

The app runs with the real Prometheus backend pointed at
:class:`tests.support.fault_proxy.FaultProxy`, which stands in front of the real Prometheus
scraping the simulated fleet. ``QUERY_TIMEOUT`` is the adapter's per-call deadline; every answer
must arrive within it plus one second.
"""

from __future__ import annotations

import asyncio
import calendar
import math
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.domain.errors import BackendTimeoutError
from adapter.rules.loader import load_rules
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.prometheus import LocalPrometheus
from tests.support import fault_proxy as proxy_module
from tests.support.answers import assert_status, quantity_value
from tests.support.app import client_for
from tests.support.fault_proxy import Fault, FaultProxy, fault_proxy
from tests.support.fleet import Fleet

QUERY_TIMEOUT = 2.0  # seconds: the adapter's deadline for one backend call, retries included
SECRET = "s3cr3t-bearer-token-never-shown"
PODS = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/pods/*/jetstream_prefill_backlog_size"
ONE_POD = (
    "/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/pods/jetstream-0/"
    "jetstream_prefill_backlog_size"
)
EXTERNAL = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"

INJECTED: dict[str, int] = {}
"""Fault name → requests the proxy answered with it, over the session (for docs/security.md)."""


class App:
    """The real app on a Prometheus backend behind ``proxy``; ``get`` measures each answer."""

    def __init__(self, client: httpx.AsyncClient, proxy: FaultProxy) -> None:
        self.client = client
        self.proxy = proxy

    async def get(self, path: str, *, slack: float = 1.0) -> tuple[httpx.Response, float]:
        started = time.monotonic()
        response = await asyncio.wait_for(self.client.get(path), timeout=QUERY_TIMEOUT + 10)
        elapsed = time.monotonic() - started
        assert elapsed <= QUERY_TIMEOUT + slack, f"{path}: answered after {elapsed:.2f}s"
        assert SECRET not in response.text, "the bearer token leaked into an answer"
        return response, elapsed


@pytest.fixture
async def app(prometheus: LocalPrometheus, tmp_path: Path) -> AsyncIterator[App]:
    token = tmp_path / "token"
    token.write_text(SECRET)
    async with fault_proxy(prometheus.url) as proxy:
        backend = PrometheusBackend(
            PrometheusSettings(
                url=proxy.url, bearer_token_file=str(token), timeout=QUERY_TIMEOUT, max_retries=2
            )
        )
        settings = Settings.from_options(
            prometheus_url=proxy.url,
            cluster="c1",
            standalone=True,
            cache_ttl=0.2,
            query_timeout=QUERY_TIMEOUT,
        )
        ctx = build_context(settings, backend=backend, rules=load_rules(None, presets=True))
        ctx.backend_ready = True
        async with await client_for(ctx) as client:
            yield App(client, proxy)
            for kind, n in proxy.injected.items():
                INJECTED[kind] = INJECTED.get(kind, 0) + n
        await backend.aclose()


def expected(fleet: Fleet) -> dict[str, float]:
    return {
        p.name: float(p.values.prefill_backlog)
        for p in fleet.pods_in(cluster="c1", namespace="team-a")
    }


def values_of(response: httpx.Response) -> dict[str, float]:
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    assert body["kind"] == "MetricValueList", body
    out = {}
    for item in body["items"]:
        value = quantity_value(item["value"])
        assert math.isfinite(value)
        out[item["describedObject"]["name"]] = value
    return out


async def test_the_proxy_passes_true_values(app: App, fleet: Fleet) -> None:
    """Baseline: with no fault, the values are exactly the fleet's."""
    response, _ = await app.get(PODS)
    assert values_of(response) == expected(fleet)


# fault → acceptable HTTP codes. 503: unavailable (refused, reset, 5xx/429 after retries);
# 504: the deadline passed; 502: the backend answered garbage.
FAILURES: dict[str, tuple[Fault, set[int]]] = {
    "prometheus down": (Fault("down"), {503}),
    "connection reset": (Fault("reset"), {503}),
    "slow beyond the deadline": (Fault("slow", delay=QUERY_TIMEOUT + 3), {504}),
    "429 with Retry-After": (Fault("status", status=429, retry_after="1"), {503, 504}),
    "429 with a Retry-After past the deadline": (
        Fault("status", status=429, retry_after="3600"),
        {503, 504},
    ),
    "500": (Fault("status", status=500), {503, 504}),
    "502": (Fault("status", status=502), {503, 504}),
    "503": (Fault("status", status=503), {503, 504}),
    "garbage JSON": (Fault("garbage"), {502}),
    "truncated body": (Fault("truncated"), {502, 503}),
    "gigantic result": (Fault("gigantic", samples=150_000), {502}),
}


@pytest.mark.parametrize("name", list(FAILURES))
@pytest.mark.parametrize("path", [PODS, ONE_POD, EXTERNAL], ids=["pods", "one-pod", "external"])
async def test_a_failing_backend_is_a_clear_status_in_time(app: App, name: str, path: str) -> None:
    fault, codes = FAILURES[name]
    if fault.kind == "down":
        await app.proxy.go_down()
    else:
        app.proxy.fault = fault
    response, _ = await app.get(path)
    body = assert_status(response, codes)
    assert "prometheus" in body["message"], body["message"]


async def test_a_large_answer_does_not_stall_other_requests(
    app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 90,000-sample (~6 MB) answer, under the sample cap so that it is decoded and parsed in
    full, whose very last sample is broken: the answer is a 502 within the deadline, and while it
    is decoded (off the event loop) the loop keeps ticking and a small request for another metric
    is answered quickly and correctly."""
    # The last element's value is not a number: only a parser that has read everything finds
    # it, so the whole body is decoded, and the app has no 90,000 values to serialize after.
    body = proxy_module._gigantic(90_000)
    broken = body[: body.rindex(b'"1"]}')] + b'"x"]}]}}'
    # The proxy shares this event loop: hand it the prepared body so that its own encoding is
    # not what stalls the loop.
    monkeypatch.setattr(proxy_module, "_gigantic", lambda samples: broken)
    served = {"calls": 0}

    def pick() -> Fault:
        # The first backend call (the large request's) is gigantic; every later one passes.
        served["calls"] += 1
        return Fault("gigantic") if served["calls"] == 1 else Fault("pass")

    app.proxy.fault = Fault(pick=pick)
    gaps: list[float] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not stop.is_set():
            await asyncio.sleep(0.005)
            now = time.monotonic()
            gaps.append(now - last)
            last = now

    ticking = asyncio.create_task(ticker())
    big = asyncio.create_task(app.get(PODS))
    try:
        for _ in range(400):  # until the proxy has answered the large request (at most 4 s)
            if served["calls"] >= 1:
                break
            await asyncio.sleep(0.01)
        assert served["calls"] >= 1, "the large request never reached the proxy"
        small_started = time.monotonic()
        response, _ = await app.get(
            ONE_POD.replace("prefill_backlog_size", "slots_used_percentage")
        )
        small_elapsed = time.monotonic() - small_started
        big_done_before_small = big.done()
        big_response, _ = await big
    finally:
        stop.set()
        await ticking
        big.cancel()
    assert response.status_code == 200, response.text[:300]
    assert small_elapsed < 1.0, f"a small request waited {small_elapsed:.2f}s behind a large one"
    body_status = assert_status(big_response, {502})
    assert "not a number" in body_status["message"], body_status["message"]
    assert not big_done_before_small, "the large answer was done before the small request"
    worst = max(gaps)
    assert worst < 0.5, f"the event loop stalled for {worst:.2f}s while decoding"


@pytest.mark.parametrize("value", ["NaN", "+Inf", "-Inf"])
async def test_non_finite_values_are_never_served(app: App, value: str) -> None:
    app.proxy.fault = Fault("values", value=value)
    response, _ = await app.get(PODS)
    assert values_of(response) == {}, "a non-finite sample was served"
    response, _ = await app.get(EXTERNAL)
    assert response.status_code == 200 and response.json()["items"] == []
    # One object asked for by name, with no finite value: NotFound, not a made-up number.
    response, _ = await app.get(ONE_POD)
    assert_status(response, {404})


async def test_an_empty_vector_is_an_empty_list_or_not_found(app: App) -> None:
    app.proxy.fault = Fault("empty")
    response, _ = await app.get(PODS)
    assert values_of(response) == {}
    response, _ = await app.get(ONE_POD)
    assert_status(response, {404})


async def test_a_flapping_series_is_all_or_nothing(app: App, fleet: Fleet) -> None:
    """Answers alternate between the full vector and an empty one: each answer is one or the
    other, never a partial or mixed set of values."""
    app.proxy.fault = Fault("flap")
    seen = set()
    for _ in range(8):
        response, _ = await app.get(PODS)
        got = values_of(response)
        assert got in ({}, expected(fleet)), got
        seen.add(bool(got))
        await asyncio.sleep(0.25)  # past the cache TTL: each answer is a fresh backend call
    assert seen == {True, False}, "the proxy did not flap"


@pytest.mark.parametrize("shift", [3600.0, -3600.0], ids=["future", "past"])
async def test_clock_skew_keeps_values_and_reports_the_sample_time(
    app: App, fleet: Fleet, shift: float
) -> None:
    """Samples an hour from the future or past (a skewed backend clock): the value is the
    sample's, and the timestamp served is the sample's own, not the adapter's clock."""
    app.proxy.fault = Fault("shift", shift=shift)
    response, _ = await app.get(PODS)
    assert values_of(response) == expected(fleet)
    now = time.time()
    for item in response.json()["items"]:
        served = calendar.timegm(time.strptime(item["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
        if shift < 0:
            # The sample's own time, not the adapter's clock: the HPA sees how old it is.
            assert abs(served - (now + shift)) < 120, item["timestamp"]
        else:
            # Observed: a sample from the future is served stamped at most at its own time.
            assert now - 120 < served <= now + shift + 120, item["timestamp"]


async def test_samples_older_than_max_sample_age_are_dropped(
    prometheus: LocalPrometheus,
) -> None:
    """With ``max_sample_age`` (GMP mode's default), samples from a clock an hour behind are
    refused rather than served as current."""
    async with fault_proxy(prometheus.url, Fault("shift", shift=-3600.0)) as proxy:
        backend = PrometheusBackend(PrometheusSettings(url=proxy.url, timeout=QUERY_TIMEOUT))
        settings = Settings.from_options(cluster="c1", standalone=True, max_sample_age=300.0)
        ctx = build_context(settings, backend=backend, rules=load_rules(None, presets=True))
        async with await client_for(ctx) as client:
            response = await client.get(PODS)
            assert values_of(response) == {}
            response = await client.get(ONE_POD)
            assert_status(response, {404})
        await backend.aclose()


@pytest.mark.parametrize(
    "fault",
    [
        Fault("down"),
        Fault("slow", delay=QUERY_TIMEOUT + 3),
        Fault("status", status=503),
        Fault("garbage"),
    ],
    ids=["down", "slow", "503", "garbage"],
)
async def test_recovery_by_itself_when_the_backend_comes_back(
    app: App, fleet: Fleet, fault: Fault
) -> None:
    if fault.kind == "down":
        await app.proxy.go_down()
    else:
        app.proxy.fault = fault
    response, _ = await app.get(PODS)
    assert response.status_code >= 500
    await app.proxy.come_back()
    app.proxy.fault = Fault("pass")
    deadline = time.monotonic() + 15
    while True:
        response, _ = await app.get(PODS)
        if response.status_code == 200:
            break
        assert time.monotonic() < deadline, f"no recovery within 15 s: {response.text[:200]}"
        await asyncio.sleep(0.2)
    assert values_of(response) == expected(fleet)


def test_zz_report_injected_faults(capsys: pytest.CaptureFixture[str]) -> None:
    """Print how many requests got each fault (quoted in docs/security.md)."""
    with capsys.disabled():
        print("\nfaults injected (proxy requests by kind):", dict(sorted(INJECTED.items())))
    assert INJECTED, "no fault test ran before the report"


async def test_the_deadline_covers_decoding_a_large_answer() -> None:
    """A large answer that arrives at once but takes longer to decode than the time left: a
    timeout at the deadline, not after the decoding; the worker stops by itself soon after."""
    body = proxy_module._gigantic(90_000)
    backend = PrometheusBackend(
        PrometheusSettings(url="http://prometheus.test", timeout=5.0),
        transport=httpx.MockTransport(lambda request: httpx.Response(200, content=body)),
    )
    try:
        started = time.monotonic()
        with pytest.raises(BackendTimeoutError):
            await backend.query("up", timeout=0.1)
        assert time.monotonic() - started < 0.6
        # The abandoned worker checks the deadline every 1,024 objects and stops: right after,
        # this process burns (almost) no CPU, whereas a worker left decoding would keep a core
        # busy for the best part of a second or more.
        await asyncio.sleep(0.1)
        cpu = time.process_time()
        await asyncio.sleep(0.3)
        assert time.process_time() - cpu < 0.1, "the worker went on decoding after the deadline"
        # With time enough, the same answer decodes in full.
        result = await backend.query("up", timeout=30)
        assert len(result.samples) == 90_000
    finally:
        await backend.aclose()
