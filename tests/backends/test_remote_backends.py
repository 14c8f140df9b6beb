"""What the remote backends send (litellm, and the direct OpenAI-compatible one): clients cannot steer the
upstream, OpenAI parameters are kept."""

from __future__ import annotations

from router.backends.litellm_backend import LiteLLMBackend, split_passthrough
from router.backends.openai_http import OpenAIHttpBackend
from router.config import LiteLLMModel, OpenAICompatibleModel
from router.types import RequestContext


def ctx(**passthrough: object) -> RequestContext:
    return RequestContext(
        "t", "chat", "cloud", ({"role": "user", "content": "hi"},), params={"temperature": 0.1}, passthrough=passthrough
    )


def test_client_fields_that_would_redirect_the_call_go_to_the_body_not_to_litellm() -> None:
    known, extra = split_passthrough({"api_base": "http://evil", "api_key": "x", "tools": [], "top_k": 3})
    assert known == {"tools": []}
    assert extra == {"api_base": "http://evil", "api_key": "x", "top_k": 3}


def test_call_uses_the_configured_upstream_and_key(monkeypatch) -> None:
    monkeypatch.setenv("MY_KEY", "sk-real")
    backend = LiteLLMBackend("c", LiteLLMModel(model="openai/gpt-4o", api_base="http://up/v1", api_key_env="MY_KEY"))
    kwargs = backend._kwargs(ctx(api_base="http://evil", api_key="stolen"), max_tokens=10, stream=True)
    assert kwargs["api_base"] == "http://up/v1"
    assert kwargs["api_key"] == "sk-real"
    assert kwargs["model"] == "openai/gpt-4o"
    assert kwargs["max_tokens"] == 10
    assert kwargs["temperature"] == 0.1
    assert kwargs["stream_options"] == {"include_usage": True}
    assert kwargs["extra_body"] == {"api_base": "http://evil", "api_key": "stolen"}


async def test_pool_spreads_calls_over_its_servers() -> None:
    spec = OpenAICompatibleModel(engine="openai-compatible", model="m", api_base=["http://a/v1", "http://b/v1/"])
    backend = OpenAIHttpBackend("pool", spec)
    urls = [backend._request(ctx(), None, False)[0] for _ in range(4)]
    assert urls == [f"http://{h}/v1/chat/completions" for h in "abab"]
    await backend.close()


async def test_the_direct_backend_writes_one_body_that_clients_cannot_steer(monkeypatch) -> None:
    import json

    monkeypatch.setenv("POOL_KEY", "sk-real")
    spec = OpenAICompatibleModel(
        engine="openai-compatible", model="qwen", api_base="http://up/v1", api_key_env="POOL_KEY"
    )
    backend = OpenAIHttpBackend("pool", spec)
    url, content = backend._request(ctx(api_base="http://evil", api_key="stolen", tools=[]), max_tokens=10, stream=True)
    body = json.loads(content)
    assert url == "http://up/v1/chat/completions"
    assert backend._headers["authorization"] == "Bearer sk-real"
    assert body["model"] == "qwen" and body["max_tokens"] == 10 and body["temperature"] == 0.1
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [] and body["api_base"] == "http://evil"  # inert in a body; the URL is the config's
    await backend.close()


def test_missing_key_makes_the_model_unavailable_with_the_reason(monkeypatch) -> None:
    monkeypatch.delenv("ABSENT_KEY", raising=False)
    backend = LiteLLMBackend("c", LiteLLMModel(model="openai/gpt-4o", api_key_env="ABSENT_KEY"))
    assert backend.unavailable_reason() == "no API key: set ABSENT_KEY to use c"


async def test_calls_beyond_the_concurrency_and_queue_limits_are_shed_at_once() -> None:
    import asyncio

    import pytest

    from router.backends.admission import Admission
    from router.errors import Overloaded

    admission = Admission("c", limit=1, max_queue=1)
    release = asyncio.Event()

    async def hold() -> None:
        async with admission.slot():
            await release.wait()

    holder = asyncio.create_task(hold())
    await asyncio.sleep(0)
    waiter = asyncio.create_task(hold())
    await asyncio.sleep(0)
    assert (admission.in_flight, admission.waiting) == (1, 1)
    with pytest.raises(Overloaded) as shed:
        async with admission.slot():
            pass
    assert shed.value.headers == {"Retry-After": "1"}
    release.set()
    await asyncio.gather(holder, waiter)
    assert (admission.in_flight, admission.waiting) == (0, 0)
