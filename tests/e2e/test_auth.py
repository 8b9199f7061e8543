"""The adapter behind a real kube-apiserver's aggregator: TLS, delegated authentication and
authorization, and who may assert an identity.

The adapter runs as a subprocess (``python -m adapter serve --kubeconfig …``) under its own
identity with the RBAC the deploy manifests grant (auth-delegator, the authentication configmap
reader, list/watch of the objects it filters by). Its Prometheus is a stub answering every query
with two pod series, one for a pod that exists and one for a pod that does not.
"""

from __future__ import annotations

import os
import signal
import socket
import ssl
from collections.abc import Iterator

import pytest
from kubernetes import client as k8s

from tests.e2e.auth_adapter import (
    EXTERNAL_PATH,
    NS,
    PODS_PATH,
    Adapter,
    apply_rbac,
    grant_metrics_reader,
    serve_adapter,
    until,
)
from tests.support.controlplane import CertAuthority, ControlPlane, untyped
from tests.support.waiting import wait_until

FORGED = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}
_STOP_GRACE_S = 15.0


@pytest.fixture(scope="module")
def adapter(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Adapter]:
    adapter_user = "llm-metrics-adapter"
    apply_rbac(control_plane, adapter_user)
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
    grant_metrics_reader(adapter.plane, "reader")
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
    grant_metrics_reader(adapter.plane, "cert-reader")
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
        core = untyped(k8s.CoreV1Api(api))
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
        core = untyped(k8s.CoreV1Api(api))
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
