"""Rule conditions: what each one matches, and first-match-wins evaluation."""

from __future__ import annotations

from typing import Any

from router.policy import parse_policy
from router.policy.facts import Facts
from router.policy.matchers import matches, why_not
from router.policy.schema import Condition
from tests.facts import facts


def ctx(text: str = "hello", **kw: Any) -> Facts:
    return facts(text=text, **kw)


def cond(**kw: Any) -> Condition:
    return Condition.model_validate(kw)


def test_keywords_match_whole_words_case_insensitively() -> None:
    c = cond(keywords=["API", "step by step"])
    assert matches(c, ctx("call the api now"))
    assert matches(c, ctx("Solve it Step By Step"))
    assert not matches(c, ctx("a rapid answer"))  # "api" inside "rapid" is not the word


def test_keywords_look_at_the_last_user_message_unless_scope_is_all() -> None:
    messages = ({"role": "user", "content": "my password is hunter2"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": "thanks"})  # fmt: skip
    assert not matches(cond(keywords=["password"]), ctx(messages=messages))
    assert matches(cond(keywords=["password"], scope="all"), ctx(messages=messages))


def test_regex_searches_and_content_parts_count_as_text() -> None:
    parts = ({"role": "user", "content": [{"type": "text", "text": "ticket ABC-123"}, {"type": "image_url"}]},)
    assert matches(cond(regex=[r"[A-Z]{3}-\d+"]), ctx(messages=parts))
    assert not matches(cond(regex=[r"^\d+$"]), ctx("abc"))


def test_model_patterns_use_wildcards() -> None:
    c = cond(model=["gpt-4*", "cloud"])
    assert matches(c, ctx(model="gpt-4o"))
    assert matches(c, ctx(model="cloud"))
    assert not matches(c, ctx(model="gpt-3.5-turbo"))


def test_token_and_message_ranges_are_inclusive() -> None:
    assert matches(cond(prompt_tokens={"min": 10, "max": 20}), ctx(prompt_tokens=10))
    assert matches(cond(prompt_tokens={"max": 20}), ctx(prompt_tokens=20))
    assert "outside 10..20" in why_not(cond(prompt_tokens={"min": 10, "max": 20}), ctx(prompt_tokens=21))
    assert matches(cond(messages={"min": 2}), ctx(messages=({"role": "user", "content": "a"},) * 2))
    assert not matches(cond(messages={"min": 2}), ctx())


def test_headers_match_values_case_insensitively_and_star_means_present() -> None:
    c = cond(headers={"X-Team": ["Legal", "hr"]})
    assert matches(c, ctx(headers={"x-team": "legal"}))
    assert not matches(c, ctx(headers={"x-team": "sales"}))
    assert "absent" in why_not(c, ctx())
    assert matches(cond(headers={"x-user": "*"}), ctx(headers={"x-user": "ann"}))


def test_all_conditions_of_a_rule_must_hold() -> None:
    c = cond(keywords=["invoice"], headers={"x-team": "finance"})
    assert matches(c, ctx("the invoice", headers={"x-team": "finance"}))
    assert not matches(c, ctx("the invoice"))


def test_any_all_not_compose() -> None:
    c = cond(any=[{"keywords": ["a1"]}, {"keywords": ["b2"]}], **{"not": {"headers": {"x-team": "ops"}}})
    assert matches(c, ctx("say b2"))
    assert not matches(c, ctx("say b2", headers={"x-team": "ops"}))
    assert not matches(c, ctx("say c3"))
    assert matches(cond(all=[{"keywords": ["x"]}, {"prompt_tokens": {"min": 1}}]), ctx("x", prompt_tokens=3))


def test_first_matching_rule_wins_and_the_trace_says_why_others_did_not() -> None:
    engine = parse_policy(
        """
rules:
  - {name: first, when: {keywords: [alpha]}, route: cloud}
  - {name: second, when: {keywords: [beta]}, route: local}
  - {name: third, when: {keywords: [beta]}, route: cloud}
""",
        "p",
    )
    result = engine.evaluate(ctx("beta"))
    assert result.rule is not None and result.rule.name == "second"
    assert [(t.rule, t.matched) for t in result.trace] == [("first", False), ("second", True)]
    assert "alpha" in result.trace[0].why_not
    assert engine.evaluate(ctx("gamma")).rule is None
