"""Personal data and secrets: find them (`detector`), and keep them from the cloud (`redaction`)."""

from router.pii.detector import PII_KINDS, PiiMatch, find_pii
from router.pii.redaction import Redaction, StreamRestorer

__all__ = ["PII_KINDS", "PiiMatch", "Redaction", "StreamRestorer", "find_pii"]
