"""The adapter's discovery documents as Kubernetes reads them: client-go's discovery client
(k8s.io/client-go v0.35.4, built from ``hack/discovery-client`` by
``hack/build-discovery-client.sh``) against the adapter process, over a real Prometheus.

- client-go decodes the aggregated form (``apidiscovery.k8s.io/v2``) and the legacy documents to
  the same group versions and resources, with no group failing;
- no parent resource (``pods``) is listed as a resource of custom.metrics.k8s.io: only
  ``<resource>/<metric>``, as the adapter's own legacy list has them;
- the aggregated resources are exactly what k8s.io/apiserver builds from the legacy list
  (``endpoints.ConvertGroupVersionIntoToDiscovery``): parents with an empty ``responseKind`` and
  no verbs, one subresource per metric, the scope of the described resource.
"""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from sim.prometheus import LocalPrometheus
from tests.support import REPO
from tests.support.adapter_process import AdapterProcess

pytestmark = pytest.mark.integration

RULES = {
    "rules": [
        {
            "seriesQuery": '{__name__="shop_sales",namespace!=""}',
            "resources": {
                "template": "<<.Resource>>",
                "overrides": {"brand": {"group": "cheese.io", "resource": "brand"}},
            },
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        },
        {
            "seriesQuery": '{__name__="node_load",node!=""}',
            "resources": {"template": "<<.Resource>>"},
            "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
        },
    ]
}
# What the rules serve: a namespaced parent (pods, brands), cluster-scoped ones (namespaces, nodes).
EXPECTED = {
    "pods/shop_sales",
    "namespaces/shop_sales",
    "brands.cheese.io/shop_sales",
    "nodes/node_load",
}


def _discovery_client() -> Path:
    """The built client (a warm build returns at once); FAILS naming the build's output."""
    try:
        done = subprocess.run(
            ["bash", str(REPO / "hack" / "build-discovery-client.sh")],
            capture_output=True,
            text=True,
            timeout=1200,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("hack/build-discovery-client.sh did not finish in 20 minutes", pytrace=False)
    if done.returncode != 0:
        pytest.fail(
            f"hack/build-discovery-client.sh failed (exit {done.returncode}):\n"
            f"{done.stdout[-3000:]}{done.stderr[-3000:]}",
            pytrace=False,
        )
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdapterProcess]:
    """The adapter process, standalone, over a real Prometheus scraping the rules' series."""
    registry = CollectorRegistry(auto_describe=False)
    sales = Gauge("shop_sales", "sales", ["namespace", "pod", "brand"], registry=registry)
    sales.labels("shop", "p-0", "gouda").set(3)
    Gauge("node_load", "load", ["node"], registry=registry).labels("n-1").set(0.5)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    work = tmp_path_factory.mktemp("discovery-clients")
    rules = work / "rules.yaml"
    rules.write_text(yaml.safe_dump(RULES))
    try:
        with LocalPrometheus([f"127.0.0.1:{server.server_port}"]) as prometheus:
            prometheus.wait_for("count(shop_sales) + count(node_load)", bool, timeout=30)
            args = ["--standalone", "--prometheus-url", prometheus.url, "--all-clusters"]
            args += ["--config", str(rules), "--discovery-interval", "1"]
            with AdapterProcess.running(args, log=work / "adapter.log") as running:
                _wait_served(running, EXPECTED)
                yield running
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _get(adapter: AdapterProcess, path: str) -> Any:
    with urllib.request.urlopen(adapter.url + path, timeout=10) as response:
        return json.loads(response.read())


def _custom_names(adapter: AdapterProcess) -> set[str]:
    listing = _get(adapter, "/apis/custom.metrics.k8s.io/v1beta2")
    return {r["name"] for r in listing["resources"]}


def _wait_served(adapter: AdapterProcess, names: set[str], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not names <= (have := _custom_names(adapter)):
        if time.monotonic() > deadline:
            raise AssertionError(
                f"the adapter never served {sorted(names - have)}; log:\n{adapter.tail()}"
            )
        time.sleep(0.2)


def _client(adapter: AdapterProcess, *flags: str) -> dict[str, Any]:
    done = subprocess.run(
        [str(_discovery_client()), "-server", adapter.url, *flags],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, f"discovery-client {' '.join(flags)}: {done.stderr}"
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def test_client_go_decodes_the_same_resources_from_both_forms(adapter: AdapterProcess) -> None:
    aggregated = _client(adapter)
    legacy = _client(adapter, "-legacy")
    assert aggregated["failed"] == {} and legacy["failed"] == {}
    assert set(aggregated["groups"]) == {
        "custom.metrics.k8s.io/v1beta1",
        "custom.metrics.k8s.io/v1beta2",
        "external.metrics.k8s.io/v1beta1",
    }
    assert aggregated["groups"] == legacy["groups"]
    for version in ("v1beta1", "v1beta2"):
        resources = aggregated["groups"][f"custom.metrics.k8s.io/{version}"]
        names = {r["name"] for r in resources}
        # No parent resource: a bare "pods" would be published cluster-wide by the aggregator.
        assert all("/" in name for name in names), sorted(n for n in names if "/" not in n)
        assert names == _custom_names(adapter)
        assert names >= EXPECTED
        by_name = {r["name"]: r for r in resources}
        assert by_name["pods/shop_sales"]["namespaced"] is True
        assert by_name["brands.cheese.io/shop_sales"]["namespaced"] is True
        assert by_name["nodes/node_load"]["namespaced"] is False
        assert by_name["namespaces/shop_sales"]["namespaced"] is False
        assert {r["kind"] for r in resources} == {"MetricValueList"}
        assert all(r["verbs"] == ["get"] for r in resources)


def test_the_aggregated_form_is_what_k8s_apiserver_builds(adapter: AdapterProcess) -> None:
    forms = _client(adapter, "-apiserver-form")
    assert set(forms) == {
        "custom.metrics.k8s.io/v1beta1",
        "custom.metrics.k8s.io/v1beta2",
        "external.metrics.k8s.io/v1beta1",
    }
    for group_version, form in forms.items():
        assert form["served"] == form["built"], group_version
    parents = {p["resource"]: p for p in forms["custom.metrics.k8s.io/v1beta2"]["served"]}
    assert parents["pods"]["responseKind"] == {"group": "", "version": "", "kind": ""}
    assert parents["pods"]["verbs"] is None
    assert parents["nodes"]["scope"] == "Cluster"
    assert parents["brands.cheese.io"]["scope"] == "Namespaced"
