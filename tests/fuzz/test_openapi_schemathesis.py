"""schemathesis against the adapter's own OpenAPI v3 documents, served by the app over ASGI.

Each group version's document (``/openapi/v3/apis/{group}/{version}``) is loaded from the running
app, and schemathesis generates requests from it: path parameters and query parameters of every
declared operation. Its checks: no 5xx, answers conform to the declared schemas (the Status for
errors, the value lists for successes), content types as declared. Our own contract (Status
fields, finite quantities, namespace scoping) is asserted on top with the same checks as
``test_api_fuzz``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, given, settings
from schemathesis.core.result import Ok

from adapter.serving.asgi import create_app
from tests.fuzz.counts import count
from tests.support.answers import REASONS
from tests.support.app import fleet_context
from tests.support.fake_fleet import fleet_backend


def _app() -> FastAPI:
    ctx = fleet_context(fleet_backend())
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(ctx.registry.refresh())
    finally:
        loop.close()
    return create_app(ctx, background=False)


APP = _app()
GROUP_VERSIONS = (
    "custom.metrics.k8s.io/v1beta1",
    "custom.metrics.k8s.io/v1beta2",
    "external.metrics.k8s.io/v1beta1",
)


@pytest.fixture(scope="module", params=GROUP_VERSIONS)
def schema(request: pytest.FixtureRequest) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_asgi(f"/openapi/v3/apis/{request.param}", APP)


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def _run(case: schemathesis.Case[Any]) -> None:
    count("schemathesis")
    response = case.call()
    # The documents declare names as plain strings, as the Kubernetes ones do; a name that is not
    # a DNS label is then "schema-valid" and rightly refused with a 400 Status, so the
    # positive-data check does not apply. Every other check runs.
    case.validate_response(response, excluded_checks=[schemathesis.checks.positive_data_acceptance])
    assert response.status_code < 500, (case.path, response.text[:300])
    if response.status_code >= 300:
        body = response.json()
        assert body["kind"] == "Status" and body["code"] == response.status_code, body
        assert body["reason"] == REASONS[response.status_code], body


def test_every_operation_of_every_group_version(schema: schemathesis.schemas.BaseSchema) -> None:
    operations = 0
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the document has an invalid operation: {result}"
        operation = result.ok()
        operations += 1
        given(case=operation.as_strategy())(_run)()
    assert operations >= 1, "the OpenAPI document declares no metric operations"
