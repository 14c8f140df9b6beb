"""The official openai client, sync and async, against `router serve`, answered by the real local model."""

from __future__ import annotations

import openai
import pytest

from tests.conftest import Gateway

LOCAL = "gemma-3-270m"
QUESTION = [{"role": "user", "content": "Name one colour of the rainbow."}]


@pytest.fixture()
def client(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


@pytest.fixture()
def async_client(gateway: Gateway) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.v1, api_key="unused", max_retries=0)


def test_chat_completion_is_answered_by_the_local_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=QUESTION, max_tokens=12)
    completion = raw.parse()
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-model"] == LOCAL
    assert raw.headers["x-router-reason"] == "default"
    assert raw.headers["x-request-id"]
    assert completion.object == "chat.completion"
    assert completion.model == LOCAL
    assert isinstance(completion.choices[0].message.content, str)
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].finish_reason in ("stop", "length")
    assert completion.usage.prompt_tokens > 5
    assert 0 < completion.usage.completion_tokens <= 12
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens


def test_max_tokens_bounds_the_local_answer(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="local",
        messages=[{"role": "user", "content": "Write a long story about the sea."}],
        max_completion_tokens=3,
        temperature=0,
    )
    assert completion.usage.completion_tokens <= 3
    assert completion.choices[0].finish_reason == "length"


def test_chat_stream_sends_chunks_then_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=12, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content_chunks = [c for c in chunks if c.choices]
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert content_chunks[-1].choices[0].finish_reason in ("stop", "length")
    text = "".join(c.choices[0].delta.content or "" for c in content_chunks)
    assert text.strip()
    usage_chunk = chunks[-1]
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens > 0
    assert all(c.id == chunks[0].id for c in chunks)


def test_stream_without_include_usage_sends_no_usage_chunk(client: openai.OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=4, stream=True))
    assert all(c.choices for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_seeded_greedy_answers_repeat(client: openai.OpenAI) -> None:
    def ask() -> str:
        completion = client.chat.completions.create(
            model="auto", messages=QUESTION, max_tokens=8, temperature=0, seed=7
        )
        return completion.choices[0].message.content

    assert ask() == ask()


def test_system_message_reaches_the_local_model(client: openai.OpenAI) -> None:
    """Gemma has no system role; the gateway folds it into the first user turn instead of dropping it."""
    messages = [{"role": "system", "content": "Reply in French."}, *QUESTION]
    with_system = client.chat.completions.create(model="local", messages=messages, max_tokens=6, temperature=0)
    without = client.chat.completions.create(model="local", messages=QUESTION, max_tokens=6, temperature=0)
    assert with_system.usage.prompt_tokens > without.usage.prompt_tokens


def test_text_completion(client: openai.OpenAI) -> None:
    raw = client.completions.with_raw_response.create(model="auto", prompt="The capital of France is", max_tokens=5)
    completion = raw.parse()
    assert raw.headers["x-router-route"] == "local"
    assert completion.object == "text_completion"
    assert isinstance(completion.choices[0].text, str)
    assert 0 < completion.usage.completion_tokens <= 5


def test_text_completion_stream(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(model="auto", prompt="One, two, three,", max_tokens=6, stream=True))
    assert "".join(c.choices[0].text for c in chunks).strip()
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_model_list_shows_aliases_and_models(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert {"auto", "local", "cloud", LOCAL, "gpt-4o-mini", "my-fast-model"} <= set(ids)
    assert client.models.retrieve("local").id == "local"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_unknown_model_name_is_routed_by_the_default_policy(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-3.5-turbo", messages=QUESTION, max_tokens=4)
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-reason"] == "default"


def test_configured_alias_pins_its_model(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="my-fast-model", messages=QUESTION, max_tokens=4)
    assert raw.headers["x-router-model"] == LOCAL
    assert raw.headers["x-router-reason"] == "requested-model"


async def test_async_client_chat_and_stream(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.chat.completions.create(model="auto", messages=QUESTION, max_tokens=6)
    assert completion.usage.completion_tokens > 0
    stream = await async_client.chat.completions.create(
        model="auto", messages=QUESTION, max_tokens=6, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


async def test_async_text_completion(async_client: openai.AsyncOpenAI) -> None:
    completion = await async_client.completions.create(model="local", prompt="Hello", max_tokens=4)
    assert completion.usage.completion_tokens > 0
