"""The official `openai` SDK's Responses API (`client.responses.create`) against `router serve`: text and
item inputs, instructions, streaming events, function tools (routed to a model that calls them, and
their outputs sent back), and a clear 400 for stored responses, which the gateway does not keep."""

from __future__ import annotations

import json

import openai
import pytest

from tests.conftest import Gateway

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The current weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=120)


def test_text_input_is_answered(gateway: Gateway) -> None:
    raw = sdk(gateway).responses.with_raw_response.create(
        model="auto", input="What is the capital of France?", max_output_tokens=16
    )
    response = raw.parse()
    assert raw.headers["x-router-route"] == "local"
    assert response.object == "response" and response.status in ("completed", "incomplete")
    assert response.output_text.strip()
    assert response.usage.input_tokens > 0 and 0 < response.usage.output_tokens <= 16


def test_items_and_instructions_stream_as_responses_events(gateway: Gateway) -> None:
    stream = sdk(gateway).responses.create(
        model="auto",
        instructions="Answer in one word.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "Name a colour."}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "Red."}]},
            {"role": "user", "content": "Another one?"},
        ],
        max_output_tokens=12,
        stream=True,
    )
    events = list(stream)
    kinds = [e.type for e in events]
    assert kinds[0] == "response.created" and kinds[-1] == "response.completed"
    assert "response.output_item.added" in kinds and "response.output_text.done" in kinds
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.strip() and events[-1].response.output_text == text
    assert [e.sequence_number for e in events] == list(range(1, len(events) + 1))


def test_function_tools_are_called_and_their_output_sent_back(instant_gateway: Gateway) -> None:
    client = sdk(instant_gateway)
    raw = client.responses.with_raw_response.create(model="auto", input="Weather in Paris?", tools=[WEATHER])
    response = raw.parse()
    assert raw.headers["x-router-needs"] == "tools" and raw.headers["x-router-route"] == "cloud"
    (call,) = [item for item in response.output if item.type == "function_call"]
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}

    followed = client.responses.create(
        model="auto",
        tools=[WEATHER],
        tool_choice="none",
        input=[
            {"role": "user", "content": "Weather in Paris?"},
            {"type": "function_call", "call_id": call.call_id, "name": call.name, "arguments": call.arguments},
            {"type": "function_call_output", "call_id": call.call_id, "output": "18 C, sunny"},
        ],
    )
    assert followed.output_text

    events = list(client.responses.create(model="auto", input="Weather in Paris?", tools=[WEATHER], stream=True))
    pieces = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    (done,) = [item for item in events[-1].response.output if item.type == "function_call"]
    assert json.loads(pieces) == json.loads(done.arguments) == {"city": "Paris"}


def test_stored_responses_are_refused_clearly(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        sdk(gateway).responses.create(model="auto", input="and then?", previous_response_id="resp_123")
    assert refused.value.body["code"] == "stored_responses_unsupported"
    assert refused.value.body["param"] == "previous_response_id"
