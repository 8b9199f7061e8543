"""An HPA scenario on the real control plane: the adapter, Prometheus, simulated JetStream pods.

:func:`open_scenario` starts, on 127.0.0.1 only:

- a real Prometheus (:class:`sim.prometheus.LocalPrometheus`, 1 s scrapes, ``honor_labels``)
  scraping a simulated TPU device plugin (:class:`sim.jetstream.SimTpuExporter`) and one
  :class:`sim.jetstream.SimServer` per pod of the workload;
- the adapter as a subprocess (``python -m adapter serve --kubeconfig … --cluster e2e
  --cache-ttl 1``, self-signed TLS) under the identity of its ServiceAccount
  ``custom-metrics/llm-metrics-adapter`` with exactly the RBAC of ``deploy/base`` (auth-delegator,
  the authentication ConfigMap reader, the resource reader, and the HPA controller's metrics-reader
  binding), registered with the aggregator; all three APIServices Available;
- a Deployment ``maxengine-server`` (label ``app: maxengine-server``, image never pulled: no
  kubelet runs) and a :class:`PodFleet` thread that mirrors its pods: each new pod is patched
  Running and Ready and gets its own SimServer (labels ``pod``/``id`` = the pod name) and TPU chip,
  and Prometheus' targets follow; a pod that disappears loses its exporter and chip.

The test drives load with :meth:`Scenario.set_load` (one :class:`Load` applied to every pod, also
to pods created later), applies HPAs with :meth:`Scenario.apply_hpa` (built from
``deploy/examples`` by :func:`example_hpa`), waits with :meth:`Scenario.wait_replicas`, and reads
the HPA through :meth:`Scenario.hpa`, :meth:`Scenario.hpa_events` and
:meth:`Scenario.diagnostics` (status, conditions, events and log tails, for failure messages).

The HPA arithmetic the tests predict lives in :func:`external_average_replicas` and
:func:`pods_average_replicas`. This module is test support: it does not import pytest.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self, TypeVar

import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sim.jetstream import SimServer, SimTpuExporter, TpuChipValues
from sim.prometheus import LocalPrometheus
from tests.support import REPO
from tests.support.adapter_process import AdapterProcess
from tests.support.controlplane import ControlPlane, mark_pod_ready, untyped
from tests.support.waiting import wait_until

__all__ = [
    "ADAPTER_USER",
    "CLUSTER",
    "DEPLOYMENT",
    "EXAMPLES_DIR",
    "NAMESPACE",
    "TPU_MEMORY_TOTAL",
    "Load",
    "MirrorThread",
    "PodFleet",
    "Scenario",
    "ScenarioError",
    "example_hpa",
    "external_average_replicas",
    "open_scenario",
    "pods_average_replicas",
]

EXAMPLES_DIR = REPO / "deploy" / "examples"
BASE_DIR = REPO / "deploy" / "base"

NAMESPACE = "default"
"""The workload's namespace: the seed's HPAs live in ``default``."""
DEPLOYMENT = "maxengine-server"
"""The seed's JetStream Deployment, the ``scaleTargetRef`` of every example HPA."""
APP_LABELS: Mapping[str, str] = {"app": DEPLOYMENT}
CLUSTER = "e2e"
"""The adapter's ``--cluster`` and every simulated series' ``cluster`` label."""
ADAPTER_USER = "system:serviceaccount:custom-metrics:llm-metrics-adapter"
"""The adapter's identity: its ServiceAccount's user name, carried by a client certificate, so
the ServiceAccount subjects of ``deploy/base``'s bindings apply to it unchanged."""
TPU_MEMORY_TOTAL = 16 * 1024**3
"""Bytes of HBM of one simulated TPU chip (v5e); every pod has one chip."""
ENGINES = 2
"""Decode engines (``idx`` values) per simulated JetStream server."""

# What of deploy/base the scenario applies: the identity and its RBAC. The Deployment, Service
# and APIServices are replaced by the adapter subprocess and ControlPlane.register_adapter. In
# this order, so a namespace exists before what lives in it.
_BASE_KINDS = (
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
)

# Bounds, in seconds.
_APISERVICES_S = 90.0
_FLEET_POLL_S = 0.3
_STEADY_S = 60.0

T = TypeVar("T")


class ScenarioError(AssertionError):
    """The scenario is not in the state a test relies on (its pod mirror failed, a count it should
    hold moved); the message says what it saw. A wait that runs out raises
    :class:`tests.support.waiting.TimedOut`."""


# --------------------------------------------------------------------------- HPA arithmetic


def external_average_replicas(total: float, target: float) -> int:
    """Replicas an External metric with an ``AverageValue`` target asks for: ``ceil(total/target)``.

    ``total`` is the sum of every item the adapter returns (the HPA sums them); independent of
    pod readiness. Min/max and the scale-up rate limit are applied by the caller.
    """
    return math.ceil(total / target)


def pods_average_replicas(values: Sequence[float], target: float) -> int:
    """Replicas a Pods metric with an ``AverageValue`` target asks for when every pod is Ready and
    has a value: ``ceil(mean/target × pods)``, or the current count inside the 0.1 tolerance."""
    mean = sum(values) / len(values)
    ratio = mean / target
    if abs(1.0 - ratio) <= 0.1:
        return len(values)
    return math.ceil(ratio * len(values))


# --------------------------------------------------------------------------- example HPAs


def example_hpa(
    filename: str,
    *,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    targets: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Load ``deploy/examples/<filename>`` as a dict, optionally adjusting it.

    ``targets`` maps a metric name to a new ``averageValue`` quantity (e.g. ``{"x": "400m"}``).
    Raises :class:`KeyError` if a named metric is not in the manifest.
    """
    manifest: dict[str, Any] = yaml.safe_load((EXAMPLES_DIR / filename).read_text())
    spec = manifest["spec"]
    if min_replicas is not None:
        spec["minReplicas"] = min_replicas
    if max_replicas is not None:
        spec["maxReplicas"] = max_replicas
    for name, quantity in (targets or {}).items():
        found = False
        for metric in spec["metrics"]:
            source = metric[metric["type"].lower()]
            if source["metric"]["name"] == name:
                source["target"]["averageValue"] = quantity
                found = True
        if not found:
            raise KeyError(f"{filename} has no metric {name!r}")
    return manifest


# --------------------------------------------------------------------------- load and pods


@dataclass(frozen=True)
class Load:
    """What every simulated pod of the workload reports (also pods created later).

    ``prefill_backlog``: ``jetstream_prefill_backlog_size`` (requests). ``slots``: one 0–1
    fraction per decode engine for ``jetstream_slots_used_percentage``. ``memory_fraction``: the
    pod's TPU chip ``memory_used / memory_total`` (0–1).
    """

    prefill_backlog: int = 0
    slots: tuple[float, ...] = (0.0,) * ENGINES
    memory_fraction: float = 0.0

    def __post_init__(self) -> None:
        if len(self.slots) != ENGINES:
            raise ValueError(f"need {ENGINES} slot fractions, got {len(self.slots)}")
        if not 0.0 <= self.memory_fraction <= 1.0:
            raise ValueError("memory_fraction must be within 0..1")

    @property
    def memory_used(self) -> int:
        """Bytes of HBM in use on the pod's chip."""
        return round(self.memory_fraction * TPU_MEMORY_TOTAL)


class MirrorThread:
    """A background thread that calls :meth:`sync` every ``poll_s`` seconds until stopped, with
    an admin client of ``plane``; an error in it is kept and re-raised by :meth:`check`.

    Subclasses implement :meth:`sync` and :meth:`_release` (drop what they started); ``what``
    names them in errors.
    """

    what = "mirror"

    def __init__(self, plane: ControlPlane, *, poll_s: float) -> None:
        self._plane = plane
        self._poll_s = poll_s
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._api: k8s.ApiClient | None = None
        self._error: BaseException | None = None

    def sync(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Stop what the mirror started (called with the lock held, after the thread ended)."""

    def start(self) -> Self:
        self._api = self._plane.admin_client()
        self.sync()
        name = self.what.replace(" ", "-")
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the thread and what it started; idempotent."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        with self._lock:
            self._release()
        if self._api is not None:
            untyped(self._api).close()
            self._api = None

    def _run(self) -> None:
        while not self._stop.wait(self._poll_s):
            try:
                self.sync()
            except Exception as exc:  # kept for check(): a dead mirror must fail the test
                self._error = exc
                return

    def check(self) -> None:
        """Re-raise an error that stopped the background thread."""
        if self._error is not None:
            raise ScenarioError(f"the {self.what} thread failed: {self._error!r}") from self._error


class PodFleet(MirrorThread):
    """Mirrors the workload's pods as simulated JetStream servers, from a background thread.

    Every ``poll_s`` seconds (and on :meth:`sync`): pods matching ``selector`` in ``namespace``
    that are not Running get their status patched Running and Ready (no kubelet runs, and with
    ``spec.nodeName`` unset nothing else writes pod status); each live pod without a SimServer
    gets one (``pod``/``id`` labels = its name) with the current :class:`Load` plus a TPU chip on
    ``tpu``; pods gone (or being deleted) lose both; Prometheus' targets are rewritten when the
    set changes (``extra_targets`` are always scraped too). Errors in the thread are kept and
    re-raised by :meth:`check`. With ``pod_port``, each pod gets a loopback address of its own
    (127.0.0.20, .21, …) as its ``podIP``, and its SimServer serves there on ``pod_port`` (the
    Deployment's container port), so the pod can be scraped as the cluster describes it.
    """

    def __init__(
        self,
        plane: ControlPlane,
        prometheus: LocalPrometheus,
        tpu: SimTpuExporter,
        *,
        namespace: str = NAMESPACE,
        selector: Mapping[str, str] = APP_LABELS,
        cluster: str = CLUSTER,
        poll_s: float = _FLEET_POLL_S,
        extra_targets: Sequence[str] = (),
        pod_port: int | None = None,
    ) -> None:
        super().__init__(plane, poll_s=poll_s)
        self._extra_targets = list(extra_targets)
        self._pod_port = pod_port
        self._pod_ips: dict[str, str] = {}
        self._next_ip = 20
        self._prometheus = prometheus
        self._tpu = tpu
        self.namespace = namespace
        self.label_selector = ",".join(f"{k}={v}" for k, v in selector.items())
        self.cluster = cluster
        self._servers: dict[str, SimServer] = {}
        self._load = Load()
        self.patched: list[str] = []
        """Names of pods whose status this fleet patched, in order."""

    what = "pod fleet"

    def _release(self) -> None:
        for name in list(self._servers):
            self._drop(name)

    # ----------------------------------------------------------------- load

    @property
    def load(self) -> Load:
        with self._lock:
            return self._load

    def set_load(self, load: Load) -> None:
        """Make every current and future pod report ``load``."""
        with self._lock:
            self._load = load
            for name, server in self._servers.items():
                self._apply(name, server, load)

    def _apply(self, name: str, server: SimServer, load: Load) -> None:
        server.set_backlog(load.prefill_backlog)
        server.set_slots(load.slots)
        self._tpu.set_chip(
            TpuChipValues(
                namespace=self.namespace,
                pod=name,
                accelerator_id="0",
                memory_used=load.memory_used,
                memory_total=TPU_MEMORY_TOTAL,
                duty_cycle=round(100 * load.memory_fraction, 2),
                tensorcore_utilization=round(80 * load.memory_fraction, 2),
            )
        )

    # ----------------------------------------------------------------- mirroring

    @property
    def pods(self) -> list[str]:
        """Names of the pods that currently have a SimServer, sorted."""
        with self._lock:
            return sorted(self._servers)

    def sync(self) -> None:
        """One reconcile pass (the thread calls it every ``poll_s``)."""
        if self._api is None:
            raise ScenarioError("the pod fleet is not started")
        core = untyped(k8s.CoreV1Api(self._api))
        listed = core.list_namespaced_pod(
            self.namespace, label_selector=self.label_selector, _request_timeout=10
        )
        live = {}
        for pod in listed.items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            live[pod.metadata.name] = pod
        for name, pod in live.items():
            phase = pod.status.phase if pod.status else None
            if phase != "Running":
                with contextlib.suppress(ApiException):  # deleted meanwhile: next pass drops it
                    mark_pod_ready(self._api, self.namespace, name, pod_ip=self._pod_ip(name))
                    self.patched.append(name)
        changed = False
        with self._lock:
            for name in set(self._servers) - set(live):
                self._drop(name)
                changed = True
            for name in sorted(set(live) - set(self._servers)):
                server = SimServer(
                    pod=name,
                    namespace=self.namespace,
                    cluster=self.cluster,
                    engines=ENGINES,
                    **self._bind(name),
                )
                server.start()
                self._servers[name] = server
                self._apply(name, server, self._load)
                changed = True
            if changed:
                targets = [self._tpu.target, *self._extra_targets]
                targets += [s.target for s in self._servers.values()]
                self._prometheus.set_targets(targets)

    def _pod_ip(self, name: str) -> str | None:
        """With ``pod_port``: the pod's own loopback address (127.0.0.20 on), its ``podIP``."""
        if self._pod_port is None:
            return None
        if name not in self._pod_ips:
            self._pod_ips[name] = f"127.0.0.{self._next_ip}"
            self._next_ip += 1
        return self._pod_ips[name]

    def _bind(self, name: str) -> dict[str, Any]:
        ip = self._pod_ip(name)
        return {} if ip is None else {"host": ip, "port": self._pod_port}

    def _drop(self, name: str) -> None:
        server = self._servers.pop(name)
        server.stop()
        self._tpu.remove_chip(namespace=self.namespace, pod=name, accelerator_id="0")


# --------------------------------------------------------------------------- the adapter


def start_adapter(
    kubeconfig: Path, prometheus_url: str, *, log: Path, extra_args: Sequence[str] = ()
) -> AdapterProcess:
    """Start ``python -m adapter serve`` on a free loopback port and wait for ``/healthz``."""
    return AdapterProcess.start(
        [
            "--kubeconfig",
            str(kubeconfig),
            "--prometheus-url",
            prometheus_url,
            "--cluster",
            CLUSTER,
            # A 1 s result cache: the HPA syncs every second and the tests change load live.
            "--cache-ttl",
            "1",
            "--auth-cache-ttl",
            "1",
            "--shutdown-timeout",
            "5",
            *extra_args,
        ],
        log=log,
    )


# --------------------------------------------------------------------------- cluster objects


def _exists(read: Callable[[], object]) -> bool:
    """Whether ``read()`` finds its object: ``False`` on a 404, any other error raised."""
    try:
        read()
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise
    return True


def apply_manifest(api: k8s.ApiClient, obj: Mapping[str, Any]) -> None:
    """Server-side apply one manifest of the kinds ``deploy/base``'s RBAC uses (and Deployments,
    HPAs), as field manager ``e2e-scenario``. Raises :class:`ValueError` for other kinds."""
    kind = obj["kind"]
    name = obj["metadata"]["name"]
    namespace = obj["metadata"].get("namespace")
    core = untyped(k8s.CoreV1Api(api))
    rbac = untyped(k8s.RbacAuthorizationV1Api(api))
    methods: dict[str, Callable[..., Any]] = {
        "Namespace": core.patch_namespace,
        "ServiceAccount": core.patch_namespaced_service_account,
        "ClusterRole": rbac.patch_cluster_role,
        "ClusterRoleBinding": rbac.patch_cluster_role_binding,
        "Role": rbac.patch_namespaced_role,
        "RoleBinding": rbac.patch_namespaced_role_binding,
        "Deployment": untyped(k8s.AppsV1Api(api)).patch_namespaced_deployment,
        "HorizontalPodAutoscaler": untyped(
            k8s.AutoscalingV2Api(api)
        ).patch_namespaced_horizontal_pod_autoscaler,
    }
    if kind not in methods:
        raise ValueError(f"apply_manifest does not handle kind {kind!r}")
    args = (name, namespace, dict(obj)) if namespace else (name, dict(obj))
    methods[kind](
        *args,
        field_manager="e2e-scenario",
        force=True,
        _content_type="application/apply-patch+yaml",
    )


def apply_base_rbac(api: k8s.ApiClient) -> list[str]:
    """Apply every Namespace, ServiceAccount, role and binding of ``deploy/base`` unchanged;
    returns ``kind/name`` of each, in the order applied."""
    objects = [
        obj
        for path in sorted(BASE_DIR.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for obj in yaml.safe_load_all(path.read_text())
        if obj and obj.get("kind") in _BASE_KINDS
    ]
    objects.sort(key=lambda obj: _BASE_KINDS.index(obj["kind"]))
    for obj in objects:
        apply_manifest(api, obj)
    return [f"{obj['kind']}/{obj['metadata']['name']}" for obj in objects]


def deployment_manifest(
    replicas: int = 1,
    *,
    name: str = DEPLOYMENT,
    namespace: str = NAMESPACE,
    labels: Mapping[str, str] = APP_LABELS,
    container: str = "jetstream-http",
    port: tuple[int, str] = (9988, "metrics"),
) -> dict[str, Any]:
    """The seed's JetStream Deployment, reduced (or another engine's, by its name, labels, container
    and port): no kubelet runs, so the image is never pulled."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": dict(labels)},
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {
                    "containers": [
                        {
                            "name": container,
                            "image": f"example.invalid/{container}:e2e",
                            "ports": [{"containerPort": port[0], "name": port[1]}],
                        }
                    ]
                },
            },
        },
    }


# --------------------------------------------------------------------------- the scenario


@dataclass
class Scenario:
    """A running scenario; see the module docstring. Build it with :func:`open_scenario`."""

    plane: ControlPlane
    prometheus: LocalPrometheus
    tpu: SimTpuExporter
    adapter: AdapterProcess
    fleet: PodFleet
    api: k8s.ApiClient
    namespace: str = NAMESPACE
    deployment: str = DEPLOYMENT
    _hpas: set[str] = field(default_factory=set)

    # ----------------------------------------------------------------- load

    def set_load(self, load: Load) -> None:
        """Make every pod (current and future) report ``load``."""
        self.fleet.set_load(load)

    def wait_scraped(self, *, timeout_s: float = 30.0) -> None:
        """Wait until Prometheus shows, for exactly the fleet's current pods, the current load's
        backlog, slots and memory (so the adapter's next uncached answer reflects it)."""
        load = self.fleet.load
        scope = f'cluster="{CLUSTER}"'

        def probe() -> bool:
            self.fleet.check()
            pods = set(self.fleet.pods)
            backlog = self.prometheus.query(
                f'jetstream_prefill_backlog_size{{{scope},namespace="{self.namespace}"}}'
            )
            slots = self.prometheus.query(
                f'jetstream_slots_used_percentage{{{scope},namespace="{self.namespace}"}}'
            )
            memory = self.prometheus.query(
                f'memory_used{{{scope},exported_namespace="{self.namespace}"}}'
            )
            by_pod = {s.labels.get("pod"): s.value for s in backlog}
            mem_by_pod = {s.labels.get("exported_pod"): s.value for s in memory}
            slot_values = {(s.labels.get("pod"), s.labels.get("idx")): s.value for s in slots}
            want_slots = {
                (pod, str(i)): value for pod in pods for i, value in enumerate(load.slots)
            }
            return (
                by_pod == dict.fromkeys(pods, float(load.prefill_backlog))
                and mem_by_pod == dict.fromkeys(pods, float(load.memory_used))
                and slot_values == want_slots
            )

        wait_until(
            f"Prometheus to show {load} for pods {self.fleet.pods}",
            probe,
            timeout_s=timeout_s,
            details=self._prometheus_view,
        )

    def _prometheus_view(self) -> str:
        lines = [f"fleet pods: {self.fleet.pods}; load: {self.fleet.load}"]
        for query in ("jetstream_prefill_backlog_size", "memory_used", "up"):
            try:
                samples = self.prometheus.query(query)
            except RuntimeError as exc:
                lines.append(f"{query}: {exc}")
                continue
            lines.append(
                f"{query}: "
                + ", ".join(
                    f"{s.labels.get('pod') or s.labels.get('instance')}"
                    f"/{s.labels.get('exported_pod', '')}={s.value}"
                    for s in samples
                )
            )
        return "\n".join(lines)

    # ----------------------------------------------------------------- the workload

    def replicas(self) -> int:
        """The Deployment's ``spec.replicas``."""
        apps = untyped(k8s.AppsV1Api(self.api))
        dep = apps.read_namespaced_deployment(self.deployment, self.namespace)
        return int(dep.spec.replicas)

    def pod_phases(self) -> dict[str, tuple[str, bool]]:
        """Pod name → (phase, Ready condition) for the workload's live pods."""
        listed = untyped(k8s.CoreV1Api(self.api)).list_namespaced_pod(
            self.namespace, label_selector=self.fleet.label_selector
        )
        result: dict[str, tuple[str, bool]] = {}
        for pod in listed.items:
            if pod.metadata.deletion_timestamp is not None:
                continue
            conditions = (pod.status.conditions if pod.status else None) or []
            ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
            result[pod.metadata.name] = (pod.status.phase if pod.status else "", ready)
        return result

    def scale(self, replicas: int) -> None:
        """Set the Deployment's replicas directly (between tests, with no HPA)."""
        k8s.AppsV1Api(self.api).patch_namespaced_deployment_scale(
            self.deployment, self.namespace, {"spec": {"replicas": replicas}}
        )

    def wait_pods(self, count: int, *, timeout_s: float = _STEADY_S) -> None:
        """Wait until exactly ``count`` pods live, all Running and Ready, each with a SimServer."""

        def probe() -> bool:
            self.fleet.check()
            phases = self.pod_phases()
            return (
                len(phases) == count
                and all(phase == "Running" and ready for phase, ready in phases.values())
                and sorted(phases) == self.fleet.pods
            )

        wait_until(
            f"{count} Running and Ready pods mirrored by SimServers",
            probe,
            timeout_s=timeout_s,
            details=lambda: f"pods: {self.pod_phases()}; mirrored: {self.fleet.pods}",
        )

    def reset(self, *, replicas: int = 1, load: Load | None = None) -> None:
        """Delete every HPA this scenario applied, set ``replicas`` and ``load`` (idle by
        default), and wait until the pods are Ready and Prometheus shows the load."""
        for name in list(self._hpas):
            self.delete_hpa(name)
        self.set_load(load or Load())
        self.scale(replicas)
        self.wait_pods(replicas)
        self.wait_scraped()

    # ----------------------------------------------------------------- HPAs

    def apply_hpa(self, manifest: Mapping[str, Any]) -> str:
        """Create (or update) an HPA from a manifest dict; returns its name."""
        body = copy.deepcopy(dict(manifest))
        body.setdefault("metadata", {})["namespace"] = self.namespace
        apply_manifest(self.api, body)
        name = str(body["metadata"]["name"])
        self._hpas.add(name)
        return name

    def delete_hpa(self, name: str) -> None:
        """Delete an HPA and wait until it is gone (so it scales nothing after this returns)."""
        autoscaling = k8s.AutoscalingV2Api(self.api)
        with contextlib.suppress(ApiException):
            autoscaling.delete_namespaced_horizontal_pod_autoscaler(name, self.namespace)

        def gone() -> bool:
            return not _exists(
                lambda: autoscaling.read_namespaced_horizontal_pod_autoscaler(name, self.namespace)
            )

        wait_until(f"HPA {name} to be deleted", gone, timeout_s=30)
        self._hpas.discard(name)

    def hpa(self, name: str) -> dict[str, Any]:
        """The HPA as a plain dict (camelCase keys, as ``kubectl get -o json`` shows it)."""
        obj = k8s.AutoscalingV2Api(self.api).read_namespaced_horizontal_pod_autoscaler(
            name, self.namespace
        )
        result: dict[str, Any] = untyped(self.api).sanitize_for_serialization(obj)
        return result

    def hpa_conditions(self, name: str) -> dict[str, str]:
        """Condition type → status (``"True"``/``"False"``/``"Unknown"``)."""
        status = self.hpa(name).get("status") or {}
        return {c["type"]: c["status"] for c in status.get("conditions") or []}

    def hpa_events(self, name: str) -> list[dict[str, Any]]:
        """Events about this HPA object (this uid only: a recreated HPA of the same name starts
        clean), oldest first, as dicts with ``type``, ``reason``, ``message``, ``count``."""
        uid = self.hpa(name)["metadata"]["uid"]
        listed = k8s.CoreV1Api(self.api).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.uid={uid}"
        )
        events = [
            {
                "type": e.type,
                "reason": e.reason,
                "message": e.message,
                "count": e.count,
                "first": e.first_timestamp or e.event_time or e.metadata.creation_timestamp,
                "name": e.metadata.name,
            }
            for e in listed.items
        ]
        # Event names end in the hex UnixNano of their creation: a finer order than timestamps.
        return sorted(events, key=lambda e: (str(e["first"]), e["name"]))

    def warnings(self, name: str) -> list[dict[str, Any]]:
        """The HPA's Warning events."""
        return [e for e in self.hpa_events(name) if e["type"] == "Warning"]

    def rescale_sizes(self, name: str) -> list[int]:
        """Sizes from the HPA's ``SuccessfulRescale`` events (``New size: N; reason: …``)."""
        sizes = []
        for event in self.hpa_events(name):
            if event["reason"] == "SuccessfulRescale":
                head = str(event["message"]).split(";")[0]
                sizes.append(int(head.removeprefix("New size:").strip()))
        return sizes

    def wait_replicas(
        self,
        hpa: str,
        expected: int,
        *,
        timeout_s: float = 60.0,
        seen: list[int] | None = None,
    ) -> None:
        """Wait until the HPA has set the Deployment to ``expected`` replicas and the pods are
        up: ``spec.replicas``, the HPA's ``status.desiredReplicas`` and the live Ready pods all
        equal ``expected``. ``seen`` collects every distinct ``spec.replicas`` observed (polled
        every 0.2 s), in order. Raises :class:`~tests.support.waiting.TimedOut` with
        :meth:`diagnostics`."""
        if timeout_s > 60:
            raise ValueError("each wait is bounded to 60 s")
        observed = seen if seen is not None else []

        def probe() -> bool:
            self.fleet.check()
            replicas = self.replicas()
            if not observed or observed[-1] != replicas:
                observed.append(replicas)
            if replicas != expected:
                return False
            desired = (self.hpa(hpa).get("status") or {}).get("desiredReplicas")
            phases = self.pod_phases()
            return (
                desired == expected
                and len(phases) == expected
                and all(p == "Running" and r for p, r in phases.values())
            )

        wait_until(
            f"HPA {hpa} to scale {self.deployment} to {expected}",
            probe,
            timeout_s=timeout_s,
            interval_s=0.2,
            details=lambda: f"spec.replicas seen: {observed}\n{self.diagnostics(hpa)}",
        )

    def hold(self, hpa: str, replicas: int, *, seconds: float) -> None:
        """Assert ``spec.replicas`` stays ``replicas`` for ``seconds`` (several HPA syncs)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            current = self.replicas()
            if current != replicas:
                raise ScenarioError(
                    f"{self.deployment} went from {replicas} to {current} replicas while it "
                    f"should hold\n{self.diagnostics(hpa)}"
                )
            time.sleep(0.25)

    def raw(self, path: str) -> tuple[int, Any]:
        """GET ``path`` through the kube-apiserver as the admin: (status, decoded JSON body)."""
        try:
            response = untyped(self.api).call_api(
                "GET",
                self.plane.api_url + path,
                header_params={"Accept": "application/json"},
                _request_timeout=15,
            )
            raw = response.read()
            status = int(response.status)
        except ApiException as exc:
            raw, status = exc.body, int(exc.status or 0)
        try:
            return status, json.loads(raw)
        except (TypeError, ValueError):
            return status, raw

    def diagnostics(self, hpa: str | None = None) -> str:
        """Everything useful in a failure message: the HPA's spec targets, status, conditions and
        events, the pods, Prometheus' view, and the adapter's and controller-manager's log tails."""
        parts = [f"deployment replicas: {self._safe(self.replicas)}"]
        if hpa is not None:
            obj = self._safe(lambda: self.hpa(hpa))
            if isinstance(obj, dict):
                parts.append("HPA status: " + json.dumps(obj.get("status"), indent=1, default=str))
            else:
                parts.append(f"HPA: {obj}")
            events = self._safe(lambda: self.hpa_events(hpa))
            if isinstance(events, list):
                parts.append(
                    "HPA events:\n"
                    + "\n".join(
                        f"  {e['type']} {e['reason']} x{e['count']}: {e['message']}" for e in events
                    )
                )
        parts.append(f"pods: {self._safe(self.pod_phases)}")
        parts.append(str(self._safe(self._prometheus_view)))
        parts.append("adapter log tail:\n" + self.adapter.tail(3000))
        kcm = self.plane.logs("kube-controller-manager")
        parts.append("kube-controller-manager log tail:\n" + kcm[-3000:])
        return "\n".join(parts)

    @staticmethod
    def _safe(call: Callable[[], T]) -> T | str:
        try:
            return call()
        except Exception as exc:  # diagnostics must never hide the original failure
            return f"<{type(exc).__name__}: {exc}>"


def _delete_workload(api: k8s.ApiClient, namespace: str, hpas: Sequence[str]) -> None:
    autoscaling = k8s.AutoscalingV2Api(api)
    for name in hpas:
        with contextlib.suppress(ApiException):
            autoscaling.delete_namespaced_horizontal_pod_autoscaler(name, namespace)
    with contextlib.suppress(ApiException):
        k8s.AppsV1Api(api).delete_namespaced_deployment(
            DEPLOYMENT, namespace, propagation_policy="Foreground"
        )
    with contextlib.suppress(ApiException):
        k8s.CoreV1Api(api).delete_collection_namespaced_pod(
            namespace, label_selector=",".join(f"{k}={v}" for k, v in APP_LABELS.items())
        )

    # The next user of the namespace may create the Deployment again at once: wait until the
    # foreground deletion has finished, so it does not patch an object on its way out.
    def gone() -> bool:
        apps = untyped(k8s.AppsV1Api(api))
        return not _exists(lambda: apps.read_namespaced_deployment(DEPLOYMENT, namespace))

    wait_until(f"deployment {DEPLOYMENT} to be deleted", gone, timeout_s=30)


@contextlib.contextmanager
def open_scenario(
    plane: ControlPlane, work_dir: Path, *, adapter_args: Sequence[str] = ()
) -> Iterator[Scenario]:
    """Start the whole scenario on ``plane``; stop every process it started on exit (also on
    failure) and delete the Deployment, its pods and the scenario's HPAs.

    ``work_dir`` holds the adapter's log. ``adapter_args`` are appended to the adapter's
    ``serve`` command line (e.g. ``["--config", path]``). On return the APIServices are
    Available, the Deployment has 1 Ready pod with its SimServer, and Prometheus shows its idle
    load.
    """
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(plane.admin_client())
        apply_base_rbac(api)
        tpu = SimTpuExporter(cluster=CLUSTER).start()
        stack.callback(tpu.stop)
        prometheus = LocalPrometheus([tpu.target]).start()
        stack.callback(prometheus.stop)
        kubeconfig = plane.kubeconfig_for(
            ADAPTER_USER, ("system:serviceaccounts", "system:serviceaccounts:custom-metrics")
        )
        adapter = start_adapter(
            kubeconfig, prometheus.url, log=work_dir / "adapter.log", extra_args=adapter_args
        )
        stack.callback(adapter.stop)
        plane.register_adapter(adapter.port, insecure=True)
        plane.wait_apiservices_available(timeout=_APISERVICES_S)

        # Pods are rejected until the serviceaccount controller has made `default`.
        core = k8s.CoreV1Api(api)

        def has_default_sa() -> bool:
            return _exists(lambda: core.read_namespaced_service_account("default", NAMESPACE))

        wait_until("the default ServiceAccount", has_default_sa, timeout_s=30)
        fleet = PodFleet(plane, prometheus, tpu)
        scenario = Scenario(
            plane=plane, prometheus=prometheus, tpu=tpu, adapter=adapter, fleet=fleet, api=api
        )
        stack.callback(lambda: _delete_workload(api, NAMESPACE, sorted(scenario._hpas)))
        apply_manifest(api, deployment_manifest(replicas=1))
        fleet.start()
        stack.callback(fleet.stop)
        scenario.wait_pods(1)
        scenario.wait_scraped()
        yield scenario
