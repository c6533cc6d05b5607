"""Pass: put each linear op's N:16 pattern and weight bits, and each layer's
attention mask density, on the nodes, from the compression profile. The first
pass, so a profile that does not fit the model fails before any real work."""
from __future__ import annotations

import networkx as nx

from hwmodel.hwconfig import HwConfig


def annotate_compression(g: nx.DiGraph, hw: HwConfig) -> nx.DiGraph:
    comp = g.graph["compression"]
    densities = comp.attn_densities(g.graph["model"])
    for _, a in g.nodes(data=True):
        if a["kind"] == "linear":
            fmt = comp.weight_format(a["op"], a["layer"])
            a["n"], a["bits"] = fmt.n, fmt.bits
        elif a["kind"] == "attention":
            a["block"], a["density"] = comp.attn_block, densities[a["layer"]]
    return g
