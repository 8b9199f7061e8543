"""A stand-in for Google's side of GMP, on loopback: an OAuth2 token endpoint and a GMP-like
HTTPS query proxy in front of a real Prometheus.

- :class:`TokenServer` (plain HTTP on 127.0.0.1, acceptable for a ``token_uri``) verifies the
  JWT-bearer grant that google-auth sends for a service account (RS256 signature against the
  generated key, issuer, audience, scope, expiry) and mints opaque tokens that live
  ``expires_in`` seconds. Tokens can be revoked; the endpoint can answer slowly (``delay``) or
  go down (:meth:`TokenServer.stop`: connections are refused).
- :func:`write_service_account` writes a service-account key file (a fresh RSA key) whose
  ``token_uri`` points at the token server.
- :class:`GmpProxy` serves HTTPS with a certificate from a ``trustme`` CA, accepts only live
  tokens of the token server (else 401, as GMP does), forwards
  ``/v1/projects/<P>/location/global/prometheus/api/v1/*`` to a Prometheus, and refuses what
  GMP refuses: ``match[]`` in a POST body and metric names selected by regex.

Servers run in daemon threads, bind 127.0.0.1, and stop when their context manager exits.
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import ssl
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import httpx
import trustme
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from tests.support.servers import LoopbackServer, send_json, serving

__all__ = [
    "GmpProxy",
    "ProxyRecord",
    "ServiceAccount",
    "TokenServer",
    "write_service_account",
]

JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
MONITORING_READ = "https://www.googleapis.com/auth/monitoring.read"
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"
_MAX_BODY = 1 << 20
_NAME_REGEX = re.compile(r"__name__\s*(=~|!~)")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class ServiceAccount:
    """What the key file holds; tests use the secret parts only to assert they never leak."""

    path: Path
    email: str
    private_key_id: str
    private_key_pem: str
    public_key: rsa.RSAPublicKey


def write_service_account(directory: Path, *, token_uri: str, project: str) -> ServiceAccount:
    """Write ``<directory>/sa.json``: a service-account key with a fresh 2048-bit RSA key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    email = f"metrics-adapter@{project}.iam.gserviceaccount.com"
    key_id = secrets.token_hex(20)
    path = directory / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": project,
                "private_key_id": key_id,
                "private_key": pem,
                "client_email": email,
                "client_id": "100000000000000000001",
                "token_uri": token_uri,
            }
        )
    )
    return ServiceAccount(
        path=path,
        email=email,
        private_key_id=key_id,
        private_key_pem=pem,
        public_key=key.public_key(),
    )


class TokenServer:
    """The OAuth2 token endpoint. ``url`` is the ``token_uri``; thread-safe.

    ``expires_in`` (seconds) is the lifetime of tokens minted from now on; ``delay`` (seconds)
    holds every answer back. ``requests`` counts token requests received (good or bad);
    ``minted`` lists tokens in the order minted.
    """

    def __init__(self, *, expires_in: int = 3600) -> None:
        self.expires_in = expires_in
        self.delay = 0.0
        self.requests = 0
        self.minted: list[str] = []
        self.rejected: list[str] = []  # reasons for refused grants
        self._live: dict[str, float] = {}  # token -> monotonic expiry
        self._lock = threading.Lock()
        self._accounts: dict[str, rsa.RSAPublicKey] = {}
        self._server: LoopbackServer | None = None
        self._stack = contextlib.ExitStack()
        self.url = ""

    def trust(self, account: ServiceAccount) -> None:
        """Accept assertions signed by ``account``'s key."""
        self._accounts[account.email] = account.public_key

    def start(self) -> TokenServer:
        server = LoopbackServer(("127.0.0.1", 0), self._handler())
        self._server = server
        self._stack.enter_context(serving(server))
        self.url = f"http://127.0.0.1:{server.server_address[1]}/token"
        return self

    def stop(self) -> None:
        """Go down: the port stops listening (connections are refused)."""
        self._stack.close()
        self._server = None

    def __enter__(self) -> TokenServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def revoke(self, token: str) -> None:
        with self._lock:
            self._live.pop(token, None)

    def is_live(self, token: str) -> bool:
        with self._lock:
            expiry = self._live.get(token)
            return expiry is not None and time.monotonic() < expiry

    def _grant(self, form: dict[str, str]) -> tuple[int, dict[str, Any]]:
        if form.get("grant_type") != JWT_BEARER:
            return 400, {"error": "unsupported_grant_type"}
        try:
            head_b64, claims_b64, sig_b64 = form.get("assertion", "").split(".")
            header = json.loads(_b64url_decode(head_b64))
            claims = json.loads(_b64url_decode(claims_b64))
            signature = _b64url_decode(sig_b64)
        except ValueError:
            return 400, {"error": "invalid_grant", "error_description": "malformed assertion"}
        key = self._accounts.get(str(claims.get("iss")))
        if header.get("alg") != "RS256" or key is None:
            return 400, {"error": "invalid_grant", "error_description": "unknown issuer"}
        try:
            key.verify(
                signature,
                f"{head_b64}.{claims_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature:
            return 400, {"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        # google-auth addresses service-account grants to Google's token endpoint whatever
        # the key file's token_uri says.
        if claims.get("aud") not in (self.url, GOOGLE_TOKEN_AUDIENCE):
            return 400, {"error": "invalid_grant", "error_description": "wrong audience"}
        if MONITORING_READ not in str(claims.get("scope", "")).split():
            return 400, {"error": "invalid_scope", "error_description": "monitoring.read missing"}
        if not float(claims.get("exp", 0)) > time.time():
            return 400, {"error": "invalid_grant", "error_description": "assertion expired"}
        token = self.mint()
        return 200, {"access_token": token, "expires_in": self.expires_in, "token_type": "Bearer"}

    def mint(self) -> str:
        """A new live token, lasting ``expires_in`` seconds (a metadata server hands these out)."""
        token = "tok-" + secrets.token_urlsafe(24)
        with self._lock:
            self._live[token] = time.monotonic() + self.expires_in
            self.minted.append(token)
        return token

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: test output stays readable

            def do_POST(self) -> None:
                with outer._lock:
                    outer.requests += 1
                length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
                form = dict(parse_qsl(self.rfile.read(length).decode()))
                time.sleep(min(outer.delay, 10.0))
                status, body = outer._grant(form)
                if status != 200:
                    outer.rejected.append(str(body.get("error_description", body["error"])))
                send_json(self, status, body)

        return Handler


@dataclass(frozen=True)
class ProxyRecord:
    """One request the proxy received: what GMP would have seen."""

    method: str
    path: str
    token: str | None
    status: int
    params: list[tuple[str, str | int | float | bool | None]] = field(default_factory=list)


class GmpProxy:
    """HTTPS stand-in for ``monitoring.googleapis.com`` for one project.

    ``base_url`` is the host part (give it as ``--google-endpoints gmp=<base_url>``); ``ca_file``
    is the PEM of the CA that signed its certificate. ``records`` lists every request received.
    """

    def __init__(
        self, *, project: str, tokens: TokenServer, prometheus_url: str, directory: Path
    ) -> None:
        self.project = project
        self.records: list[ProxyRecord] = []
        self._tokens = tokens
        self._upstream = prometheus_url.rstrip("/")
        self._prefix = f"/v1/projects/{project}/location/global/prometheus"
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self.ca_file = directory / "gmp-ca.pem"
        ca.cert_pem.write_to_path(str(self.ca_file))
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert.configure_cert(self._context)
        self._stack = contextlib.ExitStack()
        self.base_url = ""

    def __enter__(self) -> GmpProxy:
        server = LoopbackServer(("127.0.0.1", 0), self._handler())
        server.socket = self._context.wrap_socket(server.socket, server_side=True)
        self._stack.enter_context(serving(server))
        self.base_url = f"https://127.0.0.1:{server.server_address[1]}"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def tokens_seen(self) -> list[str | None]:
        return [r.token for r in self.records]

    def _answer(
        self, method: str, target: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes, ProxyRecord]:
        parts = urlsplit(target)
        params: list[tuple[str, str | int | float | bool | None]] = list(
            parse_qsl(parts.query, keep_blank_values=True)
        )
        auth = str(headers.get("Authorization") or "")
        token = auth[len("Bearer ") :] if auth.startswith("Bearer ") else None

        def fail(status: int, kind: str, text: str) -> tuple[int, dict[str, str], bytes]:
            data = json.dumps({"status": "error", "errorType": kind, "error": text}).encode()
            return status, {"Content-Type": "application/json"}, data

        form = parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
        if token is None or not self._tokens.is_live(token):
            answer = fail(401, "unauthorized", "Request had invalid authentication credentials.")
        elif not parts.path.startswith(self._prefix + "/api/v1/"):
            answer = fail(404, "not_found", "no such endpoint")
        elif method == "POST" and any(k == "match[]" for k, _ in form):
            answer = fail(400, "bad_data", "match[] is not supported in a POST body")
        elif any(_NAME_REGEX.search(str(v)) for _, v in [*params, *form]):
            answer = fail(400, "bad_data", "metric name must match exactly")
        else:
            upstream = self._upstream + parts.path[len(self._prefix) :]
            with httpx.Client(trust_env=False, timeout=10) as client:
                response = client.request(
                    method,
                    upstream,
                    params=params,
                    content=body or None,
                    headers={"Content-Type": str(headers.get("Content-Type") or "")}
                    if body
                    else {},
                )
            answer = (
                response.status_code,
                {"Content-Type": response.headers.get("content-type", "application/json")},
                response.content,
            )
        record = ProxyRecord(method, parts.path, token, answer[0], params)
        return (*answer, record)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                length = min(int(self.headers.get("Content-Length") or 0), _MAX_BODY)
                body = self.rfile.read(length) if length else b""
                status, headers, data, record = outer._answer(method, self.path, self.headers, body)
                outer.records.append(record)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

        return Handler
