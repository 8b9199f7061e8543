"""Fixtures shared by the integration, faults and soak tiers (a ``pytest_plugins`` module, declared
in ``tests/conftest.py``): a simulated fleet with known values and a real Prometheus scraping it.

``fleet`` describes every simulated pod and chip (tests compute expected answers from it),
``prometheus`` is the :class:`LocalPrometheus` (started once per session, data queryable for
every target before any test runs). A missing ``/usr/bin/prometheus`` makes these fixtures ERROR
with a message naming the fix (``make prometheus``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from adapter.domain.models import Sample
from sim.prometheus import LocalPrometheus
from tests.support.fleet import ENGINES, Fleet, start_fleet


def _count_is(want: int) -> Callable[[list[Sample]], bool]:
    def check(samples: list[Sample]) -> bool:
        return len(samples) == 1 and samples[0].value == want

    return check


@pytest.fixture(scope="session")
def _fleet_and_prometheus() -> Iterator[tuple[Fleet, LocalPrometheus]]:
    with start_fleet() as fleet, LocalPrometheus(fleet.targets) as prom:
        expected = {
            "count(up == 1)": len(fleet.targets),
            "count(jetstream_prefill_backlog_size)": len(fleet.pods),
            "count(jetstream_slots_used_percentage)": len(fleet.pods) * ENGINES,
            "count(jetstream_request_success_count_total)": len(fleet.pods),
            "count(num_requests_waiting)": len(fleet.pods),
            "count(memory_used)": len(fleet.chips),
            "count(memory_total)": len(fleet.chips),
        }
        for query, count in expected.items():
            prom.wait_for(query, _count_is(count), timeout=30)
        yield fleet, prom


@pytest.fixture(scope="session")
def fleet(_fleet_and_prometheus: tuple[Fleet, LocalPrometheus]) -> Fleet:
    return _fleet_and_prometheus[0]


@pytest.fixture(scope="session")
def prometheus(_fleet_and_prometheus: tuple[Fleet, LocalPrometheus]) -> LocalPrometheus:
    return _fleet_and_prometheus[1]
