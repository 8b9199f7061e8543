"""The compiled form every rule source produces, and the request it answers.

The provider only sees these types; it never looks at YAML or templates.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from adapter.domain.models import BackendKind, GroupResource, Requirement
from adapter.domain.resources import ResourceInfo, ResourceTable

__all__ = [
    "BuiltQuery",
    "MetricKind",
    "MetricRequest",
    "QueryScope",
    "Rule",
    "RuleDefaults",
    "RuleSource",
    "ServedMetric",
]

MetricKind = Literal["custom", "external"]
RuleSource = Literal["preset", "native", "prometheus-adapter"]


@dataclass(frozen=True, slots=True)
class QueryScope:
    """Process-wide scoping: every query gets ``cluster_label="cluster"`` when ``cluster`` is set."""

    cluster: str | None = None
    cluster_label: str = "cluster"


@dataclass(frozen=True, slots=True)
class MetricRequest:
    """One API request, reduced to what a rule needs to build its query.

    ``namespace`` is ``None`` for cluster-scoped custom resources (nodes, namespaces) only.
    ``object_names`` is the set of objects the answer may describe: one name for a single-object
    request, the names matching ``labelSelector`` when the pod/object list is known, or ``None``
    when it is not (standalone mode: every object with series in the namespace).
    ``metric_selector`` is ``metricLabelSelector`` (custom) or ``labelSelector`` (external).
    """

    namespace: str | None
    object_names: tuple[str, ...] | None = None
    metric_selector: tuple[Requirement, ...] = ()


@dataclass(frozen=True, slots=True)
class BuiltQuery:
    """A query ready for the backend, and how to read its answer.

    ``object_labels``: for custom metrics, the sample labels that name the described object, tried
    in order (first non-empty wins), e.g. ``("pod", "id")``. Empty for external metrics.
    ``window``: seconds, when the rule knows the window its values cover.
    ``injected``: the scope matchers that were injected, for ``/debug`` and ``check-config``.
    """

    query: str
    object_labels: tuple[str, ...] = ()
    window: int | None = None
    injected: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ServedMetric:
    """One metric the API lists and serves.

    ``resource`` is the described resource for custom metrics (``pods``, ``deployments.apps``,
    ``namespaces`` for ``namespaces/{ns}/metrics/{m}``, ``nodes``) and ``None`` for external ones.
    ``namespaced``: custom — whether the resource is namespaced; external — whether the rule is
    scoped to the request's namespace (``False`` only for rules explicitly marked cluster-scoped).
    ``series`` is the underlying series name (prometheus-adapter's ``<<.Series>>``), or "".
    ``described``: the resource as the mapping found it (kind and version of the described
    objects), when the rule knows it; ``object_label``: the series label naming the described
    object, when the rule found it at discovery.
    """

    name: str
    kind: MetricKind
    rule: Rule = field(compare=False, hash=False, repr=False)
    resource: GroupResource | None = None
    namespaced: bool = True
    series: str = ""
    described: ResourceInfo | None = field(default=None, compare=False, repr=False)
    object_label: str | None = field(default=None, compare=False, repr=False)


class Rule(Protocol):
    """A compiled rule. Compilation happens at load; a bad rule fails there, not on a request."""

    @property
    def id(self) -> str:
        """Stable, human-readable: ``preset:jetstream_prefill_backlog_size``, ``rules.yaml#external[2]``."""
        ...

    @property
    def source(self) -> RuleSource: ...

    @property
    def kind(self) -> MetricKind: ...

    @property
    def namespace_label(self) -> str | None:
        """The label holding the workload's namespace, injected as ``label="<request ns>"``.

        ``None`` means the rule is explicitly cluster-scoped (it reads across namespaces).
        """
        ...

    @property
    def backend(self) -> BackendKind:
        """Which backend evaluates this rule's queries: ``promql`` or ``cloud-monitoring``."""
        ...

    def resolve(
        self, kind: MetricKind, resource: GroupResource | None, name: str
    ) -> ServedMetric | None:
        """For rules serving a family of names not listed in advance (Stackdriver-style
        ``prometheus.googleapis.com|<metric>|gauge``): the served metric for ``name``, or ``None``.
        Listed rules return ``None``."""
        ...

    def static_metrics(self) -> list[ServedMetric]:
        """Metrics served without discovery (presets, native rules). Empty for discovered rules."""
        ...

    def discovery_selectors(self) -> list[str]:
        """Series selectors whose metric names must be discovered (``seriesQuery``); empty if static."""
        ...

    def series_selector_for(self, name: str) -> str:
        """The selector that lists the label names of series called ``name`` for this rule."""
        ...

    def discovered_metrics(
        self, labels_by_name: Mapping[str, Sequence[str]], table: ResourceTable | None = None
    ) -> list[ServedMetric]:
        """Metrics served given discovered series names and the label names each carries.

        Applies ``seriesFilters``, ``name.matches``/``name.as`` and the resource mapping, with
        ``table`` (the cluster's resources; ``None``: the built-in table).
        """
        ...

    def missing_resources(self, table: ResourceTable) -> tuple[str, ...]:
        """What the rule names that ``table`` lacks (an override's CRD not created yet), one
        line each: its metrics on those resources are served once the table has them."""
        ...

    def build_query(
        self, metric: ServedMetric, request: MetricRequest, scope: QueryScope
    ) -> BuiltQuery:
        """The final, scoped query. Raises BadRequestError for selectors it cannot honour."""
        ...

    def describe(self) -> str:
        """One paragraph for ``check-config`` and ``/debug``: the source query and injected matchers."""
        ...


class RuleDefaults:
    """What most rules share: the PromQL backend, no name family, no discovery.

    A rule class inherits it and overrides only what it serves differently.
    """

    __slots__ = ()

    @property
    def backend(self) -> BackendKind:
        return "promql"

    def resolve(
        self, kind: MetricKind, resource: GroupResource | None, name: str
    ) -> ServedMetric | None:
        return None

    def static_metrics(self) -> list[ServedMetric]:
        return []

    def discovery_selectors(self) -> list[str]:
        return []

    def series_selector_for(self, name: str) -> str:
        # Rules without discovery: the metric name itself is the only sensible answer.
        return name

    def discovered_metrics(
        self, labels_by_name: Mapping[str, Sequence[str]], table: ResourceTable | None = None
    ) -> list[ServedMetric]:
        return []

    def missing_resources(self, table: ResourceTable) -> tuple[str, ...]:
        return ()
