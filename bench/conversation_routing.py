"""Does the classifier route second turns better when it reads the conversation, not the last message?

    python -m bench.conversation_routing [--data ../shared/data/routing/mt_bench] [--reps 1000]

MT-Bench's 80 questions have two turns; GPT-4 judged each turn's answer by Mixtral-8x7B (weak) and
GPT-4 (strong). For the second turns, the router's score is computed three ways, through the gateway's
own `RequestContext.conversation_text` (what `classifier.input: conversation` feeds the head):
  - `last message`: the second user message alone (what the gateway reads by default);
  - `conversation (user turns)`: both user messages;
  - `conversation (with answer)`: both user messages and the weak model's first answer between them,
    as a local-first gateway would hold the history.
Each is scored by the general head (trained on the shared MMLU data: Mixtral vs GPT-4, the pair judged
here; MT-Bench was never used to train or select it) and by the head shipped for the default local
model; prompt length on the same inputs is the baseline. APGR with 95% bootstrap intervals.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from router.classify.embedding_service import load_embedder
from router.classify.evaluation import bootstrap, curve
from router.classify.head import SHIPPED_HEAD, Head, packaged_head_for
from router.config import DEFAULT_LOCAL_PACKAGE, EmbedderConfig, Settings
from router.types import RequestContext

WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


def _first_answer(judged_prompt: str) -> str:
    """The assistant's first answer, from the judge's transcript of the conversation."""
    m = re.search(r"### Assistant A:\n(.*?)\n\n### User:", judged_prompt, re.S)
    return m.group(1).strip() if m else ""


def read_second_turns(folder: Path) -> tuple[list[list[dict[str, str]]], np.ndarray, np.ndarray]:
    questions = {
        q["question_id"]: q["turns"]
        for q in map(json.loads, (folder / "question.jsonl").read_text().splitlines())
        if len(q["turns"]) >= 2
    }
    scores: dict[tuple[int, str], float] = {}
    answers: dict[int, str] = {}
    for j in map(json.loads, (folder / "judgements.jsonl").read_text().splitlines()):
        if j["turn"] == 2 and j.get("score", -1) >= 0:
            scores[(j["question_id"], j["model"])] = j["score"] / 10
            if j["model"] == WEAK:
                answers[j["question_id"]] = _first_answer(j["user_prompt"])
    ids = [q for q in questions if (q, WEAK) in scores and (q, STRONG) in scores]
    conversations = [
        [
            {"role": "user", "content": questions[q][0]},
            {"role": "assistant", "content": answers.get(q, "")},
            {"role": "user", "content": questions[q][1]},
        ]
        for q in ids
    ]
    weak = np.array([scores[(q, WEAK)] for q in ids])
    strong = np.array([scores[(q, STRONG)] for q in ids])
    return conversations, weak, strong


def inputs(conversations: list[list[dict[str, str]]]) -> dict[str, list[str]]:
    def text(messages: list[dict[str, str]]) -> str:
        return RequestContext("x", "chat", "auto", tuple(messages)).conversation_text()

    return {
        "last message": [c[-1]["content"] for c in conversations],
        "conversation (user turns)": [text([c[0], c[2]]) for c in conversations],
        "conversation (with answer)": [text(c) for c in conversations],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("../shared/data/routing/mt_bench"))
    parser.add_argument("--reps", type=int, default=1000)
    args = parser.parse_args()
    conversations, weak, strong = read_second_turns(args.data)
    embeddings = load_embedder(EmbedderConfig(), Settings().model_dir.parent / "embedders")
    heads = {"general head": Head.load(SHIPPED_HEAD)}
    if (packaged := packaged_head_for(DEFAULT_LOCAL_PACKAGE)) is not None:
        heads["default model's head"] = Head.load(packaged)
    print(f"MT-Bench second turns: {len(weak)}; weak {weak.mean():.3f}, strong {strong.mean():.3f} (judge score / 10)")
    print(f"{'input':<28} {'scorer':<22} {'APGR':>6}  95% interval")
    scored: dict[tuple[str, str], np.ndarray] = {}
    for name, texts in inputs(conversations).items():
        vectors = embeddings.embed(texts)
        scorers = {label: head.score(vectors, texts) for label, head in heads.items()}
        scorers["prompt length"] = np.array([len(t) for t in texts], dtype=float)
        for label, scores in scorers.items():
            scored[(name, label)] = np.asarray(scores, dtype=float)
            low, high = bootstrap(scored[(name, label)], weak, strong, reps=args.reps)["apgr"]
            apgr = curve(scored[(name, label)], weak, strong).apgr
            print(f"{name:<28} {label:<22} {apgr:>6.3f}  [{low:.3f}, {high:.3f}]")
    print("random router: 0.500 by construction")
    print("\npaired difference in APGR against the last message alone (same resampled prompts each draw):")
    for name in list(inputs(conversations))[1:]:
        for label in [*heads, "prompt length"]:
            low, mid, high = paired_difference(scored[(name, label)], scored[("last message", label)], weak, strong,
                                               args.reps)  # fmt: skip
            print(f"{name:<28} {label:<22} {mid:>+6.3f}  [{low:+.3f}, {high:+.3f}]")


def paired_difference(
    a: np.ndarray, b: np.ndarray, weak: np.ndarray, strong: np.ndarray, reps: int, seed: int = 7
) -> tuple[float, float, float]:
    """APGR(a) - APGR(b) on the same prompts: 2.5%, 50% and 97.5% over bootstrap draws."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(reps):
        idx = rng.integers(0, len(a), len(a))
        draws.append(curve(a[idx], weak[idx], strong[idx]).apgr - curve(b[idx], weak[idx], strong[idx]).apgr)
    low, mid, high = np.percentile(draws, [2.5, 50, 97.5])
    return float(low), float(mid), float(high)


if __name__ == "__main__":
    main()
