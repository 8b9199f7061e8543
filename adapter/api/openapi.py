"""OpenAPI documents for the metrics groups, as the aggregator downloads them.

``/openapi/v2`` is one Swagger 2.0 document; ``/openapi/v3`` is the index of per-group-version
OpenAPI 3.0 documents at ``/openapi/v3/apis/{group}/{version}``. Both are built once from the
same schema table.
"""

from __future__ import annotations

import copy
import hashlib
import json
from functools import cache
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from adapter import __version__
from adapter.api.deps import json_response
from adapter.domain.errors import NotFoundError

__all__ = ["openapi_v2", "openapi_v3_group", "router"]

router = APIRouter()

_P = "io.k8s.metrics.pkg.apis"
_META = "io.k8s.apimachinery.pkg.apis.meta.v1"

_STRING = {"type": "string"}
_INT64 = {"type": "integer", "format": "int64"}
_QUANTITY = {"type": "string", "description": "A Kubernetes quantity: 1500m, 42, 3k."}
_TIME = {"type": "string", "format": "date-time"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/definitions/{name}"}


def _list_schema(item: str, group: str, version: str, kind: str) -> dict[str, Any]:
    """The schema of a ``*List`` kind whose ``items`` are ``item`` definitions."""
    return {
        "type": "object",
        "required": ["items"],
        "properties": {
            "kind": _STRING,
            "apiVersion": _STRING,
            "metadata": _ref(f"{_META}.ListMeta"),
            "items": {"type": "array", "items": _ref(item)},
        },
        "x-kubernetes-group-version-kind": [{"group": group, "version": version, "kind": kind}],
    }


def _definitions() -> dict[str, dict[str, Any]]:
    selector = {
        "type": "object",
        "properties": {
            "matchLabels": {"type": "object", "additionalProperties": _STRING},
            "matchExpressions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "required": ["key", "operator"],
                    "properties": {
                        "key": _STRING,
                        "operator": _STRING,
                        "values": {"type": "array", "items": _STRING},
                    },
                },
            },
        },
    }
    obj_ref = {
        "type": "object",
        "properties": {
            "kind": _STRING,
            "namespace": _STRING,
            "name": _STRING,
            "apiVersion": _STRING,
        },
    }
    list_meta = {"type": "object", "properties": {"resourceVersion": _STRING}}
    defs: dict[str, dict[str, Any]] = {
        f"{_META}.LabelSelector": selector,
        f"{_META}.ListMeta": list_meta,
        "io.k8s.api.core.v1.ObjectReference": obj_ref,
        f"{_META}.Status": {
            "type": "object",
            "properties": {
                "kind": _STRING,
                "apiVersion": _STRING,
                "status": _STRING,
                "message": _STRING,
                "reason": _STRING,
                "code": {"type": "integer", "format": "int32"},
            },
        },
    }
    for version in ("v1beta1", "v1beta2"):
        base = f"{_P}.custom_metrics.{version}"
        if version == "v1beta1":
            value_props: dict[str, Any] = {
                "describedObject": _ref("io.k8s.api.core.v1.ObjectReference"),
                "metricName": _STRING,
                "timestamp": _TIME,
                "window": _INT64,
                "value": _QUANTITY,
                "selector": _ref(f"{_META}.LabelSelector"),
            }
            required = ["describedObject", "metricName", "timestamp", "value"]
        else:
            defs[f"{base}.MetricIdentifier"] = {
                "type": "object",
                "required": ["name"],
                "properties": {"name": _STRING, "selector": _ref(f"{_META}.LabelSelector")},
            }
            value_props = {
                "describedObject": _ref("io.k8s.api.core.v1.ObjectReference"),
                "metric": _ref(f"{base}.MetricIdentifier"),
                "timestamp": _TIME,
                "windowSeconds": _INT64,
                "value": _QUANTITY,
            }
            required = ["describedObject", "metric", "timestamp", "value"]
        defs[f"{base}.MetricValue"] = {
            "type": "object",
            "required": required,
            "properties": {"kind": _STRING, "apiVersion": _STRING, **value_props},
        }
        defs[f"{base}.MetricValueList"] = _list_schema(
            f"{base}.MetricValue", "custom.metrics.k8s.io", version, "MetricValueList"
        )
    ext = f"{_P}.external_metrics.v1beta1"
    defs[f"{ext}.ExternalMetricValue"] = {
        "type": "object",
        "required": ["metricName", "metricLabels", "timestamp", "value"],
        "properties": {
            "metricName": _STRING,
            "metricLabels": {"type": "object", "additionalProperties": _STRING},
            "timestamp": _TIME,
            "window": _INT64,
            "value": _QUANTITY,
        },
    }
    defs[f"{ext}.ExternalMetricValueList"] = _list_schema(
        f"{ext}.ExternalMetricValue",
        "external.metrics.k8s.io",
        "v1beta1",
        "ExternalMetricValueList",
    )
    return defs


def _param(name: str, where: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": where,
        "required": where == "path",
        "type": "string",
        "description": description,
    }


_NS = _param("namespace", "path", "object name and auth scope, such as for teams and projects")
_RES = _param("resource", "path", "group-qualified resource: pods, deployments.apps")
_NAME = _param("name", "path", "object name, or * for every object matching labelSelector")
_METRIC = _param("metric", "path", "metric name")
_LSEL = _param(
    "labelSelector", "query", "objects to describe (custom) or series to select (external)"
)
_MSEL = _param("metricLabelSelector", "query", "series to select (custom metrics)")


def _operation(op_id: str, ref: str, params: list[dict[str, Any]], tag: str) -> dict[str, Any]:
    return {
        "get": {
            "operationId": op_id,
            "tags": [tag],
            "produces": ["application/json"],
            "parameters": params,
            "responses": {
                "200": {"description": "OK", "schema": _ref(ref)},
                "400": {"description": "Bad request", "schema": _ref(f"{_META}.Status")},
                "401": {"description": "Unauthorized", "schema": _ref(f"{_META}.Status")},
                "403": {"description": "Forbidden", "schema": _ref(f"{_META}.Status")},
                "404": {"description": "Not found", "schema": _ref(f"{_META}.Status")},
                "503": {"description": "Backend unavailable", "schema": _ref(f"{_META}.Status")},
            },
        }
    }


def _paths(group: str, version: str) -> dict[str, Any]:
    prefix = f"/apis/{group}/{version}"
    tag = f"{group.split('.')[0]}Metrics_{version}"
    op = f"{group.split('.')[0]}Metrics{version.capitalize()}"
    if group == "external.metrics.k8s.io":
        ref = f"{_P}.external_metrics.v1beta1.ExternalMetricValueList"
        return {
            f"{prefix}/namespaces/{{namespace}}/{{metric}}": _operation(
                f"read{op}NamespacedExternalMetric", ref, [_NS, _METRIC, _LSEL], tag
            )
        }
    ref = f"{_P}.custom_metrics.{version}.MetricValueList"
    return {
        f"{prefix}/namespaces/{{namespace}}/{{resource}}/{{name}}/{{metric}}": _operation(
            f"read{op}NamespacedMetricValue", ref, [_NS, _RES, _NAME, _METRIC, _LSEL, _MSEL], tag
        ),
        f"{prefix}/namespaces/{{namespace}}/metrics/{{metric}}": _operation(
            f"read{op}NamespaceMetricValue", ref, [_NS, _METRIC, _MSEL], tag
        ),
        f"{prefix}/{{resource}}/{{name}}/{{metric}}": _operation(
            f"read{op}ClusterMetricValue", ref, [_RES, _NAME, _METRIC, _LSEL, _MSEL], tag
        ),
    }


_GROUP_VERSIONS = (
    ("custom.metrics.k8s.io", "v1beta1"),
    ("custom.metrics.k8s.io", "v1beta2"),
    ("external.metrics.k8s.io", "v1beta1"),
)


@cache
def openapi_v2() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for group, version in _GROUP_VERSIONS:
        paths.update(_paths(group, version))
    return {
        "swagger": "2.0",
        "info": {"title": "llm-metrics-adapter", "version": f"v{__version__}"},
        "paths": paths,
        "definitions": _definitions(),
    }


def _to_v3(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {
            k: (v.replace("#/definitions/", "#/components/schemas/") if k == "$ref" else _to_v3(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_to_v3(v) for v in schema]
    return schema


@cache
def openapi_v3_group(group: str, version: str) -> dict[str, Any]:
    if (group, version) not in _GROUP_VERSIONS:
        raise NotFoundError(f"no OpenAPI document for {group}/{version}")
    paths: dict[str, Any] = {}
    for path, item in _paths(group, version).items():
        op = copy.deepcopy(item["get"])
        params = []
        for p in op.pop("parameters"):
            schema = {"type": p.pop("type")}
            params.append({**p, "schema": schema})
        op.pop("produces")
        responses = {
            code: {
                "description": r["description"],
                "content": {"application/json": {"schema": _to_v3(r["schema"])}},
            }
            for code, r in op.pop("responses").items()
        }
        paths[path] = {"get": {**op, "parameters": params, "responses": responses}}
    return {
        "openapi": "3.0.0",
        "info": {"title": "llm-metrics-adapter", "version": f"v{__version__}"},
        "paths": paths,
        "components": {"schemas": _to_v3(_definitions())},
    }


def _hash(doc: dict[str, Any]) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:32].upper()


@router.get("/openapi/v2")
async def get_openapi_v2() -> Response:
    return json_response(openapi_v2())


@router.get("/openapi/v3")
async def get_openapi_v3_index() -> Response:
    paths = {
        f"apis/{g}/{v}": {
            "serverRelativeURL": f"/openapi/v3/apis/{g}/{v}?hash={_hash(openapi_v3_group(g, v))}"
        }
        for g, v in _GROUP_VERSIONS
    }
    return json_response({"paths": paths})


@router.get("/openapi/v3/apis/{group}/{version}")
async def get_openapi_v3(group: str, version: str) -> Response:
    return json_response(openapi_v3_group(group, version))
