"""``--google-endpoints``: the one setting that points Google's endpoints (GMP, the token
endpoint, the metadata server, Cloud Monitoring) at local stand-ins, and nothing else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from google.cloud import monitoring_v3
from typer.testing import CliRunner

from adapter import cli
from adapter.backends.factory import build_backend, build_cloud_monitoring_backend
from adapter.backends.google_auth import GMP_BASE_URL, METADATA_BASE_URL, HttpxTokenRequest
from adapter.settings import Settings
from adapter.settings.endpoints import ENDPOINT_NAMES, GoogleEndpoints, parse_google_endpoints

ROOT = Path(__file__).resolve().parents[2]


def test_a_small_mapping_of_base_urls() -> None:
    parsed = parse_google_endpoints(
        "gmp=https://127.0.0.1:8443, token=http://127.0.0.1:9000/,"
        "metadata=http://localhost:9001\ncloud-monitoring=http://127.0.0.1:9002"
    )
    assert parsed == GoogleEndpoints(
        gmp="https://127.0.0.1:8443",
        token="http://127.0.0.1:9000",
        metadata="http://localhost:9001",
        cloud_monitoring="http://127.0.0.1:9002",
    )
    assert parse_google_endpoints(str(parsed)) == parsed
    assert parse_google_endpoints({"metadata": "http://127.0.0.1:1"}).metadata == (
        "http://127.0.0.1:1"
    )
    assert parse_google_endpoints("") == GoogleEndpoints()
    assert not GoogleEndpoints()
    assert Settings().gmp.endpoints == GoogleEndpoints()
    given = Settings.from_options(google_endpoints="metadata=http://127.0.0.1:1")
    assert given.gmp.endpoints == GoogleEndpoints(metadata="http://127.0.0.1:1")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("http://127.0.0.1:1", "expected NAME=URL"),
        ("gcs=http://127.0.0.1:1", "unknown endpoint 'gcs'"),
        ("gmp=127.0.0.1:1", "gmp must be http"),
        ("gmp=https://127.0.0.1:1/v1/projects", "gmp must be http"),
        ("token=ftp://127.0.0.1", "token must be http"),
        ("metadata=http://127.0.0.1:1?x=1", "metadata must be http"),
        ("metadata=http://127.0.0.1:port", "bad port"),
    ],
)
def test_what_it_cannot_mean_is_refused(value: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_google_endpoints(value)


def test_credentials_in_a_url_are_refused_without_being_repeated() -> None:
    result = CliRunner().invoke(
        cli.app,
        ["query", "/x", "--google-endpoints", "gmp=https://user:hunter2@127.0.0.1:1"],
    )
    assert result.exit_code == 2
    assert "--google-endpoints" in result.output
    assert "gmp must be http" in result.output


def test_the_variable_sets_it_too() -> None:
    result = CliRunner().invoke(
        cli.app,
        ["query", "/x", "--cluster", "c1"],
        env={"LMA_GOOGLE_ENDPOINTS": "nope=http://127.0.0.1:1"},
    )
    assert result.exit_code == 2
    assert "unknown endpoint 'nope'" in result.output


async def test_gmp_is_reached_at_its_stand_in() -> None:
    settings = Settings.from_options(
        gmp_project="my-project", google_endpoints="gmp=https://127.0.0.1:8443"
    )
    backend = build_backend(settings)
    try:
        client: Any = backend._client  # type: ignore[attr-defined]
        assert str(client.base_url) == (
            "https://127.0.0.1:8443/v1/projects/my-project/location/global/prometheus/"
        )
    finally:
        await backend.aclose()
    default = build_backend(Settings.from_options(gmp_project="my-project"))
    try:
        client = default._client  # type: ignore[attr-defined]
        assert str(client.base_url).startswith(GMP_BASE_URL + "/v1/projects/my-project/")
    finally:
        await default.aclose()


def test_token_and_metadata_requests_go_to_their_stand_ins_and_nothing_else_does() -> None:
    target = HttpxTokenRequest(
        token_base="http://127.0.0.1:9000", metadata_base="http://127.0.0.1:9001"
    ).target
    assert target("https://oauth2.googleapis.com/token") == "http://127.0.0.1:9000/token"
    assert (
        target(METADATA_BASE_URL + "/computeMetadata/v1/instance/?recursive=true")
        == "http://127.0.0.1:9001/computeMetadata/v1/instance/?recursive=true"
    )
    assert target("http://169.254.169.254") == "http://127.0.0.1:9001"
    assert target("https://sts.googleapis.com/v1/token") == "https://sts.googleapis.com/v1/token"
    untouched = HttpxTokenRequest().target
    assert untouched("https://oauth2.googleapis.com/token") == "https://oauth2.googleapis.com/token"


async def test_cloud_monitoring_on_http_is_a_plaintext_channel_to_the_stand_in() -> None:
    settings = Settings.from_options(
        cloud_monitoring_project="my-project",
        google_endpoints="cloud-monitoring=http://127.0.0.1:9002",
    )
    backend = build_cloud_monitoring_backend(settings)
    try:
        client: Any = backend._client  # type: ignore[attr-defined]
        assert client.transport.grpc_channel._channel.target == b"127.0.0.1:9002"
    finally:
        await backend.aclose()


def test_the_documented_table_names_every_endpoint_and_what_it_replaces() -> None:
    text = (ROOT / "docs" / "configuration.md").read_text()
    section = text.split("### Google endpoints for tests", 1)[1].split("\n### ", 1)[0]
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| `([^`]+)` \|", section, flags=re.MULTILINE))
    assert list(rows) == list(ENDPOINT_NAMES)
    assert rows["gmp"] == GMP_BASE_URL
    assert rows["metadata"] == METADATA_BASE_URL
    target = HttpxTokenRequest(token_base="http://stand-in:1").target
    assert target(rows["token"] + "/token") == "http://stand-in:1/token"
    host = monitoring_v3.MetricServiceAsyncClient.DEFAULT_ENDPOINT
    assert rows["cloud-monitoring"] == f"{host}:443"
