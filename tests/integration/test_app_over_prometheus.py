"""The whole app over a real Prometheus: presets, the seed's prometheus-adapter rules,
selectors, namespace/cluster isolation and value freshness. Expected values are computed from
the fleet's known data (tests/support/fleet.py), never written down."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from adapter.core.quantity import format_quantity
from sim.prometheus import LocalPrometheus
from tests.support.app import ClusterClient, cluster_clients
from tests.support.fleet import CLUSTERS, NAMESPACES, Fleet

E = "/apis/external.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"

# The seed's values.yaml rules block, unchanged (CLUSTER_NAME filled for cluster c1).
SEED_RULES = """
rules:
  default: false
  external:
  - seriesQuery: 'jetstream_prefill_backlog_size'
    resources:
      template: <<.Resource>>
    name:
      matches: ""
      as: "jetstream_prefill_backlog_size"
    metricsQuery: avg(<<.Series>>{<<.LabelMatchers>>,cluster="c1"})
  - seriesQuery: 'jetstream_slots_used_percentage'
    resources:
      template: <<.Resource>>
    name:
      matches: ""
      as: "jetstream_slots_used_percentage"
    metricsQuery: avg(<<.Series>>{<<.LabelMatchers>>,cluster="c1"})
  - seriesQuery: 'memory_used'
    resources:
      template: <<.Resource>>
    name:
      matches: ""
      as: "memory_used_percentage"
    metricsQuery: avg(memory_used{cluster="c1",exported_namespace="team-a",container="jetstream-http"}) / avg(memory_total{cluster="c1",exported_namespace="team-a",container="jetstream-http"})
"""

Client = Callable[..., Any]


@pytest.fixture
async def app_client(prometheus: LocalPrometheus) -> AsyncIterator[ClusterClient]:
    async with cluster_clients(prometheus.url) as make:
        yield make


def values(body: dict[str, Any]) -> list[str]:
    return [item["value"] for item in body["items"]]


@pytest.mark.parametrize("cluster", CLUSTERS)
@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_external_presets_are_the_workload_totals(
    app_client: Client, fleet: Fleet, cluster: str, namespace: str
) -> None:
    client = await app_client(cluster=cluster)
    pods = fleet.pods_in(cluster=cluster, namespace=namespace)
    chips = fleet.chips_in(cluster=cluster, namespace=namespace)
    expected = {
        "jetstream_prefill_backlog_size": sum(p.values.prefill_backlog for p in pods),
        "jetstream_slots_used_percentage": sum(p.mean_slots for p in pods),
        "num_requests_waiting": sum(p.values.requests_waiting for p in pods),
        "jetstream_generate_backlog_size": sum(sum(p.values.generate_backlog) for p in pods),
        "memory_used_percentage": sum(c.memory_used / c.memory_total for c in chips),
    }
    for metric, total in expected.items():
        r = await client.get(f"{E}/namespaces/{namespace}/{metric}")
        assert r.status_code == 200, r.text
        assert values(r.json()) == [format_quantity(total)], metric


@pytest.mark.parametrize("namespace", NAMESPACES)
async def test_pods_presets_one_value_per_pod(
    app_client: Client, fleet: Fleet, namespace: str
) -> None:
    client = await app_client(cluster="c1")
    pods = fleet.pods_in(cluster="c1", namespace=namespace)
    r = await client.get(f"{C2}/namespaces/{namespace}/pods/*/jetstream_slots_used_percentage")
    got = {i["describedObject"]["name"]: i["value"] for i in r.json()["items"]}
    assert got == {p.name: format_quantity(p.mean_slots) for p in pods}
    r = await client.get(
        f"{C2}/namespaces/{namespace}/pods/jetstream-0/jetstream_prefill_backlog_size"
    )
    assert values(r.json()) == [format_quantity(pods[0].values.prefill_backlog)]


async def test_metric_selectors_narrow_the_series(app_client: Client, fleet: Fleet) -> None:
    client = await app_client(cluster="c1")
    pod = fleet.pods_in(cluster="c1", namespace="team-a")[1]
    r = await client.get(
        f"{C2}/namespaces/team-a/pods/{pod.name}/jetstream_slots_used_percentage",
        params={"metricLabelSelector": "idx=1"},
    )
    assert values(r.json()) == [format_quantity(pod.values.slots[1])]
    r = await client.get(
        f"{E}/namespaces/team-a/jetstream_prefill_backlog_size",
        params={"labelSelector": f"pod in ({pod.name})"},
    )
    assert values(r.json()) == [format_quantity(pod.values.prefill_backlog)]
    r = await client.get(
        f"{E}/namespaces/team-a/jetstream_prefill_backlog_size",
        params={"labelSelector": "pod notin (jetstream-0,jetstream-1)"},
    )
    assert r.json()["items"] == []


async def test_the_seed_rules_answer_what_prometheus_adapter_answers(
    app_client: Client, fleet: Fleet
) -> None:
    client = await app_client(cluster="c1", rules=SEED_RULES)
    pods = fleet.pods_in(cluster="c1", namespace="team-a")
    chips = fleet.chips_in(cluster="c1", namespace="team-a")
    # prometheus-adapter semantics: avg over the namespace's series (the seed's own rules)
    backlog = sum(p.values.prefill_backlog for p in pods) / len(pods)
    slots = sum(s for p in pods for s in p.values.slots) / sum(len(p.values.slots) for p in pods)
    memory = (sum(c.memory_used for c in chips) / len(chips)) / (
        sum(c.memory_total for c in chips) / len(chips)
    )
    for metric, want in (
        ("jetstream_prefill_backlog_size", backlog),
        ("jetstream_slots_used_percentage", slots),
        ("memory_used_percentage", memory),
    ):
        r = await client.get(f"{E}/namespaces/team-a/{metric}")
        assert r.status_code == 200, r.text
        assert values(r.json()) == [format_quantity(want)], metric
    # The seed's TPU rule pins exported_namespace="team-a": another namespace must not read it.
    r = await client.get(f"{E}/namespaces/team-b/memory_used_percentage")
    assert r.status_code == 403
    assert r.json()["reason"] == "Forbidden"
    assert "scoped elsewhere" in r.json()["message"]


async def test_namespaces_and_clusters_never_mix(app_client: Client, fleet: Fleet) -> None:
    for cluster in CLUSTERS:
        client = await app_client(cluster=cluster)
        for namespace in NAMESPACES:
            r = await client.get(
                f"{C2}/namespaces/{namespace}/pods/*/jetstream_prefill_backlog_size"
            )
            got = {i["describedObject"]["name"]: i["value"] for i in r.json()["items"]}
            want = {
                p.name: format_quantity(p.values.prefill_backlog)
                for p in fleet.pods_in(cluster=cluster, namespace=namespace)
            }
            assert got == want, (cluster, namespace)


async def test_values_carry_the_scrape_time_not_the_query_time(
    app_client: Client, prometheus: LocalPrometheus
) -> None:
    client = await app_client(cluster="c1")
    path = f"{E}/namespaces/team-a/jetstream_prefill_backlog_size"
    debug = (await client.get("/debug/query", params={"path": path})).json()
    sample = debug["backend"]["samples"][0]
    newest = prometheus.query(
        'max(timestamp(jetstream_prefill_backlog_size{cluster="c1",namespace="team-a"}))'
    )[0].value
    # the value's time is a scrape time (Prometheus timestamps have millisecond precision)
    assert abs(sample["timestamp"] - newest) <= 1.5
    assert sample["timestamp"] <= time.time()
    assert "__lma_part" not in sample["labels"]
    assert debug["query"] in debug["backendQuery"]
