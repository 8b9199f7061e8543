"""Structured logs: the JSON formatter, the set-up, and the access log through the real app."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from adapter.auth.user import UserInfo
from adapter.domain.errors import BackendUnavailableError
from adapter.observability.logging import JsonFormatter, configure_logging, resolve_format
from adapter.rules.loader import load_rules
from adapter.serving.asgi import build_context, create_app
from adapter.settings import Settings
from sim.fake_backend import FakeBackend

SECRET = "SECRET-t0ken-value"
PATH = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"


@pytest.fixture
def restore_root() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    quiet = {name: logging.getLogger(name).level for name in ("httpcore", "httpx", "hpack")}
    try:
        yield
    finally:
        for name, old in quiet.items():
            logging.getLogger(name).setLevel(old)
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in handlers:
            root.addHandler(h)
        root.setLevel(level)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_json_formatter_keeps_known_fields_only() -> None:
    record = logging.LogRecord("adapter.x", logging.WARNING, __file__, 1, "hi %s", ("there",), None)
    record.__dict__.update(
        {"audit_id": "a-1", "code": 503, "authorization": f"Bearer {SECRET}", "headers": {}}
    )
    doc = json.loads(JsonFormatter().format(record))
    assert doc["msg"] == "hi there" and doc["level"] == "warning" and doc["logger"] == "adapter.x"
    assert doc["audit_id"] == "a-1" and doc["code"] == 503
    assert "authorization" not in doc and "headers" not in doc
    assert doc["ts"].endswith("Z") and len(doc["ts"]) == len("2026-01-01T00:00:00.000Z")


def test_json_formatter_includes_the_traceback() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.LogRecord(
            "adapter", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    doc = json.loads(JsonFormatter().format(record))
    assert "RuntimeError: boom" in doc["exc"]


def test_format_resolution() -> None:
    assert resolve_format("auto", Tty()) == "text"
    assert resolve_format("auto", io.StringIO()) == "json"
    assert resolve_format("text") == "text" and resolve_format("json") == "json"
    with pytest.raises(ValueError, match="json, text or auto"):
        resolve_format("xml")


@pytest.mark.usefixtures("restore_root")
def test_configure_logging_replaces_handlers() -> None:
    stream = io.StringIO()
    configure_logging(level="warning", fmt="json", stream=stream)
    logging.getLogger("adapter.test").info("hidden")
    logging.getLogger("adapter.test").warning("shown %d", 1)
    lines = stream.getvalue().splitlines()
    assert [json.loads(line)["msg"] for line in lines] == ["shown 1"]
    with pytest.raises(ValueError, match="log level"):
        configure_logging(level="loud", stream=stream)


@pytest.mark.usefixtures("restore_root")
def test_http_client_debug_records_are_never_written() -> None:
    # httpcore's debug records include response headers (cookies); they stay off at debug.
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    logging.getLogger("httpcore.http11").debug("headers=[(b'Set-Cookie', b'%s')]", SECRET)
    logging.getLogger("httpx").debug("auth header %s", SECRET)
    logging.getLogger("adapter.test").debug("visible")
    out = stream.getvalue()
    assert "visible" in out and SECRET not in out


class FakeAuth:
    """Stands in for the auth middleware: puts the user in a *copy* of the scope, as it does."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        clean: dict[str, Any] = dict(scope)
        clean["state"] = {**(scope.get("state") or {}), "user": UserInfo(name="alice")}
        await self.app(clean, receive, send)


async def run_requests(fake: FakeBackend, stream: io.StringIO, fmt: str) -> None:
    configure_logging(level="debug", fmt=fmt, stream=stream)
    ctx = build_context(
        Settings.from_options(standalone=True, cache_ttl=0), backend=fake, rules=load_rules(None)
    )
    app = create_app(ctx, background=False, middleware=[Middleware(FakeAuth)])
    headers = {
        "Authorization": f"Bearer {SECRET}",
        "Cookie": f"session={SECRET}",
        "X-Remote-User": SECRET,
        "Audit-ID": "0f1e2d3c-aaaa-bbbb-cccc-000000000001",
    }
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://adapter"
    ) as c:
        ok = await c.get(PATH, headers=headers, params={"labelSelector": "app=x"})
        assert ok.status_code == 200
        fake.fail_with(BackendUnavailableError("connection refused", backend="prometheus"))
        failed = await c.get(PATH, headers=headers)
        assert failed.status_code == 503
        bad_audit = await c.get("/healthz", headers={**headers, "Audit-ID": f"x {SECRET}"})
        assert bad_audit.status_code == 200


@pytest.mark.usefixtures("restore_root")
async def test_access_log_lines_are_structured() -> None:
    stream = io.StringIO()
    await run_requests(FakeBackend(), stream, "json")
    access = [
        doc
        for doc in map(json.loads, stream.getvalue().splitlines())
        if doc["logger"] == "adapter.access"
    ]
    assert len(access) == 3
    ok, failed, health = access
    assert ok["level"] == "debug" and ok["code"] == 200
    assert ok["audit_id"] == "0f1e2d3c-aaaa-bbbb-cccc-000000000001"
    assert ok["method"] == "GET" and ok["path"] == PATH and ok["query"] == "labelSelector=app%3Dx"
    assert ok["user"] == "alice" and ok["duration_seconds"] >= 0
    assert failed["level"] == "warning" and failed["code"] == 503
    assert "audit_id" not in health, "a value that is not ID-like is not logged"


@pytest.mark.parametrize("fmt", ["json", "text"])
@pytest.mark.usefixtures("restore_root")
async def test_no_header_value_ever_reaches_the_log(fmt: str) -> None:
    stream = io.StringIO()
    await run_requests(FakeBackend(), stream, fmt)
    out = stream.getvalue()
    assert "adapter.access" in out, "the access log wrote nothing: the test would prove nothing"
    assert SECRET not in out
    assert "Bearer" not in out and "session=" not in out
