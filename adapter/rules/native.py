"""The native rules format (a top-level ``metrics`` list) and the rules it compiles to.

One entry serves one metric with a fixed PromQL query::

    metrics:
      - name: prefill_backlog          # served name
        type: external                 # external | pods | object
        query: sum(jetstream_prefill_backlog_size)
        namespaceLabel: namespace      # default "namespace"
        clusterScoped: false           # external only: true reads across namespaces
        objectLabels: [pod, id]        # pods/object: labels naming the described object
        resource: deployments.apps     # object only
        window: 60                     # seconds, optional

The built-in presets are written in this format and compiled by the same code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from adapter import promql
from adapter.domain.errors import AdapterError, BadRequestError, QueryError
from adapter.domain.models import GroupResource
from adapter.rules import base, resources, scoping
from adapter.rules.location import RuleLocation

__all__ = ["AVERAGE_WARNING", "NativeMetricSpec", "NativeRule", "compile_native"]

NAME_RE = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:.|-]*$")
AVERAGE_WARNING = (
    "the HPA sums external metric values; an average makes replicas independent of per-pod load"
)
_MAX_QUERY = 16384


class NativeMetricSpec(BaseModel):
    """One ``metrics[]`` entry, validated strictly (unknown keys fail)."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    name: str = Field(min_length=1, max_length=253)
    type: Literal["external", "pods", "object"]
    query: str = Field(min_length=1, max_length=_MAX_QUERY)
    namespace_label: str = Field("namespace", alias="namespaceLabel")
    cluster_scoped: bool = Field(False, alias="clusterScoped")
    object_labels: list[str] | None = Field(None, alias="objectLabels", min_length=1)
    resource: str | None = None
    window: int | None = Field(None, gt=0, le=86400)


@dataclass(frozen=True, eq=False)
class NativeRule(base.RuleDefaults):
    """A compiled native (or preset) rule serving exactly one metric."""

    id: str
    source: base.RuleSource
    kind: base.MetricKind
    name: str
    query: str
    namespace_label: str | None
    resource: GroupResource | None
    served_namespaced: bool
    object_labels: tuple[str, ...]
    window: int | None
    warnings: tuple[str, ...] = field(default=())

    def static_metrics(self) -> list[base.ServedMetric]:
        return [
            base.ServedMetric(
                name=self.name,
                kind=self.kind,
                rule=self,
                resource=self.resource,
                namespaced=self.served_namespaced,
            )
        ]

    def _request_namespace(self, request: base.MetricRequest) -> str | None:
        if self.namespace_label is None:
            return None
        if request.namespace is None and self._needs_namespace():
            raise BadRequestError(
                f"metric {self.name} is namespaced: the request names no namespace"
            )
        return request.namespace

    def _needs_namespace(self) -> bool:
        # namespaces/{ns}/metrics/{m} may arrive without a request namespace (listing every
        # namespace); the provider then filters by object name.
        return self.resource != resources.NAMESPACES.group_resource

    def build_query(
        self, metric: base.ServedMetric, request: base.MetricRequest, scope: base.QueryScope
    ) -> base.BuiltQuery:
        """This rule's query with cluster, namespace and metric-selector matchers injected."""
        namespace = self._request_namespace(request)
        return scoping.finish(
            self.query,
            scoping.scope_matchers(scope, self.namespace_label, namespace),
            selector=scoping.selector_matchers(request.metric_selector),
            object_labels=self.object_labels if self.kind == "custom" else (),
            window=self.window,
        )

    def describe(self) -> str:
        where = f" on {self.resource}" if self.resource is not None else ""
        label = self.namespace_label if self.namespace_label is not None else "cluster-scoped"
        ns, cluster = scoping.example_scope(self.query, namespace_label=self.namespace_label)
        try:
            example = self.build_query(
                self.static_metrics()[0],
                base.MetricRequest(namespace=ns),
                base.QueryScope(cluster=cluster),
            ).query
        except AdapterError as exc:
            example = f"(cannot be built: {exc.message})"
        return (
            f"{self.id} ({self.source} {self.kind} metric {self.name}{where}): query {self.query}; "
            f"namespace label: {label}; for namespace {ns or '-'} in cluster {cluster}: {example}"
        )


def _rule_label(raw: Any, index: int) -> str:
    """``metrics[index]``, with the metric's name when it has one, for error messages."""
    label = f"metrics[{index}]"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        label += f" ({raw['name']})"
    return label


def _resolve_resource(text: str) -> resources.ResourceInfo | GroupResource | None:
    info = resources.lookup(text)
    if info is not None:
        return info
    resource, _, group = text.partition(".")
    if group and resource.endswith("s") and re.fullmatch(r"[a-z0-9.-]+", text):
        # A custom resource the table does not know: plural, group-qualified, assumed namespaced.
        return GroupResource(resource=resource, group=group)
    return None


@dataclass(frozen=True, slots=True)
class _Described:
    """The resource step's answer. ``resource`` is ``None`` for external metrics; ``info`` is the
    table's entry, ``None`` for a custom resource the table does not know."""

    resource: GroupResource | None = None
    info: resources.ResourceInfo | None = None


def _checked_name(spec: NativeMetricSpec, at: RuleLocation) -> str:
    """Naming: the served name is a path segment of the metrics API."""
    if not NAME_RE.match(spec.name):
        raise at.error(
            f"{spec.name!r} is not a valid metric name ([A-Za-z_:][A-Za-z0-9_:.|-]*)", "name"
        )
    return spec.name


def _described(spec: NativeMetricSpec, at: RuleLocation) -> _Described:
    """Resource: external metrics describe nothing, pods metrics pods, object metrics the
    ``resource`` they name (from the table, or a group-qualified plural it does not know)."""
    if spec.type == "external":
        if spec.resource is not None:
            raise at.error("only object metrics name a resource", "resource")
        if spec.object_labels is not None:
            raise at.error("external metrics describe no object", "objectLabels")
        return _Described()
    if spec.cluster_scoped:
        raise at.error(
            "clusterScoped applies to external metrics; custom metrics follow their "
            "resource's scope",
            "clusterScoped",
        )
    if spec.type == "pods":
        if spec.resource is not None:
            raise at.error(
                "pods metrics describe pods; use type object to name another resource", "resource"
            )
        return _Described(resources.PODS.group_resource, resources.PODS)
    return _object_resource(spec.resource, at)


def _object_resource(text: str | None, at: RuleLocation) -> _Described:
    """Resource, for object metrics: the table's entry, or a group-qualified plural it lacks."""
    if text is None:
        raise at.error("object metrics must name a resource", "resource")
    resolved = _resolve_resource(text)
    if resolved is None:
        raise at.error(
            f"unknown resource {text!r}: write it plural and group-qualified "
            "(deployments.apps, inferencepools.inference.networking.x-k8s.io)",
            "resource",
        )
    if isinstance(resolved, resources.ResourceInfo):
        return _Described(resolved.group_resource, resolved)
    return _Described(resolved)


def _namespace_scope(
    spec: NativeMetricSpec, described: _Described, ns_label: str
) -> tuple[str | None, bool]:
    """Namespace label: (the label injected with the request's namespace, ``None`` for a
    cluster-wide query; whether the served metric is namespaced)."""
    if spec.type == "external":
        return (None, False) if spec.cluster_scoped else (ns_label, True)
    if described.info is resources.NAMESPACES:
        # namespaces/{ns}/metrics/{m}: served cluster-wide, each namespace selected by its label.
        return ns_label, False
    if described.info is not None and not described.info.namespaced:
        return None, False
    return ns_label, True


def _object_labels(
    spec: NativeMetricSpec, at: RuleLocation, described: _Described, ns_label: str
) -> tuple[str, ...]:
    """Naming: the sample labels that name the described object (none for external metrics)."""
    if described.resource is None:
        return ()
    if spec.object_labels is not None:
        return tuple(at.label_name(v, "objectLabels") for v in spec.object_labels)
    if described.info is resources.NAMESPACES:
        return (ns_label,)
    if described.info is not None:
        return (described.info.singular,)
    raise at.error(
        f"resource {spec.resource} is not in the built-in table: list objectLabels",
        "objectLabels",
    )


def _checked_query(query: str, namespace_label: str | None, at: RuleLocation) -> None:
    """Query: valid PromQL that the cluster and namespace matchers can be injected into."""
    try:
        promql.validate(query)
        scoping.trial_scope(query, namespace_label=namespace_label, cluster_label="cluster")
    except QueryError as exc:
        raise at.error(exc.message, "query") from None


def _warnings(
    rule_id: str, query: str, kind: base.MetricKind, namespace_label: str | None
) -> tuple[str, ...]:
    warnings: list[str] = []
    if namespace_label is not None and scoping.pinned_values(query, namespace_label):
        warnings.append(
            f"{rule_id}: the query pins {namespace_label}; requests from any other namespace "
            "will fail with a contradiction"
        )
    if kind == "external" and scoping.averages_at_top_level(query):
        warnings.append(f"{rule_id}: {AVERAGE_WARNING}")
    return tuple(warnings)


def compile_native(
    raw: Any, *, index: int, file: str, rule_id: str, source: base.RuleSource
) -> NativeRule:
    """Validate one ``metrics[]`` entry and compile it. Raises :class:`RuleError`.

    ``rule_id`` becomes :attr:`NativeRule.id`; errors name ``file``, ``metrics[index] (name)``
    and the offending field. The steps run in this order, so the first fault reported is the
    same whatever else is wrong: name, namespace label, resource, object labels, query.
    """
    at = RuleLocation(file, _rule_label(raw, index))
    spec = at.parse(NativeMetricSpec, raw, what="metric")
    name = _checked_name(spec, at)
    ns_label = at.label_name(spec.namespace_label, "namespaceLabel")
    described = _described(spec, at)
    namespace_label, served_namespaced = _namespace_scope(spec, described, ns_label)
    object_labels = _object_labels(spec, at, described, ns_label)
    _checked_query(spec.query, namespace_label, at)
    kind: base.MetricKind = "external" if spec.type == "external" else "custom"
    return NativeRule(
        id=rule_id,
        source=source,
        kind=kind,
        name=name,
        query=spec.query,
        namespace_label=namespace_label,
        resource=described.resource,
        served_namespaced=served_namespaced,
        object_labels=object_labels,
        window=spec.window,
        warnings=_warnings(rule_id, spec.query, kind, namespace_label),
    )
