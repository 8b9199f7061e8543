"""The cluster and the data both adapters of the differential tier read.

:func:`open_world` creates, on a started control plane, the namespace :data:`NS` with a
Deployment ``web`` (``app=web``), its Service, and pods ``web-1``, ``web-2`` (``app=web``) and
``db-1`` (``app=db``) marked Running, ``done-1`` (``app=web``) Succeeded, and a second Service
``idle`` and ``hot`` (their gauge is NaN and +Inf); for the requests on other resources, Jobs
(suspended), Leases, Nodes and — the CRD of prometheus-adapter's documented
``brand: {group: cheese.io, resource: brand}`` override — Brands, each in pool ``a`` or ``b``
(:data:`OTHERS`); and starts a real Prometheus scraping, every second:

- one :class:`sim.jetstream.SimServer` per pod (``jetstream_*`` gauges, cluster :data:`CLUSTER`);
- a :class:`sim.jetstream.SimTpuExporter` with one chip of the workload in ``default`` (the
  GKE guide's ``memory_used`` / ``memory_total`` rule reads ``exported_namespace="default"``);
- an exporter of cAdvisor-style and application series (:class:`_Series`): counters that grow
  at a constant rate, so ``rate()`` is the same whenever each adapter asks; per resource of
  :data:`OTHERS`, a counter for each object and for one that does not exist (``…-ghost``).

Nothing here imports pytest; the test module owns the assertions.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from sim.jetstream import SimServer, SimTpuExporter, TpuChipValues
from sim.prometheus import LocalPrometheus
from tests.support.cheese import brands_crd
from tests.support.controlplane import ControlPlane, mark_pod_ready, untyped
from tests.support.crds import install_crds

__all__ = [
    "CLUSTER",
    "INF_SERVICE",
    "NAN_SERVICE",
    "NS",
    "OTHERS",
    "PODS",
    "SUCCEEDED",
    "World",
    "open_world",
]

NS = "differential"
CLUSTER = "diff"
PODS = {"web-1": "web", "web-2": "web", "db-1": "db", "done-1": "web"}
"""Pod name → its ``app`` label. ``done-1`` has Succeeded; its series are still scraped."""
SUCCEEDED = "done-1"
NAN_SERVICE = "idle"
"""The Service whose ``inference_queue_size`` is NaN."""
INF_SERVICE = "hot"
"""The Service whose ``inference_queue_size`` is +Inf."""
OTHERS: dict[str, tuple[str, str, dict[str, str]]] = {
    "job": ("jobs.batch", "train_steps_total", {"train-a": "a", "train-b": "b"}),
    "lease": (
        "leases.coordination.k8s.io",
        "lease_renewals_total",
        {"leader-a": "a", "leader-b": "b"},
    ),
    "node": ("nodes", "node_work_total", {"differential-a1": "a", "differential-b1": "b"}),
    "brand": ("brands.cheese.io", "cheddar_sold_total", {"gouda": "a", "brie": "b"}),
}
"""Per series label: the resource it names, the counter carrying it, and its objects (name →
``pool`` label). Every counter also has a series for ``<label>-ghost``, an object that does not
exist; a node counter carries the namespace label too (both adapters' template rules need one)."""
_BACKLOG = {"web-1": 3, "web-2": 5, "db-1": 8, "done-1": 13}
_SLOTS = {"web-1": (0.25, 0.5), "web-2": (0.3, 0.45), "db-1": (0.9, 0.1), "done-1": (0, 0)}
# Per pod: (cpu seconds/s, fs writes/s, working-set bytes, http requests/s, duration s/s).
_POD_SERIES = {
    "web-1": (0.25, 2.0, 104_857_600, 1.5, 0.125),
    "web-2": (0.5, 4.0, 52_428_800, 0.45, 0.0625),
    "db-1": (0.125, 1.0, 209_715_200, 3.0, 0.5),
}


class _Series(Collector):
    """Series for the rules files' own metrics; counters are ``rate × seconds since start``."""

    def __init__(self) -> None:
        self._t0 = time.time()

    def collect(self) -> Iterable[Metric]:
        elapsed = time.time() - self._t0
        pod_labels = ["namespace", "pod", "container"]
        cpu = CounterMetricFamily("container_cpu_usage_seconds", "", labels=pod_labels)
        writes = CounterMetricFamily("container_fs_writes", "", labels=pod_labels)
        memory = GaugeMetricFamily("container_memory_working_set_bytes", "", labels=pod_labels)
        http = CounterMetricFamily(
            "http_requests",
            "",
            labels=["namespace", "pod", "kubernetes_namespace", "kubernetes_pod_name"],
        )
        duration = CounterMetricFamily("request_duration_seconds", "", labels=["namespace", "pod"])
        for pod, (c, w, m, h, d) in _POD_SERIES.items():
            cpu.add_metric([NS, pod, "app"], c * elapsed)
            # The pause container: every rule with container!="POD" leaves it out.
            cpu.add_metric([NS, pod, "POD"], 9 * elapsed)
            writes.add_metric([NS, pod, "app"], w * elapsed)
            memory.add_metric([NS, pod, "app"], m)
            http.add_metric([NS, pod, NS, pod], h * elapsed)
            duration.add_metric([NS, pod], d * elapsed)
        queue = GaugeMetricFamily(
            "queue_depth", "", labels=["namespace", "deployment", "name", "topic"]
        )
        queue.add_metric([NS, "web", "orders", "orders"], 12)
        lag = GaugeMetricFamily("queue_consumer_lag", "", labels=["namespace", "name"])
        lag.add_metric([NS, "orders"], 30)
        lag.add_metric([NS, "invoices"], 4)
        # Names a regex would confuse: "orders.v2" as a pattern also matches "ordersXv2".
        lag.add_metric([NS, "orders.v2"], 2)
        lag.add_metric([NS, "ordersXv2"], 5)
        inference = GaugeMetricFamily("inference_queue_size", "", labels=["namespace", "service"])
        inference.add_metric([NS, "web"], 7)
        # A gauge that is not a number: prometheus-adapter serves NaN as a number.
        inference.add_metric([NS, NAN_SERVICE], float("nan"))
        inference.add_metric([NS, INF_SERVICE], float("inf"))
        # prometheus-adapter's sample config: `cheddar{sharp="true"}` served as cheesy_goodness.
        # A resource outside the adapter's shipped ClusterRole (DaemonSets).
        buffer = GaugeMetricFamily("fluentd_buffer_bytes", "", labels=["namespace", "daemonset"])
        buffer.add_metric([NS, "fluentd"], 4096)
        cheddar = GaugeMetricFamily("cheddar", "", labels=["namespace", "brand", "sharp"])
        cheddar.add_metric([NS, "gouda", "true"], 1)
        cheddar.add_metric([NS, "brie", "false"], 1)
        yield from (cpu, writes, memory, http, duration, queue, lag, inference, buffer, cheddar)
        for i, (label, (_, counter, objects)) in enumerate(sorted(OTHERS.items())):
            family = CounterMetricFamily(
                counter.removesuffix("_total"), "", labels=[label, "namespace"]
            )
            for j, name in enumerate([*objects, f"{label}-ghost"]):
                family.add_metric([name, NS], (i + 1) * (j + 1) * 0.25 * elapsed)
            yield family


@dataclass
class World:
    """What :func:`open_world` started: ``prometheus`` is the one both adapters query."""

    plane: ControlPlane
    prometheus: LocalPrometheus


def _create_objects(api: k8s.ApiClient) -> None:
    core = untyped(k8s.CoreV1Api(api))
    apps = untyped(k8s.AppsV1Api(api))
    core.create_namespace({"metadata": {"name": NS}})
    container = {"name": "app", "image": "example.invalid/none"}
    apps.create_namespaced_deployment(
        NS,
        {
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {
                "replicas": 0,  # no controller-made pods: the test creates its own
                "selector": {"matchLabels": {"app": "web"}},
                "template": {
                    "metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [container]},
                },
            },
        },
    )
    for service in ("web", NAN_SERVICE, INF_SERVICE):
        core.create_namespaced_service(
            NS,
            {
                "metadata": {"name": service, "labels": {"app": service}},
                "spec": {"selector": {"app": service}, "ports": [{"port": 80}]},
            },
        )
    for pod, app in PODS.items():
        core.create_namespaced_pod(
            NS,
            {
                "metadata": {"name": pod, "labels": {"app": app}},
                "spec": {"containers": [container]},
            },
        )
        if pod == SUCCEEDED:
            status = {"phase": "Succeeded", "conditions": [{"type": "Ready", "status": "False"}]}
            core.patch_namespaced_pod_status(pod, NS, {"status": status})
        else:
            mark_pod_ready(api, NS, pod)


def _create_others(api: k8s.ApiClient) -> None:
    """The objects of :data:`OTHERS` (the Brand CRD first)."""
    install_crds(api, brands_crd())
    core = untyped(k8s.CoreV1Api(api))
    batch = untyped(k8s.BatchV1Api(api))
    leases = untyped(k8s.CoordinationV1Api(api))
    custom = untyped(k8s.CustomObjectsApi(api))
    pod = {"containers": [{"name": "c", "image": "example.invalid/none"}], "restartPolicy": "Never"}
    for label, (_, _, objects) in OTHERS.items():
        for name, pool in objects.items():
            meta = {"name": name, "labels": {"pool": pool}}
            if label == "job":
                spec = {"suspend": True, "template": {"spec": pod}}  # suspended: no pods
                batch.create_namespaced_job(NS, {"metadata": meta, "spec": spec})
            elif label == "lease":
                leases.create_namespaced_lease(NS, {"metadata": meta, "spec": {}})
            elif label == "node":
                core.create_node({"metadata": meta})
            else:
                body = {"apiVersion": "cheese.io/v1", "kind": "Brand", "metadata": meta}
                custom.create_namespaced_custom_object("cheese.io", "v1", NS, "brands", body)


def _delete_objects(api: k8s.ApiClient) -> None:
    core = untyped(k8s.CoreV1Api(api))
    deletions = [(core.delete_node, name) for name in OTHERS["node"][2]] + [
        (
            untyped(k8s.ApiextensionsV1Api(api)).delete_custom_resource_definition,
            "brands.cheese.io",
        ),
        (core.delete_namespace, NS),
    ]
    for delete, name in deletions:
        with contextlib.suppress(ApiException):
            delete(name)


@contextlib.contextmanager
def open_world(plane: ControlPlane) -> Iterator[World]:
    """The objects and the scraped series above; everything removed on exit."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Series())
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    servers = [SimServer(pod=pod, namespace=NS, cluster=CLUSTER) for pod in PODS]
    tpu = SimTpuExporter(cluster=CLUSTER)
    with contextlib.ExitStack() as stack:
        stack.callback(thread.join, 5)
        stack.callback(server.server_close)
        stack.callback(server.shutdown)
        for sim in [*servers, tpu]:
            sim.start()
            stack.callback(sim.stop)
        for sim in servers:
            sim.set_backlog(_BACKLOG[sim.pod])
            sim.set_slots(_SLOTS[sim.pod])
        tpu.set_chip(
            TpuChipValues(
                namespace="default",
                pod="web-1",
                accelerator_id="0",
                memory_used=6 * 2**30,
                memory_total=16 * 2**30,
                duty_cycle=40.0,
                tensorcore_utilization=30.0,
            )
        )
        api = stack.enter_context(plane.admin_client())
        stack.callback(_delete_objects, api)
        _create_objects(api)
        _create_others(api)
        targets = [f"127.0.0.1:{server.server_port}", tpu.target, *(s.target for s in servers)]
        prometheus = stack.enter_context(LocalPrometheus(targets))
        # Three scrapes of every target: rate() over them answers for every counter.
        prometheus.wait_for(
            "count(rate(http_requests_total[1m]))",
            lambda s: [x.value for x in s] == [3.0],
            timeout=60,
        )
        prometheus.wait_for(
            "count(jetstream_prefill_backlog_size) + count(memory_used)",
            lambda s: [x.value for x in s] == [len(PODS) + 1.0],
            timeout=60,
        )
        yield World(plane=plane, prometheus=prometheus)
