"""The access log as ASGI middleware: one line per HTTP request (format in :mod:`adapter.observability.logging`).

:class:`AccessLog` sits outermost, so requests refused by authentication are logged too, and
calls its observers (the request metrics) with ``(scope, status, seconds)``. :class:`UserProbe`
sits inside :class:`adapter.api.auth.AuthMiddleware` and hands it the authenticated user's name.
Only the method, path, query string, code, duration, an ID-like ``Audit-ID`` and the user's name
are read from a request: never another header, a token or a body.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from adapter.observability.logging import ACCESS_LOGGER

__all__ = ["AccessLog", "UserProbe"]

_AUDIT_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_HOLDER = "llm_metrics_adapter.access"
"""``scope["extensions"]`` key of the dict the inner :class:`UserProbe` writes the user into."""


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
