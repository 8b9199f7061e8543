"""Kubernetes: the only package that imports the ``kubernetes`` client.

Everything above it sees plain data and small protocols (the provider's ``ObjectSource``, the
authenticator's ``TokenReviewer``, the authorizer's ``AccessReviewer``, explain's ``HpaReader``).
May import :mod:`adapter.auth` and :mod:`adapter.domain`.
"""

from __future__ import annotations

from adapter.kube.client import KubeClient
from adapter.kube.connection import KubernetesError, KubernetesForbiddenError, load_api_client
from adapter.kube.mapper import RestMapper
from adapter.kube.objects import WATCHED_RESOURCES, ObjectCache, selector_matches
from adapter.kube.watch import WATCH_SECONDS

__all__ = [
    "WATCHED_RESOURCES",
    "WATCH_SECONDS",
    "KubeClient",
    "KubernetesError",
    "KubernetesForbiddenError",
    "ObjectCache",
    "RestMapper",
    "load_api_client",
    "selector_matches",
]
