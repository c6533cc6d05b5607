"""Pass: place every tensor in the on-chip activation buffer and every weight
tile and KV cache in HBM; refuse a model that does not fit.

On chip: the residual stream `x` sits at line 0 and is updated in place; each
op's output gets the first free lines that fit and gives them back once its
last consumer has been placed (all layers share one layout, so they can share
one instruction section). In HBM (addresses in
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


class _FirstFit:
    """First-fit allocator over the activation buffer's lines, with coalescing."""

    def __init__(self, start: int, end: int):
        self.free = [(start, end)]
        self.high = start

    def take(self, n: int) -> int | None:
        for i, (s, e) in enumerate(self.free):
            if e - s >= n:
                self.free[i] = (s + n, e)
                self.high = max(self.high, s + n)
                return s
        return None

    def give(self, s: int, n: int) -> None:
        self.free.append((s, s + n))
        self.free.sort()
        merged = [self.free[0]]
        for a, b in self.free[1:]:
            if a <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(b, merged[-1][1]))
            else:
                merged.append((a, b))
        self.free = merged


def allocate(g: nx.DiGraph, hw: HwConfig) -> nx.DiGraph:
    model = g.graph["model"]
    tokens, line = g.graph["tokens"], hw.line_bytes
    total = hw.buffers["act"].bytes // line

    def lines(nbytes: int) -> int:
        return math.ceil(nbytes / line)

    x_lines = lines(tokens * model.hidden)
    pools: dict[int, _FirstFit] = {}
    done: set[str] = set()

    def need(name: str, n: int) -> int:
        addr = pool.take(n)
        if addr is None:
            raise CompileError(f"{hw.source}: field buffers.act.bytes: {g.graph['phase']} of {tokens} tokens needs "
                               f"more than the {total * line} bytes of the activation buffer at op {name} "
                               f"({(total - x_lines) * line} bytes beside the residual stream, {n * line} asked)")
        return addr

    for name in nx.topological_sort(g):
        a = g.nodes[name]
        pool = pools.setdefault(a["layer"], _FirstFit(x_lines, total))
        a["local"] = _local_features(g, name)
        if name.endswith("_res") or a["kind"] == "embed":
            a["out_addr"], a["out_lines"] = 0, x_lines
        else:
            a["out_lines"] = lines(tokens * a["local"])
            a["out_addr"] = need(name, a["out_lines"])
        if a["kind"] == "attention":
            q_rows = max(q1 - q0 for q0, q1, _ in a["qblocks"]) * model.group
            keys = max(sum(e - s for s, e in ch) for _, _, ch in a["qblocks"])
            a["scores_lines"] = lines(q_rows * keys * 2)
            a["scores_addr"] = need(name, a["scores_lines"])
            pool.give(a["scores_addr"], a["scores_lines"])
        done.add(name)
        for p in g.predecessors(name):
            pa = g.nodes[p]
            if pa["out_addr"] and pa["layer"] == a["layer"] and all(s in done for s in g.successors(p)):
                pool.give(pa["out_addr"], pa["out_lines"])
    g.graph["act_lines_used"] = max(p.high for p in pools.values())
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
        for rows, _, kblk in a["tiles"]:
            nbytes = weight_record_bytes(hw, rows, kblk, a["n"], a["bits"], comp.scale_group)
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
