"""Build the configured backend from process settings.

Two PromQL modes:

- ``prometheus_url`` (default): any Prometheus-compatible API, including the GMP frontend proxy;
- ``gmp_project``: GMP's own query API for that project, authenticated with Google credentials
  (:mod:`adapter.backends.google_auth`); the backend is then named ``gmp``, which also turns on
  GMP's exact-metric-name rule in discovery (:mod:`adapter.core.registry`).

``gmp.endpoints`` (``--google-endpoints``, tests only) points GMP, the token endpoint, the
metadata server and Cloud Monitoring at local stand-ins.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import httpx

from adapter.backends.base import Backend
from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.domain.errors import ConfigError
from adapter.settings import BackendSettings, Settings

if TYPE_CHECKING:
    # google.auth is imported only when GMP is configured (serve in Prometheus mode never
    # loads it): see _gmp_url and build_gmp_auth.
    from adapter.backends.google_auth import GoogleAuth

__all__ = [
    "GMP_BACKEND_NAME",
    "build_backend",
    "build_cloud_monitoring_backend",
    "build_gmp_auth",
    "check_backend_settings",
]

GMP_BACKEND_NAME = "gmp"

_DEFAULT_PROMETHEUS_URL = BackendSettings().prometheus_url


def check_backend_settings(settings: Settings) -> None:
    """Raise :class:`ConfigError` for contradictory backend settings (no I/O)."""
    method = settings.backend.prometheus_method.upper()
    if method not in {"GET", "POST"}:
        raise ConfigError(
            f"--prometheus-method must be GET or POST, not {settings.backend.prometheus_method!r}"
        )
    if not settings.gmp.project:
        if settings.gmp.credentials_file:
            raise ConfigError("--gmp-credentials-file needs --gmp-project")
        _refuse_gmp_url(settings.backend.prometheus_url)
        return
    if settings.backend.prometheus_url.rstrip("/") != _DEFAULT_PROMETHEUS_URL:
        raise ConfigError(
            "give either --gmp-project (query GMP directly) or --prometheus-url (any "
            "Prometheus, or the GMP frontend), not both"
        )
    if settings.backend.prometheus_bearer_token_file:
        raise ConfigError(
            "--prometheus-bearer-token-file does not apply with --gmp-project: GMP is "
            "queried with Google credentials"
        )
    _gmp_url(settings)


def _gmp_url(settings: Settings) -> str:
    from adapter.backends.google_auth import GMP_BASE_URL, gmp_query_url

    return gmp_query_url(
        settings.gmp.project or "", base_url=settings.gmp.endpoints.gmp or GMP_BASE_URL
    )


def _refuse_gmp_url(url: str) -> None:
    """GMP's own query API named as ``--prometheus-url`` would be queried without Google
    credentials (every query a 401) and without GMP's defaults: refuse it, naming the flag."""
    parsed = httpx.URL(url)
    if parsed.host != "monitoring.googleapis.com":
        return
    parts = parsed.path.strip("/").split("/")
    project = parts[2] if len(parts) > 2 and parts[:2] == ["v1", "projects"] else "PROJECT"
    raise ConfigError(
        f"--prometheus-url {url} is Google Managed Prometheus' query API, which needs Google"
        f" credentials: use --gmp-project={project} instead (Workload Identity or"
        " --gmp-credentials-file; GMP's defaults come with it)"
    )


def build_gmp_auth(settings: Settings) -> GoogleAuth:
    """The Google-credentials auth flow for ``settings`` (reads a key file now, if named).

    Raises :class:`ConfigError` for an unusable credentials file. ADC are discovered at the
    first query, in a worker thread, so building never blocks on the metadata server.
    """
    from adapter.backends.google_auth import (
        GoogleAuth,
        HttpxTokenRequest,
        adc_loader,
        file_loader,
    )

    loader = (
        file_loader(settings.gmp.credentials_file)
        if settings.gmp.credentials_file
        else adc_loader()
    )
    return GoogleAuth(
        loader,
        refresh_margin=settings.gmp.token_refresh_margin,
        request=HttpxTokenRequest(
            timeout=settings.backend.query_timeout,
            token_base=settings.gmp.endpoints.token,
            metadata_base=settings.gmp.endpoints.metadata,
        ),
        backend=GMP_BACKEND_NAME,
    )


def build_backend(
    settings: Settings, *, transport: httpx.AsyncBaseTransport | None = None
) -> Backend:
    """The backend ``settings`` describe. Raises :class:`ConfigError`; does no network I/O.

    ``transport`` replaces the network (tests).
    """
    check_backend_settings(settings)
    method: Literal["GET", "POST"] = (
        "POST" if settings.backend.prometheus_method.upper() == "POST" else "GET"
    )
    plain = PrometheusSettings(
        url=settings.backend.prometheus_url,
        bearer_token_file=settings.backend.prometheus_bearer_token_file,
        ca_file=settings.backend.prometheus_ca_file,
        insecure_skip_verify=settings.backend.prometheus_insecure_skip_verify,
        headers=dict(settings.backend.prometheus_headers),
        method=method,
        timeout=settings.backend.query_timeout,
    )
    if settings.gmp.project:
        # GMP directly: Google credentials instead of a token file, the project's query URL.
        gmp = replace(
            plain,
            url=_gmp_url(settings),
            bearer_token_file=None,
            name=GMP_BACKEND_NAME,
        )
        return PrometheusBackend(gmp, transport=transport, auth=build_gmp_auth(settings))
    return PrometheusBackend(plain, transport=transport)


def build_cloud_monitoring_backend(settings: Settings) -> Backend:
    """The Cloud Monitoring backend for Stackdriver-style names (gRPC, Application Default
    Credentials). Raises :class:`ConfigError` without a project or usable credentials; does no
    network I/O (the channel connects at the first call).

    With a ``cloud-monitoring`` endpoint in ``--google-endpoints`` (tests): ``http://host:port``
    is a plaintext channel without credentials, ``https://host:port`` Google's client on that
    address."""
    from adapter.backends.cloud_monitoring import CloudMonitoringBackend

    project = settings.cloud_monitoring.project or settings.gmp.project
    if not project:
        raise ConfigError("Cloud Monitoring needs --cloud-monitoring-project or --gmp-project")
    client = _cloud_monitoring_client(settings.gmp.endpoints.cloud_monitoring)
    return CloudMonitoringBackend(client, project=project)


def _cloud_monitoring_client(endpoint_url: str | None) -> Any:
    import google.auth.exceptions
    from google.cloud import monitoring_v3

    endpoint = urlsplit(endpoint_url or "")
    if endpoint.scheme == "http":
        import grpc
        from google.cloud.monitoring_v3.services.metric_service.transports import (
            MetricServiceGrpcAsyncIOTransport,
        )

        channel = grpc.aio.insecure_channel(endpoint.netloc)
        transport = MetricServiceGrpcAsyncIOTransport(channel=channel)
        return monitoring_v3.MetricServiceAsyncClient(transport=transport)
    # GAPIC clients take a dict as ClientOptions (their annotation names only the class).
    options: Any = {"api_endpoint": endpoint.netloc} if endpoint.netloc else None
    try:
        return monitoring_v3.MetricServiceAsyncClient(client_options=options)
    except google.auth.exceptions.DefaultCredentialsError as exc:
        raise ConfigError(
            "no Google credentials for Cloud Monitoring (Workload Identity or "
            "GOOGLE_APPLICATION_CREDENTIALS)"
        ) from exc
