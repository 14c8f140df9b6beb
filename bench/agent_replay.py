"""A recorded coding-agent session replayed through the gateway: how many calls and tokens stay local.

    python -m bench.agent_replay --record bench/.work/claude-session.jsonl   # record one (Claude Code, tmux)
    python -m bench.agent_replay --session bench/.work/claude-session.jsonl  # replay it

Recording runs the real Claude Code (tests/agents/node_modules, `scripts/ensure-test-tools` installs it)
interactively in tmux against the agent stand-in cloud (`tests/agent_cloud.py`), types the session's
prompts one by one, and keeps every request the CLI sent (body and Anthropic headers) in a JSONL file.
Nothing of it is committed: the requests hold Claude Code's own system prompt.

Replay sends each recorded request, as recorded, through `router serve` twice in one run: with the
shipped coding-agent policy and, as the baseline, with the default policy. The local tier is the
shipped default model (in-process), the cloud an Anthropic model that is the stand-in. Reported: calls
and input tokens answered locally, by policy; tokens are the gateway's own count (`count_tokens`: system
and messages, plus the tools' definitions as JSON), the same for both routes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from router.config import DEFAULT_LOCAL_MODEL
from tests.servers import free_port, gateway_args, running

HERE = Path(__file__).parent
REPO = HERE.parent
CLAUDE = REPO / "tests" / "agents" / "node_modules" / ".bin" / "claude"
KEY_ENV = "AGENT_REPLAY_KEY"
PROMPTS = (
    "Please read the file {work}/app.py and tell me what it holds.",
    "Please read the file {work}/notes.txt and tell me what it holds.",
    "What is 2+2?",
)
FORWARDED = ("anthropic-version", "anthropic-beta", "user-agent", "x-app")


def stand_in(log: Path) -> tuple[Any, str]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    server = running([sys.executable, "-m", "tests.agent_cloud", "--port", str(port)], f"{url}/v1/models", log)
    return server, url


def _tmux(*args: str) -> None:
    subprocess.run(["tmux", *args], check=True)


def record(out: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        work, home = tmp / "work", tmp / "home"
        work.mkdir()
        home.mkdir()
        (work / "app.py").write_text("print('hello from the app')\n")
        (work / "notes.txt").write_text("The secret word is pelican.\n")
        # A first start's questions answered beforehand: onboarding done, the folder trusted, the key approved.
        (home / ".claude.json").write_text(json.dumps({
            "hasCompletedOnboarding": True, "customApiKeyResponses": {"approved": ["sk-replay"], "rejected": []},
            "projects": {str(work): {"hasTrustDialogAccepted": True}},
        }))  # fmt: skip
        server, url = stand_in(tmp / "cloud.log")
        with server:
            command = f"env HOME={home} ANTHROPIC_BASE_URL={url} ANTHROPIC_API_KEY=sk-replay {CLAUDE}"
            _tmux("new-session", "-d", "-s", "agent-replay", "-x", "200", "-y", "50", "-c", str(work), command)
            try:
                time.sleep(10)
                for prompt in PROMPTS:
                    _tmux("send-keys", "-t", "agent-replay", "-l", prompt.format(work=work))
                    time.sleep(1)
                    _tmux("send-keys", "-t", "agent-replay", "Enter")
                    time.sleep(25)
            finally:
                subprocess.run(["tmux", "kill-session", "-t", "agent-replay"], check=False)
            seen = httpx.get(f"{url}/calls").json()["requests"]
    rows = [{"path": r["path"], "headers": {k: v for k, v in r["headers"].items() if k in FORWARDED},
             "body": r["body"]} for r in seen if r["path"] == "/v1/messages"]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f"recorded {len(rows)} requests to {out}")


def config(cloud: str, ledger: Path) -> dict[str, Any]:
    return {
        "models": {
            DEFAULT_LOCAL_MODEL: {"engine": "llama-cpp"},  # the shipped default, as `router serve` runs it
            "claude": {"engine": "litellm", "model": "anthropic/claude-sonnet-4-5", "api_base": cloud,
                       "api_key_env": KEY_ENV},
        },
        "routes": {"cloud": ["claude"]},
        "ledger": {"path": str(ledger)},
    }  # fmt: skip


def _input_tokens(base: str, body: dict[str, Any]) -> int:
    """The request's input in the gateway's own tokens (the local model's vocabulary), for both routes
    alike: system and messages (`count_tokens`), plus the tools' definitions as JSON."""

    def count(**fields: Any) -> int:
        answer = httpx.post(f"{base}/v1/messages/count_tokens", json={"model": "auto", **fields}, timeout=60)
        answer.raise_for_status()
        return int(answer.json()["input_tokens"])

    total = count(messages=body["messages"], system=body.get("system"))
    if body.get("tools"):
        total += count(messages=[{"role": "user", "content": json.dumps(body["tools"])}])
    return total


def replay(rows: list[dict[str, Any]], policy: str, cloud: str, tmp: Path) -> dict[str, Any]:
    (tmp / "router.yaml").write_text(yaml.safe_dump(config(cloud, tmp / "ledger.sqlite")))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = {KEY_ENV: "sk-replay"}
    args = gateway_args(port, tmp / "router.yaml", REPO / "policies" / policy)
    calls = {"local": 0, "cloud": 0}
    tokens = {"local": 0, "cloud": 0}
    with running(args, f"{base}/readyz", tmp / "gateway.log", env={**os.environ, **env}):
        for row in rows:
            body = {**row["body"], "stream": False}
            answer = httpx.post(f"{base}/v1/messages", json=body, headers=row["headers"], timeout=600)
            answer.raise_for_status()
            route = answer.headers["x-router-route"]
            prompt = _input_tokens(base, row["body"])
            calls[route] = calls.get(route, 0) + 1
            tokens[route] = tokens.get(route, 0) + prompt
            print(f"{policy:18} {route:5} {prompt:7} tokens  {answer.headers['x-router-reason']}", file=sys.stderr)
    return {"calls": calls, "tokens": tokens}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--record", type=Path, help="Record a Claude Code session to this JSONL file.")
    parser.add_argument("--session", type=Path, help="Replay this recorded session.")
    args = parser.parse_args()
    if args.record:
        record(args.record)
        return
    rows = [json.loads(line) for line in args.session.read_text().splitlines() if line.strip()]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        server, cloud = stand_in(tmp / "cloud.log")
        with server:
            results = {}
            for policy in ("coding-agent.yaml", "default.yaml"):
                (tmp / policy).mkdir()
                results[policy] = replay(rows, policy, cloud, tmp / policy)
    print(f"{len(rows)} recorded requests\n\n| policy | calls local | prompt tokens local |\n| --- | --- | --- |")
    for policy, result in results.items():
        calls, tokens = result["calls"], result["tokens"]
        share = calls["local"] / max(1, sum(calls.values()))
        token_share = tokens["local"] / max(1, sum(tokens.values()))
        print(f"| {policy} | {calls['local']} of {sum(calls.values())} ({share:.0%}) | "
              f"{tokens['local']:,} of {sum(tokens.values()):,} ({token_share:.0%}) |")  # fmt: skip


if __name__ == "__main__":
    main()
