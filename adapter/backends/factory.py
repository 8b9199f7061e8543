"""Build the configured backend from process settings."""

from __future__ import annotations

from adapter.backends.base import Backend
from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from adapter.errors import ConfigError
from adapter.settings import Settings

__all__ = ["build_backend"]


def build_backend(settings: Settings) -> Backend:
    method = settings.prometheus_method.upper()
    if method not in {"GET", "POST"}:
        raise ConfigError(
            f"--prometheus-method must be GET or POST, not {settings.prometheus_method!r}"
        )
    return PrometheusBackend(
        PrometheusSettings(
            url=settings.prometheus_url,
            bearer_token_file=settings.prometheus_bearer_token_file,
            ca_file=settings.prometheus_ca_file,
            insecure_skip_verify=settings.prometheus_insecure_skip_verify,
            headers=dict(settings.prometheus_headers),
            method="POST" if method == "POST" else "GET",
            timeout=settings.query_timeout,
        )
    )
