"""``explain`` agrees with the real HPA controller over a scripted load: up, hold, down.

The scenario (:mod:`tests.e2e.scenario`) runs the adapter against a real Prometheus and the real
kube-controller-manager (1 s HPA sync, no downscale stabilization). One HPA from
``deploy/examples`` with two metrics (Pods ``jetstream_prefill_backlog_size``, External
``memory_used_percentage``) scales ``default/maxengine-server``. In each phase, once the
controller has settled, every sample of ``GET /debug/hpa/{ns}/{name}`` on the running adapter
(as a ``system:masters`` client certificate) must give the controller's own
``status.desiredReplicas``, and each metric's value must be the one the controller last read
(``status.currentMetrics``). The ``explain`` command against the control plane's kubeconfig must
say the same. A missing HPA is a 404 both ways.

``/debug/hpa`` reads the HPA and its scale target's ``scale`` subresource with the adapter's own
identity: ``deploy/base`` does not grant that, and the first test shows the 500 that names it;
the rest grant it with a test-local ClusterRole.
"""

from __future__ import annotations

import json
import math
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Any

import pytest

from adapter.hpa.algorithm import parse_quantity_milli
from tests.e2e.scenario import (
    CLUSTER,
    Load,
    Scenario,
    example_hpa,
    pods_average_replicas,
)
from tests.support import REPO
from tests.support.waiting import wait_until

MAX_REPLICAS = 6
SETTLED_S = 6.0
"""Seconds of agreement required once the controller has settled (several 1 s HPA syncs)."""
_CLI_S = 60.0


@pytest.fixture(scope="module")
def admin_tls(scenario: Scenario) -> ssl.SSLContext:
    """TLS to the adapter itself as a ``system:masters`` client certificate."""
    cert, key = scenario.plane.client_cert("e2e-explain", ("system:masters",))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the adapter's self-signed serving certificate
    context.load_cert_chain(str(cert), str(key))
    return context


def debug_hpa(scenario: Scenario, tls: ssl.SSLContext, name: str) -> tuple[int, dict[str, Any]]:
    """``GET /debug/hpa/{ns}/{name}`` on the adapter, with the controller's flags (tolerance
    0.1, no downscale stabilization): (status, decoded body)."""
    url = (
        f"https://127.0.0.1:{scenario.adapter.port}/debug/hpa/{scenario.namespace}/{name}"
        "?downscaleStabilization=0&tolerance=0.1"
    )
    request = urllib.request.Request(url, headers={"Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=15, context=tls) as response:
            return int(response.status), json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return int(exc.code), json.loads(exc.read())


def run_explain(
    scenario: Scenario, name: str, *, as_json: bool
) -> subprocess.CompletedProcess[str]:
    """The ``explain`` command as the cluster admin, against the scenario's Prometheus."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "adapter",
            "explain",
            f"{scenario.namespace}/{name}",
            "--kubeconfig",
            str(scenario.plane.kubeconfig_path),
            "--prometheus-url",
            scenario.prometheus.url,
            "--cluster",
            CLUSTER,
            "--downscale-stabilization",
            "0",
            *(["--json"] if as_json else []),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=_CLI_S,
        check=False,
        env={**os.environ, "COLUMNS": "200"},
    )


def _close(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return False
    x, y = parse_quantity_milli(a), parse_quantity_milli(b)
    return math.isclose(x, y, rel_tol=1e-3, abs_tol=1)


def check_agreement(doc: dict[str, Any]) -> str | None:
    """``None`` when explain's document agrees with the controller's status it carries, else
    what differs."""
    decision, controller = doc["decision"], doc["controller"]
    problems = []
    if decision["desiredReplicas"] != controller["desiredReplicas"]:
        problems.append(
            f"explain wants {decision['desiredReplicas']} ({decision['reason']}), the controller"
            f" {controller['desiredReplicas']}"
        )
    read = {(m["type"], m["name"]): m["value"] for m in controller["currentMetrics"]}
    for m in doc["metrics"]:
        if m["error"] is not None or not m["seen"]:
            problems.append(f"{m['type']} {m['name']}: {m['reason']}: {m['error']}")
        elif not _close(m["current"], read.get((m["type"], m["name"]))):
            problems.append(
                f"{m['type']} {m['name']}: explain reads {m['current']}, the controller"
                f" {read.get((m['type'], m['name']))}"
            )
    return "; ".join(problems) or None


def assert_settled_agreement(
    scenario: Scenario, tls: ssl.SSLContext, hpa: str, replicas: int
) -> dict[str, Any]:
    """The controller holds ``replicas``; for :data:`SETTLED_S` seconds every explain sample
    agrees with it. Returns the last document."""
    scenario.wait_replicas(hpa, replicas)
    scenario.wait_scraped()
    # The controller's status.currentMetrics is written each sync: let it catch up with the
    # values Prometheus now shows before demanding equality.
    wait_until(
        f"explain and the controller to agree on {hpa}",
        lambda: check_agreement(debug_hpa(scenario, tls, hpa)[1]) is None,
        timeout_s=20,
        details=lambda: (
            json.dumps(debug_hpa(scenario, tls, hpa)[1], indent=1)
            + "\n"
            + scenario.diagnostics(hpa)
        ),
    )
    deadline = time.monotonic() + SETTLED_S
    samples = 0
    while True:
        status, doc = debug_hpa(scenario, tls, hpa)
        assert status == 200, doc
        assert doc["decision"]["desiredReplicas"] == doc["controller"]["desiredReplicas"], doc
        if check_agreement(doc) is not None:
            # The controller writes status.currentMetrics once per sync (1 s here), so a value
            # that just changed (a removed pod's TPU series going stale) may be one sync behind
            # what explain reads: it must catch up within a few syncs, never stay apart.
            wait_until(
                f"the controller's status to catch up with explain on {hpa}",
                lambda: check_agreement(debug_hpa(scenario, tls, hpa)[1]) is None,
                timeout_s=5,
                details=lambda: json.dumps(debug_hpa(scenario, tls, hpa)[1], indent=1),
            )
        assert doc["decision"]["desiredReplicas"] == replicas, doc["decision"]
        assert doc["scale"]["specReplicas"] == replicas, doc["scale"]
        assert doc["pods"]["runningReady"] == replicas, doc["pods"]
        samples += 1
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    assert samples >= SETTLED_S, samples
    return doc


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {m["name"]: m for m in doc["metrics"]}


# --------------------------------------------------------------------------- tests


def test_deploy_base_rbac_is_enough_to_explain_an_hpa(
    scenario: Scenario, admin_tls: ssl.SSLContext
) -> None:
    """The adapter runs with exactly ``deploy/base``'s RBAC: it may read HPAs and scales."""
    scenario.reset(replicas=1)
    hpa = scenario.apply_hpa(example_hpa("hpa-multiple-metrics.yaml"))
    status, body = debug_hpa(scenario, admin_tls, hpa)
    assert status == 200, body
    assert body["controller"] is not None, body


def test_a_missing_hpa_is_a_404(scenario: Scenario, admin_tls: ssl.SSLContext) -> None:
    status, body = debug_hpa(scenario, admin_tls, "no-such-hpa")
    assert (status, body["reason"], body["code"]) == (404, "NotFound", 404), body
    assert "HorizontalPodAutoscaler default/no-such-hpa" in body["message"]

    cli = run_explain(scenario, "no-such-hpa", as_json=True)
    assert cli.returncode == 1, cli
    assert "404 NotFound" in cli.stderr and "default/no-such-hpa" in cli.stderr, cli.stderr
    assert cli.stdout == ""


def test_explain_matches_the_controller_up_hold_and_down(
    scenario: Scenario, admin_tls: ssl.SSLContext
) -> None:
    scenario.reset(replicas=1, load=Load(prefill_backlog=0, memory_fraction=0.2))
    hpa = scenario.apply_hpa(example_hpa("hpa-multiple-metrics.yaml", max_replicas=MAX_REPLICAS))
    wait_until(
        f"HPA {hpa} to become ScalingActive",
        lambda: scenario.hpa_conditions(hpa).get("ScalingActive") == "True",
        timeout_s=30,
        details=lambda: scenario.diagnostics(hpa),
    )
    assert_settled_agreement(scenario, admin_tls, hpa, 1)

    # Up: a backlog of 25 per pod against a target of 10 keeps asking for 2.5× the pods, so
    # the HPA climbs to maxReplicas; explain must see the cap, not its metric proposal.
    scenario.set_load(Load(prefill_backlog=25, memory_fraction=0.2))
    doc = assert_settled_agreement(scenario, admin_tls, hpa, MAX_REPLICAS)
    pods_metric = _by_name(doc)["jetstream_prefill_backlog_size"]
    assert pods_metric["proposal"] == pods_average_replicas([25] * MAX_REPLICAS, 10)
    assert doc["decision"]["metricDesiredReplicas"] == pods_metric["proposal"] > MAX_REPLICAS
    assert doc["decision"]["scalingLimited"] == "TooManyReplicas", doc["decision"]

    # Hold: a backlog equal to the target is inside the tolerance: the HPA keeps 6 pods even
    # though the memory metric alone would want fewer (the larger proposal wins).
    scenario.set_load(Load(prefill_backlog=10, memory_fraction=0.2))
    doc = assert_settled_agreement(scenario, admin_tls, hpa, MAX_REPLICAS)
    metrics = _by_name(doc)
    assert metrics["jetstream_prefill_backlog_size"]["reason"] == "within tolerance"
    assert metrics["jetstream_prefill_backlog_size"]["proposal"] == MAX_REPLICAS
    memory = metrics["memory_used_percentage"]
    # 6 chips at 20 % summed = 1.2 against 850m per replica: ceil(1.2 / 0.85) = 2.
    assert memory["proposal"] == math.ceil(0.2 * MAX_REPLICAS / 0.85) < MAX_REPLICAS
    assert doc["decision"]["scalingLimited"] == "DesiredWithinRange", doc["decision"]
    unseen = "\n".join(doc["unseen"])
    assert "recommendations and scale events" in unseen and "downscale stabilization 0s" in unseen

    # The explain command, from outside, with the admin's kubeconfig, agrees too.
    cli = run_explain(scenario, hpa, as_json=True)
    assert cli.returncode == 0, cli.stderr
    cli_doc = json.loads(cli.stdout)
    assert check_agreement(cli_doc) is None, cli.stdout
    assert cli_doc["decision"]["desiredReplicas"] == MAX_REPLICAS
    text = run_explain(scenario, hpa, as_json=False)
    assert text.returncode == 0, text.stderr
    assert f"desired replicas: {MAX_REPLICAS}" in text.stdout, text.stdout
    assert f"status.desiredReplicas: {MAX_REPLICAS}" in text.stdout, text.stdout
    assert "not seen:" in text.stdout, text.stdout

    # Down: a backlog of 2 wants ceil(0.2 × 6) = 2 pods, then ceil(0.2 × 2) = 1 = minReplicas.
    scenario.set_load(Load(prefill_backlog=2, memory_fraction=0.2))
    doc = assert_settled_agreement(scenario, admin_tls, hpa, 1)
    assert _by_name(doc)["jetstream_prefill_backlog_size"]["proposal"] == 1
    scenario.fleet.check()
