"""Fuzz tier: generated requests against the real app, generated rules files against the loader.

Every test module counts what it generated through :func:`count`; a session-finish hook prints the
totals (``fuzz: N generated requests …``) so the figure can be quoted in docs/security.md.
Everything under ``tests/fuzz`` gets the ``fuzz`` marker.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

__all__ = ["COUNTS", "PEAKS", "count"]

_HERE = Path(__file__).parent

COUNTS: Counter[str] = Counter()
"""What the fuzz tier generated in this session, by kind (``api``, ``schemathesis``, ``rules``…)."""

PEAKS: dict[str, int] = {}
"""Bytes of resident-set growth measured per hostile input (the largest is printed)."""


def count(kind: str, n: int = 1) -> None:
    """Record ``n`` generated inputs of ``kind``."""
    COUNTS[kind] += n


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _HERE in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.fuzz)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not COUNTS:
        return
    requests = sum(n for kind, n in COUNTS.items() if kind != "rules")
    detail = ", ".join(f"{kind}: {n}" for kind, n in sorted(COUNTS.items()))
    terminalreporter.write_line(
        f"fuzz: {requests} generated requests, {COUNTS['rules']} generated rules files ({detail})"
    )
    if PEAKS:
        worst = max(PEAKS, key=PEAKS.__getitem__)
        terminalreporter.write_line(
            f"fuzz: largest memory growth {PEAKS[worst] / 2**20:.1f} MiB ({worst})"
        )
