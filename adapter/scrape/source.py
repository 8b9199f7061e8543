"""The pod-scrape source: PromQL answered from the pods themselves.

:class:`PodScraper` answers a query the local evaluator supports
(:func:`adapter.promql.evaluate.unsupported_reason`) from the pods it can cover:
each target (:mod:`adapter.scrape.targets`: the file's, or the cluster's pods) that the query
covers — its cluster, namespace, pod and own labels pass some selector's matchers on them, so a
request for two pods of one namespace scrapes those two — is scraped when a query asks for it, at most
once per ``min_interval`` (concurrent queries share one scrape), its samples go into a
:class:`SampleWindow` with the labels GMP's target labels add (``cluster``, ``namespace``,
``pod``, the target's own; a scraped label of the same name becomes ``exported_<name>``, as with
``honor_labels: false``), and the query is evaluated there.
:class:`adapter.core.sources.ScrapeFirst` puts it in front of the configured backend, which
answers every other query and every metadata call (discovery).

A scrape that fails (refused, timeout, not 200, a redirect, a body too large or unparsable) marks
that target's series stale, as Prometheus does, so with ``on_failure="omit"`` the pod is left out
of the answer and the HPA's missing-pod rule applies; with ``on_failure="backend"``
:meth:`PodScraper.read` names the failed targets and :class:`adapter.core.sources.ScrapeFirst`
asks the backend (for those pods only when the answer is per pod). The scrape client never follows
redirects, never sends the adapter's credentials, and only fetches the listed URLs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import httpx

from adapter.domain.errors import BackendResponseError, QueryError
from adapter.domain.models import Matcher, QueryResult
from adapter.promql.evaluate import evaluate, required_history, unsupported_reason
from adapter.promql.injection import selectors
from adapter.promql.re2 import UnsupportedRegex, label_test
from adapter.promql.window import SampleWindow
from adapter.scrape.exposition import DEFAULT_MAX_BYTES, ExpositionError, parse_exposition
from adapter.scrape.targets import ScrapeTarget

__all__ = ["SCRAPE_SOURCE", "PodScraper", "ScrapeStats"]

SCRAPE_SOURCE = "scrape"
"""``QueryResult.backend`` of an answer evaluated on scraped samples."""

_LOOKBACK = 300.0
"""Seconds of samples kept beyond what range queries need: PromQL's lookback."""

_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.1"
)


@dataclass(slots=True)
class ScrapeStats:
    """Counts for ``/metrics`` and ``/debug``: scrapes by result, their seconds, the last age."""

    results: dict[str, int] = field(default_factory=dict)
    seconds: list[float] = field(default_factory=list)
    on_scrape: Callable[[str, float], None] | None = None

    def record(self, result: str, seconds: float) -> None:
        self.results[result] = self.results.get(result, 0) + 1
        self.seconds = [*self.seconds[-999:], seconds]
        if self.on_scrape is not None:
            self.on_scrape(result, seconds)


class PodScraper:
    """Queries answered from the listed pods' own metrics endpoints."""

    def __init__(
        self,
        targets: Sequence[ScrapeTarget] | Callable[[], Sequence[ScrapeTarget]],
        *,
        cluster: str,
        cluster_label: str = "cluster",
        min_interval: float = 1.0,
        timeout: float = 1.0,
        on_failure: Literal["omit", "backend"] = "omit",
        concurrency: int = 32,
        max_bytes: int = DEFAULT_MAX_BYTES,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._targets = targets if callable(targets) else (lambda fixed=tuple(targets): fixed)
        self.cluster, self.cluster_label = cluster, cluster_label
        self.min_interval = min_interval
        self.on_failure = on_failure
        self.max_bytes = max_bytes
        self.stats = ScrapeStats()
        self._clock = clock
        self._window = SampleWindow()
        self._scraped: dict[str, tuple[float, bool]] = {}  # key -> (unix time, succeeded)
        self._inflight: dict[str, asyncio.Future[bool]] = {}
        self._slots = asyncio.Semaphore(concurrency)
        self._history = 0.0
        # No credentials, no redirects, no environment proxies: the client fetches listed URLs.
        self._client = httpx.AsyncClient(
            timeout=min(timeout, 1.0),
            follow_redirects=False,
            trust_env=False,
            transport=transport,
            headers={"Accept": _ACCEPT},
        )

    @staticmethod
    def declines(query: str) -> str | None:
        """``None`` when the pods can answer ``query``; otherwise why not (for the backend)."""
        return unsupported_reason(query)

    async def answer(self, query: str) -> QueryResult | None:
        """``query`` evaluated on fresh scrapes; ``None`` when a pod failed and ``on_failure``
        is ``backend``. The caller checks :meth:`declines` first."""
        result, failed = await self.read(query)
        return None if failed and self.on_failure == "backend" else result

    async def read(self, query: str) -> tuple[QueryResult, tuple[ScrapeTarget, ...]]:
        """``query`` evaluated on fresh scrapes (a failed target's series are stale, so absent),
        and the targets it covers whose scrape failed."""
        self._history = max(self._history, required_history([query]))
        covered = self.covered(query)
        ok = await asyncio.gather(*(self._fresh(t) for t in covered))
        now = self._clock()
        self._window.prune(int((now - self._history - _LOOKBACK) * 1000))
        failed = tuple(t for t, good in zip(covered, ok, strict=True) if not good)
        return evaluate(query, self._window, now, backend=SCRAPE_SOURCE), failed

    @property
    def targets(self) -> tuple[ScrapeTarget, ...]:
        """Every target there is now."""
        return tuple(self._targets())

    def covered(self, query: str) -> list[ScrapeTarget]:
        """The targets whose samples ``query`` can select: for some selector, each matcher on a
        label the target sets (cluster, namespace, pod, its own) accepts the target's value."""
        tests = _target_tests(query)
        return [t for t in self._targets() if any(test(self._own(t)) for test in tests)]

    def _own(self, target: ScrapeTarget) -> dict[str, str]:
        return {
            self.cluster_label: self.cluster,
            "namespace": target.namespace,
            "pod": target.pod,
            **target.labels,
        }

    async def _fresh(self, target: ScrapeTarget) -> bool:
        """Scrape ``target`` unless it was scraped within ``min_interval``; whether it answered."""
        last = self._scraped.get(target.key)
        if last is not None and self._clock() - last[0] < self.min_interval:
            return last[1]
        task = self._inflight.get(target.key)
        if task is None:
            task = asyncio.ensure_future(self._scrape(target))
            self._inflight[target.key] = task
            task.add_done_callback(lambda _: self._inflight.pop(target.key, None))
        return await asyncio.shield(task)

    async def _scrape(self, target: ScrapeTarget) -> bool:
        async with self._slots:
            started = self._clock()
            result, samples = await self._read(target)
            t = int(started * 1000)
            if samples is None:
                self._window.target_down(target.key, t)
            else:
                self._window.ingest_scrape(target.key, samples, t)
            self._scraped[target.key] = (started, samples is not None)
            self.stats.record(result, self._clock() - started)
            return samples is not None

    async def _read(
        self, target: ScrapeTarget
    ) -> tuple[str, list[tuple[dict[str, str], float, int | None]] | None]:
        """The target's samples with its labels, or ``None``, and the scrape's result name."""
        try:
            async with self._client.stream("GET", target.url) as response:
                if response.status_code != 200:
                    return f"http_{response.status_code // 100}xx", None
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > self.max_bytes:
                        return "too_large", None
                content_type = response.headers.get("content-type")
        except httpx.TimeoutException:
            return "timeout", None
        except httpx.HTTPError:
            return "unreachable", None
        try:
            parsed = parse_exposition(
                bytes(body), content_type=content_type, max_bytes=self.max_bytes,
                target=target.endpoint,
            )  # fmt: skip
        except (ExpositionError, BackendResponseError):
            return "invalid", None
        own = self._own(target)
        samples = [(_with_target(s.labels, own), s.value, s.timestamp) for s in parsed.samples]
        return "ok", samples

    async def aclose(self) -> None:
        await self._client.aclose()


def _with_target(labels: dict[str, str], own: dict[str, str]) -> dict[str, str]:
    """``labels`` with the target's labels, a clash kept as ``exported_<name>`` (Prometheus'
    ``honor_labels: false``)."""
    out = dict(labels)
    for name, value in own.items():
        if name in out and out[name] != value:
            out[f"exported_{name}"] = out[name]
        out[name] = value
    return out


def _accepts(matcher: Matcher) -> Callable[[str], bool]:
    try:
        return label_test(matcher.op, matcher.value)
    except UnsupportedRegex:
        return lambda _: True  # cannot tell here: scrape it, the evaluator decides


@functools.lru_cache(maxsize=1024)
def _target_tests(query: str) -> tuple[Callable[[Mapping[str, str]], bool], ...]:
    """Per selector of ``query``, a test of a target's own labels (a matcher on a label the
    target does not set is left to the evaluator)."""
    try:
        found = selectors(query)
    except QueryError:
        return (lambda _: True,)

    def test(
        checks: list[tuple[str, Callable[[str], bool]]],
    ) -> Callable[[Mapping[str, str]], bool]:
        return lambda own: all(accept(own[k]) for k, accept in checks if k in own)

    return tuple(test([(m.label, _accepts(m)) for m in sel.matchers]) for sel in found)
