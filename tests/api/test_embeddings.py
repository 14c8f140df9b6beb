"""`/v1/embeddings` through the official `openai` client: the gateway's own embedder for its local model
name (real vectors that rank meaning), a configured remote model passed through, each call in the ledger."""

from __future__ import annotations

import time

import httpx
import numpy as np
import openai
import pytest

from tests.conftest import Gateway


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
