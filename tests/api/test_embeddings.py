"""`/v1/embeddings` through the official `openai` client: the gateway's own embedder for its local model
name (real vectors that rank meaning), a configured remote model passed through, each call in the ledger."""

from __future__ import annotations

import time

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import FaultyCloud, Gateway
from tests.resilience.test_faults import metric


def sdk(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.v1, api_key="unused", max_retries=0, timeout=120)


def test_the_local_embedder_answers_with_vectors_that_rank_meaning(gateway: Gateway) -> None:
    # The SDK asks for base64 and decodes it; the plain float form is checked below.
    answer = sdk(gateway).embeddings.create(model="all-minilm-l6-v2", input=["a cat", "a kitten", "stock market"])
    vectors = np.array([row.embedding for row in answer.data])
    assert vectors.shape == (3, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.1  # a kitten is nearer a cat than shares are
    assert answer.usage.prompt_tokens > 0
    floats = httpx.post(f"{gateway.v1}/embeddings", json={"model": "local", "input": "a cat"}, timeout=60).json()
    assert np.allclose(floats["data"][0]["embedding"], vectors[0], atol=1e-5)


def test_a_configured_remote_model_is_passed_through_and_priced(instant_gateway: Gateway) -> None:
    client = sdk(instant_gateway)
    for model in ("gpt-4o-mini", "local-pool"):  # through litellm, and the direct OpenAI-compatible client
        answer = client.embeddings.create(model=model, input=["one two three", "four"], encoding_format="float")
        assert [row.embedding for row in answer.data] == [[13.0, 3.0, 1.0, 0.0], [4.0, 1.0, 1.0, 0.0]]
        assert answer.usage.prompt_tokens == 4
    time.sleep(1.5)  # the ledger flushes once a second
    rules = httpx.get(f"{instant_gateway.url}/v1/router/stats?window=1h", timeout=30).json()["rules"]
    assert any(r["rule"] == "embeddings" and r["requests"] >= 2 for r in rules)


def test_the_embedding_model_is_listed_for_clients_that_discover_models_first(gateway: Gateway) -> None:
    listed = [model.id for model in sdk(gateway).models.list()]
    assert "all-minilm-l6-v2" in listed
    assert sdk(gateway).models.retrieve("all-minilm-l6-v2").id == "all-minilm-l6-v2"


def test_embeddings_take_the_request_path_retries_metrics_and_all(
    instant_gateway: Gateway, faulty_cloud: FaultyCloud
) -> None:
    """A failing embedding upstream is retried by the executor like a chat call, and the call is counted.
    (The OpenAI-compatible engine: litellm's OpenAI embedding client retries on its own, reading
    `max_retries=0` as its default.)"""
    before = metric(instant_gateway, "router_requests_total", model="local-pool", rule="embeddings")
    retried = metric(instant_gateway, "router_upstream_retries_total", model="local-pool")
    faulty_cloud.set("error500", times=1)
    answer = sdk(instant_gateway).embeddings.create(model="local-pool", input="one two", encoding_format="float")
    assert answer.data[0].embedding == [7.0, 2.0, 1.0, 0.0]
    assert len(faulty_cloud.calls()) == 2  # the 500, then the retry that answered
    assert metric(instant_gateway, "router_upstream_retries_total", model="local-pool") == retried + 1
    assert metric(instant_gateway, "router_requests_total", model="local-pool", rule="embeddings") == before + 1


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"model": "no-such-embedder", "input": "x"}, 404, "model"),
        ({"model": "local", "input": [[1, 2, 3]]}, 400, "input"),
        ({"model": "local", "input": []}, 400, "input"),
        ({"model": "local", "input": "x", "dimensions": 64}, 400, "dimensions"),
    ],
)
def test_what_cannot_be_embedded_is_a_clear_error(gateway: Gateway, body: dict, status: int, param: str) -> None:
    response = httpx.post(f"{gateway.v1}/embeddings", json=body, timeout=60)
    assert response.status_code == status and response.json()["error"]["param"] == param
