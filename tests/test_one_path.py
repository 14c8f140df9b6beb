"""One request path: the gateway's HTTP answer, `/v1/router/explain`, `router route --json` and `router policy
test` decide the same request the same way, sticky sessions, budgets and classifier scores included.

A gateway and the CLI share one real Redis (sessions, spend), so each probe is asked of explain and of
the CLI first (neither counts anything), then sent for real; the next probe sees what the real one left
behind (a conversation the cloud answered, a team's spend).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import CLOUD_KEY_ENV, FaultyCloud, Gateway, config_gateway, stand_in_config
from tests.servers import RedisServer

REPO = Path(__file__).parents[1]
POLICY = """\
default: {route: local, session: sticky}
rules:
  - name: deep-thought
    when: {keywords: [prove]}
    route: cloud
    session: sticky
  - name: let-the-classifier-say
    when: {keywords: [maybe]}
    route: auto
    threshold: 0.5
    session: sticky
tests:
  - name: a conversation the cloud answered stays there
    prompt: thanks, and now say hi
    escalated_before: true
    expect: {route: cloud}
  - name: a team over budget gets the local model
    prompt: prove that 2 is prime
    headers: {x-team: research}
    budget: over
    expect: {route: local}
"""


@pytest.fixture(scope="module")
def shared(
    faulty_cloud_session: FaultyCloud, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Path, str]]:
    tmp = tmp_path_factory.mktemp("one-path")
    redis_url = f"{redis_server.url.rstrip('/')}/9"
    limits = {"teams": {"research": {"usd_per_day": 1e-9}}, "on_budget_exceeded": "local"}
    config = stand_in_config(faulty_cloud_session.v1, tmp / "ledger.sqlite", limits=limits, cache={"enabled": False})
    with config_gateway(tmp, config, POLICY, redis_url=redis_url) as gw:
        yield gw, tmp, redis_url


def served(gw: Gateway, messages: list[dict[str, Any]], team: str | None) -> dict[str, str]:
    headers = {"x-team": team} if team else {}
    reply = httpx.post(f"{gw.v1}/chat/completions", json={"model": "auto", "messages": messages, "max_tokens": 8},
                       headers=headers, timeout=60)  # fmt: skip
    assert reply.status_code == 200, reply.text
    said = {"route": reply.headers["x-router-route"], "model": reply.headers["x-router-model"],
            "reason": reply.headers["x-router-reason"]}  # fmt: skip
    if "x-router-score" in reply.headers:
        said["score"] = reply.headers["x-router-score"]
    return said | {"answer": reply.json()["choices"][0]["message"]["content"]}


def explained(gw: Gateway, messages: list[dict[str, Any]], team: str | None) -> dict[str, str]:
    headers = {"x-team": team} if team else {}
    got = httpx.post(f"{gw.url}/v1/router/explain", json={"messages": messages, "headers": headers}, timeout=60)
    assert got.status_code == 200, got.text
    return _told(got.json())


def cli(tmp: Path, redis_url: str, messages: list[dict[str, Any]], team: str | None) -> dict[str, str]:
    args = [sys.executable, "-m", "router", "route", "--json", "--messages", json.dumps(messages),
            "--config", str(tmp / "router.yaml"), "--policy", str(tmp / "policy.yaml")]  # fmt: skip
    if team:
        args += ["--tenant", team]
    env = {**os.environ, "ROUTER_REDIS_URL": redis_url, CLOUD_KEY_ENV: "sk-stand-in"}
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr
    return _told(json.loads(done.stdout))


def _told(explanation: dict[str, Any]) -> dict[str, str]:
    said = {"route": explanation["route"], "model": explanation["model"], "reason": explanation["reason"]}
    if "escalation" in explanation["scores"]:
        said["score"] = f"{explanation['scores']['escalation']:.4f}"
    return said


def agree(gw: Gateway, tmp: Path, redis_url: str, messages: list[dict[str, Any]], team: str | None = None) -> dict:
    """Explain and the CLI first (they count nothing), then the real request: all three must agree."""
    by_explain = explained(gw, messages, team)
    by_cli = cli(tmp, redis_url, messages, team)
    by_http = served(gw, messages, team)
    answer = by_http.pop("answer")
    assert by_explain == by_cli == by_http
    return by_http | {"answer": answer}


def test_http_explain_and_the_cli_decide_alike_through_sessions_budgets_and_scores(
    shared: tuple[Gateway, Path, str],
) -> None:
    gw, tmp, redis_url = shared
    first = [{"role": "user", "content": "Prove that there are infinitely many primes."}]
    up = agree(gw, tmp, redis_url, first, "alpha")
    assert (up["route"], up["reason"]) == ("cloud", "deep-thought")

    # The cloud answered the conversation: its next turn sticks there, for the gateway and the dry runs alike.
    second = [*first, {"role": "assistant", "content": up["answer"]}, {"role": "user", "content": "Thanks, say hi."}]
    sticky = agree(gw, tmp, redis_url, second, "alpha")
    assert (sticky["route"], sticky["reason"]) == ("cloud", "sticky-session")

    # One cloud answer puts the research team over its (tiny) budget: the next one is kept local.
    spent = agree(gw, tmp, redis_url, [{"role": "user", "content": "Prove that 7 is prime."}], "research")
    assert spent["route"] == "cloud"
    over = agree(gw, tmp, redis_url, [{"role": "user", "content": "Prove that 11 is prime."}], "research")
    assert (over["route"], over["reason"]) == ("local", "budget-exceeded")

    # The classifier's score is the same number on every path.
    scored = agree(gw, tmp, redis_url, [{"role": "user", "content": "maybe tell me what 2 + 2 is"}])
    assert "score" in scored


def test_policy_tests_assume_what_the_gateway_would_look_up(shared: tuple[Gateway, Path, str]) -> None:
    _, tmp, redis_url = shared
    config = yaml.safe_load((tmp / "router.yaml").read_text())
    assert config["limits"]["teams"]["research"]
    env = {**os.environ, "ROUTER_REDIS_URL": redis_url, CLOUD_KEY_ENV: "sk-stand-in"}
    args = [sys.executable, "-m", "router", "policy", "test", str(tmp / "policy.yaml"),
            "--config", str(tmp / "router.yaml")]  # fmt: skip
    done = subprocess.run(args, capture_output=True, text=True, timeout=180, cwd=REPO, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed, 0 failed" in done.stdout
