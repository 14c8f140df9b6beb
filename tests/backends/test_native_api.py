"""The same-family pass-through's reading of what it forwards: provider endpoints, finished bodies and
streamed events summarized for the ledger (cached input tokens included), events passed on whole."""

from __future__ import annotations

import json

import pytest

from router.backends.native_api import EventReader, endpoint, native_api_of, summarize
from router.errors import UpstreamError
from router.ledger.pricing import Rates
from router.types import Usage


def test_which_models_take_which_api_whole() -> None:
    assert native_api_of("anthropic/claude-sonnet-4-5", None) == "messages"
    assert native_api_of("anthropic/claude-sonnet-4-5", "http://proxy:9000") == "messages"
    assert native_api_of("openai/gpt-5", None) == "responses"
    assert native_api_of("gpt-4o", None) == "responses"
    assert native_api_of("openai/qwen", "http://vllm:8000/v1") is None  # a compatible server: chat only
    assert native_api_of("bedrock/anthropic.claude-3", None) is None


def test_provider_endpoints_follow_litellms_api_base_conventions() -> None:
    assert endpoint("messages", None) == "https://api.anthropic.com/v1/messages"
    assert endpoint("messages", "http://127.0.0.1:9/") == "http://127.0.0.1:9/v1/messages"
    assert endpoint("messages", "http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1/messages"
    assert endpoint("responses", "http://127.0.0.1:9/v1") == "http://127.0.0.1:9/v1/responses"


def test_anthropic_usage_counts_cache_reads_and_writes_as_input() -> None:
    body = {"content": [{"type": "thinking", "thinking": "x", "signature": "s"}, {"type": "text", "text": "Hi"},
                        {"type": "tool_use", "id": "t", "name": "Read", "input": {"file_path": "a"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "cache_read_input_tokens": 1000, "cache_creation_input_tokens": 50,
                      "output_tokens": 7}}  # fmt: skip
    summary = summarize("messages", body)
    assert (summary.text, summary.finish_reason) == ("Hi", "tool_calls")
    assert summary.usage == Usage(1060, 7, cached_tokens=1000, cache_write_tokens=50)
    assert json.loads(summary.tool_calls[0]["function"]["arguments"]) == {"file_path": "a"}


def test_cached_input_is_priced_at_the_cache_rate() -> None:
    rates = Rates(3e-6, 15e-6, cache_read_per_token=0.3e-6, cache_write_per_token=3.75e-6)
    cached = rates.cost(Usage(1060, 7, cached_tokens=1000, cache_write_tokens=50))
    assert cached == pytest.approx(10 * 3e-6 + 1000 * 0.3e-6 + 50 * 3.75e-6 + 7 * 15e-6)
    assert Rates(3e-6, 15e-6).cost(Usage(1060, 7, cached_tokens=1000)) == pytest.approx(1060 * 3e-6 + 7 * 15e-6)


def test_streamed_events_pass_whole_however_the_bytes_are_split() -> None:
    events = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"claude","usage":'
              b'{"input_tokens":5,"cache_read_input_tokens":100}}}\n\n'
              b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
              b'"delta":{"type":"text_delta","text":"Hello"}}\n\n'
              b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
              b'"usage":{"output_tokens":3}}\n\n')  # fmt: skip
    reader = EventReader("messages")
    deltas = [d for i in range(0, len(events), 7) for d in reader.feed(events[i : i + 7])]
    assert b"".join(d.native or b"" for d in deltas) == events
    assert [d.content for d in deltas if d.content] == ["Hello"]
    assert deltas[-1].finish_reason == "stop" and deltas[-1].usage == Usage(105, 3, cached_tokens=100)


def test_an_error_event_mid_stream_is_an_upstream_error() -> None:
    with pytest.raises(UpstreamError, match="overloaded"):
        EventReader("messages").feed(b'event: error\ndata: {"type":"error","error":{"message":"overloaded"}}\n\n')


def test_responses_usage_and_calls_are_read_from_the_completed_event() -> None:
    response = {"model": "gpt-5", "output": [{"type": "function_call", "call_id": "c1", "name": "exec_command",
                                              "arguments": "{}"}],
                "usage": {"input_tokens": 2000, "input_tokens_details": {"cached_tokens": 1500},
                          "output_tokens": 9}}  # fmt: skip
    event = json.dumps({"type": "response.completed", "response": response}).encode()
    [delta] = EventReader("responses").feed(b"event: response.completed\ndata: " + event + b"\n\n")
    assert delta.finish_reason == "tool_calls" and delta.usage == Usage(2000, 9, cached_tokens=1500)
