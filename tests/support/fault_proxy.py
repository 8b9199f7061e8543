"""A fault-injecting HTTP proxy on 127.0.0.1 in front of a real Prometheus.

:class:`FaultProxy` forwards each request (``GET``/``POST`` of the query API) to ``upstream`` and
applies the current :class:`Fault` to the answer: refuse connections (``down``), hold the request
(``slow``), answer a status (``429`` with ``Retry-After``, ``5xx``), garbage or truncated bodies,
a gigantic vector, values rewritten to NaN/±Inf or an empty vector, samples moved in time, or a
flapping series. Faults can be chosen per request (``Fault.pick``, for the soak test's mix).
Every sleep is capped and the server stops with its context manager; nothing outlives a test.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

__all__ = ["Fault", "FaultProxy", "fault_proxy", "mix"]

_MAX_SLEEP = 30.0  # seconds: no handler outlives this, whatever a test asks for
_READ_LIMIT = 1 << 20  # bytes of request head accepted


@dataclass
class Fault:
    """What the proxy does to the next answers.

    ``kind``: ``pass``, ``down`` (connections refused), ``reset`` (accepted, then closed without a
    word), ``slow`` (``delay`` seconds, then pass), ``status`` (answer ``status`` with
    ``retry_after``), ``garbage``, ``truncated``, ``gigantic`` (``samples`` series), ``values``
    (every sample value replaced by ``value``: ``"NaN"``, ``"+Inf"``…), ``empty`` (an empty
    vector), ``shift`` (sample timestamps moved by ``shift`` seconds), ``flap`` (every other
    answer is an empty vector). ``pick``: when set, called per request to choose the fault.
    """

    kind: str = "pass"
    delay: float = 0.0
    status: int = 503
    retry_after: str | None = None
    samples: int = 200_000
    value: str = "NaN"
    shift: float = 0.0
    pick: Callable[[], Fault] | None = None


@dataclass
class FaultProxy:
    upstream: str
    fault: Fault = field(default_factory=Fault)
    port: int = 0
    requests: int = 0
    """Requests received (each attempt of a retrying backend counts)."""
    injected: dict[str, int] = field(default_factory=dict)
    """Requests that got each fault kind."""
    _server: asyncio.Server | None = None
    _client: httpx.AsyncClient | None = None
    _handlers: set[asyncio.Task[None]] = field(default_factory=set)
    _flap: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._client = httpx.AsyncClient(base_url=self.upstream, timeout=10.0, trust_env=False)
        await self._listen()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._handle, host="127.0.0.1", port=self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def go_down(self) -> None:
        """Stop listening: new connections are refused until :meth:`come_back`."""
        if self._server is not None:
            self._server.close()
            await asyncio.wait_for(self._server.wait_closed(), timeout=5)
            self._server = None

    async def come_back(self) -> None:
        """Listen again on the same port."""
        if self._server is None:
            await self._listen()

    async def stop(self) -> None:
        await self.go_down()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        if self._client is not None:
            await self._client.aclose()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            # Cancelled by stop(): end quietly (asyncio's stream callback logs a cancelled
            # handler task as an error on 3.11).
            with contextlib.suppress(
                ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError
            ):
                while await self._one(reader, writer):
                    pass
        finally:
            writer.close()
            self._handlers.discard(task)

    async def _one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> bool:
        """Serve one request of a keep-alive connection; ``False`` when the connection ends."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            return False
        if len(head) > _READ_LIMIT:
            return False
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name:
                headers[name.strip().lower()] = value.strip()
        body = b""
        if int(headers.get("content-length", "0") or 0):
            body = await reader.readexactly(int(headers["content-length"]))
        self.requests += 1
        fault = self.fault.pick() if self.fault.pick is not None else self.fault
        self.injected[fault.kind] = self.injected.get(fault.kind, 0) + 1
        if fault.kind == "reset":
            return False
        if fault.kind == "slow":
            await asyncio.sleep(min(fault.delay, _MAX_SLEEP))
        if fault.kind == "status":
            extra = {"Retry-After": fault.retry_after} if fault.retry_after else {}
            await self._send(writer, fault.status, b'{"status":"error","error":"injected"}', extra)
            return True
        if fault.kind == "garbage":
            await self._send(writer, 200, b"<html>upstream proxy error</html>{")
            return True
        if fault.kind == "truncated":
            payload = b'{"status":"success","data":{"resultType":"vector","result":[{"metric"'
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(payload) * 4}\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
            return False
        if fault.kind == "gigantic":
            await self._send(writer, 200, _gigantic(fault.samples))
            return True
        assert self._client is not None
        upstream = await self._client.request(
            method,
            target,
            content=body,
            headers={k: v for k, v in headers.items() if k in {"content-type", "accept"}},
        )
        payload = upstream.content
        if upstream.status_code == 200 and fault.kind in {"values", "empty", "shift", "flap"}:
            payload = self._rewrite(payload, fault)
        await self._send(writer, upstream.status_code, payload)
        return True

    def _rewrite(self, payload: bytes, fault: Fault) -> bytes:
        doc: dict[str, Any] = json.loads(payload)
        data = doc.get("data") or {}
        if data.get("resultType") != "vector":
            return payload
        if fault.kind == "flap":
            self._flap += 1
            if self._flap % 2 == 0:
                data["result"] = []
        elif fault.kind == "empty":
            data["result"] = []
        for item in data["result"]:
            ts, value = item["value"]
            if fault.kind == "values":
                value = fault.value
            elif fault.kind == "shift":
                ts = ts + fault.shift
            item["value"] = [ts, value]
        return json.dumps(doc).encode()

    @staticmethod
    async def _send(
        writer: asyncio.StreamWriter, status: int, body: bytes, extra: dict[str, str] | None = None
    ) -> None:
        head = [f"HTTP/1.1 {status} X", "Content-Type: application/json"]
        head += [f"{k}: {v}" for k, v in (extra or {}).items()]
        head.append(f"Content-Length: {len(body)}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()


def _gigantic(samples: int) -> bytes:
    item = '{"metric":{"__name__":"x","pod":"p%d"},"value":[1700000000,"1"]}'
    result = ",".join(item % i for i in range(samples))
    return (
        '{"status":"success","data":{"resultType":"vector","result":[' + result + "]}}"
    ).encode()


@contextlib.asynccontextmanager
async def fault_proxy(upstream: str, fault: Fault | None = None) -> AsyncIterator[FaultProxy]:
    """A started :class:`FaultProxy`; stopped (handlers cancelled) on exit."""
    proxy = FaultProxy(upstream, fault or Fault())
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()


def mix(weights: dict[str, float], *, delay: float = 0.0, seed: int = 7) -> Callable[[], Fault]:
    """A ``pick`` that draws a fault kind per request with the given weights."""
    rng = random.Random(seed)
    kinds = list(weights)
    cumulative = list(weights.values())

    def pick() -> Fault:
        kind = rng.choices(kinds, weights=cumulative)[0]
        return Fault(kind=kind, delay=delay, status=503)

    return pick
