"""The image, built by ``hack/build-image.sh`` (``make image``), run with podman exactly as the
shipped Deployment runs it.

For each rendering of the manifests — ``kustomize build deploy/base`` and ``helm template`` of the
chart (with an inline rules file and ``tls.mode=helm``, so that the rules ConfigMap and the serving
certificate Secret are mounted too) — the adapter container of the rendered Deployment is turned
into one ``podman run``:

- its ``args`` and ``env`` as rendered, its ``image`` as rendered (``llm-metrics-adapter:0.1.0``,
  found in local storage under ``localhost/``);
- its ``securityContext`` and the pod's: ``--user runAsUser:runAsGroup``, fsGroup as a
  supplementary group, ``--read-only`` (and no writable tmpfs but the manifest's), ``--cap-drop``,
  ``--security-opt no-new-privileges``, the pod's sysctls, podman's default seccomp profile;
  ``resources.limits`` as ``--memory``/``--cpus``;
- its ``volumeMounts``: emptyDirs as tmpfs of the manifest's size, ConfigMaps and Secrets as
  read-only bind mounts of files written from the rendered objects' ``data``, and, for
  ``automountServiceAccountToken``, what the kubelet mounts at
  ``/var/run/secrets/kubernetes.io/serviceaccount``: a real token of the rendered service account
  from the API server below, its CA and the namespace.

The cluster around it is real and local: the e2e tier's kube-apiserver (with the rendered RBAC
objects applied), Debian's Prometheus scraping a simulated JetStream pod, and the pod's own network
namespace (:mod:`tests.image.podnet`, loopback only) bridged to them. What the kubelet adds and
the manifests do not contain is added as the kubelet would: ``KUBERNETES_SERVICE_HOST`` and
``KUBERNETES_SERVICE_PORT``.

One argument is overridden, and only one: the backend. The manifests point ``--prometheus-url``
(or ``--gmp-project``) at Google Cloud's Managed Prometheus, which this machine cannot reach;
every such argument is replaced by ``--prometheus-url=http://127.0.0.1:9090``, the local
Prometheus as seen from the pod. ``--cluster=CLUSTER_NAME`` stays: the simulated pod exports that
cluster label, so the scoping the manifests ask for is exercised.

Checked: start-up to ready (the readiness probe's path, over TLS), liveness and ``/healthz``, a
metric served through the aggregator (the HPA's path, front-proxy authentication and
SubjectAccessReview), no token in the logs, a clean stop on SIGTERM (``podman stop``), and the
image itself: runs as 65532 by default, no pip, no compiler, its size. The size, build and start-up
times are printed at the end of the tier.

podman or buildah missing, a failed build, a missing control plane: the tier FAILS, naming the fix.
"""

from __future__ import annotations

import base64
import json
import ssl
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sim.jetstream import SimServer
from sim.prometheus import LocalPrometheus
from tests.image.pods import (
    APISERVER_IN_POD,
    BUILD_TIMEOUT_S,
    PATHS,
    REPORT,
    BuiltImage,
    Cluster,
    PodRun,
    arg_value,
    build_script,
    container_of,
    deployment_of,
    get,
    pod_network,
    pod_run,
    unverified,
    verifying,
    wait_ready,
)
from tests.support.controlplane import ControlPlane
from tests.support.manifests import BASE, Obj, helm_template, kustomize_build
from tests.support.plane import running

pytestmark = pytest.mark.image


NAMESPACE = "image-test"
"""The namespace of the simulated JetStream pod (and of the metric requests)."""
BACKLOG = 7
CHART_RULES = {
    "metrics": [
        {
            "name": "image_prefill_backlog",
            "type": "external",
            "query": "sum(jetstream_prefill_backlog_size)",
        }
    ]
}
"""The chart's inline rules file: rendered into the ConfigMap the pod mounts."""

# Ports inside the pod's network namespace that reach the host's servers.
PROMETHEUS_IN_POD = 9090
BACKEND_ARGS = ("--prometheus-url", "--gmp-project")
"""The only arguments the tier replaces (see the module docstring)."""

_STOP_BOUND_S = 5.0
_IMAGE_SIZE_BUDGET = 350_000_000

STARTED: list[str] = []
"""Names of the containers this run started."""


# --------------------------------------------------------------------------- the local cluster


@pytest.fixture(scope="module")
def cluster(image: BuiltImage) -> Iterator[Cluster]:
    """kube-apiserver (the e2e tier's) and a Prometheus scraping one simulated JetStream pod whose
    series carry the cluster label the rendered ``--cluster`` names."""
    cluster_name = arg_value(container_of(deployment_of(_render("base")))["args"], "--cluster")
    sim = SimServer(pod="jetstream-0", namespace=NAMESPACE, cluster=cluster_name or "")
    sim.start()
    sim.set_backlog(BACKLOG)
    prometheus = LocalPrometheus([sim.target])
    try:
        prometheus.start()
        prometheus.wait_for(
            f'jetstream_prefill_backlog_size{{namespace="{NAMESPACE}"}}', lambda s: len(s) == 1
        )
        plane = ControlPlane(controllers=("serviceaccount-controller",))
        with running(plane):
            cert, key = plane.client_cert("image-tier", groups=("system:masters",))
            admin = ssl.create_default_context(cafile=str(plane.ca_file))
            admin.load_cert_chain(str(cert), str(key))
            yield Cluster(plane=plane, prometheus=prometheus, admin=admin)
    finally:
        prometheus.stop()
        sim.stop()


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


# --------------------------------------------------------------------------- the manifests


def _render(variant: str) -> list[Obj]:
    if variant == "base":
        return kustomize_build(BASE)
    rendered = helm_template({"rules": CHART_RULES, "tls": {"mode": "helm"}})
    assert isinstance(rendered, list)
    return rendered


def override_backend(run: PodRun) -> None:
    """The one replaced argument: the backend, by the local Prometheus as seen from the pod."""
    kept = [a for a in run.container_args if a.split("=", 1)[0] not in BACKEND_ARGS]
    run.overridden = [a for a in run.container_args if a.split("=", 1)[0] in BACKEND_ARGS]
    assert run.overridden, "the rendered args name no backend: the override needs updating"
    run.container_args = [*kept, f"--prometheus-url=http://127.0.0.1:{PROMETHEUS_IN_POD}"]


# --------------------------------------------------------------------------- the tests


def test_every_module_of_the_adapter_imports_in_the_image(image: BuiltImage) -> None:
    """Native libraries the wheels link against are in the image: an import that fails only on
    one backend's path (grpcio needs libstdc++ for Cloud Monitoring) would crash-loop the pod."""
    probe = (
        "import importlib, json, pkgutil, adapter\n"
        "names = [m.name for m in pkgutil.walk_packages(adapter.__path__, 'adapter.')\n"
        "         if m.name != 'adapter.__main__']  # runs the command line\n"
        "failed = {}\n"
        "for name in names:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as exc:\n"
        "        failed[name] = f'{type(exc).__name__}: {exc}'\n"
        "print(json.dumps({'modules': len(names), 'failed': failed}))\n"
    )
    result = image.podman(
        "run", "--rm", "--pull=never", "--read-only", "--entrypoint", "python3", image.ref,
        "-c", probe,
    )  # fmt: skip
    found = json.loads(result.stdout)
    assert found["failed"] == {}, found["failed"]
    assert found["modules"] > 10, found


def test_the_image_runs_as_65532_without_pip_or_compilers(image: BuiltImage) -> None:
    config = json.loads(image.podman("image", "inspect", image.ref).stdout)[0]["Config"]
    assert config["User"] == "65532:65532"
    assert config["Entrypoint"] == ["llm-metrics-adapter"] and config["Cmd"] == ["serve"]
    probe = (
        "import importlib.util, json, os, shutil\n"
        "names = ('pip', 'pip3', 'easy_install', 'gcc', 'cc', 'c++', 'g++', 'cpp', 'clang', 'ld',"
        " 'as', 'make', 'apt-get')\n"
        "print(json.dumps({'uid': os.getuid(), 'gid': os.getgid(),"
        " 'tools': {n: shutil.which(n) for n in names if shutil.which(n)},"
        " 'modules': [m for m in ('pip', 'setuptools', 'wheel', 'ensurepip')"
        " if importlib.util.find_spec(m)]}))\n"
    )
    # No --user: the image's own default.
    result = image.podman(
        "run", "--rm", "--pull=never", "--entrypoint", "python3", image.ref, "-c", probe
    )
    found = json.loads(result.stdout)
    assert (found["uid"], found["gid"]) == (65532, 65532)
    assert found["tools"] == {}, f"build tools in the image: {found['tools']}"
    assert found["modules"] == [], f"packaging modules in the image: {found['modules']}"
    assert REPORT["size_mb"] * 1e6 < _IMAGE_SIZE_BUDGET, (
        f"the image grew to {REPORT['size_mb']} MB (budget {_IMAGE_SIZE_BUDGET / 1e6:.0f} MB)"
    )


@pytest.mark.parametrize("variant", ["base", "chart"])
def test_the_image_serves_as_the_deployment_runs_it(
    variant: str, image: BuiltImage, cluster: Cluster, tmp_path: Path
) -> None:
    objects = _render(variant)
    for obj in objects:
        if obj["kind"] in PATHS:
            cluster.apply(obj)
    run = pod_run(objects, cluster, tmp_path / "files")
    override_backend(run)
    metric = "image_prefill_backlog" if variant == "chart" else "jetstream_prefill_backlog_size"
    services = [o for o in objects if o["kind"] == "APIService"]
    ca_bundle = {o["spec"].get("caBundle") for o in services}
    assert len(ca_bundle) == 1, "every APIService trusts the same CA"
    (bundle,) = ca_bundle
    service = services[0]["spec"]["service"]
    server_name = f"{service['name']}.{service['namespace']}.svc"
    ca_pem = base64.b64decode(bundle) if bundle else None
    name = f"lma-image-{variant}-{uuid.uuid4().hex[:8]}"
    STARTED.append(name)
    assert image.ref.endswith("/" + run.image), (
        f"the rendered Deployment runs {run.image}, make image builds {image.ref}: "
        "the manifests' tag and pyproject.toml's version differ"
    )

    into = {APISERVER_IN_POD: cluster.api_port, PROMETHEUS_IN_POD: _port(cluster.prometheus.url)}
    with pod_network(into, run.port) as (netns, host_port):
        began = time.monotonic()
        image.podman(
            "run", "--detach", "--name", name, "--pull=never", f"--network=ns:{netns}",
            *run.args, run.image, *run.container_args,
        )  # fmt: skip
        try:
            base_url = f"https://127.0.0.1:{host_port}"
            context = verifying(ca_pem, server_name) if ca_pem else unverified()
            ready_s = wait_ready(image, name, base_url + run.readiness_path, context, began)
            for path in (run.liveness_path, "/healthz"):
                status, body = get(base_url + path, context)
                assert status == 200, f"{path}: HTTP {status} {body[:200]!r}"

            # The HPA's path: the aggregator, with the APIServices as rendered (self-signed:
            # insecureSkipTLSVerify; chart: the caBundle of the certificate the pod mounts).
            if ca_pem:
                cluster.plane.register_adapter(host_port, ca_bundle=ca_pem)
            else:
                cluster.plane.register_adapter(host_port, insecure=True)
            cluster.plane.wait_apiservices_available(timeout=60)
            value = _wait_metric(cluster, metric)
            assert value == str(BACKLOG), f"{metric} = {value}, expected {BACKLOG}"
        except BaseException:
            print(image.podman("logs", name, check=False).stdout[-6000:])
            raise
        finally:
            stop_began = time.monotonic()
            image.podman("stop", "--time", f"{run.grace_s:.0f}", name, check=False)
            stop_s = time.monotonic() - stop_began
            state = json.loads(image.podman("inspect", name, check=False).stdout or "[{}]")[0]
            logs = image.podman("logs", name, check=False)
            image.podman("rm", "--force", name, check=False)

    exit_code = (state.get("State") or {}).get("ExitCode")
    REPORT[variant] = {
        "ready_s": round(ready_s, 2),
        "stop_s": round(stop_s, 2),
        "exit_code": exit_code,
        "overridden": run.overridden,
    }
    output = logs.stdout + logs.stderr
    assert run.token and run.token not in output, "the service-account token is in the logs"
    assert "Traceback" not in output, output[-4000:]
    assert exit_code == 0, f"exit code {exit_code} after SIGTERM:\n{output[-4000:]}"
    assert stop_s < _STOP_BOUND_S, f"podman stop took {stop_s:.1f}s: SIGTERM was not enough"


def _wait_metric(cluster: Cluster, metric: str, timeout_s: float = 30.0) -> str:
    """The external metric's value, read through the aggregator as the HPA controller reads it."""
    path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{NAMESPACE}/{metric}"
    deadline = time.monotonic() + timeout_s
    last: Any = None
    while time.monotonic() < deadline:
        try:
            answer = cluster.request("GET", path)
        except AssertionError as exc:
            last = str(exc)
        else:
            items = answer.get("items") or []
            if items:
                value: str = items[0]["value"]
                return value
            last = answer
        time.sleep(0.5)
    raise AssertionError(f"{path} gave no value in {timeout_s:.0f}s (last: {last})")


def test_no_container_is_left_behind(image: BuiltImage) -> None:
    assert STARTED, "no container was started"
    names = set(image.podman("ps", "--all", "--format", "{{.Names}}").stdout.split())
    assert not names & set(STARTED), names & set(STARTED)


def test_the_build_needs_no_rebuild_when_nothing_changed(image: BuiltImage) -> None:
    """A second `make image` reuses every cached step: it takes seconds, not minutes."""
    began = time.monotonic()
    result = build_script("build", timeout=BUILD_TIMEOUT_S)
    cached_s = time.monotonic() - began
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == image.ref
    REPORT["cached_build_s"] = round(cached_s, 1)
    assert cached_s < 120, f"a cached build took {cached_s:.0f}s"
