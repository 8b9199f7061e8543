"""The delegated-auth configmap: parsing, the CA bundle, and change notification."""

from __future__ import annotations

import json

import pytest
import trustme

from adapter.auth.config import AuthConfig, AuthConfigHolder
from adapter.domain.errors import ConfigError


def _data(client: trustme.CA, proxy: trustme.CA, **overrides: str) -> dict[str, str]:
    data = {
        "client-ca-file": client.cert_pem.bytes().decode(),
        "requestheader-client-ca-file": proxy.cert_pem.bytes().decode(),
        "requestheader-username-headers": json.dumps(["X-Remote-User"]),
        "requestheader-uid-headers": json.dumps(["X-Remote-Uid"]),
        "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
        "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
        "requestheader-allowed-names": json.dumps(["front-proxy-client"]),
    }
    data.update(overrides)
    return data


def test_configmap_is_read_as_the_apiserver_writes_it() -> None:
    client, proxy = trustme.CA(), trustme.CA()
    config = AuthConfig.from_configmap(_data(client, proxy))
    assert config.username_headers == ("X-Remote-User",)
    assert config.uid_headers == ("X-Remote-Uid",)
    assert config.group_headers == ("X-Remote-Group",)
    assert config.extra_header_prefixes == ("X-Remote-Extra-",)
    assert config.allowed_names == ("front-proxy-client",)
    assert len(config.client_cas) == 1 and len(config.requestheader_cas) == 1
    assert config.client_cas[0] != config.requestheader_cas[0]
    assert config.identity_header_names == {"x-remote-user", "x-remote-uid", "x-remote-group"}
    bundle = config.ca_bundle_pem
    assert client.cert_pem.bytes().strip() in bundle
    assert proxy.cert_pem.bytes().strip() in bundle


def test_a_cluster_without_aggregation_has_no_requestheader_settings() -> None:
    client = trustme.CA()
    config = AuthConfig.from_configmap({"client-ca-file": client.cert_pem.bytes().decode()})
    assert config.requestheader_cas == ()
    assert config.username_headers == ()
    assert config.allowed_names == ()
    assert config.ca_bundle_pem.strip() == client.cert_pem.bytes().strip()
    assert AuthConfig().ca_bundle_pem == b""


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("requestheader-username-headers", "X-Remote-User", "not JSON"),
        ("requestheader-group-headers", '{"a": 1}', "JSON array of strings"),
        ("requestheader-allowed-names", "[1, 2]", "JSON array of strings"),
        ("client-ca-file", "-----BEGIN CERTIFICATE-----\nxx\n", "client-ca-file"),
        ("requestheader-client-ca-file", "nonsense", "requestheader-client-ca-file"),
    ],
)
def test_malformed_values_are_config_errors(key: str, value: str, message: str) -> None:
    client, proxy = trustme.CA(), trustme.CA()
    with pytest.raises(ConfigError, match=message):
        AuthConfig.from_configmap(_data(client, proxy, **{key: value}))


def test_holder_notifies_subscribers_only_on_change() -> None:
    client, proxy, rotated = trustme.CA(), trustme.CA(), trustme.CA()
    holder = AuthConfigHolder(AuthConfig.from_configmap(_data(client, proxy)))
    seen: list[AuthConfig] = []
    holder.subscribe(seen.append)

    def broken(_: AuthConfig) -> None:
        raise RuntimeError("subscriber bug")

    holder.subscribe(broken)
    assert holder.update(AuthConfig.from_configmap(_data(client, proxy))) is False
    assert seen == []
    new = AuthConfig.from_configmap(
        _data(client, proxy, **{"requestheader-client-ca-file": rotated.cert_pem.bytes().decode()})
    )
    assert holder.update(new) is True
    assert seen == [new]
    assert holder.current is new
    assert holder.updates == 1
