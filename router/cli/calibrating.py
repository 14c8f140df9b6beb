"""`router calibrate`: the `route: auto` threshold from a sample, judged traffic or labels; the cascade's from
labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from router.cli._common import ConfigOpt, _fail, _settings, app
from router.cli._judgements import stored_judgements
from router.cli.learning import LabelsOpt, TasksOpt, _embedder, _labelled
from router.config import load_gateway_config
from router.errors import ConfigError


@app.command()
def calibrate(
    prompts: Annotated[
        Path | None, typer.Argument(help="Sample prompts: one per line, or JSON lines with `prompt`.")
    ] = None,
    target_cloud_share: Annotated[float, typer.Option(help="Share of the sample to send to the cloud, 0..1.")] = 0.3,
    quality_target: Annotated[
        float | None,
        typer.Option(
            help="Instead of a share: the threshold that keeps this quality retained (0..1) at the least cloud "
            "share, from judged traffic (shadow evaluation with `shadow.explore`)."
        ),
    ] = None,
    rule: Annotated[
        str, typer.Option(help="With --quality-target: the `route: auto` rule to calibrate (`default`: the default).")
    ] = "default",
    window: Annotated[str, typer.Option(help="With --quality-target: judgements of this window.")] = "7d",
    confidence: Annotated[
        float, typer.Option(help="With --quality-target: one-sided confidence the target must hold at.")
    ] = 0.9,
    head: Annotated[
        Path | None, typer.Option(help="The head to calibrate (default: the one the gateway uses for its local model).")
    ] = None,
    labels: LabelsOpt = None,
    tasks: TasksOpt = None,
    config: ConfigOpt = None,
    cascade_tokens: Annotated[
        int | None,
        typer.Option(
            help="With --labels and --quality-target: calibrate the cascade's threshold instead, on the local "
            "answers' first this many tokens (the policy's `decide_after_tokens`)."
        ),
    ] = None,
    cascade_metric: Annotated[
        str,
        typer.Option(
            help="With --cascade-tokens: mean_logprob, mean_top_logprob, min_logprob, mean_entropy or expected_gain "
            "(P(strong right) from the shipped strong-chance head, or --head: a strong-chance or expected-gain one)."
        ),
    ] = "mean_logprob",
    states: Annotated[
        Path | None,
        typer.Option(
            help="With --cascade-metric prompt_gain: the folder of the labelled prompts' states (`router "
            "states`); each label is scored by a state probe fitted without its domain. With letter_gain: their "
            "states read as the gateway asks the letter aside (`router states --reading aside`), which carry the "
            "letter's probability."
        ),
    ] = None,
    letter_labels: Annotated[
        list[Path] | None,
        typer.Option(
            "--letter-labels",
            help="With --cascade-metric letter_gain and states that carry no letter's probability (collected "
            "before `router states` kept the next token's): `router label --protocol letter` labels of the same "
            "prompts, whose one token is the letter.",
        ),
    ] = None,
    at: Annotated[
        list[float] | None,
        typer.Option(
            "--at",
            help="With --cascade-tokens: also say what this threshold (the metric's own units, e.g. the policy's) "
            "escalates and keeps on the labels (repeatable).",
        ),
    ] = None,
) -> None:
    """Print the `route: auto` threshold that sends the target share of the sample to the cloud, or (with
    --quality-target) the one that keeps a quality target at the least cloud share of judged traffic, or of
    labelled prompts (--labels: both models' outcomes known for every prompt); with --cascade-tokens, the
    early cascade's threshold on labelled prompts."""
    import numpy as np

    if at and (quality_target is None or not labels or cascade_tokens is None):
        _fail(ConfigError("--at says what a cascade threshold does on labels: give it with --labels, "
                          "--quality-target and --cascade-tokens"))  # fmt: skip
    if quality_target is not None and labels and cascade_tokens is not None:
        if cascade_metric in ("prompt_gain", "letter_gain") or states is not None:
            _calibrate_with_states(
                labels, tasks, quality_target, confidence, cascade_tokens, cascade_metric, states, letter_labels,
                at or [],
            )  # fmt: skip
            return
        _calibrate_cascade_on_labels(
            labels, tasks, quality_target, confidence, cascade_tokens, cascade_metric, _head_path(config, head), config,
            at or [],
        )  # fmt: skip
        return
    if quality_target is not None and labels:
        _calibrate_on_labels(config, labels, tasks, head, quality_target, confidence)
        return
    if quality_target is not None:
        _calibrate_for_quality(config, quality_target, rule, window, confidence)
        return
    if prompts is None:
        _fail(ConfigError("give a prompts file (for --target-cloud-share) or --quality-target"))

    from router.classify.calibrate import read_prompts, share_at, threshold_for_share
    from router.classify.head import Head, head_for_local

    texts = read_prompts(prompts)
    if not texts:
        typer.secho(f"{prompts}: no prompts", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    try:
        scorer = Head.load(head or head_for_local(load_gateway_config(_settings(config, None).config)))
    except ConfigError as error:
        _fail(error)
    scores = np.asarray(scorer.score(_embedder(config).embed(texts), texts))
    threshold = threshold_for_share(scores, target_cloud_share)
    typer.echo(
        f"threshold {threshold:.4f}: {100 * share_at(scores, threshold):.1f}% of {len(texts)} prompts to the cloud"
    )
    typer.echo(f"policy:\n  default:\n    route: auto\n    threshold: {threshold:.4f}")


def _on_labels(labelled: Any, escalation: Any, target: float, confidence: float) -> tuple[Any, int]:
    """Calibrate on labelled prompts: each is a judgement whose local and reference scores are the local and
    strong models' recorded outcomes, escalated by `escalation` (prompts where it is not finite left out).
    Returns the calibration and how many prompts it was made on."""
    import numpy as np

    from router.quality import Judgement, calibrate

    data = labelled.data
    judged = [
        Judgement(0.0, f"label-{i}", "local", "local", "default", "-", labelled.local_model, "strong", "labels",
                  "labels", float(data.weak[i]), float(data.strong[i]), 1.0, float(escalation[i]))
        for i in range(len(data)) if np.isfinite(escalation[i])
    ]  # fmt: skip
    try:
        return calibrate(judged, target, confidence), len(judged)
    except ValueError as error:
        _fail(ConfigError(str(error)))


def _calibrate_on_labels(
    config: Path | None, labels: list[Path], tasks: list[Path] | None, head: Path | None, target: float,
    confidence: float,
) -> None:  # fmt: skip
    """The `route: auto` threshold on labelled prompts, scored by the head the gateway would use."""
    from router.classify.head import Head

    try:
        labelled = _labelled(labels, tasks)
        scorer = Head.load(_head_path(config, head))
    except ConfigError as error:
        _fail(error)
    data = labelled.data
    found, judged = _on_labels(labelled, scorer.score(_embedder(config).embed(data.prompts), data.prompts),
                               target, confidence)  # fmt: skip
    typer.echo(
        f"{judged} labelled prompts of {labelled.local_model}: threshold {found.threshold:.4f} keeps quality "
        f"retained {found.quality:.3f} (at least {found.quality_low:.3f} with {100 * confidence:.0f}% confidence) "
        f"with {100 * found.cloud_share:.1f}% to the cloud"
    )
    typer.echo(f"policy:\n  default:\n    route: auto\n    threshold: {found.threshold:.4f}")


def _head_path(config: Path | None, head: Path | None) -> Path:
    """The head given, else the one the gateway with this config uses for its local model."""
    from router.classify.head import head_for_local

    if head is not None:
        return head
    try:
        return head_for_local(load_gateway_config(_settings(config, None).config))
    except ConfigError as error:
        _fail(error)


def _calibrate_cascade_on_labels(
    labels: list[Path], tasks: list[Path] | None, target: float, confidence: float, tokens: int, metric: str,
    head: Path, config: Path | None, at: list[float],
) -> None:  # fmt: skip
    """The cascade's threshold on labelled answers, escalated by how unsure the local model was over its first
    `tokens` tokens (answers with no first-token statistics left out), or for `expected_gain` by the head's
    P(strong right) minus the answer's probability."""
    import numpy as np

    from router.cascade_rule import LOW_IS_UNSURE
    from router.classify.head import STRONG_CHANCE_HEAD, Head, strong_chances
    from router.classify.labelled_set import CASCADE_METRICS

    if metric not in (*CASCADE_METRICS, "expected_gain"):
        _fail(ConfigError(f"unknown cascade metric `{metric}`: use one of {', '.join(CASCADE_METRICS)}, expected_gain"))
    try:
        labelled = _labelled(labels, tasks, early_tokens=tokens)
    except ConfigError as error:
        _fail(error)
    if metric == "expected_gain":
        given = Head.load(head)
        # A strong-chance head given with --head is the strong half; else the shipped one, as the gateway uses.
        alone = given.meta.get("target") == "strong model right"
        prompts = labelled.data.prompts
        strong = strong_chances(given, given if alone else Head.load(STRONG_CHANCE_HEAD),
                                _embedder(config).embed(prompts), prompts)  # fmt: skip
        assert strong is not None
        escalation = strong - np.exp(labelled.early["mean_top_logprob"])
        found, judged = _on_labels(labelled, escalation, target, confidence)
        threshold = found.threshold  # escalate above
    else:  # early metrics are "higher = surer"
        escalation = -labelled.early[metric]
        found, judged = _on_labels(labelled, escalation, target, confidence)
        threshold = found.threshold if metric == "mean_entropy" else -found.threshold
    typer.echo(
        f"{judged} labelled answers of {labelled.local_model} (of {len(labelled.data)}; the rest carry no "
        f"first-token statistics): {metric} over the first {tokens} tokens at {threshold:.4f} keeps quality "
        f"retained {found.quality:.3f} (at least {found.quality_low:.3f} with {100 * confidence:.0f}% confidence) "
        f"with {100 * found.cloud_share:.1f}% escalated"
    )
    for value in at:  # the threshold in escalation units: the logprob metrics escalate below theirs
        above = escalation > (-value if metric in LOW_IS_UNSURE else value)
        share, (quality, low, high) = _kept_at(labelled.data, above, np.isfinite(escalation))
        typer.echo(
            f"at {metric} {value:g}: {100 * share:.1f}% escalated, quality retained {quality:.3f} "
            f"[{low:.3f}, {high:.3f}] (95% bootstrap)"
        )
    typer.echo(f"policy:\n    cascade: {{metric: {metric}, threshold: {threshold:.4f}, decide_after_tokens: {tokens}}}")


def _kept_at(data: Any, up: Any, judged: Any, resamples: int = 1000) -> tuple[float, tuple[float, float, float]]:
    """The share of the judged labels sent `up`, and quality retained (the strong model's outcome where sent,
    the local model's elsewhere, over the strong model's everywhere) with a 95% bootstrap interval."""
    import numpy as np

    served = np.where(up, data.strong, data.weak)[judged].astype(float)
    strong = np.asarray(data.strong, float)[judged]
    picks = np.random.default_rng(0).integers(0, len(served), (resamples, len(served)))
    draws = served[picks].sum(axis=1) / np.maximum(strong[picks].sum(axis=1), 1e-9)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(np.mean(up[judged])), (float(served.sum() / strong.sum()), float(low), float(high))


def _calibrate_with_states(
    labels: list[Path], tasks: list[Path] | None, target: float, confidence: float, tokens: int, metric: str,
    states: Path | None, letter_labels: list[Path] | None = None, at: list[float] | None = None,
) -> None:  # fmt: skip
    """A gain's threshold on labelled prompts that have the local model's state, each scored by state probes
    that never saw its domain (domain-grouped folds): `prompt_gain` (P(strong right) - P(local right), both
    from the state), `expected_gain` with the state's P(strong right) less the first tokens' probability, or
    `letter_gain` with the letter-read state's P(strong right) less the letter's probability."""
    import numpy as np

    from router.backends.prompt_states import read_states
    from router.classify.label_eval import state_probe_chances
    from router.classify.labels import letter_probabilities
    from router.classify.train import selection_folds

    if metric not in ("prompt_gain", "expected_gain", "letter_gain"):
        _fail(ConfigError(f"--states calibrates prompt_gain, expected_gain or letter_gain, not `{metric}`"))
    if states is None:
        _fail(ConfigError(f"--cascade-metric {metric} needs --states (the labelled prompts' states)"))
    found_states = read_states(states)
    try:
        labelled = _labelled(labels, tasks, early_tokens=tokens, states=found_states)
    except ConfigError as error:
        _fail(error)
    rows = np.stack([found_states[i] for i in labelled.ids])
    strong, local = state_probe_chances(rows, labelled, selection_folds(labelled.data.groups, 8))
    if metric == "letter_gain":
        try:
            local = letter_probabilities(states, letter_labels, labelled.ids)
        except ConfigError as error:
            _fail(error)
    gain = strong - (np.exp(labelled.early["mean_top_logprob"]) if metric == "expected_gain" else local)
    found, judged = _on_labels(labelled, gain, target, confidence)
    typer.echo(
        f"{judged} labelled prompts of {labelled.local_model} with a state: {metric} (state probes out of fold) "
        f"at {found.threshold:.4f} keeps quality retained {found.quality:.3f} (at least {found.quality_low:.3f} "
        f"with {100 * confidence:.0f}% confidence) with {100 * found.cloud_share:.1f}% escalated"
    )
    for value in at or []:
        share, (quality, low, high) = _kept_at(labelled.data, gain > value, np.isfinite(gain))
        typer.echo(f"at {metric} {value:g}: {100 * share:.1f}% escalated, quality retained {quality:.3f} "
                   f"[{low:.3f}, {high:.3f}] (95% bootstrap)")  # fmt: skip
    rule = f"{{metric: {metric}, threshold: {found.threshold:.4f}, decide_after_tokens: {tokens}}}"
    typer.echo(f"policy:\n    cascade: {rule}")


def _calibrate_for_quality(config: Path | None, target: float, rule: str, window: str, confidence: float) -> None:
    from router.quality import calibrate, quality_retained

    try:
        judged = [j for j in stored_judgements(config, window) if j.auto_rule == rule]
    except ConfigError as error:
        _fail(error)
    if not judged:
        _fail(ConfigError(f"no judgement of rule `{rule}` routed `auto` in the last {window}"))
    try:
        found = calibrate(judged, target, confidence)
    except ValueError as error:
        _fail(ConfigError(str(error)))
    now = quality_retained(judged, min_samples=1)
    explored = sum(j.stratum == "cloud" for j in judged)
    typer.echo(
        f"{found.judged} judgements of `{rule}` ({explored} cloud answers explored); quality retained as routed "
        f"now: {now.value:.3f} [{now.low:.3f}, {now.high:.3f}]"
    )
    typer.echo(
        f"threshold {found.threshold:.4f}: quality retained {found.quality:.3f} (at least {found.quality_low:.3f} "
        f"on the next {found.judged} requests or more, with {100 * confidence:.0f}% confidence) with "
        f"{100 * found.cloud_share:.1f}% to the cloud"
    )
    where = "default" if rule == "default" else f"rule {rule}"
    typer.echo(f"policy ({where}):\n    route: auto\n    threshold: {found.threshold:.4f}")
