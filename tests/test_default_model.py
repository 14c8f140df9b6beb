"""The product as installed: the embedded defaults answer everyday questions right, and say how they routed.

A real `router serve` with no model configuration at all (only its ledger moved to a temporary folder):
the default packaged GGUF, its own chat template and system prompt, the default policy with the
classifier and the cascade, and no cloud key, so nothing may leave the machine. Temperature 0, so the
answers are the same on every run; each is checked by keyword.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI

from router.config import DEFAULT_LOCAL_MODEL
from tests.servers import free_port, gateway_args, running

DEFAULT_POLICY = Path(__file__).parents[1] / "policies" / "default.yaml"
EVERYDAY = [
    ("What is the capital of France?", ["paris"]),
    ("What is 2 + 2?", ["4", "four"]),
    ('What is the plural of "mouse"?', ["mice"]),
    (
        'Classify the sentiment of this review as positive or negative: "I loved every minute of this film."',
        ["positive"],
    ),
    ("What is the capital of Japan?", ["tokyo"]),
    ('Who wrote "Romeo and Juliet"?', ["shakespeare"]),
]


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("defaults")
    config = tmp / "router.yaml"
    config.write_text(yaml.safe_dump({"ledger": {"path": str(tmp / "ledger.sqlite")}}))
    port = free_port()
    env = {"OPENAI_API_KEY": ""}  # the default cloud model has no key: everything must be answered here
    with running(gateway_args(port, config, DEFAULT_POLICY), f"http://127.0.0.1:{port}/readyz", tmp / "log", env=env):
        yield f"http://127.0.0.1:{port}"


def test_readiness_names_the_default_model_and_a_loaded_classifier(default_gateway: str) -> None:
    ready = httpx.get(f"{default_gateway}/readyz", timeout=10).json()
    text = str(ready)
    assert DEFAULT_LOCAL_MODEL in text
    assert ready["classifier"]["ready"] is True


@pytest.mark.parametrize(("prompt", "expected"), EVERYDAY)
def test_the_default_model_answers_everyday_questions_right(
    default_gateway: str, prompt: str, expected: list[str]
) -> None:
    client = OpenAI(base_url=f"{default_gateway}/v1", api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=48
    )
    answer = raw.parse().choices[0].message.content or ""
    assert any(re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", answer.lower()) for word in expected), answer
    assert raw.headers["x-router-model"] == DEFAULT_LOCAL_MODEL
    assert raw.headers["x-router-route"] == "local"
    assert "x-router-cascade" not in raw.headers  # no cloud key: nothing is judged or held back


# -- tools: the default model takes part in agent loops -----------------------------------------------------

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "The current time in a time zone.",
        "parameters": {"type": "object", "properties": {"zone": {"type": "string"}}, "required": ["zone"]},
    },
}


def _client(gateway: str) -> OpenAI:
    return OpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0, timeout=180)


@pytest.mark.parametrize("tool_choice", ["auto", "required"])
def test_the_default_model_calls_the_right_tool_with_arguments_that_fit_its_schema(
    default_gateway: str, tool_choice: str
) -> None:
    raw = _client(default_gateway).chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "What's the weather like in Paris right now?"}],
        tools=[TIME, WEATHER], tool_choice=tool_choice, temperature=0, max_tokens=96,
    )  # fmt: skip
    choice = raw.parse().choices[0]
    assert raw.headers["x-router-route"] == "local"
    assert choice.finish_reason == "tool_calls", choice.message
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert "paris" in json.loads(call.function.arguments)["city"].lower()


def test_the_default_model_answers_from_a_tool_result(default_gateway: str) -> None:
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    answer = _client(default_gateway).chat.completions.create(
        model="auto", tools=[WEATHER], temperature=0, max_tokens=64,
        messages=[{"role": "user", "content": "What's the weather like in Paris right now?"},
                  {"role": "assistant", "content": None, "tool_calls": [call]},
                  {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 24 degrees Celsius."}],
    )  # fmt: skip
    text = answer.choices[0].message.content or ""
    assert answer.choices[0].finish_reason == "stop" and "24" in text, text


def test_a_streamed_tool_call_arrives_whole_and_parses(default_gateway: str) -> None:
    stream = _client(default_gateway).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "What time is it in Tokyo?"}],
        tools=[WEATHER, TIME], tool_choice="required", temperature=0, max_tokens=96, stream=True,
    )  # fmt: skip
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"name": "", "arguments": ""})
                entry["name"] += call.function.name or ""
                entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_time"
    assert "tokyo" in json.loads(calls[0]["arguments"])["zone"].lower()


def test_an_anthropic_client_gets_a_tool_use_block_from_the_default_model(default_gateway: str) -> None:
    from anthropic import Anthropic

    client = Anthropic(base_url=default_gateway, api_key="unused", max_retries=0, timeout=180)
    weather = {"name": "get_weather", "description": "The current weather in a city.",
               "input_schema": WEATHER["function"]["parameters"]}  # fmt: skip
    message = client.messages.create(
        # This SDK's `create` no longer takes `temperature`; the Messages API still does.
        model="claude-haiku-4-5", max_tokens=96, tools=[weather], tool_choice={"type": "any"},
        extra_body={"temperature": 0},
        messages=[{"role": "user", "content": "What's the weather like in Paris right now?"}],
    )  # fmt: skip
    assert message.stop_reason == "tool_use"
    block = next(b for b in message.content if b.type == "tool_use")
    assert block.name == "get_weather" and "paris" in block.input["city"].lower()
