"""Unit vectors with a known similarity, for the semantic index's tests and benchmark."""

from __future__ import annotations

import math

import numpy as np


def unit(rng: np.random.Generator, n: int, dims: int = 384) -> np.ndarray:
    v = rng.standard_normal((n, dims)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def near(rng: np.random.Generator, v: np.ndarray, cosine: float) -> np.ndarray:
    """A unit vector at exactly `cosine` from the unit vector `v`."""
    noise = rng.standard_normal(v.shape).astype(np.float32)
    noise -= noise @ v * v
    noise /= np.linalg.norm(noise)
    return (cosine * v + math.sqrt(1 - cosine**2) * noise).astype(np.float32)
