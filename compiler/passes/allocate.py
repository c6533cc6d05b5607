"""Pass: place every tensor in the on-chip activation buffer and every weight
tile, parameter record and KV cache in HBM; refuse a model that does not fit.

On chip (docs/numerics.md): the residual stream `x` (FP16) sits at line 0 and
is updated in place; the step's RoPE table follows it. The top of the activation
buffer is the exchange window (SYS EXCHANGE gathers there in place). Each
layer's parameter record (norm gains, softmax scale) is placed first in the
layer's pool; each op's output gets the first free lines that fit and gives
them back once its last consumer has been placed (all layers share one
layout, so they can share one instruction section). In HBM (addresses in
bursts): per layer and core the parameter record then the weight tiles, a
KV-cache region sized for the longest context the program serves; the LM
head region (final-norm record, LM head tiles, RoPE table); the host I/O area.

Where the layouts cannot express a tensor exactly (a shard that is not whole
lines, an exchange split in pieces, fusion off, LayerNorm), the step still
compiles for timing and the reason goes to `StepState.numerics_blockers`;
compiler.weights.pack refuses to pack such a program for the functional executor.
"""
from __future__ import annotations

import math

import networkx as nx

from compiler.graph import RESIDUAL
from compiler.passes.partition import kv_heads_per_core
from compiler.step import StepState, contract
from hwmodel.errors import CompileError
from hwmodel.hwconfig import HwConfig
from hwmodel.isa import PARAM_HEADER_BYTES, RESIDUAL_BYTES, SYS_LINES_BITS, exchange_window, field_max
from hwmodel.weight_record import record_bytes

GIB = 2**30
SOFTMAX_RECORD = 64       # the score scale (FP32) and padding
EXCHANGE_MAX_LINES = field_max(SYS_LINES_BITS)
CONTRACT = contract(
    requires={"*": "out_features elem", "linear": "op fuse rows_core tiles n bits",
              "attention": "heads_core head_dim qblocks", "misc": "func"},
    provides={"*": "local out_addr out_lines", "norm": "params_addr", "linear": "tile_hbm last_addr",
              "attention": "params_addr scores_addr scores_lines"},
    state_requires="placement", state_provides="rope_addr act_lines_used numerics_blockers hbm_layout")


def norm_record_bytes(features: int) -> int:
    return PARAM_HEADER_BYTES + math.ceil(features * 2 / 64) * 64


def layer_record_offsets(model) -> dict[str, int]:
    """Byte offsets of a decoder layer's parameter record parts, and its size."""
    norm = norm_record_bytes(model.hidden)
    return {"attn_norm": 0, "ffn_norm": norm, "softmax": 2 * norm, "bytes": 2 * norm + SOFTMAX_RECORD}


def v_region_bursts(st: StepState, hw: HwConfig) -> int:
    """Offset of the V cache in a layer's KV region: after the K cache, at a whole
    row on every PC of the KV group, so K and V loads see the same row pattern at
    every context (hwmodel.placement)."""
    model = st.model
    k_bursts = math.ceil(kv_heads_per_core(model, hw) * model.head_dim * st.max_context / hw.hbm.burst_bytes)
    unit = st.placement.group("kv")[1] * hw.hbm.address_map.row_bytes // hw.hbm.burst_bytes
    return math.ceil(k_bursts / unit) * unit


def rope_lanes(model, hw: HwConfig) -> int:
    """RoPE lanes (rotated feature pairs) of a core: its queries and keys."""
    return kv_heads_per_core(model, hw) * (model.group + 1) * model.head_dim // 2


def _local_features(g: nx.DiGraph, name: str) -> int:
    a = g.nodes[name]
    kind = a["kind"]
    if kind == "linear":
        gated_fused = a["fuse"] == "silu_mul"
        return a["rows_core"] // 2 if gated_fused else a["rows_core"]
    if kind == "attention":
        return a["heads_core"] * a["head_dim"]
    if kind == "misc" and a["func"] in ("rope", "silu_mul", "silu", "gelu", "relu"):
        (pred,) = g.predecessors(name)
        local = _local_features(g, pred)
        return local // 2 if a["func"] == "silu_mul" else local
    if kind == "exchange":
        (pred,) = g.predecessors(name)
        return _local_features(g, pred)
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


def allocate(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    model = st.model
    tokens, line = st.tokens, hw.line_bytes
    blockers: list[str] = []
    if not st.fusion:
        blockers.append("fusion is off (activations spill through HBM)")
    if model.norm != "rmsnorm" or model.positional != "rope" or not model.gated_ffn:
        blockers.append(f"{model.name}: only RMSNorm, RoPE, gated-FFN models execute numerically")
    x_lines = math.ceil(tokens * model.hidden * RESIDUAL_BYTES / line)
    st.rope_addr = x_lines
    first = x_lines + rope_lanes(model, hw) // 16 * tokens          # one 64-byte line per 16 lanes and token
    window = _plan_exchanges(g, st, hw, blockers)
    act = _ActBuffer(st, hw, first, window)
    done: set[str] = set()
    for name in nx.topological_sort(g):
        a = g.nodes[name]
        pool, params = act.layer(a["layer"])
        _place_node(st, hw, act, name, a, params, x_lines, blockers)
        done.add(name)
        for p in g.predecessors(name):
            pa = g.nodes[p]
            if (pa["out_addr"] and pa["kind"] != "exchange" and pa["layer"] == a["layer"]
                    and all(s in done for s in g.successors(p))):
                pool.give(pa["out_addr"], pa["out_lines"])
    st.act_lines_used = max(max(p.high for p in act.pools.values()), act.total if window else 0)
    st.numerics_blockers = sorted(set(blockers))     # emit adds to this same list
    _place_hbm(g, st, hw)


def _plan_exchanges(g: nx.DiGraph, st: StepState, hw: HwConfig, blockers: list[str]) -> int:
    """Each node's local features; each exchange's gathered lines and its place in
    the exchange window at the top of the buffer. Returns the window's lines."""
    tokens, line = st.tokens, hw.line_bytes
    for name, a in g.nodes(data=True):
        a["local"] = _local_features(g, name)
        if a["kind"] == "exchange":
            (pred,) = g.predecessors(name)
            shard = tokens * _local_features(g, pred) * a["elem"]
            op = name.split(".", 1)[-1]
            if shard % line:
                blockers.append(f"{op}: a core's shard of {shard} bytes is not whole {line}-byte lines")
            a["out_lines"] = hw.slrs * math.ceil(shard / line)
            if a["out_lines"] > EXCHANGE_MAX_LINES:
                blockers.append(f"{op}: gathers {a['out_lines']} lines, more than one EXCHANGE moves")
            a["out_addr"] = exchange_window(hw, a["out_lines"]) - hw.buffers["act"].base // line
    return max((a["out_lines"] for _, a in g.nodes(data=True) if a["kind"] == "exchange"), default=0)


class _ActBuffer:
    """The activation buffer between the residual stream and tables (below) and the
    exchange window (above): one first-fit pool per layer, each opened with the
    layer's parameter record."""

    def __init__(self, st: StepState, hw: HwConfig, first: int, window: int):
        self.st, self.hw, self.first = st, hw, first
        self.total = hw.buffers["act"].bytes // hw.line_bytes
        self.top = self.total - window
        self.pools: dict[int, _FirstFit] = {}
        self.records: dict[int, int] = {}

    def layer(self, layer: int) -> tuple[_FirstFit, int]:
        """The layer's pool and the line of its parameter record."""
        if layer not in self.pools:
            model = self.st.model
            self.pools[layer] = _FirstFit(self.first, self.top)
            size = layer_record_offsets(model)["bytes"] if layer >= 0 else norm_record_bytes(model.hidden)
            self.records[layer] = self.need(layer, f"layer {layer} parameters", math.ceil(size / self.hw.line_bytes))
        return self.pools[layer], self.records[layer]

    def need(self, layer: int, name: str, n: int) -> int:
        addr = self.pools[layer].take(n)
        if addr is None:
            line, st = self.hw.line_bytes, self.st
            raise CompileError(f"{self.hw.source}: field buffers.act.bytes: {st.phase} of "
                               f"{st.tokens} tokens needs more than the {self.total * line} bytes of the "
                               f"activation buffer at op {name} ({(self.top - self.first) * line} bytes beside "
                               f"the residual stream, tables and exchange window, {n * line} asked)")
        return addr


def _place_node(st: StepState, hw: HwConfig, act: _ActBuffer, name: str, a: dict, params: int, x_lines: int,
                blockers: list[str]) -> None:
    """A node's output (and scratch) lines in its layer's pool, and where its parameters lie."""
    model, tokens, line, layer = st.model, st.tokens, hw.line_bytes, a["layer"]
    pool = act.pools[layer]

    def lines(nbytes: int) -> int:
        return math.ceil(nbytes / line)

    if a["kind"] == "norm":
        a["params_addr"] = params + (0 if layer < 0 else layer_record_offsets(model)[a["role"]] // line)
    if a["kind"] == "linear":
        a["last_addr"] = None
    if a["kind"] == "exchange":
        pass
    elif a["role"] in RESIDUAL:
        a["out_addr"], a["out_lines"] = 0, x_lines
    else:
        head = a["kind"] == "linear" and a["op"] == "lm_head"
        if head and a["local"] * a["elem"] % line:
            blockers.append(f"lm_head: a core's {a['local']} FP16 logits are not whole {line}-byte lines")
        if head and tokens > 1:
            a["last_addr"] = act.need(layer, name, lines(model.hidden))    # the last token's input vector
        a["out_lines"] = lines((1 if head else tokens) * a["local"] * a["elem"])   # the head: the last token
        a["out_addr"] = act.need(layer, name, a["out_lines"])
    if a.get("last_addr") is not None:
        pool.give(a["last_addr"], lines(model.hidden))
    if a["kind"] == "attention":
        a["params_addr"] = params + layer_record_offsets(model)["softmax"] // line
        q_rows = max(q1 - q0 for q0, q1, _ in a["qblocks"]) * model.group
        keys = max(sum(e - s for s, e in ch) for _, _, ch in a["qblocks"])
        a["scores_lines"] = lines(q_rows * math.ceil(keys / 16) * 16 * 2)
        a["scores_addr"] = act.need(layer, name, a["scores_lines"])
        pool.give(a["scores_addr"], a["scores_lines"])


def _place_hbm(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    model, comp = st.model, st.compression
    burst = hw.hbm.burst_bytes
    max_ctx = st.max_context
    layer_params = math.ceil(layer_record_offsets(model)["bytes"] / burst)
    head_params = math.ceil(norm_record_bytes(model.hidden) / burst)
    per_layer: dict[int, int] = {layer: layer_params for layer in range(model.layers)}
    per_layer[-1] = head_params
    for name, a in g.nodes(data=True):
        if a["kind"] != "linear":
            continue
        offset = per_layer[a["layer"]]
        a["tile_hbm"] = []
        for rows, _, kblk in a["tiles"]:
            nbytes = record_bytes(hw, rows, kblk, a["n"], a["bits"], comp.scale_group)
            a["tile_hbm"].append((offset, nbytes // burst))
            offset += nbytes // burst
        per_layer[a["layer"]] = offset
    rope = per_layer[-1]                         # [lane panel][position] 64-byte lines
    per_layer[-1] = rope + rope_lanes(model, hw) // 16 * max_ctx
    kv_core = kv_heads_per_core(model, hw)
    kv_bursts = v_region_bursts(st, hw) + math.ceil(kv_core * max_ctx * model.head_dim / burst)
    weights = sum(per_layer.values()) * hw.slrs * burst
    kv = model.layers * hw.slrs * kv_bursts * burst
    head = next(a for _, a in g.nodes(data=True) if a["kind"] == "linear" and a["op"] == "lm_head")
    io = max(st.tokens * model.hidden * RESIDUAL_BYTES, head["rows_core"] * head["elem"])
    io = math.ceil(io / burst) * burst
    need = weights + kv + io * hw.slrs
    if need > hw.hbm.capacity_bytes:
        raise CompileError(
            f"{hw.source}: field hbm.capacity_gb: {model.name} with {comp.name} needs {need / GIB:.2f} GiB "
            f"(weights {weights / GIB:.2f}, KV cache {kv / GIB:.2f} at context {max_ctx}), the design has "
            f"{hw.hbm.capacity_bytes / GIB:.2f} GiB")
    st.hbm_layout = {
        "layer_weight_bursts": per_layer, "kv_bursts": kv_bursts, "weight_bytes": weights, "kv_bytes": kv,
        "io_bytes": io, "rope_bursts": rope,
    }


def weight_tile_table(g: nx.DiGraph) -> dict:
    """Where every linear op's weight tiles lie, as the program header records it
    for the packer: distinct layouts of [rows, first K block, K blocks, offset,
    bursts] tiles (offsets in bursts from the layer's weight register), and per
    op [layer, op, layout]. The layout is the same in every step."""
    layouts: dict[tuple, int] = {}
    ops = []
    for _, a in g.nodes(data=True):
        if a["kind"] == "linear":
            tiles = tuple((r, k0, kblk, off, n) for (r, k0, kblk), (off, n) in zip(a["tiles"], a["tile_hbm"]))
            ops.append([a["layer"], a["op"], layouts.setdefault(tiles, len(layouts))])
    return {"layouts": [[list(t) for t in tiles] for tiles in layouts], "ops": ops}

