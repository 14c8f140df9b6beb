"""What the cloud backend sends: clients cannot steer the upstream, OpenAI parameters are kept."""

from __future__ import annotations

from router.backends.litellm_backend import LiteLLMBackend, split_passthrough
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


def test_pool_spreads_calls_over_its_servers() -> None:
    spec = OpenAICompatibleModel(engine="openai-compatible", model="m", api_base=["http://a/v1", "http://b/v1"])
    backend = LiteLLMBackend("pool", spec)
    bases = [backend._kwargs(ctx(), None, False)["api_base"] for _ in range(4)]
    assert bases == ["http://a/v1", "http://b/v1", "http://a/v1", "http://b/v1"]


def test_missing_key_makes_the_model_unavailable_with_the_reason(monkeypatch) -> None:
    monkeypatch.delenv("ABSENT_KEY", raising=False)
    backend = LiteLLMBackend("c", LiteLLMModel(model="openai/gpt-4o", api_key_env="ABSENT_KEY"))
    assert backend.unavailable_reason() == "no API key: set ABSENT_KEY to use c"


async def test_calls_beyond_the_concurrency_and_queue_limits_are_shed_at_once() -> None:
    import asyncio

    import pytest

    from router.backends.litellm_backend import _Admission
    from router.errors import Overloaded

    admission = _Admission("c", limit=1, max_queue=1)
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
