"""Scrape targets in Kubernetes mode: pods selected by PodMonitorings (or annotated), on their
own IPs, at the ports and paths the cluster's objects name; and a query scrapes only the pods it
covers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from adapter.domain.errors import ConfigError
from adapter.domain.pods import monitoring_from, pod_from
from adapter.scrape.source import PodScraper
from adapter.scrape.targets import ScrapeTarget, pod_targets


def pod(
    name: str,
    *,
    namespace: str = "serving",
    ip: str = "10.1.0.5",
    phase: str = "Running",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    ports: list[dict[str, Any]] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels if labels is not None else {"app": "maxengine-server"},
        "annotations": annotations or {},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-05T10:00:00Z"
    container = {
        "name": "jetstream-http",
        "ports": ports or [{"name": "metrics", "containerPort": 9100}],
    }
    return {
        "metadata": meta,
        "spec": {"containers": [container]},
        "status": {"phase": phase, "podIP": ip},
    }


def monitoring(
    name: str = "jetstream",
    *,
    namespace: str | None = "serving",
    selector: dict[str, Any] | None = None,
    endpoints: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {
        "metadata": meta,
        "spec": {
            "selector": selector
            if selector is not None
            else {"matchLabels": {"app": "maxengine-server"}},
            "endpoints": endpoints
            if endpoints is not None
            else [{"port": "metrics", "interval": "15s"}],
        },
    }


def targets(pods: list[dict[str, Any]], monitorings: list[dict[str, Any]]) -> list[ScrapeTarget]:
    parsed = [monitoring_from(m, namespaced="namespace" in m["metadata"]) for m in monitorings]
    return list(pod_targets([pod_from(p) for p in pods], parsed))


def test_a_pod_monitoring_selects_its_namespaces_pods_at_the_named_port() -> None:
    found = targets(
        [pod("js-0"), pod("js-1", ip="10.1.0.6"), pod("other", labels={"app": "x"})],
        [monitoring()],
    )
    assert [(t.pod, t.url) for t in found] == [
        ("js-0", "http://10.1.0.5:9100/metrics"),
        ("js-1", "http://10.1.0.6:9100/metrics"),
    ]
    assert found[0].labels == {
        "instance": "js-0:9100",
        "job": "jetstream",
        "container": "jetstream-http",
    }


def test_a_pod_monitoring_never_reaches_into_another_namespace() -> None:
    assert targets([pod("js-0", namespace="team-b")], [monitoring(namespace="serving")]) == []


def test_a_cluster_pod_monitoring_selects_in_every_namespace_with_its_path_and_scheme() -> None:
    found = targets(
        [pod("tpu-0", namespace="kube-system", labels={"k8s-app": "tpu-device-plugin"}, ports=[])],
        [
            monitoring(
                "tpu-metrics-exporter",
                namespace=None,
                selector={
                    "matchExpressions": [
                        {"key": "k8s-app", "operator": "In", "values": ["tpu-device-plugin"]}
                    ]
                },
                endpoints=[{"port": 2112, "path": "/tpu", "scheme": "https"}],
            )
        ],
    )
    assert [(t.namespace, t.url, t.labels.get("container")) for t in found] == [
        ("kube-system", "https://10.1.0.5:2112/tpu", None)
    ]


def test_pods_that_cannot_be_scraped_are_not_targets() -> None:
    pods = [
        pod("pending", phase="Pending"),
        pod("done", phase="Succeeded"),
        pod("no-ip", ip=""),
        pod("bad-ip", ip="not-an-ip"),
        pod("leaving", deleting=True),
    ]
    assert targets(pods, [monitoring()]) == []
    # A port name the pod does not declare: nothing to scrape.
    assert targets([pod("js-0")], [monitoring(endpoints=[{"port": "http"}])]) == []


def test_annotations_are_used_when_no_monitoring_selects_the_pod() -> None:
    notes = {
        "prometheus.io/scrape": "true",
        "prometheus.io/port": "8000",
        "prometheus.io/path": "/m",
    }
    [target] = targets([pod("vllm-0", annotations=notes)], [])
    assert target.url == "http://10.1.0.5:8000/m"
    [only_port] = targets([pod("vllm-1", annotations={"prometheus.io/scrape": "true"})], [])
    assert only_port.url == "http://10.1.0.5:9100/metrics"
    assert targets([pod("vllm-2", annotations={"prometheus.io/scrape": "false"})], []) == []
    # An annotated path that could smuggle a query or another host is refused.
    bad = {"prometheus.io/scrape": "true", "prometheus.io/path": "/m?x=1"}
    assert targets([pod("vllm-3", annotations=bad)], []) == []
    bad = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100@evil"}
    assert targets([pod("vllm-4", annotations=bad)], []) == []


def test_an_ipv6_pod_gets_a_bracketed_host() -> None:
    [target] = targets([pod("js-0", ip="fd00::5")], [monitoring()])
    assert target.url == "http://[fd00::5]:9100/metrics"


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"selector": {"matchExpressions": [{"key": "a", "operator": "Gt"}]}}, "operator"),
        ({"selector": [], "endpoints": []}, "label selector"),
        ({"selector": {}, "endpoints": [{"port": True}]}, "port"),
        ({"selector": {}, "endpoints": [{"port": "m", "path": "//evil.example/x?y"}]}, "path"),
        ({"selector": {}, "endpoints": [{"port": "m", "scheme": "file"}]}, "scheme"),
    ],
)
def test_a_monitoring_the_adapter_cannot_use_is_named_in_the_error(
    spec: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError, match=words) as caught:
        monitoring_from(
            {"metadata": {"name": "m", "namespace": "ns"}, "spec": spec}, namespaced=True
        )
    assert "PodMonitoring ns/m" in caught.value.message


async def test_a_query_scrapes_only_the_pods_it_covers() -> None:
    asked: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(str(request.url.host))
        return httpx.Response(200, text="jetstream_prefill_backlog_size 3\n")

    fleet = [
        ScrapeTarget("team-a", "js-0", "http://10.0.0.1:9100/metrics"),
        ScrapeTarget("team-a", "js-1", "http://10.0.0.2:9100/metrics"),
        ScrapeTarget("team-b", "js-0", "http://10.0.0.3:9100/metrics"),
    ]
    scraper = PodScraper(lambda: fleet, cluster="c1", transport=httpx.MockTransport(handler))
    try:
        one = 'sum(jetstream_prefill_backlog_size{cluster="c1",namespace="team-a",pod=~"js-1"})'
        result = await scraper.answer(one)
        assert result is not None and [s.value for s in result.samples] == [3.0]
        assert asked == ["10.0.0.2"]
        asked.clear()
        await scraper.answer('sum(jetstream_prefill_backlog_size{cluster="c1",namespace="team-a"})')
        assert sorted(asked) == ["10.0.0.1"]  # js-1 was scraped within the minimum interval
        asked.clear()
        await scraper.answer('sum(jetstream_prefill_backlog_size{cluster="c2"})')
        assert asked == []  # another cluster's query covers none of these pods
    finally:
        await scraper.aclose()


def test_an_unready_running_pod_is_read_as_managed_prometheus_reads_it() -> None:
    # The HPA drops unready pods' samples for CPU only; for Pods and External metrics it uses
    # every pod's value, and GMP scrapes every running pod. A pod still loading its model is
    # read too (its empty queue is its real value); a pending or terminating one is not.
    unready = pod("jetstream-0")
    unready["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    found = targets(
        [unready, pod("jetstream-1", phase="Pending"), pod("jetstream-2", deleting=True)],
        [monitoring()],
    )
    assert [t.pod for t in found] == ["jetstream-0"]


class _View:
    """A cluster view (the object cache's side the scrape path reads) that counts its reads."""

    def __init__(self, pods: list[dict[str, Any]]) -> None:
        self.pods = [pod_from(p) for p in pods]
        self.generation: int | None = None
        self.reads = 0

    def watch_monitorings(self) -> None:
        pass

    def scrape_view(self) -> tuple[list[Any], list[Any]]:
        self.reads += 1
        return list(self.pods), []

    def scrape_generation(self) -> int | None:
        return self.generation

    async def names(self, *args: object) -> tuple[str, ...] | None:  # the ObjectSource side
        return None


def test_cluster_targets_are_computed_again_only_when_the_pods_or_monitorings_change() -> None:
    from adapter.app.context import _scrape_targets
    from adapter.settings import Settings

    annotated = {"prometheus.io/scrape": "true", "prometheus.io/port": "9100"}
    view = _View([pod("a", annotations=annotated)])
    targets = _scrape_targets(Settings(), view)  # type: ignore[arg-type]
    assert callable(targets)

    # Before the pods' first list (no generation) every call reads the view.
    assert [t.pod for t in targets()] == ["a"]
    assert [t.pod for t in targets()] == ["a"]
    assert view.reads == 2

    view.generation = 1
    first = targets()
    assert targets() is first and view.reads == 3  # unchanged: the same targets, no new read

    view.pods.append(pod_from(pod("b", ip="10.1.0.6", annotations=annotated)))
    assert [t.pod for t in targets()] == ["a"]  # the generation says nothing changed yet
    view.generation = 2
    assert [t.pod for t in targets()] == ["a", "b"] and view.reads == 4
