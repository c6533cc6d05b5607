"""Pass: place every tensor in the on-chip activation buffer and every weight
tile and KV cache in HBM; refuse a model that does not fit.

On chip: the residual stream `x` sits at line 0 and is updated in place; each
op's output gets the next free lines of its layer (all layers share one
layout, so they can share one instruction section). In HBM (addresses in
bursts): per layer and core a weight region, then a KV-cache region sized for
the longest context the program serves; the LM head; the host I/O area.
"""
from __future__ import annotations

import math

import networkx as nx

from hwmodel.costs import weight_record_bytes
from hwmodel.errors import CompileError
from hwmodel.hwconfig import HwConfig

GIB = 2**30


def _local_features(g: nx.DiGraph, name: str) -> int:
    a = g.nodes[name]
    kind = a["kind"]
    if kind == "linear":
        gated_fused = a.get("fuse") == "silu_mul"
        return a["rows_core"] // 2 if gated_fused else a["rows_core"]
    if kind == "attention":
        return a["heads_core"] * a["head_dim"]
    if kind == "misc" and a["func"] in ("rope", "silu_mul", "silu", "gelu", "relu"):
        (pred,) = g.predecessors(name)
        local = _local_features(g, pred)
        return local // 2 if a["func"] == "silu_mul" else local
    return a["out_features"]


def allocate(g: nx.DiGraph, hw: HwConfig) -> nx.DiGraph:
    model, comp = g.graph["model"], g.graph["compression"]
    tokens, line = g.graph["tokens"], hw.line_bytes
    act = hw.buffers["act"]

    def lines(nbytes: int) -> int:
        return math.ceil(nbytes / line)

    x_lines = lines(tokens * model.hidden)
    top = {}
    for name in nx.topological_sort(g):
        a = g.nodes[name]
        layer = a["layer"]
        cursor = top.get(layer, x_lines)
        a["local"] = _local_features(g, name)
        if name.endswith("_res") or a["kind"] == "embed":
            a["out_addr"] = 0
        else:
            a["out_addr"] = cursor
            cursor += lines(tokens * a["local"])
        if a["kind"] == "attention":
            q_rows = max(q1 - q0 for q0, q1, _ in a["qblocks"]) * model.group
            keys = max(sum(e - s for s, e in ch) for _, _, ch in a["qblocks"])
            a["scores_addr"] = cursor
            cursor += lines(q_rows * keys * 2)
        top[layer] = cursor
        if cursor * line > act.bytes:
            raise CompileError(f"{hw.source}: field buffers.act.bytes: {g.graph['phase']} of {tokens} tokens needs "
                               f"{cursor * line} bytes of activations at op {name}, the buffer has {act.bytes}")
    _place_hbm(g, hw)
    return g


def _place_hbm(g: nx.DiGraph, hw: HwConfig) -> None:
    model, comp = g.graph["model"], g.graph["compression"]
    burst = hw.hbm.burst_bytes
    max_ctx = g.graph.get("max_context", g.graph["context"])
    per_layer: dict[int, int] = {}
    for name, a in g.nodes(data=True):
        if a["kind"] != "linear":
            continue
        offset = per_layer.get(a["layer"], 0)
        a["tile_hbm"] = []
        for rows in a["tiles"]:
            nbytes = weight_record_bytes(hw, rows, a["kblk"], a["n"], a["bits"], comp.scale_group)
            a["tile_hbm"].append((offset, nbytes // burst))
            offset += nbytes // burst
        per_layer[a["layer"]] = offset
    kv_core = math.ceil(model.kv_heads / hw.slrs)
    kv_bursts = math.ceil(2 * kv_core * max_ctx * model.head_dim / burst)
    weights = sum(per_layer.values()) * hw.slrs * burst
    kv = model.layers * hw.slrs * kv_bursts * burst
    io = (g.graph["tokens"] * model.hidden + 2 * model.vocab) * 2
    need = weights + kv + io
    if need > hw.hbm.capacity_bytes:
        raise CompileError(
            f"{hw.source}: field hbm.capacity_gb: {model.name} with {comp.name} needs {need / GIB:.2f} GiB "
            f"(weights {weights / GIB:.2f}, KV cache {kv / GIB:.2f} at context {max_ctx}), the design has "
            f"{hw.hbm.capacity_bytes / GIB:.2f} GiB")
    g.graph["hbm_layout"] = {
        "layer_weight_bursts": per_layer, "kv_bursts": kv_bursts, "weight_bytes": weights, "kv_bytes": kv,
        "io_bytes": io,
    }
