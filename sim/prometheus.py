"""A real Prometheus server (Debian's ``/usr/bin/prometheus``) run as a child process on loopback.

``LocalPrometheus(targets).start()`` writes a config that scrapes the targets every second with
``honor_labels: true`` (so exporters' ``cluster``/``namespace``/``pod`` labels survive, imitating
GMP's target labels), stores its TSDB in a temp dir, listens on ``127.0.0.1:<free port>`` and
waits for ``/-/ready``. :meth:`LocalPrometheus.stop` terminates it (then kills it) and removes
the temp dir; an ``atexit`` hook stops any instance still running when the interpreter exits.
Targets are read through ``file_sd_configs``, so :meth:`LocalPrometheus.set_targets` changes
them on a running server without a restart.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Callable, Sequence
from typing import IO, Self

import httpx

from adapter.backends.prometheus import parse_query_data
from adapter.domain.errors import BackendError
from adapter.domain.models import Sample
from sim.service import Service

__all__ = ["DEFAULT_BINARY", "LocalPrometheus", "find_binary"]

DEFAULT_BINARY = "/usr/bin/prometheus"
_START_ATTEMPTS = 3  # a free port can be taken between probing and binding: try again
_RUNNING: weakref.WeakSet[LocalPrometheus] = weakref.WeakSet()


def find_binary(binary: str | None = None) -> str:
    """The Prometheus executable: ``binary``, else ``$PROMETHEUS_BIN``, else Debian's path.

    Raises :class:`RuntimeError` naming the path and the fix when it is missing.
    """
    path = binary or os.environ.get("PROMETHEUS_BIN") or DEFAULT_BINARY
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise RuntimeError(
            f"prometheus binary not found at {path}: run `make prometheus` "
            "(installs Debian's prometheus)"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalPrometheus(Service):
    """One Prometheus process scraping ``targets`` (``host:port``) every ``scrape_interval``.

    ``ready_timeout`` bounds :meth:`start` in seconds. ``extra_args`` are appended to the command
    line (e.g. ``["--query.lookback-delta=30s"]``).
    """

    def __init__(
        self,
        targets: Sequence[str] = (),
        *,
        binary: str | None = None,
        scrape_interval: str = "1s",
        metrics_path: str = "/metrics",
        ready_timeout: float = 30.0,
        extra_args: Sequence[str] = (),
    ) -> None:
        self._binary_arg = binary
        self._targets = list(targets)
        self._scrape_interval = scrape_interval
        self._metrics_path = metrics_path
        self._ready_timeout = ready_timeout
        self._extra_args = list(extra_args)
        self._dir: str | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the server and wait until it is ready. Raises RuntimeError with its log tail."""
        if self._proc is not None:
            return self
        binary = find_binary(self._binary_arg)
        self._dir = tempfile.mkdtemp(prefix="llm-metrics-prometheus-")
        try:
            self._write_config()
            last_error = ""
            for _ in range(_START_ATTEMPTS):
                self._spawn(binary)
                try:
                    self._wait_ready()
                except RuntimeError as exc:
                    last_error = str(exc)
                    self._terminate()
                    if "address already in use" not in last_error:
                        raise
                    continue
                _RUNNING.add(self)
                return self
            raise RuntimeError(last_error)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Terminate (then kill) the process and remove the temp dir. Idempotent."""
        _RUNNING.discard(self)
        self._terminate()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``, the base URL for the query API."""
        if self._port is None or self._proc is None:
            raise RuntimeError("LocalPrometheus is not running")
        return f"http://127.0.0.1:{self._port}"

    @property
    def targets(self) -> list[str]:
        return list(self._targets)

    def set_targets(self, targets: Sequence[str]) -> None:
        """Replace the scrape targets; Prometheus notices the file change within seconds."""
        self._targets = list(targets)
        if self._dir is not None:
            self._write_targets()

    # -- queries -----------------------------------------------------------------------------

    def query(self, query: str, *, timeout: float = 5.0) -> list[Sample]:
        """Evaluate an instant query synchronously; raises RuntimeError on any failure."""
        try:
            response = httpx.get(
                f"{self.url}/api/v1/query",
                params={"query": query},
                timeout=timeout,
                trust_env=False,
            )
            body = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise RuntimeError(f"local prometheus query failed: {type(exc).__name__}") from exc
        if response.status_code != 200 or body.get("status") != "success":
            raise RuntimeError(f"local prometheus query {query!r} failed: {body.get('error')}")
        try:
            return list(parse_query_data(body.get("data"), backend="local-prometheus"))
        except BackendError as exc:
            raise RuntimeError(str(exc)) from exc

    def wait_for(
        self,
        query: str,
        predicate: Callable[[list[Sample]], bool],
        timeout: float = 30.0,
        *,
        interval: float = 0.25,
    ) -> list[Sample]:
        """Poll ``query`` until ``predicate(samples)`` holds; return those samples.

        Raises :class:`TimeoutError` after ``timeout`` seconds, naming the last answer.
        """
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            try:
                samples = self.query(query)
            except RuntimeError as exc:
                last = exc
            else:
                if predicate(samples):
                    return samples
                last = [(s.labels, s.value) for s in samples]
            if time.monotonic() >= deadline:
                raise TimeoutError(f"{query!r} did not satisfy the predicate in {timeout}s: {last}")
            time.sleep(interval)

    # -- internals ---------------------------------------------------------------------------

    def _write_targets(self) -> None:
        assert self._dir is not None
        path = os.path.join(self._dir, "targets.json")
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump([{"targets": self._targets, "labels": {}}], handle)
        os.replace(tmp, path)  # atomic: Prometheus never reads a half-written file

    def _write_config(self) -> None:
        assert self._dir is not None
        self._write_targets()
        config = {
            "global": {
                "scrape_interval": self._scrape_interval,
                "evaluation_interval": self._scrape_interval,
            },
            "scrape_configs": [
                {
                    "job_name": "sim",
                    "honor_labels": True,
                    "metrics_path": self._metrics_path,
                    "scrape_timeout": self._scrape_interval,
                    "file_sd_configs": [
                        {
                            "files": [os.path.join(self._dir, "targets.json")],
                            "refresh_interval": "1s",
                        }
                    ],
                }
            ],
        }
        # JSON is valid YAML: no YAML writer needed.
        with open(os.path.join(self._dir, "prometheus.yml"), "w", encoding="utf-8") as handle:
            json.dump(config, handle)

    def _spawn(self, binary: str) -> None:
        assert self._dir is not None
        self._port = _free_port()
        if self._log is not None:
            self._log.close()
        self._log = open(os.path.join(self._dir, "prometheus.log"), "wb")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [
                binary,
                f"--config.file={os.path.join(self._dir, 'prometheus.yml')}",
                f"--storage.tsdb.path={os.path.join(self._dir, 'data')}",
                f"--web.listen-address=127.0.0.1:{self._port}",
                "--storage.tsdb.retention.time=1h",
                "--log.level=warn",
                *self._extra_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self._dir,
        )

    def _log_tail(self) -> str:
        if self._dir is None:
            return ""
        try:
            with open(os.path.join(self._dir, "prometheus.log"), "rb") as handle:
                return handle.read()[-2000:].decode("utf-8", "replace")
        except OSError:
            return ""

    def _wait_ready(self) -> None:
        assert self._proc is not None
        deadline = time.monotonic() + self._ready_timeout
        ready_url = f"http://127.0.0.1:{self._port}/-/ready"
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with status {self._proc.returncode}: {self._log_tail()}"
                )
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(ready_url, timeout=1.0, trust_env=False).status_code == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(
            f"prometheus not ready within {self._ready_timeout}s: {self._log_tail()}"
        )

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._log is not None:
            self._log.close()
            self._log = None


@atexit.register
def _stop_all() -> None:
    for instance in list(_RUNNING):
        instance.stop()
