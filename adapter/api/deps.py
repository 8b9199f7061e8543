"""Shared helpers for routes: the app context and JSON responses."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adapter.app.context import AppContext

__all__ = ["context", "json_response"]


def context(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def json_response(
    body: Any, *, status_code: int = 200, media_type: str = "application/json"
) -> Response:
    """Compact JSON, always: Go clients send ``Accept: application/vnd.kubernetes.protobuf, */*``
    and must get JSON, never a 406."""
    return Response(
        json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False),
        status_code=status_code,
        media_type=media_type,
    )
