"""Authorization attributes of a request, derived as k8s.io/apiserver's RequestInfoFactory does.

``/apis/<group>/<version>/...`` with at least one segment after the version is a *resource*
request; everything else (``/apis``, ``/apis/<group>/<version>``, ``/openapi/v3``, ``/version``,
``/metrics``, ``/debug/...``) is a *non-resource* request whose verb is the lowercased HTTP method.

For resource requests, ``namespaces/<ns>/`` sets the namespace, then the remaining segments are
``resource/name/subresource``; a GET with no name is ``list`` (``watch`` with ``?watch=true``).
So for the metrics APIs:

- ``/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m`` → get ``pods/m`` named ``*``
- ``/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/metrics/m`` → get ``metrics`` named ``m``
- ``/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m`` → list ``m`` in ``ns``
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qs

__all__ = ["Attributes", "denial_message", "request_attributes"]

_API_PREFIXES = frozenset({"api", "apis"})
_GROUPLESS_PREFIXES = frozenset({"api"})
_SPECIAL_VERBS = frozenset({"proxy", "watch"})
_SPECIAL_VERBS_NO_SUBRESOURCES = frozenset({"proxy"})
_NAMESPACE_SUBRESOURCES = frozenset({"status", "finalize"})
_METHOD_VERBS = {
    "POST": "create",
    "GET": "get",
    "HEAD": "get",
    "PUT": "update",
    "PATCH": "patch",
    "DELETE": "delete",
}


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a SubjectAccessReview asks about. Hashable (keys the authorization cache)."""

    verb: str
    path: str
    resource_request: bool
    api_group: str = ""
    api_version: str = ""
    namespace: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    def describe(self) -> str:
        """Short human form for logs: ``get pods/m "*" in ns`` or ``get /apis``."""
        if not self.resource_request:
            return f"{self.verb} {self.path}"
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        where = f" in {self.namespace}" if self.namespace else ""
        name = f" {self.name!r}" if self.name else ""
        return f"{self.verb} {resource}.{self.api_group}{name}{where}"


def _split(path: str) -> list[str]:
    trimmed = path.strip("/")
    return trimmed.split("/") if trimmed else []


def _api_version(parts: list[str]) -> tuple[str, str, list[str]] | None:
    """(group, version, the segments after the version) of ``/api/<version>/…`` or
    ``/apis/<group>/<version>/…`` with at least one segment after the version; ``None`` for a
    non-resource path."""
    if len(parts) < 3 or parts[0] not in _API_PREFIXES:
        return None
    prefix, parts = parts[0], parts[1:]
    group = ""
    if prefix not in _GROUPLESS_PREFIXES:
        if len(parts) < 3:
            return None
        group, parts = parts[0], parts[1:]
    return group, parts[0], parts[1:]


def _namespace(parts: list[str]) -> tuple[str, list[str]]:
    """The namespace of ``namespaces/<ns>/…`` and the segments that name the resource.

    ``namespaces/<ns>`` and ``namespaces/<ns>/status|finalize`` are the namespace object itself.
    """
    if parts[0] != "namespaces" or len(parts) < 2:
        return "", parts
    if len(parts) > 2 and parts[2] not in _NAMESPACE_SUBRESOURCES:
        return parts[1], parts[2:]
    return parts[1], parts


def _collection_verb(verb: str, query_string: bytes | str) -> str:
    """A request naming no object acts on the collection: a get lists (or watches, with
    ``?watch=true``), a delete is a deletecollection."""
    if verb == "get":
        query = query_string.decode("latin-1") if isinstance(query_string, bytes) else query_string
        watch = parse_qs(query, keep_blank_values=True).get("watch")
        return "watch" if watch and watch[0].lower() not in {"false", "0"} else "list"
    if verb == "delete":
        return "deletecollection"
    return verb


def request_attributes(method: str, path: str, query_string: bytes | str = b"") -> Attributes:
    """Attributes for ``method`` on ``path`` (already %-decoded, as ASGI gives it)."""
    api = _api_version(_split(path))
    if api is None:
        return Attributes(verb=method.lower(), path=path, resource_request=False)
    group, version, parts = api
    if parts[0] in _SPECIAL_VERBS:
        if len(parts) < 2:
            # k8s.io/apiserver reports an error here; a resource with no kind is never allowed.
            return Attributes(
                verb=parts[0],
                path=path,
                resource_request=True,
                api_group=group,
                api_version=version,
            )
        verb, parts = parts[0], parts[1:]
    else:
        verb = _METHOD_VERBS.get(method.upper(), "")
    namespace, parts = _namespace(parts)
    name = parts[1] if len(parts) >= 2 else ""
    subresource = parts[2] if len(parts) >= 3 and verb not in _SPECIAL_VERBS_NO_SUBRESOURCES else ""
    return Attributes(
        verb=verb if name else _collection_verb(verb, query_string),
        path=path,
        resource_request=True,
        api_group=group,
        api_version=version,
        namespace=namespace,
        resource=parts[0],
        subresource=subresource,
        name=name,
    )


def denial_message(user: str, attributes: Attributes, reason: str = "") -> str:
    """The message k8s.io/apiserver's ``Forbidden`` writes, reason appended after a colon."""
    a = attributes
    if not a.resource_request:
        message = f"User {_q(user)} cannot {a.verb} path {_q(a.path)}"
    else:
        resource = f"{a.resource}/{a.subresource}" if a.subresource else a.resource
        if a.namespace:
            message = (
                f"User {_q(user)} cannot {a.verb} resource {_q(resource)} in API group "
                f"{_q(a.api_group)} in the namespace {_q(a.namespace)}"
            )
        else:
            message = (
                f"User {_q(user)} cannot {a.verb} resource {_q(resource)} in API group "
                f"{_q(a.api_group)} at the cluster scope"
            )
    return f"{message}: {reason}" if reason else message


def _q(text: str) -> str:
    """Go's ``%q`` for the plain strings found here: double quotes, backslash-escaped."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
