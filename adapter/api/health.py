"""Health, version and the adapter's own metrics. Health endpoints are anonymous by design."""

from __future__ import annotations

import platform
import sys

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from adapter import __version__
from adapter.api.deps import context, json_response

__all__ = ["readiness_checks", "router"]

router = APIRouter()


def readiness_checks(request: Request) -> list[tuple[str, bool, str]]:
    """``(name, ok, detail)`` for each readiness condition."""
    ctx = context(request)
    rules_detail = f"{len(ctx.rules.rules)} rules loaded ({ctx.rules.format})"
    watcher = ctx.rules_watcher
    if watcher is not None and watcher.status.error is not None:
        # Still ready: the last good rules keep serving.
        rules_detail = f"serving the last good rules; reload failed: {watcher.status.error}"
    return [
        ("rules", True, rules_detail),
        (
            "backend",
            ctx.backend_ready,
            "answered"
            if ctx.backend_ready
            else f"not answered yet: {ctx.backend_error or 'waiting'}",
        ),
    ]


def _verbose(checks: list[tuple[str, bool, str]], *, final: str) -> str:
    lines = [
        f"[{'+' if ok else '-'}]{name} {'ok' if ok else 'failed'}: {detail}"
        for name, ok, detail in checks
    ]
    return "\n".join([*lines, final]) + "\n"


@router.get("/healthz")
@router.get("/livez")
async def live(request: Request) -> Response:
    if "verbose" in request.query_params:
        return PlainTextResponse("[+]ping ok\nlivez check passed\n")
    return PlainTextResponse("ok")


@router.get("/readyz")
async def ready(request: Request) -> Response:
    checks = readiness_checks(request)
    ok = all(passed for _, passed, _ in checks)
    if "verbose" in request.query_params or not ok:
        text = _verbose(checks, final="readyz check passed" if ok else "readyz check failed")
        return PlainTextResponse(text, status_code=200 if ok else 503)
    return PlainTextResponse("ok")


@router.get("/version")
async def version() -> Response:
    major, minor, *_ = __version__.split(".")
    return json_response(
        {
            "major": major,
            "minor": minor,
            "gitVersion": f"v{__version__}",
            "gitCommit": "",
            "gitTreeState": "",
            "buildDate": "",
            "goVersion": "",
            "compiler": f"python{sys.version_info.major}.{sys.version_info.minor}",
            "platform": f"{platform.system().lower()}/{platform.machine()}",
        }
    )


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(
        generate_latest(context(request).telemetry.registry), media_type=CONTENT_TYPE_LATEST
    )
