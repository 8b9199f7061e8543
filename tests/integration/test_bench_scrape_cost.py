"""bench/scrape_cost.py runs and measures what it says (a small run: it is a benchmark, the
figures in docs/benchmarks.md come from its default run)."""

from __future__ import annotations

import asyncio

import pytest

from bench.scrape_cost import measure

pytestmark = pytest.mark.integration


def test_the_scrape_cost_benchmark_scrapes_every_pod_every_round() -> None:
    out = asyncio.run(measure(pods=5, rounds=2, engines=2))
    assert out["scrapes"] == 10
    assert out["body_bytes"] > 1000
    assert 0 < out["cpu_ms_per_scrape"] < 1000
    assert out["cores_for_1000_pods_every_15s"] == pytest.approx(out["cpu_ms_per_scrape"] / 15)
