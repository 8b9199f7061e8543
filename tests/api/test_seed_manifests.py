"""Every HPA manifest in deploy/examples (the seed's HPAs) works unchanged (PromQL mode).

For each HPA (:mod:`tests.support.seed`): the exact requests the HPA controller makes, the values
answered for known data in the PromQL-evaluating fake, and the replica count the HPA formula
gives. The same table runs against the local Cloud Monitoring gRPC server in
tests/integration/test_cloud_monitoring.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from adapter.rules.loader import load_rules
from adapter.rules.stackdriver import StackdriverOptions
from adapter.serving.asgi import build_context
from adapter.settings import Settings
from sim.fake_backend import FakeBackend
from tests.support.app import client_for
from tests.support.fake_fleet import fleet_series
from tests.support.seed import CHIPS, EXPECTED, Pods, hpa_documents, replicas_for, seed_series


def test_every_example_hpa_is_in_the_table() -> None:
    assert {name for name, _ in hpa_documents()} == set(EXPECTED)


@pytest.mark.parametrize(("filename", "hpa"), hpa_documents(), ids=lambda v: str(v)[:40])
async def test_seed_hpa_promql_mode(fake: FakeBackend, filename: str, hpa: dict[str, Any]) -> None:
    fake.set_series(fleet_series() + seed_series(time.time() - 2))
    rules = load_rules(None, stackdriver=StackdriverOptions(mode="promql"))
    ctx = build_context(
        Settings.from_options(cluster="c1", standalone=True),
        backend=fake,
        rules=rules,
        objects=Pods(),
    )
    ctx.backend_ready = True
    async with await client_for(ctx) as client:
        replicas, values = await replicas_for(client.get, hpa)
    assert replicas == EXPECTED[filename], values


async def test_stackdriver_memory_used_selector_pins_exported_namespace(fake: FakeBackend) -> None:
    """The TPU HPA's selector reads kube-system series of its own namespace, and only those."""
    fake.set_series(fleet_series() + seed_series(time.time() - 2))
    rules = load_rules(None, stackdriver=StackdriverOptions(mode="promql"))
    ctx = build_context(
        Settings.from_options(cluster="c1", standalone=True), backend=fake, rules=rules
    )
    ctx.backend_ready = True
    base = "/apis/external.metrics.k8s.io/v1beta1/namespaces"
    name = "prometheus.googleapis.com|memory_used|gauge"
    sel = "metric.labels.container=jetstream-http,metric.labels.exported_namespace=default"
    async with await client_for(ctx) as client:
        ok = await client.get(f"{base}/default/{name}", params={"labelSelector": sel})
        other = await client.get(f"{base}/team-a/{name}", params={"labelSelector": sel})
        unpinned = await client.get(
            f"{base}/default/{name}",
            params={"labelSelector": "metric.labels.container=jetstream-http"},
        )
    assert ok.status_code == 200
    assert len(ok.json()["items"]) == CHIPS
    assert other.status_code == 403, other.text
    # Without the pin the request namespace is injected: the device plugin's series live in
    # kube-system, so nothing matches in default.
    assert unpinned.status_code == 200
    assert unpinned.json()["items"] == []
