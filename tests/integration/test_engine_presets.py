"""The engine presets over a real Prometheus, through the whole app.

A real Prometheus scrapes simulated vLLM, SGLang, TGI, Triton (TensorRT-LLM backend),
trtllm-serve, NIM and JetStream pods, a TPU device plugin and dcgm-exporter, in two clusters and
two namespaces. Pod names repeat in every cluster and namespace and every pod's values differ,
so an answer that mixes scopes fails. Expected gauge values are computed here from the
simulators' data with the documented per-pod rules (vLLM engines add up, SGLang ranks of one
data-parallel group count once, JetStream's percent becomes a fraction…), never read back from
Prometheus. The latency percentiles are compared with Prometheus' own ``histogram_quantile``
over each engine's buckets, asked directly.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from adapter.core.quantity import format_quantity
from adapter.rules import MetricRequest, QueryScope
from adapter.rules.loader import preset_rules
from sim.engines import (
    EngineFleet,
    EngineValues,
    GpuValues,
    JetStreamServer,
    LlmServer,
    NimServer,
    PodPlan,
    SglangServer,
    SimDcgmExporter,
    TgiServer,
    TritonTrtLlmServer,
    TrtllmServeServer,
    VllmServer,
)
from sim.jetstream import JetStreamValues, SimTpuExporter, TpuChipValues
from sim.prometheus import LocalPrometheus
from tests.support.app import ClusterClient, cluster_clients

E = "/apis/external.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
CLUSTERS = ("c1", "c2")
NAMESPACES = ("team-a", "team-b")
SCOPES = [(c, n) for c in CLUSTERS for n in NAMESPACES]
TPU_MEMORY_TOTAL = 16 * 1024**3
GPU_FB_TOTAL = 23040.0  # MiB, an L4

PLANS: list[PodPlan] = [
    # c1/team-a: every engine; two vLLM pods, one of a release exporting both names
    PodPlan("jetstream", "jetstream-0", "team-a", "c1", "gemma-7b"),
    # (vllm-0 and sglang-0 reach Prometheus as vllm:…/sglang:…, vllm-1 as vllm_…)
    PodPlan("vllm", "vllm-0", "team-a", "c1", "llama-3-8b", {"splits": 2, "exposition": "text"}),
    PodPlan(
        "vllm",
        "vllm-1",
        "team-a",
        "c1",
        "llama-3-8b",
        {"generation": "transition", "exposition": "underscores"},
    ),
    PodPlan(
        "sglang",
        "sglang-0",
        "team-a",
        "c1",
        "qwen-2-7b",
        {"splits": 2, "tp": 2, "exposition": "text"},
    ),
    PodPlan("tgi", "tgi-0", "team-a", "c1"),
    PodPlan("triton-trtllm", "triton-0", "team-a", "c1"),
    PodPlan("trtllm-serve", "trtllm-0", "team-a", "c1", "mistral-7b"),
    PodPlan("nim", "nim-0", "team-a", "c1", "llama-3-70b"),
    # c1/team-b: older releases
    PodPlan("vllm", "vllm-0", "team-b", "c1", "llama-3-8b", {"generation": "legacy"}),
    PodPlan(
        "sglang",
        "sglang-0",
        "team-b",
        "c1",
        "qwen-2-7b",
        {"tp": 4, "legacy": True, "exposition": "underscores"},
    ),
    PodPlan("triton-trtllm", "triton-0", "team-b", "c1", options={"legacy": True}),
    PodPlan("nim", "nim-0", "team-b", "c1", "llama-3-70b"),
    PodPlan("jetstream", "jetstream-0", "team-b", "c1", "gemma-7b"),
    # c2/team-a: no request served in the window (the percentiles answer 0)
    PodPlan("vllm", "vllm-0", "team-a", "c2", "llama-3-8b", {"splits": 2}),
    PodPlan("sglang", "sglang-0", "team-a", "c2", "qwen-2-7b"),
    PodPlan("tgi", "tgi-0", "team-a", "c2"),
    # c2/team-b
    PodPlan("jetstream", "jetstream-0", "team-b", "c2", None),
    PodPlan("trtllm-serve", "trtllm-0", "team-b", "c2", "mistral-7b"),
    PodPlan("nim", "nim-0", "team-b", "c2", "llama-3-70b"),
    PodPlan("vllm", "vllm-0", "team-b", "c2", "llama-3-8b", {"exposition": "text"}),
]

# (cluster, namespace, pod) → [(histogram, seconds, count)], recorded once Prometheus has
# scraped every histogram at zero. One pod per engine and namespace, except c1/team-a's two
# vLLM pods: the percentile of their per-token latency changes if vllm-1's two names count twice.
OBSERVATIONS: dict[tuple[str, str, str], list[tuple[str, float, int]]] = {
    ("c1", "team-a", "vllm-0"): [("ttft", 0.03, 40), ("ttft", 0.3, 4), ("tpot", 0.02, 100)],
    ("c1", "team-a", "vllm-1"): [("ttft", 0.07, 10), ("tpot", 0.45, 6)],
    ("c1", "team-a", "sglang-0"): [("ttft", 0.5, 20), ("ttft", 3.0, 1), ("tpot", 0.012, 50)],
    ("c1", "team-a", "tgi-0"): [("tpot", 0.01, 20)],
    ("c1", "team-a", "trtllm-0"): [("ttft", 0.9, 10), ("tpot", 0.06, 10)],
    ("c1", "team-a", "nim-0"): [("ttft", 0.15, 10), ("tpot", 0.04, 10)],
    ("c1", "team-a", "jetstream-0"): [("ttft", 0.2, 10), ("tpot", 0.03, 10)],
    ("c1", "team-b", "vllm-0"): [("ttft", 1.5, 10), ("tpot", 0.08, 10)],
    ("c1", "team-b", "sglang-0"): [("ttft", 0.25, 5), ("tpot", 0.05, 10)],
    ("c1", "team-b", "nim-0"): [("ttft", 0.6, 10)],
    ("c1", "team-b", "jetstream-0"): [("ttft", 0.02, 10)],
    ("c2", "team-b", "trtllm-0"): [("ttft", 0.35, 10), ("tpot", 0.2, 3)],
    ("c2", "team-b", "vllm-0"): [("ttft", 0.05, 7)],
    ("c2", "team-b", "jetstream-0"): [("tpot", 0.3, 4)],
}
WINDOW_S = 120.0  # the presets' rate window: the percentiles see these requests for 2 minutes

AnyServer = LlmServer | JetStreamServer


def engine_values(k: int, splits: int) -> EngineValues:
    """Distinct, exactly representable values for the ``k``-th pod."""
    return EngineValues(
        waiting=tuple(3 + 7 * k + i for i in range(splits)),
        running=tuple(2 + 5 * k + 3 * i for i in range(splits)),
        kv_cache=tuple(0.0625 * ((k + 3 * i) % 15 + 1) for i in range(splits)),
    )


def jetstream_values(k: int) -> JetStreamValues:
    slots = (0.125 * ((k % 7) + 1), 0.0625 * (k + 1))
    return JetStreamValues(
        prefill_backlog=4 + 3 * k,
        slots=slots,
        transfer_backlog=(1, k % 3),
        generate_backlog=(k, 2),
        requests_waiting=4 + 3 * k + k + 2,
        kv_cache=sum(slots) / 2,
    )


@dataclass(frozen=True)
class Setup:
    fleet: EngineFleet
    tpu: dict[str, SimTpuExporter]
    dcgm: dict[str, SimDcgmExporter]
    prometheus: LocalPrometheus
    observed_at: float

    def servers(self, cluster: str, namespace: str) -> list[AnyServer]:
        return [s for s in self.fleet.servers if (s.cluster, s.namespace) == (cluster, namespace)]


def spellings(name: str) -> str:
    """A regex of both names Prometheus may store for ``name`` (``vllm:x`` or ``vllm_x``)."""
    return f"{name}|{name.replace(':', '_')}" if ":" in name else name


def _histogram_counts(server: AnyServer) -> list[str]:
    if isinstance(server, JetStreamServer):
        return ["jetstream_time_to_first_token_count", "jetstream_time_per_output_token_count"]
    names = [n for n, _ in server._ttft_series()] + [n for n, _ in server._tpot_series()]
    return [f"{n}_count" for n in names]


@pytest.fixture(scope="module")
def setup() -> Iterator[Setup]:
    with contextlib.ExitStack() as stack:
        fleet = stack.enter_context(EngineFleet(PLANS))
        tpu = {
            c: stack.enter_context(SimTpuExporter(cluster=c, plugin_pod=f"tpu-{c}"))
            for c in CLUSTERS
        }
        dcgm = {
            c: stack.enter_context(SimDcgmExporter(cluster=c, exporter_pod=f"dcgm-{c}"))
            for c in CLUSTERS
        }
        for k, server in enumerate(fleet.servers):
            if isinstance(server, JetStreamServer):
                server.set_values(jetstream_values(k))
                tpu[server.cluster].set_chip(
                    TpuChipValues(
                        namespace=server.namespace,
                        pod=server.pod,
                        accelerator_id="0",
                        memory_used=float(1024**3 * (k + 1)),
                        memory_total=float(TPU_MEMORY_TOTAL),
                        duty_cycle=10.0 * (k % 9 + 1),
                        tensorcore_utilization=5.0 * (k % 9 + 1),
                    )
                )
            else:
                server.set_values(engine_values(k, server.splits))
                gpus = 2 if isinstance(server, VllmServer) else 1
                for g in range(gpus):
                    used = 1024.0 * (k + 1) + 256 * g
                    dcgm[server.cluster].set_gpu(
                        GpuValues(
                            server.namespace,
                            server.pod,
                            str(g),
                            util=float(5 + 3 * k + 10 * g),
                            fb_used=used,
                            fb_free=GPU_FB_TOTAL - used,
                        )
                    )
        targets = fleet.targets + [e.target for e in (*tpu.values(), *dcgm.values())]
        prometheus = stack.enter_context(LocalPrometheus(targets))
        prometheus.wait_for(
            "count(up == 1)", lambda s: len(s) == 1 and s[0].value == len(targets), timeout=30
        )
        # Every histogram scraped at zero before the requests: rate() then sees all of them.
        counts = sorted({n for s in fleet.servers for n in _histogram_counts(s)})
        want = sum(len(_histogram_counts(s)) for s in fleet.servers)
        names = "|".join(spellings(c) for c in counts)
        query = f'count({{__name__=~"{names}"}})'
        prometheus.wait_for(query, lambda s: len(s) == 1 and s[0].value == want, timeout=30)
        prometheus.wait_for(
            "count(DCGM_FI_DEV_FB_FREE) + count(memory_total) + count(kv_cache_utilization_perc)",
            lambda s: len(s) == 1 and s[0].value > 0,
            timeout=30,
        )
        for (cluster, namespace, pod), records in OBSERVATIONS.items():
            server = fleet.server(pod, namespace=namespace, cluster=cluster)
            for kind, seconds, count in records:
                observe = server.observe_ttft if kind == "ttft" else server.observe_tpot
                observe(seconds, count)
        observed_at = time.time()
        total = sum(
            c * _copies(fleet.server(p, namespace=n, cluster=cl), kind)
            for (cl, n, p), records in OBSERVATIONS.items()
            for kind, _, c in records
        )
        sum_query = f'sum({{__name__=~"{names}"}})'
        prometheus.wait_for(sum_query, lambda s: len(s) == 1 and s[0].value == total, timeout=30)
        time.sleep(1.5)  # one more scrape: every rate has a sample after the requests
        yield Setup(fleet, tpu, dcgm, prometheus, observed_at)


def _copies(server: AnyServer, kind: str) -> int:
    """How many histogram series one observation of ``kind`` lands in (a release exporting
    both names of vLLM's per-token histogram records it under each)."""
    if isinstance(server, JetStreamServer):
        return 1
    series = server._ttft_series() if kind == "ttft" else server._tpot_series()
    return len(series)


Client = Callable[..., Any]


@pytest.fixture
async def app(setup: Setup) -> AsyncIterator[ClusterClient]:
    async with cluster_clients(setup.prometheus.url) as make:
        yield make


# --------------------------------------------------------------------------- expectations


@dataclass(frozen=True)
class PodExpect:
    """What one pod means in the vocabulary (``None``: the engine does not export it)."""

    name: str
    model: str  # "" when the engine has no model label
    waiting: float | None
    running: float | None
    kv: float | None


def mean(values: tuple[float, ...]) -> float:
    return sum(values) / len(values)


def expect(server: AnyServer) -> PodExpect:
    if isinstance(server, JetStreamServer):
        v = server.values
        # JetStream exports kv_cache_utilization_perc in percent.
        kv = round(100 * v.kv_cache, 6) / 100
        return PodExpect(server.pod, server.model, v.requests_waiting, None, kv)
    e = server.values
    if isinstance(server, TritonTrtLlmServer):
        waiting = None if server.legacy else float(sum(e.waiting))
        kv = server.used_blocks() / server.MAX_BLOCKS  # fraction, or used / max when absent
        return PodExpect(server.pod, server.model, waiting, sum(e.running), kv)
    if isinstance(server, TgiServer):
        return PodExpect(server.pod, "", sum(e.waiting), sum(e.running), None)
    # vLLM engines and SGLang data-parallel groups add up; SGLang's tensor-parallel ranks
    # repeat their group's value and count once. KV: the mean.
    return PodExpect(server.pod, server.model, sum(e.waiting), sum(e.running), mean(e.kv_cache))


VOCABULARY: dict[str, Callable[[PodExpect], float | None]] = {
    "llm_requests_waiting": lambda p: p.waiting,
    "llm_requests_running": lambda p: p.running,
    "llm_kv_cache_utilization": lambda p: p.kv,
}


def per_pod(
    setup: Setup, cluster: str, namespace: str, of: Callable[[PodExpect], float | None]
) -> dict[str, str]:
    out = {}
    for server in setup.servers(cluster, namespace):
        value = of(expect(server))
        if value is not None:
            out[server.pod] = format_quantity(value)
    return out


def per_model(
    setup: Setup, cluster: str, namespace: str, of: Callable[[PodExpect], float | None]
) -> dict[str, str]:
    totals: dict[str, float] = {}
    for server in setup.servers(cluster, namespace):
        pod = expect(server)
        value = of(pod)
        if value is not None:
            totals[pod.model] = totals.get(pod.model, 0.0) + value
    return {model: format_quantity(v) for model, v in totals.items()}


async def pods_values(
    client: httpx.AsyncClient, namespace: str, metric: str, **params: str
) -> dict[str, str]:
    r = await client.get(f"{C2}/namespaces/{namespace}/pods/*/{metric}", params=params)
    assert r.status_code == 200, r.text
    return {i["describedObject"]["name"]: i["value"] for i in r.json()["items"]}


async def external_values(
    client: httpx.AsyncClient, namespace: str, metric: str, **params: str
) -> dict[str, str]:
    r = await client.get(f"{E}/namespaces/{namespace}/{metric}", params=params)
    assert r.status_code == 200, r.text
    items = r.json()["items"]
    out = {i["metricLabels"].get("model_name", ""): i["value"] for i in items}
    assert len(out) == len(items), items  # one series per model
    return out


# --------------------------------------------------------------------------- the vocabulary


@pytest.mark.parametrize(("cluster", "namespace"), SCOPES)
@pytest.mark.parametrize("kind", ["pods: one value per pod", "external: totals per model"])
async def test_vocabulary_metrics(
    app: Client, setup: Setup, cluster: str, namespace: str, kind: str
) -> None:
    client = await app(cluster)
    pods = kind.startswith("pods")
    read, expected = (pods_values, per_pod) if pods else (external_values, per_model)
    for metric, of in VOCABULARY.items():
        got = await read(client, namespace, metric)
        assert got == expected(setup, cluster, namespace, of), metric


async def test_a_model_selector_picks_one_model(app: Client, setup: Setup) -> None:
    client = await app("c1")
    waiting = per_model(setup, "c1", "team-a", VOCABULARY["llm_requests_waiting"])
    got = await external_values(
        client, "team-a", "llm_requests_waiting", labelSelector="model_name=llama-3-8b"
    )
    assert got == {"llama-3-8b": waiting["llama-3-8b"]}
    # Pods: the selector reaches every engine's selector; only SGLang's pod serves qwen.
    sglang = expect(setup.fleet.server("sglang-0", namespace="team-a", cluster="c1"))
    got_pods = await pods_values(
        client, "team-a", "llm_requests_waiting", metricLabelSelector="model_name=qwen-2-7b"
    )
    assert got_pods == {"sglang-0": format_quantity(sglang.waiting or 0)}
    # JetStream sanitises its model name (- becomes _): select it as it exports it.
    jet = await external_values(
        client, "team-a", "llm_kv_cache_utilization", labelSelector="model_name=gemma_7b"
    )
    jetstream = expect(setup.fleet.server("jetstream-0", namespace="team-a", cluster="c1"))
    assert jet == {"gemma_7b": format_quantity(jetstream.kv or 0)}


async def test_a_namespace_without_engines_answers_nothing(app: Client) -> None:
    client = await app("c1")
    assert await pods_values(client, "empty", "llm_requests_waiting") == {}
    for metric in ("llm_requests_waiting", "llm_time_to_first_token_p95_seconds"):
        assert await external_values(client, "empty", metric) == {}


# --------------------------------------------------------------------------- engine-native


def _is(*types: type) -> Callable[[AnyServer], bool]:
    return lambda s: isinstance(s, types)


def _vllm_kv(name: str) -> Callable[[AnyServer], bool]:
    return lambda s: isinstance(s, VllmServer) and name in s.kv_names


# metric → (which pods export it, value per pod, external grouped by model_name?)
NATIVE: dict[str, tuple[Callable[[AnyServer], bool], Callable[[PodExpect], float | None], bool]] = {
    "vllm:num_requests_waiting": (_is(VllmServer), lambda p: p.waiting, True),
    "vllm:num_requests_running": (_is(VllmServer), lambda p: p.running, True),
    "vllm:kv_cache_usage_perc": (_vllm_kv("vllm:kv_cache_usage_perc"), lambda p: p.kv, True),
    "vllm:gpu_cache_usage_perc": (_vllm_kv("vllm:gpu_cache_usage_perc"), lambda p: p.kv, True),
    "sglang:num_queue_reqs": (_is(SglangServer), lambda p: p.waiting, True),
    "sglang:num_running_reqs": (_is(SglangServer), lambda p: p.running, True),
    "sglang:token_usage": (_is(SglangServer), lambda p: p.kv, True),
    "tgi_queue_size": (_is(TgiServer), lambda p: p.waiting, False),
    "tgi_batch_current_size": (_is(TgiServer), lambda p: p.running, False),
    "trtllm_num_requests_waiting": (_is(TrtllmServeServer), lambda p: p.waiting, True),
    "trtllm_num_requests_running": (_is(TrtllmServeServer), lambda p: p.running, True),
    "trtllm_kv_cache_utilization": (_is(TrtllmServeServer), lambda p: p.kv, True),
    "num_requests_running": (_is(NimServer), lambda p: p.running, True),
    "gpu_cache_usage_perc": (_is(NimServer), lambda p: p.kv, True),
}


@pytest.mark.parametrize(("cluster", "namespace"), SCOPES)
async def test_engine_native_metrics(
    app: Client, setup: Setup, cluster: str, namespace: str
) -> None:
    client = await app(cluster)
    servers = setup.servers(cluster, namespace)
    for metric, (exports, of, by_model) in NATIVE.items():
        pods: dict[str, str] = {}
        totals: dict[str, float] = {}
        for server in servers:
            if exports(server):
                pod = expect(server)
                value = of(pod)
                assert value is not None
                pods[server.pod] = format_quantity(value)
                key = pod.model if by_model else ""
                totals[key] = totals.get(key, 0.0) + value
        assert await pods_values(client, namespace, metric) == pods, metric
        want = {k: format_quantity(v) for k, v in totals.items()}
        assert await external_values(client, namespace, metric) == want, metric


@pytest.mark.parametrize(("cluster", "namespace"), SCOPES)
async def test_jetstream_and_nim_share_num_requests_waiting(
    app: Client, setup: Setup, cluster: str, namespace: str
) -> None:
    client = await app(cluster)
    want = {
        s.pod: format_quantity(expect(s).waiting or 0)
        for s in setup.servers(cluster, namespace)
        if isinstance(s, JetStreamServer | NimServer)
    }
    assert await pods_values(client, namespace, "num_requests_waiting") == want
    # the shared preset's percent, as JetStream exports it
    kv = {
        s.pod: format_quantity(round(100 * s.values.kv_cache, 6))
        for s in setup.servers(cluster, namespace)
        if isinstance(s, JetStreamServer)
    }
    assert await pods_values(client, namespace, "kv_cache_utilization_perc") == kv


async def test_triton_families_answer_one_type_at_a_time(app: Client, setup: Setup) -> None:
    client = await app("c1")
    # Without a selector a pod has five request types: nothing is summed across them.
    assert await pods_values(client, "team-a", "nv_trt_llm_request_metrics") == {}
    assert await external_values(client, "team-a", "nv_trt_llm_request_metrics") == {}
    new = setup.fleet.server("triton-0", namespace="team-a", cluster="c1")
    legacy = setup.fleet.server("triton-0", namespace="team-b", cluster="c1")
    assert isinstance(new, TritonTrtLlmServer) and isinstance(legacy, TritonTrtLlmServer)
    got = await pods_values(
        client, "team-a", "nv_trt_llm_request_metrics", metricLabelSelector="request_type=waiting"
    )
    assert got == {"triton-0": format_quantity(sum(new.values.waiting))}
    got = await external_values(
        client,
        "team-b",
        "nv_trt_llm_kv_cache_block_metrics",
        labelSelector="kv_cache_block_type=used",
    )
    assert got == {"": format_quantity(legacy.used_blocks())}
    # The external series keeps Triton's own model label.
    r = await client.get(
        f"{E}/namespaces/team-a/nv_trt_llm_request_metrics",
        params={"labelSelector": "request_type=scheduled"},
    )
    [item] = r.json()["items"]
    assert item["metricLabels"] == {"model": "tensorrt_llm"}
    assert item["value"] == format_quantity(sum(new.values.running))
    # A release without request_type="waiting" has no queue metric to select.
    assert (
        await pods_values(
            client,
            "team-b",
            "nv_trt_llm_request_metrics",
            metricLabelSelector="request_type=waiting",
        )
        == {}
    )


def test_the_fleet_stores_both_spellings(setup: Setup) -> None:
    """What the presets must read: c1/team-a's vllm-0 reached Prometheus as vllm:…, vllm-1
    as vllm_… (a prometheus_client with UTF-8 name escaping, client_python #1177)."""
    scope = 'cluster="c1",namespace="team-a"'
    colon = setup.prometheus.query(f"vllm:num_requests_waiting{{{scope}}}")
    underscore = setup.prometheus.query(f"vllm_num_requests_waiting{{{scope}}}")
    assert {s.labels["pod"] for s in colon} == {"vllm-0"}
    assert {s.labels["pod"] for s in underscore} == {"vllm-1"}


async def test_a_colon_name_is_served_as_is_and_percent_encoded(app: Client, setup: Setup) -> None:
    client = await app("c1")
    want = per_pod(
        setup, "c1", "team-a",
        lambda p: p.waiting if p.name.startswith("vllm-") else None,
    )  # fmt: skip
    assert await pods_values(client, "team-a", "vllm:num_requests_waiting") == want
    r = await client.get(f"{C2}/namespaces/team-a/pods/*/vllm%3Anum_requests_waiting")
    assert r.status_code == 200, r.text
    assert {i["describedObject"]["name"]: i["value"] for i in r.json()["items"]} == want
    assert {i["metric"]["name"] for i in r.json()["items"]} == {"vllm:num_requests_waiting"}
    r = await client.get(f"{C2}")
    names = {res["name"] for res in r.json()["resources"]}
    assert "pods/vllm:num_requests_waiting" in names and "pods/llm_requests_waiting" in names


# --------------------------------------------------------------------------- accelerators


@pytest.mark.parametrize(("cluster", "namespace"), SCOPES)
async def test_accelerators_are_attributed_to_the_workload(
    app: Client, setup: Setup, cluster: str, namespace: str
) -> None:
    client = await app(cluster)
    chips = [c for c in setup.tpu[cluster].chips if c.namespace == namespace]
    gpus = [g for g in setup.dcgm[cluster].gpus if g.namespace == namespace]

    def by_pod(items: list[Any], value: Callable[[list[Any]], float]) -> dict[str, float]:
        pods: dict[str, list[Any]] = {}
        for item in items:
            pods.setdefault(item.pod, []).append(item)
        return {pod: value(members) for pod, members in pods.items()}

    expected: dict[str, dict[str, float]] = {
        "tpu_duty_cycle": by_pod(chips, lambda cs: sum(c.duty_cycle for c in cs) / len(cs)),
        "tpu_tensorcore_utilization": by_pod(
            chips, lambda cs: sum(c.tensorcore_utilization for c in cs) / len(cs)
        ),
        "memory_used_percentage": by_pod(
            chips, lambda cs: sum(c.memory_used for c in cs) / sum(c.memory_total for c in cs)
        ),
        "DCGM_FI_DEV_GPU_UTIL": by_pod(gpus, lambda gs: sum(g.util for g in gs) / len(gs)),
        "DCGM_FI_DEV_FB_USED": by_pod(gpus, lambda gs: sum(g.fb_used for g in gs)),
        "gpu_memory_used_percentage": by_pod(
            gpus,
            lambda gs: sum(g.fb_used for g in gs) / sum(g.fb_used + g.fb_free for g in gs),
        ),
    }
    assert expected["DCGM_FI_DEV_FB_USED"] and (expected["tpu_duty_cycle"] or cluster == "c2")
    for metric, values in expected.items():
        got = await pods_values(client, namespace, metric)
        assert got == {pod: format_quantity(v) for pod, v in values.items()}, metric
        total = await external_values(client, namespace, metric)
        assert total == ({"": format_quantity(sum(values.values()))} if values else {}), metric


# --------------------------------------------------------------------------- latency


LATENCY = {
    "llm_time_to_first_token_p95_seconds": "ttft",
    "llm_time_per_output_token_p95_seconds": "tpot",
}


def _families(server: AnyServer, kind: str) -> set[str]:
    if isinstance(server, JetStreamServer):
        return {
            "jetstream_time_to_first_token" if kind == "ttft" else "jetstream_time_per_output_token"
        }
    series = server._ttft_series() if kind == "ttft" else server._tpot_series()
    return {name for name, _ in series}


def prometheus_at(setup: Setup, query: str, at: float) -> list[float]:
    response = httpx.get(
        f"{setup.prometheus.url}/api/v1/query",
        params={"query": query, "time": f"{at:.3f}"},
        timeout=10,
        trust_env=False,
    )
    body = response.json()
    assert body["status"] == "success", body
    return [float(item["value"][1]) for item in body["data"]["result"]]


def prometheus_p95(
    setup: Setup, cluster: str, namespace: str, kind: str, at: float
) -> float | None:
    """Prometheus' own histogram_quantile for each engine of the namespace, over the histogram
    name every pod of that engine exports (one name: a pod exporting two names of the same data
    is read once); the largest of them, 0 for an engine without requests."""
    engines: dict[str, list[set[str]]] = {}
    for server in setup.servers(cluster, namespace):
        families = _families(server, kind)
        if families:
            engines.setdefault(server.engine, []).append(families)
    if not engines:
        return None
    values = []
    for engine, family_sets in engines.items():
        common = set.intersection(*family_sets)
        assert common, f"{engine} pods in {cluster}/{namespace} share no histogram name"
        name = sorted(common)[0]
        # either spelling: a pod's series has one of them
        selector = (
            f'{{__name__=~"{spellings(name + "_bucket")}",'
            f'cluster="{cluster}",namespace="{namespace}"}}'
        )
        [value] = prometheus_at(
            setup, f"histogram_quantile(0.95, sum by (le) (rate({selector}[2m])))", at
        )
        values.append(0.0 if math.isnan(value) else value)
    return max(values)


def preset_at(setup: Setup, metric: str, cluster: str, namespace: str, at: float) -> list[float]:
    [rule] = [r for r in preset_rules() if r.kind == "external" and r.name == metric]
    built = rule.build_query(
        rule.static_metrics()[0], MetricRequest(namespace=namespace), QueryScope(cluster=cluster)
    )
    return prometheus_at(setup, built.query, at)


@pytest.mark.parametrize(("cluster", "namespace"), SCOPES)
@pytest.mark.parametrize("metric", list(LATENCY))
async def test_latency_p95_equals_prometheus_histogram_quantile(
    app: Client, setup: Setup, metric: str, cluster: str, namespace: str
) -> None:
    assert time.time() - setup.observed_at < WINDOW_S - 15, "the requests left the 2m window"
    kind = LATENCY[metric]
    # At one evaluation time: exactly Prometheus' own percentiles, the largest of them.
    at = time.time()
    want = prometheus_p95(setup, cluster, namespace, kind, at)
    assert want is not None
    assert preset_at(setup, metric, cluster, namespace, at) == [want]
    # Through the API, one series. rate() extrapolates each pod's buckets by a factor that moves
    # with the evaluation time (most while the series are young), so a percentile mixing two
    # pods moves too: the API's answer must lie between Prometheus' answers just before and
    # just after it (to the milli-unit the quantity keeps).
    for _attempt in range(3):
        before = prometheus_p95(setup, cluster, namespace, kind, time.time())
        client = await app(cluster)  # a fresh cache
        r = await client.get(f"{E}/namespaces/{namespace}/{metric}")
        after = prometheus_p95(setup, cluster, namespace, kind, time.time())
        assert r.status_code == 200, r.text
        [item] = r.json()["items"]
        assert item["metricLabels"] == {}
        assert before is not None and after is not None
        got = quantity(item["value"])
        if min(before, after) - 6e-4 <= got <= max(before, after) + 6e-4:
            break
    else:
        raise AssertionError(f"{metric}: API {got}, Prometheus {before} then {after}")
    observed = any(
        key[:2] == (cluster, namespace) and any(o[0] == kind for o in records)
        for key, records in OBSERVATIONS.items()
    )
    if not observed:
        assert item["value"] == "0"  # engines present, no request in the window


def quantity(text: str) -> float:
    suffixes = {"m": 1e-3, "u": 1e-6, "n": 1e-9, "k": 1e3, "M": 1e6, "G": 1e9}
    if text[-1] in suffixes:
        return float(text[:-1]) * suffixes[text[-1]]
    return float(text)


async def test_renamed_histograms_count_once(setup: Setup) -> None:
    """c1/team-a's vllm-1 exports its per-token latency under both vLLM names. Counted twice,
    its slow requests would weigh double in the percentile."""
    at = time.time()
    [preset] = preset_at(setup, "llm_time_per_output_token_p95_seconds", "c1", "team-a", at)
    scope = 'cluster="c1",namespace="team-a"'
    new = f'{{__name__=~"{spellings("vllm:inter_token_latency_seconds_bucket")}",{scope}}}'
    old = f'{{__name__=~"{spellings("vllm:time_per_output_token_seconds_bucket")}",{scope}}}'
    doubled_query = (
        f"histogram_quantile(0.95, sum by (le) (rate({new}[2m])) + sum by (le) (rate({old}[2m])))"
    )
    [doubled] = prometheus_at(setup, doubled_query, at)
    [once] = prometheus_at(setup, f"histogram_quantile(0.95, sum by (le) (rate({new}[2m])))", at)
    assert preset == once
    assert not math.isclose(doubled, once, rel_tol=0.05), (doubled, once)
