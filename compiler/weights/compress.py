"""Compression of a float checkpoint into the integer model the accelerator runs
(the algorithm; `profile` says what to apply where).

SmoothQuant-style smoothing moves activation outliers of the norm outputs into
the weights of the projections that read them; then each linear op is pruned
and quantized (`quantize`); INT8 activation scales come from a calibration
batch run through the float model (`float_model`) with the compressed weights.
The residual stream stays FP16 (real values), so the embedding table is FP16
and o/down produce real values.
"""
from __future__ import annotations

import numpy as np

from compiler.weights.checkpoint import Checkpoint, float_weights
from compiler.weights.compressed import CompressedModel
from compiler.weights.float_model import float_forward
from compiler.weights.profile import Compression
from compiler.weights.quantize import QMAX, dequantize, head_panel_order, quantize_linear
from hwmodel.errors import CheckpointError
from hwmodel.isa import FP16_MAX

SMOOTH_ALPHA = 0.5
LINEARS = ("q", "k", "v", "o", "gate", "up", "down")
OP_KIND = {"q": "qkv", "k": "qkv", "v": "qkv", "o": "o", "gate": "up", "up": "up", "down": "down",
           "lm_head": "lm_head"}


def _absmax(record: dict[str, list], name: str, axis=None) -> np.ndarray:
    return np.max([np.abs(v).max(axis=axis) for v in record[name]], axis=0)


def compress(ck: Checkpoint, comp: Compression, calibration: np.ndarray) -> CompressedModel:
    """Smooth, prune, quantize and calibrate a LLaMA-style checkpoint.
    `calibration` is a [sequences, tokens] array of token ids."""
    m = ck.model
    if m.positional != "rope" or m.norm != "rmsnorm" or not m.gated_ffn:
        raise CheckpointError(f"{m.source}: only LLaMA-style models (RoPE, RMSNorm, gated FFN) are compressed "
                              f"for numerical execution")
    densities = comp.attn_densities(m)
    w, norms = float_weights(ck)
    args = (ck.rope_theta, ck.norm_eps, comp.attn_block, densities)
    stats: dict[str, list] = {}
    for seq in calibration:
        float_forward(m, w, norms, seq, *args, stats)
    for i in range(m.layers):            # SmoothQuant: x' = x / s, W' = W * s per input channel
        p = f"L{i}."
        for src, consumers in (("n1", ("q", "k", "v")), ("n2", ("gate", "up"))):
            act = _absmax(stats, p + src, axis=0)
            wmax = np.max([np.abs(w[p + c]).max(axis=0) for c in consumers], axis=0)
            s = np.clip(act ** SMOOTH_ALPHA / np.maximum(wmax, 1e-8) ** (1 - SMOOTH_ALPHA), 1e-2, 1e2)
            for c in consumers:
                w[p + c] = w[p + c] * s[None, :]
            norm = "attn_norm" if src == "n1" else "ffn_norm"
            norms[p + norm] = norms[p + norm] / s
    linears = {}
    for name in [f"L{i}.{op}" for i in range(m.layers) for op in LINEARS] + ["lm_head"]:
        layer = int(name[1:name.index(".")]) if name.startswith("L") else -1
        fmt = comp.weight_format(OP_KIND[name.split(".")[-1]], layer)
        order = head_panel_order(m) if name.endswith(".o") else None
        linears[name] = quantize_linear(w[name], fmt.n, fmt.bits, comp.scale_group, order)
        w[name] = (dequantize(linears[name], comp.scale_group) * linears[name].row_scale[:, None]).astype(np.float64)
    stats = {}
    for seq in calibration:
        float_forward(m, w, norms, seq, *args, stats)
    scales = {k: float(max(_absmax(stats, k), 1e-6) / QMAX) for k in stats}
    embed = np.clip(w["embed"], -FP16_MAX, FP16_MAX).astype(np.float16)
    cm = CompressedModel(m, comp.name, comp.scale_group, comp.attn_block, densities, ck.rope_theta,
                         ck.norm_eps, scales, embed, {k: v.astype(np.float32) for k, v in norms.items()}, linears)
    _set_requant(cm)
    return cm


def _set_requant(cm: CompressedModel) -> None:
    """Per-row multipliers from the accumulator to the op's output units."""
    s, m = cm.scales, cm.model
    for i in range(m.layers):
        p = f"L{i}."
        outs = {"q": (s[p + "n1"], s[p + "q"]), "k": (s[p + "n1"], s[p + "k"]), "v": (s[p + "n1"], s[p + "v"]),
                "o": (s[p + "v"], 1.0), "gate": (s[p + "n2"], 1.0), "up": (s[p + "n2"], s[p + "h"]),
                "down": (s[p + "h"], 1.0)}
        for op, (s_in, s_out) in outs.items():
            q = cm.linears[p + op]
            q.requant = (np.float64(s_in) * q.row_scale / s_out).astype(np.float32)
    head = cm.linears["lm_head"]
    head.requant = (np.float64(s["fn"]) * head.row_scale).astype(np.float32)
