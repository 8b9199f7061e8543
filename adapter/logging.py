"""Structured logs: a JSON formatter, process log set-up, and the per-request access log.

One JSON object per line (``--log-format=json``, the default when stderr is not a terminal)::

    {"ts": "2026-05-01T10:00:00.123Z", "level": "warning", "logger": "adapter.access",
     "msg": "GET /apis/... 503 12.3 ms", "audit_id": "…", "method": "GET", "path": "/apis/...",
     "query": "labelSelector=app%3Djetstream", "code": 503, "duration_seconds": 0.0123,
     "user": "system:serviceaccount:kube-system:horizontal-pod-autoscaler"}

The access log writes one line per request at debug level, or at warning level when the answer
is a server error (5xx). It records the method, path, query string, code, duration, the
``Audit-ID`` header the aggregator sends (as ``audit_id``) and the authenticated user's name.
It never records any other header, a token, or a body: only the fields above are read from the
request, and the JSON formatter only copies a fixed list of extra fields into the line.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, Any, Literal

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "ACCESS_LOGGER",
    "AccessLog",
    "JsonFormatter",
    "LogFormat",
    "UserProbe",
    "configure_logging",
    "resolve_format",
]

LogFormat = Literal["json", "text", "auto"]

ACCESS_LOGGER = "adapter.access"

_FIELDS = ("audit_id", "method", "path", "query", "code", "duration_seconds", "user")
"""The only ``extra`` record attributes a log line carries; anything else is ignored."""

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_QUIET = ("httpcore", "httpx", "hpack", "urllib3", "kubernetes.client.rest", "google.auth")
"""HTTP client libraries whose debug records hold request or response headers (cookies, tokens):
kept at warning whatever ``--log-level`` says."""
_AUDIT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_HOLDER = "llm_metrics_adapter.access"
"""``scope["extensions"]`` key of the dict the inner :class:`UserProbe` writes the user into."""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (RFC 3339, UTC, milliseconds), ``level``, ``logger``,
    ``msg``, the access fields when present, and ``exc`` (the formatted traceback) if any."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, tz=UTC)
        doc: dict[str, Any] = {
            "ts": ts.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ts.microsecond // 1000:03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key in _FIELDS:
            value = record.__dict__.get(key)
            if value is not None:
                doc[key] = value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, default=str, ensure_ascii=False)


def resolve_format(fmt: str, stream: IO[str] | None = None) -> Literal["json", "text"]:
    """``json`` or ``text``; ``auto`` is text on a terminal, JSON otherwise.

    Raises ``ValueError`` for anything else.
    """
    if fmt == "auto":
        target = stream if stream is not None else sys.stderr
        isatty = getattr(target, "isatty", None)
        return "text" if callable(isatty) and isatty() else "json"
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be json, text or auto, not {fmt!r}")
    return "json" if fmt == "json" else "text"


def configure_logging(
    *, level: str = "info", fmt: str = "auto", stream: IO[str] | None = None
) -> logging.Handler:
    """Send every log record (root logger) at ``level`` or above to ``stream`` (default stderr)
    in ``fmt``. Replaces the root logger's handlers; returns the new handler. HTTP client
    libraries stay at warning or above: their debug records carry headers.

    Raises ``ValueError`` for an unknown level or format.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        raise ValueError(f"unknown log level {level!r}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    if resolve_format(fmt, stream) == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter(_TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _QUIET:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    return handler


def _audit_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers") or ():
        if name == b"audit-id":
            text = value.decode("latin-1")
            # A client-supplied value: only ID-like text goes into the log.
            return text if _AUDIT_ID_RE.match(text) else None
    return None


class AccessLog:
    """ASGI middleware: one access-log line per HTTP request (see the module docstring).

    Put it outermost so that requests refused by authentication are logged too; the user's name
    comes from :class:`UserProbe`, which must sit inside the authentication middleware.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        logger: str = ACCESS_LOGGER,
        observers: Sequence[Callable[[Scope, int, float], None]] = (),
    ) -> None:
        self.app = app
        self.log = logging.getLogger(logger)
        # Called with (scope, status, seconds) after every request: the request metrics.
        self.observers = tuple(observers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        holder: dict[str, str] = {}
        # A shallow copy: middleware that copies the scope again still shares this dict.
        scope = dict(scope)
        scope["extensions"] = {**(scope.get("extensions") or {}), _HOLDER: holder}
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            duration = time.perf_counter() - started
            self._emit(scope, status, duration, holder.get("user"))
            for observe in self.observers:
                observe(scope, status, duration)

    def _emit(self, scope: Scope, status: int, duration: float, user: str | None) -> None:
        level = logging.WARNING if status >= 500 else logging.DEBUG
        if not self.log.isEnabledFor(level):
            return
        method = str(scope.get("method", ""))
        path = str(scope.get("path", ""))
        query = (scope.get("query_string") or b"").decode("latin-1") or None
        self.log.log(
            level,
            "%s %s%s %d %.1f ms",
            method,
            path,
            f"?{query}" if query else "",
            status,
            duration * 1000,
            extra={
                "audit_id": _audit_id(scope),
                "method": method,
                "path": path,
                "query": query,
                "code": status,
                "duration_seconds": round(duration, 6),
                "user": user,
            },
        )


class UserProbe:
    """ASGI middleware placed inside authentication: hands the authenticated user's name (from
    ``scope["state"]["user"]``, set by the auth middleware) to the enclosing :class:`AccessLog`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        holder = (scope.get("extensions") or {}).get(_HOLDER)
        user = (scope.get("state") or {}).get("user")
        name = getattr(user, "name", None)
        if isinstance(holder, dict) and isinstance(name, str):
            holder["user"] = name
        await self.app(scope, receive, send)
