"""prometheus-adapter rules: discovery, naming, templating and scoping, as prometheus-adapter does."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.domain.errors import BadRequestError, NotFoundError, QueryError, RuleError
from adapter.domain.models import GroupResource, Requirement
from adapter.domain.resources import ResourceInfo, ResourceTable
from adapter.rules import MetricRequest, QueryScope, ServedMetric, load_rules, load_rules_text
from adapter.rules.prometheus_adapter import PrometheusAdapterRule, go_expand
from tests.support.cheese import override_rule, template_rule

FIXTURES = Path(__file__).parent / "fixtures" / "rules"
PODS = GroupResource("pods")
NAMESPACES = GroupResource("namespaces")
DEPLOYMENTS = GroupResource("deployments", "apps")


def _rules(name: str) -> dict[str, PrometheusAdapterRule]:
    loaded = load_rules(FIXTURES / name, presets=False)
    assert loaded.format == "prometheus-adapter"
    out: dict[str, PrometheusAdapterRule] = {}
    for rule in loaded.rules:
        assert isinstance(rule, PrometheusAdapterRule)
        out[rule.id.partition("#")[2]] = rule
    return out


def _served(rule: PrometheusAdapterRule, labels: dict[str, list[str]]) -> dict[Any, ServedMetric]:
    return {(m.name, m.resource): m for m in rule.discovered_metrics(labels)}


def _external(rule: PrometheusAdapterRule, series: str) -> ServedMetric:
    [metric] = rule.discovered_metrics({series: []})
    return metric


# ---------------------------------------------------------------- the seed's values.yaml


def test_seed_values_load_as_helm_chart_values() -> None:
    loaded = load_rules(FIXTURES / "seed-values.yaml")
    assert loaded.format == "prometheus-adapter"
    ids = [r.id for r in loaded.rules[:3]]
    assert ids == [f"seed-values.yaml#rules.external[{i}]" for i in range(3)]
    assert all(r.kind == "external" and r.source == "prometheus-adapter" for r in loaded.rules[:3])
    # The seed's three names shadow the presets of the same names; the others remain.
    assert len(loaded.rules) == 3 + len(load_rules(None).rules) - 3
    shadowed = [w for w in loaded.warnings if "shadowed" in w]
    assert sorted(w.split(":")[0] + ":" + w.split(":")[1] for w in shadowed) == [
        "preset:external/jetstream_prefill_backlog_size",
        "preset:external/jetstream_slots_used_percentage",
        "preset:external/memory_used_percentage",
    ]


def test_seed_values_warn_about_averages() -> None:
    loaded = load_rules(FIXTURES / "seed-values.yaml")
    averaging = [w for w in loaded.warnings if "the HPA sums external metric values" in w]
    assert [w.split(":")[0] for w in averaging] == [
        f"seed-values.yaml#rules.external[{i}]" for i in range(3)
    ]


SEED = [
    (
        "rules.external[0]",
        "jetstream_prefill_backlog_size",
        "jetstream_prefill_backlog_size",
        'avg(jetstream_prefill_backlog_size{namespace="default",cluster="CLUSTER_NAME"})',
    ),
    (
        "rules.external[1]",
        "jetstream_slots_used_percentage",
        "jetstream_slots_used_percentage",
        'avg(jetstream_slots_used_percentage{namespace="default",cluster="CLUSTER_NAME"})',
    ),
    (
        "rules.external[2]",
        "memory_used",
        "memory_used_percentage",
        'avg(memory_used{cluster="CLUSTER_NAME",exported_namespace="default",'
        'container="jetstream-http"}) / avg(memory_total{cluster="CLUSTER_NAME",'
        'exported_namespace="default",container="jetstream-http"})',
    ),
]


@pytest.mark.parametrize(("rule_id", "series", "name", "query"), SEED)
@pytest.mark.parametrize("cluster", [None, "CLUSTER_NAME"])
def test_seed_queries_for_namespace_default(
    rule_id: str, series: str, name: str, query: str, cluster: str | None
) -> None:
    rule = _rules("seed-values.yaml")[rule_id]
    assert rule.discovery_selectors() == [series]
    metric = _external(rule, series)
    assert (metric.name, metric.kind, metric.series, metric.namespaced) == (
        name,
        "external",
        series,
        True,
    )
    built = rule.build_query(
        metric, MetricRequest(namespace="default"), QueryScope(cluster=cluster)
    )
    assert built.query == query
    expected_injected = ('cluster="CLUSTER_NAME"',) if cluster else ()
    label = "exported_namespace" if series == "memory_used" else "namespace"
    assert built.injected == (*expected_injected, f'{label}="default"')


def test_seed_memory_rule_is_scoped_by_exported_namespace() -> None:
    rule = _rules("seed-values.yaml")["rules.external[2]"]
    assert rule.namespace_label == "exported_namespace"
    metric = _external(rule, "memory_used")
    # Another namespace must not read default's TPU memory.
    with pytest.raises(QueryError):
        rule.build_query(metric, MetricRequest(namespace="team-b"), QueryScope())


def test_seed_jetstream_rule_in_another_namespace_reads_that_namespace() -> None:
    rule = _rules("seed-values.yaml")["rules.external[0]"]
    metric = _external(rule, "jetstream_prefill_backlog_size")
    built = rule.build_query(metric, MetricRequest(namespace="team-b"), QueryScope())
    assert (
        built.query
        == 'avg(jetstream_prefill_backlog_size{namespace="team-b",cluster="CLUSTER_NAME"})'
    )


def test_seed_rule_in_another_cluster_is_refused() -> None:
    rule = _rules("seed-values.yaml")["rules.external[0]"]
    metric = _external(rule, "jetstream_prefill_backlog_size")
    with pytest.raises(QueryError):
        rule.build_query(metric, MetricRequest(namespace="default"), QueryScope(cluster="other"))


def test_seed_describe_resolves_labels_and_pinned_values() -> None:
    rules = _rules("seed-values.yaml")
    text = rules["rules.external[2]"].describe()
    assert "namespace label: exported_namespace" in text
    assert "in namespace default, cluster CLUSTER_NAME" in text
    text = rules["rules.external[0]"].describe()
    assert "namespace label: namespace" in text
    assert (
        'avg(jetstream_prefill_backlog_size{namespace="NAMESPACE",cluster="CLUSTER_NAME"})' in text
    )


# ---------------------------------------------------------------- the documented examples


def test_walkthrough_discovery_maps_resources_and_renames() -> None:
    rule = _rules("walkthrough.yaml")["rules[0]"]
    labels = {"http_requests_total": ["kubernetes_namespace", "kubernetes_pod_name", "method"]}
    served = _served(rule, labels)
    assert set(served) == {
        ("http_requests_per_second", PODS),
        ("http_requests_per_second", NAMESPACES),
    }
    assert served[("http_requests_per_second", PODS)].namespaced is True
    assert served[("http_requests_per_second", NAMESPACES)].namespaced is False
    assert all(m.series == "http_requests_total" and m.kind == "custom" for m in served.values())
    assert rule.namespace_label == "kubernetes_namespace"


def _pods_metric(rule: PrometheusAdapterRule) -> ServedMetric:
    labels = {"http_requests_total": ["kubernetes_namespace", "kubernetes_pod_name"]}
    return _served(rule, labels)[("http_requests_per_second", PODS)]


WALKTHROUGH_PODS = [
    (
        MetricRequest(namespace="somens", object_names=("pod1", "pod2")),
        QueryScope(),
        'sum(rate(http_requests_total{kubernetes_namespace="somens",'
        'kubernetes_pod_name=~"pod1|pod2"}[2m])) by (kubernetes_pod_name)',
    ),
    (
        MetricRequest(namespace="somens", object_names=("pod1",)),
        QueryScope(cluster="C"),
        'sum(rate(http_requests_total{kubernetes_namespace="somens",'
        'kubernetes_pod_name="pod1",cluster="C"}[2m])) by (kubernetes_pod_name)',
    ),
    (
        MetricRequest(namespace="somens", object_names=None),
        QueryScope(),
        'sum(rate(http_requests_total{kubernetes_namespace="somens"}[2m])) '
        "by (kubernetes_pod_name)",
    ),
    (
        MetricRequest(
            namespace="somens",
            object_names=("pod1",),
            metric_selector=(Requirement("method", "=", ("GET",)),),
        ),
        QueryScope(),
        'sum(rate(http_requests_total{method="GET",kubernetes_namespace="somens",'
        'kubernetes_pod_name="pod1"}[2m])) by (kubernetes_pod_name)',
    ),
    (
        MetricRequest(namespace="somens", object_names=("web.1", "web-2")),
        QueryScope(),
        'sum(rate(http_requests_total{kubernetes_namespace="somens",'
        'kubernetes_pod_name=~"web\\\\.1|web-2"}[2m])) by (kubernetes_pod_name)',
    ),
]


@pytest.mark.parametrize(("request_", "scope", "query"), WALKTHROUGH_PODS)
def test_walkthrough_pods_query(request_: MetricRequest, scope: QueryScope, query: str) -> None:
    rule = _rules("walkthrough.yaml")["rules[0]"]
    built = rule.build_query(_pods_metric(rule), request_, scope)
    assert built.query == query
    assert built.object_labels == ("kubernetes_pod_name",)


def test_walkthrough_namespace_metric() -> None:
    rule = _rules("walkthrough.yaml")["rules[0]"]
    labels = {"http_requests_total": ["kubernetes_namespace", "kubernetes_pod_name"]}
    metric = _served(rule, labels)[("http_requests_per_second", NAMESPACES)]
    request = MetricRequest(namespace="somens", object_names=("somens",))
    built = rule.build_query(metric, request, QueryScope())
    assert built.query == (
        'sum(rate(http_requests_total{kubernetes_namespace="somens"}[2m])) '
        "by (kubernetes_namespace)"
    )
    assert built.object_labels == ("kubernetes_namespace",)


def test_empty_object_list_is_not_found() -> None:
    rule = _rules("walkthrough.yaml")["rules[0]"]
    with pytest.raises(NotFoundError):
        rule.build_query(
            _pods_metric(rule), MetricRequest(namespace="n", object_names=()), QueryScope()
        )


def test_cadvisor_rule_filters_names_and_maps_template_resources() -> None:
    rule = _rules("walkthrough.yaml")["rules[1]"]
    labels = ["container", "namespace", "pod", "node", "job", "cluster"]
    served = _served(
        rule,
        {
            "container_network_receive_bytes_total": labels,
            "container_cpu_usage_seconds_total": labels,  # dropped by seriesFilters isNot
        },
    )
    assert set(served) == {
        ("network_receive_bytes", PODS),
        ("network_receive_bytes", NAMESPACES),
        ("network_receive_bytes", GroupResource("nodes")),
        # <<.Resource>> maps every label naming a resource, `job` included, as upstream does.
        ("network_receive_bytes", GroupResource("jobs", "batch")),
    }
    assert served[("network_receive_bytes", GroupResource("nodes"))].namespaced is False
    assert rule.series_selector_for("container_network_receive_bytes_total") == (
        'container_network_receive_bytes_total{container!="POD",namespace!="",pod!=""}'
    )
    built = rule.build_query(
        served[("network_receive_bytes", PODS)],
        MetricRequest(namespace="ns", object_names=("a", "b")),
        QueryScope(),
    )
    assert built.query == (
        'sum(rate(container_network_receive_bytes_total{namespace="ns",pod=~"a|b",'
        'container!="POD"}[2m])) by (pod)'
    )


def test_series_without_namespace_label_serves_only_cluster_scoped_resources() -> None:
    rule = _rules("walkthrough.yaml")["rules[1]"]
    served = _served(rule, {"container_x_total": ["pod", "node"]})
    assert set(served) == {("x", GroupResource("nodes"))}


def test_deployment_object_rule() -> None:
    rule = _rules("walkthrough.yaml")["rules[2]"]
    served = _served(rule, {"queue_depth": ["namespace", "deployment", "instance"]})
    assert set(served) == {("queue_depth", DEPLOYMENTS), ("queue_depth", NAMESPACES)}
    built = rule.build_query(
        served[("queue_depth", DEPLOYMENTS)],
        MetricRequest(namespace="prod", object_names=("web",)),
        QueryScope(cluster="C"),
    )
    assert (
        built.query
        == 'max(queue_depth{namespace="prod",deployment="web",cluster="C"}) by (deployment)'
    )
    assert built.object_labels == ("deployment",)


def test_external_rule_adds_selector_and_namespace() -> None:
    rule = _rules("walkthrough.yaml")["externalRules[0]"]
    metric = _external(rule, "queue_consumer_lag")
    request = MetricRequest(
        namespace="prod", metric_selector=(Requirement("name", "=", ("orders",)),)
    )
    built = rule.build_query(metric, request, QueryScope())
    assert built.query == 'sum(queue_consumer_lag{name="orders",namespace="prod"}) by (name)'
    assert built.object_labels == ()
    assert rule.series_selector_for("queue_consumer_lag") == 'queue_consumer_lag{name!=""}'


@pytest.mark.parametrize(
    ("selector", "scope", "query"),
    [
        (
            (Requirement("name", "=", ("orders",)),),
            QueryScope(),
            'sum(queue_depth{name="orders"}) by (name)',
        ),
        ((), QueryScope(cluster="C"), 'sum(queue_depth{cluster="C"}) by (name)'),
        ((), QueryScope(), "sum(queue_depth{}) by (name)"),
    ],
)
def test_external_rule_not_namespaced(
    selector: tuple[Requirement, ...], scope: QueryScope, query: str
) -> None:
    rule = _rules("walkthrough.yaml")["externalRules[1]"]
    assert rule.namespace_label is None
    metric = _external(rule, "queue_depth")
    assert metric.namespaced is False
    built = rule.build_query(
        metric, MetricRequest(namespace="prod", metric_selector=selector), scope
    )
    assert built.query == query


def test_resource_rules_are_ignored_with_a_warning() -> None:
    loaded = load_rules(FIXTURES / "walkthrough.yaml", presets=False)
    assert any(w.startswith("walkthrough.yaml#resourceRules:") for w in loaded.warnings)
    assert len(loaded.rules) == 5


# ---------------------------------------------------------------- templating details


def _external_rule(metrics_query: str, **extra: Any) -> PrometheusAdapterRule:
    entry = {"seriesQuery": "s", "metricsQuery": metrics_query, **extra}
    text = yaml.safe_dump({"externalRules": [entry]})
    [rule] = load_rules_text(text, filename="r.yaml", presets=False).rules
    assert isinstance(rule, PrometheusAdapterRule)
    return rule


NOT_NAMESPACED = {"resources": {"namespaced": False}}


@pytest.mark.parametrize(
    ("template", "query"),
    [
        ('avg(<<.Series>>{<<.LabelMatchers>>,cluster="x"})', 'avg(s{cluster="x"})'),
        ('avg(<<.Series>>{cluster="x",<<.LabelMatchers>>})', 'avg(s{cluster="x"})'),
        ('avg(<<.Series>>{a="1", <<.LabelMatchers>> ,b="2"})', 'avg(s{a="1",b="2"})'),
        ("sum(<<- .Series ->>)", "sum(s)"),
        ("sum(< <.Series>>)", None),
        (
            'label_replace(<<.Series>>{<<.LabelMatchers>>}, "g", "<<.GroupBySlice>>", "", "")',
            'label_replace(s{}, "g", "[]", "", "")',
        ),
    ],
)
def test_empty_label_matchers_keep_the_query_valid(template: str, query: str | None) -> None:
    if query is None:
        with pytest.raises(RuleError):
            _external_rule(template, **NOT_NAMESPACED)
        return
    rule = _external_rule(template, **NOT_NAMESPACED)
    built = rule.build_query(_external(rule, "s"), MetricRequest(namespace="n"), QueryScope())
    assert built.query == query


def test_group_by_slice_renders_like_go() -> None:
    text = yaml.safe_dump(
        {
            "rules": [
                {
                    "seriesQuery": 's{namespace!=""}',
                    "resources": {"template": "<<.Resource>>"},
                    "metricsQuery": 'label_replace(<<.Series>>{<<.LabelMatchers>>}, "g", '
                    '"<<.GroupBySlice>>", "", "")',
                }
            ]
        }
    )
    [rule] = load_rules_text(text, presets=False).rules
    metric = rule.discovered_metrics({"s": ["namespace", "pod"]})
    pods = next(m for m in metric if m.resource == PODS)
    built = rule.build_query(pods, MetricRequest(namespace="n", object_names=("p",)), QueryScope())
    assert built.query == 'label_replace(s{namespace="n",pod="p"}, "g", "[pod]", "", "")'


INVALID: list[tuple[dict[str, Any], str, str]] = [
    ({"metricsQuery": "<<range .GroupBySlice>>x<<end>>"}, "metricsQuery", "unsupported template"),
    ({"metricsQuery": '<<index .LabelValuesByName "pod">>'}, "metricsQuery", "unsupported"),
    ({"metricsQuery": "sum(<<.LabelValuesByName>>)"}, "metricsQuery", "unknown template field"),
    ({"metricsQuery": "sum(<<.Series | printf>>)"}, "metricsQuery", "unsupported"),
    ({"metricsQuery": "sum(<<.Series)"}, "metricsQuery", "unclosed"),
    ({"metricsQuery": "sum(<<.Series>>"}, "metricsQuery", "valid PromQL"),
    ({"metricsQuery": ""}, "metricsQuery", "required"),
    ({"metricsQuery": "sum(<<.Series>>)", "bogus": 1}, "bogus", "Extra inputs"),
    ({"name": {"matches": "(a)(b)"}}, "name.as", "several groups"),
    ({"name": {"matches": "("}}, "name.matches", "invalid regular expression"),
    ({"name": {"matches": "x", "like": "y"}}, "name.like", "Extra inputs"),
    ({"seriesFilters": [{"is": "a", "isNot": "b"}]}, "seriesFilters[0]", "not both"),
    ({"seriesFilters": [{}]}, "seriesFilters[0]", "needs is or isNot"),
    ({"seriesQuery": "sum(x)"}, "seriesQuery", "single series selector"),
    ({"seriesQuery": "x{"}, "seriesQuery", "invalid series selector"),
    ({"resources": {"template": "kube_<<.Group>>"}}, "resources.template", "<<.Resource>>"),
    ({"resources": {"template": "<<.Kind>>"}}, "resources.template", "unknown template field"),
    ({"resources": {"overrides": {"ns": {"group": "x"}}}}, "resources.overrides.ns.resource", ""),
    ({"resources": {}}, "resources", "no label maps to namespaces"),
]


@pytest.mark.parametrize(("change", "field", "words"), INVALID)
def test_invalid_external_rule(change: dict[str, Any], field: str, words: str) -> None:
    entry: dict[str, Any] = {
        "seriesQuery": "s",
        "resources": {"template": "<<.Resource>>"},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>})",
        **change,
    }
    text = yaml.safe_dump({"externalRules": [entry]})
    with pytest.raises(RuleError) as info:
        load_rules_text(text, filename="pa.yaml")
    assert info.value.file == "pa.yaml"
    assert info.value.rule == "externalRules[0]"
    assert info.value.field == field
    assert words in str(info.value)


def test_namespaced_flag_is_for_external_rules_only() -> None:
    text = yaml.safe_dump(
        {"rules": [{"seriesQuery": "s", "resources": {"namespaced": False}, "metricsQuery": "x"}]}
    )
    with pytest.raises(RuleError, match="external rules only"):
        load_rules_text(text)


def test_custom_rule_without_namespace_mapping_cannot_answer_namespaced_requests() -> None:
    text = yaml.safe_dump(
        {
            "rules": [
                {
                    "seriesQuery": "s",
                    "resources": {
                        "overrides": {"node": {"resource": "node"}, "pod": {"resource": "pod"}}
                    },
                    "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
                }
            ]
        }
    )
    [rule] = load_rules_text(text, presets=False).rules
    served = {m.resource: m for m in rule.discovered_metrics({"s": ["node", "pod"]})}
    assert set(served) == {GroupResource("nodes")}
    built = rule.build_query(
        served[GroupResource("nodes")],
        MetricRequest(namespace=None, object_names=("n1",)),
        QueryScope(),
    )
    assert built.query == 'sum(s{node="n1"}) by (node)'
    pods = ServedMetric(name="s", kind="custom", rule=rule, resource=PODS, series="s")
    with pytest.raises(BadRequestError, match="maps no label to namespaces"):
        rule.build_query(pods, MetricRequest(namespace="ns"), QueryScope())


# ---------------------------------------------------------------- naming


@pytest.mark.parametrize(
    ("pattern", "template", "name", "expected"),
    [
        ("^(.*)_total$", "${1}_per_second", "http_requests_total", "http_requests_per_second"),
        # Go reads $1_per_second as the group named "1_per_second": empty.
        ("^(.*)_total$", "$1_per_second", "http_requests_total", ""),
        ("^(.*)_total$", "$1", "http_requests_total", "http_requests"),
        ("^(?P<base>.*)_total$", "${base}_rate", "x_total", "x_rate"),
        ("^(?P<base>.*)_total$", "$base", "x_total", "x"),
        (".*", "$0", "abc", "abc"),
        (".*", "cost$$", "abc", "cost$"),
        (".*", "a$", "abc", "a$"),
        (".*", "a${1", "abc", "a${1"),
        (".*", "${7}x", "abc", "x"),
    ],
)
def test_go_expand(pattern: str, template: str, name: str, expected: str) -> None:
    match = re.search(pattern, name)
    assert match is not None
    assert go_expand(template, match) == expected


def test_name_matches_defaults_and_filters() -> None:
    rule = _external_rule(
        "sum(<<.Series>>)",
        name={"matches": "^jetstream_(.*)$"},
        resources={"namespaced": False},
    )
    names = {
        m.name: m.series
        for m in rule.discovered_metrics(
            {"jetstream_prefill_backlog_size": [], "memory_used": [], "bad-name": []}
        )
    }
    assert names == {"prefill_backlog_size": "jetstream_prefill_backlog_size"}


def test_constant_as_serves_one_name() -> None:
    rule = _external_rule(
        "sum(<<.Series>>)", name={"matches": "", "as": "total"}, resources={"namespaced": False}
    )
    served = rule.discovered_metrics({"b": [], "a": []})
    assert [(m.name, m.series) for m in served] == [("total", "a")]


def test_odd_series_names_are_selectable_but_not_served() -> None:
    rule = _rules("walkthrough.yaml")["externalRules[0]"]
    assert rule.series_selector_for("queue.lag") == '{__name__="queue.lag",name!=""}'
    assert rule.discovered_metrics({"queue.lag": ["namespace"]}) == []


def _cheese_rules() -> str:
    rules = [
        override_rule("cheddar_sold_total", "brand", "brand", "cheese.io"),
        template_rule("jetstream_slots_used_percentage", "namespace", "pod"),
    ]
    return yaml.safe_dump({"rules": rules})


def test_an_override_naming_a_crd_loads_with_a_warning_and_maps_its_label() -> None:
    """prometheus-adapter's documented override (``brand: {group: cheese.io, resource: brand}``):
    the resource is not in the built-in table; the file loads, the other rules with it."""
    loaded = load_rules_text(_cheese_rules(), filename="cheese.yaml", presets=False)
    assert len(loaded.rules) == 2
    [warning] = [w for w in loaded.warnings if "not in the built-in table" in w]
    assert "resources.overrides.brand" in warning and "brands.cheese.io" in warning
    rule = loaded.rules[0]
    assert isinstance(rule, PrometheusAdapterRule)
    served = _served(rule, {"cheddar_sold_total": ["namespace", "brand"]})
    assert {metric.resource for metric in served.values()} >= {GroupResource("brands", "cheese.io")}


@pytest.mark.parametrize(
    ("given", "plural", "kind"),
    [
        ("brand", "brands", "Brand"),
        ("brands", "brands", "Brand"),
        ("policy", "policies", "Policy"),
        ("day", "days", "Day"),
    ],
)
def test_a_resource_outside_the_table_is_named_as_kubernetes_guesses(
    given: str, plural: str, kind: str
) -> None:
    from adapter.rules import resources

    info = resources.guess(given, "cheese.io")
    assert (info.plural, info.kind, info.group, info.namespaced) == (
        plural,
        kind,
        "cheese.io",
        True,
    )
    doc = " ".join((Path(__file__).parents[2] / "docs" / "configuration.md").read_text().split())
    assert "`brand` → `brands.cheese.io`, kind `Brand`, version `v1`, namespaced" in doc


def _cluster_table(*extra: ResourceInfo) -> ResourceTable:
    from adapter.rules import resources

    return ResourceTable.of(
        [*resources.known_resources(), *extra], source="the cluster's discovery", complete=True
    )


BRAND = ResourceInfo("brands", "brand", "cheese.io", "Brand", namespaced=True, version="v1beta2")


def test_an_override_the_cluster_does_not_serve_waits_and_never_stops_the_other_rules() -> None:
    """In Kubernetes mode the override is resolved with the cluster's discovery: while the CRD
    does not exist its metrics are not served and the rule says what it waits for; once the
    cluster serves it, the metric is served with the kind and version discovery gives."""
    loaded = load_rules_text(_cheese_rules(), filename="cheese.yaml", presets=False)
    brands, other = loaded.rules
    assert isinstance(brands, PrometheusAdapterRule) and isinstance(other, PrometheusAdapterRule)
    labels = {"cheddar_sold_total": ["namespace", "brand"]}
    without = _cluster_table()
    [missing] = brands.missing_resources(without)
    assert "resources.overrides.brand" in missing and "cheese.io" in missing
    served = brands.discovered_metrics(labels, without)
    assert GroupResource("brands", "cheese.io") not in {m.resource for m in served}
    assert other.missing_resources(without) == ()
    assert other.discovered_metrics(
        {"jetstream_slots_used_percentage": ["namespace", "pod"]}, without
    )

    with_brands = _cluster_table(BRAND)
    assert brands.missing_resources(with_brands) == ()
    [metric] = [
        m
        for m in brands.discovered_metrics(labels, with_brands)
        if m.resource == GroupResource("brands", "cheese.io")
    ]
    assert metric.described == BRAND and metric.object_label == "brand"
    query = brands.build_query(
        metric, MetricRequest(namespace="shop", object_names=("gouda",)), QueryScope()
    ).query
    assert 'brand="gouda"' in query and 'namespace="shop"' in query


def test_a_template_maps_any_resource_the_cluster_serves() -> None:
    """``<<.Resource>>`` maps a label to whatever the cluster serves under that name (singular,
    plural or kind), as prometheus-adapter's RESTMapper does; the built-in table does not know
    ``brand``."""
    entry = template_rule("cheddar_sold_total")
    [rule] = load_rules_text(
        yaml.safe_dump({"rules": [entry]}), filename="r.yaml", presets=False
    ).rules
    assert isinstance(rule, PrometheusAdapterRule)
    labels = {"cheddar_sold_total": ["namespace", "brand", "lease"]}
    assert {m.resource for m in rule.discovered_metrics(labels)} == {GroupResource("namespaces")}
    lease = ResourceInfo("leases", "lease", "coordination.k8s.io", "Lease", namespaced=True)
    served = {m.resource: m for m in rule.discovered_metrics(labels, _cluster_table(BRAND, lease))}
    assert set(served) == {
        GroupResource("namespaces"),
        GroupResource("brands", "cheese.io"),
        GroupResource("leases", "coordination.k8s.io"),
    }
    assert served[GroupResource("leases", "coordination.k8s.io")].object_label == "lease"
