"""Routing's order of authority: a matching rule, then an explicit model, then the policy default."""

from __future__ import annotations

from typing import Any

import pytest

from router.config import GatewayConfig
from router.errors import ModelNotFound
from router.policy import parse_policy
from router.policy.facts import Facts
from router.routing import Router
from tests.facts import facts

CONFIG = GatewayConfig.model_validate(
    {
        "models": {
            "small": {"engine": "llama-cpp"},
            "big": {"engine": "litellm", "model": "openai/gpt-4o"},
            "pool": {"engine": "openai-compatible", "model": "qwen", "api_base": "http://127.0.0.1:1/v1"},
        },
        "routes": {"local": "small", "cloud": "big"},
        "aliases": {"gpt-4o-mini": "cloud", "fast": "pool"},
    }
)
POLICY = parse_policy(
    """
default: {route: local}
rules:
  - {name: private, when: {keywords: [secret]}, route: local, pin: true}
  - {name: research, when: {headers: {x-team: research}}, route: cloud, max_tokens: 100}
""",
    "p",
    CONFIG.models,
)


def ctx(text: str = "hi", model: str = "auto", **kw: Any) -> Facts:
    return facts(text=text, model=model, **kw)


def decide(context: Facts, config: GatewayConfig = CONFIG):
    return Router(config, POLICY).decide(context)


def test_auto_takes_the_default_route() -> None:
    d = decide(ctx())
    assert (d.route, d.model, d.reason, d.rule) == ("local", "small", "default", None)
    assert d.fallbacks == ("big",)


def test_unknown_model_takes_the_default_route() -> None:
    assert decide(ctx(model="llama-70b")).reason == "default"


def test_unknown_model_is_rejected_when_configured() -> None:
    strict = CONFIG.model_copy(update={"server": CONFIG.server.model_copy(update={"unknown_models": "reject"})})
    with pytest.raises(ModelNotFound):
        decide(ctx(model="llama-70b"), strict)
    assert decide(ctx(model="local"), strict).route == "local"


def test_explicit_models_and_aliases() -> None:
    cloud = decide(ctx(model="cloud"))
    assert (cloud.route, cloud.model, cloud.reason) == ("cloud", "big", "requested-model")
    assert cloud.fallbacks == ("small",)
    alias = decide(ctx(model="gpt-4o-mini"))
    assert (alias.route, alias.model) == ("cloud", "big")
    pool = decide(ctx(model="fast"))
    assert (pool.route, pool.model) == ("local", "pool")


def test_a_matching_rule_overrules_the_requested_model() -> None:
    d = decide(ctx("my secret plan", model="cloud"))
    assert (d.route, d.reason, d.rule) == ("local", "private", "private")


def test_pinned_local_rule_forbids_the_cloud_and_fallbacks() -> None:
    d = decide(ctx("secret"))
    assert d.allow_cloud is False
    assert d.fallbacks == ()


def test_rule_caps_max_tokens() -> None:
    assert decide(ctx(headers={"x-team": "research"})).max_tokens_cap == 100


def test_cloud_route_without_a_cloud_model_stays_cloud_and_falls_back() -> None:
    no_cloud = CONFIG.model_copy(update={"routes": CONFIG.routes.model_copy(update={"cloud": []})})
    d = decide(ctx(model="cloud"), no_cloud)
    assert d.route == "cloud" and d.model == "small"


def test_ordered_cloud_models_are_tried_in_turn_then_local() -> None:
    config = CONFIG.model_copy(
        update={
            "models": {**CONFIG.models, "big2": CONFIG.models["big"]},
            "routes": CONFIG.routes.model_copy(update={"cloud": ["big", "big2"]}),
        }
    )
    d = decide(ctx(model="cloud"), config)
    assert (d.model, d.fallbacks) == ("big", ("big2", "small"))
    local = decide(ctx(), config)
    assert (local.model, local.fallbacks) == ("small", ("big", "big2"))


def test_a_rule_may_list_its_models_in_order() -> None:
    policy = parse_policy("rules:\n  - {name: r, when: {keywords: [x]}, route: [pool, cloud]}\n", "p", CONFIG.models)
    d = Router(CONFIG, policy).decide(ctx("x"))
    assert (d.route, d.model, d.fallbacks) == ("local", "pool", ("big",))


AUTO_POLICY = """
default: {route: auto, threshold: 0.5}
rules:
  - {name: research, when: {headers: {x-team: research}}, route: auto, threshold: 0.9}
"""


def test_auto_sends_high_scores_to_the_cloud_and_low_ones_to_local() -> None:
    router = Router(CONFIG, parse_policy(AUTO_POLICY, "p", CONFIG.models))
    high = router.decide(ctx(scores={"escalation": 0.7}))
    assert (high.route, high.reason, dict(high.scores)) == (
        "cloud",
        "classifier",
        {"escalation": 0.7, "threshold": 0.5},
    )
    assert router.decide(ctx(scores={"escalation": 0.3})).route == "local"
    assert router.decide(ctx(scores={"escalation": 0.5})).route == "cloud"  # at the threshold: escalate


def test_a_rule_using_auto_keeps_its_name_and_its_own_threshold() -> None:
    router = Router(CONFIG, parse_policy(AUTO_POLICY, "p", CONFIG.models))
    d = router.decide(ctx(scores={"escalation": 0.7}, headers={"x-team": "research"}))
    assert (d.route, d.reason) == ("local", "research")


def test_auto_without_a_score_answers_locally_and_says_why() -> None:
    d = Router(CONFIG, parse_policy(AUTO_POLICY, "p", CONFIG.models)).decide(ctx())
    assert (d.route, d.reason) == ("local", "classifier-unavailable")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("default: {route: auto}\n", "needs a `threshold`"),
        ("default: {route: local, threshold: 0.3}\n", "only applies to `route: auto`"),
        ("default: {route: [auto, cloud], threshold: 0.3}\n", "cannot be part of a route list"),
        ("default: {route: auto, threshold: 1.5}\n", "less than or equal to 1"),
    ],
)
def test_auto_and_threshold_go_together(text: str, message: str) -> None:
    from router.errors import PolicyError

    with pytest.raises(PolicyError, match=message):
        parse_policy(text, "p", CONFIG.models)


def test_a_prompt_too_long_for_the_local_context_goes_where_it_fits_with_its_own_reason() -> None:
    fits = decide(ctx(prompt_tokens=1000))
    assert (fits.model, fits.reason) == ("small", "default")
    too_long = decide(ctx(prompt_tokens=4000))  # the local model's n_ctx is 4096, and an answer needs room
    assert (too_long.route, too_long.model, too_long.reason, too_long.fallbacks) == (
        "cloud",
        "big",
        "context-window",
        (),
    )
    pinned = decide(ctx("secret plans", prompt_tokens=4000))  # pinned to local: it refuses there, saying why
    assert (pinned.model, pinned.allow_cloud) == ("small", False)


def test_the_clients_api_puts_cloud_models_of_its_family_first() -> None:
    from router.types import NativeRequest

    config = GatewayConfig.model_validate({
        "models": {"small": {"engine": "llama-cpp"}, "gpt": {"engine": "litellm", "model": "openai/gpt-5"},
                   "claude": {"engine": "litellm", "model": "anthropic/claude-sonnet-4-5"}},
        "routes": {"local": "small", "cloud": ["gpt", "claude"]},
    })  # fmt: skip
    cloud = parse_policy("default: {route: cloud}", "p", config.models)
    messages = NativeRequest("messages", {"model": "claude-opus-4"})
    assert Router(config, cloud).decide(ctx(native=messages)).model == "claude"
    assert Router(config, cloud).decide(ctx()).model == "gpt"
    responses = NativeRequest("responses", {"model": "gpt-5"})
    assert Router(config, cloud).decide(ctx(native=responses)).model == "gpt"


def test_a_request_only_its_own_api_carries_is_refused_where_no_model_takes_that_api() -> None:
    from router.types import NativeRequest

    native = NativeRequest("messages", {}, requires=("`document` blocks",))
    refused = decide(ctx(native=native))  # CONFIG's cloud is an OpenAI model
    assert refused.deny is not None and refused.deny.code == "capability_unavailable"
    assert "Anthropic Messages" in refused.deny.message and "`document` blocks" in refused.deny.message


def test_a_prompt_too_long_stays_where_it_refuses_clearly_when_no_model_that_fits_can_answer() -> None:
    keyless = Router(CONFIG, POLICY, unavailable=lambda name: "no API key" if name == "big" else None)
    stays = keyless.decide(ctx(prompt_tokens=4000))  # the local model refuses: context_length_exceeded
    assert (stays.model, stays.reason) == ("small", "default")
