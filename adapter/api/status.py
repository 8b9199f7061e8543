"""Errors as ``metav1.Status``: the only place an exception becomes an HTTP answer."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

from adapter.api.deps import json_response
from adapter.core.translate import encode_json
from adapter.domain.errors import AdapterError

__all__ = ["install_error_handlers", "send_status", "status_body"]

log = logging.getLogger(__name__)

# ``metav1.StatusReason`` is the HTTP phrase without spaces, except where the apiserver names the
# reason otherwise (k8s.io/apimachinery/pkg/api/errors).
_REASON_EXCEPTIONS = {422: "Invalid", 500: "InternalError", 502: "InternalError", 504: "Timeout"}


def _reason(code: int) -> str:
    if code in _REASON_EXCEPTIONS:
        return _REASON_EXCEPTIONS[code]
    try:
        return "".join(c for c in HTTPStatus(code).phrase if c.isalnum())
    except ValueError:
        return "InternalError" if code >= 500 else "BadRequest"


def status_body(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _reason(code),
        "code": code,
    }


async def send_status(
    send: Send,
    code: int,
    message: str,
    reason: str | None = None,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
) -> None:
    """Send a ``metav1.Status`` response from ASGI middleware (outside the routes' handlers)."""
    body = encode_json(status_body(code, message, reason))
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _status(code: int, message: str, reason: str | None = None) -> Response:
    return json_response(status_body(code, message, reason), status_code=code)


async def _adapter_error(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, AdapterError)
    if exc.code >= 500:
        log.warning("request failed: %s", exc.message)
    return _status(exc.code, exc.message, exc.reason)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"the server could not find the requested resource {request.url.path!r}"
    elif exc.status_code == 405:
        message = f"method {request.method} is not supported: the metrics APIs are read-only (GET)"
    else:
        message = str(exc.detail)
    return _status(exc.status_code, message)


async def _validation_error(_: Request, exc: Exception) -> Response:
    return _status(400, f"invalid request: {exc}")


async def _unexpected(_: Request, exc: Exception) -> Response:
    # The message never carries the exception text: it may hold anything, credentials included.
    log.error("unexpected error", exc_info=exc)
    return _status(500, "internal error: see the adapter's log")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(AdapterError, _adapter_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)
