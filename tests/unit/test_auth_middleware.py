"""The auth middleware end to end at the ASGI level: statuses, header stripping, the user."""

from __future__ import annotations

import json
from collections.abc import MutableMapping
from typing import Any

import pytest
import trustme

from adapter.api.auth import AuthMiddleware
from adapter.auth.attributes import Attributes
from adapter.auth.authn import Authenticator
from adapter.auth.authz import Authorizer, Decision
from adapter.auth.config import AuthConfig, AuthConfigHolder
from adapter.auth.user import UserInfo
from adapter.domain.errors import AdapterError
from tests.support.certs import client_cert

PODS_PATH = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m"


class Reviews:
    def __init__(self) -> None:
        self.fail = False
        self.calls = 0

    async def review_access(self, user: UserInfo, attributes: Attributes) -> Decision:
        self.calls += 1
        if self.fail:
            raise AdapterError("SubjectAccessReview: ConnectionRefusedError")
        return Decision(allowed=user.name == "alice", reason="")


class Tokens:
    async def review_token(self, token: str) -> UserInfo | None:
        return {"alice-token": UserInfo(name="alice"), "bob-token": UserInfo(name="bob")}.get(token)


class Recorder:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


class Setup:
    def __init__(self) -> None:
        self.proxy_ca = trustme.CA()
        config = AuthConfig.from_configmap(
            {
                "requestheader-client-ca-file": self.proxy_ca.cert_pem.bytes().decode(),
                "requestheader-username-headers": '["X-Remote-User"]',
                "requestheader-group-headers": '["X-Remote-Group"]',
                "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
                "requestheader-allowed-names": '["front-proxy-client"]',
            }
        )
        self.reviews = Reviews()
        self.app = Recorder()
        self.decisions: list[tuple[str, str]] = []
        self.middleware = AuthMiddleware(
            self.app,
            authenticator=Authenticator(AuthConfigHolder(config), tokens=Tokens()),
            authorizer=Authorizer(self.reviews, allow_ttl=0, deny_ttl=0),
            on_decision=lambda result, method: self.decisions.append((result, method)),
        )

    def proxy_chain(self) -> list[str]:
        leaf = client_cert(self.proxy_ca, "front-proxy-client")
        return [leaf.cert_chain_pems[0].bytes().decode()]

    async def request(
        self,
        path: str,
        headers: dict[str, str] | None = None,
        chain: list[str] | None = None,
    ) -> tuple[int, dict[str, Any] | None]:
        scope: dict[str, Any] = {
            "type": "http",
            "method": "GET",
            "path": path,
            "query_string": b"",
            "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
            "state": {},
            "extensions": {"tls": {"client_cert_chain": chain}},
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            sent.append(dict(message))

        await self.middleware(scope, receive, send)
        status = sent[0]["status"]
        body = sent[1]["body"]
        return status, (json.loads(body) if body != b"ok" else None)


@pytest.fixture
def setup() -> Setup:
    return Setup()


FORGED = {"X-Remote-User": "system:admin", "X-Remote-Group": "system:masters"}


async def test_health_is_anonymous_and_stripped(setup: Setup) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        status, _ = await setup.request(path, FORGED)
        assert status == 200
    assert setup.reviews.calls == 0
    assert all(scope["headers"] == [] for scope in setup.app.scopes)


async def test_anonymous_requests_get_a_401_status(setup: Setup) -> None:
    status, body = await setup.request("/apis", FORGED)
    assert status == 401
    assert body is not None
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401
    assert setup.app.scopes == []


async def test_the_aggregator_identity_reaches_the_app_without_its_headers(setup: Setup) -> None:
    status, _ = await setup.request(
        PODS_PATH, {**FORGED, "Accept": "application/json"}, setup.proxy_chain()
    )
    assert status == 200  # system:masters: no review needed
    assert setup.reviews.calls == 0
    scope = setup.app.scopes[0]
    assert scope["state"]["user"].name == "system:admin"
    assert scope["headers"] == [(b"accept", b"application/json")]


async def test_denied_users_get_a_403_naming_them_and_the_resource(setup: Setup) -> None:
    status, body = await setup.request(PODS_PATH, {"Authorization": "Bearer bob-token"})
    assert status == 403
    assert body is not None and body["reason"] == "Forbidden"
    assert body["message"] == (
        'User "bob" cannot get resource "pods/m" in API group "custom.metrics.k8s.io" '
        'in the namespace "ns"'
    )
    status, _ = await setup.request(PODS_PATH, {"Authorization": "Bearer alice-token"})
    assert status == 200
    assert setup.app.scopes[0]["headers"] == []


async def test_authorization_fails_closed(setup: Setup) -> None:
    setup.reviews.fail = True
    status, body = await setup.request(PODS_PATH, {"Authorization": "Bearer alice-token"})
    assert status == 500
    assert body is not None and body["reason"] == "InternalError"
    assert "authorization failed" in body["message"]
    assert setup.app.scopes == []


async def test_lifespan_passes_through(setup: Setup) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    setup.middleware.app = app
    await setup.middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


async def test_every_decision_is_reported_for_the_metrics(setup: Setup) -> None:
    await setup.request("/healthz")
    await setup.request("/apis", FORGED)
    await setup.request(PODS_PATH, {"Authorization": "Bearer bob-token"})
    await setup.request(PODS_PATH, {"Authorization": "Bearer alice-token"})
    setup.reviews.fail = True
    await setup.request("/apis", {"Authorization": "Bearer alice-token"})
    assert setup.decisions == [
        ("unauthenticated", "none"),
        ("denied", "token"),
        ("allowed", "token"),
        ("error", "token"),
    ]
