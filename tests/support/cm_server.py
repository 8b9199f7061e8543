"""A local Cloud Monitoring gRPC server: ``google.monitoring.v3.MetricService`` on 127.0.0.1.

Implements ``ListTimeSeries`` and ``GetMetricDescriptor`` with the library's own message types
(registered as a generic handler: the generated servicer base is not public), records every
request, and evaluates the filters this adapter writes: ``key = "v"``, ``key != "v"``,
``key = one_of("a",…)``, ``NOT key = one_of(…)``, ``prefix : label``, ``key > N``/``key < N``,
joined by ``AND``. Anything else fails the call with INVALID_ARGUMENT, so a malformed filter
fails the test that made it.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import grpc
from google.cloud import monitoring_v3

__all__ = ["CMServer", "Series", "evaluate_filter", "serve_cm", "unquote"]

_SERVICE = "google.monitoring.v3.MetricService"
_STRING = r'"(?:[^"\\]|\\.)*"'
_CLAUSE = re.compile(
    rf"^(?P<not>NOT )?(?P<key>[A-Za-z_][A-Za-z0-9_.]*) (?:"
    rf"(?P<op>=|!=) (?:(?P<str>{_STRING})|one_of\((?P<list>{_STRING}(?:,{_STRING})*)\))"
    rf"|(?P<cmp>[<>]) (?P<num>-?[0-9]+)"
    rf"|: (?P<has>[A-Za-z_][A-Za-z0-9_]*))$"
)


def unquote(text: str) -> str:
    """The value of a filter string literal (quotes removed, escapes resolved)."""
    body = text[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t", "r": "\r"}.get(m[1], m[1]), body)


@dataclass
class Series:
    """One stored time series: newest point last in ``points`` as (end unix seconds, value)."""

    metric_type: str
    metric_labels: dict[str, str]
    resource_type: str
    resource_labels: dict[str, str]
    points: list[tuple[float, float]]
    int_values: bool = False

    def field(self, key: str) -> str | None:
        if key == "metric.type":
            return self.metric_type
        if key == "resource.type":
            return self.resource_type
        if key.startswith("metric.labels."):
            return self.metric_labels.get(key.removeprefix("metric.labels."))
        if key.startswith("resource.labels."):
            return self.resource_labels.get(key.removeprefix("resource.labels."))
        return None


def _split_and(text: str) -> list[str]:
    # Split on " AND " outside string literals.
    parts, current, in_str, escape = [], [], False, False
    i = 0
    while i < len(text):
        ch = text[i]
        if in_str:
            current.append(ch)
            if escape:
                escape = False
            elif ch == "\\":
                escape = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
            current.append(ch)
        elif text.startswith(" AND ", i):
            parts.append("".join(current))
            current = []
            i += 5
            continue
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return parts


def evaluate_filter(filter_text: str, series: Series) -> bool:
    """Whether ``series`` matches. Raises ``ValueError`` for clauses outside the subset."""
    for clause in _split_and(filter_text):
        m = _CLAUSE.match(clause)
        if m is None:
            raise ValueError(f"unsupported filter clause {clause!r}")
        if m["has"]:
            labels = series.metric_labels if m["key"] == "metric.labels" else series.resource_labels
            ok = m["has"] in labels
        elif m["cmp"]:
            raw = series.field(m["key"])
            ok = raw is not None and (
                int(raw) > int(m["num"]) if m["cmp"] == ">" else int(raw) < int(m["num"])
            )
        else:
            value = series.field(m["key"])
            wanted = (
                [unquote(m["str"])]
                if m["str"]
                else [unquote(s) for s in re.findall(_STRING, m["list"])]
            )
            ok = (value in wanted) if m["op"] == "=" else (value not in wanted)
        if m["not"]:
            ok = not ok
        if not ok:
            return False
    return True


@dataclass
class CMServer:
    """State of the fake: stored series, descriptor kinds, recorded requests."""

    address: str = ""
    series: list[Series] = field(default_factory=list)
    kinds: dict[str, tuple[str, str]] = field(default_factory=dict)
    """metric type → (metric kind, value type) for GetMetricDescriptor."""
    list_requests: list[monitoring_v3.ListTimeSeriesRequest] = field(default_factory=list)
    descriptor_requests: list[str] = field(default_factory=list)
    fail_with: grpc.StatusCode | None = None
    page_size: int = 2

    async def list_time_series(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        req = monitoring_v3.ListTimeSeriesRequest.wrap(request)
        self.list_requests.append(req)
        if self.fail_with is not None:
            await context.abort(self.fail_with, "injected failure")
        try:
            matched = [s for s in self.series if evaluate_filter(req.filter, s)]
        except ValueError as exc:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        start = req.interval.start_time.timestamp()
        end = req.interval.end_time.timestamp()
        offset = int(req.page_token or "0")
        page = matched[offset : offset + self.page_size]
        out = monitoring_v3.ListTimeSeriesResponse()
        for s in page:
            points = [p for p in s.points if start <= p[0] <= end]
            ts = monitoring_v3.TimeSeries(
                metric={"type": s.metric_type, "labels": s.metric_labels},
                resource={"type": s.resource_type, "labels": s.resource_labels},
            )
            for stamp, value in sorted(points, reverse=True):  # newest first, as the API does
                typed = {"int64_value": int(value)} if s.int_values else {"double_value": value}
                ts.points.append(
                    monitoring_v3.Point(interval={"end_time": {"seconds": int(stamp)}}, value=typed)
                )
            if points:
                out.time_series.append(ts)
        if offset + self.page_size < len(matched):
            out.next_page_token = str(offset + self.page_size)
        return monitoring_v3.ListTimeSeriesResponse.pb(out)

    async def get_metric_descriptor(self, request: Any, context: grpc.aio.ServicerContext) -> Any:
        req = monitoring_v3.GetMetricDescriptorRequest.wrap(request)
        self.descriptor_requests.append(req.name)
        metric_type = req.name.split("/metricDescriptors/", 1)[-1]
        if metric_type not in self.kinds:
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no such metric {metric_type}")
        kind, value_type = self.kinds[metric_type]
        from google.api import metric_pb2  # type: ignore[import-untyped]

        return metric_pb2.MetricDescriptor(
            type=metric_type,
            metric_kind=metric_pb2.MetricDescriptor.MetricKind.Value(kind),
            value_type=metric_pb2.MetricDescriptor.ValueType.Value(value_type),
        )


@asynccontextmanager
async def serve_cm() -> AsyncIterator[CMServer]:
    """Start the fake on a free loopback port; stop it (grace 0) on exit."""
    from google.api import metric_pb2

    state = CMServer()
    server = grpc.aio.server()
    handlers = {
        "ListTimeSeries": grpc.unary_unary_rpc_method_handler(
            state.list_time_series,
            request_deserializer=monitoring_v3.ListTimeSeriesRequest.pb().FromString,
            response_serializer=monitoring_v3.ListTimeSeriesResponse.pb().SerializeToString,
        ),
        "GetMetricDescriptor": grpc.unary_unary_rpc_method_handler(
            state.get_metric_descriptor,
            request_deserializer=monitoring_v3.GetMetricDescriptorRequest.pb().FromString,
            response_serializer=metric_pb2.MetricDescriptor.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(_SERVICE, handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    state.address = f"127.0.0.1:{port}"
    await server.start()
    try:
        yield state
    finally:
        await server.stop(grace=0)
