"""``create_app``: the FastAPI application and its lifespan.

The lifespan owns the background tasks (discovery refresh, backend readiness probe) and closes
the backend on shutdown. Routes see only :class:`adapter.app.context.AppContext` on ``app.state``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any

from fastapi import FastAPI
from starlette.middleware import Middleware
from starlette.types import Scope

from adapter import __version__
from adapter.api import debug, discovery, health, openapi, values
from adapter.api import hpa as hpa_api
from adapter.api import ui as ui_api
from adapter.api.access_log import AccessLog, UserProbe
from adapter.api.status import install_error_handlers
from adapter.app.context import AppContext
from adapter.backends.base import Backend
from adapter.core.cache import SingleFlightCache
from adapter.core.provider import MetricsProvider, ObjectSource
from adapter.core.registry import MetricRegistry
from adapter.core.resilience import BreakerPolicy
from adapter.domain.errors import BackendError
from adapter.domain.models import QueryResult
from adapter.observability.telemetry import Telemetry
from adapter.rules.base import Scope as RuleScope
from adapter.rules.loader import RuleSet
from adapter.serving.reload import RulesWatcher
from adapter.settings import Settings

__all__ = ["build_context", "create_app"]

log = logging.getLogger(__name__)


def build_context(
    settings: Settings,
    *,
    backend: Backend,
    rules: RuleSet,
    objects: ObjectSource | None = None,
    backends: Mapping[str, Backend] | None = None,
) -> AppContext:
    """Wire registry, cache and provider. No I/O: also used by the ``query`` command.

    ``backends``: extra backends by rule backend name (``cloud-monitoring``). When ``None`` and
    a rule needs Cloud Monitoring, that backend is built from ``settings`` (no I/O either).
    """
    if backends is None and any(r.backend == "cloud-monitoring" for r in rules.rules):
        from adapter.backends.factory import build_cloud_monitoring_backend

        backends = {"cloud-monitoring": build_cloud_monitoring_backend(settings)}
    telemetry = Telemetry()
    scope = RuleScope(cluster=settings.cluster, cluster_label=settings.cluster_label)
    registry = MetricRegistry(
        rules.rules,
        backend,
        scope=scope,
        interval=settings.discovery_interval,
        timeout=settings.query_timeout,
        telemetry=telemetry,
    )
    cache: SingleFlightCache[tuple[str, str], QueryResult] = SingleFlightCache(
        ttl=settings.cache_ttl,
        stale_ttl=settings.stale_if_error,
        keep_warm=settings.cache_keep_warm,
    )
    provider = MetricsProvider(
        registry=registry,
        backend=backend,
        cache=cache,
        backends=backends,
        scope=scope,
        objects=objects,
        query_timeout=settings.query_timeout,
        max_sample_age=settings.max_sample_age,
        telemetry=telemetry,
        stale_if_error=settings.stale_if_error,
        breaker_policy=BreakerPolicy(
            failure_threshold=settings.circuit_failures,
            cooldown=settings.circuit_cooldown,
            max_cooldown=settings.circuit_max_cooldown,
        ),
    )
    ctx = AppContext(
        settings=settings,
        rules=rules,
        backend=backend,
        registry=registry,
        provider=provider,
        telemetry=telemetry,
    )
    provider.observers.append(ctx.history.record)
    return ctx


async def _probe_backend(ctx: AppContext) -> None:
    """Ping the backend until it answers once (readiness); back off up to 10 s between tries."""
    delay = 0.2
    while not ctx.backend_ready:
        try:
            await ctx.backend.ping(timeout=ctx.settings.query_timeout)
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


def create_app(
    ctx: AppContext,
    *,
    background: bool = True,
    middleware: Sequence[Middleware] = (),
) -> FastAPI:
    """The ASGI app. ``background=False`` skips discovery and readiness tasks (tests drive them).

    ``middleware`` (authentication and authorization, in serving mode) runs inside the
    instrumentation and the access log, so rejected requests are counted and logged too.

    With a rules file (``settings.config``) and ``settings.rules_reload_interval > 0``, a
    :class:`adapter.serving.reload.RulesWatcher` is on ``app.state.rules_watcher`` (``None`` otherwise);
    its polling task runs with the other background tasks.
    """
    watcher = (
        RulesWatcher(ctx, interval=ctx.settings.rules_reload_interval)
        if ctx.settings.config and ctx.settings.rules_reload_interval > 0
        else None
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        tasks: list[asyncio.Task[Any]] = []
        if background:
            tasks.append(asyncio.create_task(ctx.registry.run(), name="discovery"))
            tasks.append(asyncio.create_task(_probe_backend(ctx), name="backend-probe"))
            tasks.append(
                asyncio.create_task(ctx.provider.cache.run_refresher(), name="cache-refresh")
            )
            if watcher is not None:
                tasks.append(asyncio.create_task(watcher.run(), name="rules-reload"))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await ctx.backend.aclose()
            for extra in ctx.provider.backends.values():
                if extra is not ctx.backend:
                    await extra.aclose()

    app = FastAPI(
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
    app.state.ctx = ctx
    app.state.rules_watcher = watcher
    install_error_handlers(app)
    for module in (health, openapi, debug, discovery, values):
        app.include_router(module.router)
    app.include_router(hpa_api.router)
    app.include_router(ui_api.router)
    # Added first, so innermost: it sees the user the auth middleware put in the scope.
    app.add_middleware(UserProbe)
    for item in reversed(middleware):
        app.add_middleware(item.cls, *item.args, **item.kwargs)
    app.add_middleware(AccessLog, observers=[_instrument(ctx.telemetry)])
    return app
