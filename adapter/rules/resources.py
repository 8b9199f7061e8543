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
    "guess",
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


def _r(plural: str, group: str, kind: str, *, version: str = "v1") -> ResourceInfo:
    """A namespaced resource. Its singular is the lowercased kind, as the RESTMapper has it."""
    return ResourceInfo(plural, kind.lower(), group, kind, namespaced=True, version=version)


def _cluster(plural: str, group: str, kind: str) -> ResourceInfo:
    """A cluster-scoped resource."""
    return ResourceInfo(plural, kind.lower(), group, kind, namespaced=False)


# Core group first: a bare name resolves to the first entry whose names match, as the RESTMapper
# prefers the core group.
_TABLE: tuple[ResourceInfo, ...] = (
    _r("pods", "", "Pod"),
    _r("services", "", "Service"),
    _r("endpoints", "", "Endpoints"),
    _r("configmaps", "", "ConfigMap"),
    _r("secrets", "", "Secret"),
    _r("serviceaccounts", "", "ServiceAccount"),
    _r("persistentvolumeclaims", "", "PersistentVolumeClaim"),
    _r("replicationcontrollers", "", "ReplicationController"),
    _r("events", "", "Event"),
    _cluster("namespaces", "", "Namespace"),
    _cluster("nodes", "", "Node"),
    _cluster("persistentvolumes", "", "PersistentVolume"),
    _r("deployments", "apps", "Deployment"),
    _r("statefulsets", "apps", "StatefulSet"),
    _r("daemonsets", "apps", "DaemonSet"),
    _r("replicasets", "apps", "ReplicaSet"),
    _r("jobs", "batch", "Job"),
    _r("cronjobs", "batch", "CronJob"),
    _r("horizontalpodautoscalers", "autoscaling", "HorizontalPodAutoscaler", version="v2"),
    _r("poddisruptionbudgets", "policy", "PodDisruptionBudget"),
    _r("ingresses", "networking.k8s.io", "Ingress"),
    _r("networkpolicies", "networking.k8s.io", "NetworkPolicy"),
    _cluster("ingressclasses", "networking.k8s.io", "IngressClass"),
    _cluster("storageclasses", "storage.k8s.io", "StorageClass"),
    _r("roles", "rbac.authorization.k8s.io", "Role"),
    _r("rolebindings", "rbac.authorization.k8s.io", "RoleBinding"),
    _cluster("clusterroles", "rbac.authorization.k8s.io", "ClusterRole"),
    _cluster("clusterrolebindings", "rbac.authorization.k8s.io", "ClusterRoleBinding"),
    _cluster("customresourcedefinitions", "apiextensions.k8s.io", "CustomResourceDefinition"),
    # Multi-host TPU serving (JetStream on v5e/v6e slices) runs as LeaderWorkerSets.
    _r("leaderworkersets", "leaderworkerset.x-k8s.io", "LeaderWorkerSet"),
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


def guess(resource: str, group: str) -> ResourceInfo:
    """A resource missing from the table, as Kubernetes names one it has not seen: a name ending
    in ``s`` is taken as the plural, anything else as the singular, pluralized as
    ``meta.UnsafeGuessKindToResource`` does (``brand`` → ``brands``, ``policy`` → ``policies``);
    the kind is the capitalized singular, the version ``v1``, the scope namespaced. Rules that
    rely on it are loaded with a warning that says so."""
    name = resource.strip().lower()
    if name.endswith("s"):
        plural, singular = name, name[:-1]
    elif name.endswith("y") and len(name) > 1 and name[-2] not in "aeiou":
        plural, singular = name[:-1] + "ies", name
    else:
        plural, singular = name + "s", name
    kind = singular[:1].upper() + singular[1:]
    return ResourceInfo(plural, singular, group.strip().lower(), kind, namespaced=True)
