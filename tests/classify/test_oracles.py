"""The upper bounds `router eval --labels` prints beside the routers: what knowing the outcomes would give."""

from __future__ import annotations

from router.classify.evaluation import curve
from router.classify.label_eval import oracles
from router.classify.labelled_set import labelled_set

DOMAIN = "oracle (not a router, in sample): each domain's GPT-4 accuracy - the local answer's probability"
PROMPT = "oracle (not a router): GPT-4's own outcome on the prompt - the local answer's probability"


def _label(n: int, group: str, strong_right: bool) -> dict:
    # The local model wrong everywhere and equally sure: only where GPT-4 is right is escalating worth it.
    confidence = {"mean_logprob": -0.5, "min_logprob": -1.0, "mean_entropy": 0.7, "tokens": 4}
    return {"id": f"{group}:{n}", "group": group, "prompt": f"question {n} of {group}", "local_model": "m",
            "local_right": False, "strong_right": strong_right, "confidence": confidence}  # fmt: skip


def test_knowing_gpt4s_outcome_per_prompt_closes_the_gap_a_domain_mean_cannot() -> None:
    # Every domain: GPT-4 right on one prompt of two. Its domain's accuracy says nothing between them.
    records = [_label(n, g, strong_right=n % 2 == 0) for g in ("law", "maths", "history") for n in range(4)]
    labelled = labelled_set(records)
    scores = oracles(labelled)
    data = labelled.data
    by_prompt, by_domain = curve(scores[PROMPT], data.weak, data.strong), curve(scores[DOMAIN], data.weak, data.strong)
    assert by_prompt.cpt(1.0) <= 0.5 + 1e-9  # the half GPT-4 gets right goes up first: the whole gap at 50%
    assert by_prompt.apgr > 0.7 > by_domain.apgr
