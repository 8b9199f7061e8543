"""Delegated authorization: masters bypass, allow/deny caches, errors never cached."""

from __future__ import annotations

import asyncio

import pytest

from adapter.auth.attributes import Attributes, request_attributes
from adapter.auth.authz import Authorizer, Decision
from adapter.auth.user import UserInfo
from adapter.domain.errors import AdapterError

PODS = request_attributes("GET", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/ns/pods/*/m")
EXT = request_attributes("GET", "/apis/external.metrics.k8s.io/v1beta1/namespaces/ns/m")


class FakeReviews:
    def __init__(self, allowed: set[tuple[str, str]]) -> None:
        self.allowed = allowed
        self.calls: list[tuple[str, Attributes]] = []
        self.fail = False

    async def review_access(self, user: UserInfo, attributes: Attributes) -> Decision:
        self.calls.append((user.name, attributes))
        await asyncio.sleep(0.01)
        if self.fail:
            raise AdapterError("SubjectAccessReview: HTTP 503 Service Unavailable")
        if (user.name, attributes.resource) in self.allowed:
            return Decision(allowed=True, reason="RBAC: allowed")
        return Decision(allowed=False, reason="no RBAC policy matched")


def specific(reviews: FakeReviews) -> list[tuple[str, Attributes]]:
    """The reviews of a request's own attributes (not the group-wide check before them)."""
    return [(name, a) for name, a in reviews.calls if a.resource != "*"]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


ALICE = UserInfo(name="alice", groups=("system:authenticated",))
ROOT = UserInfo(name="root", groups=("system:masters", "system:authenticated"))


async def test_masters_need_no_review() -> None:
    reviews = FakeReviews(set())
    decision = await Authorizer(reviews).authorize(ROOT, PODS)
    assert decision.allowed
    assert reviews.calls == []


async def test_allow_and_deny_are_cached_for_their_own_ttls() -> None:
    clock = Clock()
    reviews = FakeReviews({("alice", "pods")})
    authz = Authorizer(reviews, allow_ttl=10, deny_ttl=3, timer=clock)
    assert (await authz.authorize(ALICE, PODS)).allowed
    denied = await authz.authorize(ALICE, EXT)
    assert not denied.allowed and denied.reason == "no RBAC policy matched"
    assert len(specific(reviews)) == 2
    clock.now = 2.5
    await authz.authorize(ALICE, PODS)
    await authz.authorize(ALICE, EXT)
    assert len(specific(reviews)) == 2
    clock.now = 3.5  # the denial expired, the allowance did not
    await authz.authorize(ALICE, PODS)
    await authz.authorize(ALICE, EXT)
    assert [a.resource for _, a in specific(reviews)] == ["pods", "m", "m"]
    clock.now = 10.5
    await authz.authorize(ALICE, PODS)
    assert len(specific(reviews)) == 4


async def test_the_cache_key_is_the_whole_user_and_attributes() -> None:
    reviews = FakeReviews({("alice", "pods")})
    authz = Authorizer(reviews)
    other_group = UserInfo(name="alice", groups=("system:authenticated", "devs"))
    other_ns = request_attributes(
        "GET", "/apis/custom.metrics.k8s.io/v1beta2/namespaces/other/pods/*/m"
    )
    await authz.authorize(ALICE, PODS)
    await authz.authorize(other_group, PODS)
    await authz.authorize(ALICE, other_ns)
    assert len(specific(reviews)) == 3


async def test_concurrent_identical_requests_share_one_review() -> None:
    reviews = FakeReviews({("alice", "pods")})
    authz = Authorizer(reviews)
    decisions = await asyncio.gather(*(authz.authorize(ALICE, PODS) for _ in range(20)))
    assert all(d.allowed for d in decisions)
    assert len(specific(reviews)) == 1 and len(reviews.calls) == 2


async def test_errors_propagate_and_are_not_cached() -> None:
    reviews = FakeReviews({("alice", "pods")})
    reviews.fail = True
    authz = Authorizer(reviews)
    for _ in range(2):
        with pytest.raises(AdapterError, match="SubjectAccessReview"):
            await authz.authorize(ALICE, PODS)
    assert len(reviews.calls) == 2
    reviews.fail = False
    assert (await authz.authorize(ALICE, PODS)).allowed


async def test_zero_ttl_disables_caching_and_size_is_bounded() -> None:
    reviews = FakeReviews({("alice", "pods")})
    uncached = Authorizer(reviews, allow_ttl=0, deny_ttl=0)
    await uncached.authorize(ALICE, PODS)
    await uncached.authorize(ALICE, PODS)
    assert len(specific(reviews)) == 2
    assert len(uncached.cache) == 0

    small = Authorizer(FakeReviews(set()), cache_size=3)
    for i in range(10):
        await small.authorize(UserInfo(name=f"u{i}"), PODS)
    assert len(small.cache) == 3


HPA = UserInfo(
    name="system:serviceaccount:kube-system:horizontal-pod-autoscaler",
    groups=("system:serviceaccounts", "system:authenticated"),
)


async def test_a_user_allowed_the_whole_group_everywhere_needs_one_review() -> None:
    """The HPA controller's ClusterRole: get on * in custom.metrics.k8s.io. One review covers
    every namespace, resource, metric and object it asks for."""
    reviews = FakeReviews({(HPA.name, "*")})
    authz = Authorizer(reviews)
    for ns in ("a", "b", "c"):
        for path in (f"namespaces/{ns}/pods/*/m1", f"namespaces/{ns}/pods/p-0/m2"):
            attrs = request_attributes("GET", f"/apis/custom.metrics.k8s.io/v1beta2/{path}")
            assert (await authz.authorize(HPA, attrs)).allowed
    [(_, broad)] = reviews.calls
    assert (broad.api_group, broad.resource, broad.namespace, broad.name, broad.subresource) == (
        "custom.metrics.k8s.io",
        "*",
        "",
        "",
        "",
    )
    assert broad.verb == "get"


async def test_a_user_allowed_less_is_reviewed_as_asked_and_refused_as_asked() -> None:
    reviews = FakeReviews({("alice", "pods")})  # pods in custom.metrics.k8s.io, nothing else
    authz = Authorizer(reviews)
    assert (await authz.authorize(ALICE, PODS)).allowed
    denied = await authz.authorize(ALICE, EXT)
    assert not denied.allowed
    assert [a.resource for _, a in reviews.calls] == ["*", "pods", "*", "m"]
    # the group-wide denials are cached like any other answer
    await authz.authorize(ALICE, PODS)
    assert len(reviews.calls) == 4


async def test_a_non_resource_request_is_reviewed_as_it_is() -> None:
    reviews = FakeReviews(set())
    attrs = request_attributes("GET", "/apis")
    await Authorizer(reviews).authorize(ALICE, attrs)
    assert [a for _, a in reviews.calls] == [attrs]
