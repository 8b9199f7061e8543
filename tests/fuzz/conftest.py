"""Fuzz tier: generated requests against the real app, generated rules files against the loader.

A session-finish hook prints what the tier generated (:mod:`tests.fuzz.counts`).
"""

from __future__ import annotations

import pytest

from tests.fuzz.counts import COUNTS, PEAKS


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
