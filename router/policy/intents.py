"""Intents: named kinds of request, each given by example utterances, matched by embedding similarity.

A policy's `intents:` section names them; a rule's `when: {intent: billing}` holds when the request's
nearest intent is `billing`. The request's text is compared with every example (one matrix product over
unit vectors, so cosine similarity): the intent with the most similar example wins when that similarity
reaches its threshold, when it beats the runner-up intent by the policy's margin, and when no
counter-example of that intent is nearer still. Otherwise no intent matches, and `why_not` says which
of the three it was.

Examples are embedded once, when a policy is loaded; a reload reuses the vectors of every example whose
text did not change (`IntentIndex.build(..., previous=...)`), so editing one example embeds one text.
The request side costs nothing extra on the default scope: it is the last user message's embedding,
which the semantic cache and the classifier share.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from itertools import combinations
from typing import TYPE_CHECKING

import numpy as np

from router.types import IntentMatch

if TYPE_CHECKING:
    from router.policy.schema import Intent, Policy
    from router.types import RequestContext

Embed = Callable[[list[str]], Awaitable[np.ndarray]]
"""Unit-length float32 rows, one per text (the embedding service's `embed_many`)."""
RECENT_USER_TURNS = 3
"""How many user messages, newest first, `scope: conversation` matches intents on."""
MIN_EXAMPLES = 5
"""Fewer examples than this and `router policy check` warns: a handful of phrasings rarely covers the ways
people ask."""


@dataclass(frozen=True, slots=True)
class _Row:
    intent: int
    text: str
    counter: bool


class IntentIndex:
    def __init__(
        self,
        names: list[str],
        thresholds: list[float],
        margin: float,
        rows: list[_Row],
        vectors: np.ndarray,
        scopes: frozenset[str],
        embedded_now: int,
    ) -> None:
        self.names = names
        self.thresholds = np.array(thresholds, dtype=np.float32)
        self.margin = margin
        self._rows = rows
        self._vectors = vectors
        self._groups = [
            tuple(
                np.array(
                    [r for r, row in enumerate(rows) if row.intent == i and row.counter == counter], dtype=np.int64
                )
                for counter in (False, True)
            )
            for i in range(len(names))
        ]
        self.scopes = scopes
        """The scopes rules match intents on: what the pipeline embeds before deciding."""
        self.embedded_now = embedded_now
        """How many texts this build embedded (the rest came from the previous index)."""
        self._by_text = {row.text: vectors[i] for i, row in enumerate(rows)}

    @classmethod
    async def build(cls, policy: Policy, embed: Embed, previous: IntentIndex | None = None) -> IntentIndex:
        """Embed the policy's examples, reusing `previous`'s vector for every text it already had."""
        intents: Mapping[str, Intent] = policy.intents
        names = list(intents)
        rows = [
            _Row(i, text, counter)
            for i, name in enumerate(names)
            for counter, texts in ((False, intents[name].examples), (True, intents[name].counter_examples))
            for text in texts
        ]
        known = previous._by_text if previous is not None else {}
        missing = sorted({row.text for row in rows if row.text not in known})
        fresh = dict(zip(missing, await embed(missing), strict=True)) if missing else {}
        dims = next(iter(fresh.values()), next(iter(known.values()), np.zeros(1))).shape[0]
        vectors = (
            np.stack([fresh.get(row.text, known.get(row.text)) for row in rows]).astype(np.float32)
            if rows
            else (np.zeros((0, dims), dtype=np.float32))
        )
        thresholds = [
            intents[name].threshold if intents[name].threshold is not None else policy.intent_threshold
            for name in names
        ]
        return cls(names, thresholds, policy.intent_margin, rows, vectors, policy.intent_scopes, len(missing))

    def match(self, vector: np.ndarray) -> IntentMatch:
        """The intent `vector` (unit length) is nearest to, with the evidence for or against it."""
        if not self.names or len(self._rows) == 0:
            return IntentMatch(None, None, why_not="the policy defines no intents")
        similarity = self._vectors @ vector.astype(np.float32)
        best_example = np.full(len(self.names), -np.inf, dtype=np.float32)
        best_counter = np.full(len(self.names), -np.inf, dtype=np.float32)
        nearest_row = np.zeros(len(self.names), dtype=np.int64)
        for i, (examples, counters) in enumerate(self._groups):
            if examples.size:
                j = int(np.argmax(similarity[examples]))
                best_example[i], nearest_row[i] = similarity[examples[j]], examples[j]
            if counters.size:
                best_counter[i] = similarity[counters].max()
        ranked = np.argsort(-best_example, kind="stable")
        top = int(ranked[0])
        runner = int(ranked[1]) if len(ranked) > 1 else None
        found = IntentMatch(
            intent=None,
            nearest=self.names[top],
            example=self._rows[int(nearest_row[top])].text,
            similarity=float(best_example[top]),
            threshold=float(self.thresholds[top]),
            runner_up=self.names[runner] if runner is not None else None,
            runner_up_similarity=float(best_example[runner]) if runner is not None else 0.0,
        )
        if found.similarity < found.threshold:
            return _unmatched(found, "below the threshold")
        if runner is not None and found.margin < self.margin:
            return _unmatched(found, f"within the margin ({self.margin:g}) of `{found.runner_up}`")
        if best_counter[top] >= found.similarity:
            return _unmatched(found, f"a counter-example of `{found.nearest}` is nearer ({best_counter[top]:.3f})")
        return IntentMatch(
            found.nearest, found.nearest, found.example, found.similarity, found.threshold,
            found.runner_up, found.runner_up_similarity,
        )  # fmt: skip

    def match_turns(self, vectors: list[np.ndarray]) -> IntentMatch:
        """`scope: conversation`: the newest user message that matches an intent, among the recent ones
        (newest first). A follow-up that names no intent of its own ("the one ending in 4242") keeps the
        conversation's; a new message that matches another intent moves it."""
        newest = self.match(vectors[0])
        if newest.intent is not None:
            return newest
        for back, vector in enumerate(vectors[1:], 1):
            earlier = self.match(vector)
            if earlier.intent is not None:
                return replace(earlier, turns_back=back)
        return newest

    def warnings(self) -> list[str]:
        """What `router policy check` says of the intents: too few examples, and pairs of intents whose
        examples sit closer to each other than the threshold (they will take each other's traffic)."""
        said = []
        for i, name in enumerate(self.names):
            count = self._groups[i][0].size
            if count < MIN_EXAMPLES:
                said.append(f"intent `{name}` has {count} example(s); give at least {MIN_EXAMPLES} ways of asking")
        for a, b in combinations(range(len(self.names)), 2):
            rows_a, rows_b = self._groups[a][0], self._groups[b][0]
            if not rows_a.size or not rows_b.size:
                continue
            sims = self._vectors[rows_a] @ self._vectors[rows_b].T
            ia, ib = np.unravel_index(int(np.argmax(sims)), sims.shape)
            closest = float(sims[ia, ib])
            if closest >= min(self.thresholds[a], self.thresholds[b]):
                said.append(
                    f"intents `{self.names[a]}` and `{self.names[b]}` overlap: {self._rows[rows_a[ia]].text!r} and "
                    f"{self._rows[rows_b[ib]].text!r} are {closest:.3f} alike, above the threshold "
                    f"({min(self.thresholds[a], self.thresholds[b]):g}); requests like them may go to either"
                )
        return said


def _unmatched(found: IntentMatch, why: str) -> IntentMatch:
    return IntentMatch(
        None, found.nearest, found.example, found.similarity, found.threshold,
        found.runner_up, found.runner_up_similarity, why_not=why,
    )  # fmt: skip


def texts_for(ctx: RequestContext, scope: str) -> list[str]:
    """What intents are matched on: the last user message; the recent user messages, newest first
    (`conversation`: matched one by one, since one embedding of a whole conversation blurs what each
    message asks); or all messages as one text."""
    if scope == "all":
        return [ctx.all_text()]
    if scope == "conversation":
        return ctx.recent_user_texts(RECENT_USER_TURNS) or [""]
    return [ctx.last_user_text()]
