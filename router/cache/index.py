"""The semantic cache's index: nearest stored question to a new one, in process, with no Redis modules.

Vectors are unit length (cosine = dot product) and grouped by partition (same conversation, model and
parameters), so a search only ever looks at answers that could be served. A small partition is
searched exactly with one matrix product. A large one is searched in two steps (SimHash, then exact):
every vector also has a 384-bit signature, its signs against 384 fixed random hyperplanes. Two vectors
at angle θ differ in each bit with probability θ/π, independently, so a stored vector with cosine ≥ t
lies, with overwhelming probability, within `hamming_bound(t)` bits of the query (the binomial mean plus
five standard deviations: a miss once in millions). XOR + popcount over the signatures (six words a
vector, stored column by column) finds those candidates in about a millisecond at 100k entries, and only
they are compared exactly, so the threshold check itself is exact. Deletion swaps the last row into the
hole, so rows stay packed and adds stay O(1) amortised.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np

BITS = 384
WORDS = BITS // 64
EXACT_BELOW = 2048
"""Partitions smaller than this are searched exactly: a matrix product is then as fast as the prefilter."""
MAX_CANDIDATES = 4096
"""When more than this many pass the signature step (a partition of near-identical questions), only the
closest this many by signature are compared exactly."""


@cache
def _planes(dims: int) -> np.ndarray:
    # Fixed seed: every replica computes the same signatures for the same vectors.
    return np.random.default_rng(0x5EED).standard_normal((dims, BITS)).astype(np.float32)


def signatures(vectors: np.ndarray) -> np.ndarray:
    """SimHash signatures packed into uint64 words, one row per vector."""
    vectors = np.atleast_2d(vectors)
    bits = np.packbits(vectors @ _planes(vectors.shape[1]) > 0, axis=1)
    return np.ascontiguousarray(bits).view(np.uint64)


def hamming_bound(threshold: float) -> int:
    """Most signature bits a vector with cosine ≥ `threshold` differs in, bar a one-in-millions chance."""
    p = math.acos(max(-1.0, min(1.0, threshold))) / math.pi
    return math.ceil(BITS * p + 5 * math.sqrt(BITS * p * (1 - p)))


class _Partition:
    def __init__(self, dims: int) -> None:
        self.size = 0
        self.vectors = np.empty((8, dims), dtype=np.float32)
        self.signatures = np.empty((WORDS, 8), dtype=np.uint64)  # column per vector: each word is contiguous
        self.expires = np.empty(8, dtype=np.float64)
        self.keys: list[str] = []

    def _grow(self) -> None:
        capacity = len(self.expires) * 2
        vectors = np.empty((capacity, self.vectors.shape[1]), dtype=np.float32)
        vectors[: self.size] = self.vectors[: self.size]
        sigs = np.empty((WORDS, capacity), dtype=np.uint64)
        sigs[:, : self.size] = self.signatures[:, : self.size]
        expires = np.empty(capacity, dtype=np.float64)
        expires[: self.size] = self.expires[: self.size]
        self.vectors, self.signatures, self.expires = vectors, sigs, expires

    def append(self, key: str, vector: np.ndarray, sig: np.ndarray, expires_at: float) -> int:
        if self.size == len(self.expires):
            self._grow()
        row = self.size
        self.vectors[row] = vector
        self.signatures[:, row] = sig
        self.expires[row] = expires_at
        self.keys.append(key)
        self.size += 1
        return row

    def delete(self, row: int) -> str | None:
        """Remove `row` by moving the last row into it; returns the key that moved (it has a new row)."""
        last = self.size - 1
        moved = None
        if row != last:
            self.vectors[row] = self.vectors[last]
            self.signatures[:, row] = self.signatures[:, last]
            self.expires[row] = self.expires[last]
            self.keys[row] = self.keys[last]
            moved = self.keys[row]
        self.keys.pop()
        self.size = last
        return moved

    def _candidates(self, sig: np.ndarray, threshold: float) -> np.ndarray:
        n = self.size
        if n < EXACT_BELOW:
            return np.arange(n)
        word = np.empty(n, dtype=np.uint64)
        count = np.empty(n, dtype=np.uint8)
        distance = np.zeros(n, dtype=np.uint16)
        for w in range(WORDS):
            np.bitwise_xor(self.signatures[w, :n], sig[w], out=word)
            np.bitwise_count(word, out=count)
            np.add(distance, count, out=distance)
        rows = np.flatnonzero(distance <= hamming_bound(threshold))
        if len(rows) > MAX_CANDIDATES:
            rows = rows[np.argpartition(distance[rows], MAX_CANDIDATES)[:MAX_CANDIDATES]]
        return rows

    def nearest(self, vector: np.ndarray, sig: np.ndarray, threshold: float, now: float) -> tuple[int, float] | None:
        rows = self._candidates(sig, threshold)
        if len(rows) == 0:
            return None
        sims = self.vectors[rows] @ vector
        sims[self.expires[rows] <= now] = -2.0  # expired entries never match
        best = int(np.argmax(sims))
        if sims[best] < threshold:
            return None
        return int(rows[best]), float(sims[best])


@dataclass(frozen=True, slots=True)
class Match:
    key: str
    similarity: float


class VectorIndex:
    def __init__(self) -> None:
        self._partitions: dict[str, _Partition] = {}
        self._where: dict[str, tuple[str, int]] = {}  # key → (partition, row)

    def __len__(self) -> int:
        return len(self._where)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def add(self, key: str, partition: str, vector: np.ndarray, expires_at: float) -> None:
        """Insert or replace `key`'s vector."""
        self.remove(key)
        vector = np.asarray(vector, dtype=np.float32).ravel()
        block = self._partitions.get(partition)
        if block is None:
            block = self._partitions[partition] = _Partition(vector.shape[0])
        self._where[key] = (partition, block.append(key, vector, signatures(vector)[0], expires_at))

    def remove(self, key: str) -> bool:
        found = self._where.pop(key, None)
        if found is None:
            return False
        partition, row = found
        block = self._partitions[partition]
        moved = block.delete(row)
        if moved is not None:
            self._where[moved] = (partition, row)
        if block.size == 0:
            del self._partitions[partition]
        return True

    def remove_where(self, doomed: Callable[[str], bool]) -> int:
        keys = [key for key in self._where if doomed(key)]
        for key in keys:
            self.remove(key)
        return len(keys)

    def clear(self) -> None:
        self._partitions.clear()
        self._where.clear()

    def search(self, partition: str, vector: np.ndarray, threshold: float, now: float | None = None) -> Match | None:
        """The stored vector most similar to `vector` in `partition`, if its cosine similarity ≥ threshold."""
        block = self._partitions.get(partition)
        if block is None:
            return None
        vector = np.asarray(vector, dtype=np.float32).ravel()
        found = block.nearest(vector, signatures(vector)[0], threshold, time.time() if now is None else now)
        if found is None:
            return None
        return Match(block.keys[found[0]], found[1])
