"""A synthetic JetStream exporter that serves many series cheaply, one shard per port.

``python -m bench.exporter --hpa-namespaces 50 --shard-sizes 8600,90000`` listens on
127.0.0.1 (free ports) and prints one JSON line ``{"hpa": "127.0.0.1:P", "bulk": ["127.0.0.1:Q",
...]}`` when ready. It serves, in Prometheus text format:

- the ``hpa`` shard: for each namespace ``bench-<i>``, pods ``bench-<i>-jetstream-<j>`` (``PODS``
  per namespace) with the six JetStream gauges the presets read (``jetstream_slots_used_percentage``
  once per ``idx``). These are the series the HPAs of the benchmark ask about.
- ``bulk`` shards: the given number of series each, the same gauge names in namespaces
  ``bulk-<s>-<n>`` (100 pods a namespace): the "other workloads" that make Prometheus big. Growth
  steps add shards as scrape targets.

Every body is rendered once at start and served as bytes: a 1M-series benchmark must not measure
this exporter. Values are constant, which is fine: the benchmark measures the adapters, not the
numbers. Each server is a daemon thread; the process exits on SIGTERM or when stdin closes (the
harness dies → the exporter dies), so it never outlives the benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

__all__ = ["GAUGES", "PODS", "bulk_body", "hpa_body", "main"]

PODS = 4
"""Pods per HPA namespace."""

ENGINES = 2
"""``idx`` values of ``jetstream_slots_used_percentage`` per pod."""

GAUGES = (
    "jetstream_prefill_backlog_size",
    "jetstream_transfer_backlog_size",
    "jetstream_generate_backlog_size",
    "num_requests_waiting",
    "kv_cache_utilization_perc",
)
"""Gauges with one series per pod; ``jetstream_slots_used_percentage`` has one per engine."""

_PODS_PER_BULK_NAMESPACE = 100


def _series(name: str, labels: str, value: float) -> str:
    return f"{name}{{{labels}}} {value}\n"


def hpa_body(namespaces: int) -> bytes:
    """The HPA shard: ``namespaces`` × ``PODS`` pods × (5 + ENGINES) series."""
    lines: list[str] = []
    for name in (*GAUGES, "jetstream_slots_used_percentage"):
        lines.append(f"# TYPE {name} gauge\n")
        for i in range(namespaces):
            for j in range(PODS):
                base = (
                    f'cluster="bench",namespace="bench-{i}",pod="bench-{i}-jetstream-{j}",'
                    f'id="bench-{i}-jetstream-{j}",job="jetstream"'
                )
                if name == "jetstream_slots_used_percentage":
                    for idx in range(ENGINES):
                        lines.append(_series(name, f'{base},idx="{idx}"', 0.25 + 0.1 * idx))
                else:
                    lines.append(_series(name, base, float(j + 1)))
    return "".join(lines).encode()


def bulk_body(shard: int, series: int) -> bytes:
    """Bulk shard ``shard``: exactly ``series`` series spread over the six gauge names."""
    names = (*GAUGES, "jetstream_slots_used_percentage")
    by_name: dict[str, list[str]] = {n: [] for n in names}
    for k in range(series):
        name = names[k % len(names)]
        pod = k // len(names)
        ns = pod // _PODS_PER_BULK_NAMESPACE
        labels = (
            f'cluster="bench",namespace="bulk-{shard}-{ns}",pod="bulk-{shard}-{ns}-{pod}",'
            f'id="bulk-{shard}-{ns}-{pod}",job="jetstream"'
        )
        if name == "jetstream_slots_used_percentage":
            labels += ',idx="0"'
        by_name[name].append(_series(name, labels, float(k % 7)))
    out: list[str] = []
    for name, lines in by_name.items():
        out.append(f"# TYPE {name} gauge\n")
        out.extend(lines)
    return "".join(out).encode()


def _serve(body: bytes) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # a scrape per second per shard would flood stderr

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.exporter", description=__doc__)
    parser.add_argument("--hpa-namespaces", type=int, default=20)
    parser.add_argument(
        "--shard-sizes", default="", help="comma-separated series counts, one bulk shard each"
    )
    args = parser.parse_args(argv)
    sizes = [int(x) for x in args.shard_sizes.split(",") if x.strip()]
    if args.hpa_namespaces < 1 or any(n < 1 for n in sizes):
        parser.error("counts must be positive")
    servers = [_serve(hpa_body(args.hpa_namespaces))]
    for shard, size in enumerate(sizes):
        servers.append(_serve(bulk_body(shard, size)))
    addrs = [f"127.0.0.1:{s.server_address[1]}" for s in servers]
    print(json.dumps({"hpa": addrs[0], "bulk": addrs[1:]}), flush=True)
    # Exit when the parent closes our stdin (or dies): no orphaned exporter.
    sys.stdin.read()


if __name__ == "__main__":
    main()
