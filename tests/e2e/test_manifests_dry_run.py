"""Every manifest we ship passes a server-side dry run against the real kube-apiserver.

``dryRun=All`` runs the whole write path (defaulting, validation, admission, RBAC escalation checks
for roles and bindings, CRD schema validation) without persisting anything, and
``fieldValidation=Strict`` turns unknown or duplicate fields into errors instead of silently
dropping them — the failure mode of the seed's misplaced ``selector`` and ``averageValue``.

Covered: deploy/base (also as built by kustomize), deploy/monitoring (against a PodMonitoring CRD
this test installs: the schema subset of Managed Prometheus' ``monitoring.googleapis.com/v1``
that our PodMonitorings use, structural and without ``x-kubernetes-preserve-unknown-fields``, so
a misplaced field is rejected), deploy/examples, and the Helm chart's default and non-default
renders: the GKE guide's values file, every pod extra, APIServices off, rules.existing,
allClusters, live reload off, each TLS mode. cert-manager's mode is checked against minimal
cert-manager.io/v1 Certificate and Issuer CRDs this test installs (the Certificate's rendered
fields typed and required as cert-manager's CRD has them, the rest preserved). Nothing is
skipped.

Objects are created with ``dryRun=All``; when an object of that name already exists (another e2e
test may have registered an adapter under the same APIService and Service names), it is checked
as a dry-run replace of the existing object instead. Namespaced objects need their namespace to
exist, so ``custom-metrics`` is created for real if absent, and the CRDs are installed for
real; they are left in place (without a namespace controller in this control plane
a deleted namespace would hang in Terminating, and neither disturbs other tests).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException

from tests.support.controlplane import ControlPlane
from tests.support.crds import crd
from tests.support.manifests import (
    BASE,
    EXAMPLES,
    GKE_GUIDE_VALUES,
    MONITORING,
    deploy_documents,
    helm_template,
    kustomize_build,
    object_key,
)

Obj = dict[str, Any]

_FIELD_MANAGER = "lma-manifest-dry-run"
_CRD_ESTABLISH_TIMEOUT_S = 30.0
_REQUEST_TIMEOUT_S = 30

_SECRET_REF: Obj = {
    "type": "object",
    "required": ["key", "name"],
    "properties": {
        "key": {"type": "string"},
        "name": {"type": "string"},
        "namespace": {"type": "string"},
    },
}
_SECRET_FIELD: Obj = {"type": "object", "properties": {"secret": _SECRET_REF}}
"""A field that names a key of a Secret (an endpoint's credentials, its CA)."""
_LABEL_SELECTOR: Obj = {
    "type": "object",
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["key", "operator"],
                "properties": {
                    "key": {"type": "string"},
                    "operator": {"type": "string"},
                    "values": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
    },
}

_PRESERVED: Obj = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}


def _crd(group: str, kind: str, plural: str, spec: Obj) -> Obj:
    """A namespaced ``<group>/v1`` CRD for ``kind`` whose ``spec`` schema is ``spec``."""
    definition = crd(group, plural, kind)
    definition["spec"]["versions"][0]["schema"] = {
        "openAPIV3Schema": {
            "type": "object",
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": {"type": "object"},
                "spec": spec,
                "status": _PRESERVED,
            },
        }
    }
    return definition


# The subset of monitoring.googleapis.com/v1 PodMonitoring that our manifests use, with the same
# types, enums and required fields as Managed Prometheus' CRD.
POD_MONITORING_CRD = _crd(
    "monitoring.googleapis.com",
    "PodMonitoring",
    "podmonitorings",
    {
        "type": "object",
        "required": ["endpoints", "selector"],
        "properties": {
            "selector": _LABEL_SELECTOR,
            "endpoints": {
                "type": "array",
                "minItems": 1,
                "maxItems": 10,
                "items": {
                    "type": "object",
                    "required": ["interval", "port"],
                    "properties": {
                        "interval": {"type": "string"},
                        "timeout": {"type": "string"},
                        "path": {"type": "string"},
                        "port": {"x-kubernetes-int-or-string": True},
                        "scheme": {
                            "type": "string",
                            "enum": ["http", "https"],
                        },
                        "authorization": {
                            "type": "object",
                            "properties": {
                                "type": {"type": "string"},
                                "credentials": _SECRET_FIELD,
                            },
                        },
                        "tls": {
                            "type": "object",
                            "properties": {
                                "insecureSkipVerify": {"type": "boolean"},
                                "serverName": {"type": "string"},
                                "ca": _SECRET_FIELD,
                            },
                        },
                    },
                },
            },
            "targetLabels": {
                "type": "object",
                "properties": {
                    "metadata": {
                        "type": "array",
                        "items": {
                            "type": "string",
                            "enum": [
                                "container",
                                "node",
                                "pod",
                                "top_level_controller_name",
                                "top_level_controller_type",
                            ],
                        },
                    },
                },
            },
        },
    },
)


# cert-manager's Certificate: the fields the chart renders typed and required as cert-manager's
# CRD has them (a misplaced or mistyped one is rejected); the rest of its spec preserved.
CERTIFICATE_CRD = _crd(
    "cert-manager.io",
    "Certificate",
    "certificates",
    {
        "type": "object",
        "required": ["issuerRef", "secretName"],
        "x-kubernetes-preserve-unknown-fields": True,
        "properties": {
            "secretName": {"type": "string"},
            "dnsNames": {"type": "array", "items": {"type": "string"}},
            "issuerRef": {
                "type": "object",
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "kind": {"type": "string"},
                    "group": {"type": "string"},
                },
            },
        },
    },
)
ISSUER_CRD = _crd("cert-manager.io", "Issuer", "issuers", _PRESERVED)


# --------------------------------------------------------------------------- raw API calls


class _Api:
    """Raw JSON calls on one admin ``ApiClient``, with a discovery cache for kind → resource."""

    def __init__(self, api: k8s.ApiClient) -> None:
        self._api = api
        self._resources: dict[tuple[str, str], tuple[str, bool]] = {}

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Sequence[tuple[str, str]] = (),
        body: Obj | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Obj]:
        """``(status, decoded JSON body)``; never raises for an HTTP error status."""
        _, url, headers, payload, _ = self._api.param_serialize(
            method,
            path,
            query_params=list(query),
            header_params={"Accept": "application/json", "Content-Type": content_type},
            body=body,
            auth_settings=["BearerToken"],
        )
        try:
            response = self._api.call_api(
                method,
                url,
                header_params=headers,
                body=payload,
                _request_timeout=_REQUEST_TIMEOUT_S,
            )
            status, raw = response.status, response.read()  # type: ignore[no-untyped-call]
        except ApiException as exc:
            status, raw = int(exc.status or 0), exc.body or b""
        text = raw.decode() if isinstance(raw, bytes) else str(raw or "")
        try:
            decoded = json.loads(text) if text else {}
        except json.JSONDecodeError:
            decoded = {"message": text}
        return status, decoded if isinstance(decoded, dict) else {"body": decoded}

    def resource(self, api_version: str, kind: str, *, refresh: bool = False) -> tuple[str, bool]:
        """``(collection path prefix, namespaced)`` for a kind, from the server's discovery."""
        key = (api_version, kind)
        if key not in self._resources or refresh:
            base = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
            status, doc = self.request("GET", base)
            assert status == 200, f"discovery of {api_version} failed ({status}): {doc}"
            for item in doc.get("resources", []):
                if "/" not in item["name"]:
                    self._resources[(api_version, item["kind"])] = (
                        f"{base}/{item['name']}",
                        bool(item["namespaced"]),
                    )
        assert key in self._resources, f"the API server does not serve {kind} in {api_version}"
        return self._resources[key]

    def collection(self, obj: Mapping[str, Any]) -> str:
        path, namespaced = self.resource(obj["apiVersion"], obj["kind"])
        if not namespaced:
            return path
        namespace = obj["metadata"].get("namespace")
        assert namespace, f"{object_key(obj)}: a namespaced object must name its namespace"
        prefix, _, plural = path.rpartition("/")
        return f"{prefix}/namespaces/{namespace}/{plural}"

    def dry_run(self, obj: Obj) -> tuple[int, Obj, str]:
        """Dry-run create; if the name exists, dry-run replace it. ``(status, body, verb)``."""
        query = [("dryRun", "All"), ("fieldValidation", "Strict"), ("fieldManager", _FIELD_MANAGER)]
        collection = self.collection(obj)
        status, body = self.request("POST", collection, query=query, body=obj)
        if status != 409 or body.get("reason") != "AlreadyExists":
            return status, body, "create"
        item = f"{collection}/{obj['metadata']['name']}"
        status, current = self.request("GET", item)
        assert status == 200, f"GET {item}: {status} {current}"
        replacement = json.loads(json.dumps(obj))
        replacement["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        status, body = self.request("PUT", item, query=query, body=replacement)
        return status, body, "replace"


def _assert_dry_run(api: _Api, obj: Obj, origin: str) -> None:
    status, body, verb = api.dry_run(obj)
    assert 200 <= status < 300, (
        f"{origin}: dry-run {verb} of {object_key(obj)} rejected ({status} "
        f"{body.get('reason', '')}): {body.get('message', body)}"
    )
    # The server answered with the object it would have stored.
    assert body.get("kind") == obj["kind"] and body["metadata"]["name"] == obj["metadata"]["name"]


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def api(control_plane: ControlPlane) -> Iterator[_Api]:
    with control_plane.admin_client() as client:
        raw = _Api(client)
        _install_pod_monitoring_crd(raw)
        # The adapter's namespace must exist for namespaced dry runs. Dry-run the Namespace
        # object first, so it is checked as a create when the namespace is new.
        namespace = _single_of_kind(kustomize_build(BASE), "Namespace")
        _assert_dry_run(raw, namespace, "deploy/base/namespace.yaml")
        status, body = raw.request(
            "POST", "/api/v1/namespaces", body={"metadata": {"name": namespace["metadata"]["name"]}}
        )
        assert status in (201, 409), f"creating namespace: {status} {body}"
        yield raw


def _single_of_kind(objects: Sequence[Obj], kind: str) -> Obj:
    found = [o for o in objects if o["kind"] == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def _install_pod_monitoring_crd(api: _Api) -> None:
    _install_crd(api, POD_MONITORING_CRD)


def _install_crd(api: _Api, crd: Obj) -> None:
    """Install ``crd`` (kept if present) and wait until its group version is served."""
    path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    status, body = api.request("POST", path, body=crd)
    assert status in (201, 409), f"installing the {crd['metadata']['name']} CRD: {status} {body}"
    deadline = time.monotonic() + _CRD_ESTABLISH_TIMEOUT_S
    name = crd["metadata"]["name"]
    while True:
        status, current = api.request("GET", f"{path}/{name}")
        raw_conditions = (current.get("status") or {}).get("conditions") or []
        conditions = {c["type"]: c["status"] for c in raw_conditions}
        if status == 200 and conditions.get("Established") == "True":
            break
        assert time.monotonic() < deadline, f"{name} CRD not Established: {conditions}"
        time.sleep(0.2)
    # Discovery of a new group lags its establishment by a moment.
    group_version = f"/apis/{crd['spec']['group']}/{crd['spec']['versions'][0]['name']}"
    kind = crd["spec"]["names"]["kind"]
    while True:
        status, doc = api.request("GET", group_version)
        if status == 200 and kind in {r["kind"] for r in doc.get("resources", [])}:
            api.resource(group_version.removeprefix("/apis/"), kind, refresh=True)
            return
        assert time.monotonic() < deadline, f"{group_version} never served {kind}"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def cert_manager(api: _Api) -> _Api:
    """``api`` with cert-manager's Certificate and Issuer CRDs installed (left in place)."""
    _install_crd(api, CERTIFICATE_CRD)
    _install_crd(api, ISSUER_CRD)
    return api


# --------------------------------------------------------------------------- cases


def _file_cases() -> list[tuple[str, Path]]:
    cases = []
    for directory in (BASE, MONITORING, EXAMPLES):
        for path in deploy_documents(directory):
            cases.append((str(path.relative_to(BASE.parent.parent)), path))
    return cases


@pytest.mark.parametrize(("origin", "path"), _file_cases(), ids=[c[0] for c in _file_cases()])
def test_manifest_file_passes_server_dry_run(api: _Api, origin: str, path: Path) -> None:
    objects = deploy_documents(path.parent)[path]
    assert objects
    for obj in objects:
        _assert_dry_run(api, obj, origin)


def test_kustomize_build_of_base_passes_server_dry_run(api: _Api) -> None:
    for obj in kustomize_build(BASE):
        _assert_dry_run(api, obj, "kustomize build deploy/base")


def test_kustomize_build_of_monitoring_passes_server_dry_run(api: _Api) -> None:
    for obj in kustomize_build(MONITORING):
        _assert_dry_run(api, obj, "kustomize build deploy/monitoring")


_GUIDE_EXTERNAL_RULE: Obj = yaml.safe_load(GKE_GUIDE_VALUES.read_text())["rules"]["external"][0]

_CHART_VARIANTS: dict[str, Obj | None] = {
    "defaults": None,
    "prometheus-url-with-rules-and-helm-tls": {
        "backend": {"gmpProjectId": "", "prometheusUrl": "http://prometheus.monitoring.svc:9090"},
        "cluster": "prod-1",
        "rules": {
            "metrics": [
                {
                    "name": "num_requests_waiting",
                    "type": "external",
                    "query": "sum(num_requests_waiting)",
                }
            ]
        },
        "tls": {"mode": "helm"},
        "podMonitoring": {"enabled": True},
    },
    "existing-secret-tls-port-8443": {
        "tls": {"mode": "existing-secret", "existingSecret": "my-tls", "caBundle": "Q0EK"},
        "port": 8443,
        "namespace": {"create": False},
        "imagePullSecrets": [{"name": "registry"}],
        "extraEnv": [{"name": "LMA_LOG_LEVEL", "value": "debug"}],
    },
    "gke-guide-values": yaml.safe_load(GKE_GUIDE_VALUES.read_text()),
    "pod-extras": {
        "extraArgs": ["--prometheus-bearer-token-file=/var/run/prom/token", "--cache-ttl=5"],
        "extraEnv": [{"name": "LMA_LOG_FORMAT", "value": "json"}],
        "extraVolumes": [{"name": "prom-token", "secret": {"secretName": "prom-token"}}],
        "extraVolumeMounts": [
            {"name": "prom-token", "mountPath": "/var/run/prom", "readOnly": True}
        ],
        "podAnnotations": {"example.com/team": "serving"},
        "podLabels": {"team": "serving"},
        "priorityClassName": "system-cluster-critical",
        "resources": {"requests": {"cpu": "200m", "memory": "256Mi"}, "limits": None},
        "nodeSelector": {"cloud.google.com/gke-nodepool": "cpu-pool"},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "infra", "effect": "NoSchedule"}
        ],
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {"matchExpressions": [{"key": "pool", "operator": "In", "values": ["cpu"]}]}
                    ]
                }
            }
        },
    },
    "api-services-off": {"apiServices": {"custom": False, "external": False}},
    "rules-existing": {"rules": {"existing": "adapter-config"}},
    "all-clusters": {"cluster": "", "allClusters": True},
    "rules-reload-off": {
        "rules": {"default": True, "external": [_GUIDE_EXTERNAL_RULE]},
        "rulesReload": False,
    },
}

_CERT_MANAGER_ISSUER: Obj = {
    "apiVersion": "cert-manager.io/v1",
    "kind": "Issuer",
    "metadata": {"name": "ca-issuer", "namespace": "custom-metrics"},
    "spec": {"selfSigned": {}},
}
"""The Issuer the cert-manager variant names (cert-manager's own CRD would accept it)."""


@pytest.mark.parametrize("variant", list(_CHART_VARIANTS))
def test_chart_render_passes_server_dry_run(api: _Api, variant: str) -> None:
    rendered = helm_template(_CHART_VARIANTS[variant])
    assert isinstance(rendered, list) and rendered
    for obj in rendered:
        _assert_dry_run(api, obj, f"helm template ({variant})")


def test_chart_with_cert_manager_tls_passes_server_dry_run(cert_manager: _Api) -> None:
    values = {
        "tls": {
            "mode": "cert-manager",
            "certManager": {"issuerRef": {"name": "ca-issuer", "kind": "Issuer"}},
        }
    }
    rendered = helm_template(values)
    assert isinstance(rendered, list)
    assert [o["kind"] for o in rendered].count("Certificate") == 1
    for obj in [_CERT_MANAGER_ISSUER, *rendered]:
        _assert_dry_run(cert_manager, obj, "helm template (tls-cert-manager)")
    # The Certificate's schema has teeth: a misplaced field is rejected.
    [certificate] = [o for o in rendered if o["kind"] == "Certificate"]
    broken = json.loads(json.dumps(certificate))
    broken["spec"]["issuerRef"] = {"kind": "Issuer"}
    status, body, _ = cert_manager.dry_run(broken)
    assert status in (400, 422), body
    assert "issuerRef.name" in body.get("message", ""), body


def test_dry_run_rejects_the_seeds_mistakes(api: _Api) -> None:
    """The check has teeth: the seed's own PodMonitoring and multi-metric HPA are rejected."""
    seed_pod_monitoring: Obj = {
        "apiVersion": "monitoring.googleapis.com/v1",
        "kind": "PodMonitoring",
        "metadata": {"name": "jetstream-podmonitoring", "namespace": "default"},
        "selector": {"matchLabels": {"app": "maxengine-server"}},
        "spec": {
            "endpoints": [{"interval": "15s", "path": "/", "port": 9988}],
            "targetLabels": {"metadata": ["pod", "container", "node"]},
        },
    }
    status, body, _ = api.dry_run(seed_pod_monitoring)
    assert status in (400, 422), body
    assert "selector" in body.get("message", ""), body

    seed_hpa: Obj = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "jetstream-hpa-multiple-metrics", "namespace": "default"},
        "spec": {
            "scaleTargetRef": {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "name": "maxengine-server",
            },
            "minReplicas": 1,
            "maxReplicas": 2,
            "metrics": [
                {
                    "type": "Pods",
                    "pods": {
                        "metric": {"name": "jetstream_prefill_backlog_size"},
                        "target": {"type": "AverageValue"},
                        "averageValue": "10",
                    },
                }
            ],
        },
    }
    status, body, _ = api.dry_run(seed_hpa)
    assert status in (400, 422), body
    assert "averageValue" in body.get("message", ""), body
