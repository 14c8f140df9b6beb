"""The `router` command: policy check and explain, run as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def router(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_policy_check_accepts_a_valid_file() -> None:
    result = router("policy", "check", "policies/privacy-first.yaml")
    assert result.returncode == 0, result.stderr
    assert "OK, 3 rule(s)" in result.stdout


def test_policy_check_refuses_an_invalid_file_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("default:\n  route: local\nrules:\n  - name: r\n    when: {keyword: [x]}\n    route: cloud\n")
    result = router("policy", "check", str(bad))
    assert result.returncode == 2
    assert f"{bad}:5: rules.0.when.keyword: unknown key" in result.stderr


def test_serve_refuses_to_start_with_an_invalid_policy(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("default:\n  route: mainframe\n")
    result = router("serve", "--port", "1", "--policy", str(bad))
    assert result.returncode == 2
    assert f"{bad}:2: default.route: Value error, unknown route `mainframe`" in result.stderr


def test_route_explain_shows_the_decision_without_calling_a_model() -> None:
    result = router("route", "--explain", "Prove that sqrt(2) is irrational")
    assert result.returncode == 0, result.stderr
    # No keyword rule sends proofs up any more (measured: it moved prompts no harder than the rest); the
    # local model starts, and the cascade judges its first tokens.
    assert "route:   local" in result.stdout
    assert "reason:  default" in result.stdout
    assert "skip  long-prompt" in result.stdout and "skip  header-escalate" in result.stdout
    preferred = router("route", "--explain", "--header", "x-router-prefer: cloud", "Prove that sqrt(2) is irrational")
    assert "route:   cloud" in preferred.stdout and "reason:  header-escalate" in preferred.stdout


def test_route_json_with_headers_and_another_policy() -> None:
    result = router(
        "route", "--json", "--policy", "policies/cost-saver.yaml", "--header", "x-team: research", "summarise this"
    )
    decision = json.loads(result.stdout)
    assert decision["reason"] == "research-team"
    assert decision["route"] == "cloud"
    assert decision["prompt_tokens"] > 0


def test_explain_says_which_head_scores_and_a_config_can_name_a_fitted_one(tmp_path: Path) -> None:
    import shutil

    from router.classify.head import SHIPPED_HEAD
    from router.config import DEFAULT_LOCAL_MODEL

    shipped = router("route", "--explain", "What is the capital of France?")
    assert shipped.returncode == 0, shipped.stderr
    # The default local model has a head fitted to its own labels, and says so.
    assert "head:    qwen2.5-coder-1.5b-instruct.npz" in shipped.stdout
    assert "qwen2.5-coder-1.5b labels" in shipped.stdout
    # The default policy's cascade weighs the strong model's chance against the answer's first tokens.
    said = re.search(r"cascade: to the cloud if P\(strong right\) (0\.\d+) \(from strong_chance.npz\) minus the "
                     r"answer's probability above 0\.47, on its first 3 tokens", shipped.stdout)  # fmt: skip
    assert said is not None, shipped.stdout
    assert 0.5 < float(said.group(1)) < 1.0  # GPT-4 answers such questions right
    fitted = tmp_path / "fitted-to-my-model.npz"
    shutil.copy(SHIPPED_HEAD, fitted)
    config = tmp_path / "router.yaml"
    config.write_text(f"classifier:\n  head: {fitted}\n")
    named = router("route", "--config", str(config), "What is the capital of France?")
    assert named.returncode == 0, named.stderr
    assert "head:    fitted-to-my-model.npz" in named.stdout
    # A head fitted to the configured local model wins; another model's head is not used.
    per_model = tmp_path / "for-qwen.npz"
    shutil.copy(SHIPPED_HEAD, per_model)
    config.write_text(
        f"classifier:\n  head: {fitted}\n  heads:\n"
        f"    {DEFAULT_LOCAL_MODEL}: {per_model}\n    other-model: /nowhere.npz\n"
    )
    chosen = router("route", "--config", str(config), "What is the capital of France?")
    assert chosen.returncode == 0, chosen.stderr
    assert "head:    for-qwen.npz" in chosen.stdout
    # The strong model's chance can be a head of one's own too (e.g. fitted to one's cloud model's outcomes).
    from router.classify.head import STRONG_CHANCE_HEAD

    mine = tmp_path / "my-cloud-chance.npz"
    shutil.copy(STRONG_CHANCE_HEAD, mine)
    config.write_text(f"classifier:\n  strong_chance: {mine}\n")
    own = router("route", "--explain", "--config", str(config), "What is the capital of France?")
    assert own.returncode == 0, own.stderr
    assert "(from my-cloud-chance.npz)" in own.stdout
    config.write_text(f"classifier:\n  strong_chance: {tmp_path / 'missing.npz'}\n")
    missing = router("route", "--config", str(config), "What is the capital of France?")
    assert missing.returncode == 2 and "classifier.strong_chance" in missing.stderr


def test_serve_refuses_a_network_address_without_keys_and_says_how_to_go_on() -> None:
    refused = router("serve", "--host", "0.0.0.0", "--port", "1")
    assert refused.returncode == 2
    said = refused.stderr
    assert "no API keys" in said and "--allow-unauthenticated" in said and "ROUTER_API_KEYS" in said


def test_explain_says_whether_letter_gain_asks_the_question_aside_for_its_letter(tmp_path: Path) -> None:
    policy = tmp_path / "letter.yaml"
    cascade = "{metric: letter_gain, threshold: 0.47, decide_after_tokens: 3}"
    policy.write_text(f"version: 1\ndefault:\n  route: local\n  cascade: {cascade}\n")
    question = "Which planet is the largest?\nA. Mars\nB. Jupiter\nC. Venus\nD. Mercury\nAnswer:"
    asked = router("route", "--explain", "--policy", str(policy), question)
    assert asked.returncode == 0, asked.stderr
    assert 'its answer started "The correct answer is", above 0.47, before the served answer starts' in asked.stdout
    plain = router("route", "--explain", "--policy", str(policy), "Which planet is the largest?")
    assert "this is none, so:" in plain.stdout and "minus the answer's probability above 0.47" in plain.stdout
    as_json = json.loads(router("route", "--json", "--policy", str(policy), question).stdout)
    assert as_json["cascade"]["metric"] == "letter_gain" and as_json["cascade"]["asks_letter"] is True
