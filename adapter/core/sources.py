"""Where a query's answer comes from: the pods themselves, or the configured backend.

:class:`ScrapeFirst` is a :class:`adapter.backends.base.Backend` in front of the configured one
(``--scrape-pods``): queries the local evaluator supports are answered from scraped pods
(:class:`adapter.scrape.source.PodScraper`), everything else — other queries, discovery,
readiness — by the backend. Its ``name`` is the backend's, so discovery behaves as without it;
answers from the pods bypass the result cache (:meth:`ScrapeFirst.answers_live`). Each answer's
``QueryResult.backend`` says which source gave it (``scrape`` or the backend's name), which
``/debug/query`` shows.

With ``--scrape-fallback backend``, a query whose covered pods did not all answer goes to the
backend too. When the answer is per pod — every series of both answers names, in its ``pod``
label, exactly one pod the query covers — the failed pods' values are the backend's and the
others' the pods' (:func:`per_pod_merge`; ``backend`` is ``scrape+<backend>`` and ``raw`` says
each pod's source) — provided each value is computed from its own pod's series alone
(:func:`adapter.promql.evaluate.keeps_apart`: no aggregation, matching or function that crosses
pods). Otherwise (an aggregate over pods, a pod's share of its namespace's total, the TPU
exporter's per-chip series) one failed pod can change every value, so the backend's whole answer
is served.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from adapter.backends.base import Backend, DelegatingBackend
from adapter.domain.models import QueryResult, Sample
from adapter.promql.evaluate import keeps_apart
from adapter.rules.base import Rule
from adapter.scrape.source import SCRAPE_SOURCE, PodScraper
from adapter.scrape.targets import ScrapeTarget

__all__ = [
    "POD_SOURCES",
    "ScrapeFirst",
    "find_scrape_first",
    "per_pod_merge",
    "rule_source",
    "scrape_source",
]

POD_SOURCES = "podSources"
"""Key of a merged answer's ``raw``: each pod's source (``scrape`` or the backend's name)."""


class ScrapeFirst(DelegatingBackend):
    """``backend``'s queries, answered by ``scraper`` where it can."""

    def __init__(self, backend: Backend, scraper: PodScraper) -> None:
        super().__init__(backend)
        self.scraper = scraper

    def answers_live(self, query: str) -> bool:
        """Queries the pods answer are read at each request (the scraper's minimum interval and
        single flight bound the load): the result cache would only make them older."""
        return self.scraper.declines(query) is None

    async def query(self, query: str, *, timeout: float) -> QueryResult:
        if self.scraper.declines(query) is not None:
            return await self.backend.query(query, timeout=timeout)
        scraped, failed = await self.scraper.read(query)
        if not failed or self.scraper.on_failure == "omit":
            return scraped
        fallback = await self.backend.query(query, timeout=timeout)
        if not keeps_apart(query, "pod"):  # one pod's value may depend on another's
            return fallback
        merged = per_pod_merge(scraped, fallback, failed, self.scraper.covered(query))
        return fallback if merged is None else merged

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


def scrape_source(rule: Rule, backend: str) -> dict[str, Any]:
    """Where ``rule``'s values come from with ``--scrape-pods`` (``pods``, the ``backend``
    named, or ``per request`` for a query rendered per request), and why."""
    if rule.backend != "promql":
        return {"from": rule.backend, "why": "not a PromQL rule"}
    text = getattr(rule, "query", None)
    if not isinstance(text, str):
        return {
            "from": "per request",
            "why": "the query is rendered per request: the pods answer it when the rendered"
            " query is in the local evaluator's subset",
        }
    reason = PodScraper.declines(text)
    if reason is None:
        return {"from": "pods", "why": "the query is in the local evaluator's subset"}
    return {"from": backend, "why": reason}


def rule_source(backend: Backend, rule: Rule) -> dict[str, Any]:
    """Where ``rule``'s values come from behind ``backend``, and why: the pods or the backend
    with ``--scrape-pods`` (:func:`scrape_source`), else always the backend."""
    first = find_scrape_first(backend)
    if first is not None:
        return scrape_source(rule, first.backend.name)
    return {"from": rule.backend, "why": "--scrape-pods is off"}


def per_pod_merge(
    scraped: QueryResult,
    fallback: QueryResult,
    failed: Sequence[ScrapeTarget],
    covered: Sequence[ScrapeTarget],
) -> QueryResult | None:
    """The pods' values for the pods that answered and ``fallback``'s for the ``failed`` ones;
    ``None`` when either answer has a series that is not one covered pod's own (an aggregate)."""
    # A pod name is one pod's when no other namespace the query covers has a pod of that name
    # (a pod's several endpoints are still one pod).
    names = [pod for _, pod in {(t.namespace, t.pod) for t in covered}]
    unique = {name for name in names if names.count(name) == 1}
    broken = {t.pod for t in failed}
    if not broken <= unique:
        return None
    samples: list[Sample] = []
    sources: dict[str, str] = {}
    for result, source, for_broken in (
        (scraped, SCRAPE_SOURCE, False),
        (fallback, fallback.backend, True),
    ):
        for sample in result.samples:
            pod = sample.labels.get("pod")
            if pod not in unique:
                return None
            if (pod in broken) == for_broken:
                samples.append(sample)
                sources[pod] = source
    return QueryResult(
        query=scraped.query,
        samples=tuple(samples),
        raw={POD_SOURCES: sources, SCRAPE_SOURCE: scraped.raw, fallback.backend: fallback.raw},
        duration=scraped.duration + fallback.duration,
        backend=f"{SCRAPE_SOURCE}+{fallback.backend}",
    )
