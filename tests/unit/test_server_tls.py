"""A real uvicorn HTTPS server on 127.0.0.1: client certificates reach the app, the serving
certificate and the client CAs rotate on a live server, SIGTERM-style shutdown drains requests."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import ssl
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme
from cryptography import x509

from adapter.serving.server import ServingTLS, bound_port, build_server, serve
from tests.support.certs import client_cert

_START_TIMEOUT_S = 10.0


async def app(scope: Any, receive: Any, send: Any) -> None:
    """Echo the ASGI TLS extension; ``/slow`` takes half a second."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["path"] == "/slow":
        await asyncio.sleep(0.5)
    tls = (scope.get("extensions") or {}).get("tls")
    body = json.dumps(
        {"has_tls": tls is not None, "chain": None if tls is None else tls["client_cert_chain"]}
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Pki:
    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.server_ca = trustme.CA()
        self.client_ca = trustme.CA()
        self.cert_file = tmp / "tls.crt"
        self.key_file = tmp / "tls.key"
        self.write_serving_cert(self.server_ca.issue_cert("127.0.0.1", "localhost"))

    def write_serving_cert(self, leaf: trustme.LeafCert) -> bytes:
        # Written to temporary names and renamed: how a kubelet projects a rotated secret.
        pem = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
        (self.tmp / "new.crt").write_bytes(pem)
        (self.tmp / "new.key").write_bytes(leaf.private_key_pem.bytes())
        (self.tmp / "new.key").replace(self.key_file)
        (self.tmp / "new.crt").replace(self.cert_file)
        return leaf.cert_chain_pems[0].bytes()

    def client_context(self, client_leaf: trustme.LeafCert | None = None) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.server_ca.configure_trust(context)
        if client_leaf is not None:
            client_leaf.configure_cert(context)
        return context


@contextlib.asynccontextmanager
async def running(tls: ServingTLS, *, reload_interval: float = 0.1) -> AsyncIterator[Any]:
    server = build_server(app, host="127.0.0.1", port=0, tls=tls, shutdown_timeout=5)
    task = asyncio.create_task(serve(server, tls=tls, reload_interval=reload_interval))
    async with asyncio.timeout(_START_TIMEOUT_S):
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.02)
    try:
        yield server
    finally:
        server.should_exit = True
        async with asyncio.timeout(_START_TIMEOUT_S):
            await task


async def _get(port: int, context: ssl.SSLContext, path: str = "/") -> dict[str, Any]:
    async with httpx.AsyncClient(verify=context, timeout=5) as client:
        response = await client.get(f"https://127.0.0.1:{port}{path}")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


async def _served_cert(port: int, context: ssl.SSLContext) -> bytes:
    """The leaf certificate (PEM) presented on a fresh handshake."""
    _reader, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=context, server_hostname="127.0.0.1"
    )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            await writer.wait_closed()
    return ssl.DER_cert_to_PEM_cert(der).encode()


def _same_cert(a: bytes | str, b: bytes | str) -> bool:
    def load(pem: bytes | str) -> x509.Certificate:
        return x509.load_pem_x509_certificate(pem.encode() if isinstance(pem, str) else pem)

    return load(a) == load(b)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


async def test_the_app_sees_the_client_certificate_or_none(pki: Pki) -> None:
    tls = ServingTLS(pki.cert_file, pki.key_file, client_ca_pem=pki.client_ca.cert_pem.bytes())
    client_leaf = client_cert(pki.client_ca, "alice")
    async with running(tls) as server:
        port = bound_port(server)
        with_cert = await _get(port, pki.client_context(client_leaf))
        assert with_cert["has_tls"] is True
        assert len(with_cert["chain"]) == 1
        assert _same_cert(with_cert["chain"][0], client_leaf.cert_chain_pems[0].bytes())

        without = await _get(port, pki.client_context())
        assert without == {"has_tls": True, "chain": None}


async def test_a_certificate_from_an_untrusted_ca_is_refused(pki: Pki) -> None:
    tls = ServingTLS(pki.cert_file, pki.key_file, client_ca_pem=pki.client_ca.cert_pem.bytes())
    stranger = client_cert(trustme.CA(), "mallory")
    async with running(tls) as server:
        with pytest.raises((httpx.HTTPError, ssl.SSLError, ConnectionError)):
            await _get(bound_port(server), pki.client_context(stranger))


async def test_a_rotated_client_ca_is_trusted_on_the_live_server(pki: Pki) -> None:
    tls = ServingTLS(pki.cert_file, pki.key_file, client_ca_pem=pki.client_ca.cert_pem.bytes())
    rotated = trustme.CA()
    leaf = client_cert(rotated, "bob")
    async with running(tls) as server:
        port = bound_port(server)
        with pytest.raises((httpx.HTTPError, ssl.SSLError, ConnectionError)):
            await _get(port, pki.client_context(leaf))
        tls.add_client_cas(rotated.cert_pem.bytes())
        answer = await _get(port, pki.client_context(leaf))
        assert _same_cert(answer["chain"][0], leaf.cert_chain_pems[0].bytes())


async def test_a_replaced_serving_certificate_is_presented_to_new_handshakes(pki: Pki) -> None:
    tls = ServingTLS(pki.cert_file, pki.key_file)
    first = pki.cert_file.read_bytes()
    async with running(tls, reload_interval=0.1) as server:
        port = bound_port(server)
        context = pki.client_context()
        assert _same_cert(await _served_cert(port, context), first)
        second = pki.write_serving_cert(pki.server_ca.issue_cert("127.0.0.1"))
        async with asyncio.timeout(5):
            while not _same_cert(await _served_cert(port, context), second):
                await asyncio.sleep(0.1)
        assert tls.reloads == 1
        # Still answering requests with the new certificate.
        assert (await _get(port, context))["has_tls"] is True


async def test_an_expired_serving_certificate_replaced_on_disk_is_served_without_restart(
    pki: Pki,
) -> None:
    """The certificate expired before it was rotated (cert-manager down, a missed renewal):
    clients that verify refuse it; once a valid one is written, new handshakes succeed."""
    now = datetime.datetime.now(datetime.UTC)
    pki.write_serving_cert(
        pki.server_ca.issue_cert(
            "127.0.0.1",
            not_before=now - datetime.timedelta(days=2),
            not_after=now - datetime.timedelta(hours=1),
        )
    )
    tls = ServingTLS(pki.cert_file, pki.key_file)  # an expired pair still loads: no crash
    async with running(tls, reload_interval=0.1) as server:
        port = bound_port(server)
        context = pki.client_context()
        with pytest.raises(httpx.ConnectError, match="expired"):
            await _get(port, context)
        fresh = pki.write_serving_cert(pki.server_ca.issue_cert("127.0.0.1"))
        async with asyncio.timeout(5):
            while tls.reloads < 1:
                await asyncio.sleep(0.05)
        assert _same_cert(await _served_cert(port, context), fresh)
        assert (await _get(port, context))["has_tls"] is True


async def test_a_broken_replacement_keeps_the_old_certificate(pki: Pki) -> None:
    tls = ServingTLS(pki.cert_file, pki.key_file)
    pki.cert_file.write_bytes(b"half written")
    assert tls.reload_if_changed() is False
    assert tls.reloads == 0
    async with running(tls) as server:
        assert (await _get(bound_port(server), pki.client_context()))["has_tls"] is True


async def test_shutdown_lets_in_flight_requests_finish(pki: Pki) -> None:
    tls = ServingTLS(pki.cert_file, pki.key_file)
    async with running(tls) as server:
        port = bound_port(server)
        request = asyncio.create_task(_get(port, pki.client_context(), "/slow"))
        await asyncio.sleep(0.2)
        server.should_exit = True  # what uvicorn's SIGTERM handler does
        assert (await request)["has_tls"] is True


def test_generated_certificates_live_in_a_private_directory() -> None:
    tls = ServingTLS.generate(["localhost", "127.0.0.1"])
    directory = tls.key_file.parent
    assert tls.key_file.stat().st_mode & 0o077 == 0
    assert tls.context.verify_mode == ssl.CERT_NONE
    tls.close()
    assert not directory.exists()


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    from adapter.domain.errors import ConfigError

    with pytest.raises(ConfigError, match="serving certificate"):
        ServingTLS(tmp_path / "nope.crt", tmp_path / "nope.key")


def test_a_self_signed_certificate_without_hosts_names_localhost() -> None:
    """A SAN extension may not be empty (cryptography 51 refuses one): no hosts is localhost."""
    from cryptography import x509

    from adapter.serving.tls import self_signed

    cert = x509.load_pem_x509_certificate(self_signed([])[0])
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
