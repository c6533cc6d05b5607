"""Pass: lower the tiled, allocated graph of one step to instruction sections.

One section per distinct layer (layers with the same shapes, formats and
kept attention blocks share one, addressed through base registers: r0 the
layer's weights and parameter record, r1 its KV cache, r2 the host I/O area, r3 the LM head
region), plus a `pre` section (load the embedded input) and a `post`
section (final norm, LM head, logits to the host). Prefill lowers matrix ops to MM, decode to MV; attention skips the key
blocks its mask cuts. The data layouts the instructions imply are defined in
docs/numerics.md; the functional executor (sim.functional) runs them.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import networkx as nx

from compiler.graph import RESIDUAL, nodes_by_layer
from compiler.passes.allocate import (EXCHANGE_MAX_LINES, layer_record_offsets, norm_record_bytes, rope_lanes,
                                     v_region_bursts)
from compiler.section_builder import Resource, SectionBuilder
from compiler.step import StepState, contract
from hwmodel.hwconfig import BLOCK, HwConfig
from hwmodel.isa import (AUX_BITS, BASE_REGIONS, R_HEAD, R_IO, R_KV, R_WEIGHTS, MatMode, MiscFunc, Op, SysKind,
                         field_max, n_code, wbits_code)

PRE, POST = -1, -2          # layer labels of the pre (input) and post (logits) sections
MISC_CODES = {"rmsnorm": MiscFunc.RMSNORM, "layernorm": MiscFunc.LAYERNORM, "add": MiscFunc.ADD,
              "rope": MiscFunc.ROPE, "silu_mul": MiscFunc.SILU_MUL, "silu": MiscFunc.SILU, "gelu": MiscFunc.GELU,
              "relu": MiscFunc.RELU, "softmax": MiscFunc.SOFTMAX, "copy": MiscFunc.NONE,
              "token_major": MiscFunc.TOKEN_MAJOR,
              "last_token": MiscFunc.LAST_TOKEN}
CONTRACT = contract(
    requires={"*": "out_addr out_lines local elem", "linear": "op fuse tiles tile_hbm kblk n bits in_features last_addr",
              "norm": "func params_addr", "misc": "func out_features",
              "attention": "head_dim kv_heads_core block qblocks kv_resident params_addr scores_addr scores_lines"},
    state_requires="placement hbm_layout rope_addr numerics_blockers", state_provides="builders layer_section")


class Emitter:
    """Emits the instructions of one core for the ops of one section."""

    def __init__(self, g: nx.DiGraph, st: StepState, hw: HwConfig, b: SectionBuilder):
        self.g, self.st, self.hw, self.b = g, st, hw, b
        self.tokens = st.tokens
        self.line = hw.line_bytes
        self.burst = hw.hbm.burst_bytes
        self.wgt_base = hw.buffers["wgt"].base // self.line
        self.wgt_half = hw.buffers["wgt"].bytes // 2 // self.line
        self.glb_base = hw.buffers["glb"].base // self.line
        self.glb_quarter = hw.buffers["glb"].bytes // 4 // self.line
        self.placement = st.placement
        self.model = st.model
        self.max_ctx = st.max_context
        self.blockers = st.numerics_blockers
        self.tile_count = 0   # alternates weight-buffer halves across ops
        self.kv_count = 0     # alternates global-buffer quarter pairs
        self.spill_bursts = 0

    def lines(self, nbytes: int) -> int:
        return math.ceil(nbytes / self.line)

    def at(self, base: int, nbytes: int, what: str) -> int:
        """The line `nbytes` after line `base`; an offset inside a line cannot be
        addressed, which only the functional executor cares about."""
        what = what.split(".", 1)[-1]
        msg = f"{what}: offset of {nbytes} bytes is not whole {self.line}-byte lines"
        if nbytes % self.line and msg not in self.blockers:
            self.blockers.append(msg)
        return base + self.lines(nbytes)

    # ---- helpers ---------------------------------------------------------
    def load(self, reg: int, hbm: int, addr: int, writes: Resource, x_len: int, y_len: int = 1, y_stride: int = 0,
             reads: tuple[Resource, ...] = ()) -> None:
        first, count = self.placement.group(BASE_REGIONS[reg])
        self.b.add(Op.LD, dict(base=reg, hbm=hbm, ch_first=first, ch_count=count, addr=addr, x_len=x_len,
                               y_len=y_len, y_stride=y_stride, z_len=1, z_stride=0, zero=0),
                   reads=reads, writes=(writes,))

    def store(self, reg: int, hbm: int, addr: int, nbytes: int, reads: Resource, writes: Resource) -> None:
        first, count = self.placement.group(BASE_REGIONS[reg])
        self.b.add(Op.ST, dict(base=reg, hbm=hbm, ch_first=first, ch_count=count, addr=addr,
                               len=math.ceil(nbytes / self.burst)),
                   reads=(reads,), writes=(writes,))

    def matrix(self, tokens: int, rows: int, kblk: int, n: int, bits: int, act: int, wgt: int, out: int,
               reads: tuple[Resource, ...], writes: Resource, acc: int = 0, fuse: int = 0,
               mode: MatMode = MatMode.LINEAR, hold: int = 0, aux: int = 0) -> None:
        op = Op.MM if tokens > 1 else Op.MV
        self.b.add(op, dict(rows=rows, kblk=kblk, tokens=tokens, n_log2=n_code(n), wbits=wbits_code(bits),
                            act=act, wgt=wgt, out=out, acc=acc, bias=0, fuse=fuse, mode=int(mode), hold=hold,
                            aux=aux),
                   reads=reads, writes=(writes,))

    def misc(self, func: str, rows: int, features: int, src: int, dst: int, reads: tuple[Resource, ...],
             writes: Resource, src2: int = 0) -> None:
        self.b.add(Op.MISC, dict(func=MISC_CODES[func], len16=math.ceil(features / BLOCK), rows=rows, src=src,
                                 src2=src2, dst=dst), reads=reads, writes=(writes,))

    def input_of(self, name: str) -> str:
        preds = [p for p in self.g.predecessors(name) if self.g.nodes[p]["role"] not in RESIDUAL]
        preds = preds or list(self.g.predecessors(name))
        return preds[-1]

    def slot(self, name: str) -> tuple[int, int]:
        """The activation-buffer lines of a node's output (residual adds and embed: `x`)."""
        a = self.g.nodes[name]
        return (a["out_addr"], a["out_addr"] + a["out_lines"])

    # ---- ops ---------------------------------------------------------------
    def emit(self, name: str) -> None:
        a = self.g.nodes[name]
        self.b.label(name.split(".", 1)[-1])
        kind = a["kind"]
        getattr(self, "op_" + kind)(name, a)
        if any(e.get("spill") for _, _, e in self.g.out_edges(name, data=True)) and kind != "embed":
            self.spill(name, a)

    def load_params(self, layer: int, nodes: list[str]) -> None:
        """A layer's parameter record (norm gains, softmax scale) into its lines."""
        addr = min(self.g.nodes[n]["params_addr"] for n in nodes if "params_addr" in self.g.nodes[n])
        size = layer_record_offsets(self.model)["bytes"] if layer >= 0 else norm_record_bytes(self.model.hidden)
        self.b.label("params")
        self.load(R_WEIGHTS if layer >= 0 else R_HEAD, 0, addr, "params", math.ceil(size / self.burst))

    def spill(self, name: str, a: dict) -> None:
        """Fusion off: the activation round-trips through HBM before its consumer."""
        nbytes = self.tokens * a["local"] * a["elem"]
        hbm = self.spill_bursts
        self.store(R_IO, hbm, a["out_addr"], nbytes, reads=self.slot(name), writes="spill")
        self.load(R_IO, hbm, a["out_addr"], self.slot(name), math.ceil(nbytes / self.burst),
                  reads=("spill",))

    def op_embed(self, name: str, a: dict) -> None:
        self.load(R_IO, 0, 0, self.slot(name), math.ceil(self.tokens * self.model.hidden * a["elem"] / self.burst))

    def load_rope_table(self) -> None:
        """The cos/sin rows of the step's positions (in the layer section, so `pre`
        stays the same for every step)."""
        t = self.tokens
        lanes = rope_lanes(self.model, self.hw)
        self.load(R_HEAD, self.st.hbm_layout["rope_bursts"] + self.st.context - t,
                  self.st.rope_addr, "rope", t, lanes // BLOCK, self.max_ctx)

    def op_norm(self, name: str, a: dict) -> None:
        src = self.input_of(name)
        self.misc(a["func"], self.tokens, self.model.hidden, self.g.nodes[src]["out_addr"], a["out_addr"],
                  reads=(self.slot(src), "params"), writes=self.slot(name), src2=a["params_addr"])

    def op_misc(self, name: str, a: dict) -> None:
        preds = list(self.g.predecessors(name))
        if a["func"] == "add":
            other = next(p for p in preds if self.g.nodes[p]["out_addr"] != 0)
            self.misc("add", self.tokens, a["out_features"], 0, 0, src2=self.g.nodes[other]["out_addr"],
                      reads=(self.slot(name), self.slot(other)), writes=self.slot(name))
            return
        (src,) = preds
        self.misc(a["func"], self.tokens, self.g.nodes[src]["local"], self.g.nodes[src]["out_addr"],
                  a["out_addr"], reads=(self.slot(src),), writes=self.slot(name))

    def op_exchange(self, name: str, a: dict) -> None:
        """Copy this core's shard to the window's start (FP16 shards as twice the bytes),
        then gather in place."""
        src = self.input_of(name)
        shard = self.g.nodes[src]["local"] * a["elem"]
        self.misc("copy", self.tokens, shard, self.g.nodes[src]["out_addr"], a["out_addr"],
                  reads=(self.slot(src),), writes=self.slot(name))
        total = a["out_lines"]
        for start in range(0, total, EXCHANGE_MAX_LINES):
            self.b.add(Op.SYS, dict(kind=SysKind.EXCHANGE, lines=min(EXCHANGE_MAX_LINES, total - start)),
                       reads=(self.slot(name),), writes=(self.slot(name),))

    def op_linear(self, name: str, a: dict) -> None:
        src = self.input_of(name)
        is_head = a["op"] == "lm_head"
        t = self.tokens
        act = self.g.nodes[src]["out_addr"]
        if is_head and t > 1:       # only the last token's logits
            self.misc("last_token", t, a["in_features"], act, a["last_addr"], reads=(self.slot(src),),
                      writes=(a["last_addr"], a["last_addr"] + self.lines(a["in_features"])))
            src_slot, act, t = (a["last_addr"], a["last_addr"] + self.lines(a["in_features"])), a["last_addr"], 1
        else:
            src_slot = self.slot(src)
        fuse = MISC_CODES.get(a["fuse"], 0) if a["fuse"] != "rope" else 0
        out_ratio = 2 if a["fuse"] == "silu_mul" else 1
        width = a["elem"]
        done = 0
        for (rows, k0, kblk), (hbm, bursts) in zip(a["tiles"], a["tile_hbm"]):
            half = self.tile_count % 2
            self.tile_count += 1
            buf = f"wgt{half}"
            self.load(R_HEAD if is_head else R_WEIGHTS, hbm, self.wgt_base + half * self.wgt_half, buf, bursts)
            out = self.at(a["out_addr"], done // out_ratio * t * width, name)
            last_part = k0 + kblk == a["kblk"]
            self.matrix(t, rows, kblk, a["n"], a["bits"], self.at(act, k0 * BLOCK * t, name),
                        self.wgt_base + half * self.wgt_half, out, reads=(src_slot, buf),
                        writes=self.slot(name), acc=int(k0 > 0), fuse=int(fuse) if last_part else 0,
                        mode=MatMode.LINEAR_FP16 if width == 2 else MatMode.LINEAR, hold=int(not last_part))
            if last_part:
                done += rows
        if a["fuse"] == "rope":
            self.rope(name, a)
        if is_head:
            nbytes = t * a["local"] * width
            self.store(R_IO, 0, a["out_addr"], nbytes, reads=self.slot(name), writes="logits")
            self.b.add(Op.SYS, dict(kind=SysKind.HOST, lines=self.lines(nbytes)), reads=("logits",))

    def rope(self, name: str, a: dict) -> None:
        """RoPE on the queries and keys of the core (adjacent feature pairs, see
        docs/numerics.md), with the step's cos/sin table."""
        lanes = rope_lanes(self.model, self.hw)
        self.misc("rope", self.tokens, 2 * lanes, a["out_addr"], a["out_addr"], reads=(self.slot(name), "rope"),
                  writes=self.slot(name), src2=self.st.rope_addr)

    def op_attention(self, name: str, a: dict) -> None:
        qkv = self.input_of(name)
        qkv_addr = self.g.nodes[qkv]["out_addr"]
        kv = _KvLayout(row_bursts=a["kv_heads_core"] * a["head_dim"] // self.burst,
                       v_region=v_region_bursts(self.st, self.hw), x_len=a["head_dim"] // self.burst)
        self._store_new_kv(name, a, qkv, qkv_addr, kv)
        if len(a["qblocks"]) > 1:
            msg = "attn: a prefill chunk longer than the attention block (its query blocks are not contiguous)"
            if msg not in self.blockers:
                self.blockers.append(msg)
        for h in range(a["kv_heads_core"]):
            self._attend_head(name, a, h, qkv, qkv_addr, kv)

    def _store_new_kv(self, name: str, a: dict, qkv: str, qkv_addr: int, kv: "_KvLayout") -> None:
        """The new tokens' K and V go to the cache first (rows ctx-t .. ctx-1), token-major."""
        hd, group, kvh, t = a["head_dim"], self.model.group, a["kv_heads_core"], self.tokens
        ctx = self.st.context
        per_token, q_width = kvh * hd, kvh * group * hd
        for offset, region in ((q_width, 0), (q_width + per_token, kv.v_region)):
            addr = self.at(qkv_addr, t * offset, name)
            if t > 1:
                self.misc("token_major", t, per_token, addr, addr, reads=(self.slot(qkv),), writes=self.slot(qkv))
            self.store(R_KV, region + (ctx - t) * kv.row_bursts, addr, t * per_token, reads=self.slot(qkv),
                       writes="kv")

    def _attend_head(self, name: str, a: dict, h: int, qkv: str, qkv_addr: int, kv: "_KvLayout") -> None:
        """One KV head: its K and V into a global-buffer pair, then every query block."""
        hd, t = a["head_dim"], self.tokens
        pair = self.kv_count % 2
        self.kv_count += 1
        k_addr = self.glb_base + (2 * pair) * self.glb_quarter
        head = _Head(h=h, kq=f"glbK{pair}", vq=f"glbV{pair}", k_addr=k_addr, v_addr=k_addr + self.glb_quarter,
                     q_addr=self.at(qkv_addr, h * self.model.group * hd * t, name),
                     out_addr=self.at(a["out_addr"], h * self.model.group * hd * t, name))
        if a["kv_resident"]:
            ctx = self.st.context
            self.load(R_KV, h * kv.x_len, head.k_addr, head.kq, kv.x_len, ctx, kv.row_bursts, reads=("kv",))
            self.load(R_KV, kv.v_region + h * kv.x_len, head.v_addr, head.vq, kv.x_len, ctx, kv.row_bursts,
                      reads=("kv",))
        for q0, q1, kept in a["qblocks"]:
            self._query_block(name, a, qkv, head, kv, q0, q1, kept)

    def _query_block(self, name: str, a: dict, qkv: str, head: "_Head", kv: "_KvLayout", q0: int, q1: int,
                     kept: list[tuple[int, int]]) -> None:
        """Scores against the kept key chunks, softmax, then the context from V."""
        hd, h = a["head_dim"], head.h
        prefill = self.st.phase == "prefill"
        scores = (a["scores_addr"], a["scores_addr"] + a["scores_lines"])
        msg = f"attn: query block {q0}..{q1} straddles two mask blocks"
        if q0 // a["block"] != (q1 - 1) // a["block"] and msg not in self.blockers:
            self.blockers.append(msg)
        chunks = _split_at(kept, q0) if prefill else kept
        rows_q = (q1 - q0) * self.model.group
        keys = sum(e - s for s, e in chunks)
        done = 0
        for s, e in chunks:
            if not a["kv_resident"]:
                self.load(R_KV, s * kv.row_bursts + h * kv.x_len, head.k_addr, head.kq, kv.x_len, e - s,
                          kv.row_bursts, reads=("kv",))
            wk = head.k_addr + (self.lines(s * hd) if a["kv_resident"] else 0)
            causal = q1 - q0 if prefill and s == q0 else 0
            if causal > field_max(AUX_BITS):   # only numerics need the mask
                self.blockers.append(f"attn: a causal query block of {causal} tokens does not fit aux")
                causal = 0
            self.matrix(rows_q, e - s, hd // BLOCK, BLOCK, 8, head.q_addr, wk,
                        self.at(a["scores_addr"], done * rows_q * 2, name),
                        reads=(self.slot(qkv), head.kq), writes=scores, mode=MatMode.SCORES, aux=causal)
            done += e - s
        self.misc("softmax", rows_q, keys, a["scores_addr"], a["scores_addr"], reads=(scores, "params"),
                  writes=scores, src2=a["params_addr"])
        done = 0
        for i, (s, e) in enumerate(chunks):
            if not a["kv_resident"]:
                self.load(R_KV, kv.v_region + s * kv.row_bursts + h * kv.x_len, head.v_addr, head.vq, kv.x_len,
                          e - s, kv.row_bursts, reads=("kv",))
            wv = head.v_addr + (self.lines(s * hd) if a["kv_resident"] else 0)
            self.matrix(rows_q, hd, math.ceil((e - s) / BLOCK), BLOCK, 8,
                        self.at(a["scores_addr"], done * rows_q, name), wv, head.out_addr,
                        reads=(scores, head.vq), writes=self.slot(name), acc=int(i > 0),
                        mode=MatMode.CONTEXT, hold=int(i < len(chunks) - 1))
            done += e - s


class _KvLayout(NamedTuple):
    """Where a core's KV cache rows lie, in bursts: a token's row, the V region, a head's slice."""
    row_bursts: int
    v_region: int
    x_len: int


class _Head(NamedTuple):
    """One KV head's queues and addresses in the global buffer and the activation buffer."""
    h: int
    kq: str
    vq: str
    k_addr: int
    v_addr: int
    q_addr: int
    out_addr: int


def _split_at(chunks: list[tuple[int, int]], q0: int) -> list[tuple[int, int]]:
    """Key chunks with the diagonal ones starting at the first query, so the causal
    mask of a chunk needs nothing but the query count."""
    out = []
    for s, e in chunks:
        if s < q0 < e:
            out += [(s, q0), (q0, e)]
        else:
            out.append((s, e))
    return out


def _signature(g: nx.DiGraph, nodes: list[str]) -> tuple:
    """What makes a layer's section: its ops in order, their formats and kept attention blocks."""
    return tuple((n.split(".", 1)[1], g.nodes[n].get("n"), g.nodes[n].get("bits"), g.nodes[n].get("qblocks"))
                 for n in nodes)


def emit(g: nx.DiGraph, st: StepState, hw: HwConfig) -> None:
    """One section builder per distinct layer (and pre, post), and each layer's section."""
    phase, t, ctx = st.phase, st.tokens, st.context
    tag = f"{phase}-t{t}-c{ctx}"
    builders: list[SectionBuilder] = []
    section_of: dict[tuple, int] = {}
    layer_section: dict[int, int] = {}

    by_layer = nodes_by_layer(g)

    def build(name: str, nodes: list[str]) -> int:
        b = SectionBuilder(name)
        em = Emitter(g, st, hw, b)
        layer = g.nodes[nodes[0]]["layer"]
        if layer >= 0 or nodes != ["embed"]:
            em.load_params(layer, by_layer[layer])
        if layer >= 0 and st.model.positional == "rope":
            em.load_rope_table()
        for n in nodes:
            em.emit(n)
        b.finish()
        builders.append(b)
        return len(builders) - 1

    pre = [n for n in by_layer[-1] if n == "embed"]
    post = [n for n in by_layer[-1] if n != "embed"]
    layer_section[PRE] = build(f"{tag}-pre", pre)
    for layer in range(st.model.layers):
        sig = _signature(g, by_layer[layer])
        if sig not in section_of:
            section_of[sig] = build(f"{tag}-layer{layer}", by_layer[layer])
        layer_section[layer] = section_of[sig]
    layer_section[POST] = build(f"{tag}-post", post)
    st.builders = builders
    st.layer_section = layer_section
