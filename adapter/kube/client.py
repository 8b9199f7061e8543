"""The adapter's Kubernetes client: one connection, the calls grouped by concern.

- :mod:`adapter.kube.connection`: the client from ``--kubeconfig`` or the in-cluster service
  account, and the one way to call it (worker thread, timeout, errors mapped);
- :mod:`adapter.kube.reviews`: TokenReview and SubjectAccessReview (delegated auth);
- :mod:`adapter.kube.configmap`: the delegated-authentication configmap, read and watched;
- :mod:`adapter.kube.hpa`: HPA, scale and pod reads for ``explain``;
- :mod:`adapter.kube.objects`: the watch-backed object cache the provider asks which objects exist.
"""

from __future__ import annotations

from adapter.kube.configmap import AuthConfigCalls
from adapter.kube.hpa import HpaCalls
from adapter.kube.reviews import ReviewCalls

__all__ = ["KubeClient"]


class KubeClient(ReviewCalls, AuthConfigCalls, HpaCalls):
    """Every Kubernetes call the adapter makes, on one connection (``KubeClient.connect``)."""
