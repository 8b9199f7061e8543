"""What the pod-scrape path knows of the cluster: running pods and the monitoring objects that say
where their metrics are. Pure: built from the apiserver's JSON by :mod:`adapter.kube.objects`,
turned into scrape targets by :mod:`adapter.scrape.targets`.

A monitoring object is Managed Service for Prometheus' ``PodMonitoring`` (namespaced: selects
pods of its own namespace) or ``ClusterPodMonitoring`` (every namespace), group
``monitoring.googleapis.com``, version ``v1``; only the fields a scrape needs are read: the label
selector and each endpoint's port (name or number), path and scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from adapter.domain.errors import ConfigError
from adapter.domain.models import GroupResource, Requirement

__all__ = [
    "MONITORING_GROUP",
    "MONITORING_RESOURCES",
    "ContainerPort",
    "Monitoring",
    "MonitoringEndpoint",
    "PodInfo",
    "monitoring_from",
    "pod_from",
]

MONITORING_GROUP = "monitoring.googleapis.com"
MONITORING_RESOURCES = (
    GroupResource("podmonitorings", MONITORING_GROUP),
    GroupResource("clusterpodmonitorings", MONITORING_GROUP),
)
"""The two kinds of monitoring object, as resources of the ``v1`` version."""

_SELECTOR_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


@dataclass(frozen=True, slots=True)
class ContainerPort:
    """A port a pod's container declares."""

    container: str
    number: int
    name: str = ""


@dataclass(frozen=True, slots=True)
class PodInfo:
    """A pod as far as scraping goes; ``ip`` is empty until the pod has one."""

    namespace: str
    name: str
    ip: str
    running: bool
    labels: Mapping[str, str] = field(default_factory=dict, hash=False)
    annotations: Mapping[str, str] = field(default_factory=dict, hash=False)
    ports: tuple[ContainerPort, ...] = ()


@dataclass(frozen=True, slots=True)
class MonitoringEndpoint:
    """One ``spec.endpoints[]`` entry: a port (name or number), its path and scheme."""

    port: int | str
    path: str = "/metrics"
    scheme: str = "http"


@dataclass(frozen=True, slots=True)
class Monitoring:
    """A PodMonitoring (``namespace`` set) or ClusterPodMonitoring (``namespace`` ``None``)."""

    name: str
    namespace: str | None
    selector: tuple[Requirement, ...]
    endpoints: tuple[MonitoringEndpoint, ...]


def _ports(spec: Mapping[str, Any]) -> tuple[ContainerPort, ...]:
    return tuple(
        ContainerPort(
            container=str(c.get("name") or ""),
            number=int(p.get("containerPort") or 0),
            name=str(p.get("name") or ""),
        )
        for c in spec.get("containers") or []
        for p in c.get("ports") or []
        if str(p.get("protocol") or "TCP") == "TCP"
    )


def _strings(raw: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in (raw or {}).items()}


def pod_from(obj: Mapping[str, Any]) -> PodInfo:
    """The scrape-relevant part of a Pod's JSON (a missing field reads as absent)."""
    meta = obj.get("metadata") or {}
    status = obj.get("status") or {}
    return PodInfo(
        namespace=str(meta.get("namespace") or ""),
        name=str(meta.get("name") or ""),
        ip=str(status.get("podIP") or ""),
        running=status.get("phase") == "Running" and not meta.get("deletionTimestamp"),
        labels=_strings(meta.get("labels")),
        annotations=_strings(meta.get("annotations")),
        ports=_ports(obj.get("spec") or {}),
    )


def _selector(raw: Any, where: str) -> tuple[Requirement, ...]:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: spec.selector must be a label selector")
    out = [Requirement(str(k), "=", (str(v),)) for k, v in (raw.get("matchLabels") or {}).items()]
    for expr in raw.get("matchExpressions") or []:
        op = _SELECTOR_OPS.get(str(expr.get("operator")))
        if op is None:
            raise ConfigError(f"{where}: unknown selector operator {expr.get('operator')!r}")
        values = tuple(sorted({str(v) for v in expr.get("values") or []}))
        out.append(Requirement(str(expr.get("key") or ""), op, values))  # type: ignore[arg-type]
    return tuple(out)


def _endpoint(raw: Any, where: str) -> MonitoringEndpoint:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: each endpoint must be a mapping")
    port = raw.get("port")
    if isinstance(port, bool) or not isinstance(port, int | str) or port in ("", 0):
        raise ConfigError(f"{where}: endpoint port must be a port name or number")
    path = str(raw.get("path") or "/metrics")
    scheme = str(raw.get("scheme") or "http")
    if (
        not path.startswith("/")
        or any(c in path for c in "?#\\ ")
        or scheme not in ("http", "https")
    ):
        raise ConfigError(f"{where}: endpoint path must be an absolute path, scheme http or https")
    return MonitoringEndpoint(port=port, path=path, scheme=scheme)


def monitoring_from(obj: Mapping[str, Any], *, namespaced: bool) -> Monitoring:
    """A PodMonitoring's (``namespaced``) or ClusterPodMonitoring's JSON, checked.
    Raises :class:`ConfigError` naming the object for a selector or endpoint it cannot use."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    namespace = str(meta.get("namespace") or "") if namespaced else None
    kind = "PodMonitoring" if namespaced else "ClusterPodMonitoring"
    where = f"{kind} {namespace + '/' if namespace else ''}{name}"
    spec = obj.get("spec") or {}
    endpoints = tuple(_endpoint(e, where) for e in spec.get("endpoints") or [])
    selector = spec.get("selector")
    return Monitoring(
        name, namespace, _selector({} if selector is None else selector, where), endpoints
    )
