"""PrometheusBackend against a real Prometheus scraping the simulated fleet."""

from __future__ import annotations

import math
import time

import pytest

from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.domain.errors import BackendResponseError, BackendTimeoutError, BackendUnavailableError
from adapter.domain.models import Sample
from sim.prometheus import LocalPrometheus
from tests.support.fleet import Fleet
from tests.support.servers import refused_url, slow_server

BACKLOG = "jetstream_prefill_backlog_size"
SLOTS = "jetstream_slots_used_percentage"


def by_pod(samples: tuple[Sample, ...]) -> dict[tuple[str, str, str], float]:
    out: dict[tuple[str, str, str], float] = {}
    for s in samples:
        key = (s.labels["cluster"], s.labels["namespace"], s.labels["pod"])
        assert key not in out, f"duplicate series for {key}"
        out[key] = s.value
    return out


async def test_per_pod_values_equal_the_fleet(
    prometheus_backend: PrometheusBackend, fleet: Fleet
) -> None:
    result = await prometheus_backend.query(BACKLOG, timeout=5)
    assert by_pod(result.samples) == {p.key: float(p.values.prefill_backlog) for p in fleet.pods}
    for sample in result.samples:
        assert sample.labels["__name__"] == BACKLOG
        assert sample.labels["id"] == sample.labels["pod"]
        assert sample.timestamp == pytest.approx(time.time(), abs=30)
    assert result.backend == "local-prometheus"
    assert result.duration > 0


async def test_scoped_aggregations_do_not_mix_clusters_or_namespaces(
    prometheus_backend: PrometheusBackend, fleet: Fleet
) -> None:
    for pod in fleet.pods:
        query = (
            f'avg(jetstream_slots_used_percentage{{cluster="{pod.cluster}",'
            f'namespace="{pod.namespace}",pod="{pod.name}"}})'
        )
        samples = (await prometheus_backend.query(query, timeout=5)).samples
        assert [s.value for s in samples] == [pytest.approx(pod.mean_slots, rel=1e-12)]

    result = await prometheus_backend.query(f"sum by (cluster, namespace) ({BACKLOG})", timeout=5)
    got = {(s.labels["cluster"], s.labels["namespace"]): s.value for s in result.samples}
    expected: dict[tuple[str, str], float] = {}
    for pod in fleet.pods:
        key = (pod.cluster, pod.namespace)
        expected[key] = expected.get(key, 0.0) + pod.values.prefill_backlog
    assert got == expected


async def test_counter_and_tpu_ratio(prometheus_backend: PrometheusBackend, fleet: Fleet) -> None:
    counters = await prometheus_backend.query("jetstream_request_success_count_total", timeout=5)
    assert by_pod(counters.samples) == {p.key: p.successes for p in fleet.pods}

    query = (
        'avg by (exported_namespace) (memory_used{cluster="c1",make="cloud-tpu"}) / '
        'avg by (exported_namespace) (memory_total{cluster="c1",make="cloud-tpu"})'
    )
    samples = (await prometheus_backend.query(query, timeout=5)).samples
    got = {s.labels["exported_namespace"]: s.value for s in samples}
    expected: dict[str, float] = {}
    for ns in {c.namespace for c in fleet.chips_in(cluster="c1")}:
        chips = fleet.chips_in(cluster="c1", namespace=ns)
        used = sum(c.memory_used for c in chips) / len(chips)
        total = sum(c.memory_total for c in chips) / len(chips)
        expected[ns] = used / total
    assert got == pytest.approx(expected, rel=1e-12)


async def test_nan_and_inf_are_returned_as_floats(prometheus_backend: PrometheusBackend) -> None:
    scalar = (await prometheus_backend.query("0/0", timeout=5)).samples
    assert len(scalar) == 1
    assert scalar[0].labels == {}
    assert math.isnan(scalar[0].value)
    vector = (await prometheus_backend.query(f"{BACKLOG} * 0 / 0", timeout=5)).samples
    assert vector
    assert all(math.isnan(s.value) for s in vector)
    assert all("__name__" not in s.labels for s in vector)
    inf = (await prometheus_backend.query("-1/0", timeout=5)).samples
    assert [s.value for s in inf] == [-math.inf]


async def test_post_answers_like_get(prometheus: LocalPrometheus, fleet: Fleet) -> None:
    backend = PrometheusBackend(PrometheusSettings(url=prometheus.url, method="POST"))
    try:
        result = await backend.query(f'{BACKLOG}{{namespace="team-b"}}', timeout=5)
    finally:
        await backend.aclose()
    assert by_pod(result.samples) == {
        p.key: float(p.values.prefill_backlog) for p in fleet.pods_in(namespace="team-b")
    }


async def test_metric_and_label_names(prometheus_backend: PrometheusBackend) -> None:
    names = await prometheus_backend.metric_names(['{namespace="team-a"}'], timeout=5)
    assert {BACKLOG, SLOTS, "num_requests_waiting", "kv_cache_utilization_perc"} <= set(names)
    assert "jetstream_request_success_count_total" in names
    assert "memory_used" not in names  # TPU series live in kube-system
    tpu = await prometheus_backend.metric_names(['{namespace="kube-system"}'], timeout=5)
    assert {"memory_used", "memory_total", "duty_cycle", "tensorcore_utilization"} <= set(tpu)
    labels = await prometheus_backend.label_names([SLOTS], timeout=5)
    assert {"__name__", "cluster", "namespace", "pod", "id", "idx", "instance", "job"} <= set(
        labels
    )
    assert "exported_pod" not in labels
    everything = await prometheus_backend.metric_names([], timeout=5)
    assert set(names) | set(tpu) <= set(everything)


async def test_bad_query_is_response_error_with_prometheus_text(
    prometheus_backend: PrometheusBackend,
) -> None:
    with pytest.raises(BackendResponseError, match="bad_data") as info:
        await prometheus_backend.query("sum(", timeout=5)
    assert "/api/v1/query" in str(info.value)


async def test_range_vector_answer_is_refused(prometheus_backend: PrometheusBackend) -> None:
    with pytest.raises(BackendResponseError, match="matrix"):
        await prometheus_backend.query(f"{BACKLOG}[1m]", timeout=5)


async def test_ping(prometheus_backend: PrometheusBackend) -> None:
    await prometheus_backend.ping(timeout=5)


async def test_connection_refused_is_unavailable_quickly() -> None:
    backend = PrometheusBackend(PrometheusSettings(url=refused_url()))
    started = time.monotonic()
    try:
        with pytest.raises(BackendUnavailableError, match="cannot connect"):
            await backend.query("vector(1)", timeout=5)
    finally:
        await backend.aclose()
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("timeout", [0.3, 1.0])
async def test_slow_server_times_out_within_the_deadline(timeout: float) -> None:
    async with slow_server(delay=10) as url:
        backend = PrometheusBackend(PrometheusSettings(url=url, max_retries=5))
        started = time.monotonic()
        try:
            with pytest.raises(BackendTimeoutError):
                await backend.query("vector(1)", timeout=timeout)
        finally:
            await backend.aclose()
        elapsed = time.monotonic() - started
    assert timeout - 0.05 <= elapsed < timeout + 0.5


async def test_slow_server_within_the_deadline_answers() -> None:
    async with slow_server(delay=0.2) as url:
        backend = PrometheusBackend(PrometheusSettings(url=url))
        try:
            result = await backend.query("vector(1)", timeout=3)
        finally:
            await backend.aclose()
    assert result.samples == ()
    assert result.duration >= 0.2
