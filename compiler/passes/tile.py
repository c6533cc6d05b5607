"""Pass: cut every op into tiles that fit their on-chip buffers.

A linear op streams its weights in row tiles that fit half the weight buffer
(the other half is being loaded: double buffering), a multiple of the MPE's
chain count where possible so every chain is busy. Attention streams its KV
cache in key chunks that fit a quarter of the global buffer (K and V, double
buffered), keeping only the key blocks the block-sparse mask does not cut.
"""
from __future__ import annotations

import math

import networkx as nx

from compiler.attention_mask import kept_ranges
from hwmodel.costs import weight_record_bytes
from hwmodel.errors import CompileError
from hwmodel.hwconfig import HwConfig


def _tile_rows(hw: HwConfig, name: str, rows: int, kblk: int, n: int, bits: int, group: int) -> list[int]:
    half = hw.buffers["wgt"].bytes // 2

    def fits(r: int) -> bool:
        return weight_record_bytes(hw, r, kblk, n, bits, group) <= half

    if fits(rows):
        per = rows
    else:
        step = hw.chains if fits(hw.chains) else 32
        if not fits(step):
            need = weight_record_bytes(hw, step, kblk, n, bits, group)
            raise CompileError(f"{hw.source}: field buffers.wgt.bytes: op {name}: a tile of {step} rows needs "
                               f"{need} bytes, more than half the weight buffer ({half} bytes)")
        per = step * (half // weight_record_bytes(hw, step, kblk, n, bits, group))
        while per > step and not fits(per):
            per -= step
    tiles = [per] * (rows // per)
    if rows % per:
        tiles.append(rows % per)
    return tiles


def _chunks(ranges: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    out = []
    for start, end in ranges:
        for s in range(start, end, limit):
            out.append((s, min(end, s + limit)))
    return out


def tile(g: nx.DiGraph, hw: HwConfig) -> nx.DiGraph:
    group = g.graph["compression"].scale_group
    tokens, context, phase = g.graph["tokens"], g.graph["context"], g.graph["phase"]
    quarter = hw.buffers["glb"].bytes // 4
    for name, a in g.nodes(data=True):
        if a["kind"] == "linear":
            a["kblk"] = math.ceil(a["in_features"] / hw.sparsity_m)
            a["tiles"] = _tile_rows(hw, name, a["rows_core"], a["kblk"], a["n"], a["bits"], group)
        elif a["kind"] == "attention":
            hd, block = a["head_dim"], a["block"]
            limit = quarter // hd // 16 * 16
            if limit < 16:
                raise CompileError(f"{hw.source}: field buffers.glb.bytes: op {name}: a 16-key chunk of head "
                                   f"dimension {hd} does not fit a quarter of the global buffer ({quarter} bytes)")
            if phase == "decode":
                qblocks = [(context - 1, context, kept_ranges((context - 1) // block, a["density"], block, context))]
            else:
                start = context - tokens
                qblocks = [(q, min(q + block, context),
                            kept_ranges(q // block, a["density"], block, min(q + block, context)))
                           for q in range(start, context, block)]
            a["qblocks"] = [(q0, q1, _chunks(r, limit)) for q0, q1, r in qblocks]
            a["kv_resident"] = phase == "prefill" and context * hd <= quarter
    return g
