# amaranth: UnusedElaboratable=no
"""Dequantizer: packed signed 2..8-bit weights, power-of-two group scale, INT8 saturation."""
import numpy as np
import pytest
from conftest import run_testbench

from hwmodel.gateware.dequantizer import SCALE_BITS, Dequantizer
from hwmodel.gateware.reference import dequantize

LANES = 8


@pytest.mark.parametrize("bits", [2, 3, 4, 5, 8])
def test_dequantizer_matches_numpy(bits):
    dut = Dequantizer(lanes=LANES, weight_bits=(2, 3, 4, 5, 8))
    assert dut.latency == 1
    rng = np.random.default_rng(bits)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    cases = [(np.full(LANES, lo), 7), (np.full(LANES, hi), 7), (np.full(LANES, lo), 0), (np.zeros(LANES), 5)]
    cases += [(rng.integers(lo, hi + 1, LANES), int(rng.integers(0, 1 << SCALE_BITS))) for _ in range(60)]

    async def bench(ctx):
        ctx.set(dut.wbits, bits - 1)
        for q, scale in cases:
            packed = sum((int(v) & ((1 << bits) - 1)) << (k * bits) for k, v in enumerate(q))
            ctx.set(dut.q, packed)
            ctx.set(dut.scale, scale)
            await ctx.tick()
            want = dequantize(q, np.full(LANES, scale))
            assert [ctx.get(dut.w[k]) for k in range(LANES)] == want.tolist()

    run_testbench(dut, bench)


def test_dequantizer_rejects_bad_widths():
    with pytest.raises(ValueError, match="weight_bits"):
        Dequantizer(lanes=4, weight_bits=(1, 4))
