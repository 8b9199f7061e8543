"""Rendered responses (adapter.core.responses): a repeated request is served whole, and never
once any of its inputs changed — the backend's answer, the objects matched, the metric, the clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from adapter.app.context import AppContext
from adapter.core.answer import Trace
from adapter.core.request import parse_api_path
from adapter.core.responses import ResponseCache
from adapter.domain.models import GroupResource, Requirement
from sim.fake_backend import FakeBackend
from tests.support.app import AppFactory, client_for
from tests.support.fake_fleet import NOW

C2 = "/apis/custom.metrics.k8s.io/v1beta2"
E = "/apis/external.metrics.k8s.io/v1beta1"
EXTERNAL = f"{E}/namespaces/team-a/jetstream_prefill_backlog_size"
PODS = f"{C2}/namespaces/team-a/pods/*/jetstream_slots_used_percentage"


def _hits(ctx: AppContext) -> float:
    value = ctx.telemetry.registry.get_sample_value(
        "llm_metrics_adapter_cache_requests_total", {"result": "hit"}
    )
    return value or 0.0


async def test_a_repeated_request_is_served_whole_without_the_route(
    make_ctx: AppFactory, fake: FakeBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = make_ctx()
    async with await client_for(ctx) as c:
        first = await c.get(EXTERNAL)
        asked, hits = len(fake.queries), _hits(ctx)

        async def no_route(*_: object) -> bytes:
            raise AssertionError("a kept response went through the route")

        monkeypatch.setattr(ctx.provider, "respond", no_route)
        again = await c.get(EXTERNAL)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content and again.headers["content-type"] == "application/json"
    assert int(again.headers["content-length"]) == len(first.content)
    assert len(fake.queries) == asked and _hits(ctx) == hits + 1
    assert len(ctx.provider.responses) == 1
    async with await client_for(ctx) as c:
        debug = (await c.get("/debug/metrics")).json()
    assert (debug["renderedResponses"], debug["renderedAgain"]) == (1, 0)


async def test_a_new_backend_answer_is_served_once_the_cache_entry_ends(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx()
    labels = {"__name__": "jetstream_prefill_backlog_size", "cluster": "c1", "namespace": "n"}
    fake.set_series([({**labels, "pod": "p0"}, 1.0, NOW)])
    path = f"{E}/namespaces/n/jetstream_prefill_backlog_size"
    async with await client_for(ctx) as c:
        assert (await c.get(path)).json()["items"][0]["value"] == "1"
        fake.set_series([({**labels, "pod": "p0"}, 7.0, NOW)])
        assert (await c.get(path)).json()["items"][0]["value"] == "1"  # the entry holds: kept
        ctx.provider.cache.clear()  # the entry ends (its TTL, or its next sample is due)
        assert (await c.get(path)).json()["items"][0]["value"] == "7"


class _Pods:
    """An object source whose pods the test changes; ``generation`` moves with them unless
    ``tell`` is off."""

    def __init__(self, names: Sequence[str]) -> None:
        self.pods, self.changes = tuple(names), 0

    def set(self, names: Sequence[str]) -> None:
        self.pods, self.changes = tuple(names), self.changes + 1

    async def names(
        self, resource: GroupResource, namespace: str | None, selector: Sequence[Requirement]
    ) -> tuple[str, ...]:
        return self.pods

    def generation(self, resource: GroupResource, namespace: str | None) -> int:
        return self.changes


class _Untold(_Pods):
    generation = None  # type: ignore[assignment]  # a source that cannot tell


async def test_a_change_of_the_matched_objects_is_seen_at_the_next_request(
    make_ctx: AppFactory,
) -> None:
    ctx, pods = make_ctx(), _Pods(["a-0", "a-1"])
    ctx.provider.objects = pods
    async with await client_for(ctx) as c:
        names = [i["describedObject"]["name"] for i in (await c.get(PODS)).json()["items"]]
        assert names == ["a-0", "a-1"] and len(ctx.provider.responses) == 1
        pods.set(["a-0"])
        names = [i["describedObject"]["name"] for i in (await c.get(PODS)).json()["items"]]
    assert names == ["a-0"]


async def test_objects_from_a_source_that_cannot_tell_are_matched_at_every_request(
    make_ctx: AppFactory,
) -> None:
    ctx = make_ctx()
    ctx.provider.objects = _Untold(["a-0", "a-1"])
    async with await client_for(ctx) as c:
        assert (await c.get(PODS)).status_code == 200
        assert (await c.get(EXTERNAL)).status_code == 200
    assert len(ctx.provider.responses) == 1  # the External answer only


async def test_a_value_past_the_maximum_sample_age_is_not_served_from_a_kept_response(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx(max_sample_age=120)
    start = time.time()
    now = [start]
    ctx.provider.responses = ResponseCache(ctx.provider, clock=lambda: now[0])
    labels = {"__name__": "jetstream_prefill_backlog_size", "cluster": "c1", "namespace": "n"}
    fake.set_series([({**labels, "pod": "p0"}, 1.0, start - 100)])
    path = f"{E}/namespaces/n/jetstream_prefill_backlog_size"
    async with await client_for(ctx) as c:
        assert [i["value"] for i in (await c.get(path)).json()["items"]] == ["1"]
        now[0] = start + 30  # the sample is 130 s old: the kept response must not serve it
        assert ctx.provider.responses.lookup(path, b"") is None


async def test_a_metric_no_longer_served_is_not_answered_from_a_kept_response(
    make_ctx: AppFactory,
) -> None:
    ctx = make_ctx()
    async with await client_for(ctx) as c:
        assert (await c.get(EXTERNAL)).status_code == 200
        ctx.registry.set_rules([])
        r = await c.get(EXTERNAL)
    assert r.status_code == 404, r.text


async def test_nothing_is_kept_with_the_cache_off(make_ctx: AppFactory, fake: FakeBackend) -> None:
    ctx = make_ctx(cache_ttl=0)
    async with await client_for(ctx) as c:
        for _ in range(3):
            assert (await c.get(EXTERNAL)).status_code == 200
    assert len(ctx.provider.responses) == 0 and len(fake.queries) == 3


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_a_prefetched_entry_is_rendered_again_before_the_request_comes(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx()
    labels = {"__name__": "jetstream_prefill_backlog_size", "cluster": "c1", "namespace": "n"}
    fake.set_series([({**labels, "pod": "p0"}, 1.0, time.time())])
    path = f"{E}/namespaces/n/jetstream_prefill_backlog_size"
    async with await client_for(ctx) as c:
        assert (await c.get(path)).json()["items"][0]["value"] == "1"
        trace = Trace()
        await ctx.provider.answer(parse_api_path(path), trace=trace)
        assert trace.cache_key is not None and trace.refetch is not None
        # What the prefetch does just before the HPA's next sync: a new entry for the key.
        fake.set_series([({**labels, "pod": "p0"}, 7.0, time.time())])
        ctx.provider.cache.clear()
        await ctx.provider.cache.get(trace.cache_key, trace.refetch)
        asked, hits = len(fake.queries), _hits(ctx)
        ctx.provider.responses.refreshed(trace.cache_key)
        await _settle()
        assert ctx.provider.responses.rerenders == 1
        assert (len(fake.queries), _hits(ctx)) == (asked, hits)  # no query, nothing counted
        kept = ctx.provider.responses.lookup(path, b"")
        assert kept is not None and b'"value":"7"' in kept


async def test_a_render_after_a_prefetch_never_queries_the_backend(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx()
    async with await client_for(ctx) as c:
        assert (await c.get(EXTERNAL)).status_code == 200
        trace = Trace()
        await ctx.provider.answer(parse_api_path(EXTERNAL), trace=trace)
        assert trace.cache_key is not None
        ctx.provider.cache.clear()  # the entry is gone by the time the render runs
        asked = len(fake.queries)
        ctx.provider.responses.refreshed(trace.cache_key)
        await _settle()
    assert len(fake.queries) == asked and ctx.provider.responses.rerenders == 0
