"""Integer matrix products through floating-point BLAS, exactly.

A product of integer weights [rows, K] with INT8 activations sums K terms of
at most 128 * max|w|; while that is below 2^24 every partial sum is an
integer float32 holds exactly, below 2^53 float64 does, and beyond that only
int64 (no BLAS) is exact. The executor and the reference both multiply this
way; the arithmetic they define stays integer.
"""
from __future__ import annotations

import numpy as np


def exact_float(w: np.ndarray) -> np.ndarray:
    """Integer-valued weights [rows, K] as the type whose products with INT8
    activations are exact: float32, float64, or int64 when even float64 is not."""
    bound = w.shape[1] * 128 * max(int(np.abs(w).max(initial=0)), 1)
    dtype = np.float32 if bound < 1 << 24 else np.float64 if bound < 1 << 53 else np.int64
    return w if w.dtype == dtype else w.astype(dtype)
