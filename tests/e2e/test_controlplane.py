"""Smoke tests of the e2e harness: a real kube-apiserver, its controllers and its aggregator.

The aggregation probe is a stand-in for the adapter (a few lines of ``http.server``); it goes away
once the adapter's own e2e tests exist.
"""

from __future__ import annotations

import json
import ssl
import threading
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from kubernetes import client as k8s

from tests.support.controlplane import (
    CONTROL_PLANE_VERSION,
    CertAuthority,
    ControlPlane,
    mark_pod_ready,
)
from tests.support.waiting import wait_until


@pytest.fixture
def namespace(control_plane: ControlPlane) -> Iterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    with control_plane.admin_client() as api:
        k8s.CoreV1Api(api).create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=name)))
    yield name
    with control_plane.admin_client() as api:
        k8s.CoreV1Api(api).delete_namespace(name)


def test_version_is_the_built_release(control_plane: ControlPlane) -> None:
    with control_plane.admin_client() as api:
        info = k8s.VersionApi(api).get_code()
    assert info.git_version == CONTROL_PLANE_VERSION
    assert (info.major, info.minor) == ("1", CONTROL_PLANE_VERSION.split(".")[1])


def test_deployment_controllers_create_pods_that_can_be_made_ready(
    control_plane: ControlPlane, namespace: str
) -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "server", "namespace": namespace},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "server"}},
            "template": {
                "metadata": {"labels": {"app": "server"}},
                "spec": {"containers": [{"name": "server", "image": "example.invalid/server:1"}]},
            },
        },
    }
    with control_plane.admin_client() as api:
        apps, core = k8s.AppsV1Api(api), k8s.CoreV1Api(api)
        apps.patch_namespaced_deployment(
            "server",
            namespace,
            deployment,
            field_manager="e2e-test",
            _content_type="application/apply-patch+yaml",
        )

        def pods() -> list[Any] | None:
            items = core.list_namespaced_pod(namespace, label_selector="app=server").items
            return items if len(items) == 2 else None

        created = wait_until("the replicaset controller to create 2 pods", pods, timeout_s=60)
        assert all(p.status.phase == "Pending" for p in created)  # no kubelet, no scheduler

        for pod in created:
            mark_pod_ready(api, namespace, pod.metadata.name)
        for pod in created:
            status = core.read_namespaced_pod_status(pod.metadata.name, namespace).status
            assert status is not None
            assert status.phase == "Running"
            assert {c.type: c.status for c in status.conditions or []}["Ready"] == "True"

        def ready_replicas() -> int | None:
            status = apps.read_namespaced_deployment_status("server", namespace).status
            ready = status.ready_replicas if status else None
            return ready if ready == 2 else None

        wait_until("the deployment to report 2 ready replicas", ready_replicas, timeout_s=60)


# --------------------------------------------------------------------------- aggregation probe

_PROBE_RESOURCES = {
    "kind": "APIResourceList",
    "apiVersion": "v1",
    "groupVersion": "external.metrics.k8s.io/v1beta1",
    "resources": [
        {
            "name": "probe_metric",
            "singularName": "",
            "namespaced": True,
            "kind": "ExternalMetricValueList",
            "verbs": ["get"],
        }
    ],
}
_PROBE_GROUPS = {
    "kind": "APIGroupList",
    "apiVersion": "v1",
    "groups": [
        {
            "name": "external.metrics.k8s.io",
            "versions": [{"groupVersion": "external.metrics.k8s.io/v1beta1", "version": "v1beta1"}],
            "preferredVersion": {
                "groupVersion": "external.metrics.k8s.io/v1beta1",
                "version": "v1beta1",
            },
        }
    ],
}


class _ProbeServer(ThreadingHTTPServer):
    daemon_threads = True
    # (path, X-Remote-User, X-Remote-Group values, client cert CN or None) per request.
    seen: list[tuple[str, str | None, list[str], str | None]]


class _ProbeHandler(BaseHTTPRequestHandler):
    server: _ProbeServer

    def do_GET(self) -> None:
        cn = None
        if isinstance(self.connection, ssl.SSLSocket):
            # Only a cert that verified against the front-proxy CA is returned here.
            der = self.connection.getpeercert(binary_form=True)
            if der:
                subject = x509.load_der_x509_certificate(der).subject
                cn = str(subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)
        path = self.path.split("?", 1)[0]
        self.server.seen.append(
            (
                path,
                self.headers.get("X-Remote-User"),
                self.headers.get_all("X-Remote-Group") or [],
                cn,
            )
        )
        body: dict[str, Any] | None = None
        if path == "/apis":
            body = _PROBE_GROUPS
        elif path == "/apis/external.metrics.k8s.io/v1beta1":
            body = _PROBE_RESOURCES
        elif path == "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/probe_metric":
            body = {
                "kind": "ExternalMetricValueList",
                "apiVersion": "external.metrics.k8s.io/v1beta1",
                "metadata": {},
                "items": [
                    {
                        "metricName": "probe_metric",
                        "metricLabels": {},
                        "timestamp": "2026-01-01T00:00:00Z",
                        "value": "42",
                    }
                ],
            }
        data = json.dumps(body if body is not None else {"kind": "Status", "code": 404}).encode()
        self.send_response(200 if body is not None else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def probe_server(control_plane: ControlPlane, tmp_path: Path) -> Iterator[_ProbeServer]:
    ca = CertAuthority(tmp_path, "probe")
    cert, key = ca.issue(
        "probe",
        common_name="probe",
        dns_names=("llm-metrics-adapter.custom-metrics.svc",),
        ip_addresses=("127.0.0.1",),
        server=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    # Ask for a client cert and verify it against the front-proxy CA only: a recorded CN proves
    # the aggregator presented its front-proxy client cert.
    context.verify_mode = ssl.CERT_OPTIONAL
    context.load_verify_locations(str(control_plane.front_proxy_ca_file))
    server = _ProbeServer(("127.0.0.1", 0), _ProbeHandler)
    server.seen = []
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def test_aggregator_proxies_to_a_loopback_extension_server(
    control_plane: ControlPlane, probe_server: _ProbeServer
) -> None:
    port = probe_server.server_address[1]
    names = control_plane.register_adapter(port, insecure=True)
    try:
        control_plane.wait_apiservices_available(60.0, names=["v1beta1.external.metrics.k8s.io"])

        cert, key = control_plane.client_cert("e2e-probe-user", ["system:masters"])
        context = ssl.create_default_context(cafile=str(control_plane.ca_file))
        context.load_cert_chain(str(cert), str(key))
        path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/probe_metric"
        url = control_plane.api_url + path
        with urllib.request.urlopen(url, timeout=10, context=context) as response:
            answer = json.load(response)
        assert answer["items"][0]["value"] == "42"

        proxied = [s for s in probe_server.seen if s[0].endswith("/probe_metric")]
        assert len(proxied) == 1
        _, user, groups, cn = proxied[0]
        assert user == "e2e-probe-user"
        assert "system:masters" in groups
        assert cn == "front-proxy-client"
    finally:
        with control_plane.admin_client() as api:
            registration = k8s.ApiregistrationV1Api(api)
            for name in names:
                registration.delete_api_service(name)
