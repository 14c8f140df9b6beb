"""The cascade's `letter_gain`: a multiple-choice question asked aside for its letter.

Asked a multiple-choice question as a client asks it, the default model reasons first ("To determine
…"), and its first tokens are as sure when it ends wrong as when it ends right (AUROC 0.50 on the MMLU
labels), so a cascade that judges them ranks by the head's guess of the cloud's chance alone. Asked the
same question with its answer started "The correct answer is", its next token is the letter, and that
letter's probability says whether the answer it *serves* is right (AUROC 0.66), while the model's state
one token before the letter says whether the strong model will be (0.74, against 0.69 from the prompt's
embedding). So for a multiple-choice question the cascade first runs the local model aside on that
rendering for one token; its letter probe (`router train --prompt-state` on `router states --reading aside`,
shipped as `heads/<package>.letter-state.npz`) reads P(strong right) in that step's logits, and the
gain P(strong right) - the letter's probability decides before the served answer starts. Measured on
1,400 served-style labels of held-out domains: APGR 0.615 against 0.581 for the first-token rule
(bench/RESULTS.md).

The aside's prompt is the served prompt and four tokens more, so the served answer that follows finds
all of it cached (0.1 s more to a kept question's first token, measured). Any other request, or an aside
call that fails or measures nothing, is judged as `expected_gain` would judge it.
"""

from __future__ import annotations

import re
from dataclasses import replace

from router.cascade_rule import CascadeSettings
from router.types import RequestContext

LETTER_GAIN = "letter_gain"
ANSWER_START = "The correct answer is"
"""What the aside's answer starts with: the letter comes next (" C" is one token), after the served
prompt's own tokens, which the served answer then finds cached."""

_OPTION = re.compile(r"^[ \t]*\(?([A-D])[.):][ \t]+\S", re.MULTILINE)
"""An option line: "A. Paris", "(B) Lyon", "C) Nice", "D: Lille"."""


def is_multiple_choice(text: str) -> bool:
    """Whether `text` lists options A, B, C and D, each on a line of its own, in that order."""
    listed = (found.group(1) for found in _OPTION.finditer(text))
    return all(letter in listed for letter in "ABCD")  # each `in` goes on from where the last stopped


def asks_letter(ctx: RequestContext, cascade: CascadeSettings | None) -> bool:
    """Whether the cascade asks this request's question aside for its letter first."""
    return (
        cascade is not None
        and cascade.metric == LETTER_GAIN
        and ctx.kind == "chat"
        and is_multiple_choice(ctx.last_user_text())
    )


def letter_request(ctx: RequestContext) -> RequestContext:
    """The question as served, its answer started with `ANSWER_START` (what the letter probe was fitted on):
    one token at temperature 0, nothing of the client's extras (tools and formats would change the prompt
    the probe reads and constrain the letter)."""
    return replace(
        ctx, prompt=None, params={"max_tokens": 1, "temperature": 0.0}, passthrough={}, stream=False,
        include_usage=False, native=None, omitted=(), answer_start=ANSWER_START,
    )  # fmt: skip


def judged_as_expected_gain(cascade: CascadeSettings) -> CascadeSettings:
    """The same cascade for a request the letter is not asked of."""
    return replace(cascade, metric="expected_gain") if cascade.metric == LETTER_GAIN else cascade
