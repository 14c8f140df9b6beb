"""Evaluate a rule's conditions against a request.

`evaluate` returns a `Verdict`: whether every condition holds, the evidence for each one that held (the
matched span, the token count, the score), and, when one failed, why, in words. That is what
`router route --explain` and `/v1/router/explain` show next to each rule. Conditions are tested in the
order written in `Condition` and stop at the first that fails; the costly ones (PII, language) only
run when a rule names them, once per request.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from fnmatch import fnmatchcase

from router.policy import facts
from router.policy.facts import Facts
from router.policy.schema import WEEKDAYS, Condition, Range, TimeWindow


@dataclass(frozen=True, slots=True)
class Verdict:
    holds: bool
    evidence: tuple[str, ...] = ()
    why_not: str | None = None


# A check yields (holds, what it saw): the evidence when it holds, the reason when it does not.
Check = tuple[bool, str]


def _span(text: str, start: int, end: int) -> str:
    snippet = text[start:end]
    return snippet if len(snippet) <= 60 else snippet[:57] + "..."


def _in_range(name: str, value: float, rng: Range) -> Check:
    shown = f"{value:.4f}" if isinstance(value, float) else str(value)
    inside = rng.contains(value)
    return inside, f"{name} is {shown}, {'in' if inside else 'outside'} {rng.describe()}"


def _accepts(accepted: list[str], value: str) -> bool:
    return "*" in accepted or value.lower() in {a.lower() for a in accepted}


def _flag(name: str, wanted: bool, present: bool, detail: str = "") -> Check:
    said = f"{name} {'present' if present else 'absent'}{detail}"
    return present == wanted, said


def _in_window(window: TimeWindow, at: float) -> Check:
    local = datetime.fromtimestamp(at, window.zone)
    now, day = local.time(), WEEKDAYS[local.weekday()]
    when = f"{day} {now:%H:%M} {window.tz}"
    if window.days and day not in window.days:
        return False, f"it is {when}, not on {window.days}"
    after, before = window.after, window.before
    if after is not None and before is not None and after > before:  # spans midnight
        inside = now >= after or now < before
    else:
        inside = (after is None or now >= after) and (before is None or now < before)
    span = (f"{after:%H:%M}" if after else "") + ".." + (f"{before:%H:%M}" if before else "")
    return inside, f"it is {when}, {'inside' if inside else 'outside'} {span}"


def _checks(c: Condition, f: Facts) -> Iterator[Callable[[], Check]]:
    """The conditions given, each as a deferred check, in a fixed order: cheap ones first."""
    ctx = f.request
    if c.model is not None:
        requested = ctx.requested_model

        def model() -> Check:
            hit = next((p for p in c.model or [] if fnmatchcase(requested.lower(), p.lower())), None)
            return (
                (True, f"model `{requested}` matches `{hit}`")
                if hit
                else (
                    False,
                    f"model `{requested}` is not one of {c.model}",
                )
            )

        yield model
    if c.tenant is not None:

        def tenant() -> Check:
            name = ctx.tenant or ""
            hit = any(fnmatchcase(name, pattern) for pattern in c.tenant or [])
            return hit, f"tenant is `{ctx.tenant or '-'}`" + ("" if hit else f", not one of {c.tenant}")

        yield tenant
    for header, accepted in (c.headers or {}).items():

        def one_header(header: str = header, accepted: list[str] = accepted) -> Check:
            value = ctx.headers.get(header)
            if value is None:
                return False, f"header {header} is absent"
            if not _accepts(accepted, value):
                return False, f"header {header} is `{value}`, not one of {accepted}"
            return True, f"header {header} is `{value}`"

        yield one_header
    for field, accepted in (c.metadata or {}).items():

        def one_field(field: str = field, accepted: list[str] = accepted) -> Check:
            value = facts.metadata(ctx).get(field)
            if value is None:
                return False, f"metadata.{field} is absent"
            if not _accepts(accepted, str(value)):
                return False, f"metadata.{field} is `{value}`, not one of {accepted}"
            return True, f"metadata.{field} is `{value}`"

        yield one_field
    if c.prompt_tokens is not None:
        yield lambda: _in_range("prompt_tokens", ctx.prompt_tokens, c.prompt_tokens)  # type: ignore[arg-type]
    if c.messages is not None:
        yield lambda: _in_range("messages", len(ctx.messages), c.messages)  # type: ignore[arg-type]
    if c.tools is not None:
        yield lambda: _flag("tools", bool(c.tools), facts.tools(ctx))
    if c.images is not None:
        yield lambda: _flag("image content", bool(c.images), facts.images(ctx))
    if c.needs is not None:

        def needs() -> Check:
            from router.capabilities import required_capabilities  # capabilities reads facts, like this module

            needed = required_capabilities(f)
            hit = [name for name in needed if name in (c.needs or [])]
            return bool(hit), f"needs {', '.join(hit)}" if hit else f"needs none of {c.needs}"

        yield needs
    if c.intent is not None:

        def intent() -> Check:
            found = f.found.intents.get(c.scope)
            if found is None:
                return False, "intents were not matched (the embedder is not loaded yet, or could not load)"
            if found.intent is not None and found.intent in (c.intent or []):
                return True, f"intent `{found.intent}` in {c.scope}: {found.describe()}"
            if found.intent is not None:
                return False, f"intent is `{found.intent}`, not one of {c.intent}: {found.describe()}"
            return False, f"no intent matches {c.scope} ({found.why_not}): {found.describe()}"

        yield intent
    if c.time is not None:
        yield lambda: _in_window(c.time, ctx.received_at)  # type: ignore[arg-type]
    if c.budget is not None:

        def budget() -> Check:
            state = f.found.budget.state if f.found.budget is not None else "ok"
            detail = f.found.budget.describe() if f.found.budget is not None else "no budget applies"
            return state in (c.budget or []), f"budget is {state} ({detail})"

        yield budget
    if c.score is not None:

        def score() -> Check:
            value = f.found.scores.get("escalation")
            if value is None:
                return False, "no classifier score (the classifier is not loaded)"
            return _in_range("score", value, c.score)  # type: ignore[arg-type]

        yield score
    if c.keyword_pattern is not None:

        def keywords() -> Check:
            text = facts.text_for(ctx, c.scope)
            m = c.keyword_pattern.search(text)  # type: ignore[union-attr]
            if m is None:
                return False, f"none of the keywords {c.keywords} appear in {c.scope}"
            return True, f"keyword `{m.group()}` at {m.start()}..{m.end()} of {c.scope}"

        yield keywords
    if c.compiled_regexes:

        def regexes() -> Check:
            text = facts.text_for(ctx, c.scope)
            for pattern in c.compiled_regexes:
                if m := pattern.search(text):
                    return True, f"regex `{pattern.pattern}` matches `{_span(text, m.start(), m.end())}` at {m.start()}"
            return False, f"no regex of {c.regex} matches {c.scope}"

        yield regexes
    if c.code is not None:

        def code() -> Check:
            snippet = facts.code(f, c.scope)
            return _flag("code", bool(c.code), snippet is not None, f" (`{snippet}`)" if snippet else "")

        yield code
    if c.pii is not None:

        def pii() -> Check:
            found = [m for m in facts.pii(f, c.scope) if m.kind in (c.pii or [])]
            if not found:
                return False, f"no personal data of kinds {c.pii} in {c.scope}"
            shown = ", ".join(f"{m.kind} at {m.start}..{m.end}" for m in found[:5])
            return True, f"personal data in {c.scope}: {shown}" + (
                f" and {len(found) - 5} more" if len(found) > 5 else ""
            )

        yield pii
    if c.language is not None:

        def language() -> Check:
            detected = facts.language(f, c.scope)
            if detected is None:
                return False, f"{c.scope} is too short to tell its language"
            lang, prob = detected
            return lang in (c.language or []), f"language is `{lang}` (p={prob:.2f})" + (
                "" if lang in (c.language or []) else f", not one of {c.language}"
            )

        yield language
    for i, nested in enumerate(c.all or []):

        def all_of(i: int = i, nested: Condition = nested) -> Check:
            verdict = evaluate(nested, f)
            if not verdict.holds:
                return False, f"all[{i}]: {verdict.why_not}"
            return True, "; ".join(verdict.evidence)

        yield all_of
    if c.any is not None:

        def any_of() -> Check:
            for i, nested in enumerate(c.any or []):
                verdict = evaluate(nested, f)
                if verdict.holds:
                    return True, f"any[{i}]: " + "; ".join(verdict.evidence)
            return False, "none of the `any` conditions holds"

        yield any_of
    if c.not_ is not None:

        def not_() -> Check:
            verdict = evaluate(c.not_, f)  # type: ignore[arg-type]
            if verdict.holds:
                return False, "the `not` condition holds: " + "; ".join(verdict.evidence)
            return True, f"not: {verdict.why_not}"

        yield not_


def evaluate(condition: Condition, f: Facts) -> Verdict:
    evidence: list[str] = []
    for check in _checks(condition, f):
        holds, said = check()
        if not holds:
            return Verdict(False, tuple(evidence), said)
        evidence.append(said)
    return Verdict(True, tuple(evidence))


def why_not(condition: Condition, f: Facts) -> str | None:
    """None if every condition given holds, else the first one that does not, in words."""
    return evaluate(condition, f).why_not


def matches(condition: Condition, f: Facts) -> bool:
    return evaluate(condition, f).holds
