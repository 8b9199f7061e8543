"""The seed's data (:mod:`tests.support.seed`) as Cloud Monitoring series, for the local
MetricService (:mod:`tests.support.cm_server`): the same values in project :data:`PROJECT`, with
Managed Prometheus' metric types (``prometheus.googleapis.com/<name>/gauge``); and the rules of
the Stackdriver-style names in ``cloud-monitoring`` mode for that project.
"""

from __future__ import annotations

import time
from typing import Any

from adapter.rules.loader import load_rules
from adapter.rules.stackdriver import StackdriverOptions
from tests.support.cm_server import Series
from tests.support.seed import BACKLOG, CHIPS, NAMESPACE, POD, SLOTS, TOTAL_PER_CHIP, USED_PER_CHIP

__all__ = ["PROJECT", "PROM", "cm_rules", "gauge", "seed_data", "target"]

PROJECT = "proj-1"
PROM = "prometheus.googleapis.com"


def target(cluster: str, namespace: str, project: str = PROJECT) -> dict[str, str]:
    return {
        "project_id": project,
        "location": "us-central2-b",
        "cluster": cluster,
        "namespace": namespace,
        "job": "js",
        "instance": "x:9100",
    }


def gauge(metric: str, labels: dict[str, str], resource: dict[str, str], value: float) -> Series:
    now = time.time()
    return Series(
        metric_type=f"{PROM}/{metric}/gauge",
        metric_labels=labels,
        resource_type="prometheus_target",
        resource_labels=resource,
        points=[(now - 90, value * 10), (now - 20, value)],  # the newest one must win
    )


def seed_data() -> list[Series]:
    """The seed's workload in ``default`` of cluster c1, plus the same names elsewhere."""
    out: list[Series] = []
    for cluster, backlog in (("c1", BACKLOG), ("c2", 1000.0)):
        labels = {"pod": POD, "id": POD}
        out.append(
            gauge("jetstream_prefill_backlog_size", labels, target(cluster, NAMESPACE), backlog)
        )
        for idx, slot in enumerate(SLOTS):
            out.append(
                gauge(
                    "jetstream_slots_used_percentage",
                    {**labels, "idx": str(idx)},
                    target(cluster, NAMESPACE),
                    slot,
                )
            )
    for chip in range(CHIPS):
        labels = {
            "exported_namespace": NAMESPACE,
            "exported_pod": POD,
            "container": "jetstream-http",
            "accelerator_id": str(chip),
        }
        out.append(gauge("memory_used", labels, target("c1", "kube-system"), USED_PER_CHIP))
        out.append(gauge("memory_total", labels, target("c1", "kube-system"), TOTAL_PER_CHIP))
    return out


def cm_rules(**kw: Any) -> Any:
    """The rules in ``cloud-monitoring`` mode for :data:`PROJECT`; ``kw`` are more options."""
    opts = StackdriverOptions(mode="cloud-monitoring", project=PROJECT, **kw)
    return load_rules(None, stackdriver=opts)
