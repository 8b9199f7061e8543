"""Kubernetes: the only package that imports the ``kubernetes`` client.

Everything above it sees plain data and small protocols (the provider's ``ObjectSource``, the
authenticator's ``TokenReviewer``, the authorizer's ``AccessReviewer``, explain's ``HpaReader``).
May import :mod:`adapter.auth` and :mod:`adapter.domain`.
"""
