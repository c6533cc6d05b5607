"""The float forward pass of a LLaMA-style model: compression runs it to gather
smoothing statistics and activation scales (calibration), and perplexity
measures the uncompressed model with it.
"""
from __future__ import annotations

import math

import numpy as np

from compiler.attention_mask import kept_ranges
from compiler.model_config import ModelConfig


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


def attention_mask(t: int, block: int, density: float) -> np.ndarray:
    """[t, t] bool: the keys each query of a sequence attends to (block-sparse, causal)."""
    mask = np.zeros((t, t), bool)
    for qb in range(0, t, block):            # one query block shares its kept key ranges
        for s, e in kept_ranges(qb // block, density, block, t):
            mask[qb:qb + block, s:e] = True
    return np.tril(mask)


def float_forward(m: ModelConfig, w: dict[str, np.ndarray], norms: dict[str, np.ndarray], tokens: np.ndarray,
                  theta: float, eps: float, block: int, densities: tuple[float, ...],
                  record: dict[str, list] | None = None) -> np.ndarray:
    """Run the float model over `tokens` (one sequence); returns the final norm's
    output [tokens, hidden] (the LM head's input) and appends each op input's values to `record[name]` if given
    (the statistics compression calibrates on)."""
    record = {} if record is None else record
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
        mask = attention_mask(t, block, densities[i])
        kv = np.arange(m.heads) // g                       # the KV head of each query head
        s = np.einsum("qhd,khd->hqk", q, k[:, kv]) / math.sqrt(hd)
        s = np.where(mask, s, -np.inf)
        e = np.exp(s - s.max(axis=2, keepdims=True))
        att = np.einsum("hqk,khd->qhd", e / e.sum(axis=2, keepdims=True), v[:, kv])
        x = x + att.reshape(t, -1) @ w[p + "o"].T
        record["res"].append(x)
        h = _rms(x, norms[p + "ffn_norm"], eps)
        record.setdefault(p + "n2", []).append(h)
        gate, up = h @ w[p + "gate"].T, h @ w[p + "up"].T
        f = gate / (1 + np.exp(-gate)) * up
        record.setdefault(p + "h", []).append(f)
        x = x + f @ w[p + "down"].T
        record["res"].append(x)
    fn = _rms(x, norms["final_norm"], eps)
    record.setdefault("fn", []).append(fn)
    return fn
