"""Delegated authentication settings, as the cluster publishes them.

The kube-apiserver writes ``kube-system/extension-apiserver-authentication``: the CA that signs
client certificates it accepts (``client-ca-file``), and for the aggregation layer the CA that signs
the front proxy's client certificate plus the header names that carry the caller's identity (JSON
arrays). :class:`AuthConfigHolder` keeps the current value and tells subscribers when the configmap
changes (CA rotation applies without a restart).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from cryptography import x509

from adapter.auth.certs import load_certificates
from adapter.domain.errors import ConfigError

__all__ = [
    "AUTH_CONFIGMAP_NAME",
    "AUTH_CONFIGMAP_NAMESPACE",
    "AuthConfig",
    "AuthConfigHolder",
]

log = logging.getLogger(__name__)

AUTH_CONFIGMAP_NAMESPACE = "kube-system"
AUTH_CONFIGMAP_NAME = "extension-apiserver-authentication"

_LIST_KEYS = {
    "requestheader-username-headers": "username_headers",
    "requestheader-uid-headers": "uid_headers",
    "requestheader-group-headers": "group_headers",
    "requestheader-extra-headers-prefix": "extra_header_prefixes",
    "requestheader-allowed-names": "allowed_names",
}


def _json_list(data: Mapping[str, str], key: str) -> tuple[str, ...]:
    raw = data.get(key)
    if raw is None or not raw.strip():
        return ()
    try:
        value = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"{AUTH_CONFIGMAP_NAME}: {key} is not JSON: {exc}") from exc
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{AUTH_CONFIGMAP_NAME}: {key} must be a JSON array of strings")
    return tuple(v for v in value if v)


@dataclass(frozen=True, slots=True)
class AuthConfig:
    """CAs (PEM) and requestheader settings. Header names are matched case-insensitively.

    An empty ``requestheader_ca_pem`` disables the front-proxy path entirely (no one may assert
    ``X-Remote-*``); an empty ``client_ca_pem`` disables client-certificate authentication.
    An empty ``allowed_names`` accepts any certificate issued by the requestheader CA.
    """

    client_ca_pem: bytes = b""
    requestheader_ca_pem: bytes = b""
    username_headers: tuple[str, ...] = ()
    uid_headers: tuple[str, ...] = ()
    group_headers: tuple[str, ...] = ()
    extra_header_prefixes: tuple[str, ...] = ()
    allowed_names: tuple[str, ...] = ()
    client_cas: tuple[x509.Certificate, ...] = field(init=False, repr=False, compare=False)
    requestheader_cas: tuple[x509.Certificate, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Parsed once: a bad bundle fails here (ConfigError), not on a request.
        object.__setattr__(
            self, "client_cas", load_certificates(self.client_ca_pem, what="client-ca-file")
        )
        object.__setattr__(
            self,
            "requestheader_cas",
            load_certificates(self.requestheader_ca_pem, what="requestheader-client-ca-file"),
        )

    @classmethod
    def from_configmap(cls, data: Mapping[str, str]) -> AuthConfig:
        """Build from the configmap's ``data``. Raises :class:`ConfigError` on malformed values."""
        lists = {attr: _json_list(data, key) for key, attr in _LIST_KEYS.items()}
        return cls(
            client_ca_pem=data.get("client-ca-file", "").encode(),
            requestheader_ca_pem=data.get("requestheader-client-ca-file", "").encode(),
            **lists,
        )

    @property
    def ca_bundle_pem(self) -> bytes:
        """Both CAs, PEM: what the TLS layer verifies client certificates against."""
        parts = [p.strip() for p in (self.client_ca_pem, self.requestheader_ca_pem) if p.strip()]
        return b"\n".join(parts) + b"\n" if parts else b""

    @property
    def identity_header_names(self) -> frozenset[str]:
        """Lowercased header names that carry an asserted identity (exact names)."""
        return frozenset(
            h.lower() for h in (*self.username_headers, *self.uid_headers, *self.group_headers)
        )

    def fingerprint(self) -> str:
        """A short digest of the configuration, for logs (no secrets are in it anyway)."""
        digest = hashlib.sha256(repr(self).encode())
        return digest.hexdigest()[:12]


Listener = Callable[[AuthConfig], None]


class AuthConfigHolder:
    """The current :class:`AuthConfig`; :meth:`update` swaps it and calls every subscriber.

    Lives on the event loop: call :meth:`update` from the loop's thread (the Kubernetes watcher
    hops there with ``call_soon_threadsafe``).
    """

    def __init__(self, initial: AuthConfig) -> None:
        self.current = initial
        self._listeners: list[Listener] = []
        self.updates = 0
        """How many times the configuration changed since start."""

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def update(self, config: AuthConfig) -> bool:
        """Replace the configuration; ``False`` (and no callbacks) if nothing changed."""
        if config == self.current:
            return False
        self.current = config
        self.updates += 1
        log.info(
            "delegated authentication configuration changed (%s): %d client CA(s), "
            "%d requestheader CA(s), allowed names %s",
            config.fingerprint(),
            len(config.client_cas),
            len(config.requestheader_cas),
            list(config.allowed_names) or "any",
        )
        for listener in self._listeners:
            try:
                listener(config)
            except Exception:  # one failing subscriber must not stop the others
                log.exception("an authentication configuration subscriber failed")
        return True
