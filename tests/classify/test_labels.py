"""`router label`'s pieces: answers are checked as documented, a bad labels file names its line, runs resume."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from router.classify.labeller import Progress
from router.classify.labels import Task, done_ids, is_right, read_labels, read_tasks
from router.errors import ConfigError


@pytest.mark.parametrize(
    ("check", "truth", "answer", "right"),
    [
        ("number", "She makes 9 * 2 = $18 every day.\nA: 18", "So the answer is $18.", True),
        ("number", "#### 1,250", "The total is 1250.", True),
        ("number", "A: 18", "She keeps 9 eggs and makes 16 dollars.", False),
        ("letter", "C", "The answer is C. paralysis of the facial muscles", True),
        ("letter", "C", "B", False),
        ("keywords", ["mice"], "The plural is mice.", True),
        ("keywords", ["4"], "2 + 2 = 44", False),
        ("exact", "Paris", "paris.", True),
    ],
)
def test_answers_are_checked_as_documented(check: str, truth: object, answer: str, right: bool) -> None:
    assert is_right(Task("t", "g", "q", check, truth), answer) is right


def test_a_rejected_phrase_makes_an_answer_wrong() -> None:
    task = Task("t", "g", "Is the Sun a star or a planet?", "keywords", ["star"], reject=("is a planet",))
    assert is_right(task, "The Sun is a star.") and not is_right(task, "It is a planet, not a star.")


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


GOOD = json.dumps({"id": "a", "group": "g", "prompt": "p", "local_model": "m", "local_right": True})


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("{not json", "not a JSON object"),
        ("[1, 2]", "expected a JSON object, got list"),
        (json.dumps({"id": "b", "prompt": "p"}), "a label needs group, local_model, local_right"),
        (json.dumps({"id": "b", "group": "g", "prompt": "p", "local_model": "m", "local_right": "yes"}),
         "`local_right` must be true or false"),
    ],
)  # fmt: skip
def test_a_wrong_format_labels_file_names_the_file_and_line(tmp_path: Path, bad: str, message: str) -> None:
    path = _write(tmp_path / "labels.jsonl", [GOOD, "", bad])
    with pytest.raises(ConfigError, match=rf"labels.jsonl:3: {message}"):
        read_labels([path])


def test_tasks_from_json_lines_and_their_errors(tmp_path: Path) -> None:
    path = _write(tmp_path / "set.jsonl", ['{"prompt": "2+2?", "answer": 4}', '{"prompt": "x?", "expect": ["y"]}'])
    first, second = read_tasks(path)
    assert (first.check, first.truth, second.check, first.group) == ("number", 4, "keywords", "set")
    bad = _write(tmp_path / "bad.jsonl", ['{"prompt": "no way to check"}'])
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: expected `expect`"):
        read_tasks(bad)


def test_an_mmlu_csv_without_answers_cannot_be_labelled(tmp_path: Path) -> None:
    path = tmp_path / "anatomy.csv"
    path.write_text('prompt,mistralai/Mixtral-8x7B-Instruct-v0.1,gpt-4-1106-preview\n"Q?\nA. x\nB. y",True,True\n')
    with pytest.raises(ConfigError, match="need an `answer` column"):
        read_tasks(path)


def test_ids_already_labelled_are_found_and_a_torn_last_line_is_not(tmp_path: Path) -> None:
    path = tmp_path / "labels.jsonl"
    path.write_text(GOOD + "\n" + '{"id": "b", "gro')
    assert done_ids(path) == {"a"}


def test_progress_reports_rate_and_time_left() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(4, out, clock=lambda: now[0])
    now[0] = 10.0
    progress.advance(True)
    assert "1/4" in out.getvalue() and "0.10/s" in out.getvalue() and "ETA 00:00:30" in out.getvalue()


def test_progress_off_a_terminal_says_something_every_ten_minutes_and_counts_hours_past_a_day() -> None:
    now = [0.0]
    out = io.StringIO()
    progress = Progress(10_000, out, clock=lambda: now[0])
    progress.advance(True)  # the first line, at once
    now[0] = 60.0
    progress.advance(False)  # 0.02% on, a minute later: quiet
    assert len(out.getvalue().splitlines()) == 1
    now[0] = 601.0
    progress.advance(False)  # still far from 5%, but ten minutes since the last line
    lines = out.getvalue().splitlines()
    assert len(lines) == 2 and "3/10000" in lines[-1]
    assert "ETA 556:" in lines[-1]  # 9,997 left at 3 per 601 s: 556 h, not wrapped at a day


@pytest.mark.parametrize(
    ("answer", "reasoned", "letter"),
    [
        ("B", False, "B"),
        ("Answer: C.", False, "C"),
        ("To find the degree of the extension we note A is wrong... so the answer is (D).", True, "D"),
        ("Option A fails, B fails. Answer: **C**", True, "C"),
        ("We compare A and B; B holds.", True, "B"),
        ("I cannot tell.", True, None),
        # Answers the default model gave to bare MMLU prompts (served as a client would send them).
        ("Therefore, the correct answer is:\n\n**D. A strong political union**", True, "D"),
        ("which cover all three options. Therefore, the correct answer is \\boxed{D}.", True, "D"),
        ("The correct choice is \\(\\boxed{C}\\).", True, "C"),
        ("A strong union, the answer is a matter of taste.", True, None),
        ("The function that tends to decline the most with age is **Implicit memory**.", True, "B"),
        ("Explicit memory holds up; working memory and implicit memory decline, implicit memory most.", True, "B"),
        ("Not explicit memory: B. Implicit memory.", True, "B"),
    ],
)
def test_the_letter_an_answer_settles_on(answer: str, reasoned: bool, letter: str | None) -> None:
    from router.classify.labels import settled_letter

    choices = "Which declines most with age?\nA. Explicit memory\nB. Implicit memory\nC. Working memory\nD. All alike"
    assert settled_letter(answer, reasoned, choices) == letter


def test_a_choice_whose_text_is_within_another_is_not_read_from_the_text() -> None:
    """ "memory" is within "Implicit memory": naming it says nothing about which choice the answer took."""
    from router.classify.labels import settled_letter

    choices = "Q?\nA. memory\nB. Implicit memory\nC. x\nD. Culture lag"
    assert settled_letter("It is about memory.", True, choices) is None
    assert settled_letter("It is a culture lag.", True, choices) == "D"


def test_stored_answers_are_checked_again_in_place(tmp_path: Path) -> None:
    """`router label --regrade`: a better checker applies to the answers a long run already stored, without
    running the model again; labels without an answer and unknown ids are kept as they were."""
    import subprocess
    import sys

    (tmp_path / "algebra.csv").write_text(
        'prompt,answer\n"Q1\nA. Subculture\nB. Microculture\nAnswer:",A\n"Q2\nA. x\nB. y\nAnswer:",B\n'
    )
    labels = tmp_path / "labels.jsonl"
    rows = [
        {"id": "algebra:0000", "group": "algebra", "local_model": "m", "local_right": True, "protocol": "reason",
         "answer": "This is a microculture: a small group with its own customs.", "strong_right": True},
        {"id": "algebra:0001", "group": "algebra", "local_model": "m", "local_right": False, "protocol": "reason",
         "answer": "So the correct answer is:\n\n**B. y**", "strong_right": True},
        {"id": "algebra:0001b", "group": "algebra", "local_model": "m", "local_right": True, "strong_right": True},
    ]  # fmt: skip
    labels.write_text("".join(json.dumps(r) + "\n" for r in rows))
    done = subprocess.run(
        [sys.executable, "-m", "router", "label", str(tmp_path / "algebra.csv"), "--out", str(labels), "--regrade"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "2 stored answers checked again, 2 verdicts changed" in done.stdout
    assert "algebra" in done.stdout and "2/3" in done.stdout
    assert [r["local_right"] for r in read_labels([labels])] == [False, True, True]


def test_an_answer_key_beside_recorded_outcomes_is_joined_row_by_row(tmp_path: Path) -> None:
    """`mmlu-answers/<domain>.csv` holds the key; `mmlu/<domain>.csv` the strong and weak models' outcomes."""
    from router.classify.data import STRONG, WEAK

    prompts = ["Q1\nA. x\nB. y\nAnswer:", "Q2\nA. x\nB. y\nAnswer:"]
    (tmp_path / "mmlu").mkdir()
    (tmp_path / "mmlu-answers").mkdir()
    outcomes = "prompt," + WEAK + "," + STRONG + "\n" + "".join(f'"{p}",False,True\n' for p in prompts)
    (tmp_path / "mmlu" / "algebra.csv").write_text(outcomes)
    (tmp_path / "mmlu-answers" / "algebra.csv").write_text("prompt,answer\n" + "".join(f'"{p}",B\n' for p in prompts))
    letter = read_tasks(tmp_path / "mmlu-answers")
    assert [(t.strong_right, t.weak_right, t.protocol, t.max_tokens) for t in letter] == [
        (True, False, "letter", 4)
    ] * 2
    assert letter[0].system is not None and "letter" in letter[0].system
    reasoned = read_tasks(tmp_path / "mmlu-answers", "reason")
    assert (reasoned[0].check, reasoned[0].system, reasoned[0].max_tokens) == ("settled-letter", None, 512)
    (tmp_path / "mmlu" / "algebra.csv").write_text(outcomes.replace("Q2", "Q9"))
    with pytest.raises(ConfigError, match="not those of"):
        read_tasks(tmp_path / "mmlu-answers")


def test_a_stratified_sample_takes_as_many_of_every_group_and_is_stable() -> None:
    from router.classify.labels import stratified

    tasks = [Task(f"{g}:{i}", g, "p", "exact", "x") for g in ("a", "b", "c") for i in range(10)]
    sample = stratified(tasks, 3, seed=1)
    assert sorted(t.group for t in sample) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert sorted(t.group for t in sample[:3]) == ["a", "b", "c"]  # in turns: stopped early, every group is as far
    assert [t.id for t in stratified(list(reversed(tasks)), 3, seed=1)] == [t.id for t in sample]


async def test_a_busy_model_is_waited_for_and_a_failing_one_asked_again() -> None:
    """A labelling run is a batch job: 'busy' is waited out however long; a brief failure is retried."""
    from router.classify.labeller import label_one
    from router.errors import Overloaded, UpstreamTimeout
    from router.types import Completion, Usage

    class Busy:
        def __init__(self) -> None:
            self.calls = 0

        async def complete(self, ctx, max_tokens, *, confidence=False):  # type: ignore[no-untyped-def]
            self.calls += 1
            if self.calls <= 6:
                raise Overloaded("busy: no sequence was free within 30 s")
            if self.calls == 7:
                raise UpstreamTimeout("a moment's trouble")
            return Completion("B", "stop", Usage(10, 1), "m")

    pauses: list[float] = []

    async def pause(seconds: float) -> None:
        pauses.append(seconds)

    backend = Busy()
    task = Task("x:1", "x", "Q", "letter", "B", 4, system="letters only", protocol="letter")
    label = await label_one(backend, "m", task, pause)  # type: ignore[arg-type]
    assert label.local_right and label.extra == {"protocol": "letter"}
    assert backend.calls == 8 and pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]


def test_a_label_whose_prompt_holds_a_unicode_line_break_reads_as_one_line(tmp_path: Path) -> None:
    """MMLU prompts carry U+0085 (an ellipsis in the source's old encoding) inside their JSON strings: the
    file is split at newlines only, or the label reads as torn and a resumed run asks it again."""
    from router.classify.labeller import accuracy_by_group

    labels = tmp_path / "labels.jsonl"
    record = {"id": "m:1", "group": "management", "prompt": "Functional structures help to create\x85\nA. x",
              "local_model": "m", "local_right": True, "strong_right": True}  # fmt: skip
    labels.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    assert "\x85" in labels.read_text(encoding="utf-8")
    assert [r["prompt"] for r in read_labels([labels])] == [record["prompt"]]
    assert done_ids(labels) == {"m:1"}
    assert accuracy_by_group(labels, {"m:1"}) == {"management": (1, 1)}


def test_the_letter_asked_aside_is_the_letter_labels_first_token_and_a_missing_one_is_named(tmp_path: Path) -> None:
    """`letter_gain` is calibrated on the letter labels' first token: what the gateway's aside call reads."""
    import numpy as np

    from router.classify.labels import asked_letter_probabilities

    path = tmp_path / "letter.jsonl"
    rows = [
        {"id": "a:1", "confidence": {"mean_logprob": -0.2, "min_logprob": -0.2, "mean_entropy": 0.5, "tokens": 1}},
        {"id": "a:2", "confidence": {"mean_logprob": -1.0, "min_logprob": -1.5, "mean_entropy": 0.5, "tokens": 2,
                                     "first": [[-0.5, 0.9], [-1.5, 0.2]]}},  # the letter, then its end
    ]  # fmt: skip
    common = {"group": "a", "local_model": "m", "local_right": True}
    path.write_text("".join(json.dumps({**common, **r}) + "\n" for r in rows))
    assert np.allclose(asked_letter_probabilities([path], ["a:2", "a:1"]), np.exp([-0.5, -0.2]))
    with pytest.raises(ConfigError, match=r"1 prompts have no letter label .*a:3"):
        asked_letter_probabilities([path], ["a:1", "a:3"])


def test_a_cascade_that_decides_before_the_first_token_is_calibrated_on_the_first() -> None:
    from router.classify.labelled_set import early_metrics

    confidence = {"mean_logprob": -1.0, "min_logprob": -1.5, "mean_entropy": 0.5, "tokens": 2,
                  "first": [[-0.5, 0.9], [-1.5, 0.2]]}  # fmt: skip
    assert early_metrics(confidence, 0) == early_metrics(confidence, 1)
    assert early_metrics(confidence, 0)["mean_top_logprob"] == -0.5
