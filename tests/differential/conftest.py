"""Fixtures for the differential tier: one real control plane for the session (as in tests/e2e)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.differential.peers import RUNS
from tests.support.controlplane import ControlPlane
from tests.support.plane import running


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A started :class:`ControlPlane`; missing binaries or a failed start FAIL the tests."""
    with running(ControlPlane()) as plane:
        yield plane


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for pairs, seconds in RUNS:
        terminalreporter.write_line(
            f"differential: {pairs} request pairs compared, {seconds:.1f}s with both adapters' "
            "start-up",
            bold=True,
        )
