"""`router keys hash`, `router stats`, `router cache clear`."""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from router.cli._common import (
    ConfigOpt,
    _fail,
    _settings,
    app,
    cache_app,
    keys_app,
)
from router.config import GatewayConfig, Settings, load_gateway_config
from router.errors import ConfigError, RouterError

if TYPE_CHECKING:
    pass


@keys_app.command("hash")
def keys_hash(key: Annotated[str, typer.Argument(help="The API key to hash; `-` reads it from stdin.")]) -> None:
    """Print a key's SHA-256, for `auth.keys[].sha256` (the config never needs the key itself)."""
    from router.keys import hash_key

    secret = sys.stdin.readline().strip() if key == "-" else key
    typer.echo(hash_key(secret))


@app.command()
def stats(
    window: Annotated[str, typer.Option(help="How far back: 15m, 6h, 24h, 7d, 30d...")] = "24h",
    by: Annotated[
        str, typer.Option(help="Break the savings down by tenant, rule, model, route or client (program).")
    ] = "tenant",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole stats object as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the savings table from the ledger (the same store the gateway writes)."""
    import asyncio

    if by not in ("tenant", "rule", "model", "route", "client"):
        typer.secho("--by takes tenant, rule, model, route or client", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    settings = _settings(config, None)
    try:
        gateway = load_gateway_config(settings.config)
    except ConfigError as error:
        _fail(error)

    try:
        result = asyncio.run(_read_stats(settings, gateway, window))
    except RouterError as error:
        typer.secho(error.message, fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    result["reference_model"] = gateway.ledger.reference_model or next(iter(gateway.routes.cloud), None)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for line in _stats_lines(result, window, by):
        typer.echo(line)


async def _read_stats(settings: Settings, gateway: GatewayConfig, window: str) -> dict[str, Any]:
    """The ledger's window and the quality beside it, read from the stores the gateway writes."""
    from router.app import build_judgement_store, build_ledger_store, cloud_models
    from router.ledger import Ledger
    from router.quality.report import QualityReporter
    from router.redis_client import RedisGuard, connect

    redis = RedisGuard(connect(settings.redis_url)) if settings.redis_url else None
    ledger = Ledger(build_ledger_store(settings, gateway, redis), gateway.ledger)
    quality = QualityReporter(build_judgement_store(settings, gateway, redis), ledger, gateway.shadow,
                              cloud_models(gateway))  # fmt: skip
    try:
        view = await ledger.read_window(window)
        return {**ledger.summary(view), "quality": await quality.report(window, view=view)}
    finally:
        await ledger.store.close()
        await quality.store.close()
        if redis is not None:
            await redis.close()


def _client_lines(clients: list[dict[str, Any]]) -> list[str]:
    """Traffic by client program: what each sent, where it was answered, what it saved."""
    width = max([6, *(len(c["client"]) for c in clients)])
    lines = [f"{'client':<{width}}  {'requests':>9}  {'local':>7}  {'cloud':>7}  {'cache':>7}  {'spent USD':>12}  "
             f"{'saved USD':>12}  apis"]  # fmt: skip
    for c in clients:
        local, cloud, cached = (c["routes"].get(route, 0) for route in ("local", "cloud", "cache"))
        lines.append(f"{c['client']:<{width}}  {c['requests']:>9}  {local:>7}  {cloud:>7}  {cached:>7}  "
                     f"{c['cost_usd']:>12.6f}  {c['savings_usd']:>12.6f}  {','.join(c['apis'])}")  # fmt: skip
    return lines


def _stats_lines(result: dict[str, Any], window: str, by: str) -> list[str]:
    """The savings table, by tenant, rule, model or route, and the quality retained beside it."""
    t = result["totals"]
    lines = [
        f"window {window} ({result['granularity']} buckets), reference model {result['reference_model']}",
        f"requests {t['requests']}  errors {t['errors']}  spent ${t['cost_usd']:.6f}  "
        f"cloud-only ${t['counterfactual_usd']:.6f}  saved ${t['savings_usd']:.6f} ({t['savings_pct']:.1f}%)",
    ]
    quality = result["quality"]
    lines.append(quality["headline"])
    if by == "client":
        return lines + _client_lines(result["clients"])
    if by == "route":
        rows = [{"route": name, **values} for name, values in result["routes"].items()]
    else:
        rows = result[{"tenant": "tenants", "rule": "rules", "model": "models"}[by]]
    width = max([len(by), *(len(str(row[by])) for row in rows)])
    lines.append(f"{by:<{width}}  {'requests':>9}  {'spent USD':>12}  {'cloud-only USD':>14}  {'saved USD':>12}")
    lines += [
        f"{row[by]!s:<{width}}  {row['requests']:>9}  {row['cost_usd']:>12.6f}  "
        f"{row['counterfactual_usd']:>14.6f}  {row['savings_usd']:>12.6f}"
        for row in rows
    ]
    groups = quality.get({"tenant": "tenants", "rule": "rules", "model": "models"}.get(by, ""), [])
    if groups:
        lines.append(f"\nquality retained by {by} (95% interval), {quality['overall']['judged']} judged in all:")
        for entry in groups:
            if "quality_retained" in entry:
                shown = f"{100 * entry['quality_retained']:.1f}% [{100 * entry['low']:.1f}, {100 * entry['high']:.1f}]"
            else:
                shown = entry.get("note", "not estimated")
            lines.append(f"  {entry[by]!s:<{width}}  {entry['judged']:>6} judged  {shown}")
    return lines


@cache_app.command("clear")
def cache_clear(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's entries (as the gateway names it).")] = None,
    url: Annotated[
        str | None,
        typer.Option(help="Ask this running gateway instead (its memory cache); default: Redis when configured."),
    ] = None,
    api_key: Annotated[str | None, typer.Option(envvar="ROUTER_API_KEY", help="Key for the gateway's API.")] = None,
    config: ConfigOpt = None,
) -> None:
    """Drop cached answers: in Redis directly (every replica follows), or through a gateway's HTTP API."""
    import asyncio

    import httpx

    from router.cache import RedisCacheStore, scope_tag
    from router.redis_client import RedisGuard, connect

    settings = _settings(config, None)
    try:
        gateway = load_gateway_config(settings.config)
    except ConfigError as error:
        _fail(error)
    if url is None and settings.redis_url is None:
        url = f"http://{settings.host}:{settings.port}"
    if url is not None:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        try:
            response = httpx.post(f"{url.rstrip('/')}/v1/router/cache/clear", json={"tenant": tenant}, headers=headers)
        except httpx.HTTPError as exc:
            typer.secho(f"cannot reach the gateway at {url}: {exc}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1) from None
        if response.status_code != 200:
            typer.secho(f"{url}: {response.status_code} {response.text}", fg=typer.colors.RED, err=True)
            raise typer.Exit(code=1)
        typer.echo(f"cleared {response.json().get('cleared', 0)} entries")
        return

    async def clear() -> int:
        guard = RedisGuard(connect(settings.redis_url or ""))
        try:
            scope = None if tenant is None else scope_tag(tenant, gateway.cache.scope)
            return await RedisCacheStore(guard).clear(scope)
        finally:
            await guard.close()

    try:
        cleared = asyncio.run(clear())
    except Exception as exc:
        typer.secho(f"cannot clear the cache in Redis: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=1) from None
    typer.echo(f"cleared {cleared} entries")
