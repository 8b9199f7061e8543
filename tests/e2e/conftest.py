"""Fixtures for the e2e tier: one real control plane per test session, and an HPA scenario on it
for each module that asks for one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.scenario import Scenario, open_scenario
from tests.support.controlplane import ControlPlane
from tests.support.plane import running

_started: list[ControlPlane] = []


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A started :class:`ControlPlane` (etcd, kube-apiserver, kube-controller-manager).

    Missing binaries or a failed start FAIL the tests that use it (never skip), naming what is
    missing or the failing component's log tail.
    """
    with running(ControlPlane()) as plane:
        _started.append(plane)
        yield plane


@pytest.fixture(scope="module")
def scenario(
    control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    """The module's own :func:`~tests.e2e.scenario.open_scenario` on the session's control plane."""
    with open_scenario(control_plane, Path(tmp_path_factory.mktemp("scenario"))) as opened:
        yield opened


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for plane in _started:
        terminalreporter.write_line(
            f"e2e control plane started in {plane.start_seconds:.1f}s", bold=True
        )
