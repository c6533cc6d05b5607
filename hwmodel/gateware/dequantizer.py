"""The dequantizer's lanes: bit-width expanders turning packed 2..8-bit codes
into the INT8 differences the DSPs multiply.

Codes arrive packed LSB first, `bits` bits per lane, so a beat of narrow
weights needs fewer buffer bits. Every lane computes `d = wrap8(q - z)` of
`hwmodel.dequant` with its group's zero point z: an 8-bit subtract, q and z
unsigned, the result two's complement. The group's multiplier m is applied
once per chain and beat, to the chain's sum (`mv_tile`), not here. The bit
width is a quasi-static control in the ISA's encoding
(`hwmodel.isa.wbits_code`); an unsupported width gives zeros.
"""
from __future__ import annotations

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hwmodel.chain_timing import DEQUANT_STAGES
from hwmodel.isa import WBITS_BITS, wbits_code


def checked_weight_bits(weight_bits: tuple[int, ...]) -> tuple[int, ...]:
    """The supported widths, sorted; each must expand to INT8."""
    if not weight_bits or any(not 2 <= b <= 8 for b in weight_bits):
        raise ValueError(f"weight_bits must be widths in 2..8, got {weight_bits}")
    return tuple(sorted(set(weight_bits)))


class Dequantizer(wiring.Component):
    """`lanes` expanders sharing one group's zero point, behind one pipeline
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
        for lane in range(self.lanes):
            code = Signal(unsigned(self.code_bits), name=f"code{lane}")
            with m.Switch(self.wbits):
                for bits in self.weight_bits:
                    with m.Case(wbits_code(bits)):
                        m.d.comb += code.eq(self.q[lane * bits:(lane + 1) * bits])
                with m.Default():
                    m.d.comb += code.eq(self.z)     # an unsupported width: weight 0
            with m.If(self.ce):
                m.d.sync += self.w[lane].eq(code - self.z)     # wrap8: .eq keeps the low byte, read signed
        return m
