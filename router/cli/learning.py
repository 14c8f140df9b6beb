"""`router train` and `router eval`: the classifier's offline side (`calibrating.py`: `router calibrate`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from router.cli._common import (
    ConfigOpt,
    _fail,
    _settings,
    app,
)
from router.cli._judgements import stored_judgements
from router.config import Settings, load_gateway_config
from router.errors import ConfigError

if TYPE_CHECKING:
    from router.classify.embedding_service import TextEmbedder


EmbeddingCache = Annotated[
    Path | None, typer.Option("--cache-dir", help="Where prompt embeddings are cached between runs.")
]


def _embedder(config: Path | None) -> TextEmbedder:
    """The embedder the gateway would use with this config (ONNX by default), for train, eval, calibrate."""
    from router.classify.embedding_service import load_embedder

    settings = _settings(config, None)
    try:
        gateway = load_gateway_config(settings.config)
    except ConfigError as error:
        _fail(error)
    return load_embedder(gateway.embedder, settings.model_dir.parent / "embedders")


def _embedding_cache(cache_dir: Path | None) -> Path:
    return cache_dir or Settings().model_dir.parent / "embeddings"


LabelsOpt = Annotated[
    list[Path] | None,
    typer.Option("--labels", help="Labels files from `router label` (repeatable): the local model's own outcomes."),
]
TasksOpt = Annotated[
    list[Path] | None,
    typer.Option("--tasks", help="The data the labels were made on: fills in the prompts a labels file leaves out."),
]


def _labelled(
    labels: list[Path], tasks: list[Path] | None, early_tokens: int = 16, states: dict[str, Any] | None = None
):  # -> LabelledSet
    """The labels as a routing set, without the domains whose strong-model outcomes are a grading error
    (scored against them, a router that sends those prompts up would look wrong for being right); with
    `states` (by id), only the labels that have one, so that every router is scored on the same prompts."""
    from router.classify.labelled_set import labelled_set
    from router.classify.labels import attach_prompts, read_labels
    from router.classify.train import EXCLUDED_DOMAINS

    records = attach_prompts(read_labels(labels), tasks or [])
    if states is not None:
        records = [r for r in records if r["id"] in states]
    return labelled_set(records, early_tokens=early_tokens).without_groups(EXCLUDED_DOMAINS)


@app.command()
def train(
    mmlu: Annotated[
        Path | None, typer.Option("--mmlu", help="Folder of MMLU-style outcome CSVs (one per domain).")
    ] = None,
    labels: LabelsOpt = None,
    tasks: TasksOpt = None,
    out: Annotated[Path, typer.Option(help="Where to write the head.")] = Path("router/classify/head.npz"),
    labels_out: Annotated[
        Path | None,
        typer.Option("--labels-out", help="Also write the labels trained on, without prompts (what may ship)."),
    ] = None,
    cache_dir: EmbeddingCache = None,
    config: ConfigOpt = None,
    hold_out: Annotated[
        bool, typer.Option("--hold-out", help="Keep a fixed quarter of the domains out, for `router eval` to score.")
    ] = False,
    repeats: Annotated[int, typer.Option(help="Selection splits, each holding out a quarter of the domains.")] = 40,
    strong_chance: Annotated[
        bool,
        typer.Option(
            "--strong-chance",
            help="Fit P(the strong model answers right) instead, on the strong outcomes of --mmlu / --labels (the "
            "cascade's `expected_gain` reads it; ships as router/classify/strong_chance.npz).",
        ),
    ] = False,
    family: Annotated[
        list[str] | None,
        typer.Option(help="Only these head families (repeatable; names as `router train` prints them)."),
    ] = None,
    from_traffic: Annotated[
        bool,
        typer.Option(
            "--from-traffic",
            help="Also train on the judgements shadow evaluation stored (the gateway's ledger store, per --config).",
        ),
    ] = False,
    window: Annotated[str, typer.Option(help="With --from-traffic: judgements of this window (7d, 30d...).")] = "30d",
    prompt_state: Annotated[
        Path | None,
        typer.Option(
            "--prompt-state",
            help="Fit the local model's state probe instead, on --labels and this folder of their states "
            "(`router states`); the cascade's `prompt_gain` reads it (ships as heads/<package>.state.npz).",
        ),
    ] = None,
) -> None:
    """Train the escalation head, choosing its family by domain-grouped cross-validation.

    With --from-traffic: on the judgements of the gateway's own traffic ("local answer judged worse than
    the reference"), alone or with --mmlu / --labels. Without stored prompt texts only families that read
    the embedding alone are tried.

    With --mmlu: on the recorded weak and strong outcomes (Mixtral-8x7B vs GPT-4). With --labels: on the
    local model's own outcomes from `router label` ("local wrong and strong right"). With both: on the
    two together, so the local model's labels decide where it has them and the recorded outcomes are the
    prior everywhere else.
    """
    from dataclasses import replace

    from router.classify.labels import without_prompts
    from router.classify.train import train as train_head

    logging.basicConfig(level="INFO", format="%(message)s")
    if prompt_state is not None:
        _train_state_probe(prompt_state, labels, tasks, out, config)
        return
    if mmlu is None and not labels and not from_traffic:
        _fail(ConfigError("give --mmlu (recorded outcomes), --labels (your local model's labels), --from-traffic"))
    try:
        dataset, embedder, candidates, local_model = _training_data(mmlu, labels, tasks, from_traffic, window, config)
    except ConfigError as error:
        _fail(error)
    if strong_chance:
        from router.classify.strong_chance import train_strong_chance

        try:
            fitted, auroc = train_strong_chance(
                dataset, embedder or _embedder(config), _embedding_cache(cache_dir), hold_out
            )
        except ConfigError as error:
            _fail(error)
        sources = " + ".join([*(["labels"] if labels else []), *(["recorded MMLU outcomes"] if mmlu else [])])
        fitted = replace(fitted, meta={**fitted.meta, "trained_on": f"strong-model outcomes ({sources})"})
        fitted.save(out)
        typer.echo(
            f"P(strong right) on {fitted.meta['train_rows']} prompts; AUROC on whole domains held out {auroc:.3f}"
        )
        typer.echo(f"wrote {out}")
        return
    if family:
        from router.classify.train import CANDIDATES

        known = {c.name: c for c in candidates or CANDIDATES}
        unknown = [name for name in family if name not in known]
        if unknown:
            _fail(ConfigError(f"unknown head family {unknown[0]!r}: use one of {', '.join(known)}"))
        candidates = tuple(known[name] for name in family)
    try:
        result = train_head(
            dataset,
            embedder or _embedder(config),
            _embedding_cache(cache_dir),
            repeats,
            hold_out,
            **({"candidates": candidates} if candidates else {}),
        )
    except ConfigError as error:
        _fail(error)
    head = result.head
    if local_model is not None:
        trained_on = f"{local_model} labels" + (" + Mixtral-8x7B vs GPT-4 MMLU outcomes" if mmlu else "")
        head = replace(head, meta={**head.meta, "local_model": local_model, "trained_on": trained_on})
    if from_traffic:
        sources = ["judged traffic", *(["local-model labels"] if labels else []), *(["MMLU outcomes"] if mmlu else [])]
        head = replace(head, meta={**head.meta, "trained_on": " + ".join(sources)})
    head.save(out)
    if labels_out is not None and labels:
        from router.classify.labels import read_labels

        labels_out.write_text(without_prompts(read_labels(labels)), encoding="utf-8")
        typer.echo(f"wrote {labels_out} (the labels without their prompts)")
    typer.echo(f"chose {result.chosen}; mean APGR on held-out domains per family (95% CI over the splits):")
    for name, apgr in sorted(result.validation.items(), key=lambda item: -item[1]):
        low, high = result.intervals[name]
        typer.echo(f"  {apgr:.4f} [{low:.3f}, {high:.3f}]  {name}")
    held = head.meta["test_domains"]
    typer.echo(f"held out: {', '.join(held)}" if held else "trained on every clean domain (none held out)")
    typer.echo(f"wrote {out}")


def _train_state_probe(
    folder: Path, labels: list[Path] | None, tasks: list[Path] | None, out: Path, config: Path | None
) -> None:
    from router.backends.model_files import model_gguf_path
    from router.backends.prompt_states import read_reading, read_states
    from router.classify.labels import attach_prompts, read_labels
    from router.classify.prompt_state import output_matrix, train_state_probe
    from router.config import LlamaCppModel

    settings = _settings(config, None)
    try:
        if not labels:
            raise ConfigError("--prompt-state needs --labels: the outcomes the probe learns")
        gateway = load_gateway_config(settings.config)
        spec = gateway.models[gateway.routes.local]
        if not isinstance(spec, LlamaCppModel):
            raise ConfigError("the local model is not in-process (llama-cpp): it has no state to probe")
        records = attach_prompts(read_labels(labels), tasks or [])
        gguf = model_gguf_path(spec.model_path, spec.package, settings.model_dir)
        probe, aurocs = train_state_probe(records, read_states(folder), output_matrix(gguf))
    except ConfigError as error:
        _fail(error)
    probe.meta["reading"] = (read_reading(folder) or {}).get("reading", "unrecorded")
    probe.save(out)
    typer.echo(
        f"state probe on {probe.meta['labels']} labels of {probe.meta['domains']} domains; AUROC on whole domains "
        f"held out: strong right {aurocs['strong']:.3f}, local right {aurocs['local']:.3f}"
    )
    typer.echo(f"wrote {out}")


def _training_data(
    mmlu: Path | None, labels: list[Path] | None, tasks: list[Path] | None, from_traffic: bool, window: str,
    config: Path | None,
) -> tuple[Any, Any, Any, str | None]:  # fmt: skip
    """(the data set, the embedder to read it with or None for the default, the head families to try or None
    for all, the local model the labels are of) for `train`'s sources: judged traffic, labels, MMLU outcomes."""
    from router.classify.data import Dataset, read_mmlu

    embedder, candidates, local_model, parts = None, None, None, []
    if from_traffic:
        from router.classify.train import CANDIDATES
        from router.quality.learning import TRAFFIC_PREFIX, StoredEmbeddings, traffic_dataset

        judged = stored_judgements(config, window, embeddings=True)
        traffic, vectors = traffic_dataset(judged)
        if len(traffic) == 0:
            raise ConfigError(f"no judgement with an embedding in the last {window}: is shadowing on?")
        typer.echo(f"{len(traffic)} judged requests from traffic ({int(traffic.needs_strong.sum())} where the "
                   "local answer was judged worse)")  # fmt: skip
        parts.append(traffic)
        embedder = StoredEmbeddings(vectors, _embedder(config) if (mmlu or labels) else None)
        if any(p.startswith(TRAFFIC_PREFIX) for p in traffic.prompts):  # no texts: no text features
            candidates = tuple(c for c in CANDIDATES if "features" not in c.name)
    if labels:
        labelled = _labelled(labels, tasks)
        parts.append(labelled.data)
        local_model = labelled.local_model
    if mmlu is not None:
        parts.append(read_mmlu(mmlu))
    dataset = parts[0] if len(parts) == 1 else Dataset.concat("labels+mmlu", *parts)
    return dataset, embedder, candidates, local_model


@app.command("eval")
def evaluate(
    mmlu: Annotated[
        Path | None, typer.Option("--mmlu", help="MMLU-style folder: baselines train on its training domains.")
    ] = None,
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="More data to score: a folder or an outcome CSV (repeatable).")
    ] = None,
    labels: LabelsOpt = None,
    tasks: TasksOpt = None,
    weak: Annotated[str | None, typer.Option(help="Weak model's column in outcome CSVs.")] = None,
    strong: Annotated[str | None, typer.Option(help="Strong model's column in outcome CSVs.")] = None,
    head: Annotated[Path | None, typer.Option(help="The head to evaluate (default: the shipped one).")] = None,
    states: Annotated[
        Path | None,
        typer.Option(
            help="With --labels: a folder of the local model's states (`router states`): its state probe is "
            "scored too, and every router on the labels that have a state."
        ),
    ] = None,
    cascade_tokens: Annotated[
        int,
        typer.Option(
            help="With --labels: the early cascade's rules judge the answer's first this many tokens (the "
            "default policy decides after 3)."
        ),
    ] = 3,
    out: Annotated[Path, typer.Option(help="Folder for eval.json and eval.png.")] = Path("eval-out"),
    cache_dir: EmbeddingCache = None,
    config: ConfigOpt = None,
) -> None:
    """APGR and CPT(50%/80%), with 95% bootstrap intervals, of the head and every baseline on unseen data.

    With --labels: for the pair (your local model, the strong model), every router scored out of fold;
    with --mmlu too, also the head fitted to the labels and the recorded outcomes together.
    """
    from router.classify.data import read_any, read_mmlu, read_outcome_csv
    from router.classify.head import SHIPPED_HEAD, Head
    from router.classify.report import evaluate as run_eval
    from router.classify.report import table, write_outputs

    if labels:
        import numpy as np

        from router.backends.prompt_states import read_states
        from router.classify.label_eval import evaluate_labels
        from router.classify.train import training_split

        found = read_states(states) if states is not None else None
        try:
            labelled = _labelled(labels, tasks, early_tokens=cascade_tokens, states=found)
        except ConfigError as error:
            _fail(error)
        rows = None if found is None else np.stack([found[i] for i in labelled.ids])
        general = Head.load(SHIPPED_HEAD)
        family = Head.load(head).meta.get("chosen", "logreg(C=0.1)") if head else general.meta.get("chosen", "")
        prior = training_split(read_mmlu(mmlu), hold_out=False)[0] if mmlu is not None else None
        from router.classify.head import packaged_head_for
        from router.config import DEFAULT_LOCAL_PACKAGE

        shipped = {}
        if (packaged := packaged_head_for(DEFAULT_LOCAL_PACKAGE)) is not None:
            trained_on = Head.load(packaged).meta.get("trained_on", "its labels")
            shipped[f"head shipped for the default model ({trained_on})"] = Head.load(packaged)
        results, curves = evaluate_labels(
            labelled, general, _embedder(config), _embedding_cache(cache_dir), family or "logreg(C=0.1)", prior=prior,
            shipped=shipped, states=rows,
        )  # fmt: skip
    else:
        if mmlu is None:
            _fail(ConfigError("give --mmlu (the data the baselines train on) or --labels"))
        others = []
        for path in data or []:
            if path.is_file() and (weak or strong):
                values = {k: v for k, v in {"weak": weak, "strong": strong}.items() if v}
                others.append(read_outcome_csv(path, **values))
            else:
                others.append(read_any(path))
        assert mmlu is not None
        results, curves = run_eval(
            Head.load(head or SHIPPED_HEAD), read_mmlu(mmlu), others, _embedder(config), _embedding_cache(cache_dir)
        )
    typer.echo(table(results))
    for path in write_outputs(results, curves, out):
        typer.echo(f"wrote {path}")
