"""docs/deploy.md, the first ten minutes on GKE, run as written against a local control plane.

Every ``sh`` block of the guide is handled here, in the guide's order; a block this test does not
know fails it, so a new command cannot go untested. Blocks that can run here run verbatim with
bash (``set -euo pipefail``) in a directory where ``deploy/`` is the repository's, with
``KUBECONFIG`` pointing at a control plane of their own (the guide installs APIServices, which the
session's control plane uses for the e2e adapter): the kustomize overlay and ``kubectl apply -k``,
``helm install``, the verification ``kubectl get``s, the HPA example and ``kubectl describe``.
No kubelet runs, so the installed pods never start; what the Deployment would run is checked
instead (args, image, service account annotation), and the image e2e (tests/image) runs it.

What cannot run here is checked for shape: the ``gcloud`` IAM steps (the project, the role, and
the Workload Identity member naming the namespace and service account that deploy/ creates),
``kubectl apply -k deploy/monitoring`` (its PodMonitoring kind is Google's; the kustomization is
built), the ``kubectl get --raw`` paths (parsed as the adapter parses them, naming metrics it
serves), ``kubectl get … --watch`` (run without ``--watch``), ``make image`` (the Makefile target
the image tier's build runs) and ``docker build`` (the Dockerfile and its base argument). The
defaults the guide states (chart values, tool versions, APIService priorities) are compared with
the files that set them.

kubectl (built with the control plane, the same release), helm or the control plane missing: the test
FAILS naming the fix.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapter.core.request import parse_path_string
from tests.support import REPO
from tests.support.controlplane import BinariesNotFoundError, ControlPlane, find_binaries
from tests.support.guide import DEPLOY_GUIDE, shell_blocks
from tests.support.manifests import CHART, kustomize_build, tool
from tests.support.plane import running
from tests.support.waiting import wait_until

BLOCKS = shell_blocks()
PRESETS = REPO / "adapter" / "rules" / "presets.yaml"
_RUN_TIMEOUT_S = 120


@dataclass
class Shell:
    """bash in the guide's working directory, against the guide's own control plane."""

    work: Path
    env: dict[str, str]
    plane: ControlPlane

    def run(self, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.work,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=_RUN_TIMEOUT_S,
            check=False,
        )
        if check:
            assert result.returncode == 0, (
                f"docs/deploy.md step failed ({result.returncode}):\n{script}\n"
                f"stdout:\n{result.stdout[-3000:]}\nstderr:\n{result.stderr[-3000:]}"
            )
        return result

    def get(self, kind: str, name: str, namespace: str | None = None) -> dict[str, Any]:
        where = f"-n {namespace} " if namespace else ""
        out = self.run(f"kubectl get {where}{kind} {name} -o json").stdout
        answer: dict[str, Any] = json.loads(out)
        return answer


@pytest.fixture(scope="module")
def shell(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shell]:
    try:
        kubectl = find_binaries().kubectl
    except BinariesNotFoundError as exc:
        pytest.fail(f"docs/deploy.md's steps need kubectl: {exc}", pytrace=False)
    helm = tool("helm")
    work = tmp_path_factory.mktemp("guide")
    (work / "deploy").symlink_to(REPO / "deploy")
    home = work / "home"
    home.mkdir()
    with running(ControlPlane()) as plane:
        env = {
            "PATH": os.pathsep.join([str(helm.parent), str(kubectl.parent), os.defpath]),
            "HOME": str(home),
            "KUBECONFIG": str(plane.kubeconfig_path),
            "LANG": "C.UTF-8",
        }
        yield Shell(work=work, env=env, plane=plane)


def _commands(block: str) -> list[list[str]]:
    """The block's commands, continuation lines joined and comments dropped, split as sh would
    (no expansion); ``&&`` separates commands."""
    joined = block.replace("\\\n", " ")
    commands: list[list[str]] = []
    for line in joined.splitlines():
        words = shlex.split(line, comments=True)
        current: list[str] = []
        for word in words:
            if word == "&&":
                commands.append(current)
                current = []
            else:
                current.append(word)
        if current:
            commands.append(current)
    return commands


def _block(index: int, first: str) -> str:
    assert len(BLOCKS) == 9, f"docs/deploy.md has {len(BLOCKS)} sh blocks: this test handles 9"
    block = BLOCKS[index]
    assert block.startswith(first), f"block {index + 1} of docs/deploy.md changed:\n{block}"
    return block


def _option(command: list[str], name: str) -> str:
    assert name in command, f"{name} missing from {shlex.join(command)}"
    return command[command.index(name) + 1]


def _base(kind: str) -> dict[str, Any]:
    (found,) = [o for o in kustomize_build(REPO / "deploy" / "base") if o["kind"] == kind]
    return found


# --------------------------------------------------------------------------- 1. IAM (shape)


def test_step_1_binds_the_kubernetes_service_account_the_manifests_create() -> None:
    sa = _base("ServiceAccount")["metadata"]
    project, number, binding = _commands(_block(0, "export PROJECT_ID="))
    assert project == ["export", "PROJECT_ID=my-project"]
    assert number[:4] == ["export", "PROJECT_NUMBER=$(gcloud", "projects", "describe"]
    assert number[-1] == "get(projectNumber))"
    assert binding[:4] == ["gcloud", "projects", "add-iam-policy-binding", "projects/$PROJECT_ID"]
    assert _option(binding, "--role") == "roles/monitoring.viewer"
    assert _option(binding, "--member") == (
        "principal://iam.googleapis.com/projects/$PROJECT_NUMBER/locations/global/"
        "workloadIdentityPools/$PROJECT_ID.svc.id.goog/subject/"
        f"ns/{sa['namespace']}/sa/{sa['name']}"
    )


def test_step_1_the_google_service_account_is_the_one_the_annotation_names() -> None:
    sa = _base("ServiceAccount")["metadata"]
    annotation = sa["annotations"]["iam.gke.io/gcp-service-account"]
    commands = _commands(_block(1, "export PROJECT_ID="))
    assert [c[:3] for c in commands[1:]] == [
        ["gcloud", "iam", "service-accounts"],
        ["gcloud", "projects", "add-iam-policy-binding"],
        ["gcloud", "iam", "service-accounts"],
    ]
    create, grant, workload_identity = commands[1:]
    assert create[3:5] == ["create", "llm-metrics-adapter"]
    gsa = annotation.replace("ADAPTER_GSA", create[4]).replace("PROJECT_ID", "$PROJECT_ID")
    assert _option(grant, "--member") == f"serviceAccount:{gsa}"
    assert _option(grant, "--role") == "roles/monitoring.viewer"
    assert workload_identity[3:5] == ["add-iam-policy-binding", gsa]
    assert _option(workload_identity, "--role") == "roles/iam.workloadIdentityUser"
    assert _option(workload_identity, "--member") == (
        f"serviceAccount:$PROJECT_ID.svc.id.goog[{sa['namespace']}/{sa['name']}]"
    )


# --------------------------------------------------------------------------- 2. install (run)


def _deployment_args(shell: Shell) -> tuple[list[str], str]:
    deployment = shell.get("deployment", "llm-metrics-adapter", "custom-metrics")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["args"]), str(container["image"])


def test_step_2a_the_kustomize_overlay_installs(shell: Shell) -> None:
    shell.run(_block(2, "mkdir -p my-adapter && cd my-adapter"))
    args, image = _deployment_args(shell)
    assert "--cluster=my-cluster" in args and "--gmp-project=my-project" in args, args
    assert image == "REGISTRY/llm-metrics-adapter:0.1.0"
    sa = shell.get("serviceaccount", "llm-metrics-adapter", "custom-metrics")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == (
        "llm-metrics-adapter@my-project.iam.gserviceaccount.com"
    )
    names = [
        "v1beta1.custom.metrics.k8s.io",
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
    ]
    for name in names:
        assert shell.get("apiservice", name)["spec"]["service"]["namespace"] == "custom-metrics"
    # 2a and 2b are alternatives: remove the first install before the second.
    shell.run("kubectl delete -k my-adapter --wait=true")
    wait_until(
        "namespace custom-metrics to be deleted",
        lambda: shell.run("kubectl get namespace custom-metrics", check=False).returncode != 0,
        timeout_s=60,
    )


def test_step_2b_helm_install_installs(shell: Shell) -> None:
    shell.run(_block(3, "helm install llm-metrics-adapter deploy/chart/llm-metrics-adapter"))
    status = json.loads(
        shell.run("helm status llm-metrics-adapter -n custom-metrics -o json").stdout
    )
    assert status["info"]["status"] == "deployed"
    args, image = _deployment_args(shell)
    assert "--cluster=my-cluster" in args and "--gmp-project=my-project" in args, args
    assert image.startswith("REGISTRY/llm-metrics-adapter:")
    sa = shell.get("serviceaccount", "llm-metrics-adapter", "custom-metrics")
    assert sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"] == (
        "llm-metrics-adapter@my-project.iam.gserviceaccount.com"
    )


# --------------------------------------------------------------------------- 3. scrape (shape)


def test_step_3_the_monitoring_kustomization_builds(shell: Shell) -> None:
    (command,) = _commands(_block(4, "kubectl apply -k deploy/monitoring"))
    assert command == ["kubectl", "apply", "-k", "deploy/monitoring"]
    # Google's PodMonitoring kind does not exist here: build what `apply -k` would send.
    built = [
        d for d in yaml.safe_load_all(shell.run("kubectl kustomize deploy/monitoring").stdout) if d
    ]
    kinds = {d["kind"] for d in built}
    assert "PodMonitoring" in kinds, kinds
    for doc in built:
        if doc["kind"] == "PodMonitoring":
            assert doc["apiVersion"].startswith("monitoring.googleapis.com/")


# --------------------------------------------------------------------------- 4. verify (run)


def test_step_4_the_verification_commands_run(shell: Shell) -> None:
    output = shell.run(_block(5, "kubectl -n custom-metrics get pods")).stdout
    for name in (
        "v1beta1.custom.metrics.k8s.io",
        "v1beta2.custom.metrics.k8s.io",
        "v1beta1.external.metrics.k8s.io",
    ):
        assert name in output, output


def test_step_4_the_raw_paths_are_what_the_adapter_serves() -> None:
    commands = _commands(_block(6, "kubectl get --raw /apis/custom.metrics.k8s.io/v1beta2"))
    presets = yaml.safe_load(PRESETS.read_text())["metrics"]
    served = {(m["type"], m["name"]) for m in presets}
    asked = []
    for command in commands:
        assert command[:3] == ["kubectl", "get", "--raw"], command
        assert command[4:6] == ["|", "jq"], command
        path = command[3]
        if path.count("/") == 3:  # discovery: /apis/<group>/<version>
            assert path in (
                "/apis/custom.metrics.k8s.io/v1beta2",
                "/apis/external.metrics.k8s.io/v1beta1",
            )
            continue
        request = parse_path_string(path)
        assert request.namespace == "default"
        kind = (
            "external"
            if request.group == "external"
            else str(request.resource and request.resource.resource)
        )
        asked.append((kind, request.metric))
    assert asked == [
        ("external", "jetstream_prefill_backlog_size"),
        ("pods", "jetstream_prefill_backlog_size"),
    ]
    assert set(asked) <= served


# --------------------------------------------------------------------------- 5. autoscale (run)


def test_step_5_the_example_hpa_applies_and_describes(shell: Shell) -> None:
    block = _block(7, "kubectl apply -f deploy/examples/hpa-external-prefill-backlog.yaml")
    lines = [line.split("#")[0].rstrip() for line in block.strip().splitlines()]
    assert lines[1] == "kubectl get hpa jetstream-hpa --watch"
    # --watch never ends: the same get, once.
    shell.run("\n".join([lines[0], lines[1].removesuffix(" --watch"), lines[2]]))
    hpa = shell.get("hpa", "jetstream-hpa", "default")
    assert hpa["spec"]["metrics"][0]["external"]["metric"]["name"] == (
        "jetstream_prefill_backlog_size"
    )


# --------------------------------------------------------------------------- the image (shape)


def test_the_image_commands_are_the_makefile_target_and_the_dockerfile() -> None:
    block = _block(8, "make image")
    make, docker = (line.split("#")[0].split() for line in block.strip().splitlines())
    assert make == ["make", "image"]
    target = re.search(r"^image:.*\n\t(.*)$", (REPO / "Makefile").read_text(), re.MULTILINE)
    assert target and "hack/build-image.sh" in target.group(1)  # what the image tier runs
    assert docker[:3] == ["docker", "build", "-t"] and docker[-1] == "."
    version = re.search(r'^version = "(.+)"$', (REPO / "pyproject.toml").read_text(), re.MULTILINE)
    assert version and docker[3] == f"REGISTRY/llm-metrics-adapter:{version.group(1)}"
    dockerfile = (REPO / "Dockerfile").read_text()
    default = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", dockerfile, re.MULTILINE)
    assert default and f"default `{default.group(1)}`" in DEPLOY_GUIDE.read_text()


# --------------------------------------------------------------------------- stated defaults


def _values_table() -> dict[str, str]:
    text = DEPLOY_GUIDE.read_text()
    section = text.split("Values worth knowing", 1)[1].split("\n\n", 2)[1]
    rows = {}
    for line in section.splitlines()[2:]:
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1]
    return rows


def test_the_chart_defaults_the_guide_states_are_the_charts() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = _values_table()
    assert rows["`backend.gmpProjectId` / `backend.prometheusUrl`"] == (
        f'`{values["backend"]["gmpProjectId"]}` / "{values["backend"]["prometheusUrl"]}"'
    )
    assert rows["`cluster`"] == f"`{values['cluster']}`"
    assert rows["`presets`"] == f"`{str(values['presets']).lower()}`"
    assert rows["`rules`"] == f"`{json.dumps(values['rules'])}`"
    assert rows["`tls.mode`"] == f"`{values['tls']['mode']}`"
    assert rows["`port`"] == f"`{values['port']}`"
    assert rows["`podMonitoring.enabled`"] == f"`{str(values['podMonitoring']['enabled']).lower()}`"
    assert rows["`extraArgs`, `extraEnv`"] == f"`{json.dumps(values['extraArgs'])}`"
    assert values["extraEnv"] == values["extraArgs"] == []
    requests = values["resources"]["requests"]
    taints = {t["key"] for t in values["tolerations"]}
    assert rows["`replicas`, `resources`, `tolerations`, `nodeSelector`"] == (
        f"{values['replicas']}, {requests['cpu']}/{requests['memory']} requests, TPU and GPU taints"
    )
    assert taints == {"google.com/tpu", "nvidia.com/gpu"} and values["nodeSelector"] == {}


def test_the_tool_versions_and_apiservice_priorities_the_guide_states() -> None:
    text = DEPLOY_GUIDE.read_text()
    script = (REPO / "hack" / "install-tools.sh").read_text()
    for name, variable in (("helm", "HELM_VERSION"), ("kustomize", "KUSTOMIZE_VERSION")):
        found = re.search(rf"^{variable}=(\S+)$", script, re.MULTILINE)
        assert found and f"`{name}` ({found.group(1)})" in text, name
    for obj in kustomize_build(REPO / "deploy" / "base"):
        if obj["kind"] == "APIService":
            name, priority = obj["metadata"]["name"], obj["spec"]["versionPriority"]
            assert re.search(rf"\| `{re.escape(name)}` \| {priority}\b", text), name
