"""Errors as ``metav1.Status``: the only place an exception becomes an HTTP answer."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import json_response
from adapter.domain.errors import AdapterError

__all__ = ["install_error_handlers", "status_body"]

log = logging.getLogger(__name__)

_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or _REASONS.get(code, "InternalError" if code >= 500 else "BadRequest"),
        "code": code,
    }


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
