"""The confidence cascade: the local model's confidence is measured while it generates; an unsure local
answer is replaced by the cloud's (the stand-in, a real OpenAI-compatible server), a sure one is kept."""

from __future__ import annotations

import math

import numpy as np
import openai
import pytest

from router.backends.confidence import ConfidenceMeter
from router.cascade import CascadingExecutor
from router.cascade_rule import STRONG_CHANCE_UNKNOWN, CascadeSettings, Confidence
from router.errors import UpstreamUnavailable
from router.policy import parse_policy
from router.policy.facts import Facts
from router.types import Completion, Decision, RequestContext, Served, Usage
from tests.conftest import Gateway

SURE = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12,"  # mean log-probability about -0.03 on the default model
UNSURE = "Qwv plk: 88 zeta (krr"  # about -1.2
HEADERS = {"x-test": "cascade", "cache-control": "no-cache, no-store"}


def complete(gateway: Gateway, prompt: str):
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    raw = client.completions.with_raw_response.create(
        model="auto", prompt=prompt, max_tokens=12, temperature=0, extra_headers=HEADERS
    )
    return raw.headers, raw.parse()


def test_a_sure_local_answer_is_kept(gateway: Gateway) -> None:
    headers, answer = complete(gateway, SURE)
    assert headers["x-router-cascade"] == "kept" and headers["x-router-route"] == "local"
    assert float(headers["x-router-confidence"]) > -0.5
    assert answer.choices[0].text.strip().startswith("13")


def test_an_unsure_local_answer_goes_to_the_cloud(gateway: Gateway) -> None:
    headers, answer = complete(gateway, UNSURE)
    assert headers["x-router-cascade"] == "escalated"
    assert headers["x-router-route"] == "cloud" and headers["x-router-reason"] == "cascade"
    assert headers["x-router-model"] == "gpt-4o-mini" and answer.model == "gpt-4o-mini"
    assert float(headers["x-router-confidence"]) < -0.5


@pytest.mark.parametrize(("prompt", "verdict", "route"), [(SURE, "kept", "local"), (UNSURE, "escalated", "cloud")])
def test_the_expected_gain_cascade_weighs_the_served_prompts_strong_chance(
    gateway: Gateway, prompt: str, verdict: str, route: str
) -> None:
    """Through `router serve`: the scorer gives the request its strong chance (the shipped head), and the
    cascade escalates where that chance minus the first tokens' probability is over 0.3."""
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    gain = {**HEADERS, "x-test": "gain-cascade"}
    raw = client.completions.with_raw_response.create(
        model="auto", prompt=prompt, max_tokens=12, temperature=0, extra_headers=gain
    )
    assert raw.headers["x-router-cascade"] == verdict and raw.headers["x-router-route"] == route
    judged = float(raw.headers["x-router-confidence"])  # the expected gain judged
    assert -1.0 < judged < 1.0 and (judged > 0.3) == (verdict == "escalated")


@pytest.mark.parametrize(("prompt", "verdict", "route"), [(SURE, "kept", "local"), (UNSURE, "escalated", "cloud")])
def test_a_streamed_cascade_decides_before_the_first_byte(
    gateway: Gateway, prompt: str, verdict: str, route: str
) -> None:
    client = openai.OpenAI(base_url=gateway.v1, api_key="unused", max_retries=0, timeout=120)
    raw = client.completions.with_raw_response.create(
        model="auto", prompt=prompt, max_tokens=12, temperature=0, extra_headers=HEADERS, stream=True
    )
    assert raw.headers["x-router-cascade"] == verdict and raw.headers["x-router-route"] == route
    text = "".join(chunk.choices[0].text for chunk in raw.parse() if chunk.choices)
    _, whole = complete(gateway, prompt)
    assert text == whole.choices[0].text


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    return x - x.max() - math.log(np.exp(x - x.max()).sum())


def entropy(x: np.ndarray) -> float:
    return float(-(np.exp(log_softmax(x)) * log_softmax(x)).sum())


def greedy_meter(steps: list[np.ndarray]) -> tuple[ConfidenceMeter, list[int]]:
    """A meter fed `steps` as llama feeds its logits processor, each step's likeliest token sampled."""
    chosen = [int(np.argmax(s)) for s in steps]
    meter = ConfidenceMeter()
    for k, logits in enumerate(steps):
        meter(np.array([5, 6, 7, *chosen[:k]]), logits)
    return meter, chosen


def test_the_meter_reads_sampled_tokens_log_probabilities_and_entropy() -> None:
    rng = np.random.default_rng(0)
    steps = [rng.standard_normal(1000).astype(np.float32) * 3 for _ in range(4)]
    meter, chosen = greedy_meter(steps)

    # Step k's token is seen at step k+1: the last one never is (it is the end-of-turn token in practice).
    expected = [log_softmax(steps[k])[chosen[k]] for k in range(3)]
    entropies = [entropy(s) for s in steps]
    result = meter.result()
    assert result.tokens == 3
    assert result.mean_logprob == pytest.approx(np.mean(expected), abs=1e-4)
    assert result.min_logprob == pytest.approx(min(expected), abs=1e-4)
    assert result.mean_entropy == pytest.approx(np.mean(entropies), abs=1e-3)


def test_a_whole_answers_last_tokens_are_kept_and_a_judgement_on_its_first_tokens_has_none() -> None:
    """`last_tokens` pairs each of a whole answer's last tokens' log-probability with its step's entropy."""
    from router.backends.confidence import LAST_TOKENS_KEPT

    rng = np.random.default_rng(1)
    steps = [rng.standard_normal(200).astype(np.float32) * (1 + k % 5) for k in range(LAST_TOKENS_KEPT + 6)]
    meter, chosen = greedy_meter(steps)

    # Step k's token is seen at step k+1, so the answer's tokens are those of every step but the last.
    expected = [(log_softmax(steps[k])[chosen[k]], entropy(steps[k])) for k in range(len(steps) - 1)]
    whole = meter.result()
    assert whole.tokens == len(steps) - 1  # the last step's token is never seen
    assert len(whole.last_tokens) == LAST_TOKENS_KEPT
    assert np.array(whole.last_tokens) == pytest.approx(np.array(expected[-LAST_TOKENS_KEPT:]), abs=1e-3)
    assert meter.result(3).last_tokens == ()


def test_entropy_escalates_above_its_threshold_and_log_probabilities_below() -> None:
    sure = Confidence(mean_logprob=-0.1, min_logprob=-0.5, mean_entropy=0.3, tokens=5)
    unsure = Confidence(mean_logprob=-1.5, min_logprob=-6.0, mean_entropy=3.5, tokens=5)
    for settings in (CascadeSettings("mean_logprob", -0.5), CascadeSettings("min_logprob", -3.0),
                     CascadeSettings("mean_entropy", 2.0)):  # fmt: skip
        assert not settings.escalate(sure) and settings.escalate(unsure)


def test_expected_gain_weighs_the_strong_models_chance_against_the_local_answers_probability() -> None:
    """Escalate when P(strong right) minus the answer's own probability (exp of mean_top_logprob) exceeds the
    threshold: the same answer is kept where the strong model is likely wrong too, and sent up where not."""
    answer = Confidence(mean_logprob=-0.7, min_logprob=-0.7, mean_entropy=1.0, tokens=1, mean_top_logprob=-0.7)
    surely_right = CascadeSettings("expected_gain", 0.2, 1, strong_chance=0.95)
    often_wrong = CascadeSettings("expected_gain", 0.2, 1, strong_chance=0.6)
    assert surely_right.measure(answer) == pytest.approx(0.95 - np.exp(-0.7))
    assert surely_right.escalate(answer) and not often_wrong.escalate(answer)
    unknown = CascadeSettings("expected_gain", 0.2, 1)  # a head without a strong half: GPT-4's MMLU rate stands in
    assert unknown.measure(answer) == pytest.approx(STRONG_CHANCE_UNKNOWN - np.exp(-0.7))


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ("route: auto\n    cascade: {metric: expected_gain, threshold: 1.5}", "an expected gain lies in -1..1"),
        ("route: cloud\n    cascade: {threshold: -1}", "`cascade` needs `route: local` or `route: auto`"),
        ("route: local\n    pin: true\n    cascade: {threshold: -1}", "cannot `cascade`"),
        ("route: local\n    cascade: {threshold: 0.5}", "a log-probability is at most 0"),
        ("route: local\n    cascade: {metric: mean_entropy, threshold: -1}", "an entropy is at least 0"),
    ],
)
def test_cascade_rules_that_cannot_work_are_refused(rule: str, expected: str) -> None:
    from router.errors import PolicyError

    text = f"rules:\n  - name: r\n    when: {{keywords: [x]}}\n    {rule}\n"
    with pytest.raises(PolicyError, match=expected):
        parse_policy(text, "p.yaml")


class _CloudDown:
    """A stand-in executor: the local model answers unsure, every cloud call fails."""

    def __init__(self, reachable: bool = True) -> None:
        self.reachable = reachable
        self.measured: list[bool] = []

    def can_reach(self, decision: Decision) -> bool:
        return self.reachable

    async def complete(
        self, ctx: RequestContext, decision: Decision, max_tokens: int | None, deadline: float, confidence: bool = False
    ):
        self.measured.append(confidence)
        if decision.route == "cloud":
            raise UpstreamUnavailable("cloud down")
        unsure = Confidence(-2.0, -5.0, 4.0, 3)
        return Completion("local answer", "stop", Usage(1, 3), "gemma", confidence=unsure), Served(
            decision, "gemma", "local"
        )


async def test_when_the_cloud_cannot_answer_the_local_answer_stands() -> None:
    from router.config import GatewayConfig
    from router.routing import Router

    config = GatewayConfig()
    router = Router(config, parse_policy("default: {route: local, cascade: {threshold: -0.5}}\n", "p"))
    ctx = RequestContext("r", "chat", "auto", ({"role": "user", "content": "hi"},))
    decision = router.decide(Facts(ctx))
    assert decision.cascade is not None
    completion, served = await CascadingExecutor(_CloudDown(), router).complete(ctx, decision, 8, math.inf)
    assert completion.content == "local answer" and served.cascade == "escalation-failed" and served.route == "local"


async def test_with_no_cloud_to_escalate_to_the_cascade_stands_aside() -> None:
    """No key, no cloud: the answer is not held back to measure a confidence nobody can act on."""
    from router.config import GatewayConfig
    from router.routing import Router

    router = Router(GatewayConfig(), parse_policy("default: {route: local, cascade: {threshold: -0.5}}\n", "p"))
    ctx = RequestContext("r", "chat", "auto", ({"role": "user", "content": "hi"},))
    executor = _CloudDown(reachable=False)
    completion, served = await CascadingExecutor(executor, router).complete(ctx, router.decide(Facts(ctx)), 8, math.inf)
    assert completion.content == "local answer" and served.cascade is None
    assert executor.measured == [False]


# -- the early-deciding cascade (`decide_after_tokens`) ---------------------------------------------------

EARLY = {"x-test": "early-cascade", "cache-control": "no-cache, no-store"}


def _client(base: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)


def test_an_early_cascade_streams_a_kept_answer_while_the_local_model_is_still_writing_it(gateway: Gateway) -> None:
    raw = _client(gateway.v1).completions.with_raw_response.create(
        model="auto", prompt=SURE, max_tokens=120, temperature=0, extra_headers=EARLY, stream=True
    )
    assert raw.headers["x-router-cascade"] == "kept" and raw.headers["x-router-route"] == "local"
    chunks = iter(raw.parse())
    first = next(chunk for chunk in chunks if chunk.choices and chunk.choices[0].text)
    # The first bytes are here and the local model is still generating the same answer: it was not
    # buffered whole (120 tokens take seconds; this check takes milliseconds).
    assert gateway.stats()["busy"] >= 1
    rest = "".join(chunk.choices[0].text for chunk in chunks if chunk.choices)
    assert (first.choices[0].text + rest).strip().startswith("13")


def test_an_escalated_early_stream_carries_the_clouds_answer_and_no_local_token(gateway: Gateway) -> None:
    client = _client(gateway.v1)
    raw = client.completions.with_raw_response.create(
        model="auto", prompt=UNSURE, max_tokens=12, temperature=0, extra_headers=EARLY, stream=True
    )
    assert raw.headers["x-router-cascade"] == "escalated" and raw.headers["x-router-route"] == "cloud"
    streamed = "".join(chunk.choices[0].text for chunk in raw.parse() if chunk.choices)

    def answer(**headers: str) -> str:
        extra = {"cache-control": "no-cache, no-store", **headers}
        return (
            client.completions.create(model="auto", prompt=UNSURE, max_tokens=12, temperature=0, extra_headers=extra)
            .choices[0]
            .text
        )

    cloud, local = answer(**{"x-team": "research"}), answer()
    assert cloud != local  # the two models answer differently, so a local token would show
    assert streamed == cloud


@pytest.mark.parametrize("prompt", [SURE, UNSURE, "The capital of France is", "Qwv plk zeta 88"])
def test_streamed_and_whole_requests_get_the_same_early_decision(gateway: Gateway, prompt: str) -> None:
    client = _client(gateway.v1)
    whole = client.completions.with_raw_response.create(
        model="auto", prompt=prompt, max_tokens=24, temperature=0, extra_headers=EARLY
    )
    streamed = client.completions.with_raw_response.create(
        model="auto", prompt=prompt, max_tokens=24, temperature=0, extra_headers=EARLY, stream=True
    )
    text = "".join(chunk.choices[0].text for chunk in streamed.parse() if chunk.choices)
    for header in ("x-router-cascade", "x-router-route", "x-router-confidence"):
        assert whole.headers[header] == streamed.headers[header], header
    assert text == whole.parse().choices[0].text


def test_an_early_check_judges_the_first_tokens_and_stops_an_escalated_generation() -> None:
    import threading

    from router.backends.confidence import EarlyCheck

    rng = np.random.default_rng(1)
    flat = np.zeros(1000, dtype=np.float32)  # every token equally likely: log-probability -log(1000)
    sure = flat.copy()
    sure[7] = 40.0
    for steps, escalates in (([sure] * 3 + [flat] * 5, False), ([flat] * 3 + [sure] * 5, True)):
        check = EarlyCheck(3, CascadeSettings("mean_logprob", -1.0).escalate)
        cancel = threading.Event()
        check.bind(cancel)
        meter = ConfidenceMeter(early=check)
        ids: list[int] = [1, 2]
        for logits in steps:
            meter(np.array(ids), logits)
            ids.append(int(np.argmax(logits + rng.random(1000) * 1e-3)))
        assert check.decided and check.midway and check.escalated is escalates
        assert check.confidence is not None and check.confidence.tokens == 3
        assert cancel.is_set() is escalates  # only an escalation stops the local model
        assert meter.result().tokens == 7  # the meter itself went on measuring the whole answer


def test_an_answer_shorter_than_the_early_check_is_judged_whole_by_the_cascade() -> None:
    from router.backends.confidence import EarlyCheck

    check = EarlyCheck(16, CascadeSettings("mean_logprob", -0.5).escalate)
    meter = ConfidenceMeter(early=check)
    sure = np.zeros(50, dtype=np.float32)
    sure[3] = 30.0
    for ids in ([1], [1, 3], [1, 3, 3]):
        meter(np.array(ids), sure)
    assert not check.decided  # three tokens, fewer than 16: the cascade judges the whole answer at its end
    assert check.judge(meter.result()) is False and not check.midway


def test_a_token_reported_as_sampled_is_counted_once_and_judged_a_step_sooner() -> None:
    from router.backends.confidence import EarlyCheck

    sure = np.zeros(50, dtype=np.float32)
    sure[3] = 30.0
    told, untold = EarlyCheck(2, lambda c: False), EarlyCheck(2, lambda c: False)
    with_sampled, without = ConfidenceMeter(early=told), ConfidenceMeter(early=untold)
    ids = [1]
    for step in range(3):
        with_sampled(np.array(ids), sure)
        without(np.array(ids), sure)
        with_sampled.sampled(3)  # the batched engine reports the token as soon as it has sampled it
        ids.append(3)
        if step == 1:  # two tokens sampled: one meter knows both, the other only the first
            assert told.decided and not untold.decided
    assert with_sampled.result().tokens == 3 and without.result().tokens == 2
    assert with_sampled.result(2) == without.result(2)


def test_the_likeliest_tokens_log_probability_does_not_move_with_what_was_sampled() -> None:
    steps = [np.array([4.0, 2.0, 0.0, -1.0], dtype=np.float32)] * 4
    greedy, sampled = ConfidenceMeter(), ConfidenceMeter()
    for k, logits in enumerate(steps):
        greedy(np.array([9] + [0] * k), logits)  # always the likeliest token
        sampled(np.array([9] + [2] * k), logits)  # a sampler's less likely pick every time
    g, s = greedy.result(), sampled.result()
    assert s.mean_logprob < g.mean_logprob  # the sampled tokens' own log-probability falls...
    assert s.mean_top_logprob == pytest.approx(g.mean_top_logprob) == pytest.approx(g.mean_logprob)  # ...this not
    assert CascadeSettings("mean_top_logprob", -0.5).escalate(s) is False
