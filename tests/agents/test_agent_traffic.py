"""What the gateway does with agent traffic, over HTTP with the real SDKs: the coding-agent policy answers
side calls locally and keeps the agent loop on the model of the client's API; a request translated for
a model of another API says what it could not carry; one that holds what only its API can carry goes to
a model of that API, or is refused naming it; prompt caching is priced."""

from __future__ import annotations

import httpx
from anthropic import Anthropic
from openai import OpenAI

from tests.agents.conftest import AgentCloud
from tests.conftest import Gateway

READ = {"name": "Read", "description": "Read a file.",
        "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}  # fmt: skip


def anthropic(gateway: Gateway) -> Anthropic:
    return Anthropic(base_url=gateway.url, api_key="sk-agent-test", max_retries=0, timeout=60)


def test_a_side_call_is_answered_locally_and_the_agent_loop_stays_on_its_family(
    coding_agent_gateway: Gateway, agent_cloud: AgentCloud
) -> None:
    agent_cloud.reset()
    title = anthropic(coding_agent_gateway).messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=32,
        messages=[{"role": "user", "content": "Write a 5-word title for: fixing the flaky login test"}],
    )  # fmt: skip
    assert (title.headers["x-router-route"], title.headers["x-router-reason"]) == ("local", "agent-side-call")
    assert title.parse().content[0].type == "text"
    assert [r["path"] for r in agent_cloud.requests()] == ["/v1/chat/completions"]  # the local tier's server
    loop = anthropic(coding_agent_gateway).messages.with_raw_response.create(
        model="claude-opus-4-5", max_tokens=1024, tools=[READ], thinking={"type": "enabled", "budget_tokens": 512},
        messages=[{"role": "user", "content": "Please read the file notes.txt and tell me what it holds."}],
    )  # fmt: skip
    assert (loop.headers["x-router-model"], loop.headers["x-router-native"]) == ("claude", "messages")
    blocks = loop.parse().content
    assert blocks[0].type == "thinking" and blocks[0].signature.startswith("sig-stand-in-")
    assert blocks[1].type == "tool_use" and blocks[1].name == "Read"
    stats = httpx.get(f"{coding_agent_gateway.url}/v1/router/stats", params={"window": "1h"}, timeout=30).json()
    [sdk] = [c for c in stats["clients"] if c["client"] == "anthropic-sdk"]  # agent traffic by client program
    assert (sdk["routes"], sdk["apis"]) == ({"local": 1, "cloud": 1}, ["messages"])
    assert sdk["prompt_tokens"] > 0


def test_a_translated_request_names_what_it_could_not_carry(agent_gateway: Gateway) -> None:
    """Sent to the local tier by name, a Messages request with thinking and a server tool is answered in
    Anthropic's shape, and `x-router-omitted` says what the answer went without."""
    raw = anthropic(agent_gateway).messages.with_raw_response.create(
        model="local", max_tokens=32, thinking={"type": "enabled", "budget_tokens": 1024},
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        messages=[{"role": "user", "content": "Say hello."},
                  {"role": "assistant", "content": [{"type": "thinking", "thinking": "...", "signature": "s"},
                                                    {"type": "text", "text": "Hello!"}]},
                  {"role": "user", "content": "Again."}],
    )  # fmt: skip
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-omitted"] == "thinking, server tool `web_search`"
    assert raw.parse().content[0].type == "text"


def test_what_only_its_api_carries_goes_to_a_model_of_that_api(agent_gateway: Gateway, agent_cloud: AgentCloud) -> None:
    document = {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "Pelicans."}}
    body = {
        "max_tokens": 64,
        "messages": [{"role": "user", "content": [document, {"type": "text", "text": "Sum up."}]}],
    }
    agent_cloud.reset()
    routed = httpx.post(f"{agent_gateway.url}/v1/messages", json={**body, "model": "auto"}, timeout=60)
    assert routed.status_code == 200 and routed.headers["x-router-model"] == "claude"
    assert agent_cloud.requests("/v1/messages")[0]["body"]["messages"][0]["content"][0] == document
    asked_local = httpx.post(f"{agent_gateway.url}/v1/messages", json={**body, "model": "local"}, timeout=60)
    assert (asked_local.headers["x-router-model"], asked_local.headers["x-router-reason"]) == (
        "claude",
        "needs-messages",
    )


def test_responses_to_a_non_openai_model_keep_custom_tools_as_custom_calls(agent_gateway: Gateway) -> None:
    """Codex's free-form `apply_patch` tool, translated for the local tier (the stand-in's chat API here),
    and the call coming back as a `custom_tool_call`; hosted tools are named as omitted."""
    client = OpenAI(base_url=f"{agent_gateway.url}/v1", api_key="sk", max_retries=0, timeout=60)
    raw = client.responses.with_raw_response.create(
        model="local", input="Please read the file notes.txt and say what it holds.",
        tools=[{"type": "custom", "name": "read_file", "description": "Reads a file."},
               {"type": "web_search"}],
    )  # fmt: skip
    assert raw.headers["x-router-omitted"] == "`web_search` tool"
    call = raw.parse().output[-1]
    assert call.type == "custom_tool_call" and call.name == "read_file"


def test_prompt_cache_reads_are_priced_at_the_cache_rate(agent_gateway: Gateway) -> None:
    """The stand-in reports 1,024 input tokens read from its cache when the request has `cache_control`:
    the same request costs less with it than without (claude-sonnet-4-5's cache reads are a tenth)."""

    def cost(cache_control: bool) -> float:
        block = {
            "type": "text",
            "text": "Say hi.",
            **({"cache_control": {"type": "ephemeral"}} if cache_control else {}),
        }
        raw = anthropic(agent_gateway).messages.with_raw_response.create(
            model="cloud", max_tokens=16, messages=[{"role": "user", "content": [block]}]
        )
        assert raw.parse().usage.cache_read_input_tokens == (1024 if cache_control else 0)
        return float(raw.headers["x-router-cost-usd"])

    assert 0 < cost(True) < cost(False) + 1024 * 3e-6
