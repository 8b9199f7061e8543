"""Stopping a child process that runs in its own process group (``start_new_session=True``)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

__all__ = ["stop_group"]


def stop_group(popen: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM ``popen``'s process group, SIGKILL it if it is still there after ``grace_s``
    seconds; idempotent (a process that has exited is left alone)."""
    if popen.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(popen.pid, signal.SIGTERM)
    try:
        popen.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait(timeout=grace_s)
