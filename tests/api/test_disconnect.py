"""A client that goes away frees the local model: the abandoned generation stops within a token or so."""

from __future__ import annotations

import json
import time

import httpx

from tests.conftest import Gateway

# Gemma's end-of-sequence and end-of-turn tokens, suppressed so that the abandoned generation could
# only end by reaching max_tokens (thousands of tokens) or by being cancelled.
NEVER_STOP = {"1": -100, "106": -100}
LONG = 1500


def wait_for(predicate, timeout_s: float = 120.0) -> None:
    """Wait for a state change the server reports; the bound only keeps a broken server from hanging CI."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "the gateway never reported the expected state"
        time.sleep(0.1)


def start_long_stream_and_hang_up(gateway: Gateway) -> None:
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": "Count from one to a million."}],
        "max_tokens": LONG,
        "logit_bias": NEVER_STOP,
        "stream": True,
    }
    with (
        httpx.Client(timeout=120) as client,
        client.stream("POST", f"{gateway.v1}/chat/completions", json=body) as r,
    ):
        assert r.status_code == 200
        received = 0
        for line in r.iter_lines():
            if line.startswith("data: ") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                received += 1
                if received == 3:
                    break  # leaving the block closes the connection mid-stream


def test_disconnect_mid_stream_cancels_the_local_generation(gateway: Gateway) -> None:
    before = gateway.stats()
    start_long_stream_and_hang_up(gateway)
    wait_for(lambda: gateway.stats()["cancelled"] == before["cancelled"] + 1 and gateway.stats()["busy"] == 0)
    after = gateway.stats()
    abandoned = after["abandoned_tokens"] - before["abandoned_tokens"]
    assert 3 <= abandoned < LONG, f"the abandoned generation ran {abandoned} tokens"
    # The model is free: the next request is served (it would queue behind ~1500 tokens otherwise).
    response = httpx.post(
        f"{gateway.v1}/chat/completions",
        json={"model": "local", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2},
        timeout=120,
    )
    assert response.status_code == 200
    assert gateway.stats()["served"] > after["served"]


def test_disconnect_while_waiting_for_a_non_streamed_answer_cancels_it(gateway: Gateway) -> None:
    before = gateway.stats()
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": "Count from one to a million."}],
        "max_tokens": LONG,
        "logit_bias": NEVER_STOP,
    }
    with httpx.Client(timeout=httpx.Timeout(120, read=1.5)) as client:
        try:
            client.post(f"{gateway.v1}/chat/completions", json=body)
        except httpx.ReadTimeout:
            pass  # we hang up after 1.5 s without an answer
        else:
            raise AssertionError("a 1500-token answer should not arrive within the read timeout")
    wait_for(lambda: gateway.stats()["cancelled"] == before["cancelled"] + 1 and gateway.stats()["busy"] == 0)
    assert gateway.stats()["abandoned_tokens"] - before["abandoned_tokens"] < LONG
