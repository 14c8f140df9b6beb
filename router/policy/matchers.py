"""Evaluate a rule's conditions against a request.

Each check returns `None` when it holds, or a short sentence saying why not; that sentence is what
`router route --explain` and `/v1/router/explain` show next to each rule that did not match.
"""

from __future__ import annotations

from fnmatch import fnmatchcase

from router.policy.schema import Condition, Range
from router.types import RequestContext


def _text(condition: Condition, ctx: RequestContext) -> str:
    return ctx.all_text() if condition.scope == "all" else ctx.last_user_text()


def _range_miss(name: str, value: int, rng: Range) -> str | None:
    if rng.contains(value):
        return None
    bounds = f"{rng.min if rng.min is not None else ''}..{rng.max if rng.max is not None else ''}"
    return f"{name} is {value}, outside {bounds}"


def why_not(condition: Condition, ctx: RequestContext) -> str | None:
    """None if every condition given holds, else the first one that does not, in words."""
    if condition.model is not None:
        requested = ctx.requested_model.lower()
        if not any(fnmatchcase(requested, pattern.lower()) for pattern in condition.model):
            return f"model `{ctx.requested_model}` is not one of {condition.model}"
    if condition.keyword_pattern is not None and not condition.keyword_pattern.search(_text(condition, ctx)):
        return f"none of the keywords {condition.keywords} appear in {condition.scope}"
    if condition.compiled_regexes:
        text = _text(condition, ctx)
        if not any(p.search(text) for p in condition.compiled_regexes):
            return f"no regex of {condition.regex} matches {condition.scope}"
    if condition.prompt_tokens is not None and (
        miss := _range_miss("prompt_tokens", ctx.prompt_tokens, condition.prompt_tokens)
    ):
        return miss
    if condition.messages is not None and (miss := _range_miss("messages", len(ctx.messages), condition.messages)):
        return miss
    for header, accepted in (condition.headers or {}).items():
        value = ctx.headers.get(header)
        if value is None:
            return f"header {header} is absent"
        if "*" not in accepted and value.lower() not in {a.lower() for a in accepted}:
            return f"header {header} is `{value}`, not one of {accepted}"
    for i, nested in enumerate(condition.all or []):
        if miss := why_not(nested, ctx):
            return f"all[{i}]: {miss}"
    if condition.any is not None and all(why_not(nested, ctx) for nested in condition.any):
        return "none of the `any` conditions holds"
    if condition.not_ is not None and why_not(condition.not_, ctx) is None:
        return "the `not` condition holds"
    return None


def matches(condition: Condition, ctx: RequestContext) -> bool:
    return why_not(condition, ctx) is None
