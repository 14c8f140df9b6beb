"""The cascade's `letter_gain`: a multiple-choice question is first asked aside for its letter, and the
letter probe's P(strong right) minus that letter's probability decides before the served answer starts.

The parts with numbers are unit tests; the end-to-end test runs `router serve` on the real test model
with the stand-in cloud, and checks that the gateway's aside call reads the question exactly as the probe
was fitted on it (`router states --letter`): the gain it reports is the one computed here from the same
model's first step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from router.backends.prompt_states import StateReader
from router.cascade_rule import CascadeSettings, Confidence, PromptChances
from router.classify.labels import LETTER_SYSTEM
from router.classify.prompt_state import StateProbe
from router.letter_probe import is_multiple_choice, judged_as_expected_gain, letter_request
from router.policy import parse_policy
from router.types import RequestContext
from tests.conftest import Gateway, config_gateway, gemma_config

KEEP = "Which planet is the largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer:"
SEND = "Which gas do plants take in?\n(A) oxygen\n(B) helium\n(C) carbon dioxide\n(D) neon\nAnswer:"
PLAIN = "Name the largest planet."


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (KEEP, True),
        (SEND, True),
        ("Pick one:\nA) red\nB) green\nC) blue\nD) white", True),
        ("Pick one:\nA. red\nB. green\nC. blue", False),  # three options: not the four-way question probed
        ("A. red B. green C. blue D. white", False),  # options on one line
        ("D. first\nC. then\nB. and\nA. last", False),  # out of order
        (PLAIN, False),
    ],
)
def test_a_multiple_choice_question_lists_options_a_to_d_on_lines_of_their_own(text: str, expected: bool) -> None:
    assert is_multiple_choice(text) is expected


def test_the_letter_is_asked_as_the_probe_was_fitted_one_token_and_nothing_of_the_clients_extras() -> None:
    ctx = RequestContext(
        "r1", "chat", "auto",
        ({"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"},
         {"role": "assistant", "content": "Hello"}, {"role": "user", "content": KEEP}),
        params={"max_tokens": 300, "temperature": 0.7}, passthrough={"logprobs": True, "tools": []}, stream=True,
    )  # fmt: skip
    asked = letter_request(ctx)
    assert asked.messages == ({"role": "system", "content": LETTER_SYSTEM}, {"role": "user", "content": KEEP})
    assert asked.params == {"max_tokens": 1, "temperature": 0.0} and asked.passthrough == {} and not asked.stream


def test_letter_gain_weighs_the_probes_strong_chance_against_the_letters_probability() -> None:
    letter = Confidence(-0.2, -0.2, 0.5, 1, -0.2, prompt=PromptChances(strong=0.9, local=0.1))
    settings = CascadeSettings("letter_gain", 0.3, 0, strong_chance=0.6)
    assert settings.measure(letter) == pytest.approx(0.9 - np.exp(-0.2))  # not the probe's own local chance
    without_probe = Confidence(-0.2, -0.2, 0.5, 1, -0.2)
    assert settings.measure(without_probe) == pytest.approx(0.6 - np.exp(-0.2))  # the classifier's chance
    assert judged_as_expected_gain(settings).metric == "expected_gain"
    cascade = "{metric: letter_gain, threshold: 0.3}"
    policy = parse_policy(f"version: 1\ndefault:\n  route: local\n  cascade: {cascade}\n", "p.yaml")
    assert policy.policy.uses_classifier  # it stands in as `expected_gain` on other requests


@pytest.fixture(scope="module")
def first_steps(gguf_path: Path) -> dict[str, np.ndarray]:
    """The test model's first-step logits with each question rendered as the letter protocol asks it."""
    reader = StateReader(gguf_path, chat_format="gemma", n_ctx=512, threads=1)
    system = {"role": "system", "content": LETTER_SYSTEM}
    return {text: reader.read((system, {"role": "user", "content": text}))[1] for text in (KEEP, SEND)}


def _top_probability(logits: np.ndarray) -> float:
    z = logits.astype(np.float64) - logits.max()
    return float(1.0 / np.exp(z).sum())


def _separating_probe(first: dict[str, np.ndarray]) -> StateProbe:
    """P(strong right) 0.05 on KEEP's first step and 0.95 on SEND's, read off the token whose logit
    differs most between the two; P(local right) is not what `letter_gain` reads."""
    token = int(np.argmax(np.abs(first[SEND] - first[KEEP])))
    low, high = float(first[KEEP][token]), float(first[SEND][token])
    strong = np.zeros(len(first[KEEP]), dtype=np.float32)
    strong[token] = 2 * np.log(19.0) / (high - low)
    return StateProbe(strong, np.zeros_like(strong), -float(strong[token]) * (high + low) / 2, 0.0)


@pytest.fixture(scope="module")
def letter_gateway(
    first_steps: dict[str, np.ndarray], stand_in_cloud: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, dict[str, float]]]:
    tmp = tmp_path_factory.mktemp("letter-gain")
    probe = _separating_probe(first_steps)
    probe.save(tmp / "gemma.letter-state.npz")
    gains = {q: probe.chances(first_steps[q]).strong - _top_probability(first_steps[q]) for q in (KEEP, SEND)}
    threshold = (gains[KEEP] + gains[SEND]) / 2
    letter_probe = {"letter_probe": str(tmp / "gemma.letter-state.npz")}
    config = gemma_config(stand_in_cloud, tmp / "ledger.sqlite", letter_probe)
    policy = (
        f"version: 1\ndefault:\n  route: local\n  cascade: {{metric: letter_gain, threshold: {threshold:.6f}, "
        "decide_after_tokens: 3}\n"
    )
    with config_gateway(tmp / "gw", config, policy) as gateway:
        yield gateway, gains


def _ask(gateway: Gateway, prompt: str, stream: bool) -> tuple[dict[str, str], str]:
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0, stream=stream,
        extra_headers={"cache-control": "no-cache, no-store"},
    )  # fmt: skip
    body = raw.parse()
    text = (
        "".join(c.choices[0].delta.content or "" for c in body if c.choices)
        if stream
        else body.choices[0].message.content
    )
    return dict(raw.headers), text or ""


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("prompt", "verdict", "route"), [(KEEP, "kept", "local"), (SEND, "escalated", "cloud")])
def test_the_gateway_asks_the_letter_aside_and_decides_on_it(
    letter_gateway: tuple[Gateway, dict[str, float]], prompt: str, verdict: str, route: str, stream: bool
) -> None:
    """Through `router serve`: the letter asked aside (one more local generation) gives the gain computed
    here from the same rendering, and it alone decides, streamed or not."""
    gateway, gains = letter_gateway
    served_before = gateway.stats()["served"]
    headers, text = _ask(gateway, prompt, stream)
    assert headers["x-router-cascade"] == verdict and headers["x-router-route"] == route
    # The serving context and the embedding-mode reader quantise activations differently: their first-step
    # logits agree to a few hundredths, so the gains to about 0.03 (the two questions' are 0.9 apart).
    assert float(headers["x-router-confidence"]) == pytest.approx(gains[prompt], abs=0.05)
    assert abs(gains[KEEP] - gains[SEND]) > 0.5
    assert text.strip()
    local_calls = gateway.stats()["served"] - served_before
    assert local_calls == (2 if route == "local" else 1)  # the letter aside, then the local answer if kept
    assert gateway.stats()["letter_probe"]["file"] == "gemma.letter-state.npz"


def test_a_question_without_options_is_judged_as_expected_gain_without_an_aside_call(
    letter_gateway: tuple[Gateway, dict[str, float]],
) -> None:
    gateway, _ = letter_gateway
    served_before = gateway.stats()["served"]
    headers, text = _ask(gateway, PLAIN, stream=False)
    assert headers["x-router-cascade"] in {"kept", "escalated"} and text.strip()
    assert gateway.stats()["served"] - served_before == 1  # the answer's first tokens judged, no aside call
