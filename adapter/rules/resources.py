"""A static table of the common Kubernetes resources: plural, singular, group, kind, scope.

prometheus-adapter asks the API server's RESTMapper to turn ``pod`` into ``pods`` or
``deployment`` into ``deployments.apps``. Rules are compiled without an API server here, so
the mapping is this table; a resource missing from it must be written group-qualified and plural
(``inferencepools.inference.networking.x-k8s.io``) and is then assumed namespaced.
"""

from __future__ import annotations

from dataclasses import dataclass

from adapter.domain.models import GroupResource

__all__ = [
    "NAMESPACES",
    "PODS",
    "ResourceInfo",
    "exact",
    "known_resources",
    "lookup",
    "sanitize_group",
]


@dataclass(frozen=True, slots=True)
class ResourceInfo:
    """One Kubernetes resource: ``plural`` and ``group`` name it, ``namespaced`` is its scope,
    ``version`` the version a described object's ``apiVersion`` names."""

    plural: str
    singular: str
    group: str
    kind: str
    namespaced: bool
    version: str = "v1"

    @property
    def group_resource(self) -> GroupResource:
        return GroupResource(resource=self.plural, group=self.group)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


def _r(
    plural: str,
    singular: str,
    group: str,
    kind: str,
    *,
    namespaced: bool = True,
    version: str = "v1",
) -> ResourceInfo:
    return ResourceInfo(plural, singular, group, kind, namespaced, version)


# Core group first: a bare name resolves to the first entry whose names match, as the RESTMapper
# prefers the core group.
_TABLE: tuple[ResourceInfo, ...] = (
    _r("pods", "pod", "", "Pod"),
    _r("services", "service", "", "Service"),
    _r("endpoints", "endpoints", "", "Endpoints"),
    _r("configmaps", "configmap", "", "ConfigMap"),
    _r("secrets", "secret", "", "Secret"),
    _r("serviceaccounts", "serviceaccount", "", "ServiceAccount"),
    _r("persistentvolumeclaims", "persistentvolumeclaim", "", "PersistentVolumeClaim"),
    _r("replicationcontrollers", "replicationcontroller", "", "ReplicationController"),
    _r("events", "event", "", "Event"),
    _r("namespaces", "namespace", "", "Namespace", namespaced=False),
    _r("nodes", "node", "", "Node", namespaced=False),
    _r("persistentvolumes", "persistentvolume", "", "PersistentVolume", namespaced=False),
    _r("deployments", "deployment", "apps", "Deployment"),
    _r("statefulsets", "statefulset", "apps", "StatefulSet"),
    _r("daemonsets", "daemonset", "apps", "DaemonSet"),
    _r("replicasets", "replicaset", "apps", "ReplicaSet"),
    _r("jobs", "job", "batch", "Job"),
    _r("cronjobs", "cronjob", "batch", "CronJob"),
    _r(
        "horizontalpodautoscalers",
        "horizontalpodautoscaler",
        "autoscaling",
        "HorizontalPodAutoscaler",
        version="v2",
    ),
    _r("poddisruptionbudgets", "poddisruptionbudget", "policy", "PodDisruptionBudget"),
    _r("ingresses", "ingress", "networking.k8s.io", "Ingress"),
    _r("networkpolicies", "networkpolicy", "networking.k8s.io", "NetworkPolicy"),
    _r("ingressclasses", "ingressclass", "networking.k8s.io", "IngressClass", namespaced=False),
    _r("storageclasses", "storageclass", "storage.k8s.io", "StorageClass", namespaced=False),
    _r("roles", "role", "rbac.authorization.k8s.io", "Role"),
    _r("rolebindings", "rolebinding", "rbac.authorization.k8s.io", "RoleBinding"),
    _r("clusterroles", "clusterrole", "rbac.authorization.k8s.io", "ClusterRole", namespaced=False),
    _r(
        "clusterrolebindings",
        "clusterrolebinding",
        "rbac.authorization.k8s.io",
        "ClusterRoleBinding",
        namespaced=False,
    ),
    _r(
        "customresourcedefinitions",
        "customresourcedefinition",
        "apiextensions.k8s.io",
        "CustomResourceDefinition",
        namespaced=False,
    ),
    # Multi-host TPU serving (JetStream on v5e/v6e slices) runs as LeaderWorkerSets.
    _r("leaderworkersets", "leaderworkerset", "leaderworkerset.x-k8s.io", "LeaderWorkerSet"),
)

PODS = _TABLE[0]
"""The ``pods`` resource: what pods metrics describe."""
NAMESPACES = _TABLE[9]
"""The ``namespaces`` resource: the one a rule's namespace label is mapped to."""


def sanitize_group(group: str) -> str:
    """prometheus-adapter's ``<<.Group>>`` form: dots and dashes become underscores."""
    return group.replace(".", "_").replace("-", "_")


def known_resources() -> tuple[ResourceInfo, ...]:
    """Every resource in the table, core group first."""
    return _TABLE


def exact(resource: GroupResource) -> ResourceInfo | None:
    """The entry for exactly this plural and group, or ``None``."""
    return _BY_GROUP_RESOURCE.get(resource)


_BY_GROUP_RESOURCE = {info.group_resource: info for info in _TABLE}


def lookup(resource: str, group: str | None = None) -> ResourceInfo | None:
    """Find a resource by plural, singular or kind (case-insensitive), optionally group-qualified.

    ``resource`` may carry its group after the first dot (``deployments.apps``) when ``group`` is
    ``None``. ``group`` ``None`` or ``""`` with a bare name searches every group, core first, as
    the RESTMapper does; a group is also matched in its sanitized form (``networking_k8s_io``),
    which is what a ``<<.Group>>`` label template yields. Returns ``None`` when unknown.
    """
    name = resource.strip().lower()
    if group is None:
        name, _, rest = name.partition(".")
        group = rest
    group = group.strip().lower()
    for info in _TABLE:
        if name not in (info.plural, info.singular, info.kind.lower()):
            continue
        if group and group not in (info.group, sanitize_group(info.group)):
            continue
        return info
    return None
