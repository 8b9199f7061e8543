"""Authorization attributes, table-driven against k8s.io/apiserver's RequestInfoFactory."""

from __future__ import annotations

import pytest

from adapter.auth.attributes import Attributes, denial_message, request_attributes

CM = "custom.metrics.k8s.io"
EM = "external.metrics.k8s.io"


def _res(path: str, verb: str, group: str, version: str, **kw: str) -> Attributes:
    return Attributes(
        verb=verb, path=path, resource_request=True, api_group=group, api_version=version, **kw
    )


# (method, path, query, then the answer: verb, API group, version and the fields it names)
CASES: list[tuple[str, str, str, str, str, str, dict[str, str]]] = [
    ("GET", f"/apis/{CM}/v1beta2/namespaces/ns/pods/*/m", "", "get", CM, "v1beta2",
     {"namespace": "ns", "resource": "pods", "name": "*", "subresource": "m"}),
    ("GET", f"/apis/{CM}/v1beta1/namespaces/ns/deployments.apps/web/m", "", "get", CM, "v1beta1",
     {"namespace": "ns", "resource": "deployments.apps", "name": "web", "subresource": "m"}),
    ("GET", f"/apis/{CM}/v1beta2/namespaces/ns/metrics/m", "", "get", CM, "v1beta2",
     {"namespace": "ns", "resource": "metrics", "name": "m"}),
    ("GET", f"/apis/{CM}/v1beta2/nodes/*/m", "", "get", CM, "v1beta2",
     {"resource": "nodes", "name": "*", "subresource": "m"}),
    ("GET", f"/apis/{EM}/v1beta1/namespaces/ns/prometheus.googleapis.com|jetstream_x|gauge",
     "labelSelector=a%3Db", "list", EM, "v1beta1",
     {"namespace": "ns", "resource": "prometheus.googleapis.com|jetstream_x|gauge"}),
    ("GET", f"/apis/{CM}/v1beta2/namespaces/ns", "", "get", CM, "v1beta2",
     {"namespace": "ns", "resource": "namespaces", "name": "ns"}),
    ("GET", f"/apis/{CM}/v1beta2/namespaces/ns/status", "", "get", CM, "v1beta2",
     {"namespace": "ns", "resource": "namespaces", "name": "ns", "subresource": "status"}),
    ("GET", "/api/v1/namespaces/ns/pods/p", "", "get", "", "v1",
     {"namespace": "ns", "resource": "pods", "name": "p"}),
    ("GET", f"/apis/{CM}/v1beta2/watch/namespaces/ns/pods", "", "watch", CM, "v1beta2",
     {"namespace": "ns", "resource": "pods"}),
]  # fmt: skip

# One external metric (a collection: no object name), by method and query: the verb changes.
COLLECTION = f"/apis/{EM}/v1beta1/namespaces/ns/m"
COLLECTION_VERBS = [
    ("GET", "watch=true", "watch"),
    ("GET", "watch=false", "list"),
    ("POST", "", "create"),
    ("DELETE", "", "deletecollection"),
]

NON_RESOURCE = [
    ("GET", "/apis"),
    ("GET", f"/apis/{CM}"),
    ("GET", f"/apis/{CM}/v1beta2"),
    ("GET", f"/apis/{EM}/v1beta1/"),
    ("GET", "/openapi/v2"),
    ("GET", "/openapi/v3/apis/custom.metrics.k8s.io/v1beta2"),
    ("GET", "/version"),
    ("GET", "/metrics"),
    ("GET", "/debug/query"),
    ("GET", "/"),
    ("POST", "/debug/metrics"),
    ("GET", "/api"),
    ("GET", "/api/v1"),
]


@pytest.mark.parametrize(("method", "path", "query", "verb", "group", "version", "fields"), CASES)
def test_resource_requests(
    method: str, path: str, query: str, verb: str, group: str, version: str, fields: dict[str, str]
) -> None:
    expected = _res(path, verb, group, version, **fields)
    assert request_attributes(method, path, query.encode()) == expected


@pytest.mark.parametrize(("method", "query", "verb"), COLLECTION_VERBS)
def test_collection_verbs(method: str, query: str, verb: str) -> None:
    expected = _res(COLLECTION, verb, EM, "v1beta1", namespace="ns", resource="m")
    assert request_attributes(method, COLLECTION, query.encode()) == expected


@pytest.mark.parametrize(("method", "path"), NON_RESOURCE)
def test_non_resource_requests(method: str, path: str) -> None:
    assert request_attributes(method, path) == Attributes(
        verb=method.lower(), path=path, resource_request=False
    )


def test_denial_messages_read_like_kubernetes() -> None:
    pods = request_attributes("GET", f"/apis/{CM}/v1beta2/namespaces/ns/pods/*/m")
    assert denial_message("x", pods) == (
        'User "x" cannot get resource "pods/m" in API group "custom.metrics.k8s.io" '
        'in the namespace "ns"'
    )
    nodes = request_attributes("GET", f"/apis/{CM}/v1beta2/nodes/*/m")
    assert denial_message("x", nodes, "no RBAC policy matched") == (
        'User "x" cannot get resource "nodes/m" in API group "custom.metrics.k8s.io" '
        "at the cluster scope: no RBAC policy matched"
    )
    assert (
        denial_message('sys"tem', request_attributes("GET", "/apis"))
        == 'User "sys\\"tem" cannot get path "/apis"'
    )
    assert pods.describe() == "get pods/m.custom.metrics.k8s.io '*' in ns"
