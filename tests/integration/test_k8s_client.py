"""adapter.kube against a real kube-apiserver: the auth configmap (read and watched), TokenReview,
SubjectAccessReview, and the watch-backed object cache checked against the apiserver's own
label-selector filtering.

Starts its own control plane (``tests/support/controlplane.py``); missing binaries FAIL these tests
with the command that builds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import trustme
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from adapter.auth.attributes import request_attributes
from adapter.auth.config import AuthConfigHolder
from adapter.auth.user import UserInfo
from adapter.core.selectors import parse_selector
from adapter.domain.errors import NotFoundError
from adapter.domain.models import GroupResource
from adapter.kube import KubeClient, KubernetesError, ObjectCache, RestMapper, selector_matches
from tests.support.cheese import brands_crd
from tests.support.controlplane import ControlPlane, mark_pod_ready, role_binding, untyped
from tests.support.plane import running

NS = "k8s-client-test"


_WAIT_S = 15.0


@pytest.fixture(scope="module")
def plane() -> Iterator[ControlPlane]:
    with running(
        ControlPlane(controllers=("serviceaccount-controller", "serviceaccount-token-controller"))
    ) as plane:
        with plane.admin_client() as api:
            core = untyped(k8s.CoreV1Api(api))
            core.create_namespace({"metadata": {"name": NS}})
            # Pods need the namespace's default ServiceAccount; do not wait for the controller.
            with contextlib.suppress(ApiException):
                core.create_namespaced_service_account(NS, {"metadata": {"name": "default"}})
        yield plane


@pytest.fixture
async def kube(plane: ControlPlane) -> AsyncIterator[KubeClient]:
    client = KubeClient.connect(str(plane.kubeconfig_path), timeout=10)
    try:
        yield client
    finally:
        client.close()


async def _eventually(check: Callable[[], Any], what: str, timeout: float = _WAIT_S) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.1)


async def test_the_auth_configmap_is_read_as_the_apiserver_publishes_it(
    plane: ControlPlane, kube: KubeClient
) -> None:
    config = await kube.read_auth_config()
    assert config.requestheader_ca_pem.strip() == plane.front_proxy_ca_file.read_bytes().strip()
    assert config.client_ca_pem.strip() == plane.ca_file.read_bytes().strip()
    assert config.allowed_names == ("front-proxy-client",)
    assert config.username_headers == ("X-Remote-User",)
    assert config.uid_headers == ("X-Remote-Uid",)
    assert config.group_headers == ("X-Remote-Group",)
    assert config.extra_header_prefixes == ("X-Remote-Extra-",)


async def test_a_rotated_requestheader_ca_reaches_the_holder(
    plane: ControlPlane, kube: KubeClient
) -> None:
    holder = AuthConfigHolder(await kube.read_auth_config())
    stop = kube.watch_auth_config(holder, asyncio.get_running_loop())
    try:
        extra_ca = trustme.CA().cert_pem.bytes().decode()
        bundle = plane.front_proxy_ca_file.read_text().strip() + "\n" + extra_ca
        with plane.admin_client() as api:
            untyped(k8s.CoreV1Api(api)).patch_namespaced_config_map(
                "extension-apiserver-authentication",
                "kube-system",
                {"data": {"requestheader-client-ca-file": bundle}},
            )
        await _eventually(
            lambda: len(holder.current.requestheader_cas) == 2, "the rotated CA bundle"
        )
        assert holder.updates >= 1
    finally:
        stop()


async def test_token_review(plane: ControlPlane, kube: KubeClient) -> None:
    with plane.admin_client() as api:
        core = untyped(k8s.CoreV1Api(api))
        core.create_namespaced_service_account(NS, {"metadata": {"name": "reader"}})
        request = core.create_namespaced_service_account_token(
            "reader", NS, {"spec": {"expirationSeconds": 600}}
        )
    token = request.status.token
    user = await kube.review_token(token)
    assert user is not None
    assert user.name == f"system:serviceaccount:{NS}:reader"
    assert "system:serviceaccounts" in user.groups
    assert user.uid
    assert await kube.review_token("not-a-real-token") is None


async def test_subject_access_review(plane: ControlPlane, kube: KubeClient) -> None:
    pods = request_attributes(
        "GET", f"/apis/custom.metrics.k8s.io/v1beta2/namespaces/{NS}/pods/*/m"
    )
    external = request_attributes("GET", f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NS}/m")
    discovery = request_attributes("GET", "/apis/custom.metrics.k8s.io/v1beta2")
    nobody = UserInfo(name="nobody", groups=("system:authenticated",))
    assert not (await kube.review_access(nobody, pods)).allowed
    assert (await kube.review_access(nobody, discovery)).allowed  # system:discovery
    assert not (await kube.review_access(UserInfo(name="anon", groups=()), discovery)).allowed

    with plane.admin_client() as api:
        rbac = untyped(k8s.RbacAuthorizationV1Api(api))
        rbac.create_cluster_role(
            {
                "metadata": {"name": "metrics-reader-test"},
                "rules": [
                    {
                        "apiGroups": ["custom.metrics.k8s.io"],
                        "resources": ["*"],
                        "verbs": ["get", "list"],
                    }
                ],
            }
        )
        rbac.create_cluster_role_binding(
            role_binding("metrics-reader-test", "metrics-reader-test", ["reader"])
        )
    reader = UserInfo(name="reader", groups=("system:authenticated",))
    # RBAC's authorizer cache is immediate for new bindings on a single apiserver, but be patient.
    await _eventually(lambda: _allowed(kube, reader, pods), "the ClusterRoleBinding to take effect")
    # ``pods/m`` is covered by resources "*"; external metrics are a different group.
    assert not (await kube.review_access(reader, external)).allowed


async def _allowed(kube: KubeClient, user: UserInfo, attributes: Any) -> bool:
    return (await kube.review_access(user, attributes)).allowed


async def test_an_unreachable_api_is_a_clear_error(plane: ControlPlane) -> None:
    from kubernetes import config as k8s_config

    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(plane.kubeconfig_path), persist_config=False
    )
    api.configuration.host = "https://127.0.0.1:1"
    kube = KubeClient(api, timeout=2)
    try:
        with pytest.raises(KubernetesError, match="SubjectAccessReview") as info:
            await kube.review_access(UserInfo(name="x"), request_attributes("GET", "/apis"))
        assert "token" not in info.value.message.lower()
        with pytest.raises(KubernetesError, match="TokenReview") as token_info:
            await kube.review_token("super-secret-value")
        assert "super-secret-value" not in token_info.value.message
    finally:
        kube.close()


def _pod(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": "c", "image": "example.invalid/none"}]},
    }


SELECTORS = [
    "",
    "app=web",
    "app!=web",
    "app in (web,db)",
    "app notin (web)",
    "tier",
    "!tier",
    "app=web,tier=front",
    "app=web,!tier",
    "tier notin (back),app",
]


async def test_object_cache_answers_like_the_apiserver(
    plane: ControlPlane, kube: KubeClient
) -> None:
    pods = {
        "web-1": {"app": "web", "tier": "front"},
        "web-2": {"app": "web"},
        "db-1": {"app": "db", "tier": "back"},
        "job-1": {"app": "web", "tier": "batch"},
        "gone-1": {"app": "web", "tier": "front"},
        "bare": {},
    }
    with plane.admin_client() as api:
        core = untyped(k8s.CoreV1Api(api))
        apps = untyped(k8s.AppsV1Api(api))
        for name, labels in pods.items():
            core.create_namespaced_pod(NS, _pod(name, labels))
        mark_pod_ready(api, NS, "web-1")
        core.create_namespaced_service(
            NS, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
        )
        apps.create_namespaced_deployment(
            NS,
            {
                "metadata": {"name": "server", "labels": {"app": "web"}},
                "spec": {
                    "selector": {"matchLabels": {"app": "server"}},
                    "template": _pod("x", {"app": "server"})
                    | {"metadata": {"labels": {"app": "server"}}},
                },
            },
        )

    cache = ObjectCache(kube, ready_wait=5)
    cache.start()
    try:
        assert await cache.wait_ready(_WAIT_S)
        pods_resource = GroupResource("pods")
        await _eventually(
            lambda: _names_are(cache, pods_resource, set(pods)), "every pod in the cache"
        )
        status = cache.status()
        assert status["pods"]["ready"] is True and status["pods"]["objects"] >= len(pods)
        assert await cache.names(GroupResource("services"), NS, ()) == ("web",)
        assert await cache.names(GroupResource("deployments", "apps"), NS, ()) == ("server",)
        assert await cache.names(GroupResource("deployments", "apps"), "elsewhere", ()) == ()

        # A finished pod and a deleted pod are not returned; the generation of NS moves (the
        # rendered responses' check), another namespace's does not.
        here = cache.generation(pods_resource, NS)
        there = cache.generation(pods_resource, "elsewhere")
        assert here is not None and there is not None
        with plane.admin_client() as api:
            core = untyped(k8s.CoreV1Api(api))
            core.patch_namespaced_pod_status(
                "job-1",
                NS,
                {"status": {"phase": "Succeeded"}},
                _content_type="application/merge-patch+json",
            )
            core.delete_namespaced_pod("gone-1", NS, grace_period_seconds=0)
        live = set(pods) - {"job-1", "gone-1"}
        await _eventually(
            lambda: _names_are(cache, pods_resource, live), "finished and deleted pods to go"
        )
        assert cache.generation(pods_resource, NS) != here
        assert cache.generation(pods_resource, "elsewhere") == there

        # Every selector: the cache agrees with the apiserver's own filtering (live pods).
        with plane.admin_client() as api:
            core = untyped(k8s.CoreV1Api(api))
            for text in SELECTORS:
                listed = core.list_namespaced_pod(NS, label_selector=text).items
                expected = tuple(sorted(p.metadata.name for p in listed if p.metadata.name in live))
                got = await cache.names(pods_resource, NS, parse_selector(text))
                assert got == expected, text
                for p in listed:
                    assert selector_matches(p.metadata.labels or {}, parse_selector(text))
    finally:
        cache.stop()


async def _names_are(cache: ObjectCache, resource: GroupResource, want: set[str]) -> bool:
    return set(await cache.names(resource, NS, ()) or ()) == want


def test_selector_matches_numeric_comparisons() -> None:
    assert selector_matches({"gen": "5"}, parse_selector("gen>3"))
    assert not selector_matches({"gen": "5"}, parse_selector("gen<3"))
    assert not selector_matches({"gen": "x"}, parse_selector("gen>3"))
    assert not selector_matches({}, parse_selector("gen>3"))


def test_a_bad_kubeconfig_is_a_config_error(tmp_path: Any) -> None:
    from adapter.domain.errors import ConfigError

    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    with pytest.raises(ConfigError, match="kubeconfig"):
        KubeClient.connect(str(path))


class _Forwarder:
    """A TCP forwarder to the apiserver that can be cut (every connection dropped) and restored."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))


async def test_the_object_cache_keeps_its_state_through_an_outage_and_catches_up(
    plane: ControlPlane,
) -> None:
    from kubernetes import config as k8s_config

    api_port = int(plane.api_url.rsplit(":", 1)[1])
    forwarder = _Forwarder(api_port)
    await forwarder.start()
    api = k8s_config.new_client_from_config(  # type: ignore[no-untyped-call]
        config_file=str(plane.kubeconfig_path), persist_config=False
    )
    api.configuration.host = f"https://127.0.0.1:{forwarder.port}"
    kube = KubeClient(api, timeout=3)
    cache = ObjectCache(kube, ready_wait=5)
    resource = GroupResource("services")
    cache.start()
    try:
        with plane.admin_client() as admin:
            untyped(k8s.CoreV1Api(admin)).create_namespaced_service(
                NS, {"metadata": {"name": "before"}, "spec": {"ports": [{"port": 80}]}}
            )
        await _eventually(lambda: _service_names(cache, resource, {"before"}), "the first service")
        await forwarder.cut()
        with plane.admin_client() as admin:
            untyped(k8s.CoreV1Api(admin)).create_namespaced_service(
                NS, {"metadata": {"name": "during"}, "spec": {"ports": [{"port": 80}]}}
            )
        await asyncio.sleep(1.0)
        # Cut off: the last known state is still served.
        assert await _service_names(cache, resource, {"before"})
        await _eventually(
            lambda: cache.status()["services"]["error"] is not None, "the watch to notice"
        )
        await forwarder.start()  # same port
        await _eventually(
            lambda: _service_names(cache, resource, {"before", "during"}),
            "the cache to catch up after the outage",
            timeout=30,
        )
    finally:
        cache.stop()
        await forwarder.cut()
        kube.close()


async def _service_names(cache: ObjectCache, resource: GroupResource, want: set[str]) -> bool:
    names = set(await cache.names(resource, NS, ()) or ())
    return {"before", "during"} & names == want


def _job(name: str, labels: dict[str, str]) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "template": _pod("x", {}) | {"spec": _pod("x", {})["spec"] | {"restartPolicy": "Never"}}
        },
    }


async def test_any_resource_is_listed_with_the_apiservers_selector_semantics(
    plane: ControlPlane, kube: KubeClient
) -> None:
    """Resources the cache does not watch (Jobs, nodes, a CRD created after the adapter started)
    answer for the objects that exist in the namespace asked and match, never from elsewhere."""
    jobs = {"train-a": {"pool": "a"}, "train-b": {"pool": "b"}, "plain": {}}
    nodes = {"node-a1": {"pool": "a"}, "node-b1": {"pool": "b"}, "node-a2": {"pool": "a"}}
    with plane.admin_client() as api:
        core = untyped(k8s.CoreV1Api(api))
        batch = untyped(k8s.BatchV1Api(api))
        core.create_namespace({"metadata": {"name": f"{NS}-other"}})
        for name, labels in jobs.items():
            batch.create_namespaced_job(NS, _job(name, labels))
        batch.create_namespaced_job(f"{NS}-other", _job("elsewhere", {"pool": "a"}))
        for name, labels in nodes.items():
            core.create_node({"metadata": {"name": name, "labels": labels}})

    cache = ObjectCache(kube, ready_wait=5)
    job_resource = GroupResource("jobs", "batch")
    assert await cache.names(job_resource, NS, ()) == tuple(sorted(jobs))
    assert await cache.names(job_resource, NS, parse_selector("pool=a")) == ("train-a",)
    assert await cache.names(job_resource, f"{NS}-other", ()) == ("elsewhere",)
    # Nodes are cluster-scoped: the namespace of the request does not filter them.
    got = await cache.names(GroupResource("nodes"), None, parse_selector("pool=a"))
    assert got == ("node-a1", "node-a2")
    with plane.admin_client() as api:
        batch = untyped(k8s.BatchV1Api(api))
        for text in SELECTORS:
            listed = batch.list_namespaced_job(NS, label_selector=text).items
            expected = tuple(sorted(j.metadata.name for j in listed))
            assert await cache.names(job_resource, NS, parse_selector(text)) == expected, text

    # A resource the cluster does not serve is a 404, and is served once its CRD exists.
    brands = GroupResource("brands", "cheese.io")
    with pytest.raises(NotFoundError):
        await cache.names(brands, NS, ())
    with plane.admin_client() as api:
        untyped(k8s.ApiextensionsV1Api(api)).create_custom_resource_definition(brands_crd())
        custom = untyped(k8s.CustomObjectsApi(api))

        def create_brand() -> bool:
            try:
                custom.create_namespaced_custom_object(
                    "cheese.io",
                    "v1",
                    NS,
                    "brands",
                    {
                        "apiVersion": "cheese.io/v1",
                        "kind": "Brand",
                        "metadata": {"name": "gouda", "labels": {"age": "old"}},
                    },
                )
            except ApiException as exc:
                if exc.status == 404:  # the CRD is not established yet
                    return False
                raise
            return True

        await _eventually(create_brand, "the CRD to be served")
    # Discovery is read again (at most every 5 s) when a request names an unknown resource.
    await _eventually(
        lambda: _names_or_none(cache, brands, parse_selector("age=old")),
        "the CRD in the cluster's discovery",
    )
    assert await cache.names(brands, NS, parse_selector("age=old")) == ("gouda",)
    assert await cache.names(brands, NS, parse_selector("age=new")) == ()
    cache.stop()


async def _names_or_none(
    cache: ObjectCache, resource: GroupResource, selector: Any
) -> tuple[str, ...] | None:
    try:
        return await cache.names(resource, NS, selector)
    except NotFoundError:
        return None


async def test_the_rest_mapper_reads_the_same_resources_from_both_discovery_forms(
    kube: KubeClient,
) -> None:
    """Aggregated discovery (one document) and the legacy documents (one per group version)
    give the same table, with the kinds, versions and scopes the apiserver serves."""
    aggregated = RestMapper(kube)
    legacy = RestMapper(kube, aggregated=False)
    table = await aggregated.refresh()
    legacy_table = await legacy.refresh()
    assert table is not None and legacy_table is not None
    assert (aggregated.aggregated, legacy.aggregated) == (True, False)
    assert (aggregated.error, legacy.error) == (None, None)
    assert sorted(map(repr, table.entries)) == sorted(map(repr, legacy_table.entries))
    assert table.lookup("lease") == legacy_table.lookup("leases.coordination.k8s.io")
    lease = table.lookup("Lease")
    assert lease is not None
    assert (lease.group, lease.version, lease.kind, lease.namespaced) == (
        "coordination.k8s.io",
        "v1",
        "Lease",
        True,
    )
    node = table.lookup("node")
    assert node is not None and (node.plural, node.namespaced, node.api_version) == (
        "nodes",
        False,
        "v1",
    )
    # Bare names prefer the core group, as the RESTMapper does: events, not events.k8s.io.
    assert table.lookup("events") == table.exact(GroupResource("events"))
    assert table.exact(GroupResource("events", "events.k8s.io")) is not None
    # Subresources and the metrics groups are not objects.
    assert all("/" not in info.plural for info in table.entries)
    assert not any(info.group.endswith("metrics.k8s.io") for info in table.entries)
    assert aggregated.status()["resources"] == len(table)
