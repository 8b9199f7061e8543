"""``/debug/hpa``, ``/debug/series`` and ``/debug/ui`` against the real app and the fake backend.

The Kubernetes side is a fake reader (the HPA, its scale and its pods as JSON); the metrics go
through the real provider, so the values are the ones the API serves: team-a in cluster c1 has
pods a-0 (backlog 3) and a-1 (backlog 5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from adapter.app.context import AppContext
from tests.support.app import AppFactory, client_for


def _hpa(
    metrics: list[dict[str, Any]], *, behavior: dict[str, Any] | None = None
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "server"},
        "minReplicas": 1,
        "maxReplicas": 10,
        "metrics": metrics,
    }
    if behavior is not None:
        spec["behavior"] = behavior
    return {
        "metadata": {"namespace": "team-a", "name": "server"},
        "spec": spec,
        "status": {"desiredReplicas": 4, "currentReplicas": 2},
    }


def _pod(name: str, *, ready: bool = True, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": "team-a", "labels": {"app": "server"}},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": str(ready)}]},
    }


@dataclass
class FakeKube:
    hpa: dict[str, Any]
    replicas: int = 2
    pods: tuple[dict[str, Any], ...] = (_pod("a-0"), _pod("a-1"))

    async def read_hpa(self, namespace: str, name: str) -> dict[str, Any]:
        assert (namespace, name) == ("team-a", "server")
        return self.hpa

    async def read_scale(self, namespace: str, kind: str, name: str) -> dict[str, Any]:
        assert (kind, name) == ("Deployment", "server")
        return {
            "spec": {"replicas": self.replicas},
            "status": {"replicas": self.replicas, "selector": "app=server"},
        }

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        assert selector == "app=server"
        return list(self.pods)


class Objects:
    """An object source that knows every pod and carries the Kubernetes reader."""

    def __init__(self, kube: FakeKube) -> None:
        self.client = kube

    async def names(
        self, resource: Any, namespace: str | None, selector: Any
    ) -> tuple[str, ...] | None:
        return tuple(p["metadata"]["name"] for p in self.client.pods)


async def _ctx(make_ctx: AppFactory, kube: FakeKube | None) -> AppContext:
    ctx = make_ctx(standalone=kube is None)
    if kube is not None:
        ctx.provider.objects = Objects(kube)
        ctx.hpa_reader = kube
    await ctx.registry.refresh()
    return ctx


EXTERNAL = {
    "type": "External",
    "external": {
        "metric": {"name": "jetstream_prefill_backlog_size"},
        "target": {"type": "AverageValue", "averageValue": "2"},
    },
}
PODS = {
    "type": "Pods",
    "pods": {
        "metric": {"name": "jetstream_prefill_backlog_size"},
        "target": {"type": "AverageValue", "averageValue": "3"},
    },
}


async def test_standalone_answers_400_explaining_kubernetes_is_needed(make_ctx: AppFactory) -> None:
    async with await client_for(await _ctx(make_ctx, None)) as c:
        r = await c.get("/debug/hpa/team-a/server")
    assert r.status_code == 400
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "BadRequest"
    assert "Kubernetes" in body["message"]


async def test_external_average_value_is_the_total_over_the_target(make_ctx: AppFactory) -> None:
    async with await client_for(await _ctx(make_ctx, FakeKube(_hpa([EXTERNAL])))) as c:
        r = await c.get("/debug/hpa/team-a/server")
    assert r.status_code == 200, r.text
    doc = r.json()
    m = doc["metrics"][0]
    # ceil(8 / 2) = 4 from 2 replicas: within max(2 × 2, 4).
    assert (m["current"], m["proposal"]) == ("4", 4)
    assert m["request"]["path"].endswith("/namespaces/team-a/jetstream_prefill_backlog_size")
    assert doc["decision"]["desiredReplicas"] == 4
    assert doc["decision"]["reason"] == "DesiredWithinRange"
    assert doc["controller"]["desiredReplicas"] == 4
    assert doc["unseen"]


async def test_each_metric_carries_its_freshness_budget_at_the_given_sync_period(
    make_ctx: AppFactory,
) -> None:
    async with await client_for(await _ctx(make_ctx, FakeKube(_hpa([EXTERNAL])))) as c:
        doc = (await c.get("/debug/hpa/team-a/server", params={"syncPeriod": "30"})).json()
    budget = doc["metrics"][0]["request"]["freshness"]
    ages = [i["ageSeconds"] for i in doc["metrics"][0]["request"]["items"]]
    assert budget["source"] != "scrape" and budget["hpaSyncSeconds"] == 30
    # Items carry ages rounded to ms, the budget to 10 ms: compare within one rounding step.
    assert abs(budget["valueAgeSeconds"] - max(ages)) <= 0.01
    reaction = budget["reactionSeconds"]
    assert 15 <= reaction["typical"] < reaction["worst"], budget  # at least half a 30 s sync
    assert any("30s sync period" in line for line in doc["unseen"])


async def test_pods_metric_goes_through_the_pods_route(make_ctx: AppFactory) -> None:
    kube = FakeKube(_hpa([PODS]))
    async with await client_for(await _ctx(make_ctx, kube)) as c:
        r = await c.get("/debug/hpa/team-a/server", params={"downscaleStabilization": "0"})
    doc = r.json()
    m = doc["metrics"][0]
    # mean 4 over target 3: ratio 1.3333 × 2 pods → 3.
    assert m["current"] == "4" and m["proposal"] == 3 and m["readyPods"] == 2
    assert (
        "pods/*/jetstream_prefill_backlog_size?labelSelector=app%3Dserver" in m["request"]["path"]
    )
    assert doc["decision"]["desiredReplicas"] == 3


async def test_unknown_metric_is_a_failed_metric_and_the_hpa_holds(make_ctx: AppFactory) -> None:
    missing = {
        "type": "External",
        "external": {
            "metric": {"name": "no_such_metric"},
            "target": {"type": "Value", "value": "1"},
        },
    }
    kube = FakeKube(_hpa([missing]))
    async with await client_for(await _ctx(make_ctx, kube)) as c:
        doc = (await c.get("/debug/hpa/team-a/server")).json()
    assert doc["metrics"][0]["error"] and doc["metrics"][0]["reason"] == "FailedGetExternalMetric"
    assert doc["decision"]["desiredReplicas"] == 2 and doc["decision"]["scalingActive"] is False


@pytest.mark.parametrize("value", ["abc", "-1", "1e9"])
async def test_bad_parameters_are_400(make_ctx: AppFactory, value: str) -> None:
    async with await client_for(await _ctx(make_ctx, FakeKube(_hpa([EXTERNAL])))) as c:
        r = await c.get("/debug/hpa/team-a/server", params={"tolerance": value})
    assert r.status_code == 400


async def test_series_records_served_values_and_samples_a_namespace(make_ctx: AppFactory) -> None:
    async with await client_for(await _ctx(make_ctx, None)) as c:
        doc = (await c.get("/debug/series", params={"namespace": "team-a"})).json()
        assert doc["errors"] == []
        backlog = [
            s
            for s in doc["series"]
            if s["metric"] == "jetstream_prefill_backlog_size" and s["group"] == "external"
        ]
        assert len(backlog) == 1 and backlog[0]["points"][-1]["value"] == 8
        assert backlog[0]["points"][-1]["age"] >= 2
        per_pod = {
            s["object"]: s["points"][-1]["value"]
            for s in doc["series"]
            if s["metric"] == "jetstream_prefill_backlog_size" and s["group"] == "custom"
        }
        assert per_pod == {"a-0": 3, "a-1": 5}
        bad = await c.get("/debug/series", params={"namespace": "Not_A_Namespace"})
        assert bad.status_code == 400


async def test_ui_is_one_page_and_one_script_with_nothing_external(make_ctx: AppFactory) -> None:
    async with await client_for(await _ctx(make_ctx, None)) as c:
        page = await c.get("/debug/ui")
        script = await c.get("/debug/ui/app.js")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    assert '<script src="/debug/ui/app.js">' in page.text
    for text in (page.text, script.text):
        assert "http://" not in text and "https://" not in text


def test_recorder_is_bounded() -> None:
    from adapter.core.history import SeriesRecorder
    from adapter.core.provider import Answer, Trace
    from adapter.core.request import ApiRequest
    from adapter.domain.models import MetricValue

    rec = SeriesRecorder(points=3, max_series=2)
    for i in range(5):
        request = ApiRequest(group="external", version="v1beta1", metric=f"m{i % 3}", namespace="n")
        for j in range(5):
            value = MetricValue(metric=request.metric, value=float(j), timestamp=float(i * 10 + j))
            rec.record(request, Answer(body={}, values=[value], trace=Trace()))
    doc = rec.document()
    assert len(doc) == 2 and all(len(s["points"]) == 3 for s in doc)
