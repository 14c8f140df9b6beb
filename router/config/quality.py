"""What the gateway YAML's `shadow:` and `auto_calibrate:` say: how much traffic is shadowed and judged
against the cloud, what that may cost, and whether the classifier's threshold follows the judgements."""

from __future__ import annotations

from pydantic import Field

from router.config.models import _Strict


class ShadowConfig(_Strict):
    """Shadow evaluation: a sample of answers is compared with a reference cloud model's, off the request path."""

    share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of local and local-cached answers also sent to the reference model after the client "
        "has its answer, and judged; 0 turns shadowing off. A rule's `shadow:` overrides it for its requests.",
    )
    explore: float = Field(
        0.0,
        ge=0,
        le=1,
        description="Share of cloud answers also answered by the local model (off the request path) and judged: "
        "what `router calibrate --quality-target` needs to move the threshold towards less cloud. Costs local "
        "model time and one judge call each.",
    )
    reference: str | None = Field(
        None, description="The configured cloud model answers are compared with; default: the ledger's reference."
    )
    judge: str | None = Field(
        None,
        description="The configured model that grades an answer against the reference when no deterministic "
        "check decides; unset: only checkable answers (same text, final number, choice letter, JSON) are judged.",
    )
    checks: bool = Field(
        True,
        description="Settle agreeing answers without the judge: the same text, the same final number, the same "
        "choice letter, equal JSON. Disagreeing ones still go to the judge when there is one.",
    )
    max_usd_per_day: float = Field(
        2.0, ge=0, description="Cloud spend on shadow and judge calls per UTC day (shared by replicas through Redis)."
    )
    queue_size: int = Field(256, ge=1, description="Shadow jobs waiting; past it new ones are dropped and counted.")
    concurrency: int = Field(2, ge=1, description="Shadow jobs in flight at once.")
    max_tokens: int = Field(512, ge=1, description="Cap on the reference's and the local model's shadow answers.")
    store_prompts: bool = Field(
        False,
        description="Keep each judged prompt's text with its judgement (else only its embedding): lets "
        "`router train --from-traffic` use text features.",
    )
    min_samples: int = Field(30, ge=1, description="Fewer judgements than this: a rule or tenant shows no estimate.")
    seed: int | None = Field(None, description="Seed of the sampling (for a replay that must repeat itself).")

    @property
    def enabled(self) -> bool:
        return self.share > 0 or self.explore > 0


class AutoCalibrateConfig(_Strict):
    """Move the live `route: auto` thresholds, in bounded steps, to keep a quality target at the least cloud share."""

    quality_target: float = Field(gt=0, le=1, description="Quality retained to keep, e.g. 0.95 of the cloud's.")
    min_samples: int = Field(200, ge=10, description="Judgements a rule needs before its threshold moves.")
    max_step: float = Field(0.02, gt=0, le=1, description="Largest move of a threshold at one step.")
    interval_s: float = Field(300.0, ge=1, description="How often the thresholds are recomputed.")
    window: str = Field(
        "7d", pattern=r"^[1-9][0-9]*[mhd]$", description="Judgements of this window are used (15m, 24h, 7d...)."
    )
    confidence: float = Field(
        0.9,
        ge=0.5,
        lt=1,
        description="The target must hold at this one-sided confidence (bootstrap), not just on the point estimate.",
    )
