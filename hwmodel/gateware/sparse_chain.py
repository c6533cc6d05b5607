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
end. A node adds its sums to the running sum of the segments before it,
which waits one segment's cycles for it, so a beat leaves as two partials:
the running sum up to the last segment and the last segment's sums (one
partial if the chain is one segment), which the tile's accumulator adds in
its pre-adder. (De-skewing every node's sums to leave together, to be
added after the chain, put the xc7 tile of 16 chains, a node every 2 DSPs,
at 117.9 LUT per DSP48; with this and `OverflowAdjust`'s incrementer 96.5.)

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
    """`length` DSP48s; stream in beats, stream out each beat's partial sum
    pairs (two, or one for a chain of one segment). A `routed` chain takes one block per lane, routed and
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
    def segments(self) -> int:
        return self.length // self.segment

    @property
    def partial_width(self) -> int:
        """Width of a partial: the running sum's, of all segments but the last."""
        return sum_width(max(self.segment, self.length - self.segment))

    @property
    def partials_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "partials": data.ArrayLayout(sum_pair_layout(self.partial_width), min(self.segments, 2)),
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
            # skew: shift registers, the last stage in the slice's input register
            index = delayed(m, beat.index[j], lane_skew(j), ce, f"index{j}")
            weight = delayed(m, beat.weights[j], lane_skew(j), ce, f"w{j}")
            act = Signal(ACT_PAIR, name=f"act{j}")
            m.d.comb += act.eq(pick([blocks[j][k] for k in range(self.block)], index))   # the sparse MUX
            dsp = Dsp48Slice(geometry=self.geometry, input_register=j > 0)
            m.submodules[f"dsp{j}"] = dsp
            m.d.comb += [dsp.acts.eq(act), dsp.weight.eq(weight), dsp.ce.eq(ce),
                         dsp.restart.eq(int(j % self.segment == 0))]
            if slices:
                m.d.comb += dsp.pcin.eq(slices[-1].pcout)
            slices.append(dsp)

        running = None      # the sums of segments 0..g-1, delayed to meet segment g's
        for g in range(self.segments):
            adjust = OverflowAdjust(geometry=self.geometry, terms=self.segment)
            m.submodules[f"adjust{g}"] = adjust
            m.d.comb += adjust.p.eq(slices[(g + 1) * self.segment - 1].p)
            last_node = g == self.segments - 1
            node = Signal(sum_pair_layout(sum_width(self.segment * (1 if last_node else g + 1))),
                          name=f"node{g}", reset_less=True)
            with m.If(ce):
                if running is None or last_node:
                    m.d.sync += node.eq(adjust.sums)
                else:
                    m.d.sync += [node.lo.eq(adjust.sums.lo + running.lo), node.hi.eq(adjust.sums.hi + running.hi)]
            if last_node:
                parts = [node] if running is None else [delayed(m, running, 1, ce, "running"), node]
                for part, value in zip(self.o.payload.partials, parts):   # field by field: widths differ
                    m.d.comb += [part.lo.eq(value.lo), part.hi.eq(value.hi)]
            else:
                running = delayed(m, node, self.segment - 1, ce, f"node{g}")

        valid, last, tag = self.i.valid, beat.last, beat.tag
        for k in range(self.latency):
            valid_k, last_k = Signal(name=f"valid{k}"), Signal(name=f"last{k}")
            tag_k = Signal(self.tag_width, name=f"tag{k}", reset_less=True)
            with m.If(ce):
                m.d.sync += [valid_k.eq(valid), last_k.eq(last), tag_k.eq(tag)]
            valid, last, tag = valid_k, last_k, tag_k
        m.d.comb += [self.o.valid.eq(valid), self.o.payload.last.eq(last), self.o.payload.tag.eq(tag)]
        return m


def delayed(m: Module, value: Value, cycles: int, ce: Value, name: str) -> Value:
    """`value` through `cycles` registers enabled by `ce`."""
    for k in range(cycles):
        stage = Signal(value.shape(), name=f"{name}_delay{k}", reset_less=True)
        with m.If(ce):
            m.d.sync += stage.eq(value)
        value = stage
    return value
