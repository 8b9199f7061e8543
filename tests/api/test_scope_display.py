"""``--all-clusters`` is shown where an operator looks: /debug/metrics says which scope the
app serves, and its queries then carry no cluster matcher (every cluster's series are read)."""

from __future__ import annotations

import httpx

from adapter.core.quantity import format_quantity
from tests.support.app import AppFactory, client_for
from tests.support.fake_fleet import fleet_series

BACKLOG = "/apis/external.metrics.k8s.io/v1beta1/namespaces/team-a/jetstream_prefill_backlog_size"


def _backlog(cluster: str | None) -> str:
    """The fleet's team-a backlog in ``cluster`` (every cluster: ``None``)."""
    total = 0.0
    for labels, value, *_ in fleet_series():
        if (
            labels["__name__"] == "jetstream_prefill_backlog_size"
            and labels["namespace"] == "team-a"
            and (cluster is None or labels["cluster"] == cluster)
        ):
            total += value
    return format_quantity(total)


async def _debug_and_answer(client: httpx.AsyncClient) -> tuple[dict[str, object], str]:
    answer = await client.get(BACKLOG)
    assert answer.status_code == 200, answer.text
    debug = await client.get("/debug/metrics")
    assert debug.status_code == 200, debug.text
    return debug.json(), str(answer.json()["items"][0]["value"])


async def test_debug_metrics_shows_all_clusters_and_the_values_are_every_clusters(
    make_ctx: AppFactory,
) -> None:
    async with await client_for(make_ctx(cluster=None, all_clusters=True)) as client:
        debug, value = await _debug_and_answer(client)
        query = (await client.get("/debug/query", params={"path": BACKLOG})).json()["query"]
    assert debug["allClusters"] is True and debug["cluster"] is None
    assert value == _backlog(None) != _backlog("c1")
    assert "cluster=" not in query and 'namespace="team-a"' in query


async def test_debug_metrics_shows_the_one_cluster_served(make_ctx: AppFactory) -> None:
    async with await client_for(make_ctx()) as client:
        debug, value = await _debug_and_answer(client)
    assert debug["allClusters"] is False and debug["cluster"] == "c1"
    assert value == _backlog("c1")
