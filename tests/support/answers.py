"""Drive an ASGI app with exact bytes, and judge every answer the way a Kubernetes client would.

:func:`call` builds the scope uvicorn would build (``path`` is the percent-decoded ``raw_path``,
the query string is passed raw), so hostile paths (``..``, ``%2F``, ``%00``) reach the app
unnormalized; an exception escaping the app propagates to the test. :func:`check_answer` asserts
the contract: no 5xx, every non-2xx a consistent ``metav1.Status``, every 2xx a well-formed
document whose metric values are finite Kubernetes quantities.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import httpx
from starlette.types import ASGIApp, Message

__all__ = [
    "REASONS",
    "Reply",
    "call",
    "check_answer",
    "check_status",
    "check_value_list",
    "quantity_value",
    "values_of",
]

REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    406: "NotAcceptable",
    415: "UnsupportedMediaType",
    429: "TooManyRequests",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}
"""``metav1.StatusReason`` for each HTTP code, as the apiserver's own errors carry them."""

# A Kubernetes quantity: sign, digits, optional fraction, then a decimal-SI, binary-SI or
# exponent suffix (k8s.io/apimachinery/pkg/api/resource).
_QUANTITY_RE = re.compile(
    r"^(?P<num>[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
_SUFFIX = {
    "": 1.0,
    "n": 1e-9,
    "u": 1e-6,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}
_TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")
_DOC_KINDS = frozenset({"APIResourceList", "APIGroup", "APIGroupList", "APIGroupDiscoveryList"})


@dataclass(frozen=True, slots=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def call(
    app: ASGIApp,
    raw_path: bytes,
    *,
    query: bytes = b"",
    method: str = "GET",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Reply:
    """One HTTP/1.1 request through ``app``; ``raw_path`` as on the wire (ASCII, %-escaped)."""
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": unquote(raw_path.decode("ascii")),
        "raw_path": raw_path,
        "root_path": "",
        "query_string": query,
        "headers": [(b"host", b"adapter"), *(headers or [])],
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 6443),
        "extensions": {},
        "state": {},
    }
    sent = False
    started: dict[str, Any] = {}
    chunks: list[bytes] = []

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            started.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    assert started, f"no response for {raw_path!r}"
    hdrs = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in started["headers"]}
    return Reply(started["status"], hdrs, b"".join(chunks))


def quantity_value(text: str) -> float:
    """The number a Kubernetes quantity string stands for; AssertionError if it is not one."""
    match = _QUANTITY_RE.match(text)
    assert match is not None, f"{text!r} is not a Kubernetes quantity"
    suffix = match.group("suffix") or ""
    if suffix[:1] in {"e", "E"}:
        value = float(match.group("num") + suffix)
    else:
        value = float(match.group("num")) * _SUFFIX[suffix]
    assert math.isfinite(value), f"{text!r} is not finite"
    return value


def check_status(reply: Reply, what: str) -> dict[str, Any]:
    """A non-2xx answer must be a ``metav1.Status`` consistent with its HTTP code."""
    assert reply.headers.get("content-type", "").startswith("application/json"), what
    body = reply.json()
    assert isinstance(body, dict), what
    assert body.get("kind") == "Status", (what, body)
    assert body.get("apiVersion") == "v1", (what, body)
    assert body.get("status") == "Failure", (what, body)
    assert body.get("code") == reply.status, (what, body)
    assert body.get("reason") == REASONS.get(reply.status), (what, body)
    message = body.get("message")
    assert isinstance(message, str) and message.strip(), (what, body)
    return body


def assert_status(response: httpx.Response, codes: set[int]) -> dict[str, Any]:
    """``response`` (from an httpx client) has one of ``codes`` and is its ``metav1.Status``."""
    assert response.status_code in codes, (response.status_code, response.text[:300])
    reply = Reply(response.status_code, dict(response.headers), response.content)
    return check_status(reply, f"{response.request.method} {response.request.url}")


def values_of(response: httpx.Response, *, kinds: Collection[str] | None = None) -> list[float]:
    """The values of a 200 answer's items, each a finite Kubernetes quantity; with ``kinds``, the
    answer's ``kind`` must be one of them."""
    assert response.status_code == 200, response.text[:300]
    body = response.json()
    if kinds is not None:
        assert body["kind"] in kinds, body
    out = [quantity_value(item["value"]) for item in body["items"]]
    assert all(math.isfinite(v) for v in out)
    return out


def check_value_list(body: dict[str, Any], what: str, *, namespace: str | None = None) -> None:
    """A ``MetricValueList``/``ExternalMetricValueList``: right apiVersion, one finite quantity and
    an RFC 3339 timestamp per item; with ``namespace``, every described object lives there."""
    kind = body["kind"]
    items = body.get("items")
    assert isinstance(items, list), (what, body)
    version = body.get("apiVersion", "")
    if kind == "ExternalMetricValueList":
        assert version == "external.metrics.k8s.io/v1beta1", (what, body)
    else:
        assert version in {"custom.metrics.k8s.io/v1beta1", "custom.metrics.k8s.io/v1beta2"}
    for item in items:
        assert isinstance(item.get("value"), str), (what, item)
        quantity_value(item["value"])
        assert _TIMESTAMP_RE.match(item.get("timestamp", "")), (what, item)
        if kind == "ExternalMetricValueList":
            assert isinstance(item.get("metricLabels"), dict), (what, item)
            continue
        described = item.get("describedObject")
        assert isinstance(described, dict) and described.get("name"), (what, item)
        if namespace is not None and described.get("kind") != "Namespace":
            assert described.get("namespace") == namespace, (what, item)
        if version.endswith("v1beta2"):
            assert isinstance(item.get("metric", {}).get("name"), str), (what, item)
        else:
            assert isinstance(item.get("metricName"), str), (what, item)


def check_answer(reply: Reply, what: str, *, namespace: str | None = None) -> dict[str, Any]:
    """Judge one answer: no 5xx; Status for failures; a well-formed document for successes."""
    assert reply.status < 500, (what, reply.status, reply.body[:500])
    if reply.status >= 300:
        return check_status(reply, what)
    if not reply.headers.get("content-type", "").startswith("application/json"):
        # Only the health checks and /metrics (Prometheus text) answer anything but JSON.
        assert not what.startswith(("/apis", "/openapi")), (what, reply.headers)
        return {}
    body = reply.json()
    assert isinstance(body, dict), what
    kind = body.get("kind")
    if kind in {"MetricValueList", "ExternalMetricValueList"}:
        check_value_list(body, what, namespace=namespace)
    else:
        assert kind in _DOC_KINDS or kind is None, (what, kind)
    return body
