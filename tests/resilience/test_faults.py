"""Each failure kind, injected by a real stand-in cloud: every request gets an answer or a clear error."""

from __future__ import annotations

import threading
import time

import httpx
import openai
import pytest

from tests.api.test_disconnect import NEVER_STOP, wait_for
from tests.conftest import FaultyCloud, Gateway

HI = [{"role": "user", "content": "Say hi."}]


@pytest.fixture()
def client(resilient_gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=resilient_gateway.v1, api_key="unused", max_retries=0, timeout=60)


def ask(client: openai.OpenAI, model: str = "cloud", headers: dict[str, str] | None = None, **kw):
    return client.chat.completions.with_raw_response.create(
        model=model, messages=kw.pop("messages", HI), max_tokens=8, extra_headers=headers or {}, **kw
    )


def metric(gateway: Gateway, name: str, **labels: str) -> float:
    """A sample's value from /metrics (0 when absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in httpx.get(f"{gateway.url}/metrics").text.splitlines():
        if line.startswith(f"{name}{{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
        if not labels and line.startswith(f"{name} "):
            return float(line.rsplit(" ", 1)[1])
    assert want is not None
    return 0.0


def test_a_5xx_is_retried_and_the_cloud_answers(client, faulty_cloud: FaultyCloud, resilient_gateway) -> None:
    before = metric(resilient_gateway, "router_upstream_retries_total", model="flaky", reason="error")
    faulty_cloud.set("error500", times=1)
    raw = ask(client)
    assert raw.headers["x-router-route"] == "cloud"
    assert "x-router-fallback" not in raw.headers
    assert raw.parse().choices[0].message.content == "Hello from the stand-in cloud."
    assert len(faulty_cloud.calls()) == 2
    assert metric(resilient_gateway, "router_upstream_retries_total", model="flaky", reason="error") == before + 1


def test_429_is_retried_after_the_upstreams_retry_after(client, faulty_cloud: FaultyCloud) -> None:
    faulty_cloud.set("rate_limit", times=1, retry_after=1)
    raw = ask(client)
    assert raw.headers["x-router-route"] == "cloud"
    first, second = faulty_cloud.calls()
    assert second - first >= 0.95  # the server's own clock: the gateway waited as it was told


def test_a_retry_after_longer_than_allowed_falls_back_at_once(client, faulty_cloud: FaultyCloud) -> None:
    faulty_cloud.set("rate_limit", times=1, retry_after=60)
    raw = ask(client)
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-fallback"] == "cloud->local"
    assert "rate limit" in raw.headers["x-router-fallback-reason"]
    assert len(faulty_cloud.calls()) == 1


def test_a_4xx_is_neither_retried_nor_sent_elsewhere(client, faulty_cloud: FaultyCloud) -> None:
    faulty_cloud.set("bad_request", times=1)
    with pytest.raises(openai.BadRequestError) as caught:
        ask(client)
    assert "injected bad request" in caught.value.message
    assert len(faulty_cloud.calls()) == 1


def test_a_cloud_that_keeps_failing_is_answered_locally(client, faulty_cloud: FaultyCloud, resilient_gateway) -> None:
    before = metric(resilient_gateway, "router_fallbacks_total", from_route="cloud", to_route="local", reason="error")
    faulty_cloud.set("error500")
    raw = ask(client)
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-model"] == "gemma-3-270m"
    assert raw.headers["x-router-fallback"] == "cloud->local"
    assert raw.headers["x-router-fallback-reason"].startswith("flaky:")
    assert raw.parse().usage.completion_tokens > 0
    assert len(faulty_cloud.calls()) == 3  # all attempts, then the fallback
    after = metric(resilient_gateway, "router_fallbacks_total", from_route="cloud", to_route="local", reason="error")
    assert after == before + 1


def test_a_hang_is_cut_by_the_timeout_and_retried(client, faulty_cloud: FaultyCloud) -> None:
    faulty_cloud.set("hang", times=1)
    raw = ask(client)
    assert raw.headers["x-router-route"] == "cloud"
    assert len(faulty_cloud.calls()) == 2


def test_a_hung_non_streamed_call_falls_back_within_its_own_bound_not_the_request_deadline(
    client, faulty_cloud: FaultyCloud
) -> None:
    faulty_cloud.set("hang", times=1)
    started = time.monotonic()
    raw = ask(client, model="auto", headers={"x-test": "hung"})
    took = time.monotonic() - started
    assert raw.headers["x-router-fallback"] == "cloud->local"
    assert "did not answer in time" in raw.headers["x-router-fallback-reason"]
    assert took < 30  # the bound is 1 s + 8 tokens at 100/s; total_s (300 s) never came into it


def test_a_slow_first_byte_on_a_stream_is_retried_before_anything_is_sent(client, faulty_cloud: FaultyCloud) -> None:
    faulty_cloud.set("slow_first_byte", times=1, delay_s=5)
    chunks = list(client.chat.completions.create(model="cloud", messages=HI, max_tokens=8, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the stand-in cloud."
    assert len(faulty_cloud.calls()) == 2


def test_a_stream_that_fails_before_its_first_chunk_falls_back_transparently(client, faulty_cloud) -> None:
    faulty_cloud.set("error500")
    with client.chat.completions.with_streaming_response.create(
        model="cloud", messages=HI, max_tokens=6, stream=True
    ) as response:
        assert response.headers["x-router-fallback"] == "cloud->local"
        chunks = list(response.parse())
    assert chunks[-1].choices[0].finish_reason in ("stop", "length")


def test_a_stream_dropped_mid_way_ends_with_an_error_the_client_sees(client, faulty_cloud: FaultyCloud) -> None:
    faulty_cloud.set("drop_mid_stream")
    received = []
    with pytest.raises(openai.APIError) as caught:
        for chunk in client.chat.completions.create(model="cloud", messages=HI, max_tokens=8, stream=True):
            received.extend(c.delta.content for c in chunk.choices if c.delta.content)
    assert received == ["Hello", " from"]
    assert "flaky" in str(caught.value)


def test_connection_refused_falls_back_to_local(client, faulty_cloud: FaultyCloud) -> None:
    raw = ask(client, "auto", {"x-test": "dead"})
    assert raw.headers["x-router-reason"] == "to-dead"
    assert raw.headers["x-router-route"] == "local"
    assert raw.headers["x-router-fallback"] == "cloud->local"
    assert "cannot reach dead" in raw.headers["x-router-fallback-reason"]


def test_the_client_deadline_bounds_the_whole_request(client, faulty_cloud: FaultyCloud) -> None:
    faulty_cloud.set("hang")
    started = time.monotonic()
    with pytest.raises(openai.APIStatusError) as caught:
        ask(client, headers={"x-router-timeout": "2.5"})
    assert caught.value.status_code == 504
    assert time.monotonic() - started < 30  # bounded by the deadline, not by the hang


def test_an_invalid_deadline_header_is_a_400(client) -> None:
    with pytest.raises(openai.BadRequestError):
        ask(client, headers={"x-router-timeout": "soon"})


def test_breaker_opens_skips_the_dead_backend_then_probes_and_recovers(
    client, faulty_cloud: FaultyCloud, resilient_gateway: Gateway
) -> None:
    fragile = {"x-test": "fragile"}
    faulty_cloud.set("error500")
    for _ in range(3):  # consecutive_failures: 3, one attempt each
        assert ask(client, "auto", fragile).headers["x-router-fallback"] == "cloud->local"
    assert len(faulty_cloud.calls()) == 3
    assert metric(resilient_gateway, "router_breaker_state", model="fragile") == 2

    skipped = ask(client, "auto", fragile)  # open: skipped at once, the cloud sees nothing
    assert "circuit open" in skipped.headers["x-router-fallback-reason"]
    assert len(faulty_cloud.calls()) == 3

    # After the cool-down one probe goes through; it fails, so the circuit opens again.
    wait_for(lambda: len(faulty_cloud.calls()) == 4 or ask(client, "auto", fragile) is None, timeout_s=30)
    assert metric(resilient_gateway, "router_breaker_state", model="fragile") == 2

    faulty_cloud.set("ok")
    wait_for(lambda: ask(client, "auto", fragile).headers["x-router-route"] == "cloud", timeout_s=30)
    assert metric(resilient_gateway, "router_breaker_state", model="fragile") == 0
    assert ask(client, "auto", fragile).headers["x-router-route"] == "cloud"


def test_a_busy_local_model_hands_over_to_the_cloud_but_a_pinned_request_never_does(
    client, faulty_cloud: FaultyCloud, resilient_gateway: Gateway
) -> None:
    stop = threading.Event()
    streaming = threading.Thread(target=_hold_the_local_model, args=(resilient_gateway, stop))
    streaming.start()
    try:
        wait_for(lambda: resilient_gateway.stats()["busy"] == 1)
        handed_over = ask(client, "local")
        assert handed_over.headers["x-router-route"] == "cloud"
        assert handed_over.headers["x-router-fallback"] == "local->cloud"
        calls = len(faulty_cloud.calls())

        with pytest.raises(openai.APIStatusError) as caught:
            ask(client, "auto", messages=[{"role": "user", "content": "About secret-project: hi"}])
        assert caught.value.status_code == 503
        assert caught.value.response.headers["retry-after"] == "1"
        assert "pins this request to local" in caught.value.message
        assert len(faulty_cloud.calls()) == calls  # nothing reached the cloud
    finally:
        stop.set()
        streaming.join(timeout=120)
    wait_for(lambda: resilient_gateway.stats()["busy"] == 0)


def _hold_the_local_model(gateway: Gateway, stop: threading.Event) -> None:
    body = {
        "model": "local",
        "messages": [{"role": "user", "content": "Count to a million."}],
        "max_tokens": 1500,
        "logit_bias": NEVER_STOP,
        "stream": True,
    }
    with httpx.Client(timeout=120) as http, http.stream("POST", f"{gateway.v1}/chat/completions", json=body) as r:
        for _ in r.iter_lines():
            if stop.is_set():
                return
