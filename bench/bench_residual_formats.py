"""Benchmark: which number format the residual stream can live in, on a trained
model (SmolLM2-135M, uncompressed float weights).

The float model runs with fake-quantized activations: every op input the
integer model keeps in INT8 (norm outputs, q, k, v, FFN hidden, final norm)
is rounded to INT8 at one scale per tensor from a calibration batch, and the
residual stream (embedding and every add) is kept in one of: float, FP16
(what the accelerator does, docs/numerics.md), INT8 at one scale, INT8 at one
scale per channel. q and k are rounded after RoPE here (the integer model
rounds before and after it), so the rows measure formats, not the program.
Perplexity on the first N tokens of pydoc_data.topics, calibration on the 256
after them.

    .venv/bin/python bench/bench_residual_formats.py [--tokens 256]
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from compiler.weights.checkpoint import float_weights, load_checkpoint
from compiler.weights.float_model import float_forward
from compiler.weights.gguf import builtin_path
from dspflight.perplexity import CALIBRATION_TOKENS, default_text, nll_perplexity
from hwmodel.isa import INT8_MAX


def fake_int8(x: np.ndarray, scale) -> np.ndarray:
    return np.clip(np.rint(x / scale), -INT8_MAX, INT8_MAX) * scale


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=256)
    args = ap.parse_args()
    ck = load_checkpoint(builtin_path("smollm2"))
    m, eps = ck.model, ck.norm_eps
    w, norms = float_weights(ck)
    ids = np.asarray(ck.tokenizer.encode(default_text()).ids)
    tokens, calibration = ids[:args.tokens], ids[args.tokens:args.tokens + CALIBRATION_TOKENS].reshape(-1, 64)
    full = (1.0,) * m.layers

    def perplexity(quantize=None) -> float:
        fn = float_forward(m, w, norms, tokens, ck.rope_theta, eps, 64, full, quantize=quantize)
        return nll_perplexity(fn[:-1] @ w["lm_head"].T, tokens[1:])

    stats: dict[str, list] = {}
    res_max = np.zeros(m.hidden)

    def observe(name, x):
        nonlocal res_max
        if name == "res":
            res_max = np.maximum(res_max, np.abs(x).max(axis=0))
        return x

    for seq in calibration:
        float_forward(m, w, norms, seq, ck.rope_theta, eps, 64, full, stats, observe)
    scales = {k: max(np.abs(np.concatenate(v)).max(), 1e-6) / INT8_MAX for k, v in stats.items()}
    residual = {"float": lambda x: x,
                "FP16 (the accelerator)": lambda x: x.astype(np.float16).astype(np.float64),
                "INT8, one scale": lambda x: fake_int8(x, res_max.max() / INT8_MAX),
                "INT8, a scale per channel": lambda x: fake_int8(x, np.maximum(res_max, 1e-6) / INT8_MAX)}
    print(f"SmolLM2-135M, {args.tokens} tokens of pydoc_data.topics; largest residual value in calibration "
          f"{res_max.max():.0f}, median channel maximum {np.median(res_max):.1f}")
    print(f"{'activations':<34} {'residual stream':<28} {'perplexity':>12}")
    print(f"{'float':<34} {'float':<28} {perplexity():>12.3f}")
    for name, fmt in residual.items():
        ppl = perplexity(lambda n, x, fmt=fmt: fmt(x) if n == "res" else fake_int8(x, scales[n]))
        print(f"{'INT8, one scale per tensor':<34} {name:<28} {ppl:>12.6g}")
    print(f"reproduce: .venv/bin/python bench/bench_residual_formats.py --tokens {args.tokens}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
