"""Backends answer queries; everything above them sees only :class:`adapter.backends.base.Backend`."""

from __future__ import annotations

from adapter.backends.base import Backend

__all__ = ["Backend"]
