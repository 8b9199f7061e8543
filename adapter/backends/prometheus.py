"""The Prometheus HTTP API backend: any Prometheus, Thanos, or GMP's PromQL endpoint.

One :class:`httpx.AsyncClient` per backend. Every call has one overall deadline (the caller's
``timeout``, seconds) that covers connecting, retries, back-off sleeps and reading the body; no
call outlives it. Retries (``max_retries``) happen on 429, 5xx and connection failures with
jittered exponential back-off, honouring ``Retry-After``, and only while the deadline allows.

Answers are decoded and parsed inside the same deadline. Bodies over ``_THREAD_DECODE_BYTES`` are
decoded in a worker thread so that a large answer does not stall the event loop (and every other
request with it); an answer that plainly holds more vector elements than ``max_samples`` is refused
before it is decoded at all.

Errors are :mod:`adapter.domain.errors` ``BackendError`` subclasses raised ``from`` the httpx or JSON
exception. Their messages name the backend, the URL *path* and the HTTP status; never the host,
the query string, a header or the bearer token.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import os
import random
import re
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, NoReturn, TypeVar
from urllib.parse import urlsplit

import httpx

from adapter.domain.errors import (
    BackendError,
    BackendResponseError,
    BackendTimeoutError,
    BackendUnavailableError,
    ConfigError,
)
from adapter.domain.models import QueryResult, Sample

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DEFAULT_MAX_SAMPLES",
    "BearerTokenFile",
    "PrometheusBackend",
    "PrometheusSettings",
    "parse_query_data",
    "parse_string_list",
]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest decoded response body read from the backend; larger answers are refused unread."""

DEFAULT_MAX_SAMPLES = 100_000
"""Largest number of samples (or names) accepted in one answer."""

_BACKOFF_BASE = 0.1  # seconds before the first retry (full jitter below this times 2**attempt)
_BACKOFF_CAP = 2.0  # seconds: no single back-off sleep is longer, Retry-After excepted
_MESSAGE_LIMIT = 300  # characters of a Prometheus error text copied into our messages
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_THREAD_DECODE_BYTES = 256 * 1024  # bodies larger than this are decoded off the event loop
_URL_CACHE_SIZE = 4096
"""Request URLs kept, built: httpx re-validates a URL character by character every time it
builds one (about 0.15 ms for a rule's query with its freshness companion), and the same queries
come back every HPA sync."""
_HOOK_CHECK_EVERY = 1024  # decoded JSON objects between two deadline checks in the worker
# A vector element's "value" member is the only place a key "value" holds an array in an answer
# the parser accepts (label values are strings), and a quote inside a JSON string is always
# escaped, so counting this pattern in the raw bytes never undercounts elements of an acceptable
# answer's vector; it is a cheap upper-bound refusal before any decoding.
_VALUE_ARRAY = re.compile(rb'"value"\s*:\s*\[')

_T = TypeVar("_T")


@dataclass(frozen=True)
class PrometheusSettings:
    """How to reach one Prometheus-compatible query API.

    ``url`` is the base URL without ``/api/v1`` (it may carry a path prefix, as GMP's does).
    ``timeout`` (seconds) caps each HTTP attempt; the caller's per-call ``timeout`` is the overall
    deadline, so a caller that grants more than ``timeout`` gets retries after a hung attempt.
    ``max_retries`` is the number of extra attempts after the first. ``headers`` values and the
    token file's content are sent, never logged or put in errors.
    """

    url: str
    bearer_token_file: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False
    headers: Mapping[str, str] = field(default_factory=dict)
    method: Literal["GET", "POST"] = "GET"
    timeout: float = 10.0
    max_retries: int = 2
    name: str = "prometheus"
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_samples: int = DEFAULT_MAX_SAMPLES

    def __repr__(self) -> str:
        # Header values may be credentials: show only their names.
        return (
            f"PrometheusSettings(url={_redacted_url(self.url)!r}, name={self.name!r}, "
            f"method={self.method!r}, timeout={self.timeout!r}, max_retries={self.max_retries!r}, "
            f"bearer_token_file={self.bearer_token_file!r}, headers={sorted(self.headers)!r})"
        )


def _redacted_url(url: str) -> str:
    """``scheme://host[:port]/path`` without user info or query string."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class BearerTokenFile:
    """A bearer token read from a file and re-read when the file changes (rotation).

    The file is stat'ed at most once per ``recheck_seconds``; it is re-read when its inode, size
    or modification time changed. Surrounding whitespace is stripped. ``clock`` is monotonic
    seconds (injectable for tests).
    """

    def __init__(
        self,
        path: str,
        *,
        recheck_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._recheck = recheck_seconds
        self._clock = clock
        self._checked_at: float | None = None
        self._stat: tuple[int, int, int] | None = None
        self._token = ""

    def token(self) -> str:
        """The current token. Raises :class:`OSError` or :class:`ValueError` (empty file)."""
        now = self._clock()
        if self._checked_at is not None and now - self._checked_at < self._recheck:
            return self._token
        st = os.stat(self.path)
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._stat:
            with open(self.path, encoding="utf-8") as handle:
                token = handle.read().strip()
            if not token:
                raise ValueError("bearer token file is empty")
            self._token = token
            self._stat = key
        self._checked_at = now
        return self._token


class PrometheusBackend:
    """:class:`adapter.backends.base.Backend` over the Prometheus HTTP API (``/api/v1``).

    ``transport`` replaces the network (tests pass :class:`httpx.MockTransport`); ``auth`` is an
    :class:`httpx.Auth` flow that decorates every request (Google credentials plug in here).
    """

    def __init__(
        self,
        settings: PrometheusSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        auth: httpx.Auth | None = None,
    ) -> None:
        parts = urlsplit(settings.url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{settings.name}: url must be http(s)://host[:port][/prefix]")
        if settings.timeout <= 0 or settings.max_retries < 0:
            raise ConfigError(f"{settings.name}: timeout must be > 0 and max_retries >= 0")
        self.name = settings.name
        self._settings = settings
        self._prefix = parts.path.rstrip("/")
        self._token_file = (
            BearerTokenFile(settings.bearer_token_file) if settings.bearer_token_file else None
        )
        self._closed = False
        self._urls: dict[tuple[str, tuple[tuple[str, object], ...]], httpx.URL] = {}
        self._client = httpx.AsyncClient(
            base_url=settings.url.rstrip("/") + "/",
            transport=transport,
            auth=auth,
            verify=_verify(settings),
            headers=dict(settings.headers),
            timeout=httpx.Timeout(settings.timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            follow_redirects=False,
            # Proxies and netrc from the environment would send our queries (and token)
            # somewhere the settings do not say.
            trust_env=False,
        )

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        """Evaluate ``query`` at the backend's now (``/api/v1/query``, GET or POST per settings)."""
        started = time.monotonic()
        path = "/api/v1/query"
        limit = self._settings.max_samples

        def parse(data: object) -> tuple[object, tuple[Sample, ...]]:
            return data, parse_query_data(
                data, backend=self.name, path=self._path(path), limit=limit
            )

        if self._settings.method == "POST":
            data, samples = await self._call(
                "POST", path, form={"query": query}, total=timeout, parse=parse
            )
        else:
            data, samples = await self._call(
                "GET", path, params=[("query", query)], total=timeout, parse=parse
            )
        return QueryResult(
            query=query,
            samples=samples,
            raw=data,
            duration=time.monotonic() - started,
            backend=self.name,
        )

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        """``GET /api/v1/label/__name__/values?match[]=…``.

        Always GET with ``match[]`` in the query string: GMP rejects ``match[]`` in a POST body.
        """
        return await self._names("/api/v1/label/__name__/values", match, timeout=timeout)

    async def label_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        """``GET /api/v1/labels?match[]=…``."""
        return await self._names("/api/v1/labels", match, timeout=timeout)

    async def _names(self, path: str, match: Sequence[str], *, timeout: float) -> list[str]:
        limit = self._settings.max_samples

        def parse(data: object) -> list[str]:
            return parse_string_list(data, backend=self.name, path=self._path(path), limit=limit)

        return await self._call(
            "GET", path, params=[("match[]", m) for m in match], total=timeout, parse=parse
        )

    async def ping(self, *, timeout: float) -> None:
        """Readiness: the backend evaluates ``vector(1)`` within ``timeout`` seconds."""
        await self.query("vector(1)", timeout=timeout)

    async def aclose(self) -> None:
        """Close the connection pool. Idempotent; later calls raise BackendUnavailableError."""
        self._closed = True
        await self._client.aclose()

    # -- transport ---------------------------------------------------------------------------

    def _path(self, path: str) -> str:
        return self._prefix + path

    def _fail(self, cls: type[BackendError], path: str, message: str) -> NoReturn:
        raise cls(f"{self._path(path)}: {message}", backend=self.name)

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str | int | float | bool | None]] | None = None,
        form: dict[str, str] | None = None,
        total: float,
        parse: Callable[[object], _T],
    ) -> _T:
        """One API call with retries inside ``total`` seconds; returns ``parse(data member)``.

        ``parse`` runs inside the deadline, in the worker thread when the body is large; it
        must be pure (it may run on another thread) and raise ``BackendError`` on bad data.
        """
        if self._closed:
            self._fail(BackendUnavailableError, path, "backend is closed")
        if not total > 0:
            self._fail(BackendTimeoutError, path, f"no time left (timeout {total!r}s)")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + total
        attempt = 0
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                self._fail(BackendTimeoutError, path, f"deadline of {total:g}s exceeded")
            try:
                return await self._attempt(
                    method,
                    path,
                    params=params,
                    form=form,
                    budget=remaining,
                    total=total,
                    parse=parse,
                )
            except _Retryable as exc:
                delay = exc.retry_after
                if delay is None:
                    delay = random.uniform(  # noqa: S311 - jitter, not security
                        0, min(_BACKOFF_CAP, _BACKOFF_BASE * 2**attempt)
                    )
                attempt += 1
                if attempt > self._settings.max_retries or loop.time() + delay >= deadline:
                    # Out of attempts, or waiting would pass the caller's deadline.
                    raise exc.final from exc.__cause__
                await asyncio.sleep(delay)

    async def _attempt(
        self,
        method: str,
        path: str,
        *,
        params: list[tuple[str, str | int | float | bool | None]] | None,
        form: dict[str, str] | None,
        budget: float,
        total: float,
        parse: Callable[[object], _T],
    ) -> _T:
        per_try = min(budget, self._settings.timeout)
        loop = asyncio.get_running_loop()
        stop_at = loop.time() + per_try
        headers: dict[str, str] = {"Accept": "application/json"}
        if self._token_file is not None:
            headers["Authorization"] = f"Bearer {self._bearer_token(path)}"
        request = self._client.build_request(
            method,
            self._url(path, params),
            data=form,
            headers=headers,
            timeout=httpx.Timeout(per_try),
        )
        try:
            # asyncio.timeout bounds the whole attempt: httpx's timeouts are per socket operation,
            # so a server that drips bytes could otherwise hold us far past the deadline.
            async with asyncio.timeout_at(stop_at):
                response = await self._client.send(request, stream=True)
                try:
                    body = await self._read_body(response, path)
                finally:
                    await response.aclose()
        except (TimeoutError, httpx.TimeoutException) as exc:
            final: BackendError = self._timeout(path, total)
            if per_try < budget:  # only this attempt's cap expired: the deadline allows a retry
                raise _Retryable(final, None) from exc
            raise final from exc
        except httpx.ConnectError as exc:
            final = BackendUnavailableError(
                f"{self._path(path)}: cannot connect ({_short(str(exc)) or type(exc).__name__})",
                backend=self.name,
            )
            raise _Retryable(final, None) from exc
        except (httpx.TransportError, OSError) as exc:
            final = BackendUnavailableError(
                f"{self._path(path)}: connection failed ({type(exc).__name__})", backend=self.name
            )
            raise _Retryable(final, None) from exc
        except RuntimeError as exc:  # httpx: the client was closed concurrently
            raise BackendUnavailableError(
                f"{self._path(path)}: backend is closed", backend=self.name
            ) from exc
        if len(body) <= _THREAD_DECODE_BYTES:
            return parse(self._decode(response, body, path, stop_at=None))
        # A large body: decode and parse in a worker thread, inside what is left of this
        # attempt's time. The JSON decoder calls back into Python for every object (the hook in
        # _json_or_error), so the worker gives up the GIL to the event loop every few ms and
        # stops by itself once the deadline passes, even after we have stopped waiting for it.
        worker_stop = time.monotonic() + (stop_at - loop.time())
        try:
            async with asyncio.timeout_at(stop_at):
                return await asyncio.to_thread(
                    self._decode_and_parse, response, body, path, parse, worker_stop
                )
        except (TimeoutError, _DecodeAborted) as exc:
            # Not retried: another attempt would fetch and decode the same large answer.
            raise self._timeout(path, total) from exc

    def _url(
        self, path: str, params: list[tuple[str, str | int | float | bool | None]] | None
    ) -> httpx.URL:
        """The absolute URL of ``path`` with ``params``, built once per distinct pair."""
        key = (path, tuple(params or ()))
        url = self._urls.get(key)
        if url is None:
            url = self._client.build_request("GET", path, params=params).url
            if len(self._urls) >= _URL_CACHE_SIZE:
                del self._urls[next(iter(self._urls))]
            self._urls[key] = url
        return url

    def _timeout(self, path: str, total: float) -> BackendTimeoutError:
        return BackendTimeoutError(
            f"{self._path(path)}: no answer within {total:g}s", backend=self.name
        )

    def _decode_and_parse(
        self,
        response: httpx.Response,
        body: bytes,
        path: str,
        parse: Callable[[object], _T],
        stop_at: float,
    ) -> _T:
        """Worker-thread body of a large answer; ``stop_at`` is ``time.monotonic()`` seconds."""
        return parse(self._decode(response, body, path, stop_at=stop_at))

    def _bearer_token(self, path: str) -> str:
        assert self._token_file is not None
        try:
            return self._token_file.token()
        except (OSError, ValueError, UnicodeDecodeError) as exc:
            raise BackendUnavailableError(
                f"{self._path(path)}: cannot read bearer token file {self._token_file.path} "
                f"({type(exc).__name__})",
                backend=self.name,
            ) from exc

    async def _read_body(self, response: httpx.Response, path: str) -> bytes:
        cap = self._settings.max_body_bytes
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > cap:
            self._fail(BackendResponseError, path, f"response body of {declared} bytes over {cap}")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > cap:
                    self._fail(BackendResponseError, path, f"response body over {cap} bytes")
                chunks.append(chunk)
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.DecodingError) as exc:
            # The status line arrived but the body did not: a truncated answer.
            raise BackendResponseError(
                f"{self._path(path)}: truncated response body (HTTP {response.status_code})",
                backend=self.name,
            ) from exc
        return b"".join(chunks)

    def _decode(
        self, response: httpx.Response, body: bytes, path: str, *, stop_at: float | None
    ) -> object:
        """The ``data`` member of a 200 answer, or the error it stands for.

        Thread-safe (reads only settings). ``stop_at`` (``time.monotonic()`` seconds) aborts a
        long decoding with :class:`_DecodeAborted`; ``None`` decodes without checks.
        """
        status = response.status_code
        cap = self._settings.max_samples
        if status == 200 and len(body) > _THREAD_DECODE_BYTES:
            # Refuse a plainly oversized answer before paying for decoding it.
            elements = sum(1 for _ in _VALUE_ARRAY.finditer(body))
            if elements > cap:
                self._fail(
                    BackendResponseError,
                    path,
                    f"answer has at least {elements} samples, over the limit of {cap}",
                )
        decoded, decode_error = _json_or_error(body, stop_at=stop_at, max_objects=2 * cap + 16)
        prom_error = _prometheus_error(decoded)
        if status in _RETRY_STATUSES:
            detail = f": {prom_error}" if prom_error else ""
            final = BackendUnavailableError(
                f"{self._path(path)}: HTTP {status}{detail}", backend=self.name
            )
            raise _Retryable(final, _retry_after(response.headers.get("retry-after")))
        if status in (401, 403):
            self._fail(BackendUnavailableError, path, f"HTTP {status}: not authorized")
        if prom_error is not None:
            self._fail(BackendResponseError, path, f"HTTP {status}: {prom_error}")
        if status != 200:
            self._fail(BackendResponseError, path, f"unexpected HTTP {status}")
        if isinstance(decode_error, _TooManyObjects):
            raise BackendResponseError(
                f"{self._path(path)}: answer has more than {cap} samples ({decode_error})",
                backend=self.name,
            ) from decode_error
        if decode_error is not None:
            raise BackendResponseError(
                f"{self._path(path)}: answer is not valid JSON ({len(body)} bytes)",
                backend=self.name,
            ) from decode_error
        if not isinstance(decoded, dict) or decoded.get("status") != "success":
            self._fail(BackendResponseError, path, "answer has no success status")
        if "data" not in decoded:
            self._fail(BackendResponseError, path, "answer has no data")
        return decoded["data"]


class _Retryable(Exception):
    """An attempt failed in a way another attempt may fix; ``final`` is raised if none does."""

    def __init__(self, final: BackendError, retry_after: float | None) -> None:
        super().__init__(final.message)
        self.final = final
        self.retry_after = retry_after


def _verify(settings: PrometheusSettings) -> ssl.SSLContext | bool:
    if settings.insecure_skip_verify:
        return False
    if settings.ca_file:
        try:
            return ssl.create_default_context(cafile=settings.ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"{settings.name}: cannot load CA file {settings.ca_file} ({type(exc).__name__})"
            ) from exc
    return True


def _short(text: str) -> str:
    return text if len(text) <= _MESSAGE_LIMIT else text[: _MESSAGE_LIMIT - 1] + "…"


class _DecodeAborted(Exception):
    """Decoding in the worker passed its deadline."""


class _TooManyObjects(ValueError):
    """The answer holds more JSON objects than any acceptable one (two per sample) could."""


def _json_or_error(
    body: bytes, *, stop_at: float | None = None, max_objects: int | None = None
) -> tuple[object, ValueError | None]:
    """``(decoded, None)`` or ``(None, error)``; raises :class:`_DecodeAborted` past ``stop_at``.

    With ``stop_at`` set, an ``object_hook`` runs for every decoded object: it checks the
    deadline every ``_HOOK_CHECK_EVERY`` objects and stops after ``max_objects``. It is also what
    lets another thread run meanwhile, since the C decoder otherwise holds the GIL throughout.
    """
    if stop_at is None:
        try:
            return json.loads(body), None
        except (ValueError, RecursionError) as exc:
            return None, _as_value_error(exc)
    seen = 0

    def hook(obj: dict[str, object]) -> dict[str, object]:
        nonlocal seen
        seen += 1
        if seen % _HOOK_CHECK_EVERY == 0 and time.monotonic() > stop_at:
            raise _DecodeAborted
        if max_objects is not None and seen > max_objects:
            raise _TooManyObjects(f"more than {max_objects} JSON objects")
        return obj

    try:
        return json.loads(body, object_hook=hook), None
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, depth
        return None, _as_value_error(exc)


def _as_value_error(exc: ValueError | RecursionError) -> ValueError:
    if isinstance(exc, ValueError):
        return exc
    error = ValueError("JSON nested too deeply")
    error.__cause__ = exc
    return error


def _prometheus_error(decoded: object) -> str | None:
    """``"<errorType>: <error>"`` when the answer is Prometheus' error envelope."""
    if not isinstance(decoded, dict) or decoded.get("status") != "error":
        return None
    kind = decoded.get("errorType")
    text = decoded.get("error")
    kind_s = kind if isinstance(kind, str) and kind else "error"
    text_s = text if isinstance(text, str) else "no error text"
    return _short(f"{kind_s}: {text_s}")


def _retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date); ``None`` if unusable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


# -- answer parsing (pure) ----------------------------------------------------------------------


def _bad(backend: str, path: str, message: str) -> NoReturn:
    raise BackendResponseError(f"{path}: {message}", backend=backend)


def _timestamp(value: object, *, backend: str, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _bad(backend, path, f"sample timestamp {_short(repr(value))} is not a number")
    ts = float(value)
    if not math.isfinite(ts):
        _bad(backend, path, "sample timestamp is not finite")
    return ts


def _value(value: object, *, backend: str, path: str) -> float:
    # Prometheus sends values as strings ("1.5", "NaN", "+Inf"); non-finite values are kept.
    if not isinstance(value, str):
        _bad(backend, path, f"sample value {_short(repr(value))} is not a string")
    try:
        return float(value)
    except ValueError:
        _bad(backend, path, f"sample value {_short(repr(value))} is not a number")


def _pair(pair: object, *, backend: str, path: str) -> tuple[float, float]:
    if not isinstance(pair, list) or len(pair) != 2:
        _bad(backend, path, "sample is not a [timestamp, value] pair")
    return (
        _timestamp(pair[0], backend=backend, path=path),
        _value(pair[1], backend=backend, path=path),
    )


def _labels(metric: object, *, backend: str, path: str) -> dict[str, str]:
    if not isinstance(metric, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in metric.items()
    ):
        _bad(backend, path, "series labels are not a string map")
    return dict(metric)


def parse_query_data(
    data: object, *, backend: str, path: str = "/api/v1/query", limit: int = DEFAULT_MAX_SAMPLES
) -> tuple[Sample, ...]:
    """The samples of a ``/api/v1/query`` ``data`` object.

    ``vector`` → one Sample per element, labels exactly as sent (``__name__`` kept); ``scalar`` →
    one Sample without labels. ``matrix``, ``string``, native histograms, wrong shapes and more
    than ``limit`` elements raise :class:`BackendResponseError`. Timestamps are unix seconds.
    """
    if not isinstance(data, dict):
        _bad(backend, path, "data is not an object")
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        ts, value = _pair(result, backend=backend, path=path)
        return (Sample(labels={}, value=value, timestamp=ts),)
    if kind != "vector":
        _bad(backend, path, f"unsupported result type {_short(repr(kind))} (want vector or scalar)")
    if not isinstance(result, list):
        _bad(backend, path, "vector result is not a list")
    if len(result) > limit:
        _bad(backend, path, f"answer has {len(result)} samples, over the limit of {limit}")
    samples: list[Sample] = []
    for element in result:
        if not isinstance(element, dict):
            _bad(backend, path, "vector element is not an object")
        if "value" not in element:
            what = "native histogram" if "histogram" in element else "sample without value"
            _bad(backend, path, f"unsupported {what} in vector")
        labels = _labels(element.get("metric", {}), backend=backend, path=path)
        ts, value = _pair(element["value"], backend=backend, path=path)
        samples.append(Sample(labels=labels, value=value, timestamp=ts))
    return tuple(samples)


def parse_string_list(
    data: object, *, backend: str, path: str, limit: int = DEFAULT_MAX_SAMPLES
) -> list[str]:
    """The ``data`` of the label-name and label-value endpoints: a list of strings."""
    if data is None:  # Some Prometheus versions answer null for "no names".
        return []
    if not isinstance(data, list) or not all(isinstance(x, str) for x in data):
        _bad(backend, path, "data is not a list of strings")
    if len(data) > limit:
        _bad(backend, path, f"answer has {len(data)} names, over the limit of {limit}")
    return list(data)
