"""`router policy test|check|diff` and `router route --explain` with intents, run as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.policy.billing import BILLING_EXAMPLES, BILLING_TO_CLOUD

REPO = Path(__file__).resolve().parents[2]

POLICY = (
    ("intents:\n" + BILLING_EXAMPLES + "default:\n  route: local\nrules:\n" + BILLING_TO_CLOUD)
    + """\
  - name: no-secrets
    when: {pii: [secret]}
    deny: "Do not send credentials."
tests:
  - prompt: I think you billed my card two times in March
    expect: {route: cloud, rule: billing-to-cloud, intent: billing}
  - prompt: what is the capital of France?
    expect: {route: local, rule: default, intent: none}
"""
)


def router(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "router", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    """A policy with intents and its own tests, and a config whose models are never called."""
    config = {
        "models": {
            "local-pool": {"engine": "openai-compatible", "model": "m", "api_base": ["http://127.0.0.1:9/v1"]},
            "gpt-4o-mini": {"engine": "litellm", "model": "openai/gpt-4o-mini", "api_key_env": "NO_KEY_HERE"},
        },
        "routes": {"local": "local-pool", "cloud": "gpt-4o-mini"},
        "ledger": {"path": str(tmp_path / "ledger.sqlite")},
    }
    (tmp_path / "router.yaml").write_text(yaml.safe_dump(config))
    (tmp_path / "policy.yaml").write_text(POLICY)
    return tmp_path / "policy.yaml", tmp_path / "router.yaml"


def test_policy_test_passes_then_fails_with_the_reason_when_broken(files: tuple[Path, Path], tmp_path: Path) -> None:
    policy, config = files
    ok = router("policy", "test", str(policy), "--config", str(config))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "2 passed, 0 failed" in ok.stdout
    # Break it on purpose: the billing rule now sends billing to the local model.
    policy.write_text(
        POLICY.replace("    when: {intent: billing}\n    route: cloud", "    when: {intent: billing}\n    route: local")
    )
    failed = router("policy", "test", str(policy), "--config", str(config))
    assert failed.returncode == 1
    assert "FAIL  I think you billed my card two times in March" in failed.stdout
    assert "route: expected `cloud`, got `local`" in failed.stdout
    assert "MATCH billing-to-cloud" in failed.stdout
    assert "1 passed, 1 failed" in failed.stdout


def test_cases_from_their_own_file_and_a_bad_one_is_refused_with_its_line(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    policy, config = files
    cases = tmp_path / "cases.yaml"
    cases.write_text(
        "- prompt: 'my key is sk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCD'\n"
        "  expect: {route: deny, status: 403, rule: no-secrets}\n"
        "- name: a paraphrase that is not billing\n"
        "  prompt: how do I reset my password?\n"
        "  expect: {intent: billing}\n"
    )
    result = router("policy", "test", str(policy), str(cases), "--config", str(config))
    assert result.returncode == 1
    assert "ok    my key is sk-proj" in result.stdout
    assert "FAIL  a paraphrase that is not billing" in result.stdout
    assert "intent: expected `billing`, got none; nearest example of `billing`" in result.stdout
    cases.write_text("- prompt: hi\n  expect: {rout: local}\n")
    bad = router("policy", "test", str(policy), str(cases), "--config", str(config))
    assert bad.returncode == 2
    assert f"{cases}:2" in bad.stderr and "rout" in bad.stderr


def test_policy_check_runs_the_files_tests_and_warns_about_thin_intents(files: tuple[Path, Path]) -> None:
    policy, config = files
    checked = router("policy", "check", str(policy), "--config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 intent(s), 2 test(s)" in checked.stdout and "2 passed, 0 failed" in checked.stdout
    policy.write_text(POLICY.replace("      - why is my bill higher than last month?\n", ""))
    thin = router("policy", "check", str(policy), "--config", str(config))
    assert "warning: intent `billing` has 4 example(s)" in thin.stderr


def test_route_explain_names_the_intent_and_its_nearest_example(files: tuple[Path, Path]) -> None:
    policy, config = files
    result = router("route", "--explain", "--config", str(config), "--policy", str(policy),
                    "you charged my card twice, why?")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "route:   cloud" in result.stdout
    assert (
        "intent:  `billing` on last_user; nearest example of `billing`: 'I was charged twice this month'"
        in result.stdout
    )
    assert "MATCH billing-to-cloud" in result.stdout


def test_policy_diff_counts_the_moves_and_prices_them(files: tuple[Path, Path], tmp_path: Path) -> None:
    policy, config = files
    new = tmp_path / "new.yaml"
    new.write_text(POLICY.replace("route: cloud\n  - name: no-secrets", "route: local\n  - name: no-secrets"))
    sample = tmp_path / "sample.jsonl"
    lines = [
        {"model": "auto", "messages": [{"role": "user", "content": "where do I find my invoice?"}], "max_tokens": 100},
        {"request": {"model": "auto", "messages": [{"role": "user", "content": "I was double charged"}]},
         "usage": {"completion_tokens": 200}},
        {"model": "auto", "messages": [{"role": "user", "content": "write a haiku about the sea"}]},
    ]  # fmt: skip
    sample.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    result = router("policy", "diff", str(policy), str(new), "--sample", str(sample), "--json", "--config", str(config))
    assert result.returncode == 0, result.stderr
    diff = json.loads(result.stdout)
    assert diff["requests"] == 3 and diff["changed"] == 2
    assert diff["moves"] == [
        {"from_rule": "billing-to-cloud", "from": "cloud:gpt-4o-mini", "to_rule": "billing-to-cloud",
         "to": "local:local-pool", "requests": 2},
    ]  # fmt: skip
    assert diff["cost_usd"]["old"] > 0 and diff["cost_usd"]["new"] == 0
    assert diff["cost_usd"]["change"] == -diff["cost_usd"]["old"]
    table = router("policy", "diff", str(policy), str(new), "--sample", str(sample), "--config", str(config))
    assert "2 of 3 requests change route" in table.stdout
    sample.write_text("{not json\n")
    bad = router("policy", "diff", str(policy), str(new), "--sample", str(sample), "--config", str(config))
    assert bad.returncode == 2 and f"{sample}:1: not JSON" in bad.stderr


@pytest.mark.parametrize(
    ("policy", "config"),
    [
        ("default.yaml", None),
        ("privacy-first.yaml", None),
        ("cost-saver.yaml", None),
        ("coding-agent.yaml", None),
        ("four-tier.yaml", "four-tier.config.yaml"),
    ],
)
def test_the_shipped_policies_pass_their_own_tests(policy: str, config: str | None) -> None:
    args = ["policy", "test", str(REPO / "policies" / policy)]
    if config is not None:
        args += ["--config", str(REPO / "policies" / config)]
    result = router(*args)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 failed" in result.stdout
