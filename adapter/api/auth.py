"""The ASGI middleware that authenticates and authorizes every request before the application.

Order: health paths (``/healthz``, ``/livez``, ``/readyz``) pass without authentication; every
other request is authenticated (401 Status if not), its identity headers are stripped unless they
were believed, the user is put in ``scope["state"]["user"]``, and a SubjectAccessReview decides
(403 Status naming the user and the attributes). If the review cannot be made the request is
refused with 500 InternalError, which is what k8s.io/apiserver's ``WithAuthorization`` answers
when its authorizer errs; never allowed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.api.status import send_status
from adapter.auth.attributes import denial_message, request_attributes
from adapter.auth.authn import Authenticator, strip_identity_headers
from adapter.auth.authz import Authorizer
from adapter.domain.errors import AdapterError, UnauthorizedError

__all__ = ["ANONYMOUS_PATHS", "AuthMiddleware", "client_cert_chain"]

log = logging.getLogger(__name__)

ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz"})
"""Served to anyone, unauthenticated (kubelet probes), like k8s.io/apiserver's always-allow paths."""


def client_cert_chain(scope: Scope) -> list[str] | None:
    """The client certificate chain (PEM strings) the server put in the ASGI TLS extension."""
    tls = (scope.get("extensions") or {}).get("tls") or {}
    chain = tls.get("client_cert_chain")
    return list(chain) if chain else None


class AuthMiddleware:
    """Wrap ``app``; see the module docstring. Non-HTTP scopes (lifespan) pass through."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticator: Authenticator,
        authorizer: Authorizer,
        on_decision: Callable[[str, str], None] | None = None,
    ) -> None:
        self.app = app
        self.authenticator = authenticator
        self.authorizer = authorizer
        # on_decision(result, authenticator): result is allowed, denied, unauthenticated or error.
        self._decided = on_decision or (lambda _result, _method: None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        config = self.authenticator.config
        headers = list(scope.get("headers") or [])
        clean: dict[str, Any] = dict(scope)
        clean["headers"] = strip_identity_headers(headers, config)
        path: str = scope["path"]
        if path in ANONYMOUS_PATHS:
            await self.app(clean, receive, send)
            return

        try:
            user = await self.authenticator.authenticate(headers, client_cert_chain(scope))
        except UnauthorizedError as exc:
            log.debug("unauthenticated request to %s: %s", path, exc.message)
            self._decided("unauthenticated", "none")
            await send_status(send, 401, exc.message, "Unauthorized")
            return
        clean.setdefault("state", {})
        clean["state"] = {**clean["state"], "user": user}

        attributes = request_attributes(scope["method"], path, scope.get("query_string", b""))
        try:
            decision = await self.authorizer.authorize(user, attributes)
        except AdapterError as exc:
            log.warning(
                "authorization of %r for %s failed: %s",
                user.name,
                attributes.describe(),
                exc.message,
            )
            self._decided("error", user.method)
            await send_status(
                send,
                500,
                f"authorization failed: the Kubernetes API did not answer the "
                f"SubjectAccessReview for {path!r}; refusing the request",
                "InternalError",
            )
            return
        if not decision.allowed:
            log.info("forbidden: %r %s", user.name, attributes.describe())
            self._decided("denied", user.method)
            await send_status(
                send, 403, denial_message(user.name, attributes, decision.reason), "Forbidden"
            )
            return
        self._decided("allowed", user.method)
        await self.app(clean, receive, send)
