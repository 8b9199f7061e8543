"""The real HPA controller scales vLLM-style Deployments on the engine vocabulary.

Modelled on ``test_hpa_scaling.py`` and built from :mod:`tests.e2e.scenario`'s helpers: the real
kube-apiserver aggregates the adapter (its ServiceAccount and ``deploy/base`` RBAC), which reads a
real Prometheus scraping one simulated vLLM server (:class:`sim.engines.VllmServer`) per pod of
two Deployments in ``default``; kube-controller-manager's HPA controller (1 s sync, no scale-down
stabilization) scales them:

- ``vllm-queue`` (model ``llama-3-8b``, two data-parallel engines per pod, names stored as
  ``vllm:…``) on the Pods metric ``llm_requests_waiting`` with an ``AverageValue`` target;
- ``vllm-latency`` (model ``gemma-2-9b``, names stored as ``vllm_…``, as a ``prometheus_client``
  with UTF-8 name escaping sends them) on the External metric
  ``llm_time_to_first_token_p95_seconds`` with a ``Value`` target and a ``model_name`` selector,
  so the other Deployment's requests do not count.

The examples under ``deploy/examples/engines`` are the HPAs, adjusted as the tests say. Also
checked through the aggregator: a metric name with a colon, and a server-side dry run of every
engine example (the HPA validation accepts ``vllm:num_requests_waiting``).
"""

from __future__ import annotations

import contextlib
import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from sim.engines import EngineValues, Exposition, VllmServer
from sim.prometheus import LocalPrometheus
from tests.e2e.hpa_checks import (
    assert_healthy,
    current_metrics,
    first_step,
    rescale_reasons,
    wait_active,
    wait_current,
)
from tests.e2e.scenario import (
    ADAPTER_USER,
    CLUSTER,
    EXAMPLES_DIR,
    MirrorThread,
    Scenario,
    ScenarioError,
    apply_base_rbac,
    apply_manifest,
    deployment_manifest,
    example_hpa,
    pods_average_replicas,
    start_adapter,
)
from tests.support.adapter_process import AdapterProcess
from tests.support.controlplane import ControlPlane, mark_pod_ready
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

NAMESPACE = "default"
QUEUE = "vllm-queue"
LATENCY = "vllm-latency"
SPLITS = 2  # data-parallel engines per simulated vLLM pod (the `engine` label)
_POLL_S = 0.3


# --------------------------------------------------------------------------- the pods


@dataclass
class Workload:
    """One Deployment whose pods are mirrored as simulated vLLM servers."""

    deployment: str
    model: str
    exposition: Exposition
    load: EngineValues = field(default_factory=lambda: _idle())
    servers: dict[str, VllmServer] = field(default_factory=dict)

    @property
    def label_selector(self) -> str:
        return f"app={self.deployment}"


def _idle() -> EngineValues:
    return EngineValues(waiting=(0,) * SPLITS, running=(0,) * SPLITS, kv_cache=(0.0,) * SPLITS)


class VllmFleet(MirrorThread):
    """Mirrors the pods of the workloads as :class:`VllmServer` s, from a background thread.

    Like :class:`tests.e2e.scenario.PodFleet`: pods that are not Running are patched Running and
    Ready; each live pod gets a server (``pod`` label = its name) with its workload's load; pods
    gone lose theirs; Prometheus' targets follow. Errors in the thread are re-raised by
    :meth:`check`.
    """

    def __init__(
        self, plane: ControlPlane, prometheus: LocalPrometheus, workloads: list[Workload]
    ) -> None:
        super().__init__(plane, poll_s=_POLL_S)
        self._prometheus = prometheus
        self.workloads = {w.deployment: w for w in workloads}

    what = "vLLM fleet"

    def _release(self) -> None:
        for workload in self.workloads.values():
            for server in workload.servers.values():
                server.stop()
            workload.servers.clear()

    def set_load(self, deployment: str, load: EngineValues) -> None:
        with self._lock:
            workload = self.workloads[deployment]
            workload.load = load
            for server in workload.servers.values():
                server.set_values(load)

    def observe_ttft(self, deployment: str, seconds: float, count: int) -> list[str]:
        """Every current pod of ``deployment`` records ``count`` requests; returns the pods."""
        with self._lock:
            servers = dict(self.workloads[deployment].servers)
        for server in servers.values():
            server.observe_ttft(seconds, count)
        return sorted(servers)

    def pods(self, deployment: str) -> list[str]:
        with self._lock:
            return sorted(self.workloads[deployment].servers)

    def sync(self) -> None:
        if self._api is None:
            raise ScenarioError("the vLLM fleet is not started")
        core = cast(Any, k8s.CoreV1Api(self._api))
        changed = False
        for workload in self.workloads.values():
            listed = core.list_namespaced_pod(
                NAMESPACE, label_selector=workload.label_selector, _request_timeout=10
            )
            live = {
                p.metadata.name: p for p in listed.items if p.metadata.deletion_timestamp is None
            }
            for name, pod in live.items():
                if (pod.status.phase if pod.status else None) != "Running":
                    with contextlib.suppress(ApiException):  # deleted meanwhile
                        mark_pod_ready(self._api, NAMESPACE, name)
            with self._lock:
                for name in set(workload.servers) - set(live):
                    workload.servers.pop(name).stop()
                    changed = True
                for name in sorted(set(live) - set(workload.servers)):
                    server = VllmServer(
                        pod=name,
                        namespace=NAMESPACE,
                        cluster=CLUSTER,
                        model=workload.model,
                        splits=SPLITS,
                        exposition=workload.exposition,
                    )
                    server.start()
                    server.set_values(workload.load)
                    workload.servers[name] = server
                    changed = True
        if changed:
            with self._lock:
                targets = [s.target for w in self.workloads.values() for s in w.servers.values()]
            self._prometheus.set_targets(targets)


class _DeploymentView:
    """What :class:`Scenario` reads of its pod fleet, for one Deployment of :class:`VllmFleet`."""

    def __init__(self, fleet: VllmFleet, deployment: str) -> None:
        self._fleet = fleet
        self._deployment = deployment
        self.label_selector = fleet.workloads[deployment].label_selector

    def check(self) -> None:
        self._fleet.check()

    @property
    def pods(self) -> list[str]:
        return self._fleet.pods(self._deployment)

    @property
    def load(self) -> EngineValues:
        return self._fleet.workloads[self._deployment].load


# --------------------------------------------------------------------------- the scenario


@dataclass
class Engines:
    plane: ControlPlane
    prometheus: LocalPrometheus
    adapter: AdapterProcess
    fleet: VllmFleet
    api: k8s.ApiClient
    scenarios: dict[str, Scenario]


@pytest.fixture(scope="module")
def engines(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Engines]:
    work_dir = Path(tmp_path_factory.mktemp("engine-presets"))
    with contextlib.ExitStack() as stack:
        api = stack.enter_context(control_plane.admin_client())
        apply_base_rbac(api)
        prometheus = stack.enter_context(LocalPrometheus([]))
        kubeconfig = control_plane.kubeconfig_for(
            ADAPTER_USER, ("system:serviceaccounts", "system:serviceaccounts:custom-metrics")
        )
        adapter = start_adapter(kubeconfig, prometheus.url, log=work_dir / "adapter.log")
        stack.callback(adapter.stop)
        control_plane.register_adapter(adapter.port, insecure=True)
        control_plane.wait_apiservices_available(timeout=90)

        core = k8s.CoreV1Api(api)

        def has_default_sa() -> bool:
            try:
                core.read_namespaced_service_account("default", NAMESPACE)
            except ApiException as exc:
                if exc.status == 404:
                    return False
                raise
            return True

        wait_until("the default ServiceAccount", has_default_sa, timeout_s=30)
        fleet = VllmFleet(
            control_plane,
            prometheus,
            [Workload(QUEUE, "llama-3-8b", "text"), Workload(LATENCY, "gemma-2-9b", "underscores")],
        )
        scenarios = {
            name: Scenario(
                plane=control_plane,
                prometheus=prometheus,
                tpu=cast(Any, None),  # no TPU here; Scenario does not read it
                adapter=adapter,
                fleet=cast(Any, _DeploymentView(fleet, name)),
                api=api,
                namespace=NAMESPACE,
                deployment=name,
            )
            for name in (QUEUE, LATENCY)
        }
        stack.callback(lambda: _delete_workloads(api, scenarios))
        for name in (QUEUE, LATENCY):
            apply_manifest(
                api,
                deployment_manifest(
                    name=name,
                    namespace=NAMESPACE,
                    labels={"app": name},
                    container="vllm",
                    port=(8000, "http"),
                ),
            )
        fleet.start()
        stack.callback(fleet.stop)
        for scenario in scenarios.values():
            scenario.wait_pods(1)
        yield Engines(control_plane, prometheus, adapter, fleet, api, scenarios)


def _delete_workloads(api: k8s.ApiClient, scenarios: Mapping[str, Scenario]) -> None:
    for name, scenario in scenarios.items():
        for hpa in list(scenario._hpas):
            with contextlib.suppress(ApiException, ScenarioError):
                scenario.delete_hpa(hpa)
        with contextlib.suppress(ApiException):
            k8s.AppsV1Api(api).delete_namespaced_deployment(
                name, NAMESPACE, propagation_policy="Foreground"
            )
        with contextlib.suppress(ApiException):
            k8s.CoreV1Api(api).delete_collection_namespaced_pod(
                NAMESPACE, label_selector=f"app={name}"
            )


def wait_prometheus(engines: Engines, query: str, expected: Mapping[str, float], what: str) -> None:
    """Wait until ``query`` answers exactly ``expected`` (pod → value)."""

    def probe() -> bool:
        engines.fleet.check()
        got = {s.labels.get("pod", ""): s.value for s in engines.prometheus.query(query)}
        return got == dict(expected)

    wait_until(
        what,
        probe,
        timeout_s=30,
        details=lambda: str(engines.prometheus.query(query)),
    )


def wait_scraped(engines: Engines, deployment: str) -> None:
    """Prometheus shows every current pod of ``deployment`` with its load (both engines), and its
    time-to-first-token histogram in at least two scrapes."""
    workload = engines.fleet.workloads[deployment]
    pods = engines.fleet.pods(deployment)
    scope = f'cluster="{CLUSTER}",namespace="{NAMESPACE}",model_name="{workload.model}"'
    waiting = f'{{__name__=~"vllm:num_requests_waiting|vllm_num_requests_waiting",{scope}}}'
    wait_prometheus(
        engines,
        f"sum by (pod) ({waiting})",
        dict.fromkeys(pods, float(sum(workload.load.waiting))),
        f"Prometheus to show {deployment}'s load for pods {pods}",
    )
    count = (
        '{__name__=~"vllm:time_to_first_token_seconds_count|vllm_time_to_first_token_seconds_count",'
        f"{scope}}}"
    )
    # rate() answers from two samples on: then a request's increase is seen, and an idle
    # engine's percentile is 0 rather than absent. (It also answers for pods deleted in the last
    # two minutes, whose samples are still in the window: only the current pods are checked.)
    query = f"count by (pod) (rate({count}[2m]))"

    def every_pod_has_a_rate() -> bool:
        engines.fleet.check()
        seen = {s.labels.get("pod", "") for s in engines.prometheus.query(query)}
        return set(pods) <= seen

    wait_until(
        f"Prometheus to scrape {deployment}'s histograms twice for pods {pods}",
        every_pod_has_a_rate,
        timeout_s=30,
        details=lambda: str(engines.prometheus.query(query)),
    )


@pytest.fixture
def fresh(engines: Engines) -> Iterator[Engines]:
    """Both Deployments at 1 Ready pod, idle, no HPA (also after the test)."""
    for name, scenario in engines.scenarios.items():
        for hpa in list(scenario._hpas):
            scenario.delete_hpa(hpa)
        engines.fleet.set_load(name, _idle())
        scenario.scale(1)
        scenario.wait_pods(1)
        wait_scraped(engines, name)
    yield engines
    engines.fleet.check()


def external_value_replicas(value: float, target: float, ready: int) -> int:
    """Replicas an External metric with a ``Value`` target asks for: ``ceil(value/target ×
    ready pods)``, or the current count inside the 0.1 tolerance."""
    ratio = value / target
    if abs(1.0 - ratio) <= 0.1:
        return ready
    return math.ceil(ratio * ready)


# --------------------------------------------------------------------------- tests


def test_pods_requests_waiting_average_value(fresh: Engines) -> None:
    """Pods ``llm_requests_waiting``, AverageValue 4: one value per pod, the sum over its two
    vLLM engines, read under vLLM's own (colon) name."""
    scenario = fresh.scenarios[QUEUE]
    # deploy/examples/engines/hpa-vllm.yaml, on the vocabulary's name instead of vLLM's own
    # (the same series): same Deployment shape, here vllm-queue, max 5.
    manifest = example_hpa("engines/hpa-vllm.yaml", max_replicas=5)
    manifest["metadata"]["name"] = QUEUE
    manifest["spec"]["scaleTargetRef"]["name"] = QUEUE
    [metric] = manifest["spec"]["metrics"]
    metric["pods"]["metric"]["name"] = "llm_requests_waiting"
    target = float(metric["pods"]["target"]["averageValue"])
    hpa = scenario.apply_hpa(manifest)
    wait_active(scenario, hpa, {"llm_requests_waiting": 0})
    scenario.hold(hpa, 1, seconds=2)

    busy = EngineValues(waiting=(6, 4), running=(32, 30), kv_cache=(0.5, 0.25))
    per_pod = sum(busy.waiting)
    fresh.fleet.set_load(QUEUE, busy)
    seen: list[int] = []
    scenario.wait_replicas(hpa, 5, seen=seen)
    # One pod with 10 waiting (6 + 4 over its engines): ceil(10 / 4 × 1) = 3.
    expected_first = pods_average_replicas([per_pod], target)
    assert expected_first == 3
    assert first_step(seen) == expected_first, scenario.diagnostics(hpa)
    assert "pods metric llm_requests_waiting" in rescale_reasons(scenario, hpa)[0]
    wait_current(scenario, hpa, {"llm_requests_waiting": per_pod})
    assert_healthy(scenario, hpa)

    # Through the aggregator, vLLM's own name with its colon answers the same per pod (once
    # Prometheus has scraped the new pods).
    path = (
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/"
        f"vllm:num_requests_waiting?labelSelector=app%3D{QUEUE}"
    )
    answers: list[object] = []

    def colon_name_answers() -> bool:
        status, body = scenario.raw(path)
        answers.append((status, body))
        if status != 200:
            return False
        values = {i["describedObject"]["name"]: i["value"] for i in body["items"]}
        return values == dict.fromkeys(fresh.fleet.pods(QUEUE), str(per_pod))

    wait_until(
        "vllm:num_requests_waiting through the aggregator",
        colon_name_answers,
        timeout_s=30,
        details=lambda: str(answers[-1:]),
    )

    fresh.fleet.set_load(QUEUE, _idle())
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_external_ttft_p95_value_target(fresh: Engines) -> None:
    """External ``llm_time_to_first_token_p95_seconds``, Value 500m, ``model_name`` selector:
    the namespace's p95 of one model, whatever the other Deployment's pods report."""
    scenario = fresh.scenarios[LATENCY]
    # deploy/examples/engines/hpa-latency-ttft-p95.yaml without its queue metric (this test is
    # about the percentile alone), on this Deployment's model, max 4.
    manifest = example_hpa("engines/hpa-latency-ttft-p95.yaml", max_replicas=4)
    manifest["metadata"]["name"] = LATENCY
    manifest["spec"]["scaleTargetRef"]["name"] = LATENCY
    ttft = manifest["spec"]["metrics"][0]
    assert ttft["external"]["metric"]["name"] == "llm_time_to_first_token_p95_seconds"
    ttft["external"]["metric"]["selector"] = {"matchLabels": {"model_name": "gemma-2-9b"}}
    manifest["spec"]["metrics"] = [ttft]
    name = "llm_time_to_first_token_p95_seconds"
    target = 0.5
    assert ttft["external"]["target"] == {"type": "Value", "value": "500m"}
    hpa = scenario.apply_hpa(manifest)
    # No request yet: the engine answers 0, the HPA is active and holds the minimum.
    wait_active(scenario, hpa, {name: 0})
    scenario.hold(hpa, 1, seconds=2)

    # Slow requests on the other model's pods must not count.
    fresh.fleet.observe_ttft(QUEUE, 9.0, 50)
    scenario.hold(hpa, 1, seconds=3)
    assert current_metrics(scenario, hpa)[name] == 0, scenario.diagnostics(hpa)

    # 20 requests at 0.8 s: all in vLLM's (0.75, 1.0] bucket, p95 = 0.75 + 0.25 × 0.95 = 0.9875.
    p95 = 0.75 + 0.25 * 0.95
    fresh.fleet.observe_ttft(LATENCY, 0.8, 20)
    seen: list[int] = []
    scenario.wait_replicas(hpa, 4, seen=seen)
    expected_first = external_value_replicas(p95, target, 1)
    assert expected_first == 2
    assert first_step(seen) == expected_first, scenario.diagnostics(hpa)
    assert f"external metric {name}" in rescale_reasons(scenario, hpa)[0]
    wait_current(scenario, hpa, {name: p95})  # served to the milli-unit: 0.987 or 0.988
    assert_healthy(scenario, hpa)

    # Fast requests on every pod: 4 × 2000 at 0.05 s bury the 20 slow ones (0.25 %), the p95
    # falls in (0.04, 0.06]: ceil(0.059 / 0.5 × 4) = 1.
    wait_scraped(fresh, LATENCY)
    pods = fresh.fleet.observe_ttft(LATENCY, 0.05, 2000)
    fast = 0.04 + 0.02 * (0.95 * (20 + 2000 * len(pods)) - 0) / (2000 * len(pods))
    assert external_value_replicas(fast, target, len(pods)) == 1
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_every_engine_example_passes_a_server_dry_run(engines: Engines) -> None:
    """The HPA validation accepts every example, ``vllm:num_requests_waiting`` included."""
    autoscaling = cast(Any, k8s.AutoscalingV2Api(engines.api))
    files = sorted((EXAMPLES_DIR / "engines").glob("*.yaml"))
    assert len(files) == 8
    for path in files:
        manifest = yaml.safe_load(path.read_text())
        body = copy.deepcopy(manifest)
        created = autoscaling.create_namespaced_horizontal_pod_autoscaler(
            NAMESPACE, body, dry_run="All", field_validation="Strict"
        )
        assert created.metadata.name == manifest["metadata"]["name"], path.name
