"""`router train`, `router eval`, `router calibrate`, `router label`: the classifier's offline side."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from router.cli._common import (
    ConfigOpt,
    _fail,
    _settings,
    app,
)
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


@app.command()
def train(
    mmlu: Annotated[Path, typer.Option("--mmlu", help="Folder of MMLU-style outcome CSVs (one per domain).")],
    out: Annotated[Path, typer.Option(help="Where to write the head.")] = Path("router/classify/head.npz"),
    cache_dir: EmbeddingCache = None,
    config: ConfigOpt = None,
    hold_out: Annotated[
        bool, typer.Option("--hold-out", help="Keep a fixed quarter of the domains out, for `router eval` to score.")
    ] = False,
    folds: Annotated[int, typer.Option(help="Domain-grouped cross-validation folds for the selection.")] = 8,
) -> None:
    """Train the escalation head, choosing its family by domain-grouped cross-validation."""
    from router.classify.data import read_mmlu
    from router.classify.train import train as train_head

    logging.basicConfig(level="INFO", format="%(message)s")
    result = train_head(read_mmlu(mmlu), _embedder(config), _embedding_cache(cache_dir), folds, hold_out)
    result.head.save(out)
    typer.echo(f"chose {result.chosen}; out-of-fold APGR per family (95% CI, resampling domains):")
    for name, apgr in sorted(result.validation.items(), key=lambda item: -item[1]):
        low, high = result.intervals[name]
        typer.echo(f"  {apgr:.4f} [{low:.3f}, {high:.3f}]  {name}")
    held = result.head.meta["test_domains"]
    typer.echo(f"held out: {', '.join(held)}" if held else "trained on every clean domain (none held out)")
    typer.echo(f"wrote {out}")


@app.command("eval")
def evaluate(
    mmlu: Annotated[Path, typer.Option("--mmlu", help="MMLU-style folder: baselines train on its training domains.")],
    data: Annotated[
        list[Path] | None, typer.Option("--data", help="More data to score: a folder or an outcome CSV (repeatable).")
    ] = None,
    weak: Annotated[str | None, typer.Option(help="Weak model's column in outcome CSVs.")] = None,
    strong: Annotated[str | None, typer.Option(help="Strong model's column in outcome CSVs.")] = None,
    head: Annotated[Path | None, typer.Option(help="The head to evaluate (default: the shipped one).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for eval.json and eval.png.")] = Path("eval-out"),
    cache_dir: EmbeddingCache = None,
    config: ConfigOpt = None,
) -> None:
    """APGR and CPT(50%/80%) of the head and the baselines on held-out MMLU domains and any other data."""
    from router.classify.data import read_any, read_mmlu, read_outcome_csv
    from router.classify.head import SHIPPED_HEAD, Head
    from router.classify.report import evaluate as run_eval
    from router.classify.report import table, write_outputs

    others = []
    for path in data or []:
        if path.is_file() and (weak or strong):
            others.append(read_outcome_csv(path, **{k: v for k, v in {"weak": weak, "strong": strong}.items() if v}))
        else:
            others.append(read_any(path))
    results, curves = run_eval(
        Head.load(head or SHIPPED_HEAD), read_mmlu(mmlu), others, _embedder(config), _embedding_cache(cache_dir)
    )
    typer.echo(table(results))
    for path in write_outputs(results, curves, out):
        typer.echo(f"wrote {path}")


@app.command()
def calibrate(
    prompts: Annotated[Path, typer.Argument(help="Sample prompts: one per line, or JSON lines with `prompt`.")],
    target_cloud_share: Annotated[float, typer.Option(help="Share of the sample to send to the cloud, 0..1.")] = 0.3,
    head: Annotated[Path | None, typer.Option(help="The head to calibrate (default: the shipped one).")] = None,
    config: ConfigOpt = None,
) -> None:
    """Print the `route: auto` threshold that sends the target share of the sample to the cloud."""
    import numpy as np

    from router.classify.calibrate import read_prompts, share_at, threshold_for_share
    from router.classify.head import SHIPPED_HEAD, Head

    texts = read_prompts(prompts)
    if not texts:
        typer.secho(f"{prompts}: no prompts", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    scorer = Head.load(head or SHIPPED_HEAD)
    scores = np.asarray(scorer.score(_embedder(config).embed(texts), texts))
    threshold = threshold_for_share(scores, target_cloud_share)
    typer.echo(
        f"threshold {threshold:.4f}: {100 * share_at(scores, threshold):.1f}% of {len(texts)} prompts to the cloud"
    )
    typer.echo(f"policy:\n  default:\n    route: auto\n    threshold: {threshold:.4f}")
