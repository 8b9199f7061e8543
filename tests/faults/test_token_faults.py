"""Google token endpoint faults through the real app in GMP mode: a clear Status within the
deadline, no secret in any answer, nothing sent to GMP without a token, and recovery by itself.

``tests/integration/test_gmp.py`` covers the backend alone (endpoint down once, rejected grants,
rotation, revocation). Here the whole app runs on a GMP backend whose key file's ``token_uri``
points at a TCP forwarder in front of the local token endpoint, so that the endpoint can go down
and come back on the same address, hold connections past the deadline, or answer garbage.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from adapter.backends.factory import build_backend
from adapter.rules.loader import load_rules
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.prometheus import LocalPrometheus
from tests.support.answers import assert_status, values_of
from tests.support.app import client_for
from tests.support.fleet import Fleet
from tests.support.forwarder import Forwarder
from tests.support.gmp import GmpProxy, ServiceAccount, TokenServer, write_service_account

QUERY_TIMEOUT = 2.0  # seconds: the adapter's deadline for one backend call, retries included
PROJECT = "llm-serving-faults"
EXTERNAL = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"


@dataclass
class App:
    client: httpx.AsyncClient
    tokens: TokenServer
    forwarder: Forwarder
    proxy: GmpProxy
    account: ServiceAccount

    async def get(self, path: str = EXTERNAL) -> httpx.Response:
        started = time.monotonic()
        response = await asyncio.wait_for(self.client.get(path), timeout=QUERY_TIMEOUT + 10)
        elapsed = time.monotonic() - started
        assert elapsed <= QUERY_TIMEOUT + 1, f"{path}: answered after {elapsed:.2f}s"
        for secret in self.secrets():
            assert secret not in response.text, "a credential leaked into an answer"
        return response

    def secrets(self) -> list[str]:
        return [
            self.account.private_key_id,
            self.account.private_key_pem.splitlines()[1],
            "PRIVATE KEY",
            *self.tokens.minted,
        ]


@pytest.fixture
async def app(prometheus: LocalPrometheus, tmp_path: Path) -> AsyncIterator[App]:
    with TokenServer() as tokens:
        forwarder = Forwarder(int(tokens.url.split(":")[2].split("/")[0]))
        await forwarder.start()
        account = write_service_account(
            tmp_path, token_uri=f"http://127.0.0.1:{forwarder.port}/token", project=PROJECT
        )
        tokens.trust(account)
        with GmpProxy(
            project=PROJECT, tokens=tokens, prometheus_url=prometheus.url, directory=tmp_path
        ) as proxy:
            settings = Settings.from_options(
                gmp_project=PROJECT,
                gmp_credentials_file=str(account.path),
                google_endpoints=f"gmp={proxy.base_url}",
                prometheus_ca_file=str(proxy.ca_file),
                query_timeout=QUERY_TIMEOUT,
                cluster="c1",
                standalone=True,
                cache_ttl=0.2,
            )
            ctx = build_context(
                settings, backend=build_backend(settings), rules=load_rules(None, presets=True)
            )
            ctx.backend_ready = True
            try:
                async with await client_for(ctx) as client:
                    yield App(client, tokens, forwarder, proxy, account)
            finally:
                forwarder.delay = 0.0
                await ctx.backend.aclose()
                await forwarder.go_down()


def expected(fleet: Fleet) -> list[float]:
    return [
        float(
            sum(p.values.prefill_backlog for p in fleet.pods_in(cluster="c1", namespace="team-a"))
        )
    ]


async def test_baseline_a_token_through_the_forwarder(app: App, fleet: Fleet) -> None:
    assert values_of(await app.get()) == expected(fleet)
    assert app.tokens.requests == 1 and app.forwarder.connections >= 1


GARBAGE: dict[str, bytes] = {
    "html page": (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20\r\n"
        b"Connection: close\r\n\r\n<html>oops</html>\r\n\r\n"
    ),
    "json without a token": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 17\r\n"
        b'Connection: close\r\n\r\n{"expires_in": 1}'
    ),
    "server error": (
        b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    ),
    "truncated": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 400\r\n"
        b'Connection: close\r\n\r\n{"access_token": "tok-'
    ),
    "not http": b"\x00\x01\x02 garbage \xff\xfe\r\n\r\n",
}


async def _fault(app: App, fault: str) -> None:
    if fault == "down":
        await app.forwarder.go_down()
    elif fault == "slow":
        app.forwarder.delay = QUERY_TIMEOUT + 3
    else:
        app.forwarder.reply = GARBAGE[fault]


async def _clear(app: App) -> None:
    await app.forwarder.come_back()
    app.forwarder.delay = 0.0
    app.forwarder.reply = None


FAULTS = ["down", "slow", *GARBAGE]


@pytest.mark.parametrize("fault", FAULTS)
async def test_no_token_is_a_clear_status_in_time_and_nothing_reaches_gmp(
    app: App, fault: str
) -> None:
    await _fault(app, fault)
    body = assert_status(await app.get(), {503, 504})
    assert "gmp" in body["message"], body
    assert app.proxy.records == [], "a query reached GMP without a token"


@pytest.mark.parametrize("fault", FAULTS)
async def test_recovery_by_itself_when_the_endpoint_is_back(
    app: App, fleet: Fleet, fault: str
) -> None:
    await _fault(app, fault)
    assert (await app.get()).status_code >= 500
    await _clear(app)
    deadline = time.monotonic() + 15
    while True:
        response = await app.get()
        if response.status_code == 200:
            break
        assert time.monotonic() < deadline, f"no recovery within 15 s: {response.text[:200]}"
        await asyncio.sleep(0.3)
    assert values_of(response) == expected(fleet)
    assert all(r.status == 200 for r in app.proxy.records if r.token in app.tokens.minted)


async def test_a_revoked_token_with_the_endpoint_down_fails_closed_then_recovers(
    app: App, fleet: Fleet
) -> None:
    """GMP refuses the token (401) while no new one can be had: a Status, never a value made
    from nothing; once the endpoint is back, a fresh token serves again."""
    assert values_of(await app.get()) == expected(fleet)
    app.tokens.revoke(app.tokens.minted[0])
    await app.forwarder.go_down()
    await asyncio.sleep(0.3)  # past the answer cache
    assert_status(await app.get(), {503, 504})
    await _clear(app)
    await asyncio.sleep(0.3)
    deadline = time.monotonic() + 15
    while (response := await app.get()).status_code != 200:
        assert time.monotonic() < deadline, response.text[:200]
        await asyncio.sleep(0.3)
    assert values_of(response) == expected(fleet)
    assert len(app.tokens.minted) == 2
