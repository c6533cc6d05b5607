"""Reference forward pass of a compressed model, in plain numpy.

Written apart from the functional executor: natural layouts ([tokens,
features] activations, [out, in] weights dequantized with
compiler.quantize.dequantize, [position, head, dim] KV cache), one matmul per
projection, the block-sparse mask from compiler.attention_mask. Integer paths
(INT8 x INT8 -> INT32, FP32 requantization, saturating residual adds) are the
model's definition. The special functions (norm, RoPE, softmax, SiLU) run in
one of two ways: `sfu="fp16"` mirrors the accelerator's FP16 unit (FP16
inputs and outputs, FP32 inside, exact sums), so the executor must agree bit
for bit; `sfu="float64"` computes them ideally, which bounds what the FP16
unit costs.
"""
from __future__ import annotations

import math

import numpy as np

from compiler.attention_mask import attention_keys
from compiler.quantize import QMAX, CompressedModel, dequantize, rope_inv_freq, score_scale
from hwmodel.errors import DspflightError
from hwmodel.isa import SCORE_DIVISOR


# What the FP16 unit may cost against ideal special functions, same history
# (docs/numerics.md; measured 2-5 on the tiny model): INT8 units of the residual stream.
FP16_MAX_DIFF = 8
FP16_MEAN_DIFF = 1.5


def _sat8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), -QMAX, QMAX).astype(np.int64)


class Reference:
    def __init__(self, cm: CompressedModel, sfu: str = "fp16"):
        if sfu not in ("fp16", "float64"):
            raise DspflightError(f"reference: sfu must be fp16 or float64, got {sfu!r}")
        self.cm, self.m = cm, cm.model
        self.exact = sfu == "fp16"
        self.ft = np.float32 if self.exact else np.float64
        self.w = {name: dequantize(q, cm.scale_group) for name, q in cm.linears.items()}
        m = self.m
        shape = (m.max_context, m.kv_heads, m.head_dim)
        self.k = [np.zeros(shape, np.int64) for _ in range(m.layers)]
        self.v = [np.zeros(shape, np.int64) for _ in range(m.layers)]

    # ---- the special functions ----------------------------------------------------
    def f16(self, x: np.ndarray) -> np.ndarray:
        """An SFU value: FP16 in the accelerator's unit, untouched in the ideal one."""
        if self.exact:
            return np.asarray(x, np.float32).astype(np.float16).astype(np.float32)
        return np.asarray(x, np.float64)

    def linear(self, name: str, x: np.ndarray) -> np.ndarray:
        """x: INT8 values [tokens, in]; returns the op's output in its units (before rounding)."""
        acc = x @ self.w[name].T
        q = self.cm.linears[name]
        if self.exact:
            return acc.astype(np.float32) * q.requant[None, :]
        return acc * q.requant.astype(np.float64)[None, :]

    def rmsnorm(self, x: np.ndarray, gain_name: str, s_out: str) -> np.ndarray:
        s_res = self.cm.scales["res"]
        eps = np.float32(self.cm.norm_eps / (s_res * s_res))
        gain = self.f16((self.cm.norms[gain_name] / self.cm.scales[s_out]).astype(np.float32))
        ms = ((x * x).sum(axis=1) / x.shape[1]).astype(self.ft)
        r = (self.ft(1) / np.sqrt(ms + eps)).astype(self.ft)
        return _sat8(x.astype(self.ft) * r[:, None] * gain[None, :])

    def rope(self, x: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """x: INT8 values [tokens, heads, head_dim], HF rotate-half convention."""
        hd = x.shape[-1]
        ang = pos[:, None].astype(np.float64) * rope_inv_freq(hd, self.cm.rope_theta)[None, :]
        cos, sin = self.f16(np.cos(ang))[:, None, :], self.f16(np.sin(ang))[:, None, :]
        xf = x.astype(self.ft)
        a, b = xf[..., : hd // 2], xf[..., hd // 2:]
        return _sat8(np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1))

    def attention(self, layer: int, q: np.ndarray, pos0: int) -> np.ndarray:
        """q: INT8 values [tokens, heads, dim] at positions pos0..; returns INT8 [tokens, heads*dim]."""
        m, cm = self.m, self.cm
        t = q.shape[0]
        scale = score_scale(cm, layer)
        out = np.zeros((t, m.heads, m.head_dim), np.int64)
        for i in range(t):
            keys = attention_keys(pos0 + i, cm.attn_block, cm.attn_density[layer])
            for h in range(m.heads):
                kv = h // m.group
                acc = self.k[layer][keys, kv] @ q[i, h]
                if self.exact:
                    s = self.f16(acc.astype(np.float32) / np.float32(SCORE_DIVISOR)) * scale
                else:
                    s = acc.astype(np.float64) / SCORE_DIVISOR * np.float64(scale)
                e = np.exp(s - s.max()).astype(self.ft)
                total = e.astype(np.float64).sum().astype(self.ft)
                p = _sat8(e / total * self.ft(QMAX))
                out[i, h] = _sat8((p @ self.v[layer][keys, kv]).astype(np.float64) / QMAX)
        return out.reshape(t, -1)

    # ---- the model -----------------------------------------------------------------
    def forward(self, tokens: list[int], pos0: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Run `tokens` at positions pos0..; returns the residual stream (INT8 values
        [tokens, hidden]) after every layer and the last token's logits."""
        m, s = self.m, self.cm.scales
        t, hd = len(tokens), m.head_dim
        pos = np.arange(pos0, pos0 + t)
        x = self.cm.embed[np.asarray(tokens)].astype(np.int64)
        layers = []
        for i in range(m.layers):
            p = f"L{i}."
            h = self.rmsnorm(x, p + "attn_norm", p + "n1")
            q = self.rope(_sat8(self.linear(p + "q", h)).reshape(t, m.heads, hd), pos)
            self.k[i][pos] = self.rope(_sat8(self.linear(p + "k", h)).reshape(t, m.kv_heads, hd), pos)
            self.v[i][pos] = _sat8(self.linear(p + "v", h)).reshape(t, m.kv_heads, hd)
            att = self.attention(i, q, pos0)
            x = np.clip(x + _sat8(self.linear(p + "o", att)), -QMAX, QMAX)
            h = self.rmsnorm(x, p + "ffn_norm", p + "n2")
            gate = self.f16(self.linear(p + "gate", h))
            silu = self.f16(gate / (self.ft(1) + np.exp(-gate)))
            f = _sat8(silu * self.linear(p + "up", h))
            x = np.clip(x + _sat8(self.linear(p + "down", f)), -QMAX, QMAX)
            layers.append(x.copy())
        h = self.rmsnorm(x[-1:], "final_norm", "fn")
        logits = self.linear("lm_head", h)[0]
        return layers, (logits.astype(np.float16).astype(np.float32) if self.exact else logits)

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
