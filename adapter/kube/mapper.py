"""The apiserver's discovery as a REST mapper: every resource the cluster serves, by name.

As kubectl and prometheus-adapter do (client-go's ``restmapper``), the adapter reads discovery
— aggregated (``apidiscovery.k8s.io/v2``, one request for ``/api`` and one for ``/apis``) when the
apiserver offers it, else the legacy documents group version by group version — and keeps the
result as a :class:`~adapter.domain.resources.ResourceTable`: plural, singular, kind, preferred
version and scope of every built-in and custom resource. It is refreshed in the background (each
metric discovery, :class:`adapter.core.registry.MetricRegistry`) and on demand, at most every
``min_interval`` seconds, when a name is not found (a CRD created since).

The metrics groups this adapter serves itself are left out: they are not objects.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Mapping
from typing import Any

from kubernetes.client.exceptions import ApiException

from adapter.domain.errors import AdapterError
from adapter.domain.models import GroupResource
from adapter.domain.resources import ResourceInfo, ResourceTable
from adapter.kube.connection import Connection

__all__ = ["CLUSTER_SOURCE", "RestMapper", "get_path"]

log = logging.getLogger(__name__)

CLUSTER_SOURCE = "the cluster's discovery"
_AGGREGATED = (
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,"
    "application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,"
    "application/json"
)
_SKIPPED_GROUPS = frozenset({"custom.metrics.k8s.io", "external.metrics.k8s.io"})
"""Served by this adapter: metrics, not objects (and asking them would ask ourselves)."""


def get_path(client: Connection, path: str, accept: str, **options: Any) -> Any:
    """A GET of ``path`` (fixed by the adapter, never from a request) with the adapter's
    credentials, undecoded; an :class:`ApiException` for an error status, as generated calls
    raise. For :meth:`Connection.call` (``options``: ``_request_timeout``)."""
    api = client.api
    method, url, headers, body, post = api.param_serialize(
        "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
    )
    response = api.call_api(
        method, url, header_params=headers, body=body, post_params=post,
        _request_timeout=options.get("_request_timeout"),
    )  # fmt: skip
    response.read()
    if response.status >= 400:
        raise ApiException(status=response.status, reason=response.reason)
    return response


def _info(group: str, version: str, resource: Mapping[str, Any], *, legacy: bool) -> ResourceInfo:
    """One discovered resource: legacy ``APIResource`` or aggregated ``APIResourceDiscovery``."""
    if legacy:
        plural, singular = str(resource.get("name") or ""), str(resource.get("singularName") or "")
        kind, namespaced = str(resource.get("kind") or ""), bool(resource.get("namespaced"))
    else:
        plural = str(resource.get("resource") or "")
        singular = str(resource.get("singularResource") or "")
        kind = str((resource.get("responseKind") or {}).get("kind") or "")
        namespaced = resource.get("scope") == "Namespaced"
    return ResourceInfo(
        plural=plural,
        singular=singular or kind.lower(),
        group=group,
        kind=kind,
        namespaced=namespaced,
        version=version,
    )


def _keep(info: ResourceInfo) -> bool:
    # Subresources ("pods/log") and kind-less parents (a metrics API's "pods") are no objects.
    return bool(info.plural) and "/" not in info.plural and bool(info.kind)


def _from_aggregated(groups: Iterable[Mapping[str, Any]]) -> list[ResourceInfo]:
    """Resources of an ``APIGroupDiscoveryList``: per group, its versions in preference order,
    a resource taken from the first (preferred) version that serves it."""
    out: list[ResourceInfo] = []
    for item in groups:
        group = str((item.get("metadata") or {}).get("name") or "")
        if group in _SKIPPED_GROUPS:
            continue
        seen: set[str] = set()
        for version in item.get("versions") or []:
            for resource in version.get("resources") or []:
                info = _info(group, str(version.get("version") or ""), resource, legacy=False)
                if _keep(info) and info.plural not in seen:
                    seen.add(info.plural)
                    out.append(info)
    return out


class RestMapper:
    """The cluster's resources from discovery; :attr:`table` is ``None`` until the first
    discovery succeeds. ``min_interval``: seconds between two discoveries asked on demand;
    ``aggregated``: ask for aggregated discovery first (``False``: the legacy documents only)."""

    def __init__(
        self, client: Connection, *, min_interval: float = 5.0, aggregated: bool = True
    ) -> None:
        self._client = client
        self.min_interval = min_interval
        self._accept = _AGGREGATED if aggregated else "application/json"
        self.table: ResourceTable | None = None
        self.refreshed_at: float | None = None
        """Unix seconds of the last successful discovery."""
        self.error: str | None = None
        """Why the last discovery failed (the last good table is kept)."""
        self.aggregated: bool | None = None
        self._attempted = -float("inf")

    async def _get(self, what: str, path: str, accept: str) -> Any:
        return await self._client.call(what, get_path, self._client, path, accept)

    async def _legacy_group(self, group: Mapping[str, Any]) -> list[ResourceInfo]:
        name = str(group.get("name") or "")
        preferred = str((group.get("preferredVersion") or {}).get("groupVersion") or "")
        versions = [str(v.get("groupVersion") or "") for v in group.get("versions") or []]
        out: list[ResourceInfo] = []
        seen: set[str] = set()
        for group_version in [preferred, *(v for v in versions if v != preferred)]:
            if not group_version:
                continue
            listing = await self._get(
                f"discovering {group_version}", f"/apis/{group_version}", "application/json"
            )
            version = group_version.rsplit("/", 1)[-1]
            for resource in listing.get("resources") or []:
                info = _info(name, version, resource, legacy=True)
                if _keep(info) and info.plural not in seen:
                    seen.add(info.plural)
                    out.append(info)
        return out

    async def _legacy(self, groups: Iterable[Mapping[str, Any]]) -> list[ResourceInfo]:
        """The legacy documents: ``/api/v1``, then every group's versions, preferred first. A
        group that fails is left out (as client-go's partial discovery does) and said."""
        core = await self._get("discovering the core API", "/api/v1", "application/json")
        out = [
            info
            for info in (_info("", "v1", r, legacy=True) for r in core.get("resources") or [])
            if _keep(info)
        ]
        failed: list[str] = []
        for group in groups:
            if str(group.get("name") or "") in _SKIPPED_GROUPS:
                continue
            try:
                out.extend(await self._legacy_group(group))
            except AdapterError as exc:
                failed.append(exc.message)
        if failed:
            self.error = "; ".join(failed)
        return out

    async def _discover(self) -> list[ResourceInfo]:
        apis = await self._get("discovering the API groups", "/apis", self._accept)
        if apis.get("kind") == "APIGroupDiscoveryList":
            core = await self._get("discovering the core API", "/api", self._accept)
            self.aggregated = True
            return _from_aggregated([*(core.get("items") or []), *(apis.get("items") or [])])
        self.aggregated = False
        return await self._legacy(apis.get("groups") or [])

    async def refresh(self, *, min_age: float = 0.0) -> ResourceTable | None:
        """Discover again (unless the last attempt is younger than ``min_age`` seconds); keep the
        last good table when discovery fails. Returns :attr:`table`."""
        now = time.monotonic()
        if now - self._attempted < min_age:
            return self.table
        self._attempted = now
        self.error = None
        try:
            entries = await self._discover()
        except AdapterError as exc:
            self.error = exc.message
            log.warning("API discovery failed, keeping the last resource table: %s", exc.message)
            return self.table
        # Core first: a bare name resolves as the RESTMapper resolves it.
        entries.sort(key=lambda info: info.group != "")
        self.table = ResourceTable.of(entries, source=CLUSTER_SOURCE, complete=True)
        self.refreshed_at = time.time()
        return self.table

    async def resolve(self, resource: GroupResource) -> ResourceInfo | None:
        """``resource`` as the cluster serves it; discovery runs again (at most every
        ``min_interval`` seconds) when it is not in the table: a CRD may have been created."""
        if self.table is not None:
            found = self.table.exact(resource)
            if found is not None:
                return found
        table = await self.refresh(min_age=self.min_interval)
        return table.exact(resource) if table is not None else None

    def status(self) -> dict[str, Any]:
        """For ``/debug/metrics``: the table's source and size, when it was read, the last error."""
        return {
            "source": CLUSTER_SOURCE,
            "aggregatedDiscovery": self.aggregated,
            "resources": len(self.table) if self.table is not None else 0,
            "refreshedAt": self.refreshed_at,
            "error": self.error,
        }
