"""Querying "GMP" directly with Google credentials: a service-account key, a local OAuth2 token
endpoint that verifies the signed JWT grant, and a GMP-like HTTPS proxy (token-checking, exact
metric names, no ``match[]`` in POST bodies) in front of the real Prometheus of the fleet."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from adapter import cli
from adapter.backends.base import Backend
from adapter.backends.factory import build_backend
from adapter.core.quantity import format_quantity
from adapter.core.request import parse_path_string
from adapter.domain.errors import BackendUnavailableError
from adapter.rules.loader import load_rules, load_rules_text
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.prometheus import LocalPrometheus
from tests.support.fleet import Fleet
from tests.support.gmp import GmpProxy, ServiceAccount, TokenServer, write_service_account
from tests.support.metadata import MetadataServer

PROJECT = "llm-serving-test"
COUNT = "count(jetstream_prefill_backlog_size)"


class Gmp:
    """The token server, the proxy and a key file, and a way to build backends on them."""

    def __init__(self, tokens: TokenServer, proxy: GmpProxy, account: ServiceAccount) -> None:
        self.tokens = tokens
        self.proxy = proxy
        self.account = account

    def settings(self, **overrides: object) -> Settings:
        values: dict[str, object] = {
            "gmp_project": PROJECT,
            "gmp_credentials_file": str(self.account.path),
            "google_endpoints": f"gmp={self.proxy.base_url}",
            "prometheus_ca_file": str(self.proxy.ca_file),
            "query_timeout": 10.0,
        }
        values.update(overrides)
        return Settings.from_options(**values)


@pytest.fixture
def gmp(prometheus: LocalPrometheus, tmp_path: Path) -> Iterator[Gmp]:
    with TokenServer() as tokens:
        account = write_service_account(tmp_path, token_uri=tokens.url, project=PROJECT)
        tokens.trust(account)
        with GmpProxy(
            project=PROJECT, tokens=tokens, prometheus_url=prometheus.url, directory=tmp_path
        ) as proxy:
            yield Gmp(tokens, proxy, account)


@pytest.fixture
async def make_backend(gmp: Gmp) -> AsyncIterator[Callable[..., Backend]]:
    made: list[Backend] = []

    def make(**overrides: object) -> Backend:
        backend = build_backend(gmp.settings(**overrides))
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.aclose()


async def count(backend: Backend) -> float:
    result = await backend.query(COUNT, timeout=10)
    assert len(result.samples) == 1
    return result.samples[0].value


async def test_first_query_gets_a_token_and_reaches_prometheus_through_the_proxy(
    gmp: Gmp, make_backend: Callable[..., Backend], fleet: Fleet
) -> None:
    backend = make_backend()
    assert backend.name == "gmp"
    assert gmp.tokens.requests == 0  # building the backend fetched nothing

    assert await count(backend) == len(fleet.pods)
    assert await count(backend) == len(fleet.pods)

    assert gmp.tokens.requests == 1, gmp.tokens.rejected
    assert gmp.proxy.tokens_seen() == [gmp.tokens.minted[0]] * 2
    assert {r.path for r in gmp.proxy.records} == {
        f"/v1/projects/{PROJECT}/location/global/prometheus/api/v1/query"
    }
    assert all(r.status == 200 for r in gmp.proxy.records)


async def test_a_token_is_replaced_before_it_expires_and_rotates(
    gmp: Gmp, make_backend: Callable[..., Backend], fleet: Fleet
) -> None:
    gmp.tokens.expires_in = 4
    # Replace tokens with under 3 s left: each one serves for about 1 s.
    backend = make_backend(gmp_token_refresh_margin=3.0)
    deadline = time.monotonic() + 20
    while len(gmp.tokens.minted) < 3 and time.monotonic() < deadline:
        assert await count(backend) == len(fleet.pods)
        await asyncio.sleep(0.2)

    assert len(gmp.tokens.minted) >= 3
    assert len(set(gmp.tokens.minted)) == len(gmp.tokens.minted)  # a new token each refresh
    # Every request carried a live token: none was ever rejected, none was used after expiry.
    assert all(r.status == 200 for r in gmp.proxy.records)
    assert set(gmp.proxy.tokens_seen()) == set(gmp.tokens.minted)
    # Refreshes happened because of the margin, not per request.
    assert len(gmp.proxy.records) > len(gmp.tokens.minted)


async def test_a_revoked_token_gets_one_401_then_a_fresh_token(
    gmp: Gmp, make_backend: Callable[..., Backend], fleet: Fleet
) -> None:
    backend = make_backend()
    assert await count(backend) == len(fleet.pods)
    first = gmp.tokens.minted[0]
    gmp.tokens.revoke(first)

    assert await count(backend) == len(fleet.pods)

    assert gmp.tokens.requests == 2
    second = gmp.tokens.minted[1]
    assert [(r.token, r.status) for r in gmp.proxy.records] == [
        (first, 200),
        (first, 401),
        (second, 200),
    ]


async def test_token_endpoint_down_is_a_clear_error_without_secrets(
    gmp: Gmp, make_backend: Callable[..., Backend], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    backend = make_backend()
    gmp.tokens.stop()

    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        await backend.query(COUNT, timeout=10)
    assert time.monotonic() - started < 10
    message = info.value.message
    assert message.startswith("gmp: could not get a Google access token: ")
    assert "unreachable" in message
    assert gmp.proxy.records == []  # nothing was sent without a token

    secrets = [
        gmp.account.private_key_id,
        gmp.account.private_key_pem.splitlines()[1],
        "PRIVATE KEY",
    ]
    for secret in secrets:
        assert secret not in message
        assert secret not in caplog.text
        assert secret not in repr(backend.__dict__)


async def test_a_rejected_grant_names_the_reason_not_the_assertion(
    gmp: Gmp, make_backend: Callable[..., Backend], tmp_path: Path
) -> None:
    # A key the token endpoint does not trust: its signature check fails.
    (tmp_path / "other").mkdir()
    other = write_service_account(tmp_path / "other", token_uri=gmp.tokens.url, project=PROJECT)
    backend = make_backend(gmp_credentials_file=str(other.path))
    with pytest.raises(BackendUnavailableError, match="invalid_grant") as info:
        await backend.query(COUNT, timeout=10)
    assert other.private_key_id not in info.value.message
    assert "eyJ" not in info.value.message  # no JWT (the signed assertion)


async def test_concurrent_requests_during_a_refresh_share_one_token_request(
    gmp: Gmp, make_backend: Callable[..., Backend], fleet: Fleet
) -> None:
    gmp.tokens.delay = 0.5
    backend = make_backend()
    counts = await asyncio.gather(*(count(backend) for _ in range(20)))
    assert counts == [len(fleet.pods)] * 20
    assert gmp.tokens.requests == 1
    assert set(gmp.proxy.tokens_seen()) == {gmp.tokens.minted[0]}

    # Same after a revocation: 20 requests get 401, one refresh serves all of them.
    gmp.tokens.revoke(gmp.tokens.minted[0])
    counts = await asyncio.gather(*(count(backend) for _ in range(20)))
    assert counts == [len(fleet.pods)] * 20
    assert gmp.tokens.requests == 2


async def test_the_adapter_answers_presets_through_gmp(gmp: Gmp, fleet: Fleet) -> None:
    settings = gmp.settings(cluster="c1")
    assert settings.cache.max_sample_age == 240.0  # GMP mode's default (no staleness there)
    ctx = build_context(settings, backend=build_backend(settings), rules=load_rules(None))
    try:
        path = (
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"
        )
        answer = await ctx.provider.answer(parse_path_string(path))
    finally:
        await ctx.backend.aclose()
    expected = sum(
        p.values.prefill_backlog for p in fleet.pods_in(cluster="c1", namespace="team-a")
    )
    assert [item["value"] for item in answer.body["items"]] == [format_quantity(expected)]


async def test_discovery_under_gmp_uses_exact_names_and_get(gmp: Gmp) -> None:
    rules = load_rules_text(
        """
externalRules:
  - seriesQuery: 'jetstream_prefill_backlog_size{namespace!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    name: {as: backlog_total}
    metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})
  - seriesQuery: '{__name__=~"jetstream_.*",namespace!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})
""",
        filename="pa.yaml",
        presets=False,
    )
    settings = gmp.settings(cluster="c1")
    ctx = build_context(settings, backend=build_backend(settings), rules=rules)
    try:
        snapshot = await ctx.registry.refresh()
    finally:
        await ctx.backend.aclose()
    assert "backlog_total" in snapshot.external
    assert list(snapshot.errors) == ["pa.yaml#externalRules[1]"]
    assert "GMP matches metric names exactly" in snapshot.errors["pa.yaml#externalRules[1]"]
    assert "selects metric names by regex" in snapshot.errors["pa.yaml#externalRules[1]"]
    # Discovery went by GET, and nothing GMP refuses was ever sent.
    assert gmp.proxy.records
    assert {r.method for r in gmp.proxy.records} == {"GET"}
    assert all(r.status == 200 for r in gmp.proxy.records)
    assert not any("__name__" in str(v) for r in gmp.proxy.records for _, v in r.params)


# -- Google's endpoints at stand-ins through the one setting, from the CLI ----------------------

BACKLOG = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"


def _backlog(fleet: Fleet) -> str:
    pods = fleet.pods_in(cluster="c1", namespace="team-a")
    return format_quantity(sum(p.values.prefill_backlog for p in pods))


def _query_cli(gmp: Gmp, *extra: str) -> Any:
    return CliRunner().invoke(
        cli.app,
        [
            "query",
            BACKLOG,
            "--gmp-project",
            PROJECT,
            "--prometheus-ca-file",
            str(gmp.proxy.ca_file),
            "--cluster",
            "c1",
            # Stackdriver-style names stay on PromQL: no Cloud Monitoring client to build.
            "--stackdriver-names",
            "promql",
            *extra,
        ],
    )


def test_a_google_key_file_gets_its_token_from_the_token_stand_in(
    gmp: Gmp, fleet: Fleet, tmp_path: Path
) -> None:
    # A key file as Google issues it: its token_uri is Google's own token endpoint.
    (tmp_path / "google").mkdir()
    account = write_service_account(
        tmp_path / "google", token_uri="https://oauth2.googleapis.com/token", project=PROJECT
    )
    gmp.tokens.trust(account)
    token_base = gmp.tokens.url.removesuffix("/token")
    result = _query_cli(
        gmp,
        "--gmp-credentials-file",
        str(account.path),
        "--google-endpoints",
        f"gmp={gmp.proxy.base_url},token={token_base}",
    )
    assert result.exit_code == 0, result.output
    assert [i["value"] for i in json.loads(result.stdout)["items"]] == [_backlog(fleet)]
    assert gmp.tokens.requests == 1, gmp.tokens.rejected
    assert gmp.proxy.records
    assert all(r.token in gmp.tokens.minted and r.status == 200 for r in gmp.proxy.records)


def test_on_gke_application_default_credentials_come_from_the_metadata_server(
    gmp: Gmp, fleet: Fleet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Nothing but the metadata server to find credentials with, as in a GKE pod.
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "no-gcloud"))
    with MetadataServer(mint=gmp.tokens.mint) as metadata:
        result = _query_cli(
            gmp, "--google-endpoints", f"gmp={gmp.proxy.base_url},metadata={metadata.url}"
        )
    assert result.exit_code == 0, result.output
    assert [i["value"] for i in json.loads(result.stdout)["items"]] == [_backlog(fleet)]
    assert gmp.tokens.minted  # the metadata server's tokens, accepted by "GMP"
    assert gmp.proxy.records
    assert all(r.token in gmp.tokens.minted and r.status == 200 for r in gmp.proxy.records)
    assert any(p.endswith("/token") for p in metadata.requests)
