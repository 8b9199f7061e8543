"""Explain one HPA: read it, its scale target and pods, fetch every metric through the same
:meth:`MetricsProvider.answer` the API serves (with the request the controller would make),
and run :func:`adapter.hpa.algorithm.decide` on them.

Used by ``GET /debug/hpa/{namespace}/{name}`` and ``llm-metrics-adapter explain``. The
controller's own recommendation history and scale events live in its memory: they are not
visible here, and the document says so (``unseen``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from adapter.core.answer import Trace
from adapter.core.provider import MetricsProvider
from adapter.core.quantity import format_quantity
from adapter.core.request import parse_path_string
from adapter.core.sources import find_scrape_first
from adapter.domain.errors import AdapterError, BadRequestError
from adapter.hpa.algorithm import (
    DEFAULT_DOWNSCALE_STABILIZATION_S,
    DEFAULT_TOLERANCE,
    History,
    HpaSpec,
    MetricResult,
    MetricSpec,
    PodInfo,
    Reading,
    ScaleDecision,
    decide,
    parse_hpa,
)
from adapter.hpa.freshness import DEFAULT_SYNC_PERIOD_S, freshness_budget

__all__ = [
    "HpaReader",
    "decision_document",
    "explain_hpa",
    "label_selector_string",
    "metric_request_path",
    "pod_info",
    "render_explanation",
]


class HpaReader(Protocol):
    """What explain reads from Kubernetes; :class:`adapter.kube.client.KubeClient` implements it."""

    async def read_hpa(self, namespace: str, name: str) -> dict[str, Any]: ...

    async def read_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]: ...

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...


def label_selector_string(selector: Mapping[str, Any] | None) -> str:
    """A ``metav1.LabelSelector`` as the string form the HPA sends (``a=b,c in (d,e)``)."""
    if not selector:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or ():
        key, op = expr.get("key", ""), expr.get("operator", "")
        values = ",".join(sorted(str(v) for v in expr.get("values") or ()))
        if op == "In":
            parts.append(f"{key} in ({values})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({values})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
        else:
            raise BadRequestError(f"unknown label selector operator {op!r}")
    return ",".join(parts)


def _resource_of(kind: str, api_version: str) -> str:
    group = api_version.split("/")[0] if "/" in api_version else ""
    # The controller asks its RESTMapper; the regular English plurals cover the kinds one puts
    # behind an Object metric (Service, Ingress, Deployment, NetworkPolicy…).
    plural = kind.lower()
    if plural.endswith(("s", "x", "z", "ch", "sh")):
        plural += "es"
    elif plural.endswith("y") and plural[-2:-1] not in {"a", "e", "i", "o", "u"}:
        plural = plural[:-1] + "ies"
    else:
        plural += "s"
    return f"{plural}.{group}" if group else plural


def metric_request_path(spec: MetricSpec, *, namespace: str, pod_selector: str) -> str:
    """The metrics API path (with query) the HPA controller requests for ``spec``."""
    metric_selector = label_selector_string(spec.selector)
    if spec.kind == "External":
        path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{spec.name}"
        return path + (f"?labelSelector={quote(metric_selector)}" if metric_selector else "")
    if spec.kind in {"Resource", "ContainerResource"}:
        # What the controller asks the resource metrics API (not served here) for these.
        return f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods?labelSelector={quote(pod_selector)}"
    base = "/apis/custom.metrics.k8s.io/v1beta2"
    query = f"?metricLabelSelector={quote(metric_selector)}" if metric_selector else ""
    if spec.kind == "Pods":
        query = f"?labelSelector={quote(pod_selector)}" + (
            f"&metricLabelSelector={quote(metric_selector)}" if metric_selector else ""
        )
        return f"{base}/namespaces/{namespace}/pods/*/{spec.name}{query}"
    assert spec.described is not None
    if spec.described.kind == "Namespace":
        return f"{base}/namespaces/{namespace}/metrics/{spec.name}{query}"
    resource = _resource_of(spec.described.kind, spec.described.api_version)
    return f"{base}/namespaces/{namespace}/{resource}/{spec.described.name}/{spec.name}{query}"


def pod_info(pod: Mapping[str, Any]) -> PodInfo:
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or ()
    )
    return PodInfo(
        name=str(meta.get("name", "")),
        phase=str(status.get("phase") or "Pending"),
        ready=ready,
        deleting=bool(meta.get("deletionTimestamp")),
    )


def _milli(value: float) -> int:
    # The API renders round(value × 1000) milli-units; the HPA reads exactly that back.
    return round(value * 1000)


async def _read(
    provider: MetricsProvider, spec: MetricSpec, path: str, *, sync_s: float
) -> tuple[Reading, dict[str, Any]]:
    info: dict[str, Any] = {"path": path}
    if spec.kind in {"Resource", "ContainerResource"}:
        info["note"] = "metrics.k8s.io is not served by this adapter"
        return Reading(seen=False), info
    trace = Trace()
    try:
        answer = await provider.answer(parse_path_string(path), trace=trace)
    except AdapterError as exc:
        info["error"] = f"{exc.code} {exc.reason}: {exc.message}"
        return Reading(error=exc.message), info
    values = answer.values
    now = time.time()
    ages = [max(0.0, now - v.timestamp) for v in values]
    info["items"] = [
        {
            "name": v.described.name if v.described else None,
            "labels": v.labels or None,
            "value": format_quantity(v.value),
            "ageSeconds": round(age, 3),
        }
        for v, age in zip(values, ages, strict=True)
    ]
    scraping = find_scrape_first(provider.backend)
    info["freshness"] = freshness_budget(
        trace,
        ages,
        sync_s=sync_s,
        cache_ttl=provider.cache.ttl,
        scrape_floor_s=scraping.scraper.min_interval if scraping is not None else None,
    )
    if not values:
        api = "external" if spec.kind == "External" else "custom"
        return Reading(error=f"no metrics returned from {api} metrics API"), info
    if spec.kind == "Pods":
        return Reading(
            per_pod={v.described.name: _milli(v.value) for v in values if v.described}
        ), info
    return Reading(values=tuple(_milli(v.value) for v in values)), info


def _q(milli: int | None) -> str | None:
    return None if milli is None else format_quantity(milli / 1000)


def _ratio(r: float | None) -> float | str | None:
    if r is None:
        return None
    return round(r, 6) if math.isfinite(r) else str(r)


def decision_document(decision: ScaleDecision) -> dict[str, Any]:
    return {
        "currentReplicas": decision.current_replicas,
        "minReplicas": decision.min_replicas,
        "maxReplicas": decision.max_replicas,
        "metricDesiredReplicas": decision.metric_desired,
        "metric": decision.metric_name or None,
        "stabilizedReplicas": decision.stabilized,
        "desiredReplicas": decision.desired,
        "reason": decision.reason,
        "message": decision.message,
        "ableToScale": decision.able_to_scale or None,
        "scalingLimited": decision.scaling_limited or None,
        "scalingActive": decision.scaling_active,
        "notes": list(decision.notes),
    }


def _unseen_metrics(spec: HpaSpec, readings: Sequence[Reading]) -> list[str]:
    """One line per metric whose value explain could not see, saying why."""
    lines = []
    for index, (metric, reading) in enumerate(zip(spec.metrics, readings, strict=True)):
        where = f"spec.metrics[{index}] ({metric.kind} {metric.name or '?'})"
        if not reading.seen:
            lines.append(
                f"{where}: served by metrics.k8s.io (metrics-server), not by this adapter;"
                " the real HPA weighs it too"
            )
        elif reading.error is not None:
            lines.append(f"{where}: the adapter could not read it: {reading.error}")
    return lines


def _controller_metrics(status: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``status.currentMetrics`` as (type, name, value): what the controller read last sync."""
    out = []
    for entry in status.get("currentMetrics") or ():
        kind = str(entry.get("type") or "")
        source = entry.get(kind[:1].lower() + kind[1:]) or {}
        current = source.get("current") or {}
        name = (source.get("metric") or {}).get("name") or source.get("name")
        out.append(
            {
                "type": kind,
                "name": name,
                "value": current.get("averageValue") or current.get("value"),
                "averageUtilization": current.get("averageUtilization"),
            }
        )
    return out


@dataclass(frozen=True, slots=True)
class _ScaleTarget:
    """The scale subresource of the HPA's target, and the pods its selector matches."""

    spec_replicas: int
    status_replicas: int
    selector: str
    pods: Sequence[PodInfo]


async def _read_target(kube: HpaReader, namespace: str, spec: HpaSpec) -> _ScaleTarget:
    scale = await kube.read_scale(namespace, spec.target.kind, spec.target.name)
    scale_status = scale.get("status") or {}
    selector = str(scale_status.get("selector") or "")
    pods: Sequence[PodInfo] = []
    if selector:
        pods = [pod_info(p) for p in await kube.list_pods(namespace, selector)]
    return _ScaleTarget(
        spec_replicas=int((scale.get("spec") or {}).get("replicas") or 0),
        status_replicas=int(scale_status.get("replicas") or 0),
        selector=selector,
        pods=pods,
    )


async def _read_metrics(
    provider: MetricsProvider, spec: HpaSpec, *, namespace: str, selector: str, sync_s: float
) -> tuple[list[Reading], list[dict[str, Any]]]:
    """Each metric as the controller requests it: the readings, and what each request got."""
    readings: list[Reading] = []
    fetched: list[dict[str, Any]] = []
    for metric in spec.metrics:
        path = metric_request_path(metric, namespace=namespace, pod_selector=selector)
        reading, info = await _read(provider, metric, path, sync_s=sync_s)
        readings.append(reading)
        fetched.append(info)
    return readings, fetched


def _unseen(
    spec: HpaSpec,
    readings: Sequence[Reading],
    *,
    selector: str,
    history: History | None,
    default_tolerance: float,
    downscale_stabilization_s: float,
    sync_s: float,
) -> list[str]:
    """What the explanation could not see, one line each."""
    unseen = [
        "the controller's recent recommendations and scale events (kept in its memory): "
        + (
            "taken as given"
            if history is not None
            else "stabilization windows and rate policies see only this proposal"
        ),
        f"the controller's flags: tolerance {default_tolerance},"
        f" downscale stabilization {downscale_stabilization_s:g}s assumed"
        f" (and a {sync_s:g}s sync period for the freshness budget)",
    ]
    if not selector:
        unseen.append("the scale target publishes no selector: the HPA cannot scale it")
    return unseen + _unseen_metrics(spec, readings)


def _metric_document(
    spec: MetricSpec, result: MetricResult, info: dict[str, Any]
) -> dict[str, Any]:
    return {
        "type": spec.kind,
        "name": spec.name,
        "target": {
            "type": spec.target_type,
            "value": _q(spec.target_milli),
            "averageUtilization": spec.utilization,
        },
        "current": _q(result.usage_milli),
        "ratio": _ratio(result.ratio),
        "proposal": result.proposal,
        "readyPods": result.ready_pods,
        "missingPods": list(result.missing_pods),
        "unreadyPods": list(result.unready_pods),
        "ignoredPods": list(result.ignored_pods),
        "reason": result.reason,
        "error": result.error,
        "seen": result.seen,
        "request": info,
    }


def _hpa_document(spec: HpaSpec, namespace: str, name: str) -> dict[str, Any]:
    return {
        "namespace": namespace,
        "name": name,
        "scaleTargetRef": {
            "kind": spec.target.kind,
            "name": spec.target.name,
            "apiVersion": spec.target.api_version,
        },
        "minReplicas": spec.min_replicas,
        "maxReplicas": spec.max_replicas,
        "behavior": spec.behavior is not None,
    }


def _pods_document(pods: Sequence[PodInfo]) -> dict[str, Any]:
    return {
        "total": len(pods),
        "runningReady": sum(1 for p in pods if p.phase == "Running" and p.ready),
        "pending": sum(1 for p in pods if p.phase == "Pending"),
        "names": [p.name for p in pods],
    }


def _controller_document(status: Mapping[str, Any]) -> dict[str, Any]:
    """What the controller itself last wrote in the HPA's status."""
    return {
        "desiredReplicas": status.get("desiredReplicas"),
        "currentReplicas": status.get("currentReplicas"),
        "lastScaleTime": status.get("lastScaleTime"),
        "conditions": [
            {k: c.get(k) for k in ("type", "status", "reason", "message")}
            for c in status.get("conditions") or ()
        ],
        "currentMetrics": _controller_metrics(status),
    }


async def explain_hpa(
    provider: MetricsProvider,
    kube: HpaReader,
    namespace: str,
    name: str,
    *,
    history: History | None = None,
    default_tolerance: float = DEFAULT_TOLERANCE,
    downscale_stabilization_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S,
    sync_period_s: float = DEFAULT_SYNC_PERIOD_S,
) -> dict[str, Any]:
    """The explanation document (JSON-able). Raises AdapterError when the HPA, its scale or its
    pods cannot be read; metric failures are part of the document, as the HPA sees them. Each
    metric's ``request.freshness`` is its budget (:mod:`adapter.hpa.freshness`) at the
    controller's ``sync_period_s``."""
    raw = await kube.read_hpa(namespace, name)
    spec: HpaSpec = parse_hpa(raw)
    target = await _read_target(kube, namespace, spec)
    readings, fetched = await _read_metrics(
        provider, spec, namespace=namespace, selector=target.selector, sync_s=sync_period_s
    )
    decision = decide(
        spec,
        spec_replicas=target.spec_replicas,
        status_replicas=target.status_replicas,
        pods=target.pods,
        readings=readings,
        history=history,
        default_tolerance=default_tolerance,
        downscale_stabilization_s=downscale_stabilization_s,
    )
    unseen = _unseen(
        spec,
        readings,
        selector=target.selector,
        history=history,
        default_tolerance=default_tolerance,
        downscale_stabilization_s=downscale_stabilization_s,
        sync_s=sync_period_s,
    )
    return {
        "hpa": _hpa_document(spec, namespace, name),
        "scale": {
            "specReplicas": target.spec_replicas,
            "statusReplicas": target.status_replicas,
            "selector": target.selector,
        },
        "pods": _pods_document(target.pods),
        "metrics": [
            _metric_document(metric, result, info)
            for metric, result, info in zip(spec.metrics, decision.metrics, fetched, strict=True)
        ],
        "decision": decision_document(decision),
        "controller": _controller_document(raw.get("status") or {}),
        "unseen": unseen,
    }


def render_explanation(doc: Mapping[str, Any], *, console: Any = None) -> None:
    """Print the document as tables (rich): the HPA, each metric, the decision, what is unseen."""
    from rich.console import Console
    from rich.table import Table

    out = console or Console()
    hpa, scale, pods, decision = doc["hpa"], doc["scale"], doc["pods"], doc["decision"]
    ref = hpa["scaleTargetRef"]
    out.print(
        f"[bold]HPA {hpa['namespace']}/{hpa['name']}[/bold] → {ref['kind']} {ref['name']}:"
        f" {scale['specReplicas']} replicas ({pods['runningReady']} of {pods['total']} pods"
        f" running and ready), range {hpa['minReplicas']}–{hpa['maxReplicas']},"
        f" behavior {'set' if hpa['behavior'] else 'default'}"
    )
    table = Table(title="metrics")
    for column in ("type", "metric", "current", "target", "ratio", "proposal", "why"):
        table.add_column(column)
    for m in doc["metrics"]:
        target = m["target"]["value"] or f"{m['target']['averageUtilization']}%"
        table.add_row(
            m["type"],
            m["name"],
            m["current"] or "–",
            f"{target} ({m['target']['type']})",
            "–" if m["ratio"] is None else str(m["ratio"]),
            "–" if m["proposal"] is None else str(m["proposal"]),
            f"{m['reason']}: {m['error']}"
            if m["error"]
            else (m["reason"] if m["seen"] else f"not seen: {m['reason']}"),
        )
    out.print(table)
    _render_freshness(doc, out)
    controller_values = {
        (m["type"], m["name"]): m["value"] for m in doc["controller"].get("currentMetrics") or ()
    }
    if controller_values:
        out.print(
            "the controller's last reading: "
            + ", ".join(
                f"{kind} {name} = {value if value is not None else '–'}"
                for (kind, name), value in controller_values.items()
            )
        )
    out.print(
        f"[bold]desired replicas: {decision['desiredReplicas']}[/bold]"
        f" ({decision['reason']}: {decision['message']})"
    )
    controller = doc["controller"]
    if controller.get("desiredReplicas") is not None:
        out.print(f"the controller's last status.desiredReplicas: {controller['desiredReplicas']}")
    for note in decision["notes"]:
        out.print(f"note: {note}")
    for item in doc["unseen"]:
        out.print(f"[dim]not seen: {item}[/dim]")


def _seconds(value: Any) -> str:
    return "–" if value is None else f"{value:g}s"


def _render_freshness(doc: Mapping[str, Any], out: Any) -> None:
    """The freshness budget of each metric read, as a table."""
    from rich.table import Table

    rows = [(m, m["request"].get("freshness")) for m in doc["metrics"]]
    rows = [(m, f) for m, f in rows if f]
    if not rows:
        return
    table = Table(title="freshness: from a step in the servers' load to the HPA acting on it")
    columns = ("metric", "source", "value age", "sample interval", "ingestion lag", "cache",
               "HPA sync", "reaction (typical / worst)")  # fmt: skip
    for column in columns:
        table.add_column(column)
    for m, f in rows:
        reaction = f["reactionSeconds"]
        table.add_row(
            m["name"], str(f["source"]), _seconds(f["valueAgeSeconds"]),
            _seconds(f["sampleIntervalSeconds"]), _seconds(f["ingestionLagSeconds"]), f["cache"],
            _seconds(f["hpaSyncSeconds"]),
            "–" if reaction is None else f"{reaction['typical']:g}s / {reaction['worst']:g}s",
        )  # fmt: skip
    out.print(table)
