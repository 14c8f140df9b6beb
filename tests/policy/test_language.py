"""The rule language, table-driven: every condition and action, composition, priority, includes, tenants."""

from __future__ import annotations

import calendar
from pathlib import Path
from typing import Any

import pytest

from router.config import DEFAULT_LOCAL_MODEL, GatewayConfig
from router.errors import PolicyError
from router.policy import load_policy, parse_policy
from router.policy.facts import Facts
from router.policy.matchers import evaluate
from router.policy.schema import Condition
from router.routing import Router
from router.types import BudgetStatus
from tests.facts import facts

MODELS = GatewayConfig().models
# Wednesday 2026-11-18 10:30 UTC, and the same day at 22:00.
WED_1030 = calendar.timegm((2026, 11, 18, 10, 30, 0))
WED_2200 = calendar.timegm((2026, 11, 18, 22, 0, 0))
SAT_1030 = calendar.timegm((2026, 11, 21, 10, 30, 0))


def ctx(text: str = "hello there", **kw: Any) -> Facts:
    return facts(text=text, **kw)


IMAGE = ({"role": "user", "content": [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": "data:,"}}]},)  # fmt: skip
OVER = BudgetStatus("over", 12.0, 10.0, "day", "team:research")
NEAR = BudgetStatus("near", 8.5, 10.0, "day", "team:research")

# (condition, request, holds, a phrase the explanation must contain)
CASES: list[tuple[dict[str, Any], Facts, bool, str]] = [
    ({"pii": True}, ctx("mail jane@example.com"), True, "email at 5..21"),
    ({"pii": ["credit_card"]}, ctx("mail jane@example.com"), False, "no personal data of kinds ['credit_card']"),
    ({"pii": ["credit_card"]}, ctx("card 4111 1111 1111 1111"), True, "credit_card at 5..24"),
    ({"pii": True}, ctx("what is 2 + 2?"), False, "no personal data"),
    ({"language": ["de"]}, ctx("Wie spät ist es heute in Berlin und wo ist der Bahnhof?"), True, "language is `de`"),
    ({"language": "de"}, ctx("What time is it in Berlin today and where is the station?"), False, "not one of ['de']"),
    ({"language": ["en"]}, ctx("hi"), False, "too short"),
    ({"code": True}, ctx("fix this:\ndef add(a, b):\n    return a - b"), True, "code present"),
    ({"code": True}, ctx("```\nSELECT 1;\n```"), True, "code present"),
    ({"code": False}, ctx("write me a poem about the sea"), True, "code absent"),
    ({"code": True}, ctx("write me a poem about the sea"), False, "code absent"),
    (
        {"tools": True},
        ctx(passthrough={"tools": [{"type": "function", "function": {"name": "f"}}]}),
        True,
        "tools present",
    ),
    ({"tools": True}, ctx(), False, "tools absent"),
    ({"images": True}, ctx(messages=IMAGE), True, "image content present"),
    ({"images": False}, ctx(messages=IMAGE), False, "image content present"),
    ({"time": {"after": "09:00", "before": "17:00"}}, ctx(received_at=WED_1030), True, "inside 09:00..17:00"),
    ({"time": {"after": "09:00", "before": "17:00"}}, ctx(received_at=WED_2200), False, "outside 09:00..17:00"),
    ({"time": {"after": "20:00", "before": "06:00"}}, ctx(received_at=WED_2200), True, "inside 20:00..06:00"),
    ({"time": {"days": ["sat", "sun"]}}, ctx(received_at=SAT_1030), True, "sat 10:30"),
    ({"time": {"days": ["sat", "sun"]}}, ctx(received_at=WED_1030), False, "not on ['sat', 'sun']"),
    ({"time": {"after": "11:00", "tz": "Europe/Berlin"}}, ctx(received_at=WED_1030), True, "wed 11:30 Europe/Berlin"),
    ({"time": {"after": 540}}, ctx(received_at=WED_1030), True, "inside 09:00.."),  # YAML's unquoted 09:00
    ({"budget": ["over"]}, ctx(budget=OVER), True, "spent $12.0000 of $10"),
    ({"budget": ["over"]}, ctx(budget=NEAR), False, "budget is near"),
    ({"budget": ["ok"]}, ctx(), True, "no budget applies"),
    ({"tenant": ["research", "ml-*"]}, ctx(tenant="ml-vision"), True, "tenant is `ml-vision`"),
    ({"tenant": "research"}, ctx(), False, "tenant is `-`"),
    ({"metadata": {"env": "prod"}}, ctx(passthrough={"metadata": {"env": "PROD"}}), True, "metadata.env is `PROD`"),
    ({"metadata": {"env": "prod"}}, ctx(passthrough={"metadata": {"env": "dev"}}), False, "not one of ['prod']"),
    ({"metadata": {"env": "*"}}, ctx(), False, "metadata.env is absent"),
    ({"score": {"min": 0.6}}, ctx(scores={"escalation": 0.71}), True, "score is 0.7100, in 0.6.."),
    ({"score": {"max": 0.3}}, ctx(scores={"escalation": 0.71}), False, "outside ..0.3"),
    ({"score": {"min": 0.6}}, ctx(), False, "no classifier score"),
    ({"prompt_tokens": {"min": 100}}, ctx(prompt_tokens=150), True, "prompt_tokens is 150, in 100.."),
    ({"keywords": ["prove"]}, ctx("please prove it"), True, "keyword `prove` at 7..12"),
    ({"regex": [r"\bJIRA-\d+"]}, ctx("see JIRA-42 now"), True, "matches `JIRA-42` at 4"),
    ({"headers": {"x-team": "legal"}}, ctx(headers={"x-team": "Legal"}), True, "header x-team is `Legal`"),
    ({"model": "gpt-4*"}, ctx(model="gpt-4o"), True, "matches `gpt-4*`"),
    # composition
    (
        {"all": [{"pii": True}, {"keywords": ["invoice"]}]},
        ctx("invoice for jane@example.com"),
        True,
        "keyword `invoice`",
    ),
    ({"all": [{"pii": True}, {"keywords": ["invoice"]}]}, ctx("hello jane@example.com"), False, "all[1]: none of"),
    ({"any": [{"code": True}, {"pii": True}]}, ctx("hello jane@example.com"), True, "any[1]: personal data"),
    ({"any": [{"code": True}, {"pii": True}]}, ctx("hello"), False, "none of the `any`"),
    ({"not": {"pii": True}}, ctx("hello"), True, "not: no personal data"),
    ({"not": {"pii": True}}, ctx("jane@example.com"), False, "the `not` condition holds"),
    ({"keywords": ["mail"], "not": {"tenant": "legal"}}, ctx("mail it", tenant="hr"), True, "keyword `mail`"),
]


@pytest.mark.parametrize(("condition", "request_ctx", "holds", "said"), CASES)
def test_condition(condition: dict[str, Any], request_ctx: Facts, holds: bool, said: str) -> None:
    verdict = evaluate(Condition.model_validate(condition), request_ctx)
    assert verdict.holds is holds
    explanation = " | ".join([*verdict.evidence, verdict.why_not or ""])
    assert said in explanation, explanation


def router_for(text: str, tmp: Path | None = None) -> Router:
    return Router(GatewayConfig(), parse_policy(text, "p.yaml", MODELS, tmp / "p.yaml" if tmp else None))


ACTIONS = """
rules:
  - name: deny-secrets
    when: {pii: [secret]}
    deny: "Secrets must not be sent to the gateway."
  - name: slow-down
    when: {headers: {x-flood: "*"}}
    deny: {message: "Too many requests from this tool.", status: 429}
  - name: redacted-cloud
    when: {keywords: [summarise]}
    route: cloud
    redact: [email, phone]
    headers: {OpenAI-Project: proj_123}
    max_tokens: 200
    cache: {ttl_s: 60, semantic_threshold: 0.95}
  - name: listed
    when: {keywords: [list]}
    route: [gpt-4o-mini, local]
  - name: auto-hard
    when: {keywords: [maybe]}
    route: auto
    threshold: 0.5
default:
  route: local
  max_tokens: 300
  redact: true
"""


def test_actions() -> None:
    router = router_for(ACTIONS)
    d = router.decide(ctx("here is sk-proj-abcdefghijklmnopqrstuvwxyz123456"))
    assert d.deny is not None and d.deny.status == 403 and "Secrets" in d.deny.message
    d = router.decide(ctx(headers={"x-flood": "1"}))
    assert d.deny is not None and d.deny.status == 429
    d = router.decide(ctx("summarise mail from jane@example.com"))
    assert (d.route, d.redact, dict(d.upstream_headers), d.max_tokens_cap) == (
        "cloud", ("email", "phone"), {"OpenAI-Project": "proj_123"}, 200,
    )  # fmt: skip
    assert (d.cache.ttl_s, d.cache.semantic_threshold) == (60, 0.95)
    d = router.decide(ctx("list things"))
    assert (d.model, d.fallbacks) == ("gpt-4o-mini", (DEFAULT_LOCAL_MODEL,))
    assert router.decide(ctx("maybe", scores={"escalation": 0.7})).route == "cloud"
    assert router.decide(ctx("maybe", scores={"escalation": 0.2})).route == "local"
    d = router.decide(ctx("nothing special"))  # the default's actions apply too
    assert (d.reason, d.max_tokens_cap, len(d.redact)) == ("default", 300, 7)


def test_first_match_wins_and_priority_reorders() -> None:
    text = """
rules:
  - name: first
    when: {keywords: [x]}
    route: local
  - name: second
    when: {keywords: [x]}
    route: cloud
  - name: urgent
    priority: 10
    when: {keywords: [x, y]}
    route: gpt-4o-mini
"""
    router = router_for(text)
    trace = router.explain(ctx("x")).match.trace
    assert [t.rule for t in trace] == ["urgent"]  # highest priority first, and it matches
    assert router.decide(ctx("x")).reason == "urgent"
    text_equal = text.replace("priority: 10", "priority: 0")
    assert router_for(text_equal).decide(ctx("x")).reason == "first"  # equal priority: written order
    assert [t.rule for t in router_for(text_equal).explain(ctx("q")).match.trace] == ["first", "second", "urgent"]


def test_includes_and_tenant_overrides(tmp_path: Path) -> None:
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "pii.yaml").write_text(
        "include: [secrets.yaml]\nrules:\n  - name: pii-local\n    when: {pii: true}\n    route: local\n    pin: true\n"
    )
    (tmp_path / "shared" / "secrets.yaml").write_text(
        "rules:\n  - name: no-secrets\n    when: {pii: [secret]}\n    deny: no secrets\n"
    )
    policy = """
include: [shared/pii.yaml]
rules:
  - name: hard
    when: {keywords: [prove]}
    route: cloud
tenants:
  research:
    default: {route: cloud}
    rules:
      - name: research-local-drafts
        when: {keywords: [draft]}
        route: local
"""
    (tmp_path / "p.yaml").write_text(policy)
    engine = load_policy(tmp_path / "p.yaml", MODELS)
    router = Router(GatewayConfig(), engine)
    assert [r.name for r in engine.rules_for(None)] == ["no-secrets", "pii-local", "hard"]
    assert [r.name for r in engine.rules_for("research")] == [
        "research-local-drafts",
        "no-secrets",
        "pii-local",
        "hard",
    ]
    assert engine.rules_for(None)[0].origin == f"{tmp_path / 'shared' / 'secrets.yaml'}:2"
    assert {p.name for p in engine.files} == {"p.yaml", "pii.yaml", "secrets.yaml"}
    assert router.decide(ctx("hello")).route == "local"  # the policy's default
    assert router.decide(ctx("hello", tenant="research")).route == "cloud"  # the tenant's default
    assert router.decide(ctx("a draft", tenant="research")).reason == "research-local-drafts"
    assert router.decide(ctx("a draft")).reason == "default"  # other tenants do not see it
    assert router.decide(ctx("jane@example.com", tenant="research")).reason == "pii-local"  # shared rules apply
    before = engine.digest
    (tmp_path / "shared" / "secrets.yaml").write_text(
        "rules:\n  - name: no-secrets\n    when: {pii: [secret]}\n    deny: still no secrets\n"
    )
    assert load_policy(tmp_path / "p.yaml", MODELS).digest != before  # an include's edit is a new version


def test_budget_over_sends_cloud_requests_local_or_refuses() -> None:
    text = "rules:\n  - name: hard\n    when: {keywords: [prove]}\n    route: cloud\n"
    engine = parse_policy(text, "p.yaml", MODELS)
    refuse = Router(GatewayConfig(), engine)
    d = refuse.decide(ctx("prove it", budget=OVER))
    assert d.deny is not None and d.deny.status == 429 and "team:research spent $12.0000 of $10" in d.deny.message
    assert refuse.decide(ctx("hello", budget=OVER)).deny is None  # local answers are free: still served
    assert not refuse.decide(ctx("hello", budget=OVER)).allow_cloud  # ...with no cloud fallback
    local = Router(GatewayConfig.model_validate({"limits": {"on_budget_exceeded": "local"}}), engine)
    d = local.decide(ctx("prove it", budget=OVER))
    assert (d.route, d.reason, d.allow_cloud, d.deny) == ("local", "budget-exceeded", False, None)
    assert refuse.decide(ctx("prove it", budget=NEAR)).route == "cloud"


def test_budget_rule_acts_before_the_budget_runs_out() -> None:
    text = "rules:\n  - name: save-money\n    when: {budget: [near, over]}\n    route: local\n    pin: true\n"
    router = router_for(text + "default: {route: cloud}\n")
    assert router.decide(ctx(budget=NEAR)).reason == "save-money"
    assert router.decide(ctx()).route == "cloud"


def refused(text: str, tmp: Path | None = None, name: str = "p.yaml") -> str:
    with pytest.raises(PolicyError) as caught:
        if tmp is None:
            parse_policy(text, name, MODELS)
        else:
            (tmp / name).write_text(text)
            load_policy(tmp / name, MODELS)
    return str(caught.value)


INVALID = [
    ("rules:\n  - name: r\n    when: {pii: [passport]}\n    route: local\n", "p.yaml:3: rules.0.when.pii.0: Input should be 'email'"),
    ("rules:\n  - name: r\n    when: {pii: false}\n    route: local\n", "p.yaml:3: rules.0.when.pii: Value error, `pii: false` is not a condition"),
    ("rules:\n  - name: r\n    when: {language: [english]}\n    route: local\n", "not an ISO 639-1 language code"),
    ("rules:\n  - name: r\n    when: {time: {after: '25:00'}}\n    route: local\n", "p.yaml:3: rules.0.when.time.after"),
    ("rules:\n  - name: r\n    when: {time: {after: '09:00', tz: Mars/Olympus}}\n    route: local\n", "unknown time zone `Mars/Olympus`"),
    ("rules:\n  - name: r\n    when: {time: {tz: UTC}}\n    route: local\n", "give `after`, `before`, `days`"),
    ("rules:\n  - name: r\n    when: {time: {days: [monday]}}\n    route: local\n", "rules.0.when.time.days.0: Input should be 'mon'"),
    ("rules:\n  - name: r\n    when: {budget: [broke]}\n    route: local\n", "rules.0.when.budget.0: Input should be 'ok', 'near' or 'over'"),
    ("rules:\n  - name: r\n    when: {score: {min: 1.5}}\n    route: local\n", "rules.0.when.score.min: Input should be less than or equal to 1"),
    ("rules:\n  - name: r\n    when: {code: yes please}\n    route: local\n", "rules.0.when.code: Input should be a valid boolean"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    route: local\n    deny: nope\n", "not both"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    deny: no\n", "p.yaml:4: rules.0.deny: Value error, `deny` needs a message; YAML reads an unquoted yes/no"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    deny: nope\n    pin: true\n", "a `deny` rule calls no model, so ['pin']"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    deny: {message: no, status: 500}\n", "rules.0.deny.status: Input should be 400, 403 or 429"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    route: cloud\n    redact: [names]\n", "p.yaml:5: rules.0.redact.0"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    route: cloud\n    headers: {Authorization: x}\n", "`Authorization` is set by the gateway"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    route: cloud\n    priority: high\n", "p.yaml:5: rules.0.priority: Input should be a valid integer"),
    ("tenants:\n  t:\n    rules:\n      - name: r\n        when: {keywords: [x]}\n        route: gpt-9\n", "p.yaml:6: tenants.t.rules.0.route: Value error, unknown route `gpt-9`"),
    ("tenants:\n  t:\n    rulez: []\n", "p.yaml:3: tenants.t.rulez: unknown key"),
    ("rules:\n  - name: r\n    when: {keywords: [x]}\n    route: local\ntenants:\n  t:\n    rules:\n      - name: r\n        when: {keywords: [y]}\n        route: local\n",
     "p.yaml:8: rules.0.name: rule name `r` is already used at p.yaml:2"),
    ("include: [missing.yaml]\n", "include `missing.yaml`: cannot read"),
    ("rules:\n  - name: r\n    when: {metadata: {env: {nested: 1}}}\n    route: local\n", "rules.0.when.metadata.env"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "expected"), INVALID)
def test_invalid_policies_name_file_line_and_what_was_expected(text: str, expected: str) -> None:
    assert expected in refused(text)


def test_cyclic_include_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("include: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\nrules: []\n")
    message = refused("include: [a.yaml]\n", tmp_path, "main.yaml")
    assert "forms a cycle" in message and "a.yaml -> " in message and "b.yaml -> " in message


def test_errors_in_an_included_file_name_that_file(tmp_path: Path) -> None:
    (tmp_path / "frag.yaml").write_text(
        "rules:\n  - name: ok\n    when: {keywords: [x]}\n    route: local\n  - name: bad\n    when: {regex: ['(']}\n    route: local\n"
    )
    message = refused("include: [frag.yaml]\n", tmp_path, "main.yaml")
    assert f"{tmp_path / 'frag.yaml'}:6: rules.1.when.regex: Value error, invalid regular expression" in message


def test_a_duplicate_name_across_an_include_names_both_places(tmp_path: Path) -> None:
    (tmp_path / "frag.yaml").write_text("rules:\n  - name: r\n    when: {keywords: [x]}\n    route: local\n")
    message = refused(
        "include: [frag.yaml]\nrules:\n  - name: r\n    when: {keywords: [y]}\n    route: local\n",
        tmp_path,
        "main.yaml",
    )
    assert f"main.yaml:3: rules.0.name: rule name `r` is already used at {tmp_path / 'frag.yaml'}:2" in message


def test_published_json_schema_is_current() -> None:
    from router.policy.jsonschema import policy_json_schema

    published = Path(__file__).resolve().parents[2] / "policies" / "policy.schema.json"
    assert published.read_text() == policy_json_schema(), "run `router policy schema --out policies/policy.schema.json`"
