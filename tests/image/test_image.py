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
import contextlib
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sim.jetstream import SimServer
from sim.prometheus import LocalPrometheus
from tests.support.controlplane import ControlPlane
from tests.support.manifests import BASE, helm_template, kustomize_build
from tests.support.plane import running

pytestmark = pytest.mark.image

Obj = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-image.sh"
PODNET = Path(__file__).resolve().parent / "podnet.py"

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
APISERVER_IN_POD = 6443
PROMETHEUS_IN_POD = 9090
BACKEND_ARGS = ("--prometheus-url", "--gmp-project")
"""The only arguments the tier replaces (see the module docstring)."""

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
_BUILD_TIMEOUT_S = 1800.0  # cold: Debian packages, wheels, a bootstrapped base
_READY_TIMEOUT_S = 60.0
_STOP_BOUND_S = 5.0
_IMAGE_SIZE_BUDGET = 350_000_000
_PODMAN_TIMEOUT_S = 120.0

STARTED: list[str] = []
"""Names of the containers this run started."""
REPORT: dict[str, Any] = {}
"""What the tier measured; printed (and written to the image cache) at its end."""


# --------------------------------------------------------------------------- build and podman


@dataclass(frozen=True)
class BuiltImage:
    ref: str
    env: dict[str, str]
    build_s: float
    base: str

    def podman(
        self, *args: str, check: bool = True, timeout: float = _PODMAN_TIMEOUT_S
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args],
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            pytest.fail(
                f"podman {' '.join(args[:3])} … failed ({result.returncode}):\n{result.stderr}",
                pytrace=False,
            )
        return result


def _script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_PYTHON": sys.executable}
    return subprocess.run(
        ["bash", str(BUILD_SCRIPT), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def image(request: pytest.FixtureRequest) -> Iterator[BuiltImage]:
    """The image, built (or found current) by the script ``make image`` runs."""
    began = time.monotonic()
    result = _script("build", timeout=_BUILD_TIMEOUT_S)
    build_s = time.monotonic() - began
    if result.returncode != 0:
        pytest.fail(
            f"hack/build-image.sh failed ({result.returncode}); it installs buildah, podman, "
            f"runc and mmdebstrap itself with apt-get — see its output:\n"
            f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}",
            pytrace=False,
        )
    ref = result.stdout.strip().splitlines()[-1]
    found = re.search(r"\(buildah, base (\S+)\)", result.stdout)
    base = found.group(1) if found else "?"
    env_result = _script("env", timeout=60)
    assert env_result.returncode == 0, env_result.stderr
    env = {}
    for line in env_result.stdout.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            env[key] = value
    for tool in ("podman", "buildah"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} not found after the build: run `make image`", pytrace=False)
    REPORT.update(image=ref, base_image=base, build_s=round(build_s, 1))
    built = BuiltImage(ref=ref, env=env, build_s=build_s, base=base)
    size = int(built.podman("image", "inspect", "--format", "{{.Size}}", ref).stdout.strip())
    REPORT["size_mb"] = round(size / 1e6, 1)
    yield built
    _print_report(request.config)


def _print_report(config: pytest.Config) -> None:
    lines = [f"image: {REPORT.get('image')} on base {REPORT.get('base_image')}"]
    if "size_mb" in REPORT:
        lines.append(f"image size: {REPORT['size_mb']} MB")
    lines.append(
        f"hack/build-image.sh (make image) in this run: {REPORT.get('build_s')} s, "
        f"then again with nothing changed: {REPORT.get('cached_build_s')} s"
    )
    for variant in ("base", "chart"):
        run = REPORT.get(variant)
        if run:
            lines.append(
                f"{variant}: ready {run.get('ready_s')} s after `podman run`, "
                f"stopped in {run.get('stop_s')} s (exit {run.get('exit_code')}), "
                f"overridden: {run.get('overridden')}"
            )
    cache = Path(os.environ.get("LMA_CACHE", Path.home() / ".cache" / "llm-metrics-adapter"))
    with contextlib.suppress(OSError):
        (cache / "image" / "report.json").write_text(json.dumps(REPORT, indent=2) + "\n")
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    capture = config.pluginmanager.get_plugin("capturemanager")
    suspended = capture.global_and_fixture_disabled() if capture else contextlib.nullcontext()
    with suspended:
        if reporter is not None:
            reporter.write_sep("-", "image tier")
            for line in lines:
                reporter.write_line(line)
        else:
            print("\n".join(lines))


# --------------------------------------------------------------------------- the local cluster


@dataclass
class Cluster:
    plane: ControlPlane
    prometheus: LocalPrometheus
    admin: ssl.SSLContext

    @property
    def api_port(self) -> int:
        return int(urllib.parse.urlsplit(self.plane.api_url).port or 0)

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> Obj:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(
            self.plane.api_url + path,
            data=data,
            method=method,
            headers={"Content-Type": content_type, "Accept": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30, context=self.admin) as response:
                answer: Obj = json.loads(response.read() or b"{}")
                return answer
        except urllib.error.HTTPError as exc:
            detail = exc.read(2000).decode("utf-8", errors="replace")
            raise AssertionError(f"{method} {path}: HTTP {exc.code}: {detail}") from None

    def apply(self, obj: Mapping[str, Any]) -> None:
        """Server-side apply one rendered object."""
        path = _object_path(obj)
        query = "?fieldManager=image-tier&force=true"
        self.request("PATCH", path + query, dict(obj), "application/apply-patch+yaml")

    def token(self, namespace: str, service_account: str) -> str:
        answer = self.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{service_account}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        token: str = answer["status"]["token"]
        return token


_PATHS = {
    "Namespace": "/api/v1/namespaces/{name}",
    "ServiceAccount": "/api/v1/namespaces/{namespace}/serviceaccounts/{name}",
    "ClusterRole": "/apis/rbac.authorization.k8s.io/v1/clusterroles/{name}",
    "ClusterRoleBinding": "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/{name}",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/roles/{name}",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}/rolebindings/{name}",
}
"""The rendered objects the adapter's own identity depends on: applied to the local cluster."""


def _object_path(obj: Mapping[str, Any]) -> str:
    meta = obj["metadata"]
    return _PATHS[obj["kind"]].format(name=meta["name"], namespace=meta.get("namespace", ""))


@pytest.fixture(scope="module")
def cluster(image: BuiltImage) -> Iterator[Cluster]:
    """kube-apiserver (the e2e tier's) and a Prometheus scraping one simulated JetStream pod whose
    series carry the cluster label the rendered ``--cluster`` names."""
    cluster_name = _arg_value(_container(_deployment(_render("base")))["args"], "--cluster")
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


# --------------------------------------------------------------------------- the manifests


def _render(variant: str) -> list[Obj]:
    if variant == "base":
        return kustomize_build(BASE)
    rendered = helm_template({"rules": CHART_RULES, "tls": {"mode": "helm"}})
    assert isinstance(rendered, list)
    return rendered


def _deployment(objects: Sequence[Obj]) -> Obj:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment


def _container(deployment: Mapping[str, Any]) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "adapter"]
    return dict(container)


def _arg_value(args: Sequence[str], flag: str) -> str | None:
    for arg in args:
        if arg.startswith(flag + "="):
            return arg.split("=", 1)[1]
    return None


def _named(objects: Sequence[Obj], kind: str, name: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"the render has no single {kind} {name}"
    return found[0]


_QUANTITY = re.compile(r"^([0-9.]+)(m|k|M|G|Ki|Mi|Gi)?$")
_SCALE = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30}


def _quantity(text: str | int) -> float:
    match = _QUANTITY.match(str(text))
    assert match, f"unsupported quantity {text!r}"
    return float(match.group(1)) * _SCALE[match.group(2)]


@dataclass
class PodRun:
    """The ``podman run`` arguments of one rendered Deployment, and the host files it mounts."""

    args: list[str] = field(default_factory=list)
    container_args: list[str] = field(default_factory=list)
    overridden: list[str] = field(default_factory=list)
    image: str = ""
    port: int = 0
    readiness_path: str = ""
    liveness_path: str = ""
    token: str = ""
    grace_s: float = 30.0


def _write_files(directory: Path, files: Mapping[str, bytes]) -> None:
    directory.mkdir(parents=True)
    directory.chmod(0o755)
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        # The kubelet's default mode for ConfigMap and Secret files.
        path.chmod(0o644)


def pod_run(objects: Sequence[Obj], cluster: Cluster, files: Path) -> PodRun:
    """Translate the rendered Deployment's adapter container into ``podman run`` arguments."""
    deployment = _deployment(objects)
    pod = deployment["spec"]["template"]["spec"]
    container = _container(deployment)
    namespace = deployment["metadata"]["namespace"]
    run = PodRun(image=container["image"])
    pod_sc = pod.get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}

    # Identity and privileges.
    assert sc.get("runAsNonRoot") is True and int(sc["runAsUser"]) != 0
    run.args += ["--user", f"{sc['runAsUser']}:{sc['runAsGroup']}"]
    if "fsGroup" in pod_sc:
        run.args += ["--group-add", str(pod_sc["fsGroup"])]
    if sc.get("readOnlyRootFilesystem"):
        # podman would otherwise mount writable tmpfs on /tmp, /var/tmp and /run.
        run.args += ["--read-only", "--read-only-tmpfs=false"]
    capabilities = sc.get("capabilities") or {}
    run.args += [f"--cap-drop={cap}" for cap in capabilities.get("drop", [])]
    run.args += [f"--cap-add={cap}" for cap in capabilities.get("add", [])]
    if sc.get("allowPrivilegeEscalation") is False:
        run.args += ["--security-opt", "no-new-privileges"]
    seccomp = (sc.get("seccompProfile") or {}).get("type", "RuntimeDefault")
    assert seccomp == "RuntimeDefault", f"seccomp profile {seccomp}: podman's default is used"
    for sysctl in pod_sc.get("sysctls", []):
        run.args += ["--sysctl", f"{sysctl['name']}={sysctl['value']}"]
    limits = (container.get("resources") or {}).get("limits") or {}
    if "memory" in limits:
        run.args += ["--memory", str(int(_quantity(limits["memory"])))]
    if "cpu" in limits:
        run.args += ["--cpus", f"{_quantity(limits['cpu']):g}"]
    run.grace_s = float(pod.get("terminationGracePeriodSeconds", 30))

    # Volumes.
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        volume = volumes[mount["name"]]
        target = mount["mountPath"]
        if "emptyDir" in volume:
            size = volume["emptyDir"].get("sizeLimit")
            options = [f"type=tmpfs,destination={target},tmpfs-mode=1777"]
            if size:
                options.append(f"tmpfs-size={int(_quantity(size))}")
            run.args += ["--mount", ",".join(options)]
            continue
        if "configMap" in volume:
            source = _named(objects, "ConfigMap", volume["configMap"]["name"])
            content = {k: v.encode() for k, v in (source.get("data") or {}).items()}
        elif "secret" in volume:
            source = _named(objects, "Secret", volume["secret"]["secretName"])
            content = {k: base64.b64decode(v) for k, v in (source.get("data") or {}).items()}
        else:
            raise AssertionError(f"volume {mount['name']}: a kind this tier does not mount yet")
        host = files / mount["name"]
        _write_files(host, content)
        # ConfigMap and Secret volumes are read-only whatever the mount says.
        run.args += ["--volume", f"{host}:{target}:ro"]

    # What the kubelet adds: the service-account files and the API server's address.
    service_account = pod.get("serviceAccountName", "default")
    if pod.get("automountServiceAccountToken", True):
        run.token = cluster.token(namespace, service_account)
        sa_files = {
            "token": run.token.encode(),
            "ca.crt": cluster.plane.ca_file.read_bytes(),
            "namespace": namespace.encode(),
        }
        _write_files(files / "serviceaccount", sa_files)
        run.args += ["--volume", f"{files / 'serviceaccount'}:{SA_DIR}:ro"]
    run.args += ["--env", "KUBERNETES_SERVICE_HOST=127.0.0.1"]
    run.args += ["--env", f"KUBERNETES_SERVICE_PORT={APISERVER_IN_POD}"]
    for env in container.get("env", []):
        assert "value" in env, f"env {env['name']}: only literal values are supported here"
        run.args += ["--env", f"{env['name']}={env['value']}"]

    # The arguments, with the backend replaced.
    for arg in container.get("args", []):
        if arg.split("=", 1)[0] in BACKEND_ARGS:
            run.overridden.append(arg)
        else:
            run.container_args.append(arg)
    assert run.overridden, "the rendered args name no backend: the override needs updating"
    run.container_args.append(f"--prometheus-url=http://127.0.0.1:{PROMETHEUS_IN_POD}")

    (port,) = [p for p in container["ports"] if p["name"] == "https"]
    run.port = int(port["containerPort"])
    run.readiness_path = container["readinessProbe"]["httpGet"]["path"]
    run.liveness_path = container["livenessProbe"]["httpGet"]["path"]
    return run


# --------------------------------------------------------------------------- the pod network


@contextlib.contextmanager
def pod_network(cluster: Cluster, container_port: int) -> Iterator[tuple[str, int]]:
    """The pod's network namespace (its path) and the host port that reaches ``container_port``."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(PODNET),
            "--into",
            f"{APISERVER_IN_POD}={cluster.api_port}",
            "--into",
            f"{PROMETHEUS_IN_POD}={urllib.parse.urlsplit(cluster.prometheus.url).port}",
            "--out",
            str(container_port),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line, f"podnet.py exited with {process.wait(10)} before listening"
        ready = json.loads(line)
        yield ready["netns"], int(ready["out"][str(container_port)])
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


# --------------------------------------------------------------------------- HTTPS helpers


def _unverified() -> ssl.SSLContext:
    """For deploy/base: the adapter serves its own self-signed certificate (the APIServices say
    insecureSkipTLSVerify)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _get(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class _SNIContext(ssl.SSLContext):
    """Verifies the certificate for ``server_name`` while connecting to 127.0.0.1."""

    server_name = ""

    def wrap_socket(self, *args: Any, **kwargs: Any) -> ssl.SSLSocket:
        kwargs["server_hostname"] = self.server_name
        return super().wrap_socket(*args, **kwargs)


def _verifying(ca_pem: bytes, server_name: str) -> ssl.SSLContext:
    context = _SNIContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    context.server_name = server_name
    return context


# --------------------------------------------------------------------------- the tests


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
        if obj["kind"] in _PATHS:
            cluster.apply(obj)
    run = pod_run(objects, cluster, tmp_path / "files")
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

    with pod_network(cluster, run.port) as (netns, host_port):
        began = time.monotonic()
        image.podman(
            "run", "--detach", "--name", name, "--pull=never", f"--network=ns:{netns}",
            *run.args, run.image, *run.container_args,
        )  # fmt: skip
        try:
            base_url = f"https://127.0.0.1:{host_port}"
            context = _verifying(ca_pem, server_name) if ca_pem else _unverified()
            ready_s = _wait_ready(image, name, base_url + run.readiness_path, context, began)
            for path in (run.liveness_path, "/healthz"):
                status, body = _get(base_url + path, context)
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
    print("DEBUGLOGS", output[-5000:])
    assert run.token and run.token not in output, "the service-account token is in the logs"
    assert "Traceback" not in output, output[-4000:]
    assert exit_code == 0, f"exit code {exit_code} after SIGTERM:\n{output[-4000:]}"
    assert stop_s < _STOP_BOUND_S, f"podman stop took {stop_s:.1f}s: SIGTERM was not enough"


def _wait_ready(
    image: BuiltImage, name: str, url: str, context: ssl.SSLContext, began: float
) -> float:
    """Seconds from ``podman run`` until the readiness probe's path answers 200 over TLS."""
    last = "no answer"
    while time.monotonic() - began < _READY_TIMEOUT_S:
        try:
            status, body = _get(url, context)
        except (OSError, ssl.SSLError) as exc:
            last = str(exc)
        else:
            if status == 200:
                return time.monotonic() - began
            last = f"HTTP {status}: {body[:300]!r}"
        state = image.podman("inspect", "--format", "{{.State.Status}}", name, check=False)
        if state.stdout.strip() not in ("running", "created", "configured"):
            logs = image.podman("logs", name, check=False)
            pytest.fail(
                f"the container stopped ({state.stdout.strip()}) before it was ready:\n"
                f"{logs.stdout[-4000:]}{logs.stderr[-4000:]}",
                pytrace=False,
            )
        time.sleep(0.2)
    pytest.fail(f"{url} not ready after {_READY_TIMEOUT_S:.0f}s (last: {last})", pytrace=False)


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
    result = _script("build", timeout=_BUILD_TIMEOUT_S)
    cached_s = time.monotonic() - began
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == image.ref
    REPORT["cached_build_s"] = round(cached_s, 1)
    assert cached_s < 120, f"a cached build took {cached_s:.0f}s"
