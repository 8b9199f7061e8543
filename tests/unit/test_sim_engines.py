"""The engine simulators export each server's own names, types, labels and bucket boundaries."""

from __future__ import annotations

import math
from collections.abc import Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sim.engines import (
    ENGINES,
    SGLANG_TTFT_BUCKETS,
    TGI_DURATION_BUCKETS,
    VLLM_TPOT_BUCKETS,
    VLLM_TTFT_BUCKETS,
    EngineFleet,
    EngineValues,
    GpuValues,
    JetStreamServer,
    NimServer,
    PodPlan,
    SglangServer,
    SimDcgmExporter,
    TgiServer,
    TritonTrtLlmServer,
    TrtllmServeServer,
    VllmServer,
    engine_values_for_load,
    make_server,
)
from sim.jetstream import TPOT_BUCKETS as JETSTREAM_TPOT_BUCKETS
from sim.jetstream import TTFT_BUCKETS as JETSTREAM_TTFT_BUCKETS

Sample = tuple[str, dict[str, str], float]
TARGET = {"cluster", "namespace", "pod", "instance", "job"}


def scrape(url: str) -> tuple[dict[str, str], list[Sample]]:
    """(family name → type, samples) of one scrape."""
    text = httpx.get(url, timeout=5, trust_env=False).text
    types: dict[str, str] = {}
    samples: list[Sample] = []
    for family in text_string_to_metric_families(text):
        types[family.name] = family.type
        samples.extend((s.name, dict(s.labels), s.value) for s in family.samples)
    return types, samples


def values_of(samples: list[Sample], name: str, **labels: str) -> list[float]:
    return [
        v
        for n, ls, v in samples
        if n == name and all(ls.get(k) == want for k, want in labels.items())
    ]


def engine_labels(samples: list[Sample], name: str) -> set[frozenset[str]]:
    return {frozenset(set(ls) - TARGET - {"le"}) for n, ls, _ in samples if n == name}


def bucket_bounds(samples: list[Sample], name: str) -> list[float]:
    return sorted(
        {float(ls["le"]) for n, ls, _ in samples if n == f"{name}_bucket" and ls["le"] != "+Inf"}
    )


@pytest.fixture
def started() -> Iterator[list[object]]:
    servers: list[object] = []
    yield servers
    for server in servers:
        server.stop()  # type: ignore[attr-defined]


VALUES = EngineValues(waiting=(3, 5), running=(7, 11), kv_cache=(0.25, 0.5))


def test_vllm_names_labels_and_engines(started: list[object]) -> None:
    server = VllmServer(pod="p", namespace="ns", cluster="c", model="m", splits=2)
    started.append(server.start())
    server.set_values(VALUES)
    server.observe_ttft(0.3, 4)
    server.observe_tpot(0.03, 10)
    types, samples = scrape(server.url)
    assert types["vllm:num_requests_waiting"] == "gauge"
    assert types["vllm:time_to_first_token_seconds"] == "histogram"
    assert values_of(samples, "vllm:num_requests_waiting", engine="0") == [3.0]
    assert values_of(samples, "vllm:num_requests_waiting", engine="1") == [5.0]
    assert values_of(samples, "vllm:num_requests_running", engine="1") == [11.0]
    assert values_of(samples, "vllm:kv_cache_usage_perc", engine="0") == [0.25]
    assert not values_of(samples, "vllm:gpu_cache_usage_perc")
    assert engine_labels(samples, "vllm:num_requests_waiting") == {
        frozenset({"model_name", "engine"})
    }
    assert bucket_bounds(samples, "vllm:time_to_first_token_seconds") == list(VLLM_TTFT_BUCKETS)
    assert bucket_bounds(samples, "vllm:inter_token_latency_seconds") == list(VLLM_TPOT_BUCKETS)
    # 0.3 s lands in the (0.25, 0.5] bucket.
    ttft = "vllm:time_to_first_token_seconds_bucket"
    assert values_of(samples, ttft, le="0.25") == [0.0]
    assert values_of(samples, ttft, le="0.5") == [4.0]
    assert values_of(samples, "vllm:time_to_first_token_seconds_count") == [4.0]
    assert values_of(samples, "vllm:inter_token_latency_seconds_sum") == [pytest.approx(0.3)]
    for name, labels, _ in samples:
        assert labels["pod"] == "p" and labels["namespace"] == "ns" and labels["cluster"] == "c"
        assert labels["model_name"] == "m", name


@pytest.mark.parametrize(
    ("generation", "kv", "tpot"),
    [
        ("current", {"vllm:kv_cache_usage_perc"}, {"vllm:inter_token_latency_seconds"}),
        (
            "transition",
            {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"},
            {"vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"},
        ),
        ("legacy", {"vllm:gpu_cache_usage_perc"}, {"vllm:time_per_output_token_seconds"}),
    ],
)
def test_vllm_generations_export_the_names_of_their_release(
    started: list[object], generation: str, kv: set[str], tpot: set[str]
) -> None:
    server = VllmServer(pod="p", namespace="ns", cluster="c", generation=generation)  # type: ignore[arg-type]
    started.append(server.start())
    server.set_values(EngineValues(waiting=(1,), running=(2,), kv_cache=(0.75,)))
    server.observe_tpot(0.06, 3)
    types, samples = scrape(server.url)
    names = set(types)
    all_kv = {"vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc"}
    all_tpot = {"vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"}
    assert names & all_kv == kv
    assert names & all_tpot == tpot
    # A release exporting both names exports the same data under each.
    assert {values_of(samples, name)[0] for name in kv} == {0.75}
    assert {values_of(samples, f"{name}_count")[0] for name in tpot} == {3.0}


def test_sglang_ranks_repeat_their_group_values(started: list[object]) -> None:
    server = SglangServer(pod="p", namespace="ns", cluster="c", model="m", splits=2, tp=4)
    started.append(server.start())
    server.set_values(VALUES)
    server.observe_ttft(0.5, 2)
    types, samples = scrape(server.url)
    assert types["sglang:num_queue_reqs"] == "gauge"
    assert engine_labels(samples, "sglang:num_queue_reqs") == {
        frozenset({"model_name", "engine_type", "tp_rank", "pp_rank", "dp_rank"})
    }
    for dp, want in enumerate((3.0, 5.0)):
        got = values_of(samples, "sglang:num_queue_reqs", dp_rank=str(dp))
        assert got == [want] * 4  # every tensor-parallel rank reports the same queue
    assert values_of(samples, "sglang:token_usage", dp_rank="1", tp_rank="3") == [0.5]
    assert bucket_bounds(samples, "sglang:time_to_first_token_seconds") == [
        float(b) for b in SGLANG_TTFT_BUCKETS
    ]
    assert engine_labels(samples, "sglang:time_to_first_token_seconds_bucket") == {
        frozenset({"model_name", "engine_type"})
    }
    assert "sglang:inter_token_latency_seconds" in types


def test_sglang_without_data_parallel_has_no_dp_rank(started: list[object]) -> None:
    server = SglangServer(pod="p", namespace="ns", cluster="c", tp=2, legacy=True)
    started.append(server.start())
    types, samples = scrape(server.url)
    assert engine_labels(samples, "sglang:num_running_reqs") == {
        frozenset({"model_name", "engine_type", "tp_rank", "pp_rank"})
    }
    assert "sglang:time_per_output_token_seconds" in types
    assert "sglang:inter_token_latency_seconds" not in types


def test_tgi_has_no_labels_and_geometric_buckets(started: list[object]) -> None:
    server = TgiServer(pod="p", namespace="ns", cluster="c")
    started.append(server.start())
    server.set_values(EngineValues(waiting=(4,), running=(9,), kv_cache=(0.5,)))
    server.observe_ttft(0.2)  # TGI has no time-to-first-token histogram: ignored
    server.observe_tpot(0.02, 5)
    types, samples = scrape(server.url)
    assert values_of(samples, "tgi_queue_size") == [4.0]
    assert values_of(samples, "tgi_batch_current_size") == [9.0]
    assert engine_labels(samples, "tgi_queue_size") == {frozenset()}
    assert types["tgi_request_mean_time_per_token_duration"] == "histogram"
    assert len(TGI_DURATION_BUCKETS) == 35
    assert math.isclose(TGI_DURATION_BUCKETS[0], 0.00015)
    assert bucket_bounds(samples, "tgi_request_mean_time_per_token_duration") == list(
        TGI_DURATION_BUCKETS
    )
    assert not any("first_token" in name for name in types)


@pytest.mark.parametrize("legacy", [False, True])
def test_triton_trtllm_families(started: list[object], legacy: bool) -> None:
    server = TritonTrtLlmServer(pod="p", namespace="ns", cluster="c", legacy=legacy)
    started.append(server.start())
    server.set_values(EngineValues(waiting=(6,), running=(10,), kv_cache=(0.375,)))
    types, samples = scrape(server.url)
    assert types["nv_trt_llm_request_metrics"] == "gauge"
    assert engine_labels(samples, "nv_trt_llm_request_metrics") == {
        frozenset({"model", "version", "request_type"})
    }
    kinds = {ls["request_type"] for n, ls, _ in samples if n == "nv_trt_llm_request_metrics"}
    blocks = {
        ls["kv_cache_block_type"]
        for n, ls, _ in samples
        if n == "nv_trt_llm_kv_cache_block_metrics"
    }
    base_kinds = {"active", "max", "scheduled", "context"}
    base_blocks = {"max", "free", "used", "tokens_per"}
    assert kinds == (base_kinds if legacy else base_kinds | {"waiting"})
    assert blocks == (base_blocks if legacy else base_blocks | {"fraction"})
    used = values_of(samples, "nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="used")
    most = values_of(samples, "nv_trt_llm_kv_cache_block_metrics", kv_cache_block_type="max")
    assert used[0] / most[0] == 0.375
    assert values_of(samples, "nv_trt_llm_request_metrics", request_type="scheduled") == [10.0]
    if not legacy:
        assert values_of(samples, "nv_trt_llm_request_metrics", request_type="waiting") == [6.0]
    assert values_of(samples, "nv_trt_llm_request_metrics", model="tensorrt_llm")
    assert not [n for n, t in types.items() if t == "histogram"]


def test_trtllm_serve_and_nim(started: list[object]) -> None:
    trt = TrtllmServeServer(pod="p", namespace="ns", cluster="c", model="m")
    nim = NimServer(pod="q", namespace="ns", cluster="c", model="m")
    started.extend([trt.start(), nim.start()])
    for server in (trt, nim):
        server.set_values(EngineValues(waiting=(2,), running=(3,), kv_cache=(0.125,)))
    _, trt_samples = scrape(trt.url)
    assert values_of(trt_samples, "trtllm_num_requests_waiting", engine_type="trtllm") == [2.0]
    assert values_of(trt_samples, "trtllm_kv_cache_utilization") == [0.125]
    assert "trtllm_time_to_first_token_seconds_bucket" in {n for n, _, _ in trt_samples}
    types, nim_samples = scrape(nim.url)
    assert values_of(nim_samples, "num_requests_waiting", model_name="m") == [2.0]
    assert values_of(nim_samples, "num_requests_running") == [3.0]
    assert values_of(nim_samples, "gpu_cache_usage_perc") == [0.125]
    assert types["time_to_first_token_seconds"] == "histogram"
    assert types["time_per_output_token_seconds"] == "histogram"


def test_jetstream_through_the_common_interface(started: list[object]) -> None:
    server = JetStreamServer(pod="p", namespace="ns", cluster="c", model="gemma-7b")
    started.append(server.start())
    server.set_kv_cache(0.5)
    server.observe_ttft(0.07, 3)
    server.observe_tpot(0.02, 2)
    _, samples = scrape(server.url)
    assert values_of(samples, "kv_cache_utilization_perc", model_name="gemma_7b") == [50.0]
    assert bucket_bounds(samples, "jetstream_time_to_first_token") == list(JETSTREAM_TTFT_BUCKETS)
    assert bucket_bounds(samples, "jetstream_time_per_output_token") == list(JETSTREAM_TPOT_BUCKETS)
    assert values_of(samples, "jetstream_time_to_first_token_count") == [3.0]
    assert values_of(samples, "jetstream_time_per_output_token_bucket", le="0.025") == [2.0]


def test_load_model_is_deterministic_and_validated() -> None:
    v = engine_values_for_load(0.55, splits=3)
    assert sum(v.waiting) == 11 and v.waiting == (4, 4, 3)
    assert v.running == (35, 35, 35)
    assert v.kv_cache == (0.55, 0.495, 0.44)
    assert engine_values_for_load(2.0).kv_cache == (1.0,)
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="load level"):
            engine_values_for_load(bad)
    with pytest.raises(ValueError, match="one entry per split"):
        EngineValues(waiting=(1,), running=(), kv_cache=(0.1,))


def test_make_server_and_fleet_step() -> None:
    assert set(ENGINES) == {
        "jetstream", "vllm", "sglang", "tgi", "triton-trtllm", "trtllm-serve", "nim",
    }  # fmt: skip
    with pytest.raises(ValueError, match="unknown engine"):
        make_server(PodPlan("nope", "p", "ns"))
    plans = [
        PodPlan(engine, f"{engine}-0", "ns", model="m", options={"splits": 2})
        for engine in ("vllm", "sglang", "jetstream")
    ] + [PodPlan("tgi", "tgi-0", "other")]
    with EngineFleet(plans) as fleet:
        assert len(fleet.targets) == 4
        levels = fleet.step(40.0)  # inside a burst: every pod above 0.5
        assert set(levels) == {"ns/vllm-0", "ns/sglang-0", "ns/jetstream-0", "other/tgi-0"}
        vllm = fleet.server("vllm-0", namespace="ns")
        assert isinstance(vllm, VllmServer)
        assert sum(vllm.values.waiting) == round(20 * levels["ns/vllm-0"])
        _, samples = scrape(vllm.url)
        assert values_of(samples, "vllm:time_to_first_token_seconds_count")[0] >= 1
        with pytest.raises(KeyError):
            fleet.server("vllm-0", namespace="other")


def test_dcgm_exporter_attributes_gpus_through_exported_labels(started: list[object]) -> None:
    dcgm = SimDcgmExporter(cluster="c1")
    started.append(dcgm.start())
    dcgm.set_gpu(GpuValues("team-a", "vllm-0", "0", util=87.0, fb_used=20000, fb_free=2528))
    dcgm.set_gpu(GpuValues("team-a", "vllm-0", "1", util=65.0, fb_used=21000, fb_free=1528))
    types, samples = scrape(dcgm.url)
    assert {types[n] for n in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED")} == {"gauge"}
    assert values_of(samples, "DCGM_FI_DEV_GPU_UTIL", exported_pod="vllm-0", gpu="1") == [65.0]
    assert values_of(samples, "DCGM_FI_DEV_FB_FREE", gpu="0") == [2528.0]
    labels = next(ls for n, ls, _ in samples if n == "DCGM_FI_DEV_FB_USED")
    assert labels["exported_namespace"] == "team-a" and labels["namespace"] == "gpu-operator"
    assert {"UUID", "modelName", "Hostname", "exported_container"} <= set(labels)


OPENMETRICS = {
    "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"
}


@pytest.mark.parametrize("exposition", ["negotiated", "text", "underscores"])
def test_colon_names_as_prometheus_receives_them(started: list[object], exposition: str) -> None:
    server = SglangServer(pod="p", namespace="ns", cluster="c", exposition=exposition)  # type: ignore[arg-type]
    started.append(server.start())
    text = httpx.get(server.url, headers=OPENMETRICS, timeout=5, trust_env=False).text
    samples = {line.split("{")[0] for line in text.splitlines() if not line.startswith("#")}
    if exposition == "text":
        # the Prometheus text format whatever was asked: names as declared
        assert "sglang:num_queue_reqs" in samples and "sglang_num_queue_reqs" not in samples
    elif exposition == "underscores":
        assert "sglang_num_queue_reqs" in samples and "sglang:num_queue_reqs" not in samples
        assert "sglang_time_to_first_token_seconds_bucket" in samples
    else:
        # prometheus_client's own negotiation: with UTF-8 name escaping (client_python #1177)
        # the OpenMetrics samples read sglang_…; either way exactly one spelling
        assert len({"sglang:num_queue_reqs", "sglang_num_queue_reqs"} & samples) == 1
