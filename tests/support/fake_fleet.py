"""API tests: the real app, the real rules and presets, and the PromQL-evaluating fake backend."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from adapter.app.context import AppContext
from adapter.rules.loader import load_rules, load_rules_text
from adapter.serving.asgi import build_context, create_app
from adapter.settings import Settings
from sim.fake_backend import FakeBackend, SeriesSpec

NOW = time.time()


def jetstream_series(
    *, cluster: str, namespace: str, pod: str, backlog: float, slots: tuple[float, ...], ts: float
) -> list[SeriesSpec]:
    target = {"cluster": cluster, "namespace": namespace, "pod": pod, "id": pod, "job": "jetstream"}
    out: list[SeriesSpec] = [
        ({"__name__": "jetstream_prefill_backlog_size", **target}, backlog, ts)
    ]
    for idx, fraction in enumerate(slots):
        out.append(
            (
                {"__name__": "jetstream_slots_used_percentage", "idx": str(idx), **target},
                fraction,
                ts,
            )
        )
    return out


def tpu_series(
    *, cluster: str, namespace: str, pod: str, used: float, total: float, ts: float
) -> list[SeriesSpec]:
    labels = {
        "cluster": cluster,
        "namespace": "kube-system",
        "exported_namespace": namespace,
        "exported_pod": pod,
        "container": "jetstream-http",
        "accelerator_id": "0",
        "make": "cloud-tpu",
    }
    return [
        ({"__name__": "memory_used", **labels}, used, ts),
        ({"__name__": "memory_total", **labels}, total, ts),
    ]


def fleet_series() -> list[SeriesSpec]:
    """Two clusters, two namespaces; the same metric names everywhere, different values."""
    ts = NOW - 2
    series: list[SeriesSpec] = []
    series += jetstream_series(
        cluster="c1", namespace="team-a", pod="a-0", backlog=3, slots=(0.5, 0.25), ts=ts
    )
    series += jetstream_series(
        cluster="c1", namespace="team-a", pod="a-1", backlog=5, slots=(1.0, 0.5), ts=ts
    )
    series += jetstream_series(
        cluster="c1", namespace="team-b", pod="b-0", backlog=100, slots=(0.9, 0.9), ts=ts
    )
    series += jetstream_series(
        cluster="c2", namespace="team-a", pod="a-0", backlog=1000, slots=(0.1, 0.1), ts=ts
    )
    series += tpu_series(cluster="c1", namespace="team-a", pod="a-0", used=4, total=16, ts=ts)
    series += tpu_series(cluster="c1", namespace="team-a", pod="a-1", used=8, total=16, ts=ts)
    series += tpu_series(cluster="c1", namespace="team-b", pod="b-0", used=16, total=16, ts=ts)
    return series


def fleet_backend() -> FakeBackend:
    """The fake backend holding :func:`fleet_series`."""
    backend = FakeBackend()
    backend.set_series(fleet_series())
    return backend


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


@pytest.fixture
def fake() -> FakeBackend:
    return fleet_backend()


AppFactory = Callable[..., AppContext]


@pytest.fixture
def make_ctx(fake: FakeBackend) -> AppFactory:
    def make(**kwargs: Any) -> AppContext:
        return fleet_context(fake, **kwargs)

    return make


@pytest.fixture
async def client(make_ctx: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(make_ctx(), background=False)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://adapter"
    ) as c:
        yield c


async def client_for(ctx: AppContext) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=create_app(ctx, background=False)),
        base_url="http://adapter",
    )
