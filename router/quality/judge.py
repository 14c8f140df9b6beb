"""The judge: a grader prompt with a fixed rubric, sent to a configured model, and its parsed scores.

The judge sees the question, the reference answer and the candidate answer, and scores each from 0 to
10 on the same rubric; both scores are kept (0..1), so a candidate that beats the reference counts as
well as one that falls short. A reply that does not follow the format is not a judgement.
"""

from __future__ import annotations

import re

RUBRIC = (
    "You grade answers to a user's request. Score each answer from 0 to 10 for how well it does what the user "
    "asked: correctness first (a wrong final result scores at most 2), then completeness and following the "
    "instructions; length and style do not earn points. Grade each answer on its own merits; the reference "
    "may be wrong. Reply with exactly two lines and nothing else:\n"
    "reference: <score>\n"
    "candidate: <score>"
)
QUESTION_MARK = "### Question"
REFERENCE_MARK = "### Reference answer"
CANDIDATE_MARK = "### Candidate answer"
_SCORE = re.compile(r"^\s*\**\s*(reference|candidate)\s*\**\s*[:=]\s*\**\s*(\d+(?:\.\d+)?)", re.I | re.M)
MAX_CHARS = 6000
"""Each part of the grader prompt is cut to this many characters (a judge call has a bounded cost)."""


def grader_messages(question: str, reference: str, candidate: str) -> list[dict[str, str]]:
    body = (
        f"{QUESTION_MARK}\n{question[:MAX_CHARS]}\n\n{REFERENCE_MARK}\n{reference[:MAX_CHARS]}\n\n"
        f"{CANDIDATE_MARK}\n{candidate[:MAX_CHARS]}"
    )
    return [{"role": "system", "content": RUBRIC}, {"role": "user", "content": body}]


def parse_scores(reply: str) -> tuple[float, float] | None:
    """(candidate, reference) scores in 0..1 from the judge's reply, or None if it did not follow the format."""
    found: dict[str, float] = {}
    for name, value in _SCORE.findall(reply or ""):
        found.setdefault(name.lower(), float(value))
    if set(found) != {"reference", "candidate"} or any(not 0 <= v <= 10 for v in found.values()):
        return None
    return found["candidate"] / 10.0, found["reference"] / 10.0


def split_grader_prompt(text: str) -> tuple[str, str, str] | None:
    """(question, reference, candidate) out of a grader prompt: what a stand-in judge reads."""
    try:
        _, rest = text.split(f"{QUESTION_MARK}\n", 1)
        question, rest = rest.split(f"\n\n{REFERENCE_MARK}\n", 1)
        reference, candidate = rest.split(f"\n\n{CANDIDATE_MARK}\n", 1)
    except ValueError:
        return None
    return question, reference, candidate
