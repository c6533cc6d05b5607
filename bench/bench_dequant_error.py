"""Benchmark: what the fixed-point group scale (hwmodel.dequant: an 8-bit
multiplier and a shift) costs in accuracy against the FP16 group scale it
replaced, on the seeded tiny LLaMA (the checkpoint `dspflight execute` uses).

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

import numpy as np

from compiler.model_config import load_model
from compiler.weights.checkpoint import float_weights, load_checkpoint, write_random_llama
from compiler.weights.compress import LINEARS, OP_KIND
from compiler.weights.profile import load_compression
from compiler.weights.quantize import dequantize, quantize_linear
from hwmodel.hwconfig import load_hw
from hwmodel.isa import INT8_MAX


def fp16_scale_error(w: np.ndarray, mask: np.ndarray, row_scale: np.ndarray, bits: int, group: int,
                     order: np.ndarray) -> np.ndarray:
    """The replaced scheme: scale = FP16(range / levels), w8 = rint(fp32(scale) * (q - z))."""
    levels = (1 << bits) - 1
    out = np.zeros(w.shape)
    for r in range(w.shape[0]):
        cols = order[mask[r, order]]
        u = w[r, cols] / row_scale[r]
        for g0 in range(0, len(cols), group):
            part = slice(g0, g0 + group)
            lo, hi = min(u[part].min(), 0.0), max(u[part].max(), 0.0)
            s = np.float16(max(hi - lo, 1e-3) / levels)
            z = np.clip(np.rint(-lo / float(s)), 0, levels)
            q = np.clip(np.rint(u[part] / float(s)) + z, 0, levels)
            out[r, cols[part]] = np.clip(np.rint(np.float32(s) * (q - z).astype(np.float32)), -INT8_MAX, INT8_MAX)
    return out * row_scale[:, None]


def main() -> int:
    hw = load_hw("u280")
    comp = load_compression("flightllm", hw)
    with tempfile.TemporaryDirectory() as tmp:
        ck = load_checkpoint(write_random_llama(Path(tmp) / "tiny", load_model("tiny"), seed=0))
    w, _ = float_weights(ck)
    m = ck.model
    rows, totals = [], np.zeros(3)
    for layer in range(m.layers):
        err = np.zeros(3)            # squared errors: fixed, fp16; squared norm
        for op in LINEARS:
            name = f"L{layer}.{op}"
            fmt = comp.weight_format(OP_KIND[op], layer)
            q = quantize_linear(w[name], fmt.n, fmt.bits, comp.scale_group)
            ref = w[name] * q.mask
            fixed = dequantize(q, comp.scale_group) * q.row_scale[:, None]
            fp16 = fp16_scale_error(w[name], q.mask, q.row_scale, fmt.bits, comp.scale_group, q.order)
            err += [((fixed - ref) ** 2).sum(), ((fp16 - ref) ** 2).sum(), (ref ** 2).sum()]
        rows.append((layer, math.sqrt(err[1] / err[2]), math.sqrt(err[0] / err[2])))
        totals += err
    print(f"{'layer':>5} {'FP16 scale':>11} {'8-bit m >> sh':>14}   relative RMS weight error")
    for layer, old, new in rows:
        print(f"{layer:>5} {old:>11.4%} {new:>14.4%}")
    old, new = math.sqrt(totals[1] / totals[2]), math.sqrt(totals[0] / totals[2])
    print(f"{'all':>5} {old:>11.4%} {new:>14.4%}   ({new / old - 1:+.2%})")
    print("reproduce: .venv/bin/python bench/bench_dequant_error.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
