"""Drive a configured model over checkable tasks and write what it got right (see `labels.py`).

The model is called through the gateway's own `Backend` (so what is labelled is what is served), with
the confidence meter on, at temperature 0. `concurrency` requests are in flight at once: one per
llama.cpp instance, or one per server of an OpenAI-compatible pool. Every finished label is appended and
flushed at once, so an interrupted run loses at most the prompts in flight.
"""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from router.backends.base import Backend
from router.classify.labels import Label, Task, done_ids, is_right
from router.types import RequestContext


@dataclass(frozen=True)
class RunSummary:
    labelled: int
    skipped: int
    right: int
    seconds: float


class Progress:
    """A one-line progress bar with the rate and the time left, redrawn on a terminal, else every 5%."""

    def __init__(self, total: int, out: TextIO = sys.stderr, clock: Callable[[], float] = time.monotonic) -> None:
        self.total, self.done, self.right = total, 0, 0
        self._out, self._clock = out, clock
        self._started = clock()
        self._last_percent = -5

    def line(self) -> str:
        elapsed = self._clock() - self._started
        rate = self.done / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate > 0 else float("nan")
        filled = int(30 * self.done / self.total) if self.total else 30
        eta = "--" if left != left else time.strftime("%H:%M:%S", time.gmtime(left))
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
        elif percent >= self._last_percent + 5 or self.done == self.total:
            self._last_percent = percent
            self._out.write(self.line() + "\n")
        self._out.flush()


async def label_one(backend: Backend, model_name: str, task: Task) -> Label:
    ctx = RequestContext(
        request_id=uuid.uuid4().hex,
        kind="chat",
        requested_model=model_name,
        messages=({"role": "user", "content": task.prompt},),
        params={"temperature": 0.0},
    )
    completion = await backend.complete(ctx, task.max_tokens, confidence=True)
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
        },
        strong_right=task.strong_right,
        weak_right=task.weak_right,
    )


async def label_tasks(
    backend: Backend,
    model_name: str,
    tasks: list[Task],
    out: Path,
    concurrency: int = 1,
    progress_out: TextIO = sys.stderr,
) -> RunSummary:
    """Label every task not yet in `out`, appending as they finish."""
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
                sink.write(label.to_json() + "\n")
                sink.flush()
                progress.advance(label.local_right)

        await asyncio.gather(*(worker() for _ in range(max(1, concurrency))))
    if progress_out.isatty():
        progress_out.write("\n")
    return RunSummary(len(todo), len(tasks) - len(todo), progress.right, time.monotonic() - started)


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
