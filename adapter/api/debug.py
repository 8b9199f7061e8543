"""The metrics debugging endpoints: what is served, and how any one answer was made.

``/debug/metrics`` lists every served metric with its rule, where its values come from (the pods
or the backend, and why) and the last discovery time.
``/debug/query?path=<metrics API path>`` answers that request and shows the exact backend query,
the raw backend answer, the API answer, the cache state and each value's age. Neither shows
credentials: backends keep them out of ``QueryResult.raw`` and error messages.
"""

from __future__ import annotations

import math
import time
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import context, json_response
from adapter.api.status import status_body
from adapter.app.context import WatchedObjects
from adapter.core.answer import Trace
from adapter.core.registry import MetricRegistry
from adapter.core.request import parse_path_string
from adapter.core.selectors import selector_to_string
from adapter.core.sources import POD_SOURCES, rule_source
from adapter.core.translate import format_timestamp
from adapter.domain.errors import AdapterError, BadRequestError
from adapter.domain.models import QueryResult, Sample
from adapter.rules.base import ServedMetric
from adapter.rules.stackdriver import family_rules

__all__ = ["router", "served_metric_info", "trace_document"]

router = APIRouter()


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def served_metric_info(metric: ServedMetric) -> dict[str, Any]:
    rule = metric.rule
    return {
        "name": metric.name,
        "kind": metric.kind,
        "resource": str(metric.resource) if metric.resource else None,
        "namespaced": metric.namespaced,
        "scope": "cluster-scoped (reads across namespaces)"
        if rule.namespace_label is None
        else f"namespace label {rule.namespace_label!r}",
        "series": metric.series or None,
        "rule": rule.id,
        "source": rule.source,
    }


def _sample_source(result: QueryResult, sample: Sample) -> str:
    """Which source gave ``sample``: the answer's, or its pod's in an answer merged from the
    pods and the backend (``--scrape-fallback backend``)."""
    raw = result.raw
    if isinstance(raw, dict) and isinstance(raw.get(POD_SOURCES), dict):
        return str(raw[POD_SOURCES].get(sample.labels.get("pod", ""), result.backend))
    return result.backend


def trace_document(trace: Trace, *, now: float, cache_ttl: float) -> dict[str, Any]:
    """The backend side of one answer, for ``/debug/query`` and ``llm-metrics-adapter query``."""
    doc: dict[str, Any] = {
        "metric": served_metric_info(trace.metric) if trace.metric else None,
        "query": trace.built.query if trace.built else None,
        # What was sent: the rule's query plus its freshness companion (one round trip).
        "backendQuery": trace.result.query if trace.result else None,
        "injected": list(trace.built.injected) if trace.built else [],
        "objectNames": list(trace.request.object_names)
        if trace.request and trace.request.object_names is not None
        else None,
        "cache": None,
        "backend": None,
        "dropped": [
            {"labels": d.labels, "value": str(d.value), "reason": d.reason} for d in trace.dropped
        ],
        "notes": list(trace.notes),
    }
    if trace.cache is not None and trace.fetched_at is not None:
        doc["cache"] = {
            "state": trace.cache,
            "fetchedAt": format_timestamp(trace.fetched_at),
            "entryAgeSeconds": round(now - trace.fetched_at, 3),
            "ttlSeconds": cache_ttl,
        }
        if trace.stale_error is not None:
            doc["cache"]["error"] = trace.stale_error
    if trace.result is not None:
        doc["backend"] = {
            "name": trace.result.backend,
            "durationSeconds": round(trace.result.duration, 6),
            "samples": [
                {
                    "labels": s.labels,
                    "value": str(s.value),
                    "timestamp": s.timestamp,
                    "ageSeconds": round(now - s.timestamp, 3),
                    "source": _sample_source(trace.result, s),
                }
                for s in trace.result.samples
            ],
            "raw": _jsonable(trace.result.raw),
        }
    return doc


def _object_cache_status(objects: WatchedObjects | None) -> Any:
    """The Kubernetes object cache per resource (``ready``, ``objects``, ``age`` in seconds since
    the last event or list, last watch ``error``), so an API outage shows how old the object list
    being served is; ``None`` standalone (no cache)."""
    return _jsonable(dict(objects.status())) if objects is not None else None


def _resource_mapping(registry: MetricRegistry) -> dict[str, Any]:
    """How label names map to resources: the table in use (``source``: the cluster's discovery,
    or the built-in table of common resources standalone or before the first discovery), its
    size, and the cluster's discovery status when there is a cluster."""
    table = registry.resource_table
    doc: dict[str, Any] = {"source": table.source, "resources": len(table)}
    if registry.resources is not None:
        doc["discovery"] = _jsonable(dict(registry.resources.status()))
    return doc


@router.get("/debug/metrics")
async def debug_metrics(request: Request) -> Response:
    ctx = context(request)
    snap = ctx.registry.snapshot
    reload_status = ctx.rules_watcher.status if ctx.rules_watcher is not None else None
    backend = ctx.provider.backend
    metrics = [
        {**served_metric_info(m), "valuesFrom": rule_source(backend, m.rule)}
        for m in (*snap.custom.values(), *snap.external.values())
    ]
    return json_response(
        {
            "rulesFile": ctx.rules.file,
            "rulesFormat": ctx.rules.format,
            "warnings": list(ctx.rules.warnings),
            "lastReload": format_timestamp(reload_status.last_reload)
            if reload_status is not None and reload_status.last_reload is not None
            else None,
            "reloadError": reload_status.error if reload_status is not None else None,
            "circuitBreakers": {
                name: breaker.snapshot() for name, breaker in ctx.provider.breakers.items()
            },
            "staleIfErrorSeconds": ctx.provider.stale_if_error,
            "renderedResponses": len(ctx.provider.responses),
            "renderedAgain": ctx.provider.responses.rerenders,
            "prefetchSettleSeconds": round(ctx.provider.cache.settle, 3),
            "lastDiscovery": format_timestamp(snap.refreshed_at) if snap.refreshed_at else None,
            "discoveryErrors": dict(snap.errors),
            "resourceMapping": _resource_mapping(ctx.registry),
            "missingResources": {rule: list(lines) for rule, lines in snap.missing.items()},
            "cluster": ctx.settings.scope.cluster,
            "allClusters": ctx.settings.scope.all_clusters,
            "standalone": ctx.settings.serving.standalone,
            "objectCache": _object_cache_status(ctx.object_source),
            "metrics": sorted(metrics, key=lambda m: (m["kind"], m["resource"] or "", m["name"])),
            # Name families (Stackdriver-style names) are served by pattern, never listed.
            "familyRules": family_rules(ctx.rules.rules),
        }
    )


@router.get("/debug/query")
async def debug_query(request: Request) -> Response:
    ctx = context(request)
    path = request.query_params.get("path")
    if not path:
        raise BadRequestError("give the metrics API path to explain: /debug/query?path=/apis/...")
    parsed = parse_path_string(path)
    trace = Trace()
    answer: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    try:
        answer = (await ctx.provider.answer(parsed, trace=trace)).body
    except AdapterError as exc:
        error = status_body(exc.code, exc.message, exc.reason)
    now = time.time()
    doc = {
        "path": path,
        "request": {
            "group": parsed.group,
            "version": parsed.version,
            "namespace": parsed.namespace,
            "resource": str(parsed.resource) if parsed.resource else None,
            "name": parsed.name or ("*" if parsed.group == "custom" else None),
            "metric": parsed.metric,
            "labelSelector": selector_to_string(parsed.label_selector),
            "metricSelector": selector_to_string(parsed.metric_selector),
        },
        **trace_document(trace, now=now, cache_ttl=ctx.settings.cache.ttl),
        "answer": answer,
        "error": error,
    }
    return json_response(doc)
