"""API tests: the real app, the real rules and presets, and the PromQL-evaluating fake backend
holding :func:`tests.support.fake_fleet.fleet_series`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from adapter.app.context import AppContext
from sim.fake_backend import FakeBackend
from tests.support.app import AppFactory, client_for, fleet_context
from tests.support.fake_fleet import fleet_backend


@pytest.fixture
def fake() -> FakeBackend:
    return fleet_backend()


@pytest.fixture
def make_ctx(fake: FakeBackend) -> AppFactory:
    def make(**kwargs: Any) -> AppContext:
        return fleet_context(fake, **kwargs)

    return make


@pytest.fixture
async def client(make_ctx: AppFactory) -> AsyncIterator[httpx.AsyncClient]:
    async with await client_for(make_ctx()) as c:
        yield c
