from __future__ import annotations

import math

from adapter.core.translate import (
    custom_list,
    external_list,
    format_timestamp,
    kind_for,
    label_selector_object,
    restamp,
    samples_to_custom,
    samples_to_external,
)
from adapter.domain.models import GroupResource, Requirement, Sample

NOW = 1_764_000_000.0


def s(value: float, ts: float = NOW - 3, **labels: str) -> Sample:
    return Sample(labels=labels, value=value, timestamp=ts)


def test_custom_values_keyed_by_first_non_empty_object_label() -> None:
    samples = [s(1.5, pod="p1", id="x"), s(2.0, pod="", id="p2"), s(3.0, other="y")]
    values, dropped = samples_to_custom(
        samples, metric="m", resource=GroupResource("pods"), namespace="ns",
        object_labels=("pod", "id"), object_names=None, window=None, now=NOW,
    )  # fmt: skip
    assert [(v.described.name if v.described else "", v.value) for v in values] == [
        ("p1", 1.5),
        ("p2", 2.0),
    ]
    assert [d.reason for d in dropped] == ["no-object-label"]


def test_custom_drops_non_finite_old_unselected_and_duplicates() -> None:
    samples = [
        s(math.nan, pod="a"),
        s(math.inf, pod="b"),
        s(-math.inf, pod="c"),
        s(1, ts=NOW - 600, pod="d"),
        s(1, pod="e"),
        s(2, pod="f"),
        s(3, pod="f"),
        s(4, pod="g"),
    ]
    values, dropped = samples_to_custom(
        samples, metric="m", resource=GroupResource("pods"), namespace="ns",
        object_labels=("pod",), object_names=["a", "b", "c", "d", "f", "g"], window=60,
        now=NOW, max_age=300,
    )  # fmt: skip
    assert [v.described.name for v in values if v.described] == ["g"]
    assert sorted(d.reason for d in dropped) == sorted(
        ["non-finite"] * 3 + ["too-old", "not-selected", "duplicate", "duplicate"]
    )


def test_v1beta1_and_v1beta2_shapes() -> None:
    values, _ = samples_to_custom(
        [s(0.25, pod="p1")], metric="m", resource=GroupResource("pods"), namespace="ns",
        object_labels=("pod",), object_names=None, window=60, now=NOW,
    )  # fmt: skip
    sel = (Requirement("idx", "in", ("0", "1")),)
    v1 = custom_list(values, version="v1beta1", selector=sel)
    v2 = custom_list(values, version="v1beta2", selector=sel)
    described = {"kind": "Pod", "namespace": "ns", "name": "p1", "apiVersion": "v1"}
    ts = format_timestamp(NOW - 3)
    selector = {"matchExpressions": [{"key": "idx", "operator": "In", "values": ["0", "1"]}]}
    assert v1 == {
        "kind": "MetricValueList",
        "apiVersion": "custom.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {"describedObject": described, "metricName": "m", "timestamp": ts, "window": 60,
             "value": "250m", "selector": selector}
        ],
    }  # fmt: skip
    assert v2["apiVersion"] == "custom.metrics.k8s.io/v1beta2"
    assert v2["items"] == [
        {"describedObject": described, "metric": {"name": "m", "selector": selector},
         "timestamp": ts, "windowSeconds": 60, "value": "250m"}
    ]  # fmt: skip
    no_selector = custom_list(values, version="v1beta2")
    assert no_selector["items"][0]["metric"] == {"name": "m"}
    assert custom_list(values, version="v1beta1")["items"][0]["selector"] is None


def test_external_shape_and_labels() -> None:
    values, dropped = samples_to_external(
        [s(7, __name__="x", cluster="c"), s(math.nan, cluster="d")],
        metric="x",
        window=None,
        now=NOW,
    )
    body = external_list(values)
    assert body == {
        "kind": "ExternalMetricValueList",
        "apiVersion": "external.metrics.k8s.io/v1beta1",
        "metadata": {},
        "items": [
            {"metricName": "x", "metricLabels": {"cluster": "c"},
             "timestamp": format_timestamp(NOW - 3), "value": "7"}
        ],
    }  # fmt: skip
    assert [d.reason for d in dropped] == ["non-finite"]


def test_timestamp_is_rfc3339_utc() -> None:
    assert format_timestamp(0) == "1970-01-01T00:00:00Z"
    assert format_timestamp(1_700_000_000.9) == "2023-11-14T22:13:20Z"


def test_kinds() -> None:
    assert kind_for(GroupResource("deployments", "apps")) == ("Deployment", "apps/v1")
    assert kind_for(GroupResource("pods")) == ("Pod", "v1")
    assert kind_for(GroupResource("widgets", "example.com")) == ("Widget", "example.com/v1")


def test_kinds_come_from_the_resource_table() -> None:
    # Kinds whose names a plural cannot give, and the one version that is not v1.
    assert kind_for(GroupResource("configmaps")) == ("ConfigMap", "v1")
    assert kind_for(GroupResource("endpoints")) == ("Endpoints", "v1")
    assert kind_for(GroupResource("horizontalpodautoscalers", "autoscaling")) == (
        "HorizontalPodAutoscaler",
        "autoscaling/v2",
    )
    assert kind_for(GroupResource("leaderworkersets", "leaderworkerset.x-k8s.io")) == (
        "LeaderWorkerSet",
        "leaderworkerset.x-k8s.io/v1",
    )


def test_label_selector_object() -> None:
    reqs = (
        Requirement("a", "=", ("1",)),
        Requirement("b", "!=", ("2",)),
        Requirement("c", "exists"),
        Requirement("d", "!"),
        Requirement("e", "notin", ("x", "y")),
    )
    assert label_selector_object(reqs) == {
        "matchLabels": {"a": "1"},
        "matchExpressions": [
            {"key": "b", "operator": "NotIn", "values": ["2"]},
            {"key": "c", "operator": "Exists"},
            {"key": "d", "operator": "DoesNotExist"},
            {"key": "e", "operator": "NotIn", "values": ["x", "y"]},
        ],
    }
    assert label_selector_object(()) is None


def test_restamp_gives_values_the_time_of_their_data() -> None:
    from adapter.domain.models import QueryResult

    ev = NOW  # Prometheus stamps every result with the evaluation time
    result = QueryResult(
        query="q",
        samples=(
            s(1.0, ts=ev, pod="a", id="a", __lma_part="value"),
            s(2.0, ts=ev, pod="b", id="b", __lma_part="value"),
            s(3.0, ts=ev, pod="c", id="c", __lma_part="value"),
            s(NOW - 4, ts=ev, pod="a", id="a", __lma_part="ts"),
            s(NOW - 90, ts=ev, pod="b", id="b", __lma_part="ts"),
            s(math.nan, ts=ev, pod="c", id="c", __lma_part="ts"),
        ),
    )
    out = restamp(result, by=("pod", "id"))
    got = {x.labels["pod"]: (x.value, x.timestamp) for x in out.samples}
    # c has no usable freshness: it takes the oldest seen, never a younger age than the data has
    assert got == {"a": (1.0, NOW - 4), "b": (2.0, NOW - 90), "c": (3.0, NOW - 90)}
    assert all("__lma_part" not in x.labels for x in out.samples)


def test_restamp_without_freshness_keeps_evaluation_time() -> None:
    from adapter.domain.models import QueryResult

    result = QueryResult(query="q", samples=(s(1.0, ts=NOW, __lma_part="value"),))
    assert restamp(result, by=()).samples[0].timestamp == NOW
