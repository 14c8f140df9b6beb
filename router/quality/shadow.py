"""Shadow evaluation: after the client has its answer, a sample of requests is answered again on the other
side (the reference cloud model for local answers, the local model for cloud ones) and the two answers are
graded, by a deterministic check where the answers allow it and by the judge model otherwise.

Nothing here sits on the request path: `offer` decides in microseconds and puts a job on a bounded queue
(a full queue drops the job and counts it), and a few workers do the calls. Requests a rule pins to the
local model, marks private (`shadow: false`) or keeps off the cloud for its budget are never shadowed, and
every call goes through the executor, so it is redacted as the rule says, retried and circuit-broken like
any other. The day's spend on shadow and judge calls is capped (`shadow.max_usd_per_day`, shared by the
replicas when Redis is configured).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from router.config import ShadowConfig
from router.errors import RouterError
from router.metrics import Metrics
from router.quality.checks import compare
from router.quality.judge import grader_messages, parse_scores
from router.quality.records import Judgement, Stratum
from router.quality.store import JudgementStore
from router.resilience import Executor
from router.types import Completion, Decision, Findings, RequestContext, Served, Usage

log = logging.getLogger(__name__)
CALL_DEADLINE_S = 120.0
JUDGE_MAX_TOKENS = 64
SPEND_REFRESH_S = 5.0
"""How stale the evaluator's view of the day's spend may be (other replicas add to it too)."""


@dataclass(frozen=True, slots=True)
class ShadowJob:
    ctx: RequestContext
    served: Served
    answer: str
    stratum: Stratum
    share: float
    tenant: str
    embedding: Any = None
    """The prompt's embedding, when the request path computed one (kept with the judgement)."""


class ShadowEvaluator:
    def __init__(
        self,
        config: ShadowConfig,
        executor: Executor,
        store: JudgementStore,
        metrics: Metrics,
        local_model: str,
        reference_model: str | None,
        cloud_models: set[str],
        price: Callable[[str, Usage], float],
        local_busy: Callable[[], bool] = lambda: False,
        unavailable: Callable[[str], str | None] = lambda model: None,
    ) -> None:
        self.config = config
        self._executor = executor
        self.store = store
        self._metrics = metrics
        self._local_model = local_model
        self.reference_model = reference_model
        self._cloud_models = cloud_models
        self._price = price
        self._local_busy = local_busy
        self._unavailable = unavailable
        """Why a configured model cannot answer at all (no key), else None: such jobs are not even queued."""
        """Whether the local model has requests waiting: exploration then waits its turn (it is skipped),
        so that shadow work never queues ahead of a client."""
        self._queue: asyncio.Queue[ShadowJob] = asyncio.Queue(config.queue_size)
        self._workers: list[asyncio.Task[None]] = []
        self._spent = 0.0
        self._spent_read_at = -SPEND_REFRESH_S
        self._spend_task: asyncio.Task[None] | None = None
        self._random = random.Random(config.seed)
        self.in_flight = 0
        self.counts: dict[str, int] = {}
        """Jobs by outcome since start (what `/v1/router/stats` shows beside the metrics)."""

    # -- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._workers = [asyncio.create_task(self._work(), name=f"shadow-{i}") for i in range(self.config.concurrency)]
        self._refresh_spend_soon()  # what this day's shadow calls have cost already (a restart, other replicas)

    async def close(self) -> None:
        for task in [*self._workers, *([self._spend_task] if self._spend_task else [])]:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)

    @property
    def pending(self) -> int:
        """Jobs queued or being evaluated."""
        return self._queue.qsize() + self.in_flight

    # -- on the request path: decide and enqueue, nothing else -------------------------------------

    def offer(
        self, ctx: RequestContext, found: Findings, served: Served, answer: str | None, status: int, tenant: str
    ) -> None:
        decision = served.decision
        if status != 200 or not answer or self.reference_model is None or not decision.allow_cloud:
            return
        if served.route == "cloud" or (served.route == "cache" and served.model in self._cloud_models):
            stratum: Stratum = "cloud"
            share = self.config.explore if decision.shadow != 0 else 0.0
            if served.route == "cache" or served.fallback:
                return  # explore fresh cloud answers only: a cached one may be from another model
        else:
            stratum, share = "local", self.config.share if decision.shadow is None else decision.shadow
        if share <= 0 or "tools" in decision.needs or served.fallback or self._random.random() >= share:
            return
        if self._unavailable(self.reference_model) is not None:
            self._count("unavailable")
            return
        if self._spent >= self.config.max_usd_per_day:
            self._count("budget")
            self._refresh_spend_soon()
            return
        try:
            self._queue.put_nowait(ShadowJob(ctx, served, answer, stratum, share, tenant, found.embedding))
        except asyncio.QueueFull:
            self._count("dropped")
            return
        self._count("queued")
        self._metrics.shadow_queue.set(self._queue.qsize())

    # -- off the request path ----------------------------------------------------------------------

    def _count(self, outcome: str) -> None:
        self.counts[outcome] = self.counts.get(outcome, 0) + 1
        self._metrics.shadow_jobs.labels(outcome).inc()

    def _refresh_spend_soon(self) -> None:
        """The day changes and other replicas spend too: re-read the shared total now and then."""
        if time.monotonic() - self._spent_read_at < SPEND_REFRESH_S:
            return
        self._spent_read_at = time.monotonic()

        async def read() -> None:
            with contextlib.suppress(Exception):
                self._spent = await self.store.spent()

        if self._spend_task is None or self._spend_task.done():
            self._spend_task = asyncio.get_running_loop().create_task(read(), name="shadow-spend")

    async def _work(self) -> None:
        while True:
            job = await self._queue.get()
            self.in_flight += 1
            try:
                outcome = await self._evaluate(job)
            except asyncio.CancelledError:
                raise
            except RouterError as exc:
                outcome = "failed"
                log.info("shadow of %s failed: %s", job.ctx.request_id, exc.message)
            except Exception:
                outcome = "failed"
                log.exception("shadow of %s failed", job.ctx.request_id)
            finally:
                self.in_flight -= 1
                self._queue.task_done()
                self._metrics.shadow_queue.set(self._queue.qsize())
            self._count(outcome)

    async def _call(self, ctx: RequestContext, decision: Decision, max_tokens: int | None) -> Completion:
        completion, _ = await self._executor.complete(ctx, decision, max_tokens, time.perf_counter() + CALL_DEADLINE_S)
        if decision.route == "cloud":
            usd = self._price(decision.model, completion.usage)
            self._spent = await self.store.spend(usd)
            self._metrics.shadow_usd.labels(decision.model).inc(usd)
        return completion

    def _over_budget(self) -> bool:
        return self._spent >= self.config.max_usd_per_day

    async def _evaluate(self, job: ShadowJob) -> str:
        if self._over_budget():
            return "budget"
        ctx, decision = job.ctx, job.served.decision
        asked = ctx.params.get("max_tokens")
        max_tokens = min(asked, self.config.max_tokens) if asked else self.config.max_tokens
        shadow_ctx = replace(ctx, request_id=f"{ctx.request_id}-shadow", stream=False)
        assert self.reference_model is not None
        if job.stratum == "local":  # the client got the local answer: ask the reference
            ask = Decision("cloud", self.reference_model, "shadow", redact=decision.redact,
                           upstream_headers=decision.upstream_headers)  # fmt: skip
            local_model, reference_model = job.served.model, self.reference_model
            local_answer = job.answer
            reference_answer = (await self._call(shadow_ctx, ask, max_tokens)).content or ""
        else:  # the client got the cloud's answer: ask the local model, unless clients are waiting for it
            if self._local_busy():
                return "local-busy"
            ask = Decision("local", self._local_model, "shadow", allow_cloud=False)
            local_model, reference_model = self._local_model, job.served.model
            local_answer = (await self._call(shadow_ctx, ask, max_tokens)).content or ""
            reference_answer = job.answer
        settled = self._checked(local_answer, reference_answer)
        if settled is not None:
            judge, method, scores = "check", *settled
        elif self.config.judge is None:
            return "unjudged"
        elif self._over_budget():
            return "budget"
        else:
            judge, method = self.config.judge, "judge"
            judged = await self._judged(shadow_ctx, decision, local_answer, reference_answer)
            if judged is None:
                return "unjudged"
            scores = judged
        await self.store.add([self._judgement(job, local_model, reference_model, judge, method, scores)])
        return "judged"

    async def _judged(
        self, ctx: RequestContext, decision: Decision, local_answer: str, reference_answer: str
    ) -> tuple[float, float] | None:
        """The judge's (local, reference) scores; redacted as the rule says, like any cloud call."""
        judge = self.config.judge
        assert judge is not None
        messages = grader_messages(ctx.last_user_text(), reference_answer, local_answer)
        ask = Decision(_tier(judge, self._cloud_models), judge, "shadow-judge", redact=decision.redact,
                       upstream_headers=decision.upstream_headers)  # fmt: skip
        judge_ctx = replace(ctx, messages=tuple(messages), params={"temperature": 0.0}, prompt=None, kind="chat")
        reply = (await self._call(judge_ctx, ask, JUDGE_MAX_TOKENS)).content or ""
        scores = parse_scores(reply)
        if scores is None:
            log.info("the judge's reply to %s did not follow the rubric: %r", ctx.request_id, reply[:200])
        return scores

    def _checked(self, local: str, reference: str) -> tuple[str, tuple[float, float]] | None:
        """(method, scores) when a deterministic check settles it: agreeing answers are equally good (the
        reference's quality is taken as right). Disagreeing ones need the judge: None."""
        found = compare(local, reference) if self.config.checks else None
        if found is None or not found[1]:
            return None
        return found[0], (1.0, 1.0)

    def _judgement(
        self, job: ShadowJob, local_model: str, reference: str, judge: str, method: str, scores: tuple[float, float]
    ) -> Judgement:
        ctx, decision = job.ctx, job.served.decision
        embedding = None
        if job.embedding is not None:
            embedding = tuple(float(x) for x in job.embedding)
        return Judgement(
            at=time.time(),
            request_id=ctx.request_id,
            route=job.served.route,
            stratum=job.stratum,
            rule=decision.reason,
            tenant=job.tenant,
            model=local_model,
            reference=reference,
            judge=judge,
            method=method,
            local_score=scores[0],
            reference_score=scores[1],
            share=job.share,
            escalation=decision.scores.get("escalation"),
            threshold=decision.scores.get("threshold"),
            auto_rule=(decision.rule or "default") if "threshold" in decision.scores else None,
            embedding=embedding,
            prompt=ctx.last_user_text() if self.config.store_prompts else None,
        )


def _tier(model: str, cloud_models: set[str]) -> str:
    return "cloud" if model in cloud_models else "local"
