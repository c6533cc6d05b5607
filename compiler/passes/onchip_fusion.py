"""Pass: always-on-chip decode (FlightLLM §4.2).

With fusion on, every activation between the ops of a step stays in the
on-chip activation buffer and each elementwise op that follows a matrix op
(RoPE after QKV, the gated activation after up) is fused into it (MV->MISC).
With fusion off (`g.graph["fusion"] = False`) every op boundary spills its
activation to HBM and reloads it, the baseline FlightLLM improves on.
"""
from __future__ import annotations

import networkx as nx

from hwmodel.hwconfig import HwConfig

FUSABLE = {"rope", "silu_mul", "silu", "gelu", "relu"}


def onchip_fusion(g: nx.DiGraph, hw: HwConfig) -> nx.DiGraph:
    fusion = g.graph.setdefault("fusion", True)
    for _, _, e in g.edges(data=True):
        e["spill"] = not fusion
    if not fusion:
        return g
    for name in list(g.nodes):
        a = g.nodes[name]
        if a["kind"] != "misc" or a["func"] not in FUSABLE:
            continue
        (pred,) = g.predecessors(name)
        if g.nodes[pred]["kind"] != "linear":
            continue
        g.nodes[pred]["fuse"] = a["func"]
        g.nodes[pred]["out_features"] = a["out_features"]
        for succ in list(g.successors(name)):
            g.add_edge(pred, succ, **g.edges[name, succ])
        g.remove_node(name)
    return g
