"""The product as installed: the embedded defaults answer everyday questions right, and say how they routed.

A real `router serve` with no model configuration at all (only its ledger moved to a temporary folder):
the default packaged GGUF, its own chat template and system prompt, the default policy with the
classifier and the cascade, and no cloud key, so nothing may leave the machine. Temperature 0, so the
answers are the same on every run; each is checked by keyword.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from openai import OpenAI

from router.config import DEFAULT_LOCAL_MODEL
from tests.servers import free_port, gateway_args, running

DEFAULT_POLICY = Path(__file__).parents[1] / "policies" / "default.yaml"
EVERYDAY = [
    ("What is the capital of France?", ["paris"]),
    ("What is 2 + 2?", ["4", "four"]),
    ('What is the plural of "mouse"?', ["mice"]),
    (
        'Classify the sentiment of this review as positive or negative: "I loved every minute of this film."',
        ["positive"],
    ),
    ("What is the capital of Japan?", ["tokyo"]),
    ('Who wrote "Romeo and Juliet"?', ["shakespeare"]),
]


@pytest.fixture(scope="module")
def default_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("defaults")
    config = tmp / "router.yaml"
    config.write_text(yaml.safe_dump({"ledger": {"path": str(tmp / "ledger.sqlite")}}))
    port = free_port()
    env = {"OPENAI_API_KEY": ""}  # the default cloud model has no key: everything must be answered here
    with running(gateway_args(port, config, DEFAULT_POLICY), f"http://127.0.0.1:{port}/readyz", tmp / "log", env=env):
        yield f"http://127.0.0.1:{port}"


def test_readiness_names_the_default_model_and_a_loaded_classifier(default_gateway: str) -> None:
    ready = httpx.get(f"{default_gateway}/readyz", timeout=10).json()
    text = str(ready)
    assert DEFAULT_LOCAL_MODEL in text
    assert ready["classifier"]["ready"] is True


@pytest.mark.parametrize(("prompt", "expected"), EVERYDAY)
def test_the_default_model_answers_everyday_questions_right(
    default_gateway: str, prompt: str, expected: list[str]
) -> None:
    client = OpenAI(base_url=f"{default_gateway}/v1", api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], temperature=0, max_tokens=48
    )
    answer = raw.parse().choices[0].message.content or ""
    assert any(re.search(rf"(?<![\w.]){re.escape(word)}(?!\w)", answer.lower()) for word in expected), answer
    assert raw.headers["x-router-model"] == DEFAULT_LOCAL_MODEL
    assert raw.headers["x-router-route"] == "local"
    assert "x-router-score" in raw.headers  # the classifier scored it: the default policy is `auto`
