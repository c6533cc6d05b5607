"""The matrix-vector tile unit: `chains` sparse DSP chains side by side.

Each beat carries, for every chain, one row's next `chain_length` non-zero
codes (as bit planes, `dequantizer`), their group's multiplier and zero
point (`hwmodel.dequant`: a beat lies in one scale group) and their 4-bit
indices, plus the activation blocks those non-zeros read (shared: all chains walk the same columns of
different rows, so one block router and one block skew serve them all).
Codes minus the zero point enter the chains as INT8 and are multiplied by two
tokens at once; each chain's beat sum, times the beat's multiplier,
accumulates in 48 bits per row
(the arithmetic is linear, so scaling every beat of a group is scaling the
group's sum), the multiply in one DSP48 per token (`SCALE_DSPS`); the beat
flagged `last` ends a row and emits one result pair per chain.

Timing is the formula of `hwmodel.chain_timing`: a row takes
ceil(kblk*N/L) beats, one beat per cycle, and a result leaves `latency`
cycles after its row's last beat.
"""
from __future__ import annotations

from amaranth import Module, Signal, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from hwmodel.chain_timing import ACCUMULATE_STAGES, DEQUANT_STAGES
from hwmodel.dequant import ACC_BITS, MULT_BITS
from hwmodel.errors import ConfigError
from hwmodel.gateware.dequantizer import Dequantizer, checked_weight_bits
from hwmodel.gateware.dsp48 import DSP48E2, Dsp48Accumulator, Dsp48Geometry, sum_pair_layout
from hwmodel.gateware.sparse_chain import BlockRouter, BlockSkew, SparseDspChain, block_layout, \
    chain_latency_cycles, chain_slots, check_chain, pattern_code_width
from hwmodel.hwconfig import HwConfig


class MatrixVectorTile(wiring.Component):
    """Streams weight beats in, 48-bit result pairs (one per chain and row) out."""

    def __init__(self, *, chains: int, chain_length: int, weight_bits: tuple[int, ...],
                 patterns: tuple[int, ...] = (2, 4, 8, 16), block: int = 16,
                 geometry: Dsp48Geometry = DSP48E2):
        if chains < 1:
            raise ValueError(f"chains must be >= 1, got {chains}")
        self.chains = chains
        self.chain_length = chain_length
        self.weight_bits = checked_weight_bits(weight_bits)
        self.block = block
        self.geometry = geometry
        self.patterns = check_chain(chain_length, patterns, block)
        super().__init__({
            "n_log2": In(pattern_code_width(block)),
            "i": In(stream.Signature(self.beat_layout)),
            "o": Out(stream.Signature(self.result_layout)),
        })

    @classmethod
    def from_hw(cls, hw: HwConfig, *, geometry: Dsp48Geometry = DSP48E2) -> "MatrixVectorTile":
        """The tile of one core's MPE as the hardware config describes it."""
        if hw.dsp_group != 2:
            raise ConfigError(f"{hw.source}: field mpe.dsp_group: the gateware chain groups two DSP48s, "
                              f"got {hw.dsp_group}")
        if hw.macs_per_dsp != 2:
            raise ConfigError(f"{hw.source}: field mpe.macs_per_dsp: the gateware packs two INT8 MACs per "
                              f"DSP48, got {hw.macs_per_dsp}")
        try:
            return cls(chains=hw.chains, chain_length=hw.chain_length, weight_bits=hw.weight_bits,
                       patterns=hw.sparsity_n, block=hw.sparsity_m, geometry=geometry)
        except ValueError as exc:
            raise ConfigError(f"{hw.source}: field mpe: {exc}") from None

    @property
    def slots(self) -> int:
        return chain_slots(self.chain_length, self.patterns)

    @property
    def code_bits(self) -> int:
        """Width of a code and of a zero point on the bus: the widest supported code."""
        return self.weight_bits[-1]

    @property
    def lane_layout(self) -> data.StructLayout:
        """One chain's share of a beat."""
        return data.StructLayout({
            "q": unsigned(self.code_bits * self.chain_length),
            "m": unsigned(MULT_BITS),
            "z": unsigned(self.code_bits),
            "index": data.ArrayLayout((self.block - 1).bit_length(), self.chain_length),
        })

    @property
    def beat_layout(self) -> data.StructLayout:
        return data.StructLayout({
            "acts": data.ArrayLayout(block_layout(self.block), self.slots),
            "lanes": data.ArrayLayout(self.lane_layout, self.chains),
            "last": 1,
        })

    @property
    def result_layout(self) -> data.ArrayLayout:
        return data.ArrayLayout(sum_pair_layout(ACC_BITS), self.chains)

    @property
    def latency(self) -> int:
        """Cycles from a row's last beat (input handshake) to its result
        (output handshake): dequantizer register, chain, accumulator register."""
        return DEQUANT_STAGES + chain_latency_cycles(self.chain_length) + ACCUMULATE_STAGES

    def elaborate(self, platform) -> Module:
        m = Module()
        beat = self.i.payload
        chains = [SparseDspChain(length=self.chain_length, patterns=self.patterns, block=self.block,
                                 geometry=self.geometry, routed=True, tag_width=MULT_BITS)
                  for _ in range(self.chains)]
        m.submodules.router = router = BlockRouter(length=self.chain_length, patterns=self.patterns,
                                                   block=self.block)
        m.d.comb += [router.n_log2.eq(self.n_log2), router.acts.eq(beat.acts)]

        # stage 0: dequantizers, with the rest of the beat (blocks routed to lane pairs) registered beside them
        s0_valid, s0_last = Signal(), Signal()
        s0_acts = Signal(router.pairs.shape(), reset_less=True)
        s0_index = [Signal(self.lane_layout["index"].shape, name=f"s0_index{c}", reset_less=True)
                    for c in range(self.chains)]
        s0_m = [Signal(MULT_BITS, name=f"s0_m{c}", reset_less=True) for c in range(self.chains)]
        ce0 = Signal()
        m.d.comb += [ce0.eq(~s0_valid | chains[0].i.ready), self.i.ready.eq(ce0)]
        with m.If(ce0):
            m.d.sync += [s0_valid.eq(self.i.valid), s0_last.eq(beat.last), s0_acts.eq(router.pairs)]
            m.d.sync += [s0_index[c].eq(beat.lanes[c].index) for c in range(self.chains)]
            m.d.sync += [s0_m[c].eq(beat.lanes[c].m) for c in range(self.chains)]

        # the blocks skewed for the lanes, once for all chains (they share one clock enable)
        m.submodules.skew = skew = BlockSkew(length=self.chain_length, block=self.block)
        m.d.comb += [skew.pairs.eq(s0_acts), skew.ce.eq(chains[0].i.ready)]

        # the chains, in lock step
        res_valid = Signal()
        take_ready = Signal()
        m.d.comb += take_ready.eq(~res_valid | self.o.ready)
        for c, chain in enumerate(chains):
            deq = Dequantizer(lanes=self.chain_length, code_bits=self.code_bits)
            m.submodules[f"dequant{c}"] = deq
            m.submodules[f"chain{c}"] = chain
            lane = beat.lanes[c]
            m.d.comb += [
                deq.q.eq(lane.q), deq.z.eq(lane.z),
                deq.ce.eq(ce0),
                chain.i.valid.eq(s0_valid),
                chain.i.payload.weights.eq(deq.w),
                chain.i.payload.index.eq(s0_index[c]),
                chain.i.payload.acts.eq(skew.lanes),
                chain.i.payload.last.eq(s0_last),
                chain.i.payload.tag.eq(s0_m[c]),
                chain.o.ready.eq(take_ready),
            ]

        # a row's beats: each beat's partials, times its multiplier, accumulate in a DSP48 per token
        out = chains[0].o
        take, first = Signal(), Signal(init=1)     # `first`: the next beat taken starts a row
        m.d.comb += [take.eq(out.valid & take_ready), self.o.valid.eq(res_valid)]
        with m.If(self.o.ready):
            m.d.sync += res_valid.eq(0)
        with m.If(take):
            m.d.sync += first.eq(out.payload.last)
            with m.If(out.payload.last):
                m.d.sync += res_valid.eq(1)
        for c, chain in enumerate(chains):
            parts, mult = chain.o.payload.partials, chain.o.payload.tag   # the pre-adder sums the two
            for t in ("lo", "hi"):
                acc = Dsp48Accumulator(geometry=self.geometry, width=chain.partial_width, b_bits=MULT_BITS)
                m.submodules[f"acc{c}_{t}"] = acc
                m.d.comb += [acc.a.eq(parts[0][t]), acc.d.eq(parts[1][t] if len(parts) > 1 else 0),
                             acc.b.eq(mult), acc.restart.eq(first), acc.ce.eq(take),
                             self.o.payload[c][t].eq(acc.p)]   # P holds until the result is taken
        return m
