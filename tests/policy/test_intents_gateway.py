"""Intents in a running gateway: a paraphrase is routed by meaning, the headers name the intent and its
nearest example, and a hot reload embeds only the examples that changed.

`router serve` in its own process; its local tier (a one-server pool) and its cloud (through litellm)
are both the fault-injecting stand-in, a real OpenAI-compatible server.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import FaultyCloud, Gateway, config_gateway, stand_in_config
from tests.policy.billing import BILLING_EXAMPLES, BILLING_TO_CLOUD

POLICY = "intents:\n" + BILLING_EXAMPLES + "rules:\n" + BILLING_TO_CLOUD


@pytest.fixture(scope="module")
def intent_gateway(faulty_cloud_session: FaultyCloud, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("intents")
    config = stand_in_config(faulty_cloud_session.v1, tmp / "ledger.sqlite", cache={"enabled": False})
    with config_gateway(tmp, config, POLICY) as gw:
        yield gw


def _ask(gw: Gateway, text: str) -> tuple[str, dict[str, str]]:
    client = openai.OpenAI(base_url=gw.v1, api_key="none")
    raw = client.chat.completions.with_raw_response.create(model="auto", messages=[{"role": "user", "content": text}])
    return raw.parse().choices[0].message.content or "", dict(raw.headers)


def test_a_paraphrase_goes_where_its_intent_says(intent_gateway: Gateway) -> None:
    _, headers = _ask(intent_gateway, "you charged my card twice, why?")
    assert headers["x-router-route"] == "cloud"
    assert headers["x-router-intent"] == "billing"
    reason = headers["x-router-reason"]
    assert reason.startswith("billing-to-cloud; intent=billing; similarity=0.")
    assert 'example="I was charged twice this month"' in reason
    _, other = _ask(intent_gateway, "write a haiku about the sea")
    assert other["x-router-route"] == "local" and "x-router-intent" not in other
    policy = httpx.get(f"{intent_gateway.url}/v1/router/policy").json()
    assert policy["intents"] == {"billing": {"examples": 5, "counter_examples": 0, "threshold": 0.6}}
    assert policy["intents_embedded"] is True
    explain = httpx.post(
        f"{intent_gateway.url}/v1/router/explain",
        json={"messages": [{"role": "user", "content": "write a haiku about the sea"}]},
    ).json()
    assert explain["intents"]["last_user"]["intent"] is None
    assert explain["intents"]["last_user"]["why_not"] == "below the threshold"


def test_a_reload_embeds_only_the_changed_example(intent_gateway: Gateway) -> None:
    policy = Path(intent_gateway.log.parent / "policy.yaml")
    before = httpx.get(f"{intent_gateway.url}/v1/router/policy").json()["version"]
    policy.write_text(POLICY.replace("how do I update my credit card?", "where do I change my payment card?"))
    deadline = time.monotonic() + 20
    while httpx.get(f"{intent_gateway.url}/v1/router/policy").json()["version"] == before:
        assert time.monotonic() < deadline, "the edit was not applied"
        time.sleep(0.1)
    assert "1 example text(s) embedded" in intent_gateway.log.read_text()
    _, headers = _ask(intent_gateway, "how can I change the card you bill?")
    assert headers["x-router-intent"] == "billing"
    assert 'example="where do I change my payment card?"' in headers["x-router-reason"]
