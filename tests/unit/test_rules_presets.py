"""The built-in presets: exact queries after scope injection, and what they serve."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter import promql
from adapter.domain.errors import BadRequestError
from adapter.domain.models import GroupResource, Requirement
from adapter.rules import MetricRequest, QueryScope, load_rules
from adapter.rules.loader import preset_rules
from adapter.rules.native import NativeRule

SCOPE = QueryScope(cluster="C")
REQUEST = MetricRequest(namespace="NS")

PODS = {
    "jetstream_prefill_backlog_size": (
        'sum by (pod, id) (jetstream_prefill_backlog_size{cluster="C",namespace="NS"})'
    ),
    "jetstream_slots_used_percentage": (
        'avg by (pod, id) (jetstream_slots_used_percentage{cluster="C",namespace="NS"})'
    ),
    "jetstream_transfer_backlog_size": (
        'sum by (pod, id) (jetstream_transfer_backlog_size{cluster="C",namespace="NS"})'
    ),
    "jetstream_generate_backlog_size": (
        'sum by (pod, id) (jetstream_generate_backlog_size{cluster="C",namespace="NS"})'
    ),
    "num_requests_waiting": 'sum by (pod, id) (num_requests_waiting{cluster="C",namespace="NS"})',
    "kv_cache_utilization_perc": (
        'avg by (pod, id) (kv_cache_utilization_perc{cluster="C",namespace="NS"})'
    ),
}

EXTERNAL = {
    "jetstream_prefill_backlog_size": (
        'sum(jetstream_prefill_backlog_size{cluster="C",namespace="NS"})'
    ),
    "jetstream_slots_used_percentage": (
        'sum(avg by (pod, id) (jetstream_slots_used_percentage{cluster="C",namespace="NS"}))'
    ),
    "jetstream_transfer_backlog_size": (
        'sum(jetstream_transfer_backlog_size{cluster="C",namespace="NS"})'
    ),
    "jetstream_generate_backlog_size": (
        'sum(jetstream_generate_backlog_size{cluster="C",namespace="NS"})'
    ),
    "num_requests_waiting": 'sum(num_requests_waiting{cluster="C",namespace="NS"})',
    "kv_cache_utilization_perc": (
        'sum(avg by (pod, id) (kv_cache_utilization_perc{cluster="C",namespace="NS"}))'
    ),
    "memory_used_percentage": (
        'sum(sum by (exported_pod) (memory_used{cluster="C",exported_namespace="NS"})'
        ' / sum by (exported_pod) (memory_total{cluster="C",exported_namespace="NS"}))'
    ),
}


def _by_key() -> dict[tuple[str, str], object]:
    return {(r.kind, r.name): r for r in preset_rules()}


def test_every_preset_is_listed_here() -> None:
    keys = {(r.kind, r.name) for r in preset_rules()}
    expected = {("custom", n) for n in PODS} | {("external", n) for n in EXTERNAL}
    expected |= {("custom", n) for n in ENGINE_PODS} | {("external", n) for n in ENGINE_EXTERNAL}
    expected |= {("custom", n) for n in VOCABULARY_PODS} | {
        ("external", n) for n in VOCABULARY_EXTERNAL
    }
    assert keys == expected


@pytest.mark.parametrize(("name", "expected"), sorted(PODS.items()))
def test_pods_preset_query(name: str, expected: str) -> None:
    rule = next(r for r in preset_rules() if r.kind == "custom" and r.name == name)
    [metric] = rule.static_metrics()
    assert metric.resource == GroupResource("pods")
    assert metric.namespaced is True
    built = rule.build_query(metric, REQUEST, SCOPE)
    assert built.query == expected
    assert built.object_labels == ("pod", "id")
    assert built.injected == ('cluster="C"', 'namespace="NS"')


@pytest.mark.parametrize(("name", "expected"), sorted(EXTERNAL.items()))
def test_external_preset_query(name: str, expected: str) -> None:
    rule = next(r for r in preset_rules() if r.kind == "external" and r.name == name)
    [metric] = rule.static_metrics()
    assert metric.resource is None
    built = rule.build_query(metric, REQUEST, SCOPE)
    assert built.query == expected
    assert built.object_labels == ()


def test_preset_without_cluster_injects_only_the_namespace() -> None:
    rule = next(r for r in preset_rules() if r.id == "preset:external/num_requests_waiting")
    built = rule.build_query(rule.static_metrics()[0], REQUEST, QueryScope())
    assert built.query == 'sum(num_requests_waiting{namespace="NS"})'
    assert built.injected == ('namespace="NS"',)


def test_preset_metric_selector_is_injected_after_scope() -> None:
    rule = next(r for r in preset_rules() if r.id == "preset:external/num_requests_waiting")
    request = MetricRequest(
        namespace="NS", metric_selector=(Requirement("model_name", "=", ("m",)),)
    )
    built = rule.build_query(rule.static_metrics()[0], request, SCOPE)
    assert built.query == 'sum(num_requests_waiting{cluster="C",namespace="NS",model_name="m"})'
    assert built.injected == ('cluster="C"', 'namespace="NS"')


def test_preset_selector_cannot_override_the_namespace() -> None:
    rule = next(r for r in preset_rules() if r.id == "preset:external/num_requests_waiting")
    request = MetricRequest(
        namespace="NS", metric_selector=(Requirement("namespace", "=", ("other",)),)
    )
    with pytest.raises(BadRequestError):
        rule.build_query(rule.static_metrics()[0], request, SCOPE)


def test_presets_load_without_warnings_and_ids_are_unique() -> None:
    rules = load_rules(None)
    assert rules.format == "none"
    assert rules.file is None
    assert rules.warnings == ()
    ids = [r.id for r in rules.rules]
    assert len(ids) == len(set(ids)) == 64
    assert all(r.source == "preset" for r in rules.rules)


def test_presets_off_means_no_rules() -> None:
    assert load_rules(None, presets=False).rules == ()


def test_preset_describe_shows_query_label_and_example() -> None:
    rule = next(r for r in preset_rules() if r.id == "preset:external/memory_used_percentage")
    text = rule.describe()
    assert "sum(sum by (exported_pod) (memory_used) / sum by (exported_pod) (memory_total))" in text
    assert "namespace label: exported_namespace" in text
    assert 'memory_used{cluster="CLUSTER",exported_namespace="NAMESPACE"}' in text


_DNS_LABEL = st.from_regex(r"\A[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")


@settings(max_examples=60, deadline=None)
@given(namespace=_DNS_LABEL, cluster=st.one_of(st.none(), _DNS_LABEL))
def test_every_selector_of_every_preset_is_scoped(namespace: str, cluster: str | None) -> None:
    for rule in preset_rules():
        [metric] = rule.static_metrics()
        built = rule.build_query(
            metric, MetricRequest(namespace=namespace), QueryScope(cluster=cluster)
        )
        infos = promql.selectors(built.query)
        assert infos
        for info in infos:
            pinned = {(m.label, m.value) for m in info.matchers if m.op == "="}
            assert (rule.namespace_label, namespace) in pinned
            if cluster is not None:
                assert ("cluster", cluster) in pinned


# --------------------------------------------------------------------------------------------
# Engine-native, vocabulary and accelerator presets

SEL = '{cluster="C",namespace="NS"}'
EXP = '{cluster="C",exported_namespace="NS"}'

# name → (exact query after injection, object labels)
ENGINE_PODS: dict[str, tuple[str, tuple[str, ...]]] = {
    "vllm:num_requests_waiting": (
        f"sum by (pod, id) (vllm:num_requests_waiting{SEL} or vllm_num_requests_waiting{SEL})",
        ("pod", "id"),
    ),
    "vllm:num_requests_running": (
        f"sum by (pod, id) (vllm:num_requests_running{SEL} or vllm_num_requests_running{SEL})",
        ("pod", "id"),
    ),
    "vllm:kv_cache_usage_perc": (
        f"avg by (pod, id) (vllm:kv_cache_usage_perc{SEL} or vllm_kv_cache_usage_perc{SEL})",
        ("pod", "id"),
    ),
    "vllm:gpu_cache_usage_perc": (
        f"avg by (pod, id) (vllm:gpu_cache_usage_perc{SEL} or vllm_gpu_cache_usage_perc{SEL})",
        ("pod", "id"),
    ),
    "sglang:num_queue_reqs": (
        f"sum by (pod, id) (max by (pod, id, dp_rank) (sglang:num_queue_reqs{SEL} or sglang_num_queue_reqs{SEL}))",
        ("pod", "id"),
    ),
    "sglang:num_running_reqs": (
        f"sum by (pod, id) (max by (pod, id, dp_rank) (sglang:num_running_reqs{SEL} or sglang_num_running_reqs{SEL}))",
        ("pod", "id"),
    ),
    "sglang:token_usage": (
        f"avg by (pod, id) (max by (pod, id, dp_rank) (sglang:token_usage{SEL} or sglang_token_usage{SEL}))",
        ("pod", "id"),
    ),
    "tgi_queue_size": (f"sum by (pod, id) (tgi_queue_size{SEL})", ("pod", "id")),
    "tgi_batch_current_size": (f"sum by (pod, id) (tgi_batch_current_size{SEL})", ("pod", "id")),
    "nv_trt_llm_request_metrics": (
        f"sum by (pod, id) (nv_trt_llm_request_metrics{SEL}) and on (pod, id) (count by (pod, id)"
        f" (count by (pod, id, request_type) (nv_trt_llm_request_metrics{SEL})) == 1)",
        ("pod", "id"),
    ),
    "nv_trt_llm_kv_cache_block_metrics": (
        f"sum by (pod, id) (nv_trt_llm_kv_cache_block_metrics{SEL}) and on (pod, id) (count by"
        f" (pod, id) (count by (pod, id, kv_cache_block_type)"
        f" (nv_trt_llm_kv_cache_block_metrics{SEL})) == 1)",
        ("pod", "id"),
    ),
    "trtllm_num_requests_waiting": (
        f"sum by (pod, id) (trtllm_num_requests_waiting{SEL})",
        ("pod", "id"),
    ),
    "trtllm_num_requests_running": (
        f"sum by (pod, id) (trtllm_num_requests_running{SEL})",
        ("pod", "id"),
    ),
    "trtllm_kv_cache_utilization": (
        f"avg by (pod, id) (trtllm_kv_cache_utilization{SEL})",
        ("pod", "id"),
    ),
    "num_requests_running": (f"sum by (pod, id) (num_requests_running{SEL})", ("pod", "id")),
    "gpu_cache_usage_perc": (f"avg by (pod, id) (gpu_cache_usage_perc{SEL})", ("pod", "id")),
    "tpu_duty_cycle": (f"avg by (exported_pod) (duty_cycle{EXP})", ("exported_pod",)),
    "tpu_tensorcore_utilization": (
        f"avg by (exported_pod) (tensorcore_utilization{EXP})",
        ("exported_pod",),
    ),
    "memory_used_percentage": (
        f"sum by (exported_pod) (memory_used{EXP}) / sum by (exported_pod) (memory_total{EXP})",
        ("exported_pod",),
    ),
    "DCGM_FI_DEV_GPU_UTIL": (
        f"avg by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{EXP})",
        ("exported_pod",),
    ),
    "DCGM_FI_DEV_FB_USED": (f"sum by (exported_pod) (DCGM_FI_DEV_FB_USED{EXP})", ("exported_pod",)),
    "gpu_memory_used_percentage": (
        f"sum by (exported_pod) (DCGM_FI_DEV_FB_USED{EXP}) / (sum by (exported_pod)"
        f" (DCGM_FI_DEV_FB_USED{EXP}) + sum by (exported_pod) (DCGM_FI_DEV_FB_FREE{EXP}))",
        ("exported_pod",),
    ),
}

ENGINE_EXTERNAL: dict[str, str] = {
    "vllm:num_requests_waiting": f"sum by (model_name) (vllm:num_requests_waiting{SEL} or vllm_num_requests_waiting{SEL})",
    "vllm:num_requests_running": f"sum by (model_name) (vllm:num_requests_running{SEL} or vllm_num_requests_running{SEL})",
    "vllm:kv_cache_usage_perc": (
        f"sum by (model_name) (avg by (pod, id, model_name) (vllm:kv_cache_usage_perc{SEL} or vllm_kv_cache_usage_perc{SEL}))"
    ),
    "vllm:gpu_cache_usage_perc": (
        f"sum by (model_name) (avg by (pod, id, model_name) (vllm:gpu_cache_usage_perc{SEL} or vllm_gpu_cache_usage_perc{SEL}))"
    ),
    "sglang:num_queue_reqs": (
        f"sum by (model_name) (max by (pod, id, model_name, dp_rank) (sglang:num_queue_reqs{SEL} or sglang_num_queue_reqs{SEL}))"
    ),
    "sglang:num_running_reqs": (
        "sum by (model_name) (max by (pod, id, model_name, dp_rank)"
        f" (sglang:num_running_reqs{SEL} or sglang_num_running_reqs{SEL}))"
    ),
    "sglang:token_usage": (
        "sum by (model_name) (avg by (pod, id, model_name) (max by (pod, id, model_name, dp_rank)"
        f" (sglang:token_usage{SEL} or sglang_token_usage{SEL})))"
    ),
    "tgi_queue_size": f"sum(tgi_queue_size{SEL})",
    "tgi_batch_current_size": f"sum(tgi_batch_current_size{SEL})",
    "nv_trt_llm_request_metrics": (
        f"sum by (model) (nv_trt_llm_request_metrics{SEL}) and on () (count(count by"
        f" (request_type) (nv_trt_llm_request_metrics{SEL})) == 1)"
    ),
    "nv_trt_llm_kv_cache_block_metrics": (
        f"sum by (model) (nv_trt_llm_kv_cache_block_metrics{SEL}) and on () (count(count by"
        f" (kv_cache_block_type) (nv_trt_llm_kv_cache_block_metrics{SEL})) == 1)"
    ),
    "trtllm_num_requests_waiting": f"sum by (model_name) (trtllm_num_requests_waiting{SEL})",
    "trtllm_num_requests_running": f"sum by (model_name) (trtllm_num_requests_running{SEL})",
    "trtllm_kv_cache_utilization": (
        f"sum by (model_name) (avg by (pod, id, model_name) (trtllm_kv_cache_utilization{SEL}))"
    ),
    "num_requests_running": f"sum by (model_name) (num_requests_running{SEL})",
    "gpu_cache_usage_perc": (
        f"sum by (model_name) (avg by (pod, id, model_name) (gpu_cache_usage_perc{SEL}))"
    ),
    "tpu_duty_cycle": f"sum(avg by (exported_pod) (duty_cycle{EXP}))",
    "tpu_tensorcore_utilization": f"sum(avg by (exported_pod) (tensorcore_utilization{EXP}))",
    "DCGM_FI_DEV_GPU_UTIL": f"sum(avg by (exported_pod) (DCGM_FI_DEV_GPU_UTIL{EXP}))",
    "DCGM_FI_DEV_FB_USED": f"sum(DCGM_FI_DEV_FB_USED{EXP})",
    "gpu_memory_used_percentage": (
        f"sum(sum by (exported_pod) (DCGM_FI_DEV_FB_USED{EXP}) / (sum by (exported_pod)"
        f" (DCGM_FI_DEV_FB_USED{EXP}) + sum by (exported_pod) (DCGM_FI_DEV_FB_FREE{EXP})))"
    ),
}

_WAITING_SOURCES = {
    "vllm:num_requests_waiting", "vllm_num_requests_waiting", "sglang:num_queue_reqs",
    "sglang_num_queue_reqs", "tgi_queue_size",
    "nv_trt_llm_request_metrics", "trtllm_num_requests_waiting", "num_requests_waiting",
}  # fmt: skip
_RUNNING_SOURCES = {
    "vllm:num_requests_running", "vllm_num_requests_running", "sglang:num_running_reqs",
    "sglang_num_running_reqs", "tgi_batch_current_size",
    "nv_trt_llm_request_metrics", "trtllm_num_requests_running", "num_requests_running",
}  # fmt: skip
_KV_SOURCES = {
    "vllm:kv_cache_usage_perc", "vllm_kv_cache_usage_perc", "vllm:gpu_cache_usage_perc",
    "vllm_gpu_cache_usage_perc", "sglang:token_usage", "sglang_token_usage",
    "nv_trt_llm_kv_cache_block_metrics", "trtllm_kv_cache_utilization", "gpu_cache_usage_perc",
    "kv_cache_utilization_perc",
}  # fmt: skip
_TTFT_SOURCES = {
    f"{name}_{part}"
    for name in (
        "vllm:time_to_first_token_seconds", "vllm_time_to_first_token_seconds",
        "sglang:time_to_first_token_seconds", "sglang_time_to_first_token_seconds",
        "trtllm_time_to_first_token_seconds", "time_to_first_token_seconds",
        "jetstream_time_to_first_token",
    )
    for part in ("bucket", "count")
}  # fmt: skip
_TPOT_SOURCES = {
    f"{name}_{part}"
    for name in (
        "vllm:inter_token_latency_seconds", "vllm_inter_token_latency_seconds",
        "vllm:time_per_output_token_seconds", "vllm_time_per_output_token_seconds",
        "sglang:inter_token_latency_seconds", "sglang_inter_token_latency_seconds",
        "sglang:time_per_output_token_seconds", "sglang_time_per_output_token_seconds",
        "tgi_request_mean_time_per_token_duration", "trtllm_time_per_output_token_seconds",
        "time_per_output_token_seconds", "jetstream_time_per_output_token",
    )
    for part in ("bucket", "count")
}  # fmt: skip

# vocabulary name → the metric names its query reads
VOCABULARY_PODS: dict[str, set[str]] = {
    "llm_requests_waiting": _WAITING_SOURCES,
    "llm_requests_running": _RUNNING_SOURCES,
    "llm_kv_cache_utilization": _KV_SOURCES,
}
VOCABULARY_EXTERNAL: dict[str, set[str]] = {
    **VOCABULARY_PODS,
    "llm_time_to_first_token_p95_seconds": _TTFT_SOURCES,
    "llm_time_per_output_token_p95_seconds": _TPOT_SOURCES,
}


def _preset(kind: str, name: str) -> NativeRule:
    return next(r for r in preset_rules() if r.kind == kind and r.name == name)


@pytest.mark.parametrize(("name", "expected"), sorted(ENGINE_PODS.items()))
def test_engine_pods_preset_query(name: str, expected: tuple[str, tuple[str, ...]]) -> None:
    rule = _preset("custom", name)
    [metric] = rule.static_metrics()
    assert metric.resource == GroupResource("pods")
    built = rule.build_query(metric, REQUEST, SCOPE)
    assert (built.query, built.object_labels) == expected


@pytest.mark.parametrize(("name", "expected"), sorted(ENGINE_EXTERNAL.items()))
def test_engine_external_preset_query(name: str, expected: str) -> None:
    rule = _preset("external", name)
    built = rule.build_query(rule.static_metrics()[0], REQUEST, SCOPE)
    assert built.query == expected
    assert built.object_labels == ()


def test_vocabulary_waiting_query_after_injection() -> None:
    rule = _preset("custom", "llm_requests_waiting")
    built = rule.build_query(rule.static_metrics()[0], REQUEST, SCOPE)
    assert built.query == (
        f"sum by (pod, id) (sum by (pod, id, model_name) (vllm:num_requests_waiting{SEL} or vllm_num_requests_waiting{SEL})"
        " or sum by (pod, id, model_name) (max by (pod, id, model_name, dp_rank)"
        f" (sglang:num_queue_reqs{SEL} or sglang_num_queue_reqs{SEL}))"
        f" or sum by (pod, id, model_name) (tgi_queue_size{SEL})"
        " or sum by (pod, id, model_name) (label_replace(nv_trt_llm_request_metrics"
        '{request_type="waiting",cluster="C",namespace="NS"}, "model_name", "$1", "model",'
        ' "(.+)"))'
        f" or sum by (pod, id, model_name) (trtllm_num_requests_waiting{SEL})"
        f" or sum by (pod, id, model_name) (num_requests_waiting{SEL}))"
    )
    assert built.object_labels == ("pod", "id")


@pytest.mark.parametrize(
    ("kind", "name"),
    [("custom", n) for n in VOCABULARY_PODS] + [("external", n) for n in VOCABULARY_EXTERNAL],
)
def test_vocabulary_reads_every_engine_and_is_scoped(kind: str, name: str) -> None:
    rule = _preset(kind, name)
    sources = VOCABULARY_PODS[name] if kind == "custom" else VOCABULARY_EXTERNAL[name]
    assert {info.name for info in promql.selectors(rule.query)} == sources
    request = MetricRequest(
        namespace="NS", metric_selector=(Requirement("model_name", "=", ("m",)),)
    )
    built = rule.build_query(rule.static_metrics()[0], request, SCOPE)
    for info in promql.selectors(built.query):
        pinned = {(m.label, m.value) for m in info.matchers if m.op == "="}
        assert {("cluster", "C"), ("namespace", "NS"), ("model_name", "m")} <= pinned, info


def test_vocabulary_has_no_pods_latency_and_engines_keep_their_model() -> None:
    pods = {r.name for r in preset_rules() if r.kind == "custom"}
    assert "llm_time_to_first_token_p95_seconds" not in pods
    assert "llm_time_per_output_token_p95_seconds" not in pods
    # Externals pass the model through (the HPA sums the series); the p95 is one series.
    assert _preset("external", "llm_requests_waiting").query.startswith("sum by (model_name) (")
    assert _preset("external", "llm_time_to_first_token_p95_seconds").query.startswith("max(")
    # Triton's model label is copied into model_name, JetStream's percent made a fraction.
    kv = _preset("custom", "llm_kv_cache_utilization").query
    assert '"model_name", "$1", "model", "(.+)"' in kv
    assert "avg by (pod, id, model_name) (kv_cache_utilization_perc) / 100" in kv


def test_latency_buckets_are_summed_per_engine_only() -> None:
    query = _preset("external", "llm_time_per_output_token_p95_seconds").query
    # one histogram_quantile per engine, each summing only its own (renamed) bucket series
    assert query.count("histogram_quantile(0.95, sum by (le) (rate(") == 6
    assert (
        "sum by (le) (rate(vllm:inter_token_latency_seconds_bucket[2m])"
        " or rate(vllm_inter_token_latency_seconds_bucket[2m])"
        " or rate(vllm:time_per_output_token_seconds_bucket[2m])"
        " or rate(vllm_time_per_output_token_seconds_bucket[2m]))"
    ) in query
    for engine in ("vllm", "sglang", "tgi", "trtllm-serve", "nim", "jetstream"):
        assert f'"llm_server", "{engine}", "", "")' in query


def test_engine_names_with_a_colon_are_valid_api_metric_names() -> None:
    from adapter.core.request import valid_metric_name

    names = {r.name for r in preset_rules()}
    assert {n for n in names if ":" in n} == {
        "vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc", "sglang:num_queue_reqs", "sglang:num_running_reqs",
        "sglang:token_usage",
    }  # fmt: skip
    assert all(valid_metric_name(n) for n in names)
