"""prometheus-adapter rules as the resource-mapping tests write them, and the CRD of
prometheus-adapter's documented override (``brand: {group: cheese.io, resource: brand}``)."""

from __future__ import annotations

from typing import Any

from tests.support.crds import crd

__all__ = ["SUM_BY", "brands_crd", "override_rule", "template_rule"]

SUM_BY = "sum(<<.Series>>{<<.LabelMatchers>>}) by (<<.GroupBy>>)"


def _series(series: str, labels: tuple[str, ...]) -> str:
    return "{" + ",".join([f'__name__="{series}"', *(f'{label}!=""' for label in labels)]) + "}"


def override_rule(
    series: str, label: str, resource: str, group: str = "", *, query: str = SUM_BY
) -> dict[str, Any]:
    """A custom rule over ``series`` (with ``namespace`` and ``label``), ``namespace`` mapped to
    namespaces and ``label`` to ``resource`` in ``group``."""
    return {
        "seriesQuery": _series(series, ("namespace", label)),
        "resources": {
            "overrides": {
                "namespace": {"resource": "namespace"},
                label: {"group": group, "resource": resource},
            }
        },
        "metricsQuery": query,
    }


def template_rule(series: str, *labels: str, query: str = SUM_BY) -> dict[str, Any]:
    """A custom rule over ``series`` (with each of ``labels``), mapped by ``<<.Resource>>``."""
    return {
        "seriesQuery": _series(series, labels),
        "resources": {"template": "<<.Resource>>"},
        "metricsQuery": query,
    }


def brands_crd(version: str = "v1") -> dict[str, Any]:
    """The namespaced ``brands.cheese.io`` CRD (kind Brand), served at ``version``."""
    return crd("cheese.io", "brands", "Brand", version=version)
