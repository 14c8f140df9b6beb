"""Policy files: valid ones load, invalid ones are refused with file, line and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from router.config import GatewayConfig
from router.errors import PolicyError
from router.policy import load_policy, parse_policy

REPO = Path(__file__).resolve().parents[2]
MODELS = GatewayConfig().models


@pytest.mark.parametrize("name", ["default.yaml", "privacy-first.yaml", "cost-saver.yaml"])
def test_shipped_policies_are_valid(name: str) -> None:
    engine = load_policy(REPO / "policies" / name, MODELS)
    assert engine.policy.rules
    assert len(engine.version) == 12


def refused(text: str) -> str:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "p.yaml", MODELS)
    return str(caught.value)


def test_unknown_key_is_reported_at_its_line() -> None:
    message = refused("rules:\n  - name: a\n    when:\n      keywrods: [x]\n    route: cloud\n")
    assert "p.yaml:4: rules.0.when.keywrods: unknown key" in message


def test_unknown_route_names_the_choices() -> None:
    message = refused("default:\n  route: gpt-9\n")
    assert "p.yaml:2: default.route" in message
    assert "expected one of: local, cloud" in message


def test_bad_regex_is_reported_with_its_line() -> None:
    message = refused("rules:\n  - name: r\n    when:\n      regex: ['(unclosed']\n    route: local\n")
    assert "p.yaml:4" in message and "invalid regular expression" in message


def test_missing_route_is_reported() -> None:
    message = refused("rules:\n  - name: r\n    when: {keywords: [x]}\n")
    assert "p.yaml:2: rules.0: Value error, `route` is missing" in message


def test_empty_condition_is_refused() -> None:
    assert "needs at least one of" in refused("rules:\n  - name: r\n    when: {}\n    route: local\n")


def test_inverted_range_is_refused() -> None:
    assert "larger than max" in refused(
        "rules:\n  - name: r\n    when: {prompt_tokens: {min: 10, max: 5}}\n    route: local\n"
    )


def test_duplicate_rule_names_are_refused() -> None:
    text = "rules:\n" + "  - {name: same, when: {keywords: [a]}, route: local}\n" * 2
    assert "used twice" in refused(text)


def test_yaml_syntax_error_names_the_line() -> None:
    assert refused("rules:\n  - name: a\n   bad indent: [\n").startswith("p.yaml:")


def test_top_level_must_be_a_mapping() -> None:
    assert "expected a mapping" in refused("- just\n- a list\n")


def test_missing_file_is_a_policy_error(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="cannot read"):
        load_policy(tmp_path / "nope.yaml")


def test_policy_version_is_a_content_hash() -> None:
    a = parse_policy("default: {route: local}\n", "a")
    b = parse_policy("default: {route: cloud}\n", "b")
    assert a.version != b.version
    assert parse_policy("default: {route: local}\n", "c").version == a.version
