"""CustomResourceDefinitions for the local control plane: any kind, its objects kept as given."""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from tests.support.controlplane import untyped
from tests.support.waiting import wait_until

__all__ = ["MONITORING_CRDS", "crd", "install_crds"]


def crd(
    group: str, plural: str, kind: str, *, version: str = "v1", scope: str = "Namespaced"
) -> dict[str, Any]:
    """The CRD ``<plural>.<group>`` (kind ``kind``) served at ``version``, with no schema beyond
    "an object" (every field kept)."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{group}"},
        "spec": {
            "group": group,
            "scope": scope,
            "names": {
                "plural": plural,
                "singular": kind.lower(),
                "kind": kind,
                "listKind": f"{kind}List",
            },
            "versions": [
                {
                    "name": version,
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {
                            "type": "object",
                            "x-kubernetes-preserve-unknown-fields": True,
                        }
                    },
                }
            ],
        },
    }


MONITORING_CRDS = (
    crd("monitoring.googleapis.com", "podmonitorings", "PodMonitoring"),
    crd(
        "monitoring.googleapis.com",
        "clusterpodmonitorings",
        "ClusterPodMonitoring",
        scope="Cluster",
    ),
)
"""Managed Prometheus' PodMonitoring and ClusterPodMonitoring, as far as their shape goes (GKE
installs the real ones with managed collection)."""


def install_crds(api: k8s.ApiClient, *crds: dict[str, Any]) -> None:
    """Create ``crds`` (an existing one is left as it is) and wait until each is Established."""
    ext = untyped(k8s.ApiextensionsV1Api(api))
    for definition in crds:
        try:
            ext.create_custom_resource_definition(definition)
        except k8s.ApiException as exc:
            if exc.status != 409:
                raise

    def established() -> bool:
        for definition in crds:
            got = ext.read_custom_resource_definition(definition["metadata"]["name"])
            conditions = {c.type: c.status for c in (got.status.conditions or [])}
            if conditions.get("Established") != "True":
                return False
        return True

    wait_until("the CRDs to be established", established, timeout_s=30)
