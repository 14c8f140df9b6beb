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
