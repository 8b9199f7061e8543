"""``make demo``: a real Prometheus scraping simulated JetStream, vLLM, SGLang, TGI and NIM servers,
the adapter in front of it, and a live view of what the HPA would read — beside a second adapter
that reads the same servers directly (``--scrape-pods`` with a ``--scrape-targets`` file), so the
table shows both paths' values and ages.

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
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml
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


def _targets_file(fleet: SimFleet, engines: EngineFleet, directory: Path) -> Path:
    """The ``--scrape-targets`` file of every simulated pod (the TPU exporter as the device
    plugin's pod in kube-system, as on GKE)."""
    entries = [{"namespace": p.namespace, "pod": p.name, "url": p.server.url} for p in fleet.pods]
    entries.append({"namespace": "kube-system", "pod": fleet.tpu.plugin_pod, "url": fleet.tpu.url})
    entries += [
        {"namespace": plan.namespace, "pod": plan.name, "url": server.url}
        for plan, server in zip(engines.plans, engines.servers, strict=True)
    ]
    path = directory / "scrape-targets.yaml"
    path.write_text(yaml.safe_dump(entries))
    return path


@contextlib.contextmanager
def _adapter(prometheus_url: str, port: int, *extra: str) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [
        sys.executable, "-m", "adapter", "serve", "--standalone",
        "--prometheus-url", prometheus_url, "--port", str(port),
        "--cluster", "demo", "--cache-ttl", "1", "--log-level", "warning", *extra,
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


def _external(client: httpx.Client, path: str) -> tuple[list[dict[str, Any]] | None, str]:
    """The items of an External answer, or ``None`` and why not."""
    response = client.get(path)
    if response.status_code != 200:
        return None, f"[red]{response.json().get('message', '')[:40]}"
    items: list[dict[str, Any]] = response.json()["items"]
    return (items, "") if items else (None, "[yellow]no data yet")


def _shown(items: list[dict[str, Any]], now: float) -> tuple[float, str, str]:
    """(total, the value as shown, its age)."""
    total = sum(_quantity_to_float(i["value"]) for i in items)
    ts = calendar.timegm(time.strptime(items[0]["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))
    shown = items[0]["value"] if len(items) == 1 else f"{total:g} ({len(items)} models)"
    return total, shown, f"{max(0.0, now - ts):.0f}s"


def _table(client: httpx.Client, pods: httpx.Client, elapsed: float) -> Table:
    table = Table(
        title=f"What the HPA reads now (t={elapsed:4.0f}s) — external totals, AverageValue targets",
        expand=False,
    )
    columns = ("namespace", "metric", "via Prometheus", "age", "from the pods", "age",
               "target/replica", "replicas wanted")  # fmt: skip
    for column in columns:
        table.add_column(
            column, justify="right" if column not in {"namespace", "metric"} else "left"
        )
    now = time.time()
    for ns in NAMESPACES:
        for metric in EXTERNAL:
            path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}"
            items, why = _external(client, path)
            scraped, scraped_why = _external(pods, path)
            direct = _shown(scraped, now)[1:] if scraped else (scraped_why, "")
            if items is None:
                table.add_row(ns, metric, why, "", *direct, "", "")
                continue
            total, shown, age = _shown(items, now)
            target = TARGETS[metric]
            # A Value target (the latency percentile) is not per replica: no replica count here.
            wanted = "" if metric in DEMO_VALUE_TARGETS else str(max(1, math.ceil(total / target)))
            table.add_row(
                ns, metric, shown, age, *direct,
                f"{target} (Value)" if metric in DEMO_VALUE_TARGETS else str(target), wanted,
            )  # fmt: skip
        for pods_metric in PODS_METRICS:
            path = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{pods_metric}"
            row = [_per_pod(c, path, ns) for c in (client, pods)]
            table.add_row(ns, f"pods/{pods_metric}", row[0], "", row[1], "", "", "")
    return table


def _per_pod(client: httpx.Client, path: str, ns: str) -> str:
    response = client.get(path)
    if response.status_code != 200:
        return ""
    return (
        ", ".join(
            f"{i['describedObject']['name'].removeprefix(ns + '-')}={i['value']}"
            for i in response.json()["items"]
        )
        or "no data yet"
    )


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
        with (
            LocalPrometheus(fleet.targets + engines.targets) as prom,
            tempfile.TemporaryDirectory(prefix="lma-demo-") as tmp,
        ):
            console.print(f"• started Prometheus at {prom.url} scraping them every second")
            targets = _targets_file(fleet, engines, Path(tmp))
            scrape_port = _free_port()
            with (
                _adapter(prom.url, port),
                _adapter(prom.url, scrape_port, "--scrape-pods", "--scrape-targets", str(targets)),
            ):
                base = f"http://127.0.0.1:{port}"
                direct = f"http://127.0.0.1:{scrape_port}"
                console.print(f"• started the adapter (standalone) at {base}")
                console.print(
                    f"• and a second one at {direct} reading the servers themselves"
                    f" (--scrape-pods, the {len(fleet.pods) + len(engines.plans) + 1} pods of"
                    f" {targets.name}); the other rules it answers through Prometheus"
                )
                console.print(
                    f"  try: curl -s {base}/apis/external.metrics.k8s.io/v1beta1/namespaces/"
                    "default/jetstream_prefill_backlog_size\n"
                    f"       curl -s '{direct}/debug/query?path=/apis/custom.metrics.k8s.io/v1beta2/"
                    "namespaces/default/pods/*/jetstream_slots_used_percentage'"
                )
                console.print(
                    f"  charts of every metric against time: {base}/debug/ui?namespace=default"
                )
                console.print(
                    "  Ctrl-C to stop" if not seconds else f"  running for {seconds:.0f} seconds"
                )
                _loop(console, fleet, engines, (base, direct), seconds)
    console.print("• stopped the adapters, Prometheus and the simulators; removed their temp dirs")


def _loop(
    console: Console,
    fleet: SimFleet,
    engines: EngineFleet,
    bases: tuple[str, str],
    seconds: float,
) -> None:
    started = time.monotonic()
    next_print = 0.0
    with (
        httpx.Client(base_url=bases[0], timeout=5) as client,
        httpx.Client(base_url=bases[1], timeout=5) as pods,
    ):
        live = Live(console=console, refresh_per_second=2) if console.is_terminal else None
        with live or contextlib.nullcontext():
            try:
                while not seconds or time.monotonic() - started < seconds:
                    elapsed = time.monotonic() - started
                    fleet.step(elapsed)
                    engines.step(elapsed)
                    if elapsed >= next_print:
                        table = _table(client, pods, elapsed)
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
