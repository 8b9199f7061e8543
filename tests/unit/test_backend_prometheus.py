"""PrometheusBackend against httpx.MockTransport: parsing, errors, retries, deadlines, tokens."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from adapter.backends.base import Backend
from adapter.backends.prometheus import BearerTokenFile, PrometheusBackend, PrometheusSettings
from adapter.domain.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
)

Handler = Callable[[httpx.Request], httpx.Response]
SECRET = "s3cr3t-token-value"


def ok(data: object) -> httpx.Response:
    return httpx.Response(200, json={"status": "success", "data": data})


def vector(*elements: tuple[dict[str, str], str], ts: float = 1700000000.5) -> httpx.Response:
    return ok(
        {
            "resultType": "vector",
            "result": [{"metric": m, "value": [ts, v]} for m, v in elements],
        }
    )


class Recorder:
    """A MockTransport handler that answers from a list and records requests."""

    def __init__(self, *answers: httpx.Response | Handler) -> None:
        self.answers = list(answers)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        index = min(len(self.requests), len(self.answers)) - 1
        answer = self.answers[index]
        return answer(request) if callable(answer) else answer


def backend(handler: Handler | httpx.AsyncBaseTransport, **settings: object) -> PrometheusBackend:
    transport = (
        handler if isinstance(handler, httpx.AsyncBaseTransport) else httpx.MockTransport(handler)
    )
    opts: dict[str, object] = {"url": "http://prom.test:9090"}
    opts.update(settings)
    return PrometheusBackend(PrometheusSettings(**opts), transport=transport)  # type: ignore[arg-type]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text(f"  {SECRET}\n")
    return path


async def test_implements_backend_protocol() -> None:
    b = backend(Recorder(vector()))
    assert isinstance(b, Backend)
    await b.aclose()


async def test_vector_answer_becomes_samples_with_labels_kept() -> None:
    rec = Recorder(
        vector(
            ({"__name__": "jetstream_prefill_backlog_size", "pod": "a"}, "3"),
            ({"__name__": "jetstream_prefill_backlog_size", "pod": "b"}, "4.25"),
        )
    )
    b = backend(rec)
    result = await b.query("jetstream_prefill_backlog_size", timeout=2)
    assert [(s.labels, s.value, s.timestamp) for s in result.samples] == [
        ({"__name__": "jetstream_prefill_backlog_size", "pod": "a"}, 3.0, 1700000000.5),
        ({"__name__": "jetstream_prefill_backlog_size", "pod": "b"}, 4.25, 1700000000.5),
    ]
    assert result.query == "jetstream_prefill_backlog_size"
    assert result.backend == "prometheus"
    assert isinstance(result.raw, dict)
    assert result.raw["resultType"] == "vector"
    assert result.duration >= 0
    await b.aclose()


async def test_scalar_answer_is_one_sample_without_labels() -> None:
    b = backend(Recorder(ok({"resultType": "scalar", "result": [1700000001, "2.5"]})))
    result = await b.query("2.5", timeout=2)
    assert [(s.labels, s.value, s.timestamp) for s in result.samples] == [({}, 2.5, 1700000001.0)]
    await b.aclose()


async def test_non_finite_values_are_kept() -> None:
    b = backend(
        Recorder(
            vector(
                ({"a": "1"}, "NaN"),
                ({"a": "2"}, "+Inf"),
                ({"a": "3"}, "-Inf"),
                ({"a": "4"}, "1e309"),
            )
        )
    )
    values = [s.value for s in (await b.query("x", timeout=2)).samples]
    assert math.isnan(values[0])
    assert values[1:] == [math.inf, -math.inf, math.inf]
    await b.aclose()


@pytest.mark.parametrize(
    "data",
    [
        {"resultType": "matrix", "result": []},
        {"resultType": "string", "result": [1, "x"]},
        {"resultType": "vector", "result": {}},
        {"resultType": "vector", "result": [{"metric": {"a": 1}, "value": [1, "1"]}]},
        {"resultType": "vector", "result": [{"metric": {}, "value": [1, 1]}]},
        {"resultType": "vector", "result": [{"metric": {}, "value": [1, "one"]}]},
        {"resultType": "vector", "result": [{"metric": {}, "value": ["1", "1"]}]},
        {"resultType": "vector", "result": [{"metric": {}, "value": [1]}]},
        {"resultType": "vector", "result": [{"metric": {}, "histogram": [1, {}]}]},
        {"resultType": "scalar", "result": "1"},
        [],
    ],
)
async def test_wrong_shapes_are_response_errors(data: object) -> None:
    b = backend(Recorder(ok(data)))
    with pytest.raises(BackendResponseError):
        await b.query("x", timeout=2)
    await b.aclose()


async def test_prometheus_error_status_carries_its_message() -> None:
    answer = httpx.Response(
        400,
        json={"status": "error", "errorType": "bad_data", "error": 'parse error: unexpected "}"'},
    )
    b = backend(Recorder(answer))
    with pytest.raises(BackendResponseError) as info:
        await b.query("x{", timeout=2)
    assert "bad_data" in str(info.value)
    assert 'parse error: unexpected "}"' in str(info.value)
    assert "/api/v1/query" in str(info.value)
    await b.aclose()


async def test_error_status_inside_200_is_response_error() -> None:
    answer = httpx.Response(
        200, json={"status": "error", "errorType": "execution", "error": "boom"}
    )
    b = backend(Recorder(answer))
    with pytest.raises(BackendResponseError, match="execution: boom"):
        await b.query("x", timeout=2)
    await b.aclose()


@pytest.mark.parametrize(
    "body",
    [
        b"<html>gateway</html>",
        b'{"status": "success", "data": {"resultType": "vec',
        b"",
        b"\xff\xfe",
    ],
)
async def test_garbage_and_truncated_json_are_response_errors(body: bytes) -> None:
    b = backend(Recorder(httpx.Response(200, content=body)))
    with pytest.raises(BackendResponseError):
        await b.query("x", timeout=2)
    await b.aclose()


async def test_missing_data_or_status_is_response_error() -> None:
    payloads: list[object] = [{"status": "success"}, {"data": {}}, [1, 2]]
    for payload in payloads:
        b = backend(Recorder(httpx.Response(200, json=payload)))
        with pytest.raises(BackendResponseError):
            await b.query("x", timeout=2)
        await b.aclose()


async def test_oversize_body_is_refused_without_reading_it_all() -> None:
    chunks_sent = 0

    async def stream() -> object:
        nonlocal chunks_sent
        for _ in range(1000):
            chunks_sent += 1
            yield b"x" * 1024

    class Streaming(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200, content=stream())  # type: ignore[arg-type]

    b = backend(Streaming(), max_body_bytes=10 * 1024)
    with pytest.raises(BackendResponseError, match="over 10240 bytes"):
        await b.query("x", timeout=2)
    assert chunks_sent < 20
    await b.aclose()


async def test_declared_oversize_body_is_refused() -> None:
    answer = httpx.Response(200, headers={"content-length": str(10**9)}, content=b"")
    b = backend(Recorder(answer), max_body_bytes=1024)
    with pytest.raises(BackendResponseError, match="1000000000 bytes"):
        await b.query("x", timeout=2)
    await b.aclose()


async def test_too_many_samples_is_response_error() -> None:
    b = backend(Recorder(vector(*[({"i": str(i)}, "1") for i in range(11)])), max_samples=10)
    with pytest.raises(BackendResponseError, match="11 samples"):
        await b.query("x", timeout=2)
    await b.aclose()


async def test_429_with_retry_after_then_success() -> None:
    rec = Recorder(
        httpx.Response(
            429,
            headers={"retry-after": "0.3"},
            json={"status": "error", "errorType": "unavailable", "error": "Query aborted"},
        ),
        vector(({"a": "1"}, "7")),
    )
    b = backend(rec)
    started = time.monotonic()
    result = await b.query("x", timeout=3)
    elapsed = time.monotonic() - started
    assert [s.value for s in result.samples] == [7.0]
    assert len(rec.requests) == 2
    assert elapsed >= 0.3  # Retry-After honoured
    assert result.duration >= 0.3
    await b.aclose()


async def test_retry_after_past_the_deadline_gives_up_at_once() -> None:
    rec = Recorder(httpx.Response(429, headers={"retry-after": "30"}))
    b = backend(rec)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match="HTTP 429"):
        await b.query("x", timeout=1)
    assert time.monotonic() - started < 0.5
    assert len(rec.requests) == 1
    await b.aclose()


async def test_5xx_retries_are_bounded_by_max_retries() -> None:
    rec = Recorder(httpx.Response(503, text="unavailable"))
    b = backend(rec, max_retries=2)
    with pytest.raises(BackendUnavailableError, match="HTTP 503"):
        await b.query("x", timeout=5)
    assert len(rec.requests) == 3
    await b.aclose()


async def test_5xx_then_success() -> None:
    rec = Recorder(httpx.Response(502), httpx.Response(500), vector(({}, "1")))
    b = backend(rec, max_retries=2)
    assert [s.value for s in (await b.query("x", timeout=5)).samples] == [1.0]
    await b.aclose()


async def test_slow_5xx_retries_stop_at_the_deadline() -> None:
    async def slow_503(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.2)
        return httpx.Response(503)

    rec_count = 0

    class Slow(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            nonlocal rec_count
            rec_count += 1
            return await slow_503(request)

    b = backend(Slow(), max_retries=100)
    started = time.monotonic()
    with pytest.raises((BackendUnavailableError, BackendTimeoutError)):
        await b.query("x", timeout=1.0)
    elapsed = time.monotonic() - started
    assert elapsed < 1.3
    assert 2 <= rec_count <= 6
    await b.aclose()


async def test_hung_server_is_a_timeout_within_the_deadline() -> None:
    class Hang(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(30)
            raise AssertionError("unreachable")

    b = backend(Hang())
    started = time.monotonic()
    with pytest.raises(BackendTimeoutError):
        await b.query("x", timeout=0.4)
    assert time.monotonic() - started < 0.9
    await b.aclose()


async def test_connection_error_is_unavailable_after_retries() -> None:
    calls = 0

    def refuse(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    b = backend(refuse, max_retries=2)
    with pytest.raises(BackendUnavailableError, match="cannot connect") as info:
        await b.query("x", timeout=5)
    assert calls == 3
    assert isinstance(info.value.__cause__, httpx.ConnectError)
    await b.aclose()


async def test_401_is_unavailable_and_not_retried() -> None:
    rec = Recorder(httpx.Response(401, text="no"))
    b = backend(rec)
    with pytest.raises(BackendUnavailableError, match="HTTP 401"):
        await b.query("x", timeout=2)
    assert len(rec.requests) == 1
    await b.aclose()


async def test_get_sends_query_in_url_and_post_in_body() -> None:
    rec = Recorder(vector())
    get = backend(rec)
    await get.query('sum(x{a="b"})', timeout=2)
    request = rec.requests[-1]
    assert request.method == "GET"
    assert request.url.path == "/api/v1/query"
    assert request.url.params.get("query") == 'sum(x{a="b"})'
    await get.aclose()

    post = backend(rec, method="POST")
    await post.query('sum(x{a="b"})', timeout=2)
    request = rec.requests[-1]
    assert request.method == "POST"
    assert "query" not in request.url.params
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert httpx.QueryParams(request.content.decode()).get("query") == 'sum(x{a="b"})'
    await post.aclose()


async def test_urls_built_once_per_query_still_carry_each_query() -> None:
    rec = Recorder(vector())
    b = backend(rec, url="https://gmp.test/v1/projects/p/location/global/prometheus/")
    for query in ('sum(x{a="b"})', 'sum(x{a="c"})', 'sum(x{a="b"})', "y or on() vector(0)"):
        await b.query(query, timeout=2)
    sent = [(r.url.path, r.url.params.get("query")) for r in rec.requests]
    prefix = "/v1/projects/p/location/global/prometheus/api/v1/query"
    assert sent == [
        (prefix, 'sum(x{a="b"})'),
        (prefix, 'sum(x{a="c"})'),
        (prefix, 'sum(x{a="b"})'),
        (prefix, "y or on() vector(0)"),
    ]
    await b.aclose()


async def test_path_prefix_is_kept() -> None:
    rec = Recorder(vector())
    b = backend(rec, url="https://gmp.test/v1/projects/p/location/global/prometheus/")
    await b.query("x", timeout=2)
    assert rec.requests[-1].url.path == "/v1/projects/p/location/global/prometheus/api/v1/query"
    await b.aclose()


async def test_listing_uses_get_with_match_in_query_string() -> None:
    rec = Recorder(ok(["jetstream_prefill_backlog_size", "memory_used"]), ok(["__name__", "pod"]))
    b = backend(rec, method="POST")  # POST for queries must not change listing
    names = await b.metric_names(['{namespace="a"}', "up"], timeout=2)
    labels = await b.label_names(['{namespace="a"}'], timeout=2)
    assert names == ["jetstream_prefill_backlog_size", "memory_used"]
    assert labels == ["__name__", "pod"]
    first, second = rec.requests
    assert first.method == second.method == "GET"
    assert first.url.path == "/api/v1/label/__name__/values"
    assert first.url.params.get_list("match[]") == ['{namespace="a"}', "up"]
    assert second.url.path == "/api/v1/labels"
    assert second.url.params.get_list("match[]") == ['{namespace="a"}']
    assert first.content == b""
    await b.aclose()


async def test_listing_rejects_non_string_lists() -> None:
    b = backend(Recorder(ok([1, 2])))
    with pytest.raises(BackendResponseError):
        await b.metric_names([], timeout=2)
    await b.aclose()


async def test_ping_queries_vector_1() -> None:
    rec = Recorder(vector(({}, "1")))
    b = backend(rec)
    await b.ping(timeout=2)
    assert rec.requests[0].url.params.get("query") == "vector(1)"
    await b.aclose()


async def test_bearer_token_is_sent_stripped(token_file: Path) -> None:
    rec = Recorder(vector())
    b = backend(rec, bearer_token_file=str(token_file))
    await b.query("x", timeout=2)
    assert rec.requests[0].headers["authorization"] == f"Bearer {SECRET}"
    await b.aclose()


def test_token_file_rotation_is_noticed_after_the_recheck_interval(tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text("first\n")
    now = [100.0]
    tokens = BearerTokenFile(str(path), recheck_seconds=1.0, clock=lambda: now[0])
    assert tokens.token() == "first"
    path.write_text("second-longer\n")
    now[0] += 0.5
    assert tokens.token() == "first"  # not re-checked within the interval
    now[0] += 0.6
    assert tokens.token() == "second-longer"


async def test_backend_sends_the_rotated_token(token_file: Path) -> None:
    rec = Recorder(vector())
    b = backend(rec, bearer_token_file=str(token_file))
    await b.query("x", timeout=2)
    token_file.write_text("rotated-token-2\n")
    # Make the change visible even on coarse mtime clocks: stat differs by size as well.
    await asyncio.sleep(1.05)
    await b.query("x", timeout=2)
    assert [r.headers["authorization"] for r in rec.requests] == [
        f"Bearer {SECRET}",
        "Bearer rotated-token-2",
    ]
    await b.aclose()


async def test_unreadable_token_file_is_unavailable(tmp_path: Path) -> None:
    b = backend(Recorder(vector()), bearer_token_file=str(tmp_path / "missing"))
    with pytest.raises(BackendUnavailableError, match="bearer token file"):
        await b.query("x", timeout=2)
    await b.aclose()


async def test_no_secret_in_any_error_message(token_file: Path) -> None:
    header_secret = "hdr-secret-123"

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    answers: list[Handler | httpx.Response] = [
        httpx.Response(503),
        httpx.Response(429),
        httpx.Response(401),
        httpx.Response(400, json={"status": "error", "errorType": "bad_data", "error": "x"}),
        httpx.Response(200, content=b"garbage"),
        refuse,
    ]
    for answer in answers:
        b = backend(
            Recorder(answer),
            url="http://user:pw-secret@prom.test:9090/prefix",
            bearer_token_file=str(token_file),
            headers={"X-Scope-OrgID": header_secret},
            max_retries=0,
        )
        with pytest.raises(BackendError) as info:
            await b.query(f'x{{token="{SECRET}"}}', timeout=2)
        text = f"{info.value} {info.value!r} {info.value.message}"
        for secret in (SECRET, header_secret, "pw-secret", "token="):
            assert secret not in text, (answer, text)
        assert "prometheus" in text
        await b.aclose()


def test_settings_repr_hides_header_values_and_url_credentials() -> None:
    settings = PrometheusSettings(
        url="http://user:pw-secret@prom.test:9090/p?x=1", headers={"Authorization": "Bearer zzz"}
    )
    text = repr(settings)
    assert "zzz" not in text
    assert "pw-secret" not in text
    assert "Authorization" in text


async def test_closed_backend_raises_unavailable() -> None:
    b = backend(Recorder(vector()))
    await b.aclose()
    await b.aclose()  # idempotent
    with pytest.raises(BackendUnavailableError, match="closed"):
        await b.query("x", timeout=1)


@pytest.mark.parametrize("timeout", [0, -1, math.nan])
async def test_non_positive_timeout_is_a_timeout_error(timeout: float) -> None:
    b = backend(Recorder(vector()))
    with pytest.raises(BackendTimeoutError):
        await b.query("x", timeout=timeout)
    await b.aclose()


@pytest.mark.parametrize(
    "settings",
    [
        {"url": "prom.test:9090"},
        {"url": "ftp://prom.test"},
        {"url": "http://prom.test", "timeout": 0},
        {"url": "http://prom.test", "max_retries": -1},
        {"url": "https://prom.test", "ca_file": "/nonexistent/ca.pem"},
    ],
)
def test_bad_settings_are_config_errors(settings: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        PrometheusBackend(PrometheusSettings(**settings))  # type: ignore[arg-type]


def test_payload_helpers_roundtrip_json() -> None:
    # Guard against the fixture helper itself being wrong: it must be what Prometheus sends.
    body = json.loads(vector(({"a": "1"}, "2")).content)
    assert body == {
        "status": "success",
        "data": {
            "resultType": "vector",
            "result": [{"metric": {"a": "1"}, "value": [1700000000.5, "2"]}],
        },
    }
