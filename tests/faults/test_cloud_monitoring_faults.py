"""Cloud Monitoring faults through the real app: a clear Status within the deadline, never a wrong
number, and recovery by itself when the API answers again.

The app serves Stackdriver-style names in ``cloud-monitoring`` mode with the real
``MetricServiceAsyncClient`` over gRPC. Between it and the local MetricService
(``tests/support/cm_server.py``) sits a TCP forwarder on a fixed loopback port that can go down
(connections refused, live ones cut) and come back. The server itself can fail calls with a
gRPC status, hang past the deadline, or answer with broken points.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import grpc
import httpx
import pytest
from google.cloud import monitoring_v3
from google.cloud.monitoring_v3.services.metric_service.transports import (
    MetricServiceGrpcAsyncIOTransport,
)

from adapter.backends.cloud_monitoring import CloudMonitoringBackend
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.fake_backend import FakeBackend
from tests.support import cm_server
from tests.support.answers import assert_status, values_of
from tests.support.app import client_for
from tests.support.cm_seed import PROJECT, cm_rules, seed_data
from tests.support.forwarder import Forwarder
from tests.support.seed import BACKLOG, NAMESPACE, POD

QUERY_TIMEOUT = 2.0  # seconds: the adapter's deadline for one backend call, retries included
NAME = "prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge"
PODS = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/{NAME}"
ONE_POD = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/{POD}/{NAME}"
EXTERNAL = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{NAME}"
LISTS = ("MetricValueList", "ExternalMetricValueList")
_MAX_HANG = 10.0  # seconds: no injected hang outlives a test by more than this


@dataclass
class FaultyCM(cm_server.CMServer):
    """The local MetricService with faults: ``hang`` seconds before answering; ``points``
    rewrites every point's value (``"nan"``, ``"inf"``, ``"missing"``, ``"string"``,
    ``"bool"``) or drops every point (``"none"``)."""

    hang: float = 0.0
    points: str | None = None

    async def list_time_series(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        if self.hang:
            await asyncio.sleep(min(self.hang, _MAX_HANG))
        answer = await super().list_time_series(request, context)
        if self.points is not None:
            for series in answer.time_series:
                if self.points == "none":
                    del series.points[:]
                for point in series.points:
                    if self.points == "nan":
                        point.value.double_value = math.nan
                    elif self.points == "inf":
                        point.value.double_value = math.inf
                    elif self.points == "missing":
                        point.value.Clear()
                    elif self.points == "string":
                        point.value.string_value = "12"
                    elif self.points == "bool":
                        point.value.bool_value = True
        return answer


@dataclass
class App:
    client: httpx.AsyncClient
    cm: FaultyCM
    forwarder: Forwarder

    async def get(self, path: str) -> httpx.Response:
        started = time.monotonic()
        response = await asyncio.wait_for(self.client.get(path), timeout=QUERY_TIMEOUT + 10)
        elapsed = time.monotonic() - started
        assert elapsed <= QUERY_TIMEOUT + 1, f"{path}: answered after {elapsed:.2f}s"
        return response


@pytest.fixture
async def app(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[App]:
    # serve_cm builds its state from the module's CMServer: hand it the faulty one.
    monkeypatch.setattr(cm_server, "CMServer", FaultyCM)
    async with cm_server.serve_cm() as cm:
        assert isinstance(cm, FaultyCM)
        cm.series = seed_data()
        forwarder = Forwarder(int(cm.address.rsplit(":", 1)[1]))
        await forwarder.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{forwarder.port}")
        client = monitoring_v3.MetricServiceAsyncClient(
            transport=MetricServiceGrpcAsyncIOTransport(channel=channel)
        )
        backend = CloudMonitoringBackend(client, project=PROJECT)
        ctx = build_context(
            Settings.from_options(
                cluster="c1", standalone=True, cache_ttl=0.2, query_timeout=QUERY_TIMEOUT
            ),
            backend=FakeBackend(),
            rules=cm_rules(location="us-central2-b"),
            backends={"cloud-monitoring": backend},
        )
        ctx.backend_ready = True
        try:
            async with await client_for(ctx) as http:
                yield App(http, cm, forwarder)
        finally:
            cm.hang = 0.0
            await backend.aclose()
            await forwarder.go_down()


async def test_baseline_values_through_the_forwarder(app: App) -> None:
    assert values_of(await app.get(PODS), kinds=LISTS) == [BACKLOG]
    assert values_of(await app.get(ONE_POD), kinds=LISTS) == [BACKLOG]
    assert values_of(await app.get(EXTERNAL), kinds=LISTS) == [BACKLOG]


PATHS = pytest.mark.parametrize(
    "path", [PODS, ONE_POD, EXTERNAL], ids=["pods", "one-pod", "external"]
)

# gRPC status → acceptable HTTP codes. 503: unavailable or over quota (after retries that the
# deadline allows); 504: the deadline passed while retrying; 502: the API refused or failed the
# call in a way a retry would not fix.
STATUSES: dict[grpc.StatusCode, set[int]] = {
    grpc.StatusCode.UNAVAILABLE: {503, 504},
    grpc.StatusCode.RESOURCE_EXHAUSTED: {503, 504},
    grpc.StatusCode.DEADLINE_EXCEEDED: {504},
    grpc.StatusCode.PERMISSION_DENIED: {502},
    grpc.StatusCode.UNAUTHENTICATED: {502},
    grpc.StatusCode.INTERNAL: {503},
}


@PATHS
@pytest.mark.parametrize("code", list(STATUSES), ids=lambda c: c.name)
async def test_an_api_error_is_a_clear_status_in_time(
    app: App, path: str, code: grpc.StatusCode
) -> None:
    app.cm.fail_with = code
    body = assert_status(await app.get(path), STATUSES[code])
    assert "cloud-monitoring" in body["message"] or "Cloud Monitoring" in body["message"], body
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED):
        assert len(app.cm.list_requests) > 1, "an overload status was not retried"


@PATHS
async def test_a_server_hanging_past_the_deadline_is_a_timeout(app: App, path: str) -> None:
    app.cm.hang = QUERY_TIMEOUT + 3
    started = time.monotonic()
    assert_status(await app.get(path), {504})
    assert time.monotonic() - started >= QUERY_TIMEOUT - 0.2, "answered before the deadline"


@PATHS
async def test_the_api_unreachable_is_unavailable(app: App, path: str) -> None:
    await app.forwarder.go_down()
    assert_status(await app.get(path), {503, 504})


@pytest.mark.parametrize("points", ["nan", "inf"])
async def test_non_finite_points_are_never_served(app: App, points: str) -> None:
    app.cm.points = points
    assert values_of(await app.get(PODS), kinds=LISTS) == []
    assert values_of(await app.get(EXTERNAL), kinds=LISTS) == []
    assert_status(await app.get(ONE_POD), {404})


@pytest.mark.parametrize("points", ["missing", "string", "bool"])
async def test_points_without_a_number_are_a_bad_answer(app: App, points: str) -> None:
    app.cm.points = points
    for path in (PODS, ONE_POD, EXTERNAL):
        body = assert_status(await app.get(path), {502})
        assert "DOUBLE or INT64" in body["message"], body


async def test_series_without_points_are_no_value(app: App) -> None:
    app.cm.points = "none"
    assert values_of(await app.get(PODS), kinds=LISTS) == []
    assert values_of(await app.get(EXTERNAL), kinds=LISTS) == []
    assert_status(await app.get(ONE_POD), {404})


@pytest.mark.parametrize("fault", ["down", "unavailable", "hang", "garbage"])
async def test_recovery_by_itself_when_the_api_is_back(app: App, fault: str) -> None:
    if fault == "down":
        await app.forwarder.go_down()
    elif fault == "unavailable":
        app.cm.fail_with = grpc.StatusCode.UNAVAILABLE
    elif fault == "hang":
        app.cm.hang = QUERY_TIMEOUT + 3
    else:
        app.cm.points = "missing"
    assert (await app.get(PODS)).status_code >= 500
    await app.forwarder.come_back()
    app.cm.fail_with = None
    app.cm.hang = 0.0
    app.cm.points = None
    deadline = time.monotonic() + 15
    while True:
        response = await app.get(PODS)
        if response.status_code == 200:
            break
        assert time.monotonic() < deadline, f"no recovery within 15 s: {response.text[:200]}"
        await asyncio.sleep(0.2)
    assert values_of(response, kinds=LISTS) == [BACKLOG]
