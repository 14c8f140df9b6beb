"""Requests a rule sends to the cloud reach the stand-in cloud through litellm, streaming included."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import CLOUD_MODEL, Gateway

QUESTION = [{"role": "user", "content": "Say hello."}]


@pytest.fixture()
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def test_header_rule_sends_the_request_to_the_cloud(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=QUESTION, max_tokens=8, extra_headers={"x-team": "research"}
    )
    completion = raw.parse()
    assert raw.headers["x-router-route"] == "cloud"
    assert raw.headers["x-router-model"] == CLOUD_MODEL
    assert raw.headers["x-router-reason"] == "research-team"
    assert "x-router-fallback" not in raw.headers
    assert completion.model == CLOUD_MODEL  # as the stand-in named itself
    assert completion.usage.prompt_tokens > 0
    assert 0 < completion.usage.completion_tokens <= 8


def test_keyword_rule_streams_from_the_cloud_with_usage(client: openai.OpenAI) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="auto",
        messages=[{"role": "user", "content": "Please escalate-me and say hi."}],
        max_tokens=8,
        stream=True,
        stream_options={"include_usage": True},
    ) as response:
        assert response.headers["x-router-route"] == "cloud"
        assert response.headers["x-router-reason"] == "escalate-keyword"
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0


def test_client_asking_for_cloud_gets_the_cloud(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="cloud", messages=QUESTION, max_tokens=4)
    assert raw.headers["x-router-route"] == "cloud"
    assert raw.headers["x-router-reason"] == "requested-model"


def test_policy_rule_overrules_the_requested_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="cloud", messages=[{"role": "user", "content": "About secret-project: hi"}], max_tokens=4
    )
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-reason"] == "secret-stays-local"


def test_unknown_fields_are_passed_to_the_cloud(client: openai.OpenAI) -> None:
    """`top_k` is not an OpenAI field; llama.cpp's server understands it. It must arrive, not be rejected."""
    completion = client.chat.completions.create(
        model="cloud", messages=QUESTION, max_tokens=4, extra_body={"top_k": 1, "repeat_penalty": 1.0}
    )
    assert completion.usage.completion_tokens > 0


def test_text_completion_through_the_cloud(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(model="cloud", prompt="The sky is", max_tokens=4)
    assert raw.headers["x-router-route"] == "cloud"
    assert raw.parse().usage.completion_tokens > 0


def test_cloud_model_without_a_key_falls_back_to_local(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=QUESTION, max_tokens=4, extra_headers={"x-test": "keyless"}
    )
    assert raw.headers["x-router-reason"] == "keyless"
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-fallback"] == "cloud->local"
    assert "NO_SUCH_KEY_ENV" in raw.headers["x-router-fallback-reason"]
    assert raw.parse().usage.completion_tokens > 0


def test_openai_compatible_local_pool_answers_as_the_local_tier(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="local-pool", messages=QUESTION, max_tokens=4)
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-model"] == "local-pool"
    assert raw.parse().usage.completion_tokens > 0
    chunks = list(client.chat.completions.create(model="local-pool", messages=QUESTION, max_tokens=4, stream=True))
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")
