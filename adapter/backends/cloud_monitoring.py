"""Cloud Monitoring (``timeSeries.list`` over gRPC): the backend for Stackdriver-style names.

A query is the canonical JSON request spec that :mod:`adapter.rules.stackdriver` builds::

    {"aligner": "ALIGN_NEXT_OLDER" | "ALIGN_RATE" | null,   # null: from the metric descriptor
     "alignmentPeriod": 120, "window": 120,                 # seconds
     "combine": "pods" | "series",
     "filters": ["metric.type = \\"…\\" AND …", …],          # one ListTimeSeries call each
     "metricType": "prometheus.googleapis.com/x/gauge", "project": "p", "reducer": null}

Each filter is listed over ``[now − window, now]``; the newest point of each series is its
value and the point's end time its timestamp. ``combine: pods`` sums the series of one pod
(keyed by ``resource.labels.namespace`` and ``metric.labels.pod``, as the Stackdriver adapter
does: for ``jetstream_slots_used_percentage`` that is the SUM over ``idx``) into one sample
labelled ``pod``/``namespace``, timestamped with the oldest of the summed points.
``combine: series`` returns one sample per series with the Stackdriver adapter's external
``metricLabels``: ``metric.labels.<k>``, ``resource.type``, ``resource.labels.<k>``.

Metric kinds (for ``aligner: null``) come from ``metricDescriptors.get``, cached per
(project, type) because that call has a quota of 6,000 per minute per project. Every call passes
its own ``timeout`` and ``retry`` (the library's defaults are 90 s). Library errors become
:class:`adapter.domain.errors.BackendError` subclasses whose messages carry the gRPC status and the
server's text, never credentials.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
from collections.abc import Sequence
from typing import Any, Final

from google.api_core import exceptions as gexc
from google.api_core import retry_async
from google.cloud import monitoring_v3

from adapter.domain.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    BadRequestError,
    NotFoundError,
)
from adapter.domain.models import QueryResult, Sample

__all__ = ["CloudMonitoringBackend", "parse_spec"]

_NAME: Final = "cloud-monitoring"
_ALIGNERS: Final = frozenset({"ALIGN_NEXT_OLDER", "ALIGN_RATE"})
_MAX_SERIES: Final = 20_000
"""Most series one query may return; a larger answer is refused rather than held in memory."""
_RETRYABLE: Final = (gexc.ServiceUnavailable, gexc.TooManyRequests, gexc.ResourceExhausted)


def parse_spec(query: str) -> dict[str, Any]:
    """The request spec in ``query``, checked. Raises :class:`BadRequestError`: only a
    hand-written query (``/debug``, a test) can be malformed; the rules build valid ones."""
    try:
        spec = json.loads(query)
    except ValueError as exc:
        raise BadRequestError("Cloud Monitoring query is not a JSON request spec") from exc
    if not isinstance(spec, dict):
        raise BadRequestError("Cloud Monitoring query must be a JSON object")
    filters = spec.get("filters")
    checks = (
        isinstance(spec.get("project"), str) and spec["project"],
        isinstance(spec.get("metricType"), str) and spec["metricType"],
        isinstance(filters, list) and filters and all(isinstance(f, str) for f in filters),
        spec.get("aligner") is None or spec.get("aligner") in _ALIGNERS,
        isinstance(spec.get("window"), int) and 0 < spec["window"] <= 86400,
        isinstance(spec.get("alignmentPeriod"), int) and 0 < spec["alignmentPeriod"] <= 86400,
        spec.get("combine") in ("pods", "series"),
        spec.get("reducer") is None or isinstance(spec.get("reducer"), str),
    )
    if not all(checks):
        raise BadRequestError("Cloud Monitoring request spec is missing or has invalid fields")
    return spec


# google.api.MetricDescriptor enums (the client returns the raw protobuf message, whose enum
# fields are plain ints; proto-plus wrappers would give enum members with a name).
_KINDS: Final = {0: "METRIC_KIND_UNSPECIFIED", 1: "GAUGE", 2: "DELTA", 3: "CUMULATIVE"}
_VALUE_TYPES: Final = {
    0: "VALUE_TYPE_UNSPECIFIED",
    1: "BOOL",
    2: "INT64",
    3: "DOUBLE",
    4: "STRING",
    5: "DISTRIBUTION",
    6: "MONEY",
}


def _enum_name(value: Any, names: dict[int, str]) -> str:
    name = getattr(value, "name", None)
    if isinstance(name, str):
        return name
    return names.get(int(value), f"UNKNOWN({int(value)})")


def _map_error(exc: Exception, what: str) -> BackendError:
    if isinstance(exc, TimeoutError | gexc.DeadlineExceeded | gexc.RetryError):
        return BackendTimeoutError(f"{what}: deadline exceeded", backend=_NAME)
    if isinstance(exc, gexc.GoogleAPICallError):
        status = type(exc).__name__
        detail = (exc.message or "")[:300]
        if isinstance(exc, (*_RETRYABLE, gexc.InternalServerError, gexc.Unknown)):
            return BackendUnavailableError(f"{what}: {status}: {detail}", backend=_NAME)
        return BackendResponseError(f"{what}: {status}: {detail}", backend=_NAME)
    return BackendUnavailableError(f"{what}: {type(exc).__name__}", backend=_NAME)


def _point_value(point: Any, what: str) -> float:
    which = point.value.WhichOneof("value")
    if which == "double_value":
        return float(point.value.double_value)
    if which == "int64_value":
        return float(point.value.int64_value)
    raise BackendResponseError(
        f"{what}: expected a DOUBLE or INT64 point, got {which or 'no value'}", backend=_NAME
    )


def _newest(series: Any, what: str) -> tuple[float, float] | None:
    """(value, end time in unix seconds) of the newest point, or ``None`` without points."""
    best: tuple[float, float] | None = None
    for point in series.points:
        end = point.interval.end_time.seconds + point.interval.end_time.nanos / 1e9
        if best is None or end > best[1]:
            best = (_point_value(point, what), end)
    return best


class CloudMonitoringBackend:
    """``client``: a ``MetricServiceAsyncClient`` (its transport is closed by :meth:`aclose`).

    ``descriptor_ttl`` seconds a metric kind is reused; ``ping_metric_type``: the descriptor
    read that proves the API answers (a NotFound counts as an answer).
    """

    name: str = _NAME

    def __init__(
        self,
        client: monitoring_v3.MetricServiceAsyncClient,
        *,
        project: str,
        descriptor_ttl: float = 3600.0,
        ping_metric_type: str = "kubernetes.io/node/accelerator/memory_used",
        clock: Any = time.time,
    ) -> None:
        self._client = client
        self._project = project
        self._descriptor_ttl = descriptor_ttl
        self._ping_type = ping_metric_type
        self._clock = clock
        self._kinds: dict[tuple[str, str], tuple[str, str, float]] = {}
        self._closed = False

    @staticmethod
    def _retry(deadline: float) -> retry_async.AsyncRetry:
        # Jittered exponential backoff on overload only, bounded by what is left of the call.
        return retry_async.AsyncRetry(
            predicate=retry_async.if_exception_type(*_RETRYABLE),
            initial=0.1,
            maximum=1.0,
            multiplier=2.0,
            timeout=max(deadline - time.monotonic(), 0.001),
        )

    @staticmethod
    def _remaining(deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BackendTimeoutError("deadline exceeded", backend=_NAME)
        return left

    async def metric_kind(self, project: str, metric_type: str, *, deadline: float) -> str:
        """``GAUGE``, ``DELTA`` or ``CUMULATIVE`` from the metric descriptor (cached).

        Raises :class:`NotFoundError` when the metric type does not exist, and
        :class:`BadRequestError` for value types this adapter cannot serve (distributions).
        """
        key = (project, metric_type)
        cached = self._kinds.get(key)
        now = time.monotonic()
        if cached is not None and cached[2] > now:
            kind, value_type = cached[0], cached[1]
        else:
            name = f"projects/{project}/metricDescriptors/{metric_type}"
            try:
                descriptor = await self._client.get_metric_descriptor(
                    request=monitoring_v3.GetMetricDescriptorRequest(name=name),
                    timeout=self._remaining(deadline),
                    retry=self._retry(deadline),
                )
            except gexc.NotFound as exc:
                raise NotFoundError(
                    f"Cloud Monitoring has no metric type {metric_type} in project {project}"
                ) from exc
            except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as exc:
                raise _map_error(exc, "metricDescriptors.get") from exc
            kind = _enum_name(descriptor.metric_kind, _KINDS)
            value_type = _enum_name(descriptor.value_type, _VALUE_TYPES)
            self._kinds[key] = (kind, value_type, now + self._descriptor_ttl)
        if value_type not in ("INT64", "DOUBLE"):
            raise BadRequestError(
                f"metric {metric_type} has value type {value_type}; only INT64 and DOUBLE are served"
            )
        return kind

    async def _list(
        self, spec: dict[str, Any], filter_text: str, aligner: str, *, deadline: float
    ) -> list[Any]:
        end = self._clock()
        interval = monitoring_v3.TimeInterval(
            start_time=dt.datetime.fromtimestamp(int(end - spec["window"]), tz=dt.UTC),
            end_time=dt.datetime.fromtimestamp(int(end), tz=dt.UTC),
        )
        aggregation = monitoring_v3.Aggregation(
            alignment_period=dt.timedelta(seconds=spec["alignmentPeriod"]),
            per_series_aligner=getattr(monitoring_v3.Aggregation.Aligner, aligner),
        )
        if spec.get("reducer"):
            reducer = getattr(monitoring_v3.Aggregation.Reducer, spec["reducer"], None)
            if reducer is None or not spec["reducer"].startswith("REDUCE_"):
                raise BadRequestError(f"unknown reducer {spec['reducer']!r}")
            aggregation.cross_series_reducer = reducer
        request = monitoring_v3.ListTimeSeriesRequest(
            name=f"projects/{spec['project']}",
            filter=filter_text,
            interval=interval,
            aggregation=aggregation,
            view=monitoring_v3.ListTimeSeriesRequest.TimeSeriesView.FULL,
        )
        out: list[Any] = []
        try:
            pager = await self._client.list_time_series(
                request=request, timeout=self._remaining(deadline), retry=self._retry(deadline)
            )
            async for page in pager.pages:
                out.extend(monitoring_v3.TimeSeries.pb(s) for s in page.time_series)
                if len(out) > _MAX_SERIES:
                    raise BackendResponseError(
                        f"more than {_MAX_SERIES} series in one answer; narrow the selector",
                        backend=_NAME,
                    )
        except (gexc.GoogleAPICallError, gexc.RetryError, TimeoutError) as exc:
            raise _map_error(exc, "timeSeries.list") from exc
        return out

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        """Run the request spec in ``query``; ``timeout`` seconds for every call it makes."""
        spec = parse_spec(query)
        started = time.monotonic()
        deadline = started + timeout
        try:
            async with asyncio.timeout(timeout):
                aligner = spec["aligner"]
                if aligner is None:
                    kind = await self.metric_kind(
                        spec["project"], spec["metricType"], deadline=deadline
                    )
                    aligner = "ALIGN_NEXT_OLDER" if kind == "GAUGE" else "ALIGN_RATE"
                series: list[Any] = []
                for filter_text in spec["filters"]:
                    series.extend(await self._list(spec, filter_text, aligner, deadline=deadline))
        except TimeoutError as exc:
            raise BackendTimeoutError("deadline exceeded", backend=_NAME) from exc
        samples = (
            self._pods(series, spec["metricType"])
            if spec["combine"] == "pods"
            else self._series(series, spec["metricType"])
        )
        raw = {
            "aligner": aligner,
            "calls": len(spec["filters"]),
            "series": len(series),
        }
        return QueryResult(
            query=query,
            samples=tuple(samples),
            raw=raw,
            duration=time.monotonic() - started,
            backend=_NAME,
        )

    @staticmethod
    def _pods(series: Sequence[Any], what: str) -> list[Sample]:
        totals: dict[tuple[str, str], tuple[float, float]] = {}
        for ts in series:
            newest = _newest(ts, what)
            if newest is None:
                continue
            key = (ts.resource.labels.get("namespace", ""), ts.metric.labels.get("pod", ""))
            value, stamp = newest
            if key in totals:
                total, oldest = totals[key]
                totals[key] = (total + value, min(oldest, stamp))
            else:
                totals[key] = (value, stamp)
        # Non-finite sums are kept: the translator drops them and /debug shows why.
        return [
            Sample(labels={"namespace": ns, "pod": pod}, value=v, timestamp=t)
            for (ns, pod), (v, t) in sorted(totals.items())
        ]

    @staticmethod
    def _series(series: Sequence[Any], what: str) -> list[Sample]:
        out: list[Sample] = []
        for ts in series:
            newest = _newest(ts, what)
            if newest is None:
                continue
            labels = {f"metric.labels.{k}": v for k, v in ts.metric.labels.items()}
            labels["resource.type"] = ts.resource.type
            labels.update({f"resource.labels.{k}": v for k, v in ts.resource.labels.items()})
            out.append(Sample(labels=labels, value=newest[0], timestamp=newest[1]))
        return out

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        """Not used: Stackdriver-style names are answered by pattern, never discovered."""
        return []

    async def label_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        return []

    async def ping(self, *, timeout: float) -> None:
        """One descriptor read; an answer of NotFound still proves the API is reachable."""
        deadline = time.monotonic() + timeout
        try:
            await self.metric_kind(self._project, self._ping_type, deadline=deadline)
        except (NotFoundError, BadRequestError):
            return

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._client.transport.close()  # type: ignore[no-untyped-call]
