"""HTTP only: one module per concern. Routes read :class:`adapter.serving.context.AppContext`."""

from __future__ import annotations
