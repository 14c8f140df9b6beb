"""Quality: shadow evaluation, judgements, quality-retained estimates and calibration from traffic.

Fed by the recorder after the client has its answer; it stores judgements beside the ledger and never
sits on the request path (DESIGN.md, "Where the next pieces go").
"""

from router.quality.estimate import Calibration, Estimate, calibrate, quality_retained
from router.quality.records import Judgement
from router.quality.store import JudgementStore, RedisJudgementStore, SqliteJudgementStore

__all__ = [
    "Calibration",
    "Estimate",
    "Judgement",
    "JudgementStore",
    "RedisJudgementStore",
    "SqliteJudgementStore",
    "calibrate",
    "quality_retained",
]
