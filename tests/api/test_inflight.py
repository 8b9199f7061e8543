"""--max-requests-inflight: requests over the limit are refused at once with kube-apiserver's
429 Status and Retry-After, never queued; probes and /metrics are served whatever the load; a
refusal is counted; the limit frees as requests finish."""

from __future__ import annotations

import asyncio
import re

import pytest

from adapter.domain.errors import ConfigError
from adapter.serving.asgi import create_app
from sim.fake_backend import FakeBackend
from tests.support.app import AppFactory, client_for

EXTERNAL = "/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/jetstream_prefill_backlog_size"


async def test_a_request_over_the_limit_is_refused_with_429_and_retry_after(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    fake.delay = 1.0  # each answer takes a second: two requests fill the limit
    async with await client_for(make_ctx(max_requests_inflight=2, cache_ttl=0)) as client:
        held = [
            asyncio.create_task(client.get(EXTERNAL.format(ns=ns))) for ns in ("team-a", "team-b")
        ]
        await asyncio.sleep(0.2)
        refused = await client.get(EXTERNAL.format(ns="team-a"))
        assert refused.status_code == 429, refused.text
        assert refused.headers["retry-after"] == "1"
        body = refused.json()
        assert (body["kind"], body["reason"], body["code"]) == ("Status", "TooManyRequests", 429)
        # The kubelet's probes and the adapter's metrics are never refused.
        for path in ("/healthz", "/livez", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200, path
        assert [r.status_code for r in await asyncio.gather(*held)] == [200, 200]
        # Freed: the next request is served.
        assert (await client.get(EXTERNAL.format(ns="team-a"))).status_code == 200
        metrics = (await client.get("/metrics")).text
    refusals = re.findall(
        r'^llm_metrics_adapter_requests_total\{[^}]*code="429"[^}]*\} (\S+)$', metrics, re.M
    )
    assert [float(v) for v in refusals] == [1.0], metrics


async def test_zero_is_no_limit_and_a_negative_limit_is_refused(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    fake.delay = 0.3
    async with await client_for(make_ctx(max_requests_inflight=0, cache_ttl=0)) as client:
        answers = await asyncio.gather(
            *(client.get(EXTERNAL.format(ns=f"team-{x}")) for x in "abababab")
        )
    assert {a.status_code for a in answers} == {200}
    with pytest.raises(ConfigError, match="--max-requests-inflight must be 0"):
        create_app(make_ctx(max_requests_inflight=-1), background=False)
