"""Where a query's answer comes from: the pods themselves, or the configured backend.

:class:`ScrapeFirst` is a :class:`adapter.backends.base.Backend` in front of the configured one
(``--scrape-pods``): queries the local evaluator supports are answered from scraped pods
(:class:`adapter.scrape.source.PodScraper`), everything else — other queries, discovery,
readiness — by the backend. Its ``name`` is the backend's, so discovery and the cache behave as
without it; each answer's ``QueryResult.backend`` says which source gave it (``scrape`` or the
backend's name), which ``/debug/query`` shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapter.backends.base import Backend
from adapter.domain.models import QueryResult
from adapter.scrape.source import PodScraper

__all__ = ["ScrapeFirst"]


class ScrapeFirst:
    """``backend``'s queries, answered by ``scraper`` where it can."""

    def __init__(self, backend: Backend, scraper: PodScraper) -> None:
        self.backend = backend
        self.scraper = scraper
        self.name = backend.name

    def source_of(self, query: str) -> tuple[str, str | None]:
        """``("scrape", None)`` or (the backend's name, why the pods cannot answer)."""
        reason = self.scraper.declines(query)
        return ("scrape", None) if reason is None else (self.backend.name, reason)

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        if self.scraper.declines(query) is None:
            answer = await self.scraper.answer(query)
            if answer is not None:
                return answer
        return await self.backend.query(query, timeout=timeout)

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        return await self.backend.metric_names(match, timeout=timeout)

    async def label_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        return await self.backend.label_names(match, timeout=timeout)

    async def ping(self, *, timeout: float) -> None:
        await self.backend.ping(timeout=timeout)

    async def aclose(self) -> None:
        await self.scraper.aclose()
        await self.backend.aclose()
