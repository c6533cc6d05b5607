"""Per-op pruning and quantization: N of every M inputs of a row kept (the
largest magnitudes), then each group of `scale_group` kept weights quantized
with its own 8-bit multiplier and zero point, under one exponent per row, to
codes the dequantizer turns into INT8 differences (`hwmodel.dequant`;
docs/numerics.md gives the arithmetic).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.model_config import ModelConfig
from hwmodel.dequant import SYMMETRIC_ZERO, row_multipliers, scaled_weights
from hwmodel.hwconfig import BLOCK
from hwmodel.isa import INT8_MAX

QMAX = INT8_MAX


@dataclass
class QuantLinear:
    """One compressed linear op: codes of the kept weights, where they are, and
    how they dequantize (hwmodel.dequant): w = row_scale * m * wrap8(code - zero)."""
    codes: np.ndarray       # uint8 [out, in], 0 where pruned
    mask: np.ndarray        # bool [out, in], True where kept (N of every 16 inputs of a row)
    scales: np.ndarray      # uint8 [out, groups]: each group's multiplier m
    zeros: np.ndarray       # uint8 [out, groups]
    row_scale: np.ndarray   # float32 [out]: the real value of one unit of m * (code - zero)
    requant: np.ndarray     # float32 [out]: accumulator -> output (INT8 units, or real for gate/logits)
    n: int
    bits: int
    order: np.ndarray       # int64 [in]: the input order along which kept weights form scale groups


def kept_columns(mask: np.ndarray, order: np.ndarray) -> np.ndarray:
    """[rows, kept]: each row's kept columns, in `order` (every row keeps as many)."""
    rows = mask.shape[0]
    return np.broadcast_to(order, mask.shape)[mask[:, order]].reshape(rows, -1)


def dequantize(q: QuantLinear, group: int) -> np.ndarray:
    """The integer weights m * d [out, in] a compressed linear op stands for, in
    units of its row scale (zeros where pruned)."""
    out = np.zeros(q.codes.shape, np.int64)
    cols = kept_columns(q.mask, q.order)
    g = np.arange(cols.shape[1]) // group
    rows = np.arange(len(cols))[:, None]
    out[rows, cols] = scaled_weights(q.codes[rows, cols], q.zeros[:, g], q.scales[:, g])
    return out


def prune_mask(w: np.ndarray, n: int, m: int = BLOCK) -> np.ndarray:
    """Keep the n largest magnitudes of every m consecutive inputs of each row."""
    rows, cols = w.shape
    blocks = np.abs(w).reshape(rows, cols // m, m)
    order = np.argsort(-blocks, axis=2, kind="stable")[:, :, :n]
    mask = np.zeros_like(blocks, dtype=bool)
    np.put_along_axis(mask, order, True, axis=2)
    return mask.reshape(rows, cols)


def head_panel_order(m: ModelConfig) -> np.ndarray:
    """Attention features in the order the accelerator produces them: per KV head,
    16-dim panels, within a panel the query heads (docs/numerics.md)."""
    hd, grp = m.head_dim, m.group
    f = np.arange(m.hidden)
    kv, f = f // (grp * hd), f % (grp * hd)
    panel, head = f // BLOCK // grp, f // BLOCK % grp
    return (kv * grp + head) * hd + panel * BLOCK + f % BLOCK


def quantize_linear(w: np.ndarray, n: int, bits: int, group: int, order: np.ndarray | None = None) -> QuantLinear:
    """Prune N:16 per row, then quantize each group of kept weights (in `order`) with
    its own multiplier and zero point (asymmetric; symmetric at 8 bits, so that
    |code - zero| <= 127 always). `order` must move whole 16-input blocks."""
    order = np.arange(w.shape[1]) if order is None else order
    mask = prune_mask(w, n) if n < BLOCK else np.ones(w.shape, bool)
    rows = w.shape[0]
    kept = mask.sum(axis=1)[0]
    groups = math.ceil(kept / group)
    codes = np.zeros(w.shape, np.uint8)
    unit = np.abs(w * mask).max(axis=1) / QMAX          # weights in INT8 units: |u| <= 127
    unit[unit == 0] = 1.0
    levels = (1 << bits) - 1
    cols = kept_columns(mask, order)
    u = np.take_along_axis(w, cols, axis=1) / unit[:, None]
    padded = np.zeros((rows, groups * group))          # zeros change no group's range: it always holds 0
    padded[:, :kept] = u
    lo = np.minimum(padded.reshape(rows, groups, group).min(axis=2), 0.0)
    hi = np.maximum(padded.reshape(rows, groups, group).max(axis=2), 0.0)
    symmetric = bits == 8
    spread = np.maximum(-lo, hi) / QMAX if symmetric else (hi - lo) / levels
    m, e = row_multipliers(np.maximum(spread, 1e-3 / levels))
    step = m / 2.0 ** e[:, None]
    z = np.full(step.shape, SYMMETRIC_ZERO) if symmetric else np.clip(np.rint(-lo / step), 0, levels)
    g = np.arange(kept) // group
    lowest = 1 if symmetric else 0                     # 8 bits: code - 128 >= -127
    codes[np.arange(rows)[:, None], cols] = np.clip(np.rint(u / step[:, g]) + z[:, g], lowest, levels)
    row_scale = (unit / 2.0 ** e).astype(np.float32)
    return QuantLinear(codes, mask, m, z.astype(np.uint8), row_scale, np.zeros(rows, np.float32), n, bits, order)
