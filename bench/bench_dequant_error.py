"""Benchmark: what the dequantization of hwmodel.dequant (codes minus zero
point into the DSP, an 8-bit multiplier per scale group applied to the
group's integer sum, one exponent per row folded into the row's real scale)
costs in accuracy against the FP16 group scale of the original design, on
the seeded tiny LLaMA (the checkpoint `dspflight execute` uses); and what
two other schemes cost: the one it replaced, an INT8 weight per code
(`w8 = sat127(rint(m (q - z) / 2^sh))`, an 8-bit multiplier and a shift per
group: a multiplier per lane, 252 LUT, docs/rtl.md), and a power-of-two
group scale, `w8 = (q - z) << e` (FlightLLM's bit-width expander: no
multiplier, 35 LUT per lane), its codes clipped by the quantizer so that no
weight leaves [-127, 127].

Per decoder layer: the relative RMS error of the dequantized weights against
the pruned float weights, over all its linear ops, with each scheme
quantizing the same weights; then the whole model.

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
from compiler.weights.quantize import dequantize, quantize_linear
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


def rounded_fixed(levels: int) -> Callable[[np.ndarray, float, float], np.ndarray]:
    """The replaced scheme: scale m / 2^sh (8-bit m, the largest shift <= 15 that
    fits), w8 = sat127(rint(m (q - z) / 2^sh)), an INT8 weight per code."""
    def expand(u: np.ndarray, lo: float, hi: float) -> np.ndarray:
        s = max(hi - lo, 1e-3) / levels
        sh = min(15, max(0, math.floor(math.log2(255 / s))))
        sh -= round(s * 2 ** sh) > 255 and sh > 0
        step = min(round(s * 2 ** sh), 255) / 2 ** sh
        z = min(max(round(-lo / step), 0), levels)
        q = np.clip(np.rint(u / step) + z, 0, levels)
        return np.clip(np.floor((q - z) * step + 0.5), -INT8_MAX, INT8_MAX)
    return expand


def main() -> int:
    hw = load_hw("u280")
    comp = load_compression("flightllm", hw)
    with tempfile.TemporaryDirectory() as tmp:
        ck = load_checkpoint(write_random_llama(Path(tmp) / "tiny", load_model("tiny"), seed=0))
    w, _ = float_weights(ck)
    m = ck.model
    rows, totals = [], np.zeros(5)
    for layer in range(m.layers):
        err = np.zeros(5)            # squared errors: FP16, rounded fixed, power of two, hwmodel.dequant; norm
        for op in LINEARS:
            name = f"L{layer}.{op}"
            fmt = comp.weight_format(OP_KIND[op], layer)
            q = quantize_linear(w[name], fmt.n, fmt.bits, comp.scale_group)
            ref = w[name] * q.mask
            unit = np.abs(ref).max(axis=1) / INT8_MAX
            unit[unit == 0] = 1.0
            levels = (1 << fmt.bits) - 1
            schemes = [by_group(w[name], q.mask, unit, comp.scale_group, q.order, expand(levels))
                       for expand in (fp16_scale, rounded_fixed, power_of_two)]
            schemes.append(dequantize(q, comp.scale_group) * q.row_scale[:, None].astype(np.float64))
            err += [((x - ref) ** 2).sum() for x in schemes] + [(ref ** 2).sum()]
        rows.append((layer, *(math.sqrt(err[k] / err[4]) for k in range(4))))
        totals += err
    print(f"{'layer':>5} {'FP16 scale':>11} {'INT8 m >> sh':>13} {'(q - z) << e':>13} {'hwmodel.dequant':>16}"
          f"   relative RMS weight error")
    for layer, *errs in rows:
        print(f"{layer:>5} {errs[0]:>11.4%} {errs[1]:>13.4%} {errs[2]:>13.4%} {errs[3]:>16.4%}")
    old, fixed, pow2, now = (math.sqrt(totals[k] / totals[4]) for k in range(4))
    print(f"{'all':>5} {old:>11.4%} {fixed:>13.4%} {pow2:>13.4%} {now:>16.4%}   against FP16: INT8 m >> sh "
          f"{fixed / old - 1:+.2%}, << e {pow2 / old - 1:+.2%}, hwmodel.dequant {now / old - 1:+.2%}")
    print("reproduce: .venv/bin/python bench/bench_dequant_error.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
