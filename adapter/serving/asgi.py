"""``create_app``: the FastAPI application of one :class:`~adapter.app.context.AppContext`.

Its lifespan starts the background tasks (discovery refresh, backend readiness probe, cache
refresher, rules reload) as tasks of the context, and closes the context on shutdown: that stops
them and closes everything the context owns. Routes reach the context through
:func:`adapter.api.deps.context`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import Scope

from adapter import __version__
from adapter.api import debug, discovery, health, openapi, values
from adapter.api import hpa as hpa_api
from adapter.api import ui as ui_api
from adapter.api.access_log import AccessLog, UserProbe
from adapter.api.deps import AdapterApp
from adapter.api.fastpath import CachedResponses
from adapter.api.inflight import InflightLimit
from adapter.api.status import install_error_handlers
from adapter.app.context import AppContext, build_context
from adapter.domain.errors import BackendError, ConfigError
from adapter.observability.telemetry import Telemetry
from adapter.serving.reload import RulesWatcher

__all__ = ["build_context", "create_app"]

log = logging.getLogger(__name__)


async def _probe_backend(ctx: AppContext) -> None:
    """Ping the backend until it answers once (readiness); back off up to 10 s between tries."""
    delay = 0.2
    while not ctx.backend_ready:
        try:
            await ctx.backend.ping(timeout=ctx.settings.backend.query_timeout)
        except BackendError as exc:
            ctx.backend_error = exc.message
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)
        else:
            ctx.backend_ready, ctx.backend_error = True, None


def _route_of(path: str) -> tuple[str, str]:
    """(API group, route) labels with bounded cardinality."""
    if path.startswith("/apis/custom.metrics.k8s.io/"):
        return "custom.metrics.k8s.io", "values" if path.count("/") > 3 else "discovery"
    if path.startswith("/apis/external.metrics.k8s.io/"):
        return "external.metrics.k8s.io", "values" if path.count("/") > 3 else "discovery"
    if path.startswith("/apis"):
        return "", "discovery"
    for prefix in ("/debug", "/openapi", "/metrics", "/version"):
        if path.startswith(prefix):
            return "", prefix[1:]
    if path in {"/healthz", "/livez", "/readyz"}:
        return "", "health"
    return "", "other"


def _instrument(telemetry: Telemetry) -> Callable[[Scope, int, float], None]:
    """Counts and times every request by group, route and code (an AccessLog observer)."""

    def record(scope: Scope, status: int, duration: float) -> None:
        group, route = _route_of(scope["path"])
        telemetry.requests.labels(group, route, str(status)).inc()
        telemetry.request_seconds.labels(group, route).observe(duration)

    return record


def _start_background(ctx: AppContext) -> None:
    """Discovery, the readiness probe, the cache refresher and the rules watcher, as tasks of
    ``ctx`` (they run until it closes)."""
    ctx.start_task(ctx.registry.run(), name="discovery")
    ctx.start_task(_probe_backend(ctx), name="backend-probe")
    ctx.start_task(ctx.provider.cache.run_refresher(), name="cache-refresh")
    if ctx.rules_watcher is not None:
        ctx.start_task(ctx.rules_watcher.run(), name="rules-reload")


def create_app(
    ctx: AppContext,
    *,
    background: bool = True,
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """The ASGI app. ``background=False`` skips discovery and readiness tasks (tests drive them).
    The app's shutdown (its lifespan) closes ``ctx``.

    ``middleware`` (authentication and authorization, in serving mode) runs inside the
    instrumentation and the access log, so rejected requests are counted and logged too.

    With a rules file (``settings.rules.config``) and ``settings.rules.reload_interval > 0``,
    ``ctx.rules_watcher`` is a :class:`adapter.serving.reload.RulesWatcher` (kept if the context
    has one already); its polling task runs with the other background tasks.
    """
    rules = ctx.settings.rules
    if ctx.rules_watcher is None and rules.config and rules.reload_interval > 0:
        ctx.rules_watcher = RulesWatcher(ctx, interval=rules.reload_interval)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        if background:
            _start_background(ctx)
        try:
            yield
        finally:
            await ctx.aclose()

    app = AdapterApp(
        ctx,
        title="llm-metrics-adapter",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        # No 307 to the slash-less path: its Location is built from the client's Host header
        # (a redirect anywhere the client names) and the aggregator's callers cannot follow it.
        # A trailing slash gets the same metav1.Status as any other unknown path.
        redirect_slashes=False,
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for module in (health, openapi, debug, discovery, values):
        app.include_router(module.router)
    app.include_router(hpa_api.router)
    app.include_router(ui_api.router)
    # Added first, so innermost: a request authorized and answered before is served whole.
    app.add_middleware(CachedResponses, responses=ctx.provider.responses)
    # It sees the user the auth middleware put in the scope.
    app.add_middleware(UserProbe)
    for item in reversed(middleware):
        app.add_middleware(item.cls, *item.args, **item.kwargs)
    # Outside authentication, inside the access log: a refusal costs no review and is counted.
    limit = ctx.settings.serving.max_requests_inflight
    if limit < 0:
        raise ConfigError(f"--max-requests-inflight must be 0 (no limit) or more, not {limit}")
    if limit:
        app.add_middleware(InflightLimit, limit=limit)
    app.add_middleware(AccessLog, observers=[_instrument(ctx.telemetry)])
    return app
