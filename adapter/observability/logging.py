"""Structured logs: a JSON formatter and the process log set-up. The per-request access log
(:class:`adapter.api.access_log.AccessLog`, ASGI) writes through the ``adapter.access`` logger.

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
import sys
from datetime import UTC, datetime
from typing import IO, Any, Literal

__all__ = [
    "ACCESS_LOGGER",
    "JsonFormatter",
    "LogFormat",
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
