"""The HPA feature: the controller's replica algorithm, ``explain`` and its rendering.

``algorithm`` is pure (the controller's ``computeReplicasForMetrics`` and its normalisation);
``explain`` reads an HPA through a small protocol and fetches each metric through the same
provider the API serves. May import :mod:`adapter.core` and below; not HTTP, not Kubernetes.
"""
