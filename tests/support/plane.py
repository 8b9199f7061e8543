"""Start a local control plane for a fixture: a failure FAILS the tests that use it, never skips."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import pytest

from tests.support.controlplane import ControlPlane, ControlPlaneError

__all__ = ["running"]


@contextlib.contextmanager
def running(plane: ControlPlane) -> Iterator[ControlPlane]:
    """Start ``plane``, yield it, stop it. Missing binaries or a failed start fail the test with
    the message naming what is missing or the failing component's log tail."""
    failure = None
    try:
        plane.start()
    except ControlPlaneError as exc:
        failure = str(exc)
    if failure is not None:
        # Outside the except block, so the report shows the message once, not a chained traceback.
        pytest.fail(failure, pytrace=False)
    try:
        yield plane
    finally:
        plane.stop()
