"""The pods to scrape: from a file (``--scrape-targets``), or from the cluster's pods and the
PodMonitorings that select them. Pure.

The file is a YAML list; each entry names a pod and where its metrics are::

    - namespace: team-a
      pod: jetstream-0
      url: http://10.0.0.12:9100/metrics
      labels: {container: jetstream-http}     # optional, added to every sample

Only these URLs are ever fetched: nothing in a request can name another. A URL must be plain
``http`` or ``https`` with a host, no credentials, no query and no fragment.

In Kubernetes mode, :func:`pod_targets` makes the list from the running pods of the object cache
and the monitoring objects (:mod:`adapter.domain.pods`): a pod selected by a PodMonitoring of its
namespace or a ClusterPodMonitoring is scraped at each endpoint's port (a container port's name or
a number), path and scheme, on the pod's IP, with the labels GMP gives its samples (``job``: the
monitoring's name, ``instance``: ``<pod>:<port>``, ``container``: the container declaring the
port); a pod no monitoring selects is scraped if annotated ``prometheus.io/scrape: "true"``, at
``prometheus.io/port`` (else its one declared port), ``prometheus.io/path`` and
``prometheus.io/scheme``. Hosts only ever come from pod IPs, ports and paths only from those
objects.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from adapter.domain.errors import ConfigError
from adapter.domain.models import selector_matches
from adapter.domain.pods import Monitoring, MonitoringEndpoint, PodInfo

__all__ = ["ScrapeTarget", "load_targets", "parse_targets", "pod_targets"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = frozenset({"cluster", "namespace", "pod", "__name__"})


@dataclass(frozen=True, slots=True)
class ScrapeTarget:
    """One pod's metrics endpoint and the labels its samples get (GMP's target labels)."""

    namespace: str
    pod: str
    url: str
    labels: dict[str, str] = field(default_factory=dict, hash=False)

    @property
    def key(self) -> str:
        """``namespace/pod``, and the endpoint when the pod has another (its ``instance``)."""
        instance = self.labels.get("instance")
        return f"{self.namespace}/{self.pod}" + (f"@{instance}" if instance else "")

    @property
    def endpoint(self) -> str:
        """``host:port`` for logs and errors (never a path or credentials)."""
        return urlsplit(self.url).netloc


def _entry(raw: Any, where: str) -> ScrapeTarget:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: each target must be a mapping")
    unknown = set(raw) - {"namespace", "pod", "url", "labels"}
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
    namespace, pod, url = (str(raw.get(k) or "") for k in ("namespace", "pod", "url"))
    for name, value in (("namespace", namespace), ("pod", pod)):
        if not _NAME.match(value):
            raise ConfigError(f"{where}: {name} {value!r} is not a Kubernetes name")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{where}: url must be http:// or https:// with a host")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise ConfigError(f"{where}: url must have no credentials, query or fragment")
    labels = raw.get("labels") or {}
    if not isinstance(labels, dict):
        raise ConfigError(f"{where}: labels must be a mapping")
    for key in labels:
        if not _LABEL.match(str(key)) or key in _RESERVED:
            raise ConfigError(f"{where}: label {key!r} is not allowed (reserved or invalid)")
    return ScrapeTarget(namespace, pod, url, {str(k): str(v) for k, v in labels.items()})


def parse_targets(text: str, *, filename: str = "targets") -> tuple[ScrapeTarget, ...]:
    """The targets of a ``--scrape-targets`` file's text. Raises :class:`ConfigError`."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{filename}: not YAML: {exc}") from None
    if not isinstance(raw, list):
        raise ConfigError(f"{filename}: expected a list of targets")
    targets = tuple(_entry(item, f"{filename}[{i}]") for i, item in enumerate(raw))
    seen: set[str] = set()
    for target in targets:
        if target.key in seen:
            raise ConfigError(f"{filename}: pod {target.key} is listed twice")
        seen.add(target.key)
    return targets


def load_targets(path: str) -> tuple[ScrapeTarget, ...]:
    """The targets of the ``--scrape-targets`` file at ``path``. Raises :class:`ConfigError`."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"--scrape-targets {path}: {exc.strerror or exc}") from None
    return parse_targets(text, filename=Path(path).name)


_ANNOTATION = "prometheus.io/"


def _url(pod: PodInfo, port: int, path: str, scheme: str) -> str:
    host = pod.ip if ipaddress.ip_address(pod.ip).version == 4 else f"[{pod.ip}]"
    return f"{scheme}://{host}:{port}{path}"


def _resolve(pod: PodInfo, port: int | str) -> tuple[int, str] | None:
    """``port`` (a container port's name, or a number) of ``pod`` and the container declaring it
    (``""`` for a number no container declares); ``None`` for a name it does not have."""
    for declared in pod.ports:
        if port in (declared.name, declared.number):
            return declared.number, declared.container
    if isinstance(port, int) and 0 < port < 65536:
        return port, ""
    return None


def _target(pod: PodInfo, endpoint: MonitoringEndpoint, job: str) -> ScrapeTarget | None:
    resolved = _resolve(pod, endpoint.port)
    if resolved is None:
        return None
    number, container = resolved
    labels = {"instance": f"{pod.name}:{number}"}
    if job:
        labels["job"] = job
    if container:
        labels["container"] = container
    url = _url(pod, number, endpoint.path, endpoint.scheme)
    return ScrapeTarget(pod.namespace, pod.name, url, labels)


def _annotated(pod: PodInfo) -> MonitoringEndpoint | None:
    notes = pod.annotations
    if notes.get(_ANNOTATION + "scrape") != "true":
        return None
    port: int | str | None = notes.get(_ANNOTATION + "port")
    if port is None:
        if len({p.number for p in pod.ports}) != 1:
            return None
        port = pod.ports[0].number
    try:
        return MonitoringEndpoint(
            port=int(port),
            path=notes.get(_ANNOTATION + "path") or "/metrics",
            scheme=notes.get(_ANNOTATION + "scheme") or "http",
        )
    except ValueError:
        return None


def _valid(endpoint: MonitoringEndpoint) -> bool:
    path_ok = endpoint.path.startswith("/") and not any(c in endpoint.path for c in "?#\\ ")
    return path_ok and endpoint.scheme in ("http", "https")


def _scrapable(pods: Iterable[PodInfo]) -> Iterator[PodInfo]:
    for pod in pods:
        try:
            ok = pod.running and bool(ipaddress.ip_address(pod.ip))
        except ValueError:
            ok = False
        if ok:
            yield pod


def pod_targets(
    pods: Iterable[PodInfo], monitorings: Sequence[Monitoring]
) -> tuple[ScrapeTarget, ...]:
    """The scrape targets of the running pods with an IP (see the module docstring), sorted."""
    found: dict[tuple[str, str, str], ScrapeTarget] = {}
    for pod in _scrapable(pods):
        selected = [
            m
            for m in monitorings
            if m.namespace in (None, pod.namespace) and selector_matches(pod.labels, m.selector)
        ]
        pairs = [(e, m.name) for m in selected for e in m.endpoints]
        if not selected:
            annotated = _annotated(pod)
            pairs = [(annotated, "")] if annotated is not None else []
        for endpoint, job in pairs:
            target = _target(pod, endpoint, job) if _valid(endpoint) else None
            if target is not None:
                found.setdefault((pod.namespace, pod.name, target.url), target)
    return tuple(found[k] for k in sorted(found))
