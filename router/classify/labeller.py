"""Drive a configured model over checkable tasks and write what it got right (see `labels.py`).

The model is called through the gateway's own `Backend` (so what is labelled is what is served), with
the confidence meter on, at temperature 0. `concurrency` requests are in flight at once: one per
llama.cpp sequence, or one per server of an OpenAI-compatible pool. Every finished label is appended and
flushed at once, so an interrupted run loses at most the prompts in flight. A labelling run is a batch
job that takes whatever capacity there is: a model that says it is busy (503, a full queue) or fails
for a moment is asked again after a pause, never given up on; only a failure that repeats
`MAX_FAILURES` times in a row for one prompt stops the run, with the progress kept.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from router.backends.base import Backend
from router.classify.data import json_lines
from router.classify.labels import Label, Task, done_ids, is_right
from router.errors import Overloaded, RouterError
from router.types import RequestContext

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSummary:
    labelled: int
    skipped: int
    right: int
    seconds: float
    by_group: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Per group (domain): (right, labelled) over the whole labels file, this run's and earlier ones'."""

    def accuracy_lines(self) -> list[str]:
        """The local model's accuracy per group, the way a run reports it at its end."""
        lines = []
        for group, (right, total) in sorted(self.by_group.items()):
            lines.append(f"  {group:<40} {right:>5}/{total:<5} {100 * right / max(1, total):5.1f}%")
        right = sum(r for r, _ in self.by_group.values())
        total = sum(t for _, t in self.by_group.values())
        lines.append(f"  {'all':<40} {right:>5}/{total:<5} {100 * right / max(1, total):5.1f}%")
        return lines


class Progress:
    """A one-line progress bar with the rate and the time left, redrawn on a terminal, else a line every 5%
    or every `QUIET_AT_MOST_S`, whichever comes first (5% of a long run at 0.1 labels/s is half an hour)."""

    def __init__(self, total: int, out: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.done, self.right = total, 0, 0
        self._out, self._clock = out, clock
        self._started = self._last_line = clock()
        self._last_percent = -5

    def line(self) -> str:
        elapsed = self._clock() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        filled = int(30 * self.done / self.total) if self.total else 30
        eta = "--" if left != left else f"{int(left // 3600):02d}:{int(left % 3600 // 60):02d}:{int(left % 60):02d}"
        return (
            f"[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} "
            f"{100 * self.right / max(1, self.done):.0f}% right, {rate:.2f}/s, ETA {eta}"
        )

    def advance(self, right: bool) -> None:
        self.done += 1
        self.right += int(right)
        percent = int(100 * self.done / max(1, self.total))
        if self._out.isatty():
            self._out.write("\r" + self.line())
        elif (
            percent >= self._last_percent + 5
            or self.done == self.total
            or self._clock() - self._last_line >= QUIET_AT_MOST_S
        ):
            self._last_percent, self._last_line = percent, self._clock()
            self._out.write(self.line() + "\n")
        self._out.flush()


QUIET_AT_MOST_S = 600.0
"""Off a terminal, the longest the progress goes without a line."""
MAX_FAILURES = 5
"""Failures in a row (not counting 'busy') after which a prompt stops the run."""
BUSY_PAUSE_S = (0.5, 10.0)
"""The pause before asking a busy model again: doubling from the first to the second."""


async def _answer(backend: Backend, ctx: RequestContext, max_tokens: int, pause: Callable[[float], Any]) -> Any:
    """The model's answer; a busy or briefly failing model is asked again after a pause (doubling)."""
    wait, failures = BUSY_PAUSE_S[0], 0
    while True:
        try:
            return await backend.complete(ctx, max_tokens, confidence=True)
        except Overloaded:
            pass  # busy: the run waits for capacity as long as it takes
        except RouterError as exc:
            failures += 1
            if not exc.retryable or failures >= MAX_FAILURES:
                raise
            log.warning("labelling: %s failed (%s); asking again in %.1f s", ctx.request_id, exc.message, wait)
        await pause(wait)
        wait = min(wait * 2, BUSY_PAUSE_S[1])


async def label_one(
    backend: Backend, model_name: str, task: Task, pause: Callable[[float], Any] = asyncio.sleep
) -> Label:
    messages = ({"role": "user", "content": task.prompt},)
    if task.system is not None:
        messages = ({"role": "system", "content": task.system}, *messages)
    ctx = RequestContext(
        request_id=uuid.uuid4().hex,
        kind="chat",
        requested_model=model_name,
        messages=messages,
        params={"temperature": 0.0},
    )
    completion = await _answer(backend, ctx, task.max_tokens, pause)
    confidence = completion.confidence
    return Label(
        id=task.id,
        group=task.group,
        prompt=task.prompt,
        local_model=model_name,
        local_right=is_right(task, completion.content),
        answer=completion.content,
        confidence=None
        if confidence is None
        else {
            "mean_logprob": round(confidence.mean_logprob, 5),
            "min_logprob": round(confidence.min_logprob, 5),
            "mean_entropy": round(confidence.mean_entropy, 5),
            "tokens": confidence.tokens,
            # The first tokens' (log-probability, entropy): what an early cascade rule is fitted on.
            "first": [[round(lp, 4), round(h, 4)] for lp, h in confidence.first_tokens],
            # The last tokens' too: where a reasoned answer names its conclusion.
            "last": [[round(lp, 4), round(h, 4)] for lp, h in confidence.last_tokens],
        },
        strong_right=task.strong_right,
        weak_right=task.weak_right,
        extra={"protocol": task.protocol} if task.protocol else {},
    )


async def label_tasks(
    backend: Backend,
    model_name: str,
    tasks: list[Task],
    out: Path,
    concurrency: int = 1,
    progress_out: TextIO = sys.stderr,
    with_prompts: bool = True,
) -> RunSummary:
    """Label every task not yet in `out`, appending as they finish (without the prompts and answers when
    `with_prompts` is off: a file that may ship, and that `--tasks` fills in again)."""
    done = done_ids(out)
    todo = [task for task in tasks if task.id not in done]
    progress = Progress(len(todo), progress_out)
    started = time.monotonic()
    queue: asyncio.Queue[Task] = asyncio.Queue()
    for task in todo:
        queue.put_nowait(task)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("a", encoding="utf-8") as sink:

        async def worker() -> None:
            while not queue.empty():
                task = queue.get_nowait()
                label = await label_one(backend, model_name, task)
                sink.write(label.to_json(with_prompts) + "\n")
                sink.flush()
                progress.advance(label.local_right)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if progress_out.isatty():
        progress_out.write("\n")
    return RunSummary(len(todo), len(tasks) - len(todo), progress.right, time.monotonic() - started,
                      accuracy_by_group(out, {task.id for task in tasks}))  # fmt: skip


def accuracy_by_group(path: Path, ids: set[str] | None = None) -> dict[str, tuple[int, int]]:
    """(right, labelled) per group of the labels in `path` whose ids are among `ids` (None: all of them)."""
    import json

    counts: dict[str, list[int]] = {}
    for line in json_lines(path):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if ids is None or record.get("id") in ids:
            entry = counts.setdefault(str(record["group"]), [0, 0])
            entry[0] += int(bool(record["local_right"]))
            entry[1] += 1
    return {group: (right, total) for group, (right, total) in counts.items()}


async def estimate(backend: Backend, model_name: str, tasks: list[Task], probes: int, concurrency: int) -> float:
    """Seconds a full run would take here: a few tasks spread over the set are labelled (and not written)."""
    if not tasks:
        return 0.0
    step = max(1, len(tasks) // probes)
    sample = tasks[::step][:probes]
    started = time.monotonic()
    for task in sample:
        await label_one(backend, model_name, task)
    per_task = (time.monotonic() - started) / len(sample)
    return per_task * len(tasks) / max(1, concurrency)
