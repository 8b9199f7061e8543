"""The adapter behind a real aggregator while its kube-apiserver becomes unreachable.

The adapter's kubeconfig points at a TCP forwarder in front of this module's OWN control plane
(so that no other e2e test sees the outage). With the forwarder down: a new bearer token (needs a
TokenReview) and a new client-certificate user (needs a SubjectAccessReview) both fail closed,
never 200; ``system:masters`` (no review needed) still gets values from the object cache's last
state, and ``/debug/metrics`` says how old that state is and why. When the forwarder is back,
the same process serves both users again, without a restart.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from tests.e2e.auth_adapter import (
    EXTERNAL_PATH,
    NS,
    PODS_PATH,
    Adapter,
    Answer,
    apply_rbac,
    grant_metrics_reader,
    serve_adapter,
    until,
)
from tests.support.controlplane import ControlPlane, untyped
from tests.support.plane import running
from tests.support.ports import free_port
from tests.support.waiting import wait_until

_AUTH_CACHE_TTL_S = 1.0


class ThreadedForwarder:
    """A TCP forwarder on a fixed 127.0.0.1 port, in threads (the e2e tier is synchronous).
    :meth:`go_down` stops listening and cuts every live connection; :meth:`come_back` listens
    again on the same port."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self._listener: socket.socket | None = None
        self._sockets: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    def come_back(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        thread.start()
        self._threads.append(thread)

    def go_down(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            live, self._sockets = set(self._sockets), set()
        for sock in live:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads = [t for t in self._threads if t.is_alive()]

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._sockets |= {client, upstream}
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        with contextlib.suppress(OSError):
            src.settimeout(None)
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        # Each socket is the source of exactly one pump: that pump closes it.
        src.close()
        with self._lock:
            self._sockets -= {src, dst}


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    """This module's own control plane: the outage here must not reach other e2e tests."""
    with running(ControlPlane()) as own:
        yield own


@pytest.fixture(scope="module")
def outage(
    plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Adapter, ThreadedForwarder]]:
    adapter_user = "llm-metrics-adapter"
    apply_rbac(plane, adapter_user)
    forwarder = ThreadedForwarder(int(plane.api_url.rsplit(":", 1)[1]))
    forwarder.come_back()
    config = json.loads(plane.kubeconfig_for(adapter_user).read_text())
    config["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{forwarder.port}"
    directory = tmp_path_factory.mktemp("adapter")
    kubeconfig = directory / "adapter.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    log = directory / "adapter.log"
    try:
        with serve_adapter(plane, kubeconfig, log, auth_cache_ttl=_AUTH_CACHE_TTL_S) as running:
            yield running, forwarder
    finally:
        forwarder.go_down()


def _token(plane: ControlPlane, name: str) -> str:
    with plane.admin_client() as api:
        core = untyped(k8s.CoreV1Api(api))
        core.create_namespaced_service_account(NS, {"metadata": {"name": name}})
        token: str = core.create_namespaced_service_account_token(
            name, NS, {"spec": {"expirationSeconds": 600}}
        ).status.token
    grant_metrics_reader(plane, f"system:serviceaccount:{NS}:{name}")
    return token


def _debug_objects(adapter: Adapter, masters: tuple[Path, Path]) -> dict[str, Any]:
    answer = adapter.direct("/debug/metrics", cert=masters)
    assert answer.status == 200, answer
    objects: dict[str, Any] = answer.body["objectCache"]
    return objects


def test_requests_fail_closed_while_the_apiserver_is_unreachable_and_recover_after(
    outage: tuple[Adapter, ThreadedForwarder],
) -> None:
    adapter, forwarder = outage
    plane = adapter.plane
    admin = plane.kubeconfig_path
    masters = plane.client_cert("e2e-admin", ["system:masters"])

    # Up: through the aggregator, and directly with a reviewed token and an RBAC'd cert user.
    answer = until(
        "the pods metric through the aggregator",
        lambda: adapter.via_aggregator(admin, PODS_PATH),
        lambda a: a.status == 200,
        timeout_s=30,
    )
    assert [i["describedObject"]["name"] for i in answer.body["items"]] == ["web-1"]
    before = _token(plane, "before-outage")
    grant_metrics_reader(plane, "cert-before")
    until(
        "a reviewed token to be allowed",
        lambda: adapter.direct(EXTERNAL_PATH, headers={"Authorization": f"Bearer {before}"}),
        lambda a: a.status == 200,
        timeout_s=15,
    )
    cert_before = plane.client_cert("cert-before")
    until(
        "the cert user to be allowed",
        lambda: adapter.direct(EXTERNAL_PATH, cert=cert_before),
        lambda a: a.status == 200,
        timeout_s=15,
    )
    # Credentials first used during the outage: nothing about them can be cached.
    fresh_token = _token(plane, "during-outage")
    grant_metrics_reader(plane, "cert-during")
    fresh_cert = plane.client_cert("cert-during")
    pid = adapter.process.pid

    forwarder.go_down()
    time.sleep(_AUTH_CACHE_TTL_S + 0.5)  # past every cached review
    outcomes: list[tuple[str, Answer]] = []
    requests: tuple[tuple[str, Callable[[], Answer]], ...] = (
        (
            "new token",
            lambda: adapter.direct(
                EXTERNAL_PATH, headers={"Authorization": f"Bearer {fresh_token}"}
            ),
        ),
        (
            "reviewed token",
            lambda: adapter.direct(EXTERNAL_PATH, headers={"Authorization": f"Bearer {before}"}),
        ),
        ("new cert user", lambda: adapter.direct(EXTERNAL_PATH, cert=fresh_cert)),
        ("reviewed cert user", lambda: adapter.direct(EXTERNAL_PATH, cert=cert_before)),
    )
    for what, request in requests:
        started = time.monotonic()
        answer = request()
        elapsed = time.monotonic() - started
        outcomes.append((what, answer))
        assert answer.status in (401, 500), (what, answer, adapter.tail())
        assert answer.body.get("kind") == "Status", (what, answer)
        assert elapsed < 15, f"{what}: answered after {elapsed:.1f}s"
    tokens = [a for w, a in outcomes if "token" in w]
    certs = [a for w, a in outcomes if "cert" in w]
    assert all(a.status == 401 for a in tokens), tokens  # TokenReview impossible: unauthenticated
    assert all(a.status == 500 for a in certs), certs  # SubjectAccessReview impossible: refused
    assert fresh_token not in adapter.tail(200_000) and before not in adapter.tail(200_000)

    # system:masters needs no review: values still come, filtered by the cache's last state.
    answer = adapter.direct(PODS_PATH, cert=masters)
    assert answer.status == 200, answer
    assert [i["describedObject"]["name"] for i in answer.body["items"]] == ["web-1"]
    # /debug says how old that state is and why it is not newer.
    pods = wait_until(
        "the object cache to report the outage",
        lambda: (s := _debug_objects(adapter, masters).get("pods")) and s["error"] and s,
        timeout_s=30,
    )
    assert pods["ready"] is True and pods["objects"] >= 2, pods
    first_age = pods["age"]
    time.sleep(1.0)
    later = _debug_objects(adapter, masters)["pods"]
    assert later["age"] >= first_age + 0.9, (pods, later)

    forwarder.come_back()
    for what, request in (
        (
            "new token",
            lambda: adapter.direct(
                EXTERNAL_PATH, headers={"Authorization": f"Bearer {fresh_token}"}
            ),
        ),
        ("new cert user", lambda: adapter.direct(EXTERNAL_PATH, cert=fresh_cert)),
        ("aggregator", lambda: adapter.via_aggregator(admin, PODS_PATH)),
    ):
        until(f"{what} to be served after the outage", request, lambda a: a.status == 200, 60)
    assert adapter.process.pid == pid and adapter.process.poll() is None, "the adapter restarted"
    recovered = wait_until(
        "the object cache to recover",
        lambda: (s := _debug_objects(adapter, masters)["pods"]) and s["error"] is None and s,
        timeout_s=60,
    )
    assert recovered["age"] < later["age"], recovered
