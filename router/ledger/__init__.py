"""The priced ledger: every request's cost as served and on the reference cloud model, aggregated."""

from router.ledger.ledger import Ledger
from router.ledger.pricing import Pricer
from router.ledger.records import CostRecord
from router.ledger.stores import LedgerStore, RedisLedgerStore, SqliteLedgerStore

__all__ = ["CostRecord", "Ledger", "LedgerStore", "Pricer", "RedisLedgerStore", "SqliteLedgerStore"]
