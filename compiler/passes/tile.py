"""Pass: cut every op into tiles that fit their on-chip buffers.

A linear op streams its weights in tiles that fit half the weight buffer
(the other half is being loaded: double buffering): row blocks that are a
multiple of the MPE's chain count so every chain is busy, split along K
(partial sums accumulate) when a whole row does not fit. Attention streams its KV
cache in key chunks that fit a quarter of the global buffer (K and V, double
buffered), keeping only the key blocks the block-sparse mask does not cut.
"""
from __future__ import annotations

import math
from functools import lru_cache

import networkx as nx

from compiler.attention_mask import kept_ranges
from compiler.step import StepState, contract
from hwmodel.errors import CompileError
from hwmodel.hwconfig import HwConfig
from hwmodel.weight_record import record_bytes


def _tiles(hw: HwConfig, name: str, rows: int, kblk: int, n: int, bits: int, group: int) -> list[tuple[int, int, int]]:
    """(rows, first K block, K blocks) per tile: row blocks that fill the chains and,
    when even one chain-row block of the whole K does not fit, K split into parts
    whose partial sums accumulate."""
    tiles = _tile_plan(hw, rows, kblk, n, bits, group)
    if tiles is None:
        one = record_bytes(hw, min(rows, hw.chains), 1, n, bits, group)
        raise CompileError(f"{hw.source}: field buffers.wgt.bytes: op {name}: a tile of {min(rows, hw.chains)} rows "
                           f"and one 16-column block needs {one} bytes, more than half the weight buffer "
                           f"({hw.buffers['wgt'].bytes // 2} bytes)")
    return list(tiles)


@lru_cache(maxsize=4096)
def _tile_plan(hw: HwConfig, rows: int, kblk: int, n: int, bits: int, group: int
               ) -> tuple[tuple[int, int, int], ...] | None:
    """The tiles of an op of this shape and format (every decode step asks again), None if none fits."""
    half = hw.buffers["wgt"].bytes // 2

    def size(r: int, k: int) -> int:
        return record_bytes(hw, r, k, n, bits, group)

    step = min(rows, hw.chains)
    parts = 1
    while size(step, math.ceil(kblk / parts)) > half:
        parts *= 2
        if parts > kblk:
            return None
    kpart = math.ceil(kblk / parts)
    per = rows if parts == 1 and size(rows, kblk) <= half else step * max(1, half // size(step, kpart))
    while per > step and size(per, kpart) > half:
        per -= step
    tiles = []
    for r0 in range(0, rows, per):
        for k0 in range(0, kblk, kpart):
            tiles.append((min(per, rows - r0), k0, min(kpart, kblk - k0)))
    return tuple(tiles)


def _chunks(ranges: list[tuple[int, int]], limit: int) -> list[tuple[int, int]]:
    out = []
    for start, end in ranges:
        for s in range(start, end, limit):
            out.append((s, min(end, s + limit)))
    return out


CONTRACT = contract(requires={"linear": "in_features rows_core n bits", "attention": "head_dim block density"},
                    provides={"linear": "kblk tiles", "attention": "qblocks kv_resident"})


def tile(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    group = st.compression.scale_group
    tokens, context, phase = st.tokens, st.context, st.phase
    quarter = hw.buffers["glb"].bytes // 4
    for name, a in g.nodes(data=True):
        if a["kind"] == "linear":
            a["kblk"] = math.ceil(a["in_features"] / hw.sparsity_m)
            a["tiles"] = _tiles(hw, name, a["rows_core"], a["kblk"], a["n"], a["bits"], group)
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
            # a tuple: it is part of emit's section key (layers may keep different blocks)
            a["qblocks"] = tuple((q0, q1, tuple(_chunks(r, limit))) for q0, q1, r in qblocks)
            a["kv_resident"] = phase == "prefill" and context * hd <= quarter
