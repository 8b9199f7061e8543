"""Who is asking: the authenticated identity of one request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["AUTHENTICATED_GROUP", "MASTERS_GROUP", "AuthMethod", "UserInfo"]

AUTHENTICATED_GROUP = "system:authenticated"
"""Added to every authenticated user, as Kubernetes does."""

MASTERS_GROUP = "system:masters"
"""Members are allowed everything without a SubjectAccessReview."""

AuthMethod = Literal["requestheader", "x509", "token"]
"""How the identity was established: the front proxy's headers, a client certificate, a token."""


@dataclass(frozen=True, slots=True)
class UserInfo:
    """An authenticated user. Hashable, so it can key the authorization cache.

    ``extra`` is a sorted tuple of ``(key, values)`` pairs (keys lowercased), the form a
    SubjectAccessReview's ``spec.extra`` takes.
    """

    name: str
    uid: str = ""
    groups: tuple[str, ...] = ()
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    method: AuthMethod = "token"

    def with_authenticated_group(self) -> UserInfo:
        """A copy with ``system:authenticated`` appended (once)."""
        if AUTHENTICATED_GROUP in self.groups:
            return self
        return UserInfo(
            name=self.name,
            uid=self.uid,
            groups=(*self.groups, AUTHENTICATED_GROUP),
            extra=self.extra,
            method=self.method,
        )

    def extra_dict(self) -> dict[str, list[str]]:
        return {key: list(values) for key, values in self.extra}
