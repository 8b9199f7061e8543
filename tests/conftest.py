"""For every tier: the shared fixtures (:mod:`tests.support.fixtures`) and one marker per tier.

Every test under ``tests/<tier>/`` for a tier in :data:`TIERS` gets the marker of that name
(registered in pyproject.toml), so ``-m <tier>`` selects the folder and ``-m "not …"`` leaves it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["tests.support.fixtures"]

TIERS = ("integration", "faults", "fuzz", "soak", "e2e", "differential")
"""The tier folders whose tests are marked by the folder's name."""

_HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.path))
        if not path.is_relative_to(_HERE):
            continue
        tier = path.relative_to(_HERE).parts[0]
        if tier in TIERS:
            item.add_marker(getattr(pytest.mark, tier))
