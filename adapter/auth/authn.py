"""Delegated authentication, in the order k8s.io/apiserver applies it to an extension server.

1. A client certificate issued by the requestheader CA, whose CN is in ``allowed-names`` (when that
   list is non-empty): the front proxy (the aggregator). The user comes from its headers
   (``X-Remote-User``, ``X-Remote-Uid``, every ``X-Remote-Group``, ``X-Remote-Extra-<key>``).
2. A client certificate issued by the client CA: the user is the CN, the groups the O attributes.
3. ``Authorization: Bearer <token>``: a TokenReview (results cached briefly; the token is never
   logged, and the cache keys on its SHA-256, not the token).
4. Otherwise: 401.

Identity headers are believed only in case 1; :func:`strip_identity_headers` removes them (and the
``Authorization`` header) before the request reaches the application, whatever the case.
Every authenticated user also gets the group ``system:authenticated``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol
from urllib.parse import unquote

from cryptography import x509
from cryptography.x509.oid import NameOID

from adapter.auth._cache import ReviewCache
from adapter.auth.certs import issuing_authority, leaf_from_pem
from adapter.auth.config import AuthConfig, AuthConfigHolder
from adapter.auth.user import UserInfo
from adapter.domain.errors import AdapterError, UnauthorizedError

__all__ = [
    "Authenticator",
    "Headers",
    "TokenReviewer",
    "bearer_token",
    "strip_identity_headers",
    "user_from_headers",
]

log = logging.getLogger(__name__)

Headers = Sequence[tuple[bytes, bytes]]
"""ASGI headers: lowercased names, raw values, in order, repeated names allowed."""

# Conventional names, stripped even when the cluster configures others: nothing downstream may
# ever see an identity header it could mistake for a verified one.
_DEFAULT_IDENTITY_HEADERS = frozenset({"x-remote-user", "x-remote-uid", "x-remote-group"})
_DEFAULT_EXTRA_PREFIX = "x-remote-extra-"


class TokenReviewer(Protocol):
    """Asks the Kubernetes API who holds a bearer token (a TokenReview)."""

    async def review_token(self, token: str) -> UserInfo | None:
        """The user, or ``None`` if the token is not valid.

        Raises :class:`adapter.domain.errors.AdapterError` if the API could not answer; the message must
        not contain the token.
        """
        ...


def _values(headers: Headers, name: str) -> list[str]:
    wanted = name.lower().encode("latin-1")
    return [v.decode("latin-1") for k, v in headers if k.lower() == wanted]


def _first_value(headers: Headers, names: Iterable[str]) -> str:
    """The first non-empty value of the first configured header present (Go's ``Header.Get``)."""
    for name in names:
        values = _values(headers, name)
        if values and values[0].strip():
            return values[0].strip()
    return ""


def user_from_headers(headers: Headers, config: AuthConfig) -> UserInfo | None:
    """The identity the front proxy asserts; ``None`` if no username header is present."""
    name = _first_value(headers, config.username_headers)
    if not name:
        return None
    uid = _first_value(headers, config.uid_headers)
    groups: list[str] = []
    for header in config.group_headers:
        groups.extend(v for v in _values(headers, header) if v)
    extra: dict[str, list[str]] = {}
    prefixes = [p.lower().encode("latin-1") for p in config.extra_header_prefixes]
    for key, value in headers:
        lowered = key.lower()
        for prefix in prefixes:
            if lowered.startswith(prefix) and len(lowered) > len(prefix):
                # As k8s: lowercase, then %-unescape (a malformed escape keeps the raw key).
                raw = lowered[len(prefix) :].decode("latin-1")
                extra.setdefault(_unescape(raw), []).append(value.decode("latin-1"))
                break
    return UserInfo(
        name=name,
        uid=uid,
        groups=tuple(groups),
        extra=tuple(sorted((k, tuple(v)) for k, v in extra.items())),
        method="requestheader",
    )


def _unescape(key: str) -> str:
    try:
        return unquote(key, errors="strict")
    except UnicodeDecodeError:
        return key


def bearer_token(headers: Headers) -> str:
    """The token of ``Authorization: Bearer <token>``, or ``""`` (k8s.io/apiserver's parsing)."""
    for value in _values(headers, "authorization"):
        parts = value.strip().split(" ", 2)
        if len(parts) >= 2 and parts[0].lower() == "bearer" and parts[1]:
            return parts[1]
        return ""
    return ""


def strip_identity_headers(headers: Headers, config: AuthConfig) -> list[tuple[bytes, bytes]]:
    """``headers`` without identity headers, extra-prefixed headers and ``Authorization``."""
    exact = config.identity_header_names | _DEFAULT_IDENTITY_HEADERS | {"authorization"}
    exact_b = {h.encode("latin-1") for h in exact}
    prefixes = tuple(
        p.lower().encode("latin-1") for p in (*config.extra_header_prefixes, _DEFAULT_EXTRA_PREFIX)
    )
    return [
        (k, v)
        for k, v in headers
        if k.lower() not in exact_b and not k.lower().startswith(prefixes)
    ]


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    value = names[0].value if names else ""
    return value if isinstance(value, str) else value.decode("utf-8", errors="replace")


def _organizations(cert: x509.Certificate) -> tuple[str, ...]:
    out: list[str] = []
    for attr in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME):
        value = attr.value
        out.append(value if isinstance(value, str) else value.decode("utf-8", errors="replace"))
    return tuple(out)


class Authenticator:
    """Authenticates one request from its headers and its TLS client certificate.

    ``tokens`` may be ``None`` (no TokenReview: bearer tokens are refused). ``token_ttl`` is in
    seconds, for both accepted and rejected tokens; review errors are not cached.
    """

    def __init__(
        self,
        config: AuthConfigHolder,
        *,
        tokens: TokenReviewer | None,
        token_ttl: float = 10.0,
        cache_size: int = 4096,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._tokens = tokens
        self._token_cache: ReviewCache[str, UserInfo | None] = ReviewCache(
            ttl_for=lambda _v: token_ttl, maxsize=cache_size, timer=timer
        )

    @property
    def config(self) -> AuthConfig:
        return self._config.current

    async def authenticate(
        self, headers: Headers, client_cert_chain: Sequence[str] | None
    ) -> UserInfo:
        """The user (with ``system:authenticated``), or :class:`UnauthorizedError`."""
        config = self._config.current
        leaf = leaf_from_pem(client_cert_chain[0]) if client_cert_chain else None
        if leaf is not None:
            user = self._from_certificate(leaf, headers, config)
            if user is not None:
                return user.with_authenticated_group()
        token = bearer_token(headers)
        if token:
            user = await self._review(token)
            if user is None:
                raise UnauthorizedError("Unauthorized: the bearer token was not accepted")
            return user.with_authenticated_group()
        raise UnauthorizedError("Unauthorized")

    def _from_certificate(
        self, leaf: x509.Certificate, headers: Headers, config: AuthConfig
    ) -> UserInfo | None:
        cn = _common_name(leaf)
        if config.requestheader_cas and issuing_authority(leaf, config.requestheader_cas):
            if not config.allowed_names or cn in config.allowed_names:
                user = user_from_headers(headers, config)
                if user is None:
                    raise UnauthorizedError(
                        "Unauthorized: the front proxy's request carries no username header "
                        f"({', '.join(config.username_headers) or 'none configured'})"
                    )
                return user
            log.info(
                "client certificate CN %r is issued by the requestheader CA but is not in "
                "requestheader-allowed-names: its identity headers are ignored",
                cn,
            )
        if config.client_cas and cn and issuing_authority(leaf, config.client_cas):
            return UserInfo(name=cn, groups=_organizations(leaf), method="x509")
        return None

    async def _review(self, token: str) -> UserInfo | None:
        if self._tokens is None:
            return None
        reviewer = self._tokens
        key = hashlib.sha256(token.encode("utf-8", errors="replace")).hexdigest()
        try:
            return await self._token_cache.get(key, lambda: reviewer.review_token(token))
        except AdapterError as exc:
            # 401 as k8s answers an authenticator error; the cause goes to the log, not the client.
            log.warning("TokenReview failed: %s", exc.message)
            raise UnauthorizedError(
                "Unauthorized: the token could not be reviewed (the Kubernetes API did not answer)"
            ) from exc
