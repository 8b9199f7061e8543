"""The built-in presets: exact queries after scope injection, and what they serve."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapter import promql
from adapter.domain.errors import BadRequestError
from adapter.domain.models import GroupResource, Requirement
from adapter.rules import MetricRequest, Scope, load_rules
from adapter.rules.loader import preset_rules

SCOPE = Scope(cluster="C")
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
    built = rule.build_query(rule.static_metrics()[0], REQUEST, Scope())
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
    assert len(ids) == len(set(ids)) == 13
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
        built = rule.build_query(metric, MetricRequest(namespace=namespace), Scope(cluster=cluster))
        infos = promql.selectors(built.query)
        assert infos
        for info in infos:
            pinned = {(m.label, m.value) for m in info.matchers if m.op == "="}
            assert (rule.namespace_label, namespace) in pinned
            if cluster is not None:
                assert ("cluster", cluster) in pinned
