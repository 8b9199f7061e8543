"""``/debug/ui``: a page that charts every served metric against time, and HPAs' decisions.

One static HTML page and one JS file (no build step, no CDN, no external fonts), polling:

- ``GET /debug/series?namespace=NS`` — the recent values the provider served, per metric,
  namespace and object (bounded in memory: :class:`SeriesRecorder`). With ``namespace`` it
  first reads every served external metric and every ``pods`` metric in that namespace through
  :meth:`MetricsProvider.answer` (cached like any API request), so the page shows live data
  even when no HPA is asking.
- ``GET /debug/hpa/{namespace}/{name}`` (when Kubernetes is available) for HPAs named in the
  page's ``hpa`` query parameter.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import context, json_response
from adapter.context import AppContext
from adapter.errors import AdapterError, BadRequestError
from adapter.models import GroupResource
from adapter.paths import ApiRequest, parse_path_string
from adapter.provider import Answer, MetricsProvider, Trace

__all__ = ["SeriesRecorder", "install", "router"]

router = APIRouter()

_NAMESPACE_MAX = 63


class SeriesRecorder:
    """The last ``points`` values of at most ``max_series`` series (least recently updated
    series are dropped first). A series is (group, metric, namespace, object or label set)."""

    def __init__(self, *, points: int = 240, max_series: int = 512) -> None:
        self.points = points
        self.max_series = max_series
        self._series: OrderedDict[tuple[str, str, str, str], deque[tuple[float, float, float]]]
        self._series = OrderedDict()

    def record(self, request: ApiRequest, answer: Answer) -> None:
        now = time.time()
        for v in answer.values:
            if v.described is not None:
                who = v.described.name
            else:
                who = ",".join(f"{k}={val}" for k, val in sorted(v.labels.items())) or "*"
            key = (request.group, request.metric, request.namespace or "", who)
            points = self._series.get(key)
            if points is None:
                points = deque(maxlen=self.points)
                self._series[key] = points
                while len(self._series) > self.max_series:
                    self._series.popitem(last=False)
            self._series.move_to_end(key)
            # (when served, value, sample timestamp): freshness is served - sample time.
            if not points or points[-1][2] != v.timestamp or now - points[-1][0] > 1.0:
                points.append((now, v.value, v.timestamp))

    def document(self, namespace: str | None = None) -> list[dict[str, Any]]:
        out = []
        for (group, metric, ns, who), points in self._series.items():
            if namespace is not None and ns != namespace:
                continue
            out.append(
                {
                    "group": group,
                    "metric": metric,
                    "namespace": ns,
                    "object": who,
                    "points": [
                        {"t": round(t, 3), "value": value, "age": round(max(0.0, t - ts), 3)}
                        for t, value, ts in points
                    ],
                }
            )
        return sorted(out, key=lambda s: (s["metric"], s["namespace"], s["object"]))


def install(ctx: AppContext) -> SeriesRecorder:
    """Record every answer ``ctx.provider`` gives (wrapping :meth:`MetricsProvider.answer`)."""
    provider = ctx.provider
    existing = getattr(provider, "series_recorder", None)
    if isinstance(existing, SeriesRecorder):
        return existing
    recorder = SeriesRecorder()
    inner: Callable[..., Awaitable[Answer]] = provider.answer

    async def answer(request: ApiRequest, *, trace: Trace | None = None) -> Answer:
        result = await inner(request, trace=trace)
        recorder.record(request, result)
        return result

    # Instrument by wrapping, like the instrumented backend: the provider stays unaware.
    setattr(provider, "answer", answer)  # noqa: B010
    setattr(provider, "series_recorder", recorder)  # noqa: B010
    return recorder


def _recorder(provider: MetricsProvider) -> SeriesRecorder:
    recorder = getattr(provider, "series_recorder", None)
    if not isinstance(recorder, SeriesRecorder):
        raise BadRequestError("the series recorder is not installed in this app")
    return recorder


async def _sample(ctx: AppContext, namespace: str) -> list[str]:
    """Read every served external and pods metric in ``namespace``; return the failures."""
    snap = ctx.registry.snapshot
    paths = [
        f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{name}"
        for name in snap.external
    ]
    paths += [
        f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{namespace}/pods/*/{name}"
        for (resource, name) in snap.custom
        if resource == GroupResource("pods")
    ]
    errors = []
    for path in paths:
        try:
            await ctx.provider.answer(parse_path_string(path))
        except AdapterError as exc:
            errors.append(f"{path}: {exc.message}")
    return errors


@router.get("/debug/series")
async def debug_series(request: Request) -> Response:
    ctx = context(request)
    recorder = _recorder(ctx.provider)
    namespace = request.query_params.get("namespace") or None
    errors: list[str] = []
    if namespace is not None:
        if len(namespace) > _NAMESPACE_MAX:
            raise BadRequestError("namespace is too long")
        parse_path_string(f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/x")
        errors = await _sample(ctx, namespace)
    return json_response(
        {
            "now": round(time.time(), 3),
            "standalone": ctx.settings.standalone,
            "series": recorder.document(namespace),
            "errors": errors,
        }
    )


def _static(name: str) -> str:
    return resources.files("adapter.api").joinpath("static", name).read_text(encoding="utf-8")


@router.get("/debug/ui")
async def debug_ui() -> Response:
    return Response(_static("ui.html"), media_type="text/html; charset=utf-8")


@router.get("/debug/ui/app.js")
async def debug_ui_js() -> Response:
    return Response(_static("ui.js"), media_type="text/javascript; charset=utf-8")
