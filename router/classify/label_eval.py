"""`router eval --labels`: routers for the real pair (the local model that answers, the strong model).

Every trained router here is scored out of fold: each prompt by a model fitted without its fold (whole
groups when the labels span three or more, else seeded row folds), so no router is scored on what it
saw. Routers compared, in the same run:
- the head family `router train` would ship, fitted to these labels ("fitted to <model>");
- the expected gain, P(strong right) - P(local right), each half a logistic regression on the prompt (the
  strong half also on the strong model's recorded outcomes, with a prior); and with the local half read
  from the local answer instead: its confidence (a fitted P(right | confidence)) or its own probability;
- the general head trained on Mixtral-8x7B vs GPT-4 outcomes (what ships for models with no labels);
- the baselines: random, prompt length, RouteLLM's similarity-weighted kNN and matrix factorisation;
- the cascade's confidence alone (escalate the answers the local model was least sure of; it needs the
  local answer first, so it pays for a local generation on every prompt);
- the fitted head and the confidence combined (a logistic model over the head's score and the three
  confidence metrics, fitted out of fold like the rest);
- the early-deciding cascade's signal: the same metrics over the answer's first k tokens only, alone and
  combined with the head (labels recorded with first-token statistics);
- with a prior (the recorded Mixtral vs GPT-4 MMLU outcomes): the head fitted to the labels and the prior
  together (what ships for the default model), alone and combined with the confidence.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from router.classify.data import Dataset
from router.classify.embedding_service import TextEmbedder
from router.classify.evaluation import Curve, bootstrap, curve, random_curve, summary
from router.classify.head import Head
from router.classify.labelled_set import EARLY_METRICS, LabelledSet
from router.classify.report import mf_scorer
from router.classify.train import (
    CANDIDATES,
    EXPECTED_GAIN_C,
    Candidate,
    as_scorer,
    cached_embeddings,
    knn_scorer,
    out_of_fold_scores,
    selection_folds,
)


def head_family(name: str) -> Candidate:
    """The head family `router train` knows by this name (as a head's `chosen` meta records it)."""
    for candidate in CANDIDATES:
        if candidate.name == name:
            return candidate
    raise ValueError(f"unknown head family {name!r}")


def _bare(fit: Any) -> Candidate:
    return Candidate("baseline", fit, shippable=False)


def logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-6, 1 - 1e-6)
    return np.log(p / (1 - p))


def _filled(values: np.ndarray) -> np.ndarray:
    """A metric with its missing values (NaN) set to its mean: they rank in the middle."""
    return np.nan_to_num(values, nan=float(np.nanmean(values)) if np.isfinite(values).any() else 0.0)


def logistic_out_of_fold(columns: list[np.ndarray], y: np.ndarray, fold: np.ndarray) -> np.ndarray:
    """P(y) per row from a logistic regression over the standardised columns, fitted without the row's
    fold; a fold whose other folds hold one class only gets the overall rate."""
    from sklearn.linear_model import LogisticRegression

    x = np.column_stack(columns)
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    chance = np.full(len(y), float(y.mean()))
    for k in np.unique(fold):
        held = fold == k
        if len(set(y[~held].tolist())) == 2:
            chance[held] = LogisticRegression(C=1.0, max_iter=1000).fit(x[~held], y[~held]).predict_proba(x[held])[:, 1]
    return chance


def _combined(
    head_scores: np.ndarray, confidence: dict[str, np.ndarray], data: Dataset, fold: np.ndarray
) -> np.ndarray:
    """The head's score and the confidence metrics combined: P(local wrong and strong right), out of fold."""
    columns = [logit(head_scores), *(_filled(v) for v in confidence.values())]
    return logistic_out_of_fold(columns, data.needs_strong, fold)


def _early_rules(labelled: LabelledSet, fitted: np.ndarray, data: Dataset, fold: np.ndarray) -> dict[str, np.ndarray]:
    """The early-deciding cascade's signal (the answer's first k tokens only) beside the whole-answer one,
    where the labels carry first-token statistics; a prompt without them ranks as a tie (0)."""
    early = labelled.early
    if not early or not any(np.isfinite(v).any() for v in early.values()):
        return {}
    k = labelled.early_tokens
    early = {name: v for name, v in early.items() if name in EARLY_METRICS}  # top = sampled at temperature 0
    rules = {f"cascade confidence, first {k} tokens ({name})": -np.nan_to_num(v, nan=0.0) for name, v in early.items()}
    rules[f"fitted head + first {k} tokens' confidence (combined)"] = _combined(fitted, early, data, fold)
    return rules


def expected_gain_out_of_fold(
    emb: np.ndarray, data: Dataset, fold: np.ndarray, prior: tuple[np.ndarray, Dataset] | None = None, c: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """(P(strong right), P(local right)) per label from the expected-gain head fitted without its fold: the
    local half on the other folds' labels, the strong half on them plus, with a prior (the recorded
    outcomes of the same strong model on more prompts), the prior's rows outside the held-out domains."""
    from sklearn.linear_model import LogisticRegression

    strong, local = np.full(len(data), data.strong.mean()), np.full(len(data), data.weak.mean())
    for k in np.unique(fold):
        held = fold == k
        x_strong, y_strong = emb[~held], data.strong[~held]
        if prior is not None:
            prior_emb, prior_data = prior
            unseen = ~np.isin(np.asarray(prior_data.groups), sorted({data.groups[i] for i in np.flatnonzero(held)}))
            x_strong = np.concatenate([x_strong, prior_emb[unseen]])
            y_strong = np.concatenate([y_strong, prior_data.strong[unseen]])
        for y, x, out in ((y_strong, x_strong, strong), (data.weak[~held], emb[~held], local)):
            if len(set((y >= 0.5).tolist())) == 2:
                out[held] = LogisticRegression(C=c, max_iter=2000).fit(x, y >= 0.5).predict_proba(emb[held])[:, 1]
    return strong, local


def local_chance_from_confidence(confidence: dict[str, np.ndarray], data: Dataset, fold: np.ndarray) -> np.ndarray:
    """P(local right) given the local answer's confidence metrics alone, fitted out of fold (what the
    cascade knows once the local model has answered). The prompt-only local half is left out on purpose:
    what it knows (the domain is hard) also says the strong model may fail."""
    return logistic_out_of_fold([_filled(v) for v in confidence.values()], (data.weak >= 0.5).astype(int), fold)


def out_of_fold_with_prior(
    candidate: Candidate,
    emb: np.ndarray,
    data: Dataset,
    fold: np.ndarray,
    prior_emb: np.ndarray,
    prior: Dataset,
    with_labels: bool = True,
) -> np.ndarray:
    """Each label scored by the candidate fitted on the prior data (the recorded outcomes of other models)
    plus, `with_labels`, the other folds' labels. The prior's rows of the held-out fold's groups are left
    out too: a held-out domain is one the router has seen nothing of, not even with another model's outcomes."""
    scores = np.zeros(len(data))
    prior_groups = np.asarray(prior.groups)
    for k in np.unique(fold):
        held = fold == k
        unseen = ~np.isin(prior_groups, sorted({data.groups[i] for i in np.flatnonzero(held)}))
        parts = [prior.subset(unseen), *([data.subset(~held)] if with_labels else [])]
        fit_on = Dataset.concat("prior+labels", *parts)
        if len(fit_on) == 0 or len(set(fit_on.needs_strong.tolist())) < 2:
            continue  # nothing to learn from for this fold: it scores as a tie (0)
        x = np.concatenate([prior_emb[unseen], *([emb[~held]] if with_labels else [])])
        scorer = as_scorer(candidate.fit(x, fit_on))
        scores[held] = scorer(emb[held], data.subset(held).prompts)
    return scores


def answer_probability(labelled: LabelledSet) -> np.ndarray:
    """The local answer's own probability (exp of its mean log-probability); the local model's accuracy
    where a label has no confidence recorded."""
    fill = float(np.log(max(labelled.data.weak.mean(), 1e-6)))
    return np.exp(np.nan_to_num(labelled.confidence["mean_logprob"], nan=fill))


PROMPT_GAIN = "the local model's reading of the prompt: P(strong right) - P(local right) (state probe, no token)"


def state_probe_chances(states: np.ndarray, labelled: LabelledSet, fold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(P(strong right), P(local right)) per label from the state probes, each fitted without the label's fold."""
    from router.classify.prompt_state import STATE_PROBE_C, probe_out_of_fold

    data = labelled.data
    strong = probe_out_of_fold(states, (data.strong >= 0.5).astype(int), fold, STATE_PROBE_C["strong"])
    local = probe_out_of_fold(states, (data.weak >= 0.5).astype(int), fold, STATE_PROBE_C["local"])
    return strong, local


def state_probe_routers(states: np.ndarray, labelled: LabelledSet, fold: np.ndarray) -> dict[str, np.ndarray]:
    """The cascade's `prompt_gain` and its parts, out of fold."""
    strong, local = state_probe_chances(states, labelled, fold)
    own = answer_probability(labelled)
    return {
        PROMPT_GAIN: strong - local,
        "state probe's P(strong right) - the local answer's own probability": strong - own,
        "state probe's P(local right) alone (low first)": -local,
    }


def oracles(labelled: LabelledSet) -> dict[str, np.ndarray]:
    """Upper bounds, not routers: scores that know true outcomes on these very labels. Each domain's mean:
    what routing by the domain alone could reach, however well a head learned to recognise domains; in
    sample, so with a few dozen labels a domain it overstates (the domain's mean holds the prompt's own
    outcome and the sample's luck: `python -m bench.domain_ceiling` measures it on held-apart labels). The
    strong model's own outcome on each prompt: how much of the gap a perfect P(strong right) would close
    beside the local model's own doubt (the half of the expected gain a prompt head must guess)."""
    data = labelled.data
    groups = np.asarray(data.groups)
    gain = {g: float((data.strong - data.weak)[groups == g].mean()) for g in set(data.groups)}
    strong = {g: float(data.strong[groups == g].mean()) for g in set(data.groups)}
    own = answer_probability(labelled)
    return {
        "oracle (not a router, in sample): each domain's mean gain on these labels": np.array(
            [gain[g] for g in data.groups]
        ),
        "oracle (not a router, in sample): each domain's GPT-4 accuracy - the local answer's probability": np.array(
            [strong[g] for g in data.groups]
        )
        - own,
        "oracle (not a router): GPT-4's own outcome on the prompt - the local answer's probability": data.strong - own,
    }


def evaluate_labels(
    labelled: LabelledSet,
    general_head: Head,
    embedder: TextEmbedder,
    cache_dir: Path | None,
    family: str,
    folds: int = 8,
    reps: int = 1000,
    prior: Dataset | None = None,
    shipped: dict[str, Head] | None = None,
    states: np.ndarray | None = None,
) -> tuple[dict[str, dict[str, dict[str, Any]]], dict[str, dict[str, Curve]]]:
    """Every router scored on the labels out of fold; `shipped` heads (fitted on other data) as they are;
    with the local model's `states` (one row per label), its state probe's routers too."""
    data = labelled.data
    emb = cached_embeddings(embedder, data.prompts, cache_dir)
    fold = selection_folds(data.groups, folds)
    fitted = out_of_fold_scores(head_family(family), emb, data, fold)
    surest_first = {name: -np.nan_to_num(v, nan=0.0) for name, v in labelled.confidence.items()}
    strong, local = expected_gain_out_of_fold(emb, data, fold, c=EXPECTED_GAIN_C)
    scores: dict[str, np.ndarray | None] = {
        "expected gain, fitted to the labels (P(strong right) - P(local right))": strong - local
    }
    if prior is not None:
        prior_emb = cached_embeddings(embedder, prior.prompts, cache_dir)
        strong, local = expected_gain_out_of_fold(emb, data, fold, (prior_emb, prior), c=EXPECTED_GAIN_C)
        scores["expected gain, strong half fitted to the recorded outcomes too"] = strong - local
    if states is not None:
        scores |= state_probe_routers(states, labelled, fold)
    scores["that P(strong right) - P(local right | its confidence)"] = strong - local_chance_from_confidence(
        labelled.confidence, data, fold
    )
    scores["that P(strong right) - the local answer's own probability"] = strong - answer_probability(labelled)
    if labelled.early:
        scores[cascade_rule_name(labelled.early_tokens)] = strong - first_tokens_probability(labelled)
    if prior is not None:
        both = out_of_fold_with_prior(head_family(family), emb, data, fold, prior_emb, prior)
        scores[f"head fitted to {labelled.local_model} labels + Mixtral MMLU ({family})"] = both
        scores["that head + cascade confidence (combined)"] = _combined(both, labelled.confidence, data, fold)
        alone = out_of_fold_with_prior(head_family(family), emb, data, fold, prior_emb, prior, with_labels=False)
        scores["general head refit without the held-out domains (Mixtral vs GPT-4)"] = alone
        scores["that general head + cascade confidence (combined)"] = _combined(alone, labelled.confidence, data, fold)
    scores |= {
        f"head fitted to {labelled.local_model} ({family})": fitted,
        "fitted head + cascade confidence (combined)": _combined(fitted, labelled.confidence, data, fold),
        # The shipped general head was trained on the shared MMLU domains: on MMLU labels it has seen the
        # prompts (with Mixtral's outcomes, not this model's), so its figure there is not out of domain.
        "general head as shipped (Mixtral vs GPT-4)": (general := general_head.score(emb, data.prompts)),
        "general head as shipped + cascade confidence (combined)": _combined(general, labelled.confidence, data, fold),
        **{name: head.score(emb, data.prompts) for name, head in (shipped or {}).items()},
        "cascade confidence alone (mean_logprob)": surest_first["mean_logprob"],
        "cascade confidence alone (min_logprob)": surest_first["min_logprob"],
        "cascade confidence alone (mean_entropy)": surest_first["mean_entropy"],
        **_early_rules(labelled, fitted, data, fold),
        **oracles(labelled),
        "random": None,
        "prompt-length": np.array([len(t) for t in data.prompts], dtype=float),
        "similarity-weighted (RouteLLM SW)": out_of_fold_scores(
            _bare(lambda e, d: knn_scorer(e, d.needs_strong, min(50, max(1, len(d) - 1)))), emb, data, fold
        ),
        "matrix-factorisation (RouteLLM MF)": out_of_fold_scores(
            _bare(lambda e, d: mf_scorer(e, d, rank=min(64, max(1, len(d) - 1)))), emb, data, fold
        ),
    }
    name = f"{data.name} ({labelled.local_model} vs strong, out of fold)"
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, Curve] = {}
    for router, values in scores.items():
        if values is None:
            curves[router], intervals = random_curve(data.weak, data.strong), {}
        else:
            curves[router] = curve(values, data.weak, data.strong)
            intervals = bootstrap(values, data.weak, data.strong, data.groups, reps)
        cis = {f"{key}_ci": [round(v, 4) for v in bounds] for key, bounds in intervals.items()}
        results[router] = {**summary(curves[router]), **cis}
    per_fold = (*BY_FOLD, cascade_rule_name(labelled.early_tokens))
    return {name: results, **by_fold(scores, data, fold, reps, per_fold)}, {name: curves}


def first_tokens_probability(labelled: LabelledSet) -> np.ndarray:
    """exp of the mean top log-probability over each label's first `early_tokens` tokens: what the cascade
    weighs against P(strong right) (a label without first tokens ranks in the middle)."""
    return np.exp(_filled(labelled.early["mean_top_logprob"]))


def cascade_rule_name(tokens: int) -> str:
    """The row of the cascade's `expected_gain` as the gateway judges it: on the answer's first `tokens`."""
    return f"that P(strong right) - its first {tokens} tokens' probability (the cascade's expected_gain)"


BY_FOLD = (
    PROMPT_GAIN,
    "that P(strong right) - the local answer's own probability",
    "cascade confidence alone (mean_logprob)",
    "expected gain, fitted to the labels (P(strong right) - P(local right))",
    "similarity-weighted (RouteLLM SW)",
    "prompt-length",
)
"""The routers reported per held-out fold as well (those scored, with the cascade's `expected_gain` on the
first tokens): the cascade rules, their parts and two baselines."""


def by_fold(
    scores: dict[str, np.ndarray | None], data: Dataset, fold: np.ndarray, reps: int, routers: tuple[str, ...] = BY_FOLD
) -> dict[str, dict[str, dict[str, Any]]]:
    """APGR and CPT with intervals on each held-out fold alone (its domains named): whether a router's
    lead holds on every group of unseen domains or comes from a few. Folds of rows (fewer than three
    groups) are not reported: they hold no domain out."""
    if len(set(data.groups)) < 3:
        return {}
    tables: dict[str, dict[str, dict[str, Any]]] = {}
    for k in np.unique(fold):
        held = fold == k
        part = data.subset(held)
        if part.strong.mean() <= part.weak.mean():
            continue  # no gap to recover on this fold: PGR is undefined
        rows: dict[str, dict[str, Any]] = {}
        for router in routers:
            values = scores.get(router)
            if values is None:
                continue
            intervals = bootstrap(values[held], part.weak, part.strong, part.groups, reps)
            cis = {f"{key}_ci": [round(v, 4) for v in bounds] for key, bounds in intervals.items()}
            rows[router] = {**summary(curve(values[held], part.weak, part.strong)), **cis}
        rows["random"] = summary(random_curve(part.weak, part.strong))
        domains = sorted(set(part.groups))
        tables[f"held-out fold {int(k) + 1}: {', '.join(domains)} ({len(part)} labels)"] = rows
    return tables
