"""The one seam between the adapter and where numbers come from."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from adapter.domain.models import QueryResult

__all__ = ["Backend", "DelegatingBackend"]


@runtime_checkable
class Backend(Protocol):
    """A source of instant vectors.

    Implementations own their I/O clients and raise only :class:`adapter.domain.errors.BackendError`
    subclasses (``from`` the library's exception). ``timeout`` is seconds for the whole call,
    retries included. Label names and values returned are plain strings; order is not significant.
    """

    name: str
    """Short name used in errors, logs and metrics: ``prometheus``, ``gmp``, ``cloud-monitoring``."""

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        """Evaluate an instant query at the backend's now."""
        ...

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        """Distinct metric names (``__name__`` values) of series matching any selector in ``match``.

        Never lists series: memory is bounded by the number of distinct names.
        """
        ...

    async def label_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        """Distinct label names carried by series matching any selector in ``match``."""
        ...

    async def ping(self, *, timeout: float) -> None:
        """Cheapest call that proves the backend answers (readiness). Raises BackendError."""
        ...

    async def aclose(self) -> None:
        """Release connections. Idempotent."""
        ...


class DelegatingBackend:
    """A :class:`Backend` in front of another: everything goes to ``backend`` unless a subclass
    overrides it (the circuit breaker and the pod-scrape source override ``query``). Its
    ``name`` is the backend's, so discovery and the cache treat it as that backend."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.name = backend.name

    def answers_live(self, query: str) -> bool:
        """Whether ``query`` is answered from the source itself at each call (the pods), so an
        answer must not be kept for later requests."""
        inner = self.backend
        return isinstance(inner, DelegatingBackend) and inner.answers_live(query)

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        return await self.backend.query(query, timeout=timeout)

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        return await self.backend.metric_names(match, timeout=timeout)

    async def label_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        return await self.backend.label_names(match, timeout=timeout)

    async def ping(self, *, timeout: float) -> None:
        await self.backend.ping(timeout=timeout)

    async def aclose(self) -> None:
        await self.backend.aclose()
