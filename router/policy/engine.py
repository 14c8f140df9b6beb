"""A loaded policy: rules tried from the highest priority down, first match wins, else the default.

Loading resolves `include:` (fragments relative to the including file, cycles refused) and remembers
where each rule was written, so errors and explain name `file:line`. Order, stated once: a tenant's own
rules, then the policy's included rules (in `include:` order), then its own rules; a stable sort by
`priority` (highest first) then decides, so equal priorities keep that written order.

`PolicyEngine` is immutable once built; a reload builds a new engine and swaps it in
(`Router.use_policy`), so a request always sees one whole policy, never half of an edit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from router.errors import PolicyError
from router.policy.facts import Facts
from router.policy.intents import Embed, IntentIndex
from router.policy.matchers import Verdict, evaluate
from router.policy.schema import DefaultAction, Policy, PolicyFragment, Rule
from router.yamlfile import LinePath, validate_yaml_with_lines


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule: str
    matched: bool
    why_not: str | None
    evidence: tuple[str, ...] = ()
    """What made the conditions hold (or the ones that held before one failed): spans, counts, scores."""
    origin: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    rule: Rule | None
    """The first rule that matched, or None when the default applies."""
    trace: tuple[RuleTrace, ...]
    """Every rule up to and including the match, with why each earlier one did not match."""
    default: DefaultAction
    """The default that applies to this request (a tenant's own, or the policy's)."""


def _ordered(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    return tuple(sorted(rules, key=lambda rule: -rule.priority))  # sorted() is stable: ties keep written order


class PolicyEngine:
    def __init__(self, policy: Policy, source: str, digest: str, files: tuple[Path, ...] = ()) -> None:
        self.policy = policy
        self.source = source
        self.digest = digest
        self.files = files
        """Every file the policy was read from (itself and its includes): what hot reload watches."""
        self.uses_sessions = policy.uses_sessions
        """A rule or default says `session: sticky` (computed once: read for every request)."""
        self.intents: IntentIndex | None = None
        """The intents' embedded examples; set once (`attach_intents`) before the engine goes live."""
        self._shared = _ordered(policy.rules)
        self._by_tenant = {name: _ordered([*tenant.rules, *policy.rules]) for name, tenant in policy.tenants.items()}

    async def attach_intents(self, embed: Embed, previous: PolicyEngine | None = None) -> int:
        """Embed the intents' examples (reusing `previous`'s vectors for unchanged texts), before the engine
        goes live; how many were new."""
        if not self.policy.intents or self.intents is not None:
            return 0
        self.intents = await IntentIndex.build(self.policy, embed, previous.intents if previous is not None else None)
        return self.intents.embedded_now

    @property
    def needs_intents(self) -> bool:
        """True when a rule names an intent: requests are then matched against the intents before deciding."""
        return bool(self.policy.intents) and bool(self.policy.intent_scopes)

    @property
    def version(self) -> str:
        """Short content hash: what `/v1/router/policy` and logs call this policy."""
        return self.digest[:12]

    def rules_for(self, tenant: str | None) -> tuple[Rule, ...]:
        return self._by_tenant.get(tenant or "", self._shared)

    def default_for(self, tenant: str | None) -> DefaultAction:
        override = self.policy.tenants.get(tenant or "")
        return override.default if override is not None and override.default is not None else self.policy.default

    def evaluate(self, f: Facts) -> PolicyMatch:
        """The first rule whose conditions hold for this request and what was found about it."""
        ctx = f.request
        trace: list[RuleTrace] = []
        for rule in self.rules_for(ctx.tenant):
            verdict: Verdict = evaluate(rule.when, f)
            trace.append(RuleTrace(rule.name, verdict.holds, verdict.why_not, verdict.evidence, rule.origin))
            if verdict.holds:
                return PolicyMatch(rule, tuple(trace), self.default_for(ctx.tenant))
        return PolicyMatch(None, tuple(trace), self.default_for(ctx.tenant))


class _Loader:
    """Reads a policy and its includes, each file validated on its own so errors carry its own lines."""

    def __init__(self, model_names: Iterable[str] | None) -> None:
        self._context = {"models": set(model_names)} if model_names is not None else None
        self.texts: list[tuple[Path | None, str]] = []
        self._origins: dict[str, str] = {}
        self._source = "policy"

    def _mark(self, rules: list[Rule], lines: dict[LinePath, int], source: str, path: LinePath) -> None:
        for i, rule in enumerate(rules):
            origin = f"{source}:{lines.get((*path, i), '?')}"
            if rule.name in self._origins:
                raise PolicyError(
                    f"{origin}: rules.{i}.name: rule name `{rule.name}` is already used at {self._origins[rule.name]}; "
                    "names must be unique across the policy, its includes and its tenants"
                )
            self._origins[rule.name] = origin
            rule._origin = origin

    def _fragment_rules(self, fragment: PolicyFragment, base: Path, chain: tuple[Path, ...]) -> list[Rule]:
        rules: list[Rule] = []
        for name in fragment.include:
            path = (base / name).resolve()
            where = chain[-1] if chain else self._source
            if path in chain:
                cycle = " -> ".join(str(p) for p in (*chain[chain.index(path) :], path))
                raise PolicyError(f"{where}: include `{name}` forms a cycle: {cycle}")
            text = _read(path, f"{where}: include `{name}`")
            included, lines = validate_yaml_with_lines(PolicyFragment, text, str(path), PolicyError, self._context)
            self.texts.append((path, text))
            rules += self._fragment_rules(included, path.parent, (*chain, path))
            self._mark(included.rules, lines, str(path), ("rules",))
            rules += included.rules
        return rules

    def load(self, text: str, source: str, path: Path | None) -> PolicyEngine:
        self._source = source
        policy, lines = validate_yaml_with_lines(Policy, text, source, PolicyError, self._context)
        self.texts.append((path, text))
        base = path.parent if path is not None else Path.cwd()
        chain = (path.resolve(),) if path is not None else ()
        included = self._fragment_rules(policy, base, chain)
        self._mark(policy.rules, lines, source, ("rules",))
        for tenant, override in policy.tenants.items():
            self._mark(override.rules, lines, source, ("tenants", tenant, "rules"))
        merged = policy.model_copy(update={"rules": [*included, *policy.rules], "include": []})
        _check_intents(merged)
        digest = hashlib.sha256()
        for _, content in self.texts:
            digest.update(hashlib.sha256(content.encode()).digest())
        files = tuple(p for p, _ in self.texts if p is not None)
        return PolicyEngine(merged, source, digest.hexdigest(), files)


def _check_intents(policy: Policy) -> None:
    """Every intent a rule names (in this file or an included one) is defined in the policy's `intents:`."""
    for rule in policy.all_rules():
        unknown = sorted(rule.when.intents - set(policy.intents))
        if unknown:
            known = ", ".join(f"`{name}`" for name in policy.intents) or "none (add an `intents:` section)"
            raise PolicyError(
                f"{rule.origin or rule.name}: rule `{rule.name}` names the intent `{unknown[0]}`, which the policy "
                f"does not define; defined intents: {known}"
            )


def _read(path: Path, what: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{what}: cannot read {path}: {exc.strerror or exc}") from exc


def parse_policy(
    text: str, source: str, model_names: Iterable[str] | None = None, path: Path | None = None
) -> PolicyEngine:
    """Validate policy YAML text. With `model_names`, routes must name `local`, `cloud` or one of them;
    includes are resolved relative to `path` (or the working directory)."""
    return _Loader(model_names).load(text, source, path)


def load_policy(path: Path, model_names: Iterable[str] | None = None) -> PolicyEngine:
    return parse_policy(_read(path, str(path)), str(path), model_names, path)
