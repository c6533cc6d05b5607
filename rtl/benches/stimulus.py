"""Random stimulus for the matrix engine's benches, extremes included."""
from __future__ import annotations

import numpy as np

from hwmodel.dequant import MULT_BITS, SHIFT_MAX, fixed_scale
from hwmodel.gateware.tile_stream import SparseTile

EXTREMES = ("random", "fitted", "min", "max", "zero", "m_zero", "shift_max", "equal_index")
M_MAX = (1 << MULT_BITS) - 1


def random_tile(rng: np.random.Generator, *, n: int, bits: int, rows: int, kblk: int, tokens: int,
                chain_length: int, group: int | None = None, block: int = 16, kind: str = "random") -> SparseTile:
    """A tile of random N:16 codes, group scales and INT8 activations, one (m, sh, z)
    per `group` non-zeros of a row (default: one per beat of `chain_length`).
    `random` draws m, sh, z and the codes uniformly (most weights saturate or vanish);
    `fitted` takes (m, sh) from hwmodel.dequant.fixed_scale of real scales up to
    254 / (2^b - 1), the quantizer's largest (a group's w8 range over the codes'). `kind` forces an
    extreme: `min`/`max` give every weight -127 / 127 (q = 0, z = 2^b-1 or the
    reverse, m = 255, sh = 0) and the activations -128 / 127; `zero` sets every code
    to its zero point, `m_zero` every multiplier to 0; `shift_max` uses sh = 15
    (sub-unit scales: rounding decides); `equal_index` makes every non-zero of a
    block read the same column."""
    top = (1 << bits) - 1
    group = chain_length if group is None else group
    groups = -(-kblk * n // group)
    q = rng.integers(0, top + 1, size=(rows, kblk, n))
    m = rng.integers(0, M_MAX + 1, size=(rows, groups))
    sh = rng.integers(0, SHIFT_MAX + 1, size=(rows, groups))
    z = rng.integers(0, top + 1, size=(rows, groups))
    index = np.sort(np.stack([rng.permutation(block)[:n] for _ in range(rows * kblk)]), axis=1)
    index = index.reshape(rows, kblk, n)
    x = rng.integers(-128, 128, size=(tokens, kblk * block))
    if kind == "fitted":
        fit = fixed_scale(rng.uniform(0.05, 1.0, size=(rows, groups)) * 254 / top).astype(np.int64)
        m, sh = fit[..., 0], fit[..., 1]
    elif kind in ("min", "max"):
        q[:] = 0 if kind == "min" else top
        z[:] = top if kind == "min" else 0
        m[:], sh[:] = M_MAX, 0
        x[:] = -128 if kind == "min" else 127
    elif kind == "zero":
        g = np.arange(kblk * n) // group
        q = z[:, g].reshape(rows, kblk, n).copy()
    elif kind == "m_zero":
        m[:] = 0
    elif kind == "shift_max":
        sh[:] = SHIFT_MAX
    elif kind == "equal_index":
        index[:] = rng.integers(0, block, size=(rows, kblk, 1))
    elif kind != "random":
        raise ValueError(f"kind must be one of {EXTREMES}, got {kind!r}")
    return SparseTile(n=n, bits=bits, group=group, q=q, index=index, m=m, sh=sh, z=z, x=x)
