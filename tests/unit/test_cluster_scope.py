"""Scope you cannot forget: serving in a cluster needs a cluster name, from --cluster, from the
GKE metadata server (a local stand-in here), or an explicit --all-clusters."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.domain.errors import ConfigError
from adapter.rules.loader import RuleSet, load_configured_rules
from adapter.rules.stackdriver import StackdriverOptions
from adapter.serving.server import resolve_cluster, resolve_scope
from adapter.settings import Settings
from tests.support.metadata import MetadataServer

ROOT = Path(__file__).resolve().parents[2]


def _at(metadata_url: str) -> str:
    return f"metadata={metadata_url}"


def _refused_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_the_cluster_flag_wins_and_the_metadata_server_is_not_asked() -> None:
    with MetadataServer(cluster="from-metadata") as metadata:
        settings = Settings.from_options(cluster="c1", google_endpoints=_at(metadata.url))
        assert (await resolve_cluster(settings)).scope.cluster == "c1"
    assert metadata.requests == []


async def test_on_gke_the_cluster_name_comes_from_the_metadata_server() -> None:
    with MetadataServer(cluster="serving-1", location="us-central2") as metadata:
        settings = Settings.from_options(google_endpoints=_at(metadata.url))
        resolved = await resolve_cluster(settings)
    assert resolved.scope.cluster == "serving-1"
    assert "/computeMetadata/v1/instance/attributes/cluster-name" in metadata.requests


async def test_no_cluster_name_anywhere_refuses_to_serve() -> None:
    with (
        MetadataServer(cluster=None, location=None) as metadata,
        pytest.raises(ConfigError, match=r"pass --cluster=NAME .* or --all-clusters"),
    ):
        await resolve_cluster(Settings.from_options(google_endpoints=_at(metadata.url)))
    with pytest.raises(ConfigError, match="no cluster name"):
        await resolve_cluster(Settings.from_options(google_endpoints=_at(_refused_url())))


async def test_all_clusters_is_explicit_and_exclusive_with_a_cluster() -> None:
    resolved = await resolve_cluster(
        Settings.from_options(all_clusters=True, google_endpoints=_at(_refused_url()))
    )
    assert resolved.scope.cluster is None and resolved.scope.all_clusters
    with pytest.raises(ConfigError, match="not both"):
        await resolve_cluster(Settings.from_options(all_clusters=True, cluster="c1"))


def test_serve_in_a_cluster_without_a_cluster_name_refuses_to_start() -> None:
    # The real command, as a Deployment without --cluster off GKE would run it.
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "adapter",
            "serve",
            "--prometheus-url=http://127.0.0.1:9",
            f"--google-endpoints={_at(_refused_url())}",
            "--log-format=text",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr
    assert "no cluster name: pass --cluster=NAME" in result.stderr


async def test_all_clusters_is_a_warning_in_the_start_up_log(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="adapter"):
        await resolve_cluster(
            Settings.from_options(all_clusters=True, google_endpoints=_at(_refused_url()))
        )
    [record] = [r for r in caplog.records if "--all-clusters" in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "NOT scoped to one cluster" in record.getMessage()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="adapter"):
        await resolve_cluster(Settings.from_options(cluster="c1"))
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("scoped to cluster='c1'" in r.getMessage() for r in caplog.records)


# -- the location, likewise ---------------------------------------------------------------

# Stackdriver-style names through Cloud Monitoring: the rules filter on the location.
CLOUD_MONITORING = {"stackdriver_names": "cloud-monitoring", "cloud_monitoring_project": "p"}


def _locations(rules: RuleSet) -> set[str | None]:
    """The location each Cloud Monitoring rule of ``rules`` filters on."""
    options = [getattr(rule, "options", None) for rule in rules.rules]
    found = {o.location for o in options if isinstance(o, StackdriverOptions)}
    assert found, "no Stackdriver-style rule loaded"
    return found


async def test_on_gke_the_location_comes_from_the_metadata_server_too() -> None:
    with MetadataServer(cluster="serving-1", location="us-central2-b") as metadata:
        settings = Settings.from_options(google_endpoints=_at(metadata.url), **CLOUD_MONITORING)
        rules = load_configured_rules(settings)
        assert _locations(rules) == {None}
        resolved, served = await resolve_scope(settings, rules)
    assert resolved.cloud_monitoring.location == "us-central2-b"
    assert _locations(served) == {"us-central2-b"}  # compiled again with it
    assert "/computeMetadata/v1/instance/attributes/cluster-location" in metadata.requests


async def test_the_location_flag_wins_over_the_metadata_server() -> None:
    with MetadataServer(cluster="serving-1", location="us-central2-b") as metadata:
        settings = Settings.from_options(
            google_endpoints=_at(metadata.url), cloud_monitoring_location="europe-west4"
        )
        resolved = await resolve_cluster(settings)
    assert resolved.scope.cluster == "serving-1"
    assert resolved.cloud_monitoring.location == "europe-west4"


async def test_with_the_cluster_flag_the_location_is_the_metadata_servers_for_that_cluster() -> (
    None
):
    with MetadataServer(cluster="serving-1", location="us-central2-b") as metadata:
        same = Settings.from_options(
            cluster="serving-1", google_endpoints=_at(metadata.url), **CLOUD_MONITORING
        )
        assert (await resolve_cluster(same)).cloud_monitoring.location == "us-central2-b"
        # Another cluster named: this node's location is not its location.
        other = Settings.from_options(
            cluster="c9", google_endpoints=_at(metadata.url), **CLOUD_MONITORING
        )
        assert (await resolve_cluster(other)).cloud_monitoring.location is None
    # Without Cloud Monitoring nothing filters on a location: the flag alone, nothing asked.
    with MetadataServer(cluster="serving-1") as metadata:
        plain = Settings.from_options(cluster="serving-1", google_endpoints=_at(metadata.url))
        assert (await resolve_cluster(plain)).cloud_monitoring.location is None
    assert metadata.requests == []


async def test_no_location_anywhere_leaves_it_unfiltered() -> None:
    with MetadataServer(cluster="serving-1", location=None) as metadata:
        settings = Settings.from_options(google_endpoints=_at(metadata.url), **CLOUD_MONITORING)
        rules = load_configured_rules(settings)
        resolved, served = await resolve_scope(settings, rules)
    assert resolved.scope.cluster == "serving-1"
    assert resolved.cloud_monitoring.location is None
    assert served is rules
