"""The float forward pass of a LLaMA-style model: compression runs it to gather
smoothing statistics and activation scales (calibration), and perplexity
measures the uncompressed model with it.
"""
from __future__ import annotations

import math
from collections.abc import Callable

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


QUERY_ROWS = 256       # queries whose scores are taken at once (memory, and keys past the last are masked)


def _attention(q: np.ndarray, k: np.ndarray, v: np.ndarray, mask: np.ndarray, group: int) -> np.ndarray:
    """Masked softmax attention [tokens, heads, dim], query block by query block: a
    block's causal keys end at its last query."""
    t, heads, hd = q.shape
    kv = np.arange(heads) // group                       # the KV head of each query head
    att = np.empty_like(q)
    for q0 in range(0, t, QUERY_ROWS):
        q1 = min(t, q0 + QUERY_ROWS)
        s = np.einsum("qhd,khd->hqk", q[q0:q1], k[:q1, kv]) / math.sqrt(hd)
        s = np.where(mask[q0:q1, :q1], s, -np.inf)
        e = np.exp(s - s.max(axis=2, keepdims=True))
        att[q0:q1] = np.einsum("hqk,khd->qhd", e / e.sum(axis=2, keepdims=True), v[:q1, kv])
    return att


def float_forward(m: ModelConfig, w: dict[str, np.ndarray], norms: dict[str, np.ndarray], tokens: np.ndarray,
                  theta: float, eps: float, block: int, densities: tuple[float, ...],
                  record: dict[str, list] | None = None,
                  quantize: Callable[[str, np.ndarray], np.ndarray] | None = None) -> np.ndarray:
    """Run the float model over `tokens` (one sequence); returns the final norm's
    output [tokens, hidden] (the LM head's input) and appends each op input's values to `record[name]` if given
    (the statistics compression calibrates on). `quantize(name, x)`, if given, replaces each
    recorded tensor and the residual stream (`res`: the embedding and every add) by what it
    returns: fake quantization, to measure an activation format (bench/bench_residual_formats.py)."""
    record = {} if record is None else record

    def tap(name: str, x: np.ndarray) -> np.ndarray:
        if name != "res":
            record.setdefault(name, []).append(x)
        return quantize(name, x) if quantize else x

    t, hd, g = len(tokens), m.head_dim, m.group
    pos = np.arange(t, dtype=np.float64)
    x = tap("res", w["embed"][tokens].astype(np.float64))
    for i in range(m.layers):
        p = f"L{i}."
        h = tap(p + "n1", _rms(x, norms[p + "attn_norm"], eps))
        q = (h @ w[p + "q"].T).reshape(t, m.heads, hd)
        k = (h @ w[p + "k"].T).reshape(t, m.kv_heads, hd)
        v = (h @ w[p + "v"].T).reshape(t, m.kv_heads, hd)
        q, k = _rope(q, pos, theta), _rope(k, pos, theta)
        q, k, v = (tap(p + name, val.reshape(t, -1)).reshape(val.shape)
                   for name, val in (("q", q), ("k", k), ("v", v)))
        att = _attention(q, k, v, attention_mask(t, block, densities[i]), g)
        x = tap("res", x + att.reshape(t, -1) @ w[p + "o"].T)
        h = tap(p + "n2", _rms(x, norms[p + "ffn_norm"], eps))
        gate, up = h @ w[p + "gate"].T, h @ w[p + "up"].T
        f = tap(p + "h", gate / (1 + np.exp(-gate)) * up)
        x = tap("res", x + f @ w[p + "down"].T)
    return tap("fn", _rms(x, norms["final_norm"], eps))
