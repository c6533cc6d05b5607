"""Random stimulus for the matrix engine's benches, extremes included."""
from __future__ import annotations

import numpy as np

from hwmodel.dequant import MULT_MAX, SYMMETRIC_ZERO
from hwmodel.gateware.tile_stream import SparseTile

EXTREMES = ("random", "min", "max", "zero", "m_zero", "equal_index")


def random_tile(rng: np.random.Generator, *, n: int, bits: int, rows: int, kblk: int, tokens: int,
                chain_length: int, group: int | None = None, block: int = 16, kind: str = "random") -> SparseTile:
    """A tile of random N:16 codes, group multipliers and INT8 activations, one (m, z)
    per `group` non-zeros of a row (default: one per beat of `chain_length`).
    `random` draws m, z and the codes uniformly (at 8 bits the difference wraps
    in 8 bits for some). `kind` forces an extreme: `min`/`max` give every
    difference its most negative / positive value (-(2^b - 1) / 2^b - 1, at 8
    bits -128 / 127, z = 128), m = 255, and the activations -128 / 127;
    `zero` sets every code to its zero point, `m_zero` every multiplier to 0;
    `equal_index` makes every non-zero of a block read the same column."""
    top = (1 << bits) - 1
    group = chain_length if group is None else group
    groups = -(-kblk * n // group)
    q = rng.integers(0, top + 1, size=(rows, kblk, n))
    m = rng.integers(0, MULT_MAX + 1, size=(rows, groups))
    z = rng.integers(0, top + 1, size=(rows, groups))
    index = np.sort(np.stack([rng.permutation(block)[:n] for _ in range(rows * kblk)]), axis=1)
    index = index.reshape(rows, kblk, n)
    x = rng.integers(-128, 128, size=(tokens, kblk * block))
    if kind in ("min", "max"):
        q[:] = 0 if kind == "min" else top
        z[:] = SYMMETRIC_ZERO if bits == 8 else top if kind == "min" else 0
        m[:] = MULT_MAX
        x[:] = -128 if kind == "min" else 127
    elif kind == "zero":
        g = np.arange(kblk * n) // group
        q = z[:, g].reshape(rows, kblk, n).copy()
    elif kind == "m_zero":
        m[:] = 0
    elif kind == "equal_index":
        index[:] = rng.integers(0, block, size=(rows, kblk, 1))
    elif kind != "random":
        raise ValueError(f"kind must be one of {EXTREMES}, got {kind!r}")
    return SparseTile(n=n, bits=bits, group=group, q=q, index=index, m=m, z=z, x=x)
