"""A stand-in for the GKE metadata server, on loopback (give its ``url`` as
``--google-endpoints metadata=<url>``).

It answers what the adapter and google-auth ask a GKE node's metadata server: the cluster's
name and location (``instance/attributes/cluster-name``, ``cluster-location``), the project
id, and, for Application Default Credentials (Workload Identity), the service account and its
access tokens, minted by a :class:`tests.support.gmp.TokenServer` so that the GMP stand-in
accepts them. As the real one, it refuses a request without ``Metadata-Flavor: Google`` (403)
and marks every answer with that header. ``attributes`` can be changed (remove
``cluster-name`` to be a plain GCE VM); ``delay`` (seconds) holds every answer back;
``requests`` lists the paths asked for.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

__all__ = ["MetadataServer"]

_ROOT = "/computeMetadata/v1/"
EMAIL = "metrics-adapter@llm-serving-test.iam.gserviceaccount.com"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class MetadataServer:
    """``mint`` returns a new live access token; ``expires_in`` is its lifetime in seconds."""

    def __init__(
        self,
        *,
        cluster: str | None = "c1",
        location: str | None = "us-central2-b",
        project: str = "llm-serving-test",
        mint: Callable[[], str] | None = None,
        expires_in: int = 3600,
    ) -> None:
        self.attributes: dict[str, str] = {}
        if cluster is not None:
            self.attributes["cluster-name"] = cluster
        if location is not None:
            self.attributes["cluster-location"] = location
        self.project = project
        self.delay = 0.0
        self.requests: list[str] = []
        self._mint = mint
        self._expires_in = expires_in
        self._stack = contextlib.ExitStack()
        self.url = ""

    def __enter__(self) -> MetadataServer:
        server = _Server(("127.0.0.1", 0), self._handler())
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
        thread.daemon = True
        thread.start()

        def stop() -> None:
            server.shutdown()
            server.server_close()
            thread.join(timeout=5)

        self._stack.callback(stop)
        self.url = f"http://127.0.0.1:{server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def _answer(self, path: str) -> tuple[int, str, str]:
        """(status, content type, body) for ``path`` (under the root, no query)."""
        if path in ("", "/"):
            return 200, "application/text", "computeMetadata/\n"
        if not path.startswith(_ROOT):
            return 404, "text/html", "not found"
        key = path[len(_ROOT) :]
        if key.startswith("instance/attributes/"):
            value = self.attributes.get(key[len("instance/attributes/") :])
            return (200, "application/text", value) if value is not None else (404, "text/html", "")
        if key == "project/project-id":
            return 200, "application/text", self.project
        if key in ("instance/service-accounts/default/", f"instance/service-accounts/{EMAIL}/"):
            info = {"email": EMAIL, "aliases": ["default"], "scopes": ["cloud-platform"]}
            return 200, "application/json", json.dumps(info)
        if key in (
            "instance/service-accounts/default/token",
            f"instance/service-accounts/{EMAIL}/token",
        ):
            if self._mint is None:
                return 404, "text/html", ""
            body = {
                "access_token": self._mint(),
                "expires_in": self._expires_in,
                "token_type": "Bearer",
            }
            return 200, "application/json", json.dumps(body)
        return 404, "text/html", ""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: test output stays readable

            def do_GET(self) -> None:
                path = urlsplit(self.path).path
                outer.requests.append(path)
                time.sleep(min(outer.delay, 10.0))
                if self.headers.get("Metadata-Flavor") != "Google":
                    status, kind, body = 403, "text/html", "Missing Metadata-Flavor:Google header."
                else:
                    status, kind, body = outer._answer(path)
                data = body.encode()
                self.send_response(status)
                self.send_header("Metadata-Flavor", "Google")
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler
