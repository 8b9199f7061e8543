"""Discovery, OpenAPI, health, version, the adapter's own metrics and the debug endpoints."""

from __future__ import annotations

import httpx
import pytest

from sim.fake_backend import FakeBackend
from tests.support.app import AppFactory, client_for

AGGREGATED_ACCEPT = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json"
)


async def test_api_group_list(client: httpx.AsyncClient) -> None:
    body = (await client.get("/apis")).json()
    assert body["kind"] == "APIGroupList"
    groups = {g["name"]: g for g in body["groups"]}
    assert groups["custom.metrics.k8s.io"]["preferredVersion"]["version"] == "v1beta2"
    assert [v["version"] for v in groups["custom.metrics.k8s.io"]["versions"]] == [
        "v1beta2",
        "v1beta1",
    ]
    assert groups["external.metrics.k8s.io"]["preferredVersion"] == {
        "groupVersion": "external.metrics.k8s.io/v1beta1",
        "version": "v1beta1",
    }


async def test_aggregated_discovery(client: httpx.AsyncClient) -> None:
    r = await client.get("/apis", headers={"Accept": AGGREGATED_ACCEPT})
    assert (
        r.headers["content-type"]
        == "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
    )
    body = r.json()
    assert body["kind"] == "APIGroupDiscoveryList"
    assert body["apiVersion"] == "apidiscovery.k8s.io/v2"
    items = {i["metadata"]["name"]: i for i in body["items"]}
    custom = items["custom.metrics.k8s.io"]["versions"]
    assert [v["version"] for v in custom] == ["v1beta2", "v1beta1"]
    pods = next(r for r in custom[0]["resources"] if r["resource"] == "pods")
    assert pods["scope"] == "Namespaced"
    assert "jetstream_prefill_backlog_size" in {s["subresource"] for s in pods["subresources"]}
    external = items["external.metrics.k8s.io"]["versions"][0]["resources"]
    assert "memory_used_percentage" in {r["resource"] for r in external}
    v2beta1 = await client.get(
        "/apis",
        headers={
            "Accept": "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList"
        },
    )
    assert v2beta1.json()["apiVersion"] == "apidiscovery.k8s.io/v2beta1"


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_custom_resource_list(client: httpx.AsyncClient, version: str) -> None:
    body = (await client.get(f"/apis/custom.metrics.k8s.io/{version}")).json()
    assert body["kind"] == "APIResourceList"
    assert body["groupVersion"] == f"custom.metrics.k8s.io/{version}"
    names = {r["name"]: r for r in body["resources"]}
    entry = names["pods/jetstream_slots_used_percentage"]
    assert entry == {
        "name": "pods/jetstream_slots_used_percentage",
        "singularName": "",
        "namespaced": True,
        "kind": "MetricValueList",
        "verbs": ["get"],
    }


async def test_external_resource_list(client: httpx.AsyncClient) -> None:
    body = (await client.get("/apis/external.metrics.k8s.io/v1beta1")).json()
    names = {r["name"]: r for r in body["resources"]}
    assert names["jetstream_prefill_backlog_size"]["kind"] == "ExternalMetricValueList"
    assert names["memory_used_percentage"]["namespaced"] is True


async def test_api_group_documents(client: httpx.AsyncClient) -> None:
    body = (await client.get("/apis/custom.metrics.k8s.io")).json()
    assert body["kind"] == "APIGroup" and body["preferredVersion"]["version"] == "v1beta2"
    assert (await client.get("/apis/unknown.k8s.io")).status_code == 404
    assert (await client.get("/apis/custom.metrics.k8s.io/v3")).status_code == 404


async def test_openapi_documents(client: httpx.AsyncClient) -> None:
    v2 = (await client.get("/openapi/v2")).json()
    assert v2["swagger"] == "2.0"
    assert "/apis/external.metrics.k8s.io/v1beta1/namespaces/{namespace}/{metric}" in v2["paths"]
    assert "io.k8s.metrics.pkg.apis.custom_metrics.v1beta2.MetricValueList" in v2["definitions"]
    index = (await client.get("/openapi/v3")).json()
    url = index["paths"]["apis/custom.metrics.k8s.io/v1beta2"]["serverRelativeURL"]
    doc = (await client.get(url)).json()
    assert doc["openapi"].startswith("3.")
    assert any(p.endswith("/{metric}") for p in doc["paths"])
    refs = str(doc)
    assert "#/definitions/" not in refs
    assert (await client.get("/openapi/v3/apis/nope/v1")).status_code == 404


async def test_health_and_readiness(make_ctx: AppFactory) -> None:
    ctx = make_ctx()
    async with await client_for(ctx) as c:
        assert (await c.get("/healthz")).text == "ok"
        assert (await c.get("/livez")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        ctx.backend_ready = False
        ctx.backend_error = "connection refused"
        r = await c.get("/readyz")
        assert r.status_code == 503
        assert "[-]backend failed" in r.text and "connection refused" in r.text
        assert "[+]rules ok" in r.text


async def test_version(client: httpx.AsyncClient) -> None:
    body = (await client.get("/version")).json()
    assert body["gitVersion"].startswith("v0.")
    assert set(body) >= {"major", "minor", "gitVersion", "platform"}


async def test_own_metrics_count_requests_and_cache(client: httpx.AsyncClient) -> None:
    path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"
    await client.get(path)
    await client.get(path)
    text = (await client.get("/metrics")).text
    assert (
        'llm_metrics_adapter_requests_total{code="200",group="external.metrics.k8s.io",route="values"} 2.0'
        in text
    )
    assert 'llm_metrics_adapter_cache_requests_total{result="hit"} 1.0' in text
    assert 'llm_metrics_adapter_cache_requests_total{result="miss"} 1.0' in text
    assert 'llm_metrics_adapter_backend_queries_total{backend="fake",outcome="ok"} 1.0' in text
    assert "llm_metrics_adapter_value_age_seconds_bucket" in text


async def test_debug_metrics_lists_rules(client: httpx.AsyncClient) -> None:
    body = (await client.get("/debug/metrics")).json()
    assert body["cluster"] == "c1"
    by_key = {(m["kind"], m["resource"], m["name"]): m for m in body["metrics"]}
    memory = by_key[("external", None, "memory_used_percentage")]
    assert memory["source"] == "preset"
    assert "exported_namespace" in memory["scope"]
    assert ("custom", "pods", "jetstream_prefill_backlog_size") in by_key


async def test_debug_query_explains_an_answer(client: httpx.AsyncClient, fake: FakeBackend) -> None:
    path = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"
    await client.get(path)
    doc = (await client.get("/debug/query", params={"path": path})).json()
    assert doc["backendQuery"] == fake.queries[-1]
    assert doc["query"] == 'sum(jetstream_prefill_backlog_size{cluster="c1",namespace="team-a"})'
    assert doc["query"] in doc["backendQuery"]
    assert doc["cache"]["state"] == "hit"
    assert doc["answer"]["items"][0]["value"] == "8"
    assert doc["metric"]["rule"].startswith("preset")
    assert set(doc["injected"]) == {'cluster="c1"', 'namespace="team-a"'}
    assert doc["backend"]["samples"][0]["ageSeconds"] >= 0
    assert doc["error"] is None


async def test_debug_query_shows_the_error_and_notes(client: httpx.AsyncClient) -> None:
    doc = (
        await client.get(
            "/debug/query",
            params={
                "path": "/apis/custom.metrics.k8s.io/v1beta2/namespaces/team-a/pods/*/jetstream_prefill_backlog_size"
            },
        )
    ).json()
    assert any("standalone" in n for n in doc["notes"])
    missing = (
        await client.get(
            "/debug/query",
            params={"path": "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/nope"},
        )
    ).json()
    assert missing["error"]["code"] == 404
    r = await client.get("/debug/query")
    assert r.status_code == 400


async def test_aggregated_custom_parents_are_kindless_as_the_apiserver_builds_them(
    client: httpx.AsyncClient,
) -> None:
    # A parent made up for "<resource>/<metric>" names has an empty responseKind and no verbs
    # (k8s.io/apiserver's ConvertGroupVersionIntoToDiscovery); a MetricValueList kind on it would
    # publish a "pods" resource in custom.metrics.k8s.io that clients then try to list.
    body = (await client.get("/apis", headers={"Accept": AGGREGATED_ACCEPT})).json()
    items = {i["metadata"]["name"]: i for i in body["items"]}
    for version in items["custom.metrics.k8s.io"]["versions"]:
        for parent in version["resources"]:
            assert parent["responseKind"] == {"group": "", "version": "", "kind": ""}
            assert parent["verbs"] is None
            assert parent["subresources"]
            for sub in parent["subresources"]:
                assert sub["responseKind"] == {
                    "group": "",
                    "version": "",
                    "kind": "MetricValueList",
                }
                assert sub["verbs"] == ["get"]
        legacy = (await client.get(f"/apis/custom.metrics.k8s.io/{version['version']}")).json()
        assert {r["name"] for r in legacy["resources"]} == {
            f"{parent['resource']}/{sub['subresource']}"
            for parent in version["resources"]
            for sub in parent["subresources"]
        }
