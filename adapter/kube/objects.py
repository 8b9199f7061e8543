"""Which objects exist: pods, services, deployments and statefulsets, kept by list-then-watch;
any other resource the apiserver serves, listed on demand as metadata.

:class:`ObjectCache` implements :class:`adapter.core.provider.ObjectSource`, so Pods metrics answer
only for pods that exist, are not terminating or finished, and match the HPA's selector, and
``<resource>/*`` with a ``labelSelector`` answers for the objects that exist and match, for any
resource (jobs.batch, nodes, a CRD): :class:`_MetadataLister` finds the resource's version and
scope in the apiserver's discovery and lists ``PartialObjectMetadata`` (names, labels, deletion),
never whole objects.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes.client.exceptions import ApiException

from adapter.domain.errors import NotFoundError
from adapter.domain.models import GroupResource, Requirement
from adapter.kube.connection import Connection
from adapter.kube.watch import ListWatch

__all__ = ["WATCHED_RESOURCES", "ObjectCache", "selector_matches"]

_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json"
_DISCOVERY_TTL = 60.0
"""Seconds a group's discovery (preferred version, resources and their scope) is reused."""
LIST_TTL = 2.0
"""Seconds one metadata list of a resource in a namespace is reused (an HPA asks every 15 s)."""


def selector_matches(labels: Mapping[str, str], selector: Sequence[Requirement]) -> bool:
    """Kubernetes label-selector semantics (``k8s.io/apimachinery/pkg/labels``)."""
    for req in selector:
        present = req.key in labels
        value = labels.get(req.key, "")
        if req.op == "=":
            ok = present and value == req.values[0]
        elif req.op == "!=":
            ok = not present or value != req.values[0]
        elif req.op == "in":
            ok = present and value in req.values
        elif req.op == "notin":
            ok = not present or value not in req.values
        elif req.op == "exists":
            ok = present
        elif req.op == "!":
            ok = not present
        else:  # gt, lt: both sides must be integers
            try:
                have, want = int(value), int(req.values[0])
            except (ValueError, IndexError):
                return False
            ok = present and (have > want if req.op == "gt" else have < want)
        if not ok:
            return False
    return True


@dataclass(slots=True)
class _Object:
    labels: dict[str, str]
    active: bool


@dataclass
class _Store:
    objects: dict[tuple[str, str], _Object] = field(default_factory=dict)
    ready: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_event: float | None = None
    error: str | None = None


def _to_object(resource: GroupResource, obj: Mapping[str, Any]) -> tuple[tuple[str, str], _Object]:
    meta = obj.get("metadata") or {}
    key = (str(meta.get("namespace") or ""), str(meta.get("name") or ""))
    active = not meta.get("deletionTimestamp")
    if resource.resource == "pods":
        phase = (obj.get("status") or {}).get("phase")
        active = active and phase not in {"Succeeded", "Failed"}
    labels = {str(k): str(v) for k, v in (meta.get("labels") or {}).items()}
    return key, _Object(labels=labels, active=active)


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


WATCHED_RESOURCES: tuple[GroupResource, ...] = (
    GroupResource("pods"),
    GroupResource("services"),
    GroupResource("deployments", "apps"),
    GroupResource("statefulsets", "apps"),
)
"""Resources :class:`ObjectCache` watches; any other is listed when asked for."""


class _MetadataLister:
    """Objects of any resource, listed as ``PartialObjectMetadataList`` when asked for (briefly
    reused), with the resource's version and scope from the apiserver's discovery."""

    def __init__(self, client: Connection, *, list_ttl: float = LIST_TTL) -> None:
        self._client = client
        self._list_ttl = list_ttl
        # group -> (monotonic time, "v1" or "group/version", {plural: namespaced})
        self._discovery: dict[str, tuple[float, str, dict[str, bool]]] = {}
        self._lists: dict[
            tuple[GroupResource, str | None], tuple[float, dict[tuple[str, str], _Object]]
        ] = {}

    async def _call(self, what: str, path: str, accept: str = "application/json") -> Any:
        return await self._client.call(what, self._get, path, accept)

    def _get(self, path: str, accept: str, **options: Any) -> Any:
        """A GET of ``path`` (fixed by the caller, never from a request) with the adapter's
        credentials; an :class:`ApiException` for an error status, as generated calls raise."""
        api = self._client.api
        method, url, headers, body, post = api.param_serialize(
            "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
        )
        response = api.call_api(
            method, url, header_params=headers, body=body, post_params=post,
            _request_timeout=options.get("_request_timeout"),
        )  # fmt: skip
        response.read()
        if response.status >= 400:
            raise ApiException(status=response.status, reason=response.reason)
        return response

    async def _served(self, group: str) -> tuple[str, dict[str, bool]]:
        """The group's preferred version and its resources (plural -> namespaced)."""
        cached = self._discovery.get(group)
        if cached is not None and time.monotonic() - cached[0] < _DISCOVERY_TTL:
            return cached[1], cached[2]
        if group:
            info = await self._call(f"discovering API group {group}", f"/apis/{group}")
            version = str((info.get("preferredVersion") or {}).get("groupVersion") or "")
            if not version:
                raise NotFoundError(f"the API group {group} has no served version")
            listing = await self._call(f"discovering {version}", f"/apis/{version}")
        else:
            version = "v1"
            listing = await self._call("discovering the core API", "/api/v1")
        served = {
            str(r.get("name")): bool(r.get("namespaced"))
            for r in listing.get("resources") or []
            if "/" not in str(r.get("name")) and "list" in (r.get("verbs") or [])
        }
        self._discovery[group] = (time.monotonic(), version, served)
        return version, served

    async def objects(
        self, resource: GroupResource, namespace: str | None
    ) -> dict[tuple[str, str], _Object]:
        """Objects of ``resource`` in ``namespace`` (all of them for a cluster-scoped resource);
        :class:`NotFoundError` when the cluster does not serve the resource."""
        key = (resource, namespace)
        cached = self._lists.get(key)
        if cached is not None and time.monotonic() - cached[0] < self._list_ttl:
            return cached[1]
        version, served = await self._served(resource.group)
        if resource.resource not in served:
            raise NotFoundError(f"the cluster does not serve the resource {resource}")
        base = f"/apis/{version}" if resource.group else "/api/v1"
        scoped = served[resource.resource] and namespace is not None
        path = (
            f"{base}/namespaces/{namespace}/{resource.resource}"
            if scoped
            else f"{base}/{resource.resource}"
        )
        listing = await self._call(f"listing {resource}", path, _METADATA_LIST)
        objects = dict(_to_object(resource, item) for item in listing.get("items") or [])
        self._lists[key] = (time.monotonic(), objects)
        if len(self._lists) > 1024:
            del self._lists[next(iter(self._lists))]
        return objects


class ObjectCache:
    """Which objects exist, from list-then-watch threads; implements ``ObjectSource``.

    ``ready_wait``: seconds :meth:`names` waits for the initial list before answering ``None``;
    ``list_ttl``: seconds a metadata list of an unwatched resource is reused.
    """

    def __init__(
        self, client: Connection, *, ready_wait: float = 2.0, list_ttl: float = LIST_TTL
    ) -> None:
        self._client = client
        self._ready_wait = ready_wait
        self._stores = {resource: _Store() for resource in WATCHED_RESOURCES}
        self._lister = _MetadataLister(client, list_ttl=list_ttl)
        self._stop = threading.Event()
        self._started = False

    def _list_function(self, resource: GroupResource) -> Callable[..., Any]:
        core = k8s_client.CoreV1Api(self._client.api)
        apps = k8s_client.AppsV1Api(self._client.api)
        functions: dict[GroupResource, Callable[..., Any]] = {
            GroupResource("pods"): core.list_pod_for_all_namespaces,
            GroupResource("services"): core.list_service_for_all_namespaces,
            GroupResource("deployments", "apps"): apps.list_deployment_for_all_namespaces,
            GroupResource("statefulsets", "apps"): apps.list_stateful_set_for_all_namespaces,
        }
        return functions[resource]

    def start(self) -> None:
        """Start one watch thread per resource (idempotent)."""
        if self._started:
            return
        self._started = True
        for resource, store in self._stores.items():
            ListWatch(
                name=f"watch-{resource}",
                list_fn=self._list_function(resource),
                kwargs={},
                on_replace=self._replacer(resource, store),
                on_event=self._updater(resource, store),
                stop=self._stop,
                request_timeout=self._client.timeout,
                on_error=self._error_recorder(store),
            ).start()

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
            with store.lock:
                store.objects = objects
                store.last_event = time.monotonic()
                store.error = None
            store.ready.set()

        return replace

    @staticmethod
    def _updater(resource: GroupResource, store: _Store) -> Callable[[str, dict[str, Any]], None]:
        def update(kind: str, obj: dict[str, Any]) -> None:
            key, value = _to_object(resource, obj)
            with store.lock:
                if kind == "DELETED":
                    store.objects.pop(key, None)
                else:
                    store.objects[key] = value
                store.last_event = time.monotonic()

        return update

    async def wait_ready(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for every initial list; ``True`` if all are in."""
        deadline = time.monotonic() + timeout
        while not all(s.ready.is_set() for s in self._stores.values()):
            if time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    async def names(
        self,
        resource: GroupResource,
        namespace: str | None,
        selector: Sequence[Requirement],
    ) -> tuple[str, ...] | None:
        """Names of existing, active objects of ``resource`` in ``namespace`` matching
        ``selector``, sorted; ``None`` for a resource not watched or not listed yet."""
        store = self._stores.get(resource)
        if store is None:
            objects = await self._lister.objects(resource, namespace)
            return _matching(objects, None, selector)
        deadline = time.monotonic() + self._ready_wait
        while not store.ready.is_set():
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)
        with store.lock:
            return _matching(store.objects, namespace, selector)

    def status(self) -> dict[str, Any]:
        """For ``/debug``: per resource, ``ready``, object count, ``age`` (seconds since the last
        event or list, ``None`` before the first) and the last watch error."""
        now = time.monotonic()
        out: dict[str, Any] = {}
        for resource, store in self._stores.items():
            with store.lock:
                out[str(resource)] = {
                    "ready": store.ready.is_set(),
                    "objects": len(store.objects),
                    "age": None if store.last_event is None else round(now - store.last_event, 3),
                    "error": store.error,
                }
        return out
