"""``GET /debug/hpa/{namespace}/{name}``: what that HPA would decide from the adapter's values.

Reads the HPA, its scale target and pods through the context's HPA reader (the Kubernetes client),
fetches every metric through :meth:`MetricsProvider.answer` (the path the API serves) and runs
the controller's calculation (:mod:`adapter.hpa.algorithm`). Standalone there is no Kubernetes: 400.
Query parameters ``tolerance`` (default 0.1), ``downscaleStabilization`` (seconds, default
300) and ``syncPeriod`` (seconds, default 15: each metric's freshness budget uses it) stand for
the controller's flags, which the adapter cannot see.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import context, json_response
from adapter.domain.errors import BadRequestError
from adapter.hpa.algorithm import DEFAULT_DOWNSCALE_STABILIZATION_S, DEFAULT_TOLERANCE
from adapter.hpa.explain import HpaReader, explain_hpa
from adapter.hpa.freshness import DEFAULT_SYNC_PERIOD_S

__all__ = ["hpa_reader", "router"]

router = APIRouter()


def hpa_reader(request: Request) -> HpaReader:
    """The Kubernetes reader behind the app, or BadRequestError when there is none."""
    ctx = context(request)
    reader = ctx.hpa_reader
    if ctx.settings.serving.standalone or reader is None:
        raise BadRequestError(
            "explaining an HPA needs the Kubernetes API: this adapter runs standalone; run it in"
            " a cluster or use `llm-metrics-adapter explain NAMESPACE/HPA --kubeconfig ...`"
        )
    return reader


def _float_param(request: Request, name: str, default: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise BadRequestError(f"{name} must be a number, got {raw!r}") from None
    if not 0 <= value <= 86400:
        raise BadRequestError(f"{name} must be between 0 and 86400, got {raw!r}")
    return value


@router.get("/debug/hpa/{namespace}/{name}")
async def debug_hpa(request: Request, namespace: str, name: str) -> Response:
    reader = hpa_reader(request)
    ctx = context(request)
    doc = await explain_hpa(
        ctx.provider,
        reader,
        namespace,
        name,
        default_tolerance=_float_param(request, "tolerance", DEFAULT_TOLERANCE),
        downscale_stabilization_s=_float_param(
            request, "downscaleStabilization", DEFAULT_DOWNSCALE_STABILIZATION_S
        ),
        sync_period_s=_float_param(request, "syncPeriod", DEFAULT_SYNC_PERIOD_S),
    )
    return json_response(doc)
