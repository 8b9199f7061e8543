"""custom.metrics.k8s.io (v1beta1, v1beta2) and external.metrics.k8s.io (v1beta1) values.

One route under each group version; the path is parsed by :func:`adapter.core.request.parse_api_path`,
the same function ``/debug/query`` and the ``query`` command use, so all three agree.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import context, json_response
from adapter.core.request import parse_api_path

__all__ = ["router"]

router = APIRouter()


@router.get("/apis/{group}/{version}/{rest:path}")
async def metric_values(request: Request) -> Response:
    parsed = parse_api_path(request.scope["path"], request.query_params)
    answer = await context(request).provider.answer(parsed)
    return json_response(answer.body)
