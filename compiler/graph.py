"""Frontend: a model config becomes a networkx graph of ops for one step.

Nodes are ops (`kind`, `layer`, `role`, shapes, `elem`: bytes per output
feature, 1 for INT8, 2 for FP16); edges carry the activation tensor between
them (`features` per token). Which step it is, and the passes'
graph-level results, live in `compiler.step.StepState`, not in the graph.
"""
from __future__ import annotations

import networkx as nx

from compiler.model_config import ModelConfig
from hwmodel.isa import RESIDUAL_BYTES

# A node's role: what it is in its layer (its name without the layer prefix).
# Partition adds `gather` exchange nodes after some of them.
ROLES = ("embed", "attn_norm", "qkv", "rope", "attn", "o", "attn_res", "ffn_norm", "up", "act", "down", "ffn_res",
         "final_norm", "lm_head", "gather")
RESIDUAL = ("embed", "attn_res", "ffn_res")      # the roles that write the residual stream `x`
FP16_OUT = RESIDUAL + ("o", "down", "lm_head")     # FP16 outputs: the residual stream, what is added to it, logits


def build_graph(model: ModelConfig) -> nx.DiGraph:
    """Embedding, `layers` decoder layers, final norm and LM head."""
    g = nx.DiGraph()
    d, hd = model.hidden, model.head_dim
    qkv_out = (model.heads + 2 * model.kv_heads) * hd
    up_out = (2 if model.gated_ffn else 1) * model.ffn

    def chain(nodes: list[tuple[str, dict]], prev: str | None) -> str:
        for name, attrs in nodes:
            role = name.split(".")[-1]
            g.add_node(name, role=role, elem=RESIDUAL_BYTES if role in FP16_OUT else 1, **attrs)
            if prev is not None:
                g.add_edge(prev, name, features=g.nodes[prev]["out_features"])
            prev = name
        return prev

    last = chain([("embed", dict(kind="embed", layer=-1, out_features=d))], None)
    act_func = "silu_mul" if model.gated_ffn else model.activation
    for i in range(model.layers):
        p = f"L{i}."
        residual = last
        rope = [(p + "rope", dict(kind="misc", layer=i, func="rope", out_features=qkv_out))]
        last = chain([
            (p + "attn_norm", dict(kind="norm", layer=i, func=model.norm, out_features=d)),
            (p + "qkv", dict(kind="linear", layer=i, op="qkv", in_features=d, out_features=qkv_out)),
            *(rope if model.positional == "rope" else []),
            (p + "attn", dict(kind="attention", layer=i, heads=model.heads, kv_heads=model.kv_heads,
                              head_dim=hd, out_features=d)),
            (p + "o", dict(kind="linear", layer=i, op="o", in_features=d, out_features=d)),
            (p + "attn_res", dict(kind="misc", layer=i, func="add", out_features=d)),
        ], last)
        g.add_edge(residual, p + "attn_res", features=d)
        residual = last
        last = chain([
            (p + "ffn_norm", dict(kind="norm", layer=i, func=model.norm, out_features=d)),
            (p + "up", dict(kind="linear", layer=i, op="up", in_features=d, out_features=up_out)),
            (p + "act", dict(kind="misc", layer=i, func=act_func, out_features=model.ffn)),
            (p + "down", dict(kind="linear", layer=i, op="down", in_features=model.ffn, out_features=d)),
            (p + "ffn_res", dict(kind="misc", layer=i, func="add", out_features=d)),
        ], last)
        g.add_edge(residual, p + "ffn_res", features=d)
    chain([
        ("final_norm", dict(kind="norm", layer=-1, func=model.norm, out_features=d)),
        ("lm_head", dict(kind="linear", layer=-1, op="lm_head", in_features=d, out_features=model.vocab)),
    ], last)
    return g


def nodes_by_layer(g: nx.DiGraph) -> dict[int, list[str]]:
    """The nodes of each layer (-1: outside the decoder layers) in execution order."""
    out: dict[int, list[str]] = {}
    for n in nx.topological_sort(g):
        out.setdefault(g.nodes[n]["layer"], []).append(n)
    return out
