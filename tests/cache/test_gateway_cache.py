"""The cache through real gateways and the official openai client: on the memory store (one process)
and on a real Redis shared by two gateway processes, through the same cases."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import CLOUD_KEY_ENV, Gateway, start_gateway
from tests.servers import RedisServer

FAST = {"temperature": 0, "max_tokens": 8}


@dataclass(frozen=True)
class Pair:
    """Where answers are cached (`first`) and where they are looked up (`second`): one memory gateway
    twice, or two gateways sharing one Redis."""

    first: Gateway
    second: Gateway
    store: str
    redis_url: str = ""


@pytest.fixture(scope="module")
def memory_gateway(stand_in_cloud: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with start_gateway(tmp_path_factory.mktemp("cache-mem"), stand_in_cloud, {CLOUD_KEY_ENV: "sk"}, "/readyz") as gw:
        yield gw


@pytest.fixture(scope="module")
def redis_gateways(
    stand_in_cloud: str, redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, Gateway]]:
    if redis_server.process is None:
        redis_server.start()
    env = {CLOUD_KEY_ENV: "sk", "ROUTER_REDIS_URL": redis_server.url}
    with (
        start_gateway(tmp_path_factory.mktemp("cache-r1"), stand_in_cloud, env, "/readyz") as one,
        start_gateway(tmp_path_factory.mktemp("cache-r2"), stand_in_cloud, env, "/readyz") as two,
    ):
        yield one, two


@pytest.fixture(params=["memory", "redis"])
def pair(request: pytest.FixtureRequest) -> Pair:
    if request.param == "memory":
        gw = request.getfixturevalue("memory_gateway")
        return Pair(gw, gw, "memory")
    one, two = request.getfixturevalue("redis_gateways")
    return Pair(one, two, "redis", request.getfixturevalue("redis_server").url)


def team() -> dict[str, str]:
    """A tenant of the test's own, so that no other test's entries can answer it."""
    return {"x-team": f"t-{uuid.uuid4().hex[:8]}"}


def ask(gw: Gateway, text: str, headers: dict[str, str], **params: object):
    client = openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}], extra_headers=headers, **{**FAST, **params}
    )
    return raw.headers, raw.parse()


def ask_streaming(gw: Gateway, text: str, headers: dict[str, str]) -> tuple[httpx.Headers, str, object]:
    client = openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": text}],
        extra_headers=headers,
        stream=True,
        stream_options={"include_usage": True},
        **FAST,
    )
    chunks = list(raw.parse())
    text_out = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = next(c.usage for c in chunks if c.usage is not None)
    return raw.headers, text_out, usage


def wait_for_sync(pair: Pair) -> None:
    """Two replicas: the second learns of the first's insert through Redis within a poll (200 ms)."""
    if pair.first is not pair.second:
        time.sleep(0.6)


def test_an_exact_repeat_is_served_from_the_cache(pair: Pair) -> None:
    who = team()
    headers, first = ask(pair.first, "Name a primary colour.", who)
    assert headers["x-router-cache"] == "miss" and headers["x-router-route"] == "local"
    wait_for_sync(pair)
    headers, again = ask(pair.second, "Name a primary colour.", who)
    assert headers["x-router-cache"] == "hit-exact" and headers["x-router-route"] == "cache"
    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.usage.completion_tokens == first.usage.completion_tokens
    assert float(headers["x-router-cost-usd"]) == 0.0 and float(headers["x-router-saved-usd"]) > 0.0


def test_a_hit_on_a_stream_is_streamed_and_a_streamed_answer_is_kept(pair: Pair) -> None:
    who = team()
    _, answer = ask(pair.first, "Say hello politely.", who)
    wait_for_sync(pair)
    headers, streamed, usage = ask_streaming(pair.second, "Say hello politely.", who)
    assert headers["x-router-cache"] == "hit-exact" and headers["content-type"].startswith("text/event-stream")
    assert streamed == answer.choices[0].message.content
    assert usage.completion_tokens == answer.usage.completion_tokens

    headers, streamed, _ = ask_streaming(pair.first, "Count to three.", who)
    assert headers["x-router-cache"] == "miss"
    wait_for_sync(pair)
    headers, answer = ask(pair.second, "Count to three.", who)
    assert headers["x-router-cache"] == "hit-exact" and answer.choices[0].message.content == streamed


def test_a_paraphrase_hits_and_a_different_question_does_not(pair: Pair) -> None:
    who = team()
    _, original = ask(pair.first, "How do I reset my password?", who)
    wait_for_sync(pair)
    headers, answer = ask(pair.second, "I forgot my password, how can I change it?", who)
    assert headers["x-router-cache"] == "hit-semantic"
    assert 0.88 <= float(headers["x-router-cache-similarity"]) < 1.0
    assert answer.choices[0].message.content == original.choices[0].message.content
    headers, _ = ask(pair.second, "How do I reset my router?", who)
    assert headers["x-router-cache"] == "miss"


def test_one_tenant_never_receives_anothers_answer(pair: Pair) -> None:
    a, b = team(), team()
    ask(pair.first, "What is the tallest mountain?", a)
    wait_for_sync(pair)
    for text in ("What is the tallest mountain?", "Which mountain is the tallest?"):
        headers, _ = ask(pair.second, text, {**b, "cache-control": "no-store"})  # looks up, keeps nothing
        assert headers["x-router-cache"] == "miss", text
    headers, _ = ask(pair.second, "What is the tallest mountain?", a)
    assert headers["x-router-cache"] == "hit-exact"


def test_clients_bypass_with_cache_control_and_sampled_requests_are_not_cached(memory_gateway: Gateway) -> None:
    who = team()
    headers, _ = ask(memory_gateway, "Name a fruit.", {**who, "cache-control": "no-store"})
    assert headers["x-router-cache"] == "miss"
    headers, _ = ask(memory_gateway, "Name a fruit.", who)
    assert headers["x-router-cache"] == "miss"  # no-store kept the first answer out
    headers, _ = ask(memory_gateway, "Name a fruit.", {**who, "cache-control": "no-cache"})
    assert headers["x-router-cache"] == "bypass" and headers["x-router-route"] == "local"
    headers, _ = ask(memory_gateway, "Name a fruit.", who)
    assert headers["x-router-cache"] == "hit-exact"
    for _ in range(2):
        headers, _ = ask(memory_gateway, "Name a vegetable.", who, temperature=0.8)
        assert headers["x-router-cache"] == "bypass"


def test_stats_report_the_cache_and_the_cli_clears_one_tenant(pair: Pair) -> None:
    a, b = team(), team()
    for who in (a, b):
        ask(pair.first, "Name a planet.", who)
    wait_for_sync(pair)
    stats = httpx.get(f"{pair.second.url}/v1/router/stats", timeout=10).json()["cache"]
    assert stats["store"] == pair.store and stats["entries"] >= 2 and stats["bytes"] > 0
    env = {**os.environ, "ROUTER_REDIS_URL": ""}
    args = [sys.executable, "-m", "router", "cache", "clear", "--tenant", a["x-team"]]
    if pair.store == "memory":
        args += ["--url", pair.first.url]
    else:
        env["ROUTER_REDIS_URL"] = pair.redis_url
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "cleared 1 entries"
    wait_for_sync(pair)
    assert ask(pair.second, "Name a planet.", a)[0]["x-router-cache"] == "miss"
    assert ask(pair.second, "Name a planet.", b)[0]["x-router-cache"] == "hit-exact"


def test_redis_stopped_mid_run_loses_no_request_and_caching_resumes(
    redis_gateways: tuple[Gateway, Gateway], redis_server: RedisServer, tmp_path: Path
) -> None:
    one, two = redis_gateways
    who = team()
    failures: list[str] = []
    stop = threading.Event()

    def load(gw: Gateway) -> None:
        i = 0
        while not stop.is_set():
            try:
                ask(gw, f"Say the number {i % 3}.", who)
            except Exception as exc:  # any failure is the test failing
                failures.append(repr(exc))
            i += 1

    threads = [threading.Thread(target=load, args=(gw,)) for gw in (one, two)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    redis_server.stop()
    time.sleep(2.0)
    redis_server.start()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    deadline = time.monotonic() + 20
    while True:
        ask(one, "Name a shape.", who)
        time.sleep(0.3)
        if ask(two, "Name a shape.", who)[0]["x-router-cache"] == "hit-exact":
            break
        assert time.monotonic() < deadline, "caching did not resume after Redis came back"
    ready = httpx.get(f"{two.url}/readyz", timeout=10).json()
    assert ready["shared_state"] == "redis" and ready["cache"]["synced"] is True
