"""Backend failure policy through the real app: stale-if-error, the circuit breaker, and rules
reload reported on /readyz, /debug/metrics and /metrics."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import httpx

from adapter.domain.errors import BackendUnavailableError
from adapter.rules.loader import load_configured_rules
from adapter.serving.asgi import build_context, create_app
from adapter.serving.reload import RulesWatcher
from adapter.settings import Settings
from sim.fake_backend import FakeBackend
from tests.support.app import AppFactory, client_for

PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"
OUTAGE = BackendUnavailableError("connection refused to /api/v1/query", backend="prometheus")
SINCE = re.compile(
    r"^prometheus: unavailable since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \(\d+ s\): "
    r"connection refused to /api/v1/query"
)


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name}{labels} not exported"
    return float(match.group(1))


async def assert_circuit(c: httpx.AsyncClient, state: str, gauge: float) -> None:
    """The fake backend's circuit is in ``state`` on /debug/metrics, and /metrics exports its
    state gauge as ``gauge`` (0 closed, 2 open)."""
    debug = (await c.get("/debug/metrics")).json()
    assert debug["circuitBreakers"]["fake"]["state"] == state
    text = (await c.get("/metrics")).text
    assert metric(text, "llm_metrics_adapter_backend_circuit_state", '{backend="fake"}') == gauge


async def test_stale_answer_within_the_window_then_503(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx(cache_ttl=0, stale_if_error=0.5)
    async with await client_for(ctx) as c:
        fresh = await c.get(PATH)
        assert fresh.status_code == 200 and fresh.json()["items"][0]["value"] == "8"

        fake.fail_with(OUTAGE)
        stale = await c.get(PATH)
        assert stale.status_code == 200 and stale.json()["items"][0]["value"] == "8"
        debug = (await c.get("/debug/query", params={"path": PATH})).json()
        assert debug["cache"]["state"] == "stale"
        assert SINCE.match(debug["cache"]["error"]), debug["cache"]
        assert debug["answer"]["items"][0]["value"] == "8" and debug["error"] is None
        text = (await c.get("/metrics")).text
        assert metric(text, "llm_metrics_adapter_stale_answers_total", '{backend="fake"}') == 2
        assert metric(text, "llm_metrics_adapter_cache_requests_total", '{result="stale"}') == 2

        await asyncio.sleep(0.6)  # past the window
        gone = await c.get(PATH)
        assert gone.status_code == 503
        body = gone.json()
        assert body["reason"] == "ServiceUnavailable" and SINCE.match(body["message"]), body

        fake.fail_with(None)
        back = await c.get(PATH)
        assert back.status_code == 200
        debug = (await c.get("/debug/query", params={"path": PATH})).json()
        assert debug["cache"]["state"] in {"miss", "disabled"}
        assert "error" not in debug["cache"]


async def test_without_stale_if_error_a_failure_is_an_immediate_503(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    async with await client_for(make_ctx(cache_ttl=0)) as c:
        assert (await c.get(PATH)).status_code == 200
        fake.fail_with(OUTAGE)
        r = await c.get(PATH)
        assert r.status_code == 503 and SINCE.match(r.json()["message"])


async def test_open_circuit_fails_fast_without_querying_and_recovers(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx(cache_ttl=0, circuit_failures=3, circuit_cooldown=0.3)
    async with await client_for(ctx) as c:
        fake.fail_with(OUTAGE)
        for _ in range(3):
            assert (await c.get(PATH)).status_code == 503
        assert len(fake.queries) == 3
        await assert_circuit(c, "open", 2)

        for _ in range(20):
            r = await c.get(PATH)
            assert r.status_code == 503
            assert "circuit open, next try in" in r.json()["message"]
            assert SINCE.match(r.json()["message"])
        assert len(fake.queries) == 3, "an open circuit must not reach the backend"
        text = (await c.get("/metrics")).text
        rejected = '{backend="fake"}'
        assert metric(text, "llm_metrics_adapter_backend_circuit_rejections_total", rejected) == 20

        # After the cool-down, one probe goes through; the backend is back, so it closes.
        fake.fail_with(None)
        await asyncio.sleep(0.35)
        assert (await c.get(PATH)).status_code == 200
        assert len(fake.queries) == 4
        await assert_circuit(c, "closed", 0)


async def test_open_circuit_still_serves_stale_answers(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx(cache_ttl=0, circuit_failures=1, circuit_cooldown=30, stale_if_error=60)
    async with await client_for(ctx) as c:
        assert (await c.get(PATH)).status_code == 200
        fake.fail_with(OUTAGE)
        for _ in range(5):
            r = await c.get(PATH)
            assert r.status_code == 200 and r.json()["items"][0]["value"] == "8"
        assert len(fake.queries) == 2, "one failed query opened the circuit; the rest were stale"
        debug = (await c.get("/debug/query", params={"path": PATH})).json()
        assert debug["cache"]["state"] == "stale"
        assert "circuit open" in debug["cache"]["error"]


async def test_rules_reload_error_is_reported_and_the_server_stays_ready(
    tmp_path: Path, fake: FakeBackend
) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("metrics:\n  - name: backlog_a\n    type: external\n    query: sum(up)\n")
    settings = Settings.from_options(config=str(path), presets=True, standalone=True, cluster="c1")
    ctx = build_context(settings, backend=fake, rules=load_configured_rules(settings))
    ctx.backend_ready = True
    app = create_app(ctx, background=False)
    watcher = ctx.rules_watcher
    assert isinstance(watcher, RulesWatcher)
    # This app's own watcher is the one to drive, so no client_for (which builds another app).
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://adapter"
    ) as c:
        debug = (await c.get("/debug/metrics")).json()
        assert debug["reloadError"] is None and debug["lastReload"] is not None

        path.write_text("metrics:\n  - name: backlog_a\n    type: wrong\n")
        await watcher.check()
        ready = await c.get("/readyz", params={"verbose": ""})
        assert ready.status_code == 200
        line = next(x for x in ready.text.splitlines() if x.startswith("[+]rules"))
        assert line.startswith("[+]rules ok: serving the last good rules; reload failed: ")
        assert "rules.yaml" in line
        debug = (await c.get("/debug/metrics")).json()
        assert "rules.yaml" in debug["reloadError"]
        assert any(m["name"] == "backlog_a" for m in debug["metrics"]), "old rules still served"
        text = (await c.get("/metrics")).text
        assert metric(text, "llm_metrics_adapter_rule_reloads_total", '{result="error"}') == 1

        path.write_text("metrics:\n  - name: backlog_b\n    type: external\n    query: sum(up)\n")
        await watcher.check()
        debug = (await c.get("/debug/metrics")).json()
        names = {m["name"] for m in debug["metrics"]}
        assert "backlog_b" in names and "backlog_a" not in names
        assert debug["reloadError"] is None
        ready = await c.get("/readyz", params={"verbose": ""})
        assert "[+]rules ok: " in ready.text and "reload failed" not in ready.text
        text = (await c.get("/metrics")).text
        assert metric(text, "llm_metrics_adapter_rule_reloads_total", '{result="ok"}') == 1
        stamp = metric(text, "llm_metrics_adapter_rules_last_reload_success_timestamp_seconds")
        assert stamp == watcher.status.last_reload
