"""Where a query's answer comes from: the pods themselves, or the configured backend.

:class:`ScrapeFirst` is a :class:`adapter.backends.base.Backend` in front of the configured one
(``--scrape-pods``): queries the local evaluator supports are answered from scraped pods
(:class:`adapter.scrape.source.PodScraper`), everything else — other queries, discovery,
readiness — by the backend. Its ``name`` is the backend's, so discovery behaves as without it;
answers from the pods bypass the result cache (:meth:`ScrapeFirst.answers_live`). Each answer's
``QueryResult.backend`` says which source gave it (``scrape`` or the backend's name), which
``/debug/query`` shows.
"""

from __future__ import annotations

from adapter.backends.base import Backend, DelegatingBackend
from adapter.domain.models import QueryResult
from adapter.scrape.source import PodScraper

__all__ = ["ScrapeFirst"]


class ScrapeFirst(DelegatingBackend):
    """``backend``'s queries, answered by ``scraper`` where it can."""

    def __init__(self, backend: Backend, scraper: PodScraper) -> None:
        super().__init__(backend)
        self.scraper = scraper

    def source_of(self, query: str) -> tuple[str, str | None]:
        """``("scrape", None)`` or (the backend's name, why the pods cannot answer)."""
        reason = self.scraper.declines(query)
        return ("scrape", None) if reason is None else (self.backend.name, reason)

    def answers_live(self, query: str) -> bool:
        """Queries the pods answer are read at each request (the scraper's minimum interval and
        single flight bound the load): the result cache would only make them older."""
        return self.scraper.declines(query) is None

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        if self.scraper.declines(query) is None:
            answer = await self.scraper.answer(query)
            if answer is not None:
                return answer
        return await self.backend.query(query, timeout=timeout)

    async def aclose(self) -> None:
        await self.scraper.aclose()
        await super().aclose()
