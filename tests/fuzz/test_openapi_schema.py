"""Schema-driven fuzzing: every operation in the gateway's own OpenAPI document, with bodies generated
from its request schemas (valid and invalid), answers without a 5xx and errors in the envelope.

Schemathesis is used as a library (its strategies, one Hypothesis run per operation and mode): its
pytest plugin's lazy schemas do not run on the pytest this project tests with.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from tests.conftest import Gateway

MODES = [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]


@pytest.fixture(scope="module")
def api_schema(fuzz_gateway: Gateway) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_gateway.url}/openapi.json")


def operations(schema: schemathesis.BaseSchema) -> list[schemathesis.APIOperation]:
    return [result.ok() for result in schema.get_all_operations()]


@pytest.mark.parametrize("mode", MODES, ids=lambda m: m.value)
def test_no_operation_answers_5xx(api_schema: schemathesis.BaseSchema, fuzz_gateway: Gateway, mode) -> None:
    checked = []
    for operation in operations(api_schema):
        anthropic_shape = operation.path.startswith("/v1/messages")  # Anthropic's API has its own envelope

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=25, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
        def answers_without_5xx(case: schemathesis.Case) -> None:
            response = case.call(base_url=fuzz_gateway.url, timeout=30)
            assert response.status_code < 500, (case.as_curl_command(), response.text[:500])
            if response.status_code >= 400:
                body = response.json()
                if anthropic_shape:  # noqa: B023 (the test runs inside this iteration)
                    assert body["type"] == "error" and set(body["error"]) == {"type", "message"}
                else:
                    assert set(body["error"]) == {"message", "type", "param", "code"}
                assert body["error"]["message"]

        try:
            answers_without_5xx()
        except Unsatisfiable:
            # An operation with no body or parameters (GET /healthz) has no invalid input to make.
            assert mode is schemathesis.GenerationMode.NEGATIVE and not operation.body and not operation.query
            continue
        checked.append(operation.label)
    assert "POST /v1/chat/completions" in checked and "POST /v1/completions" in checked


def test_the_document_describes_the_request_bodies(api_schema: schemathesis.BaseSchema) -> None:
    """Routes read their own bodies; the document must still say what they take, or fuzzing is blind."""
    body = api_schema.raw_schema["paths"]["/v1/chat/completions"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    chat = api_schema.raw_schema["components"]["schemas"][ref.rsplit("/", 1)[1]]
    assert {"model", "messages"} <= set(chat["properties"])
