"""The HorizontalPodAutoscaler's replica calculation, as a pure function.

Mirrors ``pkg/controller/podautoscaler`` of Kubernetes 1.33–1.35 (``horizontal.go``,
``replica_calculator.go``, ``metrics/utilization.go``) step by step, so ``explain`` can show
*why* an HPA wants the replicas it wants:

1. Each metric's proposal (``replica_calculator.go``), in milli-units as the controller reads
   quantities (``Quantity.MilliValue()`` rounds up):

   - Pods / AverageValue: ``usage = sum(values) // len(values)`` (integer division) over pods
     with values; Pending pods are unready, Failed or deleting pods ignored; on a scale-up
     unready pods count as 0 and pods without a value as 0, on a scale-down pods without a
     value count as the target; if that flips the direction or lands inside the tolerance,
     nothing changes.
   - Object / Value and External / Value: ``ratio = usage / target``; inside the tolerance the
     current count stays, else ``ceil(ratio × ready pods)`` (pods Running *and* Ready); from 0
     replicas ``ceil(ratio)``. External values are summed.
   - Object / AverageValue and External / AverageValue: ``ceil(usage / target)`` unless
     ``usage / (target × status replicas)`` is inside the tolerance.
   - Resource and ContainerResource come from metrics.k8s.io, which this adapter does not
     serve: they are reported as not seen and left out.

2. The largest proposal wins; if every metric failed, or some failed and the rest would scale
   down, the HPA holds (``ScalingActive=False``).
3. Without ``behavior``: the highest recommendation of the downscale stabilization window
   (``--horizontal-pod-autoscaler-downscale-stabilization``, 300 s by default), then clamping
   to ``[minReplicas, min(maxReplicas, max(2 × current, 4))]``.
   With ``behavior``: per-direction stabilization windows, then the scaling policies applied
   to the scale events of each policy's period, then ``[minReplicas, maxReplicas]``.

Tolerance: ``behavior.scaleUp/scaleDown.tolerance`` (``HPAConfigurableTolerance``, beta and on
by default since 1.35) or the cluster-wide default 0.1. The controller keeps its
recommendations and scale events in memory: they are inputs here (:class:`History`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal, InvalidOperation
from typing import Any, Literal, cast

from adapter.domain.errors import BadRequestError

__all__ = [
    "DEFAULT_DOWNSCALE_STABILIZATION_S",
    "DEFAULT_TOLERANCE",
    "Behavior",
    "DescribedObject",
    "History",
    "HpaSpec",
    "MetricResult",
    "MetricSpec",
    "PodInfo",
    "Reading",
    "ScaleDecision",
    "ScaleEvent",
    "ScalingPolicy",
    "ScalingRules",
    "Tolerances",
    "decide",
    "parse_hpa",
    "parse_quantity_milli",
]

DEFAULT_TOLERANCE = 0.1
"""``--horizontal-pod-autoscaler-tolerance`` default."""
DEFAULT_DOWNSCALE_STABILIZATION_S = 300
"""``--horizontal-pod-autoscaler-downscale-stabilization`` default, seconds."""

_INT32_MAX = 2**31 - 1
_INT64_MAX = 2**63 - 1
_SCALE_UP_LIMIT_FACTOR = 2.0
_SCALE_UP_LIMIT_MINIMUM = 4.0

MetricKind = Literal["Pods", "Object", "External", "Resource", "ContainerResource"]
TargetType = Literal["Value", "AverageValue", "Utilization"]

_SUFFIX = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}


def parse_quantity_milli(text: object) -> int:
    """A Kubernetes quantity (``"500m"``, ``"10"``, ``"1.5k"``, ``"2Gi"``, ``"1e3"``, or a JSON
    number) in milli-units, rounded up like ``Quantity.MilliValue()``. Raises BadRequestError."""
    if isinstance(text, bool) or not isinstance(text, str | int | float):
        raise BadRequestError(f"not a quantity: {text!r}")
    s = str(text).strip()
    number, suffix = s, ""
    for candidate in sorted(_SUFFIX, key=len, reverse=True):
        if candidate and s.endswith(candidate) and not s.endswith("e" + candidate):
            number, suffix = s[: -len(candidate)], candidate
            break
    try:
        value = Decimal(number) * _SUFFIX[suffix]
    except InvalidOperation:
        raise BadRequestError(f"not a quantity: {text!r}") from None
    if not value.is_finite():
        raise BadRequestError(f"not a quantity: {text!r}")
    milli = int((value * 1000).to_integral_value(rounding=ROUND_CEILING))
    return max(-_INT64_MAX, min(_INT64_MAX, milli))


# --------------------------------------------------------------------------- spec


@dataclass(frozen=True, slots=True)
class DescribedObject:
    kind: str
    name: str
    api_version: str = ""


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """One ``spec.metrics[]`` entry. Targets are milli-units; ``utilization`` is percent."""

    kind: MetricKind
    name: str
    target_type: TargetType
    target_milli: int | None = None
    utilization: int | None = None
    selector: Mapping[str, Any] | None = None
    described: DescribedObject | None = None


@dataclass(frozen=True, slots=True)
class ScalingPolicy:
    type: Literal["Pods", "Percent"]
    value: int
    period_seconds: int


@dataclass(frozen=True, slots=True)
class ScalingRules:
    """``stabilization_window_seconds`` ``None`` means the controller's default (scale-down)."""

    stabilization_window_seconds: int | None
    select_policy: Literal["Max", "Min", "Disabled"]
    policies: tuple[ScalingPolicy, ...]
    tolerance: float | None = None


@dataclass(frozen=True, slots=True)
class Behavior:
    scale_up: ScalingRules
    scale_down: ScalingRules


@dataclass(frozen=True, slots=True)
class HpaSpec:
    namespace: str
    name: str
    target: DescribedObject
    min_replicas: int
    max_replicas: int
    metrics: tuple[MetricSpec, ...]
    behavior: Behavior | None = None


def _default_scale_up() -> ScalingRules:
    # The API server's defaults (SetDefaults_HorizontalPodAutoscalerBehavior).
    return ScalingRules(0, "Max", (ScalingPolicy("Pods", 4, 15), ScalingPolicy("Percent", 100, 15)))


def _default_scale_down() -> ScalingRules:
    return ScalingRules(None, "Max", (ScalingPolicy("Percent", 100, 15),))


def _rules(raw: Mapping[str, Any] | None, default: ScalingRules) -> ScalingRules:
    if not raw:
        return default
    policies = tuple(
        ScalingPolicy(
            type="Pods" if p.get("type") == "Pods" else "Percent",
            value=int(p.get("value", 0)),
            period_seconds=int(p.get("periodSeconds", 0)),
        )
        for p in raw.get("policies") or ()
    )
    window = raw.get("stabilizationWindowSeconds")
    tolerance = raw.get("tolerance")
    select = raw.get("selectPolicy") or "Max"
    if select not in {"Max", "Min", "Disabled"}:
        raise BadRequestError(f"unknown selectPolicy {select!r}")
    return ScalingRules(
        stabilization_window_seconds=default.stabilization_window_seconds
        if window is None
        else int(window),
        select_policy=cast(Literal["Max", "Min", "Disabled"], select),
        policies=policies or default.policies,
        tolerance=None if tolerance is None else parse_quantity_milli(tolerance) / 1000,
    )


def _target(raw: Mapping[str, Any], where: str) -> tuple[TargetType, int | None, int | None]:
    kind = raw.get("type")
    if kind == "Value" and raw.get("value") is not None:
        return "Value", parse_quantity_milli(raw["value"]), None
    if kind == "AverageValue" and raw.get("averageValue") is not None:
        return "AverageValue", parse_quantity_milli(raw["averageValue"]), None
    if kind == "Utilization" and raw.get("averageUtilization") is not None:
        return "Utilization", None, int(raw["averageUtilization"])
    raise BadRequestError(f"{where}: target type {kind!r} without its value")


def _metric(raw: Mapping[str, Any], index: int) -> MetricSpec:
    kind = raw.get("type")
    where = f"spec.metrics[{index}]"
    if kind in {"Resource", "ContainerResource"}:
        source = raw.get("resource" if kind == "Resource" else "containerResource") or {}
        ttype, milli, util = _target(source.get("target") or {}, where)
        return MetricSpec(kind, str(source.get("name", "")), ttype, milli, util)
    if kind not in {"Pods", "Object", "External"}:
        raise BadRequestError(f"{where}: unknown metric type {kind!r}")
    source = raw.get(str(kind).lower()) or {}
    metric = source.get("metric") or {}
    ttype, milli, util = _target(source.get("target") or {}, where)
    described = None
    if kind == "Object":
        obj = source.get("describedObject") or {}
        described = DescribedObject(
            str(obj.get("kind", "")), str(obj.get("name", "")), str(obj.get("apiVersion", ""))
        )
    return MetricSpec(
        kind,
        str(metric.get("name", "")),
        ttype,
        milli,
        util,
        selector=metric.get("selector"),
        described=described,
    )


def parse_hpa(obj: Mapping[str, Any]) -> HpaSpec:
    """An ``autoscaling/v2`` HorizontalPodAutoscaler (JSON) to :class:`HpaSpec`."""
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    ref = spec.get("scaleTargetRef") or {}
    raw_behavior = spec.get("behavior")
    behavior = None
    if raw_behavior is not None:
        behavior = Behavior(
            scale_up=_rules(raw_behavior.get("scaleUp"), _default_scale_up()),
            scale_down=_rules(raw_behavior.get("scaleDown"), _default_scale_down()),
        )
    min_replicas = spec.get("minReplicas")
    return HpaSpec(
        namespace=str(meta.get("namespace", "")),
        name=str(meta.get("name", "")),
        target=DescribedObject(
            str(ref.get("kind", "")), str(ref.get("name", "")), str(ref.get("apiVersion", ""))
        ),
        min_replicas=1 if min_replicas is None else int(min_replicas),
        max_replicas=int(spec.get("maxReplicas", 0)),
        metrics=tuple(_metric(m, i) for i, m in enumerate(spec.get("metrics") or ())),
        behavior=behavior,
    )


# --------------------------------------------------------------------------- inputs


@dataclass(frozen=True, slots=True)
class PodInfo:
    """A pod matching the scale target's selector. ``phase`` as in ``status.phase``."""

    name: str
    phase: str = "Running"
    ready: bool = True
    deleting: bool = False


@dataclass(frozen=True, slots=True)
class Reading:
    """What the metrics API answered for one metric, in milli-units.

    Pods: ``per_pod`` keyed by pod name. Object: ``values`` holds the one value. External:
    ``values`` holds every item (they are summed). ``error`` when the fetch failed;
    ``seen=False`` when the value could not be read here at all (Resource metrics).
    """

    per_pod: Mapping[str, int] = field(default_factory=dict)
    values: tuple[int, ...] = ()
    error: str | None = None
    seen: bool = True


@dataclass(frozen=True, slots=True)
class ScaleEvent:
    """A rescale the controller made ``age_seconds`` ago; ``change`` is positive."""

    change: int
    age_seconds: float


@dataclass(frozen=True, slots=True)
class History:
    """The controller's memory: its unstabilized recommendations and its scale events."""

    recommendations: tuple[tuple[int, float], ...] = ()
    """(replicas, age in seconds)."""
    scale_up_events: tuple[ScaleEvent, ...] = ()
    scale_down_events: tuple[ScaleEvent, ...] = ()


@dataclass(frozen=True, slots=True)
class Tolerances:
    scale_down: float = DEFAULT_TOLERANCE
    scale_up: float = DEFAULT_TOLERANCE

    def within(self, ratio: float) -> bool:
        return (1.0 - self.scale_down) <= ratio <= (1.0 + self.scale_up)


# --------------------------------------------------------------------------- outputs


@dataclass(slots=True)
class MetricResult:
    """One metric's part of the decision. ``usage_milli`` is what the HPA puts in its status
    (the average for Pods and AverageValue targets, the value or sum otherwise)."""

    index: int
    kind: MetricKind
    name: str
    target_type: TargetType
    target_milli: int | None
    usage_milli: int | None = None
    ratio: float | None = None
    proposal: int | None = None
    ready_pods: int | None = None
    missing_pods: tuple[str, ...] = ()
    unready_pods: tuple[str, ...] = ()
    ignored_pods: tuple[str, ...] = ()
    reason: str = ""
    error: str | None = None
    seen: bool = True


@dataclass(slots=True)
class ScaleDecision:
    """The outcome. ``reason`` is condition-like (``ScaleUpLimit``, ``TooManyReplicas``,
    ``DesiredWithinRange``, ``ScaleDownStabilized``, ``FailedGetExternalMetric`` …)."""

    current_replicas: int
    min_replicas: int
    max_replicas: int
    metrics: list[MetricResult]
    metric_desired: int | None
    metric_name: str
    stabilized: int | None
    desired: int
    reason: str
    message: str
    able_to_scale: str = ""
    scaling_limited: str = ""
    scaling_active: bool = True
    notes: list[str] = field(default_factory=list)


# --------------------------------------------------------------------------- per metric


class _MetricError(Exception):
    pass


def _go_div(a: int, b: int) -> int:
    """Go integer division truncates toward zero."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


def _usage_ratio(metrics: Mapping[str, int], target: int) -> tuple[float, int]:
    usage = _go_div(sum(metrics.values()), len(metrics))
    return (usage / target if target else math.inf), usage


def _ceil_int32(x: float) -> int:
    if math.isnan(x):
        return 0
    return _INT32_MAX if x > _INT32_MAX else math.ceil(x)


@dataclass(frozen=True, slots=True)
class _PodGroups:
    """``groupPods`` for a non-CPU metric: the pods counted, and those set aside."""

    ready: int
    unready: tuple[str, ...]
    missing: tuple[str, ...]
    ignored: tuple[str, ...]


def _group_pods(pods: Sequence[PodInfo], per_pod: Mapping[str, int]) -> _PodGroups:
    """Failed or deleting pods are ignored, Pending ones unready, Running ones without a value
    missing; readiness is only checked for CPU, so a Running pod with a value counts."""
    ready = 0
    unready: list[str] = []
    missing: list[str] = []
    ignored: list[str] = []
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.append(pod.name)
        elif pod.phase == "Pending":
            unready.append(pod.name)
        elif pod.name not in per_pod:
            missing.append(pod.name)
        else:
            ready += 1
    return _PodGroups(ready, tuple(unready), tuple(missing), tuple(ignored))


def _pods_proposal(
    result: MetricResult,
    reading: Reading,
    pods: Sequence[PodInfo],
    *,
    current: int,
    target: int,
    tol: Tolerances,
) -> int:
    """``calcPlainMetricReplicas`` with ``groupPods`` for a non-CPU metric."""
    if not pods:
        raise _MetricError("no pods returned by selector while calculating replica count")
    groups = _group_pods(pods, reading.per_pod)
    metrics = dict(reading.per_pod)
    for name in (*groups.ignored, *groups.unready):
        metrics.pop(name, None)
    result.ready_pods = groups.ready
    result.missing_pods, result.unready_pods = groups.missing, groups.unready
    result.ignored_pods = groups.ignored
    if not metrics:
        raise _MetricError("did not receive metrics for targeted pods (pods might be unready)")
    ratio, usage = _usage_ratio(metrics, target)
    result.usage_milli, result.ratio = usage, ratio
    up_with_unready = bool(groups.unready) and ratio > 1.0
    if not up_with_unready and not groups.missing:
        if tol.within(ratio):
            result.reason = "within tolerance"
            return current
        result.reason = f"ceil({ratio:.4f} × {groups.ready} pods with values)"
        return math.ceil(ratio * groups.ready)
    return _rebalanced_proposal(
        result,
        metrics,
        groups,
        ratio,
        up_with_unready=up_with_unready,
        current=current,
        target=target,
        tol=tol,
    )


def _rebalanced_proposal(
    result: MetricResult,
    metrics: dict[str, int],
    groups: _PodGroups,
    ratio: float,
    *,
    up_with_unready: bool,
    current: int,
    target: int,
    tol: Tolerances,
) -> int:
    """The rest of ``calcPlainMetricReplicas``: pods without values count as the target on a
    scale-down and as 0 on a scale-up, unready pods as 0 on a scale-up; if the ratio then lands
    inside the tolerance, or the direction flips, nothing changes."""
    if groups.missing and ratio != 1.0:
        fill = target if ratio < 1.0 else 0
        for name in groups.missing:
            metrics[name] = fill
    if up_with_unready:
        for name in groups.unready:
            metrics[name] = 0
    new_ratio, _ = _usage_ratio(metrics, target)
    if tol.within(new_ratio) or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        result.reason = (
            f"ratio {ratio:.4f} becomes {new_ratio:.4f} once pods without values or unready"
            " pods are counted: within tolerance or the direction flips, so no change"
        )
        return current
    proposal = math.ceil(new_ratio * len(metrics))
    if (new_ratio < 1.0 and proposal > current) or (new_ratio > 1.0 and proposal < current):
        result.reason = "the pod count would flip the direction: no change"
        return current
    result.reason = (
        f"ceil({new_ratio:.4f} × {len(metrics)} pods) counting pods without values as"
        f" {'the target' if ratio < 1.0 else '0'}"
        + (" and unready pods as 0" if up_with_unready else "")
    )
    return proposal


def _ready_count(pods: Sequence[PodInfo]) -> int:
    if not pods:
        raise _MetricError(
            "unable to calculate ready pods: no pods returned by selector while calculating"
            " replica count"
        )
    return sum(1 for p in pods if p.phase == "Running" and p.ready)


def _ratio_proposal(
    result: MetricResult, ratio: float, pods: Sequence[PodInfo], *, current: int, tol: Tolerances
) -> int:
    """``getUsageRatioReplicaCount``: Value targets of Object and External metrics."""
    if current != 0:
        if tol.within(ratio):
            result.reason = "within tolerance"
            return current
        ready = _ready_count(pods)
        result.ready_pods = ready
        result.reason = f"ceil({ratio:.4f} × {ready} ready pods)"
        return _ceil_int32(ratio * ready)
    result.reason = f"from 0 replicas: ceil({ratio:.4f})"
    return _ceil_int32(ratio)


def _per_pod_proposal(
    result: MetricResult, usage: int, target: int, *, status_replicas: int, tol: Tolerances
) -> int:
    """``GetObjectPerPodMetricReplicas`` / ``GetExternalPerPodMetricReplicas``."""
    denominator = target * status_replicas
    ratio = usage / denominator if denominator else (math.inf if usage else math.nan)
    result.ratio = ratio
    result.usage_milli = math.ceil(usage / status_replicas) if status_replicas else usage
    if tol.within(ratio):
        result.reason = f"sum / (target × {status_replicas} replicas) within tolerance"
        return status_replicas
    result.reason = f"ceil(sum {usage}m / target {target}m)"
    return _ceil_int32(usage / target) if target else _INT32_MAX


def _sum_capped(values: Sequence[int]) -> int:
    total = 0
    for v in values:
        if v > 0 and total > _INT64_MAX - v:
            return _INT64_MAX
        total += v
    return total


def _one_metric(
    spec: MetricSpec,
    reading: Reading,
    result: MetricResult,
    pods: Sequence[PodInfo],
    *,
    spec_replicas: int,
    status_replicas: int,
    tol: Tolerances,
) -> int:
    target = spec.target_milli
    if spec.kind == "Pods":
        if spec.target_type != "AverageValue" or target is None:
            raise _MetricError("a Pods metric needs an AverageValue target")
        return _pods_proposal(result, reading, pods, current=spec_replicas, target=target, tol=tol)
    if target is None or spec.target_type == "Utilization":
        raise _MetricError(
            f"invalid {spec.kind.lower()} metric source: neither a value target nor an average"
            " value target was set"
        )
    if spec.kind == "Object":
        if len(reading.values) != 1:
            raise _MetricError(f"expected one value for the object, got {len(reading.values)}")
        usage = reading.values[0]
    else:
        usage = _sum_capped(reading.values)
    if spec.target_type == "Value":
        result.usage_milli = usage
        ratio = usage / target if target else math.inf
        result.ratio = ratio
        return _ratio_proposal(result, ratio, pods, current=spec_replicas, tol=tol)
    return _per_pod_proposal(result, usage, target, status_replicas=status_replicas, tol=tol)


_FAILED_REASON = {
    "Pods": "FailedGetPodsMetric",
    "Object": "FailedGetObjectMetric",
    "External": "FailedGetExternalMetric",
    "Resource": "FailedGetResourceMetric",
    "ContainerResource": "FailedGetContainerResourceMetric",
}


def _metric_label(spec: MetricSpec) -> str:
    if spec.kind == "Pods":
        return f"pods metric {spec.name}"
    if spec.kind == "Object":
        kind = spec.described.kind if spec.described else "object"
        return f"{kind} metric {spec.name}"
    return f"{spec.kind.lower()} metric {spec.name}"


# --------------------------------------------------------------------------- normalization


def _changes_in_period(period: int, events: Sequence[ScaleEvent]) -> int:
    return sum(e.change for e in events if e.age_seconds < period)


def _policy_limit(current: int, history: History, rules: ScalingRules, *, up: bool) -> int:
    """The bound the behavior's policies put on one sync's move from ``current`` (the controller's
    calculateScaleUpLimitWithScalingRules and calculateScaleDownLimitWithBehaviors): each policy
    proposes one from the replicas at the start of its period; selectPolicy Max takes the most
    permissive proposal (the largest going up, the smallest going down), Min the least."""
    if rules.select_policy == "Disabled":
        return current
    permissive, strict = (max, min) if up else (min, max)
    pick = strict if rules.select_policy == "Min" else permissive
    result: int | None = None
    for policy in rules.policies:
        added = _changes_in_period(policy.period_seconds, history.scale_up_events)
        deleted = _changes_in_period(policy.period_seconds, history.scale_down_events)
        start = current - added + deleted
        if policy.type == "Pods":
            proposed = start + policy.value if up else start - policy.value
        elif up:
            proposed = math.ceil(start * (1 + policy.value / 100))
        else:
            proposed = int(start * (1 - policy.value / 100))
        result = proposed if result is None else pick(result, proposed)
    return result if result is not None else (2**31 - 1 if pick is min else -(2**31))


def _normalize_plain(
    decision: ScaleDecision, desired: int, history: History, *, window: float
) -> int:
    current = decision.current_replicas
    stabilized = desired
    for replicas, age in history.recommendations:
        if age <= window and replicas > stabilized:
            stabilized = replicas
    decision.stabilized = stabilized
    decision.able_to_scale = "ScaleDownStabilized" if stabilized != desired else "ReadyForNewScale"
    scale_up_limit = int(max(_SCALE_UP_LIMIT_FACTOR * current, _SCALE_UP_LIMIT_MINIMUM))
    if decision.max_replicas > scale_up_limit:
        maximum, limit_reason = scale_up_limit, "ScaleUpLimit"
    else:
        maximum, limit_reason = decision.max_replicas, "TooManyReplicas"
    if stabilized < decision.min_replicas:
        decision.scaling_limited = "TooFewReplicas"
        return decision.min_replicas
    if stabilized > maximum:
        decision.scaling_limited = limit_reason
        return maximum
    decision.scaling_limited = "DesiredWithinRange"
    return stabilized


def _normalize_behavior(
    decision: ScaleDecision, desired: int, history: History, behavior: Behavior, *, window: float
) -> int:
    current = decision.current_replicas
    up_window = behavior.scale_up.stabilization_window_seconds or 0
    down = behavior.scale_down.stabilization_window_seconds
    down_window = window if down is None else down
    up_rec, down_rec = desired, desired
    for replicas, age in history.recommendations:
        if age < up_window:
            up_rec = min(up_rec, replicas)
        if age < down_window:
            down_rec = max(down_rec, replicas)
    stabilized = min(max(current, up_rec), down_rec)
    decision.stabilized = stabilized
    if stabilized != desired:
        decision.able_to_scale = (
            "ScaleUpStabilized" if desired >= current else "ScaleDownStabilized"
        )
    else:
        decision.able_to_scale = "ReadyForNewScale"
    if stabilized > current:
        limit = max(_policy_limit(current, history, behavior.scale_up, up=True), current)
        if decision.max_replicas > limit:
            maximum, reason = limit, "ScaleUpLimit"
        else:
            maximum, reason = decision.max_replicas, "TooManyReplicas"
        if stabilized > maximum:
            decision.scaling_limited = reason
            return maximum
    elif stabilized < current:
        limit = min(_policy_limit(current, history, behavior.scale_down, up=False), current)
        if decision.min_replicas < limit:
            minimum, reason = limit, "ScaleDownLimit"
        else:
            minimum, reason = decision.min_replicas, "TooFewReplicas"
        if stabilized < minimum:
            decision.scaling_limited = reason
            return minimum
    decision.scaling_limited = "DesiredWithinRange"
    return stabilized


_MESSAGES = {
    "ScaleUpLimit": "the desired replica count is increasing faster than the maximum scale rate",
    "ScaleDownLimit": "the desired replica count is decreasing faster than the maximum scale rate",
    "TooManyReplicas": "the desired replica count is more than the maximum replica count",
    "TooFewReplicas": "the desired replica count is less than the minimum replica count",
    "ScaleDownStabilized": "recent recommendations were higher than current one, applying the"
    " highest recent recommendation",
    "ScaleUpStabilized": "recent recommendations were lower than current one, applying the"
    " lowest recent recommendation",
    "DesiredWithinRange": "the desired count is within the acceptable range",
}


# --------------------------------------------------------------------------- decide


def _tolerances(behavior: Behavior | None, default: float) -> Tolerances:
    """``behavior.scaleUp/scaleDown.tolerance`` where set, else the controller's flag."""
    down = behavior.scale_down.tolerance if behavior else None
    up = behavior.scale_up.tolerance if behavior else None
    return Tolerances(
        scale_down=default if down is None else down,
        scale_up=default if up is None else up,
    )


def _metric_result(
    index: int,
    spec: MetricSpec,
    reading: Reading,
    pods: Sequence[PodInfo],
    *,
    spec_replicas: int,
    status_replicas: int,
    tol: Tolerances,
) -> MetricResult:
    """``computeReplicasForMetric``: one metric's proposal, or why it has none."""
    result = MetricResult(index, spec.kind, spec.name, spec.target_type, spec.target_milli)
    if spec.kind in {"Resource", "ContainerResource"} or not reading.seen:
        result.seen = False
        result.reason = "not served by this adapter (metrics.k8s.io): left out of this explanation"
        return result
    if reading.error is not None:
        result.error = reading.error
        result.reason = _FAILED_REASON[spec.kind]
        return result
    try:
        result.proposal = _one_metric(
            spec,
            reading,
            result,
            pods,
            spec_replicas=spec_replicas,
            status_replicas=status_replicas,
            tol=tol,
        )
    except _MetricError as exc:
        result.error = str(exc)
        result.reason = _FAILED_REASON[spec.kind]
    return result


def _outside_range(decision: ScaleDecision) -> bool:
    """``reconcileAutoscaler``'s checks before the metrics count: a target scaled to zero is not
    autoscaled, and replicas outside ``[minReplicas, maxReplicas]`` go to the bound."""
    current = decision.current_replicas
    if current == 0 and decision.min_replicas != 0:
        decision.scaling_active = False
        decision.reason = "ScalingDisabled"
        decision.message = "scaling is disabled since the replica count of the target is zero"
        return True
    if current > decision.max_replicas:
        decision.desired = decision.max_replicas
        decision.reason = "TooManyReplicas"
        decision.message = "Current number of replicas above Spec.MaxReplicas"
        return True
    if current < decision.min_replicas:
        decision.desired = decision.min_replicas
        decision.reason = "TooFewReplicas"
        decision.message = "Current number of replicas below Spec.MinReplicas"
        return True
    return False


def _largest_proposal(spec: HpaSpec, valid: Sequence[MetricResult]) -> tuple[int, str]:
    """The largest proposal and the metric making it (the first one, on a tie)."""
    replicas, name = 0, ""
    for m in valid:
        assert m.proposal is not None
        if replicas == 0 or m.proposal > replicas:
            replicas, name = m.proposal, _metric_label(spec.metrics[m.index])
    return replicas, name


def _replicas_for_metrics(decision: ScaleDecision, spec: HpaSpec) -> int | None:
    """``computeReplicasForMetrics``: the largest proposal, or ``None`` when the HPA holds
    (``ScalingActive=False``): no metric seen here, every metric failed, or some failed and the
    others would scale down."""
    considered = [m for m in decision.metrics if m.seen]
    invalid = [m for m in considered if m.error is not None]
    replicas, name = _largest_proposal(spec, [m for m in considered if m.error is None])
    if not considered:
        decision.reason = "NoServedMetrics"
        decision.message = "no metric this adapter serves: cannot explain this HPA"
        decision.scaling_active = False
        return None
    if invalid and (len(invalid) >= len(considered) or replicas < decision.current_replicas):
        first = invalid[0]
        decision.scaling_active = False
        decision.reason = first.reason
        decision.message = (
            f"invalid metrics ({len(invalid)} invalid out of {len(considered)}), first error is:"
            f" {first.error}; the HPA holds at {decision.current_replicas}"
        )
        return None
    decision.metric_desired, decision.metric_name = replicas, name
    if invalid:
        decision.notes.append(
            f"{len(invalid)} metric(s) failed; the others ask for more replicas, so it scales"
        )
    return replicas


def _condition_reason(decision: ScaleDecision) -> str:
    """The condition that explains the outcome: a limit first, then a stabilization."""
    if decision.scaling_limited != "DesiredWithinRange":
        return decision.scaling_limited
    if decision.able_to_scale != "ReadyForNewScale":
        return decision.able_to_scale
    return "DesiredWithinRange"


def decide(
    spec: HpaSpec,
    *,
    spec_replicas: int,
    status_replicas: int | None = None,
    pods: Sequence[PodInfo] = (),
    readings: Sequence[Reading] = (),
    history: History | None = None,
    default_tolerance: float = DEFAULT_TOLERANCE,
    downscale_stabilization_s: float = DEFAULT_DOWNSCALE_STABILIZATION_S,
) -> ScaleDecision:
    """What the HPA controller would set ``spec.replicas`` of the target to, and why.

    ``spec_replicas``/``status_replicas``: the scale subresource's ``spec.replicas`` and
    ``status.replicas``; ``readings[i]`` belongs to ``spec.metrics[i]``. Pure: no I/O, no clock.

    The steps are the controller's: each metric's proposal (``computeReplicasForMetric``), the
    range checks of ``reconcileAutoscaler``, the largest proposal or the hold when metrics fail
    (``computeReplicasForMetrics``), then ``normalizeDesiredReplicas`` (no ``behavior``) or
    ``normalizeDesiredReplicasWithBehaviors``.
    """
    if len(readings) != len(spec.metrics):
        raise ValueError("one reading per metric is required")
    history = history or History()
    status_replicas = spec_replicas if status_replicas is None else status_replicas
    tol = _tolerances(spec.behavior, default_tolerance)
    decision = ScaleDecision(
        current_replicas=spec_replicas,
        min_replicas=spec.min_replicas,
        max_replicas=spec.max_replicas,
        metrics=[
            _metric_result(
                i,
                metric,
                reading,
                pods,
                spec_replicas=spec_replicas,
                status_replicas=status_replicas,
                tol=tol,
            )
            for i, (metric, reading) in enumerate(zip(spec.metrics, readings, strict=True))
        ],
        metric_desired=None,
        metric_name="",
        stabilized=None,
        desired=spec_replicas,
        reason="",
        message="",
    )
    unseen = [m for m in decision.metrics if not m.seen]
    if unseen:
        decision.notes.append(
            f"{len(unseen)} metric(s) of type Resource/ContainerResource were not seen: the real"
            " HPA also weighs them, so it may want more replicas than shown"
        )
    if _outside_range(decision):
        return decision
    replicas = _replicas_for_metrics(decision, spec)
    if replicas is None:
        return decision
    window = float(downscale_stabilization_s)
    if spec.behavior is None:
        decision.desired = _normalize_plain(decision, replicas, history, window=window)
    else:
        decision.desired = _normalize_behavior(
            decision, replicas, history, spec.behavior, window=window
        )
    decision.reason = _condition_reason(decision)
    decision.message = _MESSAGES.get(decision.reason, "")
    return decision
