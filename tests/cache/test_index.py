"""The semantic index: exact answers on small partitions, and the SimHash prefilter on large ones finds
the same nearest neighbour as a full scan."""

from __future__ import annotations

import math

import numpy as np
import pytest

from router.cache.index import BITS, EXACT_BELOW, VectorIndex, hamming_bound, signatures
from tests.vectors import near, unit


def test_finds_the_nearest_above_the_threshold_and_nothing_below() -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 50)
    index = VectorIndex()
    for i, v in enumerate(vectors):
        index.add(f"k{i}", "p", v, expires_at=math.inf)
    match = index.search("p", near(rng, vectors[7], 0.95), threshold=0.9)
    assert match is not None and match.key == "k7" and match.similarity == pytest.approx(0.95, abs=1e-4)
    assert index.search("p", near(rng, vectors[7], 0.85), threshold=0.9) is None
    assert index.search("other-partition", vectors[7], threshold=0.5) is None


def test_expired_removed_and_replaced_entries_never_match() -> None:
    rng = np.random.default_rng(2)
    a, b, c = unit(rng, 3)
    index = VectorIndex()
    index.add("old", "p", a, expires_at=100.0)
    assert index.search("p", a, 0.9, now=99.0) is not None
    assert index.search("p", a, 0.9, now=100.0) is None
    index.add("b", "p", b, expires_at=math.inf)
    index.add("c", "p", c, expires_at=math.inf)
    assert index.remove("b") and not index.remove("b")
    assert index.search("p", b, 0.9) is None
    assert index.search("p", c, 0.9).key == "c"  # the row moved into b's place is still found
    index.add("c", "p", a, expires_at=math.inf)  # replacing a key's vector
    assert len(index) == 2 and index.search("p", a, 0.99, now=200.0).key == "c"
    assert index.remove_where(lambda key: key == "c") == 1 and "c" not in index


def test_hamming_bound_holds_for_vectors_at_the_threshold() -> None:
    """Bits differ with probability angle/π: at the threshold itself, the bound must cover virtually all."""
    rng = np.random.default_rng(3)
    base = unit(rng, 2000)
    for threshold in (0.8, 0.88, 0.95):
        others = np.stack([near(rng, v, threshold) for v in base])
        distances = np.bitwise_count(signatures(base) ^ signatures(others)).sum(axis=1)
        assert distances.mean() == pytest.approx(BITS * math.acos(threshold) / math.pi, rel=0.05)
        assert (distances <= hamming_bound(threshold)).all()


def test_large_partitions_use_the_prefilter_and_agree_with_a_full_scan() -> None:
    rng = np.random.default_rng(4)
    n = EXACT_BELOW * 3
    vectors = unit(rng, n)
    index = VectorIndex()
    for i, v in enumerate(vectors):
        index.add(f"k{i}", "p", v, expires_at=math.inf)
    for i in range(0, n, 97):
        query = near(rng, vectors[i], 0.9)
        match = index.search("p", query, threshold=0.88)
        best = int(np.argmax(vectors @ query))
        assert match is not None and match.key == f"k{best}"
        assert match.similarity == pytest.approx(float(vectors[best] @ query), abs=1e-5)
    assert index.search("p", unit(rng, 1)[0], threshold=0.88) is None
