"""Continuous batching in the in-process backend, with a real model (Gemma 3 270M) and llama.cpp.

Untimed: what is proven is that requests decoded together get exactly what they get alone, that a
request that goes away frees its sequence, and that the queue sheds load with 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.backends.llama_cpp import LlamaCppBackend
from router.config import LlamaCppModel, Settings
from router.errors import Overloaded
from router.types import RequestContext

PROMPTS = [
    "The capital of France is",
    "Once upon a time, there was a",
    "def fibonacci(n):",
    "The three primary colours are",
    "My favourite recipe for pancakes:",
]
# Gemma's end-of-sequence and end-of-turn tokens, suppressed so a generation runs until cut off.
NEVER_STOP = {"1": -100, "106": -100}


def _text(prompt: str, **params: object) -> RequestContext:
    return RequestContext("r", "text", "local", ({"role": "user", "content": prompt},), prompt=prompt,
                          params={"temperature": 0, **params})  # fmt: skip


async def _backend(**spec: object) -> LlamaCppBackend:
    backend = LlamaCppBackend(
        "gemma", LlamaCppModel(package="gemma-3-270m", n_ctx=1024, n_threads=2, **spec), Settings().model_dir
    )
    await backend.start()
    assert backend.ready, backend.unavailable_reason()
    return backend


@pytest.fixture
async def batched() -> AsyncIterator[LlamaCppBackend]:
    # A queued request waits up to 10 min: on a loaded box the queue must not empty itself by timing out
    # before a test has seen it full.
    backend = await _backend(parallel=4, step_tokens=64, max_queue=2, max_queue_wait_s=600, exact_batching=True)
    yield backend
    await backend.close()


async def test_interleaved_requests_get_the_tokens_they_get_alone(batched: LlamaCppBackend) -> None:
    alone = [(await batched.complete(_text(p), 24)).content for p in PROMPTS]
    together = await asyncio.gather(*(batched.complete(_text(p), 24) for p in PROMPTS))  # 5 on 4 sequences
    assert [c.content for c in together] == alone
    assert all(c.usage.completion_tokens == 24 and c.finish_reason == "length" for c in together)
    assert all(len(text) > 20 for text in alone)


async def test_a_stream_that_goes_away_frees_its_sequence(batched: LlamaCppBackend) -> None:
    before = batched.stats()
    stream = batched.stream(_text("Count to a thousand:", logit_bias=NEVER_STOP), 800)
    received = 0
    async for delta in stream:
        received += bool(delta.content)
        if received == 3:
            break
    await stream.aclose()
    for _ in range(200):
        if batched.stats()["busy"] == 0:
            break
        await asyncio.sleep(0.05)
    after = batched.stats()
    assert after["busy"] == 0
    assert after["cancelled"] == before["cancelled"] + 1
    assert 3 <= after["abandoned_tokens"] - before["abandoned_tokens"] < 800
    answer = await batched.complete(_text("The capital of France is"), 4)  # the sequence is free again
    assert answer.usage.completion_tokens == 4


async def test_past_its_queue_the_model_answers_503_with_retry_after(batched: LlamaCppBackend) -> None:
    long = [asyncio.create_task(batched.complete(_text(f"Story {i}:", logit_bias=NEVER_STOP), 400)) for i in range(6)]
    for _ in range(30000):  # 4 generating, 2 queued (the bound only keeps a broken engine from hanging CI)
        if batched.stats()["busy"] == 4 and batched.stats()["waiting"] == 2:
            break
        await asyncio.sleep(0.02)
    assert (batched.stats()["busy"], batched.stats()["waiting"]) == (4, 2)
    with pytest.raises(Overloaded) as refused:
        await batched.complete(_text("one more"), 4)
    assert refused.value.status_code == 503 and refused.value.headers == {"Retry-After": "1"}
    for task in long:
        task.cancel()
    await asyncio.gather(*long, return_exceptions=True)


async def test_a_shared_prefix_is_computed_once(batched: LlamaCppBackend) -> None:
    system = "You are a helpful assistant for a bakery. Answer in one short sentence. " * 6
    first = await batched.complete(_text(system + "What is bread?"), 8)
    reused_before = batched.stats()["prefix_tokens_reused"]
    again = await batched.complete(_text(system + "What is bread?"), 8)
    other = await batched.complete(_text(system + "What is cake?"), 8)
    assert batched.stats()["prefix_tokens_reused"] - reused_before > 2 * 60  # both found the system prompt
    assert again.content == first.content  # reused cells give the same answer
    assert other.content


async def test_json_mode_stops_and_confidence_work_in_a_batch(batched: LlamaCppBackend) -> None:
    chat = RequestContext(
        "r", "chat", "local", ({"role": "user", "content": "Give me a JSON object with a name and an age."},),
        params={"temperature": 0}, passthrough={"response_format": {"type": "json_object"}},
    )  # fmt: skip
    stopped = _text("one, two, three, four,", stop=[" six"])
    measured = RequestContext(
        "r", "text", "local", ({"role": "user", "content": "Hello"},), prompt="Hello",
        params={"temperature": 0}, passthrough={"logprobs": 2},
    )  # fmt: skip
    as_json, cut, sure = await asyncio.gather(
        batched.complete(chat, 48), batched.complete(stopped, 24), batched.complete(measured, 6, confidence=True)
    )
    if as_json.finish_reason == "stop":
        assert isinstance(json.loads(as_json.content), dict)
    else:
        assert as_json.content.lstrip().startswith("{")
    assert " six" not in cut.content and cut.finish_reason == "stop"
    assert sure.confidence is not None and sure.confidence.tokens >= 1
    assert sure.logprobs is not None and len(sure.logprobs["tokens"]) == sure.usage.completion_tokens
    assert "".join(sure.logprobs["tokens"]) == sure.content


def test_parallel_and_instances_are_one_or_the_other(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not both"):
        LlamaCppModel(parallel=4, instances=2)


async def test_a_seed_gives_the_same_sampled_answer_whether_the_prompt_was_cached_or_not() -> None:
    """The shipped default (exact_batching off): the first request computes its whole prompt, the next ones
    find it cached; the prompt's last token is decoded alone either way, so the same seed samples the same
    tokens at temperature 1."""
    backend = await _backend(parallel=4, step_tokens=64)
    try:
        answers = [
            (await backend.complete(_text(PROMPTS[4], temperature=1.0, seed=7, logit_bias=NEVER_STOP), 24)).content
            for _ in range(3)
        ]
        other_seed = await backend.complete(_text(PROMPTS[4], temperature=1.0, seed=8, logit_bias=NEVER_STOP), 24)
        assert backend.stats().get("prefix_tokens_reused", 1) > 0  # the later ones did find the prompt cached
    finally:
        await backend.close()
    assert answers[0] == answers[1] == answers[2] and len(answers[0]) > 20
    assert other_seed.content != answers[0]  # the seed is what fixes the sample


def test_a_burst_of_prompts_is_prefilled_oldest_half_first() -> None:
    """The scheduling rule alone (no model): of several prompts waiting at once, a step prefills the oldest
    half (at least one), so their first tokens come after half the work; `all` and exact batching take
    every waiting prompt the budget holds, as before. Its effect on first tokens is in bench.team_load."""
    from router.backends.batch_sequences import Generation, Slot
    from router.backends.llama_batch import BatchEngine
    from router.backends.llama_sampling import Sampling

    def engine(mode: str, exact: bool = False) -> BatchEngine:
        e = BatchEngine.__new__(BatchEngine)
        e.exact, e.burst_prefill = exact, mode
        e._slots = [Slot(i) for i in range(6)]
        for slot, admitted in zip(e._slots, (5, 2, 4, 1, 3), strict=False):  # slot 5 stays free
            slot.job = Generation([1] * 10, 8, Sampling(), [], lambda _: None, lambda *_: None)
            slot.admitted = admitted
        e._slots[1].fed = 10  # admitted second, prompt already in the cache: decoding, not waiting
        return e

    assert [s.admitted for s in engine("half")._prefilling()] == [1, 3]  # 4 waiting: the oldest 2
    assert [s.admitted for s in engine("all")._prefilling()] == [1, 3, 4, 5]
    assert [s.admitted for s in engine("half", exact=True)._prefilling()] == [5, 4, 1, 3]  # slot order, all
