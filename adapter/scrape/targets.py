"""The pods to scrape, from a file (``--scrape-targets``). Pure.

The file is a YAML list; each entry names a pod and where its metrics are::

    - namespace: team-a
      pod: jetstream-0
      url: http://10.0.0.12:9100/metrics
      labels: {container: jetstream-http}     # optional, added to every sample

Only these URLs are ever fetched: nothing in a request can name another. A URL must be plain
``http`` or ``https`` with a host, no credentials, no query and no fragment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from adapter.domain.errors import ConfigError

__all__ = ["ScrapeTarget", "load_targets", "parse_targets"]

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
        return f"{self.namespace}/{self.pod}"

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
