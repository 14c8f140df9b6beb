"""Where a served answer to a multiple-choice question commits, and whether the model's doubt there
says it is wrong.

    python -m bench.decision_point --labels REASON-LABELS --tasks ../shared/data/routing/mmlu-answers \
        [--letter-labels router/classify/heads/qwen2.5-coder-1.5b-instruct.mmlu-letter.labels.jsonl] [--limit N]

A client asking in plain chat gets "The correct answer is C. …" or "To determine …, … the answer is C."
The early cascade judges the first tokens, which (on these answers) say nothing. This asks whether the
model's doubt at the point where the answer first commits to a choice ("answer is X") would. For every
label of `router label --protocol reason` that kept its answer (no `--without-prompts`), it runs the
default model again on the prompt, rendered as served, plus the answer up to that letter, and prints:
- how far into the answer the commitment comes (tokens; what an early rule would have to wait for);
- AUROC for "the committed letter is right" (95% bootstrap interval) of that letter's probability, and
  of its probability among the four letters only (formatting tokens such as "**" compete with the
  letter in the raw one);
- with `--letter-labels`, on the same prompts: AUROC of the letter protocol's first-token probability
  (a system prompt asks for the letter only), the signal the shipped cascade threshold was fitted on;
  and, on every served label (with or without its answer), what that probability would route as the
  cascade's signal (a one-token "letter probe" asked aside): APGR of the served outcomes, 95% interval,
  beside the shipped rule's signal (the served answer's first 3 tokens), alone, against the expected-gain
  head's P(strong right) fitted out of fold (as the cascade's `expected_gain` weighs them), and against
  GPT-4's own outcome (an oracle, not a router: what a perfect P(strong right) would give).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from bench.cascade import auroc, auroc_interval
from router.backends.llama_cpp import prompt_settings
from router.backends.model_files import model_gguf_path
from router.backends.prompt_states import StateReader, served_messages
from router.classify.evaluation import bootstrap, curve
from router.classify.labels import SETTLED, read_labels, read_tasks
from router.classify.train import EXCLUDED_DOMAINS
from router.config import DEFAULT_LOCAL_MODEL, Settings, load_gateway_config


def commitment(answer: str) -> tuple[int, str] | None:
    """(where in the answer, which letter) the first "answer is X" names; None if it never commits so."""
    found = next((m for m in SETTLED.finditer(answer) if m.group(1)), None)
    return (found.start(1), found.group(1).upper()) if found else None


class LetterReader:
    """The default model as the embedded config serves it, reading a prompt plus the start of its answer."""

    def __init__(self) -> None:
        settings = Settings()
        spec = load_gateway_config(settings.config).models[DEFAULT_LOCAL_MODEL]
        chat_format, self._system = prompt_settings(spec)
        path = model_gguf_path(spec.model_path, spec.package, settings.model_dir)
        self._reader = StateReader(path, chat_format, spec.n_ctx)

    def letters(self, prompt: str, prefix: str) -> tuple[np.ndarray, int]:
        """Log-probabilities of A-D as the next token after `prefix`, and the answer tokens before it."""
        spaced = prefix.endswith(" ")  # " C" is one token: read it after "is", not after "is "
        prefix = prefix[:-1] if spaced else prefix
        _, logits = self._reader.read(served_messages(prompt, self._system), prefix)
        logits = logits.astype(np.float64)
        logprobs = logits - logits.max() - np.log(np.exp(logits - logits.max()).sum())
        ids = [self._reader.tokens(f"{' ' if spaced else ''}{letter}")[0] for letter in "ABCD"]
        return logprobs[ids], len(self._reader.tokens(prefix))


def _row(name: str, sure: list[float], right: list[bool]) -> str:
    s, r = np.array(sure), np.array(right, bool)
    low, high = auroc_interval(s, r)
    return f"  {name:<62} {auroc(s, r):.3f} [{low:.3f}, {high:.3f}]"


def probe_routing(labels: Path, tasks: Path, letter: dict[str, dict], tokens: int = 3) -> None:
    """APGR of the served outcomes when the letter protocol's first-token probability (asked aside) is the
    cascade's signal, beside the served answer's own first tokens: alone, against the P(strong right) the
    expected-gain head gives out of fold (whole domains held out, as `router eval`), and with GPT-4's own
    outcome known."""
    from router.classify.label_eval import expected_gain_out_of_fold, first_tokens_probability
    from router.classify.train import EXPECTED_GAIN_C, cached_embeddings, selection_folds
    from router.cli.learning import _embedder, _embedding_cache, _labelled

    labelled = _labelled([labels], [tasks], tokens)
    paired = np.array([bool(letter.get(i, {}).get("confidence")) for i in labelled.ids])
    if not paired.any():
        return
    data = labelled.data
    emb = cached_embeddings(_embedder(None), data.prompts, _embedding_cache(None))
    head, _ = expected_gain_out_of_fold(emb, data, selection_folds(data.groups, 8), c=EXPECTED_GAIN_C)
    probe = np.exp([letter[i]["confidence"]["min_logprob"] if letter.get(i, {}).get("confidence") else 0.0
                    for i in labelled.ids])  # fmt: skip
    first = first_tokens_probability(labelled)
    weak, strong, groups = data.weak[paired], data.strong[paired], list(np.asarray(data.groups)[paired])
    print(f"{paired.sum()} served labels with a letter label of the same prompt: the letter probe's probability "
          f"against served right, AUROC {auroc(probe[paired], weak > 0.5):.3f}")  # fmt: skip
    print(f"  {'routing the served outcomes (escalate the highest first)':<70} APGR [95% CI]")
    rows = {
        "- letter probe's probability": -probe,
        f"- the served answer's first {tokens} tokens' probability": -first,
        "head's P(strong right) - letter probe's probability": head - probe,
        f"head's P(strong right) - first {tokens} tokens' (the shipped rule)": head - first,
        "head's P(strong right) - the mean of both": head - (probe + first) / 2,
        "oracle: GPT-4's outcome - letter probe's probability": data.strong - probe,
        f"oracle: GPT-4's outcome - first {tokens} tokens' probability": data.strong - first,
    }
    for name, score in rows.items():
        low, high = bootstrap(score[paired], weak, strong, groups)["apgr"]
        print(f"  {name:<70} {curve(score[paired], weak, strong).apgr:.3f} [{low:.3f}, {high:.3f}]")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--labels", type=Path, required=True, help="`--protocol reason` labels (answers kept: the decision point)."
    )
    parser.add_argument("--tasks", type=Path, required=True, help="The MMLU-style CSVs with `answer`.")
    parser.add_argument("--letter-labels", type=Path, help="`--protocol letter` labels of the same prompts.")
    parser.add_argument("--limit", type=int, default=None, help="At most this many labels.")
    args = parser.parse_args()

    tasks = {t.id: t for t in read_tasks(args.tasks, "reason")}
    served = [r for r in read_labels([args.labels]) if r["group"] not in EXCLUDED_DOMAINS]
    letter = {r["id"]: r for r in read_labels([args.letter_labels])} if args.letter_labels else {}
    probe_routing(args.labels, args.tasks, letter)
    labels = [r for r in served if r.get("answer")]
    if not labels:
        return  # labels shipped without answers: nothing to read the decision point of
    reader, rows = LetterReader(), []
    for record in labels[: args.limit]:
        found = commitment(record["answer"])
        if found is None:
            continue
        where, said = found
        four, position = reader.letters(tasks[record["id"]].prompt, record["answer"][:where])
        index = "ABCD".index(said)
        rows.append((record["id"], said == tasks[record["id"]].truth, four[index],
                     four[index] - np.log(np.exp(four).sum()), position))  # fmt: skip
    positions = np.array([row[4] for row in rows])
    right = [row[1] for row in rows]
    print(
        f'{len(labels)} served answers; {len(rows)} commit to a letter ("answer is X"), the committed letter right '
        f"on {np.mean(right):.1%}; it comes after {np.median(positions):.0f} answer tokens (median), within 8 "
        f"tokens on {np.mean(positions < 8):.0%}, within 64 on {np.mean(positions < 64):.0%}"
    )
    print(f"  {'AUROC, committed letter right vs wrong (95% CI)':<62} value")
    print(_row("its probability", [row[2] for row in rows], right))
    print(_row("its probability among the four letters", [row[3] for row in rows], right))
    early = [row for row in rows if row[4] < 8]
    if early:
        name = f"its probability, answers that commit within 8 tokens ({len(early)})"
        print(_row(name, [row[2] for row in early], [row[1] for row in early]))
    paired = [row for row in rows if row[0] in letter and letter[row[0]].get("confidence")]
    if paired:
        print(_row(f"same prompts, letter protocol: first token's probability ({len(paired)})",
                   [letter[row[0]]["confidence"]["min_logprob"] for row in paired],
                   [bool(letter[row[0]]["local_right"]) for row in paired]))  # fmt: skip


if __name__ == "__main__":
    main()
