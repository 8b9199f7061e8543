"""The benchmark: llm-metrics-adapter and prometheus-adapter side by side, in one run.

``python -m bench.run`` (what ``make bench`` runs) does, on 127.0.0.1 only:

1. builds (or reuses) prometheus-adapter with ``bench/build-prometheus-adapter.sh``;
2. starts the synthetic JetStream exporter (:mod:`bench.exporter`), a real Prometheus scraping it
   (:class:`sim.prometheus.LocalPrometheus`) and a real kube-apiserver
   (``tests/support/controlplane.py``) holding the benchmark's namespaces and pods;
3. starts both adapters in their in-cluster mode with the SAME rules file
   (``bench/prometheus-adapter-rules.yaml``), the same Prometheus, HTTPS with a self-signed
   serving certificate and delegated authentication and authorization against that apiserver
   (bearer token → TokenReview, then SubjectAccessReview; both cache answers for 10 s), plus a
   second instance of ours with the result cache off (for the cache-miss overhead);
4. runs the scenarios (see ``bench/README.md``) and writes ``docs/benchmarks/results.json``;
   :mod:`bench.report` turns that into ``docs/benchmarks.md`` and the PNG plots.

Every process it starts is stopped at the end (and by ``atexit``); every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench import load, openloop, rhythm
from bench.exporter import ENGINES, GAUGES, PODS
from bench.procstat import ProcSampler, read_stat
from sim.prometheus import LocalPrometheus

__all__ = ["main"]

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "bench" / "prometheus-adapter-rules.yaml"
RESULTS = ROOT / "docs" / "benchmarks" / "results.json"

HPA_SERIES_PER_NAMESPACE = PODS * (len(GAUGES) + ENGINES)
GROWTH_LEVELS = {"10k": 10_000, "100k": 100_000, "1m": 1_000_000}
SHARD = 100_000
CACHE_TTL = 5.0
RELIST = 15.0


def say(msg: str) -> None:
    print(f">> [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    base_url: str = ""
    sampler: ProcSampler | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_bytes()[-n:].decode("utf-8", "replace")
        except OSError:
            return ""

    def stop(self) -> None:
        if self.sampler is not None:
            self.sampler.stop()
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)


@dataclass
class Stack:
    """Everything started, stopped in reverse order."""

    stops: list[Callable[[], None]] = field(default_factory=list)

    def close(self) -> None:
        while self.stops:
            with contextlib.suppress(Exception):
                self.stops.pop()()


def spawn(stack: Stack, name: str, argv: Sequence[str], workdir: Path, **kw: Any) -> Proc:
    log = workdir / f"{name}.log"
    handle = open(log, "wb")  # noqa: SIM115 - closed with the process
    popen = subprocess.Popen(
        list(argv), stdout=handle, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, **kw
    )
    proc = Proc(name=name, popen=popen, log=log)
    stack.stops.append(handle.close)
    stack.stops.append(proc.stop)
    return proc


def build_prometheus_adapter() -> tuple[str, str]:
    """(binary path, version): builds on first use, cached under ~/.cache."""
    script = ROOT / "bench" / "build-prometheus-adapter.sh"
    proc = subprocess.run(
        ["bash", str(script)], stdout=subprocess.PIPE, text=True, timeout=3600, check=False
    )
    if proc.returncode != 0:
        raise SystemExit("!! building prometheus-adapter failed (see the messages above)")
    binary = proc.stdout.strip().splitlines()[-1]
    version = binary.split("prometheus-adapter-")[-1].split("/")[0]
    return binary, version


def build_vegeta() -> str:
    """vegeta's binary path: ``go install``ed on first use, cached under ~/.cache."""
    script = ROOT / "bench" / "build-vegeta.sh"
    proc = subprocess.run(
        ["bash", str(script)], stdout=subprocess.PIPE, text=True, timeout=1800, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines or not Path(lines[-1]).is_file():
        raise SystemExit("!! building vegeta failed (see the messages above)")
    return lines[-1]


# --------------------------------------------------------------------------- prometheus


def prom_counters(prom_url: str) -> dict[str, float]:
    """From Prometheus' own /metrics (not its query API, so reading it adds no /api/v1/query)."""
    text = httpx.get(f"{prom_url}/metrics", timeout=10, trust_env=False).text
    out: dict[str, float] = {"query": 0.0, "head_series": 0.0}
    for line in text.splitlines():
        if line.startswith("prometheus_http_requests_total{") and (
            'handler="/api/v1/query"' in line
        ):
            out["query"] += float(line.rsplit(" ", 1)[1])
        elif line.startswith("prometheus_tsdb_head_series "):
            out["head_series"] = float(line.split()[1])
    return out


def wait_head_series(prom_url: str, want: int, timeout: float) -> float:
    deadline = time.monotonic() + timeout
    while True:
        have = prom_counters(prom_url)["head_series"]
        if have >= want:
            return have
        if time.monotonic() > deadline:
            raise RuntimeError(f"Prometheus has {have:.0f} series, wanted {want} in {timeout}s")
        time.sleep(1)


# --------------------------------------------------------------------------- kubernetes


def setup_cluster(cp: Any, namespaces: int) -> str:
    """Namespaces bench-<i> with PODS pods each (label app=jetstream), and a bearer token of a
    service account bound to cluster-admin (what the HPA controller's identity may do and more)."""
    from kubernetes import client as k8s

    api = cp.admin_client()
    try:
        core = k8s.CoreV1Api(api)
        rbac = k8s.RbacAuthorizationV1Api(api)

        def namespace(i: int) -> None:
            ns = f"bench-{i}"
            core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=ns)))
            for j in range(PODS):
                core.create_namespaced_pod(
                    ns,
                    k8s.V1Pod(
                        metadata=k8s.V1ObjectMeta(
                            name=f"{ns}-jetstream-{j}", labels={"app": "jetstream"}
                        ),
                        spec=k8s.V1PodSpec(
                            containers=[k8s.V1Container(name="jetstream", image="jetstream")],
                            automount_service_account_token=False,
                        ),
                    ),
                )

        # A few at a time: 1,000 namespaces one by one take minutes of round trips.
        with ThreadPoolExecutor(max_workers=4) as pool:
            list(pool.map(namespace, range(namespaces)))  # re-raises the first failure
        core.create_namespaced_service_account(
            "default", k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="bench-hpa"))
        )
        rbac.create_cluster_role_binding(
            k8s.V1ClusterRoleBinding(
                metadata=k8s.V1ObjectMeta(name="bench-hpa"),
                role_ref=k8s.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="ClusterRole", name="cluster-admin"
                ),
                subjects=[
                    k8s.RbacV1Subject(kind="ServiceAccount", name="bench-hpa", namespace="default")
                ],
            )
        )
        token = core.create_namespaced_service_account_token(
            "bench-hpa",
            "default",
            k8s.AuthenticationV1TokenRequest(
                spec=k8s.V1TokenRequestSpec(audiences=[], expiration_seconds=7200)
            ),
        )
        if token.status is None:
            raise RuntimeError("the apiserver issued no service account token")
        return str(token.status.token)
    finally:
        api.close()


# --------------------------------------------------------------------------- adapters


def start_ours(
    stack: Stack, workdir: Path, *, name: str, kubeconfig: Path, prom_url: str, cache_ttl: float
) -> Proc:
    port = _free_port()
    proc = spawn(
        stack,
        name,
        [
            str(ROOT / ".venv" / "bin" / "llm-metrics-adapter"),
            "serve",
            f"--kubeconfig={kubeconfig}",
            f"--prometheus-url={prom_url}",
            "--all-clusters",  # as prometheus-adapter reads them: the same rules, unscoped
            f"--config={RULES}",
            "--no-presets",
            "--host=127.0.0.1",
            f"--port={port}",
            f"--cache-ttl={cache_ttl}",
            f"--discovery-interval={RELIST}",
            "--auth-cache-ttl=10",
            "--log-level=warning",
        ],
        workdir,
        cwd=str(ROOT),
    )
    proc.base_url = f"https://127.0.0.1:{port}"
    return proc


def start_theirs(
    stack: Stack, workdir: Path, *, binary: str, kubeconfig: Path, prom_url: str
) -> Proc:
    port = _free_port()
    certs = workdir / "pa-certs"
    certs.mkdir(exist_ok=True)
    proc = spawn(
        stack,
        "prometheus-adapter",
        [
            binary,
            "--bind-address=127.0.0.1",
            f"--secure-port={port}",
            f"--cert-dir={certs}",  # it writes its own self-signed serving cert there
            f"--lister-kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--prometheus-url={prom_url}/",
            f"--metrics-relist-interval={int(RELIST)}s",
            # Its Kubernetes client defaults to 5 requests/s (burst 10), and it LISTs pods for
            # every Pods request: untuned, that throttle alone caps it near 16 requests/s here.
            # Raised so the comparison is of the designs, not of a default.
            "--client-qps=1000",
            "--client-burst=2000",
            f"--config={RULES}",
            "--v=1",
        ],
        workdir,
    )
    proc.base_url = f"https://127.0.0.1:{port}"
    return proc


def wait_answers(proc: Proc, paths: Sequence[str], token: str, timeout: float) -> None:
    """Until every path answers 200 with at least one item (discovery done, pods listed)."""
    deadline = time.monotonic() + timeout
    last = ""
    with httpx.Client(
        verify=False,  # noqa: S501 - the adapter's self-signed cert on loopback
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
        trust_env=False,
    ) as client:
        while time.monotonic() < deadline:
            if proc.popen.poll() is not None:
                raise RuntimeError(f"{proc.name} exited: {proc.tail()}")
            try:
                ok = True
                for p in paths:
                    r = client.get(proc.base_url + p)
                    if r.status_code != 200 or not r.json().get("items"):
                        ok, last = False, f"{p}: {r.status_code} {r.text[:200]}"
                        break
                if ok:
                    return
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}"
            time.sleep(1)
    raise RuntimeError(f"{proc.name} did not answer within {timeout}s: {last}\n{proc.tail()}")


def cache_counts(proc: Proc, token: str) -> dict[str, float]:
    """Our adapter's cache lookups by result, from its /metrics."""
    r = httpx.get(
        proc.base_url + "/metrics",
        headers={"Authorization": f"Bearer {token}"},
        verify=False,  # noqa: S501 - loopback, self-signed
        timeout=10,
        trust_env=False,
    )
    out: dict[str, float] = {}
    for m in re.finditer(
        r'^llm_metrics_adapter_cache_requests_total\{result="(\w+)"\} (\S+)$', r.text, re.M
    ):
        out[m.group(1)] = float(m.group(2))
    return out


# --------------------------------------------------------------------------- measurement


@dataclass
class Bench:
    prom: LocalPrometheus
    token: str
    ours: Proc
    theirs: Proc
    nocache: Proc
    hpa_paths: list[str]
    prom_proc_pid: int | None = None

    def measure(
        self, proc: Proc, run: Callable[[Callable[[], None]], load.LoadResult]
    ) -> dict[str, Any]:
        """Run one load against ``proc``; add backend queries, CPU, peak RSS and cache stats.

        ``run`` receives ``restart``: calling it moves the start of the measurement to that
        moment (a burst calls it after warming its connections, just before the release).
        """
        assert proc.sampler is not None
        sampler = proc.sampler
        ours = proc is not self.theirs
        start: dict[str, Any] = {}

        def restart() -> None:
            start["q"] = prom_counters(self.prom.url)["query"]
            start["stat"] = sampler.mark()
            start["cache"] = cache_counts(proc, self.token) if ours else {}

        restart()
        result = run(restart)
        after = read_stat(proc.pid)
        peak = sampler.phase_peak()
        queries = prom_counters(self.prom.url)["query"] - start["q"]
        cpu = after.cpu_s - start["stat"].cpu_s
        out = result.as_dict()
        out.update(
            backend_queries=int(queries),
            queries_per_1000=round(1000 * queries / result.requests, 1)
            if result.requests
            else None,
            cpu_s=round(cpu, 2),
            cpu_ms_per_request=round(1000 * cpu / result.requests, 3) if result.requests else None,
            peak_rss_mib=round(peak, 1),
            rss_mib=round(after.rss_mib, 1),
        )
        if ours:
            cache = cache_counts(proc, self.token)
            delta = {k: cache.get(k, 0) - start["cache"].get(k, 0) for k in cache}
            total = sum(delta.values())
            out["cache"] = {k: int(v) for k, v in delta.items() if v}
            # Answered without a backend query of their own: hits, and joins of an in-flight one.
            served = delta.get("hit", 0) + delta.get("shared", 0)
            out["hit_ratio"] = round(served / total, 4) if total else None
        return out

    def both(self, run: Callable[[Proc, Callable[[], None]], load.LoadResult]) -> dict[str, Any]:
        # prometheus-adapter first, then ours: alternate nothing else, so both see a warm
        # Prometheus and the same background.
        return {
            "theirs": self.measure(self.theirs, lambda restart: run(self.theirs, restart)),
            "ours": self.measure(self.ours, lambda restart: run(self.ours, restart)),
        }


def pods_path(ns: str, metric: str) -> str:
    return (
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{metric}"
        "?labelSelector=app%3Djetstream"
    )


def external_path(ns: str, metric: str) -> str:
    return f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}"


def hpa_paths(hpas: int) -> list[str]:
    """HPA i scales the JetStream Deployment in bench-<i> on a Pods metric and an External one."""
    paths: list[str] = []
    for i in range(hpas):
        paths.append(pods_path(f"bench-{i}", "jetstream_prefill_backlog_size"))
        paths.append(external_path(f"bench-{i}", "num_requests_waiting"))
    return paths


def scenario_hpa(b: Bench, seconds: float, connections: int) -> dict[str, Any]:
    res = b.both(
        lambda p, _: load.run_wrk(
            p.base_url, b.hpa_paths, token=b.token, connections=connections, seconds=seconds
        )
    )
    res["distinct_queries"] = len(b.hpa_paths)
    res["connections"] = connections
    # The cache's promise: at most one backend query per distinct query per TTL window.
    windows = seconds / CACHE_TTL + 1
    res["ours_query_bound"] = int(len(b.hpa_paths) * windows)
    return res


def scenario_paced(b: Bench, period: float, rounds: int) -> dict[str, Any]:
    return b.both(
        lambda p, _: asyncio.run(
            load.paced(p.base_url, b.hpa_paths, token=b.token, period=period, rounds=rounds)
        )
    )


def scenario_hit(b: Bench, seconds: float, connections: int) -> dict[str, Any]:
    path = [external_path("bench-0", "num_requests_waiting")]
    return b.both(
        lambda p, _: load.run_wrk(
            p.base_url, path, token=b.token, connections=connections, seconds=seconds
        )
    )


def scenario_burst(b: Bench, k: int, ns: str) -> dict[str, Any]:
    # A path no other scenario uses, so ours starts from a cold cache entry after the settle.
    path = external_path(ns, "jetstream_transfer_backlog_size")
    return b.both(
        lambda p, restart: asyncio.run(
            load.burst(
                p.base_url, path, token=b.token, k=k, settle=CACHE_TTL + 1.0, on_release=restart
            )
        )
    )


def scenario_miss(b: Bench, n: int) -> dict[str, Any]:
    """Raw PromQL against Prometheus vs the same answer through ours with the cache off (and
    with it on), one request at a time: what a cache miss adds on top of its backend query."""
    path = external_path("bench-0", "kv_cache_utilization_perc")
    auth = {"Authorization": f"Bearer {b.token}"}
    explained = httpx.get(
        b.nocache.base_url + "/debug/query",
        params={"path": path},
        headers=auth,
        verify=False,  # noqa: S501 - loopback, self-signed
        timeout=10,
        trust_env=False,
    ).json()
    query = explained.get("backend", {}).get("query") or explained.get("query")
    if not query:
        query = _find_query(explained)
    raw = asyncio.run(
        load.sequential(f"{b.prom.url}/api/v1/query", n=n, params={"query": str(query)})
    )
    miss = b.measure(
        b.nocache,
        lambda _: asyncio.run(load.sequential(b.nocache.base_url + path, n=n, headers=auth)),
    )
    hit = b.measure(
        b.ours, lambda _: asyncio.run(load.sequential(b.ours.base_url + path, n=n, headers=auth))
    )
    theirs = b.measure(
        b.theirs,
        lambda _: asyncio.run(load.sequential(b.theirs.base_url + path, n=n, headers=auth)),
    )
    return {
        "query": query,
        "raw": raw.as_dict(),
        "ours_nocache": miss,
        "ours_hit": hit,
        "theirs": theirs,
        "miss_overhead_ms": round(miss["p50_ms"] - raw.p50_ms, 3),
    }


class ScrapeWatch:
    """Polls Prometheus' ``/api/v1/targets`` (not its query API) every ``interval`` s in a thread
    and keeps every ``lastScrape`` of one target: when each new sample arrived."""

    def __init__(self, prom_url: str, address: str, interval: float = 1.0) -> None:
        self.url, self.address, self.interval = f"{prom_url}/api/v1/targets", address, interval
        self.times: set[float] = set()
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> ScrapeWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    def _loop(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as client:
            while True:
                try:
                    doc = client.get(self.url, params={"state": "active"}).json()
                    stamp = rhythm.last_scrape(doc, self.address)
                    if stamp is not None:
                        self.times.add(stamp)
                except (httpx.HTTPError, ValueError) as exc:
                    self.error = repr(exc)[:200]
                if self._stop.wait(self.interval):
                    return


def rhythm_requests(hpas: int) -> list[list[str]]:
    """HPA i's two requests, in the order its sync makes them (see :func:`hpa_paths`)."""
    paths = hpa_paths(hpas)
    return [paths[2 * i : 2 * i + 2] for i in range(hpas)]


def scenario_rhythm(b: Bench, hpas: int, warmup: float, seconds: float) -> dict[str, Any]:
    """The HPA controller's rhythm at scale, steady state: every HPA every 15 s at its own phase,
    5 workers, ``warmup`` s unmeasured then ``seconds`` s measured; one adapter at a time."""
    requests_of = rhythm_requests(hpas)
    distinct = 2 * hpas
    out: dict[str, Any] = {"hpas": hpas, "warmup_s": warmup, "seconds": seconds, "workers": 5}
    for side, proc in (("theirs", b.theirs), ("ours", b.ours)):
        say(f"rhythm: {side}, {hpas} HPAs, {warmup:.0f} s warm-up + {seconds:.0f} s measured")
        kept: dict[str, Any] = {}

        def run(restart: Callable[[], None], proc: Proc = proc, kept: dict[str, Any] = kept) -> Any:
            async def on_measure() -> None:
                await asyncio.to_thread(restart)

            with ScrapeWatch(b.prom.url, b.prom.targets[0]) as watch:
                res = asyncio.run(
                    rhythm.drive(
                        proc.base_url,
                        requests_of,
                        token=b.token,
                        period=15.0,
                        warmup=warmup,
                        seconds=seconds,
                        on_measure=on_measure,
                    )
                )
            kept.update(
                rhythm.summarize(
                    res, period=15.0, distinct_queries=distinct, scrapes=sorted(watch.times)
                )
            )
            kept["scrapes_seen"] = len(watch.times)
            if watch.error:
                kept["scrape_watch_error"] = watch.error
            return load.LoadResult(
                requests=kept["requests"],
                seconds=seconds,
                p50_ms=kept["p50_ms"] or float("nan"),
                p99_ms=kept["p99_ms"] or float("nan"),
                errors=kept["errors"],
            )

        measured = b.measure(proc, run)
        measured.update(kept)
        minutes = seconds / 60
        measured["cpu_s_per_min"] = round(measured["cpu_s"] / minutes, 2)
        measured["queries_per_min"] = round(measured["backend_queries"] / minutes, 1)
        out[side] = measured
    return out


def max_rps(b: Bench, seconds: float, known: dict[str, Any] | None) -> dict[str, float]:
    """Each adapter's saturated HPA-pattern requests/s: from this run's ``hpa`` scenario, or
    measured now with a short wrk run."""
    if known is not None:
        return {"theirs": known["theirs"]["rps"], "ours": known["ours"]["rps"], "source": "hpa"}
    out: dict[str, Any] = {"source": f"wrk, {seconds:.0f} s, 16 connections"}
    for side, proc in (("theirs", b.theirs), ("ours", b.ours)):
        res = load.run_wrk(
            proc.base_url, b.hpa_paths, token=b.token, connections=16, seconds=seconds
        )
        out[side] = round(res.rps, 1)
    return out


def scenario_openloop(
    b: Bench, vegeta: str, seconds: float, known_hpa: dict[str, Any] | None
) -> dict[str, Any]:
    """vegeta at fixed rates over the HPA-pattern paths: 25/50/80 % of prometheus-adapter's
    saturated throughput, and each adapter's own maximum. One adapter at a time."""
    maxima = max_rps(b, min(seconds, 10.0), known_hpa)
    out: dict[str, Any] = {"max_rps": maxima, "seconds": seconds, "runs": []}
    for side, proc in (("theirs", b.theirs), ("ours", b.ours)):
        for label, rate in openloop.rates(maxima["theirs"], maxima[side]):
            say(f"open loop: {side} at {rate:.0f} requests/s ({label}), {seconds:.0f} s")
            res = openloop.attack(
                vegeta, proc.base_url, b.hpa_paths, token=b.token, rate=rate, seconds=seconds
            )
            res.update(side=side, label=label)
            out["runs"].append(res)
            time.sleep(1)
    return out


def scenario_hitcpu(b: Bench, n: int) -> dict[str, Any]:
    """``n`` sequential requests on one keep-alive connection to one hot External path (cache
    hits for ours): server CPU per request from /proc, and the latency."""
    path = external_path("bench-0", "num_requests_waiting")
    auth = {"Authorization": f"Bearer {b.token}"}
    out: dict[str, Any] = {"requests": n, "path": path}
    for side, proc in (("theirs", b.theirs), ("ours", b.ours)):
        # Warm: connection, auth caches, and for ours the cache entry.
        asyncio.run(load.sequential(proc.base_url + path, n=20, headers=auth))
        out[side] = b.measure(
            proc,
            lambda _, proc=proc: asyncio.run(  # type: ignore[misc]
                load.sequential(proc.base_url + path, n=n, headers=auth)
            ),
        )
    return out


def _find_query(doc: Any) -> str | None:
    if isinstance(doc, dict):
        for k, v in doc.items():
            if k == "query" and isinstance(v, str):
                return v
            found = _find_query(v)
            if found:
                return found
    return None


def _profiled(proc: Proc, seconds: float, drive: Callable[[], object]) -> dict[str, Any]:
    spy = ROOT / ".venv" / "bin" / "py-spy"
    if not spy.exists():
        return {"error": "py-spy not installed: pip install -e '.[bench]'"}
    tmp = Path(tempfile.mkdtemp(prefix="lma-profile-"))
    raw = tmp / "profile.collapsed"
    rec = subprocess.Popen(
        [
            str(spy),
            "record",
            "--format",
            "raw",
            "--rate",
            "200",
            "--nonblocking",
            "-d",
            str(int(seconds) + 1),
            "-o",
            str(raw),
            "-p",
            str(proc.pid),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        time.sleep(0.5)
        drive()
        try:
            _, err = rec.communicate(timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            rec.kill()
            _, err = rec.communicate(timeout=10)
        if not raw.exists():
            return {"error": f"py-spy wrote no profile: {err.decode(errors='replace')[-300:]}"}
        return summarize_profile(raw)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def scenario_profile(b: Bench, seconds: float) -> dict[str, Any]:
    """py-spy samples ours under the saturated HPA pattern (cache hits), and the cache-off
    instance under 4 connections (every request a miss): the hottest functions of each path."""
    hit = _profiled(
        b.ours,
        seconds,
        lambda: load.run_wrk(
            b.ours.base_url, b.hpa_paths, token=b.token, connections=16, seconds=seconds
        ),
    )
    miss = _profiled(
        b.nocache,
        seconds,
        lambda: load.run_wrk(
            b.nocache.base_url, b.hpa_paths, token=b.token, connections=4, seconds=seconds
        ),
    )
    return {"hit": hit, "miss": miss}


def summarize_profile(path: Path, top: int = 20) -> dict[str, Any]:
    """Self time (leaf frame) and inclusive time per function, in % of samples."""
    self_t: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = [re.sub(r" \(.*?/(site-packages/|adapter/)", r" (\1", f) for f in stack.split(";")]
        leaf = frames[-1]
        self_t[leaf] = self_t.get(leaf, 0) + count
        for f in set(frames):
            incl[f] = incl.get(f, 0) + count

    def pct(d: dict[str, int]) -> list[list[Any]]:
        return [
            [k, round(100 * v / total, 1)]
            for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]
        ]

    ours_incl = {k: v for k, v in incl.items() if "(adapter/" in k}
    return {"samples": total, "self": pct(self_t), "inclusive_adapter": pct(ours_incl)}


def scenario_growth(
    b: Bench,
    level: str,
    series: int,
    bulk: Sequence[str],
    sizes: Sequence[int],
    hpa_series: int,
    seconds: float,
) -> dict[str, Any]:
    have, targets = hpa_series, [b.prom.targets[0]]
    for addr, size in zip(bulk, sizes, strict=True):
        if have >= series:
            break
        targets.append(addr)
        have += size
    b.prom.set_targets(targets)
    say(f"growth {level}: {len(targets)} targets, waiting for {have} series in Prometheus")
    started = time.monotonic()
    head = wait_head_series(b.prom.url, have, timeout=300)
    ingest_s = time.monotonic() - started
    # Two relist/discovery periods, so both adapters have listed with the new series present.
    time.sleep(2 * RELIST + 2)
    wait_answers(b.theirs, b.hpa_paths[:2], b.token, timeout=120)
    res = scenario_hpa(b, seconds, connections=16)
    res.update(
        level=level,
        head_series=int(head),
        ingest_s=round(ingest_s, 1),
        prometheus_rss_mib=round(read_stat(b.prom_proc_pid).rss_mib, 1)
        if b.prom_proc_pid
        else None,
    )
    for side, proc in (("theirs", b.theirs), ("ours", b.ours)):
        st = read_stat(proc.pid)
        res[side]["hwm_mib"] = round(st.hwm_mib, 1)
    return res


# --------------------------------------------------------------------------- environment


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    return {
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kib / 1024**2, 1),
        "cpu": cpu,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_start": os.getloadavg(),
    }


def versions(pa_binary: str, pa_version: str) -> dict[str, str]:
    def first_line(argv: list[str]) -> str:
        with contextlib.suppress(Exception):
            p = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
            return (p.stdout or p.stderr).strip().splitlines()[0]
        return "unknown"

    from adapter import __version__

    return {
        "llm-metrics-adapter": __version__,
        "prometheus-adapter": pa_version,
        "prometheus": first_line(["/usr/bin/prometheus", "--version"]),
        "go": first_line(["go", "version"]),
        "wrk": first_line(["wrk", "--version"]),
        "kube-apiserver": "v1.35.4",
    }


def _find_prometheus_pid(prom: LocalPrometheus) -> int | None:
    proc = getattr(prom, "_proc", None)
    return proc.pid if proc is not None else None


# --------------------------------------------------------------------------- main


SCENARIOS = (
    "rhythm",
    "hpa",
    "openloop",
    "hitcpu",
    "paced",
    "hit",
    "burst",
    "miss",
    "profile",
    "growth",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.run",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated subset of {','.join(SCENARIOS)}",
    )
    p.add_argument("--growth", default="10k,100k,1m", help="series levels for the growth scenario")
    p.add_argument("--hpas", type=int, default=50, help="HPAs (namespaces), 2 metrics each")
    p.add_argument("--seconds", type=float, default=15.0, help="length of each saturation run")
    p.add_argument(
        "--rhythm-hpas", type=int, default=1000, help="HPAs (namespaces) of the rhythm scenario"
    )
    p.add_argument(
        "--rhythm-warmup", type=float, default=60.0, help="rhythm: unmeasured seconds per adapter"
    )
    p.add_argument(
        "--rhythm-seconds", type=float, default=300.0, help="rhythm: measured seconds per adapter"
    )
    p.add_argument(
        "--openloop-seconds", type=float, default=20.0, help="openloop: seconds per rate"
    )
    p.add_argument(
        "--hitcpu-requests", type=int, default=10_000, help="hitcpu: sequential requests"
    )
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--no-report", action="store_true", help="skip docs/benchmarks.md and plots")
    args = p.parse_args(argv)
    args.scenarios = [s for s in args.scenarios.split(",") if s]
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        p.error(f"unknown scenarios {sorted(unknown)}")
    args.growth = [g for g in args.growth.split(",") if g]
    for name in ("hpas", "rhythm_hpas", "hitcpu_requests"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("seconds", "rhythm_seconds", "openloop_seconds"):
        if not getattr(args, name) > 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    if not args.rhythm_warmup >= 0:
        p.error("--rhythm-warmup must be zero or more")
    if set(args.growth) - set(GROWTH_LEVELS):
        p.error(f"growth levels are {','.join(GROWTH_LEVELS)}")
    return args


def namespaces_needed(args: argparse.Namespace) -> int:
    """HPA namespaces (and pods, and series) the selected scenarios ask about."""
    return int(max(args.hpas, args.rhythm_hpas if "rhythm" in args.scenarios else 0))


def shard_sizes(hpa_series: int, top: int) -> list[int]:
    """Bulk shard sizes so that hpa + the first shards reach 10k, 100k, then 1M in SHARD steps.

    A level the HPA shard alone already passes gets a one-series shard (the growth step then
    reports the series Prometheus really holds)."""
    levels = [10_000, 100_000]
    while levels[-1] < top:
        levels.append(levels[-1] + SHARD)
    sizes, have = [], hpa_series
    for level in levels:
        size = max(1, level - have)
        sizes.append(size)
        have += size
    return sizes


@contextlib.contextmanager
def running(args: argparse.Namespace) -> Iterator[tuple[Bench, dict[str, Any]]]:
    sys.path.insert(0, str(ROOT))
    from tests.support.controlplane import ControlPlane

    info: dict[str, Any] = {}
    stack = Stack()
    atexit.register(stack.close)
    workdir = Path(tempfile.mkdtemp(prefix="lma-bench-"))
    stack.stops.append(lambda: shutil.rmtree(workdir, ignore_errors=True))
    try:
        say("prometheus-adapter: building or reusing the cached binary")
        pa_binary, pa_version = build_prometheus_adapter()
        info["versions"] = versions(pa_binary, pa_version)
        if "openloop" in args.scenarios:
            say("vegeta: building or reusing the cached binary")
            info["vegeta"] = build_vegeta()
            info["versions"]["vegeta"] = "v12.13.0"
        namespaces = namespaces_needed(args)
        hpa_series = namespaces * HPA_SERIES_PER_NAMESPACE
        top = max(GROWTH_LEVELS[g] for g in args.growth) if "growth" in args.scenarios else 10_000
        sizes = shard_sizes(hpa_series, top)
        say(f"exporter: {namespaces} HPA namespaces ({hpa_series} series), bulk shards {sizes}")
        exporter = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.exporter",
                f"--hpa-namespaces={namespaces}",
                f"--shard-sizes={','.join(map(str, sizes))}",
            ],
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )

        def stop_exporter() -> None:
            exporter.kill()
            exporter.wait(timeout=10)

        stack.stops.append(stop_exporter)
        assert exporter.stdout is not None
        addrs = json.loads(exporter.stdout.readline())
        prom = LocalPrometheus(
            [addrs["hpa"], addrs["bulk"][0]],
            scrape_interval="15s",
            ready_timeout=60,
        )
        prom.start()
        stack.stops.append(prom.stop)
        say(f"prometheus: {prom.url}; waiting for the first scrape")
        wait_head_series(prom.url, hpa_series + sizes[0], timeout=120)

        say("control plane: starting etcd and kube-apiserver (loopback)")
        cp = ControlPlane(
            controllers=("serviceaccount-controller",),
            extra_apiserver_args=["--disable-admission-plugins=ServiceAccount"],
        )
        cp.start()
        stack.stops.append(cp.stop)
        say(f"control plane: {namespaces} namespaces × {PODS} pods")
        token = setup_cluster(cp, namespaces)
        kubeconfig = cp.kubeconfig_path

        say("adapters: starting llm-metrics-adapter (x2) and prometheus-adapter")
        ours = start_ours(
            stack,
            workdir,
            name="ours",
            kubeconfig=kubeconfig,
            prom_url=prom.url,
            cache_ttl=CACHE_TTL,
        )
        nocache = start_ours(
            stack,
            workdir,
            name="ours-nocache",
            kubeconfig=kubeconfig,
            prom_url=prom.url,
            cache_ttl=0,
        )
        theirs = start_theirs(
            stack, workdir, binary=pa_binary, kubeconfig=kubeconfig, prom_url=prom.url
        )
        paths = hpa_paths(args.hpas)
        last = hpa_paths(namespaces)[-2:]  # the last namespace's pods are listed too
        probe = [paths[0], paths[1], external_path("bench-0", "kv_cache_utilization_perc"), *last]
        for proc in (ours, nocache, theirs):
            wait_answers(proc, probe, token, timeout=180)
            proc.sampler = ProcSampler(proc.pid)
        say("all three adapters answer")
        bench = Bench(
            prom=prom,
            token=token,
            ours=ours,
            theirs=theirs,
            nocache=nocache,
            hpa_paths=paths,
            prom_proc_pid=_find_prometheus_pid(prom),
        )
        info["bulk"] = addrs["bulk"]
        info["shard_sizes"] = sizes
        info["hpa_series"] = hpa_series
        info["startup_rss_mib"] = {
            "ours": round(read_stat(ours.pid).rss_mib, 1),
            "theirs": round(read_stat(theirs.pid).rss_mib, 1),
        }
        yield bench, info
        info["final_hwm_mib"] = {
            "ours": round(read_stat(ours.pid).hwm_mib, 1),
            "theirs": round(read_stat(theirs.pid).hwm_mib, 1),
        }
        info["adapter_logs_tail"] = {p.name: p.tail(1500) for p in (ours, nocache, theirs)}
    finally:
        stack.close()
        atexit.unregister(stack.close)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    # SIGTERM would end the interpreter without unwinding: turn it into SystemExit so every
    # process this run started is stopped by the `finally` blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    results: dict[str, Any] = {
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "config": {
            "hpas": args.hpas,
            "metrics_per_hpa": 2,
            "seconds": args.seconds,
            "rhythm_hpas": args.rhythm_hpas,
            "rhythm_warmup_s": args.rhythm_warmup,
            "rhythm_seconds": args.rhythm_seconds,
            "openloop_seconds": args.openloop_seconds,
            "hitcpu_requests": args.hitcpu_requests,
            "cache_ttl_s": CACHE_TTL,
            "relist_s": RELIST,
            "scenarios": args.scenarios,
            "growth": args.growth,
        },
        "scenarios": {},
    }
    sc = results["scenarios"]
    with running(args) as (b, info):
        results.update(info)
        if "rhythm" in args.scenarios:
            sc["rhythm"] = scenario_rhythm(
                b, args.rhythm_hpas, args.rhythm_warmup, args.rhythm_seconds
            )
        if "hpa" in args.scenarios:
            say(
                f"HPA pattern, saturated: {len(b.hpa_paths)} paths, 16 connections, {args.seconds}s each"
            )
            sc["hpa"] = scenario_hpa(b, args.seconds, connections=16)
        if "openloop" in args.scenarios:
            sc["openloop"] = scenario_openloop(
                b, info["vegeta"], args.openloop_seconds, sc.get("hpa")
            )
        if "hitcpu" in args.scenarios:
            say(f"hitcpu: {args.hitcpu_requests} sequential requests to one hot path")
            sc["hitcpu"] = scenario_hitcpu(b, args.hitcpu_requests)
        if "paced" in args.scenarios:
            say("HPA pattern, paced: every 15 s each HPA syncs, 5 workers, 2 rounds each")
            sc["paced"] = scenario_paced(b, period=15.0, rounds=2)
        if "hit" in args.scenarios:
            say("one hot path, 64 connections (cache hits for ours)")
            sc["hit64"] = scenario_hit(b, args.seconds, connections=64)
        if "burst" in args.scenarios:
            for i, k in enumerate((64, 256)):
                say(f"burst: {k} identical concurrent requests")
                sc[f"burst{k}"] = scenario_burst(b, k, f"bench-{i + 1}")
        if "miss" in args.scenarios:
            say("cache-miss overhead: raw PromQL vs through the adapter, sequential")
            sc["miss"] = scenario_miss(b, n=300)
        if "profile" in args.scenarios:
            say("profiling ours (py-spy) under the saturated HPA pattern")
            sc["profile"] = scenario_profile(b, 10.0)
        if "growth" in args.scenarios:
            sc["growth"] = []
            for level in args.growth:
                sc["growth"].append(
                    scenario_growth(
                        b,
                        level,
                        GROWTH_LEVELS[level],
                        info["bulk"],
                        info["shard_sizes"],
                        info["hpa_series"],
                        seconds=min(args.seconds, 10.0),
                    )
                )
                say(
                    f"growth {level}: ours RSS {sc['growth'][-1]['ours']['rss_mib']} MiB, "
                    f"theirs {sc['growth'][-1]['theirs']['rss_mib']} MiB"
                )
    results.update(info)  # what was added after the scenarios (final peaks, log tails)
    results["machine"]["loadavg_end"] = os.getloadavg()
    results["wall_s"] = round(time.monotonic() - began, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    say(f"results: {args.out} ({results['wall_s']} s)")
    if not args.no_report:
        from bench import report

        report.write(results, out_dir=args.out.parent)


if __name__ == "__main__":
    main()
