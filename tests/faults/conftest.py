"""Fault tier: a real Prometheus scraping the simulated fleet, a fault-injecting proxy in front of
it, and the real app (real rules, real Prometheus backend) behind the proxy.

The fleet and Prometheus fixtures are the integration tier's (same known values); everything under
``tests/faults`` gets the ``faults`` marker. A missing ``/usr/bin/prometheus`` makes the fixtures
ERROR with a message naming the fix (``make prometheus``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.conftest import _fleet_and_prometheus, fleet, prometheus

__all__ = ["_fleet_and_prometheus", "fleet", "prometheus"]

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.faults)
