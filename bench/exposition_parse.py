"""CPU per parse of one JetStream pod's exposition: ``adapter.scrape`` against prometheus_client.

``python -m bench.exposition_parse [--engines 2 8] [--repeat 2000]`` renders the body a
simulated JetStream pod serves (``sim.jetstream.SimServer``: its gauges, counter and histogram,
loaded and with observations), in Prometheus text format and in OpenMetrics, and prints the
process CPU time per parse in microseconds:

- ``warm``: the steady state of scraping the same pod again (series labels are cached);
- ``cold``: the first scrape of a pod (label cache emptied before every parse);
- ``prometheus_client``: its text and OpenMetrics parsers, for comparison.

Nothing listens on the network after it exits: the simulated pod is started only to fix its
``instance`` label, then stopped.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable

from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics_client,
)
from prometheus_client.parser import text_string_to_metric_families as parse_text_client

from adapter.scrape import exposition
from sim.jetstream import SimServer

__all__ = ["bodies", "main", "measure", "report"]


def bodies(engines: int) -> tuple[bytes, bytes]:
    """One JetStream pod's body, text format and OpenMetrics."""
    server = SimServer(pod="jetstream-0", namespace="llm", cluster="bench", engines=engines)
    server.start()
    try:
        server.load(0.9)
        server.add_successes(1234)
        rng = random.Random(1)
        for _ in range(500):
            server.observe_ttft(rng.expovariate(4.0))
        return (
            generate_latest(server.registry),
            generate_openmetrics(server.registry),  # type: ignore[no-untyped-call]
        )
    finally:
        server.stop()


def measure(parse: Callable[[], object], repeat: int) -> float:
    """Process CPU microseconds per call of ``parse``."""
    parse()
    started = time.process_time()
    for _ in range(repeat):
        parse()
    return (time.process_time() - started) / repeat * 1e6


def report(engines: int, repeat: int) -> dict[str, float]:
    """Microseconds per parse for one pod with ``engines`` engines, by parser."""
    text, openmetrics = bodies(engines)

    def cold() -> object:
        exposition._series.cache_clear()
        return exposition.parse_exposition(text)

    return {
        "text warm": measure(lambda: exposition.parse_exposition(text), repeat),
        "text cold": measure(cold, repeat // 4),
        "openmetrics warm": measure(
            lambda: exposition.parse_exposition(openmetrics, fmt="openmetrics"), repeat
        ),
        "prometheus_client text": measure(
            lambda: list(parse_text_client(text.decode())), repeat // 4
        ),
        "prometheus_client openmetrics": measure(
            lambda: list(parse_openmetrics_client(openmetrics.decode())),  # type: ignore[no-untyped-call]
            repeat // 4,
        ),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--engines", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--repeat", type=int, default=2000)
    args = parser.parse_args(argv)
    for engines in args.engines:
        text, _ = bodies(engines)
        samples = len(exposition.parse_exposition(text).samples)
        print(f"engines={engines}: {samples} samples, {len(text)} bytes (text)")
        for name, micros in report(engines, args.repeat).items():
            print(f"  {name:32} {micros:8.0f} us")


if __name__ == "__main__":
    main()
