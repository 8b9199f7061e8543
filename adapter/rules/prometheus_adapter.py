"""prometheus-adapter's discovery rules, compiled to answer exactly what prometheus-adapter answers.

Mirrors ``pkg/config``, ``pkg/naming`` (metric_namer, metrics_query, resource_converter,
lbl_res) of kubernetes-sigs/prometheus-adapter:

- discovery: ``seriesQuery`` lists series names; ``seriesFilters`` (``is``/``isNot``) and
  ``name.matches`` filter them; ``name.as`` (Go ``Regexp.Expand`` syntax) names them;
- association: a series label maps to a resource through ``resources.overrides`` or the
  ``resources.template`` (``<<.Group>>``, ``<<.Resource>>``);
- querying: ``metricsQuery`` with ``<<.Series>>``, ``<<.LabelMatchers>>``, ``<<.GroupBy>>``,
  ``<<.GroupBySlice>>``. Custom metrics: LabelMatchers are the metric selector's matchers, the
  namespace matcher (namespaced resources) and the object-name matcher (``pod="a"`` or
  ``pod=~"a|b"``); GroupBy is the resource label. External metrics: the selector's matchers and
  the namespace matcher unless ``resources.namespaced: false``; GroupBy is empty.

Differences, all in the safe direction: the query is then scoped like every other rule (cluster
and namespace matchers injected into every selector); object names are regex-escaped; an empty
LabelMatchers next to a comma (``{<<.LabelMatchers>>,cluster="x"}``) drops the comma instead of
producing the invalid ``{,cluster="x"}``; templates using anything but field references fail at
load.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import promql_parser
from pydantic import BaseModel, ConfigDict, Field

from adapter import promql
from adapter.domain.errors import (
    AdapterError,
    BadRequestError,
    NotFoundError,
    QueryError,
)
from adapter.domain.models import GroupResource, Matcher
from adapter.promql.functions import expand_template
from adapter.rules import base, resources
from adapter.rules.gotemplate import Template, TemplateError, compile_template, go_slice
from adapter.rules.location import RuleLocation
from adapter.rules.native import AVERAGE_WARNING
from adapter.rules.scoping import (
    EXAMPLE_CLUSTER,
    EXAMPLE_NAMESPACE,
    LABEL_NAME_RE,
    METRIC_NAME_RE,
    averages_at_top_level,
    example_scope,
    finish,
    pinned_values,
    scope_matchers,
    selector_matchers,
)

__all__ = [
    "DiscoveryRuleSpec",
    "PrometheusAdapterRule",
    "compile_discovery_rule",
    "go_expand",
]

_QUERY_FIELDS = frozenset({"Series", "LabelMatchers", "GroupBy", "GroupBySlice"})
_RESOURCE_FIELDS = frozenset({"Group", "Resource"})
_EXPORTED_NAMESPACE = "exported_namespace"
# Marks an empty <<.LabelMatchers>> so the comma next to it can be dropped after rendering.
_EMPTY = "\x00"
_SERVED_NAME_RE = re.compile(r"^[^/%\s]{1,253}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class RegexFilterSpec(_Strict):
    is_: str = Field("", alias="is")
    is_not: str = Field("", alias="isNot")


class GroupResourceSpec(_Strict):
    group: str = ""
    resource: str


class ResourceMappingSpec(_Strict):
    template: str = ""
    overrides: dict[str, GroupResourceSpec] | None = None
    namespaced: bool | None = None


class NameMappingSpec(_Strict):
    matches: str = ""
    as_: str = Field("", alias="as")


class LabelValueReplacementSpec(_Strict):
    find: str = ""
    replace: str = ""


class DiscoveryRuleSpec(_Strict):
    """One entry of ``rules`` / ``externalRules`` (pkg/config.DiscoveryRule), unknown keys fail."""

    series_query: str = Field(alias="seriesQuery", min_length=1, max_length=16384)
    series_filters: list[RegexFilterSpec] | None = Field(None, alias="seriesFilters")
    resources: ResourceMappingSpec | None = None
    name: NameMappingSpec | None = None
    metrics_query: str = Field("", alias="metricsQuery", max_length=16384)
    # Only affects LabelValuesByName, which no supported template can reference.
    label_value_replacements: list[LabelValueReplacementSpec] | None = Field(
        None, alias="labelValueReplacements"
    )


def go_expand(template: str, match: re.Match[str]) -> str:
    """Go's ``Regexp.ExpandString``: ``$1``, ``${1}``, ``$name``, ``${name}``, ``$$``.

    As in Go, ``$name`` takes the longest run of letters, digits and ``_`` (``$1_x`` is
    ``${1_x}``, which is empty), unknown or unmatched references expand to nothing, and a
    malformed ``$`` is kept literally (the same expansion as PromQL's ``label_replace``).
    """
    return expand_template(template, [match.group(0), *match.groups()], dict(match.re.groupindex))


@dataclass(frozen=True, slots=True)
class _Override:
    """One ``resources.overrides`` entry: ``label`` names objects of ``resource`` in ``group``;
    ``built_in`` is that resource in the built-in table, or as Kubernetes would guess it."""

    label: str
    resource: str
    group: str
    built_in: resources.ResourceInfo

    def resolve(self, table: resources.ResourceTable) -> resources.ResourceInfo | None:
        """The resource in ``table``; ``None`` when ``table`` lists every served resource and not
        this one (its CRD does not exist yet)."""
        found = table.lookup(self.resource, self.group)
        if found is not None or table.complete:
            return found
        return self.built_in

    def missing(self) -> str:
        group = f" in group {self.group}" if self.group else ""
        return (
            f"resources.overrides.{self.label}: the cluster serves no resource"
            f" {self.resource!r}{group}; its metrics are served once it does"
        )


@dataclass(frozen=True, slots=True)
class _ResourceMapper:
    """Label ↔ resource mapping of one rule (pkg/naming/resource_converter.go), resolved with
    a :class:`~adapter.rules.resources.ResourceTable`: the cluster's, or the built-in one."""

    template: Template | None
    extractor: re.Pattern[str] | None
    overrides: tuple[_Override, ...]
    warnings: tuple[str, ...] = ()
    """Overrides outside the built-in table, said at load."""

    def label_for(self, gr: GroupResource) -> str | None:
        """The label naming ``gr``'s objects (by the built-in table, for what a rule is asked
        before discovery: its namespace label, its example)."""
        for override in self.overrides:
            if override.built_in.group_resource == gr:
                return override.label
        if self.template is None:
            return None
        known = resources.lookup(gr.resource, gr.group)
        singular = known.singular if known is not None else gr.resource
        label = self.template.render(
            {"Group": resources.sanitize_group(gr.group), "Resource": singular}
        )
        return label or None

    def resources_for(
        self, labels: Sequence[str], table: resources.ResourceTable
    ) -> list[tuple[str, resources.ResourceInfo]]:
        out: list[tuple[str, resources.ResourceInfo]] = []
        overrides = {o.label: o for o in self.overrides}
        for label in labels:
            if label in overrides:
                info = overrides[label].resolve(table)
                if info is not None:
                    out.append((label, info))
                continue
            if self.extractor is None:
                continue
            m = self.extractor.match(label)
            if m is None:
                continue
            group = m.groupdict().get("group") or ""
            found = table.lookup(m.group("resource"), group)
            if found is not None:
                out.append((label, found))
        return out

    def missing(self, table: resources.ResourceTable) -> tuple[str, ...]:
        return tuple(o.missing() for o in self.overrides if o.resolve(table) is None)


@dataclass(frozen=True, slots=True)
class _SeriesFilter:
    regex: re.Pattern[str]
    positive: bool

    def matches(self, name: str) -> bool:
        return (self.regex.search(name) is not None) == self.positive


@dataclass(frozen=True, eq=False)
class PrometheusAdapterRule(base.RuleDefaults):
    """A compiled prometheus-adapter discovery rule (custom ``rules`` or ``externalRules``)."""

    id: str
    kind: base.MetricKind
    series_query: str
    metrics_query: str
    namespace_label: str | None
    _template: Template = field(repr=False)
    _mapper: _ResourceMapper = field(repr=False)
    _filters: tuple[_SeriesFilter, ...] = field(repr=False)
    _name_regex: re.Pattern[str] = field(repr=False)
    _name_as: str = field(repr=False)
    _pa_namespace_label: str | None = field(repr=False)
    _series_selector: tuple[str | None, tuple[Matcher, ...]] = field(repr=False)
    warnings: tuple[str, ...] = ()

    @property
    def source(self) -> base.RuleSource:
        return "prometheus-adapter"

    def discovery_selectors(self) -> list[str]:
        return [self.series_query]

    def discovery_name(self) -> str | None:
        """The one series name ``seriesQuery`` selects, when it names one exactly."""
        return self._series_selector[0]

    def series_selector_for(self, name: str) -> str:
        """``name`` with the ``seriesQuery``'s own matchers (``__name__`` ones dropped).

        A name that is not a classic metric name (it will not be served) is selected with a
        quoted ``__name__`` matcher, so one odd series cannot break discovery of the others.
        """
        matchers = list(self._series_selector[1])
        if not METRIC_NAME_RE.match(name):
            return "{" + promql.render_matchers([Matcher("__name__", "=", name), *matchers]) + "}"
        return f"{name}{{{promql.render_matchers(matchers)}}}" if matchers else name

    def served_name(self, series: str) -> str | None:
        """The API name for ``series``, or ``None`` when the filters or ``name.matches`` drop it."""
        if not METRIC_NAME_RE.match(series):
            return None
        if not all(f.matches(series) for f in self._filters):
            return None
        m = self._name_regex.search(series)
        if m is None:
            return None
        name = go_expand(self._name_as, m)
        return name if _SERVED_NAME_RE.match(name) else None

    def discovered_metrics(
        self,
        labels_by_name: Mapping[str, Sequence[str]],
        table: resources.ResourceTable | None = None,
    ) -> list[base.ServedMetric]:
        out: dict[tuple[str, GroupResource | None], base.ServedMetric] = {}
        for series in sorted(labels_by_name):
            name = self.served_name(series)
            if name is None:
                continue
            found = self._series_metrics(
                name, series, labels_by_name[series], table or resources.BUILT_IN
            )
            for metric in found:
                out.setdefault((metric.name, metric.resource), metric)
        return list(out.values())

    def missing_resources(self, table: resources.ResourceTable) -> tuple[str, ...]:
        return tuple(f"{self.id}: {line}" for line in self._mapper.missing(table))

    def _series_metrics(
        self, name: str, series: str, labels: Sequence[str], table: resources.ResourceTable
    ) -> list[base.ServedMetric]:
        """What one discovered series serves as ``name``: the external metric, or a custom metric
        on each resource its labels map to."""
        if self.kind == "external":
            return [self._served(name, series, None)]
        found = self._mapper.resources_for(list(labels), table)
        namespaces = resources.NAMESPACES.group_resource
        series_namespaced = any(info.group_resource == namespaces for _, info in found)
        # A namespaced resource on a series with no namespace label: prometheus-adapter would list
        # it as a cluster-scoped metric that no namespaced request (the HPA's) can reach; skip it.
        return [
            self._served(name, series, info, label)
            for label, info in found
            if series_namespaced or not info.namespaced
        ]

    def _served(
        self,
        name: str,
        series: str,
        info: resources.ResourceInfo | None,
        label: str | None = None,
    ) -> base.ServedMetric:
        """``name`` served from ``series``: external when ``info`` is ``None``, else custom on
        ``info``'s resource, its objects named by ``label``."""
        if info is None:
            return base.ServedMetric(
                name=name,
                kind="external",
                rule=self,
                namespaced=self.namespace_label is not None,
                series=series,
            )
        return base.ServedMetric(
            name=name,
            kind="custom",
            rule=self,
            resource=info.group_resource,
            namespaced=info.namespaced,
            series=series,
            described=info,
            object_label=label,
        )

    def _render(self, *, series: str, label_matchers: str, group_by: Sequence[str]) -> str:
        return _render(
            self._template, series=series, label_matchers=label_matchers, group_by=group_by
        )

    def _custom_query(
        self, metric: base.ServedMetric, request: base.MetricRequest
    ) -> tuple[str, str, str | None]:
        if metric.resource is None:
            raise QueryError(f"custom metric {metric.name} names no resource")
        is_namespaces = metric.resource == resources.NAMESPACES.group_resource
        res_label = metric.object_label or self._mapper.label_for(metric.resource)
        if res_label is None:
            raise QueryError(f"rule {self.id} maps no label to {metric.resource}")
        matchers = selector_matchers(request.metric_selector)
        namespace: str | None = None
        if metric.namespaced:
            if request.namespace is None:
                raise BadRequestError(
                    f"metric {metric.name} on {metric.resource} needs a namespace"
                )
            if self._pa_namespace_label is None or self.namespace_label is None:
                raise BadRequestError(
                    f"rule {self.id} maps no label to namespaces, so it cannot answer for "
                    f"namespace {request.namespace}"
                )
            namespace = request.namespace
            matchers.append(Matcher(self._pa_namespace_label, "=", namespace))
        elif is_namespaces:
            namespace = request.namespace
        names = request.object_names
        if names is None and is_namespaces and request.namespace is not None:
            names = (request.namespace,)
        if names is not None:
            if not names:
                raise NotFoundError.metric(metric.name, f"{metric.resource}: no objects selected")
            if len(names) == 1:
                matchers.append(Matcher(res_label, "=", names[0]))
            else:
                matchers.append(
                    Matcher(res_label, "=~", "|".join(promql.escape_regex(n) for n in names))
                )
        query = self._render(
            series=metric.series,
            label_matchers=promql.render_matchers(matchers),
            group_by=[res_label],
        )
        return query, res_label, namespace

    def _unscoped(
        self, metric: base.ServedMetric, request: base.MetricRequest
    ) -> tuple[str, tuple[str, ...], str | None, str | None]:
        """(rendered query, object labels, namespace label to inject, namespace to inject)."""
        if not METRIC_NAME_RE.match(metric.series):
            raise QueryError(f"{metric.series!r} is not a metric name")
        if self.kind == "custom":
            query, res_label, namespace = self._custom_query(metric, request)
            ns_label = self.namespace_label if namespace is not None else None
            return query, (res_label,), ns_label, namespace
        matchers = selector_matchers(request.metric_selector)
        namespace = request.namespace if self.namespace_label is not None else None
        if namespace is not None and self._pa_namespace_label is not None:
            matchers.append(Matcher(self._pa_namespace_label, "=", namespace))
        query = self._render(
            series=metric.series, label_matchers=promql.render_matchers(matchers), group_by=[]
        )
        return query, (), self.namespace_label, namespace

    def build_query(
        self, metric: base.ServedMetric, request: base.MetricRequest, scope: base.QueryScope
    ) -> base.BuiltQuery:
        """The metricsQuery rendered as prometheus-adapter renders it, then scoped."""
        query, object_labels, ns_label, namespace = self._unscoped(metric, request)
        promql.validate(query)
        return finish(
            query, scope_matchers(scope, ns_label, namespace), object_labels=object_labels
        )

    def _example_metric(self) -> base.ServedMetric:
        series = self._series_selector[0] or "SERIES"
        name = self.served_name(series) or series
        if self.kind == "external":
            return self._served(name, series, None)
        target = resources.PODS
        if self._mapper.label_for(target.group_resource) is None and self._mapper.overrides:
            namespaces = resources.NAMESPACES.group_resource
            candidates = [
                o.built_in
                for o in self._mapper.overrides
                if o.built_in.group_resource != namespaces
            ]
            target = candidates[0] if candidates else resources.NAMESPACES
        return self._served(name, series, target)

    def describe(self) -> str:
        label = self.namespace_label if self.namespace_label is not None else "cluster-scoped"
        metric = self._example_metric()
        ns: str | None = (
            EXAMPLE_NAMESPACE if metric.namespaced or metric.kind == "external" else None
        )
        cluster = EXAMPLE_CLUSTER
        try:
            first = self._unscoped(metric, base.MetricRequest(namespace=ns))[0]
            if ns is not None:
                ns = example_scope(first, namespace_label=self.namespace_label)[0] or ns
            cluster = example_scope(first, namespace_label=None)[1]
            example = self.build_query(
                metric, base.MetricRequest(namespace=ns), base.QueryScope(cluster=cluster)
            ).query
        except AdapterError as exc:
            example = f"(cannot be built: {exc.message})"
        where = f" on {metric.resource}" if metric.resource is not None else ""
        return (
            f"{self.id} (prometheus-adapter {self.kind} rule, seriesQuery {self.series_query}): "
            f"metricsQuery {self.metrics_query}; namespace label: {label}; for {metric.name}{where} "
            f"in namespace {ns or '-'}, cluster {cluster}: {example}"
        )


def _drop_empty(text: str) -> str:
    text = re.sub(r"\{\s*\x00\s*,", "{", text)
    text = re.sub(r",\s*\x00\s*\}", "}", text)
    text = re.sub(r",\s*\x00\s*,", ",", text)
    return text.replace(_EMPTY, "")


def _render(
    template: Template, *, series: str, label_matchers: str, group_by: Sequence[str]
) -> str:
    """``metricsQuery`` rendered as prometheus-adapter renders it (an empty LabelMatchers next
    to a comma drops the comma)."""
    text = template.render(
        {
            "Series": series,
            "LabelMatchers": label_matchers or _EMPTY,
            "GroupBy": ",".join(group_by),
            "GroupBySlice": go_slice(group_by),
        }
    )
    return _drop_empty(text)


def _compile_regex(pattern: str, at: RuleLocation, field: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise at.error(f"invalid regular expression {pattern!r}: {exc}", field) from None


def _compile_template(text: str, allowed: frozenset[str], at: RuleLocation, field: str) -> Template:
    try:
        return compile_template(text, allowed=allowed)
    except TemplateError as exc:
        raise at.error(str(exc), field) from None


def _series_selector(query: str, at: RuleLocation) -> tuple[str | None, tuple[Matcher, ...]]:
    """Naming: the one series name ``seriesQuery`` selects (when it names one) and its other
    matchers."""
    try:
        promql.validate(query)
        parsed = promql_parser.parse(query)
        infos = promql.selectors(query)
    except (QueryError, ValueError) as exc:
        raise at.error(f"invalid series selector {query!r}: {exc}", "seriesQuery") from None
    if not isinstance(parsed, promql_parser.VectorSelector) or len(infos) != 1:
        raise at.error(f"{query!r} is not a single series selector", "seriesQuery")
    info = infos[0]
    name: str | None = info.name or None
    kept: list[Matcher] = []
    for matcher in info.matchers:
        if matcher.label == "__name__":
            if matcher.op == "=":
                name = matcher.value
            continue
        kept.append(matcher)
    return name, tuple(kept)


def _checked_shape(
    spec: DiscoveryRuleSpec, res_spec: ResourceMappingSpec, kind: base.MetricKind, at: RuleLocation
) -> None:
    """The required parts: a ``metricsQuery``; ``resources.namespaced`` on external rules only."""
    if not spec.metrics_query.strip():
        raise at.error("metricsQuery is required", "metricsQuery")
    if res_spec.namespaced is not None and kind == "custom":
        raise at.error(
            "resources.namespaced applies to external rules only", "resources.namespaced"
        )


def _label_template(text: str, at: RuleLocation) -> tuple[Template | None, re.Pattern[str] | None]:
    """Resource: ``resources.template`` and the regex that reads a resource back out of a label."""
    if not text:
        return None, None
    template = _compile_template(text, _RESOURCE_FIELDS, at, "resources.template")
    if "Resource" not in template.fields:
        raise at.error("the label template must include <<.Resource>>", "resources.template")
    pattern = template.render({"Group": "(?P<group>.+?)", "Resource": "(?P<resource>.+?)"})
    return template, _compile_regex("^" + pattern + "$", at, "resources.template")


def _overrides(
    overrides: Mapping[str, GroupResourceSpec], at: RuleLocation
) -> tuple[tuple[_Override, ...], tuple[str, ...]]:
    """Resource: ``resources.overrides``, each a label name mapped to a resource, resolved at
    discovery with the cluster's resources; one the built-in table lacks (a CRD) is said in a
    warning, with how it is served without a cluster (:func:`resources.guess`)."""
    out: list[_Override] = []
    warnings: list[str] = []
    for label, gr in overrides.items():
        where = f"resources.overrides.{label}"
        at.label_name(label, where)
        if not gr.resource.strip():
            raise at.error("an override must name a resource", where)
        info = resources.lookup(gr.resource, gr.group)
        if info is None:
            info = resources.guess(gr.resource, gr.group)
            warnings.append(
                f"{where}: {gr.resource!r} (group {gr.group!r}) is not in the built-in table of"
                " common resources: in Kubernetes mode it is served once the cluster's"
                " discovery lists it (until then /debug/metrics lists it under"
                f" missingResources); standalone it is served as {info.group_resource} (kind"
                f" {info.kind}, version {info.version}, namespaced)"
            )
        out.append(_Override(label, gr.resource, gr.group, info))
    return tuple(out), tuple(warnings)


def _resource_mapper(spec: ResourceMappingSpec, at: RuleLocation) -> _ResourceMapper:
    """Resource: the label ↔ resource mapping of the rule."""
    template, extractor = _label_template(spec.template, at)
    overrides, warnings = _overrides(spec.overrides or {}, at)
    return _ResourceMapper(
        template=template, extractor=extractor, overrides=overrides, warnings=warnings
    )


def _series_filters(specs: Sequence[RegexFilterSpec], at: RuleLocation) -> list[_SeriesFilter]:
    """Naming: ``seriesFilters``, each with exactly one of ``is`` / ``isNot``."""
    filters: list[_SeriesFilter] = []
    for i, f in enumerate(specs):
        where = f"seriesFilters[{i}]"
        if f.is_ and f.is_not:
            raise at.error("a filter has either is or isNot, not both", where)
        if not f.is_ and not f.is_not:
            raise at.error("a filter needs is or isNot", where)
        filters.append(
            _SeriesFilter(_compile_regex(f.is_ or f.is_not, at, where), positive=bool(f.is_))
        )
    return filters


def _name_mapping(spec: NameMappingSpec, at: RuleLocation) -> tuple[re.Pattern[str], str]:
    """Naming: ``name.matches`` (every series when empty) and ``name.as``, which defaults to the
    whole match or the one group, as in prometheus-adapter."""
    if not spec.matches:
        return re.compile(".*"), spec.as_ or "$0"
    regex = _compile_regex(spec.matches, at, "name.matches")
    if spec.as_:
        return regex, spec.as_
    if regex.groups <= 1:
        return regex, f"${regex.groups}"
    raise at.error(
        f"name.matches {spec.matches!r} has several groups: name.as is required", "name.as"
    )


def _naming(
    spec: DiscoveryRuleSpec, at: RuleLocation
) -> tuple[tuple[_SeriesFilter, ...], re.Pattern[str], str]:
    """Naming: which series are served (``seriesFilters``, ``name.matches``) and the name each
    is served under (``name.as``)."""
    filters = _series_filters(spec.series_filters or [], at)
    name_spec = spec.name or NameMappingSpec.model_validate({})
    name_regex, name_as = _name_mapping(name_spec, at)
    if name_spec.matches:
        filters.append(_SeriesFilter(name_regex, positive=True))
    return tuple(filters), name_regex, name_as


def _mapped_namespace_label(mapper: _ResourceMapper, at: RuleLocation) -> str | None:
    """Namespace label: the label the mapping gives the ``namespaces`` resource, if any."""
    label = mapper.label_for(resources.NAMESPACES.group_resource)
    if label is not None and not LABEL_NAME_RE.match(label):
        raise at.error(
            f"the template maps namespaces to {label!r}, not a label name", "resources.template"
        )
    return label


def _trial_query(
    template: Template,
    *,
    series: str,
    namespace_label: str | None,
    kind: base.MetricKind,
    at: RuleLocation,
) -> str:
    """Query: ``metricsQuery`` rendered with and without a namespace matcher, both of which
    must be valid PromQL; the first rendering, for the checks that read the query."""
    trial_ns = Matcher(namespace_label or "namespace", "=", EXAMPLE_NAMESPACE)
    group_by = ["pod"] if kind == "custom" else []
    trials: list[str] = []
    for label_matchers in (promql.render_matchers([trial_ns]), ""):
        text = _render(template, series=series, label_matchers=label_matchers, group_by=group_by)
        try:
            promql.validate(text)
        except QueryError as exc:
            raise at.error(
                f"metricsQuery does not render to valid PromQL ({text}): {exc.message}",
                "metricsQuery",
            ) from None
        trials.append(text)
    return trials[0]


def _namespace_label(
    kind: base.MetricKind,
    namespaced: bool | None,
    mapped: str | None,
    trial: str,
    at: RuleLocation,
) -> str | None:
    """Namespace label: the label injected with the request's namespace (``None``: the rule
    reads across namespaces, which external rules must say with ``resources.namespaced: false``)."""
    label = mapped
    if pinned_values(trial, _EXPORTED_NAMESPACE):
        # The TPU device plugin is scraped in kube-system: the workload's namespace arrives as
        # exported_namespace, and a query that pins it is scoped by it.
        label = _EXPORTED_NAMESPACE
    if kind == "external" and namespaced is False:
        return None
    if label is None and kind == "external":
        raise at.error(
            "no label maps to namespaces (resources.template or resources.overrides), so the "
            "query cannot be scoped; set resources.namespaced: false to read across namespaces",
            "resources",
        )
    return label


def _warnings(
    rule_id: str, spec: DiscoveryRuleSpec, kind: base.MetricKind, trial: str
) -> tuple[str, ...]:
    warnings: list[str] = []
    if kind == "external" and averages_at_top_level(trial):
        warnings.append(f"{rule_id}: {AVERAGE_WARNING}")
    if spec.label_value_replacements:
        warnings.append(
            f"{rule_id}: labelValueReplacements only affect LabelValuesByName, which this "
            "adapter does not support; ignored"
        )
    return tuple(warnings)


def compile_discovery_rule(
    raw: Any, *, kind: base.MetricKind, file: str, rule: str, rule_id: str
) -> PrometheusAdapterRule:
    """Validate and compile one prometheus-adapter rule. Raises :class:`RuleError`.

    ``rule`` is the rule's place in the file for error messages (``rules.external[2]``). The
    steps run in this order, so the first fault reported is the same whatever else is wrong:
    the required parts, the resource mapping, naming (``seriesFilters``, ``name``,
    ``seriesQuery``), the ``metricsQuery`` template, the label mapped to namespaces, the
    rendered query, the namespace label.
    """
    at = RuleLocation(file, rule)
    spec = at.parse(DiscoveryRuleSpec, raw, what="rule")
    res_spec = spec.resources or ResourceMappingSpec()
    _checked_shape(spec, res_spec, kind, at)
    mapper = _resource_mapper(res_spec, at)
    filters, name_regex, name_as = _naming(spec, at)
    series_selector = _series_selector(spec.series_query, at)
    query_template = _compile_template(spec.metrics_query, _QUERY_FIELDS, at, "metricsQuery")
    pa_ns_label = _mapped_namespace_label(mapper, at)
    trial = _trial_query(
        query_template,
        series=series_selector[0] or "series",
        namespace_label=pa_ns_label,
        kind=kind,
        at=at,
    )
    return PrometheusAdapterRule(
        id=rule_id,
        kind=kind,
        series_query=spec.series_query,
        metrics_query=spec.metrics_query,
        namespace_label=_namespace_label(kind, res_spec.namespaced, pa_ns_label, trial, at),
        _template=query_template,
        _mapper=mapper,
        _filters=filters,
        _name_regex=name_regex,
        _name_as=name_as,
        _pa_namespace_label=pa_ns_label,
        _series_selector=series_selector,
        warnings=_warnings(rule_id, spec, kind, trial)
        + tuple(f"{rule_id}: {w}" for w in mapper.warnings),
    )
