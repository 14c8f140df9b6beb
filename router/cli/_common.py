"""What every `router` command shares: the Typer apps, the common options, settings and error exits."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from router.config import Settings
from router.errors import ConfigError

app = typer.Typer(help="hybrid-router: an OpenAI-compatible gateway, local model first.", no_args_is_help=True)
policy_app = typer.Typer(help="Work with routing policy files.", no_args_is_help=True)
app.add_typer(policy_app, name="policy")
cache_app = typer.Typer(help="Work with the response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")
keys_app = typer.Typer(help="Work with API keys.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Gateway YAML (default: embedded defaults).")]
PolicyOpt = Annotated[Path | None, typer.Option("--policy", help="Policy YAML (default: the packaged policy).")]


def _settings(config: Path | None, policy: Path | None, **overrides: object) -> Settings:
    values = {k: v for k, v in {"config": config, "policy": policy, **overrides}.items() if v is not None}
    return Settings(**values)


def _fail(error: ConfigError) -> None:
    typer.secho(str(error), fg=typer.colors.RED, err=True)
    raise typer.Exit(code=2)
