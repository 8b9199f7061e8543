"""``/debug/ui``: a page that charts every served metric against time, and HPAs' decisions.

One static HTML page and one JS file (no build step, no CDN, no external fonts), polling:

- ``GET /debug/series?namespace=NS`` — the recent values the provider served, per metric,
  namespace and object (bounded in memory: :class:`adapter.core.history.SeriesRecorder`). With ``namespace`` it
  first reads every served external metric and every ``pods`` metric in that namespace through
  :meth:`MetricsProvider.answer` (cached like any API request), so the page shows live data
  even when no HPA is asking.
- ``GET /debug/hpa/{namespace}/{name}`` (when Kubernetes is available) for HPAs named in the
  page's ``hpa`` query parameter.
"""

from __future__ import annotations

import time
from importlib import resources

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import context, json_response
from adapter.app.context import AppContext
from adapter.core.request import parse_path_string
from adapter.domain.errors import AdapterError, BadRequestError
from adapter.domain.models import GroupResource

__all__ = ["router"]

router = APIRouter()

_NAMESPACE_MAX = 63


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
    recorder = ctx.history
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
            "standalone": ctx.settings.serving.standalone,
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
