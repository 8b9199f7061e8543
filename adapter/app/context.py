"""The application context: what the routes and the commands use, and its one lifecycle.

:func:`build_context` wires settings, rules and backends into registry, cache and provider (no
I/O). The :class:`AppContext` it returns holds what the routes read, typed (the Kubernetes
object source and HPA reader, the rules watcher), and owns the backends and whatever is
registered with it (background tasks, the Kubernetes client and watches, the serving
certificate): ``await ctx.aclose()`` (or ``async with ctx``) stops and closes all of it, latest
first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from adapter.backends.base import Backend
from adapter.core.cache import SingleFlightCache
from adapter.core.history import SeriesRecorder
from adapter.core.provider import MetricsProvider, ObjectSource, series_stamps
from adapter.core.registry import MetricRegistry, ResourceSource
from adapter.core.resilience import BreakerPolicy
from adapter.domain.errors import ConfigError
from adapter.domain.models import QueryResult
from adapter.domain.pods import Monitoring, PodInfo
from adapter.hpa.explain import HpaReader
from adapter.observability.telemetry import Telemetry
from adapter.rules.base import QueryScope
from adapter.rules.loader import RuleSet
from adapter.settings import Settings

if TYPE_CHECKING:
    from adapter.scrape.targets import ScrapeTarget

__all__ = [
    "AppContext",
    "MappedObjects",
    "ReloadState",
    "RulesReloader",
    "WatchedObjects",
    "build_context",
    "start_task",
]


class WatchedObjects(ObjectSource, Protocol):
    """The Kubernetes object cache (:class:`adapter.kube.objects.ObjectCache`): which objects
    exist, and how current that list is."""

    def status(self) -> Mapping[str, Any]:
        """Per resource: ``ready``, ``objects``, ``age`` (seconds since the last event or list)
        and the last watch ``error``."""
        ...


@runtime_checkable
class MappedObjects(Protocol):
    """An object source that also knows the cluster's resources (the Kubernetes object cache):
    the registry maps label names to resources with them."""

    @property
    def resource_mapper(self) -> ResourceSource: ...


@runtime_checkable
class ScrapeView(Protocol):
    """An object source that also knows the pods' scrape details and the monitoring objects
    (the Kubernetes object cache): the pod-scrape path takes its targets from it."""

    def watch_monitorings(self) -> None: ...

    def scrape_view(self) -> tuple[Sequence[PodInfo], Sequence[Monitoring]]: ...

    def scrape_generation(self) -> Hashable | None: ...


class ReloadState(Protocol):
    """Times in unix seconds."""

    @property
    def last_reload(self) -> float | None: ...

    @property
    def error(self) -> str | None:
        """Why the current rules file is not served; ``None`` when it is."""
        ...


class RulesReloader(Protocol):
    """Applies changes of the rules file to the context while it runs."""

    @property
    def status(self) -> ReloadState: ...

    async def run(self) -> None:
        """Watch until cancelled."""
        ...


async def _cancel_and_wait(task: asyncio.Task[Any]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def start_task(
    stack: contextlib.AsyncExitStack, job: Coroutine[Any, Any, None], *, name: str
) -> asyncio.Task[None]:
    """Run ``job`` as a task until ``stack`` closes, which cancels it and waits for its end."""
    task = asyncio.create_task(job, name=name)
    stack.push_async_callback(_cancel_and_wait, task)
    return task


@dataclass(slots=True, eq=False)
class AppContext:
    """Built by :func:`build_context`; closed with :meth:`aclose` by its owner: the application
    serving it (its shutdown), or the command that built it."""

    settings: Settings
    rules: RuleSet
    backend: Backend
    registry: MetricRegistry
    provider: MetricsProvider
    telemetry: Telemetry
    object_source: WatchedObjects | None = None
    """The Kubernetes object cache; ``None`` standalone."""
    hpa_reader: HpaReader | None = None
    """Reads HPAs, scales and pods for ``/debug/hpa``; ``None`` standalone."""
    rules_watcher: RulesReloader | None = None
    """Set when the rules file is reloaded while serving."""
    backend_ready: bool = False
    """Set once the backend has answered (readiness)."""
    backend_error: str | None = None
    history: SeriesRecorder = field(default_factory=SeriesRecorder)
    """Recent values served, for ``/debug/ui`` (fed by a provider observer)."""
    _closing: contextlib.AsyncExitStack = field(
        default_factory=contextlib.AsyncExitStack, init=False, repr=False
    )

    def on_close(self, close: Callable[[], object]) -> None:
        """Call ``close()`` when the context closes (after what is registered later)."""
        self._closing.callback(close)

    def on_aclose(self, close: Callable[[], Awaitable[object]]) -> None:
        """Await ``close()`` when the context closes (after what is registered later)."""
        self._closing.push_async_callback(close)

    def start_task(self, job: Coroutine[Any, Any, None], *, name: str) -> asyncio.Task[None]:
        """Run ``job`` in the background until the context closes."""
        return start_task(self._closing, job, name=name)

    async def aclose(self) -> None:
        """Cancel the tasks, stop and close everything registered, latest first. Idempotent."""
        await self._closing.aclose()

    async def __aenter__(self) -> AppContext:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


def _scrape_targets(
    settings: Settings, objects: WatchedObjects | None
) -> Sequence[ScrapeTarget] | Callable[[], Sequence[ScrapeTarget]]:
    """The ``--scrape-targets`` file's targets, else the cluster's (pods and PodMonitorings)."""
    from adapter.scrape.targets import load_targets, pod_targets

    if settings.scrape.targets:
        return load_targets(settings.scrape.targets)
    view: object = objects
    if not isinstance(view, ScrapeView):
        raise ConfigError(
            "--scrape-pods needs the pods to scrape: --scrape-targets (a file), or Kubernetes"
            " mode (the cluster's pods and their PodMonitorings)"
        )
    view.watch_monitorings()
    cluster = view
    last: list[tuple[Hashable, tuple[ScrapeTarget, ...]]] = []

    def targets() -> tuple[ScrapeTarget, ...]:
        """The targets, computed again only when a pod or a monitoring object changed."""
        generation = cluster.scrape_generation()
        if generation is None or not last or last[0][0] != generation:
            found = pod_targets(*cluster.scrape_view())
            if generation is None:
                return found
            last[:] = [(generation, found)]
        return last[0][1]

    return targets


def _scrape_first(
    settings: Settings, backend: Backend, telemetry: Telemetry, objects: WatchedObjects | None
) -> Backend:
    """``backend`` behind the pod-scrape source (``--scrape-pods``). Raises ConfigError."""
    from adapter.core.sources import ScrapeFirst
    from adapter.scrape.source import PodScraper

    scrape = settings.scrape
    targets = _scrape_targets(settings, objects)
    if settings.scope.cluster is None:
        raise ConfigError("--scrape-pods needs --cluster: scraped samples are labelled with it")
    if scrape.fallback not in ("omit", "backend"):
        raise ConfigError(f"--scrape-fallback must be omit or backend, not {scrape.fallback!r}")
    scraper = PodScraper(
        targets,
        cluster=settings.scope.cluster,
        cluster_label=settings.scope.cluster_label,
        min_interval=scrape.min_interval,
        timeout=scrape.timeout,
        on_failure="omit" if scrape.fallback == "omit" else "backend",
    )

    def count(result: str, seconds: float) -> None:
        telemetry.scrapes.labels(result).inc()
        telemetry.scrape_seconds.observe(seconds)

    scraper.stats.on_scrape = count
    return ScrapeFirst(backend, scraper)


def build_context(
    settings: Settings,
    *,
    backend: Backend,
    rules: RuleSet,
    objects: WatchedObjects | None = None,
    hpa_reader: HpaReader | None = None,
    backends: Mapping[str, Backend] | None = None,
) -> AppContext:
    """Wire registry, cache and provider; the context closes every backend. No I/O.

    ``backends``: extra backends by rule backend name (``cloud-monitoring``). When ``None`` and
    a rule needs Cloud Monitoring, that backend is built from ``settings`` (no I/O either).
    ``objects`` and ``hpa_reader``: the Kubernetes side, absent standalone; the caller registers
    their stopping (:meth:`AppContext.on_close`).
    """
    if backends is None and any(r.backend == "cloud-monitoring" for r in rules.rules):
        from adapter.backends.factory import build_cloud_monitoring_backend

        backends = {"cloud-monitoring": build_cloud_monitoring_backend(settings)}
    telemetry = Telemetry()
    if settings.scrape.pods:
        backend = _scrape_first(settings, backend, telemetry, objects)
    scope = QueryScope(cluster=settings.scope.cluster, cluster_label=settings.scope.cluster_label)
    timeout = settings.backend.query_timeout
    registry = MetricRegistry(
        rules.rules,
        backend,
        scope=scope,
        interval=settings.cache.discovery_interval,
        timeout=timeout,
        telemetry=telemetry,
        resources=objects.resource_mapper if isinstance(objects, MappedObjects) else None,
    )
    cache = settings.cache
    resilience = settings.resilience
    provider = MetricsProvider(
        registry=registry,
        backend=backend,
        cache=SingleFlightCache[tuple[str, str], QueryResult](
            ttl=cache.ttl,
            stale_ttl=resilience.stale_if_error,
            keep_warm=cache.keep_warm,
            stamps=series_stamps,
        ),
        backends=backends,
        scope=scope,
        objects=objects,
        query_timeout=timeout,
        max_sample_age=cache.max_sample_age,
        telemetry=telemetry,
        stale_if_error=resilience.stale_if_error,
        breaker_policy=BreakerPolicy(
            failure_threshold=resilience.circuit_failures,
            cooldown=resilience.circuit_cooldown,
            max_cooldown=resilience.circuit_max_cooldown,
        ),
    )
    ctx = AppContext(
        settings=settings,
        rules=rules,
        backend=backend,
        registry=registry,
        provider=provider,
        telemetry=telemetry,
        object_source=objects,
        hpa_reader=hpa_reader,
    )
    provider.observers.append(ctx.history.record)
    # Closed latest first: the main backend, then the extra ones.
    for extra in {id(b): b for b in provider.backends.values() if b is not backend}.values():
        ctx.on_aclose(extra.aclose)
    ctx.on_aclose(backend.aclose)
    return ctx
