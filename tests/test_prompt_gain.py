"""The cascade's `prompt_gain`: what the local model's own state at the end of the prompt says about its
answer, read by a probe that ships in logit space, and decided on before the first token.

The parts with numbers are unit tests; the model's state and logits come from the real test model, and
the decision is made by `router serve` with the stand-in cloud."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import openai
import pytest

from router.backends.confidence import ConfidenceMeter, EarlyCheck
from router.backends.prompt_states import StateReader, collect_states, read_states, served_messages
from router.cascade_rule import CascadeSettings, Confidence, PromptChances
from router.classify.prompt_state import (
    StateProbe,
    fit_state_probe,
    output_matrix,
    to_logit_space,
    train_state_probe,
)
from router.errors import ConfigError
from router.policy import parse_policy
from tests.conftest import Gateway, config_gateway, gemma_config

SURE = "What is 2 + 2? Reply with the number only."
UNSURE = "Qwv plk: 88 zeta (krr"


@pytest.fixture(scope="module")
def reader(gguf_path: Path) -> StateReader:
    return StateReader(gguf_path, chat_format="gemma", n_ctx=512, threads=1)


def test_a_probe_in_logit_space_gives_what_it_gives_on_the_state() -> None:
    """v = W (WᵀW)⁻¹ a: v·(W h) = a·h for any state h, so the gateway needs only the logits."""
    rng = np.random.default_rng(0)
    output = rng.standard_normal((3000, 40)).astype(np.float32)
    weights = rng.standard_normal((40, 2))
    states = rng.standard_normal((5, 40)).astype(np.float32)
    carried = to_logit_space(weights, output)
    assert carried.shape == (3000, 2)
    np.testing.assert_allclose((states @ output.T) @ carried, states @ weights, rtol=1e-4, atol=1e-4)


def test_a_fitted_probe_reads_the_logits_as_it_read_the_states_and_survives_its_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    output = rng.standard_normal((2000, 16)).astype(np.float32)
    states = rng.standard_normal((300, 16)).astype(np.float32)
    local = states[:, 0] + 0.3 * rng.standard_normal(300) > 0  # the local model knows when feature 0 is high
    strong = states[:, 1] + 0.3 * rng.standard_normal(300) > -1
    probe = fit_state_probe(states, strong, local, output, {"labels": 300})
    path = tmp_path / "probe.state.npz"
    probe.save(path)
    loaded = StateProbe.load(path)
    assert loaded.n_vocab == 2000 and loaded.meta == {"labels": 300}
    knows, lost = states[np.argmax(states[:, 0])], states[np.argmin(states[:, 0])]
    surely, hardly = loaded.chances(output @ knows), loaded.chances(output @ lost)
    assert surely.local > 0.5 > hardly.local  # strongly regularised (as shipped): the sign, not the size
    assert surely.gain < hardly.gain


def test_a_probe_file_that_is_not_one_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "head.npz"
    np.savez(path, something=np.zeros(3))
    with pytest.raises(ConfigError, match="not a prompt-state probe"):
        StateProbe.load(path)


def test_training_holds_whole_domains_out_and_refuses_too_few_states() -> None:
    rng = np.random.default_rng(2)
    output = rng.standard_normal((500, 8)).astype(np.float32)
    records, states = [], {}
    for i in range(240):
        state = rng.standard_normal(8).astype(np.float32)
        records.append({"id": f"d{i % 6}:{i}", "group": f"d{i % 6}", "local_model": "m",
                        "local_right": bool(state[0] > 0), "strong_right": bool(state[1] > -0.5)})  # fmt: skip
        states[f"d{i % 6}:{i}"] = state
    probe, aurocs = train_state_probe(records, states, output, folds=3)
    assert aurocs["local"] > 0.7 and aurocs["strong"] > 0.7  # learnt (chance: 0.5), measured on unseen domains
    assert probe.meta["labels"] == 240 and probe.meta["domains"] == 6
    with pytest.raises(ConfigError, match="only 3 labels have a state"):
        train_state_probe(records, dict(list(states.items())[:3]), output)


def test_the_state_read_is_what_the_model_samples_its_first_token_from(reader: StateReader, gguf_path: Path) -> None:
    """On the real model: its output matrix times the state the reader returns gives the logits it samples
    from (the first 4,000 of the vocabulary here), which is what lets a state probe run on logits."""
    state, logits = reader.read(served_messages(SURE, None))
    assert state.shape == (reader.width,) and np.isfinite(state).all()
    part = output_matrix(gguf_path, rows=4000)
    assert part.shape == (4000, reader.width)
    np.testing.assert_allclose(part @ state, logits[:4000], atol=0.05 * float(np.abs(logits[:4000]).max()))
    again, _ = reader.read(served_messages(SURE, None))
    np.testing.assert_array_equal(state, again)  # nothing carried over from one prompt to the next


def test_states_are_collected_once_and_a_rerun_adds_only_what_is_missing(reader: StateReader, tmp_path: Path) -> None:
    prompts = [(f"p{i}", served_messages(text, None)) for i, text in enumerate([SURE, UNSURE, "Name a colour."])]
    assert collect_states(reader, prompts[:2], tmp_path) == 2
    assert collect_states(reader, prompts, tmp_path) == 1
    found = read_states(tmp_path)
    assert sorted(found) == ["p0", "p1", "p2"] and len(list(tmp_path.glob("states-*.npz"))) == 2


def _one_token_probe(first_logits: dict[str, np.ndarray]) -> StateProbe:
    """A probe whose P(local right) rises with the logit of the sure prompt's likeliest first token, cut
    midway between the two prompts; P(strong right) is 0.9 for both."""
    token = int(np.argmax(first_logits[SURE]))
    sure, unsure = float(first_logits[SURE][token]), float(first_logits[UNSURE][token])
    local = np.zeros(len(first_logits[SURE]), dtype=np.float32)
    local[token] = 4.0 / (sure - unsure)
    strong = np.zeros_like(local)
    return StateProbe(strong, local, float(np.log(9.0)), -4.0 * (sure + unsure) / 2 / (sure - unsure))


def test_the_meter_reads_the_prompt_and_decides_before_the_first_token() -> None:
    logits = np.zeros(10, dtype=np.float32)
    logits[3] = 5.0
    local = np.zeros(10, dtype=np.float32)
    local[3] = 1.0
    probe = StateProbe(np.zeros(10, dtype=np.float32), local, 2.0, -5.0)  # P(local) = 0.5, P(strong) = 0.88
    settings = CascadeSettings("prompt_gain", 0.3, 0)
    check = EarlyCheck(0, settings.escalate)
    meter = ConfidenceMeter(early=check, probe=probe)
    meter(np.array([1, 2]), logits)
    assert check.decided and check.escalated and check.midway  # decided on the first call, before sampling
    assert check.confidence is not None and check.confidence.prompt is not None
    assert check.confidence.prompt.local == pytest.approx(0.5) and settings.measure(check.confidence) > 0.3


def test_prompt_gain_stands_in_with_the_expected_gain_where_the_model_has_no_probe() -> None:
    answer = Confidence(mean_logprob=-0.7, min_logprob=-0.7, mean_entropy=1.0, tokens=1, mean_top_logprob=-0.7)
    read = Confidence(-0.7, -0.7, 1.0, 1, -0.7, prompt=PromptChances(strong=0.9, local=0.2))
    settings = CascadeSettings("prompt_gain", 0.3, 0, strong_chance=0.6)
    assert settings.measure(read) == pytest.approx(0.7)
    assert settings.measure(answer) == pytest.approx(0.6 - np.exp(-0.7))


@pytest.mark.parametrize(
    ("cascade", "expected"),
    [
        ("{metric: prompt_gain, threshold: 1.5, decide_after_tokens: 0}", "an expected gain lies in -1..1"),
        ("{metric: prompt_gain, threshold: 0.3, decide_after_tokens: -1}", "greater than or equal to 0"),
    ],
)
def test_a_prompt_gain_cascade_is_checked_when_the_policy_loads(cascade: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=expected):
        parse_policy(f"default:\n  route: local\n  cascade: {cascade}\n", "policy.yaml")
    policy = parse_policy(
        "version: 1\ndefault:\n  route: local\n  cascade: {metric: prompt_gain, threshold: 0.3}\n", "p.yaml"
    )
    assert policy.policy.uses_classifier  # the expected gain stands in where the local model has no probe


@pytest.fixture(scope="module")
def probe_gateway(
    reader: StateReader, stand_in_cloud: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Gateway]:
    tmp = tmp_path_factory.mktemp("prompt-gain")
    first = {text: reader.read(served_messages(text, None))[1] for text in (SURE, UNSURE)}
    _one_token_probe(first).save(tmp / "gemma.state.npz")
    config = gemma_config(stand_in_cloud, tmp / "ledger.sqlite", {"state_probe": str(tmp / "gemma.state.npz")})
    cascade = "{metric: prompt_gain, threshold: 0.4, decide_after_tokens: 0}"
    policy = f"version: 1\ndefault:\n  route: local\n  cascade: {cascade}\n"
    with config_gateway(tmp / "gw", config, policy) as gateway:
        yield gateway


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(("prompt", "verdict", "route"), [(SURE, "kept", "local"), (UNSURE, "escalated", "cloud")])
def test_the_gateway_decides_on_the_local_models_reading_of_the_prompt(
    probe_gateway: Gateway, prompt: str, verdict: str, route: str, stream: bool
) -> None:
    """Through `router serve`: the configured probe reads the first step's logits, the sure prompt is kept
    (gain 0.9 - 0.88) and the unsure one sent up before a token (0.9 - 0.12), streamed or not."""
    client = openai.OpenAI(base_url=probe_gateway.v1, api_key="unused", max_retries=0, timeout=120)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": prompt}], max_tokens=8, temperature=0, stream=stream,
        extra_headers={"cache-control": "no-cache, no-store"},
    )  # fmt: skip
    assert raw.headers["x-router-cascade"] == verdict and raw.headers["x-router-route"] == route
    gain = float(raw.headers["x-router-confidence"])
    assert (gain > 0.4) == (verdict == "escalated") and abs(gain - 0.4) > 0.3  # about 0.02 and 0.78
    body = raw.parse()
    text = (
        "".join(c.choices[0].delta.content or "" for c in body if c.choices)
        if stream
        else body.choices[0].message.content
    )
    assert text.strip()
    assert probe_gateway.stats()["state_probe"]["file"] == "gemma.state.npz"
