"""TokenReview and SubjectAccessReview: the calls delegated authentication and authorization make.

:class:`ReviewCalls` implements :class:`adapter.auth.authn.TokenReviewer` and
:class:`adapter.auth.authz.AccessReviewer`.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s_client

from adapter.auth.attributes import Attributes
from adapter.auth.authz import Decision
from adapter.auth.user import UserInfo
from adapter.kube.connection import Connection

__all__ = ["ReviewCalls"]


class ReviewCalls(Connection):
    """Reviews of a client's token and of its access, asked of the apiserver."""

    async def review_token(self, token: str) -> UserInfo | None:
        """TokenReview: the token's user, or ``None`` if not authenticated."""
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenReview",
            "spec": {"token": token},
        }
        api = k8s_client.AuthenticationV1Api(self.api)
        answer = await self.call("TokenReview", api.create_token_review, body)
        status = answer.get("status") or {}
        if not status.get("authenticated"):
            return None
        user = status.get("user") or {}
        extra = user.get("extra") or {}
        return UserInfo(
            name=str(user.get("username", "")),
            uid=str(user.get("uid", "")),
            groups=tuple(str(g) for g in user.get("groups") or ()),
            extra=tuple(sorted((str(k), tuple(str(v) for v in vs)) for k, vs in extra.items())),
            method="token",
        )

    async def review_access(self, user: UserInfo, attributes: Attributes) -> Decision:
        """SubjectAccessReview for ``user`` doing ``attributes``."""
        spec: dict[str, Any] = {
            "user": user.name,
            "groups": list(user.groups),
            "extra": user.extra_dict(),
        }
        if user.uid:
            spec["uid"] = user.uid
        a = attributes
        if a.resource_request:
            spec["resourceAttributes"] = {
                "namespace": a.namespace,
                "verb": a.verb,
                "group": a.api_group,
                "version": a.api_version,
                "resource": a.resource,
                "subresource": a.subresource,
                "name": a.name,
            }
        else:
            spec["nonResourceAttributes"] = {"path": a.path, "verb": a.verb}
        body = {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": spec,
        }
        api = k8s_client.AuthorizationV1Api(self.api)
        answer = await self.call("SubjectAccessReview", api.create_subject_access_review, body)
        status = answer.get("status") or {}
        reason = str(status.get("reason") or status.get("evaluationError") or "")
        return Decision(allowed=bool(status.get("allowed")), reason=reason)
