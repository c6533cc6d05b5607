"""Benchmark: what the fixed-point group scale (hwmodel.dequant: an 8-bit
multiplier and a shift) costs in accuracy against the FP16 group scale it
replaced, on the seeded tiny LLaMA (the checkpoint `dspflight execute` uses),
and what a candidate that is cheaper in hardware would cost: a power-of-two
group scale, `w8 = (q - z) << e` (FlightLLM's bit-width expander: no
multiplier, 35 LUT per lane against 252, docs/rtl.md), its codes clipped
by the quantizer so that no weight leaves [-127, 127]; and the other way out
of the lane's multiplier: the DSP multiplies the integer `q - z` and each
group's integer sum is scaled by `m / 2^sh` once (no weight rounded to INT8),
whose error is that of the codes alone.

Per decoder layer: the relative RMS error of the dequantized weights (row
scale x INT8) against the pruned float weights, over all its linear ops,
with each scheme quantizing the same weights; then the whole model.

    .venv/bin/python bench/bench_dequant_error.py
"""
from __future__ import annotations

import math
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np

from compiler.model_config import load_model
from compiler.weights.checkpoint import float_weights, load_checkpoint, write_random_llama
from compiler.weights.compress import LINEARS, OP_KIND
from compiler.weights.profile import load_compression
from compiler.weights.quantize import QuantLinear, dequantize, kept_columns, quantize_linear
from hwmodel.dequant import scale_value
from hwmodel.hwconfig import load_hw
from hwmodel.isa import INT8_MAX


def by_group(w: np.ndarray, mask: np.ndarray, row_scale: np.ndarray, group: int, order: np.ndarray,
             expand: Callable[[np.ndarray, float, float], np.ndarray]) -> np.ndarray:
    """The weights a scheme gives: `expand(u, lo, hi)` maps each group's kept
    weights in INT8 units (`u`, range [lo, hi] including 0) to their dequantized values."""
    out = np.zeros(w.shape)
    for r in range(w.shape[0]):
        cols = order[mask[r, order]]
        u = w[r, cols] / row_scale[r]
        for g0 in range(0, len(cols), group):
            part = slice(g0, g0 + group)
            out[r, cols[part]] = expand(u[part], min(u[part].min(), 0.0), max(u[part].max(), 0.0))
    return out * row_scale[:, None]


def fp16_scale(levels: int) -> Callable[[np.ndarray, float, float], np.ndarray]:
    """The replaced scheme: scale = FP16(range / levels), w8 = rint(fp32(scale) * (q - z))."""
    def expand(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
        s = np.float16(max(hi - lo, 1e-3) / levels)
        z = np.clip(np.rint(-lo / float(s)), 0, levels)
        q = np.clip(np.rint(u / float(s)) + z, 0, levels)
        return np.clip(np.rint(np.float32(s) * (q - z).astype(np.float32)), -INT8_MAX, INT8_MAX)
    return expand


def power_of_two(levels: int) -> Callable[[np.ndarray, float, float], np.ndarray]:
    """The candidate: step 2^e, the smallest power of two whose levels cover the
    group's range; z = rint(-lo / 2^e); codes clipped to keep (q - z) << e in INT8."""
    def expand(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
        e = max(0, math.ceil(math.log2(max(hi - lo, 1e-3) / levels)))
        z = min(max(round(-lo / 2 ** e), 0), levels)
        reach = INT8_MAX >> e
        q = np.clip(np.rint(u / 2 ** e) + z, max(0, z - reach), min(levels, z + reach))
        return (q - z) * 2 ** e
    return expand


def group_sum_error(q: QuantLinear, group: int) -> np.ndarray:
    """The candidate that scales sums: weights m / 2^sh * (q - z), exactly."""
    out = np.zeros(q.codes.shape)
    cols = kept_columns(q.mask, q.order)
    g = np.arange(cols.shape[1]) // group
    rows = np.arange(len(cols))[:, None]
    diff = q.codes[rows, cols].astype(np.int64) - q.zeros[:, g].astype(np.int64)
    out[rows, cols] = scale_value(q.scales[:, g]) * diff
    return out * q.row_scale[:, None]


def main() -> int:
    hw = load_hw("u280")
    comp = load_compression("flightllm", hw)
    with tempfile.TemporaryDirectory() as tmp:
        ck = load_checkpoint(write_random_llama(Path(tmp) / "tiny", load_model("tiny"), seed=0))
    w, _ = float_weights(ck)
    m = ck.model
    rows, totals = [], np.zeros(5)
    for layer in range(m.layers):
        err = np.zeros(5)            # squared errors: fixed, fp16, power of two, group sums; squared norm
        for op in LINEARS:
            name = f"L{layer}.{op}"
            fmt = comp.weight_format(OP_KIND[op], layer)
            q = quantize_linear(w[name], fmt.n, fmt.bits, comp.scale_group)
            ref = w[name] * q.mask
            fixed = dequantize(q, comp.scale_group) * q.row_scale[:, None]
            levels = (1 << fmt.bits) - 1
            fp16 = by_group(w[name], q.mask, q.row_scale, comp.scale_group, q.order, fp16_scale(levels))
            pow2 = by_group(w[name], q.mask, q.row_scale, comp.scale_group, q.order, power_of_two(levels))
            sums = group_sum_error(q, comp.scale_group)
            err += [((fixed - ref) ** 2).sum(), ((fp16 - ref) ** 2).sum(), ((pow2 - ref) ** 2).sum(),
                    ((sums - ref) ** 2).sum(), (ref ** 2).sum()]
        rows.append((layer, *(math.sqrt(err[k] / err[4]) for k in (1, 0, 2, 3))))
        totals += err
    print(f"{'layer':>5} {'FP16 scale':>11} {'8-bit m >> sh':>14} {'(q - z) << e':>13} {'scaled sums':>12}"
          f"   relative RMS weight error")
    for layer, old, new, pow2, sums in rows:
        print(f"{layer:>5} {old:>11.4%} {new:>14.4%} {pow2:>13.4%} {sums:>12.4%}")
    old, new, pow2, sums = (math.sqrt(totals[k] / totals[4]) for k in (1, 0, 2, 3))
    print(f"{'all':>5} {old:>11.4%} {new:>14.4%} {pow2:>13.4%} {sums:>12.4%}   against FP16: m >> sh "
          f"{new / old - 1:+.2%}, << e {pow2 / old - 1:+.2%}, scaled sums {sums / old - 1:+.2%}")
    print("reproduce: .venv/bin/python bench/bench_dequant_error.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
