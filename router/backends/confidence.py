"""How sure the local model was of its answer, measured while it generates, without `logprobs=True`.

llama-cpp-python's `logprobs=True` path sorts Gemma's 262,144-token vocabulary in Python for every
token (~100x slower than plain generation). Instead a logits processor (llama calls it with the full
vocabulary's logits before it samples each token) keeps, per step, the log of the softmax's normaliser
and the entropy, and a copy of the logits; at the next step the token just sampled is the last input
id, so its log-probability is read from the copy. A few vectorised passes over the logits per token:
about a millisecond, against tens of milliseconds to generate the token. The last token's own
probability is not seen (nothing calls back after it), which for a finished answer is the end-of-turn
token, which OpenAI's usage leaves out too.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from router.cascade_rule import Confidence, PromptChances

if TYPE_CHECKING:
    from router.classify.prompt_state import StateProbe

FIRST_TOKENS_KEPT = 64
"""How many of an answer's first tokens' statistics a `Confidence` carries."""
LAST_TOKENS_KEPT = 16
"""How many of a whole answer's last tokens' statistics a `Confidence` carries."""


@dataclass(frozen=True, slots=True)
class TokenLogprob:
    """One sampled token: its id, log-probability, and the `top` most likely ids at that step."""

    token: int
    logprob: float
    top: tuple[tuple[int, float], ...] = ()


class EarlyCheck:
    """The cascade's keep-or-escalate decision, taken inside the generation once `after_tokens` tokens
    are known (or, by the cascade, at the end of an answer shorter than that; with `after_tokens` None,
    always at the end).

    The meter calls `judge` on the generation's thread with the first tokens' confidence; an escalation
    sets the generation's `cancel` event (which the backend hands over with `bind`), so the local model
    stops there. Streamed and non-streamed requests run the same check at the same token, so at
    temperature 0 they decide alike.
    """

    def __init__(self, after_tokens: int | None, escalate: Callable[[Confidence], bool], reads: str = "served") -> None:
        self.after_tokens = after_tokens
        self.reads = reads
        """Which of the model's probes reads the first step: `served` (its state probe, the prompt as the
        client sent it) or `letter` (its letter probe, the question asked aside for the letter only)."""
        self._escalate = escalate
        self._cancel: threading.Event | None = None
        self._lock = threading.Lock()
        self.escalated: bool | None = None
        """None until judged; then whether the local answer is handed to the cloud."""
        self.confidence: Confidence | None = None
        """What was judged: the first `after_tokens` tokens' confidence, or the whole of a shorter answer."""
        self.midway = False
        """Judged while the answer was being generated (so an escalation cut it short)."""

    def bind(self, cancel: threading.Event) -> None:
        self._cancel = cancel

    @property
    def decided(self) -> bool:
        return self.escalated is not None

    def judge(self, confidence: Confidence, midway: bool = False) -> bool:
        """Decide once (later calls return the first verdict); an escalation midway stops the generation."""
        with self._lock:
            if self.escalated is None:
                self.confidence, self.escalated, self.midway = confidence, self._escalate(confidence), midway
                if self.escalated and midway and self._cancel is not None:
                    self._cancel.set()
            return self.escalated


class ConfidenceMeter:
    """A llama-cpp-python logits processor that measures and changes nothing.

    With `keep_tokens`, it also keeps every sampled token's log-probability (and the `top_logprobs`
    likeliest alternatives), which is what a request's `logprobs: true` gets back from the local model.
    With `early`, it hands the first `early.after_tokens` tokens' confidence to that check as soon as
    it knows them.
    """

    def __init__(
        self, keep_tokens: bool = False, top_logprobs: int = 0, early: EarlyCheck | None = None,
        probe: StateProbe | None = None,
    ) -> None:  # fmt: skip
        self._probe = probe
        self._prompt: PromptChances | None = None
        """What `probe` read in the first step's logits (the model's state at the end of the prompt)."""
        self._previous: np.ndarray | None = None
        self._previous_log_z = 0.0
        self._logprobs: list[float] = []
        self._entropies: list[float] = []
        self._tops: list[float] = []
        """Per step, the likeliest token's log-probability (whichever token was sampled)."""
        self._keep = keep_tokens
        self._top = top_logprobs
        self.tokens: list[TokenLogprob] = []
        self._early = early
        self._seen = False
        """The last distribution's sampled token was already recorded (`sampled`)."""

    @property
    def keeps_tokens(self) -> bool:
        return self._keep

    def _alternatives(self) -> tuple[tuple[int, float], ...]:
        if not self._top or self._previous is None:
            return ()
        best = np.argpartition(-self._previous, self._top)[: self._top]
        best = best[np.argsort(-self._previous[best])]
        return tuple((int(i), float(self._previous[i]) - self._previous_log_z) for i in best)

    def last_token(self, token: int) -> TokenLogprob | None:
        """The final sampled token's entry (nothing calls back after it), from the last distribution seen."""
        if self._previous is None:
            return None
        return TokenLogprob(token, float(self._previous[token]) - self._previous_log_z, self._alternatives())

    def sampled(self, token: int) -> None:
        """The token just sampled from the last distribution seen, from a caller that knows it at once (the
        batched engine): its log-probability is recorded now rather than at the next step, so an early
        check decides one decode sooner."""
        if self._previous is not None and not self._seen:
            self._record(token)
            self._seen = True

    def _record(self, token: int) -> None:
        logprob = float(self._previous[token]) - self._previous_log_z  # type: ignore[index]
        self._logprobs.append(logprob)
        if self._keep:
            self.tokens.append(TokenLogprob(token, logprob, self._alternatives()))
        early = self._early
        if early is not None and early.after_tokens and not early.decided and len(self._logprobs) >= early.after_tokens:
            early.judge(self.result(early.after_tokens), midway=True)  # type: ignore[arg-type]

    def __call__(self, input_ids: np.ndarray, logits: np.ndarray) -> np.ndarray:
        if self._previous is not None and len(input_ids) and not self._seen:
            self._record(int(input_ids[-1]))
        self._seen = False
        current = np.array(logits, dtype=np.float32)  # contiguous copy: llama reuses its buffer
        top = float(current.max())
        weights = np.exp(current - top)
        total = float(weights.sum())
        log_z = top + math.log(total)
        # H = log Z - Σ p·x  (p = softmax(x)); one dot product instead of a log per token.
        self._entropies.append(log_z - float(weights @ current) / total)
        self._tops.append(top - log_z)
        self._previous, self._previous_log_z = current, log_z
        if len(self._entropies) == 1:
            self._read_prompt(current)
        return logits

    def _read_prompt(self, first: np.ndarray) -> None:
        """At the first step, before any token: the probe's chances, and a check set to decide after 0
        tokens decides now (on them, or on the first distribution where the model has no probe)."""
        if self._probe is not None and self._probe.n_vocab == len(first):
            self._prompt = self._probe.chances(first)
        early = self._early
        if early is not None and early.after_tokens == 0 and not early.decided:
            early.judge(self.result(1), midway=True)  # type: ignore[arg-type]

    def result(self, first: int | None = None) -> Confidence | None:
        """The confidence of the answer so far, or of its `first` tokens only."""
        if not self._entropies:
            return None
        kept = FIRST_TOKENS_KEPT if first is None else min(first, FIRST_TOKENS_KEPT)
        tail = slice(max(0, len(self._logprobs) - LAST_TOKENS_KEPT), len(self._logprobs))
        last = () if first is not None else tuple(zip(self._logprobs[tail], self._entropies[tail], strict=False))
        logprobs = self._logprobs[:first] or [0.0]
        entropies = self._entropies[:first]
        tops = self._tops[: first if first is not None else max(1, len(self._logprobs))]
        return Confidence(
            mean_logprob=sum(logprobs) / len(logprobs),
            min_logprob=min(logprobs),
            mean_entropy=sum(entropies) / len(entropies),
            tokens=len(self._logprobs[:first]),
            mean_top_logprob=sum(tops) / len(tops),
            first_tokens=tuple(zip(self._logprobs[:kept], self._entropies[:kept], strict=False)),
            last_tokens=last,
            prompt=self._prompt,
        )
