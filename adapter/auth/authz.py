"""Delegated authorization: a SubjectAccessReview per (user, attributes), cached briefly.

Members of ``system:masters`` are allowed without a review (as the kube-apiserver's
privileged-group authorizer does). Allowed and denied answers are cached separately (seconds,
bounded size); review *errors* are not cached and are raised to the caller, which must refuse the
request (fail closed).

A resource request is first checked as the same verb on every resource of its API group in every
namespace (``resource: "*"``, no namespace, no name): a user allowed that — the HPA controller's
own ClusterRole grants ``get`` on ``*`` in both metrics groups — is allowed the request, and one
cached review covers all its requests instead of one per namespace, metric and object (with the
HPA's 15 s sync longer than the 10 s cache, that was a review for nearly every request). Sound for
any authorizer: what is allowed on all resources everywhere is allowed on each. Otherwise the
request's own attributes are reviewed, and a denial names them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from adapter.auth._cache import ReviewCache
from adapter.auth.attributes import Attributes
from adapter.auth.user import MASTERS_GROUP, UserInfo

__all__ = ["AccessReviewer", "Authorizer", "Decision"]


@dataclass(frozen=True, slots=True)
class Decision:
    """``allowed`` and the authorizer's ``reason`` (shown to the client on denial)."""

    allowed: bool
    reason: str = ""


class AccessReviewer(Protocol):
    """Asks the Kubernetes API whether ``user`` may do ``attributes`` (a SubjectAccessReview)."""

    async def review_access(self, user: UserInfo, attributes: Attributes) -> Decision:
        """Raises :class:`adapter.domain.errors.AdapterError` if the API could not answer."""
        ...


class Authorizer:
    """``allow_ttl`` and ``deny_ttl`` in seconds (``0``: not cached); ``cache_size`` entries."""

    def __init__(
        self,
        reviewer: AccessReviewer,
        *,
        allow_ttl: float = 10.0,
        deny_ttl: float = 10.0,
        cache_size: int = 10_000,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._reviewer = reviewer
        self._cache: ReviewCache[tuple[UserInfo, Attributes], Decision] = ReviewCache(
            ttl_for=lambda d: allow_ttl if d.allowed else deny_ttl,
            maxsize=cache_size,
            timer=timer,
        )

    @property
    def cache(self) -> ReviewCache[tuple[UserInfo, Attributes], Decision]:
        return self._cache

    async def authorize(self, user: UserInfo, attributes: Attributes) -> Decision:
        """The decision; raises :class:`adapter.domain.errors.AdapterError` when no review was possible."""
        if MASTERS_GROUP in user.groups:
            return Decision(allowed=True, reason=f"member of {MASTERS_GROUP}")
        broad = _everywhere(attributes)
        if broad is not None:
            decision = await self._review(user, broad)
            if decision.allowed:
                return decision
        return await self._review(user, attributes)

    async def _review(self, user: UserInfo, attributes: Attributes) -> Decision:
        reviewer = self._reviewer
        return await self._cache.get(
            (user, attributes), lambda: reviewer.review_access(user, attributes)
        )


def _everywhere(attributes: Attributes) -> Attributes | None:
    """The same verb on every resource of the group, in every namespace; ``None`` when that is
    what ``attributes`` ask already or they are not a resource request."""
    if not attributes.resource_request:
        return None
    broad = replace(attributes, path="", namespace="", resource="*", subresource="", name="")
    return None if broad == replace(attributes, path="") else broad
