"""The adapter under its own identity behind a real kube-apiserver's aggregator, for the e2e
tests of authentication and authorization (``test_auth``, ``test_kubernetes_faults``).

:func:`serve_adapter` runs ``python -m adapter serve --kubeconfig …`` over a stub Prometheus that
answers every query with two pod series, one for a pod that exists (``web-1``) and one for a pod
that does not, and registers it with the control plane's aggregator. :func:`apply_rbac` grants the
adapter's user what the deploy manifests grant (auth-delegator, the authentication configmap
reader, list/watch of the objects it filters by) and creates the namespace :data:`NS` with pods
``web-1`` and ``db-1``; :func:`grant_metrics_reader` lets a user read the metrics APIs.
:class:`Adapter` reaches the adapter directly or through the aggregator and gives an
:class:`Answer`.
"""

from __future__ import annotations

import contextlib
import json
import ssl
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.adapter_process import AdapterProcess
from tests.support.controlplane import ControlPlane, role_binding, untyped
from tests.support.servers import LoopbackServer, serving
from tests.support.waiting import wait_until

__all__ = [
    "EXTERNAL_PATH",
    "NS",
    "PODS_PATH",
    "Adapter",
    "Answer",
    "apply_rbac",
    "grant_metrics_reader",
    "serve_adapter",
    "until",
]

NS = "auth-e2e"
METRIC = "jetstream_prefill_backlog_size"
PODS_PATH = (
    f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/{METRIC}?labelSelector=app%3Dweb"
)
EXTERNAL_PATH = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/{METRIC}"


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
    with serving(LoopbackServer(("127.0.0.1", 0), _PromStub)) as url:
        yield url


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


def until(
    what: str, request: Callable[[], Answer], ok: Callable[[Answer], bool], timeout_s: float
) -> Answer:
    """Repeat ``request`` until ``ok`` accepts its answer; return that answer."""

    def probe() -> Answer | None:
        answer = request()
        return answer if ok(answer) else None

    return wait_until(what, probe, timeout_s=timeout_s)


# --------------------------------------------------------------------------- the adapter


@dataclass
class Adapter(AdapterProcess):
    """The adapter process, reached directly and through ``plane``'s aggregator."""

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


def apply_rbac(plane: ControlPlane, adapter_user: str) -> None:
    """What the deploy manifests grant the adapter, to ``adapter_user``; the namespace and pods."""
    users = [adapter_user]
    with plane.admin_client() as api:
        rbac = untyped(k8s.RbacAuthorizationV1Api(api))
        core = untyped(k8s.CoreV1Api(api))
        rbac.create_cluster_role_binding(
            role_binding("lma-e2e:auth-delegator", "system:auth-delegator", users)
        )
        rbac.create_namespaced_role_binding(
            "kube-system",
            role_binding(
                "lma-e2e:auth-reader",
                "extension-apiserver-authentication-reader",
                users,
                role_kind="Role",
            ),
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
        rbac.create_cluster_role_binding(role_binding("lma-e2e:objects", "lma-e2e:objects", users))
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


def grant_metrics_reader(plane: ControlPlane, user: str) -> None:
    """Let ``user`` get and list everything in the custom and external metrics APIs."""
    with plane.admin_client() as api:
        rbac = untyped(k8s.RbacAuthorizationV1Api(api))
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
            role_binding(f"lma-e2e:metrics-reader:{user}", "lma-e2e:metrics-reader", [user])
        )


@contextlib.contextmanager
def serve_adapter(
    plane: ControlPlane, kubeconfig: Path, log: Path, *, auth_cache_ttl: float = 1
) -> Iterator[Adapter]:
    """``python -m adapter serve`` with ``kubeconfig`` over a stub Prometheus, registered with
    ``plane``'s aggregator; yields once the APIServices are Available, stops it on exit."""
    with prometheus_stub() as prometheus_url:
        # --all-clusters: the stub serves one cluster and carries no cluster label.
        args = [
            "--kubeconfig",
            str(kubeconfig),
            "--prometheus-url",
            prometheus_url,
            "--all-clusters",
        ]
        args += ["--auth-cache-ttl", str(auth_cache_ttl), "--shutdown-timeout", "5"]
        with Adapter.running(args, log=log, plane=plane) as running:
            plane.register_adapter(running.port, insecure=True)
            plane.wait_apiservices_available(timeout=90)
            yield running
