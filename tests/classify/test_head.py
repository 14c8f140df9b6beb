"""Training is reproducible, a saved head scores as it did, and `router eval` reports the documented keys."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from router.classify.data import Dataset
from router.classify.head import SHIPPED_HEAD, Head
from router.classify.report import evaluate
from router.classify.train import train

HARD = [
    "Prove that the square root of {n} is irrational, step by step.",
    "Solve the equation {n}x^2 - 3x + 7 = 0 and derive both roots.",
    "Write a function that returns the {n}th Fibonacci number in O(log n) time and prove it correct.",
]
EASY = ["Say hello number {n}.", "What colour is sky number {n}?", "Thanks for message {n}."]


def sample() -> Dataset:
    """A small fixed sample in the routing data's shape: eight 'domains', hard and easy prompts in each."""
    prompts, weak, strong, groups = [], [], [], []
    for domain in range(8):
        for n in range(6):
            for template in HARD:
                prompts.append(template.format(n=n + 10 * domain))
                weak.append(0.0)
                strong.append(1.0)
                groups.append(f"domain{domain}")
            for template in EASY:
                prompts.append(template.format(n=n + 10 * domain))
                weak.append(1.0)
                strong.append(1.0)
                groups.append(f"domain{domain}")
    return Dataset("sample", prompts, np.array(weak), np.array(strong), groups)


@pytest.fixture(scope="module")
def embedder():
    from router.classify.embedder import Embedder

    return Embedder()


def test_training_the_same_sample_twice_gives_the_same_head(embedder) -> None:
    first, second = train(sample(), embedder, repeats=4), train(sample(), embedder, repeats=4)
    assert first.chosen == second.chosen
    for (w1, b1), (w2, b2) in zip(first.head.layers, second.head.layers, strict=True):
        np.testing.assert_array_equal(w1, w2)
        np.testing.assert_array_equal(b1, b2)
    # The sample is separable: the chosen head ranks its hard prompts above its easy ones, which on a
    # half-hard sample is an APGR of 0.75 (PGR rises to 1 at a 50% strong share and stays there).
    assert first.validation[first.chosen] >= 0.74


def test_a_saved_head_scores_exactly_as_before(embedder, tmp_path: Path) -> None:
    result = train(sample(), embedder, repeats=4)
    result.head.save(tmp_path / "head.npz")
    loaded = Head.load(tmp_path / "head.npz")
    texts = ["Prove Fermat's little theorem.", "hello"]
    vectors = embedder.embed(texts)
    np.testing.assert_allclose(loaded.score(vectors, texts), result.head.score(vectors, texts), rtol=1e-6)
    assert loaded.meta["chosen"] == result.chosen


def test_the_shipped_head_loads_and_scores_in_range(embedder) -> None:
    head = Head.load(SHIPPED_HEAD)
    scores = head.score(embedder.embed(["hi", "Prove the Riemann hypothesis"]), ["hi", "Prove the Riemann hypothesis"])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    # Fitted on every clean shared domain; the one with broken labels is recorded as left out.
    assert "high_school_mathematics" in head.meta["excluded_domains"]
    assert "high_school_mathematics" not in head.meta["train_domains"] and len(head.meta["train_domains"]) == 47


def test_a_kernel_ensemble_head_round_trips_through_its_file(embedder, tmp_path: Path) -> None:
    from router.classify.train import ensemble_head

    data = sample()
    vectors = embedder.embed(data.prompts)
    head = ensemble_head(vectors, data, k=20, temperature=10.0, c=0.1)
    head.save(tmp_path / "ensemble.npz")
    loaded = Head.load(tmp_path / "ensemble.npz")
    texts = ["Prove that 7 is prime.", "Say hello."]
    probe = embedder.embed(texts)
    np.testing.assert_allclose(loaded.score(probe, texts), head.score(probe, texts), rtol=1e-5)
    hard, easy = loaded.score(probe, texts)
    assert hard > easy


def test_an_expected_gain_head_ranks_by_the_strong_chance_minus_the_local_one(embedder, tmp_path: Path) -> None:
    """Its two halves are P(strong right) and P(local right); it scores their difference (mapped to 0..1), and
    it keeps both through its file (the cascade's `expected_gain` reads the strong half)."""
    from router.classify.train import expected_gain_head

    data = sample()
    vectors = embedder.embed(data.prompts)
    head = expected_gain_head(vectors, data.prompts, data.strong.astype(int), data.weak.astype(int), 0.3, False)
    head.save(tmp_path / "gain.npz")
    loaded = Head.load(tmp_path / "gain.npz")
    texts = ["Prove that 7 is prime, step by step.", "Say hello."]
    probe = embedder.embed(texts)
    strong, local = loaded.chances(probe, texts)
    np.testing.assert_allclose(loaded.score(probe, texts), (strong - local + 1) / 2, rtol=1e-6)
    np.testing.assert_allclose(loaded.score(probe, texts), head.score(probe, texts), rtol=1e-5)
    assert strong.min() > 0.5  # the strong model was right on every training prompt
    assert local[0] < local[1]  # the local one failed on the hard kind only
    hard, easy = loaded.score(probe, texts)
    assert hard > easy


def test_eval_reports_apgr_and_cpt_for_the_head_and_every_baseline(embedder, tmp_path: Path) -> None:
    from router.classify.report import write_outputs

    data = sample()
    head = train(data, embedder, repeats=4, hold_out=True).head
    results, curves = evaluate(head, data, [data.subset(np.arange(len(data)) % 2 == 0, "other")], embedder, None)
    assert set(results) == {"mmlu (held-out domains)", "other"}
    for by_router in results.values():
        assert {"hybrid-router (shipped head)", "random", "prompt-length"} <= set(by_router)
        assert all({"apgr", "cpt50", "cpt80"} <= set(s) for s in by_router.values())
        assert all("apgr_ci" in s for name, s in by_router.items() if name != "random")
    written = write_outputs(results, curves, tmp_path)
    assert (tmp_path / "eval.json").exists()
    assert all(path.exists() for path in written)


def test_the_default_local_model_routes_with_the_head_fitted_to_it(tmp_path: Path) -> None:
    """The default install carries a head fitted to the default model's own labels; a model with none
    (here the packaged Gemma) falls back to the general head, and a configured head wins over both."""
    from router.classify.head import head_for_local
    from router.config import DEFAULT_LOCAL_PACKAGE, GatewayConfig

    default = head_for_local(GatewayConfig())
    assert default.name == f"{DEFAULT_LOCAL_PACKAGE}.npz" and default != SHIPPED_HEAD
    fitted = Head.load(default)
    assert fitted.meta["local_model"] and "labels" in fitted.meta["trained_on"]
    gemma = {"models": {"g": {"engine": "llama-cpp", "package": "gemma-3-270m"}}, "routes": {"local": "g", "cloud": []}}
    assert head_for_local(GatewayConfig.model_validate(gemma)) == SHIPPED_HEAD
    own = tmp_path / "mine.npz"
    configured = {**gemma, "classifier": {"heads": {"g": str(own)}}}
    assert head_for_local(GatewayConfig.model_validate(configured)) == own
    shipped_labels = default.with_suffix(".labels.jsonl")
    assert shipped_labels.exists() and '"prompt"' not in shipped_labels.read_text()  # the data's text stays out


def test_the_strong_chance_is_fitted_to_the_strong_models_outcomes_on_held_out_domains(embedder) -> None:
    """`router train --strong-chance`: P(strong right) from the prompt, with its AUROC on whole domains held
    out; outcomes that are all alike have nothing to teach and are refused."""
    from router.classify.strong_chance import train_strong_chance
    from router.errors import ConfigError

    data = sample()
    hard = np.array([p.startswith(("Prove", "Solve", "Write a function")) for p in data.prompts])
    fails_on_hard = Dataset("s", data.prompts, data.weak, np.where(hard, 0.0, 1.0), data.groups)
    head, auroc = train_strong_chance(fails_on_hard, embedder)
    assert auroc > 0.9 and head.meta["target"] == "strong model right"
    texts = ["Prove that 7 is prime, step by step.", "Say hello."]
    chance_hard, chance_easy = head.score(embedder.embed(texts), texts)
    assert chance_hard < 0.5 < chance_easy
    with pytest.raises(ConfigError, match="all alike"):
        train_strong_chance(data, embedder)  # the strong model right on every prompt
