"""Delegated authentication and authorization, as Kubernetes extension API servers do it.

:class:`AuthMiddleware` (ASGI) authenticates with :class:`Authenticator` (front-proxy client
certificate and ``X-Remote-*`` headers, client certificate, bearer token via TokenReview) and
authorizes with :class:`Authorizer` (SubjectAccessReview, cached). The Kubernetes calls themselves
live in :mod:`adapter.k8s`, behind the :class:`TokenReviewer` and :class:`AccessReviewer`
protocols.
"""

from __future__ import annotations

from adapter.auth.attributes import Attributes, denial_message, request_attributes
from adapter.auth.authn import Authenticator, TokenReviewer, strip_identity_headers
from adapter.auth.authz import AccessReviewer, Authorizer, Decision
from adapter.auth.config import AuthConfig, AuthConfigHolder
from adapter.auth.middleware import ANONYMOUS_PATHS, AuthMiddleware
from adapter.auth.user import UserInfo

__all__ = [
    "ANONYMOUS_PATHS",
    "AccessReviewer",
    "Attributes",
    "AuthConfig",
    "AuthConfigHolder",
    "AuthMiddleware",
    "Authenticator",
    "Authorizer",
    "Decision",
    "TokenReviewer",
    "UserInfo",
    "denial_message",
    "request_attributes",
    "strip_identity_headers",
]
