"""Perplexity of a checkpoint and of its compressed forms on a text, technique
by technique: what each compression step costs in quality.

Rows (all on the same tokens, next-token perplexity):
- `float`: the checkpoint's own float model (compiler.weights.float_model);
- `N:M sparsity`, `low-bit weights`, `+ block-sparse attention`: the float
  model with the profile's weights pruned, quantized (fake quantization:
  dequantized back to float) and its attention mask, one technique added at a
  time, activations kept in float;
- the profile itself: the integer model the accelerator runs (INT8
  activations and everything else), on the numpy reference
  (dspflight.reference), and with `executor=True` also on the functional
  executor running the compiled program; both must agree exactly.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compiler.weights.checkpoint import Checkpoint, float_weights
from compiler.weights.compress import LINEARS, OP_KIND, compress
from compiler.weights.float_model import float_forward
from compiler.weights.profile import Compression
from compiler.weights.quantize import dequantize, head_panel_order, prune_mask, quantize_linear
from hwmodel.errors import DspflightError
from hwmodel.hwconfig import BLOCK

DEFAULT_TOKENS = 512
CALIBRATION_TOKENS = 256      # taken from the text after the evaluated tokens


@dataclass
class Row:
    name: str
    perplexity: float
    tokens: int
    agrees: bool | None = None     # executor == reference (compressed rows run on the executor)


def default_text() -> str:
    """Python's own language reference (pydoc_data.topics), present wherever Python is."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[k] for k in sorted(topics))


def nll_perplexity(logits: np.ndarray, targets: np.ndarray) -> float:
    """exp(mean negative log-likelihood) of `targets` under `logits` [n, vocab]."""
    z = logits - logits.max(axis=1, keepdims=True)
    logp = z[np.arange(len(targets)), targets] - np.log(np.exp(z).sum(axis=1))
    return float(np.exp(-logp.mean()))


def float_perplexity(ck: Checkpoint, w: dict, norms: dict, tokens: np.ndarray, block: int,
                     densities: tuple[float, ...]) -> float:
    fn = float_forward(ck.model, w, norms, tokens, ck.rope_theta, ck.norm_eps, block, densities)
    return nll_perplexity(fn[:-1] @ w["lm_head"].T, tokens[1:])


def technique_weights(ck: Checkpoint, comp: Compression, prune: bool, quantize: bool) -> tuple[dict, dict]:
    """Float weights with the profile's N:M pruning and/or weight quantization applied."""
    w, norms = float_weights(ck)
    for name in [f"L{i}.{op}" for i in range(ck.model.layers) for op in LINEARS] + ["lm_head"]:
        layer = int(name[1:name.index(".")]) if name.startswith("L") else -1
        fmt = comp.weight_format(OP_KIND[name.split(".")[-1]], layer)
        if quantize:
            order = head_panel_order(ck.model) if name.endswith(".o") else None
            q = quantize_linear(w[name], fmt.n if prune else BLOCK, fmt.bits, comp.scale_group, order)
            w[name] = dequantize(q, comp.scale_group) * q.row_scale[:, None].astype(np.float64)
        elif prune and fmt.n < BLOCK:
            w[name] = w[name] * prune_mask(w[name], fmt.n)
    return w, norms


def perplexity_rows(ck: Checkpoint, comps: list[Compression], text: str, n_tokens: int = DEFAULT_TOKENS,
                    executor_hw=None, progress=None) -> list[Row]:
    """The table's rows for `n_tokens` tokens of `text` (see the module docstring)."""
    if ck.tokenizer is None:
        raise DspflightError(f"{ck.model.name}: the checkpoint has no tokenizer (a GGUF file or `smollm2` has one)")
    ids = np.asarray(ck.tokenizer.encode(text).ids)
    if len(ids) < n_tokens + CALIBRATION_TOKENS:
        raise DspflightError(f"text: {len(ids)} tokens, fewer than the {n_tokens} to evaluate and "
                             f"{CALIBRATION_TOKENS} to calibrate on after them")
    if n_tokens > ck.model.max_context or n_tokens < 2:
        raise DspflightError(f"--tokens {n_tokens}: expected 2..{ck.model.max_context} (the model's context)")
    tokens = ids[:n_tokens]
    calibration = ids[n_tokens:n_tokens + CALIBRATION_TOKENS].reshape(-1, 64)
    full = (1.0,) * ck.model.layers
    w, norms = float_weights(ck)
    rows = [Row("float", float_perplexity(ck, w, norms, tokens, BLOCK, full), len(tokens))]
    for comp in comps:
        dens = comp.attn_densities(ck.model)
        made = None
        for label, prune, quant, d in ((f"{comp.name}: N:M sparsity", True, False, full),
                                       (f"{comp.name}: low-bit weights", False, True, full),
                                       (f"{comp.name}: sparse low-bit weights", True, True, full),
                                       (f"{comp.name}: + block-sparse attention", True, True, dens)):
            if (prune, quant) != made:     # the last row reuses the row before's weights
                tw, tn = technique_weights(ck, comp, prune, quant)
                made = (prune, quant)
            rows.append(Row(label, float_perplexity(ck, tw, tn, tokens, comp.attn_block, d), len(tokens)))
        cm = compress(ck, comp, calibration)
        rows.append(integer_row(cm, comp, tokens, executor_hw))
        if progress:
            progress(comp.name)
    return rows


def integer_row(cm, comp: Compression, tokens: np.ndarray, executor_hw) -> Row:
    """The integer model on the reference (and the executor): the residual stream
    after the last layer of every position, through the reference's final norm
    and LM head."""
    from dspflight.reference import Reference

    ref = Reference(cm)
    chunk = comp.attn_block
    usable = len(tokens) - len(tokens) % chunk if len(tokens) >= chunk else len(tokens)
    last: dict[int, np.ndarray] = {}
    ref.generate(list(tokens[:usable]), 0, chunk if usable >= chunk else usable,
                 lambda ph, p, layer, x: last.__setitem__(p, x) if layer == cm.model.layers - 1 else None)
    x = np.concatenate([last[p] for p in sorted(last)])
    logits = ref.head_logits(x)
    row = Row(f"{comp.name}: integer model (INT8 activations)", nll_perplexity(logits[:-1], tokens[1:usable]),
              usable)
    if executor_hw is not None:
        row.agrees = _executor_agrees(cm, comp, tokens[:usable], executor_hw, last, chunk)
    return row


def _executor_agrees(cm, comp, tokens, hw, ref_last: dict, chunk: int) -> bool:
    from compiler.pipeline import Buckets, compile_program
    from compiler.weights.pack import pack
    from sim.functional import Executor

    chunk = min(chunk, len(tokens))
    prog = compile_program(cm.model, comp, hw, len(tokens), 0, Buckets(chunk, 1))
    got: dict[int, np.ndarray] = {}
    Executor(prog, hw, pack(cm, prog, hw)).generate(
        list(tokens), 0, lambda ph, p, layer, x: got.__setitem__(p, x) if layer == cm.model.layers - 1 else None)
    return sorted(got) == sorted(ref_last) and all(np.array_equal(got[p], ref_last[p]) for p in got)


def table(rows: list[Row]) -> str:
    out = [f"{'model':<48} {'tokens':>6} {'perplexity':>12} {'vs float':>9} {'executor':>9}"]
    base = rows[0].perplexity
    for r in rows:
        agree = "" if r.agrees is None else ("agrees" if r.agrees else "DIFFERS")
        ppl = f"{r.perplexity:12.3f}" if math.isfinite(r.perplexity) and r.perplexity < 1e9 else f"{r.perplexity:12.3g}"
        out.append(f"{r.name:<48} {r.tokens:>6} {ppl} {100 * (r.perplexity / base - 1):+8.1f}% {agree:>9}")
    return "\n".join(out)
