"""What makes two requests the same question, what may be cached, and the lexical guard on near-matches."""

from __future__ import annotations

import pytest

from router.cache.guard import semantic_mismatch
from router.cache.keys import cache_key, not_cacheable
from router.types import CacheSettings, Decision, RequestContext

ON = CacheSettings()


def ctx(text: str = "hi", tenant: str | None = None, **params: object) -> RequestContext:
    messages = ({"role": "system", "content": "be brief"}, {"role": "user", "content": text})
    return RequestContext("r", "chat", "auto", messages, params={"temperature": 0, **params}, tenant=tenant)


DECISION = Decision(route="local", model="gemma", reason="default", cache=ON)


def key(c: RequestContext, decision: Decision = DECISION, scope: str = "tenant"):
    return cache_key(c, decision, scope)


def test_the_key_covers_what_changes_an_answer_and_nothing_else() -> None:
    base = key(ctx())
    assert key(ctx()) == base
    assert key(ctx(user="someone")).exact == base.exact  # `user` does not change the answer
    for changed in (ctx("hello"), ctx(max_tokens=5), ctx(seed=1), ctx(stop=["\n"]), ctx(temperature=0.5)):
        assert key(changed).exact != base.exact
    cloud = Decision(route="cloud", model="gpt", reason="r", cache=ON)
    assert key(ctx(), cloud).exact != base.exact
    with_tools = RequestContext(
        "r", "chat", "auto", ctx().messages, params={"temperature": 0}, passthrough={"tools": []}
    )
    assert key(with_tools).exact != base.exact


def test_partition_is_the_conversation_without_its_last_question() -> None:
    a, b = key(ctx("How do I reset my password?")), key(ctx("I forgot my password"))
    assert a.partition == b.partition and a.exact != b.exact
    assert a.question == "How do I reset my password?"
    other_system = RequestContext(
        "r", "chat", "auto", ({"role": "user", "content": "How do I reset my password?"},), params={"temperature": 0}
    )
    assert key(other_system).partition != a.partition


def test_tenants_never_share_keys_unless_the_scope_is_global() -> None:
    a, b = key(ctx(tenant="team-a")), key(ctx(tenant="team-b"))
    assert a.scope != b.scope and a.exact != b.exact and a.partition != b.partition
    assert key(ctx(tenant="team-a"), scope="global").exact == key(ctx(tenant="team-b"), scope="global").exact


@pytest.mark.parametrize(
    ("params", "settings", "why"),
    [
        ({"temperature": 0}, ON, None),
        ({"temperature": 0.7}, ON, "sampled request (temperature > 0)"),
        ({"temperature": 0.7}, CacheSettings(sampled=True), None),
        ({"temperature": 0, "n": 2}, ON, "several choices were asked for"),
        ({"temperature": 0, "logprobs": True}, ON, "log-probabilities were asked for"),
        ({"temperature": 0}, CacheSettings(enabled=False), "caching is off for this route"),
    ],
)
def test_what_may_be_cached(params: dict, settings: CacheSettings, why: str | None) -> None:
    c = RequestContext("r", "chat", "auto", ({"role": "user", "content": "x"},), params=params)
    assert not_cacheable(c, settings) == why


def test_no_temperature_means_openais_default_of_one() -> None:
    c = RequestContext("r", "chat", "auto", ({"role": "user", "content": "x"},))
    assert not_cacheable(c, ON) == "sampled request (temperature > 0)"


@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        ("How do I reset my password?", "I forgot my password, how can I change it?", None),
        ("How do I enable two-factor authentication?", "How can I turn on 2FA for my account?", None),
        ("What is the capital of France?", "what is the capital of France", None),
        ("Convert 10 kilometres to miles.", "Convert 10 miles to kilometres.", "same words in another order"),
        ("Convert 10 kilometres to miles.", "Convert 12 kilometres to miles.", "different numbers"),
        ("How do I turn off notifications?", "How do I turn on notifications?", "opposite words"),
        ("Can I pay with PayPal?", "Can I not pay with PayPal?", "negated in one only"),
    ],
)
def test_the_guard_refuses_decisive_small_edits(a: str, b: str, why: str | None) -> None:
    assert semantic_mismatch(a, b) == why
