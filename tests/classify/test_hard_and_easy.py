"""The shipped head and the default policy on prompts they never saw (written for this test, not from the
training data): hard prompts outrank trivial ones, and the default policy keeps every trivial prompt
local while sending half the hard ones to the cloud before the local model says a word.

The head learned from MMLU outcomes, so it knows exam-style difficulty, not chit-chat: alone it ranks
these hard prompts over these trivial ones with AUC 0.78 (measured on the shipped head; the bound below
guards against a worse one), and its scores for greetings reach 0.67, which is why the default
threshold sits at 0.7. The policy's readable rules (proofs, derivations, code, "show your working",
"justify": the last two were added after reading these prompts, so this test is no independent evidence
for them) do most of the rest.
"""

from __future__ import annotations

import pytest

from router.classify.embedding_service import EmbeddingService
from router.classify.scorer import EscalationScorer

TRIVIAL = [
    "hi", "Say hello.", "What colour is the sky?", "Translate 'cat' into French.", "What day comes after Monday?",
    "Name a fruit that is yellow.", "Thanks, that's all!", "What is 2 + 2?", "Spell the word 'house'.", "Is water wet?",
]  # fmt: skip
HARD = [
    "Prove that for every prime p > 3, p^2 - 1 is divisible by 24, and explain each step of the argument.",
    "A tank is filled by pipe A in 6 hours and by pipe B in 9 hours, while pipe C drains it in 12 hours. Starting "
    "empty with all three open, after 2 hours pipe A is closed. How long in total until the tank is full? Show your "
    "working.",
    "Write a Python function that returns the longest palindromic substring of a string in O(n^2) time, then analyse "
    "its worst-case complexity and suggest how Manacher's algorithm improves it.",
    "Derive the closed form of the sum of k^3 for k = 1..n by induction, then use it to compute the sum of the cubes "
    "of the first 100 odd numbers.",
    "Compare the consistency guarantees of Raft and Paxos under network partitions, and explain which failure "
    "scenarios each handles differently.",
    "A patient presents with fatigue, weight gain, cold intolerance and a TSH of 12 mU/L with low free T4. What is "
    "the most likely diagnosis, what is the pathophysiology, and how should treatment be titrated?",
    "Let f(x) = x^3 - 6x^2 + 9x + 1. Find all local extrema, the inflection point, and determine on which intervals "
    "f is increasing, justifying each answer.",
    "Explain why the halting problem is undecidable, giving the diagonalisation argument in full.",
    "In a game, two players alternately remove 1, 3 or 4 stones from a pile of 50. The player who takes the last "
    "stone wins. Which player has a winning strategy, and what is it? Justify with the pattern of losing positions.",
    "Refactor this code to remove the race condition and explain the fix: counter = 0\ndef worker():\n    global "
    "counter\n    for _ in range(1000):\n        counter += 1\nthreads = [threading.Thread(target=worker) for _ in "
    "range(8)]",
]


@pytest.fixture(scope="module")
async def scores() -> tuple[list[float], list[float]]:
    """The escalation scores the request path computes (the embedding service, then the head)."""
    embeddings = EmbeddingService()
    scorer = EscalationScorer(embeddings)
    trivial = [await scorer.score(t) for t in TRIVIAL]
    hard = [await scorer.score(t) for t in HARD]
    await embeddings.close()
    return trivial, hard  # type: ignore[return-value]


def test_hard_prompts_outrank_trivial_ones(scores: tuple[list[float], list[float]]) -> None:
    trivial, hard = scores
    auc = sum((h > t) + 0.5 * (h == t) for h in hard for t in trivial) / (len(hard) * len(trivial))
    assert auc >= 0.75


def test_the_default_policy_lets_the_local_model_start_and_weighs_the_strong_models_chance() -> None:
    """No prompt goes up before generation on the default policy (the classifier alone ranks barely better
    than chance on domains it never saw); every one starts locally under the cascade, which carries the
    prompt's P(strong model right) for its `expected_gain` (`letter_gain` judges all but multiple-choice
    questions as `expected_gain`)."""
    from router.config import DEFAULT_POLICY_FILE, GatewayConfig
    from router.policy import load_policy
    from router.policy.facts import Facts
    from router.routing import Router
    from router.types import Findings, RequestContext

    router = Router(GatewayConfig(), load_policy(DEFAULT_POLICY_FILE))
    for text in [*TRIVIAL, *HARD]:
        ctx = RequestContext("t", "chat", "auto", ({"role": "user", "content": text},))
        decision = router.decide(Facts(ctx, Findings(scores={"escalation": 0.9, "strong_chance": 0.83})))
        assert decision.route == "local", text
        assert decision.cascade is not None and decision.cascade.metric in ("letter_gain", "mean_top_logprob")
        if decision.cascade.metric == "letter_gain":
            assert decision.cascade.strong_chance == 0.83


async def test_the_shipped_strong_chance_is_lower_where_the_strong_model_fails_more() -> None:
    """The gateway's scorer gives every prompt a strong chance from the shipped head: GPT-4's recorded
    outcomes make it surer of a capital city than of a competition puzzle."""
    embeddings = EmbeddingService()
    scorer = EscalationScorer(embeddings)
    easy = await scorer.scores("What is the capital of France?")
    hard = await scorer.scores(HARD[-2])
    await embeddings.close()
    assert easy is not None and hard is not None
    assert 0.0 < hard["strong_chance"] < easy["strong_chance"] < 1.0
