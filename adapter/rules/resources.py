"""The built-in table of the common Kubernetes resources: plural, singular, group, kind, scope.

prometheus-adapter asks the API server's RESTMapper to turn ``pod`` into ``pods`` or
``deployment`` into ``deployments.apps``. In Kubernetes mode this adapter does the same: the
table comes from the apiserver's discovery (:mod:`adapter.kube.mapper`), refreshed in the
background, so any built-in or custom resource maps. Standalone, and in ``check-config``, which
ask no cluster, this table is the mapping; an override naming a resource missing from it (a CRD)
is then guessed as Kubernetes guesses (:func:`guess`), and ``/debug/metrics`` says which table is
in use.
"""

from __future__ import annotations

from adapter.domain.models import GroupResource
from adapter.domain.resources import ResourceInfo, ResourceTable, sanitize_group

__all__ = [
    "BUILT_IN",
    "NAMESPACES",
    "PODS",
    "ResourceInfo",
    "ResourceTable",
    "exact",
    "guess",
    "known_resources",
    "lookup",
    "sanitize_group",
]


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


def known_resources() -> tuple[ResourceInfo, ...]:
    """Every resource in the table, core group first."""
    return _TABLE


BUILT_IN = ResourceTable.of(_TABLE, source="built-in table of common resources")
"""The table standalone mode and ``check-config`` map labels with."""


def exact(resource: GroupResource) -> ResourceInfo | None:
    """The built-in entry for exactly this plural and group, or ``None``."""
    return BUILT_IN.exact(resource)


def lookup(resource: str, group: str | None = None) -> ResourceInfo | None:
    """:meth:`ResourceTable.lookup` in the built-in table."""
    return BUILT_IN.lookup(resource, group)


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
