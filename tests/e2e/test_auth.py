"""The adapter behind a real kube-apiserver's aggregator: TLS, delegated authentication and
authorization, and who may assert an identity.

The adapter runs as a subprocess (``python -m adapter serve --kubeconfig …``) under its own
identity with the RBAC the deploy manifests grant (auth-delegator, the authentication configmap
reader, list/watch of the objects it filters by). Its Prometheus is a stub answering every query
with two pod series, one for a pod that exists and one for a pod that does not.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane import CertAuthority, ControlPlane, free_port

from .scenario import AdapterProcess, wait_until

pytestmark = pytest.mark.e2e

NS = "auth-e2e"
METRIC = "jetstream_prefill_backlog_size"
PODS_PATH = (
    f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/{METRIC}?labelSelector=app%3Dweb"
)
EXTERNAL_PATH = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/{METRIC}"
FORGED = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}
_REPO = Path(__file__).resolve().parents[2]
_ADAPTER_START_S = 60.0
_STOP_GRACE_S = 15.0


def until(
    what: str, request: Callable[[], Answer], ok: Callable[[Answer], bool], timeout_s: float
) -> Answer:
    """Repeat ``request`` until ``ok`` accepts its answer; return that answer."""

    def probe() -> Answer | None:
        answer = request()
        return answer if ok(answer) else None

    return wait_until(what, probe, timeout_s=timeout_s)


def _untyped(api: object) -> Any:
    """The generated client's model types get in the way of plain dict bodies."""
    return api


# --------------------------------------------------------------------------- stub Prometheus


class _PromStub(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        path = self.path.split("?")[0]
        if path.endswith("/api/v1/query"):
            now = time.time()
            data: Any = {
                "resultType": "vector",
                "result": [
                    {"metric": {"namespace": NS, "pod": "web-1"}, "value": [now, "3"]},
                    {"metric": {"namespace": NS, "pod": "ghost"}, "value": [now, "5"]},
                ],
            }
        else:
            data = []
        body = json.dumps({"status": "success", "data": data}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = _answer
    do_POST = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def prometheus_stub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _PromStub)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- HTTP helpers


@dataclass
class Answer:
    status: int
    body: dict[str, Any]


def _context(
    *, ca: Path | None, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    if ca is None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the adapter's self-signed certificate
    else:
        context = ssl.create_default_context(cafile=str(ca))
    if cert is not None and key is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


def _get(url: str, context: ssl.SSLContext, headers: dict[str, str] | None = None) -> Answer:
    request = urllib.request.Request(url, headers={"Accept": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=15, context=context) as response:
            return Answer(response.status, _decode(response.read()))
    except urllib.error.HTTPError as exc:
        return Answer(exc.code, _decode(exc.read()))


def _decode(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw)
    except ValueError:
        return {"raw": raw.decode("utf-8", errors="replace")}
    return body if isinstance(body, dict) else {"raw": body}


def _kubeconfig_context(kubeconfig: Path) -> ssl.SSLContext:
    config = json.loads(kubeconfig.read_text())
    user = config["users"][0]["user"]
    return _context(
        ca=Path(config["clusters"][0]["cluster"]["certificate-authority"]),
        cert=Path(user["client-certificate"]),
        key=Path(user["client-key"]),
    )


# --------------------------------------------------------------------------- the adapter


@dataclass
class Adapter(AdapterProcess):
    """The adapter process of :mod:`tests.e2e.scenario`, reached through ``plane`` as well."""

    plane: ControlPlane

    def via_aggregator(self, kubeconfig: Path, path: str) -> Answer:
        return _get(self.plane.api_url + path, _kubeconfig_context(kubeconfig))

    def direct(
        self,
        path: str,
        *,
        headers: dict[str, str] | None = None,
        cert: tuple[Path, Path] | None = None,
    ) -> Answer:
        context = _context(ca=None, cert=cert[0] if cert else None, key=cert[1] if cert else None)
        return _get(self.url + path, context, headers)


def _apply_rbac(plane: ControlPlane, adapter_user: str) -> None:
    subject = [{"kind": "User", "name": adapter_user, "apiGroup": "rbac.authorization.k8s.io"}]
    with plane.admin_client() as api:
        rbac = _untyped(k8s.RbacAuthorizationV1Api(api))
        core = _untyped(k8s.CoreV1Api(api))
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": "lma-e2e:auth-delegator"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "system:auth-delegator",
                },
                "subjects": subject,
            }
        )
        rbac.create_namespaced_role_binding(
            "kube-system",
            {
                "metadata": {"name": "lma-e2e:auth-reader"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "extension-apiserver-authentication-reader",
                },
                "subjects": subject,
            },
        )
        rbac.create_cluster_role(
            {
                "metadata": {"name": "lma-e2e:objects"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["pods", "services"],
                        "verbs": ["list", "watch"],
                    },
                    {
                        "apiGroups": ["apps"],
                        "resources": ["deployments", "statefulsets"],
                        "verbs": ["list", "watch"],
                    },
                ],
            }
        )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": "lma-e2e:objects"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "lma-e2e:objects",
                },
                "subjects": subject,
            }
        )
        core.create_namespace({"metadata": {"name": NS}})
        with contextlib.suppress(ApiException):  # the controller may have made it already
            core.create_namespaced_service_account(NS, {"metadata": {"name": "default"}})
        for name in ("web-1", "db-1"):
            core.create_namespaced_pod(
                NS,
                {
                    "metadata": {"name": name, "labels": {"app": name.split("-")[0]}},
                    "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]},
                },
            )


def _grant_metrics_reader(plane: ControlPlane, user: str) -> None:
    with plane.admin_client() as api:
        rbac = _untyped(k8s.RbacAuthorizationV1Api(api))
        with contextlib.suppress(ApiException):
            rbac.create_cluster_role(
                {
                    "metadata": {"name": "lma-e2e:metrics-reader"},
                    "rules": [
                        {
                            "apiGroups": ["custom.metrics.k8s.io", "external.metrics.k8s.io"],
                            "resources": ["*"],
                            "verbs": ["get", "list"],
                        }
                    ],
                }
            )
        rbac.create_cluster_role_binding(
            {
                "metadata": {"name": f"lma-e2e:metrics-reader:{user}"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "lma-e2e:metrics-reader",
                },
                "subjects": [
                    {"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}
                ],
            }
        )


def _healthy(adapter: Adapter) -> bool:
    if adapter.process.poll() is not None:
        raise AssertionError(
            f"the adapter exited with code {adapter.process.returncode}:\n{adapter.tail()}"
        )
    try:
        return adapter.direct("/healthz").status == 200
    except (OSError, ssl.SSLError):
        return False


@contextlib.contextmanager
def serve_adapter(
    plane: ControlPlane, kubeconfig: Path, log: Path, *, auth_cache_ttl: float = 1
) -> Iterator[Adapter]:
    """``python -m adapter serve`` with ``kubeconfig`` over a stub Prometheus, registered with
    ``plane``'s aggregator; yields once the APIServices are Available, stops it on exit."""
    port = free_port()
    with prometheus_stub() as prometheus_url, log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adapter",
                "serve",
                "--kubeconfig",
                str(kubeconfig),
                "--prometheus-url",
                prometheus_url,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--auth-cache-ttl",
                str(auth_cache_ttl),
                "--shutdown-timeout",
                "5",
            ],
            cwd=_REPO,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        running = Adapter(plane=plane, port=port, process=process, log=log)
        try:
            wait_until(
                "the adapter to answer /healthz",
                lambda: _healthy(running),
                timeout_s=_ADAPTER_START_S,
            )
            plane.register_adapter(port, insecure=True)
            plane.wait_apiservices_available(timeout=90)
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def adapter(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Adapter]:
    adapter_user = "llm-metrics-adapter"
    _apply_rbac(control_plane, adapter_user)
    kubeconfig = control_plane.kubeconfig_for(adapter_user)
    log = tmp_path_factory.mktemp("adapter") / "adapter.log"
    with serve_adapter(control_plane, kubeconfig, log) as running:
        yield running


# --------------------------------------------------------------------------- tests


def test_the_admin_gets_discovery_and_values_through_the_aggregator(adapter: Adapter) -> None:
    admin = adapter.plane.kubeconfig_path
    for group_version in ("custom.metrics.k8s.io/v1beta2", "external.metrics.k8s.io/v1beta1"):
        answer = adapter.via_aggregator(admin, f"/apis/{group_version}")
        assert answer.status == 200, (answer, adapter.tail())
        assert answer.body["groupVersion"] == group_version
        assert answer.body["resources"]

    # Pods metric: only the pod that exists and matches the selector (the object cache),
    # though the backend also has a series for a pod that does not exist.
    answer = until(
        "the pods metric to be served",
        lambda: adapter.via_aggregator(admin, PODS_PATH),
        lambda a: a.status == 200,
        timeout_s=30,
    )
    names = [item["describedObject"]["name"] for item in answer.body["items"]]
    assert names == ["web-1"], (answer.body, adapter.tail())

    external = adapter.via_aggregator(admin, EXTERNAL_PATH)
    assert external.status == 200, external
    assert external.body["kind"] == "ExternalMetricValueList"


def test_a_user_without_rbac_is_forbidden(adapter: Adapter) -> None:
    # Through the aggregator the kube-apiserver itself refuses first (same RBAC); the adapter's
    # own SubjectAccessReview refusal is shown by the direct requests below.
    nobody = adapter.plane.kubeconfig_for("nobody")
    for path in (PODS_PATH, EXTERNAL_PATH):
        answer = adapter.via_aggregator(nobody, path)
        assert answer.status == 403, answer
        assert '"nobody"' in answer.body["message"]


def test_a_user_with_a_metrics_reader_role_gets_values(adapter: Adapter) -> None:
    _grant_metrics_reader(adapter.plane, "reader")
    reader = adapter.plane.kubeconfig_for("reader")
    for path in (PODS_PATH, EXTERNAL_PATH):
        answer = until(
            f"reader to be allowed {path}",
            lambda path=path: adapter.via_aggregator(reader, path),  # type: ignore[misc]
            lambda a: a.status != 403,
            timeout_s=15,
        )
        assert answer.status == 200, (answer, adapter.tail())


def test_forged_identity_headers_are_not_believed(adapter: Adapter) -> None:
    path = PODS_PATH
    # No client certificate at all: the headers are stripped, nobody is authenticated.
    answer = adapter.direct(path, headers=FORGED)
    assert answer.status == 401, answer
    assert answer.body["kind"] == "Status" and answer.body["reason"] == "Unauthorized"

    # A certificate from the cluster CA: the adapter sees its CN, never the headers.
    nobody = adapter.plane.client_cert("nobody")
    answer = adapter.direct(path, headers=FORGED, cert=nobody)
    assert answer.status == 403, answer
    assert answer.body["message"].startswith('User "nobody" cannot get resource "pods/')

    # The proxy's CN on a certificate from the wrong CA is just a user of that name.
    impostor = adapter.plane.client_cert("front-proxy-client")
    answer = adapter.direct(path, headers=FORGED, cert=impostor)
    assert answer.status == 403, answer
    assert '"front-proxy-client"' in answer.body["message"]

    # The aggregator's real certificate is believed.
    pki = adapter.plane.tmp_dir / "pki"
    real = (pki / "front-proxy-client.crt", pki / "front-proxy-client.key")
    assert adapter.direct(path, headers=FORGED, cert=real).status == 200


def test_a_client_certificate_user_is_authorized_by_rbac(adapter: Adapter) -> None:
    _grant_metrics_reader(adapter.plane, "cert-reader")
    cert = adapter.plane.client_cert("cert-reader")
    answer = until(
        "cert-reader to be allowed",
        lambda: adapter.direct(EXTERNAL_PATH, cert=cert),
        lambda a: a.status != 403,
        timeout_s=15,
    )
    assert answer.status == 200, answer


def test_bearer_tokens_are_reviewed(adapter: Adapter) -> None:
    with adapter.plane.admin_client() as api:
        core = _untyped(k8s.CoreV1Api(api))
        core.create_namespaced_service_account(NS, {"metadata": {"name": "hpa-like"}})
        token = core.create_namespaced_service_account_token(
            "hpa-like", NS, {"spec": {"expirationSeconds": 600}}
        ).status.token
    user = f"system:serviceaccount:{NS}:hpa-like"
    answer = adapter.direct(EXTERNAL_PATH, headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 403, answer
    assert f'"{user}"' in answer.body["message"]
    assert token not in adapter.tail(100_000)
    bad = adapter.direct(EXTERNAL_PATH, headers={"Authorization": "Bearer not-a-token"})
    assert bad.status == 401


def test_a_rotated_requestheader_ca_is_picked_up_without_restart(adapter: Adapter) -> None:
    plane = adapter.plane
    directory = plane.tmp_dir / "rotation"
    directory.mkdir(exist_ok=True)
    new_ca = CertAuthority(directory, "front-proxy-next")
    cert = new_ca.issue("proxy-next", common_name="front-proxy-client", client=True)

    def attempt() -> int:
        try:
            return adapter.direct(PODS_PATH, headers=FORGED, cert=cert).status
        except (OSError, ssl.SSLError):
            return -1  # the TLS layer does not know the CA yet

    assert attempt() in {-1, 401, 403}
    with plane.admin_client() as api:
        core = _untyped(k8s.CoreV1Api(api))
        current = core.read_namespaced_config_map(
            "extension-apiserver-authentication", "kube-system"
        )
        bundle = (
            current.data["requestheader-client-ca-file"].strip() + "\n" + new_ca.cert_pem.decode()
        )
        core.patch_namespaced_config_map(
            "extension-apiserver-authentication",
            "kube-system",
            {"data": {"requestheader-client-ca-file": bundle}},
        )
    wait_until("the adapter to trust the rotated CA", lambda: attempt() == 200, timeout_s=30)


def test_sigterm_stops_the_adapter_cleanly(adapter: Adapter) -> None:
    # Last test of the module: the fixture's own stop then finds the process gone.
    os.killpg(adapter.process.pid, signal.SIGTERM)
    code = adapter.process.wait(timeout=_STOP_GRACE_S)
    # uvicorn re-raises the captured SIGTERM after a graceful shutdown.
    assert code in {0, -signal.SIGTERM}, adapter.tail()
    assert "Finished server process" in adapter.tail(), adapter.tail()
    with pytest.raises((OSError, ssl.SSLError)):
        socket.create_connection(("127.0.0.1", adapter.port), timeout=2).close()
