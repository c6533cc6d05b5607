"""Pass: always-on-chip decode (FlightLLM §4.2).

With fusion on, every activation between the ops of a step stays in the
on-chip activation buffer and each elementwise op that follows a matrix op
(RoPE after QKV, the gated activation after up) is fused into it (MV->MISC).
With fusion off (`StepState.fusion` False) every op boundary spills its
activation to HBM and reloads it, the baseline FlightLLM improves on.
"""
from __future__ import annotations

import networkx as nx

from compiler.step import StepState, contract
from hwmodel.hwconfig import HwConfig

FUSABLE = {"rope", "silu_mul", "silu", "gelu", "relu"}
CONTRACT = contract(requires={"misc": "func out_features", "linear": "out_features"},
                    provides={"linear": "fuse"})


def onchip_fusion(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    """Fuse each elementwise op into the matrix op before it (`fuse`: its function, or None)."""
    for _, _, e in g.edges(data=True):
        e["spill"] = not st.fusion
    for _, a in g.nodes(data=True):
        if a["kind"] == "linear":
            a["fuse"] = None
    if not st.fusion:
        return
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
