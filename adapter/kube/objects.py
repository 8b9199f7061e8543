"""Which objects exist: pods, services, deployments and statefulsets, kept by list-then-watch.

:class:`ObjectCache` implements :class:`adapter.core.provider.ObjectSource`, so Pods metrics answer
only for pods that exist, are not terminating or finished, and match the HPA's selector.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client

from adapter.domain.models import GroupResource, Requirement
from adapter.kube.connection import Connection
from adapter.kube.watch import ListWatch

__all__ = ["WATCHED_RESOURCES", "ObjectCache", "selector_matches"]


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


WATCHED_RESOURCES: tuple[GroupResource, ...] = (
    GroupResource("pods"),
    GroupResource("services"),
    GroupResource("deployments", "apps"),
    GroupResource("statefulsets", "apps"),
)
"""Resources :class:`ObjectCache` knows; for any other it answers ``None`` (cannot tell)."""


class ObjectCache:
    """Which objects exist, from list-then-watch threads; implements ``ObjectSource``.

    ``ready_wait``: seconds :meth:`names` waits for the initial list before answering ``None``.
    """

    def __init__(self, client: Connection, *, ready_wait: float = 2.0) -> None:
        self._client = client
        self._ready_wait = ready_wait
        self._stores = {resource: _Store() for resource in WATCHED_RESOURCES}
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
            return None
        deadline = time.monotonic() + self._ready_wait
        while not store.ready.is_set():
            if time.monotonic() >= deadline:
                return None
            await asyncio.sleep(0.05)
        with store.lock:
            return tuple(
                sorted(
                    name
                    for (ns, name), obj in store.objects.items()
                    if obj.active
                    and (namespace is None or ns == namespace)
                    and selector_matches(obj.labels, selector)
                )
            )

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
