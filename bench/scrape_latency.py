"""What reading the pods at the HPA's request adds to the request's latency.

``python -m bench.scrape_latency [--requests 300] [--pods 2]`` starts ``--pods`` simulated
JetStream servers on 127.0.0.1 and a real Prometheus scraping them every second, builds the
adapter in this process (standalone, the built-in presets) four ways, and times ``--requests``
metrics API requests through its ASGI app (alternately the Pods preset for ``pods/*`` and the
External total of ``jetstream_prefill_backlog_size``), one at a time, printing p50 and p99 in
milliseconds:

- ``prometheus, default cache``: the Prometheus path as shipped (mostly cache hits);
- ``prometheus, --cache-ttl 0``: one Prometheus query per request;
- ``--scrape-pods``: as shipped (a request within ``--scrape-min-interval`` shares the last
  scrape);
- ``--scrape-pods, every request scrapes``: ``--scrape-min-interval 0``, what an HPA request
  meets, since its pods were last read a sync period earlier.

Bounded: it stops by itself after the requests; nothing listens after it exits.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.rules.loader import load_rules
from adapter.serving.asgi import build_context, create_app
from adapter.settings import Settings
from sim.jetstream import JetStreamValues, SimServer
from sim.prometheus import LocalPrometheus

__all__ = ["main", "measure"]

NAMESPACE = "llm"
PATHS = (
    f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NAMESPACE}/pods/*/"
    "jetstream_prefill_backlog_size",
    f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/jetstream_prefill_backlog_size",
)
WAYS: dict[str, dict[str, object]] = {
    "prometheus, default cache": {},
    "prometheus, --cache-ttl 0": {"cache_ttl": 0.0},
    "--scrape-pods": {"scrape_pods": True},
    "--scrape-pods, every request scrapes": {"scrape_pods": True, "scrape_min_interval": 0.0},
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, round(q * len(ordered) + 0.5) - 1)]


async def _time(
    prom: LocalPrometheus, targets: Path, options: dict[str, object], n: int
) -> list[float]:
    if options.get("scrape_pods"):
        options = {**options, "scrape_targets": str(targets)}
    settings = Settings.from_options(cluster="bench", standalone=True, **options)
    backend = PrometheusBackend(PrometheusSettings(url=prom.url))
    ctx = build_context(settings, backend=backend, rules=load_rules(None, presets=True))
    ctx.backend_ready = True
    seconds: list[float] = []
    async with ctx:
        await ctx.registry.refresh()
        transport = httpx.ASGITransport(app=create_app(ctx, background=False))
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as client:
            for i in range(n + 20):
                started = time.perf_counter()
                response = await client.get(PATHS[i % len(PATHS)])
                elapsed = time.perf_counter() - started
                if response.status_code != 200 or not response.json()["items"]:
                    raise SystemExit(
                        f"{PATHS[i % len(PATHS)]}: {response.status_code} {response.text}"
                    )
                if i >= 20:  # the first requests warm connections and the cache
                    seconds.append(elapsed)
                await asyncio.sleep(0.01)
    return seconds


def measure(requests: int, pods: int) -> dict[str, tuple[float, float]]:
    """``{way: (p50 ms, p99 ms)}``."""
    servers = [
        SimServer(pod=f"jetstream-{i}", namespace=NAMESPACE, cluster="bench", engines=2).start()
        for i in range(pods)
    ]
    prom: LocalPrometheus | None = None
    try:
        for server in servers:
            server.set_values(
                JetStreamValues(
                    prefill_backlog=3,
                    slots=(0.5, 0.25),
                    transfer_backlog=(1, 1),
                    generate_backlog=(1, 1),
                    requests_waiting=4,
                    kv_cache=0.5,
                )
            )
        prom = LocalPrometheus([s.target for s in servers]).start()
        prom.wait_for("count(up == 1)", lambda s: bool(s) and s[0].value == pods)
        prom.wait_for(
            "count(jetstream_prefill_backlog_size)", lambda s: bool(s) and s[0].value >= pods
        )
        targets = Path(tempfile.mkdtemp(prefix="lma-scrape-latency-")) / "targets.yaml"
        entries = [{"namespace": NAMESPACE, "pod": s.pod, "url": s.url} for s in servers]
        targets.write_text(yaml.safe_dump(entries))
        out: dict[str, tuple[float, float]] = {}
        for way, options in WAYS.items():
            seconds = asyncio.run(_time(prom, targets, dict(options), requests))
            out[way] = (statistics.median(seconds) * 1000, _percentile(seconds, 0.99) * 1000)
        return out
    finally:
        if prom is not None:
            prom.stop()
        for server in servers:
            server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--pods", type=int, default=2)
    args = parser.parse_args(argv)
    for way, (p50, p99) in measure(args.requests, args.pods).items():
        print(f"{way:40} p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")


if __name__ == "__main__":
    main()
