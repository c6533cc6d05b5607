"""Reference forward pass of a compressed model, in plain numpy.

Written apart from the compiler and the functional executor: it imports only
`hwmodel` conventions and re-derives every rule from docs/numerics.md (weight
dequantization and its scale-group order, the block-sparse causal mask, RoPE
angles, the score scale), so a bug on one side cannot pass both. Natural
layouts ([tokens, features] activations, [out, in] weights, [position, head,
dim] KV cache), one matmul per projection. Integer paths (INT8 code differences
scaled per group, exact integer sums, FP32 requantization) and the FP16 residual stream (FP16 embeddings, o/down
outputs and adds, saturating at the largest finite FP16) are the model's
definition. The
special functions (norm, RoPE, softmax, SiLU) run in one of two ways:
`sfu="fp16"` mirrors the accelerator's FP16 unit (FP16 inputs and outputs, FP32
inside, exact sums), so the executor must agree bit for bit; `sfu="float64"`
computes them ideally, which bounds what the FP16 unit costs.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

import numpy as np

from hwmodel.errors import DspflightError
from hwmodel.exact_products import exact_float
from hwmodel.isa import FP16_MAX, INT8_MAX, SCORE_DIVISOR


# What the FP16 unit may cost against ideal special functions, same history
# (docs/numerics.md; measured 0.046 and 0.043 on the tiny model): after any layer,
# the residual stream's largest difference over its largest magnitude, and its
# mean difference over its mean magnitude.
FP16_MAX_REL = 0.08
FP16_MEAN_REL = 0.06


# ---- what the reference reads of a compressed model (duck-typed: no compiler import) ----
class ModelShape(Protocol):
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    vocab: int
    max_context: int


class QuantizedLinear(Protocol):
    codes: np.ndarray       # b-bit codes [out, in], 0 where pruned
    mask: np.ndarray        # bool [out, in]: kept weights
    scales: np.ndarray      # uint8 [out, groups]: multiplier m of each group
    zeros: np.ndarray       # zero points [out, groups]
    requant: np.ndarray     # FP32 [out]: accumulator -> output units


class Compressed(Protocol):
    model: ModelShape
    scale_group: int
    attn_block: int
    attn_density: Sequence[float]       # per decoder layer
    rope_theta: float
    norm_eps: float
    scales: Mapping[str, float]         # activation scales by name
    embed: np.ndarray                   # FP16 [vocab, hidden]: real values
    norms: Mapping[str, np.ndarray]     # FP32 gains [hidden]
    linears: Mapping[str, QuantizedLinear]


# ---- the compressed model's rules, from docs/numerics.md ------------------------------
def head_shape(m: ModelShape) -> tuple[int, int]:
    """(head_dim, query heads per KV head): derived here, not read from the compiler's config."""
    return m.hidden // m.heads, m.heads // m.kv_heads


def attention_output_order(m: ModelShape) -> np.ndarray:
    """Model column of each attention output feature as the accelerator produces it
    (per KV head: 16-dim panels, within a panel the query heads); `o` forms its
    scale groups in this order."""
    hd, grp = head_shape(m)
    j = np.arange(m.hidden)
    kv, f = j // (grp * hd), j % (grp * hd)
    head, panel = f // 16 % grp, f // (16 * grp)
    return (kv * grp + head) * hd + panel * 16 + f % 16


def dequantize(q: QuantizedLinear, group: int, order: np.ndarray) -> np.ndarray:
    """Integer weights [out, in] (0 where pruned): a row's kept weights, taken in
    `order`, form scale groups of `group`; a weight is its group's m times
    (code - zero) read as 8-bit two's complement."""
    kept = q.mask[:, order]
    g = np.maximum(np.cumsum(kept, axis=1) - 1, 0) // group
    m = np.take_along_axis(q.scales, g, axis=1).astype(np.int64)
    z = np.take_along_axis(q.zeros, g, axis=1).astype(np.int64)
    d = (q.codes[:, order].astype(np.int64) - z) & 0xFF
    out = np.zeros(q.codes.shape, np.int64)
    out[:, order] = np.where(kept, m * np.where(d > INT8_MAX, d - 256, d), 0)
    return out


def attended_keys(pos: int, block: int, density: float) -> np.ndarray:
    """Key positions a query at `pos` attends to: block 0 (the sink) and the most
    recent of its causal blocks, density x causal of them (binary64, rounded up), at least two."""
    qb = pos // block
    causal = qb + 1
    keep = min(causal, max(2, math.ceil(density * causal)))
    blocks = [0] + list(range(causal - keep + 1, causal))
    keys = np.concatenate([np.arange(b * block, (b + 1) * block) for b in blocks])
    return keys[keys <= pos]


def rope_angles(pos: np.ndarray, head_dim: int, theta: float) -> np.ndarray:
    """[position, i] (binary64): model dims i and i + head_dim/2 of a head rotate by
    pos * theta^(-2i/head_dim)."""
    inv_freq = theta ** (-np.arange(head_dim // 2) * 2.0 / head_dim)
    return pos[:, None].astype(np.float64) * inv_freq[None, :]


def score_scale(scales: Mapping[str, float], layer: int, head_dim: int) -> np.float32:
    """Softmax input per FP16(q.k / SCORE_DIVISOR): s_q s_k / sqrt(head_dim) x SCORE_DIVISOR,
    in binary64, rounded once to FP32."""
    return np.float32(scales[f"L{layer}.q"] * scales[f"L{layer}.k"] / math.sqrt(head_dim) * SCORE_DIVISOR)


def _sat8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -INT8_MAX, INT8_MAX).astype(np.int64)


def _sat16(x: np.ndarray) -> np.ndarray:
    """An FP16 value of the residual stream: FP32 rounded once, saturating at the largest finite FP16."""
    return np.clip(np.asarray(x, np.float32), -FP16_MAX, FP16_MAX).astype(np.float16)


class Reference:
    """The compressed model run on natural layouts, with its own KV cache, so one
    instance follows one token history (as the executor does)."""

    def __init__(self, cm: Compressed, sfu: str = "fp16"):
        if sfu not in ("fp16", "float64"):
            raise DspflightError(f"reference: sfu must be fp16 or float64, got {sfu!r}")
        self.cm, self.m = cm, cm.model
        self.exact = sfu == "fp16"
        self.ft = np.float32 if self.exact else np.float64
        m = self.m
        self.hd, self.group = head_shape(m)
        o_order = attention_output_order(m)
        self.w = {name: exact_float(dequantize(q, cm.scale_group,
                                               o_order if name.endswith(".o") else np.arange(q.codes.shape[1])))
                  for name, q in cm.linears.items()}
        shape = (m.max_context, m.kv_heads, self.hd)
        self.k = [np.zeros(shape, np.int64) for _ in range(m.layers)]
        self.v = [np.zeros(shape, np.int64) for _ in range(m.layers)]

    # ---- the special functions ----------------------------------------------------
    def f16(self, x: np.ndarray) -> np.ndarray:
        """An SFU value: FP16 (rounded once) in the accelerator's unit, untouched in the ideal one."""
        if self.exact:
            return np.asarray(x).astype(np.float16).astype(np.float32)
        return np.asarray(x, np.float64)

    def linear(self, name: str, x: np.ndarray) -> np.ndarray:
        """x: INT8 values [tokens, in]; returns the op's output in its units (before rounding)."""
        w = self.w[name]
        acc = x.astype(w.dtype) @ w.T               # integer sums, exact in this float type
        q = self.cm.linears[name]
        if self.exact:
            return acc.astype(np.float32) * q.requant[None, :]
        return acc * q.requant.astype(np.float64)[None, :]

    def rmsnorm(self, x: np.ndarray, gain_name: str, s_out: str) -> np.ndarray:
        """x: the FP16 residual stream [tokens, hidden]; returns INT8 values at scale `s_out`."""
        eps = self.ft(self.cm.norm_eps)
        gain = self.f16(self.cm.norms[gain_name].astype(np.float32) / np.float32(self.cm.scales[s_out]))
        x64 = x.astype(np.float64)
        ms = ((x64 * x64).sum(axis=1) / x.shape[1]).astype(self.ft)
        r = (self.ft(1) / np.sqrt(ms + eps)).astype(self.ft)
        return _sat8(x.astype(self.ft) * r[:, None] * gain[None, :])

    def residual_add(self, x: np.ndarray, name: str, inp: np.ndarray) -> np.ndarray:
        """x + the FP16 output of linear `name` (real values), both FP16, the sum rounded to FP16."""
        return _sat16(x.astype(np.float32) + _sat16(self.linear(name, inp)).astype(np.float32))

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """x: INT8 values [tokens, heads, head_dim], HF rotate-half convention."""
        ang = rope_angles(pos, self.hd, self.cm.rope_theta)
        cos, sin = self.f16(np.cos(ang))[:, None, :], self.f16(np.sin(ang))[:, None, :]
        xf = x.astype(self.ft)
        a, b = xf[..., : self.hd // 2], xf[..., self.hd // 2:]
        return _sat8(np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1))

    def attention(self, layer: int, q: np.ndarray, pos0: int) -> np.ndarray:
        """q: INT8 values [tokens, heads, dim] at positions pos0..; returns INT8 [tokens, heads*dim].
        The queries of one attention block share its kept key blocks (each attends to its own block
        only up to itself), so they are taken together, one KV head at a time."""
        m, cm = self.m, self.cm
        t, block = q.shape[0], cm.attn_block
        out = np.zeros((t, m.heads, self.hd), np.int64)
        pos = np.arange(pos0, pos0 + t)
        for b in np.unique(pos // block):
            rows = np.flatnonzero(pos // block == b)
            keys = attended_keys(int(pos[rows[-1]]), block, cm.attn_density[layer])
            visible = keys[None, :] <= pos[rows, None]                           # [query, key]
            for kv in range(m.kv_heads):
                heads = slice(kv * self.group, (kv + 1) * self.group)
                qs = q[rows, heads].reshape(-1, self.hd).astype(np.float64)       # rows (query, head)
                p = self.probabilities(layer, qs @ self.k[layer][keys, kv].T.astype(np.float64),
                                       np.repeat(visible, self.group, axis=0))
                ctx = p.astype(np.float64) @ self.v[layer][keys, kv].astype(np.float64)   # exact integers
                out[rows, heads] = _sat8(ctx / INT8_MAX).reshape(len(rows), self.group, self.hd)
        return out.reshape(t, -1)

    def probabilities(self, layer: int, acc: np.ndarray, visible: np.ndarray) -> np.ndarray:
        """INT8 P [rows, keys] from the exact integer scores `acc`; keys not visible get 0."""
        scale = score_scale(self.cm.scales, layer, self.hd)
        if self.exact:
            s = self.f16(acc.astype(np.float32) / np.float32(SCORE_DIVISOR)) * scale
        else:
            s = acc / SCORE_DIVISOR * np.float64(scale)
        s = np.where(visible, s, -np.inf)
        e = np.exp(s - s.max(axis=1, keepdims=True)).astype(self.ft)
        total = e.astype(np.float64).sum(axis=1, keepdims=True).astype(self.ft)
        return _sat8(e / total * self.ft(INT8_MAX))

    # ---- the model -----------------------------------------------------------------
    def forward(self, tokens: list[int], pos0: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Run `tokens` at positions pos0..; returns the residual stream (FP16
        [tokens, hidden]) after every layer and the last token's logits."""
        m = self.m
        t, hd = len(tokens), self.hd
        pos = np.arange(pos0, pos0 + t)
        x = np.asarray(self.cm.embed, np.float16)[np.asarray(tokens)]
        layers = []
        for i in range(m.layers):
            p = f"L{i}."
            h = self.rmsnorm(x, p + "attn_norm", p + "n1")
            q = self.rope(_sat8(self.linear(p + "q", h)).reshape(t, m.heads, hd), pos)
            self.k[i][pos] = self.rope(_sat8(self.linear(p + "k", h)).reshape(t, m.kv_heads, hd), pos)
            self.v[i][pos] = _sat8(self.linear(p + "v", h)).reshape(t, m.kv_heads, hd)
            att = self.attention(i, q, pos0)
            x = self.residual_add(x, p + "o", att)
            h = self.rmsnorm(x, p + "ffn_norm", p + "n2")
            gate = self.f16(self.linear(p + "gate", h))
            silu = self.f16(gate / (self.ft(1) + np.exp(-gate)))
            f = _sat8(silu * self.linear(p + "up", h))
            x = self.residual_add(x, p + "down", f)
            layers.append(x.copy())
        return layers, self.head_logits(x[-1:])[0]

    def head_logits(self, x: np.ndarray) -> np.ndarray:
        """Logits [tokens, vocab] of residual-stream rows x (FP16): final norm, LM head."""
        logits = self.linear("lm_head", self.rmsnorm(x, "final_norm", "fn"))
        return logits.astype(np.float16).astype(np.float32) if self.exact else logits

    def generate(self, prompt: list[int], steps: int, chunk: int | None = None, on_layer=None,
                 forced: list[int] | None = None) -> list[int]:
        """Greedy generation: prefill in chunks (all of the prompt at once by default),
        then `steps` decode steps; returns the 1 + steps generated ids. With `forced`,
        decode step i is fed forced[i] instead of the previous choice (to compare
        layer by layer with another run of the same tokens)."""
        chunk = chunk or len(prompt)
        tokens = list(prompt)
        for start in range(0, len(prompt), chunk):
            layers, logits = self.forward(tokens[start:start + chunk], start)
            if on_layer:
                for i, x in enumerate(layers):
                    on_layer("prefill", start, i, x)
        out = [int(np.argmax(logits[: self.m.vocab]))]
        for i in range(steps):
            tokens.append(forced[i] if forced else out[-1])
            layers, logits = self.forward([tokens[-1]], len(tokens) - 1)
            if on_layer:
                for i, x in enumerate(layers):
                    on_layer("decode", len(tokens) - 1, i, x)
            out.append(int(np.argmax(logits)))
        return out
