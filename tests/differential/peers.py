"""The two adapters of the differential tier, started side by side on the same data.

- prometheus-adapter v0.12.0: the binary ``bench/build-prometheus-adapter.sh`` builds and caches
  (``make peer``), started as ``bench/run.py`` starts it (delegated authentication and
  authorization and its listers through the admin kubeconfig, a self-signed certificate in
  ``--cert-dir``, 127.0.0.1 only);
- this adapter: :class:`tests.support.adapter_process.AdapterProcess` (``python -m adapter
  serve``), with the same kubeconfig, Prometheus and rules file, ``--all-clusters`` and
  ``--no-presets`` so it sends Prometheus the PromQL of the file and nothing else, and
  ``--cache-ttl 0``: prometheus-adapter caches no answer either, so both read Prometheus at the
  moment they are asked.

:class:`Peer` reaches either directly over HTTPS with a client certificate of the control
plane's CA (a ``system:masters`` user), never through the aggregator.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from tests.support import REPO
from tests.support.adapter_process import AdapterProcess
from tests.support.controlplane import ControlPlane
from tests.support.ports import free_port
from tests.support.processes import stop_group
from tests.support.waiting import wait_until

__all__ = [
    "RUNS",
    "Answer",
    "Peer",
    "Refusal",
    "Setup",
    "ours_refusal",
    "peer_binary",
    "start_ours",
    "start_theirs",
    "theirs_refusal",
]

_GO_MOD = REPO / "bench" / "prometheus-adapter" / "go.mod"
_START_S = 90.0

RUNS: list[tuple[int, float]] = []
"""(request pairs compared, seconds from the first start to the last comparison) of each run,
for the tier's summary line."""


def peer_binary() -> Path:
    """The cached prometheus-adapter binary; :class:`FileNotFoundError` naming ``make peer``."""
    version = ""
    for line in _GO_MOD.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "sigs.k8s.io/prometheus-adapter":
            version = fields[1]
    if not version:
        raise FileNotFoundError(f"no prometheus-adapter version in {_GO_MOD}")
    default = Path.home() / ".cache" / "llm-metrics-adapter" / "bench"
    cache = Path(os.environ.get("LMA_BENCH_CACHE", default))
    binary = cache / f"prometheus-adapter-{version}" / "bin" / "adapter"
    if not os.access(binary, os.X_OK):
        raise FileNotFoundError(
            f"prometheus-adapter {version} is not built at {binary}: run `make peer` "
            "(bench/build-prometheus-adapter.sh)"
        )
    return binary


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: its status code and JSON body (``{"raw": text}`` when not JSON)."""

    status: int
    body: dict[str, Any]


@dataclass
class Peer:
    """One running adapter, ``name`` for messages, reached at ``url`` with ``cert``."""

    name: str
    url: str
    cert: tuple[Path, Path]
    log: Path

    def get(self, path: str) -> Answer:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # each adapter's self-signed certificate, on loopback
        context.load_cert_chain(str(self.cert[0]), str(self.cert[1]))
        with httpx.Client(verify=context, timeout=20, trust_env=False) as client:
            response = client.get(self.url + path, headers={"Accept": "application/json"})
        try:
            body = response.json()
        except json.JSONDecodeError:
            body = {"raw": response.text}
        return Answer(response.status_code, body if isinstance(body, dict) else {"raw": body})

    def tail(self, limit: int = 4000) -> str:
        data = self.log.read_bytes() if self.log.exists() else b""
        return data[-limit:].decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Setup:
    """What a peer is started with: the control plane, the Prometheus both read, the rules file,
    a work directory, and the identity (``kubeconfig``; default: the control plane's admin)."""

    plane: ControlPlane
    prometheus_url: str
    rules: Path
    work: Path
    kubeconfig: Path | None = None

    @property
    def identity(self) -> Path:
        return self.kubeconfig or self.plane.kubeconfig_path


def _theirs_argv(setup: Setup, port: int) -> list[str]:
    certs = setup.work / "certs"
    certs.mkdir(exist_ok=True)
    kubeconfig = setup.identity
    return [
        str(peer_binary()),
        "--bind-address=127.0.0.1",
        f"--secure-port={port}",
        f"--cert-dir={certs}",
        f"--lister-kubeconfig={kubeconfig}",
        f"--authentication-kubeconfig={kubeconfig}",
        f"--authorization-kubeconfig={kubeconfig}",
        f"--prometheus-url={setup.prometheus_url}/",
        "--metrics-relist-interval=2s",
        f"--config={setup.rules}",
        "--v=1",
    ]


def theirs_refusal(plane: ControlPlane, *, rules: Path, work: Path) -> Refusal:
    """How prometheus-adapter, started as :func:`start_theirs` starts it, refuses a rules file
    at start (it must exit)."""
    argv = _theirs_argv(Setup(plane, "http://127.0.0.1:9", rules, work), free_port())
    done = subprocess.run(argv, capture_output=True, text=True, timeout=_START_S)
    return Refusal(done.returncode, done.stdout + done.stderr)


def ours_refusal(rules: Path) -> Refusal:
    """How this adapter refuses a rules file: ``check-config``, the loader ``serve`` uses."""
    done = subprocess.run(
        [sys.executable, "-m", "adapter", "check-config", str(rules)],
        capture_output=True,
        text=True,
        timeout=_START_S,
        cwd=REPO,
    )
    return Refusal(done.returncode, done.stdout + done.stderr)


@dataclass(frozen=True)
class Refusal:
    """A process that was to refuse its input: exit code and output."""

    code: int
    output: str


@contextlib.contextmanager
def start_theirs(setup: Setup) -> Iterator[Peer]:
    """prometheus-adapter on a free 127.0.0.1 port until ``/healthz`` answers."""
    plane = setup.plane
    port = free_port()
    argv = _theirs_argv(setup, port)
    log = setup.work / "prometheus-adapter.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    peer = Peer(
        "prometheus-adapter",
        f"https://127.0.0.1:{port}",
        plane.client_cert("differential", ("system:masters",)),
        log,
    )
    try:

        def healthy() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"prometheus-adapter exited:\n{peer.tail()}")
            try:
                return peer.get("/healthz").status == 200
            except httpx.HTTPError:
                return False

        wait_until("prometheus-adapter's /healthz", healthy, timeout_s=_START_S, details=peer.tail)
        yield peer
    finally:
        stop_group(process, 10)


@contextlib.contextmanager
def start_ours(setup: Setup) -> Iterator[Peer]:
    """This adapter (the tests' one launcher) with the same kubeconfig, Prometheus and rules."""
    plane = setup.plane
    args = ["--kubeconfig", str(setup.identity), "--prometheus-url", setup.prometheus_url]
    args += ["--all-clusters", "--no-presets", "--config", str(setup.rules)]
    args += ["--discovery-interval", "2", "--cache-ttl", "0", "--shutdown-timeout", "5"]
    log = setup.work / "llm-metrics-adapter.log"
    with AdapterProcess.running(args, log=log, timeout_s=_START_S) as adapter:
        cert = plane.client_cert("differential", ("system:masters",))
        yield Peer("llm-metrics-adapter", adapter.url, cert, log)
