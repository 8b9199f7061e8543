"""The seed's example HPAs (``deploy/examples``) and the data they scale on.

For each HPA: the exact requests the HPA controller makes (:func:`requests_for`), the HPA formula
(:func:`desired_replicas`), and the replica count it gives over the values an app answers
(:func:`replicas_for`). :data:`EXPECTED` is the count for every file with the known data:
:func:`seed_series` for the PromQL-evaluating fake backend (cluster ``c1``'s workload in
``default``, plus the same names elsewhere that must not leak), and the same values as Cloud
Monitoring series in :mod:`tests.support.cm_seed`. :class:`Pods` lists the Deployment's pods.
"""

from __future__ import annotations

import math
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import httpx
import yaml

from adapter.domain.models import GroupResource, Requirement
from sim.fake_backend import SeriesSpec
from tests.support import REPO

EXAMPLES = REPO / "deploy" / "examples"
NAMESPACE = "default"
SCALE_SELECTOR = "app=maxengine-server"
POD = "maxengine-server-0"
CURRENT_REPLICAS = 1
GIB = 1024**3
CHIPS = 8
USED_PER_CHIP = 15 * GIB
TOTAL_PER_CHIP = 16 * GIB
BACKLOG = 15.0
SLOTS = (0.9, 0.7)

# file → expected desired replicas (after min/max clamping) with the data below.
EXPECTED = {
    "hpa-external-memory-used-percentage.yaml": 2,  # 120/128 = 0.9375 / 0.85 → ceil(1.10) = 2
    "hpa-external-prefill-backlog.yaml": 2,  # 15 / 10 → ceil(1.5) = 2
    "hpa-external-slots-used.yaml": 1,  # mean(0.9, 0.7) = 0.8 / 0.8 → 1
    "hpa-external-stackdriver-memory-used.yaml": 2,  # 8 × 15Gi = 120Gi / 100Gi → 2
    "hpa-multiple-metrics.yaml": 2,  # max(pods 15/10 → 2, memory → 2)
    "hpa-pods-stackdriver-prefill-backlog.yaml": 2,  # mean 15 / 10 = 1.5 → ceil(1.5 × 1) = 2
}

_SUFFIX = {"m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def parse_quantity(text: str) -> float:
    for suffix in sorted(_SUFFIX, key=len, reverse=True):
        if text.endswith(suffix):
            return float(text[: -len(suffix)]) * _SUFFIX[suffix]
    return float(text)


def hpa_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(p.name, yaml.safe_load(p.read_text())) for p in sorted(EXAMPLES.glob("hpa-*.yaml"))]


def selector_text(metric: dict[str, Any]) -> str:
    """An HPA metric selector as the controller sends it (matchLabels, sorted)."""
    labels = (metric.get("selector") or {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def requests_for(hpa: dict[str, Any]) -> list[tuple[str, str, float, dict[str, Any]]]:
    """(type, URL, target, spec) per metric: the exact GET the HPA controller makes."""
    ns = hpa["metadata"]["namespace"]
    out = []
    for spec in hpa["spec"]["metrics"]:
        kind = spec["type"]
        body = spec["pods"] if kind == "Pods" else spec["external"]
        name = body["metric"]["name"]
        target = parse_quantity(str(body["target"]["averageValue"]))
        assert body["target"]["type"] == "AverageValue"
        if kind == "Pods":
            query = {"labelSelector": SCALE_SELECTOR}
            sel = selector_text(body["metric"])
            if sel:
                query["metricLabelSelector"] = sel
            url = f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{ns}/pods/*/{name}"
        else:
            query = {"labelSelector": selector_text(body["metric"])}
            url = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{ns}/{name}"
        out.append((kind, f"{url}?{urllib.parse.urlencode(query)}", target, spec))
    return out


def desired_replicas(kind: str, values: Sequence[float], target: float, current: int) -> int:
    """The HPA's formula: Pods AverageValue on the mean (0.1 tolerance); External AverageValue
    on the sum, independent of the current count."""
    if kind == "Pods":
        ratio = (sum(values) / len(values)) / target
        return current if abs(ratio - 1.0) <= 0.1 else math.ceil(ratio * current)
    return math.ceil(sum(values) / target)


async def replicas_for(
    get: Callable[[str], Awaitable[httpx.Response]], hpa: dict[str, Any]
) -> tuple[int, list[list[float]]]:
    proposals, seen = [], []
    for kind, url, target, _ in requests_for(hpa):
        response = await get(url)
        assert response.status_code == 200, (url, response.text)
        items = response.json()["items"]
        assert items, f"{url}: no values"
        if kind == "Pods":
            assert {i["describedObject"]["name"] for i in items} == {POD}
        values = [parse_quantity(i["value"]) for i in items]
        seen.append(values)
        proposals.append(desired_replicas(kind, values, target, CURRENT_REPLICAS))
    spec = hpa["spec"]
    return min(max(max(proposals), spec["minReplicas"]), spec["maxReplicas"]), seen


class Pods:
    """The Deployment's pods, as the Kubernetes module would list them."""

    async def names(
        self, resource: GroupResource, namespace: str | None, selector: Sequence[Requirement]
    ) -> tuple[str, ...] | None:
        if namespace == NAMESPACE and selector == (Requirement("app", "=", ("maxengine-server",)),):
            return (POD,)
        return ()

    def status(self) -> dict[str, Any]:
        return {}


def seed_series(ts: float) -> list[SeriesSpec]:
    """The workload in ``default`` of cluster c1, plus the same names elsewhere (must not leak)."""
    out: list[SeriesSpec] = []
    for cluster, backlog in (("c1", BACKLOG), ("c2", 1000.0)):
        target = {"cluster": cluster, "namespace": NAMESPACE, "pod": POD, "id": POD, "job": "js"}
        out.append(({"__name__": "jetstream_prefill_backlog_size", **target}, backlog, ts))
        for idx, slot in enumerate(SLOTS):
            out.append(
                (
                    {"__name__": "jetstream_slots_used_percentage", "idx": str(idx), **target},
                    slot,
                    ts,
                )
            )
    for chip in range(CHIPS):
        labels = {
            "cluster": "c1",
            "namespace": "kube-system",
            "exported_namespace": NAMESPACE,
            "exported_pod": POD,
            "container": "jetstream-http",
            "accelerator_id": str(chip),
        }
        out.append(({"__name__": "memory_used", **labels}, float(USED_PER_CHIP), ts))
        out.append(({"__name__": "memory_total", **labels}, float(TOTAL_PER_CHIP), ts))
    return out
