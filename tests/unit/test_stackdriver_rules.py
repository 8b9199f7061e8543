"""Stackdriver-style names: parsing, Cloud Monitoring request specs, PromQL translation, scoping."""

from __future__ import annotations

import json

import pytest

from adapter.core.selectors import parse_selector
from adapter.domain.errors import BadRequestError, ConfigError, ForbiddenError
from adapter.domain.models import GroupResource
from adapter.rules.base import MetricRequest, QueryScope
from adapter.rules.loader import load_rules
from adapter.rules.stackdriver import (
    StackdriverOptions,
    parse_name,
    resolve_mode,
    stackdriver_rules,
)

PODS = GroupResource("pods")
CM = StackdriverOptions(mode="cloud-monitoring", project="p1", location="us-east5")
PQ = StackdriverOptions(mode="promql")
SCOPE = QueryScope(cluster="c1")


def rules(opts: StackdriverOptions) -> tuple:  # type: ignore[type-arg]
    loaded = load_rules(None, stackdriver=opts)
    return tuple(r for r in loaded.rules if r.id.startswith("stackdriver:"))


def build(opts: StackdriverOptions, kind: str, name: str, ns: str | None = "default", **kw):  # type: ignore[no-untyped-def]
    for rule in rules(opts):
        served = rule.resolve(kind, PODS if kind == "custom" else None, name)
        if served is not None:
            return served, rule.build_query(served, MetricRequest(namespace=ns, **kw), SCOPE)
    raise AssertionError(f"{name} not served")


def test_parse_names() -> None:
    p = parse_name("prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge")
    assert p is not None
    assert p.metric_type == "prometheus.googleapis.com/jetstream_prefill_backlog_size/gauge"
    assert p.counter is False
    n = parse_name("kubernetes.io|node|accelerator|memory_used")
    assert n is not None
    assert n.series == "kubernetes_io:node_accelerator_memory_used"
    assert n.resource == "node"
    for bad in (
        "prometheus.googleapis.com|a b|gauge",
        "prometheus.googleapis.com|x|histogram",
        "prometheus.googleapis.com|x",
        "kubernetes.io|cluster|x",
        'kubernetes.io|node|X"',
        "jetstream_prefill_backlog_size",
    ):
        assert parse_name(bad) is None


def test_modes() -> None:
    assert resolve_mode("auto", None) == "promql"
    assert resolve_mode("auto", "p") == "cloud-monitoring"
    with pytest.raises(ConfigError):
        resolve_mode("cloud-monitoring", None)
    with pytest.raises(ConfigError):
        resolve_mode("bogus", "p")
    assert stackdriver_rules(StackdriverOptions(mode="off")) == ()
    assert all(r.backend == "cloud-monitoring" for r in rules(CM))
    assert all(r.backend == "promql" for r in rules(PQ))


def test_family_names_are_not_listed_but_resolved() -> None:
    for rule in rules(PQ):
        assert rule.static_metrics() == []
        assert rule.discovery_selectors() == []
    node = [r for r in rules(CM) if r.resolve("external", None, "kubernetes.io|node|cpu|x")]
    assert len(node) == 1
    assert node[0].namespace_label is None  # explicitly cluster-scoped
    assert "cluster-scoped" in node[0].describe()


def test_cm_pods_spec_chunks_and_quotes() -> None:
    pods = tuple(f"pod-{i:03d}" for i in range(250))
    _, built = build(
        CM,
        "custom",
        "prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge",
        object_names=pods,
    )
    spec = json.loads(built.query)
    assert built.query == json.dumps(spec, sort_keys=True, separators=(",", ":"))
    assert len(spec["filters"]) == 3
    first = spec["filters"][0]
    for clause in (
        'metric.type = "prometheus.googleapis.com/jetstream_prefill_backlog_size/gauge"',
        'resource.type = "prometheus_target"',
        'resource.labels.project_id = "p1"',
        'resource.labels.location = "us-east5"',
        'resource.labels.cluster = "c1"',
        'resource.labels.namespace = "default"',
        'metric.labels.pod = one_of("pod-000",',
    ):
        assert clause in first
    assert spec["aligner"] == "ALIGN_NEXT_OLDER"
    assert spec["combine"] == "pods"
    assert built.object_labels == ("pod",)


def test_cm_standalone_pods_has_no_pod_filter() -> None:
    _, built = build(CM, "custom", "prometheus.googleapis.com|x|counter")
    spec = json.loads(built.query)
    assert "metric.labels.pod" not in spec["filters"][0]
    assert spec["aligner"] == "ALIGN_RATE"
    assert spec["alignmentPeriod"] == 60


def test_cm_external_exported_namespace_pin() -> None:
    name = "prometheus.googleapis.com|memory_used|gauge"
    sel = parse_selector(
        "metric.labels.container=jetstream-http,metric.labels.exported_namespace=default"
    )
    _, built = build(CM, "external", name, metric_selector=sel)
    f = json.loads(built.query)["filters"][0]
    assert "resource.labels.namespace" not in f
    assert 'metric.labels.exported_namespace = "default"' in f
    with pytest.raises(ForbiddenError):
        build(CM, "external", name, ns="team-a", metric_selector=sel)
    with pytest.raises(ForbiddenError):
        build(CM, "external", name, metric_selector=parse_selector("resource.labels.namespace=x"))
    with pytest.raises(ForbiddenError):
        build(
            CM,
            "external",
            name,
            metric_selector=parse_selector("metric.labels.exported_namespace in (default,x)"),
        )
    _, plain = build(CM, "external", name)
    assert 'resource.labels.namespace = "default"' in json.loads(plain.query)["filters"][0]


def test_cm_project_switch_and_reducer() -> None:
    _, built = build(
        CM,
        "external",
        "prometheus.googleapis.com|x|gauge",
        metric_selector=parse_selector("resource.labels.project_id=other,reducer=REDUCE_SUM"),
    )
    spec = json.loads(built.query)
    assert spec["project"] == "other"
    assert spec["reducer"] == "REDUCE_SUM"
    assert 'resource.labels.project_id = "other"' in spec["filters"][0]
    assert 'resource.labels.project_id = "p1"' not in spec["filters"][0]


def test_cm_node_metric_is_cluster_scoped() -> None:
    _, built = build(CM, "external", "kubernetes.io|node|accelerator|memory_used")
    spec = json.loads(built.query)
    f = spec["filters"][0]
    assert 'resource.type = "k8s_node"' in f
    assert 'resource.labels.cluster_name = "c1"' in f
    assert "namespace" not in f
    assert spec["aligner"] is None


def test_promql_pods_use_the_preset_query() -> None:
    _, slots = build(
        PQ, "custom", "prometheus.googleapis.com|jetstream_slots_used_percentage|gauge"
    )
    assert slots.query.startswith("avg by (pod, id) (jetstream_slots_used_percentage{")
    assert 'namespace="default"' in slots.query and 'cluster="c1"' in slots.query
    _, other = build(PQ, "custom", "prometheus.googleapis.com|foo|gauge")
    assert other.query == 'sum by (pod, id) (foo{cluster="c1",namespace="default"})'
    _, counter = build(PQ, "external", "prometheus.googleapis.com|foo_total|counter")
    assert counter.query == 'rate(foo_total{cluster="c1",namespace="default"}[120s])'


def test_promql_external_selector_mapping() -> None:
    name = "prometheus.googleapis.com|memory_used|gauge"
    sel = parse_selector(
        "metric.labels.container=jetstream-http,metric.labels.exported_namespace=default"
    )
    _, built = build(PQ, "external", name, metric_selector=sel)
    assert built.query == (
        'memory_used{cluster="c1",container="jetstream-http",exported_namespace="default"}'
    )
    for bad in ("resource.labels.zone=x", "reducer=REDUCE_MEAN", "metric.labels.n>3"):
        with pytest.raises(BadRequestError):
            build(PQ, "external", name, metric_selector=parse_selector(bad))
    with pytest.raises(ForbiddenError):
        build(PQ, "external", name, metric_selector=parse_selector("resource.labels.cluster=c2"))


def test_promql_node_metric() -> None:
    _, built = build(PQ, "external", "kubernetes.io|node|accelerator|memory_used")
    assert built.query == (
        'kubernetes_io:node_accelerator_memory_used{monitored_resource="k8s_node",'
        'cluster_name="c1"}'
    )
