"""Each rule of a policy measured against labels: what share of the traffic it moves, whether the local model
was actually wrong on what it moves, and whether the head alone would have moved better prompts.

    python -m bench.policy_rules --labels LABELS.jsonl [--labels ...] --tasks DATA [--tasks ...]
        [--policy router/policies/default.yaml] [--head HEAD.npz] [--reps 1000] [--cache-dir DIR]

For every rule with conditions, over the labelled prompts (each asked as one user message, as the
labels were made): the prompts its conditions match; the local model's and the strong model's accuracy on
them (bootstrap 95% intervals); and the gain of sending exactly those to the strong model (strong right
minus local right, per prompt) beside the gain of sending the same number of prompts the head scores
highest, and of the same number of prompts whose local answers were least sure (the cascade's signal, out
of sample on any labels). A rule that sends prompts to the cloud earns its place where its gain beats both; one
that only changes thresholds (`route: auto`) is reported with the local accuracy on what it matches.
"""

from __future__ import annotations

import argparse
import uuid
from pathlib import Path

import numpy as np

from router.classify.embedding_service import load_embedder
from router.classify.head import Head, head_for_local
from router.classify.labels import attach_prompts, read_labels
from router.classify.train import cached_embeddings
from router.config import DEFAULT_POLICY_FILE, EmbedderConfig, GatewayConfig, Settings
from router.policy import load_policy
from router.policy.facts import Facts
from router.policy.matchers import evaluate
from router.tokens import TokenCounter
from router.types import RequestContext


def interval(values: np.ndarray, reps: int, seed: int = 0) -> tuple[float, float, float]:
    """Mean and a bootstrap 95% interval."""
    if len(values) == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(reps, len(values)))].mean(axis=1)
    return float(values.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


def shown(stats: tuple[float, float, float]) -> str:
    mean, low, high = stats
    return "-" if mean != mean else f"{mean:.3f} [{low:.3f}, {high:.3f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--labels", type=Path, action="append", required=True)
    parser.add_argument("--tasks", type=Path, action="append", default=[])
    parser.add_argument("--policy", type=Path, default=DEFAULT_POLICY_FILE)
    parser.add_argument("--head", type=Path, help="default: the head shipped for the default local model")
    parser.add_argument("--reps", type=int, default=1000)
    parser.add_argument("--cache-dir", type=Path, help="where prompt embeddings are cached between runs")
    args = parser.parse_args()

    records = [r for r in attach_prompts(read_labels(args.labels), args.tasks) if r.get("strong_right") is not None]
    prompts = [r["prompt"] for r in records]
    local = np.array([float(r["local_right"]) for r in records])
    strong = np.array([float(r["strong_right"]) for r in records])
    gain = strong - local
    head_path = args.head or head_for_local(GatewayConfig())
    embedder = load_embedder(EmbedderConfig(), Settings().model_dir.parent / "embedders")
    scores = Head.load(head_path).score(cached_embeddings(embedder, prompts, args.cache_dir), prompts)
    order = np.argsort(-scores, kind="stable")
    # The cascade's signal needs no fitting, so it is out of sample on any labels: least sure answers first.
    doubt = np.array([-(r.get("confidence") or {}).get("mean_logprob", 0.0) for r in records])
    least_sure = np.argsort(-doubt, kind="stable")
    tokens = TokenCounter()
    engine = load_policy(args.policy, GatewayConfig().models)
    groups = sorted({str(r["group"]) for r in records})
    print(f"{len(records)} labelled prompts ({', '.join(groups) if len(groups) <= 6 else f'{len(groups)} groups'});"
          f" local right {local.mean():.3f}, strong right {strong.mean():.3f}; head {head_path.name}\n")  # fmt: skip
    print(
        "| rule | route | moves (share) | local right on it | strong right on it | gain moving it | "
        "gain of the head's top same-size share | gain of the least sure same-size share | verdict |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")
    for rule in engine.policy.rules:
        matched = np.zeros(len(records), dtype=bool)
        for i, prompt in enumerate(prompts):
            messages = ({"role": "user", "content": prompt},)
            ctx = RequestContext(uuid.uuid4().hex, "chat", "auto", messages, prompt_tokens=tokens.count(prompt))
            matched[i] = evaluate(rule.when, Facts(ctx)).holds
        m = int(matched.sum())
        head_top = order[:m]
        rule_gain, head_gain = interval(gain[matched], args.reps), interval(gain[head_top], args.reps)
        cascade_gain = interval(gain[least_sure[:m]], args.reps)
        if m == 0:
            verdict = "moves nothing here"
        elif rule.route != "cloud":
            verdict = f"`route: {rule.route}`: changes thresholds, not the route"
        else:
            best = max(head_gain[0], cascade_gain[0])
            verdict = (
                "beats the head and the cascade" if rule_gain[1] > best else "the head or the cascade moves better"
            )
        print(
            f"| {rule.name} | {rule.route} | {m} ({m / len(records):.1%}) "
            f"| {shown(interval(local[matched], args.reps))} "
            f"| {shown(interval(strong[matched], args.reps))} | {shown(rule_gain)} | {shown(head_gain)} "
            f"| {shown(cascade_gain)} | {verdict} |"
        )


if __name__ == "__main__":
    main()
