"""Fixtures for the e2e tier: one real control plane per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .controlplane import ControlPlane, ControlPlaneError

_started: list[ControlPlane] = []


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    """A started :class:`ControlPlane` (etcd, kube-apiserver, kube-controller-manager).

    Missing binaries or a failed start FAIL the tests that use it (never skip), naming what is
    missing or the failing component's log tail.
    """
    plane = ControlPlane()
    failure = None
    try:
        plane.start()
    except ControlPlaneError as exc:
        failure = str(exc)
    if failure is not None:
        # Outside the except block, so the report shows the message once, not a chained traceback.
        pytest.fail(failure, pytrace=False)
    _started.append(plane)
    try:
        yield plane
    finally:
        plane.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for plane in _started:
        terminalreporter.write_line(
            f"e2e control plane started in {plane.start_seconds:.1f}s", bold=True
        )
