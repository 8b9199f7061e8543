"""The object cache's requests to the Kubernetes API, seen by a recording stand-in
(tests/support/kube_stub.py): a resource other than pods is listed and watched as
``PartialObjectMetadata`` and only once a request needs it; a first list that does not come in
time fails the request (503), never answers without the labelSelector.

Its answers against a real kube-apiserver: tests/integration/test_k8s_client.py.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator

import pytest

from adapter.domain.models import GroupResource, Requirement
from adapter.kube.connection import Connection, KubernetesUnavailableError
from adapter.kube.objects import ObjectCache
from tests.support.kube_stub import KubeStub

PODS = GroupResource("pods")
JOBS = GroupResource("jobs", "batch")
APP_A = (Requirement("app", "=", ("a",)),)
_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
_METADATA_ONE = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


@pytest.fixture
def stub() -> Iterator[KubeStub]:
    with KubeStub() as s:
        yield s


def _cache(stub: KubeStub, *, timeout: float = 5.0) -> ObjectCache:
    return ObjectCache(Connection(stub.api_client(), timeout=timeout), ready_wait=0.1)


async def _until(check: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


async def test_nothing_but_pods_is_asked_until_a_request_needs_another_resource(
    stub: KubeStub,
) -> None:
    cache = _cache(stub)
    cache.start()
    try:
        assert await cache.wait_ready(5)
        await _until(lambda: len(stub.asked("/api/v1/pods")) >= 2, "the pods watch")
        await asyncio.sleep(0.3)  # time for any other watch to have started, if one would
        assert {path for path, _, _ in stub.requests} == {"/api/v1/pods"}
        assert "jobs.batch" not in cache.status()

        assert await cache.names(JOBS, "shop", APP_A) == ("j-a",)
        assert await cache.names(JOBS, "shop", ()) == ("j-a", "j-b")
        assert await cache.names(JOBS, "other", APP_A) == ("j-c",)
        assert cache.status()["jobs.batch"]["objects"] == 3
    finally:
        cache.stop()


async def test_another_resource_is_listed_and_watched_as_partial_object_metadata(
    stub: KubeStub,
) -> None:
    cache = _cache(stub)
    try:
        assert await cache.names(JOBS, "shop", APP_A) == ("j-a",)
        await _until(lambda: len(stub.asked("/apis/batch/v1/jobs")) >= 2, "the jobs watch")
        (listed, list_query, list_accept), (_, watch_query, watch_accept) = stub.asked(
            "/apis/batch/v1/jobs"
        )[:2]
        assert "watch" not in list_query
        assert list_accept.split(",")[0] == _METADATA_LIST
        assert watch_query["watch"] == "true"
        assert watch_query["resourceVersion"] == "7"  # resumed from the list, not relisted
        assert watch_accept.split(",")[0] == _METADATA_ONE
        # Discovery told the path; nothing of the request (namespace, selector) is in it.
        assert listed == "/apis/batch/v1/jobs" and "labelSelector" not in list_query
        # A second request reads the same watch: no new list.
        assert await cache.names(JOBS, "shop", ()) == ("j-a", "j-b")
        assert [q for _, q, _ in stub.asked("/apis/batch/v1/jobs") if "watch" not in q] == [
            list_query
        ]
    finally:
        cache.stop()


async def test_a_first_list_that_does_not_come_fails_the_request_with_503() -> None:
    with KubeStub(hold_lists=True) as stub:
        cache = _cache(stub, timeout=0.5)
        cache.start()
        try:
            for resource in (PODS, JOBS):
                started = time.monotonic()
                with pytest.raises(KubernetesUnavailableError) as caught:
                    await cache.names(resource, "shop", APP_A)
                assert caught.value.code == 503
                assert "labelSelector cannot be applied" in caught.value.message
                assert str(resource) in caught.value.message
                # It waited at least the connection's timeout for the list, and not forever.
                assert 0.3 <= time.monotonic() - started < 5
        finally:
            cache.stop()


def test_a_monitoring_the_scrape_path_cannot_use_is_warned_about_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Every relist and event reads the monitoring objects again: an unusable one is logged the
    first time, not at each reading."""
    from adapter.domain.pods import MONITORING_RESOURCES
    from adapter.kube.objects import _to_object

    bad = {
        "metadata": {"name": "m", "namespace": "ns", "labels": {}},
        "spec": {"selector": {}, "endpoints": [{"port": "m", "scheme": "file"}]},
    }
    resource = next(r for r in MONITORING_RESOURCES if r.resource == "podmonitorings")
    with caplog.at_level("WARNING", logger="adapter"):
        for _ in range(3):
            _to_object(resource, bad)
    warned = [r for r in caplog.records if "PodMonitoring ns/m" in r.getMessage()]
    assert len(warned) == 1, [r.getMessage() for r in caplog.records]
