"""A metric whose series appear after the last discovery is served at the next request that asks
for it: one shared discovery runs before the answer, at most every ``miss_refresh`` seconds."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from adapter.core.registry import MetricRegistry
from adapter.rules.base import QueryScope
from adapter.rules.loader import load_rules_text
from sim.fake_backend import FakeBackend

RULES = """
externalRules:
  - seriesQuery: '{__name__=~"jetstream_.*",namespace!=""}'
    resources: {overrides: {namespace: {resource: namespace}}}
    metricsQuery: sum(<<.Series>>{<<.LabelMatchers>>})
"""


class CountingFake(FakeBackend):
    def __init__(self) -> None:
        super().__init__(name="prometheus")
        self.listings = 0

    async def metric_names(self, match: Sequence[str], *, timeout: float) -> list[str]:
        self.listings += 1
        await asyncio.sleep(0.01)
        return await super().metric_names(match, timeout=timeout)


def _registry(backend: CountingFake, miss_refresh: float) -> MetricRegistry:
    rules = load_rules_text(RULES, filename="r.yaml", presets=False).rules
    return MetricRegistry(rules, backend, scope=QueryScope(), miss_refresh=miss_refresh)


async def test_a_metric_that_appeared_is_found_by_the_request_that_asks_for_it() -> None:
    backend = CountingFake()
    registry = _registry(backend, miss_refresh=0.0)
    await registry.refresh()
    assert await registry.find("external", None, "jetstream_prefill_backlog_size") is None
    backend.set_series([({"__name__": "jetstream_prefill_backlog_size", "namespace": "a"}, 3.0)])
    found = await registry.find("external", None, "jetstream_prefill_backlog_size")
    assert found is not None and found.name == "jetstream_prefill_backlog_size"


async def test_misses_share_one_discovery_and_wait_the_floor_between_two() -> None:
    backend = CountingFake()
    registry = _registry(backend, miss_refresh=60.0)
    # Never refreshed: the first misses run one shared discovery.
    found = await asyncio.gather(*(registry.find("external", None, f"m{i}") for i in range(20)))
    assert found == [None] * 20
    assert backend.listings == 1
    # Within the floor, a miss is answered without another discovery.
    assert await registry.find("external", None, "still_missing") is None
    assert backend.listings == 1


async def test_rules_that_discover_nothing_never_refresh_on_a_miss() -> None:
    backend = CountingFake()
    rules = load_rules_text("metrics: []\n", filename="n.yaml", presets=True).rules
    registry = MetricRegistry(rules, backend, scope=QueryScope(), miss_refresh=0.0)
    assert await registry.find("external", None, "nope") is None
    assert backend.listings == 0
