"""What the cascade's `letter_gain` routes: multiple-choice questions asked aside for their letter.

    python -m bench.letter_probe --labels REASON-LABELS --tasks ../shared/data/routing/mmlu-answers \
        --states ASIDE-STATES [--letter-labels LETTER-LABELS]

REASON-LABELS are the served outcomes (`router label --protocol reason`: the question asked as a client
asks it); ASIDE-STATES the model's state one token before the letter, read as the gateway asks it aside
(`router states --aside`: the served prompt, its answer started "The correct answer is"), with that
letter's probability (`--letter` states: read behind the letter protocol's system prompt). States
collected before `router states` kept the next token's probability carry no letter: then LETTER-LABELS,
the same prompts labelled with `--protocol letter`, give it (their one token).

Every router is scored on the served outcomes of the labels that have a state, with whole domains held
out (the folds of `router eval`): P(strong right) from the letter-read state (a probe fitted without the
domain) or from the prompt's embedding (the expected-gain head, fitted out of fold on every served
label), against the letter's probability or the served answer's first 3 tokens (the shipped rule).
Prints AUROCs, APGR with 95% bootstrap intervals, the letter rule's paired difference from the shipped
rule, and what each escalates and keeps at a few thresholds. Beside them, other ways to weigh the same
readings, each stacked out of fold: the embedding head's P(strong right) with the state's, the state's
P(local right) and the four letters' spread (states that kept them) with the letter's probability, and one
probe of "local wrong and strong right" on the state.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from bench.cascade import auroc, auroc_interval
from bench.conversation_routing import paired_difference
from router.backends.prompt_states import read_option_logprobs, read_states
from router.classify.evaluation import bootstrap, curve
from router.classify.label_eval import (
    expected_gain_out_of_fold,
    first_tokens_probability,
    logistic_out_of_fold,
    logit,
    state_probe_chances,
)
from router.classify.labels import letter_probabilities
from router.classify.prompt_state import probe_out_of_fold
from router.classify.train import EXPECTED_GAIN_C, cached_embeddings, selection_folds
from router.cli.learning import _embedder, _embedding_cache, _labelled
from router.errors import ConfigError

if TYPE_CHECKING:
    from router.classify.data import Dataset

THRESHOLDS = (0.255, 0.35, 0.4, 0.47, 0.55)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--labels", type=Path, required=True, help="`--protocol reason` labels (served outcomes).")
    parser.add_argument("--letter-labels", type=Path, help="`--protocol letter` labels: the letter.")
    parser.add_argument("--tasks", type=Path, required=True, help="The MMLU-style CSVs with `answer`.")
    parser.add_argument("--states", type=Path, required=True, help="`router states --aside` of the labels.")
    parser.add_argument("--reps", type=int, default=1000, help="Bootstrap draws.")
    args = parser.parse_args()

    states = read_states(args.states)
    every = _labelled([args.labels], [args.tasks], 3)
    fold_of = dict(zip(every.data.groups, selection_folds(every.data.groups, 8), strict=True))
    emb = cached_embeddings(_embedder(None), every.data.prompts, _embedding_cache(None))
    every_fold = np.array([fold_of[g] for g in every.data.groups])
    head_strong, _ = expected_gain_out_of_fold(emb, every.data, every_fold, c=EXPECTED_GAIN_C)
    head_strong_of = dict(zip(every.ids, head_strong, strict=True))

    labelled = _labelled([args.labels], [args.tasks], 3, states=states)
    data = labelled.data
    fold = np.array([fold_of[g] for g in data.groups])
    rows = np.stack([states[i] for i in labelled.ids])
    state_strong, state_local = state_probe_chances(rows, labelled, fold)
    head_strong = np.array([head_strong_of[i] for i in labelled.ids])
    try:
        letter = letter_probabilities(args.states, [args.letter_labels] if args.letter_labels else None, labelled.ids)
    except ConfigError as error:
        parser.error(str(error))
    first = first_tokens_probability(labelled)
    weak, strong, groups = data.weak, data.strong, list(data.groups)
    spread = _letters_spread(read_option_logprobs(args.states), labelled.ids)
    print(f"{len(data)} served labels with a letter-read state, {len(set(groups))} domains: served answer right "
          f"{weak.mean():.1%}, GPT-4 {strong.mean():.1%}")  # fmt: skip

    print(f"  {'AUROC (95% CI)':<66} value")
    for name, score, right in (
        ("P(strong right): the letter-read state's probe", state_strong, strong >= 0.5),
        ("P(strong right): the embedding's expected-gain head", head_strong, strong >= 0.5),
        ("served answer right: the letter's probability", letter, weak >= 0.5),
        ("served answer right: the letter-read state's probe", state_local, weak >= 0.5),
        ("served answer right: its first 3 tokens' probability", first, weak >= 0.5),
        *([("served answer right: the top letter's share of the four", spread[0], weak >= 0.5)] if spread else []),
    ):
        low, high = auroc_interval(score, right)
        print(f"  {name:<66} {auroc(score, right):.3f} [{low:.3f}, {high:.3f}]")

    rules = {
        "letter_gain: state's P(strong right) - the letter's probability": state_strong - letter,
        "shipped rule: head's P(strong right) - first 3 tokens' probability": head_strong - first,
        "head's P(strong right) - the letter's probability": head_strong - letter,
        "state's P(strong right) - state's P(local right)": state_strong - state_local,
        "- the letter's probability alone": -letter,
        **_combined_readings(rows, state_strong, state_local, head_strong, letter, spread, data, fold),
        "oracle (not a router): GPT-4's outcome - the letter's probability": strong - letter,
    }
    print(f"  {'routing the served outcomes: APGR (95% CI)':<66} value")
    for name, score in rules.items():
        low, high = bootstrap(score, weak, strong, groups, args.reps)["apgr"]
        print(f"  {name:<66} {curve(score, weak, strong).apgr:.3f} [{low:.3f}, {high:.3f}]")
    low, mid, high = paired_difference(state_strong - letter, head_strong - first, weak, strong, args.reps)
    print(f"  letter_gain - shipped rule, paired: {mid:+.3f} [{low:+.3f}, {high:+.3f}]")

    print("  threshold: escalated, quality retained (the strong model's outcome where sent, the local one's elsewhere)")
    for threshold in THRESHOLDS:
        cells = []
        for name, score in (("letter_gain", state_strong - letter), ("shipped", head_strong - first)):
            up = score > threshold
            cells.append(f"{name} {up.mean():.1%}, {np.where(up, strong, weak).sum() / strong.sum():.3f}")
        print(f"  {threshold:<6g} {'; '.join(cells)}")


def _letters_spread(options: dict[str, np.ndarray], ids: list[str]) -> list[np.ndarray]:
    """From the four letters' log-probabilities (states that kept them): the top letter's share of the four,
    their entropy, the top two's margin and the four's total probability; none where a state has none."""
    if not all(i in options for i in ids):
        return []
    logprobs = np.stack([options[i] for i in ids]).astype(np.float64)
    total = np.exp(logprobs).sum(axis=1)
    shares = np.sort(np.exp(logprobs) / total[:, None], axis=1)
    entropy = -(shares * np.log(shares + 1e-12)).sum(axis=1)
    return [shares[:, -1], entropy, shares[:, -1] - shares[:, -2], total]


def _combined_readings(
    rows: np.ndarray, state_strong: np.ndarray, state_local: np.ndarray, head_strong: np.ndarray,
    letter: np.ndarray, spread: list[np.ndarray], data: Dataset, fold: np.ndarray,
) -> dict[str, np.ndarray]:  # fmt: skip
    """Other ways to weigh the same readings, each fitted out of fold (logistic stacking): what `letter_gain`
    was compared against before it shipped as it is."""
    strong_right, local_right = (data.strong >= 0.5).astype(int), (data.weak >= 0.5).astype(int)
    stacked_strong = logistic_out_of_fold([logit(state_strong), logit(head_strong)], strong_right, fold)
    stacked_local = logistic_out_of_fold([np.log(letter), logit(state_local), *spread], local_right, fold)
    needs = ((data.strong >= 0.5) & (data.weak < 0.5)).astype(int)
    return {
        "stacked P(strong right) (state, embedding) - the letter's": stacked_strong - letter,
        "state's P(strong right) - stacked P(local) (letter, state, 4 letters)": state_strong - stacked_local,
        "a state probe of P(local wrong and strong right)": probe_out_of_fold(rows, needs, fold, 0.001),
    }


if __name__ == "__main__":
    main()
