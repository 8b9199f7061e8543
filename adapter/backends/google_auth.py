"""Google credentials as an :class:`httpx.Auth` flow, for querying GMP without the frontend proxy.

:class:`GoogleAuth` adds ``Authorization: Bearer <access token>`` to every request. Tokens come
from Application Default Credentials (Workload Identity / the metadata server on GKE, or the
service-account key file named by ``GOOGLE_APPLICATION_CREDENTIALS``) or from an explicit key
file, with the ``monitoring.read`` scope.

Contract:

- a token is refreshed *before* it expires: when less than ``refresh_margin`` seconds of its
  lifetime are left (default 300 s, more than google-auth's own 225 s threshold);
- a request answered 401 is retried exactly once, with a fresh token (unless another request
  already replaced the rejected one);
- refreshing runs in a worker thread (google-auth is synchronous), never on the event loop, and
  never twice at once: concurrent requests share the one refresh in flight. The refresh is a
  task of its own, so a caller that gives up (deadline) does not abort it for the others;
- a failed refresh raises ``BackendUnavailableError("gmp: could not get a Google access token:
  <reason>")``. Neither the token, the private key, its id, nor the signed assertion ever
  appears in an error, a log line or a ``repr``.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
import math
import re
import ssl
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from typing import Any, Final
from urllib.parse import urlsplit, urlunsplit

import google.auth
import google.auth.exceptions
import google.auth.transport
import httpx

from adapter.domain.errors import BackendUnavailableError, ConfigError

__all__ = [
    "DEFAULT_REFRESH_MARGIN",
    "GMP_BASE_URL",
    "GMP_SCOPE",
    "METADATA_BASE_URL",
    "GoogleAuth",
    "HttpxTokenRequest",
    "adc_loader",
    "file_loader",
    "gmp_query_url",
    "redact",
]

log = logging.getLogger(__name__)

GMP_SCOPE: Final = "https://www.googleapis.com/auth/monitoring.read"
"""The OAuth2 scope GMP's PromQL API needs (``monitoring``/``cloud-platform`` also work)."""

GMP_BASE_URL: Final = "https://monitoring.googleapis.com"
"""Where GMP's query API lives; tests point it at a local proxy instead."""

METADATA_BASE_URL: Final = "http://metadata.google.internal"
"""The GCE / GKE metadata server."""

_TOKEN_HOSTS: Final = frozenset({"oauth2.googleapis.com", "accounts.google.com"})
_METADATA_HOSTS: Final = frozenset({"metadata.google.internal", "169.254.169.254"})

DEFAULT_REFRESH_MARGIN: Final = 300.0
"""Seconds before a token's expiry at which it is replaced."""

_REASON_LIMIT = 200  # characters of a google-auth error copied into our message
# Anything that could be a credential, in case a token endpoint echoes one in its error text.
_SECRET_PATTERNS: Final = (
    re.compile(r"-----BEGIN[^-]*-----.*?(-----END[^-]*-----|$)", re.DOTALL),
    re.compile(r"(?i)bearer\s+\S+"),
    re.compile(r"ya29\.[\w.-]+"),
    re.compile(r"eyJ[\w-]*\.[\w-]*\.[\w-]*"),  # a JWT, such as the signed assertion
    re.compile(r"\b[0-9a-f]{40}\b"),  # a service-account private_key_id
)
# GCP project ids (6-30 chars), also the legacy domain-scoped form "example.com:project".
_PROJECT_RE: Final = re.compile(r"^(?:[a-z0-9.-]{1,63}:)?[a-z][a-z0-9-]{4,28}[a-z0-9]$")

CredentialsLoader = Callable[["google.auth.transport.Request"], Any]
"""Called in the worker thread on first use; returns google-auth credentials (may do I/O)."""


def gmp_query_url(project: str, *, base_url: str = GMP_BASE_URL) -> str:
    """``<base>/v1/projects/<project>/location/global/prometheus`` (append ``/api/v1/...``).

    Raises :class:`ConfigError` for a string that is not a Google Cloud project id.
    """
    if not _PROJECT_RE.match(project):
        raise ConfigError(
            f"--gmp-project {project!r} is not a Google Cloud project id "
            "(6-30 lowercase letters, digits and hyphens)"
        )
    return f"{base_url.rstrip('/')}/v1/projects/{project}/location/global/prometheus"


def redact(text: str) -> str:
    """``text`` with anything credential-shaped replaced by ``<redacted>``, cut to a line."""
    for pattern in _SECRET_PATTERNS:
        text = pattern.sub("<redacted>", text)
    text = " ".join(text.split())
    return text if len(text) <= _REASON_LIMIT else text[: _REASON_LIMIT - 1] + "…"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
        return (
            "no Application Default Credentials (use Workload Identity on GKE or set "
            "GOOGLE_APPLICATION_CREDENTIALS to a service-account key file)"
        )
    # google-auth puts a "<error>: <description>" summary first and the raw answer after it;
    # only the summary is kept.
    first = exc.args[0] if exc.args and isinstance(exc.args[0], str) else ""
    detail = redact(first)
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


class _TokenResponse(google.auth.transport.Response):
    def __init__(self, response: httpx.Response) -> None:
        self._status = response.status_code
        self._headers = dict(response.headers)
        self._data = response.content

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class HttpxTokenRequest(google.auth.transport.Request):
    """google-auth's synchronous transport, over httpx (token endpoint and metadata server).

    One short-lived client per call: tokens are fetched about once an hour, and nothing is
    left open between refreshes. ``timeout`` (seconds) caps each call unless google-auth passes
    its own. Environment proxies are ignored, as for the query client.

    ``token_base`` and ``metadata_base`` (tests: ``--google-endpoints``) replace the scheme and
    host of requests to Google's token endpoint and to the metadata server.
    """

    def __init__(
        self,
        *,
        timeout: float = 10.0,
        verify: ssl.SSLContext | bool = True,
        token_base: str | None = None,
        metadata_base: str | None = None,
    ) -> None:
        self._timeout = timeout
        self._verify = verify
        self._bases = {
            **dict.fromkeys(_TOKEN_HOSTS, token_base),
            **dict.fromkeys(_METADATA_HOSTS, metadata_base),
        }

    def target(self, url: str) -> str:
        """Where a request google-auth makes to ``url`` is sent."""
        parts = urlsplit(url)
        base = self._bases.get((parts.hostname or "").lower())
        if base is None:
            return url
        new = urlsplit(base)
        return urlunsplit((new.scheme, new.netloc, parts.path, parts.query, parts.fragment))

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> _TokenResponse:
        try:
            with httpx.Client(
                verify=self._verify, trust_env=False, follow_redirects=False
            ) as client:
                response = client.request(
                    method,
                    self.target(url),
                    content=body,
                    headers=dict(headers or {}),
                    timeout=timeout if timeout is not None else self._timeout,
                )
        except httpx.HTTPError as exc:
            # No URL or body in the message: the body is a signed assertion.
            raise google.auth.exceptions.TransportError(  # type: ignore[no-untyped-call]
                f"token endpoint unreachable ({type(exc).__name__})"
            ) from exc
        return _TokenResponse(response)


def adc_loader(scopes: Sequence[str] = (GMP_SCOPE,)) -> CredentialsLoader:
    """Application Default Credentials, discovered lazily in the worker thread (discovery may
    probe the metadata server)."""

    def load(request: google.auth.transport.Request) -> Any:
        credentials, _project = google.auth.default(scopes=list(scopes), request=request)
        return credentials

    return load


def file_loader(path: str, scopes: Sequence[str] = (GMP_SCOPE,)) -> CredentialsLoader:
    """Credentials from a key file (service account, external account...), read now.

    Raises :class:`ConfigError` naming the file (never its content) when it cannot be used.
    """
    try:
        credentials, _project = google.auth.load_credentials_from_file(  # type: ignore[no-untyped-call]
            path, scopes=list(scopes)
        )
    except (google.auth.exceptions.GoogleAuthError, OSError, ValueError) as exc:
        raise ConfigError(
            f"gmp: cannot load Google credentials from {path} ({type(exc).__name__})"
        ) from None
    return lambda _request: credentials


def _seconds_left(expiry: datetime.datetime | None) -> float:
    """Seconds until ``expiry`` (google-auth's naive-UTC datetime); infinite when unknown."""
    if expiry is None:
        return math.inf
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    if expiry.tzinfo is not None:
        expiry = expiry.astimezone(datetime.UTC).replace(tzinfo=None)
    return (expiry - now).total_seconds()


class GoogleAuth(httpx.Auth):
    """Bearer tokens from google-auth credentials for an :class:`httpx.AsyncClient`.

    ``loader`` returns the credentials (see :func:`adc_loader`, :func:`file_loader`); it runs
    once, in the worker thread, at the first refresh. ``refresh_margin`` (seconds) is how long
    before expiry a token is replaced. ``request`` is google-auth's transport (default:
    :class:`HttpxTokenRequest`). ``clock`` is monotonic seconds (injectable for tests).
    ``backend`` names the backend in errors. ``refreshes`` counts completed token fetches.
    """

    requires_request_body = False
    requires_response_body = False

    def __init__(
        self,
        loader: CredentialsLoader,
        *,
        refresh_margin: float = DEFAULT_REFRESH_MARGIN,
        request: google.auth.transport.Request | None = None,
        clock: Callable[[], float] = time.monotonic,
        backend: str = "gmp",
    ) -> None:
        if not refresh_margin >= 0:
            raise ConfigError("gmp: the token refresh margin must be >= 0 seconds")
        self._loader = loader
        self._margin = refresh_margin
        self._request = request if request is not None else HttpxTokenRequest()
        self._clock = clock
        self._backend = backend
        self._credentials: Any = None
        self._token: str | None = None
        self._expires_at = 0.0  # on self._clock
        self._inflight: asyncio.Task[str] | None = None
        self.refreshes = 0

    def __repr__(self) -> str:
        return f"GoogleAuth(backend={self._backend!r}, refresh_margin={self._margin!r})"

    # -- httpx.Auth --------------------------------------------------------------------------

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("GoogleAuth refreshes tokens asynchronously: use httpx.AsyncClient")

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # The token was revoked or expired early: one fresh token, one more try.
        log.info("%s: the query API answered 401; refreshing the access token", self._backend)
        token = await self._refresh(rejected=token)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request

    # -- tokens ------------------------------------------------------------------------------

    def _fresh(self) -> bool:
        return self._token is not None and self._clock() < self._expires_at - self._margin

    async def token(self) -> str:
        """A token valid for more than ``refresh_margin`` seconds, refreshing if needed.

        Raises :class:`BackendUnavailableError` when no token can be had.
        """
        if self._token is not None and self._fresh():
            return self._token
        return await self._refresh(rejected=None)

    async def _refresh(self, *, rejected: str | None) -> str:
        if self._inflight is None:
            if self._token is not None and self._token != rejected and self._fresh():
                return self._token  # another request refreshed while this one waited
            task = asyncio.get_running_loop().create_task(self._run_refresh())
            # Retrieve the outcome even if every waiter gave up, so it is never "unretrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight = task
        # Shielded: a caller whose deadline passes leaves the refresh running for the others.
        return await asyncio.shield(self._inflight)

    async def _run_refresh(self) -> str:
        try:
            token, lifetime = await asyncio.to_thread(self._refresh_blocking)
        except google.auth.exceptions.GoogleAuthError as exc:
            raise BackendUnavailableError(
                f"could not get a Google access token: {_reason(exc)}", backend=self._backend
            ) from exc
        except (OSError, ValueError) as exc:  # unreadable or malformed key material
            raise BackendUnavailableError(
                f"could not get a Google access token: {type(exc).__name__}",
                backend=self._backend,
            ) from exc
        except (TypeError, KeyError, AttributeError) as exc:
            # google-auth indexes the token endpoint's answer as a JSON object: a 200 answer
            # that is not one (an HTML page from a proxy, a bare string) escapes as TypeError.
            raise BackendUnavailableError(
                "could not get a Google access token: the token endpoint's answer is not a "
                f"token response ({type(exc).__name__})",
                backend=self._backend,
            ) from exc
        finally:
            self._inflight = None
        self._token = token
        self._expires_at = self._clock() + lifetime
        self.refreshes += 1
        log.debug(
            "%s: new access token, valid for %.0f s", self._backend, lifetime
        )  # the token itself is never logged
        return token

    def _refresh_blocking(self) -> tuple[str, float]:
        """In the worker thread: load credentials once, refresh, return (token, seconds left)."""
        if self._credentials is None:
            self._credentials = self._loader(self._request)
        credentials = self._credentials
        credentials.refresh(self._request)
        token = credentials.token
        if not isinstance(token, str) or not token:
            raise google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
                "the token endpoint returned no token"
            )
        return token, _seconds_left(credentials.expiry)
