"""Client certificates: which certificate authority issued one, checked in Python.

The TLS layer verifies that a client certificate chains to *some* CA in the server's bundle (the
client CA and the requestheader CA together). That is not enough: only a certificate issued by the
requestheader CA may assert ``X-Remote-*`` headers, so :func:`issuing_authority` re-checks the leaf
against one named set of CAs at a time — issuer name, signature, validity periods, CA flag and
extended key usage, as Go's ``crypto/x509`` does for a trust pool.

Python 3.11's ``ssl`` exposes only the leaf certificate of a peer, so every certificate in a CA
bundle is a trust anchor (as in Go, where a CA file becomes a root pool) and the leaf must be issued
directly by one of them. A client chaining through an intermediate that is not in the bundle is not
recognised (it may still authenticate with a bearer token).
"""

from __future__ import annotations

import datetime
import ssl
from collections.abc import Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from adapter.domain.errors import ConfigError

__all__ = [
    "der_to_pem",
    "issuing_authority",
    "leaf_from_pem",
    "load_certificates",
    "usable_as_client",
]


def load_certificates(pem: bytes | str, *, what: str) -> tuple[x509.Certificate, ...]:
    """Every certificate in a PEM bundle. Empty input gives ``()``; garbage raises ConfigError."""
    data = pem.encode("ascii", errors="replace") if isinstance(pem, str) else pem
    if not data.strip():
        return ()
    try:
        return tuple(x509.load_pem_x509_certificates(data))
    except ValueError as exc:
        raise ConfigError(f"{what}: not a PEM certificate bundle ({exc})") from exc


def leaf_from_pem(pem: str) -> x509.Certificate | None:
    """The first certificate of a PEM string, or ``None`` if it does not parse."""
    try:
        return x509.load_pem_x509_certificate(pem.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


def der_to_pem(der: bytes) -> str:
    """A DER certificate as PEM text (what the ASGI TLS extension carries)."""
    return ssl.DER_cert_to_PEM_cert(der)


def _valid_at(cert: x509.Certificate, now: datetime.datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    return constraints.ca


def usable_as_client(cert: x509.Certificate) -> bool:
    """True unless an extended key usage extension excludes client authentication.

    Go accepts a leaf without the extension for any usage, and ``anyExtendedKeyUsage`` too.
    """
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return (
        ExtendedKeyUsageOID.CLIENT_AUTH in usages
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in usages
    )


def issuing_authority(
    leaf: x509.Certificate,
    authorities: Sequence[x509.Certificate],
    *,
    now: datetime.datetime | None = None,
) -> x509.Certificate | None:
    """The CA in ``authorities`` that directly issued ``leaf``, if the leaf is valid for client use.

    Checks: the leaf is within its validity period and usable for client authentication; the
    issuer is a CA certificate (basicConstraints cA=TRUE) within its own validity period, its
    subject equals the leaf's issuer and its key verifies the leaf's signature. ``now`` defaults to
    the current UTC time.
    """
    when = now or datetime.datetime.now(datetime.UTC)
    if not _valid_at(leaf, when) or not usable_as_client(leaf):
        return None
    for authority in authorities:
        if authority.subject != leaf.issuer or not _is_ca(authority):
            continue
        if not _valid_at(authority, when):
            continue
        try:
            leaf.verify_directly_issued_by(authority)
        except (ValueError, TypeError, InvalidSignature):
            continue
        return authority
    return None
