"""Who is calling, and through which API: what agent traffic is counted and routed by.

`api` is the wire format the client used; `client` its program as the `user-agent` names it, and
`client_family` a bounded label of it for metrics and the ledger (`claude-code`, `codex`, `openai-sdk`...).
"""

from __future__ import annotations

from router.types import RequestContext

CLIENT_FAMILIES = (
    ("claude-cli", "claude-code"), ("codex", "codex"), ("cursor", "cursor"), ("anthropic/", "anthropic-sdk"),
    ("openai/", "openai-sdk"), ("curl/", "curl"), ("python-httpx", "python-http"), ("python-requests", "python-http"),
    ("litellm", "litellm"),
)  # fmt: skip
"""User-agent prefixes → the client program's family (`other` otherwise)."""


def api(ctx: RequestContext) -> str:
    """The API the client called: `chat`, `completions`, `messages` (Anthropic's), `responses` (OpenAI's),
    `embeddings`."""
    if ctx.native is not None:
        return ctx.native.api
    return {"chat": "chat", "text": "completions"}.get(ctx.kind, ctx.kind)


def client(ctx: RequestContext) -> str:
    """The client program, as its `user-agent` names it (`claude-cli/2.1.3 (external, cli)`, `codex_exec/0.17`)."""
    return ctx.headers.get("user-agent", "")


def client_family(ctx: RequestContext) -> str:
    agent = client(ctx).lower()
    if not agent:
        return "unknown"
    return next((family for prefix, family in CLIENT_FAMILIES if agent.startswith(prefix)), "other")
