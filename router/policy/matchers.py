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

from router import clients
from router.policy import facts
from router.policy.facts import Facts
from router.policy.schema import WEEKDAYS, Condition, Range, TimeWindow


@dataclass(frozen=True, slots=True)
class Verdict:
    holds: bool
    evidence: tuple[str, ...] = ()
    why_not: str | None = None


# A check is (holds, what it saw): the evidence when it holds, the reason when it does not.
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


# Each matcher tests one kind of condition, when the condition names it: a generator of checks, so that
# evaluation stops at the first one that fails and the costly ones after it never run.
Matcher = Callable[[Condition, Facts], Iterator[Check]]


def _model(c: Condition, f: Facts) -> Iterator[Check]:
    if c.model is None:
        return
    requested = f.request.requested_model
    hit = next((p for p in c.model if fnmatchcase(requested.lower(), p.lower())), None)
    yield (
        (True, f"model `{requested}` matches `{hit}`")
        if hit
        else (False, f"model `{requested}` is not one of {c.model}")
    )


def _api(c: Condition, f: Facts) -> Iterator[Check]:
    if c.api is None:
        return
    called = clients.api(f.request)
    yield called in c.api, f"api is `{called}`" + ("" if called in c.api else f", not one of {c.api}")


def _client(c: Condition, f: Facts) -> Iterator[Check]:
    if c.client is None:
        return
    agent = clients.client(f.request)
    hit = next((p for p in c.client if fnmatchcase(agent.lower(), p.lower())), None)
    yield (
        (True, f"client `{agent}` matches `{hit}`")
        if hit
        else (False, f"client `{agent or '-'}` is not one of {c.client}")
    )


def _tenant(c: Condition, f: Facts) -> Iterator[Check]:
    if c.tenant is None:
        return
    name = f.request.tenant or ""
    hit = any(fnmatchcase(name, pattern) for pattern in c.tenant)
    yield hit, f"tenant is `{name or '-'}`" + ("" if hit else f", not one of {c.tenant}")


def _values(kind: str, wanted: dict[str, list[str]], value_of: Callable[[str], object]) -> Iterator[Check]:
    """`headers:` and `metadata:`: each named field present, with one of its accepted values."""
    for name, accepted in wanted.items():
        value = value_of(name)
        if value is None:
            yield False, f"{kind}{name} is absent"
        elif not _accepts(accepted, str(value)):
            yield False, f"{kind}{name} is `{value}`, not one of {accepted}"
        else:
            yield True, f"{kind}{name} is `{value}`"


def _headers(c: Condition, f: Facts) -> Iterator[Check]:
    yield from _values("header ", c.headers or {}, f.request.headers.get)


def _metadata(c: Condition, f: Facts) -> Iterator[Check]:
    if c.metadata:
        yield from _values("metadata.", c.metadata, facts.metadata(f.request).get)


def _sizes(c: Condition, f: Facts) -> Iterator[Check]:
    if c.prompt_tokens is not None:
        yield _in_range("prompt_tokens", f.request.prompt_tokens, c.prompt_tokens)
    if c.messages is not None:
        yield _in_range("messages", len(f.request.messages), c.messages)


def _content_kinds(c: Condition, f: Facts) -> Iterator[Check]:
    if c.tools is not None:
        yield _flag("tools", c.tools, facts.tools(f.request))
    if c.images is not None:
        yield _flag("image content", c.images, facts.images(f.request))
    if c.needs is not None:
        from router.capabilities import required_capabilities  # capabilities reads facts, like this module

        hit = [name for name in required_capabilities(f) if name in c.needs]
        yield bool(hit), f"needs {', '.join(hit)}" if hit else f"needs none of {c.needs}"


def _intent(c: Condition, f: Facts) -> Iterator[Check]:
    if c.intent is None:
        return
    found = f.found.intents.get(c.scope)
    if found is None:
        yield False, "intents were not matched (the embedder is not loaded yet, or could not load)"
    elif found.intent is not None and found.intent in c.intent:
        yield True, f"intent `{found.intent}` in {c.scope}: {found.describe()}"
    elif found.intent is not None:
        yield False, f"intent is `{found.intent}`, not one of {c.intent}: {found.describe()}"
    else:
        yield False, f"no intent matches {c.scope} ({found.why_not}): {found.describe()}"


def _time(c: Condition, f: Facts) -> Iterator[Check]:
    if c.time is not None:
        yield _in_window(c.time, f.request.received_at)


def _budget(c: Condition, f: Facts) -> Iterator[Check]:
    if c.budget is None:
        return
    budget = f.found.budget
    state = budget.state if budget is not None else "ok"
    detail = budget.describe() if budget is not None else "no budget applies"
    yield state in c.budget, f"budget is {state} ({detail})"


def _score(c: Condition, f: Facts) -> Iterator[Check]:
    if c.score is None:
        return
    value = f.found.scores.get("escalation")
    if value is None:
        yield False, "no classifier score (the classifier is not loaded)"
    else:
        yield _in_range("score", value, c.score)


def _keywords(c: Condition, f: Facts) -> Iterator[Check]:
    if c.keyword_pattern is None:
        return
    m = c.keyword_pattern.search(facts.text_for(f.request, c.scope))
    if m is None:
        yield False, f"none of the keywords {c.keywords} appear in {c.scope}"
    else:
        yield True, f"keyword `{m.group()}` at {m.start()}..{m.end()} of {c.scope}"


def _regexes(c: Condition, f: Facts) -> Iterator[Check]:
    if not c.compiled_regexes:
        return
    text = facts.text_for(f.request, c.scope)
    for pattern in c.compiled_regexes:
        if m := pattern.search(text):
            yield True, f"regex `{pattern.pattern}` matches `{_span(text, m.start(), m.end())}` at {m.start()}"
            return
    yield False, f"no regex of {c.regex} matches {c.scope}"


def _code(c: Condition, f: Facts) -> Iterator[Check]:
    if c.code is not None:
        snippet = facts.code(f, c.scope)
        yield _flag("code", c.code, snippet is not None, f" (`{snippet}`)" if snippet else "")


def _pii(c: Condition, f: Facts) -> Iterator[Check]:
    if c.pii is None:
        return
    found = [m for m in facts.pii(f, c.scope) if m.kind in c.pii]
    if not found:
        yield False, f"no personal data of kinds {c.pii} in {c.scope}"
        return
    shown = ", ".join(f"{m.kind} at {m.start}..{m.end}" for m in found[:5])
    yield True, f"personal data in {c.scope}: {shown}" + (f" and {len(found) - 5} more" if len(found) > 5 else "")


def _language(c: Condition, f: Facts) -> Iterator[Check]:
    if c.language is None:
        return
    detected = facts.language(f, c.scope)
    if detected is None:
        yield False, f"{c.scope} is too short to tell its language"
        return
    lang, prob = detected
    said = f"language is `{lang}` (p={prob:.2f})"
    yield (True, said) if lang in c.language else (False, f"{said}, not one of {c.language}")


def _composed(c: Condition, f: Facts) -> Iterator[Check]:
    """`all`, `any` and `not`: conditions of conditions."""
    for i, nested in enumerate(c.all or []):
        verdict = evaluate(nested, f)
        yield (True, "; ".join(verdict.evidence)) if verdict.holds else (False, f"all[{i}]: {verdict.why_not}")
    if c.any is not None:
        held = next(((i, v) for i, v in ((i, evaluate(n, f)) for i, n in enumerate(c.any)) if v.holds), None)
        yield (True, f"any[{held[0]}]: " + "; ".join(held[1].evidence)) if held else (
            False, "none of the `any` conditions holds")  # fmt: skip
    if c.not_ is not None:
        verdict = evaluate(c.not_, f)
        if verdict.holds:
            yield False, "the `not` condition holds: " + "; ".join(verdict.evidence)
        else:
            yield True, f"not: {verdict.why_not}"


MATCHERS: tuple[Matcher, ...] = (
    _model, _api, _client, _tenant, _headers, _metadata, _sizes, _content_kinds, _intent, _time, _budget, _score,
    _keywords, _regexes, _code, _pii, _language, _composed,
)  # fmt: skip
"""In a fixed order, cheap ones first: a rule stops at its first condition that does not hold."""


def _checks(c: Condition, f: Facts) -> Iterator[Check]:
    for matcher in MATCHERS:
        yield from matcher(c, f)


def evaluate(condition: Condition, f: Facts) -> Verdict:
    evidence: list[str] = []
    for holds, said in _checks(condition, f):
        if not holds:
            return Verdict(False, tuple(evidence), said)
        evidence.append(said)
    return Verdict(True, tuple(evidence))


def why_not(condition: Condition, f: Facts) -> str | None:
    """None if every condition given holds, else the first one that does not, in words."""
    return evaluate(condition, f).why_not


def matches(condition: Condition, f: Facts) -> bool:
    return evaluate(condition, f).holds
