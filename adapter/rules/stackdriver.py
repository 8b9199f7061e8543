"""Stackdriver-style metric names (``prometheus.googleapis.com|<metric>|gauge``), served by pattern.

custom-metrics-stackdriver-adapter names a Cloud Monitoring metric type with every ``/`` written
as ``|`` (a path segment cannot hold ``/``). HPAs written for it keep working here:

- pods ``prometheus.googleapis.com|<metric>|gauge`` (``|counter``: a per-second rate);
- external ``prometheus.googleapis.com|<metric>|gauge`` (``|counter``);
- external ``kubernetes.io|node|…`` (cluster-scoped), ``kubernetes.io|pod|…`` and
  ``kubernetes.io|container|…`` (namespaced) system metrics.

These names are not listed in discovery (there are too many; the Stackdriver adapter lists a
placeholder); the rules answer any name of the family through :meth:`resolve`.

Two modes, chosen per process:

``cloud-monitoring``
    The query is a canonical JSON request spec (sorted keys) for
    :class:`adapter.backends.cloud_monitoring.CloudMonitoringBackend`: project, the filters (one
    per chunk of 100 pods), lookback window, aligner, reducer. Filters are built only by
    :mod:`adapter.rules.monitoring_filter`.
``promql``
    The same names answered by PromQL on the ``promql`` backend: pods use the matching preset's
    query when there is one (``jetstream_slots_used_percentage`` is then the mean over ``idx``),
    external metrics return the series themselves, ``kubernetes.io|node|accelerator|memory_used``
    becomes ``kubernetes_io:node_accelerator_memory_used{monitored_resource="k8s_node"}``.

Namespace scoping, both modes: the request namespace is injected (``resource.labels.namespace`` /
``namespace``) unless an external selector pins ``metric.labels.exported_namespace`` (the TPU
device plugin's series live in kube-system and carry the workload's namespace there). Then that
value must be the request's namespace, or the request fails with 403 Forbidden; any selector
value contradicting the injected scope (namespace, cluster, location) is also 403.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from adapter import promql
from adapter.domain.errors import BadRequestError, ConfigError, ForbiddenError
from adapter.domain.models import BackendKind, GroupResource, Matcher, Requirement
from adapter.rules import monitoring_filter as mf
from adapter.rules.base import (
    BuiltQuery,
    MetricKind,
    MetricRequest,
    QueryScope,
    RuleDefaults,
    RuleSource,
    ServedMetric,
)
from adapter.rules.scoping import finish, scope_matchers
from adapter.settings import Settings

__all__ = [
    "DEFAULT_ALIGNMENT_PERIOD",
    "DEFAULT_WINDOW",
    "POD_CHUNK",
    "ParsedName",
    "PrometheusFamilyRule",
    "StackdriverMode",
    "StackdriverOptions",
    "SystemFamilyRule",
    "family_rules",
    "options_from_settings",
    "parse_name",
    "resolve_mode",
    "stackdriver_rules",
]

StackdriverMode = Literal["cloud-monitoring", "promql", "off"]
DEFAULT_WINDOW: Final = 120
"""Seconds. Cloud Monitoring lookback for gauges (the Stackdriver adapter uses 300: values up to
5 minutes old); also the PromQL ``rate()`` window for counters."""
DEFAULT_ALIGNMENT_PERIOD: Final = 60
"""Seconds. Cloud Monitoring alignment period for ``ALIGN_RATE`` (counters)."""
POD_CHUNK: Final = mf.MAX_ONE_OF
"""Pods per ``metric.labels.pod = one_of(…)``: one ListTimeSeries call per chunk."""

_PROMETHEUS_PREFIX: Final = "prometheus.googleapis.com"
_SYSTEM_PREFIX: Final = "kubernetes.io"
_METRIC_RE: Final = re.compile(r"^[A-Za-z_:][A-Za-z0-9_:]*$")
_SEGMENT_RE: Final = re.compile(r"^[a-z0-9_]+$")
_SYSTEM_RESOURCES: Final = {"node": "k8s_node", "pod": "k8s_pod", "container": "k8s_container"}
_EXPORTED_NS: Final = "metric.labels.exported_namespace"
_MODES: Final = ("cloud-monitoring", "promql", "off")


@dataclass(frozen=True, slots=True)
class StackdriverOptions:
    """How Stackdriver-style names are served. ``window``/``alignment_period`` in seconds.

    ``project`` is required in ``cloud-monitoring`` mode; ``location`` (the cluster's zone or
    region, GMP's ``location`` target label) is filtered on when set.
    """

    mode: StackdriverMode = "promql"
    project: str | None = None
    location: str | None = None
    window: int = DEFAULT_WINDOW
    alignment_period: int = DEFAULT_ALIGNMENT_PERIOD


def resolve_mode(setting: str, project: str | None) -> StackdriverMode:
    """``auto`` → ``cloud-monitoring`` when a project is configured, else ``promql``.

    Raises :class:`ConfigError` for unknown modes and for ``cloud-monitoring`` without a project.
    """
    if setting == "auto":
        return "cloud-monitoring" if project else "promql"
    if setting not in _MODES:
        raise ConfigError(
            f"--stackdriver-names must be auto, cloud-monitoring, promql or off, not {setting!r}"
        )
    if setting == "cloud-monitoring" and not project:
        raise ConfigError(
            "--stackdriver-names=cloud-monitoring needs a project (--cloud-monitoring-project)"
        )
    mode: StackdriverMode = setting  # type: ignore[assignment]  # checked against _MODES
    return mode


@dataclass(frozen=True, slots=True)
class ParsedName:
    """A Stackdriver-style name taken apart.

    ``metric_type``: the Cloud Monitoring type (``|`` → ``/``). ``series``: the PromQL metric
    name. ``counter``: ``True`` for ``|counter``, ``False`` for ``|gauge``, ``None`` when the
    name does not say (system metrics: the metric descriptor decides). ``resource``: ``node``,
    ``pod`` or ``container`` for system metrics, else ``None``.
    """

    name: str
    metric_type: str
    series: str
    counter: bool | None
    resource: str | None = None


def parse_name(name: str) -> ParsedName | None:
    """The parsed name, or ``None`` when ``name`` is not of the served families."""
    parts = name.split("|")
    if len(parts) == 3 and parts[0] == _PROMETHEUS_PREFIX:
        metric, kind = parts[1], parts[2]
        if _METRIC_RE.match(metric) and kind in ("gauge", "counter"):
            return ParsedName(name, "/".join(parts), metric, kind == "counter")
        return None
    if (
        len(parts) >= 3
        and parts[0] == _SYSTEM_PREFIX
        and parts[1] in _SYSTEM_RESOURCES
        and all(_SEGMENT_RE.match(p) for p in parts[1:])
    ):
        # GMP's PromQL name for a system metric: first "/" → ":", other "/" and "." → "_".
        series = "kubernetes_io:" + "_".join(parts[1:])
        return ParsedName(name, "/".join(parts), series, None, parts[1])
    return None


def _spec_text(spec: Mapping[str, Any]) -> str:
    # Canonical: the same request always gives the same text, so it keys the cache.
    return json.dumps(spec, sort_keys=True, separators=(",", ":"))


def _chunks(names: Sequence[str]) -> list[list[str]]:
    ordered = sorted(set(names))
    return [ordered[i : i + POD_CHUNK] for i in range(0, len(ordered), POD_CHUNK)]


def _pinned(requirements: Sequence[Requirement], key: str) -> list[Requirement]:
    return [r for r in requirements if r.key == key]


def _check_scope(requirements: Sequence[Requirement], fixed: Mapping[str, str]) -> None:
    """A selector may narrow the scope, never leave it: ``=`` on a scope key must agree."""
    for req in requirements:
        want = fixed.get(req.key)
        if want is None:
            continue
        if req.op in ("=", "in") and set(req.values) != {want}:
            raise ForbiddenError(
                f"selector {req.key} {req.op} {','.join(req.values)} reaches outside this "
                f"request's scope ({req.key}={want})"
            )


def _exported_namespace(requirements: Sequence[Requirement], namespace: str | None) -> bool:
    """Whether the selector pins ``metric.labels.exported_namespace`` (to the request's
    namespace: anything else is :class:`ForbiddenError`)."""
    pins = _pinned(requirements, _EXPORTED_NS)
    if not pins:
        return False
    for req in pins:
        if req.op not in ("=", "in") or set(req.values) != {namespace}:
            raise ForbiddenError(
                f"{_EXPORTED_NS} must equal the request's namespace {namespace!r}; this "
                "selector would read another namespace's workloads"
            )
    return True


def _promql_selector(
    requirements: Sequence[Requirement], rename: Mapping[str, str], *, allow_resource: bool
) -> list[Requirement]:
    out: list[Requirement] = []
    for req in requirements:
        if req.key.startswith("metric.labels."):
            label = req.key.removeprefix("metric.labels.")
        elif req.key in rename:
            label = rename[req.key]
        elif allow_resource and req.key.startswith("resource.labels."):
            label = req.key.removeprefix("resource.labels.")
        else:
            raise BadRequestError(
                f"selector key {req.key!r} has no PromQL equivalent (use metric.labels.<label>"
                f"{', ' + ', '.join(sorted(rename)) if rename else ''})"
            )
        out.append(Requirement(label, req.op, req.values))
    return out


def _scope_labels(
    cluster: str | None, cluster_label: str, namespace: str | None, namespace_label: str
) -> dict[str, str]:
    """The labels a request's scope fixes: the cluster when one is configured, the namespace
    when the query is scoped by one."""
    fixed: dict[str, str] = {}
    if cluster:
        fixed[cluster_label] = cluster
    if namespace is not None:
        fixed[namespace_label] = namespace
    return fixed


class _FamilyRule(RuleDefaults, ABC):
    """The backend a name family uses follows ``--stackdriver-names``.

    :meth:`build_query` checks the name, and the request's namespace unless the rule is
    cluster-scoped (no ``namespace_label``), then builds the query for that backend:
    :meth:`_cloud_monitoring` or :meth:`_promql`.
    """

    __slots__ = ()
    options: StackdriverOptions

    @property
    def backend(self) -> BackendKind:
        return "cloud-monitoring" if self._cm else "promql"

    @property
    def _cm(self) -> bool:
        return self.options.mode == "cloud-monitoring"

    def build_query(
        self, metric: ServedMetric, request: MetricRequest, scope: QueryScope
    ) -> BuiltQuery:
        parsed = self._parsed(metric.name)
        if self.namespace_label is not None and request.namespace is None:
            raise BadRequestError(f"metric {metric.name} is namespaced: the request names none")
        if self._cm:
            return self._cloud_monitoring(parsed, request, scope)
        return self._promql(parsed, request, scope)

    @property
    @abstractmethod
    def namespace_label(self) -> str | None:
        """As :attr:`Rule.namespace_label`: ``None`` for a cluster-scoped family."""

    @abstractmethod
    def _parsed(self, name: str) -> ParsedName:
        """``name`` taken apart; :class:`BadRequestError` when it is not of this family."""

    @abstractmethod
    def _cloud_monitoring(
        self, parsed: ParsedName, request: MetricRequest, scope: QueryScope
    ) -> BuiltQuery: ...

    @abstractmethod
    def _promql(
        self, parsed: ParsedName, request: MetricRequest, scope: QueryScope
    ) -> BuiltQuery: ...

    def _monitoring_scope(
        self,
        selector: Sequence[Requirement],
        project: str,
        scope: QueryScope,
        namespace: str | None,
        *,
        cluster_label: str,
        namespace_label: str,
    ) -> list[str]:
        """The scope clauses of a Cloud Monitoring filter: project, location, cluster, and the
        namespace when one is given. The selector may narrow them, never leave them."""
        fixed = {"resource.labels.project_id": project}
        if self.options.location:
            fixed["resource.labels.location"] = self.options.location
        fixed |= _scope_labels(
            scope.cluster,
            f"resource.labels.{cluster_label}",
            namespace,
            f"resource.labels.{namespace_label}",
        )
        _check_scope(selector, fixed)
        return [mf.equals(k, v) for k, v in fixed.items()]

    def _time_series_request(
        self,
        parsed: ParsedName,
        project: str,
        sel: mf.SelectorFilter,
        *,
        aligner: str | None,
        alignment_period: int,
        combine: str,
        filters: list[str],
    ) -> str:
        """The canonical ListTimeSeries request spec the cloud-monitoring backend runs."""
        return _spec_text(
            {
                "aligner": aligner,
                "alignmentPeriod": alignment_period,
                "combine": combine,
                "filters": filters,
                "metricType": parsed.metric_type,
                "project": project,
                "reducer": sel.reducer,
                "window": self.options.window,
            }
        )


@dataclass(frozen=True, eq=False)
class PrometheusFamilyRule(_FamilyRule):
    """Serves ``prometheus.googleapis.com|<metric>|gauge|counter`` for one kind.

    ``pods_queries``: metric name → (preset pods query, object labels), used in PromQL mode.
    """

    kind: MetricKind
    options: StackdriverOptions
    pods_queries: Mapping[str, tuple[str, tuple[str, ...]]] = field(default_factory=dict)
    source: RuleSource = "preset"

    @property
    def id(self) -> str:
        return f"stackdriver:{'pods' if self.kind == 'custom' else 'external'}/{_PROMETHEUS_PREFIX}"

    @property
    def namespace_label(self) -> str | None:
        return "resource.labels.namespace" if self._cm else "namespace"

    def resolve(
        self, kind: MetricKind, resource: GroupResource | None, name: str
    ) -> ServedMetric | None:
        if kind != self.kind or (kind == "custom" and resource != GroupResource("pods")):
            return None
        parsed = parse_name(name)
        if parsed is None or parsed.resource is not None:
            return None
        return ServedMetric(
            name=name, kind=kind, rule=self, resource=resource, series=parsed.series
        )

    def _parsed(self, name: str) -> ParsedName:
        parsed = parse_name(name)
        if parsed is None:  # resolve() accepted it, so this is a programming error
            raise BadRequestError(f"{name!r} is not a Stackdriver-style name")
        return parsed

    def _cloud_monitoring(
        self, parsed: ParsedName, request: MetricRequest, scope: QueryScope
    ) -> BuiltQuery:
        opts = self.options
        assert opts.project is not None  # resolve_mode guarantees it
        external = self.kind == "external"
        selector = request.metric_selector
        sel = mf.selector_filter(
            selector,
            prefixes=mf.EXTERNAL_PREFIXES if external else mf.CUSTOM_PREFIXES,
            full_names=mf.EXTERNAL_FULL_NAMES if external else mf.CUSTOM_FULL_NAMES,
        )
        project = sel.project or opts.project
        pinned = external and _exported_namespace(selector, request.namespace)
        assert request.namespace is not None
        scope_clauses = self._monitoring_scope(
            selector,
            project,
            scope,
            None if pinned else request.namespace,
            cluster_label="cluster",
            namespace_label="namespace",
        )
        base = [
            mf.equals("metric.type", parsed.metric_type),
            mf.equals("resource.type", "prometheus_target"),
            *scope_clauses,
            *sel.clauses,
        ]
        if not external and request.object_names is not None:
            filters = [
                mf.join([*base, mf.one_of("metric.labels.pod", chunk)])
                for chunk in _chunks(request.object_names)
            ]
        else:
            filters = [mf.join(base)]
        counter = bool(parsed.counter)
        query = self._time_series_request(
            parsed,
            project,
            sel,
            aligner="ALIGN_RATE" if counter else "ALIGN_NEXT_OLDER",
            alignment_period=opts.alignment_period if counter else opts.window,
            combine="series" if external else "pods",
            filters=filters,
        )
        injected = list(scope_clauses)
        if pinned:
            injected.append(f"{_EXPORTED_NS} pinned by the selector (namespace not forced)")
        return BuiltQuery(
            query=query,
            object_labels=() if external else ("pod",),
            window=opts.alignment_period if counter else None,
            injected=tuple(injected),
        )

    def _promql(self, parsed: ParsedName, request: MetricRequest, scope: QueryScope) -> BuiltQuery:
        external = self.kind == "external"
        reqs = _promql_selector(
            request.metric_selector,
            {"resource.labels.namespace": "namespace", "resource.labels.cluster": "cluster"}
            if external
            else {},
            allow_resource=False,
        )
        pinned = external and _exported_namespace(request.metric_selector, request.namespace)
        assert request.namespace is not None
        namespace = None if pinned else request.namespace
        _check_scope(
            reqs, _scope_labels(scope.cluster, scope.cluster_label, namespace, "namespace")
        )
        w = self.options.window
        selector = f"rate({parsed.series}[{w}s])" if parsed.counter else parsed.series
        object_labels: tuple[str, ...] = ()
        if external:
            query = selector
        elif not parsed.counter and parsed.series in self.pods_queries:
            query, object_labels = self.pods_queries[parsed.series]
        else:
            query, object_labels = f"sum by (pod, id) ({selector})", ("pod", "id")
        return finish(
            query,
            scope_matchers(scope, None if pinned else "namespace", request.namespace),
            selector=promql.requirements_to_matchers(reqs),
            object_labels=object_labels,
            window=w if parsed.counter else None,
        )

    def describe(self) -> str:
        what = "pods" if self.kind == "custom" else "external"
        if self._cm:
            how = (
                f"Cloud Monitoring ListTimeSeries in project {self.options.project}: metric.type = "
                '"prometheus.googleapis.com/<metric>/gauge", resource.type = "prometheus_target",'
                " project_id, location, cluster and namespace filtered"
                + (", metric.labels.pod = one_of(<pods>)" if self.kind == "custom" else "")
                + f"; newest point of the last {self.options.window}s"
            )
        else:
            how = (
                "PromQL: "
                + (
                    "the pods preset's query for <metric> if there is one, else "
                    "sum by (pod, id) (<metric>)"
                    if self.kind == "custom"
                    else "the <metric> series themselves"
                )
                + "; namespace and cluster injected"
            )
        return (
            f"{self.id} ({what} metrics {_PROMETHEUS_PREFIX}|<metric>|gauge and |counter, "
            f"answered by name, not listed in discovery): {how}; an external selector pinning "
            f"{_EXPORTED_NS} to the request namespace replaces the namespace filter"
        )


@dataclass(frozen=True, eq=False)
class SystemFamilyRule(_FamilyRule):
    """Serves external ``kubernetes.io|<resource>|…`` GKE system metrics.

    ``resources`` ⊆ {node, pod, container}. Node metrics are cluster-scoped
    (``namespace_label`` ``None``); pod and container metrics are scoped by ``namespace_name``.
    """

    resources: tuple[str, ...]
    options: StackdriverOptions
    namespaced: bool
    source: RuleSource = "preset"
    kind: MetricKind = "external"

    @property
    def id(self) -> str:
        return f"stackdriver:external/{_SYSTEM_PREFIX}|{'+'.join(self.resources)}"

    @property
    def namespace_label(self) -> str | None:
        if not self.namespaced:
            return None
        return "resource.labels.namespace_name" if self._cm else "namespace_name"

    def resolve(
        self, kind: MetricKind, resource: GroupResource | None, name: str
    ) -> ServedMetric | None:
        if kind != "external":
            return None
        parsed = parse_name(name)
        if parsed is None or parsed.resource not in self.resources:
            return None
        return ServedMetric(
            name=name, kind=kind, rule=self, namespaced=self.namespaced, series=parsed.series
        )

    def _parsed(self, name: str) -> ParsedName:
        parsed = parse_name(name)
        if parsed is None or parsed.resource is None:
            raise BadRequestError(f"{name!r} is not a kubernetes.io system metric name")
        return parsed

    def _cloud_monitoring(
        self, parsed: ParsedName, request: MetricRequest, scope: QueryScope
    ) -> BuiltQuery:
        opts = self.options
        assert opts.project is not None
        assert parsed.resource is not None
        sel = mf.selector_filter(
            request.metric_selector,
            prefixes=mf.EXTERNAL_PREFIXES,
            full_names=mf.EXTERNAL_FULL_NAMES,
        )
        project = sel.project or opts.project
        scope_clauses = self._monitoring_scope(
            request.metric_selector,
            project,
            scope,
            request.namespace if self.namespaced else None,
            cluster_label="cluster_name",
            namespace_label="namespace_name",
        )
        clauses = [
            mf.equals("metric.type", parsed.metric_type),
            mf.equals("resource.type", _SYSTEM_RESOURCES[parsed.resource]),
            *scope_clauses,
            *sel.clauses,
        ]
        query = self._time_series_request(
            parsed,
            project,
            sel,
            # The name does not say gauge or counter: the backend reads the metric descriptor.
            aligner=None,
            alignment_period=opts.alignment_period,
            combine="series",
            filters=[mf.join(clauses)],
        )
        injected = list(scope_clauses)
        if not self.namespaced:
            injected.append("cluster-scoped: no namespace filter (node metrics)")
        return BuiltQuery(query=query, injected=tuple(injected))

    def _promql(self, parsed: ParsedName, request: MetricRequest, scope: QueryScope) -> BuiltQuery:
        assert parsed.resource is not None
        reqs = _promql_selector(request.metric_selector, {}, allow_resource=True)
        # GKE system metrics carry cluster_name, not the scrape target's cluster label.
        system_scope = QueryScope(cluster=scope.cluster, cluster_label="cluster_name")
        namespace = request.namespace if self.namespaced else None
        _check_scope(
            reqs, _scope_labels(scope.cluster, "cluster_name", namespace, "namespace_name")
        )
        resource = _SYSTEM_RESOURCES[parsed.resource]
        query = f"{parsed.series}{{{promql.render_matcher(Matcher('monitored_resource', '=', resource))}}}"
        return finish(
            query,
            scope_matchers(
                system_scope, "namespace_name" if self.namespaced else None, request.namespace
            ),
            selector=promql.requirements_to_matchers(reqs),
        )

    def describe(self) -> str:
        scope = (
            "scoped to the request namespace (namespace_name)"
            if self.namespaced
            else "explicitly cluster-scoped: node metrics have no namespace"
        )
        how = (
            f"Cloud Monitoring ListTimeSeries in project {self.options.project} (kind from the "
            "metric descriptor)"
            if self._cm
            else "PromQL kubernetes_io:<resource>_<path>{monitored_resource=...}"
        )
        return (
            f"{self.id} (external metrics {_SYSTEM_PREFIX}|{{{','.join(self.resources)}}}|…, "
            f"answered by name, not listed in discovery): {how}; cluster filtered on "
            f"cluster_name; {scope}"
        )


def stackdriver_rules(
    options: StackdriverOptions,
    *,
    pods_queries: Mapping[str, tuple[str, tuple[str, ...]]] | None = None,
) -> tuple[PrometheusFamilyRule | SystemFamilyRule, ...]:
    """The family rules for ``options.mode`` (none when ``off``).

    Raises :class:`ConfigError` for ``cloud-monitoring`` without a project, or a non-positive
    window or alignment period.
    """
    if options.mode == "off":
        return ()
    if options.mode == "cloud-monitoring" and not options.project:
        raise ConfigError("Cloud Monitoring mode for Stackdriver-style names needs a project")
    if options.window <= 0 or options.alignment_period <= 0:
        raise ConfigError("the Stackdriver window and alignment period must be positive seconds")
    queries = dict(pods_queries or {})
    return (
        PrometheusFamilyRule("custom", options, queries),
        PrometheusFamilyRule("external", options, queries),
        SystemFamilyRule(("node",), options, namespaced=False),
        SystemFamilyRule(("pod", "container"), options, namespaced=True),
    )


def family_rules(rules: Sequence[object]) -> list[dict[str, Any]]:
    """For ``/debug/metrics``: the name-family rules among ``rules``, which discovery cannot list."""
    out: list[dict[str, Any]] = []
    for rule in rules:
        if isinstance(rule, PrometheusFamilyRule | SystemFamilyRule):
            out.append(
                {
                    "rule": rule.id,
                    "kind": rule.kind,
                    "backend": rule.backend,
                    "scope": "cluster-scoped"
                    if rule.namespace_label is None
                    else f"namespace label {rule.namespace_label!r}",
                    "description": rule.describe(),
                }
            )
    return out


def options_from_settings(settings: Settings) -> StackdriverOptions | None:
    """The options ``settings`` describe; ``None`` when the names are turned off.

    The project is ``cloud_monitoring_project``, else ``gmp_project``. Raises
    :class:`ConfigError` (see :func:`resolve_mode`).
    """
    project = settings.cloud_monitoring.project or settings.gmp.project
    mode = resolve_mode(settings.cloud_monitoring.stackdriver_names, project)
    if mode == "off":
        return None
    return StackdriverOptions(
        mode=mode,
        project=project,
        location=settings.cloud_monitoring.location,
        window=settings.cloud_monitoring.stackdriver_window,
        alignment_period=settings.cloud_monitoring.alignment_period,
    )
