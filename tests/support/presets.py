"""What the built-in presets serve, as an HPA names it, read from the rules loader itself."""

from __future__ import annotations

import re

from adapter.domain.models import GroupResource
from adapter.rules.loader import load_rules
from tests.support import REPO

__all__ = ["jetstream_and_tpu_paths", "preset_group", "served_hpa_metrics"]

EXTERNAL_API = "/apis/external.metrics.k8s.io/v1beta1"
CUSTOM_API = "/apis/custom.metrics.k8s.io/v1beta2"
PRESETS_DOC = REPO / "docs" / "presets.md"
_SERVED = re.compile(r"^\| `([^`]+)` \(([a-z, ]+)\) \|", re.MULTILINE)


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


def preset_group(group: str) -> set[tuple[str, str]]:
    """``(HPA metric type, name)`` of every preset in the ``<!-- presets:<group> -->`` block of
    docs/presets.md: the presets' own grouping by server, which tests/unit/test_presets_doc.py
    keeps equal to the presets themselves."""
    text = PRESETS_DOC.read_text()
    start, end = f"<!-- presets:{group} -->", f"<!-- /presets:{group} -->"
    if start not in text or end not in text:
        raise LookupError(f"docs/presets.md has no {start} block")
    block = text.split(start, 1)[1].split(end, 1)[0]
    kinds = {"pods": "Pods", "external": "External"}
    return {
        (kinds[kind.strip()], name)
        for name, apis in _SERVED.findall(block)
        for kind in apis.split(",")
    }


def jetstream_and_tpu_paths(namespace: str) -> list[str]:
    """Every JetStream and TPU preset as an HPA in ``namespace`` asks for it (External totals,
    Pods metrics for ``pods/*``), sorted."""
    wanted = preset_group("jetstream") | preset_group("tpu")
    missing = wanted - served_hpa_metrics()
    if missing:
        raise LookupError(f"docs/presets.md lists presets the rules do not serve: {missing}")
    return sorted(
        f"{EXTERNAL_API}/namespaces/{namespace}/{name}"
        if kind == "External"
        else f"{CUSTOM_API}/namespaces/{namespace}/pods/*/{name}"
        for kind, name in wanted
    )
