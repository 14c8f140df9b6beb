"""Exact and semantic response cache: memory and Redis stores behind one interface."""

from router.cache.cache import BYPASS, CacheLookup, ResponseCache
from router.cache.entry import CachedAnswer, Record
from router.cache.keys import cache_key, not_cacheable, scope_tag
from router.cache.stores import CacheStore, MemoryCacheStore, RedisCacheStore

__all__ = [
    "BYPASS",
    "CacheLookup",
    "CacheStore",
    "CachedAnswer",
    "MemoryCacheStore",
    "Record",
    "RedisCacheStore",
    "ResponseCache",
    "cache_key",
    "not_cacheable",
    "scope_tag",
]
