"""The float forward pass of a LLaMA-style model, which compression runs to
gather smoothing statistics and activation scales (calibration).
"""
from __future__ import annotations

import math

import numpy as np

from compiler.attention_mask import attention_keys
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
