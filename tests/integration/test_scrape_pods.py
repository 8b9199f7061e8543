"""--scrape-pods in standalone mode: the JetStream and TPU presets answered from the pods
themselves (a --scrape-targets file) equal the answers the Prometheus path gives for the same
exporters; a pod that cannot be scraped is left out or sends the query to the backend; the
scrape client fetches only the listed URLs and follows no redirect."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import yaml

from adapter.api.debug import trace_document
from adapter.app.context import AppContext
from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.core.provider import Trace
from adapter.core.request import parse_path_string
from adapter.rules.loader import load_rules
from adapter.scrape.source import SCRAPE_SOURCE
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.jetstream import JetStreamValues, SimServer, SimTpuExporter, TpuChipValues
from sim.prometheus import LocalPrometheus
from tests.support.ports import free_port
from tests.support.presets import jetstream_and_tpu_paths

pytestmark = pytest.mark.integration

E = "/apis/external.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
PODS = {("team-a", "jetstream-0"): 0, ("team-a", "jetstream-1"): 1, ("team-b", "jetstream-0"): 2}


def _values(k: int) -> JetStreamValues:
    return JetStreamValues(
        prefill_backlog=3 + 7 * k,
        slots=(0.125 * (k + 1), 0.25),
        transfer_backlog=(k, 1),
        generate_backlog=(2 * k, 1),
        requests_waiting=4 + k,
        kv_cache=0.5,
    )


class Fleet:
    def __init__(self) -> None:
        self.servers: dict[tuple[str, str], SimServer] = {}
        self.tpu = SimTpuExporter(cluster="c1", plugin_pod="tpu-device-plugin-0")

    def start(self) -> Fleet:
        self.tpu.start()
        for (namespace, pod), k in PODS.items():
            server = SimServer(pod=pod, namespace=namespace, cluster="c1", engines=2).start()
            server.set_values(_values(k))
            self.servers[namespace, pod] = server
            self.tpu.set_chip(
                TpuChipValues(
                    namespace=namespace,
                    pod=pod,
                    accelerator_id=f"chip-{k}",
                    memory_used=1024.0 * (k + 1),
                    memory_total=4096.0,
                    duty_cycle=10.0 * (k + 1),
                    tensorcore_utilization=5.0 * (k + 1),
                )
            )
        return self

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        self.tpu.stop()

    def targets_file(self, path: Path) -> Path:
        entries = [
            {"namespace": ns, "pod": pod, "url": server.url}
            for (ns, pod), server in self.servers.items()
        ]
        entries.append(
            {"namespace": "kube-system", "pod": "tpu-device-plugin-0", "url": self.tpu.url}
        )
        path.write_text(yaml.safe_dump(entries))
        return path


@pytest.fixture(scope="module")
def fleet_and_prometheus() -> Iterator[tuple[Fleet, LocalPrometheus]]:
    fleet = Fleet().start()
    targets = [s.target for s in fleet.servers.values()] + [fleet.tpu.target]
    prom = LocalPrometheus(targets).start()
    try:
        prom.wait_for("count(up == 1)", lambda s: bool(s) and s[0].value == len(targets))
        prom.wait_for("count(memory_used)", lambda s: bool(s) and s[0].value == len(PODS))
        yield fleet, prom
    finally:
        prom.stop()
        fleet.stop()


async def _context(prom: LocalPrometheus, **options: object) -> AppContext:
    settings = Settings.from_options(cluster="c1", standalone=True, cache_ttl=0.0, **options)
    backend = PrometheusBackend(PrometheusSettings(url=prom.url))
    ctx = build_context(settings, backend=backend, rules=load_rules(None, presets=True))
    ctx.backend_ready = True
    await ctx.registry.refresh()
    return ctx


@pytest.fixture
async def contexts(
    fleet_and_prometheus: tuple[Fleet, LocalPrometheus], tmp_path: Path
) -> AsyncIterator[tuple[AppContext, AppContext, Fleet]]:
    fleet, prom = fleet_and_prometheus
    targets = fleet.targets_file(tmp_path / "targets.yaml")
    scraped = await _context(prom, scrape_pods=True, scrape_targets=str(targets))
    plain = await _context(prom)
    async with scraped, plain:
        yield scraped, plain, fleet


async def _answer(ctx: AppContext, path: str) -> tuple[dict[str, str], str]:
    trace = Trace()
    answer = await ctx.provider.answer(parse_path_string(path), trace=trace)
    values = {
        (item.get("describedObject") or {}).get("name") or str(item.get("metricLabels")): item[
            "value"
        ]
        for item in answer.body["items"]
    }
    assert trace.result is not None
    return values, trace.result.backend


async def test_every_jetstream_and_tpu_preset_is_served_from_the_pods_as_prometheus_serves_it(
    contexts: tuple[AppContext, AppContext, Fleet],
) -> None:
    scraped, plain, _ = contexts
    paths = jetstream_and_tpu_paths("team-a")
    assert len(paths) >= 8, paths
    for path in paths:
        got, source = await _answer(scraped, path)
        want, via = await _answer(plain, path)
        assert source == SCRAPE_SOURCE, (path, source)
        assert via != SCRAPE_SOURCE
        assert got == want and got, (path, got, want)
    stats = scraped.provider.backend.scraper.stats  # type: ignore[attr-defined]
    assert stats.results.get("ok", 0) >= len(PODS) + 1
    assert set(stats.results) == {"ok"}


async def test_a_pod_that_cannot_be_scraped_is_left_out(
    contexts: tuple[AppContext, AppContext, Fleet],
) -> None:
    scraped, _, fleet = contexts
    path = f"{C2}/namespaces/team-a/pods/*/jetstream_prefill_backlog_size"
    before, _ = await _answer(scraped, path)
    assert set(before) == {"jetstream-0", "jetstream-1"}
    port = fleet.servers["team-a", "jetstream-1"].port
    fleet.servers["team-a", "jetstream-1"].stop()
    try:
        scraped.provider.backend.scraper._scraped.clear()  # type: ignore[attr-defined]
        after, source = await _answer(scraped, path)
        assert source == SCRAPE_SOURCE
        assert set(after) == {"jetstream-0"}, after  # the HPA's missing-pod rule applies
        assert after["jetstream-0"] == before["jetstream-0"]
    finally:
        restarted = SimServer(
            pod="jetstream-1",
            namespace="team-a",
            cluster="c1",
            engines=2,
            port=port,
        )
        fleet.servers["team-a", "jetstream-1"] = restarted.start()
        restarted.set_values(_values(PODS["team-a", "jetstream-1"]))


async def test_with_fallback_backend_a_failed_pod_sends_the_query_to_the_backend(
    fleet_and_prometheus: tuple[Fleet, LocalPrometheus], tmp_path: Path
) -> None:
    fleet, prom = fleet_and_prometheus
    targets = fleet.targets_file(tmp_path / "targets.yaml")
    text = yaml.safe_load(targets.read_text())
    text.append(
        {"namespace": "team-a", "pod": "gone", "url": f"http://127.0.0.1:{free_port()}/metrics"}
    )
    targets.write_text(yaml.safe_dump(text))
    ctx = await _context(
        prom, scrape_pods=True, scrape_targets=str(targets), scrape_fallback="backend"
    )
    async with ctx:
        values, source = await _answer(ctx, f"{E}/namespaces/team-a/jetstream_prefill_backlog_size")
        assert source != SCRAPE_SOURCE and values
        stats = ctx.provider.backend.scraper.stats  # type: ignore[attr-defined]
        assert stats.results.get("unreachable") == 1


async def test_with_fallback_backend_a_pod_the_adapter_cannot_reach_is_the_backends_value(
    fleet_and_prometheus: tuple[Fleet, LocalPrometheus], tmp_path: Path
) -> None:
    """Prometheus scrapes jetstream-1, the adapter cannot (its entry points at a closed port, as
    a NetworkPolicy would make it): the Pods answer takes jetstream-1's value from Prometheus
    and jetstream-0's from the pod, each marked by source; an External total, an aggregate over
    both pods, is Prometheus' whole answer."""
    fleet, prom = fleet_and_prometheus
    # An earlier test restarts jetstream-1: Prometheus must hold its series again.
    prom.wait_for("count(up == 1)", lambda s: bool(s) and s[0].value == len(PODS) + 1)
    targets = fleet.targets_file(tmp_path / "targets.yaml")
    entries = yaml.safe_load(targets.read_text())
    for entry in entries:
        if (entry["namespace"], entry["pod"]) == ("team-a", "jetstream-1"):
            entry["url"] = f"http://127.0.0.1:{free_port()}/metrics"
    targets.write_text(yaml.safe_dump(entries))
    ctx = await _context(
        prom, scrape_pods=True, scrape_targets=str(targets), scrape_fallback="backend"
    )
    plain = await _context(prom)
    async with ctx, plain:
        path = f"{C2}/namespaces/team-a/pods/*/jetstream_prefill_backlog_size"
        trace = Trace()
        await ctx.provider.answer(parse_path_string(path), trace=trace)
        doc = trace_document(trace, now=time.time(), cache_ttl=0)
        by_pod = {s["labels"]["pod"]: s for s in doc["backend"]["samples"]}
        assert {p: s["source"] for p, s in by_pod.items()} == {
            "jetstream-0": SCRAPE_SOURCE,
            "jetstream-1": "prometheus",
        }
        assert doc["backend"]["name"] == f"{SCRAPE_SOURCE}+prometheus"
        want, _ = await _answer(plain, path)
        assert {p: str(s["value"]) for p, s in by_pod.items()} == {
            p: str(float(v)) for p, v in want.items()
        }
        total, source = await _answer(ctx, f"{E}/namespaces/team-a/jetstream_prefill_backlog_size")
        assert source == "prometheus" and total


class _Redirect(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Redirect.hits.append(self.path)
        if self.path == "/metrics":
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.end_headers()
        else:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"jetstream_prefill_backlog_size 999\n")

    def log_message(self, *args: object) -> None:
        return


async def test_redirects_are_not_followed_and_no_credentials_are_sent(
    fleet_and_prometheus: tuple[Fleet, LocalPrometheus], tmp_path: Path
) -> None:
    _, prom = fleet_and_prometheus
    server = http.server.HTTPServer(("127.0.0.1", 0), _Redirect)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        targets = tmp_path / "t.yaml"
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        targets.write_text(yaml.safe_dump([{"namespace": "team-c", "pod": "p", "url": url}]))
        ctx = await _context(prom, scrape_pods=True, scrape_targets=str(targets))
        async with ctx:
            values, source = await _answer(
                ctx, f"{C2}/namespaces/team-c/pods/*/jetstream_prefill_backlog_size"
            )
            assert (values, source) == ({}, SCRAPE_SOURCE)  # never the redirect target's 999
            stats = ctx.provider.backend.scraper.stats  # type: ignore[attr-defined]
            assert stats.results == {"http_3xx": 1}
        assert _Redirect.hits == ["/metrics"]
    finally:
        server.shutdown()
        server.server_close()


async def test_answers_from_the_pods_bypass_the_result_cache(
    fleet_and_prometheus: tuple[Fleet, LocalPrometheus], tmp_path: Path
) -> None:
    """With a long --cache-ttl and keep-warm on, a step right after an answer is still seen by
    the next request once the minimum interval has passed: scraped answers are never cached."""
    fleet, prom = fleet_and_prometheus
    targets = fleet.targets_file(tmp_path / "targets.yaml")
    ctx = await _context(prom, scrape_pods=True, scrape_targets=str(targets))
    ctx.provider.cache.ttl = 60.0  # as if --cache-ttl 60
    path = f"{E}/namespaces/team-b/jetstream_prefill_backlog_size"
    server = fleet.servers["team-b", "jetstream-0"]
    async with ctx:
        first, source = await _answer(ctx, path)
        assert source == SCRAPE_SOURCE
        server.set_backlog(40)
        try:
            time.sleep(ctx.settings.scrape.min_interval + 0.1)
            trace = Trace()
            answer = await ctx.provider.answer(parse_path_string(path), trace=trace)
            assert trace.cache == "disabled"
            assert [i["value"] for i in answer.body["items"]] == ["40"], (first, answer.body)
        finally:
            server.set_values(_values(PODS["team-b", "jetstream-0"]))
