"""What the running server holds: settings, rules, registry, provider. Built by ``adapter.serving.asgi``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from adapter.backends.base import Backend
from adapter.core.history import SeriesRecorder
from adapter.core.provider import MetricsProvider
from adapter.core.registry import MetricRegistry
from adapter.observability.telemetry import Telemetry
from adapter.rules.loader import RuleSet
from adapter.settings import Settings

__all__ = ["AppContext"]


@dataclass(slots=True)
class AppContext:
    settings: Settings
    rules: RuleSet
    backend: Backend
    registry: MetricRegistry
    provider: MetricsProvider
    telemetry: Telemetry
    started_at: float = field(default_factory=time.time)
    backend_ready: bool = False
    """Set once the backend has answered (readiness)."""
    backend_error: str | None = None
    history: SeriesRecorder = field(default_factory=SeriesRecorder)
    """Recent values served, for ``/debug/ui`` (fed by a provider observer)."""
