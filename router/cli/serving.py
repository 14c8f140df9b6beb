"""`router serve`, `router route --explain`, `router policy check|schema`."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from router.cli._common import (
    ConfigOpt,
    PolicyOpt,
    _fail,
    _settings,
    app,
    policy_app,
)
from router.config import load_gateway_config
from router.errors import ConfigError
from router.tokens import TokenCounter

if TYPE_CHECKING:
    from router.components import Components


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
    if components.pipeline.scorer is not None:
        head = components.pipeline.scorer.describe()
        typer.echo(f"head:    {head['head']} ({head['family']}; trained on {head['trained_on']})")
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
