"""The replica calculation against the controller's own test cases.

Cases marked ``rc`` follow ``pkg/controller/podautoscaler/replica_calculator_test.go``
(same replicas, pod states, milli-unit levels and targets, same expected counts); the others
work one rule of ``horizontal.go`` at a time with numbers checked by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from adapter.domain.errors import BadRequestError
from adapter.hpa.algorithm import (
    History,
    HpaSpec,
    PodInfo,
    Reading,
    ScaleDecision,
    ScaleEvent,
    decide,
    parse_hpa,
    parse_quantity_milli,
)


def _hpa(metrics: list[dict[str, Any]], *, lo: int = 1, hi: int = 100, **spec: Any) -> HpaSpec:
    return parse_hpa(
        {
            "metadata": {"namespace": "ns", "name": "h"},
            "spec": {
                "scaleTargetRef": {"kind": "Deployment", "name": "d", "apiVersion": "apps/v1"},
                "minReplicas": lo,
                "maxReplicas": hi,
                "metrics": metrics,
                **spec,
            },
        }
    )


def pods_metric(target: str) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": "m"},
            "target": {"type": "AverageValue", "averageValue": target},
        },
    }


def external(kind: str, target: str) -> dict[str, Any]:
    key = "value" if kind == "Value" else "averageValue"
    return {
        "type": "External",
        "external": {"metric": {"name": "e"}, "target": {"type": kind, key: target}},
    }


def obj(kind: str, target: str) -> dict[str, Any]:
    key = "value" if kind == "Value" else "averageValue"
    return {
        "type": "Object",
        "object": {
            "metric": {"name": "o"},
            "describedObject": {"kind": "Service", "name": "s", "apiVersion": "v1"},
            "target": {"type": kind, key: target},
        },
    }


def _pods(
    n: int, *, phases: list[str] | None = None, ready: list[bool] | None = None
) -> list[PodInfo]:
    return [
        PodInfo(
            f"p{i}",
            phase=(phases or ["Running"] * n)[i],
            ready=(ready or [True] * n)[i],
        )
        for i in range(n)
    ]


@dataclass
class Case:
    id: str
    metric: dict[str, Any]
    current: int
    expected: int
    reading: Reading
    pods: list[PodInfo] = field(default_factory=list)
    status_replicas: int | None = None


CASES = [
    # rc: TestReplicaCalcScaleUpCM
    Case(
        "rc-scale-up-cm",
        pods_metric("15"),
        3,
        4,
        Reading(per_pod={"p0": 20000, "p1": 10000, "p2": 30000}),
        _pods(3),
    ),
    # rc: TestReplicaCalcScaleUpCMUnreadyHotCpuNoLessScale (readiness only matters for CPU)
    Case(
        "rc-unready-not-cpu",
        pods_metric("15"),
        3,
        6,
        Reading(per_pod={"p0": 50000, "p1": 10000, "p2": 30000}),
        _pods(3, ready=[True, True, False]),
    ),
    # rc: TestReplicaCalcScaleDownCM
    Case(
        "rc-scale-down-cm",
        pods_metric("20"),
        5,
        3,
        Reading(per_pod={f"p{i}": 12000 for i in range(5)}),
        _pods(5),
    ),
    # rc: TestReplicaCalcToleranceCM
    Case(
        "rc-tolerance-cm",
        pods_metric("20666m"),
        3,
        3,
        Reading(per_pod={"p0": 20000, "p1": 21000, "p2": 21000}),
        _pods(3),
    ),
    # rc: TestReplicaCalcScaleUpCMExternal (Value: ratio × ready pods)
    Case(
        "rc-external-value-up", external("Value", "4400m"), 1, 2, Reading(values=(8600,)), _pods(1)
    ),
    # rc: TestReplicaCalcScaleUpPerPodCMExternal
    Case(
        "rc-external-avg-up",
        external("AverageValue", "2150m"),
        3,
        4,
        Reading(values=(8600,)),
        _pods(3),
    ),
    # rc: TestReplicaCalcScaleDownPerPodCMExternal
    Case(
        "rc-external-avg-down",
        external("AverageValue", "3"),
        5,
        3,
        Reading(values=(8600,)),
        _pods(5),
    ),
    # rc: TestReplicaCalcToleranceCMExternal
    Case(
        "rc-external-tolerance", external("Value", "8888m"), 3, 3, Reading(values=(8600,)), _pods(3)
    ),
    # External items are summed; AverageValue ignores readiness.
    Case(
        "external-sum",
        external("AverageValue", "10"),
        2,
        10,
        Reading(values=(40000, 55000)),
        _pods(2, ready=[False, False]),
    ),
    # Value target counts only Running and Ready pods.
    Case(
        "external-value-ready-pods",
        external("Value", "10"),
        4,
        4,
        Reading(values=(20000,)),
        _pods(4, ready=[True, True, False, False]),
    ),
    # Object Value from zero replicas: ceil(ratio) (the scale-to-zero branch).
    Case("object-value-from-zero", obj("Value", "10"), 0, 3, Reading(values=(25000,)), [], 0),
    Case("object-average", obj("AverageValue", "10"), 2, 5, Reading(values=(50000,)), _pods(2)),
    # Missing values: scale-down counts them as the target (ratio 0.5 → (5+5+10+10)/4 = 7.5 → 3).
    Case(
        "missing-on-scale-down",
        pods_metric("10"),
        4,
        3,
        Reading(per_pod={"p0": 5000, "p1": 5000}),
        _pods(4),
    ),
    # Missing values on scale-up count as 0: 30,30,0,0 → avg 15 → ratio 1.5 × 4 = 6.
    Case(
        "missing-on-scale-up",
        pods_metric("10"),
        4,
        6,
        Reading(per_pod={"p0": 30000, "p1": 30000}),
        _pods(4),
    ),
    # Pending pods on a scale-up count as 0: 20,20,0 → 13.333 → ratio 1.333 × 3 = 4.
    Case(
        "pending-on-scale-up",
        pods_metric("10"),
        3,
        4,
        Reading(per_pod={"p0": 20000, "p1": 20000}),
        _pods(3, phases=["Running", "Running", "Pending"]),
    ),
    # Filling missing pods flips the direction: no change.
    Case(
        "missing-flips-direction",
        pods_metric("10"),
        3,
        3,
        Reading(per_pod={"p0": 12000, "p1": 12000}),
        _pods(3),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_metric_proposal(case: Case) -> None:
    d = decide(
        _hpa([case.metric], lo=0 if case.current == 0 else 1),
        spec_replicas=case.current,
        status_replicas=case.status_replicas,
        pods=case.pods,
        readings=[case.reading],
        downscale_stabilization_s=0,
    )
    assert d.metrics[0].error is None, d.metrics[0].error
    assert d.metrics[0].proposal == case.expected


def _decide(
    metrics: list[dict[str, Any]], readings: list[Reading], current: int, **kw: Any
) -> ScaleDecision:
    spec_kw = {k: kw.pop(k) for k in ("lo", "hi", "behavior") if k in kw}
    return decide(
        _hpa(metrics, **spec_kw),
        spec_replicas=current,
        pods=_pods(current),
        readings=readings,
        **kw,
    )


def test_largest_proposal_wins() -> None:
    d = _decide(
        [external("AverageValue", "10"), external("AverageValue", "1")],
        [Reading(values=(30000,)), Reading(values=(5000,))],
        3,
        downscale_stabilization_s=0,
    )
    assert [m.proposal for m in d.metrics] == [3, 5]
    assert d.desired == 5 and d.reason == "DesiredWithinRange"


def test_failed_metric_holds_when_the_rest_would_scale_down() -> None:
    d = _decide(
        [external("AverageValue", "10"), external("AverageValue", "10")],
        [Reading(values=(10000,)), Reading(error="no metrics returned")],
        5,
    )
    assert d.desired == 5 and not d.scaling_active and d.reason == "FailedGetExternalMetric"


def test_failed_metric_does_not_block_a_scale_up() -> None:
    d = _decide(
        [external("AverageValue", "10"), pods_metric("1")],
        [Reading(values=(80000,)), Reading(error="boom")],
        5,
        downscale_stabilization_s=0,
    )
    assert d.desired == 8 and d.scaling_active


def test_scale_up_limit_without_behavior() -> None:
    d = _decide([external("AverageValue", "1")], [Reading(values=(50000,))], 2)
    assert (d.desired, d.reason) == (4, "ScaleUpLimit")
    d = _decide([external("AverageValue", "1")], [Reading(values=(50000,))], 10, hi=15)
    assert (d.desired, d.reason) == (15, "TooManyReplicas")


def test_min_replicas_clamp() -> None:
    d = _decide(
        [external("AverageValue", "10")],
        [Reading(values=(1000,))],
        4,
        lo=2,
        downscale_stabilization_s=0,
    )
    assert (d.metrics[0].proposal, d.desired, d.reason) == (1, 2, "TooFewReplicas")


def test_downscale_stabilization_takes_the_highest_recent_recommendation() -> None:
    history = History(recommendations=((7, 100.0), (9, 400.0)))
    d = _decide([external("AverageValue", "10")], [Reading(values=(30000,))], 8, history=history)
    assert (d.metric_desired, d.desired, d.reason) == (3, 7, "ScaleDownStabilized")


def test_behavior_policies_and_windows() -> None:
    behavior = {
        "scaleUp": {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": "Max",
            "policies": [{"type": "Pods", "value": 2, "periodSeconds": 60}],
        },
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
        },
    }
    up = _decide(
        [external("AverageValue", "1")],
        [Reading(values=(20000,))],
        4,
        behavior=behavior,
        history=History(scale_up_events=(ScaleEvent(1, 30.0),)),
    )
    # One pod added 30 s ago: period start 3, +2 → 5.
    assert (up.desired, up.reason) == (5, "ScaleUpLimit")
    down = _decide(
        [external("AverageValue", "10")], [Reading(values=(10000,))], 10, behavior=behavior
    )
    assert (down.desired, down.reason) == (5, "ScaleDownLimit")


@pytest.mark.parametrize(
    ("select", "up_limit", "down_limit"),
    [
        # From 4 up: Pods +4 → 8, Percent 50 % → ceil(6.0) = 6. From 10 down: Pods -3 → 7,
        # Percent 55 % → trunc(4.5) = 4. Max takes the most permissive bound, Min the least.
        ("Max", 8, 4),
        ("Min", 6, 7),
    ],
)
def test_select_policy_picks_among_policies_in_both_directions(
    select: str, up_limit: int, down_limit: int
) -> None:
    def rules(percent: int, pods: int) -> dict[str, Any]:
        return {
            "stabilizationWindowSeconds": 0,
            "selectPolicy": select,
            "policies": [
                {"type": "Pods", "value": pods, "periodSeconds": 60},
                {"type": "Percent", "value": percent, "periodSeconds": 60},
            ],
        }

    behavior = {"scaleUp": rules(50, 4), "scaleDown": rules(55, 3)}
    up = _decide([external("AverageValue", "1")], [Reading(values=(50000,))], 4, behavior=behavior)
    assert (up.desired, up.reason) == (up_limit, "ScaleUpLimit")
    down = _decide(
        [external("AverageValue", "10")], [Reading(values=(10000,))], 10, behavior=behavior
    )
    assert (down.desired, down.reason) == (down_limit, "ScaleDownLimit")


def test_behavior_tolerance_is_per_direction() -> None:
    behavior = {"scaleUp": {"tolerance": "0.5"}, "scaleDown": {"tolerance": "0.01"}}
    # ratio 1.4 is inside a 50 % scale-up tolerance…
    d = _decide(
        [pods_metric("10")],
        [Reading(per_pod={f"p{i}": 14000 for i in range(4)})],
        4,
        behavior=behavior,
        downscale_stabilization_s=0,
    )
    assert d.desired == 4
    # …and 0.95 is outside a 1 % scale-down tolerance.
    d = _decide(
        [pods_metric("10")],
        [Reading(per_pod={f"p{i}": 9500 for i in range(4)})],
        4,
        behavior=behavior,
        downscale_stabilization_s=0,
    )
    assert d.metrics[0].proposal == 4 and d.metrics[0].reason.startswith("ceil(")


def test_resource_metrics_are_reported_unseen() -> None:
    cpu = {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}},
    }
    d = _decide(
        [cpu, external("AverageValue", "10")],
        [Reading(seen=False), Reading(values=(30000,))],
        3,
        downscale_stabilization_s=0,
    )
    assert not d.metrics[0].seen and d.desired == 3 and d.notes


def test_target_at_zero_disables_scaling() -> None:
    d = _decide([external("AverageValue", "10")], [Reading(values=(30000,))], 0)
    assert (d.desired, d.reason) == (0, "ScalingDisabled")


@pytest.mark.parametrize(
    ("text", "milli"),
    [
        ("500m", 500),
        ("10", 10000),
        ("1.5k", 1500000),
        ("1Ki", 1024000),
        ("1e3", 1000000),
        ("0.0001", 1),
        (3, 3000),
        ("2150m", 2150),
    ],
)
def test_quantities_round_up_to_milli(text: object, milli: int) -> None:
    assert parse_quantity_milli(text) == milli


@pytest.mark.parametrize("text", ["", "abc", "1x", None, "nan"])
def test_bad_quantities(text: object) -> None:
    with pytest.raises(BadRequestError):
        parse_quantity_milli(text)
