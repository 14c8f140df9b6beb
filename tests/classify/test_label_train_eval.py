"""label → train → eval end to end with the real default local model, and a run that resumes.

The fixture is twelve checkable prompts in three groups, easy and hard ones in each, all marked right
for the strong model: what the default model gets wrong is exactly what a fitted router should send up.
It runs the default model three times over twelve short prompts: about a minute on two cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

FIXTURE = Path(__file__).parent / "data" / "label_fixture.jsonl"


def router(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "router", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def labels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("labels") / "labels.jsonl"
    done = router("label", str(FIXTURE), "--out", str(out))
    assert done.returncode == 0, done.stderr
    return out


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_every_prompt_is_labelled_once_with_its_confidence(labels: Path) -> None:
    records = _records(labels)
    assert sorted(r["id"] for r in records) == sorted(
        json.loads(line)["id"] for line in FIXTURE.read_text().splitlines()
    )
    assert all(r["confidence"] and r["confidence"]["mean_logprob"] <= 0 for r in records)
    # The first tokens' (log-probability, entropy), what an early cascade rule is fitted on.
    for r in records:
        first = r["confidence"]["first"]
        assert 1 <= len(first) <= 64 and all(lp <= 0 <= h for lp, h in first)
        # And the last ones, where a reasoned answer names its conclusion: the first's tail in a short answer.
        last = r["confidence"]["last"]
        assert 1 <= len(last) <= 16 and all(lp <= 0 <= h for lp, h in last)
        assert r["confidence"]["tokens"] > 64 or last == first[-len(last) :]
    right = {r["id"]: r["local_right"] for r in records}
    assert right["geo-1"] and right["math-1"] and right["words-1"]  # the easy ones
    assert not all(right.values())  # seven-digit products and reversed spelling: beyond a small model


def test_a_second_run_at_temperature_zero_agrees(labels: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.jsonl"
    assert router("label", str(FIXTURE), "--out", str(again)).returncode == 0
    first = {r["id"]: r["local_right"] for r in _records(labels)}
    assert {r["id"]: r["local_right"] for r in _records(again)} == first


def test_an_interrupted_run_continues_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "labels.jsonl"
    process = subprocess.Popen(
        [sys.executable, "-m", "router", "label", str(FIXTURE), "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and (not out.exists() or len(out.read_text().splitlines()) < 2):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    before = _records(out) if out.read_text().strip() else []
    assert 2 <= len(before) < 12
    done = router("label", str(FIXTURE), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"({len(before)} already in" in done.stdout
    ids = [r["id"] for r in _records(out)]
    assert len(ids) == len(set(ids)) == 12


def test_train_then_eval_on_the_labels(labels: Path, tmp_path: Path) -> None:
    head = tmp_path / "head.npz"
    trained = router("train", "--labels", str(labels), "--out", str(head), "--repeats", "4")
    assert trained.returncode == 0, trained.stderr
    assert head.exists() and "chose " in trained.stdout
    evaluated = router("eval", "--labels", str(labels), "--head", str(head), "--out", str(tmp_path / "eval"))
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    (by_router,) = [table for name, table in report.items() if name.endswith("out of fold)")]
    assert (
        "general head as shipped (Mixtral vs GPT-4)" in by_router
        and "cascade confidence alone (mean_logprob)" in by_router
        and "cascade confidence, first 3 tokens (mean_logprob)" in by_router  # the early rule beside it
        and "that P(strong right) - the local answer's own probability" in by_router
        and GATEWAY_RULE in by_router  # the shipped cascade rule, on the tokens the default policy judges
        and "oracle (not a router, in sample): each domain's mean gain on these labels" in by_router
    )
    assert all(0 <= s["apgr"] <= 1 for s in by_router.values())
    # Each held-out fold of domains on its own too, for the routers that matter, beside random.
    folds = {name: table for name, table in report.items() if name.startswith("held-out fold")}
    for table in folds.values():
        assert "random" in table and "cascade confidence alone (mean_logprob)" in table and GATEWAY_RULE in table


GATEWAY_RULE = "that P(strong right) - its first 3 tokens' probability (the cascade's expected_gain)"


def test_calibrate_sets_the_early_cascades_threshold_on_labelled_answers(labels: Path) -> None:
    done = router("calibrate", "--labels", str(labels), "--quality-target", "0.9", "--cascade-tokens", "4",
                  "--at", "-1000", "--at", "0")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "over the first 4 tokens" in done.stdout
    assert "cascade: {metric: mean_logprob, threshold: -" in done.stdout and "decide_after_tokens: 4}" in done.stdout
    # What a given threshold does on the same labels: nothing up keeps the local model's own rate (the strong
    # model is right on every fixture prompt), everything up keeps all of the strong model's quality.
    local_rate = sum(r["local_right"] for r in _records(labels)) / len(_records(labels))
    assert f"at mean_logprob -1000: 0.0% escalated, quality retained {local_rate:.3f} [" in done.stdout
    assert "at mean_logprob 0: 100.0% escalated, quality retained 1.000 [1.000, 1.000]" in done.stdout


def test_a_threshold_to_try_without_labels_to_try_it_on_is_refused() -> None:
    done = router("calibrate", "--at", "0.4", "--quality-target", "0.8")
    assert done.returncode == 2 and "--at says what a cascade threshold does on labels" in done.stderr


def test_a_labels_file_in_the_wrong_format_is_refused_with_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "group": "g", "prompt": "p", "local_model": "m", "local_right": true}\n{"id": 3\n')
    done = router("train", "--labels", str(bad), "--out", str(tmp_path / "h.npz"))
    assert done.returncode == 2 and "bad.jsonl:2: not a JSON object" in done.stderr


def tiny_mmlu(folder: Path) -> Path:
    """Two MMLU-style outcome CSVs (Mixtral vs GPT-4): the recorded prior the labels are trained with."""
    folder.mkdir()
    for domain, topic in (("astronomy", "planet"), ("virology", "virus")):
        rows = ["prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview"]
        rows += [f'"Which {topic} fact number {i} is true? A) a B) b C) c D) d",{i % 2 == 0},True' for i in range(8)]
        (folder / f"{domain}.csv").write_text("\n".join(rows) + "\n")
    return folder


def test_labels_ship_without_prompts_and_train_with_the_recorded_prior(labels: Path, tmp_path: Path) -> None:
    mmlu = tiny_mmlu(tmp_path / "mmlu")
    shipped = tmp_path / "shipped-labels.jsonl"
    head = tmp_path / "head.npz"
    trained = router("train", "--labels", str(labels), "--mmlu", str(mmlu), "--out", str(head),
                     "--labels-out", str(shipped), "--repeats", "4")  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    records = _records(shipped)
    assert len(records) == 12 and not any("prompt" in r or "answer" in r for r in records)
    assert all("local_right" in r and "confidence" in r for r in records)

    # Without the data they were made on, prompt-free labels are refused clearly...
    refused = router("train", "--labels", str(shipped), "--out", str(tmp_path / "h2.npz"), "--repeats", "4")
    assert refused.returncode == 2 and "--tasks" in refused.stderr
    # ...and with it they train and evaluate as the full file does.
    evaluated = router("eval", "--labels", str(shipped), "--tasks", str(FIXTURE), "--mmlu", str(mmlu),
                       "--head", str(head), "--out", str(tmp_path / "eval"))  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr
    report = json.loads((tmp_path / "eval" / "eval.json").read_text())
    (by_router,) = [table for name, table in report.items() if name.endswith("out of fold)")]
    assert any("labels + Mixtral MMLU" in name for name in by_router)
    assert all(0 <= s["apgr"] <= 1 for s in by_router.values())


def test_each_held_out_fold_is_scored_on_its_own_domains() -> None:
    """`by_fold`: a router that knows where the strong model helps scores near 1 on every fold of domains,
    one that knows nothing near 0.5; row folds (fewer than three groups) are not reported."""
    import numpy as np

    from router.classify.data import Dataset
    from router.classify.label_eval import BY_FOLD, by_fold

    rng = np.random.default_rng(0)
    groups = [f"domain{i % 6}" for i in range(600)]
    weak = rng.integers(0, 2, 600).astype(float)
    strong = np.maximum(weak, rng.integers(0, 2, 600)).astype(float)
    data = Dataset("d", [f"p{i}" for i in range(600)], weak, strong, groups)
    fold = np.array([int(g[-1]) % 3 for g in groups])
    knows, guesses = BY_FOLD[0], BY_FOLD[1]
    tables = by_fold({knows: strong - weak, guesses: rng.random(600)}, data, fold, reps=50)
    assert len(tables) == 3 and all("(200 labels)" in name for name in tables)
    for table in tables.values():
        assert table[knows]["apgr"] > 0.7 and abs(table[guesses]["apgr"] - 0.5) < 0.15
        assert "apgr_ci" in table[knows] and table["random"]["apgr"] == 0.5
    assert by_fold({knows: strong - weak}, Dataset("d", data.prompts, weak, strong, ["a"] * 600), fold, 50) == {}


def test_states_read_as_served_as_the_letter_protocol_asks_or_as_the_aside_asks(labels: Path, tmp_path: Path) -> None:
    """`router states --reading letter` reads each prompt behind the letter protocol's system prompt, `aside`
    as served with the aside's answer start: the same prompts, the same width, three readings; each folder
    says which, keeps the next token's and the option letters' probabilities beside each state, and takes
    no other reading."""
    from router.backends.prompt_states import read_next_token_logprobs, read_option_logprobs, read_reading, read_states

    readings = {"served": (), "letter": ("--reading", "letter"), "aside": ("--reading", "aside")}
    common = ("states", "--labels", str(labels), "--tasks", str(FIXTURE), "--out")
    for name, extra in readings.items():
        done = router(*common, str(tmp_path / name), *extra)
        assert done.returncode == 0, done.stderr
        assert read_reading(tmp_path / name)["reading"] == name
    read = {name: read_states(tmp_path / name) for name in readings}
    ids = sorted(r["id"] for r in _records(labels))
    assert sorted(read["served"]) == sorted(read["letter"]) == sorted(read["aside"]) == ids
    for pid, state in read["served"].items():
        for other in ("letter", "aside"):
            assert state.shape == read[other][pid].shape and not np.allclose(state, read[other][pid])
    aside = read_next_token_logprobs(tmp_path / "aside")
    assert sorted(aside) == sorted(read["aside"]) and all(-30 < value <= 0 for value in aside.values())
    options = read_option_logprobs(tmp_path / "aside")
    assert sorted(options) == sorted(aside)
    for pid, letters in options.items():  # the letters' log-probabilities: none above the likeliest token's
        assert letters.shape == (4,) and np.all(letters <= aside[pid] + 1e-4) and len(set(letters.tolist())) > 1
    mixed = router(*common, str(tmp_path / "served"), "--reading", "aside")
    assert mixed.returncode != 0 and "read as" in mixed.stderr and "use another folder" in mixed.stderr
