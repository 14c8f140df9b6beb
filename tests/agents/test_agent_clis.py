"""Claude Code and Codex, the real CLIs from npm, run through `router serve` unchanged: a one-shot question
and a task that needs a tool round-trip (the stand-in asks the agent to read a file in its working
directory; the agent runs its tool and sends the result back; the final answer names what the file
holds). What reached the stand-in shows the same-family path kept what agents depend on: thinking blocks
with their signatures, `cache_control` breakpoints, beta headers, encrypted reasoning, custom tools."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from tests.agents.conftest import BIN, AgentCloud, run_cli
from tests.conftest import Gateway

pytestmark = pytest.mark.skipif(not (BIN / "claude").exists(), reason="scripts/ensure-test-tools installs the CLIs")


def claude(gateway: Gateway, prompt: str, cwd: Path, *tools: str) -> str:
    args = [str(BIN / "claude"), "-p", prompt]
    if tools:
        args += ["--allowedTools", ",".join(tools)]
    env = {"ANTHROPIC_BASE_URL": gateway.url, "ANTHROPIC_API_KEY": "sk-agent-test", "DISABLE_AUTOUPDATER": "1"}
    done = run_cli(args, cwd, env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def codex(gateway: Gateway, prompt: str, cwd: Path) -> str:
    home = cwd.parent / f"{cwd.name}-codex"
    home.mkdir(exist_ok=True)
    (home / "config.toml").write_text(
        'model = "gpt-5.5"\nmodel_provider = "gateway"\n'
        "[model_providers.gateway]\n"
        f'name = "hybrid-router"\nbase_url = "{gateway.url}/v1"\nwire_api = "responses"\nenv_key = "GATEWAY_KEY"\n'
    )
    env = {"CODEX_HOME": str(home), "GATEWAY_KEY": "sk-agent-test"}
    done = run_cli([str(BIN / "codex"), "exec", "--skip-git-repo-check", prompt], cwd, env)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_claude_code_answers_a_question_through_the_gateway(
    agent_gateway: Gateway, agent_cloud: AgentCloud, workdir: Path
) -> None:
    agent_cloud.reset()
    assert claude(agent_gateway, "What is 2+2?", workdir).strip() == "4"
    turns = agent_cloud.requests("/v1/messages")
    assert turns, "nothing reached the Anthropic stand-in"
    sent = turns[0]
    assert sent["body"]["model"] == "claude-sonnet-4-5"  # only the model name changed
    assert sent["body"]["thinking"]["type"] in ("enabled", "adaptive")
    assert "context_management" in sent["body"] and "output_config" in sent["body"]
    assert "claude-code" in sent["headers"]["anthropic-beta"] and sent["query"] == "beta=true"
    assert any(block.get("cache_control") for block in sent["body"]["system"]), "cache_control was dropped"
    assert any(m["role"] == "system" for m in sent["body"]["messages"]), "the mid-conversation system turn is kept"
    assert sent["headers"]["x-api-key"] == "sk-stand-in"  # the gateway's key, never the client's
    metrics = httpx.get(f"{agent_gateway.url}/metrics", timeout=30).text
    assert 'router_client_requests_total{api="messages",client="claude-code",route="cloud"}' in metrics


def test_claude_code_runs_a_tool_and_its_thinking_signature_comes_back(
    agent_gateway: Gateway, agent_cloud: AgentCloud, workdir: Path
) -> None:
    agent_cloud.reset()
    notes = workdir / "notes.txt"
    answer = claude(agent_gateway, f"Please read the file {notes} and tell me what it holds.", workdir, "Read")
    assert "pelican" in answer
    turns = agent_cloud.requests("/v1/messages")
    asked = next(t for t in turns if any(b["type"] == "tool_use" for b in t["answer"]["content"]))
    thinking = next(b for b in asked["answer"]["content"] if b["type"] == "thinking")
    follow_up = turns[turns.index(asked) + 1]["body"]["messages"]
    replayed = next(m for m in reversed(follow_up) if m["role"] == "assistant")["content"]
    assert thinking in replayed, "the thinking block with its signature must come back unchanged"
    results = [b for b in follow_up[-1]["content"] if b["type"] == "tool_result"]
    assert results and "pelican" in str(results[0]["content"])


def codex_turns(agent_cloud: AgentCloud) -> list[dict]:
    return agent_cloud.requests("/v1/responses")


def test_codex_answers_a_question_through_the_gateway(
    agent_gateway: Gateway, agent_cloud: AgentCloud, workdir: Path
) -> None:
    agent_cloud.reset()
    assert codex(agent_gateway, "What is 2+2?", workdir).strip().splitlines()[-1] == "4"
    sent = codex_turns(agent_cloud)[0]
    body = sent["body"]
    assert body["model"] == "gpt-5"
    assert body["prompt_cache_key"] and body["client_metadata"] and body["reasoning"]
    assert "reasoning.encrypted_content" in body["include"]
    kinds = {tool["type"] for tool in body["tools"]}
    assert "function" in kinds and kinds - {"function"}, "custom and hosted tools arrive as sent"
    assert sent["headers"]["authorization"] == "Bearer sk-stand-in"


def test_codex_runs_a_tool_and_its_encrypted_reasoning_comes_back(
    agent_gateway: Gateway, agent_cloud: AgentCloud, workdir: Path
) -> None:
    agent_cloud.reset()
    answer = codex(agent_gateway, f"Please read the file {workdir / 'notes.txt'} and tell me what it holds.", workdir)
    assert "pelican" in answer
    turns = codex_turns(agent_cloud)
    asked = next(t for t in turns if any(i["type"] == "function_call" for i in t["answer"]))
    reasoning = next(i for i in asked["answer"] if i["type"] == "reasoning")
    follow_up = turns[turns.index(asked) + 1]["body"]["input"]
    sent_back = [i for i in follow_up if i.get("type") == "reasoning"]
    assert any(i.get("encrypted_content") == reasoning["encrypted_content"] for i in sent_back)
    output = next(i for i in follow_up if i.get("type") == "function_call_output")
    assert re.search("pelican", str(output["output"]))
