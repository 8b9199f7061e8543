"""Value objects shared by every layer: request identity, selectors, samples and answers.

All are frozen dataclasses so they can key caches and cross task boundaries safely.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BackendKind",
    "GroupResource",
    "MatchOp",
    "Matcher",
    "MetricValue",
    "ObjectRef",
    "QueryResult",
    "Requirement",
    "RequirementOp",
    "Sample",
    "selector_matches",
]

BackendKind = Literal["promql", "cloud-monitoring"]
"""Which kind of backend evaluates a rule's queries: PromQL (any Prometheus, GMP) or the Cloud
Monitoring API. Rules name the kind; the provider maps each kind to its configured backend."""

RequirementOp = Literal["=", "!=", "in", "notin", "exists", "!", "gt", "lt"]
"""Kubernetes label selector operators after normalisation (``==`` becomes ``=``, ``>`` ``gt``)."""

MatchOp = Literal["=", "!=", "=~", "!~"]
"""PromQL label matcher operators."""


@dataclass(frozen=True, slots=True)
class GroupResource:
    """A Kubernetes resource qualified by its API group: ``pods`` (core), ``deployments.apps``."""

    resource: str
    group: str = ""

    @classmethod
    def parse(cls, text: str) -> GroupResource:
        """``"deployments.apps"`` → ``GroupResource("deployments", "apps")``."""
        resource, _, group = text.partition(".")
        return cls(resource=resource.lower(), group=group.lower())

    def __str__(self) -> str:
        return f"{self.resource}.{self.group}" if self.group else self.resource


@dataclass(frozen=True, slots=True)
class Requirement:
    """One requirement of a Kubernetes label selector.

    ``values`` is empty for ``exists`` and ``!`` (does not exist), one value for ``=`` and ``!=``,
    and one or more (sorted, deduplicated) for ``in`` and ``notin``.
    """

    key: str
    op: RequirementOp
    values: tuple[str, ...] = ()


def selector_matches(labels: Mapping[str, str], selector: Sequence[Requirement]) -> bool:
    """Kubernetes label-selector semantics (``k8s.io/apimachinery/pkg/labels``)."""
    for req in selector:
        present = req.key in labels
        value = labels.get(req.key, "")
        if req.op == "=":
            ok = present and value == req.values[0]
        elif req.op == "!=":
            ok = not present or value != req.values[0]
        elif req.op == "in":
            ok = present and value in req.values
        elif req.op == "notin":
            ok = not present or value not in req.values
        elif req.op == "exists":
            ok = present
        elif req.op == "!":
            ok = not present
        else:  # gt, lt: both sides must be integers
            try:
                have, want = int(value), int(req.values[0])
            except (ValueError, IndexError):
                return False
            ok = present and (have > want if req.op == "gt" else have < want)
        if not ok:
            return False
    return True


@dataclass(frozen=True, slots=True)
class Matcher:
    """One PromQL label matcher. Rendered only by :func:`adapter.promql.render_matcher`."""

    label: str
    op: MatchOp
    value: str


@dataclass(frozen=True, slots=True)
class ObjectRef:
    """The Kubernetes object a custom metric value describes."""

    kind: str
    name: str
    namespace: str = ""
    api_version: str = "v1"


@dataclass(frozen=True, slots=True)
class Sample:
    """One element of an instant vector: labels, a finite or non-finite value, unix seconds."""

    labels: dict[str, str] = field(hash=False)
    value: float
    timestamp: float


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What a backend answered for one query.

    ``raw`` is the backend's decoded answer (JSON-able), kept for ``/debug/query``; it must not
    contain credentials. ``duration`` is the backend round trip in seconds.
    """

    query: str
    samples: tuple[Sample, ...]
    raw: object = field(default=None, hash=False, compare=False)
    duration: float = 0.0
    backend: str = ""


@dataclass(frozen=True, slots=True)
class MetricValue:
    """One value the API returns, before it is rendered for an API version.

    ``described`` is set for custom metrics (the object the value is about) and ``None`` for
    external metrics, which carry ``labels`` instead. ``timestamp`` is the sample's time in unix
    seconds; ``window`` is in seconds when the rule knows it (e.g. a ``rate(x[2m])``).
    """

    metric: str
    value: float
    timestamp: float
    described: ObjectRef | None = None
    labels: dict[str, str] = field(default_factory=dict, hash=False)
    window: int | None = None
