"""Random stimulus for the matrix engine's benches, extremes included."""
from __future__ import annotations

import numpy as np

from hwmodel.gateware.dequantizer import SCALE_BITS
from hwmodel.gateware.tile_stream import SparseTile

EXTREMES = ("random", "min", "max", "zero", "equal_index")


def random_tile(rng: np.random.Generator, *, n: int, bits: int, rows: int, kblk: int, tokens: int,
                chain_length: int, block: int = 16, kind: str = "random") -> SparseTile:
    """A tile of random N:16 weights and INT8 activations. `kind` forces an extreme:
    `min`/`max` fill weights and activations with the INT8 limits (weights through
    a saturating scale), `zero` zeroes the weights, `equal_index` makes every
    non-zero of a block read the same column."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    beats = -(-kblk * n // chain_length)
    q = rng.integers(lo, hi + 1, size=(rows, kblk, n))
    scale = rng.integers(0, 1 << SCALE_BITS, size=(rows, beats))
    index = np.sort(np.stack([rng.permutation(block)[:n] for _ in range(rows * kblk)]), axis=1)
    index = index.reshape(rows, kblk, n)
    x = rng.integers(-128, 128, size=(tokens, kblk * block))
    if kind in ("min", "max"):
        q[:] = lo if kind == "min" else hi
        scale[:] = (1 << SCALE_BITS) - 1           # saturates to -128 / 127
        x[:] = -128 if kind == "min" else 127
    elif kind == "zero":
        q[:] = 0
    elif kind == "equal_index":
        index[:] = rng.integers(0, block, size=(rows, kblk, 1))
    elif kind != "random":
        raise ValueError(f"kind must be one of {EXTREMES}, got {kind!r}")
    return SparseTile(n=n, bits=bits, q=q, index=index, scale=scale, x=x)
