"""Find the `route: auto` threshold that sends a target share of a prompt sample to the cloud."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from router.classify.data import json_lines


def read_prompts(path: Path) -> list[str]:
    """One prompt per line, or JSON lines with a `prompt` (or `text`) field."""
    prompts = []
    for line in json_lines(path):
        if not line.strip():
            continue
        if line.lstrip().startswith("{"):
            item = json.loads(line)
            prompts.append(str(item.get("prompt", item.get("text", ""))))
        else:
            prompts.append(line)
    return prompts


def threshold_for_share(scores: np.ndarray, cloud_share: float) -> float:
    """The smallest threshold with at most `cloud_share` of the scores at or above it."""
    if not 0 <= cloud_share <= 1:
        raise ValueError("the cloud share must be between 0 and 1")
    if cloud_share == 0:
        return float(np.nextafter(scores.max(), np.inf))
    ordered = np.sort(scores)[::-1]
    k = max(1, round(cloud_share * len(ordered)))
    return float(ordered[k - 1])


def share_at(scores: np.ndarray, threshold: float) -> float:
    return float(np.mean(scores >= threshold))
