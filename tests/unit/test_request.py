from __future__ import annotations

import pytest

from adapter.core.request import ApiRequest, parse_api_path, parse_path_string
from adapter.domain.errors import BadRequestError, NotFoundError
from adapter.domain.models import GroupResource, Requirement

C1 = "/apis/custom.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
E = "/apis/external.metrics.k8s.io/v1beta1"
SD = "prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge"


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (
            f"{C2}/namespaces/default/pods/*/jetstream_slots_used_percentage",
            ApiRequest(
                "custom", "v1beta2", "jetstream_slots_used_percentage", "default",
                GroupResource("pods"), None,
            ),
        ),
        (
            f"{C1}/namespaces/ns1/deployments.apps/web/hits",
            ApiRequest("custom", "v1beta1", "hits", "ns1", GroupResource("deployments", "apps"), "web"),
        ),
        (
            f"{C2}/namespaces/ns1/metrics/queue",
            ApiRequest(
                "custom", "v1beta2", "queue", "ns1", GroupResource("namespaces"), "ns1", namespaced=False
            ),
        ),
        (
            f"{C2}/nodes/node-1/memory",
            ApiRequest("custom", "v1beta2", "memory", None, GroupResource("nodes"), "node-1", namespaced=False),
        ),
        (
            f"{C2}/namespaces/ns1/queue",
            ApiRequest(
                "custom", "v1beta2", "queue", "ns1", GroupResource("namespaces"), "ns1", namespaced=False
            ),
        ),
        (f"{C2}/namespaces/default/pods/*/{SD}", ApiRequest(
            "custom", "v1beta2", SD, "default", GroupResource("pods"), None)),
        (f"{E}/namespaces/default/{SD}", ApiRequest("external", "v1beta1", SD, "default")),
    ],
)  # fmt: skip
def test_routes(path: str, expected: ApiRequest) -> None:
    assert parse_api_path(path) == expected


def test_selectors_are_parsed() -> None:
    req = parse_path_string(
        f"{C2}/namespaces/default/pods/*/m?labelSelector=app%3Djetstream&metricLabelSelector=idx+in+(0,1)"
    )
    assert req.label_selector == (Requirement("app", "=", ("jetstream",)),)
    assert req.metric_selector == (Requirement("idx", "in", ("0", "1")),)
    ext = parse_path_string(f"{E}/namespaces/default/m?labelSelector=container%3Djetstream-http")
    assert ext.metric_selector == (Requirement("container", "=", ("jetstream-http",)),)


@pytest.mark.parametrize(
    ("path", "error", "message"),
    [
        ("/apis/other.k8s.io/v1/namespaces/a/b", NotFoundError, "could not find"),
        (f"{C2}/namespaces/a/pods/x", NotFoundError, "could not find"),
        ("/apis/custom.metrics.k8s.io/v2/namespaces/a/pods/x/m", NotFoundError, "no version"),
        ("/apis/external.metrics.k8s.io/v1beta2/namespaces/a/m", NotFoundError, "no version"),
        (f"{E}/m", NotFoundError, "namespaces/{namespace}/{metric} only"),
        (f"{E}/namespaces/a/b/c", NotFoundError, "only"),
        (f"{E}/namespaces/Bad_NS/m", BadRequestError, "invalid namespace"),
        (f"{C2}/namespaces/a/pods/BAD!/m", BadRequestError, "invalid object name"),
        (f"{C2}/namespaces/a/Pods!/x/m", BadRequestError, "invalid resource"),
        (f"{E}/namespaces/a/bad%metric", NotFoundError, "could not find the metric"),
        (f"{E}/namespaces/a/{'m' * 600}", NotFoundError, "could not find the metric"),
        (f"{C2}/namespaces/*/m", BadRequestError, "name one namespace"),
        (f"{C2}//namespaces/a/pods/x/m", NotFoundError, "could not find"),
    ],
)
def test_bad_paths(path: str, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        parse_api_path(path)


def test_bad_selector_is_bad_request() -> None:
    with pytest.raises(BadRequestError, match="invalid label selector"):
        parse_api_path(f"{E}/namespaces/a/m", {"labelSelector": 'a="b"'})
