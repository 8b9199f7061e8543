"""Servers that misbehave on purpose, for timeout and outage tests, and the threaded server the
stand-ins run in. All bind 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.support.ports import free_port

__all__ = ["LoopbackServer", "refused_url", "send_json", "serving", "slow_server"]


class LoopbackServer(ThreadingHTTPServer):
    """A threaded HTTP server whose handler threads never keep the process alive."""

    daemon_threads = True
    allow_reuse_address = True


@contextlib.contextmanager
def serving(server: LoopbackServer) -> Iterator[str]:
    """Serve ``server`` in a daemon thread; yields its base URL; stops it on exit."""
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def send_json(handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
    """Answer ``body`` as JSON with ``status`` (and its length)."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)


_MAX_SLEEP = 30.0  # seconds: a slow handler never outlives this, even if the test forgets it


def refused_url() -> str:
    """A loopback URL on a port nothing listens on (probed free, then released)."""
    return f"http://127.0.0.1:{free_port()}"


@contextlib.asynccontextmanager
async def slow_server(delay: float) -> AsyncIterator[str]:
    """An HTTP server that reads a request, waits ``delay`` seconds (capped), then answers 200.

    Yields its base URL; on exit it stops listening and cancels pending handlers.
    """
    handlers: set[asyncio.Task[None]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        handlers.add(task)
        try:
            with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
                await reader.readuntil(b"\r\n\r\n")
            await asyncio.sleep(min(delay, _MAX_SLEEP))
            body = b'{"status":"success","data":{"resultType":"vector","result":[]}}'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()
            handlers.discard(task)

    server = await asyncio.start_server(handle, host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        for task in list(handlers):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*handlers, return_exceptions=True)
        await asyncio.wait_for(server.wait_closed(), timeout=5)
