"""The dequantizer's lanes: turning a beat's 2..8-bit codes into the INT8
differences the DSPs multiply.

Codes arrive as bit planes (`hwmodel.weight_record.pack_planes`): bit p of
lane j is bus bit p*lanes + j, and the planes at and above the beat's width
are zero (the weight-buffer reader aligns a beat of bits*lanes bits to the
bus). So a lane's code sits at the same wires for every width and a lane is
just `d = wrap8(q - z)` of `hwmodel.dequant` with its group's zero point z:
an 8-bit subtract, q and z unsigned, the result two's complement, with no
per-width unpacking (which cost about 17 LUT a lane: bench_rtl_candidates).
The group's multiplier m is applied once per chain and beat, to the chain's
sum (`mv_tile`), not here.
"""
from __future__ import annotations

from amaranth import Cat, Module, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from hwmodel.chain_timing import DEQUANT_STAGES


def checked_weight_bits(weight_bits: tuple[int, ...]) -> tuple[int, ...]:
    """The supported widths, sorted; each must expand to INT8."""
    if not weight_bits or any(not 2 <= b <= 8 for b in weight_bits):
        raise ValueError(f"weight_bits must be widths in 2..8, got {weight_bits}")
    return tuple(sorted(set(weight_bits)))


class Dequantizer(wiring.Component):
    """`lanes` subtractors sharing one group's zero point, behind one pipeline
    register (gated by `ce`). Codes and the zero point are `code_bits` wide
    (the widest supported code)."""

    def __init__(self, *, lanes: int, code_bits: int):
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        checked_weight_bits((code_bits,))
        self.lanes = lanes
        self.code_bits = code_bits
        super().__init__({
            "q": In(code_bits * lanes),
            "z": In(code_bits),
            "ce": In(1, init=1),
            "w": Out(data.ArrayLayout(signed(8), lanes)),
        })

    @property
    def latency(self) -> int:
        return DEQUANT_STAGES

    def elaborate(self, platform) -> Module:
        m = Module()
        for lane in range(self.lanes):
            code = Cat(*(self.q[p * self.lanes + lane] for p in range(self.code_bits)))
            with m.If(self.ce):
                m.d.sync += self.w[lane].eq(code - self.z)     # wrap8: .eq keeps the low byte, read signed
        return m
