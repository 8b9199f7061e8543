"""What the built-in presets serve, as an HPA names it, read from the rules loader itself."""

from __future__ import annotations

from adapter.domain.models import GroupResource
from adapter.rules.loader import load_rules

__all__ = ["served_hpa_metrics"]


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
