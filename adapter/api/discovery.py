"""Discovery documents, served from the registry snapshot with no backend I/O.

``GET /apis`` answers the aggregated discovery format (``apidiscovery.k8s.io`` v2 or v2beta1)
when the Accept header asks for it — the aggregator does — and an ``APIGroupList`` otherwise.
Resource lists are never empty: the registry always holds the static rules' metrics.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from adapter.api.deps import context, json_response
from adapter.core.registry import Snapshot
from adapter.core.request import CUSTOM_VERSIONS, EXTERNAL_VERSIONS
from adapter.core.translate import CUSTOM_GROUP, EXTERNAL_GROUP
from adapter.domain.errors import NotFoundError

__all__ = ["api_resource_list", "router"]

router = APIRouter()

# Preferred first.
_GROUPS: dict[str, tuple[str, ...]] = {
    CUSTOM_GROUP: tuple(reversed(CUSTOM_VERSIONS)),
    EXTERNAL_GROUP: EXTERNAL_VERSIONS,
}
_AGGREGATED_TYPE = "application/json;g=apidiscovery.k8s.io;v={v};as=APIGroupDiscoveryList"


def _group(name: str) -> dict[str, Any]:
    versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in _GROUPS[name]]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def api_resource_list(snapshot: Snapshot, group: str, version: str) -> dict[str, Any]:
    """The ``APIResourceList`` of one group version."""
    resources: list[dict[str, Any]] = []
    if group == CUSTOM_GROUP:
        for (resource, metric), served in sorted(
            snapshot.custom.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])
        ):
            resources.append(
                {
                    "name": f"{resource}/{metric}",
                    "singularName": "",
                    "namespaced": served.namespaced,
                    "kind": "MetricValueList",
                    "verbs": ["get"],
                }
            )
    else:
        for metric in sorted(snapshot.external):
            resources.append(
                {
                    "name": metric,
                    "singularName": "",
                    "namespaced": True,
                    "kind": "ExternalMetricValueList",
                    "verbs": ["get"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}",
        "resources": resources,
    }


def _aggregated_resources(snapshot: Snapshot, group: str) -> list[dict[str, Any]]:
    if group == EXTERNAL_GROUP:
        kind = {"group": "", "version": "", "kind": "ExternalMetricValueList"}
        return [
            {
                "resource": metric,
                "responseKind": kind,
                "scope": "Namespaced",
                "singularResource": "",
                "verbs": ["get"],
            }
            for metric in sorted(snapshot.external)
        ]
    # Custom metric resources are "<resource>/<metric>" and have no parent of their own. As
    # k8s.io/apiserver's ConvertGroupVersionIntoToDiscovery does for such names, each resource
    # becomes a parent with an EMPTY responseKind and no verbs, and one subresource per metric:
    # client-go then drops the parent (it has no kind) and keeps "<resource>/<metric>", so the
    # aggregated and the legacy documents list the same resources.
    kind = {"group": "", "version": "", "kind": "MetricValueList"}
    parents: dict[str, dict[str, Any]] = {}
    for (resource, metric), served in sorted(
        snapshot.custom.items(), key=lambda kv: (str(kv[0][0]), kv[0][1])
    ):
        parent = parents.setdefault(
            str(resource),
            {
                "resource": str(resource),
                "responseKind": {"group": "", "version": "", "kind": ""},
                "scope": "Namespaced" if served.namespaced else "Cluster",
                "singularResource": "",
                "verbs": None,
                "subresources": [],
            },
        )
        parent["subresources"].append(
            {"subresource": metric, "responseKind": kind, "verbs": ["get"]}
        )
    return list(parents.values())


def _aggregated(snapshot: Snapshot, version: str) -> dict[str, Any]:
    return {
        "kind": "APIGroupDiscoveryList",
        "apiVersion": f"apidiscovery.k8s.io/{version}",
        "metadata": {},
        "items": [
            {
                "metadata": {"name": group},
                "versions": [
                    {
                        "version": v,
                        "resources": _aggregated_resources(snapshot, group),
                        "freshness": "Current",
                    }
                    for v in versions
                ],
            }
            for group, versions in _GROUPS.items()
        ],
    }


def _wants_aggregated(accept: str) -> str | None:
    """The aggregated discovery version the client accepts first, if any."""
    for part in accept.split(","):
        params = dict(p.strip().split("=", 1) for p in part.split(";")[1:] if "=" in p)
        if params.get("g") == "apidiscovery.k8s.io" and params.get("as") == "APIGroupDiscoveryList":
            version = params.get("v", "")
            if version in {"v2", "v2beta1"}:
                return version
    return None


@router.get("/apis")
async def apis(request: Request) -> Response:
    version = _wants_aggregated(request.headers.get("accept", ""))
    if version is not None:
        return json_response(
            _aggregated(context(request).registry.snapshot, version),
            media_type=_AGGREGATED_TYPE.format(v=version),
        )
    return json_response(
        {"kind": "APIGroupList", "apiVersion": "v1", "groups": [_group(g) for g in _GROUPS]}
    )


@router.get("/apis/{group}")
async def api_group(group: str) -> Response:
    if group not in _GROUPS:
        raise NotFoundError(f"the server could not find the requested resource /apis/{group!r}")
    return json_response({"kind": "APIGroup", "apiVersion": "v1", **_group(group)})


@router.get("/apis/{group}/{version}")
async def api_version(request: Request, group: str, version: str) -> Response:
    if group not in _GROUPS or version not in _GROUPS[group]:
        raise NotFoundError(
            f"the server could not find the requested resource /apis/{group}/{version}"
        )
    return json_response(api_resource_list(context(request).registry.snapshot, group, version))
