"""`router serve` and `router route --explain`."""

from __future__ import annotations

import ipaddress
import json
import logging
import uuid
from typing import Annotated

import typer

from router.cli._common import (
    ConfigOpt,
    PolicyOpt,
    _fail,
    _settings,
    app,
)
from router.config import Settings
from router.errors import ConfigError


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 8080).")] = None,
    config: ConfigOpt = None,
    policy: PolicyOpt = None,
    log_level: Annotated[str | None, typer.Option(help="debug, info, warning, error.")] = None,
    allow_unauthenticated: Annotated[
        bool,
        typer.Option(
            "--allow-unauthenticated",
            help="Serve a non-loopback address with no API keys (anyone who reaches it can spend your cloud budget).",
        ),
    ] = False,
) -> None:
    """Run the gateway."""
    import uvicorn

    from router.app import create_app

    settings = _settings(config, policy, host=host, port=port, log_level=log_level)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        application = create_app(settings)
        open_to = unauthenticated_exposure(settings, bool(application.state.components.api_keys))
        if open_to and not (allow_unauthenticated or settings.allow_unauthenticated):
            raise ConfigError(open_to)
    except ConfigError as error:
        _fail(error)
    if open_to:
        logging.getLogger("router").warning("%s; serving anyway (--allow-unauthenticated)", open_to)
    uvicorn.run(
        application,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # SIGTERM: stop accepting, let requests in flight (streams too) finish, then run the shutdown.
        timeout_graceful_shutdown=application.state.components.config.server.shutdown_grace_s,
        access_log=False,  # the gateway logs one richer line per request itself (router.requests)
    )


def _conversation(text: str | None, messages: str | None) -> tuple[dict, ...]:
    """The request's messages: TEXT as one user message, or --messages validated as the API validates them."""
    from pydantic import ValidationError

    from router.api.errors import validation_to_invalid_request
    from router.schemas import ChatCompletionRequest

    if (text is None) == (messages is None):
        _fail(ConfigError("give the prompt as TEXT, or the conversation as --messages JSON (one of them)"))
    if messages is None:
        return ({"role": "user", "content": text},)
    try:
        return ChatCompletionRequest.model_validate({"messages": json.loads(messages)}).message_dicts()
    except json.JSONDecodeError as exc:
        _fail(ConfigError(f"--messages is not JSON: {exc.msg} (column {exc.colno})"))
    except ValidationError as exc:
        _fail(ConfigError(f"--messages: {validation_to_invalid_request(exc).message}"))
    raise AssertionError("unreachable")  # _fail exits


def unauthenticated_exposure(settings: Settings, keyed: bool) -> str | None:
    """What is wrong with binding `settings.host` with these keys, or None when nothing is."""
    if keyed or _loopback(settings.host):
        return None
    return (
        f"refusing to serve {settings.host}:{settings.port} with no API keys: anyone who can reach it could use "
        "your models and spend your cloud budget. Add keys (ROUTER_API_KEYS=name:secret,... or `auth.keys` in the "
        "gateway config), bind 127.0.0.1, or pass --allow-unauthenticated (ROUTER_ALLOW_UNAUTHENTICATED=true) "
        "if something in front of the gateway authenticates"
    )


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to any interface


@app.command()
def route(
    text: Annotated[str | None, typer.Argument(help="The prompt (the last user message).")] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show every rule and why it did or did not match.")
    ] = False,
    model: Annotated[str, typer.Option(help="The model name the client would send.")] = "auto",
    header: Annotated[list[str] | None, typer.Option(help="A request header, `name: value`; repeatable.")] = None,
    tenant: Annotated[str | None, typer.Option(help="The tenant (team) the request counts for.")] = None,
    messages: Annotated[
        str | None,
        typer.Option(
            help="The whole conversation, a JSON list of chat messages (instead of TEXT): sticky "
            "sessions and conversation-scoped rules see it as the gateway would."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the decision as JSON.")] = False,
    config: ConfigOpt = None,
    policy: PolicyOpt = None,
) -> None:
    """Print where a prompt would be routed and why. Calls no model; counts nothing against limits."""
    from router.app import build_components
    from router.cli._decide import explain_one
    from router.cli._explained import decision_lines, rule_lines
    from router.types import RequestContext

    try:
        components = build_components(_settings(config, policy), dry_run=True)
    except ConfigError as error:
        _fail(error)
    headers = {}
    for item in header or []:
        name, _, value = item.partition(":")
        headers[name.strip().lower()] = value.strip()
    conversation = _conversation(text, messages)
    ctx = RequestContext(
        request_id=uuid.uuid4().hex,
        kind="chat",
        requested_model=model,
        messages=conversation,
        headers=headers,
        tenant=tenant or headers.get(components.config.ledger.tenant_header.lower()),
    )
    result = explain_one(components, ctx)
    if as_json:
        typer.echo(json.dumps(result, indent=2))
        return
    for line in decision_lines(result):
        typer.echo(line)
    if explain:
        for line in rule_lines(result, str(components.policy_path)):
            typer.echo(line)
