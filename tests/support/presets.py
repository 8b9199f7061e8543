"""What the built-in presets serve, as an HPA names it, read from the rules loader itself."""

from __future__ import annotations

from adapter.domain.models import GroupResource
from adapter.rules.loader import load_rules

__all__ = ["jetstream_and_tpu_paths", "served_hpa_metrics"]

EXTERNAL_API = "/apis/external.metrics.k8s.io/v1beta1"
CUSTOM_API = "/apis/custom.metrics.k8s.io/v1beta2"


def served_hpa_metrics() -> set[tuple[str, str]]:
    """``(HPA metric type, name)`` pairs: ``("External", m)`` and ``("Pods", m)``."""
    served: set[tuple[str, str]] = set()
    for rule in load_rules(None, presets=True).rules:
        for metric in rule.static_metrics():
            if metric.kind == "external":
                served.add(("External", metric.name))
            elif metric.resource == GroupResource("pods"):
                served.add(("Pods", metric.name))
    return served


def jetstream_and_tpu_paths(namespace: str) -> list[str]:
    """Every JetStream and TPU preset as an HPA in ``namespace`` asks for it (External totals,
    Pods metrics for ``pods/*``), sorted."""
    return sorted(
        f"{EXTERNAL_API}/namespaces/{namespace}/{name}"
        if kind == "External"
        else f"{CUSTOM_API}/namespaces/{namespace}/pods/*/{name}"
        for kind, name in served_hpa_metrics()
        if name.startswith(("jetstream_", "tpu_", "memory_used"))
    )
