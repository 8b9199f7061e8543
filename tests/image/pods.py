"""Running the image as a rendered Deployment runs it, for the image tier's tests: the build
(``hack/build-image.sh``, what ``make image`` runs), the local cluster's API as an admin, the
``podman run`` arguments of a rendered Deployment's adapter container (:func:`pod_run`), the pod's
own network namespace bridged to the host (:func:`pod_network`, :mod:`tests.image.podnet`), and
HTTPS helpers. What the tier measures is collected in :data:`REPORT` and printed at its end.

Test support: a failure to build or run FAILS the test that needs it, naming the fix.
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
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from sim.prometheus import LocalPrometheus
from tests.support.controlplane import ControlPlane

__all__ = [
    "PATHS",
    "REPORT",
    "SA_DIR",
    "BuiltImage",
    "Cluster",
    "PodRun",
    "arg_value",
    "build_image",
    "build_script",
    "container_of",
    "deployment_of",
    "get",
    "pod_network",
    "pod_run",
    "print_report",
    "quantity",
    "unverified",
    "verifying",
    "wait_ready",
]

Obj = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = ROOT / "hack" / "build-image.sh"
PODNET = Path(__file__).resolve().parent / "podnet.py"
SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
APISERVER_IN_POD = 6443
"""The port inside the pod's network namespace that reaches the API server."""
BUILD_TIMEOUT_S = 1800.0  # cold: Debian packages, wheels, a bootstrapped base
_READY_TIMEOUT_S = 60.0
_PODMAN_TIMEOUT_S = 120.0

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


def build_script(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
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


def build_image() -> BuiltImage:
    """The image, built (or found current) by the script ``make image`` runs."""
    began = time.monotonic()
    result = build_script("build", timeout=BUILD_TIMEOUT_S)
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
    env_result = build_script("env", timeout=60)
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
    return built


def print_report(config: pytest.Config) -> None:
    lines = [f"image: {REPORT.get('image')} on base {REPORT.get('base_image')}"]
    if "size_mb" in REPORT:
        lines.append(f"image size: {REPORT['size_mb']} MB")
    lines.append(
        f"hack/build-image.sh (make image) in this run: {REPORT.get('build_s')} s, "
        f"then again with nothing changed: {REPORT.get('cached_build_s')} s"
    )
    for install, gke in (REPORT.get("gke") or {}).items():
        lines.append(
            f"GKE e2e ({install}): added to the rendered pod: {gke.get('added to the rendered pod')}"
        )
        lines += [
            f"GKE e2e ({install}): {key}: {value}"
            for key, value in gke.items()
            if key not in ("added to the rendered pod", "restart")
        ]
        restart = gke.get("restart") or {}
        lines += [f"GKE e2e ({install}) restart: {key}: {value}" for key, value in restart.items()]
    for variant in ("base", "chart"):
        run = REPORT.get(variant)
        if run:
            lines.append(
                f"{variant}: ready {run.get('ready_s')} s after `podman run`, "
                f"stopped in {run.get('stop_s')} s (exit {run.get('exit_code')}), "
                f"overridden: {run.get('overridden')}"
            )
    if "tier_s" in REPORT:
        lines.append(f"image tier: {REPORT['tier_s']} s from the build to the last test")
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


PATHS = {
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
    return PATHS[obj["kind"]].format(name=meta["name"], namespace=meta.get("namespace", ""))


# --------------------------------------------------------------------------- the manifests


def deployment_of(objects: Sequence[Obj]) -> Obj:
    (deployment,) = [o for o in objects if o["kind"] == "Deployment"]
    return deployment


def container_of(deployment: Mapping[str, Any]) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == "adapter"]
    return dict(container)


def arg_value(args: Sequence[str], flag: str) -> str | None:
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


def quantity(text: str | int) -> float:
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
    """Translate the rendered Deployment's adapter container into ``podman run`` arguments: its
    args and env as rendered (a caller that must replace one records it in ``overridden``)."""
    deployment = deployment_of(objects)
    pod = deployment["spec"]["template"]["spec"]
    container = container_of(deployment)
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
        run.args += ["--memory", str(int(quantity(limits["memory"])))]
    if "cpu" in limits:
        run.args += ["--cpus", f"{quantity(limits['cpu']):g}"]
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
                options.append(f"tmpfs-size={int(quantity(size))}")
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

    run.container_args = list(container.get("args", []))

    (port,) = [p for p in container["ports"] if p["name"] == "https"]
    run.port = int(port["containerPort"])
    run.readiness_path = container["readinessProbe"]["httpGet"]["path"]
    run.liveness_path = container["livenessProbe"]["httpGet"]["path"]
    return run


# --------------------------------------------------------------------------- the pod network


@contextlib.contextmanager
def pod_network(into: Mapping[int, int], container_port: int) -> Iterator[tuple[str, int]]:
    """The pod's network namespace (its path) and the host port that reaches ``container_port``;
    ``into`` maps a port inside the pod to the host port it reaches."""
    process = subprocess.Popen(
        [
            sys.executable,
            str(PODNET),
            *[arg for inner, host in into.items() for arg in ("--into", f"{inner}={host}")],
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


def unverified() -> ssl.SSLContext:
    """For deploy/base: the adapter serves its own self-signed certificate (the APIServices say
    insecureSkipTLSVerify)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def get(url: str, context: ssl.SSLContext) -> tuple[int, bytes]:
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


def verifying(ca_pem: bytes, server_name: str) -> ssl.SSLContext:
    context = _SNIContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cadata=ca_pem.decode("ascii"))
    context.server_name = server_name
    return context


def wait_ready(
    image: BuiltImage, name: str, url: str, context: ssl.SSLContext, began: float
) -> float:
    """Seconds from ``podman run`` until the readiness probe's path answers 200 over TLS."""
    last = "no answer"
    while time.monotonic() - began < _READY_TIMEOUT_S:
        try:
            status, body = get(url, context)
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
