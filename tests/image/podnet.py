"""A pod's network namespace on this machine, and TCP bridges between it and the host's loopback.

A Kubernetes pod has its own network namespace: the adapter binds ``0.0.0.0:443`` there (with the
pod's sysctl ``net.ipv4.ip_unprivileged_port_start=0``) and reaches the API server and its
backend through addresses of the cluster. Here the namespace is made with ``unshare --net`` (it has
only a loopback interface, so nothing in it is reachable from outside this machine) and the
container joins it (``podman run --network ns:<path>``). This process is the cluster around it:

- ``--into PORT=HOST_PORT``: listen on ``127.0.0.1:PORT`` *inside* the namespace, forward each
  connection to ``127.0.0.1:HOST_PORT`` on the host (the API server, Prometheus);
- ``--out PORT``: listen on a free ``127.0.0.1`` port on the host, forward each connection to
  ``127.0.0.1:PORT`` inside the namespace (the kubelet's probes, the aggregator, the test).

A socket belongs to the namespace its creator was in when it was made, so one single-threaded
process serves both sides by switching its own namespace (``setns``) around each ``socket()``.

Run as ``python tests/image/podnet.py --into 6443=45183 --out 443``. It prints one JSON line,
``{"pid": <holder pid>, "netns": "/proc/<pid>/ns/net", "out": {"443": <host port>}}``, once
everything listens, and serves until SIGTERM; the namespace's holder process dies with it.
Only the standard library: it runs under any Python 3.11.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)
_CHUNK = 65536


def _setns(fd: int) -> None:
    if _LIBC.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


def _die_with_parent() -> None:
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


class PodNamespace:
    """A network namespace held by a ``sleep`` child; :meth:`inside` switches this thread into it."""

    def __init__(self) -> None:
        self.holder = subprocess.Popen(
            ["unshare", "--net", "--", "sleep", "infinity"], preexec_fn=_die_with_parent
        )
        self.path = f"/proc/{self.holder.pid}/ns/net"
        self._host = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        # unshare switches namespaces before exec'ing sleep: wait until the holder's differs.
        for _ in range(200):
            if os.stat(self.path).st_ino != os.fstat(self._host).st_ino:
                break
            if self.holder.poll() is not None:
                raise RuntimeError(f"unshare --net exited with {self.holder.returncode}")
            time.sleep(0.01)
        else:
            raise RuntimeError("the namespace holder never left the host's network namespace")
        self._pod = os.open(self.path, os.O_RDONLY)
        subprocess.run(
            ["nsenter", f"--net={self.path}", "ip", "link", "set", "lo", "up"], check=True
        )

    @contextlib.contextmanager
    def inside(self) -> Iterator[None]:
        _setns(self._pod)
        try:
            yield
        finally:
            _setns(self._host)

    def close(self) -> None:
        self.holder.kill()
        self.holder.wait()


def _listener(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Copy until EOF, then half-close the other side (as TCP would). A reset on either side
    resets the other: a client that closes with unread data (an RST) must not leave the server's
    connection open, or the server's graceful shutdown waits for it."""
    try:
        while data := await reader.read(_CHUNK):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except (ConnectionError, OSError):
        writer.transport.abort()


async def _bridge(client: socket.socket, upstream: socket.socket, port: int) -> None:
    loop = asyncio.get_running_loop()
    upstream.setblocking(False)
    try:
        await loop.sock_connect(upstream, ("127.0.0.1", port))
    except OSError:
        client.close()
        upstream.close()
        return
    c_reader, c_writer = await asyncio.open_connection(sock=client)
    u_reader, u_writer = await asyncio.open_connection(sock=upstream)
    try:
        await asyncio.gather(_pipe(c_reader, u_writer), _pipe(u_reader, c_writer))
    finally:
        for writer in (c_writer, u_writer):
            writer.close()


async def _serve(
    listener: socket.socket, make_upstream: Callable[[], socket.socket], port: int
) -> None:
    loop = asyncio.get_running_loop()
    tasks: set[asyncio.Task[None]] = set()
    while True:
        client, _ = await loop.sock_accept(listener)
        upstream = make_upstream()
        task = asyncio.create_task(_bridge(client, upstream, port))
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _main(args: argparse.Namespace) -> None:
    pod = PodNamespace()
    servers: list[tuple[socket.socket, Callable[[], socket.socket], int]] = []
    out_ports: dict[str, int] = {}
    try:
        with pod.inside():
            for spec in args.into:
                inner, _, host = spec.partition("=")
                servers.append((_listener(int(inner)), _host_socket, int(host)))
        for spec in args.out:
            listener = _listener(0)
            out_ports[spec] = listener.getsockname()[1]

            def pod_socket(pod: PodNamespace = pod) -> socket.socket:
                with pod.inside():
                    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)

            servers.append((listener, pod_socket, int(spec)))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        tasks = [asyncio.create_task(_serve(s, make, port)) for s, make, port in servers]
        print(json.dumps({"pid": pod.holder.pid, "netns": pod.path, "out": out_ports}), flush=True)
        await stop.wait()
        for task in tasks:
            task.cancel()
    finally:
        pod.close()


def _host_socket() -> socket.socket:
    return socket.socket(socket.AF_INET, socket.SOCK_STREAM)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--into", action="append", default=[], metavar="PORT=HOST_PORT")
    parser.add_argument("--out", action="append", default=[], metavar="PORT")
    _die_with_parent()
    asyncio.run(_main(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
