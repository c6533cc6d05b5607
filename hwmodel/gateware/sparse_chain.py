"""The configurable sparse DSP chain.

A systolic cascade of `length` DSP48 slices in groups of two. Every cycle it
takes one beat: `length` INT8 weights (the non-zeros of an N:16 row, in
order), their 4-bit column indices inside their 16-wide block, and the
activation pairs of the blocks the beat covers. Lane j belongs to block slot
`j // N`; its *sparse MUX* picks the activation pair its index names.

Lane j's operands are delayed j cycles (input skew, the last cycle in the
slice's input register) so the P cascade meets them: its index and weight
in the chain, its block before the MUX (`BlockSkew`). The cascade breaks after
every `min(length, max_terms)` DSPs, the most products packing can split: at
each break a *reduction node* splits the packed sum into both tokens' exact
sums (overflow adjust) and the next segment restarts through its Z-mux. Every
non-zero of a beat belongs to the same row, so the breaks do not follow the
N:16 blocks: the pattern decides which block a lane reads, not where sums
end. The partial sums are de-skewed so a beat's partials leave together.

The pattern (`n_log2`, N = 2 << n_log2, the ISA's encoding) is quasi-static:
change it only while the chain is empty. The whole pipeline shares one clock
enable, so back-pressure stalls it as a unit.

Which block a lane reads depends on the pattern, not on the row, so the
*block router* that picks a block for each lane pair (lanes 2g and 2g+1 always
share one, as N >= 2) and the block skew are not part of a lane: a chain
built `routed` takes blocks already routed and skewed, and the MV tile routes
and skews once for all its chains (they walk the same columns). Each lane's
own MUX is then a 16:1 pick.
"""
from __future__ import annotations

from amaranth import Module, Mux, Signal, Value, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwmodel.chain_timing import REDUCE_STAGES
from hwmodel.gateware.dsp48 import ACT_PAIR, DSP48E2, Dsp48Geometry, Dsp48Slice, OverflowAdjust, \
    sum_pair_layout, sum_width
from hwmodel.isa import N_LOG2_BITS, field_max, n_code


def pattern_code_width(block: int) -> int:
    """The ISA's `n_log2` field, which must hold the densest pattern's code."""
    if n_code(block) > field_max(N_LOG2_BITS):
        raise ValueError(f"block={block}: the ISA's n_log2 field ({N_LOG2_BITS} bits) cannot name N={block}")
    return N_LOG2_BITS


def block_layout(block: int) -> data.ArrayLayout:
    """The activation pairs of one block of `block` columns."""
    return data.ArrayLayout(ACT_PAIR, block)


def check_chain(length: int, patterns: tuple[int, ...], block: int) -> tuple[int, ...]:
    """The supported patterns, sorted; ValueError for a chain that cannot be built."""
    if length < 2 or length & (length - 1):
        raise ValueError(f"length must be a power of two >= 2 (groups of two DSPs), got {length}")
    if block < 2 or block & (block - 1):
        raise ValueError(f"block must be a power of two, got {block}")
    if not patterns:
        raise ValueError("patterns must name at least one N")
    for n in patterns:
        if n < 2 or n & (n - 1) or block % n:
            raise ValueError(f"pattern N={n} must be a power of two >= 2 dividing block={block}")
    return tuple(sorted(set(patterns)))


def chain_slots(length: int, patterns: tuple[int, ...]) -> int:
    """Activation blocks one beat can touch: L/N for the sparsest pattern."""
    return max(max(1, length // n) for n in patterns)


def chain_latency_cycles(length: int) -> int:
    """Enabled cycles from a beat's input handshake to its output handshake:
    the longest input skew, the slice's A/B-M-P registers, the node register."""
    return (length - 1) + Dsp48Slice.LATENCY + REDUCE_STAGES


def pick(options: list, sel: Value) -> Value:
    """`options[sel]` as a binary tree of 2:1 multiplexers, LSB of `sel` first: the
    shape Yosys' `synth_xilinx -widemux` maps to LUT6 + MUXF7 + MUXF8 (4 LUT6 a
    bit of a 16:1 pick instead of 5; an indexed part-select is not mapped so)."""
    if len(options) & (len(options) - 1):
        raise ValueError(f"pick: {len(options)} options, not a power of two")
    level, bit = list(options), 0
    while len(level) > 1:
        level = [Mux(sel[bit], b, a) for a, b in zip(level[::2], level[1::2])]
        bit += 1
    return level[0]


def select_by_pattern(m: Module, n_log2: Signal, patterns: tuple[int, ...], target, value_of) -> None:
    """Drive `target` from the pattern code; an unsupported code acts as the densest."""
    with m.Switch(n_log2):
        for n in patterns:
            with m.Case(n_code(n)):
                m.d.comb += target.eq(value_of(n))
        with m.Default():
            m.d.comb += target.eq(value_of(patterns[-1]))


class BlockRouter(wiring.Component):
    """The activation blocks of a beat's slots, routed to the chain's lane pairs
    by the pattern: pair g reads slot `2g // N`. Combinational; one per tile."""

    def __init__(self, *, length: int, patterns: tuple[int, ...] = (2, 4, 8, 16), block: int = 16):
        self.patterns = check_chain(length, patterns, block)
        self.length = length
        super().__init__({
            "n_log2": In(pattern_code_width(block)),
            "acts": In(data.ArrayLayout(block_layout(block), chain_slots(length, self.patterns))),
            "pairs": Out(self.pairs_layout(length, block)),
        })

    @staticmethod
    def pairs_layout(length: int, block: int) -> data.ArrayLayout:
        """One block of activation pairs per lane pair."""
        return data.ArrayLayout(block_layout(block), length // 2)

    def elaborate(self, platform) -> Module:
        m = Module()
        for g in range(self.length // 2):
            select_by_pattern(m, self.n_log2, self.patterns, self.pairs[g], lambda n: self.acts[2 * g // n])
        return m


def lane_skew(lane: int) -> int:
    """Enabled cycles lane `lane`'s operands wait before its slice's input register
    (lane 0 has none): the cascade reaches lane j j cycles after lane 0."""
    return max(lane - 1, 0)


class BlockSkew(wiring.Component):
    """The routed blocks delayed for each lane: lane j gets its pair's block
    `lane_skew(j)` enabled cycles late, lanes 2g and 2g+1 as two taps of one
    shift register. Skewing the block before the sparse MUX, rather than the
    picked pair after it, lets every chain of a tile share the skew (they walk
    the same blocks); each chain skews only its indices and weights."""

    def __init__(self, *, length: int, block: int = 16):
        self.length = length
        super().__init__({
            "pairs": In(BlockRouter.pairs_layout(length, block)),
            "ce": In(1, init=1),
            "lanes": Out(data.ArrayLayout(block_layout(block), length)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        for g in range(self.length // 2):
            taps = [self.pairs[g]]
            for k in range(1, lane_skew(2 * g + 1) + 1):
                stage = Signal(self.pairs[g].shape(), name=f"pair{g}_skew{k}", reset_less=True)
                with m.If(self.ce):
                    m.d.sync += stage.eq(taps[-1])
                taps.append(stage)
            for j in (2 * g, 2 * g + 1):
                m.d.comb += self.lanes[j].eq(taps[lane_skew(j)])
        return m


class SparseDspChain(wiring.Component):
    """`length` DSP48s; stream in beats, stream out one partial sum pair per
    cascade segment. A `routed` chain takes one block per lane, routed and
    skewed outside (a `BlockRouter` and a `BlockSkew` driven by the chain's
    `i.ready`, so lane j's block arrives `lane_skew(j)` accepted beats after
    its beat), instead of the beat's slots, and needs no pattern. A beat's
    `tag` (`tag_width` bits: the tile's group multiplier) leaves with its
    partial sums."""

    def __init__(self, *, length: int, patterns: tuple[int, ...] = (2, 4, 8, 16), block: int = 16,
                 geometry: Dsp48Geometry = DSP48E2, routed: bool = False, tag_width: int = 0):
        self.patterns = check_chain(length, patterns, block)
        self.length = length
        self.block = block
        self.geometry = geometry
        self.routed = routed
        self.tag_width = tag_width
        self.slots = length if routed else chain_slots(length, self.patterns)
        self.segment = min(length, geometry.max_terms)
        self.partial_width = sum_width(self.segment)
        ports = {"i": In(stream.Signature(self.beat_layout)), "o": Out(stream.Signature(self.partials_layout))}
        if not routed:
            ports["n_log2"] = In(pattern_code_width(block))
        super().__init__(ports)

    @property
    def beat_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "weights": data.ArrayLayout(signed(8), self.length),
            "index": data.ArrayLayout((self.block - 1).bit_length(), self.length),
            "acts": data.ArrayLayout(block_layout(self.block), self.slots),
            "last": 1,
            "tag": self.tag_width,
        })

    @property
    def partials_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "partials": data.ArrayLayout(sum_pair_layout(self.partial_width), self.length // self.segment),
            "last": 1,
            "tag": self.tag_width,
        })

    @property
    def latency(self) -> int:
        return chain_latency_cycles(self.length)

    def elaborate(self, platform) -> Module:
        m = Module()
        L = self.length
        beat = self.i.payload
        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), self.i.ready.eq(ce)]

        blocks = beat.acts
        if not self.routed:
            m.submodules.router = router = BlockRouter(length=L, patterns=self.patterns, block=self.block)
            m.submodules.skew = skew = BlockSkew(length=L, block=self.block)
            m.d.comb += [router.n_log2.eq(self.n_log2), router.acts.eq(beat.acts),
                         skew.pairs.eq(router.pairs), skew.ce.eq(ce)]
            blocks = skew.lanes

        slices = []
        for j in range(L):
            index, weight = beat.index[j], beat.weights[j]
            for k in range(1, lane_skew(j) + 1):   # skew: shift registers, the last stage in the slice's input register
                index_k = Signal(index.shape(), name=f"index{j}_skew{k}", reset_less=True)
                weight_k = Signal(signed(8), name=f"w{j}_skew{k}", reset_less=True)
                with m.If(ce):
                    m.d.sync += [index_k.eq(index), weight_k.eq(weight)]
                index, weight = index_k, weight_k
            act = Signal(ACT_PAIR, name=f"act{j}")
            m.d.comb += act.eq(pick([blocks[j][k] for k in range(self.block)], index))   # the sparse MUX
            dsp = Dsp48Slice(geometry=self.geometry, input_register=j > 0)
            m.submodules[f"dsp{j}"] = dsp
            m.d.comb += [dsp.acts.eq(act), dsp.weight.eq(weight), dsp.ce.eq(ce),
                         dsp.restart.eq(int(j % self.segment == 0))]
            if slices:
                m.d.comb += dsp.pcin.eq(slices[-1].pcout)
            slices.append(dsp)

        pair = sum_pair_layout(self.partial_width)
        for g in range(L // self.segment):
            end = (g + 1) * self.segment - 1
            adjust = OverflowAdjust(geometry=self.geometry, terms=self.segment)
            m.submodules[f"adjust{g}"] = adjust
            node = Signal(pair, name=f"node{g}", reset_less=True)
            m.d.comb += adjust.p.eq(slices[end].p)
            with m.If(ce):
                m.d.sync += node.eq(adjust.sums)
            for k in range(L - 1 - end):     # de-skew: every partial of a beat leaves together
                later = Signal(pair, name=f"node{g}_deskew{k}", reset_less=True)
                with m.If(ce):
                    m.d.sync += later.eq(node)
                node = later
            m.d.comb += self.o.payload.partials[g].eq(node)

        valid, last, tag = self.i.valid, beat.last, beat.tag
        for k in range(self.latency):
            valid_k, last_k = Signal(name=f"valid{k}"), Signal(name=f"last{k}")
            tag_k = Signal(self.tag_width, name=f"tag{k}", reset_less=True)
            with m.If(ce):
                m.d.sync += [valid_k.eq(valid), last_k.eq(last), tag_k.eq(tag)]
            valid, last, tag = valid_k, last_k, tag_k
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.last.eq(last), self.o.payload.tag.eq(tag)]
        return m
