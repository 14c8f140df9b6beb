"""Intents: requests routed by meaning, matched with the gateway's real embedder (MiniLM on ONNX)."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from router.classify.embedding_service import TextEmbedder, load_embedder
from router.config import EmbedderConfig, GatewayConfig, Settings
from router.errors import PolicyError
from router.policy import parse_policy
from router.policy.facts import Facts
from router.policy.intents import IntentIndex, texts_for
from router.routing import Router
from router.types import Findings, RequestContext
from tests.policy.billing import BILLING_EXAMPLES

MODELS = GatewayConfig().models

POLICY = (
    "intents:\n"
    + BILLING_EXAMPLES
    + """\
  smalltalk:
    examples:
      - hi there!
      - hello, how are you today?
      - thanks a lot, that was helpful
      - good morning!
      - nice to meet you
    counter_examples:
      - hi, I have a question about my invoice
rules:
  - name: billing-to-cloud
    when: {intent: billing}
    route: cloud
  - name: smalltalk-local
    when: {intent: [smalltalk]}
    route: local
"""
)


@pytest.fixture(scope="module")
def embeddings() -> TextEmbedder:
    """The gateway's embedder model itself (the service runs this on its own thread)."""
    return load_embedder(EmbedderConfig(), Settings().model_dir.parent / "embedders")


def embedding_with(embeddings: TextEmbedder):  # type: ignore[no-untyped-def]
    async def embed(texts: list[str]) -> np.ndarray:
        return embeddings.embed(texts)

    return embed


def _engine(text: str, embeddings: TextEmbedder, previous=None):  # type: ignore[no-untyped-def]
    engine = parse_policy(text, "p.yaml", MODELS)
    asyncio.run(engine.attach_intents(embedding_with(embeddings), previous))
    return engine


def _ctx(text: str, embeddings: TextEmbedder, engine, *history: dict) -> Facts:  # type: ignore[no-untyped-def]
    ctx = RequestContext("r", "chat", "auto", (*history, {"role": "user", "content": text}))
    vector = embeddings.embed([text])[0]
    return Facts(ctx, Findings(intents={"last_user": engine.intents.match(vector)}))


def test_a_paraphrase_is_routed_by_its_intent(embeddings: TextEmbedder) -> None:
    engine = _engine(POLICY, embeddings)
    router = Router(GatewayConfig(), engine)
    explanation = router.explain(_ctx("I think you billed my card two times in March", embeddings, engine))
    assert explanation.decision.rule == "billing-to-cloud"
    assert explanation.decision.route == "cloud"
    intent = explanation.decision.intent
    assert intent is not None and intent.intent == "billing"
    assert intent.example == "I was charged twice this month"  # the nearest example, named
    assert intent.similarity >= 0.6 and intent.margin >= 0.03
    evidence = explanation.match.trace[0].evidence[0]
    assert "intent `billing`" in evidence and "I was charged twice this month" in evidence


def test_an_unrelated_request_matches_no_intent_and_says_why(embeddings: TextEmbedder) -> None:
    engine = _engine(POLICY, embeddings)
    explanation = Router(GatewayConfig(), engine).explain(_ctx("What is the capital of France?", embeddings, engine))
    assert explanation.decision.rule is None and explanation.decision.intent is None
    why = explanation.match.trace[0].why_not
    assert "no intent matches last_user (below the threshold)" in why
    assert "nearest example of" in why


def test_a_counter_example_keeps_a_near_miss_out(embeddings: TextEmbedder) -> None:
    engine = _engine(POLICY, embeddings)
    vector = embeddings.embed(["hi, I have a question about my invoice"])[0]
    found = engine.intents.match(vector)
    assert found.intent != "smalltalk"
    without = _engine(POLICY.replace("    counter_examples:\n      - hi, I have a question about my invoice\n", ""),
                      embeddings)  # fmt: skip
    greeting = embeddings.embed(["hello there, how are you?"])[0]
    assert without.intents.match(greeting).intent == "smalltalk"
    assert engine.intents.match(greeting).intent == "smalltalk"  # the counter-example only takes its near misses


def test_the_margin_refuses_a_close_call(embeddings: TextEmbedder) -> None:
    strict = _engine(POLICY.replace("intents:\n", "intent_margin: 0.9\nintents:\n", 1), embeddings)
    vector = embeddings.embed(["I was charged twice this month, can I get a refund?"])[0]
    found = strict.intents.match(vector)
    assert found.intent is None
    assert found.why_not is not None and "within the margin (0.9)" in found.why_not
    assert found.nearest == "billing" and found.runner_up == "smalltalk"


def test_a_reload_embeds_only_the_examples_that_changed(embeddings: TextEmbedder) -> None:
    calls: list[list[str]] = []

    async def counting(texts: list[str]) -> np.ndarray:
        calls.append(list(texts))
        return embeddings.embed(texts)

    first = parse_policy(POLICY, "p.yaml", MODELS)
    assert asyncio.run(first.attach_intents(counting)) == 11  # 10 examples and 1 counter-example
    edited = parse_policy(POLICY.replace("good morning!", "good evening!"), "p.yaml", MODELS)
    assert asyncio.run(edited.attach_intents(counting, first)) == 1
    assert calls[-1] == ["good evening!"]
    vector = embeddings.embed(["good evening to you"])[0]
    assert edited.intents.match(vector).example == "good evening!"


def test_overlapping_intents_and_thin_ones_are_warned_about(embeddings: TextEmbedder) -> None:
    text = """\
intents:
  refunds:
    examples: ['can I get a refund for my subscription?', I want my money back]
  cancellations:
    examples: ['can I get a refund and cancel my subscription?', please cancel my plan]
rules:
  - {name: r, when: {intent: refunds}, route: cloud}
"""
    warnings = asyncio.run(
        IntentIndex.build(parse_policy(text, "p.yaml", MODELS).policy, embedding_with(embeddings))
    ).warnings()
    assert any("intent `refunds` has 2 example(s)" in w for w in warnings)
    overlap = [w for w in warnings if "overlap" in w]
    assert len(overlap) == 1 and "`refunds` and `cancellations`" in overlap[0]
    assert "can I get a refund for my subscription?" in overlap[0]
    built = asyncio.run(IntentIndex.build(parse_policy(POLICY, "p.yaml", MODELS).policy, embedding_with(embeddings)))
    assert not built.warnings()


def test_conversation_scope_reads_the_turns_before(embeddings: TextEmbedder) -> None:
    text = POLICY.replace("when: {intent: billing}", "when: {intent: billing, scope: conversation}")
    engine = _engine(text, embeddings)
    assert engine.intents.scopes == frozenset({"conversation", "last_user"})
    history = (
        {"role": "user", "content": "I was charged twice for my subscription this month"},
        {"role": "assistant", "content": "Sorry about that. Which card was charged?"},
    )
    ctx = RequestContext("r", "chat", "auto", (*history, {"role": "user", "content": "the visa ending in 4242"}))
    intents = {
        scope: engine.intents.match_turns(list(embeddings.embed(texts_for(ctx, scope))))
        for scope in engine.intents.scopes
    }
    assert intents["conversation"].intent == "billing"
    assert intents["conversation"].turns_back == 1  # carried over from the message before
    assert "in the user message 1 turn(s) back" in intents["conversation"].describe()
    assert intents["last_user"].intent != "billing"  # the last message alone says nothing about billing
    decision = Router(GatewayConfig(), engine).decide(Facts(ctx, Findings(intents=intents)))
    assert decision.rule == "billing-to-cloud"


def test_conversation_text_puts_the_question_first_and_is_bounded() -> None:
    messages = (
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "first " * 400},
        {"role": "assistant", "content": "an answer"},
        {"role": "user", "content": "and the follow-up?"},
    )
    text = RequestContext("r", "chat", "auto", messages).conversation_text()
    assert text.startswith("and the follow-up?\nan answer\nfirst")
    assert "You are terse" not in text
    assert len(text) <= 1200


def test_a_rule_naming_an_undefined_intent_is_refused_with_its_line() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("rules:\n  - name: r\n    when: {intent: billing}\n    route: cloud\n", "p.yaml", MODELS)
    assert "p.yaml:2: rule `r` names the intent `billing`, which the policy does not define" in str(caught.value)


def test_an_empty_example_list_is_refused_with_its_line() -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy("intents:\n  billing:\n    examples: []\n", "p.yaml", MODELS)
    assert "p.yaml:3: intents.billing.examples" in str(caught.value)
