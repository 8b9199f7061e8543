"""The connection to the Kubernetes API that every call in :mod:`adapter.kube` goes through.

The ``kubernetes`` package is synchronous: every call runs in a worker thread with an explicit
timeout, never on the event loop, and every failure becomes one of the adapter's errors (a 404
:class:`~adapter.domain.errors.NotFoundError`, a 403 :class:`KubernetesForbiddenError`, anything
else :class:`KubernetesError`) whose message never carries a request or response body.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Callable
from typing import Any, Self

from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import MaxRetryError

from adapter.domain.errors import AdapterError, ConfigError, NotFoundError, ObjectsUnavailableError

__all__ = [
    "Connection",
    "KubernetesError",
    "KubernetesForbiddenError",
    "KubernetesUnavailableError",
    "decode_json",
    "describe_failure",
    "load_api_client",
]


class KubernetesError(AdapterError):
    """The Kubernetes API did not answer, or answered an error. Never carries request bodies."""


class KubernetesUnavailableError(KubernetesError, ObjectsUnavailableError):
    """What the adapter needs from the Kubernetes API is not in yet (the first list of a resource
    has not answered, or failed and is being retried): a 503 the client may retry, never an
    answer that would ignore the request's ``labelSelector``."""


class KubernetesForbiddenError(KubernetesError):
    """The Kubernetes API refused the adapter's own identity (403): a deployment problem, so it
    stays a 500 for the adapter's client, with a message that says which permission is missing."""


def _default_kubeconfig() -> str | None:
    """``$KUBECONFIG`` (its first file) or ``~/.kube/config``, if it exists, as kubectl finds it."""
    for candidate in (*os.environ.get("KUBECONFIG", "").split(os.pathsep), "~/.kube/config"):
        path = os.path.expanduser(candidate) if candidate else ""
        if path and os.path.isfile(path):
            return path
    return None


def load_api_client(kubeconfig: str | None, *, context: str | None = None) -> Any:
    """A ``kubernetes.client.ApiClient``, found as kubectl and controller-runtime find one:
    ``kubeconfig`` if given; else the in-cluster service account; else ``$KUBECONFIG`` or
    ``~/.kube/config``. ``context`` picks a kubeconfig context (default: its current one)."""
    if not kubeconfig and not context:
        configuration = k8s_client.Configuration()
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
        except k8s_config.ConfigException:
            pass
        else:
            return k8s_client.ApiClient(configuration)
    path = kubeconfig or _default_kubeconfig()
    if path is None:
        raise ConfigError(
            "not running in a cluster (no service account) and no kubeconfig found ($KUBECONFIG,"
            " ~/.kube/config): pass --kubeconfig (serve also takes --standalone, without"
            " Kubernetes)"
        )
    try:
        return k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=path, context=context, persist_config=False
        )
    except (k8s_config.ConfigException, OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"cannot use kubeconfig {path}: {exc}") from exc


def describe_failure(what: str, exc: BaseException) -> str:
    """One line naming ``what`` failed and how: the HTTP status, or the transport error (which
    names the host and the failure, never headers or bodies)."""
    if isinstance(exc, ApiException):
        return f"{what}: HTTP {exc.status} {exc.reason or ''}".rstrip()
    if isinstance(exc, MaxRetryError):
        # "HTTPSConnection(host=..., port=...): Failed to establish ...: [Errno 111] refused"
        reason = str(exc.reason).split("): ", 1)[-1] if exc.reason is not None else "no answer"
        return f"{what}: cannot reach {exc.pool.host}:{exc.pool.port}: {reason}"
    # urllib3 and socket errors name the host and the failure, never headers or bodies.
    return f"{what}: {type(exc).__name__}: {exc}"


def decode_json(response: Any) -> dict[str, Any]:
    """The JSON object of an undecoded (``_preload_content=False``) response."""
    data = json.loads(response.data)
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    return data


class Connection:
    """A Kubernetes API client and the one way to call it: in a worker thread, with a timeout,
    failures mapped to the adapter's errors. ``timeout``: seconds per call."""

    def __init__(self, api: Any, *, timeout: float = 10.0) -> None:
        self.api = api
        self.timeout = timeout

    @classmethod
    def connect(
        cls, kubeconfig: str | None, *, context: str | None = None, timeout: float = 10.0
    ) -> Self:
        return cls(load_api_client(kubeconfig, context=context), timeout=timeout)

    async def check_reachable(self) -> None:
        """Ask the apiserver its version: a :class:`KubernetesError` naming the failure, in one
        line, when it cannot be reached (rather than retry warnings per call later)."""
        await self.call("reaching the Kubernetes API", k8s_client.VersionApi(self.api).get_code)

    def close(self) -> None:
        self.api.close()

    async def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run ``fn`` in a thread with a timeout; decode its JSON answer; map every failure:
        a 404 to :class:`NotFoundError`, a 403 to :class:`KubernetesForbiddenError`, anything else
        to :class:`KubernetesError`."""

        def run() -> dict[str, Any]:
            response = fn(*args, _preload_content=False, _request_timeout=self.timeout, **kwargs)
            return decode_json(response)

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
            raise KubernetesError(describe_failure(what, exc)) from None
        except (Urllib3Error, OSError, ValueError) as exc:
            raise KubernetesError(describe_failure(what, exc)) from None
