"""Admit a request against its key's and its team's limits; count what it spent once it is answered.

Subjects: `key:<name>` (a key's own `limits:`) and `team:<tenant>` (`limits.teams`, else
`limits.default`). A request is admitted only if every subject is under its requests and tokens per
minute (a sliding window: no 60 seconds ever admit more); its prompt tokens are counted at admission
and its completion tokens when it ends. Spend (USD,
as the ledger prices it) is added per UTC day and month; the budget state a policy sees (`ok`, `near`,
`over`) is that of the subject and period closest to running out.
"""

from __future__ import annotations

import calendar
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass

from router.config import Limits, LimitsConfig
from router.errors import LimitExceeded
from router.ledger.stores import LedgerStore
from router.limits.stores import Counted, LimitStore, Quota
from router.types import BudgetStatus, RequestContext


@dataclass(frozen=True, slots=True)
class Subject:
    id: str
    limits: Limits


class Limiter:
    def __init__(self, config: LimitsConfig, key_limits: Mapping[str, Limits], store: LimitStore) -> None:
        self._config = config
        self._key_limits = key_limits
        self.store = store

    def subjects(self, ctx: RequestContext) -> list[Subject]:
        subjects = []
        if ctx.key_name is not None and (own := self._key_limits.get(ctx.key_name)) is not None:
            subjects.append(Subject(f"key:{ctx.key_name}", own))
        if ctx.tenant is not None:
            team = self._config.teams.get(ctx.tenant, self._config.default)
            if team is not None:
                subjects.append(Subject(f"team:{ctx.tenant}", team))
        return subjects

    def _status(self, subjects: list[Subject], counted: tuple[Counted, ...]) -> BudgetStatus | None:
        """The budget closest to running out, or None when no budget applies."""
        tightest: tuple[float, BudgetStatus] | None = None
        for subject, c in zip(subjects, counted, strict=True):
            for period, spent, limit in (
                ("day", c.usd_day, subject.limits.usd_per_day),
                ("month", c.usd_month, subject.limits.usd_per_month),
            ):
                if limit is None:
                    continue
                share = spent / limit
                state = "over" if spent >= limit else "near" if share >= self._config.budget_near else "ok"
                status = BudgetStatus(state, spent, limit, period, subject.id)
                if tightest is None or share > tightest[0]:
                    tightest = (share, status)
        return tightest[1] if tightest else None

    async def admit(self, ctx: RequestContext) -> BudgetStatus | None:
        """Count the request in; raise `LimitExceeded` (429) if a rate limit is used up. Returns its budget
        status, for the policy's `budget:` conditions and the over-budget rule (None: no budget applies)."""
        subjects = self.subjects(ctx)
        if not subjects:
            return None
        quotas = [Quota(s.id, s.limits.requests_per_minute, s.limits.tokens_per_minute) for s in subjects]
        admission = await self.store.admit(quotas, ctx.prompt_tokens, ctx.received_at)
        if not admission.admitted:
            assert admission.refused_by is not None
            subject = subjects[admission.refused_by]
            reset_s = max(1, math.ceil(admission.retry_after_s or 1))
            limit = (
                subject.limits.requests_per_minute
                if admission.refused_on == "requests"
                else subject.limits.tokens_per_minute
            )
            raise LimitExceeded(
                f"Rate limit reached for {subject.id}: {limit} {admission.refused_on} per minute. "
                f"Try again in {reset_s} s.",
                headers={
                    "Retry-After": str(reset_s),
                    f"x-ratelimit-limit-{admission.refused_on}": str(limit),
                    f"x-ratelimit-remaining-{admission.refused_on}": "0",
                    f"x-ratelimit-reset-{admission.refused_on}": f"{reset_s}s",
                },
            )
        return self._status(subjects, admission.counted)

    async def status(self, ctx: RequestContext) -> BudgetStatus | None:
        """The budget state without counting a request (explain)."""
        subjects = self.subjects(ctx)
        if not subjects:
            return None
        return self._status(subjects, await self.store.read([s.id for s in subjects], ctx.received_at))

    async def spend(self, ctx: RequestContext, usd: float, completion_tokens: int) -> None:
        subjects = self.subjects(ctx)
        if subjects and (usd > 0 or completion_tokens > 0):
            await self.store.spend([s.id for s in subjects], usd, completion_tokens, ctx.received_at)


async def restore_team_spend(limiter: Limiter, ledger: LedgerStore, now: float) -> int:
    """Seed today's and this month's spend per team from the ledger, so that a restart without Redis does
    not hand every team a fresh budget. Returns the number of teams seeded.

    The ledger keeps spend per tenant, not per API key: a key's own `usd_per_*` limits start from zero
    after a restart unless Redis holds them.
    """
    year, month = time.gmtime(now)[:2]
    month_start = calendar.timegm((year, month, 1, 0, 0, 0))
    day_start = int(now // 86400) * 86400
    day: dict[str, float] = {}
    month_total: dict[str, float] = {}
    for row in await ledger.query("day", month_start, int(now) + 1):
        month_total[row.tenant] = month_total.get(row.tenant, 0.0) + row.get("cost_usd")
        if row.bucket >= day_start:
            day[row.tenant] = day.get(row.tenant, 0.0) + row.get("cost_usd")
    for tenant, usd in month_total.items():
        limiter.store.seed_spend(f"team:{tenant}", day.get(tenant, 0.0), usd, now)
    return len(month_total)
