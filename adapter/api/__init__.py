"""HTTP only: one module per concern. Routes read :class:`adapter.app.context.AppContext`."""

from __future__ import annotations
