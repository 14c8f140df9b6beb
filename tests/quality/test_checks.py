"""Deterministic checks and the judge's reply format."""

from __future__ import annotations

import pytest

from router.quality.checks import compare, final_number
from router.quality.judge import grader_messages, parse_scores, split_grader_prompt
from router.quality.records import Judgement


@pytest.mark.parametrize(
    ("candidate", "reference", "expected"),
    [
        ("Paris.", "paris", ("identical", True)),
        ("She makes 9 * 2 = $18.\n#### 18", "So she makes $18 every day.", ("number", True)),
        ("The total is 1,250 dollars", "1250", ("number", True)),
        ("#### 26", "She makes $18 a day.", ("number", False)),
        ('{"a": 1, "b": [2]}', '```json\n{"b": [2], "a": 1}\n```', ("json", True)),
        ('{"a": 1}', '{"a": 2}', ("json", False)),
        ("The answer is (B).", "Answer: B", ("choice", True)),
        ("The answer is C", "Answer: B", ("choice", False)),
        ("Hello there", "Good morning", None),
    ],
)
def test_compare(candidate: str, reference: str, expected: tuple[str, bool] | None) -> None:
    assert compare(candidate, reference) == expected


def test_the_final_number_follows_the_hashes() -> None:
    assert final_number("3 + 4 = 7 eggs; 16 - 7 = 9\n#### 18") == 18
    assert final_number("no numbers here") is None


def test_the_judges_reply_is_parsed_or_refused() -> None:
    assert parse_scores("reference: 9\ncandidate: 6") == (0.6, 0.9)
    assert parse_scores("**Reference**: 10\n**Candidate** = 7.5") == (0.75, 1.0)
    assert parse_scores("reference: 9") is None
    assert parse_scores("reference: 11\ncandidate: 3") is None
    assert parse_scores("I think both are fine.") is None


def test_the_grader_prompt_carries_the_rubric_and_both_answers() -> None:
    messages = grader_messages("What is 2+2?", "4", "five")
    assert "reference: <score>" in messages[0]["content"]
    assert split_grader_prompt(messages[1]["content"]) == ("What is 2+2?", "4", "five")


def test_a_judgement_survives_its_json() -> None:
    j = Judgement(1.0, "r", "local", "local", "classifier", "-", "m", "c", "check", "number", 1.0, 1.0, 0.05,
                  0.3, 0.7, "default", embedding=(0.25, -0.5))  # fmt: skip
    again = Judgement.from_json(j.to_json(), j.embedding_bytes())  # the embedding travels apart
    assert again == j and again.weight == pytest.approx(20.0)
    assert Judgement.from_json(j.to_json()).embedding is None
