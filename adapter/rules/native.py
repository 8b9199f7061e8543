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

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from adapter import promql
from adapter.domain.errors import AdapterError, BadRequestError, QueryError, RuleError
from adapter.domain.models import GroupResource
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
from adapter.rules.scoping import (
    LABEL_NAME_RE,
    averages_at_top_level,
    example_scope,
    finish,
    pinned_values,
    scope_matchers,
    selector_matchers,
    trial_scope,
)

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
class NativeRule(RuleDefaults):
    """A compiled native (or preset) rule serving exactly one metric."""

    id: str
    source: RuleSource
    kind: MetricKind
    name: str
    query: str
    namespace_label: str | None
    resource: GroupResource | None
    served_namespaced: bool
    object_labels: tuple[str, ...]
    window: int | None
    warnings: tuple[str, ...] = field(default=())

    def static_metrics(self) -> list[ServedMetric]:
        return [
            ServedMetric(
                name=self.name,
                kind=self.kind,
                rule=self,
                resource=self.resource,
                namespaced=self.served_namespaced,
            )
        ]

    def _request_namespace(self, request: MetricRequest) -> str | None:
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

    def build_query(self, metric: ServedMetric, request: MetricRequest, scope: Scope) -> BuiltQuery:
        """This rule's query with cluster, namespace and metric-selector matchers injected."""
        namespace = self._request_namespace(request)
        return finish(
            self.query,
            scope_matchers(scope, self.namespace_label, namespace),
            selector=selector_matchers(request.metric_selector),
            object_labels=self.object_labels if self.kind == "custom" else (),
            window=self.window,
        )

    def describe(self) -> str:
        where = f" on {self.resource}" if self.resource is not None else ""
        label = self.namespace_label if self.namespace_label is not None else "cluster-scoped"
        ns, cluster = example_scope(self.query, namespace_label=self.namespace_label)
        try:
            example = self.build_query(
                self.static_metrics()[0], MetricRequest(namespace=ns), Scope(cluster=cluster)
            ).query
        except AdapterError as exc:
            example = f"(cannot be built: {exc.message})"
        return (
            f"{self.id} ({self.source} {self.kind} metric {self.name}{where}): query {self.query}; "
            f"namespace label: {label}; for namespace {ns or '-'} in cluster {cluster}: {example}"
        )


def _pydantic_error(exc: ValidationError) -> tuple[str, str]:
    first = exc.errors()[0]
    loc = ".".join(str(part) for part in first["loc"])
    return loc, str(first["msg"])


def _resolve_resource(text: str) -> resources.ResourceInfo | GroupResource | None:
    info = resources.lookup(text)
    if info is not None:
        return info
    resource, _, group = text.partition(".")
    if group and resource.endswith("s") and re.fullmatch(r"[a-z0-9.-]+", text):
        # A custom resource the table does not know: plural, group-qualified, assumed namespaced.
        return GroupResource(resource=resource, group=group)
    return None


def _checked_label(value: str, *, file: str, rule: str, field_name: str) -> str:
    if not LABEL_NAME_RE.match(value):
        raise RuleError(
            f"{value!r} is not a valid label name", file=file, rule=rule, field=field_name
        )
    return value


def compile_native(
    raw: Any, *, index: int, file: str, rule_id: str, source: RuleSource
) -> NativeRule:
    """Validate one ``metrics[]`` entry and compile it. Raises :class:`RuleError`.

    ``rule_id`` becomes :attr:`NativeRule.id`; errors name ``file``, ``metrics[index] (name)``
    and the offending field.
    """
    label = f"metrics[{index}]"
    if isinstance(raw, dict) and isinstance(raw.get("name"), str):
        label += f" ({raw['name']})"
    if not isinstance(raw, dict):
        raise RuleError("each metric must be a mapping", file=file, rule=label)
    try:
        spec = NativeMetricSpec.model_validate(raw)
    except ValidationError as exc:
        loc, msg = _pydantic_error(exc)
        raise RuleError(msg, file=file, rule=label, field=loc) from None

    if not NAME_RE.match(spec.name):
        raise RuleError(
            f"{spec.name!r} is not a valid metric name ([A-Za-z_:][A-Za-z0-9_:.|-]*)",
            file=file,
            rule=label,
            field="name",
        )
    ns_label = _checked_label(
        spec.namespace_label, file=file, rule=label, field_name="namespaceLabel"
    )
    warnings: list[str] = []

    kind: MetricKind = "external" if spec.type == "external" else "custom"
    resource: GroupResource | None = None
    served_namespaced = True
    object_labels: tuple[str, ...] = ()
    namespace_label: str | None = ns_label

    if spec.type == "external":
        if spec.resource is not None:
            raise RuleError(
                "only object metrics name a resource", file=file, rule=label, field="resource"
            )
        if spec.object_labels is not None:
            raise RuleError(
                "external metrics describe no object", file=file, rule=label, field="objectLabels"
            )
        if spec.cluster_scoped:
            namespace_label = None
            served_namespaced = False
    else:
        if spec.cluster_scoped:
            raise RuleError(
                "clusterScoped applies to external metrics; custom metrics follow their "
                "resource's scope",
                file=file,
                rule=label,
                field="clusterScoped",
            )
        singular: str | None
        if spec.type == "pods":
            if spec.resource is not None:
                raise RuleError(
                    "pods metrics describe pods; use type object to name another resource",
                    file=file,
                    rule=label,
                    field="resource",
                )
            resource = GroupResource("pods")
            singular = "pod"
        else:
            if spec.resource is None:
                raise RuleError(
                    "object metrics must name a resource", file=file, rule=label, field="resource"
                )
            resolved = _resolve_resource(spec.resource)
            if resolved is None:
                raise RuleError(
                    f"unknown resource {spec.resource!r}: write it plural and group-qualified "
                    "(deployments.apps, inferencepools.inference.networking.x-k8s.io)",
                    file=file,
                    rule=label,
                    field="resource",
                )
            if isinstance(resolved, resources.ResourceInfo):
                resource = resolved.group_resource
                singular = resolved.singular
                if resolved is resources.NAMESPACES:
                    served_namespaced = False
                    singular = None
                elif not resolved.namespaced:
                    namespace_label = None
                    served_namespaced = False
            else:
                resource = resolved
                singular = None
        if spec.object_labels is not None:
            object_labels = tuple(
                _checked_label(v, file=file, rule=label, field_name="objectLabels")
                for v in spec.object_labels
            )
        elif resource == resources.NAMESPACES.group_resource:
            object_labels = (ns_label,)
        elif singular is not None:
            object_labels = (singular,)
        else:
            raise RuleError(
                f"resource {spec.resource} is not in the built-in table: list objectLabels",
                file=file,
                rule=label,
                field="objectLabels",
            )

    try:
        promql.validate(spec.query)
        trial_scope(spec.query, namespace_label=namespace_label, cluster_label="cluster")
    except QueryError as exc:
        raise RuleError(exc.message, file=file, rule=label, field="query") from None

    if namespace_label is not None and pinned_values(spec.query, namespace_label):
        warnings.append(
            f"{rule_id}: the query pins {namespace_label}; requests from any other namespace "
            "will fail with a contradiction"
        )
    if kind == "external" and averages_at_top_level(spec.query):
        warnings.append(f"{rule_id}: {AVERAGE_WARNING}")

    return NativeRule(
        id=rule_id,
        source=source,
        kind=kind,
        name=spec.name,
        query=spec.query,
        namespace_label=namespace_label,
        resource=resource,
        served_namespaced=served_namespaced,
        object_labels=object_labels,
        window=spec.window,
        warnings=tuple(warnings),
    )
