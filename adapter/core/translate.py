"""Samples to API objects, and API objects to the exact JSON each API version carries.

Pure functions: no I/O. The JSON shapes follow k8s.io/metrics:
``custom_metrics/v1beta1.MetricValue``, ``custom_metrics/v1beta2.MetricValue`` and
``external_metrics/v1beta1.ExternalMetricValue``.
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapter.core.quantity import format_quantity
from adapter.domain.models import (
    GroupResource,
    MetricValue,
    ObjectRef,
    QueryResult,
    Requirement,
    Sample,
)
from adapter.domain.resources import ResourceInfo
from adapter.promql import FRESHNESS_LABEL
from adapter.rules import resources

__all__ = [
    "CUSTOM_GROUP",
    "EXTERNAL_GROUP",
    "Dropped",
    "custom_list",
    "encode_json",
    "external_list",
    "format_timestamp",
    "kind_for",
    "label_selector_object",
    "restamp",
    "samples_to_custom",
    "samples_to_external",
]

CUSTOM_GROUP = "custom.metrics.k8s.io"
EXTERNAL_GROUP = "external.metrics.k8s.io"


def kind_for(resource: GroupResource) -> tuple[str, str]:
    """``(kind, apiVersion)`` for a described object's resource: from the resource table the
    rules map labels with; a resource it does not know is named after its plural."""
    known = resources.exact(resource)
    if known is not None:
        return known.kind, known.api_version
    singular = resource.resource[:-1] if resource.resource.endswith("s") else resource.resource
    kind = singular[:1].upper() + singular[1:]
    return kind, f"{resource.group}/v1" if resource.group else "v1"


def format_timestamp(unix_seconds: float) -> str:
    """RFC 3339 in UTC with second precision, as ``metav1.Time`` marshals."""
    return _format_second(int(unix_seconds))


@functools.lru_cache(maxsize=4096)
def _format_second(second: int) -> str:
    # Every answer formats the same few scrape times again (strftime was ~4 % of a cache hit).
    return datetime.fromtimestamp(second, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, slots=True)
class Dropped:
    """A sample not served, and why: ``non-finite``, ``too-old``, ``no-object-label``,
    ``not-selected`` (object not in the request), ``duplicate`` (two series for one object)."""

    labels: dict[str, str]
    value: float
    reason: str


def restamp(result: QueryResult, *, by: Sequence[str]) -> QueryResult:
    """Split the answer to a :func:`adapter.promql.with_freshness` query.

    Value samples get the time of the data they were computed from — the oldest input's newest
    sample for their ``by`` group — instead of Prometheus' evaluation time. A group without a
    freshness sample takes the oldest freshness seen (never a younger age than the data has).
    """
    values: list[Sample] = []
    stamps: dict[tuple[str, ...], float] = {}
    for sample in result.samples:
        if sample.labels.get(FRESHNESS_LABEL) == "ts":
            if math.isfinite(sample.value):
                stamps[tuple(sample.labels.get(label, "") for label in by)] = sample.value
        else:
            labels = {k: v for k, v in sample.labels.items() if k != FRESHNESS_LABEL}
            values.append(Sample(labels=labels, value=sample.value, timestamp=sample.timestamp))
    oldest = min(stamps.values(), default=None)
    restamped = []
    for sample in values:
        ts = stamps.get(tuple(sample.labels.get(label, "") for label in by), oldest)
        restamped.append(
            sample
            if ts is None
            else Sample(
                labels=sample.labels, value=sample.value, timestamp=min(ts, sample.timestamp)
            )
        )
    return QueryResult(
        query=result.query,
        samples=tuple(restamped),
        raw=result.raw,
        duration=result.duration,
        backend=result.backend,
    )


def _object_name(sample: Sample, object_labels: Sequence[str]) -> str:
    for label in object_labels:
        value = sample.labels.get(label, "")
        if value:
            return value
    return ""


def _fresh(sample: Sample, *, now: float, max_age: float | None) -> str | None:
    if not math.isfinite(sample.value):
        return "non-finite"
    if max_age is not None and now - sample.timestamp > max_age:
        return "too-old"
    return None


def samples_to_custom(
    samples: Iterable[Sample],
    *,
    metric: str,
    resource: GroupResource,
    namespace: str | None,
    object_labels: Sequence[str],
    object_names: Sequence[str] | None,
    window: int | None,
    now: float,
    max_age: float | None = None,
    described: ResourceInfo | None = None,
) -> tuple[list[MetricValue], list[Dropped]]:
    """One value per described object, keyed by the first non-empty ``object_labels`` label.

    Objects outside ``object_names`` (when given) are dropped. Two series naming the same object
    are both dropped (``duplicate``): serving either would be a guess. ``described``: the
    resource as the rule's mapping found it (kind and version; else :func:`kind_for`).
    """
    kind, api_version = (
        (described.kind, described.api_version) if described is not None else kind_for(resource)
    )
    wanted = set(object_names) if object_names is not None else None
    by_name: dict[str, MetricValue] = {}
    dropped: list[Dropped] = []
    duplicates: set[str] = set()
    for sample in samples:
        reason = _fresh(sample, now=now, max_age=max_age)
        name = _object_name(sample, object_labels)
        if reason is None and not name:
            reason = "no-object-label"
        if reason is None and wanted is not None and name not in wanted:
            reason = "not-selected"
        if reason is None and name in by_name:
            duplicates.add(name)
            reason = "duplicate"
        if reason is not None:
            dropped.append(Dropped(dict(sample.labels), sample.value, reason))
            continue
        ns = "" if resource == GroupResource("namespaces") else (namespace or "")
        by_name[name] = MetricValue(
            metric=metric,
            value=sample.value,
            timestamp=sample.timestamp,
            described=ObjectRef(kind=kind, name=name, namespace=ns, api_version=api_version),
            window=window,
        )
    for name in duplicates:
        value = by_name.pop(name)
        dropped.append(Dropped({"object": name}, value.value, "duplicate"))
    return [by_name[name] for name in sorted(by_name)], dropped


def samples_to_external(
    samples: Iterable[Sample],
    *,
    metric: str,
    window: int | None,
    now: float,
    max_age: float | None = None,
) -> tuple[list[MetricValue], list[Dropped]]:
    """One value per series; labels become ``metricLabels`` (without ``__name__``)."""
    values: list[MetricValue] = []
    dropped: list[Dropped] = []
    for sample in samples:
        reason = _fresh(sample, now=now, max_age=max_age)
        if reason is not None:
            dropped.append(Dropped(dict(sample.labels), sample.value, reason))
            continue
        labels = {k: v for k, v in sample.labels.items() if k != "__name__"}
        values.append(
            MetricValue(
                metric=metric,
                value=sample.value,
                timestamp=sample.timestamp,
                labels=labels,
                window=window,
            )
        )
    return values, dropped


def label_selector_object(requirements: Sequence[Requirement]) -> dict[str, Any] | None:
    """A ``metav1.LabelSelector`` for requirements, or ``None`` when there are none."""
    if not requirements:
        return None
    match_labels: dict[str, str] = {}
    expressions: list[dict[str, Any]] = []
    operators = {"in": "In", "notin": "NotIn", "exists": "Exists", "!": "DoesNotExist"}
    for r in requirements:
        if r.op == "=" and r.key not in match_labels:
            match_labels[r.key] = r.values[0]
        elif r.op == "=":
            expressions.append({"key": r.key, "operator": "In", "values": list(r.values)})
        elif r.op == "!=":
            expressions.append({"key": r.key, "operator": "NotIn", "values": list(r.values)})
        elif r.op in {"gt", "lt"}:
            expressions.append(
                {"key": r.key, "operator": r.op.capitalize(), "values": list(r.values)}
            )
        else:
            entry: dict[str, Any] = {"key": r.key, "operator": operators[r.op]}
            if r.values:
                entry["values"] = list(r.values)
            expressions.append(entry)
    selector: dict[str, Any] = {}
    if match_labels:
        selector["matchLabels"] = match_labels
    if expressions:
        selector["matchExpressions"] = expressions
    return selector


def _described(ref: ObjectRef) -> dict[str, str]:
    out = {"kind": ref.kind, "name": ref.name, "apiVersion": ref.api_version}
    if ref.namespace:
        out["namespace"] = ref.namespace
    return out


def _sampled(item: dict[str, Any], v: MetricValue, window_key: str) -> dict[str, Any]:
    """``item`` completed with the sample's timestamp, window (under ``window_key``) and value."""
    item["timestamp"] = format_timestamp(v.timestamp)
    if v.window is not None:
        item[window_key] = v.window
    item["value"] = format_quantity(v.value)
    return item


def _value_list(kind: str, api_version: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"kind": kind, "apiVersion": api_version, "metadata": {}, "items": items}


def encode_json(body: Any) -> bytes:
    """Compact JSON, as the apiserver writes it; NaN and infinities are refused (never served)."""
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def custom_list(
    values: Sequence[MetricValue], *, version: str, selector: Sequence[Requirement] = ()
) -> dict[str, Any]:
    """A ``MetricValueList`` for ``custom.metrics.k8s.io/{version}`` (v1beta1 or v1beta2)."""
    selector_obj = label_selector_object(selector)
    items: list[dict[str, Any]] = []
    for v in values:
        assert v.described is not None
        item: dict[str, Any] = {"describedObject": _described(v.described)}
        if version == "v1beta1":
            item["metricName"] = v.metric
            _sampled(item, v, "window")["selector"] = selector_obj
        else:
            metric: dict[str, Any] = {"name": v.metric}
            if selector_obj is not None:
                metric["selector"] = selector_obj
            item["metric"] = metric
            _sampled(item, v, "windowSeconds")
        items.append(item)
    return _value_list("MetricValueList", f"{CUSTOM_GROUP}/{version}", items)


def external_list(values: Sequence[MetricValue]) -> dict[str, Any]:
    """An ``ExternalMetricValueList`` for ``external.metrics.k8s.io/v1beta1``."""
    items = [
        _sampled({"metricName": v.metric, "metricLabels": dict(v.labels)}, v, "window")
        for v in values
    ]
    return _value_list("ExternalMetricValueList", f"{EXTERNAL_GROUP}/v1beta1", items)
