"""Any resource, any CRD: the adapter process under its own identity (deploy/base's RBAC) on the
real control plane, over a real Prometheus, with a prometheus-adapter rules file naming Jobs,
nodes and a CRD that does not exist when the adapter starts.

- the rule naming the missing CRD is reported in ``/debug/metrics`` and does not stop the others;
- ``jobs.batch/*`` and ``nodes/*`` with a ``labelSelector`` answer for the objects that exist
  and match (series of other pools and of objects that do not exist are not served);
- once the CRD exists (and, as docs/configuration.md says, the ClusterRole is widened to it),
  its metric is served with the selector honoured, the kind and version from discovery, and
  without restarting the adapter; before the RBAC is widened the answer names the permission.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from sim.prometheus import LocalPrometheus
from tests.e2e.auth_adapter import Adapter, Answer, until
from tests.e2e.scenario import ADAPTER_USER, apply_base_rbac
from tests.support.cheese import brands_crd, override_rule, template_rule
from tests.support.controlplane import ControlPlane, role_binding, untyped
from tests.support.waiting import wait_until

NS = "anyres-e2e"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
RULES = {
    "rules": [
        override_rule("cheddar_sold", "brand", "brand", "cheese.io"),
        override_rule("train_step_seconds", "job_name", "job", "batch"),
        template_rule("node_memory_used", "node"),
    ]
}
JOBS = {"train-a": {"pool": "a"}, "train-b": {"pool": "b"}}
NODES = {"anyres-a1": {"pool": "a"}, "anyres-a2": {"pool": "a"}, "anyres-b1": {"pool": "b"}}
BRANDS = {"gouda": {"age": "old"}, "brie": {"age": "young"}}
BRANDS_READER = "llm-metrics-adapter-brands-reader"


def _series() -> CollectorRegistry:
    """Series for objects that exist, and for some that do not (``ghost``, another pool)."""
    registry = CollectorRegistry(auto_describe=False)
    sold = Gauge("cheddar_sold", "", ["namespace", "brand"], registry=registry)
    for i, brand in enumerate([*BRANDS, "ghost"]):
        sold.labels(NS, brand).set(i + 1)
    step = Gauge("train_step_seconds", "", ["namespace", "job_name"], registry=registry)
    for i, job in enumerate([*JOBS, "ghost"]):
        step.labels(NS, job).set(10 * (i + 1))
    memory = Gauge("node_memory_used", "", ["node"], registry=registry)
    for i, node in enumerate([*NODES, "anyres-ghost"]):
        memory.labels(node).set(100 * (i + 1))
    return registry


def _create_objects(api: k8s.ApiClient) -> None:
    core = untyped(k8s.CoreV1Api(api))
    batch = untyped(k8s.BatchV1Api(api))
    core.create_namespace({"metadata": {"name": NS}})
    for name, labels in NODES.items():
        core.create_node({"metadata": {"name": name, "labels": labels}})
    pod = {"containers": [{"name": "c", "image": "example.invalid/none"}], "restartPolicy": "Never"}
    for name, labels in JOBS.items():
        batch.create_namespaced_job(
            NS, {"metadata": {"name": name, "labels": labels}, "spec": {"template": {"spec": pod}}}
        )


def _delete_objects(api: k8s.ApiClient) -> None:
    core = untyped(k8s.CoreV1Api(api))
    rbac = untyped(k8s.RbacAuthorizationV1Api(api))
    deletions: list[tuple[Any, str]] = [(core.delete_namespace, NS)]
    deletions += [(core.delete_node, name) for name in NODES]
    deletions += [
        (
            untyped(k8s.ApiextensionsV1Api(api)).delete_custom_resource_definition,
            "brands.cheese.io",
        ),
        (rbac.delete_cluster_role, BRANDS_READER),
        (rbac.delete_cluster_role_binding, BRANDS_READER),
    ]
    for delete, name in deletions:
        try:
            delete(name)
        except ApiException as exc:
            if exc.status != 404:
                raise


@pytest.fixture(scope="module")
def adapter(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Adapter]:
    work = tmp_path_factory.mktemp("any-resource")
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    server, thread = start_http_server(0, addr="127.0.0.1", registry=_series())
    with control_plane.admin_client() as api:
        apply_base_rbac(api)
        _create_objects(api)
        try:
            with LocalPrometheus([f"127.0.0.1:{server.server_port}"]) as prometheus:
                prometheus.wait_for("count(cheddar_sold)", bool, timeout=30)
                kubeconfig = control_plane.kubeconfig_for(
                    ADAPTER_USER,
                    ("system:serviceaccounts", "system:serviceaccounts:custom-metrics"),
                )
                args = ["--kubeconfig", str(kubeconfig), "--prometheus-url", prometheus.url]
                args += ["--all-clusters", "--config", str(rules), "--discovery-interval", "2"]
                args += ["--cache-ttl", "1", "--shutdown-timeout", "5"]
                with Adapter.running(args, log=work / "adapter.log", plane=control_plane) as ad:
                    control_plane.register_adapter(ad.port, insecure=True)
                    control_plane.wait_apiservices_available(timeout=90)
                    yield ad
        finally:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)
            _delete_objects(api)


def _get(adapter: Adapter, path: str, **params: str) -> Answer:
    query = f"?{urllib.parse.urlencode(params)}" if params else ""
    return adapter.via_aggregator(adapter.plane.kubeconfig_path, path + query)


def _values(answer: Answer) -> dict[str, str]:
    assert answer.status == 200, answer
    return {i["describedObject"]["name"]: i["value"] for i in answer.body["items"]}


def _debug(adapter: Adapter) -> dict[str, Any]:
    cert = adapter.plane.client_cert("debug-admin", ("system:masters",))
    answer = adapter.direct("/debug/metrics", cert=cert)
    assert answer.status == 200, answer
    return answer.body


def test_a_missing_crd_is_reported_and_the_other_rules_serve(adapter: Adapter) -> None:
    def listed(answer: Answer) -> bool:
        return answer.status == 200 and {
            "jobs.batch/train_step_seconds",
            "nodes/node_memory_used",
            "namespaces/cheddar_sold",
        } <= {r["name"] for r in answer.body["resources"]}

    until("the rules' metrics in discovery", lambda: _get(adapter, C2), listed, timeout_s=60)
    debug = _debug(adapter)
    assert debug["resourceMapping"]["source"] == "the cluster's discovery"
    assert debug["resourceMapping"]["discovery"]["error"] is None
    [(rule, [line])] = debug["missingResources"].items()
    assert rule.endswith("#rules[0]") and "resources.overrides.brand" in line
    missing = _get(adapter, f"{C2}/namespaces/{NS}/brands.cheese.io/*/cheddar_sold")
    assert missing.status == 404, missing


def test_jobs_and_nodes_honour_the_label_selector(adapter: Adapter) -> None:
    jobs = f"{C2}/namespaces/{NS}/jobs.batch/*/train_step_seconds"
    assert _values(_get(adapter, jobs, labelSelector="pool=a")) == {"train-a": "10"}
    assert _values(_get(adapter, jobs, labelSelector="pool in (a,b)")) == {
        "train-a": "10",
        "train-b": "20",
    }
    assert _values(_get(adapter, jobs)) == {"train-a": "10", "train-b": "20"}  # no ghost
    none = _get(adapter, jobs, labelSelector="pool=c")
    assert none.status == 404 and "pool=c" in none.body["message"], none
    nodes = f"{C2}/nodes/*/node_memory_used"
    assert _values(_get(adapter, nodes, labelSelector="pool=a")) == {
        "anyres-a1": "100",
        "anyres-a2": "200",
    }
    assert _values(_get(adapter, nodes, labelSelector="pool!=a")) == {"anyres-b1": "300"}
    item = _get(adapter, nodes, labelSelector="pool=b").body["items"][0]
    assert item["describedObject"] == {"kind": "Node", "name": "anyres-b1", "apiVersion": "v1"}
    status = _debug(adapter)["objectCache"]
    assert status["jobs.batch"]["ready"] and status["nodes"]["ready"]


def test_a_crd_created_after_the_adapter_started_is_served(adapter: Adapter) -> None:
    plane = adapter.plane
    with plane.admin_client() as api:
        untyped(k8s.ApiextensionsV1Api(api)).create_custom_resource_definition(
            brands_crd("v1alpha1")
        )
        custom = untyped(k8s.CustomObjectsApi(api))

        def create_brands() -> bool | None:
            try:
                for name, labels in BRANDS.items():
                    custom.create_namespaced_custom_object(
                        "cheese.io",
                        "v1alpha1",
                        NS,
                        "brands",
                        {
                            "apiVersion": "cheese.io/v1alpha1",
                            "kind": "Brand",
                            "metadata": {"name": name, "labels": labels},
                        },
                    )
            except ApiException as exc:
                if exc.status == 404:  # the CRD is not established yet
                    return None
                raise
            return True

        wait_until("the CRD to be served", create_brands, timeout_s=60)

    path = f"{C2}/namespaces/{NS}/brands.cheese.io/*/cheddar_sold"
    # Served, but the adapter may not watch brands yet: the answer names the permission.
    forbidden = until(
        "the brands metric to be served",
        lambda: _get(adapter, path, labelSelector="age=old"),
        lambda a: a.status != 404,
        timeout_s=60,
    )
    assert forbidden.status == 500, forbidden
    assert "RBAC" in forbidden.body["message"] and "brands.cheese.io" in forbidden.body["message"]
    assert _debug(adapter)["missingResources"] == {}

    # As docs/configuration.md says: a ClusterRole rule with the CRD's group, plural, list, watch.
    with plane.admin_client() as api:
        rbac = untyped(k8s.RbacAuthorizationV1Api(api))
        rbac.create_cluster_role(
            {
                "metadata": {"name": BRANDS_READER},
                "rules": [
                    {
                        "apiGroups": ["cheese.io"],
                        "resources": ["brands"],
                        "verbs": ["list", "watch"],
                    }
                ],
            }
        )
        rbac.create_cluster_role_binding(role_binding(BRANDS_READER, BRANDS_READER, [ADAPTER_USER]))
    answer = until(
        "the brands metric after the RBAC is widened",
        lambda: _get(adapter, path, labelSelector="age=old"),
        lambda a: a.status == 200,
        timeout_s=90,
    )
    assert _values(answer) == {"gouda": "1"}
    assert answer.body["items"][0]["describedObject"]["apiVersion"] == "cheese.io/v1alpha1"
    assert answer.body["items"][0]["describedObject"]["kind"] == "Brand"
    assert _values(_get(adapter, path)) == {"brie": "2", "gouda": "1"}  # no ghost
