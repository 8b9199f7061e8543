"""The hot path: a metrics request answered before, whose inputs still hold, served as bytes.

:class:`CachedResponses` sits innermost, after authentication and authorization: a ``GET`` whose
path and query string name a response :class:`adapter.core.responses.ResponseCache` still holds is
answered with those bytes, without routing, parsing, rule lookup, querying, translation or
encoding. Anything else goes on to the application, whose values route renders and keeps the
response for the next time.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.core.responses import ResponseCache

__all__ = ["CachedResponses"]

_JSON = (b"content-type", b"application/json")


class CachedResponses:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: ASGIApp, *, responses: ResponseCache) -> None:
        self.app = app
        self.responses = responses

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            body = self.responses.lookup(scope["path"], scope["query_string"])
            if body is not None:
                await send(
                    {
                        "type": "http.response.start",
                        "status": 200,
                        "headers": [_JSON, (b"content-length", b"%d" % len(body))],
                    }
                )
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)
