"""Soak tier: the adapter as a real process under bounded load, behind a failing backend.

Uses the integration tier's fleet and Prometheus fixtures; everything under ``tests/soak`` gets
the ``soak`` marker.
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
            item.add_marker(pytest.mark.soak)
