"""Integration fixtures of this tier: ``prometheus_backend``, a :class:`PrometheusBackend` on the
session's real Prometheus (``fleet`` and ``prometheus`` come from :mod:`tests.support.fixtures`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from adapter.backends.prometheus import PrometheusBackend, PrometheusSettings
from sim.prometheus import LocalPrometheus


@pytest.fixture
async def prometheus_backend(prometheus: LocalPrometheus) -> AsyncIterator[PrometheusBackend]:
    # Function-scoped: an httpx.AsyncClient belongs to the event loop it first ran on.
    backend = PrometheusBackend(PrometheusSettings(url=prometheus.url, name="local-prometheus"))
    try:
        yield backend
    finally:
        await backend.aclose()
