"""Bounded polling: :func:`wait_until` a probe answers, or fail naming what was awaited."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["TimedOut", "wait_until"]

T = TypeVar("T")


class TimedOut(AssertionError):
    """What was awaited did not happen in time; the message says what and, when given, what was
    seen at that moment."""


def wait_until(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    interval_s: float = 0.25,
    details: Callable[[], str] | None = None,
) -> T:
    """Poll ``probe`` until it returns something other than ``None``/``False``; return it.

    Raises :class:`TimedOut` after ``timeout_s`` seconds naming ``what`` and, when given, the text
    ``details()`` returns at that moment.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        result = probe()
        if result is not None and result is not False:
            return result
        if time.monotonic() >= deadline:
            extra = f"\n{details()}" if details is not None else ""
            raise TimedOut(f"timed out after {timeout_s:.0f}s waiting for {what}{extra}")
        time.sleep(interval_s)
