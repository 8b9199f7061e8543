"""Shared helpers for routes: the application and its context, and JSON responses."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import Response

from adapter.app.context import AppContext
from adapter.core.translate import encode_json

__all__ = ["AdapterApp", "context", "json_response"]


class AdapterApp(FastAPI):
    """The FastAPI application serving one :class:`AppContext` (``adapter.serving.asgi``)."""

    def __init__(self, ctx: AppContext, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx


def context(request: Request) -> AppContext:
    """The context of the application serving ``request``: what every route reads."""
    app = request.app
    if not isinstance(app, AdapterApp):
        raise TypeError(f"routes of adapter.api are served by an AdapterApp, not {app!r}")
    return app.ctx


def json_response(
    body: Any, *, status_code: int = 200, media_type: str = "application/json"
) -> Response:
    """Compact JSON, always: Go clients send ``Accept: application/vnd.kubernetes.protobuf, */*``
    and must get JSON, never a 406."""
    return Response(encode_json(body), status_code=status_code, media_type=media_type)
