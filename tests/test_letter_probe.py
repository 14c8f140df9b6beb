"""The cascade's `letter_gain`: a multiple-choice question is first asked aside for its letter (the served
prompt, its answer started "The correct answer is"), and the letter probe's P(strong right) minus that
letter's probability decides before the served answer starts.

The parts with numbers are unit tests; the end-to-end test runs `router serve` on the real test model
with the stand-in cloud, and checks that the gateway's aside call reads the question exactly as the probe
was fitted on it (`router states --reading aside`): the gain it reports is the one computed here from the same
model's first step, and the served answer finds the question's tokens cached by the aside."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from router.backends.model_files import packaged_model
from router.backends.prompt_states import StateReader, served_messages
from router.cascade_rule import CascadeSettings, Confidence, PromptChances
from router.classify.prompt_state import StateProbe, load_probe
from router.errors import ConfigError
from router.letter_probe import ANSWER_START, is_multiple_choice, judged_as_expected_gain, letter_request
from router.policy import parse_policy
from router.types import RequestContext
from tests.conftest import FaultyCloud, Gateway, config_gateway, gemma_config

KEEP = "Which planet is the largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer:"
SEND = "Which gas do plants take in?\n(A) oxygen\n(B) helium\n(C) carbon dioxide\n(D) neon\nAnswer:"
PLAIN = "Name the largest planet."
_ASKED: set[str] = set()
"""Questions the module's gateway has been asked (a question asked again finds itself cached)."""


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
    conversation = (
        {"role": "system", "content": "Be terse."}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "Hello"}, {"role": "user", "content": KEEP},
    )  # fmt: skip
    ctx = RequestContext(
        "r1", "chat", "auto", conversation,
        params={"max_tokens": 300, "temperature": 0.7}, passthrough={"logprobs": True, "tools": []}, stream=True,
    )  # fmt: skip
    asked = letter_request(ctx)
    assert asked.messages == conversation and asked.answer_start == ANSWER_START == "The correct answer is"
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


def test_a_letter_probe_fitted_on_another_reading_is_refused(tmp_path: Path) -> None:
    """A probe reads the numbers of the rendering it was fitted on: the aside's letter probe must have been
    fitted on `router states --reading aside`; one that says another reading is refused at load, one that says
    none (older files) is taken."""
    weights = np.zeros(8, dtype=np.float32)
    for reading, refused in (("letter", True), ("aside", False), (None, False)):
        meta = {} if reading is None else {"reading": reading}
        StateProbe(weights, weights, 0.0, 0.0, meta).save(tmp_path / "p.npz")
        if refused:
            with pytest.raises(ConfigError, match=r"read as `letter`.*router states --reading aside"):
                load_probe("letter_probe", tmp_path / "p.npz", None, "aside")
        else:
            assert load_probe("letter_probe", tmp_path / "p.npz", None, "aside")[1] is not None


@pytest.fixture(scope="module")
def first_steps(gguf_path: Path) -> dict[str, np.ndarray]:
    """The test model's logits after each question as served and the aside's answer start."""
    reader = StateReader(gguf_path, chat_format="gemma", n_ctx=512, threads=1)
    system = packaged_model("gemma-3-270m").system_prompt
    return {text: reader.read(served_messages(text, system), ANSWER_START)[1] for text in (KEEP, SEND)}


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


def _ask(gateway: Gateway, prompt: str, stream: bool) -> tuple[dict[str, str], str, int]:
    """(headers, answer, prompt tokens the usage counts)."""
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0, stream=stream,
        stream_options={"include_usage": True} if stream else openai.NOT_GIVEN,
        extra_headers={"cache-control": "no-cache, no-store"},
    )  # fmt: skip
    body = raw.parse()
    if not stream:
        return dict(raw.headers), body.choices[0].message.content or "", body.usage.prompt_tokens
    chunks = list(body)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    return dict(raw.headers), text, next(c.usage.prompt_tokens for c in chunks if c.usage)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("prompt", "verdict", "route"), [(KEEP, "kept", "local"), (SEND, "escalated", "cloud")])
def test_the_gateway_asks_the_letter_aside_and_decides_on_it(
    letter_gateway: tuple[Gateway, dict[str, float]], prompt: str, verdict: str, route: str, stream: bool
) -> None:
    """Through `router serve`: the letter asked aside (one more local generation) gives the gain computed
    here from the same rendering, and it alone decides, streamed or not; a kept answer's prompt is the
    aside's but for the answer start, so all of it but the last token comes from the cache."""
    gateway, gains = letter_gateway
    before = gateway.stats()
    headers, text, prompt_tokens = _ask(gateway, prompt, stream)
    assert headers["x-router-cascade"] == verdict and headers["x-router-route"] == route
    # The serving context and the embedding-mode reader quantise activations differently: their first-step
    # logits agree to a few hundredths, so the gains to about 0.03 (the two questions' are 0.9 apart).
    assert float(headers["x-router-confidence"]) == pytest.approx(gains[prompt], abs=0.05)
    assert abs(gains[KEEP] - gains[SEND]) > 0.5
    assert text.strip()
    after = gateway.stats()
    assert after["served"] - before["served"] == (2 if route == "local" else 1)  # the aside, then a kept answer
    assert after["letter_probe"]["file"] == "gemma.letter-state.npz"
    reused = after["prefix_tokens_reused"] - before["prefix_tokens_reused"]
    if route == "local" and prompt not in _ASKED:
        # Asked for the first time, the aside finds at most the chat template's opening cached (from other
        # questions); the served answer then finds all its prompt but the last token, which it re-reads.
        assert reused >= prompt_tokens - 1
    _ASKED.add(prompt)


def test_a_question_without_options_is_judged_as_expected_gain_without_an_aside_call(
    letter_gateway: tuple[Gateway, dict[str, float]],
) -> None:
    gateway, _ = letter_gateway
    served_before = gateway.stats()["served"]
    headers, text, _ = _ask(gateway, PLAIN, stream=False)
    assert headers["x-router-cascade"] in {"kept", "escalated"} and text.strip()
    assert gateway.stats()["served"] - served_before == 1  # the answer's first tokens judged, no aside call


def test_a_server_pool_local_model_is_not_asked_aside(instant_gateway: Gateway, faulty_cloud: FaultyCloud) -> None:
    """A local server pool measures nothing of its answers (no logits reach the gateway), so under the
    default policy's `letter_gain` a multiple-choice question goes to it once, as served: no one-token call
    before it that could only be wasted."""
    client = openai.OpenAI(base_url=instant_gateway.v1, api_key="unused", max_retries=0, timeout=60)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": KEEP}], max_tokens=8,
        extra_headers={"cache-control": "no-cache, no-store"},
    )  # fmt: skip
    assert raw.parse().choices[0].message.content
    sent = faulty_cloud.requests()
    assert len(sent) == 1, sent  # the served call alone (a pool model and the cloud are both the stand-in here)
    assert sent[0]["messages"][-1]["content"] == KEEP
