"""The real HPA controller scales a Deployment on the adapter's answers.

One scenario per module (:mod:`tests.e2e.scenario`): the real kube-apiserver aggregates the
adapter, which reads a real Prometheus scraping one simulated JetStream server per pod and a
simulated TPU device plugin; kube-controller-manager's HPA controller (1 s sync, no scale-down
stabilization) scales ``default/maxengine-server``. Each test applies one of the seed's HPAs from
``deploy/examples`` to a fresh 1-replica Deployment, drives load, and checks:

- the replica counts the HPA formula predicts from the values the pods export (the first step is
  below every cap, so it shows the arithmetic; later steps end at ``maxReplicas``);
- the HPA's own view of the metric (``status.currentMetrics``);
- ``ScalingActive=True`` and ``AbleToScale=True`` while data flows, and no Warning event
  (``FailedGetPodsMetric``, ``FailedGetExternalMetric``, …) for that HPA.

Why the examples are adjusted: they have ``maxReplicas: 2`` (the guide's TPU node pool), which
would hide the computed replica count behind the cap; the tests raise it. Where a target is
changed the test says why.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.e2e.hpa_checks import (
    assert_healthy,
    first_step,
    rescale_reasons,
    wait_active,
    wait_current,
)
from tests.e2e.scenario import (
    TPU_MEMORY_TOTAL,
    Load,
    Scenario,
    example_hpa,
    external_average_replicas,
    pods_average_replicas,
)


@pytest.fixture
def fresh(scenario: Scenario) -> Iterator[Scenario]:
    """The scenario with no HPA, 1 Ready pod, idle load (also after the test)."""
    scenario.reset(replicas=1)
    yield scenario
    scenario.fleet.check()


def test_external_prefill_backlog_average_value(fresh: Scenario) -> None:
    """The seed's prometheus-adapter variant: External ``jetstream_prefill_backlog_size``,
    AverageValue 10 per replica. The adapter answers the namespace's total backlog."""
    scenario = fresh
    target, backlog, max_replicas = 10, 25, 5
    hpa = scenario.apply_hpa(
        example_hpa("hpa-external-prefill-backlog.yaml", max_replicas=max_replicas)
    )
    # Idle: total 0 over 1 pod.
    wait_active(scenario, hpa, {"jetstream_prefill_backlog_size": 0})
    scenario.hold(hpa, 1, seconds=2)

    scenario.set_load(Load(prefill_backlog=backlog))
    seen: list[int] = []
    scenario.wait_replicas(hpa, max_replicas, seen=seen)
    # One pod with 25 waiting: ceil(25 / 10) = 3, below maxReplicas and the scale-up limit.
    expected_first = external_average_replicas(backlog * 1, target)
    assert expected_first == 3
    assert first_step(seen) == expected_first, scenario.diagnostics(hpa)
    assert scenario.rescale_sizes(hpa)[0] == expected_first, scenario.diagnostics(hpa)
    assert "external metric jetstream_prefill_backlog_size" in rescale_reasons(scenario, hpa)[0]
    # All 5 pods scraped: the total is 125, which the HPA shows as 25 per replica (and would
    # turn into ceil(125 / 10) = 13 replicas without the cap).
    wait_current(scenario, hpa, {"jetstream_prefill_backlog_size": backlog})
    assert_healthy(scenario, hpa)

    scenario.set_load(Load(prefill_backlog=0))
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_pods_slots_used_average_value(fresh: Scenario) -> None:
    """Pods ``jetstream_slots_used_percentage``, AverageValue: the mean over a pod's decode
    engines, one value per Running and Ready pod."""
    scenario = fresh
    # No seed example has a Pods slots metric (the guide uses it as External): build one from
    # the Pods example, same Deployment and name. Target 300m instead of the guide's 800m, so a
    # pod at 80 % asks for ceil(0.8 / 0.3) = 3 replicas, a number the formula has to produce.
    manifest = example_hpa("hpa-pods-stackdriver-prefill-backlog.yaml", max_replicas=5)
    pods_metric = manifest["spec"]["metrics"][0]["pods"]
    pods_metric["metric"]["name"] = "jetstream_slots_used_percentage"
    pods_metric["target"]["averageValue"] = "300m"
    hpa = scenario.apply_hpa(manifest)
    wait_active(scenario, hpa, {"jetstream_slots_used_percentage": 0})

    slots = (0.9, 0.7)  # per pod: mean 0.8
    scenario.set_load(Load(slots=slots))
    seen: list[int] = []
    scenario.wait_replicas(hpa, 5, seen=seen)
    expected_first = pods_average_replicas([sum(slots) / len(slots)], 0.3)
    assert expected_first == 3
    assert first_step(seen) == expected_first, scenario.diagnostics(hpa)
    assert "pods metric jetstream_slots_used_percentage" in rescale_reasons(scenario, hpa)[0]
    wait_current(scenario, hpa, {"jetstream_slots_used_percentage": 0.8})
    # The pods the HPA counted were made Running and Ready by status patches, which stuck: with
    # no kubelet and no nodeName nothing reverts them, so no pod needed a second patch.
    phases = scenario.pod_phases()
    assert len(phases) == 5 and all(p == ("Running", True) for p in phases.values()), phases
    assert set(phases) <= set(scenario.fleet.patched), scenario.fleet.patched
    assert len(scenario.fleet.patched) == len(set(scenario.fleet.patched)), scenario.fleet.patched
    assert_healthy(scenario, hpa)

    # 5 pods at 0.05: ratio 0.05 / 0.3 → ceil(0.167 × 5) = 1.
    low = (0.05, 0.05)
    assert pods_average_replicas([0.05] * 5, 0.3) == 1
    scenario.set_load(Load(slots=low))
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_external_memory_used_percentage(fresh: Scenario) -> None:
    """External ``memory_used_percentage`` (TPU HBM used / total per pod, summed over the
    namespace's pods), from the device plugin scraped in kube-system."""
    scenario = fresh
    # Target 400m instead of the guide's 850m: one pod at 90 % then asks for ceil(0.9 / 0.4) = 3
    # replicas, a computed number below the cap rather than a bare doubling.
    target, fraction = 0.4, 0.9
    hpa = scenario.apply_hpa(
        example_hpa(
            "hpa-external-memory-used-percentage.yaml",
            max_replicas=5,
            targets={"memory_used_percentage": "400m"},
        )
    )
    wait_active(scenario, hpa, {"memory_used_percentage": 0})

    scenario.set_load(Load(memory_fraction=fraction))
    seen: list[int] = []
    scenario.wait_replicas(hpa, 5, seen=seen)
    expected_first = external_average_replicas(fraction * 1, target)
    assert expected_first == 3
    assert first_step(seen) == expected_first, scenario.diagnostics(hpa)
    assert "external metric memory_used_percentage" in rescale_reasons(scenario, hpa)[0]
    # Every pod at 90 %: the total over 5 pods is 4.5, shown per replica as 0.9.
    wait_current(scenario, hpa, {"memory_used_percentage": fraction})
    assert_healthy(scenario, hpa)

    scenario.set_load(Load(memory_fraction=0.05))
    # 5 × 0.05 = 0.25 in total → ceil(0.25 / 0.4) = 1.
    assert external_average_replicas(5 * 0.05, target) == 1
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_multiple_metrics_the_larger_proposal_wins(fresh: Scenario) -> None:
    """The seed's multi-metric HPA: Pods ``jetstream_prefill_backlog_size`` (AverageValue 10)
    and External ``memory_used_percentage`` (AverageValue 850m), targets as in the seed."""
    scenario = fresh
    max_replicas = 4
    hpa = scenario.apply_hpa(example_hpa("hpa-multiple-metrics.yaml", max_replicas=max_replicas))
    wait_active(scenario, hpa, {"jetstream_prefill_backlog_size": 0, "memory_used_percentage": 0})

    # Backlog 25 per pod asks for ceil(25 / 10) = 3; memory at 30 % asks for ceil(0.3 / 0.85) = 1.
    scenario.set_load(Load(prefill_backlog=25, memory_fraction=0.3))
    assert pods_average_replicas([25], 10) == 3
    assert external_average_replicas(0.3, 0.85) == 1
    seen: list[int] = []
    scenario.wait_replicas(hpa, max_replicas, seen=seen)
    assert first_step(seen) == 3, scenario.diagnostics(hpa)
    assert "pods metric jetstream_prefill_backlog_size" in rescale_reasons(scenario, hpa)[0]
    assert_healthy(scenario, hpa)

    # Memory up first and seen by Prometheus, then the backlog gone: the two live on different
    # scrape targets, and with the harness' 0 s downscale stabilization one HPA sync that saw
    # the new backlog with the old memory would scale down.
    scenario.set_load(Load(prefill_backlog=25, memory_fraction=1.0))
    scenario.wait_scraped()
    scenario.hold(hpa, max_replicas, seconds=2)
    # Backlog gone (the Pods metric alone would go to 1), memory at 100 % on 4 pods: a total of
    # 4.0 asks for ceil(4 / 0.85) = 5, capped at 4. The larger proposal holds the Deployment.
    scenario.set_load(Load(prefill_backlog=0, memory_fraction=1.0))
    assert external_average_replicas(4 * 1.0, 0.85) > max_replicas
    wait_current(
        scenario, hpa, {"jetstream_prefill_backlog_size": 0, "memory_used_percentage": 1.0}
    )
    scenario.hold(hpa, max_replicas, seconds=5)

    # Memory low too: 4 × 0.1 = 0.4 → ceil(0.4 / 0.85) = 1, and the backlog says 1.
    scenario.set_load(Load(prefill_backlog=0, memory_fraction=0.1))
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_memory_alone_scales_a_multi_metric_hpa_up(fresh: Scenario) -> None:
    """The other way round: with no backlog, the External memory metric alone scales up."""
    scenario = fresh
    max_replicas = 4
    hpa = scenario.apply_hpa(example_hpa("hpa-multiple-metrics.yaml", max_replicas=max_replicas))
    wait_active(scenario, hpa, {"jetstream_prefill_backlog_size": 0, "memory_used_percentage": 0})
    # One pod at 100 %: ceil(1.0 / 0.85) = 2 (ratio 1.18, outside the 0.1 tolerance).
    assert external_average_replicas(1.0, 0.85) == 2
    scenario.set_load(Load(memory_fraction=1.0))
    seen: list[int] = []
    scenario.wait_replicas(hpa, max_replicas, seen=seen)
    assert first_step(seen) == 2, scenario.diagnostics(hpa)
    assert "external metric memory_used_percentage" in rescale_reasons(scenario, hpa)[0]
    assert_healthy(scenario, hpa)
    scenario.set_load(Load())
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_pods_stackdriver_style_name_in_promql_mode(fresh: Scenario) -> None:
    """The seed's Pods HPA written for the Stackdriver adapter
    (``prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge``), answered by PromQL."""
    scenario = fresh
    name = "prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge"
    hpa = scenario.apply_hpa(
        example_hpa("hpa-pods-stackdriver-prefill-backlog.yaml", max_replicas=5)
    )
    wait_active(scenario, hpa, {name: 0})
    scenario.set_load(Load(prefill_backlog=25))
    seen: list[int] = []
    scenario.wait_replicas(hpa, 5, seen=seen)
    assert first_step(seen) == pods_average_replicas([25], 10) == 3, scenario.diagnostics(hpa)
    wait_current(scenario, hpa, {name: 25})
    assert_healthy(scenario, hpa)
    scenario.set_load(Load())
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)


def test_external_stackdriver_style_memory_used_in_promql_mode(fresh: Scenario) -> None:
    """The seed's External HPA written for the Stackdriver adapter
    (``prometheus.googleapis.com|memory_used|gauge`` with its ``metric.labels.*`` selector), answered
    by PromQL: one value per chip series, which the HPA sums into bytes in use."""
    scenario = fresh
    name = "prometheus.googleapis.com|memory_used|gauge"
    # Target 8Gi per replica instead of the guide's 100Gi (sized for 8-chip replicas; the
    # simulated pods have one 16 GiB chip each): one pod at 90 % asks for ceil(14.4 / 8) = 2.
    target_gib, fraction = 8, 0.9
    hpa = scenario.apply_hpa(
        example_hpa(
            "hpa-external-stackdriver-memory-used.yaml",
            max_replicas=5,
            targets={name: f"{target_gib}Gi"},
        )
    )
    wait_active(scenario, hpa, {name: 0})
    scenario.set_load(Load(memory_fraction=fraction))
    used_gib = fraction * TPU_MEMORY_TOTAL / 1024**3
    assert external_average_replicas(used_gib, target_gib) == 2
    seen: list[int] = []
    scenario.wait_replicas(hpa, 5, seen=seen)
    assert first_step(seen) == 2, scenario.diagnostics(hpa)
    assert_healthy(scenario, hpa)
    # 5 pods at 5 %: 5 × 0.8 GiB = 4 GiB → ceil(4 / 8) = 1.
    scenario.set_load(Load(memory_fraction=0.05))
    assert external_average_replicas(5 * 0.05 * TPU_MEMORY_TOTAL / 1024**3, target_gib) == 1
    scenario.wait_replicas(hpa, 1)
    assert_healthy(scenario, hpa)
