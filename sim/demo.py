"""``make demo``: a real Prometheus scraping simulated JetStream, vLLM, SGLang, TGI and NIM servers,
the adapter in front of it, and a live view of what the HPA would read.

Runs until Ctrl-C, or for ``DEMO_SECONDS`` seconds and then exits 0. Everything it starts binds
127.0.0.1 and is stopped on the way out.
"""

from __future__ import annotations

import calendar
import contextlib
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
from rich.console import Console
from rich.live import Live
from rich.table import Table

from sim.engines import DEMO_PLANS, DEMO_TARGETS, DEMO_VALUE_TARGETS, EngineFleet
from sim.fleet import SimFleet
from sim.prometheus import LocalPrometheus

__all__ = ["main"]

NAMESPACES = ("default", "other")
EXTERNAL = (
    "jetstream_prefill_backlog_size",
    "jetstream_slots_used_percentage",
    "memory_used_percentage",
    *DEMO_TARGETS,  # the other engines' native metrics next to the vocabulary
)
PODS_METRICS = ("jetstream_slots_used_percentage", "llm_requests_waiting")
TARGETS = {  # the AverageValue targets an example HPA would use, per metric
    "jetstream_prefill_backlog_size": 4.0,
    "jetstream_slots_used_percentage": 0.6,
    "memory_used_percentage": 0.7,
    **DEMO_TARGETS,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _quantity_to_float(q: str) -> float:
    suffixes = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    if q and q[-1] in suffixes:
        return float(q[:-1]) * suffixes[q[-1]]
    return float(q)


@contextlib.contextmanager
def _adapter(prometheus_url: str, port: int) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [
        sys.executable, "-m", "adapter", "serve", "--standalone",
        "--prometheus-url", prometheus_url, "--port", str(port),
        "--cluster", "demo", "--cache-ttl", "1", "--log-level", "warning",
    ]  # fmt: skip
    proc = subprocess.Popen(cmd)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the adapter exited with code {proc.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                    break
            time.sleep(0.3)
        else:
            raise RuntimeError("the adapter did not become ready within 30 s")
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _table(client: httpx.Client, elapsed: float) -> Table:
    table = Table(
        title=f"What the HPA reads now (t={elapsed:4.0f}s) — external totals, AverageValue targets",
        expand=False,
    )
    for column in ("namespace", "metric", "value", "age", "target/replica", "replicas wanted"):
        table.add_column(
            column, justify="right" if column not in {"namespace", "metric"} else "left"
        )
    now = time.time()
    for ns in NAMESPACES:
        for metric in EXTERNAL:
            path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}"
            response = client.get(path)
            if response.status_code != 200:
                table.add_row(
                    ns, metric, f"[red]{response.json().get('message', '')[:40]}", "", "", ""
                )
                continue
            items: list[dict[str, Any]] = response.json()["items"]
            if not items:
                table.add_row(ns, metric, "[yellow]no data yet", "", "", "")
                continue
            total = sum(_quantity_to_float(i["value"]) for i in items)
            ts = calendar.timegm(time.strptime(items[0]["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
            target = TARGETS[metric]
            # A Value target (the latency percentile) is not per replica: no replica count here.
            wanted = "" if metric in DEMO_VALUE_TARGETS else str(max(1, math.ceil(total / target)))
            shown = items[0]["value"] if len(items) == 1 else f"{total:g} ({len(items)} models)"
            table.add_row(
                ns, metric, shown, f"{now - ts:.0f}s",
                f"{target} (Value)" if metric in DEMO_VALUE_TARGETS else str(target), wanted,
            )  # fmt: skip
        for pods_metric in PODS_METRICS:
            pods = client.get(
                f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{pods_metric}"
            )
            if pods.status_code == 200:
                per_pod = ", ".join(
                    f"{i['describedObject']['name'].removeprefix(ns + '-')}={i['value']}"
                    for i in pods.json()["items"]
                )
                table.add_row(ns, f"pods/{pods_metric}", per_pod or "no data yet", "", "", "")
    return table


def main() -> None:
    console = Console()
    seconds = float(os.environ.get("DEMO_SECONDS", "0") or 0)
    port = _free_port()
    console.print("[bold]llm-metrics-adapter demo[/bold]")
    with SimFleet(cluster="demo") as fleet, EngineFleet(DEMO_PLANS) as engines:
        console.print(
            f"• started {len(fleet.pods)} simulated JetStream servers "
            f"({', '.join(NAMESPACES)}) and a TPU device-plugin exporter on 127.0.0.1"
        )
        console.print(
            "• and " + ", ".join(f"{p.namespace}/{p.name} ({p.engine})" for p in engines.plans)
        )
        with LocalPrometheus(fleet.targets + engines.targets) as prom:
            console.print(f"• started Prometheus at {prom.url} scraping them every second")
            with _adapter(prom.url, port):
                base = f"http://127.0.0.1:{port}"
                console.print(f"• started the adapter (standalone) at {base}")
                console.print(
                    f"  try: curl -s {base}/apis/external.metrics.k8s.io/v1beta1/namespaces/"
                    "default/jetstream_prefill_backlog_size\n"
                    f"       curl -s '{base}/debug/query?path=/apis/custom.metrics.k8s.io/v1beta2/"
                    "namespaces/default/pods/*/jetstream_slots_used_percentage'"
                )
                console.print(
                    f"  charts of every metric against time: {base}/debug/ui?namespace=default"
                )
                console.print(
                    "  Ctrl-C to stop" if not seconds else f"  running for {seconds:.0f} seconds"
                )
                _loop(console, fleet, engines, base, seconds)
    console.print("• stopped the adapter, Prometheus and the simulators; removed their temp dirs")


def _loop(
    console: Console, fleet: SimFleet, engines: EngineFleet, base: str, seconds: float
) -> None:
    started = time.monotonic()
    next_print = 0.0
    with httpx.Client(base_url=base, timeout=5) as client:
        live = Live(console=console, refresh_per_second=2) if console.is_terminal else None
        with live or contextlib.nullcontext():
            try:
                while not seconds or time.monotonic() - started < seconds:
                    elapsed = time.monotonic() - started
                    fleet.step(elapsed)
                    engines.step(elapsed)
                    if elapsed >= next_print:
                        table = _table(client, elapsed)
                        if live is not None:
                            live.update(table)
                        else:
                            console.print(table)
                        next_print = elapsed + (2 if live is not None else 5)
                    time.sleep(1)
            except KeyboardInterrupt:
                pass


if __name__ == "__main__":
    main()
