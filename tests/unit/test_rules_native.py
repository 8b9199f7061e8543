"""Native rules: strict validation with errors naming file, rule and field; built queries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.domain.errors import BadRequestError, QueryError, RuleError
from adapter.domain.models import GroupResource, Requirement
from adapter.rules import MetricRequest, QueryScope, load_rules, load_rules_text
from adapter.rules.native import NativeRule

FIXTURES = Path(__file__).parent / "fixtures" / "rules"


def _one(entry: dict[str, Any]) -> str:
    return yaml.safe_dump({"metrics": [entry]})


BASE = {"name": "m", "type": "external", "query": "sum(x)"}

# (entry, field named in the error, words the message must contain)
INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({**BASE, "colour": "red"}, "colour", "Extra inputs"),
    ({**BASE, "namespace_label": "ns"}, "namespace_label", "Extra inputs"),
    ({k: v for k, v in BASE.items() if k != "query"}, "query", "required"),
    ({k: v for k, v in BASE.items() if k != "type"}, "type", "required"),
    ({**BASE, "type": "Pods"}, "type", "external"),
    ({**BASE, "name": "bad/name"}, "name", "not a valid metric name"),
    ({**BASE, "name": ""}, "name", "at least 1"),
    ({**BASE, "query": "sum(x"}, "query", ""),
    ({**BASE, "query": "vector(1)"}, "query", "selects no series"),
    ({**BASE, "window": 0}, "window", "greater than 0"),
    ({**BASE, "window": "60"}, "window", "integer"),
    ({**BASE, "clusterScoped": "yes"}, "clusterScoped", "boolean"),
    ({**BASE, "namespaceLabel": "name-space"}, "namespaceLabel", "not a valid label name"),
    ({**BASE, "resource": "deployments.apps"}, "resource", "only object metrics"),
    ({**BASE, "objectLabels": ["pod"]}, "objectLabels", "describe no object"),
    ({**BASE, "type": "pods", "clusterScoped": True}, "clusterScoped", "external metrics"),
    ({**BASE, "type": "pods", "resource": "nodes"}, "resource", "type object"),
    ({**BASE, "type": "pods", "objectLabels": []}, "objectLabels", "at least 1"),
    ({**BASE, "type": "pods", "objectLabels": ["a b"]}, "objectLabels", "not a valid label"),
    ({**BASE, "type": "object"}, "resource", "must name a resource"),
    ({**BASE, "type": "object", "resource": "widgets"}, "resource", "unknown resource"),
    (
        {**BASE, "type": "object", "resource": "widgets.example.com"},
        "objectLabels",
        "list objectLabels",
    ),
]


@pytest.mark.parametrize(("entry", "field", "words"), INVALID)
def test_invalid_entry_names_file_rule_and_field(
    entry: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises(RuleError) as info:
        load_rules_text(_one(entry), filename="my-rules.yaml")
    err = info.value
    assert err.file == "my-rules.yaml"
    assert err.rule.startswith("metrics[0]")
    assert err.field == field
    assert "file my-rules.yaml" in str(err)
    assert f"field {field}" in str(err)
    assert words in str(err)


def test_rule_is_named_with_its_index_and_name() -> None:
    text = yaml.safe_dump({"metrics": [BASE, {**BASE, "name": "second", "bogus": 1}]})
    with pytest.raises(RuleError) as info:
        load_rules_text(text, filename="f.yaml")
    assert info.value.rule == "metrics[1] (second)"


def test_entry_must_be_a_mapping() -> None:
    with pytest.raises(RuleError, match=r"rule metrics\[0\]: each metric must be a mapping"):
        load_rules_text("metrics: [42]", filename="f.yaml")


def test_unknown_top_level_key_fails() -> None:
    with pytest.raises(RuleError, match="unknown top-level keys"):
        load_rules_text("metrics: []\nextra: 1\n", filename="f.yaml")


def test_duplicate_metric_fails() -> None:
    text = yaml.safe_dump({"metrics": [BASE, {**BASE, "query": "max(y)"}]})
    with pytest.raises(RuleError, match=r"serves the same metric as f\.yaml#metrics\[0\]") as info:
        load_rules_text(text, filename="f.yaml")
    assert info.value.field == "name"


def test_same_name_different_kind_is_fine() -> None:
    text = yaml.safe_dump({"metrics": [BASE, {**BASE, "type": "pods"}]})
    assert len(load_rules_text(text, presets=False).rules) == 2


def _rules() -> dict[str, NativeRule]:
    loaded = load_rules(FIXTURES / "native.yaml", presets=False)
    out: dict[str, NativeRule] = {}
    for rule in loaded.rules:
        assert isinstance(rule, NativeRule)
        out[rule.name] = rule
    return out


def test_fixture_loads_as_native_with_ids() -> None:
    loaded = load_rules(FIXTURES / "native.yaml", presets=False)
    assert loaded.format == "native"
    assert loaded.rules[0].id == "native.yaml#metrics[0]"
    assert all(r.source == "native" for r in loaded.rules)


SCOPE = QueryScope(cluster="prod")

BUILT = [
    (
        "prefill_backlog",
        MetricRequest(namespace="serving"),
        'sum(jetstream_prefill_backlog_size{cluster="prod",namespace="serving"})',
        (),
        None,
    ),
    (
        "queue_per_pod",
        MetricRequest(namespace="serving", object_names=("a", "b")),
        'sum by (pod) (num_requests_waiting{cluster="prod",namespace="serving"})',
        ("pod",),
        60,
    ),
    (
        "backlog_by_deployment",
        MetricRequest(namespace="serving", object_names=("web",)),
        'sum by (deployment) (label_replace(jetstream_prefill_backlog_size{cluster="prod",'
        'namespace="serving"}, "deployment", "$1", "pod", "(.*)-[^-]+-[^-]+"))',
        ("deployment",),
        None,
    ),
    (
        "tpu_duty_cycle",
        MetricRequest(namespace=None, object_names=("node-1",)),
        'avg by (node) (duty_cycle_node{cluster="prod"})',
        ("node",),
        None,
    ),
    (
        "namespace_backlog",
        MetricRequest(namespace="serving", object_names=("serving",)),
        'sum by (namespace) (jetstream_prefill_backlog_size{cluster="prod",namespace="serving"})',
        ("namespace",),
        None,
    ),
    (
        "all_backlog",
        MetricRequest(namespace="serving"),
        'sum(jetstream_prefill_backlog_size{cluster="prod"})',
        (),
        None,
    ),
]


@pytest.mark.parametrize(("name", "request_", "query", "labels", "window"), BUILT)
def test_built_query(
    name: str,
    request_: MetricRequest,
    query: str,
    labels: tuple[str, ...],
    window: int | None,
) -> None:
    rule = _rules()[name]
    built = rule.build_query(rule.static_metrics()[0], request_, SCOPE)
    assert built.query == query
    assert built.object_labels == labels
    assert built.window == window


def test_served_metrics_carry_resource_and_scope() -> None:
    rules = _rules()
    served = {name: rule.static_metrics()[0] for name, rule in rules.items()}
    assert served["queue_per_pod"].resource == GroupResource("pods")
    assert served["backlog_by_deployment"].resource == GroupResource("deployments", "apps")
    assert served["backlog_by_deployment"].namespaced is True
    assert served["tpu_duty_cycle"].resource == GroupResource("nodes")
    assert served["tpu_duty_cycle"].namespaced is False
    assert served["namespace_backlog"].resource == GroupResource("namespaces")
    assert served["namespace_backlog"].namespaced is False
    assert served["all_backlog"].namespaced is False
    assert served["prefill_backlog"].namespaced is True
    assert rules["all_backlog"].namespace_label is None
    assert rules["tpu_duty_cycle"].namespace_label is None
    assert rules["prefill_backlog"].namespace_label == "namespace"


def test_selector_matchers_go_into_every_selector() -> None:
    text = _one({**BASE, "query": "sum(a) / sum(b)"})
    rule = load_rules_text(text, presets=False).rules[0]
    request = MetricRequest(
        namespace="ns", metric_selector=(Requirement("model", "in", ("x", "y")),)
    )
    built = rule.build_query(rule.static_metrics()[0], request, QueryScope())
    assert (
        built.query == 'sum(a{namespace="ns",model=~"x|y"}) / sum(b{namespace="ns",model=~"x|y"})'
    )
    assert built.injected == ('namespace="ns"',)


def test_gt_selector_is_a_bad_request() -> None:
    rule = load_rules_text(_one(BASE), presets=False).rules[0]
    request = MetricRequest(namespace="ns", metric_selector=(Requirement("n", "gt", ("3",)),))
    with pytest.raises(BadRequestError):
        rule.build_query(rule.static_metrics()[0], request, QueryScope())


def test_namespaced_metric_without_namespace_is_a_bad_request() -> None:
    rule = load_rules_text(_one(BASE), presets=False).rules[0]
    with pytest.raises(BadRequestError, match="namespaced"):
        rule.build_query(rule.static_metrics()[0], MetricRequest(namespace=None), QueryScope())


def test_custom_namespace_label() -> None:
    text = _one({**BASE, "namespaceLabel": "exported_namespace", "query": "sum(memory_used)"})
    rule = load_rules_text(text, presets=False).rules[0]
    built = rule.build_query(rule.static_metrics()[0], MetricRequest(namespace="a"), QueryScope())
    assert built.query == 'sum(memory_used{exported_namespace="a"})'


def test_query_pinning_the_namespace_warns_and_contradicts_elsewhere() -> None:
    text = _one({**BASE, "query": 'sum(x{namespace="team-a"})'})
    loaded = load_rules_text(text, filename="r.yaml", presets=False)
    assert any("r.yaml#metrics[0]" in w and "pins namespace" in w for w in loaded.warnings)
    rule = loaded.rules[0]
    metric = rule.static_metrics()[0]
    same = rule.build_query(metric, MetricRequest(namespace="team-a"), QueryScope())
    assert same.query == 'sum(x{namespace="team-a"})'
    with pytest.raises(QueryError):
        rule.build_query(metric, MetricRequest(namespace="team-b"), QueryScope())


def test_external_average_warns_with_rule_id() -> None:
    text = _one({**BASE, "query": "avg(x)"})
    loaded = load_rules_text(text, filename="r.yaml", presets=False)
    assert loaded.warnings == (
        "r.yaml#metrics[0]: the HPA sums external metric values; an average makes replicas "
        "independent of per-pod load",
    )


def test_pods_average_does_not_warn() -> None:
    text = _one({**BASE, "type": "pods", "query": "avg by (pod) (x)"})
    assert load_rules_text(text, presets=False).warnings == ()


def test_describe_names_query_label_and_example() -> None:
    text = _one({**BASE, "clusterScoped": True})
    rule = load_rules_text(text, filename="r.yaml", presets=False).rules[0]
    text = rule.describe()
    assert "r.yaml#metrics[0]" in text
    assert "query sum(x)" in text
    assert "namespace label: cluster-scoped" in text
    assert 'sum(x{cluster="CLUSTER"})' in text


def test_a_metric_selector_contradicting_the_scope_names_each_side_rightly() -> None:
    # The query carries the request's namespace; the client's selector asks for another one.
    rule = load_rules_text(_one(BASE), presets=False).rules[0]
    request = MetricRequest(
        namespace="ns", metric_selector=(Requirement("namespace", "=", ("other",)),)
    )
    with pytest.raises(BadRequestError) as info:
        rule.build_query(rule.static_metrics()[0], request, QueryScope())
    assert 'has namespace="ns", which contradicts the metric selector namespace="other"' in (
        info.value.message
    )
