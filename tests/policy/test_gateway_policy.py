"""Policies in a running gateway: privacy pins, redaction, deny, keys, shared budgets and rate limits, hot reload.

Two gateway processes share one real Redis; their cloud model is the fault-injecting stand-in (a real
OpenAI-compatible server whose request log shows what a provider would have seen), reached through the
gateway's own direct cloud backend. Their local model is a server that does not exist, so a request that
must stay local fails instead of being answered, which is exactly what a pinned rule must do then.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from router.keys import hash_key
from router.policy import parse_policy
from tests.conftest import FaultyCloud, Gateway
from tests.servers import RedisServer, free_port, gateway_args, running

KEYS = {"alice": "sk-alice-0123456789", "bob": "sk-bob-0123456789", "carol": "sk-carol-0123456789"}

POLICY = """\
default:
  route: cloud
rules:
  - name: no-secrets
    when: {pii: [secret]}
    deny: "Do not send credentials through the gateway."
  - name: pii-stays-local
    when: {pii: [email, phone, credit_card, iban], scope: all}
    route: local
    pin: true
    cache: false
  - name: summaries-redacted
    priority: 10
    when: {keywords: [summarise]}
    route: cloud
    redact: true
    headers: {OpenAI-Project: proj-summaries}
    cache: false
"""


def config(path: Path, cloud_v1: str) -> Path:
    data = {
        "models": {
            # Nothing listens there: the local model always fails.
            "dead-local": {"engine": "openai-compatible", "tier": "local", "model": "m",
                           "api_base": f"http://127.0.0.1:{free_port()}/v1", "retries": {"attempts": 1}},
            "stand-in": {"engine": "openai-compatible", "tier": "cloud", "model": "stand-in", "api_base": cloud_v1,
                         "retries": {"attempts": 1}, "price": {"output_per_1k_usd": 200.0}},  # $1.00 per answer
        },
        "routes": {"local": "dead-local", "cloud": "stand-in"},
        "cache": {"enabled": False},
        "ledger": {"path": str(path.parent / "ledger.sqlite")},
        "auth": {"keys": [
            {"name": "alice", "team": "team-a", "sha256": hash_key(KEYS["alice"])},
            {"name": "bob", "team": "team-b", "env": "TEST_BOB_KEY"},
            {"name": "carol", "team": "team-c", "sha256": hash_key(KEYS["carol"])},
        ]},
        "limits": {"teams": {"team-a": {"requests_per_minute": 10}, "team-b": {"usd_per_day": 2.5}}},
    }  # fmt: skip
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def gateways(
    faulty_cloud_session: FaultyCloud, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway, Path]]:
    """Two replicas on one Redis; the first one's policy file is ours to rewrite."""
    tmp = tmp_path_factory.mktemp("policy-gw")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    cfg = config(tmp / "router.yaml", faulty_cloud_session.v1)
    env = {"ROUTER_REDIS_URL": redis_server.url, "TEST_BOB_KEY": KEYS["bob"]}
    ports = free_port(), free_port()
    logs = tmp / "a.log", tmp / "b.log"
    with (
        running(gateway_args(ports[0], cfg, policy), f"http://127.0.0.1:{ports[0]}/healthz", logs[0], env=env),
        running(gateway_args(ports[1], cfg, policy), f"http://127.0.0.1:{ports[1]}/healthz", logs[1], env=env),
    ):
        yield Gateway(f"http://127.0.0.1:{ports[0]}", logs[0]), Gateway(f"http://127.0.0.1:{ports[1]}", logs[1]), policy


def client(gw: Gateway, who: str = "carol") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key=KEYS[who], max_retries=0)


def ask(gw: Gateway, text: str, who: str = "carol", **kw: object) -> str:
    answer = client(gw, who).chat.completions.create(model="auto", messages=[{"role": "user", "content": text}], **kw)
    return answer.choices[0].message.content or ""


def test_privacy_pinned_request_never_reaches_the_cloud_even_when_local_fails(
    gateways: tuple[Gateway, Gateway, Path], faulty_cloud: FaultyCloud
) -> None:
    gw = gateways[0]
    with pytest.raises(openai.APIStatusError) as failed:
        ask(gw, "Write to jane.doe@example.com about her order")
    assert failed.value.status_code in (502, 503)
    assert "pins this request to local" in failed.value.message
    with pytest.raises(openai.APIStatusError):  # earlier in the conversation counts too (scope: all)
        client(gw).chat.completions.create(
            model="auto",
            messages=[
                {"role": "user", "content": "my card is 4111 1111 1111 1111"},
                {"role": "assistant", "content": "noted"},
                {"role": "user", "content": "what did I say?"},
            ],
            stream=True,
        )
    assert faulty_cloud.requests() == []  # the stand-in's own log: nothing arrived
    # A request without personal data falls back from the dead local model to the cloud as usual:
    assert ask(gw, "hello") == "Hello from the stand-in cloud."
    assert len(faulty_cloud.requests()) == 1


def test_redaction_hides_pii_from_the_cloud_and_restores_it_in_the_answer(
    gateways: tuple[Gateway, Gateway, Path], faulty_cloud: FaultyCloud
) -> None:
    faulty_cloud.set("ok", echo=True)
    text = "summarise: jane.doe@example.com called from +44 20 7946 0958 about jane.doe@example.com"
    assert ask(gateways[0], text) == text  # the echo comes back with the originals restored
    stream = client(gateways[1]).chat.completions.create(
        model="auto", messages=[{"role": "user", "content": text}], stream=True
    )
    assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == text
    seen = faulty_cloud.requests()
    assert len(seen) == 2
    for call in seen:
        sent = call["messages"][-1]["content"]
        assert sent == "summarise: <EMAIL_1> called from <PHONE_1> about <EMAIL_1>"
        assert call["headers"]["openai-project"] == "proj-summaries"


def test_deny_rule_answers_403_and_calls_no_model(
    gateways: tuple[Gateway, Gateway, Path], faulty_cloud: FaultyCloud
) -> None:
    with pytest.raises(openai.PermissionDeniedError) as denied:
        ask(gateways[0], "use the key sk-proj-abcdefghijklmnopqrstuvwxyz123456")
    assert denied.value.body["message"] == "Do not send credentials through the gateway."
    assert denied.value.body["code"] == "denied_by_policy"
    assert faulty_cloud.requests() == []


def test_keys_are_required_and_named_by_hash_or_env(gateways: tuple[Gateway, Gateway, Path]) -> None:
    gw = gateways[0]
    assert httpx.post(f"{gw.v1}/chat/completions", json={"model": "auto", "messages": []}).status_code == 401
    wrong = httpx.post(
        f"{gw.v1}/chat/completions",
        headers={"Authorization": "Bearer sk-nobody"},
        json={"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    )
    assert wrong.status_code == 401
    assert ask(gw, "hello", who="bob") == "Hello from the stand-in cloud."  # bob's key came from the environment


def _start_of_a_fresh_minute() -> None:
    """Rate limits count in one-minute windows: make sure a burst does not straddle two."""
    if time.time() % 60 > 45:
        time.sleep(60 - time.time() % 60 + 0.1)


def test_rate_limit_is_shared_by_two_replicas(gateways: tuple[Gateway, Gateway, Path]) -> None:
    _start_of_a_fresh_minute()
    admitted, refused = 0, []
    for i in range(20):
        try:
            ask(gateways[i % 2], f"hello {i}", who="alice")
            admitted += 1
        except openai.RateLimitError as exc:
            refused.append(exc)
    assert admitted == 10 and len(refused) == 10
    error = refused[0]
    assert error.body["code"] == "rate_limit_exceeded"
    assert "Rate limit reached for team:team-a: 10 requests per minute" in error.message
    assert 1 <= int(error.response.headers["retry-after"]) <= 60
    assert error.response.headers["x-ratelimit-remaining-requests"] == "0"


def test_budget_is_shared_by_two_replicas(gateways: tuple[Gateway, Gateway, Path]) -> None:
    a, b = gateways[0], gateways[1]
    explain = httpx.post(
        f"{a.url}/v1/router/explain",
        headers={"Authorization": f"Bearer {KEYS['bob']}"},
        json={"messages": [{"role": "user", "content": "hello"}]},
    ).json()
    spent_before = explain["budget"]["spent_usd"]
    # Each answer costs $1.00 (5 completion tokens at $200 per 1k); the budget is $2.50 a day.
    answers = 0
    for i in range(6):
        try:
            ask((a, b)[i % 2], f"hi {i}", who="bob")
            answers += 1
        except openai.RateLimitError as exc:
            assert exc.body["code"] == "budget_exceeded"
            assert "team:team-b spent $3.0000 of $2.5 this day" in exc.message
            break
    assert spent_before + answers == 3.0  # two replicas, one budget: the third answer crossed it
    explain = httpx.post(
        f"{b.url}/v1/router/explain",
        headers={"Authorization": f"Bearer {KEYS['bob']}"},
        json={"messages": [{"role": "user", "content": "hello"}]},
    ).json()
    assert explain["budget"]["state"] == "over"
    assert explain["deny"]["status"] == 429


def _version(text: str) -> str:
    return parse_policy(text, "x").version


def _policy_version(gw: Gateway) -> dict:
    return httpx.get(f"{gw.url}/v1/router/policy", headers={"Authorization": f"Bearer {KEYS['carol']}"}).json()


def test_hot_reload_under_load_never_fails_a_request(gateways: tuple[Gateway, Gateway, Path]) -> None:
    gw, _, policy = gateways
    failures: list[str] = []
    served = 0
    stop = threading.Event()

    def load() -> None:
        nonlocal served
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {KEYS['carol']}"}) as http:
            while not stop.is_set():
                r = http.post(
                    f"{gw.v1}/chat/completions",
                    json={"model": "auto", "messages": [{"role": "user", "content": "marker"}]},
                )
                if r.status_code != 200:
                    failures.append(f"{r.status_code} {r.text}")
                served += 1

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    broken = [
        ("rules:\n  - name: x\n    when: {keywords: [a]\n", "invalid YAML"),  # unclosed flow mapping
        ("rules:\n  - name: x\n    when: {keywordz: [a]}\n    route: cloud\n", "policy.yaml:3"),
        ("rules:\n  - name: x\n    when: {regex: ['(']}\n    route: cloud\n", "invalid regular expression"),
        ("rules:\n  - name: x\n    when: {keywords: [a]}\n    route: gpt-17\n", "unknown route `gpt-17`"),
    ]
    delays = []
    try:
        for i in range(20):
            before = _policy_version(gw)["version"]
            if i % 5 == 4:
                text, expected_error = broken[i // 5]
                policy.write_text(text)
                deadline = time.monotonic() + 15
                while _policy_version(gw)["reload"]["last_error"] is None and time.monotonic() < deadline:
                    time.sleep(0.05)
                status = _policy_version(gw)
                assert expected_error in status["reload"]["last_error"]
                assert status["version"] == before  # the last good policy stays in force
                continue
            text = POLICY + f"  - name: marker-{i}\n    when: {{keywords: [marker]}}\n    route: cloud\n"
            written = time.monotonic()
            policy.write_text(text)
            deadline = written + 15
            while _policy_version(gw)["version"] != _version(text) and time.monotonic() < deadline:
                time.sleep(0.02)
            delays.append(time.monotonic() - written)
            status = _policy_version(gw)
            assert status["version"] == _version(text)
            assert status["reload"]["last_error"] is None
            assert status["rules"][-1]["name"] == f"marker-{i}"
    finally:
        stop.set()
        for t in threads:
            t.join()
        policy.write_text(POLICY)
    print(f"reload applied after {max(delays):.2f} s at most ({len(delays)} edits); {served} requests served")
    assert failures == []
    assert served > 20
    assert "policy reload refused" in gw.log.read_text()


def test_budget_spent_before_a_restart_still_counts_without_redis(
    faulty_cloud_session: FaultyCloud, tmp_path: Path
) -> None:
    """No Redis: the gateway reads the month's spend back from its SQLite ledger when it starts."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    cfg = config(tmp_path / "router.yaml", faulty_cloud_session.v1)
    env = {"TEST_BOB_KEY": KEYS["bob"], "ROUTER_REDIS_URL": ""}

    def spent(gw: Gateway) -> float:
        explain = httpx.post(
            f"{gw.url}/v1/router/explain",
            headers={"Authorization": f"Bearer {KEYS['bob']}"},
            json={"messages": [{"role": "user", "content": "hello"}]},
        ).json()
        return explain["budget"]["spent_usd"]

    for run in range(2):
        port = free_port()
        log = tmp_path / f"run-{run}.log"
        with running(gateway_args(port, cfg, policy), f"http://127.0.0.1:{port}/healthz", log, env=env):
            gw = Gateway(f"http://127.0.0.1:{port}", log)
            if run == 0:
                assert spent(gw) == 0.0
                ask(gw, "first", who="bob")
                ask(gw, "second", who="bob")  # $2.00 of the $2.50
                assert spent(gw) == 2.0
            else:  # restarted: the $2.00 is still spent, so the next answer crosses the budget
                assert spent(gw) == 2.0
                ask(gw, "third", who="bob")
                with pytest.raises(openai.RateLimitError):
                    ask(gw, "fourth", who="bob")
        # stopping with SIGTERM flushes the ledger's pending records to SQLite
    assert "restored from the ledger" in (tmp_path / "run-1.log").read_text()
