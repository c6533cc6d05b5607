"""The numbers the gateware must produce, in numpy: the N:16 sparse
matrix-vector product with INT32 wrap-around, written from the arithmetic's
definition rather than from the hardware's structure. Dequantization is
hwmodel.dequant's, the one the executor uses."""
from __future__ import annotations

import numpy as np


def sparse_mv(w8: np.ndarray, index: np.ndarray, x: np.ndarray, block: int = 16) -> np.ndarray:
    """y[t, r] = sum over blocks b and non-zeros i of w8[r, b, i] * x[t, b*block + index[r, b, i]],
    accumulated in INT32. w8, index: (rows, kblk, N); x: (tokens, kblk*block)."""
    kblk = w8.shape[1]
    cols = np.arange(kblk)[None, :, None] * block + index
    y = np.einsum("rbi,trbi->tr", w8.astype(np.int64), x.astype(np.int64)[:, cols])
    return ((y + 2**31) % 2**32 - 2**31).astype(np.int64)
