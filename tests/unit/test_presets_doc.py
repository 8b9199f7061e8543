"""docs/presets.md cannot drift from the presets: its tables and queries are generated here.

Each engine's section of the doc holds a block between ``<!-- presets:<id> -->`` and
``<!-- /presets:<id> -->``, rendered from :data:`SECTIONS` (what the preset format cannot say:
the source metric, unit, per-pod aggregation and vocabulary name) and from the compiled presets
themselves (which APIs serve the name, and the exact query after scope injection for cluster
``C`` and namespace ``NS``). Every preset must appear in a section.

After changing a preset, rewrite the blocks with::

    PYTHONPATH=. python -m tests.unit.test_presets_doc
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from adapter.rules import MetricRequest, QueryScope
from adapter.rules.loader import preset_rules
from adapter.rules.native import NativeRule

DOC = Path(__file__).resolve().parents[2] / "docs" / "presets.md"


@dataclass(frozen=True)
class Row:
    """One source metric: ``served`` is the preset name serving it (``None``: read only
    through the vocabulary)."""

    served: str | None
    reads: str
    unit: str
    per_pod: str
    vocabulary: str = "—"


SECTIONS: dict[str, tuple[str, list[Row]]] = {
    "vllm": (
        "vLLM",
        [
            Row(
                "vllm:num_requests_waiting",
                "`vllm:num_requests_waiting`",
                "requests",
                "sum over `engine`",
                "`llm_requests_waiting`",
            ),
            Row(
                "vllm:num_requests_running",
                "`vllm:num_requests_running`",
                "requests",
                "sum over `engine`",
                "`llm_requests_running`",
            ),
            Row(
                "vllm:kv_cache_usage_perc",
                "`vllm:kv_cache_usage_perc`",
                "fraction 0–1",
                "mean over `engine`",
                "`llm_kv_cache_utilization`",
            ),
            Row(
                "vllm:gpu_cache_usage_perc",
                "`vllm:gpu_cache_usage_perc` (the name before "
                "0.9; the vocabulary reads it when the new one is absent)",
                "fraction 0–1",
                "mean over `engine`",
                "`llm_kv_cache_utilization`",
            ),
            Row(
                None,
                "`vllm:time_to_first_token_seconds` (histogram)",
                "seconds",
                "—",
                "`llm_time_to_first_token_p95_seconds`",
            ),
            Row(
                None,
                "`vllm:inter_token_latency_seconds`, formerly "
                "`vllm:time_per_output_token_seconds` (histograms; a transition release "
                "exports both with the same data: read once)",
                "seconds",
                "—",
                "`llm_time_per_output_token_p95_seconds`",
            ),
        ],
    ),
    "sglang": (
        "SGLang",
        [
            Row(
                "sglang:num_queue_reqs",
                "`sglang:num_queue_reqs`",
                "requests",
                "max over `tp_rank`/`pp_rank`, sum over `dp_rank`",
                "`llm_requests_waiting`",
            ),
            Row(
                "sglang:num_running_reqs",
                "`sglang:num_running_reqs`",
                "requests",
                "max over `tp_rank`/`pp_rank`, sum over `dp_rank`",
                "`llm_requests_running`",
            ),
            Row(
                "sglang:token_usage",
                "`sglang:token_usage`",
                "fraction 0–1",
                "max over `tp_rank`/`pp_rank`, mean over `dp_rank`",
                "`llm_kv_cache_utilization`",
            ),
            Row(
                None,
                "`sglang:time_to_first_token_seconds` (histogram)",
                "seconds",
                "—",
                "`llm_time_to_first_token_p95_seconds`",
            ),
            Row(
                None,
                "`sglang:inter_token_latency_seconds`, formerly "
                "`sglang:time_per_output_token_seconds` (histograms)",
                "seconds",
                "—",
                "`llm_time_per_output_token_p95_seconds`",
            ),
        ],
    ),
    "tgi": (
        "Text Generation Inference",
        [
            Row(
                "tgi_queue_size",
                "`tgi_queue_size`",
                "requests",
                "the router's value",
                "`llm_requests_waiting`",
            ),
            Row(
                "tgi_batch_current_size",
                "`tgi_batch_current_size`",
                "requests",
                "the router's value",
                "`llm_requests_running`",
            ),
            Row(
                None,
                "`tgi_request_mean_time_per_token_duration` (histogram of each "
                "request's mean time per token)",
                "seconds",
                "—",
                "`llm_time_per_output_token_p95_seconds`",
            ),
        ],
    ),
    "tensorrt-llm": (
        "TensorRT-LLM (Triton backend and trtllm-serve)",
        [
            Row(
                "nv_trt_llm_request_metrics",
                "`nv_trt_llm_request_metrics{request_type}`",
                "requests",
                "sum; answers only when the selector picks one `request_type`",
                "`waiting`: `llm_requests_waiting`, `scheduled`: `llm_requests_running`",
            ),
            Row(
                "nv_trt_llm_kv_cache_block_metrics",
                "`nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type}`",
                "blocks; `fraction` 0–1",
                "sum; answers only when the selector picks one type",
                "`fraction` (else `used` / `max`): `llm_kv_cache_utilization`",
            ),
            Row(
                "trtllm_num_requests_waiting",
                "`trtllm_num_requests_waiting`",
                "requests",
                "the server's value",
                "`llm_requests_waiting`",
            ),
            Row(
                "trtllm_num_requests_running",
                "`trtllm_num_requests_running`",
                "requests",
                "the server's value",
                "`llm_requests_running`",
            ),
            Row(
                "trtllm_kv_cache_utilization",
                "`trtllm_kv_cache_utilization`",
                "fraction 0–1",
                "mean",
                "`llm_kv_cache_utilization`",
            ),
            Row(
                None,
                "`trtllm_time_to_first_token_seconds`, "
                "`trtllm_time_per_output_token_seconds` (histograms)",
                "seconds",
                "—",
                "`llm_time_to_first_token_p95_seconds`, `llm_time_per_output_token_p95_seconds`",
            ),
        ],
    ),
    "nim": (
        "NVIDIA NIM for LLMs",
        [
            Row(
                "num_requests_waiting",
                "`num_requests_waiting` (JetStream exports the same name)",
                "requests",
                "sum",
                "`llm_requests_waiting`",
            ),
            Row(
                "num_requests_running",
                "`num_requests_running`",
                "requests",
                "sum",
                "`llm_requests_running`",
            ),
            Row(
                "gpu_cache_usage_perc",
                "`gpu_cache_usage_perc`",
                "fraction 0–1",
                "mean",
                "`llm_kv_cache_utilization`",
            ),
            Row(
                None,
                "`time_to_first_token_seconds`, `time_per_output_token_seconds` (histograms)",
                "seconds",
                "—",
                "`llm_time_to_first_token_p95_seconds`, `llm_time_per_output_token_p95_seconds`",
            ),
        ],
    ),
    "jetstream": (
        "JetStream",
        [
            Row(
                "jetstream_prefill_backlog_size",
                "`jetstream_prefill_backlog_size`",
                "requests",
                "sum",
                "—",
            ),
            Row(
                "jetstream_slots_used_percentage",
                "`jetstream_slots_used_percentage{idx}`",
                "fraction 0–1 (despite its name)",
                "mean over `idx`",
                "—",
            ),
            Row(
                "jetstream_transfer_backlog_size",
                "`jetstream_transfer_backlog_size{idx}`",
                "requests",
                "sum over `idx`",
                "—",
            ),
            Row(
                "jetstream_generate_backlog_size",
                "`jetstream_generate_backlog_size{idx}`",
                "requests",
                "sum over `idx`",
                "—",
            ),
            Row(
                "num_requests_waiting",
                "`num_requests_waiting` (prefill + transfer + generate backlogs)",
                "requests",
                "sum",
                "`llm_requests_waiting`",
            ),
            Row(
                "kv_cache_utilization_perc",
                "`kv_cache_utilization_perc`",
                "percent 0–100 (used decode slots)",
                "mean",
                "`llm_kv_cache_utilization` (÷ 100)",
            ),
            Row(
                None,
                "`jetstream_time_to_first_token`, `jetstream_time_per_output_token` (histograms)",
                "seconds",
                "—",
                "`llm_time_to_first_token_p95_seconds`, `llm_time_per_output_token_p95_seconds`",
            ),
        ],
    ),
    "vocabulary": (
        "The vocabulary",
        [
            Row(
                "llm_requests_waiting",
                "the engines' queue gauges above",
                "requests",
                "each engine's rule (its section), then the sum over the pod",
            ),
            Row(
                "llm_requests_running",
                "the engines' running/batch gauges above",
                "requests",
                "sum over the pod's engines",
            ),
            Row(
                "llm_kv_cache_utilization",
                "the engines' KV-cache gauges above",
                "fraction 0–1",
                "mean over the pod's engines",
            ),
            Row(
                "llm_time_to_first_token_p95_seconds",
                "the engines' TTFT histograms",
                "seconds",
                "external only: the namespace's p95 over 2 minutes",
            ),
            Row(
                "llm_time_per_output_token_p95_seconds",
                "the engines' per-token histograms",
                "seconds",
                "external only: the namespace's p95 over 2 minutes",
            ),
        ],
    ),
    "tpu": (
        "TPU device plugin",
        [
            Row(
                "memory_used_percentage",
                "`memory_used` / `memory_total` (bytes)",
                "fraction 0–1",
                "used / total over the pod's chips",
            ),
            Row("tpu_duty_cycle", "`duty_cycle`", "percent", "mean over the pod's chips"),
            Row(
                "tpu_tensorcore_utilization",
                "`tensorcore_utilization`",
                "percent",
                "mean over the pod's chips",
            ),
        ],
    ),
    "dcgm": (
        "NVIDIA dcgm-exporter",
        [
            Row(
                "DCGM_FI_DEV_GPU_UTIL",
                "`DCGM_FI_DEV_GPU_UTIL`",
                "percent",
                "mean over the pod's GPUs",
            ),
            Row("DCGM_FI_DEV_FB_USED", "`DCGM_FI_DEV_FB_USED`", "MiB", "sum over the pod's GPUs"),
            Row(
                "gpu_memory_used_percentage",
                "`DCGM_FI_DEV_FB_USED` / (`…FB_USED` + `…FB_FREE`)",
                "fraction 0–1",
                "used / total over the pod's GPUs",
            ),
        ],
    ),
}

SCOPE = QueryScope(cluster="C")
REQUEST = MetricRequest(namespace="NS")


def _rules() -> dict[tuple[str, str], NativeRule]:
    return {(r.kind, r.name): r for r in preset_rules()}


def _break_unions(query: str) -> str:
    """The query with a line break before each ``or`` directly inside its outermost call or
    aggregation (one engine per line); PromQL ignores the whitespace."""
    if len(query) < 160:
        return query
    out: list[str] = []
    depth = 0
    i = 0
    while i < len(query):
        ch = query[i]
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "{" or ch == '"':
            end = query.index("}" if ch == "{" else '"', i + 1)
            out.append(query[i : end + 1])
            i = end + 1
            continue
        if depth == 1 and query.startswith(" or ", i):
            out.append("\n  or ")
            i += 4
            continue
        out.append(ch)
        i += 1
    return "".join(out)


def render(section: str) -> str:
    """The generated block of one section (without its markers)."""
    _, rows = SECTIONS[section]
    rules = _rules()
    lines = [
        "| served as | reads | unit | one pod's value | vocabulary |",
        "|---|---|---|---|---|",
    ]
    queries: list[str] = []
    for row in rows:
        if row.served is None:
            served = "—"
        else:
            apis = [
                api
                for kind, api in (("custom", "pods"), ("external", "external"))
                if (kind, row.served) in rules
            ]
            assert apis, f"{row.served} is not a preset"
            served = f"`{row.served}` ({', '.join(apis)})"
            for kind, api in (("custom", "pods"), ("external", "external")):
                rule = rules.get((kind, row.served))
                if rule is not None:
                    built = rule.build_query(rule.static_metrics()[0], REQUEST, SCOPE)
                    queries.append(f"# {api}: {row.served}\n{_break_unions(built.query)}")
        lines.append(f"| {served} | {row.reads} | {row.unit} | {row.per_pod} | {row.vocabulary} |")
    block = "\n".join(lines)
    if queries:
        block += (
            "\n\nThe queries, for cluster `C` and namespace `NS` after scope injection:\n\n```promql\n"
            + "\n\n".join(queries)
            + "\n```"
        )
    return block


_BLOCK = re.compile(
    r"(<!-- presets:(?P<id>[a-z-]+) -->\n)(?P<body>.*?)(\n<!-- /presets:(?P=id) -->)", re.S
)


def rewrite(text: str) -> str:
    """``text`` with every generated block rendered afresh."""
    return _BLOCK.sub(lambda m: m.group(1) + render(m.group("id")) + m.group(4), text)


def test_every_preset_is_documented() -> None:
    # A name two engines share (num_requests_waiting: NIM and JetStream) is in both sections.
    documented = {row.served for _, rows in SECTIONS.values() for row in rows if row.served}
    assert documented == {name for _, name in _rules()}


def test_every_section_is_in_the_doc_and_up_to_date() -> None:
    text = DOC.read_text()
    found = {m.group("id") for m in _BLOCK.finditer(text)}
    assert found == set(SECTIONS)
    assert rewrite(text) == text, (
        "docs/presets.md is out of date: run `PYTHONPATH=. python -m tests.unit.test_presets_doc`"
    )


def test_the_doc_names_the_releases_read() -> None:
    text = DOC.read_text()
    for source in (
        "vllm/v1/metrics/loggers.py",
        "python/sglang/srt/metrics/collector.py",
        "docs/source/reference/metrics.md",
        "custom_metrics_reporter.cc",
        "tensorrt_llm/metrics/collector.py",
        "jetstream/core/metrics/prometheus.py",
        "internal/pkg/transformation/const.go",
    ):
        assert source in text, source


if __name__ == "__main__":
    DOC.write_text(rewrite(DOC.read_text()))
    sys.exit(0)
