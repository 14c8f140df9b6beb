"""No request silently loses what it asked for: JSON output is kept by the local model's grammar, its
log-probabilities come back when asked, tools and images go to a model that has them, and with none
allowed the answer is a 400 naming it."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.conftest import CLOUD_MODEL, Gateway

LOCAL = "gemma-3-270m"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


@pytest.fixture()
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def test_json_object_is_answered_locally_as_valid_json(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": 'What is 2 + 2? Answer as a JSON object with the key "answer".'}],
        response_format={"type": "json_object"},
        max_tokens=120,
        temperature=0,
    )
    answer = raw.parse()
    assert raw.headers["x-router-model"] == LOCAL and raw.headers["x-router-needs"] == "json"
    assert answer.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(answer.choices[0].message.content or ""), dict)


def test_json_schema_is_kept_to_locally_streamed_too(client: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "population": {"type": "integer"}},
        "required": ["city", "population"],
    }
    stream = client.chat.completions.create(
        model="auto",
        messages=[{"role": "user", "content": "Name a big city and its population."}],
        response_format={"type": "json_schema", "json_schema": {"name": "city", "schema": schema}},
        max_tokens=120,
        temperature=0,
        stream=True,
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    parsed = json.loads(text)
    assert isinstance(parsed["city"], str) and isinstance(parsed["population"], int)


def test_a_schema_the_grammar_cannot_express_is_a_clear_400(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="local",
            messages=[{"role": "user", "content": "hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "x"}},
        )
    assert refused.value.body["param"] == "response_format.json_schema.schema"


def test_tools_go_to_a_model_that_calls_tools(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": "What is the weather in Paris?"}],
        tools=[WEATHER_TOOL],
        max_tokens=16,
    )
    assert raw.headers["x-router-model"] == CLOUD_MODEL
    assert raw.headers["x-router-needs"] == "tools"
    assert raw.headers["x-router-reason"] == "needs-tools"


def test_tools_on_a_request_pinned_local_are_refused_naming_the_capability(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": "secret-project: what is the weather?"}],
            tools=[WEATHER_TOOL],
        )
    assert refused.value.body["code"] == "capability_unavailable"
    assert "needs tools" in refused.value.message and LOCAL in refused.value.message


def test_tools_for_a_cloud_model_without_its_key_are_a_400_saying_so(client: openai.OpenAI) -> None:
    """The only tool-calling model on the request's chain cannot answer (no key): the client is told
    why, not handed a 503 after the local model could not call tools either."""
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="keyless-cloud",
            messages=[{"role": "user", "content": "What is the weather in Paris?"}],
            tools=[WEATHER_TOOL],
        )
    assert refused.value.body["code"] == "capability_unavailable"
    assert "keyless-cloud could, but no API key: set NO_SUCH_KEY_ENV" in refused.value.message


@pytest.mark.parametrize(
    ("extra", "needs"),
    [
        ({"messages": [{"role": "user", "content": [
            {"type": "text", "text": "What is in this picture?"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}]}, ["vision"]),
        ({"tools": [WEATHER_TOOL], "response_format": {"type": "json_object"}}, ["tools", "json"]),
    ],
)  # fmt: skip
def test_explain_says_which_capability_decided(gateway: Gateway, extra: dict, needs: list[str]) -> None:
    body = {"messages": [{"role": "user", "content": "hello"}], **extra}
    explained = httpx.post(f"{gateway.url}/v1/router/explain", json=body, timeout=30).json()
    assert explained["needs"] == needs
    assert explained["model"] == CLOUD_MODEL and explained["route"] == "cloud"
    assert explained["reason"].startswith("needs-")


def test_logprobs_come_back_from_the_local_model(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "Name a colour of the rainbow."}]
    raw = client.chat.completions.with_raw_response.create(
        model="local", messages=question, logprobs=True, top_logprobs=3, max_tokens=8, temperature=0
    )
    answer = raw.parse()
    assert raw.headers["x-router-model"] == LOCAL and raw.headers["x-router-needs"] == "logprobs"
    tokens = answer.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == answer.choices[0].message.content  # one entry per token shown
    assert all(t.logprob <= 0 and len(t.top_logprobs) == 3 for t in tokens)
    # At temperature 0 the sampled token is the likeliest one.
    assert all(t.top_logprobs[0].logprob == pytest.approx(t.logprob, abs=1e-4) for t in tokens)

    stream = client.chat.completions.create(
        model="local", messages=question, logprobs=True, max_tokens=8, temperature=0, stream=True
    )
    chunks = [c for c in stream if c.choices]
    streamed = [t for c in chunks if c.choices[0].logprobs for t in c.choices[0].logprobs.content]
    # (Compared with its own text, not the call before: llama.cpp's reuse of the cached prompt prefix may
    # flip a near-tie between two runs.)
    assert "".join(t.token for t in streamed) == "".join(c.choices[0].delta.content or "" for c in chunks)
    assert streamed
    text = client.completions.create(model="local", prompt="The sky is", logprobs=2, max_tokens=5, temperature=0)
    assert "".join(text.choices[0].logprobs.tokens) == text.choices[0].text
