"""The numbers the gateware must produce, in numpy: the N:16 sparse
matrix-vector product in the 48-bit accumulator, written from the arithmetic's
definition rather than from the hardware's structure. The weights are
hwmodel.dequant's, the ones the executor uses."""
from __future__ import annotations

import numpy as np

from hwmodel.dequant import wrap_acc


def sparse_mv(w: np.ndarray, index: np.ndarray, x: np.ndarray, block: int = 16) -> np.ndarray:
    """y[t, r] = sum over blocks b and non-zeros i of w[r, b, i] * x[t, b*block + index[r, b, i]],
    accumulated in ACC_BITS. w, index: (rows, kblk, N); x: (tokens, kblk*block)."""
    kblk = w.shape[1]
    cols = np.arange(kblk)[None, :, None] * block + index
    return wrap_acc(np.einsum("rbi,trbi->tr", w.astype(np.int64), x.astype(np.int64)[:, cols]))
