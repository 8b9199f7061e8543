"""Kubernetes resources by name: what a label name or an override maps to.

A :class:`ResourceTable` answers as a RESTMapper does (``k8s.io/apimachinery/pkg/api/meta``):
a plural, a singular or a kind, bare or group-qualified, to one resource with its kind, version
and scope. In Kubernetes mode the table is built from the apiserver's discovery
(:mod:`adapter.kube.mapper`); standalone it is the built-in table of the common resources
(:mod:`adapter.rules.resources`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from adapter.domain.models import GroupResource

__all__ = ["ResourceInfo", "ResourceTable", "sanitize_group"]


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


def sanitize_group(group: str) -> str:
    """prometheus-adapter's ``<<.Group>>`` form: dots and dashes become underscores."""
    return group.replace(".", "_").replace("-", "_")


@dataclass(frozen=True)
class ResourceTable:
    """Resources in lookup order (the core group first, as the RESTMapper prefers it), and
    where they come from (``source``: said by ``/debug/metrics`` and ``check-config``).

    ``complete``: the table lists every resource the cluster serves (from its discovery), so a
    name it lacks is not served; the built-in table is not complete, and a name it lacks is
    guessed as Kubernetes guesses one.
    """

    entries: tuple[ResourceInfo, ...]
    source: str
    complete: bool = False
    _exact: dict[GroupResource, ResourceInfo] = field(
        init=False, repr=False, compare=False, hash=False
    )

    def __post_init__(self) -> None:
        exact: dict[GroupResource, ResourceInfo] = {}
        for info in self.entries:
            exact.setdefault(info.group_resource, info)
        object.__setattr__(self, "_exact", exact)

    @classmethod
    def of(
        cls, entries: Iterable[ResourceInfo], *, source: str, complete: bool = False
    ) -> ResourceTable:
        return cls(tuple(entries), source, complete)

    def __len__(self) -> int:
        return len(self.entries)

    def exact(self, resource: GroupResource) -> ResourceInfo | None:
        """The entry for exactly this plural and group, or ``None``."""
        return self._exact.get(resource)

    def lookup(self, resource: str, group: str | None = None) -> ResourceInfo | None:
        """Find a resource by plural, singular or kind (case-insensitive), optionally
        group-qualified.

        ``resource`` may carry its group after the first dot (``deployments.apps``) when ``group``
        is ``None``. ``group`` ``None`` or ``""`` with a bare name searches every group, core
        first, as the RESTMapper does; a group is also matched in its sanitized form
        (``networking_k8s_io``), which is what a ``<<.Group>>`` label template yields. Returns
        ``None`` when unknown.
        """
        name = resource.strip().lower()
        if group is None:
            name, _, rest = name.partition(".")
            group = rest
        group = group.strip().lower()
        for info in self.entries:
            if name not in (info.plural, info.singular, info.kind.lower()):
                continue
            if group and group not in (info.group, sanitize_group(info.group)):
                continue
            return info
        return None
