"""Cheap text features that help the head beyond the embedding: size, code, maths, reasoning cues, script."""

from __future__ import annotations

import math
import re

import numpy as np

_CODE = re.compile(r"```|\bdef |\bclass |\breturn\b|[{};]\s*$|\bfunction\b|#include|=>|\bSELECT\b", re.MULTILINE)
_MATH = re.compile(
    r"[=+\-*/^]\s*\d|\d\s*[=+\-*/^]|\\frac|\\sqrt|\bsolve\b|\bequation\b|\bintegral\b|\bderivative\b", re.I
)
_STEPS = re.compile(r"\b(step by step|explain why|prove|derive|justify|compare|analy[sz]e|how many|calculate)\b", re.I)
_CHOICES = re.compile(r"^\s*[A-D][.)]\s", re.MULTILINE)

FEATURE_NAMES = (
    "log_chars",
    "log_words",
    "digit_share",
    "non_ascii_share",
    "code",
    "math",
    "multi_step",
    "choices",
    "questions",
    "lines",
)


def text_features(text: str) -> np.ndarray:
    chars = max(1, len(text))
    words = text.split()
    return np.array(
        [
            math.log1p(len(text)),
            math.log1p(len(words)),
            sum(c.isdigit() for c in text) / chars,
            sum(ord(c) > 127 for c in text) / chars,
            float(bool(_CODE.search(text))),
            min(1.0, len(_MATH.findall(text)) / 3),
            float(bool(_STEPS.search(text))),
            min(1.0, len(_CHOICES.findall(text)) / 4),
            min(1.0, text.count("?") / 3),
            math.log1p(text.count("\n")),
        ],
        dtype=np.float32,
    )


def feature_matrix(texts: list[str]) -> np.ndarray:
    return np.stack([text_features(t) for t in texts]) if texts else np.zeros((0, len(FEATURE_NAMES)), np.float32)
