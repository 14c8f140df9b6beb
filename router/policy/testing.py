"""Run policy test cases, and compare two policies on a sample of requests.

Both go through the gateway's own decision path without a model: `Pipeline.decide(..., dry_run=True)`,
the function the HTTP path runs (token count, budget, session, intents, classifier score, decision), and
the explanation is the one `router route --explain` and `/v1/router/explain` give. A case that fails is
reported with that explanation, so its author sees which rule matched instead and why the expected one
did not.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from router.errors import PolicyError
from router.policy.cases import CaseFile, PolicyCase
from router.types import BudgetStatus, RequestContext

if TYPE_CHECKING:
    from router.deciding import Assumed
from router.yamlfile import validate_yaml_with_lines

Explain = Callable[[RequestContext, "Assumed | None"], Awaitable[dict[str, Any]]]
"""A request (and what to assume of it) in, the explanation dict out (`router.explain.explanation_dict` of
the pipeline's dry-run decision)."""


@dataclass(frozen=True, slots=True)
class CaseResult:
    case: PolicyCase
    failures: tuple[str, ...]
    explanation: dict[str, Any] = field(repr=False)

    @property
    def passed(self) -> bool:
        return not self.failures


def read_cases(path: Path) -> list[PolicyCase]:
    """Cases from a YAML file: a list of cases, or a mapping with `tests:`; errors carry file:line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the test cases: {exc.strerror or exc}") from exc
    cases, _ = validate_yaml_with_lines(CaseFile, text, str(path), PolicyError, list_key="tests")
    return cases.tests


def case_context(case: PolicyCase, tenant_header: str) -> tuple[RequestContext, Assumed]:
    """The request a case describes, and what it assumes (an earlier cloud turn, a budget state)."""
    from router.deciding import Assumed

    messages = tuple(case.messages) if case.messages is not None else ({"role": "user", "content": case.prompt},)
    headers = {k.lower(): v for k, v in case.headers.items()}
    passthrough = {
        name: value
        for name, value in (
            ("metadata", case.metadata),
            ("tools", case.tools),
            ("response_format", case.response_format),
        )
        if value is not None
    }
    ctx = RequestContext(
        request_id=uuid.uuid4().hex,
        kind="chat",
        requested_model=case.model,
        messages=messages,
        headers=headers,
        passthrough=passthrough,
        tenant=case.tenant or headers.get(tenant_header.lower()),
    )
    budget = BudgetStatus(case.budget) if case.budget is not None else None
    return ctx, Assumed(session_escalated=case.escalated_before, budget=budget)


def mismatches(case: PolicyCase, got: dict[str, Any]) -> list[str]:
    """What the explanation says that the case did not expect, one line each."""
    want = case.expect
    said: list[str] = []
    denied = got["deny"] is not None
    if want.route is not None:
        actual = "deny" if denied else got["route"] if want.route in ("local", "cloud") else got["model"]
        if actual != want.route:
            said.append(
                f"route: expected `{want.route}`, got `{actual}`" + ("" if denied else f" (model {got['model']})")
            )
    if want.rule is not None and (got["rule"] or "default") != want.rule:
        said.append(f"rule: expected `{want.rule}`, got `{got['rule'] or 'default'}` (reason {got['reason']})")
    if want.intent is not None:
        matched = sorted({m["intent"] for m in got["intents"].values() if m["intent"]})
        if (want.intent == "none" and matched) or (want.intent != "none" and want.intent not in matched):
            nearest = next(iter(got["intents"].values()), None)
            detail = (
                f"; nearest example of `{nearest['nearest']}`: {nearest['example']!r} at {nearest['similarity']:.3f} "
                f"(needs {nearest['threshold']:g}{', ' + nearest['why_not'] if nearest['why_not'] else ''})"
                if nearest
                else " (no rule matches intents, or the embedder is not installed)"
            )
            said.append(f"intent: expected `{want.intent}`, got {matched or 'none'}{detail}")
    if want.redact is not None and sorted(want.redact) != sorted(got["redact"]):
        said.append(f"redact: expected {sorted(want.redact)}, got {sorted(got['redact'])}")
    if want.cache is not None and want.cache != (got["cache"]["not_cacheable"] is None):
        said.append(f"cache: expected {'cacheable' if want.cache else 'not cached'}, got "
                    f"{got['cache']['not_cacheable'] or 'cacheable'}")  # fmt: skip
    if want.cascade is not None and want.cascade != (got["cascade"] is not None):
        said.append(f"cascade: expected {'a cascade' if want.cascade else 'none'}, got {got['cascade'] or 'none'}")
    if want.pinned is not None and want.pinned != (not got["allow_cloud"]):
        said.append(f"pinned: expected {want.pinned}, got {not got['allow_cloud']}")
    if want.status is not None and (not denied or got["deny"]["status"] != want.status):
        said.append(f"status: expected {want.status}, got {got['deny']['status'] if denied else 'no refusal'}")
    return said


async def run_cases(cases: Iterable[PolicyCase], explain: Explain, tenant_header: str) -> list[CaseResult]:
    results = []
    for case in cases:
        got = await explain(*case_context(case, tenant_header))
        results.append(CaseResult(case, tuple(mismatches(case, got)), got))
    return results


def explanation_lines(got: dict[str, Any]) -> list[str]:
    """The rules tried, as `router route --explain` prints them: what matched and why others did not."""
    lines = []
    for trace in got["rules"]:
        mark = "MATCH" if trace["matched"] else "skip "
        lines.append(f"{mark} {trace['rule']}" + ("" if trace["matched"] else f"  ({trace['why_not']})"))
    if got["rule"] is None:
        lines.append(f"-> {got['reason']}: {got['route']} (model {got['model']})")
    return lines


# --- policy diff ------------------------------------------------------------------------------------


def read_sample(path: Path) -> list[tuple[RequestContext, int]]:
    """Requests in the OpenAI chat format, one JSON object a line, with the completion tokens each is
    expected to produce (`usage.completion_tokens` of recorded traffic, else its `max_tokens`, else 0)."""
    requests = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PolicyError(f"{path}:{number}: not JSON: {exc.msg}") from None
        request = body.get("request", body) if isinstance(body, dict) else None
        if not isinstance(request, dict) or not isinstance(request.get("messages"), list):
            raise PolicyError(f"{path}:{number}: expected a chat request with `messages` (a list)")
        completion = (body.get("usage") or {}).get("completion_tokens") or request.get("max_tokens") or 0
        passthrough = {k: request[k] for k in ("metadata", "tools", "response_format") if k in request}
        headers = {str(k).lower(): str(v) for k, v in (body.get("headers") or {}).items()}
        ctx = RequestContext(
            request_id=str(number),
            kind="chat",
            requested_model=str(request.get("model", "auto")),
            messages=tuple(request["messages"]),
            headers=headers,
            passthrough=passthrough,
            tenant=body.get("tenant"),
        )
        requests.append((ctx, int(completion)))
    return requests


@dataclass(frozen=True, slots=True)
class Outcome:
    rule: str
    target: str
    cost_usd: float


Cost = Callable[[str, int, int], float]
"""The price of an answer: (model, prompt tokens, completion tokens) -> USD."""


def decided(got: dict[str, Any], completion_tokens: int, cost: Cost) -> Outcome:
    if got["deny"] is not None:
        return Outcome(got["rule"] or "default", "deny", 0.0)
    target = f"{got['route']}:{got['model']}"
    return Outcome(got["rule"] or got["reason"], target, cost(got["model"], got["prompt_tokens"], completion_tokens))


async def diff(
    sample: list[tuple[RequestContext, int]],
    old: Explain,
    new: Explain,
    cost: Cost,
) -> dict[str, Any]:
    """How many requests change route under the new policy, from which rule to which, and the cost."""
    moves: Counter[tuple[str, str, str, str]] = Counter()
    routes_old: Counter[str] = Counter()
    routes_new: Counter[str] = Counter()
    old_usd = new_usd = 0.0
    for ctx, completion_tokens in sample:
        a = decided(await old(ctx, None), completion_tokens, cost)
        b = decided(await new(ctx, None), completion_tokens, cost)
        old_usd += a.cost_usd
        new_usd += b.cost_usd
        routes_old[a.target] += 1
        routes_new[b.target] += 1
        if (a.rule, a.target) != (b.rule, b.target):
            moves[(a.rule, a.target, b.rule, b.target)] += 1
    return {
        "requests": len(sample),
        "changed": sum(moves.values()),
        "moves": [
            {"from_rule": fr, "from": ft, "to_rule": tr, "to": tt, "requests": n}
            for (fr, ft, tr, tt), n in moves.most_common()
        ],
        "routes": {"old": dict(routes_old), "new": dict(routes_new)},
        "cost_usd": {"old": round(old_usd, 8), "new": round(new_usd, 8), "change": round(new_usd - old_usd, 8)},
    }
