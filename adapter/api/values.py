"""custom.metrics.k8s.io (v1beta1, v1beta2) and external.metrics.k8s.io (v1beta1) values.

One route under each group version; the path is parsed by :func:`adapter.core.request.parse_api_path`,
the same function ``/debug/query`` and the ``query`` command use, so all three agree. A request
answered before, whose inputs still hold, never reaches this route:
:class:`adapter.api.fastpath.CachedResponses` serves its rendered bytes.
"""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import context

__all__ = ["router"]

router = APIRouter()


@router.get("/apis/{group}/{version}/{rest:path}")
async def metric_values(request: Request) -> Response:
    scope = request.scope
    body = await context(request).provider.respond(
        scope["path"], scope["query_string"], request.query_params
    )
    return Response(body, media_type="application/json")
