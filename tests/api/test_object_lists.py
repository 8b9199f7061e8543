"""In Kubernetes mode a ``<resource>/*`` request never answers without the object list: while
the first list of pods has not come in, the request fails with a 503 that says why, instead of
answering for every pod with series (which would ignore the labelSelector); a resource the
adapter's RBAC does not cover fails with the ClusterRole rule it needs (the apiserver here is a
recording stand-in; tests/e2e/test_any_resource.py does the same against a real one)."""

from __future__ import annotations

from collections.abc import Sequence

import yaml

from adapter.app.context import AppContext, build_context
from adapter.domain.models import GroupResource, Requirement
from adapter.kube.connection import Connection
from adapter.kube.objects import ObjectCache
from adapter.rules.loader import load_rules_text
from adapter.settings import Settings
from sim.fake_backend import FakeBackend
from tests.support.app import client_for
from tests.support.cheese import template_rule
from tests.support.kube_stub import KubeStub

C2 = "/apis/custom.metrics.k8s.io/v1beta2"
PODS_METRIC = f"{C2}/namespaces/shop/pods/*/cheddar_stock"
RULES = yaml.safe_dump(
    {
        "rules": [
            template_rule("cheddar_stock", "namespace", "pod"),
            template_rule("cheddar_stock_ds", "namespace", "daemonset"),
        ]
    }
)


def _context(objects: object) -> AppContext:
    fake = FakeBackend()
    fake.set_series(
        [
            ({"__name__": "cheddar_stock", "cluster": "c1", "namespace": "shop", "pod": p}, 7.0)
            for p in ("p-0", "p-1")
        ]
        + [
            (
                {"__name__": "cheddar_stock_ds", "cluster": "c1", "namespace": "shop"}
                | {"daemonset": "ds-0"},
                1.0,
            )
        ]
    )
    rules = load_rules_text(RULES, filename="cheese.yaml", presets=False)
    settings = Settings.from_options(cluster="c1", cache_ttl=0.0)
    ctx = build_context(settings, backend=fake, rules=rules, objects=objects)  # type: ignore[arg-type]
    ctx.backend_ready = True
    return ctx


async def test_pods_before_their_first_list_fail_with_503_not_every_series() -> None:
    with KubeStub(hold_lists=True) as stub:
        cache = ObjectCache(Connection(stub.api_client(), timeout=0.5), ready_wait=0.1)
        cache.start()
        try:
            ctx = _context(cache)
            await ctx.registry.refresh()
            async with await client_for(ctx) as c:
                r = await c.get(PODS_METRIC, params={"labelSelector": "app=a"})
                assert r.status_code == 503, r.text
                status = r.json()
                assert status["reason"] == "ServiceUnavailable"
                assert "pods" in status["message"]
                assert "labelSelector cannot be applied" in status["message"]
                # A named pod needs no list: it is answered.
                r = await c.get(f"{C2}/namespaces/shop/pods/p-0/cheddar_stock")
                assert r.status_code == 200, r.text
        finally:
            cache.stop()


class _CannotTell:
    """An object source that cannot tell which objects exist."""

    async def names(
        self, resource: GroupResource, namespace: str | None, selector: Sequence[Requirement]
    ) -> tuple[str, ...] | None:
        return None

    def status(self) -> dict[str, object]:
        return {}


async def test_a_source_that_cannot_tell_fails_the_request_rather_than_ignore_the_selector() -> (
    None
):
    ctx = _context(_CannotTell())
    await ctx.registry.refresh()
    async with await client_for(ctx) as c:
        r = await c.get(PODS_METRIC, params={"labelSelector": "app=a"})
        assert r.status_code == 503, r.text
        assert "labelSelector cannot be applied" in r.json()["message"]
        # The explain path says the same (no "(standalone)" answer).
        r = await c.get("/debug/query", params={"path": f"{PODS_METRIC}?labelSelector=app%3Da"})
        doc = r.json()
        assert doc["request"]["labelSelector"] == "app=a"
        assert doc["error"]["code"] == 503 and doc["answer"] is None
        assert "standalone" not in r.text


async def test_a_resource_outside_the_role_fails_naming_the_rule_to_grant() -> None:
    with KubeStub() as stub:
        cache = ObjectCache(Connection(stub.api_client(), timeout=5.0), ready_wait=0.1)
        try:
            ctx = _context(cache)
            await ctx.registry.refresh()
            async with await client_for(ctx) as c:
                r = await c.get(
                    f"{C2}/namespaces/shop/daemonsets.apps/*/cheddar_stock_ds",
                    params={"labelSelector": "app=a"},
                )
        finally:
            cache.stop()
    assert r.status_code == 500, r.text
    message = r.json()["message"]
    assert "lacks the RBAC permission to list and watch daemonsets.apps" in message
    assert '{apiGroups: ["apps"], resources: ["daemonsets"], verbs: ["list", "watch"]}' in message
    assert "rbac.extraResourceRules" in message
    assert stub.asked("/apis/apps/v1/daemonsets")  # it did ask, and was refused
