"""A loaded policy: first matching rule wins, else the default.

`PolicyEngine` is immutable once built; reloading a policy means building a new engine and swapping it
in (see `PolicyHolder`), so a request always sees one whole policy, never half of an edit.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from router.errors import PolicyError
from router.policy.matchers import why_not
from router.policy.schema import Policy, Rule
from router.types import RequestContext
from router.yamlfile import validate_yaml


@dataclass(frozen=True, slots=True)
class RuleTrace:
    rule: str
    matched: bool
    why_not: str | None


@dataclass(frozen=True, slots=True)
class PolicyMatch:
    rule: Rule | None
    """The first rule that matched, or None when the default applies."""
    trace: tuple[RuleTrace, ...]
    """Every rule up to and including the match, with why each earlier one did not match."""


class PolicyEngine:
    def __init__(self, policy: Policy, source: str, digest: str) -> None:
        self.policy = policy
        self.source = source
        self.digest = digest

    @property
    def version(self) -> str:
        """Short content hash: what `/v1/router/policy` and logs call this policy."""
        return self.digest[:12]

    def evaluate(self, ctx: RequestContext) -> PolicyMatch:
        trace: list[RuleTrace] = []
        for rule in self.policy.rules:
            reason = why_not(rule.when, ctx)
            trace.append(RuleTrace(rule.name, reason is None, reason))
            if reason is None:
                return PolicyMatch(rule, tuple(trace))
        return PolicyMatch(None, tuple(trace))


def parse_policy(text: str, source: str, model_names: Iterable[str] | None = None) -> PolicyEngine:
    """Validate policy YAML text. With `model_names`, routes must name `local`, `cloud` or one of them."""
    context = {"models": set(model_names)} if model_names is not None else None
    policy = validate_yaml(Policy, text, source, PolicyError, context)
    return PolicyEngine(policy, source, hashlib.sha256(text.encode()).hexdigest())


def load_policy(path: Path, model_names: Iterable[str] | None = None) -> PolicyEngine:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror or exc}") from exc
    return parse_policy(text, str(path), model_names)
