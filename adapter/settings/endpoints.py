"""Where Google's endpoints are reached: Google's own, or (tests, local stand-ins) the URLs of
``--google-endpoints`` / ``LMA_GOOGLE_ENDPOINTS``.

A process setting only: nothing in a request can change where the adapter connects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["ENDPOINT_NAMES", "GoogleEndpoints", "parse_google_endpoints"]

ENDPOINT_NAMES = ("gmp", "token", "metadata", "cloud-monitoring")
"""The names ``--google-endpoints`` takes, in the order they are written back."""


@dataclass(frozen=True, slots=True)
class GoogleEndpoints:
    """For tests: where Google's endpoints are reached instead (a local stand-in). ``None``:
    Google's own. Each is a base URL (scheme, host, port) that replaces Google's."""

    gmp: str | None = None
    """GMP's query API, instead of ``https://monitoring.googleapis.com``."""
    token: str | None = None
    """The OAuth2 token endpoint, instead of ``https://oauth2.googleapis.com``."""
    metadata: str | None = None
    """The metadata server, instead of ``http://metadata.google.internal`` (and
    ``http://169.254.169.254``): the cluster name, and credentials on GKE."""
    cloud_monitoring: str | None = None
    """Cloud Monitoring's gRPC API, instead of ``monitoring.googleapis.com:443``;
    ``http://host:port`` is a plaintext channel without credentials."""

    def __bool__(self) -> bool:
        return any((self.gmp, self.token, self.metadata, self.cloud_monitoring))

    def __str__(self) -> str:
        urls = (self.gmp, self.token, self.metadata, self.cloud_monitoring)
        pairs = zip(ENDPOINT_NAMES, urls, strict=True)
        return ",".join(f"{name}={url}" for name, url in pairs if url)


def _names() -> str:
    return ", ".join(ENDPOINT_NAMES)


def _pairs(value: str) -> list[tuple[str, str]]:
    pairs = []
    for item in value.replace("\n", ",").split(","):
        if not item.strip():
            continue
        name, sep, url = item.partition("=")
        if not sep:
            raise ValueError(
                f"--google-endpoints: expected NAME=URL, got {item.strip()!r} (names: {_names()})"
            )
        pairs.append((name, url))
    return pairs


def _base_url(name: str, url: str) -> str:
    parts = urlsplit(url.strip())
    if (
        parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.path.strip("/")
        or parts.query
        or parts.fragment
        or parts.username is not None
    ):
        raise ValueError(f"--google-endpoints: {name} must be http(s)://HOST[:PORT], got {url!r}")
    try:
        parts.port  # noqa: B018 - a port that is not a number raises here
    except ValueError:
        raise ValueError(f"--google-endpoints: {name} has a bad port: {url!r}") from None
    return f"{parts.scheme}://{parts.netloc}"


def parse_google_endpoints(value: str | Mapping[str, str] | GoogleEndpoints) -> GoogleEndpoints:
    """``gmp=URL,token=URL,metadata=URL,cloud-monitoring=URL`` (any of them, commas or newlines
    between) as :class:`GoogleEndpoints`; ``ValueError`` for an unknown name or a URL that is
    not ``http(s)://host[:port]``."""
    if isinstance(value, GoogleEndpoints):
        return value
    items = list(value.items()) if isinstance(value, Mapping) else _pairs(value)
    found: dict[str, str] = {}
    for name, url in items:
        key = name.strip().lower()
        if key not in ENDPOINT_NAMES:
            raise ValueError(f"--google-endpoints: unknown endpoint {key!r} (names: {_names()})")
        found[key.replace("-", "_")] = _base_url(key, url)
    return GoogleEndpoints(**found)
