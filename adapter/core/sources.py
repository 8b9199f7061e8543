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

from typing import Any

from adapter.backends.base import Backend, DelegatingBackend
from adapter.domain.models import QueryResult
from adapter.rules.base import Rule
from adapter.scrape.source import PodScraper

__all__ = ["ScrapeFirst", "find_scrape_first", "rule_source"]


class ScrapeFirst(DelegatingBackend):
    """``backend``'s queries, answered by ``scraper`` where it can."""

    def __init__(self, backend: Backend, scraper: PodScraper) -> None:
        super().__init__(backend)
        self.scraper = scraper

    def source_of(self, query: str) -> tuple[str, str | None]:
        """``("scrape", None)`` or (the backend's name, why the pods cannot answer)."""
        reason = self.scraper.declines(query)
        return ("scrape", None) if reason is None else (self.backend.name, reason)

    def rule_source(self, rule: Rule) -> dict[str, Any]:
        """Where ``rule``'s values come from (``pods`` or the backend's name) and why."""
        if rule.backend != "promql":
            return {"from": rule.backend, "why": "not a PromQL rule"}
        text = getattr(rule, "query", None)
        if not isinstance(text, str):
            return {
                "from": "per request",
                "why": "the query is rendered per request: the pods answer it when the rendered"
                " query is in the local evaluator's subset",
            }
        source, reason = self.source_of(text)
        if reason is None:
            return {"from": "pods", "why": "the query is in the local evaluator's subset"}
        return {"from": source, "why": reason}

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


def find_scrape_first(backend: Backend) -> ScrapeFirst | None:
    """The :class:`ScrapeFirst` in ``backend``'s chain of delegates (``--scrape-pods``), if any."""
    current: Backend | None = backend
    while isinstance(current, DelegatingBackend):
        if isinstance(current, ScrapeFirst):
            return current
        current = current.backend
    return None


def rule_source(backend: Backend, rule: Rule) -> dict[str, Any]:
    """Where ``rule``'s values come from behind ``backend``, and why: the pods or the backend
    with ``--scrape-pods`` (:meth:`ScrapeFirst.rule_source`), else always the backend."""
    first = find_scrape_first(backend)
    if first is not None:
        return first.rule_source(rule)
    return {"from": rule.backend, "why": "--scrape-pods is off"}
