"""Everything that talks to the Kubernetes API. The only module that imports ``kubernetes``.

- :class:`KubeClient`: a client from ``--kubeconfig`` or the in-cluster service account, and the
  calls delegated auth needs — TokenReview, SubjectAccessReview, reading and watching
  ``kube-system/extension-apiserver-authentication``. The ``kubernetes`` package is synchronous:
  every call runs in a worker thread with an explicit timeout, never on the event loop.
- :class:`ObjectCache`: which pods, services, deployments and statefulsets exist, kept current by
  list-then-watch threads; it implements :class:`adapter.core.provider.ObjectSource`, so Pods metrics
  answer only for pods that exist, are not terminating or finished, and match the HPA's selector.

Watches restart with exponential backoff (0.5 s to 30 s) from the last resourceVersion, relisting
when the API says it is too old (410) or anything else went wrong; meanwhile the caches keep
their last state. Watch threads are daemons that also stop when :meth:`stop` is called (within one
watch period, ``WATCH_SECONDS``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error

from adapter.auth.attributes import Attributes
from adapter.auth.authz import Decision
from adapter.auth.config import (
    AUTH_CONFIGMAP_NAME,
    AUTH_CONFIGMAP_NAMESPACE,
    AuthConfig,
    AuthConfigHolder,
)
from adapter.auth.user import UserInfo
from adapter.domain.errors import AdapterError, ConfigError, NotFoundError
from adapter.domain.models import GroupResource, Requirement

__all__ = [
    "WATCHED_RESOURCES",
    "WATCH_SECONDS",
    "KubeClient",
    "KubernetesError",
    "KubernetesForbiddenError",
    "ObjectCache",
    "load_api_client",
    "selector_matches",
]

log = logging.getLogger(__name__)

WATCH_SECONDS = 30
"""Server-side timeout of one watch request; the watch is then resumed from its resourceVersion."""

_BACKOFF_MIN_S = 0.5
_BACKOFF_MAX_S = 30.0


class KubernetesError(AdapterError):
    """The Kubernetes API did not answer, or answered an error. Never carries request bodies."""


class KubernetesForbiddenError(KubernetesError):
    """The Kubernetes API refused the adapter's own identity (403): a deployment problem, so it
    stays a 500 for the adapter's client, with a message that says which permission is missing."""


def load_api_client(kubeconfig: str | None) -> Any:
    """A ``kubernetes.client.ApiClient`` from ``kubeconfig``, or in-cluster when ``None``."""
    if kubeconfig:
        try:
            return k8s_config.new_client_from_config(config_file=kubeconfig, persist_config=False)  # type: ignore[no-untyped-call]
        except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"cannot use kubeconfig {kubeconfig}: {exc}") from exc
    configuration = k8s_client.Configuration()
    try:
        k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    except k8s_config.ConfigException as exc:
        raise ConfigError(
            "not running in a cluster (no service account) and no --kubeconfig given; "
            "use --standalone to serve without Kubernetes"
        ) from exc
    return k8s_client.ApiClient(configuration)


def _describe_failure(what: str, exc: BaseException) -> str:
    if isinstance(exc, ApiException):
        return f"{what}: HTTP {exc.status} {exc.reason or ''}".rstrip()
    # urllib3 and socket errors name the host and the failure, never headers or bodies.
    return f"{what}: {type(exc).__name__}: {exc}"


def _decode(response: Any) -> dict[str, Any]:
    data = json.loads(response.data)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


class KubeClient:
    """Async wrapper of the Kubernetes calls the adapter makes. ``timeout``: seconds per call."""

    def __init__(self, api: Any, *, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout

    @classmethod
    def connect(cls, kubeconfig: str | None, *, timeout: float = 10.0) -> KubeClient:
        return cls(load_api_client(kubeconfig), timeout=timeout)

    def close(self) -> None:
        self.api.close()

    async def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` in a thread with a timeout; decode its JSON answer; map every failure:
        a 404 to :class:`NotFoundError`, a 403 to :class:`KubernetesForbiddenError`, anything else
        to :class:`KubernetesError`."""

        def run() -> dict[str, Any]:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            return _decode(response)

        try:
            return await asyncio.to_thread(run)
        except ApiException as exc:
            if exc.status == 404:
                # The object does not exist: a 404 Status for the caller, not a 500.
                raise NotFoundError(f"{what}: not found") from None
            if exc.status == 403:
                raise KubernetesForbiddenError(
                    f"{what}: HTTP 403 Forbidden: the adapter's own identity lacks the RBAC"
                    " permission for it"
                ) from None
            raise KubernetesError(_describe_failure(what, exc)) from None
        except (Urllib3Error, OSError, ValueError) as exc:
            raise KubernetesError(_describe_failure(what, exc)) from None

    async def review_token(self, token: str) -> UserInfo | None:
        """TokenReview: the token's user, or ``None`` if not authenticated."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        api = k8s_client.AuthenticationV1Api(self.api)
        answer = await self._call("TokenReview", api.create_token_review, body)
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        return UserInfo(
            name=str(user.get("username", "")),
            uid=str(user.get("uid", "")),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            extra=tuple(sorted((str(k), tuple(str(v) for v in vs)) for k, vs in extra.items())),
            method="token",
        )

    async def review_access(self, user: UserInfo, attributes: Attributes) -> Decision:
        """SubjectAccessReview for ``user`` doing ``attributes``."""
        spec: dict[str, Any] = {
            "user": user.name,
            "groups": list(user.groups),
            "extra": user.extra_dict(),
        }
        if user.uid:
            spec["uid"] = user.uid
        a = attributes
        if a.resource_request:
            spec["resourceAttributes"] = {
                "namespace": a.namespace,
                "verb": a.verb,
                "group": a.api_group,
                "version": a.api_version,
                "resource": a.resource,
                "subresource": a.subresource,
                "name": a.name,
            }
        else:
            spec["nonResourceAttributes"] = {"path": a.path, "verb": a.verb}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        api = k8s_client.AuthorizationV1Api(self.api)
        answer = await self._call("SubjectAccessReview", api.create_subject_access_review, body)
        status = answer.get("status") or {}
        reason = str(status.get("reason") or status.get("evaluationError") or "")
        return Decision(allowed=bool(status.get("allowed")), reason=reason)

    # ------------------------------------------------------------------ for ``explain``

    async def read_hpa(self, namespace: str, name: str) -> dict[str, Any]:
        """An ``autoscaling/v2`` HorizontalPodAutoscaler as JSON."""
        api = k8s_client.AutoscalingV2Api(self.api)
        answer: dict[str, Any] = await self._call(
            f"reading HorizontalPodAutoscaler {namespace}/{name}",
            api.read_namespaced_horizontal_pod_autoscaler,
            name,
            namespace,
        )
        return answer

    async def read_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        """The ``autoscaling/v1`` Scale of a Deployment, StatefulSet or ReplicaSet."""
        apps = k8s_client.AppsV1Api(self.api)
        functions: dict[str, Callable[..., Any]] = {
            "Deployment": apps.read_namespaced_deployment_scale,
            "StatefulSet": apps.read_namespaced_stateful_set_scale,
            "ReplicaSet": apps.read_namespaced_replica_set_scale,
        }
        fn = functions.get(kind)
        if fn is None:
            raise KubernetesError(
                f"scale target kind {kind!r} is not supported here (Deployment, StatefulSet,"
                " ReplicaSet)"
            )
        answer: dict[str, Any] = await self._call(
            f"reading the scale of {kind} {namespace}/{name}", fn, name, namespace
        )
        return answer

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        """Pods of ``namespace`` matching the label selector string (the scale's selector)."""
        api = k8s_client.CoreV1Api(self.api)
        answer = await self._call(
            f"listing pods in {namespace}",
            api.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        return list(answer.get("items") or [])

    async def list_hpa_events(self, namespace: str, name: str) -> list[dict[str, Any]]:
        """Events about one HorizontalPodAutoscaler (``SuccessfulRescale``, ``Failed…``)."""
        api = k8s_client.CoreV1Api(self.api)
        answer = await self._call(
            f"listing events of {namespace}/{name}",
            api.list_namespaced_event,
            namespace,
            field_selector=(
                f"involvedObject.kind=HorizontalPodAutoscaler,involvedObject.name={name}"
            ),
        )
        return list(answer.get("items") or [])

    async def read_auth_config(self) -> AuthConfig:
        """Read ``kube-system/extension-apiserver-authentication`` once."""
        api = k8s_client.CoreV1Api(self.api)
        answer = await self._call(
            f"reading configmap {AUTH_CONFIGMAP_NAMESPACE}/{AUTH_CONFIGMAP_NAME}",
            api.read_namespaced_config_map,
            AUTH_CONFIGMAP_NAME,
            AUTH_CONFIGMAP_NAMESPACE,
        )
        return AuthConfig.from_configmap(answer.get("data") or {})

    def watch_auth_config(
        self, holder: AuthConfigHolder, loop: asyncio.AbstractEventLoop
    ) -> Callable[[], None]:
        """Keep ``holder`` current from the configmap (updates run on ``loop``); returns a stop
        function."""
        stop = threading.Event()

        def apply(data: Mapping[str, str]) -> None:
            try:
                config = AuthConfig.from_configmap(data)
            except ConfigError as exc:
                log.error("ignoring an invalid %s: %s", AUTH_CONFIGMAP_NAME, exc.message)
                return
            if not loop.is_closed():
                loop.call_soon_threadsafe(holder.update, config)

        def on_replace(items: list[dict[str, Any]]) -> None:
            for item in items:
                apply(item.get("data") or {})

        def on_event(kind: str, obj: dict[str, Any]) -> None:
            if kind == "DELETED":
                log.warning("%s was deleted: keeping the last configuration", AUTH_CONFIGMAP_NAME)
                return
            apply(obj.get("data") or {})

        api = k8s_client.CoreV1Api(self.api)
        _ListWatch(
            name="watch-auth-configmap",
            list_fn=api.list_namespaced_config_map,
            kwargs={
                "namespace": AUTH_CONFIGMAP_NAMESPACE,
                "field_selector": f"metadata.name={AUTH_CONFIGMAP_NAME}",
            },
            on_replace=on_replace,
            on_event=on_event,
            stop=stop,
            request_timeout=self.timeout,
        ).start()
        return stop.set


class _ListWatch(threading.Thread):
    """LIST then WATCH one resource in a daemon thread, forever (until ``stop`` is set).

    ``on_replace(items)`` gets every full list, ``on_event(type, object)`` each ADDED, MODIFIED or
    DELETED object (raw JSON dicts: no model deserialization, it is slow and not needed).
    """

    def __init__(
        self,
        *,
        name: str,
        list_fn: Callable[..., Any],
        kwargs: Mapping[str, Any],
        on_replace: Callable[[list[dict[str, Any]]], None],
        on_event: Callable[[str, dict[str, Any]], None],
        stop: threading.Event,
        request_timeout: float,
        on_error: Callable[[str], None] | None = None,
    ) -> None:
        super().__init__(name=name, daemon=True)
        self._list_fn = list_fn
        self._kwargs = dict(kwargs)
        self._on_replace = on_replace
        self._on_event = on_event
        self._on_error = on_error
        self._stop_event = stop
        self._request_timeout = request_timeout

    def _list(self) -> str:
        response = self._list_fn(
            **self._kwargs, _preload_content=False, _request_timeout=self._request_timeout
        )
        body = _decode(response)
        self._on_replace(list(body.get("items") or []))
        version = (body.get("metadata") or {}).get("resourceVersion")
        return str(version or "")

    def _watch(self, version: str) -> str:
        stream = k8s_watch.Watch()  # type: ignore[no-untyped-call]
        for event in stream.stream(  # type: ignore[no-untyped-call]
            self._list_fn,
            **self._kwargs,
            resource_version=version,
            timeout_seconds=WATCH_SECONDS,
            allow_watch_bookmarks=True,
            deserialize=False,
            _request_timeout=(self._request_timeout, WATCH_SECONDS + 15),
        ):
            if self._stop_event.is_set():
                stream.stop()  # type: ignore[no-untyped-call]
                break
            if not isinstance(event, dict):
                continue
            obj = event.get("object") or {}
            version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
            kind = event.get("type")
            if kind in {"ADDED", "MODIFIED", "DELETED"}:
                self._on_event(str(kind), obj)
        return version

    def run(self) -> None:
        delay = _BACKOFF_MIN_S
        version = ""
        while not self._stop_event.is_set():
            try:
                if not version:
                    version = self._list()
                version = self._watch(version)
                delay = _BACKOFF_MIN_S
            except Exception as exc:  # the thread must survive anything and retry
                # Relist after any failure: a stale resourceVersion (410) is the common case, and
                # a relist is always correct.
                version = ""
                message = _describe_failure(self.name, exc)
                log.warning("%s; retrying in %.1fs", message, delay)
                if self._on_error is not None:
                    self._on_error(message)
                self._stop_event.wait(delay)
                delay = min(delay * 2, _BACKOFF_MAX_S)


# --------------------------------------------------------------------------- object cache


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

    def __init__(self, client: KubeClient, *, ready_wait: float = 2.0) -> None:
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
            _ListWatch(
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
    def client(self) -> KubeClient:
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
