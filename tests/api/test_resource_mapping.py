"""Label names → resources: the built-in table standalone, the cluster's resources otherwise; a
rule naming a resource the cluster does not serve is reported and served once it appears.

The cluster's side here is a stand-in for :class:`adapter.kube.mapper.RestMapper` (the same
protocol); tests/integration/test_k8s_client.py and tests/e2e/test_any_resource.py run the real
one against a real kube-apiserver.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import yaml

from adapter.app.context import AppContext, build_context
from adapter.domain.models import GroupResource, Requirement
from adapter.domain.resources import ResourceInfo, ResourceTable
from adapter.rules import resources
from adapter.rules.loader import load_rules_text
from adapter.settings import Settings
from sim.fake_backend import FakeBackend
from tests.support.app import client_for, fleet_context
from tests.support.cheese import override_rule, template_rule

C2 = "/apis/custom.metrics.k8s.io/v1beta2"
BRAND = ResourceInfo("brands", "brand", "cheese.io", "Brand", namespaced=True, version="v1beta2")
RULES = yaml.safe_dump(
    {
        "rules": [
            override_rule("cheddar_sold", "brand", "brand", "cheese.io"),
            template_rule("cheddar_stock", "namespace", "pod"),
        ]
    }
)


def _backend() -> FakeBackend:
    fake = FakeBackend()
    fake.set_series(
        [
            (
                {
                    "__name__": "cheddar_sold",
                    "cluster": "c1",
                    "namespace": "shop",
                    "brand": "gouda",
                },
                3.0,
            ),
            (
                {"__name__": "cheddar_sold", "cluster": "c1", "namespace": "shop", "brand": "brie"},
                5.0,
            ),
            (
                {"__name__": "cheddar_stock", "cluster": "c1", "namespace": "shop", "pod": "p-0"},
                7.0,
            ),
        ]
    )
    return fake


class _Cluster:
    """The cluster's resources (a :class:`~adapter.core.registry.ResourceSource`) and its objects
    (every brand and pod exists)."""

    def __init__(self, *extra: ResourceInfo) -> None:
        self.served = list(extra)
        self.reads = 0

    @property
    def table(self) -> ResourceTable:
        entries = [*resources.known_resources(), *self.served]
        return ResourceTable.of(entries, source="the cluster's discovery", complete=True)

    async def refresh(self, *, min_age: float = 0.0) -> ResourceTable:
        self.reads += 1
        return self.table

    def status(self) -> dict[str, Any]:
        return {"reads": self.reads}

    @property
    def resource_mapper(self) -> _Cluster:
        return self

    async def names(
        self, resource: GroupResource, namespace: str | None, selector: Sequence[Requirement]
    ) -> tuple[str, ...]:
        return {"brands": ("brie", "gouda"), "pods": ("p-0",)}.get(resource.resource, ())


def _kube_context(cluster: _Cluster) -> AppContext:
    rules = load_rules_text(RULES, filename="cheese.yaml", presets=False)
    settings = Settings.from_options(cluster="c1", cache_ttl=0.0)
    ctx = build_context(settings, backend=_backend(), rules=rules, objects=cluster)
    ctx.backend_ready = True
    return ctx


async def test_standalone_maps_with_the_built_in_table_and_says_so() -> None:
    ctx = fleet_context(_backend(), rules_text=RULES, presets=False)
    await ctx.registry.refresh()
    async with await client_for(ctx) as c:
        debug = (await c.get("/debug/metrics")).json()
        assert debug["resourceMapping"]["source"] == "built-in table of common resources"
        assert debug["missingResources"] == {}
        assert any("not in the built-in table" in w for w in debug["warnings"])
        # Standalone, the CRD is served under the name Kubernetes would guess.
        r = await c.get(f"{C2}/namespaces/shop/brands.cheese.io/gouda/cheddar_sold")
        assert r.status_code == 200, r.text
        assert r.json()["items"][0]["describedObject"]["apiVersion"] == "cheese.io/v1"


async def test_a_resource_the_cluster_does_not_serve_is_reported_then_served() -> None:
    cluster = _Cluster()
    ctx = _kube_context(cluster)
    ctx.registry.resource_poll = 0.05
    await ctx.registry.refresh()
    async with await client_for(ctx) as c:
        debug = (await c.get("/debug/metrics")).json()
        assert debug["resourceMapping"]["source"] == "the cluster's discovery"
        [(rule, [line])] = debug["missingResources"].items()
        assert rule == "cheese.yaml#rules[0]"
        assert "resources.overrides.brand" in line and "cheese.io" in line
        served = {(m["resource"], m["name"]) for m in debug["metrics"]}
        # The other rule, and the rule's own namespace metric, are served meanwhile.
        assert ("pods", "cheddar_stock") in served and ("namespaces", "cheddar_sold") in served
        assert ("brands.cheese.io", "cheddar_sold") not in served
        r = await c.get(f"{C2}/namespaces/shop/brands.cheese.io/gouda/cheddar_sold")
        assert r.status_code == 404

        # The CRD is created: the registry, waiting, notices before its next interval.
        cluster.served.append(BRAND)
        ctx.registry.interval = 3600.0
        await asyncio.wait_for(ctx.registry._until_next(), timeout=5)
        await ctx.registry.refresh()
        debug = (await c.get("/debug/metrics")).json()
        assert debug["missingResources"] == {}
        r = await c.get(
            f"{C2}/namespaces/shop/brands.cheese.io/*/cheddar_sold",
            params={"labelSelector": "x!=y"},
        )
        assert r.status_code == 200, r.text
        items = r.json()["items"]
        assert [(i["describedObject"]["name"], i["value"]) for i in items] == [
            ("brie", "5"),
            ("gouda", "3"),
        ]
        assert items[0]["describedObject"]["kind"] == "Brand"
        assert items[0]["describedObject"]["apiVersion"] == "cheese.io/v1beta2"


async def test_a_native_rule_on_a_crd_describes_objects_as_discovery_says() -> None:
    """A native object rule naming a CRD (group-qualified plural): the described objects' kind
    and apiVersion come from the cluster's resources (here v1beta2), not a guess."""
    native = {
        "metrics": [
            {
                "name": "cheddar_sold",
                "type": "object",
                "resource": "brands.cheese.io",
                "objectLabels": ["brand"],
                "query": "sum by (brand) (cheddar_sold)",
            }
        ]
    }
    rules = load_rules_text(yaml.safe_dump(native), filename="native.yaml", presets=False)
    settings = Settings.from_options(cluster="c1", cache_ttl=0.0)
    cluster = _Cluster(BRAND)
    ctx = build_context(settings, backend=_backend(), rules=rules, objects=cluster)
    ctx.backend_ready = True
    await ctx.registry.refresh()
    async with await client_for(ctx) as c:
        r = await c.get(f"{C2}/namespaces/shop/brands.cheese.io/gouda/cheddar_sold")
    assert r.status_code == 200, r.text
    assert r.json()["items"][0]["describedObject"] == {
        "kind": "Brand",
        "namespace": "shop",
        "name": "gouda",
        "apiVersion": "cheese.io/v1beta2",
    }
