"""Scope you cannot forget: serving in a cluster needs a cluster name, from --cluster, from the
GKE metadata server (a local stand-in here), or an explicit --all-clusters."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from adapter.domain.errors import ConfigError
from adapter.serving.server import resolve_cluster
from adapter.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


@contextlib.contextmanager
def metadata_server(attributes: dict[str, str]) -> Iterator[tuple[str, list[str]]]:
    """A GKE metadata-server stand-in on 127.0.0.1: answers instance attributes, only to
    requests carrying ``Metadata-Flavor: Google``; yields its URL and the paths asked."""
    asked: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            asked.append(self.path)
            prefix = "/computeMetadata/v1/instance/attributes/"
            name = self.path.removeprefix(prefix)
            flavored = self.headers.get("Metadata-Flavor") == "Google"
            if not flavored or not self.path.startswith(prefix) or name not in attributes:
                self.send_response(403 if not flavored else 404)
                self.end_headers()
                return
            body = attributes[name].encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def _refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_the_cluster_flag_wins_and_the_metadata_server_is_not_asked() -> None:
    with metadata_server({"cluster-name": "from-metadata"}) as (url, asked):
        settings = Settings.from_options(cluster="c1", gke_metadata_url=url)
        assert (await resolve_cluster(settings)).scope.cluster == "c1"
    assert asked == []


async def test_on_gke_the_cluster_name_comes_from_the_metadata_server() -> None:
    attributes = {"cluster-name": "serving-1", "cluster-location": "us-central2"}
    with metadata_server(attributes) as (url, asked):
        resolved = await resolve_cluster(Settings.from_options(gke_metadata_url=url))
    assert resolved.scope.cluster == "serving-1"
    assert "/computeMetadata/v1/instance/attributes/cluster-name" in asked


async def test_no_cluster_name_anywhere_refuses_to_serve() -> None:
    with (
        metadata_server({}) as (url, _),
        pytest.raises(ConfigError, match=r"pass --cluster=NAME .* or --all-clusters"),
    ):
        await resolve_cluster(Settings.from_options(gke_metadata_url=url))
    with pytest.raises(ConfigError, match="no cluster name"):
        await resolve_cluster(Settings.from_options(gke_metadata_url=_refused_url()))


async def test_all_clusters_is_explicit_and_exclusive_with_a_cluster() -> None:
    resolved = await resolve_cluster(
        Settings.from_options(all_clusters=True, gke_metadata_url=_refused_url())
    )
    assert resolved.scope.cluster is None and resolved.scope.all_clusters
    with pytest.raises(ConfigError, match="not both"):
        await resolve_cluster(Settings.from_options(all_clusters=True, cluster="c1"))


def test_serve_in_a_cluster_without_a_cluster_name_refuses_to_start() -> None:
    # The real command, as a Deployment without --cluster off GKE would run it.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapter",
            "serve",
            "--prometheus-url=http://127.0.0.1:9",
            f"--gke-metadata-url={_refused_url()}",
            "--log-format=text",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "no cluster name: pass --cluster=NAME" in result.stderr
