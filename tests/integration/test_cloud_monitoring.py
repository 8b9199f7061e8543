"""The Cloud Monitoring backend and mode against a local gRPC MetricService, with the REAL client.

The client is ``MetricServiceAsyncClient`` on ``MetricServiceGrpcAsyncIOTransport`` over an
insecure loopback channel; the server (tests/support/cm_server.py) evaluates the filters.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from adapter.backends.cloud_monitoring import CloudMonitoringBackend
from adapter.backends.factory import build_cloud_monitoring_backend
from adapter.domain.errors import BackendError, BackendResponseError, NotFoundError
from adapter.domain.models import GroupResource
from adapter.rules.base import MetricRequest, QueryScope
from adapter.rules.stackdriver import StackdriverOptions, stackdriver_rules
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.fake_backend import FakeBackend
from tests.support.app import client_for
from tests.support.cm_seed import PROJECT, PROM, cm_rules, seed_data
from tests.support.cm_server import CMServer, Series, serve_cm
from tests.support.seed import (
    BACKLOG,
    EXPECTED,
    NAMESPACE,
    POD,
    SLOTS,
    Pods,
    hpa_documents,
    replicas_for,
)


@pytest.fixture
async def cm() -> AsyncIterator[CMServer]:
    async with serve_cm() as server:
        yield server


@pytest.fixture
async def backend(cm: CMServer) -> AsyncIterator[CloudMonitoringBackend]:
    # Reached as a test reaches any Google endpoint: through --google-endpoints.
    settings = Settings.from_options(
        cloud_monitoring_project=PROJECT, google_endpoints=f"cloud-monitoring=http://{cm.address}"
    )
    b = build_cloud_monitoring_backend(settings)
    assert isinstance(b, CloudMonitoringBackend)
    yield b
    await b.aclose()


def family(**kw: Any) -> Any:
    return stackdriver_rules(StackdriverOptions(**kw))


def stackdriver_hpas() -> list[tuple[str, dict[str, Any]]]:
    """The seed HPAs that use Stackdriver-style names (the others use PromQL presets)."""
    out = []
    for filename, hpa in hpa_documents():
        metrics = hpa["spec"]["metrics"]
        if all("|" in (m.get("pods") or m.get("external"))["metric"]["name"] for m in metrics):
            out.append((filename, hpa))
    return out


def test_the_seed_has_stackdriver_hpas() -> None:
    assert len(stackdriver_hpas()) == 2


@pytest.mark.parametrize(("filename", "hpa"), stackdriver_hpas(), ids=lambda v: str(v)[:40])
async def test_seed_stackdriver_hpas_through_cloud_monitoring(
    cm: CMServer, backend: CloudMonitoringBackend, filename: str, hpa: dict[str, Any]
) -> None:
    cm.series = seed_data()
    ctx = build_context(
        Settings.from_options(cluster="c1", standalone=True),
        backend=FakeBackend(),
        rules=cm_rules(location="us-central2-b"),
        objects=Pods(),
        backends={"cloud-monitoring": backend},
    )
    ctx.backend_ready = True
    async with await client_for(ctx) as client:
        replicas, values = await replicas_for(client.get, hpa)
    assert replicas == EXPECTED[filename], values
    for request in cm.list_requests:
        assert 'resource.labels.cluster = "c1"' in request.filter
        assert 'resource.labels.project_id = "proj-1"' in request.filter
        assert 'resource.labels.location = "us-central2-b"' in request.filter
        assert (
            request.interval.end_time.timestamp() - request.interval.start_time.timestamp() == 120
        )


async def test_pods_sum_series_per_pod_and_chunk_pod_lists(
    cm: CMServer, backend: CloudMonitoringBackend
) -> None:
    cm.series = seed_data()
    rule = family(mode="cloud-monitoring", project=PROJECT)[0]
    assert rule.resolve("custom", None, f"{PROM}|x|gauge") is None  # pods only
    metric = rule.resolve(
        "custom", GroupResource("pods"), f"{PROM}|jetstream_slots_used_percentage|gauge"
    )
    assert metric is not None
    pods = (*tuple(f"p-{i:03d}" for i in range(149)), POD)
    built = rule.build_query(
        metric, MetricRequest(namespace=NAMESPACE, object_names=pods), QueryScope(cluster="c1")
    )
    result = await backend.query(built.query, timeout=5)
    assert len(cm.list_requests) == 2  # 150 pods → chunks of 100 and 50
    assert all("metric.labels.pod = one_of(" in r.filter for r in cm.list_requests)
    assert cm.list_requests[0].aggregation.per_series_aligner.name == "ALIGN_NEXT_OLDER"
    [sample] = result.samples
    # The Stackdriver adapter's semantics: the series of one pod (one per idx) are summed.
    assert sample.labels == {"namespace": NAMESPACE, "pod": POD}
    assert sample.value == pytest.approx(sum(SLOTS))
    assert time.time() - sample.timestamp == pytest.approx(20, abs=2)


async def test_external_labels_and_newest_point(
    cm: CMServer, backend: CloudMonitoringBackend
) -> None:
    cm.series = seed_data()
    spec = {
        "aligner": "ALIGN_NEXT_OLDER",
        "alignmentPeriod": 120,
        "combine": "series",
        "filters": [
            f'metric.type = "{PROM}/jetstream_prefill_backlog_size/gauge" AND '
            'resource.labels.cluster = "c1"'
        ],
        "metricType": f"{PROM}/jetstream_prefill_backlog_size/gauge",
        "project": PROJECT,
        "reducer": None,
        "window": 120,
    }
    result = await backend.query(json.dumps(spec), timeout=5)
    [sample] = result.samples
    assert sample.value == BACKLOG
    assert sample.labels["metric.labels.pod"] == POD
    assert sample.labels["resource.type"] == "prometheus_target"
    assert sample.labels["resource.labels.cluster"] == "c1"


async def test_system_metric_kind_from_cached_descriptor(
    cm: CMServer, backend: CloudMonitoringBackend
) -> None:
    now = time.time()
    cm.kinds["kubernetes.io/node/accelerator/memory_used"] = ("GAUGE", "INT64")
    for cluster in ("c1", "c2"):
        cm.series.append(
            Series(
                metric_type="kubernetes.io/node/accelerator/memory_used",
                metric_labels={"accelerator_id": "0", "make": "cloud-tpu"},
                resource_type="k8s_node",
                resource_labels={
                    "project_id": PROJECT,
                    "cluster_name": cluster,
                    "node_name": f"n-{cluster}",
                },
                points=[(now - 30, 7 * 2**30)],
                int_values=True,
            )
        )
    ctx = build_context(
        Settings.from_options(cluster="c1", standalone=True, cache_ttl=0.0),
        backend=FakeBackend(),
        rules=cm_rules(),
        backends={"cloud-monitoring": backend},
    )
    ctx.backend_ready = True
    url = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/kubernetes.io|node|accelerator|memory_used"
    async with await client_for(ctx) as client:
        first = await client.get(url)
        second = await client.get(url)
    assert first.status_code == second.status_code == 200
    [item] = first.json()["items"]
    assert item["metricLabels"]["resource.labels.node_name"] == "n-c1"
    assert item["value"] == str(7 * 2**30)
    assert cm.descriptor_requests == [
        f"projects/{PROJECT}/metricDescriptors/kubernetes.io/node/accelerator/memory_used"
    ]
    assert 'resource.labels.cluster_name = "c1"' in cm.list_requests[0].filter


async def test_counter_uses_align_rate(cm: CMServer, backend: CloudMonitoringBackend) -> None:
    rule = family(mode="cloud-monitoring", project=PROJECT, alignment_period=60)[1]
    metric = rule.resolve("external", None, f"{PROM}|jetstream_request_success_count|counter")
    assert metric is not None
    built = rule.build_query(metric, MetricRequest(namespace="default"), QueryScope(cluster="c1"))
    await backend.query(built.query, timeout=5)
    [request] = cm.list_requests
    assert request.aggregation.per_series_aligner.name == "ALIGN_RATE"
    assert request.aggregation.alignment_period.total_seconds() == 60


async def test_errors_are_mapped(cm: CMServer, backend: CloudMonitoringBackend) -> None:
    spec = {
        "aligner": None,
        "alignmentPeriod": 60,
        "combine": "series",
        "filters": ['metric.type = "kubernetes.io/node/x"'],
        "metricType": "kubernetes.io/node/x",
        "project": PROJECT,
        "reducer": None,
        "window": 120,
    }
    with pytest.raises(NotFoundError):
        await backend.query(json.dumps(spec), timeout=5)
    spec["aligner"] = "ALIGN_NEXT_OLDER"
    cm.fail_with = grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(BackendResponseError, match="PermissionDenied"):
        await backend.query(json.dumps(spec), timeout=5)
    cm.fail_with = grpc.StatusCode.UNAVAILABLE
    started = time.monotonic()
    with pytest.raises(BackendError):
        await backend.query(json.dumps(spec), timeout=1.0)
    assert time.monotonic() - started < 5  # retries stay within the caller's deadline
    assert len(cm.list_requests) > 2  # UNAVAILABLE was retried
