"""The early cascade rule against the whole-answer rule, on the default model's labelled answers.

    python -m bench.early_rule --labels router/classify/heads/qwen2.5-coder-1.5b-instruct.freeform.labels.jsonl \
        [--k 4 8 16 32] [--threshold mean_logprob:-0.45] [--group-of everyday-dev=everyday] [--match gsm8k:-0.085]
        [--pooled]

Reads labels written by `router label` (each with whether the local answer was right, its whole-answer
confidence and its first tokens' log-probabilities and entropies) and prints, per group of labels and
pooled:
- AUROC for right vs wrong (0.5 = no information; 95% bootstrap interval) of the whole answer's mean
  log-probability (what the cascade judged before), and of the first k tokens' mean log-probability,
  least log-probability and mean entropy;
- the same for a small logistic model over the first k tokens' statistics (means, extremes and quartiles
  of log-probability and entropy), each group scored by a model fitted on the other groups only;
- at each `--threshold` (metric:value, escalate below a log-probability or above an entropy): the share
  of answers escalated and of wrong answers caught, first k tokens against whole answers;
- with `--match group:threshold`: in that group, the whole-answer rule at the threshold against the
  first-k rules that escalate the same share, by accuracy when the strong model answers what goes up;
- with `--last`, for labels that recorded the answer's last tokens (where a reasoned answer names its
  conclusion): AUROC of the last 4 and last 16 tokens' mean and least log-probability and mean entropy.
An answer shorter than k tokens is judged whole, as the gateway does.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from bench.cascade import auroc, auroc_interval
from router.classify.data import json_lines
from router.classify.labelled_set import early_metrics

METRICS = ("mean_logprob", "min_logprob", "mean_entropy")


def read(paths: list[Path], rename: dict[str, str]) -> list[dict]:
    rows = []
    for path in paths:
        for line in json_lines(path):
            record = json.loads(line) if line.strip() else None
            if record and record.get("confidence") and record["confidence"].get("first"):
                record["group"] = rename.get(record["group"], record["group"])
                rows.append(record)
    return rows


def features(first: list[list[float]], k: int) -> list[float]:
    lp = np.array([p for p, _ in first[:k]], dtype=float)
    h = np.array([e for _, e in first[:k]], dtype=float)
    return [lp.mean(), lp.min(), *np.percentile(lp, [25, 50]), h.mean(), h.max(), *np.percentile(h, [50, 75])]


def held_out_model(rows: list[dict], k: int) -> np.ndarray:
    """Each row's P(right) from a logistic model fitted on the other groups' rows only."""
    from sklearn.linear_model import LogisticRegression

    x = np.array([features(r["confidence"]["first"], k) for r in rows])
    y = np.array([bool(r["local_right"]) for r in rows])
    groups = np.array([r["group"] for r in rows])
    out = np.full(len(rows), np.nan)
    for group in np.unique(groups):
        held = groups == group
        if len(set(y[~held])) < 2:
            continue
        mean, std = x[~held].mean(axis=0), x[~held].std(axis=0) + 1e-9
        model = LogisticRegression(C=1.0, max_iter=2000).fit((x[~held] - mean) / std, y[~held])
        out[held] = model.predict_proba((x[held] - mean) / std)[:, 1]
    return out


def whole(row: dict) -> dict[str, float]:
    c = row["confidence"]
    return {"mean_logprob": c["mean_logprob"], "min_logprob": c["min_logprob"], "mean_entropy": -c["mean_entropy"]}


def cell(sure: np.ndarray, right: np.ndarray) -> str:
    keep = np.isfinite(sure)
    low, high = auroc_interval(sure[keep], right[keep])
    return f"{auroc(sure[keep], right[keep]):.2f} [{low:.2f}, {high:.2f}]"


def delivered(right: np.ndarray, strong: np.ndarray, escalate: np.ndarray, reps: int = 1000) -> str:
    """Accuracy with the escalated answers given by the strong model, and its 95% bootstrap interval."""
    served = np.where(escalate, strong, right).astype(float)
    rng = np.random.default_rng(5)
    draws = [served[rng.integers(0, len(served), len(served))].mean() for _ in range(reps)]
    return f"{served.mean():.3f} [{np.percentile(draws, 2.5):.3f}, {np.percentile(draws, 97.5):.3f}]"


def matched(part: list[dict], limit: float, ks: list[int]) -> list[str]:
    """The whole-answer rule at `limit` (mean_logprob) against the first-k rule escalating the same share."""
    right = np.array([bool(r["local_right"]) for r in part])
    strong = np.array([bool(r.get("strong_right")) for r in part])
    whole_lp = np.array([whole(r)["mean_logprob"] for r in part])
    escalate = whole_lp < limit
    share = escalate.mean()
    lines = [f"| whole answer < {limit} | {100 * share:.0f}% | {(escalate & ~right).sum()}/{(~right).sum()} | "
             f"{delivered(right, strong, escalate)} |"]  # fmt: skip
    for k in ks:
        early = np.array([early_metrics(r["confidence"], k)["mean_logprob"] for r in part])
        cut = np.quantile(early, share)
        escalate = early < cut
        caught = f"{(escalate & ~right).sum()}/{(~right).sum()}"
        lines.append(f"| first {k} tokens < {cut:.3f} | {100 * escalate.mean():.0f}% | {caught} | "
                     f"{delivered(right, strong, escalate)} |")  # fmt: skip
    return lines


def last_rows(groups: dict[str, list[dict]]) -> None:
    """AUROC of the answer's last tokens' statistics, for the labels that recorded them."""
    print("\n| group | right | last k | mean_logprob | min_logprob | mean_entropy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, part in groups.items():
        part = [r for r in part if r["confidence"].get("last")]
        if not part:
            continue
        right = np.array([bool(r["local_right"]) for r in part])
        for k in (4, 16):
            tail = [np.array(r["confidence"]["last"][-k:], dtype=float) for r in part]
            stats = [np.array([t[:, 0].mean() for t in tail]), np.array([t[:, 0].min() for t in tail]),
                     -np.array([t[:, 1].mean() for t in tail])]  # fmt: skip
            print(f"| {name} | {right.sum()}/{len(part)} | {k} | " + " | ".join(cell(v, right) for v in stats) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, action="append", required=True)
    parser.add_argument("--k", type=int, nargs="+", default=[4, 8, 16, 32])
    parser.add_argument("--threshold", action="append", default=[], help="metric:value, e.g. mean_logprob:-0.45")
    parser.add_argument("--group-of", action="append", default=[], help="old=new: pool a group into another")
    parser.add_argument("--pooled", action="store_true", help="only the pooled rows (labels of many domains)")
    parser.add_argument("--last", action="store_true", help="also the answer's last tokens, where recorded")
    parser.add_argument(
        "--match",
        default=None,
        help="group:threshold: the whole-answer mean_logprob rule there, "
        "against first-k rules escalating the same share (accuracy with the strong model's answers)",
    )
    args = parser.parse_args()
    rows = read(args.labels, dict(item.split("=", 1) for item in args.group_of))
    groups = {"pooled": rows}
    if not args.pooled:
        groups |= {g: [r for r in rows if r["group"] == g] for g in sorted({r["group"] for r in rows})}
    print("| group | right | k | whole answer mean_logprob | first-k mean_logprob | first-k min_logprob | "
          "first-k mean_entropy | first-k logistic (other groups) |")  # fmt: skip
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    fitted = {k: held_out_model(rows, k) for k in args.k}
    index = {id(r): i for i, r in enumerate(rows)}
    for name, part in groups.items():
        right = np.array([bool(r["local_right"]) for r in part])
        whole_lp = np.array([whole(r)["mean_logprob"] for r in part])
        for k in args.k:
            early = [early_metrics(r["confidence"], k) for r in part]
            cells = [cell(np.array([e[m] for e in early]), right) for m in METRICS]
            model = cell(np.array([fitted[k][index[id(r)]] for r in part]), right)
            print(f"| {name} | {right.sum()}/{len(part)} | {k} | {cell(whole_lp, right)} | " + " | ".join(cells)
                  + f" | {model} |")  # fmt: skip
    if args.last:
        last_rows(groups)
    if args.match:
        group, limit = args.match.rsplit(":", 1)
        print(f"\n{group}: the same cloud share, whole answer against first k tokens (mean_logprob)\n")
        print("| rule | escalated | wrong answers caught | right, escalated ones by the strong model (95% CI) |")
        print("| --- | ---: | ---: | ---: |")
        print("\n".join(matched(groups[group], float(limit), args.k)))
    if args.threshold:
        print("\n| group | rule | escalated | wrong answers caught |")
        print("| --- | --- | ---: | ---: |")
    for item in args.threshold:
        metric, value = item.split(":")
        limit = float(value)
        for name, part in groups.items():
            right = np.array([bool(r["local_right"]) for r in part])
            for k in [None, *args.k]:
                signed = np.array([(early_metrics(r["confidence"], k) if k else whole(r))[metric] for r in part])
                # the metrics are "higher = surer"; entropy was negated, so its threshold is too
                escalate = signed < (-limit if metric == "mean_entropy" else limit)
                caught = (escalate & ~right).sum() / max(1, (~right).sum())
                rule = f"{metric} < {limit}" if metric != "mean_entropy" else f"{metric} > {limit}"
                print(f"| {name} | {rule}, {'whole answer' if k is None else f'first {k} tokens'} | "
                      f"{100 * escalate.mean():.0f}% | {100 * caught:.0f}% |")  # fmt: skip


if __name__ == "__main__":
    main()
