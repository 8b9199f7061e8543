"""A TCP forwarder on a fixed 127.0.0.1 port that can go down and come back, on asyncio.

It stands between a client and a local server (the Cloud Monitoring gRPC server, the Google token
endpoint) so that tests can take the server's address away and give it back without restarting
the server. Every injected delay is capped.
"""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["Forwarder", "pump"]

_MAX_HANG = 10.0  # seconds: no injected delay outlives a test by more than this


async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
    """Copy ``src`` to ``dst`` until either side ends, then close ``dst``."""
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await src.read(65536):
            dst.write(chunk)
            await dst.drain()
    dst.close()


class Forwarder:
    """A TCP forwarder on a fixed 127.0.0.1 port; :meth:`go_down` refuses new connections and
    cuts live ones, :meth:`come_back` listens again on the same port. ``delay`` (seconds, capped)
    holds each new connection before it is forwarded; ``reply`` (raw bytes) answers a new
    connection itself, after reading what the client sent, and closes it."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.delay = 0.0
        self.reply: bytes | None = None
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, host="127.0.0.1", port=self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.connections += 1
        try:
            # Cancelled by go_down(): end quietly (asyncio's stream callback logs a cancelled
            # handler task as an error on 3.11).
            with contextlib.suppress(
                ConnectionError, OSError, TimeoutError, asyncio.CancelledError
            ):
                await self._serve(reader, writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.delay:
            await asyncio.sleep(min(self.delay, _MAX_HANG))
        if self.reply is not None:
            await asyncio.wait_for(reader.read(65536), timeout=2)
            writer.write(self.reply)
            await writer.drain()
            return
        up_reader, up_writer = await asyncio.wait_for(
            asyncio.open_connection("127.0.0.1", self.upstream_port), timeout=5
        )
        self._writers.add(up_writer)

        try:
            # One direction ending (either side closed) ends the connection.
            await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        finally:
            up_writer.close()
            self._writers.discard(up_writer)

    async def go_down(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.wait_for(asyncio.gather(*self._tasks, return_exceptions=True), timeout=5)

    async def come_back(self) -> None:
        if self._server is None:
            await self.start()
