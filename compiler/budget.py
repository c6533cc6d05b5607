"""The budget check: refuse a compile the design cannot hold before any work.

A model and a request (prompt and context lengths, buckets) that cannot fit
the design are refused in milliseconds, with the file and field to blame,
instead of after minutes of graph building. Every limit is the design's own:

- HBM capacity (`HwConfig.hbm.capacity_bytes`): the weights, stored as the
  cheapest record (hwmodel.weight_record.record_bytes) any layer of the
  compression profile may use, plus the INT8 KV cache at the longest context,
  are a lower bound of what `allocate` places, so a model above it never fits.
- ISA field widths (hwmodel.isa, read from the design's layouts): one MISC
  instruction normalizes the hidden vector, activates a core's FFN shard and
  takes the softmax over a query's kept keys, each at most `len16` blocks of
  16; one SYS HOST hands a core's FP16 logits to the host in at most `lines`
  buffer lines; one MM counts at most `tokens` tokens of a prefill chunk.

These are necessary conditions only; what passes may still be refused later
by the pass that places it, with its own exact figures.
"""
from __future__ import annotations

import dataclasses
import math

from compiler.attention_mask import kept_ranges
from compiler.graph import build_graph
from compiler.model_config import ModelConfig, field_key
from compiler.weights.profile import Compression, WeightFormat
from hwmodel.errors import CompileError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import Op, isa_for
from hwmodel.weight_record import record_bytes

GIB = 2**30
LEN16_UNIT = 16       # MISC `len16` counts 16-element blocks (compiler.passes.emit)
LOGIT_BYTES = 2       # logits leave the LM head as FP16 (docs/numerics.md)


def check_budget(model: ModelConfig, comp: Compression, hw: HwConfig, chunk: int, max_ctx: int) -> None:
    """Refuse, naming file and field, a program of prefill chunks of `chunk`
    tokens and contexts up to `max_ctx` that `hw` cannot hold or encode."""
    _check_hbm(model, comp, hw, max_ctx)
    _check_fields(model, comp, hw, chunk, max_ctx)


def _formats(comp: Compression, op: str) -> list[WeightFormat]:
    """Every format `op` can have in some layer: the base one and each override's."""
    layers = {-1} | {min(layers) for layers, _, _ in comp.overrides if layers}
    return [comp.weight_format(op, layer) for layer in layers]


def _weight_bytes(comp: Compression, hw: HwConfig, op: str, rows: int, features: int) -> int:
    kblk = math.ceil(features / hw.sparsity_m)
    return min(record_bytes(hw, rows, kblk, f.n, f.bits, comp.scale_group) for f in _formats(comp, op))


def _check_hbm(model: ModelConfig, comp: Compression, hw: HwConfig, max_ctx: int) -> None:
    """Weights and KV cache against the HBM; blames `layers` when one layer fits."""
    one = build_graph(dataclasses.replace(model, layers=1))
    parts = {"hidden": 0, "ffn": 0, "vocab": 0}
    for _, a in one.nodes(data=True):
        if a["kind"] == "linear":
            key = {"qkv": "hidden", "o": "hidden", "up": "ffn", "down": "ffn", "lm_head": "vocab"}[a["op"]]
            parts[key] += _weight_bytes(comp, hw, a["op"], a["out_features"], a["in_features"])
    parts["max_context"] = 2 * model.kv_heads * model.head_dim * max_ctx * comp.kv_bits // 8
    layer = parts["hidden"] + parts["ffn"] + parts["max_context"]
    need = model.layers * layer + parts["vocab"]
    cap = hw.hbm.capacity_bytes
    if need <= cap:
        return
    blame = "layers" if layer + parts["vocab"] <= cap else max(parts, key=parts.get)
    raise CompileError(
        f"{model.source}: field {field_key(model, blame)}: {model.name} needs at least {need / GIB:.4g} GiB of HBM "
        f"with {comp.name} ({model.layers} layers of {layer / GIB:.4g} GiB weights and KV cache at context "
        f"{max_ctx}, LM head {parts['vocab'] / GIB:.4g} GiB), {hw.name} has {cap / GIB:.4g} GiB "
        f"({hw.source}: field hbm.capacity_gb)")


def _check_fields(model: ModelConfig, comp: Compression, hw: HwConfig, chunk: int, max_ctx: int) -> None:
    """Vectors and counts against the instruction fields that carry them."""
    isa = isa_for(hw)
    vector = isa.max_value(Op.MISC, "len16") * LEN16_UNIT
    lines = isa.max_value(Op.SYS, "lines")
    tokens = isa.max_value(Op.MM, "tokens")
    where = f"{model.source}: field"
    if model.hidden > vector:
        raise CompileError(f"{where} {field_key(model, 'hidden')}: {model.hidden} features, one MISC instruction "
                           f"normalizes at most {vector} (len16 field)")
    shard = math.ceil(model.ffn / hw.slrs)
    if shard > vector:
        raise CompileError(f"{where} {field_key(model, 'ffn')}: {shard} FFN features per core, one MISC "
                           f"instruction activates at most {vector} (len16 field)")
    logits = math.ceil(math.ceil(model.vocab / hw.slrs) * LOGIT_BYTES / hw.line_bytes)
    if logits > lines:
        raise CompileError(f"{where} {field_key(model, 'vocab')}: {model.vocab} logits are {logits} buffer lines per "
                           f"core, one SYS HOST instruction returns at most {lines} (lines field)")
    if chunk > tokens:
        raise CompileError(f"prefill bucket {chunk}: one MM instruction counts at most {tokens} tokens "
                           f"(tokens field of {hw.source})")
    density = max(comp.attn_densities(model))
    keys = sum(e - s for s, e in kept_ranges((max_ctx - 1) // comp.attn_block, density, comp.attn_block, max_ctx))
    if keys > vector:
        raise CompileError(f"{where} {field_key(model, 'max_context')}: at context {max_ctx} a query keeps {keys} keys "
                           f"under {comp.name}'s attention mask, one softmax (MISC len16 field) covers at most "
                           f"{vector}")
