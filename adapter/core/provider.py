"""Answers metrics API requests: find the rule, build the scoped query, fetch through the cache,
translate. The HTTP layer, ``/debug/query`` and the ``query`` command all call :meth:`answer`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from typing import Protocol, runtime_checkable

from adapter import promql
from adapter.backends.base import Backend
from adapter.core.answer import Answer, NotCached, Trace
from adapter.core.cache import CacheState, SingleFlightCache
from adapter.core.registry import MetricRegistry
from adapter.core.request import ApiRequest, parse_api_path
from adapter.core.resilience import BreakerPolicy, BreakerState, CircuitBreaker, GuardedBackend
from adapter.core.responses import ResponseCache
from adapter.core.translate import (
    Dropped,
    custom_list,
    encode_json,
    external_list,
    restamp,
    samples_to_custom,
    samples_to_external,
)
from adapter.domain.errors import (
    BackendError,
    BackendUnavailableError,
    ForbiddenError,
    NotFoundError,
    ObjectsUnavailableError,
    QueryError,
)
from adapter.domain.models import (
    BackendKind,
    GroupResource,
    MetricValue,
    QueryResult,
    Requirement,
)
from adapter.observability.telemetry import Telemetry
from adapter.rules.base import BuiltQuery, MetricRequest, QueryScope, ServedMetric

__all__ = [
    "Answer",
    "MetricsProvider",
    "ObjectGenerations",
    "ObjectSource",
    "ObjectsUnavailableError",
    "Trace",
    "series_stamps",
]


def series_stamps(result: QueryResult) -> Iterator[tuple[Hashable, float]]:
    """Each series of ``result`` with the time of its newest input sample (the cache learns from
    them when the next sample is due: :class:`adapter.core.cache.SingleFlightCache`)."""
    for sample in result.samples:
        yield frozenset(sample.labels.items()), sample.timestamp


class ObjectSource(Protocol):
    """Which Kubernetes objects exist. Implemented by the Kubernetes module; absent standalone."""

    async def names(
        self,
        resource: GroupResource,
        namespace: str | None,
        selector: Sequence[Requirement],
    ) -> tuple[str, ...] | None:
        """Names of existing objects matching ``selector``; ``None`` if this source cannot tell
        (the request then fails with :class:`ObjectsUnavailableError`, never ignores the
        selector)."""
        ...


@runtime_checkable
class ObjectGenerations(Protocol):
    """An object source that can tell when what :meth:`ObjectSource.names` answers may change."""

    def generation(self, resource: GroupResource, namespace: str | None) -> Hashable | None:
        """A value that changes whenever an object of ``resource`` in ``namespace`` (any:
        ``None``) is added, changed or removed; ``None`` when it cannot tell (not watched yet)."""
        ...


class MetricsProvider:
    """``query_timeout`` and ``max_sample_age`` in seconds (``None``: no age limit).

    Every backend query goes through that backend's :class:`CircuitBreaker` (``breaker_policy``).
    ``stale_if_error`` in seconds (``0``: off): when a fetch fails, the last good answer for the
    same query is served instead if it is at most that old (the cache must keep last good answers
    at least that long: ``SingleFlightCache(stale_ttl=...)``).
    """

    def __init__(
        self,
        *,
        registry: MetricRegistry,
        backend: Backend,
        cache: SingleFlightCache[tuple[str, str], QueryResult],
        backends: Mapping[str, Backend] | None = None,
        scope: QueryScope,
        objects: ObjectSource | None = None,
        query_timeout: float = 10.0,
        max_sample_age: float | None = None,
        telemetry: Telemetry | None = None,
        stale_if_error: float = 0.0,
        breaker_policy: BreakerPolicy | None = None,
    ) -> None:
        self.registry = registry
        self.backend = backend
        self.backends: dict[str, Backend] = {"promql": backend, **(backends or {})}
        self.cache = cache
        self.scope = scope
        self.object_generations: ObjectGenerations | None = None
        self.objects = objects
        self.query_timeout = query_timeout
        self.max_sample_age = max_sample_age
        self.telemetry = telemetry or Telemetry()
        self.stale_if_error = stale_if_error
        self.observers: list[Callable[[ApiRequest, Answer], None]] = []
        """Called with every successful answer (the ``/debug/ui`` history)."""
        self.breaker_policy = breaker_policy or BreakerPolicy()
        self.breakers: dict[str, CircuitBreaker] = {}
        self._guarded: dict[str, GuardedBackend] = {
            kind: GuardedBackend(configured, self.breaker_for(configured), self.telemetry)
            for kind, configured in self.backends.items()
        }
        """What queries go to, by backend kind: each backend behind its breaker, instrumented."""
        self.responses = ResponseCache(self)
        """Rendered responses, served whole while their inputs hold (the metrics routes)."""

    @property
    def objects(self) -> ObjectSource | None:
        """Which objects exist (``None`` standalone); :attr:`object_generations` is the same
        source when it can tell when its answers change, else ``None``."""
        return self._objects

    @objects.setter
    def objects(self, source: ObjectSource | None) -> None:
        self._objects = source
        self.object_generations = source if isinstance(source, ObjectGenerations) else None

    def breaker_for(self, backend: Backend) -> CircuitBreaker:
        """The circuit breaker of ``backend`` (by name), created closed on first use."""
        breaker = self.breakers.get(backend.name)
        if breaker is None:
            gauge = self.telemetry.circuit_state.labels(backend.name)
            rejections = self.telemetry.circuit_rejections.labels(backend.name)

            def on_change(state: BreakerState) -> None:
                gauge.set(CircuitBreaker.gauge_value(state))

            breaker = CircuitBreaker(
                backend.name,
                self.breaker_policy,
                on_change=on_change,
                on_reject=rejections.inc,
            )
            gauge.set(CircuitBreaker.gauge_value("closed"))
            self.breakers[backend.name] = breaker
        return breaker

    def _backend_for(self, metric: ServedMetric) -> GuardedBackend:
        kind = metric.rule.backend
        backend = self._guarded.get(kind)
        if backend is None:
            raise BackendUnavailableError(
                f"rule {metric.rule.id} needs the {kind} backend, which is not configured",
                backend=kind,
            )
        return backend

    async def _fetch(self, backend: Backend, built: BuiltQuery, kind: BackendKind) -> QueryResult:
        """One round trip for ``built``; PromQL also asks the time of the data it reads."""
        wire = (
            promql.with_freshness(built.query, by=built.object_labels) if kind == "promql" else None
        )
        if wire is None:
            return await backend.query(built.query, timeout=self.query_timeout)
        result = await backend.query(wire, timeout=self.query_timeout)
        return restamp(result, by=built.object_labels)

    async def _cached(self, metric: ServedMetric, built: BuiltQuery, trace: Trace) -> QueryResult:
        """``built``'s result through the cache (one fetch per key at a time), or the last good
        one when the fetch fails and ``stale_if_error`` allows it. A background render
        (``trace.background``) reads the current entry only, or raises :class:`NotCached`."""
        trace.built = built
        backend = self._backend_for(metric)
        live = backend.answers_live(built.query)
        if live and not trace.background:
            # Read from the pods at this request (--scrape-pods): a cached answer would be older.
            result = await self._fetch(backend, built, metric.rule.backend)
            self.telemetry.cache.labels("disabled").inc()
            trace.cache, trace.result, trace.fetched_at = "disabled", result, time.time()
            return result
        key = (backend.name, built.query)
        refetch = functools.partial(self._fetch, backend, built, metric.rule.backend)
        state: CacheState
        if trace.background:
            current = None if live else self.cache.peek(key)
            if current is None:
                raise NotCached(key)
            entry, state = current, "hit"
        else:
            try:
                entry, state = await self.cache.get(key, refetch)
            except BackendError as exc:
                stale = self.cache.stale(key) if self.stale_if_error > 0 else None
                if stale is None:
                    raise
                entry, state = stale, "stale"
                trace.stale_error = exc.message
                self.telemetry.stale_answers.labels(backend.name).inc()
            self.telemetry.cache.labels(state).inc()
        if state != "stale":
            trace.cache_key, trace.entry, trace.refetch = key, entry, refetch
        trace.cache, trace.result, trace.fetched_at = state, entry.value, entry.fetched_at
        trace.sample_interval = self.cache.sample_interval(key)
        return entry.value

    def _translated(
        self, trace: Trace, translate: Callable[..., tuple[list[MetricValue], list[Dropped]]]
    ) -> list[MetricValue]:
        """``translate(now=…, max_age=…)``'s values, its dropped samples kept on ``trace``; the
        drop reasons observed."""
        values, trace.dropped = translate(now=time.time(), max_age=self.max_sample_age)
        if trace.background:
            return values
        for d in trace.dropped:
            self.telemetry.dropped.labels(d.reason).inc()
        return values

    def _build(self, served: ServedMetric, request: MetricRequest) -> BuiltQuery:
        try:
            return served.rule.build_query(served, request, self.scope)
        except QueryError as exc:
            # Rules are checked at load; what fails here is a rule that pins its own namespace
            # or cluster (the seed's TPU rule pins exported_namespace) asked from another scope.
            raise ForbiddenError(
                f"{served.name} cannot be read from namespace {request.namespace}:"
                f" rule {served.rule.id} is scoped elsewhere ({exc.message})"
            ) from exc

    async def respond(
        self, path: str, query: bytes, params: Mapping[str, str], *, background: bool = False
    ) -> bytes:
        """The JSON body answering the metrics API request ``path?query`` (``params``: its
        query parameters, decoded), kept in :attr:`responses` for the next identical request.
        Raises :class:`adapter.domain.errors.AdapterError` subclasses. ``background``: rendered
        again after a prefetch, from the cache only (see :class:`Trace`)."""
        request = parse_api_path(path, params)
        answer = await self.answer(request, trace=Trace(background=background))
        body = encode_json(answer.body)
        self.responses.store(path, query, request, answer, body, params=params)
        return body

    async def answer(self, request: ApiRequest, *, trace: Trace | None = None) -> Answer:
        """Answer one parsed request. Raises :class:`adapter.domain.errors.AdapterError` subclasses.

        ``trace`` (optional) is filled as the answer is built, so a caller that catches the
        error still sees how far it got (``/debug/query``).
        """
        trace = trace if trace is not None else Trace()
        if request.group == "external":
            answer = await self._external(request, trace)
        else:
            answer = await self._custom(request, trace)
        if not trace.background:
            self.served(request, answer)
        return answer

    def served(self, request: ApiRequest, answer: Answer) -> None:
        """Record ``answer`` as served for ``request``: its values' ages, and the observers
        (the UI's history). Also for a response served whole (:mod:`adapter.core.responses`)."""
        now = time.time()
        for v in answer.values:
            self.telemetry.value_age.observe(max(0.0, now - v.timestamp))
        for observe in self.observers:
            observe(request, answer)

    async def _object_names(self, request: ApiRequest, trace: Trace) -> tuple[str, ...] | None:
        assert request.resource is not None
        if request.name is not None:
            return (request.name,)
        if self.objects is None:
            trace.notes.append(
                "no object list (standalone): answering for every object with series in scope;"
                " labelSelector is not applied"
            )
            return None
        if self.object_generations is not None:
            trace.objects_generation = self.object_generations.generation(
                request.resource, request.namespace
            )
        names = await self.objects.names(
            request.resource, request.namespace, request.label_selector
        )
        if names is None:
            # Answering for every series would ignore the labelSelector: fail, the client retries.
            raise ObjectsUnavailableError(
                f"the objects of {request.resource} are not known yet: without them the"
                " labelSelector cannot be applied"
            )
        return names

    async def _evaluate(
        self, served: ServedMetric, metric_request: MetricRequest, trace: Trace
    ) -> tuple[BuiltQuery, QueryResult]:
        """The steps every answer shares: build the scoped query, fetch it through the cache."""
        trace.metric, trace.request = served, metric_request
        built = self._build(served, metric_request)
        return built, await self._cached(served, built, trace)

    async def _custom(self, request: ApiRequest, trace: Trace) -> Answer:
        assert request.resource is not None
        where = f"{request.resource} {request.name or '*'}" + (
            f" in namespace {request.namespace}" if request.namespaced else ""
        )
        served = await self.registry.find("custom", request.resource, request.metric)
        if served is None:
            raise NotFoundError.metric(request.metric, where)
        trace.metric = served
        names = await self._object_names(request, trace)
        metric_request = MetricRequest(
            namespace=request.namespace,
            object_names=names,
            metric_selector=request.metric_selector,
        )
        trace.request = metric_request
        values: list[MetricValue] = []
        if names != ():
            built, result = await self._evaluate(served, metric_request, trace)
            values = self._translated(
                trace,
                functools.partial(
                    samples_to_custom,
                    result.samples,
                    metric=request.metric,
                    resource=request.resource,
                    namespace=request.namespace,
                    object_labels=built.object_labels,
                    object_names=names,
                    window=built.window,
                    described=served.described
                    or self.registry.resource_table.exact(request.resource),
                ),
            )
        else:
            # As prometheus-adapter answers: no object matches, so no metric either.
            selector = ",".join(_requirement_text(r) for r in request.label_selector)
            raise NotFoundError.metric(
                request.metric, where + (f" with selector {selector}" if selector else "")
            )
        if request.name is not None and not values:
            raise NotFoundError.metric(request.metric, where)
        body = custom_list(values, version=request.version, selector=request.metric_selector)
        return Answer(body=body, values=values, trace=trace)

    async def _external(self, request: ApiRequest, trace: Trace) -> Answer:
        served = await self.registry.find("external", None, request.metric)
        if served is None:
            raise NotFoundError.metric(request.metric, f"namespace {request.namespace}")
        metric_request = MetricRequest(
            namespace=request.namespace, metric_selector=request.metric_selector
        )
        built, result = await self._evaluate(served, metric_request, trace)
        values = self._translated(
            trace,
            functools.partial(
                samples_to_external, result.samples, metric=request.metric, window=built.window
            ),
        )
        return Answer(body=external_list(values), values=values, trace=trace)


def _requirement_text(requirement: Requirement) -> str:
    """A label-selector requirement as Kubernetes writes it (for messages)."""
    key, op, values = requirement.key, requirement.op, requirement.values
    if op in {"in", "notin"}:
        return f"{key} {op} ({','.join(values)})"
    if op == "exists":
        return key
    if op == "!":
        return f"!{key}"
    symbol = {"gt": ">", "lt": "<"}.get(op, op)
    return f"{key}{symbol}{values[0] if values else ''}"
