"""Deterministic grading: when two answers can be compared without a judge.

An answer is checkable when it ends in a number (a worked maths answer), names a choice letter (a
multiple-choice answer), or is JSON. Two checkable answers of the same kind that agree are as good as
each other; when they disagree, only a judge (or the ground truth) can say which is right.
"""

from __future__ import annotations

import json
import re

_NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
# "#### 18", "The answer is 18", "= 18." near the end: the last number of the answer is its result.
_CHOICE = re.compile(
    r"(?:answer(?: is)?|choice|option)\s*[:\-]?\s*\(?([A-J])\)?(?![A-Za-z])|^\s*\(?([A-J])[).:]?\s*$",
    re.IGNORECASE | re.MULTILINE,
)


def _normalised(text: str) -> str:
    return " ".join(text.lower().split()).rstrip(".")


def final_number(text: str) -> float | None:
    """The answer's result: the number after `####` if present, else its last number."""
    tail = text.rsplit("####", 1)[1] if "####" in text else text
    found = _NUMBER.findall(tail)
    if not found:
        return None
    try:
        return float(found[-1].replace("$", "").replace(",", ""))
    except ValueError:
        return None


def choice_letter(text: str) -> str | None:
    matches = [next(g for g in m.groups() if g) for m in _CHOICE.finditer(text)]
    return matches[-1].upper() if matches else None


def as_json(text: str) -> object | None:
    stripped = text.strip()
    if stripped.startswith("```"):
        stripped = stripped.strip("`").removeprefix("json").strip()
    if not stripped.startswith(("{", "[")):
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def compare(candidate: str, reference: str) -> tuple[str, bool] | None:
    """(method, agree) when a deterministic check applies to both answers; None when it does not."""
    if _normalised(candidate) == _normalised(reference):
        return "identical", True
    left, right = as_json(candidate), as_json(reference)
    if left is not None and right is not None:
        return "json", left == right
    a, b = choice_letter(candidate), choice_letter(reference)
    if a is not None and b is not None:
        return "choice", a == b
    x, y = final_number(candidate), final_number(reference)
    if x is not None and y is not None:
        return "number", abs(x - y) <= 1e-6 * max(1.0, abs(y))
    return None
