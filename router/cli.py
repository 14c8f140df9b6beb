"""The `router` command: serve, explain a routing decision, check a policy file, manage keys and the cache."""

from __future__ import annotations

import json
import logging
import sys
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from router.config import Settings, load_gateway_config
from router.errors import ConfigError, RouterError
from router.tokens import TokenCounter

if TYPE_CHECKING:
    from router.classify.embedding_service import TextEmbedder
    from router.components import Components

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


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    config: ConfigOpt = None,
    policy: PolicyOpt = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
) -> None:
    """Run the gateway."""
    import uvicorn

    from router.app import create_app

    settings = _settings(config, policy, host=host, port=port, log_level=log_level)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        application = create_app(settings)
    except ConfigError as error:
        _fail(error)
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # SIGTERM: stop accepting, let requests in flight (streams too) finish, then run the shutdown.
        timeout_graceful_shutdown=application.state.components.config.server.shutdown_grace_s,
        access_log=False,  # the gateway logs one richer line per request itself (router.requests)
    )


@app.command()
def route(
    text: Annotated[str, typer.Argument(help="The prompt (the last user message).")],
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every rule and why it did or did not match.")
    ] = False,
    model: Annotated[str, typer.Option(help="The model name the client would send.")] = "auto",
    header: Annotated[list[str] | None, typer.Option(help="A request header, `name: value`; repeatable.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant (team) the request counts for.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    config: ConfigOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Print where a prompt would be routed and why. Calls no model; counts nothing against limits."""
    import asyncio

    from router.api.ops import explanation_dict, with_budget
    from router.app import build_components
    from router.types import RequestContext

    try:
        components = build_components(_settings(config, policy))
    except ConfigError as error:
        _fail(error)
    headers = {}
    for item in header or []:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    tokens = _token_counter(components)
    messages = ({"role": "user", "content": text},)
    ctx = RequestContext(
        request_id=uuid.uuid4().hex,
        kind="chat",
        requested_model=model,
        messages=messages,
        headers=headers,
        tenant=tenant or headers.get(components.config.ledger.tenant_header.lower()),
        prompt_tokens=tokens.count_messages(messages),
    )
    if components.pipeline.scorer is not None:  # the policy routes something `auto`: score it here too
        ctx = replace(ctx, scores={"escalation": components.pipeline.scorer.score_now(text)})

    async def budget() -> RequestContext:
        try:
            return await with_budget(components, ctx)
        finally:
            if components.redis is not None:
                await components.redis.close()

    result = explanation_dict(components, asyncio.run(budget()))
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    if result["deny"]:
        typer.echo(f"denied:  {result['deny']['status']} {result['deny']['message']}")
    else:
        typer.echo(f"route:   {result['route']}  (model {result['model']})")
    typer.echo(f"reason:  {result['reason']}")
    typer.echo(f"tokens:  {result['prompt_tokens']} prompt tokens")
    if result["scores"]:
        typer.echo(f"score:   {result['scores']['escalation']:.4f} (threshold {result['scores']['threshold']:.4f})")
    if result["fallbacks"]:
        typer.echo(f"fallback: {', '.join(result['fallbacks'])}")
    if not result["allow_cloud"]:
        typer.echo("pinned:  never leaves the local model")
    if result["redact"]:
        typer.echo(f"redact:  {', '.join(result['redact'])} (before any cloud model sees it)")
    if result["budget"]:
        typer.echo(f"budget:  {result['budget']['state']} ({result['budget']['summary']})")
    cache = result["cache"]
    typer.echo(f"cache:   {cache['not_cacheable'] or 'eligible'}")
    if explain:
        typer.echo(f"policy:  {components.policy_path} (version {result['policy']})")
        for trace in result["rules"]:
            mark = "MATCH" if trace["matched"] else "skip "
            why = "" if trace["matched"] else f"  ({trace['why_not']})"
            typer.echo(f"  {mark} {trace['rule']}{why}")
            for evidence in trace["evidence"]:
                typer.echo(f"          {'because' if trace['matched'] else 'held:  '} {evidence}")
        if result["reason"] != (result["rule"] or ""):
            typer.echo(f"  -> {result['reason']}: requested model `{result['requested_model']}`")


def _token_counter(components: Components) -> TokenCounter:
    """Exact counts from the local GGUF's vocabulary (weights are not loaded), else the estimate."""
    from router.backends.model_files import model_gguf_path
    from router.config import LlamaCppModel
    from router.tokens import gguf_vocab_counter

    config = components.config
    spec = config.models[config.routes.local]
    if not isinstance(spec, LlamaCppModel):
        return TokenCounter()
    try:
        path = model_gguf_path(spec.model_path, spec.package, components.settings.model_dir)
        return TokenCounter(gguf_vocab_counter(str(path)))
    except Exception:  # no GGUF at hand: estimate; the decision is still shown
        return TokenCounter()


@policy_app.command("check")
def policy_check(
    file: Annotated[Path, typer.Argument(help="The policy YAML to validate.")],
    config: ConfigOpt = None,
) -> None:
    """Validate a policy file; exit 0 if it is valid, 2 with file:line errors if not."""
    from router.policy import load_policy

    try:
        gateway = load_gateway_config(config)
        engine = load_policy(file, gateway.models)
    except ConfigError as error:
        _fail(error)
    rules = engine.policy.rules
    typer.echo(
        f"{file}: OK, {len(rules)} rule(s), default route `{engine.policy.default.route}`, version {engine.version}"
    )


@policy_app.command("schema")
def policy_schema(
    out: Annotated[Path | None, typer.Option(help="Write it to this file instead of printing it.")] = None,
) -> None:
    """Print the policy file's JSON Schema (for editors: `# yaml-language-server: $schema=...`)."""
    from router.policy.jsonschema import policy_json_schema

    text = policy_json_schema()
    if out is None:
        typer.echo(text, nl=False)
    else:
        out.write_text(text)
        typer.echo(f"wrote {out}")


@keys_app.command("hash")
def keys_hash(key: Annotated[str, typer.Argument(help="The API key to hash; `-` reads it from stdin.")]) -> None:
    """Print a key's SHA-256, for `auth.keys[].sha256` (the config never needs the key itself)."""
    from router.keys import hash_key

    secret = sys.stdin.readline().strip() if key == "-" else key
    typer.echo(hash_key(secret))


@app.command()
def stats(
    window: Annotated[str, typer.Option(help="How far back: 15m, 6h, 24h, 7d, 30d...")] = "24h",
    by: Annotated[str, typer.Option(help="Break the savings down by tenant, rule, model or route.")] = "tenant",
    as_json: Annotated[bool, typer.Option("--json", help="Print the whole stats object as JSON.")] = False,
    config: ConfigOpt = None,
) -> None:
    """Print the savings table from the ledger (the same store the gateway writes)."""
    import asyncio

    from router.app import build_ledger_store
    from router.ledger import Ledger
    from router.redis_client import RedisGuard, connect

    if by not in ("tenant", "rule", "model", "route"):
        typer.secho("--by takes tenant, rule, model or route", fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2)
    settings = _settings(config, None)
    try:
        gateway = load_gateway_config(settings.config)
    except ConfigError as error:
        _fail(error)

    async def read() -> dict:
        redis = RedisGuard(connect(settings.redis_url)) if settings.redis_url else None
        ledger = Ledger(build_ledger_store(settings, gateway, redis), gateway.ledger)
        try:
            return await ledger.stats(window)
        finally:
            await ledger.store.close()
            if redis is not None:
                await redis.close()

    try:
        result = asyncio.run(read())
    except RouterError as error:
        typer.secho(error.message, fg=typer.colors.RED, err=True)
        raise typer.Exit(code=2) from None
    result["reference_model"] = gateway.ledger.reference_model or next(iter(gateway.routes.cloud), None)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    t = result["totals"]
    typer.echo(f"window {window} ({result['granularity']} buckets), reference model {result['reference_model']}")
    typer.echo(
        f"requests {t['requests']}  errors {t['errors']}  spent ${t['cost_usd']:.6f}  "
        f"cloud-only ${t['counterfactual_usd']:.6f}  saved ${t['savings_usd']:.6f} ({t['savings_pct']:.1f}%)"
    )
    if by == "route":
        rows = [{"route": name, **values} for name, values in result["routes"].items()]
    else:
        rows = result[{"tenant": "tenants", "rule": "rules", "model": "models"}[by]]
    width = max([len(by), *(len(str(row[by])) for row in rows)])
    typer.echo(f"{by:<{width}}  {'requests':>9}  {'spent USD':>12}  {'cloud-only USD':>14}  {'saved USD':>12}")
    for row in rows:
        typer.echo(
            f"{row[by]!s:<{width}}  {row['requests']:>9}  {row['cost_usd']:>12.6f}  "
            f"{row['counterfactual_usd']:>14.6f}  {row['savings_usd']:>12.6f}"
        )


EmbeddingCache = Annotated[
    Path | None, typer.Option("--cache-dir", help="Where prompt embeddings are cached between runs.")
]


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


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
