"""One DSP48 slice computing two INT8 MACs that share a weight, and the
overflow-adjust unit that splits its packed result back into both sums.

Packing: the two activations `lo`, `hi` (two tokens) enter the multiplier as
one operand `hi * 2**s + lo` (the DSP's pre-adder), the weight as the other, so
one product holds `w*hi * 2**s + w*lo`. The low field of `s` bits wraps, so a
cascade of up to `max_terms` products can be split exactly (see
`OverflowAdjust`); the chain breaks at least that often.

The geometry is the primitive's: DSP48E2 (UltraScale+, the U280) multiplies
27 x 18 bits, DSP48E1 (7-series) 25 x 18. The packing shift follows from the
wide port, so one slice always maps to one DSP48 cell.
"""
from __future__ import annotations

from dataclasses import dataclass

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hwmodel.chain_timing import ACCUMULATE_STAGES, DSP_STAGES
from hwmodel.errors import ConfigError

INT8_PRODUCT_MIN = -128 * 127    # most negative product of two INT8
INT8_PRODUCT_MAX = -128 * -128   # most positive product of two INT8


@dataclass(frozen=True)
class Dsp48Geometry:
    """Port widths of a DSP48 primitive, as far as packing needs them."""
    name: str
    a_width: int     # multiplier port fed with the packed activation pair
    b_width: int     # multiplier port fed with the weight
    p_width: int     # accumulator / cascade width

    @property
    def pack_shift(self) -> int:
        """Bit position of the high activation: the widest that keeps
        `hi * 2**s + lo` inside the signed `a_width`-bit port."""
        return self.a_width - 9

    @property
    def max_terms(self) -> int:
        """Most INT8 products one packed sum may hold and still be split exactly:
        the low sum must stay inside a window of 2**s values. A power of two,
        so chain segments tile a power-of-two chain."""
        terms = ((1 << self.pack_shift) - 1) // (INT8_PRODUCT_MAX - INT8_PRODUCT_MIN)
        return 1 << (terms.bit_length() - 1)


DSP48E2 = Dsp48Geometry("DSP48E2", a_width=27, b_width=18, p_width=48)
DSP48E1 = Dsp48Geometry("DSP48E1", a_width=25, b_width=18, p_width=48)
FAMILY_DSP = {"xcup": DSP48E2, "xc7": DSP48E1}


def geometry_for(family: str) -> Dsp48Geometry:
    """The DSP48 primitive of a Yosys `synth_xilinx -family`."""
    if family not in FAMILY_DSP:
        raise ConfigError(f"field family: expected one of {sorted(FAMILY_DSP)}, got {family!r}")
    return FAMILY_DSP[family]


ACT_PAIR = data.StructLayout({"lo": signed(8), "hi": signed(8)})   # two tokens' INT8 activations


def sum_pair_layout(width: int) -> data.StructLayout:
    """A pair of exact sums, one per token, split from a packed result."""
    return data.StructLayout({"lo": signed(width), "hi": signed(width)})


def sum_width(terms: int) -> int:
    """Signed width holding any sum of `terms` INT8 x INT8 products."""
    return max(abs(terms * INT8_PRODUCT_MIN), terms * INT8_PRODUCT_MAX).bit_length() + 1


class Dsp48Slice(wiring.Component):
    """A DSP48 with AREG/BREG, MREG and PREG, a P cascade, and a Z-mux that
    either adds the cascade input or restarts the sum (`restart`).

    `restart` is an OPMODE-like static control: it applies to the product
    currently in the M register. `ce` gates every register (CEA/CEB/CEM/CEP).
    With `input_register` the operands first pass the primitive's A/D/B1
    registers, one cycle more: the last stage of a chain lane's input skew.
    Elaborated for the export's platform, a DSP48E2 slice is the primitive
    itself (`hwmodel.gateware.primitives`).
    """

    LATENCY = DSP_STAGES   # registers from the operands to P: A/B, M, P

    def __init__(self, *, geometry: Dsp48Geometry = DSP48E2, input_register: bool = False):
        if not isinstance(geometry, Dsp48Geometry):
            raise TypeError(f"geometry must be a Dsp48Geometry, not {geometry!r}")
        self.geometry = geometry
        self.input_register = input_register
        p = signed(geometry.p_width)
        super().__init__({
            "acts": In(ACT_PAIR),
            "weight": In(signed(8)),
            "pcin": In(p),
            "restart": In(1),
            "ce": In(1, init=1),
            "p": Out(p),
            "pcout": Out(p),
        })

    @property
    def latency(self) -> int:
        return self.LATENCY + self.input_register

    def elaborate(self, platform) -> Module:
        primitive = getattr(platform, "get_dsp48", None)     # the export's platform (`primitives`)
        if primitive is not None and (m := primitive(self)) is not None:
            return m
        m = Module()
        g = self.geometry
        acts, weight = self.acts, self.weight
        if self.input_register:
            acts, weight = Signal(ACT_PAIR, reset_less=True), Signal(signed(8), reset_less=True)
            with m.If(self.ce):
                m.d.sync += [acts.eq(self.acts), weight.eq(self.weight)]
        a = Signal(signed(g.a_width), reset_less=True)       # data registers need no reset,
        b = Signal(signed(8), reset_less=True)               # which lets them pack into the DSP
        prod = Signal(signed(g.a_width + 8), reset_less=True)
        with m.If(self.ce):
            m.d.sync += [
                a.eq((acts.hi << g.pack_shift) + acts.lo),   # pre-adder: the packing
                b.eq(weight),
                prod.eq(a * b),
                self.p.eq(prod + Mux(self.restart, 0, self.pcin)),
            ]
        m.d.comb += self.pcout.eq(self.p)
        return m


class Dsp48Accumulator(wiring.Component):
    """A DSP48 as a scaled accumulator, `p <= (restart ? 0 : p) + (a + d) * b`:
    the pre-adder sums two partial sums, the multiplier scales them by an
    unsigned `b`, the Z-mux feeds P back or restarts it, and P is the only
    register (`ce` gates it). The MV tile's group scale and 48-bit accumulator
    of one token: in the fabric they cost about 16 LUT and 12 FF per MAC DSP
    (issue 9). Elaborated for the export's platform, a DSP48E2 one is the
    primitive itself (`hwmodel.gateware.primitives`)."""

    LATENCY = ACCUMULATE_STAGES

    def __init__(self, *, geometry: Dsp48Geometry = DSP48E2, width: int, b_bits: int):
        if not 1 <= width < geometry.a_width:
            raise ValueError(f"width must leave the {geometry.a_width}-bit pre-adder a carry, got {width}")
        if not 1 <= b_bits < geometry.b_width:
            raise ValueError(f"b_bits must fit the signed {geometry.b_width}-bit port unsigned, got {b_bits}")
        self.geometry = geometry
        super().__init__({
            "a": In(signed(width)),
            "d": In(signed(width)),
            "b": In(b_bits),
            "restart": In(1),
            "ce": In(1, init=1),
            "p": Out(signed(geometry.p_width)),
        })

    def elaborate(self, platform) -> Module:
        primitive = getattr(platform, "get_dsp48_accumulator", None)     # the export's platform
        if primitive is not None and (m := primitive(self)) is not None:
            return m
        m = Module()
        with m.If(self.ce):
            m.d.sync += self.p.eq(Mux(self.restart, 0, self.p) + (self.a + self.d) * self.b)
        return m


class OverflowAdjust(wiring.Component):
    """Splits a packed sum of up to `terms` products into its two exact sums.

    The low sum is `p mod 2**s` read in the window that holds every sum of
    `terms` products, `[T - 2**s + 1, T]` with `T = terms * 16384`; the high sum
    is `(p - lo) >> s`: the field above `s` plus the borrow a negative low sum
    took from it, written so (an incrementer on the sum's width, the low sum's
    sign the borrow itself) because Yosys keeps the full-width subtract of the
    formula: on xc7 23 LUT a node, so 7. Combinational.
    """

    def __init__(self, *, geometry: Dsp48Geometry = DSP48E2, terms: int | None = None):
        terms = geometry.max_terms if terms is None else terms
        if not 1 <= terms <= geometry.max_terms:
            raise ValueError(f"terms must be in 1..{geometry.max_terms} for {geometry.name}, got {terms}")
        self.geometry = geometry
        self.terms = terms
        super().__init__({
            "p": In(signed(geometry.p_width)),
            "sums": Out(sum_pair_layout(sum_width(terms))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        s = self.geometry.pack_shift
        low = self.p[:s]
        borrow = Signal()
        m.d.comb += [
            borrow.eq(low > self.terms * INT8_PRODUCT_MAX),
            self.sums.lo.eq(Mux(borrow, low - (1 << s), low)),
            self.sums.hi.eq(self.p[s:s + len(self.sums.hi)] + borrow),
        ]
        return m
