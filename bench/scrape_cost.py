"""CPU per pod scrape on the --scrape-pods path, and what 1,000 pods at one scrape per 15 s cost.

``python -m bench.scrape_cost [--pods 200] [--rounds 5] [--engines 2]`` serves one simulated
JetStream pod's body (``bench.exposition_parse.bodies``) from a separate process on 127.0.0.1
(so the server's CPU is not counted), points ``--pods`` scrape targets at it, and has
:class:`adapter.scrape.source.PodScraper` scrape them all ``--rounds`` times, each round followed
by an evaluation of the prefill-backlog preset over every pod, as a request would. It prints the
adapter process' CPU time per scrape (HTTP keep-alive GET, parse, labels, window ingest) and the
share of one core that 1,000 pods scraped every 15 s would take (the target: at most 0.2).
Bounded: it stops by itself after ``--pods`` × ``--rounds`` scrapes.
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from adapter.scrape.source import PodScraper, ScrapeStats
from adapter.scrape.targets import ScrapeTarget
from bench.exposition_parse import bodies
from sim.prometheus import _free_port

__all__ = ["main", "measure"]

QUERY = 'sum(jetstream_prefill_backlog_size{cluster="bench",namespace="llm"})'


def _serve(body: bytes) -> tuple[subprocess.Popen[bytes], str]:
    """``body`` at ``/metrics`` from a ``python -m http.server`` child on a free loopback port."""
    root = Path(tempfile.mkdtemp(prefix="lma-scrape-bench-"))
    (root / "metrics").write_bytes(body)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1", "-d", str(root)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return proc, f"http://127.0.0.1:{port}/metrics"


async def measure(pods: int, rounds: int, engines: int) -> dict[str, float]:
    text, _ = bodies(engines)
    proc, url = _serve(text)
    try:
        targets = [ScrapeTarget("llm", f"jetstream-{i}", url) for i in range(pods)]
        scraper = PodScraper(targets, cluster="bench", min_interval=0.0, concurrency=2)
        deadline = time.monotonic() + 10
        while (await scraper.answer(QUERY)) is None or scraper.stats.results.get("ok", 0) < pods:
            if time.monotonic() > deadline:
                raise SystemExit(f"the body server at {url} does not answer: {scraper.stats}")
            await asyncio.sleep(0.2)
        scraper.stats = ScrapeStats()  # the warm-up's connection attempts are not measured
        cpu, wall = time.process_time(), time.monotonic()
        for _ in range(rounds):
            result = await scraper.answer(QUERY)
            if result is None or not result.samples:
                raise SystemExit("the preset query found no samples")
        cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        await scraper.aclose()
        failed = {k: v for k, v in scraper.stats.results.items() if k != "ok"}
        if failed:
            raise SystemExit(f"scrapes failed: {failed}")
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    scrapes = pods * rounds
    per_scrape = cpu / scrapes
    return {
        "scrapes": scrapes,
        "body_bytes": len(text),
        "cpu_ms_per_scrape": per_scrape * 1000,
        "scrapes_per_second": scrapes / wall,
        "cores_for_1000_pods_every_15s": per_scrape * 1000 / 15,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--engines", type=int, default=2)
    args = parser.parse_args(argv)
    print(f">> scraping {args.pods} targets x {args.rounds} rounds", file=sys.stderr)
    out = asyncio.run(measure(args.pods, args.rounds, args.engines))
    for key, value in out.items():
        print(f"{key}: {value:.3f}" if isinstance(value, float) else f"{key}: {value}")


if __name__ == "__main__":
    main()
