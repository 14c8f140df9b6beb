"""YAML routing policies: schema, matching, loading."""

from router.policy.engine import PolicyEngine, PolicyMatch, RuleTrace, load_policy, parse_policy
from router.policy.schema import Condition, Policy, Rule

__all__ = [
    "Condition",
    "Policy",
    "PolicyEngine",
    "PolicyMatch",
    "Rule",
    "RuleTrace",
    "load_policy",
    "parse_policy",
]
