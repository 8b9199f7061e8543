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
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapter import promql
from adapter.domain.errors import (
    AdapterError,
    BadRequestError,
    NotFoundError,
    QueryError,
    RuleError,
)
from adapter.domain.models import GroupResource, Matcher
from adapter.rules import resources
from adapter.rules.base import (
    BuiltQuery,
    MetricKind,
    MetricRequest,
    RuleDefaults,
    RuleSource,
    Scope,
    ServedMetric,
)
from adapter.rules.gotemplate import Template, TemplateError, compile_template, go_slice
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
    malformed ``$`` is kept literally.
    """
    out: list[str] = []
    rest = template
    names = match.re.groupindex
    while True:
        before, dollar, after = rest.partition("$")
        out.append(before)
        if not dollar:
            break
        rest = after
        if rest.startswith("$"):
            out.append("$")
            rest = rest[1:]
            continue
        brace = rest.startswith("{")
        body = rest[1:] if brace else rest
        m = re.match(r"[A-Za-z0-9_]+", body)
        if m is None or (brace and not body[m.end() :].startswith("}")):
            out.append("$")
            continue
        name = m.group(0)
        rest = body[m.end() + (1 if brace else 0) :]
        # Go caps group numbers; anything that long cannot name a group anyway.
        index = (int(name) if len(name) < 9 else None) if name.isdigit() else names.get(name)
        if index is not None and index <= (match.re.groups or 0):
            value = match.group(index)
            out.append(value or "")
    return "".join(out)


@dataclass(frozen=True, slots=True)
class _ResourceMapper:
    """Label ↔ resource mapping of one rule (pkg/naming/resource_converter.go)."""

    template: Template | None
    extractor: re.Pattern[str] | None
    overrides: tuple[tuple[str, resources.ResourceInfo], ...]

    def label_for(self, gr: GroupResource) -> str | None:
        for label, info in self.overrides:
            if info.group_resource == gr:
                return label
        if self.template is None:
            return None
        known = resources.lookup(gr.resource, gr.group)
        singular = known.singular if known is not None else gr.resource
        label = self.template.render(
            {"Group": resources.sanitize_group(gr.group), "Resource": singular}
        )
        return label or None

    def resources_for(self, labels: Sequence[str]) -> list[tuple[str, resources.ResourceInfo]]:
        out: list[tuple[str, resources.ResourceInfo]] = []
        overrides = dict(self.overrides)
        for label in labels:
            if label in overrides:
                out.append((label, overrides[label]))
                continue
            if self.extractor is None:
                continue
            m = self.extractor.match(label)
            if m is None:
                continue
            group = m.groupdict().get("group") or ""
            info = resources.lookup(m.group("resource"), group)
            if info is not None:
                out.append((label, info))
        return out


@dataclass(frozen=True, slots=True)
class _SeriesFilter:
    regex: re.Pattern[str]
    positive: bool

    def matches(self, name: str) -> bool:
        return (self.regex.search(name) is not None) == self.positive


@dataclass(frozen=True, eq=False)
class PrometheusAdapterRule(RuleDefaults):
    """A compiled prometheus-adapter discovery rule (custom ``rules`` or ``externalRules``)."""

    id: str
    kind: MetricKind
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
    def source(self) -> RuleSource:
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

    def discovered_metrics(self, labels_by_name: Mapping[str, Sequence[str]]) -> list[ServedMetric]:
        out: list[ServedMetric] = []
        seen: set[tuple[str, GroupResource | None]] = set()
        for series in sorted(labels_by_name):
            name = self.served_name(series)
            if name is None:
                continue
            if self.kind == "external":
                key: tuple[str, GroupResource | None] = (name, None)
                if key not in seen:
                    seen.add(key)
                    out.append(
                        ServedMetric(
                            name=name,
                            kind="external",
                            rule=self,
                            namespaced=self.namespace_label is not None,
                            series=series,
                        )
                    )
                continue
            found = self._mapper.resources_for(list(labels_by_name[series]))
            series_namespaced = any(info is resources.NAMESPACES for _, info in found)
            for _, info in found:
                if info.namespaced and not series_namespaced:
                    # prometheus-adapter would list it as a cluster-scoped pods metric that no
                    # namespaced request (the HPA's) can reach; skip it.
                    continue
                key = (name, info.group_resource)
                if key in seen:
                    continue
                seen.add(key)
                out.append(
                    ServedMetric(
                        name=name,
                        kind="custom",
                        rule=self,
                        resource=info.group_resource,
                        namespaced=info.namespaced,
                        series=series,
                    )
                )
        return out

    def _render(self, *, series: str, label_matchers: str, group_by: Sequence[str]) -> str:
        text = self._template.render(
            {
                "Series": series,
                "LabelMatchers": label_matchers or _EMPTY,
                "GroupBy": ",".join(group_by),
                "GroupBySlice": go_slice(group_by),
            }
        )
        return _drop_empty(text)

    def _custom_query(
        self, metric: ServedMetric, request: MetricRequest
    ) -> tuple[str, str, str | None]:
        if metric.resource is None:
            raise QueryError(f"custom metric {metric.name} names no resource")
        is_namespaces = metric.resource == resources.NAMESPACES.group_resource
        res_label = self._mapper.label_for(metric.resource)
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
        self, metric: ServedMetric, request: MetricRequest
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

    def build_query(self, metric: ServedMetric, request: MetricRequest, scope: Scope) -> BuiltQuery:
        """The metricsQuery rendered as prometheus-adapter renders it, then scoped."""
        query, object_labels, ns_label, namespace = self._unscoped(metric, request)
        promql.validate(query)
        return finish(
            query, scope_matchers(scope, ns_label, namespace), object_labels=object_labels
        )

    def _example_metric(self) -> ServedMetric:
        series = self._series_selector[0] or "SERIES"
        name = self.served_name(series) or series
        if self.kind == "external":
            return ServedMetric(
                name=name,
                kind="external",
                rule=self,
                namespaced=self.namespace_label is not None,
                series=series,
            )
        pods = resources.lookup("pods")
        assert pods is not None
        target = pods
        if self._mapper.label_for(pods.group_resource) is None and self._mapper.overrides:
            candidates = [i for _, i in self._mapper.overrides if i is not resources.NAMESPACES]
            target = candidates[0] if candidates else resources.NAMESPACES
        return ServedMetric(
            name=name,
            kind="custom",
            rule=self,
            resource=target.group_resource,
            namespaced=target.namespaced,
            series=series,
        )

    def describe(self) -> str:
        label = self.namespace_label if self.namespace_label is not None else "cluster-scoped"
        metric = self._example_metric()
        ns: str | None = (
            EXAMPLE_NAMESPACE if metric.namespaced or metric.kind == "external" else None
        )
        cluster = EXAMPLE_CLUSTER
        try:
            first = self._unscoped(metric, MetricRequest(namespace=ns))[0]
            if ns is not None:
                ns = example_scope(first, namespace_label=self.namespace_label)[0] or ns
            cluster = example_scope(first, namespace_label=None)[1]
            example = self.build_query(
                metric, MetricRequest(namespace=ns), Scope(cluster=cluster)
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


def _compile_regex(pattern: str, *, file: str, rule: str, field_name: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise RuleError(
            f"invalid regular expression {pattern!r}: {exc}", file=file, rule=rule, field=field_name
        ) from None


def _series_selector(query: str, *, file: str, rule: str) -> tuple[str | None, tuple[Matcher, ...]]:
    try:
        promql.validate(query)
        parsed = promql_parser.parse(query)
        infos = promql.selectors(query)
    except (QueryError, ValueError) as exc:
        raise RuleError(
            f"invalid series selector {query!r}: {exc}", file=file, rule=rule, field="seriesQuery"
        ) from None
    if not isinstance(parsed, promql_parser.VectorSelector) or len(infos) != 1:
        raise RuleError(
            f"{query!r} is not a single series selector", file=file, rule=rule, field="seriesQuery"
        )
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


def _error(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    return ".".join(str(p) for p in first["loc"]), str(first["msg"])


def compile_discovery_rule(
    raw: Any, *, kind: MetricKind, file: str, rule: str, rule_id: str
) -> PrometheusAdapterRule:
    """Validate and compile one prometheus-adapter rule. Raises :class:`RuleError`.

    ``rule`` is the rule's place in the file for error messages (``rules.external[2]``).
    """
    if not isinstance(raw, dict):
        raise RuleError("each rule must be a mapping", file=file, rule=rule)
    try:
        spec = DiscoveryRuleSpec.model_validate(raw)
    except ValidationError as exc:
        loc, msg = _error(exc)
        raise RuleError(msg, file=file, rule=rule, field=loc) from None

    res_spec = spec.resources or ResourceMappingSpec()
    name_spec = spec.name or NameMappingSpec.model_validate({})
    if not spec.metrics_query.strip():
        raise RuleError("metricsQuery is required", file=file, rule=rule, field="metricsQuery")
    if res_spec.namespaced is not None and kind == "custom":
        raise RuleError(
            "resources.namespaced applies to external rules only",
            file=file,
            rule=rule,
            field="resources.namespaced",
        )

    # Resources: template and overrides.
    template: Template | None = None
    extractor: re.Pattern[str] | None = None
    if res_spec.template:
        try:
            template = compile_template(res_spec.template, allowed=_RESOURCE_FIELDS)
        except TemplateError as exc:
            raise RuleError(str(exc), file=file, rule=rule, field="resources.template") from None
        if "Resource" not in template.fields:
            raise RuleError(
                "the label template must include <<.Resource>>",
                file=file,
                rule=rule,
                field="resources.template",
            )
        extractor = _compile_regex(
            "^"
            + template.render({"Group": "(?P<group>.+?)", "Resource": "(?P<resource>.+?)"})
            + "$",
            file=file,
            rule=rule,
            field_name="resources.template",
        )
    overrides: list[tuple[str, resources.ResourceInfo]] = []
    for label, gr in (res_spec.overrides or {}).items():
        where = f"resources.overrides.{label}"
        if not LABEL_NAME_RE.match(label):
            raise RuleError(
                f"{label!r} is not a valid label name", file=file, rule=rule, field=where
            )
        info = resources.lookup(gr.resource, gr.group)
        if info is None:
            raise RuleError(
                f"unknown resource {gr.resource!r} (group {gr.group!r}); known: "
                + ", ".join(str(i.group_resource) for i in resources.known_resources()),
                file=file,
                rule=rule,
                field=where,
            )
        overrides.append((label, info))
    mapper = _ResourceMapper(template=template, extractor=extractor, overrides=tuple(overrides))

    # Naming.
    filters: list[_SeriesFilter] = []
    for i, f in enumerate(spec.series_filters or []):
        where = f"seriesFilters[{i}]"
        if f.is_ and f.is_not:
            raise RuleError(
                "a filter has either is or isNot, not both", file=file, rule=rule, field=where
            )
        if not f.is_ and not f.is_not:
            raise RuleError("a filter needs is or isNot", file=file, rule=rule, field=where)
        filters.append(
            _SeriesFilter(
                _compile_regex(f.is_ or f.is_not, file=file, rule=rule, field_name=where),
                positive=bool(f.is_),
            )
        )
    if name_spec.matches:
        name_regex = _compile_regex(
            name_spec.matches, file=file, rule=rule, field_name="name.matches"
        )
        filters.append(_SeriesFilter(name_regex, positive=True))
    else:
        name_regex = re.compile(".*")
    name_as = name_spec.as_
    if not name_as:
        if name_regex.groups == 0:
            name_as = "$0"
        elif name_regex.groups == 1:
            name_as = "$1"
        else:
            raise RuleError(
                f"name.matches {name_spec.matches!r} has several groups: name.as is required",
                file=file,
                rule=rule,
                field="name.as",
            )

    series_selector = _series_selector(spec.series_query, file=file, rule=rule)

    # Querying.
    try:
        query_template = compile_template(spec.metrics_query, allowed=_QUERY_FIELDS)
    except TemplateError as exc:
        raise RuleError(str(exc), file=file, rule=rule, field="metricsQuery") from None

    pa_ns_label = mapper.label_for(resources.NAMESPACES.group_resource)
    if pa_ns_label is not None and not LABEL_NAME_RE.match(pa_ns_label):
        raise RuleError(
            f"the template maps namespaces to {pa_ns_label!r}, not a label name",
            file=file,
            rule=rule,
            field="resources.template",
        )
    trial_series = series_selector[0] or "series"
    trial_ns = Matcher(pa_ns_label or "namespace", "=", EXAMPLE_NAMESPACE)
    trials: list[str] = []
    for label_matchers, group_by in (
        (promql.render_matchers([trial_ns]), ["pod"] if kind == "custom" else []),
        ("", ["pod"] if kind == "custom" else []),
    ):
        text = _drop_empty(
            query_template.render(
                {
                    "Series": trial_series,
                    "LabelMatchers": label_matchers or _EMPTY,
                    "GroupBy": ",".join(group_by),
                    "GroupBySlice": go_slice(group_by),
                }
            )
        )
        try:
            promql.validate(text)
        except QueryError as exc:
            raise RuleError(
                f"metricsQuery does not render to valid PromQL ({text}): {exc.message}",
                file=file,
                rule=rule,
                field="metricsQuery",
            ) from None
        trials.append(text)

    namespace_label: str | None = pa_ns_label
    if pinned_values(trials[0], _EXPORTED_NAMESPACE):
        # The TPU device plugin is scraped in kube-system: the workload's namespace arrives as
        # exported_namespace, and a query that pins it is scoped by it.
        namespace_label = _EXPORTED_NAMESPACE
    if kind == "external" and res_spec.namespaced is False:
        namespace_label = None
    elif namespace_label is None and kind == "external":
        raise RuleError(
            "no label maps to namespaces (resources.template or resources.overrides), so the "
            "query cannot be scoped; set resources.namespaced: false to read across namespaces",
            file=file,
            rule=rule,
            field="resources",
        )

    warnings: list[str] = []
    if kind == "external" and averages_at_top_level(trials[0]):
        warnings.append(f"{rule_id}: {AVERAGE_WARNING}")
    if spec.label_value_replacements:
        warnings.append(
            f"{rule_id}: labelValueReplacements only affect LabelValuesByName, which this "
            "adapter does not support; ignored"
        )

    return PrometheusAdapterRule(
        id=rule_id,
        kind=kind,
        series_query=spec.series_query,
        metrics_query=spec.metrics_query,
        namespace_label=namespace_label,
        _template=query_template,
        _mapper=mapper,
        _filters=tuple(filters),
        _name_regex=name_regex,
        _name_as=name_as,
        _pa_namespace_label=pa_ns_label,
        _series_selector=series_selector,
        warnings=tuple(warnings),
    )
