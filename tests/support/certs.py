"""Client certificates for the TLS and authentication tests.

trustme writes a Subject Alternative Name extension even for a certificate with no identities
(a client certificate known by its common name alone), and cryptography 51 and later refuse an
empty one. A client certificate here carries one DNS name that nothing checks: Kubernetes takes a
client's user from the subject's CN and its groups from O, never from the SAN."""

from __future__ import annotations

import datetime

import trustme

__all__ = ["CLIENT_SAN", "client_cert"]

CLIENT_SAN = "client.invalid"
"""The one identity of every client certificate (``.invalid`` never resolves)."""


def client_cert(
    ca: trustme.CA,
    common_name: str,
    *,
    organization_name: str | None = None,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> trustme.LeafCert:
    """A client certificate for ``common_name`` (and ``organization_name``) signed by ``ca``."""
    return ca.issue_cert(
        CLIENT_SAN,
        common_name=common_name,
        organization_name=organization_name,
        not_before=not_before,
        not_after=not_after,
    )
