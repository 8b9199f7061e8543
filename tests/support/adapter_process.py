"""The adapter as a subprocess: ``python -m adapter serve`` on a free 127.0.0.1 port.

:meth:`AdapterProcess.spawn` starts it with the given ``serve`` flags (``--host 127.0.0.1`` and
``--port`` are added), from the repository root, in its own process group, its output in ``log``.
``--standalone`` serves plain HTTP; otherwise it serves HTTPS with a self-signed certificate.
:meth:`AdapterProcess.start` also waits until ``/healthz`` answers 200 (failing at once, with its
log tail, if the process exits); :meth:`AdapterProcess.running` is the context manager that
stops it on exit. :meth:`AdapterProcess.stop` sends SIGTERM to the group, SIGKILL after a bound.

Subclasses add fields of their own: ``spawn``, ``start`` and ``running`` pass extra keyword
arguments to the constructor.
"""

from __future__ import annotations

import contextlib
import ssl
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

from tests.support import REPO
from tests.support.ports import free_port
from tests.support.processes import stop_group
from tests.support.waiting import wait_until

__all__ = ["AdapterExited", "AdapterProcess"]

# Bounds, in seconds.
START_S = 60.0
STOP_GRACE_S = 10.0


class AdapterExited(AssertionError):
    """The adapter process ended while it should be serving; the message has its log tail."""


@dataclass
class AdapterProcess:
    """A running ``python -m adapter serve``: ``url`` is ``<scheme>://127.0.0.1:<port>``."""

    port: int
    process: subprocess.Popen[bytes]
    log: Path
    scheme: str

    @classmethod
    def spawn(cls, args: Sequence[str], *, log: Path, **fields: Any) -> Self:
        """Start ``python -m adapter serve --host 127.0.0.1 --port <free> <args>``; no wait."""
        port = free_port()
        argv = [sys.executable, "-m", "adapter", "serve", "--host", "127.0.0.1"]
        argv += ["--port", str(port), *args]
        with log.open("wb") as sink:
            process = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        scheme = "http" if "--standalone" in args else "https"
        return cls(port=port, process=process, log=log, scheme=scheme, **fields)

    @classmethod
    def start(
        cls, args: Sequence[str], *, log: Path, timeout_s: float = START_S, **fields: Any
    ) -> Self:
        """:meth:`spawn`, then wait until ``/healthz`` answers (stopping it if it never does)."""
        adapter = cls.spawn(args, log=log, **fields)
        try:
            adapter.wait_healthy(timeout_s)
        except BaseException:
            adapter.stop()
            raise
        return adapter

    @classmethod
    @contextlib.contextmanager
    def running(
        cls, args: Sequence[str], *, log: Path, wait: bool = True, **fields: Any
    ) -> Iterator[Self]:
        """:meth:`start` (or only :meth:`spawn` when ``wait`` is false); :meth:`stop` on exit."""
        adapter = cls.start(args, log=log, **fields) if wait else cls.spawn(args, log=log, **fields)
        try:
            yield adapter
        finally:
            adapter.stop()

    @property
    def url(self) -> str:
        """``<scheme>://127.0.0.1:<port>`` (HTTPS is self-signed: skip verification)."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def tail(self, limit: int = 6000) -> str:
        """The last ``limit`` bytes of its log."""
        data = self.log.read_bytes() if self.log.exists() else b""
        return data[-limit:].decode("utf-8", errors="replace")

    def healthy(self) -> bool:
        """``/healthz`` answers 200. Raises :class:`AdapterExited` if the process has exited."""
        if self.process.poll() is not None:
            raise AdapterExited(
                f"the adapter exited with code {self.process.returncode}:\n{self.tail()}"
            )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE  # the adapter's self-signed serving certificate
        # Loopback only: no proxy from the environment.
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
        try:
            with opener.open(f"{self.url}/healthz", timeout=5) as response:
                return bool(response.status == 200)
        except (OSError, ssl.SSLError):
            return False

    def wait_healthy(self, timeout_s: float = START_S) -> None:
        """Wait until :meth:`healthy`; :class:`AdapterExited` or a timeout with the log tail."""
        wait_until(
            "the adapter to answer /healthz", self.healthy, timeout_s=timeout_s, details=self.tail
        )

    def stop(self, grace_s: float = STOP_GRACE_S) -> None:
        """SIGTERM its process group, SIGKILL after ``grace_s`` seconds; idempotent."""
        stop_group(self.process, grace_s)
