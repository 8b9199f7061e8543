"""The metrics API path explain asks for each kind of HPA metric, as the controller would."""

from __future__ import annotations

from typing import Any

import pytest

from adapter.hpa.algorithm import parse_hpa
from adapter.hpa.explain import metric_request_path


def _spec(metric: dict[str, Any]) -> Any:
    hpa = parse_hpa(
        {
            "metadata": {"namespace": "ns", "name": "h"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d"},
                "maxReplicas": 5,
                "metrics": [metric],
            },
        }
    )
    return hpa.metrics[0]


CPU = {
    "type": "Resource",
    "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 60}},
}
CONTAINER_CPU = {
    "type": "ContainerResource",
    "containerResource": {
        "name": "cpu",
        "container": "server",
        "target": {"type": "Utilization", "averageUtilization": 60},
    },
}


@pytest.mark.parametrize("metric", [CPU, CONTAINER_CPU], ids=["Resource", "ContainerResource"])
def test_resource_metrics_name_the_resource_metrics_api(metric: dict[str, Any]) -> None:
    # These used to fall through to the custom-metrics branch and fail an assertion (a 500 from
    # /debug/hpa for any HPA that also scales on CPU).
    path = metric_request_path(_spec(metric), namespace="ns", pod_selector="app=d")
    assert path == "/apis/metrics.k8s.io/v1beta1/namespaces/ns/pods?labelSelector=app%3Dd"


def test_pods_metrics_carry_the_pod_and_metric_selectors() -> None:
    pods = {
        "type": "Pods",
        "pods": {
            "metric": {"name": "m", "selector": {"matchLabels": {"model": "x"}}},
            "target": {"type": "AverageValue", "averageValue": "1"},
        },
    }
    path = metric_request_path(_spec(pods), namespace="ns", pod_selector="app=d")
    assert path == (
        "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m"
        "?labelSelector=app%3Dd&metricLabelSelector=model%3Dx"
    )
