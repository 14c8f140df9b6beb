"""Bad input gets a clear OpenAI-style error, and the server keeps serving."""

from __future__ import annotations

import httpx
import openai
import pytest

from tests.conftest import API_KEY, Gateway

CHAT = "/v1/chat/completions"
GOOD = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}


@pytest.fixture()
def http(gateway: Gateway) -> httpx.Client:
    with httpx.Client(base_url=gateway.url, timeout=120) as client:
        yield client


def assert_error(response: httpx.Response, status: int, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["message"]
    if code is not None:
        assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    assert response.headers["x-request-id"]
    return error


def test_malformed_json(http: httpx.Client) -> None:
    response = http.post(CHAT, content=b'{"model": "auto", "messages": [', headers={"content-type": "application/json"})
    error = assert_error(response, 400, "invalid_json")
    assert "line 1" in error["message"]


def test_body_that_is_not_an_object(http: httpx.Client) -> None:
    assert_error(http.post(CHAT, json=["not", "an", "object"]), 400, "invalid_request")


def test_missing_messages(http: httpx.Client) -> None:
    error = assert_error(http.post(CHAT, json={"model": "auto"}), 400, "missing", "messages")
    assert "messages" in error["message"]


def test_empty_messages(http: httpx.Client) -> None:
    assert_error(http.post(CHAT, json={"model": "auto", "messages": []}), 400, "invalid_value", "messages")


@pytest.mark.parametrize(
    ("field", "value", "param"),
    [
        ("max_tokens", "5", "max_tokens"),
        ("temperature", "hot", "temperature"),
        ("temperature", 7, "temperature"),
        ("stream", "yes", "stream"),
        ("messages", "hello", "messages"),
        ("messages", [{"role": "wizard", "content": "hi"}], "messages[0].role"),
        ("messages", [{"content": "hi"}], "messages[0].role"),
        ("stop", ["a", "b", "c", "d", "e"], "stop"),
        # What an upstream cannot read is the client's 400, never a "failed" upstream that opens its circuit.
        ("messages", [{"role": "tool", "content": "18 C"}], "messages[0].tool_call_id"),
        ("messages", [{"role": "user"}], "messages[0].content"),
    ],
)
def test_wrong_types_and_values(http: httpx.Client, field: str, value: object, param: str) -> None:
    assert_error(http.post(CHAT, json={**GOOD, field: value}), 400, param=param)


def test_oversized_body(http: httpx.Client) -> None:
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * 100_000}]}
    assert_error(http.post(CHAT, json=big), 413, "request_too_large")


def test_oversized_chunked_body_without_content_length(http: httpx.Client) -> None:
    def body():
        yield b'{"model": "auto", "messages": [{"role": "user", "content": "'
        for _ in range(100):
            yield b"y" * 1024
        yield b'"}]}'

    assert_error(http.post(CHAT, content=body(), headers={"content-type": "application/json"}), 413)


def test_prompt_longer_than_the_local_context(http: httpx.Client) -> None:
    long_prompt = "word " * 3000  # the test gateway's local model has a 2048-token context
    response = http.post(CHAT, json={**GOOD, "model": "local", "messages": [{"role": "user", "content": long_prompt}]})
    assert_error(response, 400, "context_length_exceeded")


def test_unknown_url_and_method(http: httpx.Client) -> None:
    assert_error(http.post("/v1/embeddingz", json={}), 404, "not_found")
    assert_error(http.get(CHAT), 405, "method_not_allowed")


def test_server_keeps_serving_after_bad_input(http: httpx.Client) -> None:
    http.post(CHAT, content=b"{nope")
    http.post(CHAT, json={"model": "auto"})
    response = http.post(CHAT, json=GOOD)
    assert response.status_code == 200
    assert response.json()["usage"]["completion_tokens"] > 0


def test_unknown_model_is_rejected_when_configured_to(strict_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=strict_gateway.v1, api_key=API_KEY, max_retries=0)
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-3.5-turbo", messages=GOOD["messages"], max_tokens=2)
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


def test_api_key_is_required_when_configured(strict_gateway: Gateway) -> None:
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=strict_gateway.v1, api_key="sk-wrong", max_retries=0).models.list()
    no_key = httpx.get(f"{strict_gateway.v1}/models")
    assert_error(no_key, 401, "missing_api_key")
    ids = [m.id for m in openai.OpenAI(base_url=strict_gateway.v1, api_key=API_KEY).models.list()]
    assert "auto" in ids
    # Health checks stay open: probes carry no keys.
    assert httpx.get(f"{strict_gateway.url}/healthz").status_code == 200


def test_anthropic_top_k_reaches_the_sampler_params() -> None:
    """Anthropic's `top_k` is not dropped in translation: the local model samples with it."""
    from router.api.anthropic_format import MessagesRequest, generation
    from router.api.translation import Leftovers

    body = MessagesRequest.model_validate({"model": "m", "max_tokens": 8, "top_k": 5,
                                           "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
    params, _ = generation(body, Leftovers())
    assert params["top_k"] == 5
