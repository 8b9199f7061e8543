"""The real app in this process: a standalone context over a backend, and a client through ASGI."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import httpx

from adapter.app.context import AppContext
from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.rules.loader import load_rules, load_rules_text
from adapter.serving.asgi import build_context, create_app
from adapter.settings import Settings
from sim.fake_backend import FakeBackend

__all__ = ["AppFactory", "ClusterClient", "client_for", "cluster_clients", "fleet_context"]

AppFactory = Callable[..., AppContext]
"""What the API tier's ``make_ctx`` fixture is: :func:`fleet_context` over its fake backend."""


def fleet_context(
    backend: FakeBackend,
    *,
    rules_text: str | None = None,
    presets: bool = True,
    **settings: object,
) -> AppContext:
    """A standalone context for cluster ``c1`` over ``backend`` (5 s cache), marked ready;
    ``settings`` override :class:`Settings` fields."""
    base: dict[str, object] = {"cluster": "c1", "standalone": True, "cache_ttl": 5.0}
    base.update(settings)
    rules = (
        load_rules_text(rules_text, filename="rules.yaml", presets=presets)
        if rules_text is not None
        else load_rules(None, presets=presets)
    )
    ctx = build_context(Settings.from_options(**base), backend=backend, rules=rules)
    ctx.backend_ready = True
    return ctx


async def client_for(ctx: AppContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx, background=False)),
        base_url="http://adapter",
    )


ClusterClient = Callable[..., Awaitable[httpx.AsyncClient]]
"""``await make(cluster=..., rules=...)``: a client of the app scoped to that cluster."""


@contextlib.asynccontextmanager
async def cluster_clients(prometheus_url: str) -> AsyncIterator[ClusterClient]:
    """Clients of standalone apps over a real Prometheus at ``prometheus_url``, one per call,
    each scoped to the ``cluster`` it is asked for (1 s cache; presets, plus ``rules`` text in
    any rules format); every client and backend is closed on exit."""
    clients: list[httpx.AsyncClient] = []
    backends: list[PrometheusBackend] = []

    async def make(cluster: str = "c1", *, rules: str | None = None) -> httpx.AsyncClient:
        backend = PrometheusBackend(PrometheusSettings(url=prometheus_url))
        backends.append(backend)
        ruleset = (
            load_rules_text(rules, filename="values.yaml", presets=True)
            if rules
            else load_rules(None, presets=True)
        )
        ctx = build_context(
            Settings.from_options(cluster=cluster, standalone=True, cache_ttl=1.0),
            backend=backend,
            rules=ruleset,
        )
        ctx.backend_ready = True
        await ctx.registry.refresh()
        clients.append(await client_for(ctx))
        return clients[-1]

    try:
        yield make
    finally:
        for client in clients:
            await client.aclose()
        for backend in backends:
            await backend.aclose()
