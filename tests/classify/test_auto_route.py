"""`route: auto` in a real gateway: the classifier's score decides, and the response says so."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.conftest import CLOUD_KEY_ENV, HERE, Gateway, write_config
from tests.servers import free_port, gateway_args, running

HI = [{"role": "user", "content": "Prove that there are infinitely many primes."}]


@pytest.fixture(scope="module")
def auto_gateway(stand_in_cloud: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("auto")
    config = write_config(tmp / "router.yaml", stand_in_cloud)
    port = free_port()
    args = gateway_args(port, config, HERE / "policies" / "auto.yaml")
    with running(args, f"http://127.0.0.1:{port}/readyz", tmp / "gw.log", env={CLOUD_KEY_ENV: "sk-stand-in"}):
        yield Gateway(f"http://127.0.0.1:{port}", tmp / "gw.log")


def test_a_score_over_the_threshold_goes_to_the_cloud_under_it_stays_local(auto_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=auto_gateway.v1, api_key="unused", max_retries=0)
    up = client.chat.completions.with_raw_response.create(
        model="auto", messages=HI, max_tokens=4, extra_headers={"x-test": "escalate"}
    )
    assert (up.headers["x-router-route"], up.headers["x-router-reason"]) == ("cloud", "always-escalate")
    score = float(up.headers["x-router-score"])
    assert 0.0 < score < 1.0
    down = client.chat.completions.with_raw_response.create(
        model="auto", messages=HI, max_tokens=4, extra_headers={"x-test": "stay"}
    )
    assert down.headers["x-router-route"] == "local"
    assert float(down.headers["x-router-score"]) == pytest.approx(score, abs=1e-4)  # same prompt, same score


def test_the_default_auto_route_reports_classifier_and_explain_shows_the_score(auto_gateway: Gateway) -> None:
    client = openai.OpenAI(base_url=auto_gateway.v1, api_key="unused", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=HI, max_tokens=4)
    assert raw.headers["x-router-reason"] == "classifier"
    score = float(raw.headers["x-router-score"])
    assert raw.headers["x-router-route"] == ("cloud" if score >= 0.5 else "local")
    explained = httpx.post(f"{auto_gateway.v1}/router/explain", json={"messages": HI}).json()
    assert explained["scores"]["escalation"] == pytest.approx(score, abs=1e-4)
    assert explained["scores"]["threshold"] == 0.5
