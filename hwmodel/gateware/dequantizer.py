"""The dequantizer: bit-width expanders turning packed 2..8-bit weights into INT8.

Weights arrive packed LSB first, `bits` bits per lane, so a beat of narrow
weights needs fewer buffer bits. Each lane is sign-extended, scaled by the
group's power-of-two scale (`<< scale`, a shift, so no multiplier is spent
outside the DSP chain) and saturated to INT8. The bit width is a quasi-static
control in the ISA's encoding (`wbits = bits - 1`).
"""
from __future__ import annotations

from amaranth import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

SCALE_BITS = 3          # per-group scale exponent: w8 = sat(q << scale)
WBITS_CODE_BITS = 3     # the ISA's `wbits` field: bit width - 1


def checked_weight_bits(weight_bits: tuple[int, ...]) -> tuple[int, ...]:
    """The supported widths, sorted; each must expand to INT8."""
    if not weight_bits or any(not 2 <= b <= 8 for b in weight_bits):
        raise ValueError(f"weight_bits must be widths in 2..8, got {weight_bits}")
    return tuple(sorted(set(weight_bits)))


class Dequantizer(wiring.Component):
    """`lanes` expanders behind one pipeline register (gated by `ce`)."""

    def __init__(self, *, lanes: int, weight_bits: tuple[int, ...]):
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes = lanes
        self.weight_bits = checked_weight_bits(weight_bits)
        super().__init__({
            "q": In(8 * lanes),
            "wbits": In(WBITS_CODE_BITS),
            "scale": In(SCALE_BITS),
            "ce": In(1, init=1),
            "w": Out(data.ArrayLayout(signed(8), lanes)),
        })

    @property
    def latency(self) -> int:
        return 1

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(self.lanes):
            wide = Signal(signed(8 + (1 << SCALE_BITS) - 1), name=f"wide{lane}")
            with m.Switch(self.wbits):
                for bits in self.weight_bits:
                    with m.Case(bits - 1):
                        m.d.comb += wide.eq(self.q[lane * bits:(lane + 1) * bits].as_signed() << self.scale)
                with m.Default():
                    m.d.comb += wide.eq(0)
            sat = Signal(signed(8), name=f"sat{lane}")
            with m.If(wide > 127):
                m.d.comb += sat.eq(127)
            with m.Elif(wide < -128):
                m.d.comb += sat.eq(-128)
            with m.Else():
                m.d.comb += sat.eq(wide)
            with m.If(self.ce):
                m.d.sync += self.w[lane].eq(sat)
        return m
