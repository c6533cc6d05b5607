"""Pass: model parallelism across the cores (one per SLR), as in FlightLLM.

Attention is split by KV heads (each core keeps its heads' KV cache), every
linear op by output rows. Where the next op needs the whole tensor an
`exchange` node (SYS all-gather over the SLR crossings) is inserted. All cores
run the same section, so shards are rounded up: the last core may carry
padding rows or a padding head, which costs time like real work.
"""
from __future__ import annotations

import math

import networkx as nx

from hwmodel.hwconfig import HwConfig

GATHER_AFTER = ("attn", "o", "up", "act", "down")


def _round_up(x: int, m: int) -> int:
    return math.ceil(x / m) * m


def partition(g: nx.DiGraph, hw: HwConfig) -> nx.DiGraph:
    model = g.graph["model"]
    cores = hw.slrs
    kv_core = math.ceil(model.kv_heads / cores)
    line = hw.line_bytes       # INT8 features per on-chip line
    for name in list(g.nodes):
        a = g.nodes[name]
        if a["kind"] == "attention":
            a["kv_heads_core"], a["heads_core"] = kv_core, kv_core * model.group
        elif a["kind"] == "linear":
            if a["op"] == "qkv":
                a["rows_core"] = kv_core * (model.group + 2) * model.head_dim
            elif a["op"] == "up" and model.gated_ffn:
                a["rows_core"] = 2 * _round_up(math.ceil(model.ffn / cores), line)  # gate and up rows in pairs
            else:
                a["rows_core"] = _round_up(math.ceil(a["out_features"] / cores), line)
    if cores == 1:
        return g
    for name in list(g.nodes):
        a = g.nodes[name]
        if a["layer"] < 0 or name.split(".")[1] not in GATHER_AFTER:
            continue
        if name.endswith(".up") and any(s.endswith(".act") for s in g.successors(name)):
            continue   # the unfused activation is gathered instead
        ex = name + ".gather"
        g.add_node(ex, kind="exchange", layer=a["layer"], out_features=a["out_features"])
        for succ in list(g.successors(name)):
            g.add_edge(ex, succ, **g.edges[name, succ])
            g.remove_edge(name, succ)
        g.add_edge(name, ex, features=a["out_features"])
    return g
