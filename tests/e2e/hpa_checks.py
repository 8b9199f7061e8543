"""What the e2e HPA tests check of an HPA: its current metrics, its conditions and events.

Shared by tests/e2e/test_hpa_scaling.py and tests/e2e/test_engine_presets.py (test support: no
tests here).
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from kubernetes import utils as k8s_utils

from tests.e2e.scenario import Scenario
from tests.support.waiting import wait_until

__all__ = [
    "FAILED_METRIC_REASONS",
    "assert_healthy",
    "current_metrics",
    "first_step",
    "rescale_reasons",
    "wait_active",
    "wait_current",
]

FAILED_METRIC_REASONS = frozenset(
    {"FailedGetPodsMetric", "FailedGetExternalMetric", "FailedGetObjectMetric"}
)


def _parse_quantity(quantity: str) -> Decimal:
    parse: Any = k8s_utils.parse_quantity  # untyped in the client
    return Decimal(parse(quantity))


def current_metrics(scenario: Scenario, hpa: str) -> dict[str, Decimal]:
    """Metric name → the HPA's current value (``averageValue``, else ``value``) from its status."""
    status = scenario.hpa(hpa).get("status") or {}
    values: dict[str, Decimal] = {}
    for metric in status.get("currentMetrics") or []:
        source = metric[metric["type"][0].lower() + metric["type"][1:]]
        current = source["current"]
        quantity = current.get("averageValue") or current.get("value")
        if quantity is not None:
            values[source["metric"]["name"]] = Decimal(_parse_quantity(quantity))
    return values


def wait_current(
    scenario: Scenario, hpa: str, expected: dict[str, float], *, timeout_s: float = 30.0
) -> None:
    """Wait until the HPA's status shows ``expected`` (to 0.1 %) for every named metric."""

    def probe() -> bool:
        current = current_metrics(scenario, hpa)
        return all(
            name in current and math.isclose(float(current[name]), value, rel_tol=1e-3)
            for name, value in expected.items()
        )

    wait_until(
        f"HPA {hpa} to report {expected}",
        probe,
        timeout_s=timeout_s,
        details=lambda: scenario.diagnostics(hpa),
    )


def wait_active(scenario: Scenario, hpa: str, expected: dict[str, float]) -> None:
    """Wait until the HPA reads every metric (``ScalingActive=True``) and reports ``expected``."""
    wait_until(
        f"HPA {hpa} to become ScalingActive",
        lambda: scenario.hpa_conditions(hpa).get("ScalingActive") == "True",
        timeout_s=30,
        details=lambda: scenario.diagnostics(hpa),
    )
    wait_current(scenario, hpa, expected)


def assert_healthy(scenario: Scenario, hpa: str) -> None:
    """ScalingActive and AbleToScale are True, and no metric fetch ever failed for this HPA."""
    conditions = scenario.hpa_conditions(hpa)
    assert conditions.get("ScalingActive") == "True", scenario.diagnostics(hpa)
    assert conditions.get("AbleToScale") == "True", scenario.diagnostics(hpa)
    failures = [e for e in scenario.hpa_events(hpa) if e["reason"] in FAILED_METRIC_REASONS]
    assert not failures, scenario.diagnostics(hpa)
    warnings = scenario.warnings(hpa)
    assert not warnings, scenario.diagnostics(hpa)


def first_step(seen: list[int]) -> int:
    """The first replica count after 1 in an observed ``spec.replicas`` sequence."""
    assert seen and seen[0] == 1, seen
    assert len(seen) > 1, seen
    return seen[1]


def rescale_reasons(scenario: Scenario, hpa: str) -> list[str]:
    return [
        str(e["message"]) for e in scenario.hpa_events(hpa) if e["reason"] == "SuccessfulRescale"
    ]


# --------------------------------------------------------------------------- tests
