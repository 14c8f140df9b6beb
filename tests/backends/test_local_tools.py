"""Tool calls on the in-process model: the model's text parsed into calls, and a streamed answer that
holds a call back until it is whole while text before it streams live."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

from router.backends.local_tools import answered, for_prompt, parse_calls, template_messages, with_tool_calls
from router.types import StreamDelta, Usage

NAMES = frozenset({"get_weather"})


def test_a_tagged_call_is_parsed_and_the_text_around_it_kept() -> None:
    text, calls = parse_calls(
        'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    )
    assert text == "Let me check."
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}


def test_a_bare_or_fenced_call_counts_only_when_it_names_an_offered_tool() -> None:
    fenced = '```json\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n```'
    assert parse_calls(fenced, NAMES)[1][0]["function"]["name"] == "get_weather"
    assert parse_calls(fenced, frozenset({"other"})) == (fenced, [])
    assert parse_calls('{"name": "get_weather", "arguments": "Oslo"}', NAMES)[1] == []  # arguments not an object


def test_a_malformed_call_stays_visible_as_text() -> None:
    content, extra, finish = answered("<tool_call>{not json</tool_call>", "stop", NAMES)
    assert (content, extra, finish) == ("<tool_call>{not json</tool_call>", {}, "stop")


def test_after_tool_results_the_model_is_asked_for_the_answer_without_its_tools() -> None:
    call = {"id": "c", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}
    messages = [{"role": "user", "content": "Weather?"}, {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c", "content": "sunny"}]  # fmt: skip
    shown, tools = for_prompt(messages, [{"type": "function", "function": {"name": "get_weather"}}])
    assert tools == [] and shown[-1]["role"] == "system"
    assert template_messages(messages)[1]["tool_calls"][0]["function"]["arguments"] == {"city": "Paris"}


async def _deltas(*pieces: str) -> AsyncIterator[StreamDelta]:
    for piece in pieces:
        yield StreamDelta(content=piece)
    yield StreamDelta(finish_reason="stop", usage=Usage(5, 9))


async def _collect(stream: AsyncIterator[StreamDelta]) -> list[StreamDelta]:
    return [delta async for delta in stream]


async def test_a_streamed_call_is_held_until_whole_while_text_before_it_streams() -> None:
    out = await _collect(with_tool_calls(_deltas("Checking ", "now. <tool", '_call>{"name": "get_weather", ',
                                                 '"arguments": {"city": "Rome"}}</tool_call>'), NAMES))  # fmt: skip
    assert [d.content for d in out if d.content] == ["Checking ", "now. "]
    calls = next(d.delta_extra["tool_calls"] for d in out if d.delta_extra)
    assert calls[0]["index"] == 0 and json.loads(calls[0]["function"]["arguments"]) == {"city": "Rome"}
    assert out[-1].finish_reason == "tool_calls" and out[-1].usage == Usage(5, 9)


async def test_a_stream_without_a_call_loses_nothing() -> None:
    out = await _collect(with_tool_calls(_deltas("Use <b>bold</b> ", "text."), NAMES))
    assert "".join(d.content or "" for d in out) == "Use <b>bold</b> text."
    assert out[-1].finish_reason == "stop"
