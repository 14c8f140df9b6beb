"""Anthropic's own Python SDK, pointed at `router serve`, works unchanged: messages, system prompts and
multi-turn, prefill (continued, by a model that can), streaming with Anthropic's event sequence, tool use
routed to a model that calls tools (and its results sent back), token counting, and errors in Anthropic's
shape."""

from __future__ import annotations

from pathlib import Path

import anthropic
import httpx
import pytest

from tests.conftest import API_KEY, CLOUD_MODEL, FaultyCloud, Gateway, config_gateway, stand_in_config

WEATHER = {
    "name": "get_weather",
    "description": "The current weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def sdk(gw: Gateway, key: str = "unused") -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.url, api_key=key, max_retries=0, timeout=120)


def test_a_message_is_answered_by_the_local_model(gateway: Gateway) -> None:
    raw = sdk(gateway).messages.with_raw_response.create(
        model="claude-3-5-haiku-latest",  # a name the gateway does not know: the policy routes it
        max_tokens=16,
        system="You are terse.",
        messages=[
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "Paris."},
            {"role": "user", "content": [{"type": "text", "text": "And of Italy?"}]},
        ],
    )
    message = raw.parse()
    assert raw.headers["x-router-route"] == "local"
    assert message.type == "message" and message.role == "assistant"
    assert message.content[0].type == "text" and message.content[0].text.strip()
    assert message.stop_reason in ("end_turn", "max_tokens")
    assert message.usage.input_tokens > 0 and 0 < message.usage.output_tokens <= 16


def test_a_prefilled_answer_is_continued_not_answered_anew(gateway: Gateway) -> None:
    """A last assistant message is Anthropic's prefill: the local model continues it, and the answer holds
    only what follows (as Claude's does)."""
    question = {"role": "user", "content": "Count from one to ten in words, separated by commas."}
    prefill = "one, two, three, four,"
    continued = sdk(gateway).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=12, extra_body={"temperature": 0},
        messages=[question, {"role": "assistant", "content": prefill}],
    )  # fmt: skip
    text = continued.content[0].text
    assert "five" in text.lower() and not text.lower().lstrip().startswith("one")
    anew = sdk(gateway).messages.create(model="claude-3-5-haiku-latest", max_tokens=12, extra_body={"temperature": 0},
                                        messages=[question])  # fmt: skip
    assert continued.usage.input_tokens > anew.usage.input_tokens  # the prefill is read as part of the prompt


@pytest.mark.parametrize(
    ("asked", "headers"),
    [("escalate-me: count", {}), ("Count", {"x-test": "cascade"})],  # the policy's cloud rule; its cascade rule
)
def test_a_prefill_goes_only_to_a_model_that_continues_it(gateway: Gateway, asked: str, headers: dict) -> None:
    """The cloud model here is OpenAI's (through litellm), which would answer a last assistant message anew:
    a prefilled request the policy sends to it is moved to the local model, which continues it, and a
    cascade that could hand it to that cloud model is dropped."""
    question = {"role": "user", "content": f"{asked} from one to ten in words, separated by commas."}
    headers = {**headers, "cache-control": "no-cache, no-store"}
    raw = sdk(gateway).messages.with_raw_response.create(
        model="claude-3-5-haiku-latest", max_tokens=12, extra_body={"temperature": 0}, extra_headers=headers,
        messages=[question, {"role": "assistant", "content": "one, two, three, four,"}],
    )  # fmt: skip
    assert raw.headers["x-router-route"] == "local" and raw.headers["x-router-needs"] == "prefill"
    assert "x-router-cascade" not in raw.headers
    assert "five" in raw.parse().content[0].text.lower()
    # Without the prefill the same request goes where the policy says: to the cloud, or local with a cascade.
    anew = sdk(gateway).messages.with_raw_response.create(
        model="claude-3-5-haiku-latest", max_tokens=4, extra_headers=headers, messages=[question]
    )
    assert "x-router-needs" not in anew.headers
    if "x-test" in headers:
        assert "x-router-cascade" in anew.headers
    else:
        assert anew.headers["x-router-route"] == "cloud"


def test_a_prefill_no_model_can_continue_is_refused_naming_it(instant_gateway: Gateway) -> None:
    """A local server pool and an OpenAI cloud model would both answer anew: a 400 that says so."""
    with pytest.raises(anthropic.BadRequestError) as refused:
        sdk(instant_gateway).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=12,
            messages=[{"role": "user", "content": "Say a colour."}, {"role": "assistant", "content": "The colour is"}],
        )  # fmt: skip
    assert "needs prefill" in str(refused.value) and "capabilities:" in str(refused.value)


def test_a_stream_has_anthropics_event_sequence(gateway: Gateway) -> None:
    with sdk(gateway).messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=12, messages=[{"role": "user", "content": "Name a colour."}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_start" in events and "content_block_delta" in events and "message_delta" in events
    assert final.content[0].text.strip() and final.stop_reason in ("end_turn", "max_tokens")
    assert final.usage.output_tokens > 0


def test_tools_are_routed_to_a_model_that_calls_them(instant_gateway: Gateway) -> None:
    client = sdk(instant_gateway)
    question = {"role": "user", "content": "What is the weather in Paris?"}
    raw = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5", max_tokens=64, tools=[WEATHER], messages=[question]
    )
    message = raw.parse()
    assert raw.headers["x-router-model"] == "gpt-4o-mini" and raw.headers["x-router-needs"] == "tools"
    assert message.stop_reason == "tool_use"
    (call,) = [block for block in message.content if block.type == "tool_use"]
    assert call.name == "get_weather" and call.input == {"city": "Paris"}

    # The tool's result goes back as a tool_result block: still a tool conversation, still the cloud.
    answer = client.messages.with_raw_response.create(
        model="claude-sonnet-4-5",
        max_tokens=64,
        tools=[WEATHER],
        tool_choice={"type": "none"},
        messages=[
            question,
            {"role": "assistant", "content": [{"type": "tool_use", "id": call.id, "name": call.name,
                                               "input": call.input}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18 C, sunny"}]},
        ],
    )  # fmt: skip
    assert answer.headers["x-router-route"] == "cloud"
    assert answer.parse().content[0].type == "text"

    with client.messages.stream(model="claude-sonnet-4-5", max_tokens=64, tools=[WEATHER], messages=[question]) as s:
        final = s.get_final_message()
    (streamed,) = [block for block in final.content if block.type == "tool_use"]
    assert streamed.input == {"city": "Paris"} and final.stop_reason == "tool_use"


def test_tokens_are_counted(gateway: Gateway) -> None:
    counted = sdk(gateway).messages.count_tokens(
        model="claude-3-5-haiku-latest", system="Be brief.", messages=[{"role": "user", "content": "Hello there!"}]
    )
    assert counted.input_tokens > 3


def test_errors_come_in_anthropics_shape(gateway: Gateway, strict_gateway: Gateway) -> None:
    with pytest.raises(anthropic.BadRequestError) as bad:
        sdk(gateway).messages.create(model="x", max_tokens=0, messages=[{"role": "user", "content": "hi"}])
    assert bad.value.body["type"] == "error" and bad.value.body["error"]["type"] == "invalid_request_error"
    raw = httpx.post(f"{gateway.url}/v1/messages", json={"model": "x", "messages": []}, timeout=30)
    assert raw.status_code == 400 and raw.json()["type"] == "error"
    with pytest.raises(anthropic.AuthenticationError):
        sdk(strict_gateway, key="sk-wrong").messages.create(
            model="x", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
        )
    ok = sdk(strict_gateway, key=API_KEY).messages.create(  # x-api-key, as the SDK sends it
        model=CLOUD_MODEL, max_tokens=4, messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.content


def test_a_cloud_model_declared_to_continue_a_prefill_gets_it_marked(faulty_cloud: FaultyCloud, tmp_path: Path) -> None:
    """A litellm model declared with `prefill` (DeepSeek, Mistral) gets the prefill as litellm marks it for
    those providers: the last assistant message with `prefix: true`."""
    config = stand_in_config(faulty_cloud.v1, tmp_path / "ledger.sqlite")
    config["models"]["gpt-4o-mini"]["capabilities"] = ["json", "prefill"]
    with config_gateway(tmp_path / "gw", config, "version: 1\ndefault:\n  route: cloud\n") as gateway:
        raw = sdk(gateway).messages.with_raw_response.create(
            model="claude-3-5-haiku-latest", max_tokens=12,
            messages=[{"role": "user", "content": "Say a colour."}, {"role": "assistant", "content": "The colour is"}],
        )  # fmt: skip
    assert raw.headers["x-router-route"] == "cloud" and raw.headers["x-router-needs"] == "prefill"
    (sent,) = faulty_cloud.requests()
    assert sent["messages"][-1] == {"role": "assistant", "content": "The colour is", "prefix": True}
