"""Integer matrix products through floating-point BLAS, exactly.

INT8 x INT8 products summed over K stay below K * 128 * 128; while that is below
2^24 every partial sum is an integer float32 holds exactly, else float64 does
(below 2^53). The executor and the reference both multiply this way; the
arithmetic they define stays integer.
"""
from __future__ import annotations

import numpy as np


def exact_float(w: np.ndarray) -> np.ndarray:
    """INT8-valued weights [rows, K] as the float type whose BLAS products with INT8
    activations are exact: float32 while K * 128 * 128 < 2^24, else float64."""
    dtype = np.float32 if w.shape[1] * 128 * 128 < 1 << 24 else np.float64
    return w if w.dtype == dtype else w.astype(dtype)
