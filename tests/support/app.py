"""The real app in this process: a standalone context over a backend, and a client through ASGI."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from adapter.app.context import AppContext
from adapter.rules.loader import load_rules, load_rules_text
from adapter.serving.asgi import build_context, create_app
from adapter.settings import Settings
from sim.fake_backend import FakeBackend

__all__ = ["AppFactory", "client_for", "fleet_context"]

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
