"""`router label`: what the configured local model gets right, prompt by prompt (`classify/labels.py`)."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import typer

from router.cli._common import ConfigOpt, _fail, _settings, app
from router.config import load_gateway_config
from router.errors import ConfigError


class Reading(StrEnum):
    """How `router states` renders a prompt (recorded in the states folder, which takes no other)."""

    served = "served"
    aside = "aside"
    letter = "letter"


@app.command()
def label(
    data: Annotated[
        list[Path],
        typer.Argument(help="Checkable prompts: a GSM8K folder, MMLU-style CSVs with `answer`, or JSON lines."),
    ],
    out: Annotated[Path, typer.Option("--out", help="The labels file (JSON lines); appended to, resumable.")],
    model: Annotated[str | None, typer.Option(help="A configured model's name (default: routes.local).")] = None,
    sample: Annotated[
        int | None, typer.Option(help="Label a seeded sample of this many prompts per data source.")
    ] = None,
    per_group: Annotated[
        int | None,
        typer.Option(help="Label a seeded sample of this many prompts of every group (an MMLU domain): stratified."),
    ] = None,
    protocol: Annotated[
        str,
        typer.Option(
            help="How multiple-choice prompts are asked: `letter` (a system prompt asks for the letter "
            "only; the usual zero-shot protocol) or `reason` (answered in full, up to 512 tokens; the "
            "letter it settles on is read). Recorded in every label."
        ),
    ] = "letter",
    seed: Annotated[int, typer.Option(help="Seed of the sample.")] = 0,
    without_prompts: Annotated[
        bool,
        typer.Option(
            "--without-prompts",
            help="Write the labels without the prompts and answers (the data's text): "
            "a file that may ship beside a head; `--tasks` gives the prompts back to train and eval.",
        ),
    ] = False,
    concurrency: Annotated[
        int | None, typer.Option(help="Prompts in flight (default: the model's sequences, or its pool's servers).")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Time a few prompts and say how long the whole run would take.")
    ] = False,
    regrade: Annotated[
        bool,
        typer.Option(
            "--regrade",
            help="Check the answers stored in --out again with today's checker (no model is run; not while a "
            "run appends to the file), and report what changed and the accuracy by group.",
        ),
    ] = False,
    config: ConfigOpt = None,
) -> None:
    """Run a configured model over checkable prompts and write what it got right, with its confidence."""
    import asyncio

    if regrade:
        _regrade(data, out)
        return

    from router.backends import build_backend
    from router.classify.labeller import estimate, label_tasks
    from router.classify.labels import done_ids
    from router.config import LlamaCppModel, OpenAICompatibleModel

    settings = _settings(config, None)
    try:
        gateway = load_gateway_config(settings.config)
        tasks = _label_tasks(data, protocol, sample, per_group, seed)
    except ConfigError as error:
        _fail(error)
    name = model or gateway.routes.local
    if name not in gateway.models:
        _fail(ConfigError(f"no model `{name}` in the config; configured: {', '.join(gateway.models)}"))
    spec = gateway.models[name]

    async def run() -> None:
        nonlocal concurrency
        backend = build_backend(name, spec, settings.model_dir)
        await backend.start()
        try:
            if not backend.ready:
                _fail(ConfigError(f"model `{name}` cannot answer: {backend.unavailable_reason()}"))
            if concurrency is None:  # one prompt per sequence the loaded model decodes (`parallel: auto` sized)
                concurrency = (
                    max(spec.instances, int(backend.stats()["parallel"])) if isinstance(spec, LlamaCppModel)
                    else len(spec.api_base) if isinstance(spec, OpenAICompatibleModel) else 4
                )  # fmt: skip
            if dry_run:
                left = [t for t in tasks if t.id not in done_ids(out)]
                seconds = await estimate(backend, name, left, probes=5, concurrency=concurrency)
                typer.echo(
                    f"{len(left)} prompts to label with {name} (of {len(tasks)}; {len(tasks) - len(left)} already in "
                    f"{out}): about {seconds / 60:.1f} min at concurrency {concurrency} on this machine"
                )
                return
            summary = await label_tasks(backend, name, tasks, out, concurrency, with_prompts=not without_prompts)
            typer.echo(
                f"labelled {summary.labelled} prompts ({summary.skipped} already in {out}) in {summary.seconds:.0f} s; "
                f"{name} right on {summary.right} of {summary.labelled}; accuracy by group, over the whole file:"
            )
            for line in summary.accuracy_lines():
                typer.echo(line)
        finally:
            await backend.close()

    asyncio.run(run())


def _regrade(data: list[Path], out: Path) -> None:
    from router.classify.labeller import RunSummary, accuracy_by_group
    from router.classify.labels import regrade as check_again

    if not out.exists():
        _fail(ConfigError(f"{out}: no labels file to regrade"))
    try:
        checked, changed = check_again(out, data)
    except ConfigError as error:
        _fail(error)
    typer.echo(f"{out}: {checked} stored answers checked again, {changed} verdicts changed; accuracy by group:")
    for line in RunSummary(0, 0, 0, 0.0, accuracy_by_group(out)).accuracy_lines():
        typer.echo(line)


def _label_tasks(data: list[Path], protocol: str, sample: int | None, per_group: int | None, seed: int) -> list[Any]:
    """The prompts to label from each source, sampled as asked (seeded: the same when a run resumes)."""
    import hashlib

    from router.classify.labels import read_tasks, stratified

    tasks = []
    for path in data:
        found = read_tasks(path, protocol)
        if sample is not None:
            found = sorted(found, key=lambda t: hashlib.sha256(f"{seed}:{t.id}".encode()).hexdigest())[:sample]
        if per_group is not None:
            found = stratified(found, per_group, seed)
        tasks += found
    return tasks


@app.command()
def states(
    labels: Annotated[
        list[Path], typer.Option("--labels", help="Labels files: the prompts whose states are collected.")
    ],
    tasks: Annotated[
        list[Path], typer.Option("--tasks", help="Where the labels' prompts are (the data `router label` read).")
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder of states; appended to, resumable.")],
    model: Annotated[str | None, typer.Option(help="A configured llama-cpp model (default: routes.local).")] = None,
    reading: Annotated[
        Reading,
        typer.Option(
            "--reading",
            help="How each prompt is rendered before its state is read. `served`: as a client sends it (the "
            "state before the answer's first token: what a state probe is fitted on). `aside`: as served, "
            'followed by the answer start "The correct answer is", as the cascade\'s `letter_gain` asks a '
            "multiple-choice question aside (the state one token before the letter, and the letter's "
            "probability: what the letter probe is fitted on). `letter`: behind `router label --protocol "
            "letter`'s system prompt asking for the letter only.",
        ),
    ] = Reading.served,
    config: ConfigOpt = None,
) -> None:
    """The local model's last hidden state after reading each labelled prompt, rendered as the gateway
    serves it (prefill only): what `router train --prompt-state` fits the cascade's state probe on."""
    from router.backends.llama_cpp import prompt_settings
    from router.backends.model_files import model_gguf_path
    from router.backends.prompt_states import StateReader, collect_states, served_messages
    from router.classify.labels import LETTER_SYSTEM, attach_prompts, read_labels
    from router.config import LlamaCppModel
    from router.letter_probe import ANSWER_START

    settings = _settings(config, None)
    try:
        gateway = load_gateway_config(settings.config)
        records = attach_prompts(read_labels(labels), tasks)
    except ConfigError as error:
        _fail(error)
    name = model or gateway.routes.local
    spec = gateway.models.get(name)
    if not isinstance(spec, LlamaCppModel):
        _fail(ConfigError(f"`{name}` is not an in-process (llama-cpp) model: only those have states to read"))
    chat_format, system = prompt_settings(spec)
    system = LETTER_SYSTEM if reading is Reading.letter else system
    reader = StateReader(model_gguf_path(spec.model_path, spec.package, settings.model_dir), chat_format, spec.n_ctx)
    from router.classify.train import EXCLUDED_DOMAINS

    by_group: dict[str, list[dict[str, Any]]] = {}
    for record in records:  # not the domains training and eval leave out (their strong outcomes are unusable)
        if record["group"] not in EXCLUDED_DOMAINS:
            by_group.setdefault(str(record["group"]), []).append(record)
    # Group by group in turn, so that an interrupted run has states of every domain alike.
    rounds = max((len(group) for group in by_group.values()), default=0)
    order = [group[i] for i in range(rounds) for group in by_group.values() if i < len(group)]
    prompts = ((r["id"], served_messages(r["prompt"], system)) for r in order)
    answer_start = ANSWER_START if reading is Reading.aside else ""
    try:
        added = collect_states(reader, prompts, out, answer_start, reading.value)
    except ConfigError as error:
        _fail(error)
    typer.echo(f"{added} new states in {out} (of {len(order)} labelled prompts)")
