"""``serve`` loads what its backends need and nothing else: the Kubernetes client only with a
cluster, Google's auth library only for GMP, the gRPC stack of Cloud Monitoring only with that
backend, the simulators never. Read from the running server's own ``-X importtime`` log, so a
module imported anywhere on the way to serving is seen."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support import REPO
from tests.support.ports import free_port

pytestmark = pytest.mark.integration

NEVER = ("sim", "grpc", "google.cloud", "matplotlib")


def _modules_loaded_by_serve(tmp_path: Path, *args: str) -> set[str]:
    """Start ``serve --standalone`` with ``args``, wait until it answers ``/healthz``, stop it;
    the top-level and second-level names of every module it imported."""
    port = free_port()
    argv = [sys.executable, "-X", "importtime", "-m", "adapter", "serve", "--standalone"]
    log = tmp_path / "importtime.log"
    with log.open("w") as err:  # a file, not a pipe: the log outgrows a pipe's buffer
        proc = subprocess.Popen(
            [*argv, "--port", str(port), "--cluster", "c1", *args],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
        try:
            _wait_healthy(proc, port)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    names = set()
    for line in log.read_text().splitlines():
        if line.startswith("import time:") and "|" in line:
            parts = line.rsplit("|", 1)[1].strip().split(".")
            names.update({parts[0], ".".join(parts[:2])})
    assert "adapter.serving" in names, log.read_text()[-2000:]  # the log is the server's
    return names


def _wait_healthy(proc: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while True:
        assert proc.poll() is None, "serve exited before it answered /healthz"
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "serve did not answer /healthz within 30 s"
        time.sleep(0.2)


def test_prometheus_mode_loads_no_cluster_client_and_no_google_library(tmp_path: Path) -> None:
    names = _modules_loaded_by_serve(tmp_path, "--prometheus-url", "http://127.0.0.1:9")
    loaded = names & {*NEVER, "kubernetes", "google"}
    assert not loaded, loaded


def test_gmp_mode_without_cloud_monitoring_loads_google_auth_and_not_the_grpc_stack(
    tmp_path: Path,
) -> None:
    names = _modules_loaded_by_serve(
        tmp_path, "--gmp-project", "my-project", "--stackdriver-names", "promql"
    )
    assert "google.auth" in names
    loaded = names & {*NEVER, "kubernetes"}
    assert not loaded, loaded


def test_the_grpc_stack_is_loaded_when_cloud_monitoring_is_on(tmp_path: Path) -> None:
    """The other side of the two tests above: with Stackdriver-style names on Cloud Monitoring
    (the default with a project), its client and gRPC are there, and the log shows them."""
    names = _modules_loaded_by_serve(
        tmp_path,
        "--gmp-project",
        "my-project",
        "--google-endpoints",
        "cloud-monitoring=http://127.0.0.1:9",
    )
    assert {"grpc", "google.cloud"} <= names
