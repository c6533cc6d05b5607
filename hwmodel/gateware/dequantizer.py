"""The dequantizer: bit-width expanders turning packed 2..8-bit codes into INT8.

Codes arrive packed LSB first, `bits` bits per lane, so a beat of narrow
weights needs fewer buffer bits. Every lane computes the one dequantization
arithmetic of `hwmodel.dequant` with its group's multiplier m, shift sh and
zero point z:

    w8 = sat127((m * (q - z) + r) >> sh),   r = (1 << sh) >> 1

q and z unsigned, the shift arithmetic (halves round up), the result
saturated to [-127, 127]. The bit width is a quasi-static control in the
ISA's encoding (`hwmodel.isa.wbits_code`); an unsupported width gives zeros.
"""
from __future__ import annotations

from amaranth import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hwmodel.chain_timing import DEQUANT_STAGES
from hwmodel.dequant import MULT_BITS, SHIFT_BITS
from hwmodel.isa import INT8_MAX, WBITS_BITS, wbits_code


def checked_weight_bits(weight_bits: tuple[int, ...]) -> tuple[int, ...]:
    """The supported widths, sorted; each must expand to INT8."""
    if not weight_bits or any(not 2 <= b <= 8 for b in weight_bits):
        raise ValueError(f"weight_bits must be widths in 2..8, got {weight_bits}")
    return tuple(sorted(set(weight_bits)))


class Dequantizer(wiring.Component):
    """`lanes` expanders sharing one group's (m, sh, z), behind one pipeline
    register (gated by `ce`). Codes and the zero point are as wide as the
    widest supported code (`code_bits`)."""

    def __init__(self, *, lanes: int, weight_bits: tuple[int, ...]):
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes = lanes
        self.weight_bits = checked_weight_bits(weight_bits)
        super().__init__({
            "q": In(self.code_bits * lanes),
            "wbits": In(WBITS_BITS),
            "m": In(MULT_BITS),
            "sh": In(SHIFT_BITS),
            "z": In(self.code_bits),
            "ce": In(1, init=1),
            "w": Out(data.ArrayLayout(signed(8), lanes)),
        })

    @property
    def code_bits(self) -> int:
        return self.weight_bits[-1]

    @property
    def latency(self) -> int:
        return DEQUANT_STAGES

    def elaborate(self, platform) -> Module:
        m = Module()
        # the rounding term (1 << sh) >> 1, shared by the lanes
        half = Signal(1 << SHIFT_BITS)
        m.d.comb += half.eq((Const(1, 1) << self.sh)[1:])
        for lane in range(self.lanes):
            code = Signal(unsigned(self.code_bits), name=f"code{lane}")
            with m.Switch(self.wbits):
                for bits in self.weight_bits:
                    with m.Case(wbits_code(bits)):
                        m.d.comb += code.eq(self.q[lane * bits:(lane + 1) * bits])
                with m.Default():
                    m.d.comb += code.eq(self.z)     # an unsupported width: weight 0
            diff = Signal(signed(self.code_bits + 1), name=f"diff{lane}")
            prod = Signal(signed(self.code_bits + 1 + MULT_BITS), name=f"prod{lane}")
            rounded = Signal(signed(self.code_bits + 2 + MULT_BITS), name=f"rounded{lane}")
            # m * diff as shifted partial products (a fabric multiplier: no DSP48 outside the chain)
            m.d.comb += [diff.eq(code - self.z),
                         prod.eq(sum(Mux(self.m[i], diff << i, 0) for i in range(MULT_BITS))),
                         rounded.eq((prod + half) >> self.sh)]
            sat = Signal(signed(8), name=f"sat{lane}")
            with m.If(rounded > INT8_MAX):
                m.d.comb += sat.eq(INT8_MAX)
            with m.Elif(rounded < -INT8_MAX):
                m.d.comb += sat.eq(-INT8_MAX)
            with m.Else():
                m.d.comb += sat.eq(rounded)
            with m.If(self.ce):
                m.d.sync += self.w[lane].eq(sat)
        return m
