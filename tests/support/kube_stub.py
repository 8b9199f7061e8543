"""A stand-in Kubernetes API on loopback that records what the adapter asks, for tests of the
object cache's requests themselves (which paths, which ``Accept`` headers, when). Everything else
about the Kubernetes module runs against the real kube-apiserver (tests/support/controlplane.py).

It serves legacy discovery (``/apis``, ``/api/v1``, ``/apis/batch/v1``, ``/apis/apps/v1``: namespaces, pods, jobs and daemonsets), a list
of pods and of jobs (``objects``: per collection path, the items), and holds every watch open
until it is closed; daemonsets are forbidden (403), as to an identity whose RBAC lacks them. ``hold_lists``: the lists never answer (an apiserver that does not answer the
first list in time). ``requests`` records ``(path, query, Accept)`` of each request.
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlsplit

from kubernetes import client as k8s_client

from tests.support.servers import LoopbackServer, send_json, serving

__all__ = ["KubeStub", "Recorded"]

Recorded = tuple[str, dict[str, str], str]
"""(path, query parameters, Accept header) of one request."""

_DISCOVERY: dict[str, Any] = {
    "/apis": {
        "kind": "APIGroupList",
        "groups": [
            {
                "name": "batch",
                "versions": [{"groupVersion": "batch/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "batch/v1", "version": "v1"},
            },
            {
                "name": "apps",
                "versions": [{"groupVersion": "apps/v1", "version": "v1"}],
                "preferredVersion": {"groupVersion": "apps/v1", "version": "v1"},
            },
        ],
    },
    "/api/v1": {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod"},
            {
                "name": "namespaces",
                "singularName": "namespace",
                "namespaced": False,
                "kind": "Namespace",
            },
        ],
    },
    "/apis/batch/v1": {
        "kind": "APIResourceList",
        "groupVersion": "batch/v1",
        "resources": [{"name": "jobs", "singularName": "job", "namespaced": True, "kind": "Job"}],
    },
    "/apis/apps/v1": {
        "kind": "APIResourceList",
        "groupVersion": "apps/v1",
        "resources": [
            {
                "name": "daemonsets",
                "singularName": "daemonset",
                "namespaced": True,
                "kind": "DaemonSet",
            }
        ],
    },
}
_FORBIDDEN = frozenset({"/apis/apps/v1/daemonsets"})
"""Lists the adapter's identity may not read (RBAC): answered 403 as the apiserver does."""


def _item(namespace: str, name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {"metadata": {"namespace": namespace, "name": name, "labels": labels}}


class KubeStub:
    def __init__(self, *, hold_lists: bool = False) -> None:
        self.hold_lists = hold_lists
        self.objects: dict[str, list[dict[str, Any]]] = {
            "/api/v1/pods": [_item("shop", "p-0", {"app": "a"})],
            "/apis/batch/v1/jobs": [
                _item("shop", "j-a", {"app": "a"}),
                _item("shop", "j-b", {"app": "b"}),
                _item("other", "j-c", {"app": "a"}),
            ],
        }
        self.requests: list[Recorded] = []
        self._closed = threading.Event()
        self._stack = contextlib.ExitStack()
        self.url = ""

    def __enter__(self) -> KubeStub:
        server = LoopbackServer(("127.0.0.1", 0), self._handler())
        self.url = self._stack.enter_context(serving(server))
        self._stack.callback(self._closed.set)  # on exit, first release the held requests
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def api_client(self) -> Any:
        """A ``kubernetes`` ``ApiClient`` for this stub (plain HTTP, no credentials)."""
        configuration = k8s_client.Configuration()
        configuration.host = self.url
        return k8s_client.ApiClient(configuration)

    def asked(self, path: str) -> list[Recorded]:
        return [r for r in self.requests if r[0] == path]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: test output stays readable

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                outer.requests.append((parts.path, query, self.headers.get("Accept") or ""))
                if parts.path in _DISCOVERY:
                    send_json(self, 200, _DISCOVERY[parts.path])
                    return
                if parts.path in _FORBIDDEN:
                    send_json(self, 403, {"kind": "Status", "code": 403, "reason": "Forbidden"})
                    return
                items = outer.objects.get(parts.path)
                if items is None:
                    send_json(self, 404, {"kind": "Status", "code": 404})
                    return
                if query.get("watch") == "true" or outer.hold_lists:
                    # A watch sends nothing until an object changes; a held list never answers.
                    outer._closed.wait(60)
                    self.close_connection = True
                    return
                kind = "PartialObjectMetadataList" if "PartialObjectMetadata" in (
                    self.headers.get("Accept") or ""
                ) else "List"  # fmt: skip
                send_json(
                    self, 200, {"kind": kind, "metadata": {"resourceVersion": "7"}, "items": items}
                )

        return Handler
