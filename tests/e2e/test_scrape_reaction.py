"""``--scrape-pods`` in Kubernetes mode on the real control plane: the targets come from the
cluster, every JetStream and TPU preset is answered from the pods as the Prometheus path answers
it, and the HPA reacts to a load step sooner.

The rig (a control plane of its own, its HPA controller at the default 15 s sync, downscale
stabilization 0 so that a step down moves the HPA as soon as one up does):

- deploy/base's RBAC and deploy/examples/scrape/rbac.yaml, as shipped; the shape of Managed
  Prometheus' PodMonitoring CRDs and deploy/monitoring's two PodMonitorings (``jetstream`` on port
  9988, ``tpu-metrics-exporter`` in kube-system on 2112), as shipped;
- the JetStream Deployment with 2 pods, each given a loopback address of its own as ``podIP`` and a
  simulated JetStream server there on 9988; a TPU device-plugin pod in kube-system
  (``k8s-app: tpu-device-plugin``) with the simulated TPU exporter on its ``podIP``:2112;
- a real Prometheus scraping the same exporters every 15 s (the guide's PodMonitoring interval);
- the adapter with default cache settings, first without ``--scrape-pods`` (the Prometheus path),
  then with it and no ``--scrape-targets`` (Kubernetes mode), each registered with the aggregator.

The reaction: an HPA on the External total ``jetstream_prefill_backlog_size`` (AverageValue 10)
scales a second Deployment, so its replica count never changes the metric; the test steps the
pods' backlog between 5 and 15 (totals 10 and 30: 1 and 3 replicas), :data:`STEPS` times per path,
at phases spread evenly over the HPA's sync (:data:`PHASES_S`), and times each step, from the
moment the exporters report the new value to the HPA's new ``status.desiredReplicas``. With
scraping every step must be seen at the next sync (at most the sync period + 2 s) and the served
values' p99 age stays under 1 s. Between the two paths, the Prometheus path runs the same steps
with ``--cache-ttl 0``: the default cache may not make the HPA react more than 1 s later. The
figures are printed (recorded in docs/benchmarks.md).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from sim.jetstream import SimTpuExporter
from sim.prometheus import LocalPrometheus
from tests.e2e.auth_adapter import Adapter
from tests.e2e.scenario import (
    ADAPTER_USER,
    CLUSTER,
    NAMESPACE,
    Load,
    PodFleet,
    Scenario,
    apply_base_rbac,
    apply_manifest,
    deployment_manifest,
    example_hpa,
)
from tests.support import REPO
from tests.support.controlplane import ControlPlane, mark_pod_ready, untyped
from tests.support.crds import MONITORING_CRDS, install_crds
from tests.support.plane import running
from tests.support.presets import jetstream_and_tpu_paths
from tests.support.waiting import wait_until

pytestmark = pytest.mark.e2e

HPA_SYNC_S = 15
SCRAPE = "15s"
STEPS = 5
POD_PORT = 9988
TPU_IP, TPU_PORT = "127.0.0.10", 2112
TARGET = "reaction-target"
LOW, HIGH = (
    Load(prefill_backlog=5),
    Load(prefill_backlog=15, slots=(0.5, 0.25), memory_fraction=0.5),
)
"""Per pod: totals 10 and 30 over 2 pods, so 1 and 3 replicas at an AverageValue of 10."""
PHASES_S = (1.5, 4.5, 7.5, 10.5, 13.5)
"""Where each step lands, in seconds after the HPA sync that answered the previous one: spread
evenly over the 15 s sync, so each path is measured at every phase (with scraping, a step at
phase p should move the HPA at the next sync, 15 - p seconds later)."""
REPORT: dict[str, Any] = {}


def start_adapter(
    plane: ControlPlane, kubeconfig: Path, prometheus: LocalPrometheus, log: Path, *extra: str
) -> Adapter:
    """The adapter with default cache settings (``extra`` args added), the APIs routed to it."""
    args = [
        "--kubeconfig", str(kubeconfig),
        "--prometheus-url", prometheus.url,
        "--cluster", CLUSTER,
        "--shutdown-timeout", "5",
        *extra,
    ]  # fmt: skip
    adapter = Adapter.start(args, log=log, plane=plane)
    plane.register_adapter(adapter.port, insecure=True)
    plane.wait_apiservices_available(timeout=60)
    return adapter


@dataclass
class Rig:
    scenario: Scenario
    kubeconfig: Path
    work: Path
    adapters: list[Adapter] = field(default_factory=list)

    def stop(self) -> None:
        for adapter in self.adapters:
            adapter.stop()

    def serve(self, *extra: str) -> Adapter:
        """Replace the adapter by one started with ``extra`` args."""
        self.stop()
        log = self.work / f"adapter-{len(self.adapters)}.log"
        scenario = self.scenario
        adapter = start_adapter(scenario.plane, self.kubeconfig, scenario.prometheus, log, *extra)
        self.adapters.append(adapter)
        scenario.adapter = adapter
        return adapter

    def answers(self) -> dict[str, Any]:
        """Every JetStream and TPU preset's answer in the workload's namespace: value per pod
        (Pods) or per series (External); none may be empty."""
        out: dict[str, Any] = {}
        for path in jetstream_and_tpu_paths(NAMESPACE):
            status, body = self.scenario.raw(path)
            assert status == 200, (path, status, body)
            out[path] = sorted(
                (
                    (i.get("describedObject") or {}).get("name", ""),
                    str(i.get("metricLabels")),
                    i["value"],
                )
                for i in body["items"]
            )
            assert out[path], (path, body)
        return out

    def debug(self, adapter: Adapter, path: str) -> dict[str, Any]:
        cert = self.scenario.plane.client_cert("scrape-e2e", ("system:masters",))
        answer = adapter.direct(path, cert=cert)
        assert answer.status == 200, answer
        return answer.body

    def metrics(self, adapter: Adapter) -> str:
        """The adapter's own ``/metrics`` text."""
        text = self.debug(adapter, "/metrics")["raw"]
        assert isinstance(text, str)
        return text


def _tpu_plugin(api: k8s.ApiClient) -> None:
    """The device plugin's pod in kube-system, Running at :data:`TPU_IP`."""
    core = untyped(k8s.CoreV1Api(api))
    wait_until(
        "kube-system's default ServiceAccount",
        lambda: any(
            s.metadata.name == "default"
            for s in core.list_namespaced_service_account("kube-system").items
        ),
        timeout_s=30,
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "tpu-device-plugin-0", "labels": {"k8s-app": "tpu-device-plugin"}},
        "spec": {
            "containers": [
                {
                    "name": "tpu-device-plugin",
                    "image": "example.invalid/tpu-device-plugin:e2e",
                    "ports": [{"containerPort": TPU_PORT, "name": "metrics"}],
                }
            ]
        },
    }
    core.create_namespaced_pod("kube-system", pod)
    mark_pod_ready(api, "kube-system", "tpu-device-plugin-0", pod_ip=TPU_IP)


def _shipped(api: k8s.ApiClient) -> None:
    """deploy/base's RBAC, the scrape path's, and deploy/monitoring's two PodMonitorings."""
    apply_base_rbac(api)
    for obj in yaml.safe_load_all((REPO / "deploy/examples/scrape/rbac.yaml").read_text()):
        apply_manifest(api, obj)
    install_crds(api, *MONITORING_CRDS)
    custom = untyped(k8s.CustomObjectsApi(api))
    for name in ("podmonitoring-jetstream.yaml", "podmonitoring-tpu-metrics-exporter.yaml"):
        obj = yaml.safe_load((REPO / "deploy/monitoring" / name).read_text())
        namespace = obj["metadata"]["namespace"]
        custom.create_namespaced_custom_object(
            "monitoring.googleapis.com", "v1", namespace, "podmonitorings", obj
        )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    work = tmp_path_factory.mktemp("scrape-reaction")
    with contextlib.ExitStack() as stack:
        plane = stack.enter_context(
            running(ControlPlane(hpa_sync_period_s=HPA_SYNC_S, downscale_stabilization_s=0))
        )
        api = stack.enter_context(plane.admin_client())
        _shipped(api)
        tpu = SimTpuExporter(cluster=CLUSTER, host=TPU_IP, port=TPU_PORT).start()
        stack.callback(tpu.stop)
        _tpu_plugin(api)
        prometheus = LocalPrometheus([tpu.target], scrape_interval=SCRAPE).start()
        stack.callback(prometheus.stop)
        kubeconfig = plane.kubeconfig_for(
            ADAPTER_USER, ("system:serviceaccounts", "system:serviceaccounts:custom-metrics")
        )
        # The Prometheus path first; the tests switch to the pod-scrape path.
        adapter = start_adapter(plane, kubeconfig, prometheus, work / "adapter-0.log")
        fleet = PodFleet(plane, prometheus, tpu, pod_port=POD_PORT)
        scenario = Scenario(
            plane=plane, prometheus=prometheus, tpu=tpu, adapter=adapter, fleet=fleet, api=api
        )
        rig = Rig(scenario=scenario, kubeconfig=kubeconfig, work=work, adapters=[adapter])
        stack.callback(rig.stop)
        wait_until(
            "the default ServiceAccount",
            lambda: any(
                s.metadata.name == "default"
                for s in untyped(k8s.CoreV1Api(api))
                .list_namespaced_service_account(NAMESPACE)
                .items
            ),
            timeout_s=30,
        )
        apply_manifest(api, deployment_manifest(replicas=2))
        apply_manifest(
            api, deployment_manifest(name=TARGET, labels={"app": TARGET}, container="target")
        )
        fleet.start()
        stack.callback(fleet.stop)
        scenario.wait_pods(2)
        yield rig


def _hpa(rig: Rig) -> str:
    hpa = example_hpa("hpa-external-prefill-backlog.yaml", max_replicas=4)
    hpa["metadata"]["name"] = "reaction"
    hpa["spec"]["scaleTargetRef"]["name"] = TARGET
    return rig.scenario.apply_hpa(hpa)


def _desired(rig: Rig, hpa: str) -> int | None:
    status = rig.scenario.hpa(hpa).get("status") or {}
    value = status.get("desiredReplicas")
    return int(value) if value is not None else None


def _step(rig: Rig, hpa: str, label: str, load: Load, want: int) -> tuple[float, float]:
    """Set ``load``; when the HPA's desire becomes ``want``: (seconds it took, that moment)."""
    rig.scenario.set_load(load)
    began = time.monotonic()

    def moved() -> bool:
        return _desired(rig, hpa) == want

    wait_until(
        f"{label} to move the HPA to {want}",
        moved,
        timeout_s=2 * HPA_SYNC_S + 30,
        interval_s=0.05,
        details=lambda: rig.scenario.diagnostics(hpa),
    )
    now = time.monotonic()
    return round(now - began, 2), now


def _reaction_times(rig: Rig, path: str) -> list[float]:
    """One step per phase of :data:`PHASES_S`, each timed from the exporters' new value to the
    HPA's new ``desiredReplicas``. A first, untimed step finds the sync's phase."""
    scenario = rig.scenario
    scenario.set_load(LOW)
    hpa = _hpa(rig)
    wait_until(
        f"{path}: the HPA at 1 replica on the low load",
        lambda: (
            _desired(rig, hpa) == 1 and scenario.hpa_conditions(hpa).get("ScalingActive") == "True"
        ),
        timeout_s=90,
        details=lambda: scenario.diagnostics(hpa),
    )
    _, synced = _step(rig, hpa, f"{path}: the first step", HIGH, 3)
    times = []
    for step, phase in enumerate(PHASES_S[:STEPS]):
        time.sleep(max(0.0, synced + phase - time.monotonic()))
        load, want = (LOW, 1) if step % 2 == 0 else (HIGH, 3)
        took, moved_at = _step(rig, hpa, f"{path}: step {step + 1}", load, want)
        times.append(took)
        # The sync that moved it; a move later than one period after the step was the next one.
        synced = moved_at
    scenario.delete_hpa(hpa)
    return times


def _summary(times: list[float]) -> dict[str, float]:
    return {"min": min(times), "median": statistics.median(times), "max": max(times)}


def _counter(metrics_text: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of counter ``name`` (``name_total`` lines)."""
    out = {}
    for line in metrics_text.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name) + 1 :].rsplit(" ", 1)
            out[labels.rstrip("}")] = float(value)
    return out


def _value_age_buckets(metrics_text: str) -> dict[float, float]:
    """Cumulative counts per bucket bound of ``llm_metrics_adapter_value_age_seconds``."""
    buckets = {}
    for line in metrics_text.splitlines():
        if line.startswith("llm_metrics_adapter_value_age_seconds_bucket"):
            bound = line.split('le="', 1)[1].split('"', 1)[0]
            buckets[float(bound)] = float(line.rsplit(" ", 1)[1])
    return buckets


def _p99(before: dict[float, float], after: dict[float, float]) -> float:
    """The smallest bucket bound holding 99 % of the values served between the two readings."""
    window = {bound: after[bound] - before.get(bound, 0.0) for bound in after}
    total = window[float("inf")]
    assert total > 0, "no value was served"
    return min(bound for bound, count in window.items() if count >= 0.99 * total)


def test_the_prometheus_path_answers_every_preset_and_reacts_within_two_syncs_and_a_scrape(
    rig: Rig,
) -> None:
    rig.scenario.set_load(HIGH)
    rig.scenario.wait_scraped(timeout_s=45)
    REPORT["answers"] = rig.answers()
    times = _reaction_times(rig, "Prometheus path")
    REPORT["prometheus"] = times
    assert max(times) <= 2 * HPA_SYNC_S + 15 + 5, times


def test_the_result_cache_costs_the_hpa_no_sync(rig: Rig) -> None:
    """The same steps at the same phases with ``--cache-ttl 0``: the default cache (its
    sample-aware expiry, the prefetch and the rendered responses) may not make the HPA react
    later, by more than 1 s at the median or at the max."""
    if "prometheus" not in REPORT:
        pytest.fail("the default cache's reaction times were not measured (its test failed first)")
    rig.serve("--cache-ttl", "0")
    times = _reaction_times(rig, "Prometheus path, cache off")
    REPORT["cache_off"] = times
    cached, uncached = _summary(REPORT["prometheus"]), _summary(times)
    print(f"\nreaction, default cache: {cached} {REPORT['prometheus']}")
    print(f"reaction, --cache-ttl 0: {uncached} {times}")
    assert cached["median"] <= uncached["median"] + 1.0, (cached, uncached)
    assert cached["max"] <= uncached["max"] + 1.0, (cached, uncached)


def test_scraping_the_pods_answers_every_preset_as_prometheus_does(rig: Rig) -> None:
    if "answers" not in REPORT:
        pytest.fail("the Prometheus path's answers were not recorded (its test failed first)")
    adapter = rig.serve("--scrape-pods")
    rig.scenario.set_load(HIGH)
    assert rig.answers() == REPORT["answers"]
    for path in jetstream_and_tpu_paths(NAMESPACE):
        trace = rig.debug(adapter, "/debug/query?path=" + path)
        assert trace["backend"]["name"] == "scrape", (path, trace["backend"])
    scrapes = _counter(rig.metrics(adapter), "llm_metrics_adapter_scrapes_total")
    assert set(scrapes) == {'result="ok"'}, scrapes


def test_scraping_the_pods_makes_the_hpa_react_sooner(rig: Rig) -> None:
    if "prometheus" not in REPORT or len(rig.adapters) < 2:
        pytest.fail(
            "the Prometheus path's reaction times were not measured (its test failed first)"
        )
    adapter = rig.adapters[-1]
    before = _value_age_buckets(rig.metrics(adapter))
    times = _reaction_times(rig, "pod-scrape path")
    REPORT["scrape"] = times
    REPORT["value_age_p99_s"] = _p99(before, _value_age_buckets(rig.metrics(adapter)))
    scraped, plain = _summary(times), _summary(REPORT["prometheus"])
    REPORT["summary"] = {
        "prometheus": plain,
        "scrape": scraped,
        "ratio": round(scraped["median"] / plain["median"], 2),
    }
    print(f"\nreaction to a load step (s): {REPORT['summary']}, times {times}")
    print(f"value age p99 with scraping: {REPORT['value_age_p99_s']} s")
    # The pods' value is read at the HPA's own request: every step is seen at the first sync
    # after it, whatever its phase. The Prometheus path waits for a scrape as well, and gains
    # nothing only for steps between a scrape and the sync after it.
    assert scraped["max"] <= HPA_SYNC_S + 2, REPORT["summary"]
    assert scraped["median"] <= plain["median"], REPORT["summary"]
    assert sum(times) < sum(REPORT["prometheus"]), REPORT
    assert REPORT["value_age_p99_s"] <= 1.0, REPORT
