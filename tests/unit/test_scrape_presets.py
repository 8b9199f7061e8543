"""The JetStream and TPU presets the scrape tests serve come from the presets' own grouping
(docs/presets.md's per-server blocks), not from a name prefix."""

from __future__ import annotations

from tests.support.presets import jetstream_and_tpu_paths, preset_group, served_hpa_metrics


def test_every_jetstream_preset_is_covered_in_both_forms_including_unprefixed_names() -> None:
    paths = jetstream_and_tpu_paths("ns")
    for name in ("num_requests_waiting", "kv_cache_utilization_perc", "memory_used_percentage"):
        assert f"/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/{name}" in paths
        assert f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/{name}" in paths
    assert len(paths) == len(set(paths)) == len(preset_group("jetstream") | preset_group("tpu"))


def test_the_groups_are_served_presets_and_other_servers_are_left_out() -> None:
    jetstream, tpu = preset_group("jetstream"), preset_group("tpu")
    assert len(jetstream) >= 12 and len(tpu) >= 5
    assert jetstream | tpu <= served_hpa_metrics()
    assert ("Pods", "vllm:num_requests_waiting") in preset_group("vllm")
    assert not any(name.startswith("vllm:") for _, name in jetstream | tpu)
