"""`router label`: what the local model that actually answers gets right, prompt by prompt.

Every router people use learns when a *fixed* weak model fails (RouteLLM's from Mixtral-8x7B against
GPT-4). Ours can learn from the model it serves: a labeller sends checkable prompts through the same
`Backend` the gateway uses (the same chat template, system prompt and confidence meter), checks each
answer, and writes one JSON line per prompt. `router train --labels` and `router eval --labels` read them.

Tasks (a prompt whose answer can be checked):
- a GSM8K folder (`gsm8k_responses.csv` for the recorded weak and strong outcomes, the ground truth from
  `gpt3_6b_175b_solutions.jsonl`): the last number of the answer against the ground truth's;
- MMLU-style CSVs with an `answer` column (A-D), asked by one of two protocols (recorded in each label as
  `protocol`): `letter` (the default, the usual zero-shot protocol: a system prompt asks for the letter
  only, and the first letter of the reply is read) or `reason` (the model answers in full, up to 512
  tokens, as a client asking in plain chat would get it, and the choice it settles on is read: "the
  answer is B", "Answer: **B**", `\\boxed{B}`, else whichever comes last of a lone letter and a choice's
  own text). `router label --regrade` checks the answers a file stores again when the checker improves.
  A folder of such CSVs beside a `mmlu/` folder of RouteLLM's outcomes (as in
  `../shared/data/routing`) takes each prompt's recorded strong and weak outcomes from there, row by row;
- JSON lines with `prompt` and `expect` (keywords, any one as a whole word) or `answer` (exact number
  or text), optional `reject`, `id`, `group`, `strong_right`.

The labels file (JSON lines, one object per prompt; documented in the README):
`{"id", "group", "prompt", "local_model", "local_right", "answer", "confidence": {"mean_logprob",
"min_logprob", "mean_entropy", "tokens"}, "strong_right", "weak_right"}` — `strong_right` and
`weak_right` are the recorded outcomes of the data's strong and weak models (null where the data has
none). `prompt` and `answer` may be left out (a file that ships beside a head carries none of the
data's text): `train` and `eval` then read the prompts back by id from `--tasks`. A run appends to the
file and skips the ids already in it, so an interrupted run continues.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router.classify.data import STRONG, WEAK, json_lines
from router.errors import ConfigError

NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
LETTER = re.compile(r"\b([A-D])\b")
REQUIRED = ("id", "group", "local_model", "local_right")
# What a labels file may ship without: the prompts (and answers) are the data's, read back by id.
PROMPT_FIELDS = ("prompt", "answer")


PROTOCOLS = ("letter", "reason")
LETTER_SYSTEM = (
    "You answer multiple-choice questions. Reply with the letter of the correct choice (A, B, C or D) only, "
    "with no explanation."
)
"""The `letter` protocol's system prompt: without it an instruction-tuned model reasons first."""
SETTLED = re.compile(r"(?:(?i:answer|option|choice)\s*(?i:is)?\s*:?[\s(*]*([A-D])\b)|\\boxed\{\s*([A-D])\s*\}")
"""Where a reasoned answer settles: "the answer is B", "Answer: **C**", "the correct answer is:\\n\\nD. ..." or
LaTeX's `\\boxed{B}`."""
LONE_LETTER = re.compile(r"\b([A-D])\b(?!\s+[a-z])")
"""A letter standing alone, not the article "A" starting a phrase ("A strong political union")."""
OPTION = re.compile(r"^([A-D])\.\s*(.+?)\s*$", re.MULTILINE)
"""An MMLU prompt's choices: `A. text` lines."""


@dataclass(frozen=True, slots=True)
class Task:
    id: str
    group: str
    """The unit of a train/test split: a domain, or the data set's name."""
    prompt: str
    check: str
    """number | letter | settled-letter | keywords | exact"""
    truth: Any
    max_tokens: int = 320
    reject: tuple[str, ...] = ()
    strong_right: bool | None = None
    weak_right: bool | None = None
    system: str | None = None
    """A system prompt the protocol puts first (None: the model's own default)."""
    protocol: str | None = None
    """How a multiple-choice prompt was asked (`letter` or `reason`), recorded in its label."""


@dataclass(frozen=True, slots=True)
class Label:
    id: str
    group: str
    prompt: str
    local_model: str
    local_right: bool
    answer: str = ""
    confidence: dict[str, float] | None = None
    strong_right: bool | None = None
    weak_right: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self, with_prompt: bool = True) -> str:
        """One line of the labels file; without the prompt and answer (the data's text) when it is to ship."""
        record = asdict(self)
        record.update(record.pop("extra"))
        if not with_prompt:
            record = {k: v for k, v in record.items() if k not in PROMPT_FIELDS}
        return json.dumps(record, ensure_ascii=False)


# -- checking answers ---------------------------------------------------------------------------------


def last_number(text: str) -> float | None:
    found = NUMBER.findall(text.replace("$", ""))
    for candidate in reversed(found):
        try:
            return float(candidate.replace(",", "").rstrip("."))
        except ValueError:
            continue
    return None


def settled_letter(text: str, reasoned: bool, prompt: str = "") -> str | None:
    """The choice an answer names: its first lone letter A-D; after reasoning, the one it settles on (the
    last "answer is X" or `\\boxed{X}`; else whichever comes last of a lone letter and a choice's own text,
    as `prompt` gives the choices: "…declines most with age is **Implicit memory**.")."""
    if not reasoned:
        found = LETTER.search(text.upper().replace("ANSWER:", " "))
        return found.group(1) if found else None
    settled = SETTLED.findall(text)
    if settled:
        return next(letter for letter in settled[-1] if letter).upper()
    named = [(m.end(), m.group(1)) for m in LONE_LETTER.finditer(text)] + _named_choices(text, prompt)
    return max(named)[1] if named else None


def _named_choices(text: str, prompt: str) -> list[tuple[int, str]]:
    """(where its last mention ends, letter) of every choice whose text the answer repeats, whole words,
    any case; choices of a single character or that are another choice's text within are too ambiguous."""
    choices = {letter: body.rstrip(".").strip() for letter, body in OPTION.findall(prompt)}
    lowered = " ".join(text.lower().split())
    found = []
    for letter, body in choices.items():
        wanted = " ".join(body.lower().split())
        if len(wanted) < 2 or any(wanted in other.lower() for key, other in choices.items() if key != letter):
            continue
        ends = [m.end() for m in re.finditer(rf"(?<!\w){re.escape(wanted)}(?!\w)", lowered)]
        if ends:
            found.append((ends[-1], letter))
    return found


def is_right(task: Task, answer: str) -> bool:
    text = answer.strip()
    if task.check == "number":
        expected, got = last_number(str(task.truth)), last_number(text)
        return expected is not None and got is not None and abs(expected - got) < 1e-6
    if task.check in ("letter", "settled-letter"):
        named = settled_letter(text, task.check == "settled-letter", task.prompt)
        return named == str(task.truth).strip().upper()
    lowered = text.lower()
    if any(re.search(phrase, lowered) for phrase in task.reject):
        return False
    if task.check == "keywords":
        return any(re.search(rf"(?<![\w.]){re.escape(str(w).lower())}(?!\w)", lowered) for w in task.truth)
    return lowered.rstrip(".") == str(task.truth).strip().lower()


# -- reading tasks ----------------------------------------------------------------------------------------


def _truthy(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.strip().lower() in ("true", "1", "1.0")


def _gsm8k(folder: Path) -> list[Task]:
    truths: dict[str, str] = {}
    solutions = folder / "gpt3_6b_175b_solutions.jsonl"
    if not solutions.exists():
        raise ConfigError(f"{folder}: a GSM8K folder needs gpt3_6b_175b_solutions.jsonl (the ground truth)")
    for line in json_lines(solutions):
        if line.strip():
            row = json.loads(line)
            truths[row["question"].strip()] = row["ground_truth"]
    tasks = []
    responses = folder / "gsm8k_responses.csv"
    with responses.open(newline="", encoding="utf-8") as f:
        for i, row in enumerate(csv.DictReader(f)):
            truth = truths.get(row["prompt"].strip())
            if truth is None:
                continue
            tasks.append(
                Task(f"gsm8k:{i:04d}", "gsm8k", row["prompt"], "number", truth, 320,
                     strong_right=_truthy(row.get(STRONG)), weak_right=_truthy(row.get(WEAK)))
            )  # fmt: skip
    return tasks


def _outcomes(path: Path, prompts: list[str]) -> list[dict[str, str]] | None:
    """The recorded strong and weak outcomes for an answer key's rows, from a sibling `mmlu/` folder of
    RouteLLM's files (the same prompts, row for row), or None when there is none."""
    recorded = path.parent.parent / "mmlu" / path.name
    if not recorded.exists() or recorded.resolve() == path.resolve():
        return None
    with recorded.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if [r["prompt"] for r in rows] != prompts:
        raise ConfigError(f"{path}: its prompts are not those of {recorded}, row for row: cannot join outcomes")
    return rows


def _mmlu_csv(path: Path, protocol: str = "letter") -> list[Task]:
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if "answer" not in (reader.fieldnames or []):
            raise ConfigError(
                f"{path}: MMLU-style CSVs need an `answer` column (the correct letter) to check the local model; "
                f"this one has {reader.fieldnames}"
            )
        rows = list(reader)
    if rows and STRONG not in rows[0]:
        outcomes = _outcomes(path, [r["prompt"] for r in rows])
        if outcomes is not None:
            rows = [{**outcome, **row} for row, outcome in zip(rows, outcomes, strict=True)]
    letter = protocol == "letter"
    return [
        Task(f"{path.stem}:{i:04d}", path.stem, row["prompt"], "letter" if letter else "settled-letter",
             row["answer"], 4 if letter else 512, strong_right=_truthy(row.get(STRONG)),
             weak_right=_truthy(row.get(WEAK)), system=LETTER_SYSTEM if letter else None, protocol=protocol)
        for i, row in enumerate(rows)
    ]  # fmt: skip


def _jsonl(path: Path) -> list[Task]:
    tasks = []
    for number, line in enumerate(json_lines(path), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            prompt = row["prompt"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path}:{number}: expected a JSON object with `prompt`: {exc}") from None
        if "expect" in row:
            check, truth = "keywords", list(row["expect"])
        elif "answer" in row:
            check, truth = ("number" if isinstance(row["answer"], int | float) else "exact"), row["answer"]
        else:
            raise ConfigError(f"{path}:{number}: expected `expect` (keywords) or `answer` to check the reply")
        tasks.append(
            Task(str(row.get("id", f"{path.stem}:{number:04d}")), str(row.get("group", path.stem)), prompt, check,
                 truth, int(row.get("max_tokens", 64)), tuple(row.get("reject", ())),
                 strong_right=row.get("strong_right"), weak_right=row.get("weak_right"))
        )  # fmt: skip
    return tasks


def read_tasks(path: Path, protocol: str = "letter") -> list[Task]:
    """The checkable prompts in a GSM8K folder, a folder of MMLU-style CSVs, a CSV or a JSON-lines file;
    multiple-choice prompts asked by `protocol` (`letter` or `reason`)."""
    if protocol not in PROTOCOLS:
        raise ConfigError(f"unknown protocol `{protocol}`: use one of {', '.join(PROTOCOLS)}")
    if path.is_dir():
        if (path / "gsm8k_responses.csv").exists():
            return _gsm8k(path)
        return [task for csv_path in sorted(path.glob("*.csv")) for task in _mmlu_csv(csv_path, protocol)]
    if path.suffix == ".csv":
        return _mmlu_csv(path, protocol)
    return _jsonl(path)


def stratified(tasks: list[Task], per_group: int, seed: int) -> list[Task]:
    """A seeded sample of `per_group` prompts from every group (domain), the same when a run resumes, in
    turns (one of each group, then the next of each): a run stopped early has every group about as far."""
    import hashlib

    chosen: dict[str, list[Task]] = {}
    for task in sorted(tasks, key=lambda t: hashlib.sha256(f"{seed}:{t.id}".encode()).hexdigest()):
        group = chosen.setdefault(task.group, [])
        if len(group) < per_group:
            group.append(task)
    rounds = max((len(group) for group in chosen.values()), default=0)
    return [group[i] for i in range(rounds) for group in chosen.values() if i < len(group)]


# -- the labels file ------------------------------------------------------------------------------------


def read_labels(paths: Iterable[Path]) -> list[dict[str, Any]]:
    """Every record of the labels files, checked: a bad line is an error naming the file and the line."""
    records: list[dict[str, Any]] = []
    for path in paths:
        for number, line in enumerate(json_lines(path), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                raise ConfigError(f"{path}:{number}: not a JSON object: {exc}") from None
            if not isinstance(record, dict):
                raise ConfigError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
            missing = [key for key in REQUIRED if key not in record]
            if missing:
                raise ConfigError(f"{path}:{number}: a label needs {', '.join(missing)} (see `router label --help`)")
            if not isinstance(record["local_right"], bool):
                wrong = record["local_right"]
                raise ConfigError(f"{path}:{number}: `local_right` must be true or false, not {wrong!r}")
            if record.get("strong_right") is not None and not isinstance(record["strong_right"], bool):
                raise ConfigError(f"{path}:{number}: `strong_right` must be true, false or null")
            records.append(record)
    return records


def attach_prompts(records: list[dict[str, Any]], tasks: Iterable[Path]) -> list[dict[str, Any]]:
    """Fill in the prompt of every record that carries none, from the data it was labelled on (by id)."""
    missing = [r for r in records if not r.get("prompt")]
    if not missing:
        return records
    prompts = {task.id: task.prompt for path in tasks for task in read_tasks(path)}
    unknown = [r["id"] for r in missing if r["id"] not in prompts]
    if unknown:
        where = "the data given with --tasks" if prompts else "the labels file (and no --tasks was given)"
        raise ConfigError(
            f"{len(unknown)} label(s) have no prompt and are not in {where}, e.g. {unknown[0]!r}: pass --tasks "
            "with the data they were labelled on"
        )
    return [r if r.get("prompt") else {**r, "prompt": prompts[r["id"]]} for r in records]


def as_json_lines(records: Iterable[dict[str, Any]]) -> str:
    """Label records as the text of a labels file, one JSON object a line."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def without_prompts(records: Iterable[dict[str, Any]]) -> str:
    """The labels as JSON lines without prompts and answers: what may ship beside a head."""
    return as_json_lines({k: v for k, v in r.items() if k not in PROMPT_FIELDS} for r in records)


def done_ids(path: Path) -> set[str]:
    """Ids already labelled in `path` (a run that was interrupted continues after them)."""
    if not path.exists():
        return set()
    ids = set()
    for line in json_lines(path):
        try:
            ids.add(json.loads(line)["id"])
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by the interruption: labelled again
    return ids


def regrade(path: Path, data: Iterable[Path]) -> tuple[int, int]:
    """Check every stored answer in the labels file `path` again, with the checker as it is now, against the
    data it was labelled on (each label asked by its recorded protocol); the file is rewritten whole, in
    place. Returns (answers checked, verdicts changed). Labels without an answer (a file made to ship) and
    labels whose id the data lacks are kept as they are."""
    import os

    records = read_labels([path])
    protocols = {str(r.get("protocol") or "letter") for r in records}
    sources = list(data)
    tasks = {(p, t.id): t for p in protocols for source in sources for t in read_tasks(source, p)}
    checked = changed = 0
    for record in records:
        task = tasks.get((str(record.get("protocol") or "letter"), record["id"]))
        if task is None or record.get("answer") is None:
            continue
        checked += 1
        right = is_right(task, str(record["answer"]))
        changed += right != record["local_right"]
        record["local_right"] = right
    partial = path.with_name(path.name + ".regrading")
    partial.write_text(as_json_lines(records), encoding="utf-8")
    os.replace(partial, path)  # whole or not at all: an interrupted regrade leaves the file as it was
    return checked, changed


def asked_letter_probabilities(paths: list[Path], ids: list[str]) -> np.ndarray:
    """For each id, the probability of the letter its `letter`-protocol label answered with: the first
    token's, what the cascade's `letter_gain` asks aside for (its one token at temperature 0)."""
    by_id = {r["id"]: r.get("confidence") for r in read_labels(paths)}
    missing = [i for i in ids if not by_id.get(i)]
    if missing:
        raise ConfigError(f"{len(missing)} prompts have no letter label with its confidence (e.g. {missing[0]})")
    return np.exp([by_id[i]["first"][0][0] if by_id[i].get("first") else by_id[i]["min_logprob"] for i in ids])


def letter_probabilities(states: Path, letter_labels: list[Path] | None, ids: list[str]) -> np.ndarray:
    """Each id's letter probability for `letter_gain`: the letter labels', else what `router states` kept."""
    from router.backends.prompt_states import read_next_token_logprobs

    if letter_labels:
        return asked_letter_probabilities(letter_labels, ids)
    read = read_next_token_logprobs(states)
    if not all(i in read for i in ids):
        raise ConfigError(f"{states}: these states carry no letter's probability (collected before `router "
                          "states` kept the next token's): give --letter-labels")  # fmt: skip
    return np.exp([read[i] for i in ids])
