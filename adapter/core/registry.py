"""Which metrics are served: a snapshot refreshed in the background.

Listing (discovery documents, ``/debug/metrics``) reads the snapshot only and never does I/O.
Static rules (presets, native rules) are listed from the start; prometheus-adapter rules are
discovered from metric names and label names — never by listing series, so memory follows the
number of distinct metric names, not the number of series in the backend. A rule whose discovery
fails keeps the metrics it had.

GMP (a backend named ``gmp``) matches metric names exactly: a ``{__name__=~"..."}`` selector
fails there. Under GMP, a rule whose discovery selector does not name its metric exactly is
reported when the rules are set (a warning in the log) and skipped by every refresh, with the
reason in :attr:`Snapshot.errors` (shown by ``/debug/metrics``); no such selector is ever sent.

Label names map to resources with a :class:`~adapter.domain.resources.ResourceTable`: the
cluster's, from its discovery (a :class:`ResourceSource`, refreshed before each discovery), or
standalone the built-in table of common resources. What a rule names that the cluster does not
serve (an override's CRD not created yet) is listed in :attr:`Snapshot.missing` and never stops
the other rules; while something is missing, the cluster's resources are asked again every
``resource_poll`` seconds, and the metrics are discovered as soon as the resource appears.

A request for a metric the snapshot does not list, while some rule discovers its metrics, runs
discovery once more before the answer (:meth:`MetricRegistry.find`): a metric whose series
appeared since the last refresh is answered at once instead of 404 until the next refresh. Such
refreshes are shared by concurrent requests and happen at most every ``miss_refresh`` seconds.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from adapter import promql
from adapter.backends.base import Backend
from adapter.backends.factory import GMP_BACKEND_NAME
from adapter.domain.errors import AdapterError, QueryError
from adapter.domain.models import GroupResource, Matcher
from adapter.domain.resources import ResourceTable
from adapter.observability.telemetry import Telemetry
from adapter.rules.base import MetricKind, QueryScope, Rule, ServedMetric
from adapter.rules.resources import BUILT_IN

__all__ = ["MetricRegistry", "ResourceSource", "Snapshot", "gmp_name_problem"]


class ResourceSource(Protocol):
    """The cluster's resources (:class:`adapter.kube.mapper.RestMapper`)."""

    @property
    def table(self) -> ResourceTable | None:
        """The last table read; ``None`` before the first successful read."""
        ...

    async def refresh(self, *, min_age: float = 0.0) -> ResourceTable | None:
        """Read the cluster's resources again; keep the last table when that fails."""
        ...

    def status(self) -> Mapping[str, Any]:
        """For ``/debug/metrics``: when the table was read, its size, the last error."""
        ...


log = logging.getLogger(__name__)


def _selector_problem(selector: str) -> str | None:
    """Why ``selector`` (a query or series selector) is refused by GMP, or ``None``."""
    try:
        infos = promql.selectors(selector)
    except QueryError:
        return None  # rule validation reports unparsable queries itself
    for info in infos:
        exact = bool(info.name) or any(m.label == "__name__" and m.op == "=" for m in info.matchers)
        if not exact:
            by_regex = any(m.label == "__name__" for m in info.matchers)
            how = "selects metric names by regex" if by_regex else "names no metric"
            return f"{selector} {how}"
    return None


def gmp_name_problem(rule: Rule) -> str | None:
    """Why GMP cannot serve ``rule`` (exact metric names only), or ``None``."""
    texts = list(rule.discovery_selectors())
    query = getattr(rule, "query", None)  # native rules and presets
    if isinstance(query, str):
        texts.append(query)
    for text in texts:
        problem = _selector_problem(text)
        if problem is not None:
            return (
                f"GMP matches metric names exactly, and {problem}; write one rule per "
                "metric with its exact name (e.g. seriesQuery: "
                "'jetstream_prefill_backlog_size{namespace!=\"\"}')"
            )
    return None


@dataclass(frozen=True, slots=True)
class Snapshot:
    custom: Mapping[tuple[GroupResource, str], ServedMetric] = field(default_factory=dict)
    external: Mapping[str, ServedMetric] = field(default_factory=dict)
    refreshed_at: float | None = None
    errors: Mapping[str, str] = field(default_factory=dict)
    """Rule id → the last discovery error for that rule."""
    missing: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Rule id → what the rule names that the cluster does not serve (yet)."""


def _index(metrics: Sequence[ServedMetric]) -> Snapshot:
    custom: dict[tuple[GroupResource, str], ServedMetric] = {}
    external: dict[str, ServedMetric] = {}
    for m in metrics:
        if m.kind == "external":
            external.setdefault(m.name, m)
        elif m.resource is not None:
            custom.setdefault((m.resource, m.name), m)
    return Snapshot(custom=custom, external=external)


class MetricRegistry:
    """``interval`` and ``timeout`` in seconds."""

    def __init__(
        self,
        rules: Sequence[Rule],
        backend: Backend,
        *,
        scope: QueryScope,
        interval: float = 60.0,
        timeout: float = 30.0,
        telemetry: Telemetry | None = None,
        exact_metric_names: bool | None = None,
        resources: ResourceSource | None = None,
        resource_poll: float = 10.0,
        miss_refresh: float = 15.0,
    ) -> None:
        """``exact_metric_names``: refuse discovery selectors that do not name their metric
        exactly (GMP's rule); ``None`` turns it on when the backend is named ``gmp``.
        ``resources``: the cluster's resources (``None``: the built-in table);
        ``resource_poll``: seconds between two reads of them while a rule waits for one;
        ``miss_refresh``: least seconds between two refreshes caused by unlisted metrics."""
        self._backend = backend
        self.resources = resources
        self.resource_poll = resource_poll
        self._missing: dict[str, tuple[str, ...]] = {}
        self.exact_metric_names = (
            backend.name == GMP_BACKEND_NAME if exact_metric_names is None else exact_metric_names
        )
        self._name_problems: dict[str, str] = {}
        self._scope = scope
        self.interval = interval
        self.timeout = timeout
        self._telemetry = telemetry
        self._discovered: dict[str, list[ServedMetric]] = {}
        self.miss_refresh = miss_refresh
        self._miss_refresh: asyncio.Task[Snapshot] | None = None
        self._miss_refreshed_at = float("-inf")
        self.set_rules(rules)

    @property
    def rules(self) -> tuple[Rule, ...]:
        return self._rules

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    def set_rules(self, rules: Sequence[Rule]) -> None:
        """Swap the rules; static metrics are listed at once, discovered ones at the next refresh."""
        self._rules = tuple(rules)
        ids = {r.id for r in self._rules}
        self._discovered = {k: v for k, v in self._discovered.items() if k in ids}
        self._missing = {r.id: r.missing_resources(self.resource_table) for r in self._rules}
        self._name_problems = {}
        if self.exact_metric_names:
            for rule in self._rules:
                problem = gmp_name_problem(rule)
                if problem is not None:
                    self._name_problems[rule.id] = problem
                    log.warning("rule %s: %s", rule.id, problem)
        self._rebuild(refreshed_at=None, errors=dict(self._name_problems))

    def _rebuild(self, *, refreshed_at: float | None, errors: Mapping[str, str]) -> None:
        metrics: list[ServedMetric] = []
        for rule in self._rules:
            metrics.extend(rule.static_metrics())
            metrics.extend(self._discovered.get(rule.id, ()))
        snap = _index(metrics)
        self._snapshot = Snapshot(
            custom=snap.custom,
            external=snap.external,
            refreshed_at=refreshed_at,
            errors=dict(errors),
            missing={k: v for k, v in self._missing.items() if v},
        )
        if self._telemetry is not None:
            self._telemetry.served_metrics.labels("custom").set(len(snap.custom))
            self._telemetry.served_metrics.labels("external").set(len(snap.external))

    @property
    def resource_table(self) -> ResourceTable:
        """What label names map to resources with: the cluster's resources once read, else the
        built-in table of common resources."""
        table = self.resources.table if self.resources is not None else None
        return table if table is not None else BUILT_IN

    def find_custom(self, resource: GroupResource, metric: str) -> ServedMetric | None:
        found = self._snapshot.custom.get((resource, metric))
        return found if found is not None else self._resolve("custom", resource, metric)

    def find_external(self, metric: str) -> ServedMetric | None:
        found = self._snapshot.external.get(metric)
        return found if found is not None else self._resolve("external", None, metric)

    async def find(
        self, kind: MetricKind, resource: GroupResource | None, metric: str
    ) -> ServedMetric | None:
        """:meth:`find_custom` or :meth:`find_external`; when neither lists ``metric``, after
        one more discovery (see the module docstring)."""
        found = self._find(kind, resource, metric)
        if found is None and await self._refreshed_for_a_miss():
            found = self._find(kind, resource, metric)
        return found

    def _find(
        self, kind: MetricKind, resource: GroupResource | None, metric: str
    ) -> ServedMetric | None:
        if kind == "external":
            return self.find_external(metric)
        assert resource is not None
        return self.find_custom(resource, metric)

    async def _refreshed_for_a_miss(self) -> bool:
        """Run (or join) a refresh unless one ran within ``miss_refresh`` seconds or no rule
        discovers; whether one ran."""
        if not any(rule.discovery_selectors() for rule in self._rules):
            return False
        task = self._miss_refresh
        if task is None:
            now = time.monotonic()
            last = self._snapshot.refreshed_at
            recent = last is not None and time.time() - last < self.miss_refresh
            if recent or now - self._miss_refreshed_at < self.miss_refresh:
                return False
            self._miss_refreshed_at = now
            task = self._miss_refresh = asyncio.ensure_future(self.refresh())
            task.add_done_callback(lambda _: setattr(self, "_miss_refresh", None))
        try:
            await asyncio.shield(task)
        except Exception:
            log.exception("discovery refresh for an unlisted metric failed")
            return False
        return True

    def _resolve(
        self, kind: MetricKind, resource: GroupResource | None, metric: str
    ) -> ServedMetric | None:
        # Name-family rules (Stackdriver-style names) are not listed; they answer by pattern.
        for rule in self._rules:
            served = rule.resolve(kind, resource, metric)
            if served is not None:
                return served
        return None

    def _scoped(self, selector: str) -> str:
        if not self._scope.cluster:
            return selector
        return promql.inject(
            selector, [Matcher(self._scope.cluster_label, "=", self._scope.cluster)]
        )

    async def _discover(self, rule: Rule) -> list[ServedMetric]:
        names: set[str] = set()
        for selector in rule.discovery_selectors():
            names.update(
                await self._backend.metric_names([self._scoped(selector)], timeout=self.timeout)
            )
        labels: dict[str, list[str]] = {}
        for name in sorted(names):
            selector = self._scoped(rule.series_selector_for(name))
            labels[name] = await self._backend.label_names([selector], timeout=self.timeout)
        return rule.discovered_metrics(labels, self.resource_table)

    async def refresh(self) -> Snapshot:
        """Read the cluster's resources, then run discovery for every rule that needs it; keep
        old results for rules that fail."""
        errors: dict[str, str] = dict(self._name_problems)
        if self.resources is not None:
            await self.resources.refresh()
        table = self.resource_table
        self._missing = {rule.id: rule.missing_resources(table) for rule in self._rules}
        for rule in self._rules:
            if not rule.discovery_selectors():
                continue
            if rule.id in self._name_problems:
                continue  # GMP would refuse the selector; the reason is already in errors
            try:
                self._discovered[rule.id] = await self._discover(rule)
            except AdapterError as exc:
                errors[rule.id] = exc.message
                log.warning("discovery failed for rule %s: %s", rule.id, exc.message)
        now = time.time()
        self._rebuild(refreshed_at=now, errors=errors)
        if self._telemetry is not None:
            if errors:
                self._telemetry.discovery_errors.inc()
            else:
                self._telemetry.discovery_success.set(now)
        return self._snapshot

    async def _resources_appeared(self) -> bool:
        """Whether a resource some rule waits for is now served (the cluster's resources read
        again, at most every ``resource_poll`` seconds)."""
        if self.resources is None:
            return False
        table = await self.resources.refresh(min_age=self.resource_poll)
        if table is None:
            return False
        return any(
            len(rule.missing_resources(table)) < len(self._missing.get(rule.id, ()))
            for rule in self._rules
        )

    async def _until_next(self) -> None:
        """Wait ``interval`` seconds, or less when a resource a rule waits for appears."""
        deadline = time.monotonic() + self.interval
        while (left := deadline - time.monotonic()) > 0:
            if not any(self._missing.values()):
                await asyncio.sleep(left)
                return
            await asyncio.sleep(min(left, self.resource_poll))
            if await self._resources_appeared():
                return

    async def run(self) -> None:
        """Refresh forever, every ``interval`` seconds. Cancel the task to stop."""
        while True:
            try:
                await self.refresh()
            except Exception:  # a bug in one refresh must not end discovery for good
                log.exception("discovery refresh failed")
            try:
                await self._until_next()
            except Exception:
                log.exception("reading the cluster's resources failed")
                await asyncio.sleep(self.interval)
