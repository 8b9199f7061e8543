"""Generated requests against the real app (real rules and presets, the PromQL-evaluating fake).

Paths mix valid segments with hostile ones (``..``, ``%2F``, ``%00``, invalid escapes, unicode,
huge names); selectors mix valid Kubernetes selectors with PromQL-injection attempts and noise.
Every answer must satisfy :func:`tests.support.answers.check_answer`, and wherever the fleet's
values are known, a served value must be exactly the fleet's (never another cluster's or
namespace's).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.types import ASGIApp

from adapter.serving.asgi import create_app
from tests.fuzz.counts import count
from tests.support.answers import Reply, call, check_answer, check_status, quantity_value
from tests.support.app import fleet_context
from tests.support.fake_fleet import fleet_backend

# Values the fleet holds in cluster c1 (the adapter's cluster): team-a a-0 → 3, a-1 → 5; team-b
# b-0 → 100. Cluster c2's team-a a-0 (1000) must never be served.
BACKLOG = {("team-a", "a-0"): 3.0, ("team-a", "a-1"): 5.0, ("team-b", "b-0"): 100.0}
CUSTOM_METRICS = (
    "jetstream_prefill_backlog_size",
    "jetstream_slots_used_percentage",
    "kv_cache_utilization_perc",
    "num_requests_waiting",
)
EXTERNAL_METRICS = (*CUSTOM_METRICS, "memory_used_percentage")
GROUPS = ("custom.metrics.k8s.io", "external.metrics.k8s.io")

HOSTILE_RAW = (
    "..",
    ".",
    "%2F",
    "%2f",
    "%00",
    "%2e%2e",
    "%252F",
    "%",
    "%ZZ",
    "%FF",
    "%C0%AF",
    "%3B",
    "%3F",
    "%23",
    "%0A",
    "%0D%0A",
    "%20",
    "%7B%7D",
    "%22",
    "\\",
    "|",
    "**",
    "%2A",
    "a%2Fb",
    "~",
    ";",
    "%E2%80%AE",
    "%F0%9F%92%A5",
)

# Each example is one request; the loop and the app live for the module (fast, no per-example setup).
_BASE = settings(
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def fuzz(examples: int) -> settings:
    """Hypothesis settings for ``examples`` generated requests, without per-example deadline."""
    return settings(_BASE, max_examples=examples)


@dataclass
class Driver:
    loop: asyncio.AbstractEventLoop
    app: ASGIApp

    def get(
        self,
        raw_path: str,
        query: str = "",
        *,
        method: str = "GET",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> Reply:
        count("api")
        return self.loop.run_until_complete(
            asyncio.wait_for(
                call(
                    self.app,
                    raw_path.encode("ascii"),
                    query=query.encode("ascii"),
                    method=method,
                    headers=headers,
                ),
                timeout=10,
            )
        )


@pytest.fixture(scope="module")
def driver() -> Iterator[Driver]:
    loop = asyncio.new_event_loop()
    backend = fleet_backend()
    ctx = fleet_context(backend)
    loop.run_until_complete(ctx.registry.refresh())
    try:
        yield Driver(loop, create_app(ctx, background=False))
    finally:
        loop.run_until_complete(backend.aclose())
        loop.close()


# --------------------------------------------------------------------------- strategies

_text_segment = st.text(min_size=1, max_size=40).map(lambda s: quote(s, safe=""))
_huge = st.sampled_from((63, 64, 253, 254, 512, 513, 5000, 70000)).map(lambda n: "a" * n)
_valid_ns = st.sampled_from(("team-a", "team-b", "default", "kube-system", "c2"))
_valid_name = st.sampled_from(("a-0", "a-1", "b-0", "*", "nope", "a-0.x"))
_valid_resource = st.sampled_from(
    ("pods", "services", "deployments.apps", "nodes", "namespaces", "metrics")
)
_metric = st.sampled_from((*EXTERNAL_METRICS, "nope", "prometheus.googleapis.com|up|gauge"))
_hostile = st.one_of(st.sampled_from(HOSTILE_RAW), _text_segment, _huge)


def _mix(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return st.one_of(valid, valid, valid, _hostile)


_KEYS = ("pod", "app", "namespace", "cluster", "__name__", "example.com/tier", "x" * 63, "x" * 64)
_VALUES = ("a-0", "team-b", "c2", "", "v" * 63, "v" * 64, '"', '"}', "\\", "a b", "é")
_selector_term = st.one_of(
    st.builds(
        lambda k, op, v: f"{k}{op}{v}",
        st.sampled_from(_KEYS),
        st.sampled_from(("=", "==", "!=", ">", "<")),
        st.sampled_from(_VALUES),
    ),
    st.builds(
        lambda k, op, vs: f"{k} {op} ({','.join(vs)})",
        st.sampled_from(_KEYS),
        st.sampled_from(("in", "notin", "inn")),
        st.lists(st.sampled_from(_VALUES), max_size=4),
    ),
    st.sampled_from(_KEYS).map(lambda k: f"!{k}"),
    st.sampled_from(_KEYS),
    st.sampled_from(
        (
            'pod="} or vector(1) #',
            "pod=a-0} or up{",
            "namespace=team-b",
            "cluster=c2",
            "a in (b",
            "(",
            ")",
            ",",
            "!",
            "=",
            "a=b=c",
            "a>x",
            "a<1",
            "\x00",
            "x" * 17000,
        )
    ),
    st.text(max_size=30),
)
selectors = st.lists(_selector_term, max_size=4).map(",".join)


def _query(label: str | None, metric_label: str | None) -> str:
    parts = []
    if label is not None:
        parts.append("labelSelector=" + quote(label, safe=""))
    if metric_label is not None:
        parts.append("metricLabelSelector=" + quote(metric_label, safe=""))
    return "&".join(parts)


def _namespace_of(segments: list[str]) -> str | None:
    """The namespace a well-formed namespaced route names (as the app would decode it)."""
    if len(segments) >= 2 and segments[0] == "namespaces":
        return segments[1]
    return None


def _check_known_values(body: dict[str, object], namespace: str | None, metric: str) -> None:
    """Where the fleet's value is known, the served value must be it."""
    if metric != "jetstream_prefill_backlog_size" or body.get("kind") != "MetricValueList":
        return
    items = body.get("items")
    assert isinstance(items, list)
    for item in items:
        pod = item["describedObject"]["name"]
        want = BACKLOG.get((namespace or "", pod))
        assert want is not None, f"pod {pod} of namespace {namespace} is not in cluster c1"
        assert quantity_value(item["value"]) == want, item


# --------------------------------------------------------------------------- tests


@fuzz(3500)
@given(
    version=_mix(st.sampled_from(("v1beta1", "v1beta2"))),
    ns=_mix(_valid_ns),
    resource=_mix(_valid_resource),
    name=_mix(_valid_name),
    metric=_mix(_metric),
    shape=st.sampled_from(("object", "namespace-metric", "cluster", "short", "long")),
    label=st.none() | selectors,
    metric_label=st.none() | selectors,
)
def test_custom_metric_routes(
    driver: Driver,
    version: str,
    ns: str,
    resource: str,
    name: str,
    metric: str,
    shape: str,
    label: str | None,
    metric_label: str | None,
) -> None:
    segments = {
        "object": ["namespaces", ns, resource, name, metric],
        "namespace-metric": ["namespaces", ns, "metrics", metric],
        "cluster": [resource, name, metric],
        "short": ["namespaces", ns],
        "long": ["namespaces", ns, resource, name, metric, metric],
    }[shape]
    raw = "/apis/custom.metrics.k8s.io/" + version + "/" + "/".join(segments)
    reply = driver.get(raw, _query(label, metric_label))
    body = check_answer(reply, raw, namespace=_namespace_of(segments))
    if reply.status == 200 and shape == "object":
        _check_known_values(body, ns, metric)
        if name != "*" and body.get("kind") == "MetricValueList":
            assert len(body["items"]) == 1, (raw, body)


@fuzz(2000)
@given(
    version=_mix(st.just("v1beta1")),
    ns=_mix(_valid_ns),
    metric=_mix(st.sampled_from(EXTERNAL_METRICS)),
    extra=st.lists(_hostile, max_size=2),
    label=st.none() | selectors,
)
def test_external_metric_routes(
    driver: Driver, version: str, ns: str, metric: str, extra: list[str], label: str | None
) -> None:
    raw = "/apis/external.metrics.k8s.io/" + "/".join([version, "namespaces", ns, metric, *extra])
    reply = driver.get(raw, _query(label, None))
    body = check_answer(reply, raw)
    if reply.status == 200 and body.get("kind") == "ExternalMetricValueList":
        for item in body["items"]:
            labels = item["metricLabels"]
            # Scoping: an external value never carries another cluster's or namespace's labels.
            assert labels.get("cluster", "c1") == "c1", (raw, item)
            assert labels.get("namespace", ns) == ns, (raw, item)


@fuzz(2500)
@given(
    segments=st.lists(st.one_of(_hostile, st.sampled_from(GROUPS), _valid_resource), max_size=8),
    query=st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80),
    prefix=st.sampled_from(("/apis", "/apis/custom.metrics.k8s.io", "", "/openapi", "/debug")),
)
def test_arbitrary_paths(driver: Driver, segments: list[str], query: str, prefix: str) -> None:
    raw = prefix + "/" + "/".join(segments)
    # The query string is sent as the client wrote it: unescaped '%', '&&', '=' and all.
    reply = driver.get(raw, query.replace("#", "%23"))
    check_answer(reply, raw)


@fuzz(1200)
@given(
    target=st.one_of(
        st.builds(
            lambda ns, name, metric, sel: (
                f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/{name}/{metric}"
                f"?labelSelector={quote(sel, safe='')}"
            ),
            _mix(_valid_ns),
            _mix(_valid_name),
            _mix(_metric),
            selectors,
        ),
        st.text(max_size=120),
    )
)
def test_debug_query_takes_any_path(driver: Driver, target: str) -> None:
    """``/debug/query?path=`` parses its argument with the same code: same contract."""
    reply = driver.get("/debug/query", "path=" + quote(target, safe=""))
    assert reply.status < 500, (target, reply.body[:300])
    if reply.status >= 300:
        check_status(reply, target)


@fuzz(800)
@given(
    method=st.sampled_from(("POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "GET")),
    path=st.sampled_from(
        (
            "/apis",
            "/apis/custom.metrics.k8s.io/v1beta2",
            "/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/pods/*/jetstream_prefill_backlog_size",
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/num_requests_waiting",
            "/openapi/v2",
            "/openapi/v3",
            "/openapi/v3/apis/custom.metrics.k8s.io/v1beta2",
            "/healthz",
            "/readyz",
            "/version",
        )
    ),
    accept=st.sampled_from(
        (
            b"application/vnd.kubernetes.protobuf, */*",
            b"application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json",
            b"application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList",
            b"text/html",
            b"\xff\xfe garbage",
            b"",
        )
    ),
    content_type=st.sampled_from((b"application/json", b"application/x-www-form-urlencoded")),
)
def test_methods_and_headers(
    driver: Driver, method: str, path: str, accept: bytes, content_type: bytes
) -> None:
    """Read-only APIs: other methods are a 405 Status; any Accept gets JSON, never a 406."""
    reply = driver.get(
        path,
        method=method,
        headers=[(b"accept", accept), (b"content-type", content_type)],
    )
    if method in {"GET", "HEAD"}:
        assert reply.status < 500, (method, path, reply.status)
        if method == "GET" and path not in {"/healthz", "/readyz", "/version"}:
            assert reply.status == 200, (method, path, reply.status, reply.body[:300])
            assert reply.headers["content-type"].startswith("application/json")
            check_answer(reply, path)
        return
    assert reply.status == 405, (method, path, reply.status)
    check_status(reply, f"{method} {path}")
