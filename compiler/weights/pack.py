"""Pack a compressed model into the HBM image a compiled program reads.

The program decides where everything is: its base registers give each layer's
and core's regions, its header's tile table (`meta.weight_tiles`, written by
the compiler) gives each weight record's rows, K blocks and offset. This module lays the compressed model out exactly as the LD
instructions expect (docs/numerics.md): per core and tile a record of packed
values | indices | fixed-point scales | zero points | FP32 requant multipliers,
the layers' parameter records, the RoPE table; plus what the host needs to
feed the program (the FP16 embedding table).
"""
from __future__ import annotations

import dataclasses
import hashlib
import math

import numpy as np

from compiler.graph import build_graph
from compiler.passes.allocate import layer_record_offsets
from compiler.passes.emit import POST
from compiler.passes.partition import kv_heads_per_core
from compiler.weights.compressed import CompressedModel, score_scale
from compiler.weights.float_model import rope_inv_freq
from compiler.weights.profile import load_compression
from compiler.weights.quantize import QuantLinear, head_panel_order
from hwmodel.errors import CompileError
from hwmodel.hbm_image import HbmImage
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import BASE_REGISTERS, PARAM_HEADER_BYTES, R_HEAD, R_WEIGHTS
from hwmodel.placement import Placement
from hwmodel.program import Program, to_bytes
from hwmodel.weight_record import LINEAR_OPS, RecordFields, encode_record, scale_groups

IMAGE_FORMAT = 1


def weight_record(hw: HwConfig, q: QuantLinear, rows: np.ndarray, k0: int, kblk: int, group: int) -> bytes:
    """The record of one tile: model rows `rows` (-1: padding), K blocks k0 .. k0+kblk."""
    n, m = q.n, hw.sparsity_m
    if (k0 * n) % group:
        raise CompileError(f"tile at K block {k0}: its first weight is not at a scale-group boundary "
                           f"({k0 * n} kept weights before it, groups of {group})")
    cols = slice(k0 * m, (k0 + kblk) * m)
    r = len(rows)
    codes = np.zeros((r, kblk, n), np.uint8)
    index = np.tile(np.arange(n, dtype=np.uint8), (r, kblk, 1))
    g0, groups = k0 * n // group, scale_groups(kblk, n, group)
    scales = np.zeros((r, groups), np.uint8)
    zeros = np.zeros((r, groups), np.uint8)
    requant = np.zeros(r, np.float32)
    real = rows >= 0
    src = rows[real]
    mask = q.mask[src, cols].reshape(len(src), kblk, m)
    where = np.argsort(~mask, axis=2, kind="stable")[:, :, :n]          # kept columns, in order
    codes[real] = np.take_along_axis(q.codes[src, cols].reshape(len(src), kblk, m), where, axis=2)
    index[real] = where
    scales[real] = q.scales[src, g0:g0 + groups]
    zeros[real] = q.zeros[src, g0:g0 + groups]
    requant[real] = q.requant[src]
    return encode_record(hw, RecordFields(codes, index, scales, zeros, requant), q.bits, group)


def _row_map(model, op: str, tiles: list[list[int]], core: int) -> list[tuple[np.ndarray, int, int]]:
    """(compressed op of each record row, [(model rows, k0, kblk) per tile]) for one core.
    qkv rows are [q | k | v] of the core's KV heads, queries of a KV head ordered
    (dim panel, query head, dim) so attention reads them without a stride; a
    fused gate/up tile is [gate rows | up rows] of the same features."""
    rc = sum(r for r, k0, *_ in tiles if k0 == 0)          # the core's rows
    kblk_all = max(k0 + kblk for _, k0, kblk, *_ in tiles)
    hd, grp = model.head_dim, model.group
    if op == "qkv":
        kvh = rc // ((grp + 2) * hd)
        rows = []
        for h in range(kvh):                 # query rows, numbered in the concatenated [q; k; v] matrix
            kh = core * kvh + h
            f = np.arange(grp * hd)
            dim = rope_dim_order(hd)[f // 16 // grp * 16 + f % 16]
            rows.append(np.where(kh < model.kv_heads, (kh * grp + f // 16 % grp) * hd + dim, -1))
        qrows = model.heads * hd
        for h in range(kvh):
            kh = core * kvh + h
            rows.append(np.where(kh < model.kv_heads, qrows + kh * hd + rope_dim_order(hd), -1))
        for h in range(kvh):
            kh = core * kvh + h
            rows.append(np.where(kh < model.kv_heads, qrows + (model.kv_heads + kh) * hd + np.arange(hd), -1))
        local = np.concatenate(rows)
    elif op == "up":
        ffn_core = rc // 2
        local = np.empty(rc, np.int64)
        pos = 0
        for r, k0, *_ in tiles:
            if k0:
                continue
            feats = core * ffn_core + pos // 2 + np.arange(r // 2)
            feats = np.where(feats < model.ffn, feats, -1)
            local[pos:pos + r] = np.concatenate([feats, np.where(feats >= 0, feats + model.ffn, -1)])
            pos += r
    else:
        limit = {"o": model.hidden, "down": model.hidden, "lm_head": model.vocab}[op]
        local = core * rc + np.arange(rc)
        local = np.where(local < limit, local, -1)
    out, start = [], 0
    for r, k0, kblk, *_ in tiles:
        out.append((local[start:start + r], k0, kblk))
        if k0 + kblk == kblk_all:
            start += r
    return out


def _stacked(cm: CompressedModel, layer: int, op: str) -> QuantLinear:
    """The compressed op a graph node stands for (q|k|v and gate|up stacked by rows)."""
    if op == "lm_head":
        return cm.linears["lm_head"]
    parts = [cm.linears[f"L{layer}.{p}"] for p in ({"qkv": ("q", "k", "v"), "up": ("gate", "up")}.get(op, (op,)))]
    if len({(p.n, p.bits, p.scales.shape[1]) for p in parts}) != 1:
        raise CompileError(f"layer {layer} op {op}: stacked parts have different formats")
    cat = lambda attr: np.concatenate([getattr(p, attr) for p in parts])
    return QuantLinear(cat("codes"), cat("mask"), cat("scales"), cat("zeros"), cat("row_scale"), cat("requant"),
                       parts[0].n, parts[0].bits, parts[0].order)


def _norm_record(gain: np.ndarray, eps: float, s_out: float) -> bytes:
    """eps (FP32) padded to the header, then the gains over the output scale (FP16): the
    norm reads the FP16 residual stream in real units."""
    head = np.zeros(PARAM_HEADER_BYTES // 4, np.float32)
    head[0] = eps
    g = (gain / s_out).astype(np.float16).tobytes()
    return head.tobytes() + g + bytes(-len(g) % 64)


def rope_dim_order(hd: int) -> np.ndarray:
    """Model dim of each query/key dim on chip: rotate-half pairs (d, d + hd/2) made
    adjacent (2i, 2i+1), so one RoPE instruction covers every head. Queries and keys
    share the order, so their dot products are unchanged."""
    i = np.arange(hd)
    return i // 2 + (i % 2) * (hd // 2)


def _rope_table(model, kv_core: int, theta: float, max_ctx: int) -> bytes:
    """[lane/16][position] 64-byte lines: 16 cos then 16 sin (FP16). Lane i rotates
    features 2i, 2i+1 of the core's [queries | keys]."""
    hd, grp = model.head_dim, model.group
    f = 2 * np.arange(kv_core * (grp + 1) * hd // 2)
    q_width = kv_core * grp * hd
    within = np.where(f < q_width, f % (grp * hd), (f - q_width) % hd)
    head_dim_pos = np.where(f < q_width, within // 16 // grp * 16 + within % 16, within)
    freq = rope_inv_freq(hd, theta)[head_dim_pos // 2]
    ang = np.arange(max_ctx)[None, :, None] * freq.reshape(-1, 1, 16)
    return np.concatenate([np.cos(ang), np.sin(ang)], axis=2).astype(np.float16).tobytes()


def pack(cm: CompressedModel, prog: Program, hw: HwConfig) -> HbmImage:
    """The HBM image of `prog` running the compressed model `cm`."""
    comp = load_compression(prog.meta["compression"], hw)
    if comp.scale_group != cm.scale_group or comp.name != cm.compression:
        raise CompileError(f"program compiled with compression {comp.name}, the model was compressed with "
                           f"{cm.compression}")
    _check_numerics(cm.model, comp, prog, hw)
    calls = {c.layer: c for s in prog.steps for c in s.calls}     # weight/head registers are step-independent
    placement = Placement.from_json(prog.meta["placement"], hw, f"program for {prog.model}")
    hbm = np.zeros(placement.end * hw.hbm.burst_bytes, np.uint8)
    try:
        _put_weights(hbm, cm, prog, calls, hw)
    except (IndexError, ValueError) as exc:     # a crafted header whose tiles do not fit the model
        raise CompileError(f"program for {prog.model}: header field meta.weight_tiles does not fit "
                           f"{cm.model.name} ({exc})") from None
    _put_parameters(hbm, cm, prog, calls, hw)
    meta = {"format": IMAGE_FORMAT, "program_sha256": hashlib.sha256(to_bytes(prog, hw)).hexdigest(),
            "model": prog.model, "vocab": cm.model.vocab, "hidden": cm.model.hidden, "cores": hw.slrs,
            "scale_group": cm.scale_group, "placement": placement.to_json()}
    return HbmImage(hbm, cm.embed, meta)


def _check_numerics(model, comp, prog: Program, hw: HwConfig) -> None:
    """Refuse a program whose steps cannot run numerically (the compiler records why)."""
    chunk = prog.meta["prefill_bucket"]
    if comp.attn_block % chunk:
        raise CompileError(f"program for {prog.model}: prefill chunks of {chunk} tokens cannot run numerically; "
                           f"a chunk must divide the attention block of {comp.attn_block} (one query block per "
                           f"chunk, so its queries are contiguous)")
    if "weight_tiles" not in prog.meta:
        raise CompileError(f"program for {prog.model}: its header has no weight tile table (meta.weight_tiles): "
                           f"recompile it to pack it")
    _check_tile_table(model, prog, hw)
    if prog.meta["numerics_blockers"]:
        raise CompileError(f"program for {prog.model} on {hw.name} cannot run numerically: "
                           f"{prog.meta['numerics_blockers'][0]}")


def _check_tile_table(model, prog: Program, hw: HwConfig) -> None:
    """The header's tile table names every linear op of the model once, and no tile
    is larger than its op (the header schema checked the types and ranges)."""
    table = prog.meta["weight_tiles"]
    want = sorted([[layer, op] for layer in range(model.layers) for op in LINEAR_OPS if op != "lm_head"]
                  + [[-1, "lm_head"]])
    if sorted([layer, op] for layer, op, _ in table["ops"]) != want:
        raise CompileError(f"program for {prog.model}: header field meta.weight_tiles.ops names "
                           f"{len(table['ops'])} ops, not the {len(want)} linear ops of {model.name}")
    shapes = {a["op"]: (a["out_features"], math.ceil(a["in_features"] / hw.sparsity_m))
              for _, a in build_graph(dataclasses.replace(model, layers=1)).nodes(data=True) if a["kind"] == "linear"}
    for layer, op, index in table["ops"]:
        rows, kblk = shapes[op]
        if any(r > rows or k0 + k > kblk for r, k0, k, *_ in table["layouts"][index]):
            raise CompileError(f"program for {prog.model}: header field meta.weight_tiles.layouts[{index}]: a tile "
                               f"exceeds op {op} of {model.name} ({rows} rows, {kblk} blocks of {hw.sparsity_m})")


def _put(hbm: np.ndarray, hw: HwConfig, offset_bursts: int, data: bytes) -> None:
    at = offset_bursts * hw.hbm.burst_bytes
    hbm[at: at + len(data)] = np.frombuffer(data, np.uint8)


def _put_weights(hbm: np.ndarray, cm: CompressedModel, prog: Program, calls: dict, hw: HwConfig) -> None:
    """Every linear op's weight records, per core, at its call's weight (or LM-head)
    register, where the program's tile table puts them."""
    model = cm.model
    o_cols = head_panel_order(model)
    table = prog.meta["weight_tiles"]
    for layer, op, index in table["ops"]:
        tiles = table["layouts"][index]
        q = _stacked(cm, layer, op)
        if op == "o":           # columns in the order attention produces them, core after core
            if not np.array_equal(q.order, o_cols):
                raise CompileError(f"layer {layer} op o: compressed with input order other than the "
                                   f"accelerator's attention output order")
            q = QuantLinear(q.codes[:, o_cols], q.mask[:, o_cols], q.scales, q.zeros, q.row_scale, q.requant,
                            q.n, q.bits, np.arange(len(o_cols)))
        reg = R_HEAD if layer < 0 else R_WEIGHTS
        call = calls[POST] if layer < 0 else calls[layer]
        for c in range(hw.slrs):
            for (rows, k0, kblk), (*_, off, _) in zip(_row_map(model, op, tiles, c), tiles):
                _put(hbm, hw, call.base[BASE_REGISTERS * c + reg] + off,
                     weight_record(hw, q, rows, k0, kblk, cm.scale_group))


def _put_parameters(hbm: np.ndarray, cm: CompressedModel, prog: Program, calls: dict, hw: HwConfig) -> None:
    """Per core: each layer's norm records and score scale, the final norm and the RoPE table."""
    model, s, burst = cm.model, cm.scales, hw.hbm.burst_bytes
    rec = layer_record_offsets(model)
    rope, max_ctx = prog.meta["hbm_layout"]["rope_bursts"], prog.meta["max_context"]
    kv_core = kv_heads_per_core(model, hw)
    for c in range(hw.slrs):
        for layer in range(model.layers):
            base = calls[layer].base[BASE_REGISTERS * c + R_WEIGHTS] * burst
            p = f"L{layer}."
            parts = {"attn_norm": _norm_record(cm.norms[p + "attn_norm"], cm.norm_eps, s[p + "n1"]),
                     "ffn_norm": _norm_record(cm.norms[p + "ffn_norm"], cm.norm_eps, s[p + "n2"]),
                     "softmax": np.array([score_scale(cm, layer)], np.float32).tobytes()}
            for part, data in parts.items():
                hbm[base + rec[part]: base + rec[part] + len(data)] = np.frombuffer(data, np.uint8)
        head = calls[POST].base[BASE_REGISTERS * c + R_HEAD]
        _put(hbm, hw, head, _norm_record(cm.norms["final_norm"], cm.norm_eps, s["fn"]))
        _put(hbm, hw, head + rope, _rope_table(model, kv_core, cm.rope_theta, max_ctx))
