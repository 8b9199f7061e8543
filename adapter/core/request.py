"""Metrics API paths to request values, shared by the HTTP routes, ``/debug/query`` and the CLI.

Routes (all under ``/apis/``)::

    custom.metrics.k8s.io/{v}/namespaces/{ns}/{resource}/{name|*}/{metric}
    custom.metrics.k8s.io/{v}/namespaces/{ns}/metrics/{metric}      (the namespace object itself)
    custom.metrics.k8s.io/{v}/{resource}/{name|*}/{metric}          (cluster-scoped objects)
    external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal
from urllib.parse import parse_qs, unquote, urlsplit

from adapter.core.selectors import parse_selector
from adapter.domain.errors import BadRequestError, NotFoundError
from adapter.domain.models import GroupResource, Requirement

__all__ = [
    "CUSTOM_VERSIONS",
    "EXTERNAL_VERSIONS",
    "ApiRequest",
    "parse_api_path",
    "parse_path_string",
    "valid_metric_name",
]

CUSTOM_VERSIONS = ("v1beta1", "v1beta2")
EXTERNAL_VERSIONS = ("v1beta1",)

_NAMESPACE_RE = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_RESOURCE_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_METRIC_RE = re.compile(r"^[A-Za-z0-9_:.|\-]{1,512}$")


def valid_metric_name(name: str) -> bool:
    """Metric names are path segments: letters, digits, ``_ : . | -``; never ``/`` or ``%``."""
    return bool(_METRIC_RE.match(name))


@dataclass(frozen=True, slots=True)
class ApiRequest:
    """One metrics API request, parsed and validated.

    ``name`` is ``None`` for ``*``. ``namespace`` is the scope the answer is restricted to: the
    request's namespace, or for ``namespaces/{ns}/metrics/{m}`` the namespace itself; ``None`` only
    for cluster-scoped objects.
    """

    group: Literal["custom", "external"]
    version: str
    metric: str
    namespace: str | None
    resource: GroupResource | None = None
    name: str | None = None
    namespaced: bool = True
    label_selector: tuple[Requirement, ...] = ()
    metric_selector: tuple[Requirement, ...] = ()


def _check_namespace(ns: str) -> str:
    if not _NAMESPACE_RE.match(ns):
        raise BadRequestError(f"invalid namespace {ns!r}: must be a DNS-1123 label")
    return ns


def _check_name(name: str) -> str | None:
    if name == "*":
        return None
    if not _NAME_RE.match(name):
        raise BadRequestError(f"invalid object name {name!r}: must be a DNS-1123 subdomain or '*'")
    return name


def _check_resource(resource: str) -> GroupResource:
    if not _RESOURCE_RE.match(resource):
        raise BadRequestError(f"invalid resource {resource!r}")
    return GroupResource.parse(resource)


def _check_metric(metric: str, where: str) -> str:
    if not valid_metric_name(metric):
        raise NotFoundError(f"the server could not find the metric {metric!r} for {where}")
    return metric


def _not_found(path: str) -> NotFoundError:
    return NotFoundError(f"the server could not find the requested resource {path!r}")


def _external_request(
    version: str, rest: list[str], path: str, query: Mapping[str, str]
) -> ApiRequest:
    """``external.metrics.k8s.io/v1beta1/namespaces/{ns}/{metric}``."""
    if version not in EXTERNAL_VERSIONS:
        raise NotFoundError(f"external.metrics.k8s.io has no version {version!r}")
    if len(rest) != 3 or rest[0] != "namespaces":
        raise NotFoundError(
            "external metrics are served at namespaces/{namespace}/{metric} only: "
            f"{path!r} is not a route"
        )
    namespace = _check_namespace(rest[1])
    metric = _check_metric(rest[2], f"namespace {namespace}")
    return ApiRequest(
        group="external",
        version=version,
        metric=metric,
        namespace=namespace,
        metric_selector=parse_selector(query.get("labelSelector")),
    )


def _namespace_itself(version: str, namespace: str, metric: str) -> ApiRequest:
    """A metric of the namespace object itself (its name and namespace are the same)."""
    return ApiRequest(
        group="custom",
        version=version,
        metric=metric,
        namespace=namespace,
        resource=GroupResource("namespaces"),
        name=namespace,
        namespaced=False,
    )


def _namespaced_object(version: str, rest: list[str]) -> ApiRequest:
    """``namespaces/{ns}/{resource}/{name|*}/{metric}``."""
    namespace = _check_namespace(rest[1])
    resource = _check_resource(rest[2])
    name = _check_name(rest[3])
    where = f"{resource} {name or '*'} in namespace {namespace}"
    return ApiRequest(
        group="custom",
        version=version,
        metric=_check_metric(rest[4], where),
        namespace=namespace,
        resource=resource,
        name=name,
    )


def _cluster_object(version: str, rest: list[str]) -> ApiRequest:
    """``{resource}/{name|*}/{metric}`` for cluster-scoped objects."""
    resource = _check_resource(rest[0])
    name = _check_name(rest[1])
    if resource == GroupResource("namespaces"):
        # namespaces/{name}/{metric}: the namespace object, same as namespaces/{ns}/metrics/{m}.
        if name is None:
            raise BadRequestError("namespaces/*/{metric} is not supported: name one namespace")
        metric = _check_metric(rest[2], f"namespace {name}")
        return _namespace_itself(version, _check_namespace(name), metric)
    return ApiRequest(
        group="custom",
        version=version,
        metric=_check_metric(rest[2], f"{resource} {name or '*'}"),
        namespace=None,
        resource=resource,
        name=name,
        namespaced=False,
    )


def _custom_object(version: str, rest: list[str], path: str) -> ApiRequest:
    """The object a custom metrics route describes, by the route's shape."""
    if len(rest) == 4 and rest[0] == "namespaces" and rest[2] == "metrics":
        namespace = _check_namespace(rest[1])
        return _namespace_itself(
            version, namespace, _check_metric(rest[3], f"namespace {namespace}")
        )
    if len(rest) == 5 and rest[0] == "namespaces":
        return _namespaced_object(version, rest)
    if len(rest) == 3:
        return _cluster_object(version, rest)
    raise _not_found(path)


def _custom_request(
    version: str, rest: list[str], path: str, query: Mapping[str, str]
) -> ApiRequest:
    if version not in CUSTOM_VERSIONS:
        raise NotFoundError(f"custom.metrics.k8s.io has no version {version!r}")
    # The selectors are checked before the path's names, so a bad selector is reported first.
    label_selector = parse_selector(query.get("labelSelector"))
    metric_selector = parse_selector(query.get("metricLabelSelector"))
    return replace(
        _custom_object(version, rest, path),
        label_selector=label_selector,
        metric_selector=metric_selector,
    )


def parse_api_path(path: str, query: Mapping[str, str] | None = None) -> ApiRequest:
    """Parse a decoded request path (``/apis/...``) and its query parameters.

    Raises NotFoundError for paths that are not metric routes or name unknown groups/versions,
    and BadRequestError for malformed names and selectors.
    """
    query = query or {}
    segments = path.strip("/").split("/")
    if len(segments) < 4 or segments[0] != "apis":
        raise _not_found(path)
    group, version, rest = segments[1], segments[2], segments[3:]
    if any(segment == "" for segment in rest):
        raise _not_found(path)
    if group == "external.metrics.k8s.io":
        return _external_request(version, rest, path, query)
    if group == "custom.metrics.k8s.io":
        return _custom_request(version, rest, path, query)
    raise _not_found(path)


def parse_path_string(path_and_query: str) -> ApiRequest:
    """Parse ``/apis/...?...`` as given on a command line or to ``/debug/query``."""
    parts = urlsplit(path_and_query)
    params = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
    return parse_api_path(unquote(parts.path), params)
