"""Pass: put each linear op's N:16 pattern and weight bits, and each layer's
attention mask density, on the nodes, from the compression profile. The first
pass, so a profile that does not fit the model fails before any real work."""
from __future__ import annotations

import networkx as nx

from compiler.step import StepState, contract
from hwmodel.hwconfig import HwConfig

CONTRACT = contract(requires={"linear": "op"}, provides={"linear": "n bits", "attention": "block density"})


def annotate_compression(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    comp = st.compression
    densities = comp.attn_densities(st.model)
    for _, a in g.nodes(data=True):
        if a["kind"] == "linear":
            fmt = comp.weight_format(a["op"], a["layer"])
            a["n"], a["bits"] = fmt.n, fmt.bits
        elif a["kind"] == "attention":
            a["block"], a["density"] = comp.attn_block, densities[a["layer"]]
