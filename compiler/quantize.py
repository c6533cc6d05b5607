"""Compression of a float checkpoint into the integer model the accelerator runs.

SmoothQuant-style smoothing moves activation outliers of the norm outputs into
the weights of the projections that read them; then each linear op is pruned
N:16 per row (the N largest magnitudes of every 16 inputs of a row) and
quantized group-wise (a scale and a zero point per `scale_group` kept weights
of a row) to values the dequantizer expands to INT8; INT8 activation scales
come from a calibration batch run through the float model with the compressed
weights. The result (CompressedModel) is the model's definition for both the
packer and the reference; docs/numerics.md gives its arithmetic.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from compiler.attention_mask import attention_keys
from compiler.checkpoint import Checkpoint
from compiler.compression import Compression
from compiler.model_config import ModelConfig
from hwmodel.dequant import SCALE_BYTES, dequantize_codes, fixed_scale, scale_value
from hwmodel.errors import CheckpointError
from hwmodel.isa import INT8_MAX, SCORE_DIVISOR

QMAX = INT8_MAX
SMOOTH_ALPHA = 0.5
LINEARS = ("q", "k", "v", "o", "gate", "up", "down")
HF = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
      "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
OP_KIND = {"q": "qkv", "k": "qkv", "v": "qkv", "o": "o", "gate": "up", "up": "up", "down": "down",
           "lm_head": "lm_head"}


@dataclass
class QuantLinear:
    """One compressed linear op: codes of the kept weights, where they are, and
    how they dequantize (hwmodel.dequant): w8 = sat((m * (code - zero) + r) >> sh),
    w = row_scale * w8."""
    codes: np.ndarray       # uint8 [out, in], 0 where pruned
    mask: np.ndarray        # bool [out, in], True where kept (N of every 16 inputs of a row)
    scales: np.ndarray      # uint8 [out, groups, 2]: fixed-point scale (m, sh) of each group
    zeros: np.ndarray       # uint8 [out, groups]
    row_scale: np.ndarray   # float32 [out]
    requant: np.ndarray     # float32 [out]: INT32 accumulator -> output (INT8 units, or real for gate/logits)
    n: int
    bits: int
    order: np.ndarray       # int64 [in]: the input order along which kept weights form scale groups


@dataclass
class CompressedModel:
    model: ModelConfig
    compression: str
    scale_group: int
    attn_block: int
    attn_density: tuple[float, ...]                     # kept fraction of causal blocks, per decoder layer
    rope_theta: float
    norm_eps: float
    scales: dict[str, float]                            # activation scales by name (docs/numerics.md)
    embed: np.ndarray                                   # int8 [vocab, hidden] at scale `res`
    norms: dict[str, np.ndarray]                        # smoothed gains, float32 [hidden]
    linears: dict[str, QuantLinear] = field(default_factory=dict)   # "L0.q", ..., "lm_head"


def dequantize(q: QuantLinear, group: int) -> np.ndarray:
    """The INT8 weights [out, in] a compressed linear op stands for (zeros where pruned)."""
    out = np.zeros(q.codes.shape, np.int64)
    for r in range(q.codes.shape[0]):
        cols = q.order[q.mask[r, q.order]]
        g = np.arange(len(cols)) // group
        out[r, cols] = dequantize_codes(q.codes[r, cols], q.zeros[r, g], q.scales[r, g])
    return out


def prune_mask(w: np.ndarray, n: int, m: int = 16) -> np.ndarray:
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
    panel, head = f // 16 // grp, f // 16 % grp
    return (kv * grp + head) * hd + panel * 16 + f % 16


def quantize_linear(w: np.ndarray, n: int, bits: int, group: int, order: np.ndarray | None = None) -> QuantLinear:
    """Prune N:16 per row, then quantize each group of kept weights (in `order`) with
    its own scale and zero point. `order` must move whole 16-input blocks."""
    order = np.arange(w.shape[1]) if order is None else order
    mask = prune_mask(w, n) if n < 16 else np.ones(w.shape, bool)
    rows = w.shape[0]
    kept = mask.sum(axis=1)[0]
    groups = math.ceil(kept / group)
    codes = np.zeros(w.shape, np.uint8)
    scales = np.zeros((rows, groups, SCALE_BYTES), np.uint8)
    zeros = np.zeros((rows, groups), np.uint8)
    row_scale = (np.abs(w * mask).max(axis=1) / QMAX).astype(np.float32)
    row_scale[row_scale == 0] = 1.0
    levels = (1 << bits) - 1
    for r in range(rows):
        cols = order[mask[r, order]]
        u = w[r, cols] / row_scale[r]
        for gi in range(groups):
            part = slice(gi * group, min((gi + 1) * group, len(cols)))
            lo, hi = min(u[part].min(), 0.0), max(u[part].max(), 0.0)
            ms = fixed_scale(max(hi - lo, 1e-3) / levels)
            s = float(scale_value(ms))
            z = int(np.clip(np.rint(-lo / s), 0, levels))
            codes[r, cols[part]] = np.clip(np.rint(u[part] / s) + z, 0, levels)
            scales[r, gi], zeros[r, gi] = ms, z
    return QuantLinear(codes, mask, scales, zeros, row_scale, np.zeros(rows, np.float32), n, bits, order)


# ---- the float model used for smoothing statistics and calibration ------------
def rope_inv_freq(head_dim: int, theta: float) -> np.ndarray:
    return theta ** (-np.arange(0, head_dim // 2) * 2.0 / head_dim)


def _rope(x: np.ndarray, pos: np.ndarray, theta: float) -> np.ndarray:
    hd = x.shape[-1]
    ang = pos[:, None] * rope_inv_freq(hd, theta)[None, :]
    c, s = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    a, b = x[..., : hd // 2], x[..., hd // 2:]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


def _rms(x: np.ndarray, gain: np.ndarray, eps: float) -> np.ndarray:
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps) * gain


def float_forward(m: ModelConfig, w: dict[str, np.ndarray], norms: dict[str, np.ndarray], tokens: np.ndarray,
                  theta: float, eps: float, block: int, densities: tuple[float, ...],
                  record: dict[str, list]) -> None:
    """Run the float model over `tokens` (one sequence) and append each op input's
    values to `record[name]` (statistics only; no output needed)."""
    t, hd, g = len(tokens), m.head_dim, m.group
    pos = np.arange(t, dtype=np.float64)
    x = w["embed"][tokens].astype(np.float64)
    record.setdefault("res", []).append(x)
    for i in range(m.layers):
        p = f"L{i}."
        h = _rms(x, norms[p + "attn_norm"], eps)
        record.setdefault(p + "n1", []).append(h)
        q = (h @ w[p + "q"].T).reshape(t, m.heads, hd)
        k = (h @ w[p + "k"].T).reshape(t, m.kv_heads, hd)
        v = (h @ w[p + "v"].T).reshape(t, m.kv_heads, hd)
        q, k = _rope(q, pos, theta), _rope(k, pos, theta)
        for name, val in (("q", q), ("k", k), ("v", v)):
            record.setdefault(p + name, []).append(val.reshape(t, -1))
        att = np.zeros((t, m.heads, hd))
        for qi in range(t):
            keys = attention_keys(qi, block, densities[i])
            for head in range(m.heads):
                s = k[keys, head // g] @ q[qi, head] / math.sqrt(hd)
                e = np.exp(s - s.max())
                att[qi, head] = (e / e.sum()) @ v[keys, head // g]
        x = x + att.reshape(t, -1) @ w[p + "o"].T
        record["res"].append(x)
        h = _rms(x, norms[p + "ffn_norm"], eps)
        record.setdefault(p + "n2", []).append(h)
        gate, up = h @ w[p + "gate"].T, h @ w[p + "up"].T
        f = gate / (1 + np.exp(-gate)) * up
        record.setdefault(p + "h", []).append(f)
        x = x + f @ w[p + "down"].T
        record["res"].append(x)
    record.setdefault("fn", []).append(_rms(x, norms["final_norm"], eps))


def _hf(ck: Checkpoint) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Float weights and norm gains under our short names."""
    m, t = ck.model, ck.weights
    w = {"embed": t["model.embed_tokens.weight"], "lm_head": t["lm_head.weight"]}
    norms = {"final_norm": t["model.norm.weight"]}
    for i in range(m.layers):
        p = f"model.layers.{i}."
        for op, hf in HF.items():
            w[f"L{i}.{op}"] = t[p + hf + ".weight"].astype(np.float64)
        norms[f"L{i}.attn_norm"] = t[p + "input_layernorm.weight"].astype(np.float64)
        norms[f"L{i}.ffn_norm"] = t[p + "post_attention_layernorm.weight"].astype(np.float64)
    return w, norms


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
    w, norms = _hf(ck)
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
    embed = np.clip(np.rint(w["embed"] / scales["res"]), -QMAX, QMAX).astype(np.int8)
    cm = CompressedModel(m, comp.name, comp.scale_group, comp.attn_block, densities, ck.rope_theta,
                         ck.norm_eps, scales, embed, {k: v.astype(np.float32) for k, v in norms.items()}, linears)
    _set_requant(cm)
    return cm


def _set_requant(cm: CompressedModel) -> None:
    """Per-row multipliers from the INT32 accumulator to the op's output units."""
    s, m = cm.scales, cm.model
    for i in range(m.layers):
        p = f"L{i}."
        outs = {"q": (s[p + "n1"], s[p + "q"]), "k": (s[p + "n1"], s[p + "k"]), "v": (s[p + "n1"], s[p + "v"]),
                "o": (s[p + "v"], s["res"]), "gate": (s[p + "n2"], 1.0), "up": (s[p + "n2"], s[p + "h"]),
                "down": (s[p + "h"], s["res"])}
        for op, (s_in, s_out) in outs.items():
            q = cm.linears[p + op]
            q.requant = (np.float64(s_in) * q.row_scale / s_out).astype(np.float32)
    head = cm.linears["lm_head"]
    head.requant = (np.float64(s["fn"]) * head.row_scale).astype(np.float32)


def score_scale(cm: CompressedModel, layer: int) -> np.float32:
    """Softmax input = FP16(q.k / SCORE_DIVISOR) times this (docs/numerics.md)."""
    s = cm.scales
    return np.float32(s[f"L{layer}.q"] * s[f"L{layer}.k"] / math.sqrt(cm.model.head_dim) * SCORE_DIVISOR)


# ---- the compressed checkpoint file ------------------------------------------
def save_compressed(cm: CompressedModel, path: str | Path) -> Path:
    from safetensors.numpy import save_file

    tensors = {"embed": cm.embed}
    tensors.update({f"norm.{k}": v for k, v in cm.norms.items()})
    for name, q in cm.linears.items():
        for part in ("codes", "scales", "zeros", "row_scale", "requant", "order"):
            tensors[f"{name}.{part}"] = np.ascontiguousarray(getattr(q, part))
        tensors[f"{name}.mask"] = q.mask.astype(np.uint8)
    meta = {"model": asdict(cm.model), "compression": cm.compression, "scale_group": cm.scale_group,
            "attn_block": cm.attn_block, "attn_density": cm.attn_density, "rope_theta": cm.rope_theta,
            "norm_eps": cm.norm_eps, "scales": cm.scales,
            "formats": {k: [q.n, q.bits] for k, q in cm.linears.items()}}
    path = Path(path)
    save_file(tensors, str(path), metadata={"dspflight": json.dumps(meta)})
    return path


def load_compressed(path: str | Path) -> CompressedModel:
    from safetensors import safe_open
    from safetensors.numpy import load_file

    path = Path(path)
    try:
        with safe_open(str(path), "np") as f:
            meta = json.loads(f.metadata()["dspflight"])
        t = load_file(str(path))
    except Exception as exc:
        raise CheckpointError(f"{path}: not a compressed dspflight checkpoint ({exc})") from None
    model = ModelConfig(**meta["model"])
    linears = {}
    for name, (n, bits) in meta["formats"].items():
        parts = ("codes", "mask", "scales", "zeros", "row_scale", "requant", "order")
        missing = [p for p in parts if f"{name}.{p}" not in t]
        if missing:
            raise CheckpointError(f"{path}: tensor {name}.{missing[0]} is missing")
        linears[name] = QuantLinear(t[f"{name}.codes"], t[f"{name}.mask"].astype(bool), t[f"{name}.scales"],
                                    t[f"{name}.zeros"], t[f"{name}.row_scale"], t[f"{name}.requant"], n, bits,
                                    t[f"{name}.order"])
    norms = {k[5:]: v for k, v in t.items() if k.startswith("norm.")}
    return CompressedModel(model, meta["compression"], meta["scale_group"], meta["attn_block"],
                           tuple(meta["attn_density"]), meta["rope_theta"], meta["norm_eps"], meta["scales"],
                           t["embed"], norms, linears)
