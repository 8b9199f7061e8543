"""GoogleAuth (token refresh as an httpx.Auth flow), the GMP backend factory, GMP's 429 back-off
and the exact-metric-name rule in discovery. No network: httpx.MockTransport and fakes."""

from __future__ import annotations

import asyncio
import datetime
import threading
import time
from collections.abc import Sequence
from typing import Any

import google.auth.exceptions
import httpx
import pytest

from adapter.backends.factory import build_backend
from adapter.backends.google_auth import GoogleAuth, gmp_query_url, redact
from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.core.registry import MetricRegistry
from adapter.domain.errors import BackendUnavailableError, ConfigError
from adapter.rules.base import QueryScope
from adapter.rules.loader import load_rules_text
from adapter.settings import GMP_DEFAULT_MAX_SAMPLE_AGE, Settings
from sim.fake_backend import FakeBackend

OK = {"status": "success", "data": {"resultType": "vector", "result": []}}


class FakeCredentials:
    """google-auth credentials: each refresh mints ``tok-<n>`` valid ``lifetime`` seconds."""

    def __init__(self, *, lifetime: float = 3600, delay: float = 0.0) -> None:
        self.lifetime = lifetime
        self.delay = delay
        self.refreshes = 0
        self.fail: Exception | None = None
        self.threads: set[int] = set()
        self.token: str | None = None
        self.expiry: datetime.datetime | None = None

    def refresh(self, request: object) -> None:
        self.threads.add(threading.get_ident())
        time.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        self.refreshes += 1
        self.token = f"tok-{self.refreshes}"
        now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
        self.expiry = now + datetime.timedelta(seconds=self.lifetime)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def backend_with(
    creds: FakeCredentials,
    handler: Any,
    *,
    clock: Clock | None = None,
    margin: float = 300.0,
    retries: int = 2,
) -> PrometheusBackend:
    auth = GoogleAuth(lambda _request: creds, refresh_margin=margin, clock=clock or time.monotonic)
    return PrometheusBackend(
        PrometheusSettings(
            url="https://gmp.test/v1/projects/p-123456/location/global/prometheus",
            name="gmp",
            max_retries=retries,
        ),
        transport=httpx.MockTransport(handler),
        auth=auth,
    )


def recording(seen: list[str | None], *, reject: set[str] | None = None) -> Any:
    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("authorization", "").removeprefix("Bearer ") or None
        seen.append(token)
        if reject is not None and token in reject:
            return httpx.Response(401, json={"error": "unauthenticated"})
        return httpx.Response(200, json=OK)

    return handler


async def test_adds_the_bearer_token_and_reuses_it_while_fresh() -> None:
    seen: list[str | None] = []
    creds = FakeCredentials()
    backend = backend_with(creds, recording(seen))
    for _ in range(3):
        await backend.query("up", timeout=5)
    await backend.aclose()
    assert seen == ["tok-1"] * 3
    assert creds.refreshes == 1


async def test_refreshes_before_expiry_by_the_margin() -> None:
    seen: list[str | None] = []
    creds, clock = FakeCredentials(lifetime=3600), Clock()
    backend = backend_with(creds, recording(seen), clock=clock, margin=300)
    await backend.query("up", timeout=5)
    clock.now += 3600 - 301  # 301 s left: still fresh
    await backend.query("up", timeout=5)
    clock.now += 2  # 299 s left: inside the margin, replaced before use
    await backend.query("up", timeout=5)
    await backend.aclose()
    assert seen == ["tok-1", "tok-1", "tok-2"]


async def test_a_401_refreshes_once_and_retries() -> None:
    seen: list[str | None] = []
    creds = FakeCredentials()
    backend = backend_with(creds, recording(seen, reject={"tok-1"}))
    await backend.query("up", timeout=5)
    await backend.aclose()
    assert seen == ["tok-1", "tok-2"]


async def test_a_second_401_is_not_authorized_without_a_loop() -> None:
    seen: list[str | None] = []
    creds = FakeCredentials()
    backend = backend_with(creds, recording(seen, reject={"tok-1", "tok-2", "tok-3"}))
    with pytest.raises(BackendUnavailableError, match="HTTP 401: not authorized"):
        await backend.query("up", timeout=5)
    await backend.aclose()
    assert seen == ["tok-1", "tok-2"]


async def test_concurrent_requests_share_one_refresh_off_the_event_loop() -> None:
    seen: list[str | None] = []
    creds = FakeCredentials(delay=0.3)
    backend = backend_with(creds, recording(seen))
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    tick_task = asyncio.create_task(ticker())
    await asyncio.gather(*(backend.query("up", timeout=5) for _ in range(10)))
    tick_task.cancel()
    await backend.aclose()
    assert creds.refreshes == 1
    assert seen == ["tok-1"] * 10
    assert threading.get_ident() not in creds.threads  # refreshed in a worker thread
    assert ticks >= 10  # the loop kept running during the 0.3 s refresh


async def test_a_caller_that_gives_up_does_not_abort_the_shared_refresh() -> None:
    seen: list[str | None] = []
    creds = FakeCredentials(delay=0.3)
    backend = backend_with(creds, recording(seen))
    with pytest.raises(Exception, match=r"deadline|no answer"):
        await backend.query("up", timeout=0.05)
    await backend.query("up", timeout=5)  # joins the refresh already running
    await backend.aclose()
    assert creds.refreshes == 1


async def test_refresh_failure_is_backend_unavailable_without_secrets() -> None:
    creds = FakeCredentials()
    creds.fail = google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
        "invalid_grant: bad assertion eyJhbGciOi.eyJpc3MiOi.c2lnbmF0dXJl Bearer ya29.secret",
        {"error": "invalid_grant", "assertion": "eyJhbGciOi.eyJpc3MiOi.c2lnbmF0dXJl"},
    )
    backend = backend_with(creds, recording([]))
    with pytest.raises(BackendUnavailableError) as info:
        await backend.query("up", timeout=5)
    await backend.aclose()
    message = info.value.message
    assert message.startswith("gmp: could not get a Google access token: RefreshError: ")
    assert "invalid_grant" in message
    for secret in ("eyJ", "ya29", "secret", "c2lnbmF0dXJl"):
        assert secret not in message


def test_redact_removes_credential_shaped_text() -> None:
    key_id = "0123456789abcdef0123456789abcdef01234567"
    text = (
        f"key {key_id} -----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY----- "
        "Authorization: Bearer abc.def token ya29.a0Af-x eyJhbGc.eyJ0.sig"
    )
    out = redact(text)
    for secret in (key_id, "MIIE", "abc.def", "ya29", "eyJ0"):
        assert secret not in out
    assert redact("x" * 1000).endswith("…")
    assert len(redact("x" * 1000)) == 200


def test_sync_clients_are_refused() -> None:
    auth = GoogleAuth(lambda _request: FakeCredentials())
    with httpx.Client(auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))):
        pass
    with (
        pytest.raises(RuntimeError, match="AsyncClient"),
        httpx.Client(
            auth=auth, transport=httpx.MockTransport(lambda r: httpx.Response(200))
        ) as client,
    ):
        client.get("https://gmp.test/")


# -- factory and settings ----------------------------------------------------------------------


def test_gmp_url_and_project_validation() -> None:
    assert (
        gmp_query_url("my-project")
        == "https://monitoring.googleapis.com/v1/projects/my-project/location/global/prometheus"
    )
    assert gmp_query_url("example.com:my-project").endswith(
        "/example.com:my-project/location/global/prometheus"
    )
    for bad in ("", "My-Project", "a/b", "proj?x=1", "short", "p" * 31):
        with pytest.raises(ConfigError, match="not a Google Cloud project id"):
            gmp_query_url(bad)


async def test_factory_builds_a_backend_named_gmp_without_io() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=OK)

    backend = build_backend(
        Settings.from_options(gmp_project="my-project"), transport=httpx.MockTransport(handler)
    )
    assert backend.name == "gmp"
    assert seen == []
    await backend.aclose()


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            Settings.from_options(gmp_project="my-project", prometheus_url="http://prom:9090"),
            "not both",
        ),
        (
            Settings.from_options(gmp_project="my-project", prometheus_bearer_token_file="/t"),
            "Google credentials",
        ),
        (Settings.from_options(gmp_credentials_file="/k.json"), "needs --gmp-project"),
        (
            # GMP's URL as a plain Prometheus would be queried without credentials (a 401).
            Settings.from_options(
                prometheus_url="https://monitoring.googleapis.com/v1/projects/p-1/location/global/prometheus"
            ),
            "use --gmp-project=p-1",
        ),
        (Settings.from_options(gmp_project="Bad_Project"), "project id"),
        (
            Settings.from_options(
                gmp_project="my-project", gmp_credentials_file="/nonexistent.json"
            ),
            "cannot load",
        ),
    ],
)
def test_factory_refuses_contradictions(settings: Settings, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        build_backend(settings)


def test_default_prometheus_url_with_gmp_is_fine() -> None:
    backend = build_backend(
        Settings.from_options(gmp_project="my-project", prometheus_url="http://127.0.0.1:9090/")
    )
    assert backend.name == "gmp"


def test_gmp_mode_defaults_max_sample_age_but_keeps_an_explicit_one() -> None:
    assert Settings().cache.max_sample_age is None
    assert (
        Settings.from_options(gmp_project="my-project").cache.max_sample_age
        == GMP_DEFAULT_MAX_SAMPLE_AGE
    )
    assert (
        Settings.from_options(gmp_project="my-project", max_sample_age=30).cache.max_sample_age
        == 30
    )


# -- GMP's 429 -------------------------------------------------------------------------------


async def test_gmp_429_backs_off_with_jitter_within_the_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sleeps: list[float] = []
    real_sleep = asyncio.sleep

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)
        await real_sleep(0)

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    aborted = {
        "status": "error",
        "errorType": "unavailable",
        "error": "Query aborted, please reduce the query rate",
    }
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, json=aborted) if calls <= 3 else httpx.Response(200, json=OK)

    rounds: list[list[float]] = []
    for _ in range(5):
        calls, sleeps[:] = 0, []
        backend = backend_with(FakeCredentials(), handler, retries=5)
        await backend.query("up", timeout=5)
        await backend.aclose()
        assert calls == 4
        rounds.append(list(sleeps))
    assert all(len(r) == 3 for r in rounds)
    assert all(0 <= d <= 2.0 for r in rounds for d in r)
    assert len({tuple(r) for r in rounds}) > 1  # jittered: not the same waits every time


async def test_gmp_429_gives_up_before_the_callers_deadline() -> None:
    aborted = {
        "status": "error",
        "errorType": "unavailable",
        "error": "Query aborted, please reduce the query rate",
    }
    backend = backend_with(
        FakeCredentials(), lambda r: httpx.Response(429, json=aborted), retries=100
    )
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError, match=r"HTTP 429.*reduce the query rate"):
        await backend.query("up", timeout=0.5)
    await backend.aclose()
    assert time.monotonic() - started < 0.6


# -- exact metric names under GMP --------------------------------------------------------------


class RecordingFake(FakeBackend):
    def __init__(self, *, name: str) -> None:
        super().__init__(name=name)
        self.matches: list[str] = []

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        self.matches.extend(match)
        return await super().metric_names(match, timeout=timeout)

    async def label_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        self.matches.extend(match)
        return await super().label_names(match, timeout=timeout)


RULES = """
externalRules:
  - seriesQuery: 'backlog{namespace!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})
  - seriesQuery: '{__name__=~"jetstream_.*",namespace!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})
"""


@pytest.mark.parametrize("backend_name", ["gmp", "prometheus"])
async def test_regex_name_rules_are_skipped_only_under_gmp(
    backend_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    backend = RecordingFake(name=backend_name)
    backend.set_series(
        [
            ({"__name__": "backlog", "namespace": "a"}, 1.0),
            ({"__name__": "jetstream_x", "namespace": "a"}, 2.0),
        ]
    )
    rules = load_rules_text(RULES, filename="r.yaml", presets=False).rules
    registry = MetricRegistry(rules, backend, scope=QueryScope())
    regex_rule = "r.yaml#externalRules[1]"
    snapshot = await registry.refresh()
    if backend_name == "gmp":
        assert sorted(snapshot.external) == ["backlog"]
        assert "selects metric names by regex" in snapshot.errors[regex_rule]
        assert regex_rule in caplog.text  # warned when the rules were set
        assert not any("__name__" in m for m in backend.matches)
    else:
        assert sorted(snapshot.external) == ["backlog", "jetstream_x"]
        assert snapshot.errors == {}
