"""The ASGI middleware that bounds how many requests are served at once.

As kube-apiserver's ``--max-requests-inflight``: a request over the limit is answered at once with
429 TooManyRequests and ``Retry-After: 1`` (the Status the apiserver sends), instead of queueing
behind the others until every caller times out; the aggregator passes it on and the HPA
controller tries again at its next sync. The kubelet's probes (``/healthz``, ``/livez``,
``/readyz``) and the adapter's own ``/metrics`` are never refused, so a loaded replica is not
restarted for being loaded and its load stays visible.

It sits outside authentication (a refused request costs no TokenReview or SubjectAccessReview)
and inside the access log (refusals are logged and counted like any answer).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.api.auth import ANONYMOUS_PATHS
from adapter.api.status import send_status

__all__ = ["EXEMPT_PATHS", "InflightLimit"]

EXEMPT_PATHS = ANONYMOUS_PATHS | {"/metrics"}
"""Served whatever the load: the kubelet's probes and the adapter's own metrics."""

RETRY_AFTER_SECONDS = 1
"""What kube-apiserver's max-in-flight filter tells a refused client."""


class InflightLimit:
    """Wrap ``app``: at most ``limit`` HTTP requests (outside :data:`EXEMPT_PATHS`) at once."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        if limit < 1:
            raise ValueError(f"limit must be at least 1, not {limit}")
        self.app = app
        self.limit = limit
        self.inflight = 0
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("path") in EXEMPT_PATHS:
            await self.app(scope, receive, send)
            return
        if self.inflight >= self.limit:
            self.refused += 1
            await send_status(
                send,
                429,
                "Too many requests, please try again later.",
                "TooManyRequests",
                headers=[(b"retry-after", str(RETRY_AFTER_SECONDS).encode())],
            )
            return
        self.inflight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.inflight -= 1
