"""How well the local model's confidence tells its right answers from its wrong ones, on real answers.

    python -m bench.cascade [--answers bench/.work/answers.jsonl] [--model NAME] [--policy FILE]

Reads the answers `python -m bench.local_models` wrote (each with whether it was right and the cascade's
three confidence metrics as the gateway's backend measured them) and prints, per set and pooled: the
AUROC of each metric for right-vs-wrong (0.5 = no information; 95% bootstrap interval), and for a range
of thresholds the share of requests a cascade would escalate, the share of wrong answers it would catch,
and the share of answers that would be right if every escalated one were answered right by the cloud.
Then the whole policy (default: the packaged one) on the same answers: which prompts its rules and the
classifier send up before generating, which its cascade escalates afterwards, and what is left.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
METRICS = ("mean_logprob", "min_logprob", "mean_entropy")


def confidence(rows: list[dict], metric: str) -> np.ndarray:
    """Higher = surer, for every metric (entropy is negated)."""
    values = np.array([row[metric] for row in rows], dtype=float)
    return -values if metric == "mean_entropy" else values


def auroc(sure: np.ndarray, right: np.ndarray) -> float:
    pos, neg = sure[right], sure[~right]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def auroc_interval(sure: np.ndarray, right: np.ndarray, reps: int = 1000, seed: int = 3) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(reps):
        idx = rng.integers(0, len(sure), len(sure))
        value = auroc(sure[idx], right[idx])
        if not np.isnan(value):
            draws.append(value)
    return (float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))) if draws else (np.nan, np.nan)


def at_threshold(rows: list[dict], metric: str, threshold: float) -> tuple[float, float, float]:
    """(escalated share, share of the wrong answers caught, delivered accuracy with the cloud always right)."""
    values = np.array([row[metric] for row in rows], dtype=float)
    right = np.array([row["right"] for row in rows], dtype=bool)
    escalate = values > threshold if metric == "mean_entropy" else values < threshold
    wrong = ~right
    caught = (escalate & wrong).sum() / wrong.sum() if wrong.sum() else float("nan")
    return float(escalate.mean()), float(caught), float((right | escalate).mean())


def report(rows: list[dict], thresholds: dict[str, list[float]]) -> str:
    sets = {"everyday": [r for r in rows if r["set"] == "everyday"], "gsm8k": [r for r in rows if r["set"] == "gsm8k"]}
    sets["pooled"] = rows
    lines = [
        "| set | right | " + " | ".join(f"AUROC {m} (95% CI)" for m in METRICS) + " |",
        "| --- | ---: | " + " | ".join("---:" for _ in METRICS) + " |",
    ]
    for name, part in sets.items():
        right = np.array([r["right"] for r in part], dtype=bool)
        cells = []
        for metric in METRICS:
            sure = confidence(part, metric)
            low, high = auroc_interval(sure, right)
            cells.append(f"{auroc(sure, right):.2f} [{low:.2f}, {high:.2f}]")
        lines.append(f"| {name} | {right.sum()}/{len(part)} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "| metric | threshold | set | escalated | wrong answers caught | right after escalation |",
        "| --- | ---: | --- | ---: | ---: | ---: |",
    ]
    for metric, values in thresholds.items():
        for threshold in values:
            for name, part in sets.items():
                share, caught, delivered = at_threshold(part, metric, threshold)
                lines.append(
                    f"| {metric} | {threshold:g} | {name} | {100 * share:.0f}% | {100 * caught:.0f}% | "
                    f"{100 * delivered:.0f}% |"
                )
    return "\n".join(lines)


def simulate_policy(rows: list[dict], policy_file: Path) -> str:
    """What a policy does with these answers: sent up before generation (a rule or the classifier),
    escalated by the cascade after it, or kept; and the share right if the cloud answers right."""
    import asyncio

    from router.cascade_rule import Confidence
    from router.classify.embedding_service import EmbeddingService
    from router.classify.scorer import EscalationScorer
    from router.config import GatewayConfig
    from router.policy import load_policy
    from router.policy.facts import Facts
    from router.routing import Router
    from router.types import Findings, RequestContext

    router = Router(GatewayConfig(), load_policy(policy_file))
    scorer = EscalationScorer(EmbeddingService())

    async def score_all() -> list[float | None]:
        return [await scorer.score(row["prompt"]) for row in rows]

    scores = asyncio.run(score_all())
    outcomes: dict[str, list[tuple[str, bool]]] = {"everyday": [], "gsm8k": []}
    for row, score in zip(rows, scores, strict=True):
        ctx = RequestContext("b", "chat", "auto", ({"role": "user", "content": row["prompt"]},))
        decision = router.decide(Facts(ctx, Findings(scores={"escalation": score or 0.0})))
        confidence = Confidence(row["mean_logprob"], row["min_logprob"], row["mean_entropy"], row["tokens"])
        if decision.route == "cloud":
            outcome = "up"
        elif decision.cascade is not None and decision.cascade.escalate(confidence):
            outcome = "cascade"
        else:
            outcome = "kept"
        outcomes[row["set"]].append((outcome, bool(row["right"])))
    lines = [
        f"Policy `{policy_file.name}` on these answers (a cloud answer counted right):",
        "",
        "| set | local alone right | sent up before generating | escalated by the cascade | wrong answers kept "
        "| right after routing |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, part in outcomes.items():
        n = len(part)
        if not n:
            continue
        up = sum(o == "up" for o, _ in part)
        cascade = sum(o == "cascade" for o, _ in part)
        wrong_kept = sum(o == "kept" and not right for o, right in part)
        local_right = sum(right for _, right in part)
        routed_right = sum(o != "kept" or right for o, right in part)
        lines.append(
            f"| {name} | {local_right}/{n} | {up} ({100 * up / n:.0f}%) | {cascade} ({100 * cascade / n:.0f}%) "
            f"| {wrong_kept} | {routed_right}/{n} ({100 * routed_right / n:.0f}%) |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--answers", type=Path, default=HERE / ".work" / "answers.jsonl")
    parser.add_argument("--model", default="qwen2.5-coder-1.5b-instruct")
    parser.add_argument("--policy", type=Path, default=HERE.parent / "policies" / "default.yaml")
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.answers.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r["model"] == args.model and r["mean_logprob"] is not None]
    thresholds = {"mean_logprob": [-0.085, -0.2, -0.45], "min_logprob": [-1.0, -1.4], "mean_entropy": [0.3, 0.6]}
    print(f"Cascade signal of {args.model} on {len(rows)} answers ({args.answers.name})\n")
    print(report(rows, thresholds))
    print()
    print(simulate_policy(rows, args.policy))


if __name__ == "__main__":
    main()
