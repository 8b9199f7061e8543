"""Delegated authentication and authorization, as Kubernetes extension API servers do it.

:class:`Authenticator` (front-proxy client certificate and ``X-Remote-*`` headers, client
certificate, bearer token via TokenReview) and :class:`Authorizer` (SubjectAccessReview, cached)
decide; the ASGI middleware that applies them to every request is
:class:`adapter.api.auth.AuthMiddleware` (HTTP lives in :mod:`adapter.api`). The Kubernetes calls themselves
live in :mod:`adapter.kube.reviews`, behind the :class:`TokenReviewer` and :class:`AccessReviewer`
protocols.
"""

from __future__ import annotations

from adapter.auth.attributes import Attributes, denial_message, request_attributes
from adapter.auth.authn import Authenticator, TokenReviewer, strip_identity_headers
from adapter.auth.authz import AccessReviewer, Authorizer, Decision
from adapter.auth.config import AuthConfig, AuthConfigHolder
from adapter.auth.user import UserInfo

__all__ = [
    "AccessReviewer",
    "Attributes",
    "AuthConfig",
    "AuthConfigHolder",
    "Authenticator",
    "Authorizer",
    "Decision",
    "TokenReviewer",
    "UserInfo",
    "denial_message",
    "request_attributes",
    "strip_identity_headers",
]
