"""Which objects exist: pods, kept by list-then-watch from the start; any other resource the
apiserver serves, watched as metadata from the first request that names it.

:class:`ObjectCache` implements :class:`adapter.core.provider.ObjectSource`, so Pods metrics answer
only for pods that exist, are not terminating or finished, and match the HPA's selector, and
``<resource>/*`` with a ``labelSelector`` answers for the objects that exist and match, for any
resource (jobs.batch, nodes, leases, a CRD): the resource's version and scope come from the
apiserver's discovery (:class:`~adapter.kube.mapper.RestMapper`), and its objects are listed and
watched as ``PartialObjectMetadata`` (names, labels, deletion), never whole objects. A resource is
watched only once a request asks for a metric some rule serves on it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from adapter.domain.errors import ConfigError, NotFoundError
from adapter.domain.models import GroupResource, Requirement, selector_matches
from adapter.domain.pods import (
    MONITORING_GROUP,
    MONITORING_RESOURCES,
    Monitoring,
    PodInfo,
    monitoring_from,
    pod_from,
)
from adapter.domain.resources import ResourceInfo
from adapter.kube.connection import (
    Connection,
    KubernetesError,
    KubernetesForbiddenError,
    KubernetesUnavailableError,
)
from adapter.kube.mapper import RestMapper
from adapter.kube.watch import ListWatch

__all__ = ["WATCHED_RESOURCES", "ObjectCache", "selector_matches"]

log = logging.getLogger(__name__)

_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_METADATA_WATCH = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"


@dataclass(slots=True)
class _Object:
    labels: dict[str, str]
    active: bool
    detail: PodInfo | Monitoring | None = None
    """A pod's scrape details; a monitoring object's spec (``None``: one it cannot use)."""


@dataclass
class _Store:
    objects: dict[tuple[str, str], _Object] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_event: float | None = None
    error: str | None = None
    namespaced: bool = True
    lists: int = 0
    """Full lists applied (each may change anything)."""
    changes: int = 0
    """Watch events applied, all namespaces; per namespace in ``changes_in``."""
    changes_in: dict[str, int] = field(default_factory=dict)
    by_namespace: dict[str, dict[tuple[str, str], _Object]] = field(default_factory=dict)
    """``objects`` by namespace: a request reads one namespace, not the whole cluster."""


_WARNED: set[tuple[str, str]] = set()
_WARNED_MAX = 1024


def _warn_once(warning: tuple[str, str]) -> None:
    """Log ``warning`` (format, argument) the first time it is seen: a monitoring object the
    scrape path cannot use is read again at every relist and event, and says the same each time."""
    if warning in _WARNED:
        return
    if len(_WARNED) >= _WARNED_MAX:
        _WARNED.clear()
    _WARNED.add(warning)
    log.warning(*warning)


def _to_object(resource: GroupResource, obj: Mapping[str, Any]) -> tuple[tuple[str, str], _Object]:
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    active = not meta.get("deletionTimestamp")
    if resource.resource == "pods":
        phase = (obj.get("status") or {}).get("phase")
        active = active and phase not in {"Succeeded", "Failed"}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    detail: PodInfo | Monitoring | None = None
    if resource.resource == "pods":
        detail = pod_from(obj)
    elif resource in MONITORING_RESOURCES:
        try:
            detail = monitoring_from(obj, namespaced=resource.resource == "podmonitorings")
        except ConfigError as exc:
            _warn_once(("not scraping for %s", exc.message))
    return key, _Object(labels=labels, active=active, detail=detail)


def _matching(
    objects: Mapping[tuple[str, str], _Object],
    namespace: str | None,
    selector: Sequence[Requirement],
) -> tuple[str, ...]:
    """Sorted names of the active objects in ``namespace`` (any: ``None``) matching ``selector``."""
    return tuple(
        sorted(
            name
            for (ns, name), obj in objects.items()
            if obj.active
            and (namespace is None or ns == namespace)
            and selector_matches(obj.labels, selector)
        )
    )


WATCHED_RESOURCES: tuple[GroupResource, ...] = (GroupResource("pods"),)
"""Resources :class:`ObjectCache` watches from the start, as whole objects (a pod's phase says
whether it still runs); any other is watched as metadata from the first request that names it."""
_MAX_METADATA_WATCHES = 256
"""Resources watched as metadata at most (each is a resource some rule serves a metric on)."""


def _metadata_lister(client: Connection, info: ResourceInfo) -> Callable[..., Any]:
    """A list function for :class:`ListWatch`: lists (and with ``watch=True``, watches) every
    object of ``info``'s resource as ``PartialObjectMetadata``: names, labels, deletion, never
    specs or statuses, so memory follows the number of objects, not their size. The path comes
    from discovery, never from a request."""
    base = f"/apis/{info.group}/{info.version}" if info.group else f"/api/{info.version}"
    path = f"{base}/{info.plural}"

    def list_metadata(*, watch: bool = False, **kwargs: Any) -> Any:
        query = [
            (key, str(value).lower() if isinstance(value, bool) else str(value))
            for key, value in (
                ("watch", watch),
                ("resourceVersion", kwargs.get("resource_version")),
                ("timeoutSeconds", kwargs.get("timeout_seconds")),
                ("allowWatchBookmarks", kwargs.get("allow_watch_bookmarks")),
            )
            if value not in (None, False, "")
        ]
        api = client.api
        method, url, headers, body, post = api.param_serialize(
            "GET",
            path,
            query_params=query,
            header_params={"Accept": _METADATA_WATCH if watch else _METADATA_LIST},
            auth_settings=["BearerToken"],
        )
        response = api.call_api(
            method, url, header_params=headers, body=body, post_params=post,
            _request_timeout=kwargs.get("_request_timeout"),
        )  # fmt: skip
        if response.status >= 400:
            response.read()
            raise ApiException(status=response.status, reason=response.reason)
        return response.response

    return list_metadata


def _raise_list_failure(resource: GroupResource, error: str | None) -> None:
    """The first list of ``resource`` failed: say why (a 403 names the missing permission; any
    other failure is retried, so the request may be too: a 503)."""
    if error is None:
        return
    if "HTTP 403" in error:
        raise KubernetesForbiddenError(
            f"cannot list {resource}: the adapter's own identity lacks the RBAC permission to"
            f" list and watch {resource}: add to the adapter's ClusterRole the rule"
            f' {{apiGroups: ["{resource.group}"], resources: ["{resource.resource}"],'
            ' verbs: ["list", "watch"]} (the chart: rbac.extraResourceRules)'
        )
    raise KubernetesUnavailableError(
        f"cannot list {resource} yet ({error}): without the list of objects the labelSelector"
        " cannot be applied"
    )


class ObjectCache:
    """Which objects exist, from list-then-watch threads; implements ``ObjectSource``.

    Pods are watched from :meth:`start`; any other resource from the first :meth:`names` that
    asks for it (a rule serves a metric on it), as metadata, with its version and scope from
    :attr:`mapper`. ``ready_wait``: seconds at least that :meth:`names` waits for the first list
    of a resource (at least the connection's timeout too) before failing the request with a 503:
    it never answers without the objects, which would ignore the ``labelSelector``.
    """

    def __init__(self, client: Connection, *, ready_wait: float = 2.0) -> None:
        self._client = client
        self._ready_wait = ready_wait
        self._stores = {resource: _Store() for resource in WATCHED_RESOURCES}
        self._lock = threading.Lock()
        self.mapper = RestMapper(client)
        """The cluster's resources, from discovery (also the rules' resource mapping)."""
        self._stop = threading.Event()
        self._started = False

    @property
    def resource_mapper(self) -> RestMapper:
        return self.mapper

    def start(self) -> None:
        """Start watching pods (idempotent)."""
        if self._started:
            return
        self._started = True
        core = k8s_client.CoreV1Api(self._client.api)
        self._watch(GroupResource("pods"), core.list_pod_for_all_namespaces)

    def watch_monitorings(self) -> None:
        """Also watch PodMonitorings and ClusterPodMonitorings (for the pod-scrape path;
        idempotent). Where their CRDs are not installed, the watch retries and ``/debug`` shows
        the error; pods are then found by their ``prometheus.io/*`` annotations alone."""
        custom = k8s_client.CustomObjectsApi(self._client.api)
        for resource in MONITORING_RESOURCES:
            with self._lock:
                if resource in self._stores:
                    continue
                self._stores[resource] = _Store()
            lister = functools.partial(
                custom.list_cluster_custom_object, MONITORING_GROUP, "v1", resource.resource
            )
            self._watch(resource, lister)

    def scrape_view(self) -> tuple[list[PodInfo], list[Monitoring]]:
        """The pods with their scrape details and the usable monitoring objects, as now known."""
        found: dict[GroupResource, list[Any]] = {}
        for resource in (GroupResource("pods"), *MONITORING_RESOURCES):
            store = self._stores.get(resource)
            if store is None:
                continue
            with store.lock:
                found[resource] = [o.detail for o in store.objects.values() if o.detail]
        pods = [d for d in found.get(GroupResource("pods"), []) if isinstance(d, PodInfo)]
        monitorings = [
            d for r in MONITORING_RESOURCES for d in found.get(r, []) if isinstance(d, Monitoring)
        ]
        return pods, monitorings

    def scrape_generation(self) -> Hashable | None:
        """Changes whenever :meth:`scrape_view` may answer otherwise (a list or an event of the
        pods or of a monitoring resource); ``None`` while the pods' first list is not in."""
        pods = self.generation(GroupResource("pods"), None)
        if pods is None:
            return None
        return (pods, *(self.generation(r, None) for r in MONITORING_RESOURCES))

    def _watch(self, resource: GroupResource, list_fn: Callable[..., Any]) -> None:
        store = self._stores[resource]
        ListWatch(
            name=f"watch-{resource}",
            list_fn=list_fn,
            kwargs={},
            on_replace=self._replacer(resource, store),
            on_event=self._updater(resource, store),
            stop=self._stop,
            request_timeout=self._client.timeout,
            on_error=self._error_recorder(store),
        ).start()

    async def _metadata_store(self, resource: GroupResource) -> _Store:
        """The store of ``resource``, its metadata watch started on first use;
        :class:`NotFoundError` when the cluster does not serve it."""
        store = self._stores.get(resource)
        if store is not None:
            return store
        info = await self.mapper.resolve(resource)
        if info is None and self.mapper.table is None:
            raise KubernetesError(f"cannot map {resource}: {self.mapper.error}")
        if info is None:
            raise NotFoundError(f"the cluster does not serve the resource {resource}")
        with self._lock:
            store = self._stores.get(resource)
            if store is not None:
                return store
            if len(self._stores) >= _MAX_METADATA_WATCHES:
                raise KubernetesError(
                    f"not watching {resource}: {_MAX_METADATA_WATCHES} resources are watched"
                    " already"
                )
            store = self._stores[resource] = _Store()
            store.namespaced = info.namespaced
        if not self._stop.is_set():
            self._watch(resource, _metadata_lister(self._client, info))
        return store

    def stop(self) -> None:
        self._stop.set()

    @property
    def client(self) -> Connection:
        """The client this cache lists with (``/debug/hpa`` reads HPAs through it)."""
        return self._client

    @staticmethod
    def _error_recorder(store: _Store) -> Callable[[str], None]:
        def record(message: str) -> None:
            store.error = message

        return record

    @staticmethod
    def _replacer(resource: GroupResource, store: _Store) -> Callable[[list[dict[str, Any]]], None]:
        def replace(items: list[dict[str, Any]]) -> None:
            objects = dict(_to_object(resource, item) for item in items)
            by_namespace: dict[str, dict[tuple[str, str], _Object]] = {}
            for key, obj in objects.items():
                by_namespace.setdefault(key[0], {})[key] = obj
            with store.lock:
                store.objects = objects
                store.by_namespace = by_namespace
                store.last_event = time.monotonic()
                store.error = None
                store.lists += 1
            store.ready.set()

        return replace

    @staticmethod
    def _updater(resource: GroupResource, store: _Store) -> Callable[[str, dict[str, Any]], None]:
        def update(kind: str, obj: dict[str, Any]) -> None:
            key, value = _to_object(resource, obj)
            with store.lock:
                in_namespace = store.by_namespace.setdefault(key[0], {})
                if kind == "DELETED":
                    store.objects.pop(key, None)
                    in_namespace.pop(key, None)
                else:
                    store.objects[key] = value
                    in_namespace[key] = value
                store.last_event = time.monotonic()
                store.changes += 1
                store.changes_in[key[0]] = store.changes_in.get(key[0], 0) + 1

        return update

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every initial list; ``True`` if all are in."""
        deadline = time.monotonic() + timeout
        while not all(s.ready.is_set() for s in list(self._stores.values())):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def names(
        self,
        resource: GroupResource,
        namespace: str | None,
        selector: Sequence[Requirement],
    ) -> tuple[str, ...]:
        """Names of existing, active objects of ``resource`` in ``namespace`` matching
        ``selector``, sorted (every namespace for a cluster-scoped resource). Waits for the first
        list of ``resource``; :class:`KubernetesUnavailableError` (503) when it is not in within
        the wait or failed (:class:`KubernetesForbiddenError` when RBAC refused it: the message
        says which permission); :class:`NotFoundError` for a resource the cluster does not serve."""
        store = await self._metadata_store(resource)
        wait = max(self._ready_wait, self._client.timeout)
        deadline = time.monotonic() + wait
        while not store.ready.is_set():
            _raise_list_failure(resource, store.error)
            if time.monotonic() >= deadline:
                raise KubernetesUnavailableError(
                    f"the first list of {resource} is not in after {wait:g} s: without it the"
                    " labelSelector cannot be applied (retry; /debug shows the watch)"
                )
            await asyncio.sleep(0.05)
        with store.lock:
            if namespace is not None and store.namespaced:
                return _matching(store.by_namespace.get(namespace, {}), namespace, selector)
            return _matching(store.objects, None, selector)

    def generation(self, resource: GroupResource, namespace: str | None) -> Hashable | None:
        """Changes whenever :meth:`names` for ``resource`` in ``namespace`` may answer otherwise
        (a list, or an event in that namespace); ``None`` before the first list."""
        store = self._stores.get(resource)
        if store is None or not store.ready.is_set():
            return None
        with store.lock:
            if namespace is None or not store.namespaced:
                return (store.lists, store.changes)
            return (store.lists, store.changes_in.get(namespace, 0))

    def status(self) -> dict[str, Any]:
        """For ``/debug``: per resource watched, ``ready``, object count, ``age`` (seconds since
        the last event or list, ``None`` before the first) and the last watch error."""
        now = time.monotonic()
        out: dict[str, Any] = {}
        for resource, store in list(self._stores.items()):
            with store.lock:
                out[str(resource)] = {
                    "ready": store.ready.is_set(),
                    "objects": len(store.objects),
                    "age": None if store.last_event is None else round(now - store.last_event, 3),
                    "error": store.error,
                }
        return out
