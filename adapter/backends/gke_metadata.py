"""The GKE metadata server: which cluster this pod runs in.

GKE nodes publish the cluster's name and location as instance attributes
(``computeMetadata/v1/instance/attributes/cluster-name`` and ``cluster-location``), readable by
any pod with the ``Metadata-Flavor: Google`` header. Off GKE nothing answers: the lookup gives
up quickly (``timeout`` seconds) and returns ``None``; it never raises.
"""

from __future__ import annotations

import logging

import httpx

__all__ = ["cluster_attributes"]

log = logging.getLogger(__name__)

_ATTRIBUTES = "/computeMetadata/v1/instance/attributes/"
_MAX_BYTES = 1024


async def _attribute(client: httpx.AsyncClient, base_url: str, name: str) -> str | None:
    try:
        response = await client.get(base_url.rstrip("/") + _ATTRIBUTES + name)
    except httpx.HTTPError as exc:
        log.debug("GKE metadata server: %s: %s", name, type(exc).__name__)
        return None
    value = response.text.strip() if response.status_code == 200 else ""
    if not value or len(value) > _MAX_BYTES or any(c.isspace() for c in value):
        return None
    return value


async def cluster_attributes(base_url: str, *, timeout: float = 2.0) -> tuple[str, str] | None:
    """``(cluster name, location)`` from the metadata server at ``base_url``, or ``None`` when
    it does not answer them (not on GKE). The location is ``""`` when only the name is known."""
    async with httpx.AsyncClient(
        headers={"Metadata-Flavor": "Google"},
        timeout=httpx.Timeout(timeout),
        follow_redirects=False,
        trust_env=False,
    ) as client:
        name = await _attribute(client, base_url, "cluster-name")
        if name is None:
            return None
        return name, await _attribute(client, base_url, "cluster-location") or ""
