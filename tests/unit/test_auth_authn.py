"""Delegated authentication: who may assert X-Remote-*, client certificates, bearer tokens."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import trustme

from adapter.auth.authn import (
    Authenticator,
    bearer_token,
    strip_identity_headers,
    user_from_headers,
)
from adapter.auth.config import AuthConfig, AuthConfigHolder
from adapter.auth.user import AUTHENTICATED_GROUP, UserInfo
from adapter.domain.errors import AdapterError, UnauthorizedError
from tests.support.certs import client_cert

SECRET = "s3cr3t-token-value"


def _h(*pairs: tuple[str, str]) -> list[tuple[bytes, bytes]]:
    return [(k.lower().encode(), v.encode()) for k, v in pairs]


class PKI:
    def __init__(self) -> None:
        self.client_ca = trustme.CA()
        self.proxy_ca = trustme.CA()
        self.other_ca = trustme.CA()

    def config(self, *, allowed: tuple[str, ...] = ("front-proxy-client",)) -> AuthConfig:
        return AuthConfig.from_configmap(
            {
                "client-ca-file": self.client_ca.cert_pem.bytes().decode(),
                "requestheader-client-ca-file": self.proxy_ca.cert_pem.bytes().decode(),
                "requestheader-username-headers": json.dumps(["X-Remote-User", "X-Alt-User"]),
                "requestheader-uid-headers": json.dumps(["X-Remote-Uid"]),
                "requestheader-group-headers": json.dumps(["X-Remote-Group"]),
                "requestheader-extra-headers-prefix": json.dumps(["X-Remote-Extra-"]),
                "requestheader-allowed-names": json.dumps(list(allowed)),
            }
        )

    @staticmethod
    def chain(ca: trustme.CA, cn: str, org: str | None = None) -> list[str]:
        leaf = client_cert(ca, cn, organization_name=org)
        return [leaf.cert_chain_pems[0].bytes().decode()]


class FakeTokens:
    def __init__(self, users: dict[str, UserInfo], *, fail: bool = False) -> None:
        self.users = users
        self.fail = fail
        self.calls = 0

    async def review_token(self, token: str) -> UserInfo | None:
        self.calls += 1
        await asyncio.sleep(0.01)
        if self.fail:
            raise AdapterError("TokenReview: ConnectionRefusedError: connection refused")
        return self.users.get(token)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


FORGED = _h(
    ("X-Remote-User", "system:admin"),
    ("X-Remote-Group", "system:masters"),
    ("X-Remote-Extra-Scopes", "all"),
)


@pytest.fixture
def pki() -> PKI:
    return PKI()


def test_user_from_headers_follows_the_requestheader_rules(pki: PKI) -> None:
    headers = _h(
        ("X-Alt-User", "second-choice"),
        ("X-Remote-User", "alice"),
        ("X-Remote-Uid", "u-1"),
        ("X-Remote-Group", "devs"),
        ("X-Remote-Group", "ops, sre"),
        ("X-Remote-Extra-Acme.com%2Fproject", "p1"),
        ("X-Remote-Extra-acme.com%2Fproject", "p2"),
        ("X-Remote-Extra-Scopes", "a"),
        ("X-Remote-Extra-Bad%zzKey", "kept"),
        ("X-Other", "x"),
    )
    user = user_from_headers(headers, pki.config())
    assert user == UserInfo(
        name="alice",
        uid="u-1",
        groups=("devs", "ops, sre"),
        extra=(("acme.com/project", ("p1", "p2")), ("bad%zzkey", ("kept",)), ("scopes", ("a",))),
        method="requestheader",
    )
    # The first configured header that is present wins.
    only_alt = user_from_headers(_h(("X-Alt-User", "bob")), pki.config())
    assert only_alt is not None and only_alt.name == "bob"
    assert user_from_headers(_h(("X-Remote-Group", "g")), pki.config()) is None
    assert user_from_headers(_h(("X-Remote-User", "  ")), pki.config()) is None


@pytest.mark.parametrize(
    ("value", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("  Bearer abc  ", "abc"),
        ("Bearer abc extra", "abc"),
        ("Bearer", ""),
        ("Bearer  abc", ""),
        ("Basic dXNlcjpwYXNz", ""),
        ("", ""),
    ],
)
def test_bearer_token_parsing(value: str, token: str) -> None:
    assert bearer_token(_h(("Authorization", value))) == token


def test_strip_removes_every_identity_header_and_authorization(pki: PKI) -> None:
    headers = _h(
        ("X-Remote-User", "a"),
        ("x-alt-user", "b"),
        ("X-Remote-Uid", "c"),
        ("X-Remote-Group", "d"),
        ("X-Remote-Extra-K", "e"),
        ("Authorization", "Bearer t"),
        ("Accept", "application/json"),
        ("X-Remotely-Useful", "kept"),
    )
    assert strip_identity_headers(headers, pki.config()) == _h(
        ("Accept", "application/json"), ("X-Remotely-Useful", "kept")
    )
    # Conventional names are stripped even when the cluster configures none.
    assert strip_identity_headers(_h(("X-Remote-User", "a")), AuthConfig()) == []


async def test_the_front_proxy_certificate_makes_the_headers_believed(pki: PKI) -> None:
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=None)
    user = await auth.authenticate(FORGED, pki.chain(pki.proxy_ca, "front-proxy-client"))
    assert user.name == "system:admin"
    assert user.groups == ("system:masters", AUTHENTICATED_GROUP)
    assert user.extra == (("scopes", ("all",)),)
    assert user.method == "requestheader"


async def test_forged_headers_without_a_certificate_are_ignored(pki: PKI) -> None:
    tokens = FakeTokens({"good": UserInfo(name="alice", groups=("devs",))})
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=tokens)
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(FORGED, None)
    user = await auth.authenticate([*FORGED, *_h(("Authorization", "Bearer good"))], None)
    assert user.name == "alice"
    assert "system:masters" not in user.groups


async def test_forged_headers_with_a_client_ca_certificate_give_the_certificate_user(
    pki: PKI,
) -> None:
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=None)
    user = await auth.authenticate(FORGED, pki.chain(pki.client_ca, "carol", "team-a"))
    assert user == UserInfo(name="carol", groups=("team-a", AUTHENTICATED_GROUP), method="x509")


async def test_a_requestheader_cert_with_a_cn_not_allowed_is_not_believed(pki: PKI) -> None:
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=None)
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(FORGED, pki.chain(pki.proxy_ca, "someone-else"))
    # With an empty allowed-names list any certificate of that CA is a proxy.
    open_auth = Authenticator(AuthConfigHolder(pki.config(allowed=())), tokens=None)
    user = await open_auth.authenticate(FORGED, pki.chain(pki.proxy_ca, "someone-else"))
    assert user.name == "system:admin"


async def test_a_certificate_from_an_unknown_ca_authenticates_nobody(pki: PKI) -> None:
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=None)
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(FORGED, pki.chain(pki.other_ca, "front-proxy-client"))
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(FORGED, ["not a certificate"])


async def test_the_front_proxy_without_a_username_header_is_refused(pki: PKI) -> None:
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=None)
    with pytest.raises(UnauthorizedError, match="no username header"):
        await auth.authenticate(
            _h(("X-Remote-Group", "g")), pki.chain(pki.proxy_ca, "front-proxy-client")
        )


async def test_ca_rotation_applies_to_the_next_request(pki: PKI) -> None:
    holder = AuthConfigHolder(pki.config())
    auth = Authenticator(holder, tokens=None)
    new_proxy = trustme.CA()
    chain = pki.chain(new_proxy, "front-proxy-client")
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(FORGED, chain)
    pki.proxy_ca = new_proxy
    holder.update(pki.config())
    assert (await auth.authenticate(FORGED, chain)).name == "system:admin"


async def test_token_reviews_are_cached_and_shared(pki: PKI) -> None:
    clock = Clock()
    tokens = FakeTokens({SECRET: UserInfo(name="dave", groups=(AUTHENTICATED_GROUP,))})
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=tokens, token_ttl=10, timer=clock)
    headers = _h(("Authorization", f"Bearer {SECRET}"))
    users = await asyncio.gather(*(auth.authenticate(headers, None) for _ in range(5)))
    assert {u.name for u in users} == {"dave"}
    assert users[0].groups == (AUTHENTICATED_GROUP,)
    assert tokens.calls == 1
    clock.now += 9
    await auth.authenticate(headers, None)
    assert tokens.calls == 1
    clock.now += 2
    await auth.authenticate(headers, None)
    assert tokens.calls == 2


async def test_rejected_tokens_are_cached_too_but_errors_are_not(
    pki: PKI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    clock = Clock()
    tokens = FakeTokens({})
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=tokens, timer=clock)
    headers = _h(("Authorization", f"Bearer {SECRET}"))
    for _ in range(2):
        with pytest.raises(UnauthorizedError, match="not accepted"):
            await auth.authenticate(headers, None)
    assert tokens.calls == 1

    tokens.fail = True
    clock.now += 11
    for _ in range(2):
        with pytest.raises(UnauthorizedError, match="could not be reviewed") as info:
            await auth.authenticate(headers, None)
        assert SECRET not in info.value.message
    assert tokens.calls == 3
    assert SECRET not in caplog.text
    assert "TokenReview failed" in caplog.text


async def test_without_a_token_reviewer_tokens_are_refused(pki: PKI) -> None:
    auth = Authenticator(AuthConfigHolder(pki.config()), tokens=None)
    with pytest.raises(UnauthorizedError):
        await auth.authenticate(_h(("Authorization", "Bearer x")), None)
