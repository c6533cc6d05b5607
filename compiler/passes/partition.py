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

from compiler.step import StepState, contract
from hwmodel.hwconfig import HwConfig

GATHER_AFTER = ("attn", "o", "up", "act", "down")     # roles whose output the next op needs whole
CONTRACT = contract(requires={"linear": "op out_features", "*": "out_features elem"},
                    provides={"linear": "rows_core", "attention": "kv_heads_core heads_core"})


def _round_up(x: int, m: int) -> int:
    return math.ceil(x / m) * m


def kv_heads_per_core(model, hw: HwConfig) -> int:
    """KV heads each core attends (the last core may carry a padding head)."""
    return math.ceil(model.kv_heads / hw.slrs)


def partition(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    model = st.model
    cores = hw.slrs
    kv_core = kv_heads_per_core(model, hw)
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
        return
    for name in list(g.nodes):
        a = g.nodes[name]
        if a["layer"] < 0 or a["role"] not in GATHER_AFTER:
            continue
        if a["role"] == "up" and any(g.nodes[s]["role"] == "act" for s in g.successors(name)):
            continue   # the unfused activation is gathered instead
        ex = name + ".gather"
        g.add_node(ex, kind="exchange", layer=a["layer"], role="gather", out_features=a["out_features"],
                   elem=a["elem"])
        for succ in list(g.successors(name)):
            g.add_edge(ex, succ, **g.edges[name, succ])
            g.remove_edge(name, succ)
        g.add_edge(name, ex, features=a["out_features"])
