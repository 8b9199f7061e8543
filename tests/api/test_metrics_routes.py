"""Every metrics route, both custom versions, against presets and the fake backend's data."""

from __future__ import annotations

import httpx
import pytest

from adapter.core.translate import format_timestamp
from sim.fake_backend import FakeBackend
from tests.support.app import AppFactory, client_for
from tests.support.fake_fleet import NOW

C1 = "/apis/custom.metrics.k8s.io/v1beta1"
C2 = "/apis/custom.metrics.k8s.io/v1beta2"
E = "/apis/external.metrics.k8s.io/v1beta1"
PROTOBUF_ACCEPT = {"Accept": "application/vnd.kubernetes.protobuf, */*"}


async def test_external_preset_is_the_namespace_total_in_this_cluster(
    client: httpx.AsyncClient, fake: FakeBackend
) -> None:
    r = await client.get(
        f"{E}/namespaces/team-a/jetstream_prefill_backlog_size", headers=PROTOBUF_ACCEPT
    )
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["kind"] == "ExternalMetricValueList"
    assert body["apiVersion"] == "external.metrics.k8s.io/v1beta1"
    # team-a in c1: pods a-0 (3) and a-1 (5); team-b and cluster c2 are not mixed in.
    assert [i["value"] for i in body["items"]] == ["8"]
    assert body["items"][0]["metricName"] == "jetstream_prefill_backlog_size"
    assert body["items"][0]["timestamp"] == format_timestamp(NOW - 2)
    assert 'cluster="c1"' in fake.queries[-1] and 'namespace="team-a"' in fake.queries[-1]


async def test_external_slots_used_sums_per_pod_means(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{E}/namespaces/team-a/jetstream_slots_used_percentage")
    # mean over idx per pod: a-0 (0.5+0.25)/2 = 0.375, a-1 (1.0+0.5)/2 = 0.75; total 1.125
    assert [i["value"] for i in r.json()["items"]] == ["1125m"]


async def test_external_tpu_memory_used_percentage(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{E}/namespaces/team-a/memory_used_percentage")
    # per pod used/total: a-0 4/16, a-1 8/16; summed: 0.75. team-b's 16/16 is not included.
    assert [i["value"] for i in r.json()["items"]] == ["750m"]


@pytest.mark.parametrize("version", ["v1beta1", "v1beta2"])
async def test_pods_preset_one_value_per_pod(client: httpx.AsyncClient, version: str) -> None:
    r = await client.get(
        f"/apis/custom.metrics.k8s.io/{version}/namespaces/team-a/pods/*/jetstream_slots_used_percentage",
        params={"labelSelector": "app=jetstream"},
    )
    assert r.status_code == 200
    body = r.json()
    assert body["apiVersion"] == f"custom.metrics.k8s.io/{version}"
    assert body["kind"] == "MetricValueList"
    got = {i["describedObject"]["name"]: i["value"] for i in body["items"]}
    assert got == {"a-0": "375m", "a-1": "750m"}
    item = body["items"][0]
    assert item["describedObject"] == {
        "kind": "Pod",
        "namespace": "team-a",
        "name": "a-0",
        "apiVersion": "v1",
    }
    if version == "v1beta1":
        assert item["metricName"] == "jetstream_slots_used_percentage"
        assert "metric" not in item
    else:
        assert item["metric"] == {"name": "jetstream_slots_used_percentage"}
        assert "metricName" not in item


async def test_single_pod_and_metric_label_selector(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{C2}/namespaces/team-a/pods/a-1/jetstream_slots_used_percentage")
    assert [(i["describedObject"]["name"], i["value"]) for i in r.json()["items"]] == [
        ("a-1", "750m")
    ]
    r = await client.get(
        f"{C2}/namespaces/team-a/pods/a-1/jetstream_slots_used_percentage",
        params={"metricLabelSelector": "idx=1"},
    )
    body = r.json()
    assert [i["value"] for i in body["items"]] == ["500m"]
    assert body["items"][0]["metric"]["selector"] == {"matchLabels": {"idx": "1"}}


async def test_single_object_without_data_is_404(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{C2}/namespaces/team-a/pods/gone-0/jetstream_prefill_backlog_size")
    assert r.status_code == 404
    assert r.json()["reason"] == "NotFound"


async def test_namespace_never_sees_another_namespace(client: httpx.AsyncClient) -> None:
    r = await client.get(f"{C2}/namespaces/team-a/pods/b-0/jetstream_prefill_backlog_size")
    assert r.status_code == 404
    r = await client.get(f"{C2}/namespaces/team-b/pods/*/jetstream_prefill_backlog_size")
    assert {i["describedObject"]["name"] for i in r.json()["items"]} == {"b-0"}


async def test_external_label_selector_narrows(client: httpx.AsyncClient) -> None:
    r = await client.get(
        f"{E}/namespaces/team-a/jetstream_prefill_backlog_size", params={"labelSelector": "pod=a-1"}
    )
    assert [i["value"] for i in r.json()["items"]] == ["5"]
    r = await client.get(
        f"{E}/namespaces/team-a/jetstream_prefill_backlog_size",
        params={"labelSelector": "pod in (a-0,a-1)"},
    )
    assert [i["value"] for i in r.json()["items"]] == ["8"]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"labelSelector": "x>1"}, "not supported"),
        ({"labelSelector": 'pod="a"'}, "invalid label selector"),
        ({"labelSelector": "pod in (a"}, "invalid label selector"),
    ],
)
async def test_bad_selectors_are_400(
    client: httpx.AsyncClient, params: dict[str, str], message: str
) -> None:
    r = await client.get(f"{E}/namespaces/team-a/jetstream_prefill_backlog_size", params=params)
    assert r.status_code == 400
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "BadRequest" and body["code"] == 400
    assert message in body["message"]


@pytest.mark.parametrize(
    "path",
    [
        f"{E}/namespaces/team-a/no_such_metric",
        f"{C2}/namespaces/team-a/pods/*/no_such_metric",
        f"{C1}/nodes/n1/jetstream_prefill_backlog_size",
        f"{C2}/namespaces/team-a/deployments.apps/x/jetstream_prefill_backlog_size",
        "/apis/custom.metrics.k8s.io/v9/namespaces/a/pods/*/m",
        "/apis/nope.k8s.io/v1/namespaces/a/m",
        "/nothing/here",
    ],
)
async def test_unknown_metrics_and_routes_are_404_status(
    client: httpx.AsyncClient, path: str
) -> None:
    r = await client.get(path)
    assert r.status_code == 404
    assert r.json()["kind"] == "Status"
    assert r.json()["reason"] == "NotFound"


async def test_non_get_is_405_status(client: httpx.AsyncClient) -> None:
    r = await client.post(f"{E}/namespaces/team-a/jetstream_prefill_backlog_size")
    assert r.status_code == 405
    assert r.json()["reason"] == "MethodNotAllowed"


async def test_nan_and_inf_are_never_emitted(make_ctx: AppFactory, fake: FakeBackend) -> None:
    fake.set_series(
        [
            (
                {
                    "__name__": "jetstream_prefill_backlog_size",
                    "cluster": "c1",
                    "namespace": "n",
                    "pod": "p0",
                },
                float("nan"),
                NOW,
            ),
            (
                {
                    "__name__": "jetstream_prefill_backlog_size",
                    "cluster": "c1",
                    "namespace": "n",
                    "pod": "p1",
                },
                float("inf"),
                NOW,
            ),
            (
                {
                    "__name__": "jetstream_prefill_backlog_size",
                    "cluster": "c1",
                    "namespace": "n",
                    "pod": "p2",
                },
                2.0,
                NOW,
            ),
        ]
    )
    async with await client_for(make_ctx()) as c:
        pods = (await c.get(f"{C2}/namespaces/n/pods/*/jetstream_prefill_backlog_size")).json()
        assert [(i["describedObject"]["name"], i["value"]) for i in pods["items"]] == [("p2", "2")]
        ext = (await c.get(f"{E}/namespaces/n/jetstream_prefill_backlog_size")).json()
        # the sum over a NaN is NaN: no value rather than a wrong one
        assert ext["items"] == []


async def test_old_samples_are_not_served_when_max_age_is_set(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    fake.set_series(
        [
            (
                {
                    "__name__": "jetstream_prefill_backlog_size",
                    "cluster": "c1",
                    "namespace": "n",
                    "pod": "p0",
                },
                1.0,
                NOW - 600,
            )
        ]
    )
    async with await client_for(make_ctx(max_sample_age=120)) as c:
        r = await c.get(f"{E}/namespaces/n/jetstream_prefill_backlog_size")
        assert r.json()["items"] == []


async def test_backend_failure_is_a_5xx_status_without_secrets(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    from adapter.domain.errors import BackendUnavailableError

    fake.fail_with(
        BackendUnavailableError("connection refused to /api/v1/query", backend="prometheus")
    )
    async with await client_for(make_ctx()) as c:
        r = await c.get(f"{E}/namespaces/team-a/jetstream_prefill_backlog_size")
    assert r.status_code == 503
    body = r.json()
    assert body["kind"] == "Status" and body["reason"] == "ServiceUnavailable"
    assert "prometheus" in body["message"]


async def test_identical_requests_share_one_backend_query(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    import asyncio

    fake.delay = 0.05
    async with await client_for(make_ctx()) as c:
        path = f"{E}/namespaces/team-a/jetstream_prefill_backlog_size"
        responses = await asyncio.gather(*(c.get(path) for _ in range(50)))
        assert {r.json()["items"][0]["value"] for r in responses} == {"8"}
        again = await c.get(path)
        assert again.json()["items"][0]["value"] == "8"
    assert len(fake.queries) == 1


class _NoPods:
    """An object source in which no pod matches any selector (a namespace with no pods)."""

    async def names(self, resource: object, namespace: str | None, selector: object) -> tuple[()]:
        return ()

    def status(self) -> dict[str, object]:
        return {}


async def test_no_object_matching_the_selector_is_not_found_as_prometheus_adapter_answers(
    make_ctx: AppFactory, fake: FakeBackend
) -> None:
    ctx = make_ctx()
    ctx.provider.objects = _NoPods()
    await ctx.registry.refresh()
    asked = len(fake.queries)
    async with await client_for(ctx) as c:
        r = await c.get(
            f"{C2}/namespaces/team-a/pods/*/jetstream_prefill_backlog_size",
            params={"labelSelector": "app=nomatch,tier in (a,b)"},
        )
    assert r.status_code == 404, r.text
    status = r.json()
    assert status["kind"] == "Status" and status["reason"] == "NotFound"
    assert "jetstream_prefill_backlog_size" in status["message"]
    assert "selector app=nomatch,tier in (a,b)" in status["message"]
    assert len(fake.queries) == asked, "nothing to ask the backend about"
