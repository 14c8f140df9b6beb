"""Read the labelled routing data (weak vs strong model outcomes per prompt) for training and evaluation.

Formats, as in the project's shared routing data: MMLU `<domain>.csv` and GSM8K `gsm8k_responses.csv`
with columns `prompt`, `<weak model>`, `<strong model>` (True/False: answered correctly); MT-Bench
`question.jsonl` + `judgements.jsonl` (GPT-4-as-judge scores 1-10, turned into 0..1 quality). Only
training and evaluation read these files; the gateway never does.
"""

from __future__ import annotations

import csv
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"


@dataclass(frozen=True)
class Dataset:
    name: str
    prompts: list[str]
    weak: np.ndarray
    """Quality of the weak model's answer per prompt, 0..1."""
    strong: np.ndarray
    groups: list[str]
    """Domain of each prompt (MMLU) or the dataset's name: the unit of a train/test split."""

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, keep: np.ndarray, name: str | None = None) -> Dataset:
        idx = np.flatnonzero(keep)
        return Dataset(
            name or self.name,
            [self.prompts[i] for i in idx],
            self.weak[idx],
            self.strong[idx],
            [self.groups[i] for i in idx],
        )

    @staticmethod
    def concat(name: str, *parts: Dataset) -> Dataset:
        """Rows of several data sets in one (their groups stay apart, so splits still hold whole groups out)."""
        return Dataset(
            name,
            [p for d in parts for p in d.prompts],
            np.concatenate([d.weak for d in parts]),
            np.concatenate([d.strong for d in parts]),
            [g for d in parts for g in d.groups],
        )

    @property
    def needs_strong(self) -> np.ndarray:
        """The training target: the weak model failed where the strong one succeeded."""
        return ((self.weak < 0.5) & (self.strong >= 0.5)).astype(np.int64)


def json_lines(path: Path) -> list[str]:
    """A JSON-lines file's lines, split at "\\n" only: `str.splitlines` also splits at U+0085 and U+2028,
    which MMLU prompts carry inside their JSON strings (a labels file with prompts would read as torn)."""
    return [line.rstrip("\r") for line in path.read_text(encoding="utf-8").split("\n")]


def _truthy(value: str) -> float:
    return 1.0 if value.strip().lower() in ("true", "1", "1.0") else 0.0


def read_outcome_csv(path: Path, weak: str = WEAK, strong: str = STRONG, group: str | None = None) -> Dataset:
    prompts, w, s = [], [], []
    with path.open(newline="", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            prompts.append(row["prompt"])
            w.append(_truthy(row[weak]))
            s.append(_truthy(row[strong]))
    name = group or path.stem
    return Dataset(name, prompts, np.array(w), np.array(s), [name] * len(prompts))


def _contaminated(folder: Path) -> set[str]:
    path = folder / "contaminated_prompts.jsonl"
    if not path.exists():
        return set()
    out = set()
    for line in json_lines(path):
        if line.strip():
            item = json.loads(line)
            out.add(item if isinstance(item, str) else item.get("eval_prompt", item.get("prompt", "")))
    return out


def read_mmlu(folder: Path) -> Dataset:
    """Every MMLU domain CSV in `folder`, without RouteLLM's contaminated prompts."""
    merged = Dataset.concat("mmlu", *(read_outcome_csv(p) for p in sorted(folder.glob("*.csv"))))
    dirty = _contaminated(folder)
    return merged.subset(np.array([p not in dirty for p in merged.prompts]), "mmlu")


def read_gsm8k(folder: Path) -> Dataset:
    data = read_outcome_csv(folder / "gsm8k_responses.csv", group="gsm8k")
    dirty = _contaminated(folder)
    return data.subset(np.array([p not in dirty for p in data.prompts]), "gsm8k")


def read_mt_bench(folder: Path, weak: str = WEAK, strong: str = "gpt-4-1106-preview") -> Dataset:
    """First-turn questions; quality = the judge's mean score over both turns / 10."""
    questions = {}
    for line in json_lines(folder / "question.jsonl"):
        if line.strip():
            q = json.loads(line)
            questions[q["question_id"]] = q["turns"][0]
    scores: dict[tuple[int, str], list[float]] = defaultdict(list)
    for line in json_lines(folder / "judgements.jsonl"):
        if line.strip():
            j = json.loads(line)
            if j.get("score", -1) >= 0:
                scores[(j["question_id"], j["model"])].append(j["score"] / 10)
    ids = [qid for qid in questions if (qid, weak) in scores and (qid, strong) in scores]
    return Dataset(
        "mt_bench",
        [questions[q] for q in ids],
        np.array([np.mean(scores[(q, weak)]) for q in ids]),
        np.array([np.mean(scores[(q, strong)]) for q in ids]),
        ["mt_bench"] * len(ids),
    )


def read_any(path: Path) -> Dataset:
    """A folder of MMLU-style CSVs, a GSM8K folder, an MT-Bench folder, or one outcome CSV."""
    if path.is_file():
        return read_outcome_csv(path)
    if (path / "gsm8k_responses.csv").exists():
        return read_gsm8k(path)
    if (path / "judgements.jsonl").exists():
        return read_mt_bench(path)
    return read_mmlu(path)


def held_out_domains(domains: list[str], every: int = 4) -> set[str]:
    """A fixed, spread-out quarter of the MMLU domains, never used in training."""
    ordered = sorted(set(domains))
    return {d for i, d in enumerate(ordered) if i % every == every - 1}
