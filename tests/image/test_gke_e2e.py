"""Installed as docs/deploy.md says, on "GKE": the image that ``make image`` builds, run as two
replicas with the args, env and mounts of the guide's own kustomize overlay (rendered with the
real kustomize), against Google's endpoints played by local stand-ins, behind the real
aggregator, read by the real HPA controller.

What is real: the image and its settings (read-only root, UID 65532, no capabilities, the
rendered ``--cluster`` and ``--gmp-project``); kube-apiserver, its aggregator and the
kube-controller-manager's HPA controller with its default 15 s sync and no forced downscale
stabilization; the RBAC, the Namespace and the three APIServices of the render, applied as
rendered; the adapter's identity (its ServiceAccount token, mounted as the kubelet mounts it);
Debian's Prometheus scraping the simulated JetStream pods every 15 s; the adapter's default cache
and auth-cache settings.

What stands in for Google (``--google-endpoints``, given as ``LMA_GOOGLE_ENDPOINTS``):

- GMP: an HTTPS proxy in front of that Prometheus that only answers requests carrying a live
  token of the stand-in token service (:class:`tests.support.gmp.GmpProxy`); its CA is mounted
  and named by ``LMA_PROMETHEUS_CA_FILE``;
- the metadata server (:class:`tests.support.metadata.MetadataServer`): Workload Identity's
  tokens, minted by that token service, for the adapter's Application Default Credentials;
- Cloud Monitoring (:mod:`tests.support.cm_server`), which the shipped args use for the
  Stackdriver-style name of the guide's Pods HPA, fed with the same per-pod values.

And for what a node would do: each replica has its own network namespace (:mod:`tests.image.podnet`)
with the API server and the stand-ins bridged in; the Service is an endpoint proxy that sends
each connection to a replica whose ``/readyz`` answers, as kube-proxy sends it to ready
endpoints (the aggregator here has no cluster network, so the Service is an ExternalName to that
proxy and the APIServices' port is the proxy's: the one change to the rendered objects).

Each pod reports a different value; decoy series with the same names exist in another namespace
and another cluster (both in Prometheus and in Cloud Monitoring). Checked: the adapter
authenticates to "GMP" with Google-minted tokens only; the HPA of the guide's External example
scales the Deployment from 1 to 2 on the GMP path and reads exactly this namespace's and
cluster's total; the guide's Pods example reads each pod's own value through Cloud Monitoring;
the seed's Pods metric under its plain PromQL name (:func:`gmp_pods_hpa`) is answered pod by pod
through the aggregator and scales the Deployment from 2 to 3 on the GMP path. While that HPA could
move either way (3 of 4 replicas, no scale-down window, values holding it at 3), a replica
stopped with SIGTERM and then the other killed with SIGKILL, each restarted, never make it act on
an error, and it scales down to 2 on the values given after them. FailedGet events are counted
per phase and reported per install; there are none outside the SIGKILL window.

Missing podman, buildah, kustomize, the control plane binaries or Prometheus: the test FAILS
naming the fix (``make image``, ``make tools``, ``make control-plane``, ``make prometheus``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import shlex
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from kubernetes import client as k8s

from sim.jetstream import SimServer, SimTpuExporter
from sim.prometheus import LocalPrometheus
from tests.e2e.scenario import Load, PodFleet, apply_manifest, deployment_manifest, example_hpa
from tests.image import pods
from tests.image.pods import (
    BuiltImage,
    Cluster,
    PodRun,
    arg_value,
    container_of,
    deployment_of,
    get,
    pod_network,
    pod_run,
    quantity,
    unverified,
    wait_ready,
)
from tests.support import REPO
from tests.support.cm_seed import gauge, target
from tests.support.cm_server import CMServer, serve_cm
from tests.support.controlplane import ControlPlane
from tests.support.forwarder import pump
from tests.support.gmp import GmpProxy, TokenServer
from tests.support.guide import heredoc, shell_blocks
from tests.support.manifests import GKE_GUIDE_VALUES, Obj, helm_template, kustomize_build
from tests.support.metadata import MetadataServer
from tests.support.plane import running
from tests.support.waiting import wait_until

pytestmark = pytest.mark.image

T = TypeVar("T")

NAMESPACE = "default"
"""The workload's namespace: the guide's HPAs live there."""
DECOY_NAMESPACE = "decoy"
DECOY_CLUSTER = "other-cluster"
DECOY_VALUE = 1000
LOCATION = "us-central2-b"
POD_VALUES = (12, 5, 7, 9, 3)
"""Prefill backlog of the 1st, 2nd, … pod the Deployment gets: each pod a different value."""
HPA_SYNC_S = 15
"""The controller's default --horizontal-pod-autoscaler-sync-period."""
SCRAPE = "15s"
GMP_IN_POD = 8443
METADATA_IN_POD = 8988
CM_IN_POD = 8990
STAND_INS_DIR = "/var/run/stand-ins"
FAILED_GET = ("FailedGetExternalMetric", "FailedGetPodsMetric", "FailedComputeMetricsReplicas")
_WAIT_S = 120.0  # two HPA syncs, a scrape and a cache lifetime, with room on 2 shared cores
_STOP_BOUND_S = 5.0

API_PATHS = {
    **pods.PATHS,
    "Service": "/api/v1/namespaces/{namespace}/services/{name}",
    "APIService": "/apis/apiregistration.k8s.io/v1/apiservices/{name}",
    "HorizontalPodAutoscaler": (
        "/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
    ),
}


# --------------------------------------------------------------------------- the guide's render


def render_guide_overlay(work: Path) -> list[Obj]:
    """``kustomize build`` of the overlay docs/deploy.md writes (``my-adapter/`` next to the
    repository's ``deploy/``), its REGISTRY placeholder filled with the local image store."""
    text = heredoc("kustomization.yaml")
    assert "REGISTRY/llm-metrics-adapter" in text, "the guide's overlay names no image to fill in"
    overlay = work / "my-adapter"
    overlay.mkdir(parents=True)
    (work / "deploy").symlink_to(REPO / "deploy")
    (overlay / "kustomization.yaml").write_text(
        text.replace("REGISTRY/llm-metrics-adapter", "localhost/llm-metrics-adapter")
    )
    return kustomize_build(overlay)


def render_guide_chart(cluster_name: str) -> list[Obj]:
    """``helm template`` with the ``--set`` and ``--set-string`` values of the guide's ``helm
    install`` (REGISTRY filled with the local image store) and the GKE guide's prometheus-adapter
    values file, its ``CLUSTER_NAME`` filled in as that guide tells its reader to."""
    (command,) = [b for b in shell_blocks() if b.lstrip().startswith("helm install")]
    words = shlex.split(command.replace("\\\n", " "))
    sets = [words[i + 1] for i, w in enumerate(words) if w == "--set"]
    strings = [words[i + 1] for i, w in enumerate(words) if w == "--set-string"]
    sets = [
        v.replace("REGISTRY/llm-metrics-adapter", "localhost/llm-metrics-adapter") for v in sets
    ]
    assert f"cluster={cluster_name}" in sets, (
        f"the guide's helm install names another cluster: {sets}"
    )
    values = yaml.safe_load(GKE_GUIDE_VALUES.read_text().replace("CLUSTER_NAME", cluster_name))
    rendered = helm_template(values, set_values=sets, set_strings=strings)
    assert isinstance(rendered, list)
    # What helm install's --create-namespace makes before the chart's objects.
    assert "--create-namespace" in words and "namespace.create=false" in sets, words
    namespace = deployment_of(rendered)["metadata"]["namespace"]
    created = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
    return [created, *rendered]


# --------------------------------------------------------------------------- a loop for stand-ins


class LoopThread:
    """An asyncio loop in a daemon thread, for the stand-ins that are asyncio servers."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    @contextlib.contextmanager
    def entered(self, manager: contextlib.AbstractAsyncContextManager[T]) -> Iterator[T]:
        value = self.run(manager.__aenter__())
        try:
            yield value
        finally:
            self.run(manager.__aexit__(None, None, None))

    def close(self) -> None:
        async def cancel_the_rest() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            self.run(cancel_the_rest(), timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()


class EndpointProxy:
    """The Service: each new connection goes to a ready endpoint (round robin); none ready, the
    connection is closed at once, as a Service without ready endpoints refuses it."""

    def __init__(self) -> None:
        self.port = 0
        self._ready: dict[str, int] = {}
        self._lock = threading.Lock()
        self._turn = 0
        self.routed: dict[str, int] = {}
        self._server: asyncio.Server | None = None

    def set_ready(self, name: str, port: int | None) -> None:
        with self._lock:
            if port is None:
                self._ready.pop(name, None)
            else:
                self._ready[name] = port

    def ready(self) -> list[str]:
        with self._lock:
            return sorted(self._ready)

    def _pick(self) -> tuple[str, int] | None:
        with self._lock:
            if not self._ready:
                return None
            names = sorted(self._ready)
            self._turn += 1
            name = names[self._turn % len(names)]
            self.routed[name] = self.routed.get(name, 0) + 1
            return name, self._ready[name]

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[EndpointProxy]:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        try:
            yield self
        finally:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        picked = self._pick()
        up_writer: asyncio.StreamWriter | None = None
        with contextlib.suppress(ConnectionError, OSError, TimeoutError, asyncio.CancelledError):
            if picked is None:
                writer.close()
                return
            up_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", picked[1]), timeout=5
            )
            up_writer = upstream

            await asyncio.gather(pump(reader, upstream), pump(up_reader, writer))
        writer.close()
        if up_writer is not None:
            up_writer.close()


# --------------------------------------------------------------------------- the workload


class DistinctFleet(PodFleet):
    """The guide's JetStream pods, each with its own prefill backlog: the n-th pod mirrored gets
    ``values[n]`` (cycling), so a value served under the wrong pod name changes the answer."""

    what = "distinct pod fleet"

    def __init__(self, *args: Any, values: Sequence[int], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._values = list(values)
        self._by_pod: dict[str, int] = {}

    def _apply(self, name: str, server: SimServer, load: Load) -> None:
        super()._apply(name, server, load)
        if name not in self._by_pod:
            self._by_pod[name] = self._values[len(self._by_pod) % len(self._values)]
        server.set_backlog(self._by_pod[name])

    def set_values(self, values: Sequence[int]) -> None:
        """Give the current pods, in name order, ``values``; a pod created later gets the value
        after (the n-th pod mirrored ``values[n]``, cycling)."""
        with self._lock:
            self._values = list(values)
            for name, value in zip(sorted(self._servers), values, strict=False):
                self._by_pod[name] = value
                self._servers[name].set_backlog(value)

    def backlogs(self) -> dict[str, int]:
        """Pod name → its backlog, for the live pods."""
        with self._lock:
            return {name: self._by_pod[name] for name in sorted(self._servers)}


def cm_series(backlogs: Mapping[str, int], project: str, cluster: str) -> list[Any]:
    """The pods' backlog as Managed Prometheus stores it in Cloud Monitoring, plus the same pods'
    names in another cluster and another namespace with :data:`DECOY_VALUE`."""
    out = []
    for pod, value in backlogs.items():
        labels = {"pod": pod, "id": pod}
        for where, v in (
            (target(cluster, NAMESPACE, project), value),
            (target(DECOY_CLUSTER, NAMESPACE, project), DECOY_VALUE),
            (target(cluster, DECOY_NAMESPACE, project), DECOY_VALUE),
        ):
            out.append(gauge("jetstream_prefill_backlog_size", labels, where, v))
    return out


# --------------------------------------------------------------------------- the replicas


@dataclass
class Replica:
    """One adapter pod: its network namespace stays, its container can be replaced."""

    name: str
    run: PodRun
    netns: str
    host_port: int
    container: str = ""
    starts: list[float] = field(default_factory=list)
    """Seconds from ``podman run`` to ready, per start."""


@dataclass
class Gke:
    image: BuiltImage
    cluster: Cluster
    objects: list[Obj]
    api: k8s.ApiClient
    fleet: DistinctFleet
    proxy: GmpProxy
    tokens: TokenServer
    metadata: MetadataServer
    cm: CMServer
    service: EndpointProxy
    replicas: list[Replica]
    project: str
    cluster_name: str
    added: list[str]
    containers: list[str] = field(default_factory=list)
    install: str = "overlay"
    """Which of :data:`INSTALLS` this is."""
    report: dict[str, Any] = field(default_factory=dict)
    """What this install measured: ``pods.REPORT["gke"][install]``."""

    def start(self, replica: Replica) -> None:
        replica.container = f"lma-gke-{replica.name}-{uuid.uuid4().hex[:8]}"
        self.containers.append(replica.container)
        began = time.monotonic()
        self.image.podman(
            "run", "--detach", "--name", replica.container, "--pull=never",
            f"--network=ns:{replica.netns}", *replica.run.args, replica.run.image,
            *replica.run.container_args,
        )  # fmt: skip
        url = f"https://127.0.0.1:{replica.host_port}{replica.run.readiness_path}"
        replica.starts.append(
            round(wait_ready(self.image, replica.container, url, unverified(), began), 2)
        )

    def logs(self, replica: Replica) -> str:
        result = self.image.podman("logs", replica.container, check=False)
        return result.stdout + result.stderr

    def hpa(self, name: str) -> dict[str, Any]:
        return self.cluster.request(
            "GET", f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{name}"
        )

    def _failed_get_events(self, name: str) -> list[dict[str, Any]]:
        uid = self.hpa(name)["metadata"]["uid"]
        listed = self.cluster.request(
            "GET", f"/api/v1/namespaces/{NAMESPACE}/events?fieldSelector=involvedObject.uid={uid}"
        )
        return [e for e in listed.get("items", []) if e.get("reason") in FAILED_GET]

    def failed_gets(self, name: str) -> list[str]:
        """``reason x count: message`` of the HPA's FailedGet… events (this HPA object only)."""
        return [
            f"{e['reason']} x{e.get('count') or 1}: {e.get('message')}"
            for e in self._failed_get_events(name)
        ]

    def failed_get_count(self, name: str) -> int:
        """How many times the HPA failed to get a metric so far: the events' counts summed (the
        recorder folds a repeated event into one object and counts it)."""
        return sum(int(e.get("count") or 1) for e in self._failed_get_events(name))

    def replicas_now(self) -> int:
        answer = self.cluster.request(
            "GET", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments/maxengine-server"
        )
        return int(answer["spec"]["replicas"])

    def apply(self, obj: Mapping[str, Any]) -> None:
        meta = obj["metadata"]
        path = API_PATHS[obj["kind"]].format(name=meta["name"], namespace=meta.get("namespace"))
        query = "?fieldManager=gke-e2e&force=true"
        self.cluster.request("PATCH", path + query, dict(obj), "application/apply-patch+yaml")

    def diagnostics(self, hpa: str | None = None) -> str:
        parts = [f"endpoints ready: {self.service.ready()}, routed: {self.service.routed}"]
        parts.append(f"pods: {self.fleet.backlogs()}")
        if hpa is not None:
            with contextlib.suppress(AssertionError):
                parts.append("HPA status: " + json.dumps(self.hpa(hpa).get("status"), indent=1))
                parts.append("HPA FailedGet events: " + "\n".join(self.failed_gets(hpa)))
        for replica in self.replicas:
            parts.append(f"{replica.name} log tail:\n{self.logs(replica)[-2500:]}")
        parts.append(
            "controller-manager: " + self.cluster.plane.logs("kube-controller-manager")[-2000:]
        )
        return "\n".join(parts)


def _readiness_prober(gke: Gke, stop: threading.Event) -> None:
    """What the kubelet and the endpoints controller do for the Service: a replica is an endpoint
    while its readiness path answers 200 (checked every second) and it is not being deleted."""
    while not stop.wait(1.0):
        for replica in gke.replicas:
            if not replica.container:
                gke.service.set_ready(replica.name, None)
                continue
            url = f"https://127.0.0.1:{replica.host_port}{replica.run.readiness_path}"
            try:
                status, _ = get(url, unverified())
            except OSError:
                status = 0
            gke.service.set_ready(replica.name, replica.host_port if status == 200 else None)


def _cm_feeder(gke: Gke, stop: threading.Event) -> None:
    """Keeps Cloud Monitoring's series current: Managed Prometheus writes every scrape there."""
    while not stop.wait(2.0):
        gke.cm.series = cm_series(gke.fleet.backlogs(), gke.project, gke.cluster_name)


# --------------------------------------------------------------------------- the installation


def _stand_in_args(run: PodRun, ca_dir: Path) -> list[str]:
    """What the test adds to the rendered pod for the stand-ins: the one setting for Google's
    endpoints, and the CA of the GMP stand-in's certificate."""
    endpoints = (
        f"gmp=https://127.0.0.1:{GMP_IN_POD},metadata=http://127.0.0.1:{METADATA_IN_POD},"
        f"cloud-monitoring=http://127.0.0.1:{CM_IN_POD}"
    )
    added = [
        f"LMA_GOOGLE_ENDPOINTS={endpoints}",
        f"LMA_PROMETHEUS_CA_FILE={STAND_INS_DIR}/gmp-ca.pem",
    ]
    for env in added:
        run.args += ["--env", env]
    run.args += ["--volume", f"{ca_dir}:{STAND_INS_DIR}:ro"]
    return added


def _service_and_apiservices(objects: Sequence[Obj], port: int) -> list[Obj]:
    """The rendered APIServices, pointed at the endpoint proxy's port, and their Service as an
    ExternalName to it (no kube-proxy here)."""
    (service,) = [o for o in objects if o["kind"] == "Service"]
    meta = service["metadata"]
    out: list[Obj] = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
            "spec": {
                "type": "ExternalName",
                "externalName": "127.0.0.1",
                "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
            },
        }
    ]
    for api_service in (o for o in objects if o["kind"] == "APIService"):
        assert api_service["spec"]["service"]["name"] == meta["name"]
        changed = json.loads(json.dumps(api_service))
        changed["spec"]["service"]["port"] = port
        out.append(changed)
    return out


INSTALLS = {
    "overlay": "the guide's kustomize overlay (presets: External values are totals)",
    "chart": "the guide's helm install with the GKE guide's values file (its rules average)",
}


@pytest.fixture(scope="module", params=list(INSTALLS))
def gke(
    request: pytest.FixtureRequest, image: BuiltImage, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gke]:
    work = tmp_path_factory.mktemp(f"gke-{request.param}")
    overlay = render_guide_overlay(work / "guide")
    container = container_of(deployment_of(overlay))
    project = arg_value(container["args"], "--gmp-project")
    cluster_name = arg_value(container["args"], "--cluster")
    assert project and cluster_name, f"the guide's overlay gives no project/cluster: {container}"
    objects = overlay if request.param == "overlay" else render_guide_chart(cluster_name)
    with contextlib.ExitStack() as stack:
        gke = _install(stack, image, objects, work, project, cluster_name)
        gke.install = request.param
        pods.REPORT.setdefault("gke", {})[request.param] = gke.report
        yield gke


def _install(
    stack: contextlib.ExitStack,
    image: BuiltImage,
    objects: list[Obj],
    work: Path,
    project: str,
    cluster_name: str,
) -> Gke:
    decoys = [
        SimServer(pod="decoy-0", namespace=DECOY_NAMESPACE, cluster=cluster_name),
        SimServer(pod="decoy-1", namespace=NAMESPACE, cluster=DECOY_CLUSTER),
    ]
    for decoy in decoys:
        decoy.start()
        stack.callback(decoy.stop)
        decoy.set_backlog(DECOY_VALUE)
    tpu = SimTpuExporter(cluster=cluster_name).start()
    stack.callback(tpu.stop)
    prometheus = LocalPrometheus([tpu.target], scrape_interval=SCRAPE).start()
    stack.callback(prometheus.stop)
    tokens = stack.enter_context(TokenServer())
    proxy = stack.enter_context(
        GmpProxy(project=project, tokens=tokens, prometheus_url=prometheus.url, directory=work)
    )
    metadata = stack.enter_context(
        MetadataServer(cluster=cluster_name, location=LOCATION, project=project, mint=tokens.mint)
    )
    loop = LoopThread()
    stack.callback(loop.close)
    cm = stack.enter_context(loop.entered(serve_cm()))
    service = stack.enter_context(loop.entered(EndpointProxy().serving()))

    plane = stack.enter_context(
        running(ControlPlane(hpa_sync_period_s=HPA_SYNC_S, downscale_stabilization_s=None))
    )
    cert, key = plane.client_cert("gke-e2e", groups=("system:masters",))
    admin = ssl.create_default_context(cafile=str(plane.ca_file))
    admin.load_cert_chain(str(cert), str(key))
    cluster = Cluster(plane=plane, prometheus=prometheus, admin=admin)
    api = stack.enter_context(plane.admin_client())
    for obj in objects:
        if obj["kind"] in pods.PATHS:
            cluster.apply(obj)

    ca_dir = work / "stand-ins"
    ca_dir.mkdir()
    (ca_dir / "gmp-ca.pem").write_bytes(proxy.ca_file.read_bytes())
    into = {
        pods.APISERVER_IN_POD: cluster.api_port,
        GMP_IN_POD: int(proxy.base_url.rsplit(":", 1)[1]),
        METADATA_IN_POD: int(metadata.url.rsplit(":", 1)[1]),
        CM_IN_POD: int(cm.address.rsplit(":", 1)[1]),
    }
    replicas, added = [], []
    count = int(deployment_of(objects)["spec"]["replicas"])
    assert count >= 2, (
        f"the rendered Deployment runs {count} replica(s): no second one to take over"
    )
    for name in ("a", "b")[:count]:
        run = pod_run(objects, cluster, work / f"files-{name}")
        added = _stand_in_args(run, ca_dir)
        netns, host_port = stack.enter_context(pod_network(into, run.port))
        replicas.append(Replica(name=name, run=run, netns=netns, host_port=host_port))

    fleet = DistinctFleet(
        plane,
        prometheus,
        tpu,
        cluster=cluster_name,
        values=POD_VALUES,
        extra_targets=[d.target for d in decoys],
    )
    gke = Gke(
        image=image, cluster=cluster, objects=objects, api=api, fleet=fleet, proxy=proxy,
        tokens=tokens, metadata=metadata, cm=cm, service=service, replicas=replicas,
        project=project, cluster_name=cluster_name, added=added,
    )  # fmt: skip
    stack.callback(_remove_containers, gke)
    for replica in replicas:
        gke.start(replica)
    stop = threading.Event()
    stack.callback(stop.set)
    for loop_body in (_readiness_prober, _cm_feeder):
        threading.Thread(target=loop_body, args=(gke, stop), daemon=True).start()
    for obj in _service_and_apiservices(objects, service.port):
        gke.apply(obj)
    names = [o["metadata"]["name"] for o in objects if o["kind"] == "APIService"]
    plane.wait_apiservices_available(timeout=90, names=names)

    wait_until(
        "the default ServiceAccount",
        lambda: "default" in _service_accounts(cluster),
        timeout_s=30,
    )
    apply_manifest(api, deployment_manifest(replicas=1))
    fleet.start()
    stack.callback(fleet.stop)
    gke.report["added to the rendered pod"] = added
    return gke


def _service_accounts(cluster: Cluster) -> set[str]:
    listed = cluster.request("GET", f"/api/v1/namespaces/{NAMESPACE}/serviceaccounts")
    return {item["metadata"]["name"] for item in listed.get("items", [])}


def _remove_containers(gke: Gke) -> None:
    for name in gke.containers:
        gke.image.podman("rm", "--force", "--time", "0", name, check=False)


# --------------------------------------------------------------------------- HPA readings


def _current(gke: Gke, hpa: str) -> dict[str, float]:
    """Metric name → the HPA status' current averageValue (what the controller last read)."""
    out = {}
    for metric in (gke.hpa(hpa).get("status") or {}).get("currentMetrics") or []:
        source = metric.get(metric["type"].lower()) or {}
        value = (source.get("current") or {}).get("averageValue")
        if value is not None:
            out[source["metric"]["name"]] = quantity(value)
    return out


def _wait_current(gke: Gke, hpa: str, metric: str, want: Callable[[], float]) -> float:
    def probe() -> float | None:
        gke.fleet.check()
        seen = _current(gke, hpa).get(metric)
        return seen if seen is not None and abs(seen - want()) < 1e-3 else None

    return wait_until(
        f"HPA {hpa} to read {metric} = {want()}",
        probe,
        timeout_s=_WAIT_S,
        interval_s=1.0,
        details=lambda: gke.diagnostics(hpa),
    )


def _wait_replicas(gke: Gke, hpa: str, expected: int) -> None:
    def probe() -> bool:
        gke.fleet.check()
        return gke.replicas_now() == expected and len(gke.fleet.backlogs()) == expected

    wait_until(
        f"HPA {hpa} to scale maxengine-server to {expected}",
        probe,
        timeout_s=_WAIT_S,
        interval_s=1.0,
        details=lambda: gke.diagnostics(hpa),
    )


def _wait_scraped(gke: Gke) -> None:
    """Until Prometheus (so "GMP") holds every live pod's current value: an HPA made before the
    first scrape reads no value (a FailedGet… event that says nothing about the adapter)."""
    query = (
        f'jetstream_prefill_backlog_size{{cluster="{gke.cluster_name}",namespace="{NAMESPACE}"}}'
    )

    def probe() -> bool:
        gke.fleet.check()
        backlogs = gke.fleet.backlogs()
        samples = gke.cluster.prometheus.query(query)
        scraped = {s.labels.get("pod"): s.value for s in samples}
        return bool(backlogs) and scraped == {k: float(v) for k, v in backlogs.items()}

    wait_until("Prometheus to scrape the pods", probe, timeout_s=60, details=gke.diagnostics)


def _external_per_replica(gke: Gke) -> float:
    """What an External AverageValue HPA shows: this namespace's and cluster's total (the
    presets), or its average (the GKE guide's prometheus-adapter rules), divided by replicas."""
    backlogs = list(gke.fleet.backlogs().values())
    value = sum(backlogs) if gke.install == "overlay" else sum(backlogs) / max(1, len(backlogs))
    return value / max(1, gke.replicas_now())


def _pods_mean(gke: Gke) -> float:
    backlogs = gke.fleet.backlogs()
    return sum(backlogs.values()) / max(1, len(backlogs))


EXTERNAL = "jetstream_prefill_backlog_size"
PODS = "prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge"
GMP_PODS = "jetstream_prefill_backlog_size"
"""The seed's Pods metric under its plain PromQL name: served from GMP (the presets' query)."""
GMP_HPA = "jetstream-hpa-gmp"
GMP_MAX_REPLICAS = 4
SCALE_TO = (18, 9, 3)
"""Values for the Pods HPA on GMP: the two pods at (18 + 9) / 2 = 13.5 against the target 10 ask
for ceil(1.35 × 2) = 3 replicas; the third pod reports 3, and (18 + 9 + 3) / 3 = 10 holds at 3."""
AFTER_RESTART = (8, 6, 5)
"""The values after the restarts: (8 + 6 + 5) / 3 = 6.33 asks for ceil(0.633 × 3) = 2 replicas,
and whichever two pods stay, their mean (7, 6.5 or 5.5) keeps 2."""


# --------------------------------------------------------------------------- the tests


def test_the_adapter_authenticates_with_workload_identity_tokens_only(gke: Gke) -> None:
    wait_until(
        "the adapter's first query through the GMP stand-in",
        lambda: gke.proxy.records,
        timeout_s=60,
        details=gke.diagnostics,
    )
    records = list(gke.proxy.records)
    assert all(r.token in gke.tokens.minted for r in records), "a query without a minted token"
    assert all(r.status == 200 for r in records), [(r.path, r.status) for r in records]
    prefix = f"/v1/projects/{gke.project}/location/global/prometheus/api/v1/"
    assert all(r.path.startswith(prefix) for r in records), {r.path for r in records}
    assert any(p.endswith("/service-accounts/default/token") for p in gke.metadata.requests)
    for replica in gke.replicas:
        logs = gke.logs(replica)
        assert replica.run.token not in logs, "the service-account token is in the logs"
        assert not any(t in logs for t in gke.tokens.minted), "a Google token is in the logs"
        assert "Traceback" not in logs, logs[-3000:]


def test_the_guides_external_hpa_scales_on_this_clusters_gmp_values(gke: Gke) -> None:
    hpa = example_hpa("hpa-external-prefill-backlog.yaml")
    name = hpa["metadata"]["name"]
    _wait_scraped(gke)
    gke.apply(hpa)
    # One pod reporting POD_VALUES[0] = 12 waiting requests: 12 / 10 per replica → 2 replicas;
    # the decoys (1000 each, another namespace and another cluster) must not count.
    _wait_replicas(gke, name, 2)
    seen = _wait_current(gke, name, EXTERNAL, lambda: _external_per_replica(gke))
    if gke.install == "overlay":
        assert seen == sum(POD_VALUES[:2]) / 2  # (12 + 5) / 2 replicas
    else:
        # (12 + 5) / 2 pods / 2 replicas: below the target, held at 2 by the controller's
        # default 5-minute downscale stabilization (what the guide's averaging rule gets).
        assert seen == sum(POD_VALUES[:2]) / 2 / 2
    assert gke.failed_gets(name) == [], gke.diagnostics(name)


def _delete_hpa(gke: Gke, name: str) -> None:
    """One HPA per Deployment: two on the same pods make the controller refuse both."""
    gke.cluster.request(
        "DELETE", f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/{name}"
    )


def test_the_guides_pods_hpa_reads_each_pods_value_through_cloud_monitoring(gke: Gke) -> None:
    _delete_hpa(gke, "jetstream-hpa")
    hpa = example_hpa("hpa-pods-stackdriver-prefill-backlog.yaml")
    hpa["metadata"]["name"] = "jetstream-hpa-pods"
    _wait_scraped(gke)
    gke.apply(hpa)
    name = hpa["metadata"]["name"]
    seen = _wait_current(gke, name, PODS, lambda: _pods_mean(gke))
    assert seen == sum(POD_VALUES[:2]) / 2  # (12 + 5) / 2: each pod its own value
    assert gke.cm.list_requests, "Cloud Monitoring was never asked"
    assert all(
        f'resource.labels.cluster = "{gke.cluster_name}"' in r.filter for r in gke.cm.list_requests
    )
    assert gke.replicas_now() == 2
    assert gke.failed_gets(name) == [], gke.diagnostics(name)


def gmp_pods_hpa() -> Obj:
    """The seed's Pods metric under its plain PromQL name (the Pods metric of
    ``hpa-multiple-metrics.yaml``, target AverageValue 10), alone in an HPA of its own: its
    External TPU-memory metric would let the larger proposal of another path decide. Changed for
    the test: ``maxReplicas`` 4 (the seed's 2 is where the External HPA left the Deployment, so
    the HPA could not move up), and the HPA's own scale-down stabilization window 0 (the
    controller's flag keeps its 5-minute default): a wrong low value, or one pod's value lost,
    would show at once as a scale-down instead of being hidden for five minutes."""
    hpa = example_hpa("hpa-multiple-metrics.yaml")
    (metric,) = [m for m in hpa["spec"]["metrics"] if m["type"] == "Pods"]
    assert metric["pods"]["metric"]["name"] == GMP_PODS, metric
    assert quantity(metric["pods"]["target"]["averageValue"]) == 10, metric
    hpa["metadata"]["name"] = GMP_HPA
    hpa["spec"]["metrics"] = [metric]
    hpa["spec"]["maxReplicas"] = GMP_MAX_REPLICAS
    hpa["spec"]["behavior"] = {"scaleDown": {"stabilizationWindowSeconds": 0}}
    return hpa


def _per_pod(gke: Gke) -> dict[str, float]:
    """Pod name → value, as the HPA controller reads it: through the aggregator."""
    path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/{GMP_PODS}"
    items = gke.cluster.request("GET", path).get("items") or []
    return {i["describedObject"]["name"]: quantity(i["value"]) for i in items}


def _wait_per_pod(gke: Gke) -> dict[str, float]:
    def probe() -> dict[str, float] | None:
        gke.fleet.check()
        want = {pod: float(v) for pod, v in gke.fleet.backlogs().items()}
        seen = _per_pod(gke)
        return seen if seen == want else None

    return wait_until(
        f"each pod's own {GMP_PODS} through the aggregator",
        probe,
        timeout_s=_WAIT_S,
        interval_s=1.0,
        details=lambda: f"served: {_per_pod(gke)}\n{gke.diagnostics()}",
    )


def test_the_seeds_pods_hpa_scales_on_each_pods_gmp_value(gke: Gke) -> None:
    _delete_hpa(gke, "jetstream-hpa-pods")
    # Each pod its own value, under its own name, and none of the decoys' (same names, another
    # namespace or cluster, 1000 each): the answer the HPA gets, checked item by item.
    assert sorted(_wait_per_pod(gke).values()) == sorted(map(float, POD_VALUES[:2]))
    hpa = gmp_pods_hpa()
    gke.fleet.set_values(SCALE_TO)
    _wait_scraped(gke)
    began = time.monotonic()
    gke.apply(hpa)
    _wait_replicas(gke, GMP_HPA, 3)
    gke.report["gmp_pods_scale_2_to_3_s"] = round(time.monotonic() - began, 1)
    seen = _wait_current(gke, GMP_HPA, GMP_PODS, lambda: _pods_mean(gke))
    assert seen == sum(SCALE_TO) / 3
    assert _wait_per_pod(gke) == {p: float(v) for p, v in gke.fleet.backlogs().items()}
    assert gke.replicas_now() == 3, gke.diagnostics(GMP_HPA)
    assert gke.failed_gets(GMP_HPA) == [], gke.diagnostics(GMP_HPA)
    assert gke.proxy.records and all(r.token in gke.tokens.minted for r in gke.proxy.records)


def _hold_while(
    gke: Gke, hpa: str, metric: str, action: Callable[[], None]
) -> tuple[list[float | None], int]:
    """Run ``action`` while sampling, every 0.5 s, ``spec.replicas`` and the value the HPA last
    read; both must stay as they were throughout and for two syncs after. Returns the values
    sampled (``None`` while the HPA's status shows none) and the HPA's FailedGet count one sync
    after ``action`` (the end of the window in which ``action`` may cause one)."""
    replicas, value = gke.replicas_now(), _current(gke, hpa).get(metric)
    assert value is not None, gke.diagnostics(hpa)
    seen: list[tuple[int, float | None]] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            with contextlib.suppress(AssertionError, OSError):
                seen.append((gke.replicas_now(), _current(gke, hpa).get(metric)))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        action()
        # A sync that began during the action records its event when it ends.
        time.sleep(HPA_SYNC_S)
        window_end = gke.failed_get_count(hpa)
        # One more sync: a decision made on an error would show now.
        time.sleep(HPA_SYNC_S)
    finally:
        stop.set()
        sampler.join(timeout=5)
    moved = [(r, v) for r, v in seen if r != replicas or (v is not None and abs(v - value) > 1e-3)]
    assert seen and not moved, f"the HPA acted on {moved} (want {replicas}, {value})\n" + (
        gke.diagnostics(hpa)
    )
    return [v for _, v in seen], window_end


def test_a_replica_stopped_then_the_other_killed_never_makes_the_hpa_act_on_an_error(
    gke: Gke,
) -> None:
    """Both restarts happen while the GMP Pods HPA could move either way: 3 replicas of 4, a
    scale-down window of 0, and values that hold it exactly at 3 (mean 10 = the target). A
    wrong answer served as a value (zeros, a decoy's 1000) would move it; an error answered as
    an error leaves it where it is, and shows as a FailedGet event.

    FailedGet events are counted per phase. After SIGTERM there must be none: the pod leaves the
    endpoints first, and the adapter finishes what it is answering before it exits. After SIGKILL
    some may come, within one sync: the aggregator's connection to the killed pod is cut
    mid-request, and until the readiness probe fails and the endpoint is removed (here 1 s, on a
    node the probe's period × failureThreshold) the Service may still send a new connection to
    the dead pod, which the aggregator answers 503 — the HPA then keeps its replicas and records
    FailedGetPodsMetric. After that window, with the killed replica restarted, there must be none.
    """
    name = GMP_HPA
    first, second = gke.replicas
    report: dict[str, Any] = {}
    assert gke.replicas_now() == 3 and _pods_mean(gke) == sum(SCALE_TO) / 3

    def sigterm() -> None:
        # A deleted pod leaves the Service's endpoints as it gets SIGTERM.
        gke.service.set_ready(first.name, None)
        old = first.container
        first.container = ""
        began = time.monotonic()
        gke.image.podman("stop", "--time", f"{first.run.grace_s:.0f}", old)
        report["sigterm_stop_s"] = round(time.monotonic() - began, 2)
        state = json.loads(gke.image.podman("inspect", old).stdout)[0]["State"]
        report["sigterm_exit_code"] = state.get("ExitCode")
        gke.start(first)

    def sigkill() -> None:
        began = time.monotonic()
        gke.image.podman("kill", "--signal", "KILL", second.container)
        wait_until(
            "the killed replica to leave the endpoints",
            lambda: second.name not in gke.service.ready(),
            timeout_s=10,
        )
        report["sigkill_endpoint_removed_s"] = round(time.monotonic() - began, 2)
        gke.start(second)

    counts = {"before": gke.failed_get_count(name)}
    values, _ = _hold_while(gke, name, GMP_PODS, sigterm)
    counts["sigterm"] = gke.failed_get_count(name)
    more, counts["sigkill_window"] = _hold_while(gke, name, GMP_PODS, sigkill)
    values += more
    counts["after_sigkill_window"] = gke.failed_get_count(name)

    # Survived, and able to move: new values are read after both restarts, from both replicas'
    # answers, and the HPA scales down on them.
    gke.fleet.set_values(AFTER_RESTART)
    _wait_replicas(gke, name, 2)
    _wait_current(gke, name, GMP_PODS, lambda: _pods_mean(gke))
    counts["after_restarts"] = gke.failed_get_count(name)

    phases = list(counts)
    report["failed_gets_per_phase"] = {
        phase: counts[phase] - counts[previous] for previous, phase in itertools.pairwise(phases)
    }
    report["failed_get_events"] = gke.failed_gets(name)
    report["hpa_status_samples_without_a_value"] = values.count(None)
    report["hpa_status_samples"] = len(values)
    report["ready_s_per_start"] = {r.name: r.starts for r in gke.replicas}
    report["connections_routed"] = dict(gke.service.routed)
    gke.report["restart"] = report

    assert report["sigterm_exit_code"] == 0, gke.diagnostics(name)
    assert report["sigterm_stop_s"] < _STOP_BOUND_S, report
    outside = {p: n for p, n in report["failed_gets_per_phase"].items() if p != "sigkill_window"}
    assert counts["before"] == 0 and not any(outside.values()), (report, gke.diagnostics(name))
    assert sorted(gke.service.ready()) == sorted(r.name for r in gke.replicas)


def test_the_guides_env_and_args_reached_the_pods_unchanged(gke: Gke) -> None:
    """The rendered args are what ran (no backend replaced): the GMP project and cluster of the
    guide's overlay, and the only additions are the stand-ins' settings."""
    container = container_of(deployment_of(gke.objects))
    config = json.loads(gke.image.podman("image", "inspect", gke.image.ref).stdout)[0]["Config"]
    own = {e.split("=", 1)[0] for e in config.get("Env") or [] if e.startswith("LMA_")}
    for replica in gke.replicas:
        assert replica.run.container_args == container["args"]
        inspected = json.loads(gke.image.podman("inspect", replica.container).stdout)[0]
        env = dict(e.split("=", 1) for e in inspected["Config"]["Env"])
        assert {k for k in env if k.startswith("LMA_")} - own == {
            "LMA_GOOGLE_ENDPOINTS",
            "LMA_PROMETHEUS_CA_FILE",
        }
        assert inspected["Config"]["User"] == "65532:65532"
        assert inspected["HostConfig"]["ReadonlyRootfs"] is True
