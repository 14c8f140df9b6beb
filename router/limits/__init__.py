"""API keys' and teams' budgets and rate limits, shared by replicas through Redis."""

from router.limits.limiter import Limiter, Subject, restore_team_spend
from router.limits.stores import LimitStore, MemoryLimitStore, RedisLimitStore

__all__ = ["LimitStore", "Limiter", "MemoryLimitStore", "RedisLimitStore", "Subject", "restore_team_spend"]
