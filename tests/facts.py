"""Requests as the policy and the router read them: the request, and what the stages found about it."""

from __future__ import annotations

from typing import Any

from router.policy.facts import Facts
from router.types import Findings, RequestContext

FINDINGS = ("scores", "embedding", "intents", "budget", "session_escalated")


def facts(request: RequestContext | None = None, /, **kw: Any) -> Facts:
    """`Facts` for a request: a given one, or one made from `text`, `messages` and the context's own fields;
    `scores`, `intents`, `budget`, `session_escalated` and `embedding` go into its findings."""
    found = Findings(**{name: kw.pop(name) for name in FINDINGS if name in kw})
    if request is None:
        text = kw.pop("text", "hello there")
        messages = kw.pop("messages", ({"role": "user", "content": text},))
        request = RequestContext(
            request_id="t", kind="chat", requested_model=kw.pop("model", "auto"), messages=messages, **kw
        )
    return Facts(request, found)
