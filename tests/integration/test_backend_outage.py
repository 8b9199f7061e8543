"""A real Prometheus killed and restarted under the adapter.

While it is down the adapter answers 503 quickly (within the query deadline), naming the backend
and since when; once the circuit opens it stops trying except for one probe per cool-down; when
Prometheus is back on the same address the adapter recovers by itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from adapter.app.context import AppContext
from adapter.backends.factory import build_backend
from adapter.rules.loader import load_rules_text
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.prometheus import find_binary
from tests.support.app import client_for
from tests.support.ports import free_port

PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/prometheus_up"
RULES = """\
metrics:
  - name: prometheus_up
    type: external
    clusterScoped: true
    query: sum(up{job="self"})
"""
QUERY_TIMEOUT = 2.0  # seconds: the adapter's deadline per backend call, retries included


class Prom:
    """One Prometheus on a fixed loopback port that can be killed and started again."""

    def __init__(self, directory: Path) -> None:
        try:
            self.binary = find_binary()
        except RuntimeError as exc:
            pytest.fail(str(exc))
        self.dir = directory
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        (directory / "prometheus.yml").write_text(
            json.dumps(
                {
                    "global": {"scrape_interval": "1s"},
                    "scrape_configs": [
                        {
                            "job_name": "self",
                            "static_configs": [{"targets": [f"127.0.0.1:{self.port}"]}],
                        }
                    ],
                }
            )
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        log = (self.dir / "prometheus.log").open("ab")
        with log:
            self.proc = subprocess.Popen(
                [
                    self.binary,
                    f"--config.file={self.dir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.dir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    "--log.level=warn",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                tail = (self.dir / "prometheus.log").read_text(errors="replace")[-1500:]
                raise RuntimeError(f"prometheus exited ({self.proc.returncode}): {tail}")
            with contextlib.suppress(httpx.HTTPError, ValueError):
                r = httpx.get(
                    f"{self.url}/api/v1/query",
                    params={"query": 'up{job="self"}'},
                    timeout=1.0,
                    trust_env=False,
                )
                if r.status_code == 200 and r.json()["data"]["result"]:
                    return
            time.sleep(0.2)
        raise RuntimeError(f"prometheus did not scrape itself within {timeout}s")

    def kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def backend_queries(ctx: AppContext) -> float:
    """Backend queries the adapter sent (every outcome); refused-by-circuit ones are not sent."""
    total = 0.0
    for family in ctx.telemetry.registry.collect():
        if family.name == "llm_metrics_adapter_backend_queries":
            total += sum(s.value for s in family.samples if s.name.endswith("_total"))
    return total


@pytest.fixture
def prom(tmp_path: Path) -> Iterator[Prom]:
    server = Prom(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_outage_gives_fast_503s_and_recovers_by_itself(prom: Prom) -> None:
    settings = Settings.from_options(
        prometheus_url=prom.url,
        standalone=True,
        presets=False,
        cache_ttl=0,
        query_timeout=QUERY_TIMEOUT,
        circuit_failures=3,
        circuit_cooldown=0.5,
        circuit_max_cooldown=2.0,
    )
    backend = build_backend(settings)
    ctx = build_context(
        settings, backend=backend, rules=load_rules_text(RULES, filename="r.yaml", presets=False)
    )
    async with await client_for(ctx) as client:
        try:
            up = await client.get(PATH)
            assert up.status_code == 200 and up.json()["items"][0]["value"] == "1"
            queries_before = backend_queries(ctx)

            prom.kill()
            answers = []
            for _ in range(10):
                started = time.monotonic()
                r = await client.get(PATH)
                answers.append((r, time.monotonic() - started))
            for r, elapsed in answers:
                assert r.status_code == 503, r.text
                assert elapsed < QUERY_TIMEOUT, f"took {elapsed:.2f}s, past the deadline"
                assert "unavailable since" in r.json()["message"]
            # Three real attempts opened the circuit; the other seven failed fast.
            assert backend_queries(ctx) - queries_before == 3
            assert "circuit open" in answers[-1][0].json()["message"]
            breaker = (await client.get("/debug/metrics")).json()["circuitBreakers"]
            assert next(iter(breaker.values()))["state"] == "open"

            prom.start()
            deadline = time.monotonic() + 20
            while True:
                r = await client.get(PATH)
                if r.status_code == 200:
                    break
                assert r.status_code == 503, r.text
                assert time.monotonic() < deadline, f"no recovery: {r.text}"
                await asyncio.sleep(0.2)
            assert r.json()["items"][0]["value"] == "1"
            breaker = (await client.get("/debug/metrics")).json()["circuitBreakers"]
            assert next(iter(breaker.values()))["state"] == "closed"
        finally:
            await backend.aclose()
