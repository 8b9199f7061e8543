"""Which CA issued a client certificate: signature, names, validity, CA flag, key usage."""

from __future__ import annotations

import datetime

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from adapter.auth.certs import (
    der_to_pem,
    issuing_authority,
    leaf_from_pem,
    load_certificates,
    usable_as_client,
)
from adapter.domain.errors import ConfigError
from tests.support.certs import client_cert

NOW = datetime.datetime.now(datetime.UTC)


def _leaf(
    ca: trustme.CA,
    cn: str,
    *,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> x509.Certificate:
    issued = client_cert(ca, cn, not_before=not_before, not_after=not_after)
    pem = issued.cert_chain_pems[0].bytes().decode()
    cert = leaf_from_pem(pem)
    assert cert is not None
    return cert


def _ca_cert(ca: trustme.CA) -> x509.Certificate:
    return load_certificates(ca.cert_pem.bytes(), what="test")[0]


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _self_signed_ca(
    cn: str, *, ca: bool = True
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    issuer: x509.Certificate,
    issuer_key: ec.EllipticCurvePrivateKey,
    cn: str,
    *,
    usages: list[x509.ObjectIdentifier] | None = None,
) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(hours=1))
        .not_valid_after(NOW + datetime.timedelta(days=1))
    )
    if usages is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def test_a_leaf_is_attributed_to_the_ca_that_signed_it_and_no_other() -> None:
    proxy_ca, client_ca = trustme.CA(), trustme.CA()
    leaf = _leaf(proxy_ca, "front-proxy-client")
    assert issuing_authority(leaf, [_ca_cert(proxy_ca)]) == _ca_cert(proxy_ca)
    assert issuing_authority(leaf, [_ca_cert(client_ca)]) is None
    assert issuing_authority(leaf, [_ca_cert(client_ca), _ca_cert(proxy_ca)]) == _ca_cert(proxy_ca)
    assert issuing_authority(leaf, []) is None


def test_a_ca_with_the_same_name_but_another_key_does_not_vouch_for_the_leaf() -> None:
    real, real_key = _self_signed_ca("front-proxy-ca")
    impostor, impostor_key = _self_signed_ca("front-proxy-ca")
    forged = _issue(impostor, impostor_key, "front-proxy-client")
    assert forged.issuer == real.subject
    assert issuing_authority(forged, [real]) is None
    assert issuing_authority(forged, [impostor]) == impostor
    assert issuing_authority(_issue(real, real_key, "x"), [real]) == real


def test_an_issuer_without_the_ca_flag_is_not_an_authority() -> None:
    not_ca, key = _self_signed_ca("leafy", ca=False)
    assert issuing_authority(_issue(not_ca, key, "user"), [not_ca]) is None


def test_expired_and_not_yet_valid_leaves_are_refused() -> None:
    ca = trustme.CA()
    expired = _leaf(
        ca,
        "old",
        not_before=NOW - datetime.timedelta(days=3),
        not_after=NOW - datetime.timedelta(days=1),
    )
    future = _leaf(
        ca,
        "new",
        not_before=NOW + datetime.timedelta(days=1),
        not_after=NOW + datetime.timedelta(days=3),
    )
    assert issuing_authority(expired, [_ca_cert(ca)]) is None
    assert issuing_authority(future, [_ca_cert(ca)]) is None
    # The same check passes at a time inside the validity window.
    assert (
        issuing_authority(expired, [_ca_cert(ca)], now=NOW - datetime.timedelta(days=2)) is not None
    )


def test_extended_key_usage_must_allow_client_authentication() -> None:
    ca, key = _self_signed_ca("ca")
    server_only = _issue(ca, key, "srv", usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    client = _issue(ca, key, "cli", usages=[ExtendedKeyUsageOID.CLIENT_AUTH])
    any_usage = _issue(ca, key, "any", usages=[ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE])
    no_extension = _issue(ca, key, "none")
    assert not usable_as_client(server_only)
    assert issuing_authority(server_only, [ca]) is None
    for cert in (client, any_usage, no_extension):
        assert usable_as_client(cert)
        assert issuing_authority(cert, [ca]) == ca


def test_bundles_parse_strictly() -> None:
    a, b = trustme.CA(), trustme.CA()
    bundle = a.cert_pem.bytes() + b.cert_pem.bytes()
    assert len(load_certificates(bundle, what="x")) == 2
    assert load_certificates(b"", what="x") == ()
    assert load_certificates("  \n", what="x") == ()
    with pytest.raises(ConfigError, match="client-ca-file"):
        load_certificates(b"-----BEGIN CERTIFICATE-----\ngarbage\n", what="client-ca-file")
    with pytest.raises(ConfigError):
        load_certificates(b"not pem at all", what="x")


def test_leaf_from_pem_and_der_round_trip() -> None:
    ca = trustme.CA()
    cert = _leaf(ca, "u")
    from cryptography.hazmat.primitives.serialization import Encoding

    pem = der_to_pem(cert.public_bytes(Encoding.DER))
    assert leaf_from_pem(pem) == cert
    assert leaf_from_pem("garbage") is None
    assert leaf_from_pem("caf\u00e9") is None
