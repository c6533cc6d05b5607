# amaranth: UnusedElaboratable=no
"""Dequantizer: packed unsigned 2..8-bit codes, per-group multiplier, shift and
zero point, INT8 saturation; bit for bit hwmodel.dequant.dequantize_codes."""
import itertools

import numpy as np
import pytest
from conftest import run_testbench

from hwmodel.dequant import MULT_BITS, SHIFT_BITS, SHIFT_MAX, dequantize_codes
from hwmodel.gateware.dequantizer import Dequantizer
from hwmodel.isa import wbits_code

LANES = 8
WIDTHS = (2, 3, 4, 5, 8)
M_MAX = (1 << MULT_BITS) - 1


def cases(bits: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int, int, int]]:
    """(codes, m, sh, z): every combination of the extremes, then random ones.
    Each extreme row of codes holds 0, the top code, z itself and random codes."""
    top = (1 << bits) - 1
    out = []
    for m, sh, z in itertools.product((0, 1, M_MAX), (0, 1, SHIFT_MAX), (0, top // 2 + 1, top)):
        q = np.array([0, top, z, z, *rng.integers(0, top + 1, LANES - 4)])
        out.append((q, m, sh, z))
    for _ in range(150):
        out.append((rng.integers(0, top + 1, LANES), int(rng.integers(0, M_MAX + 1)),
                    int(rng.integers(0, SHIFT_MAX + 1)), int(rng.integers(0, top + 1))))
    return out


@pytest.mark.parametrize("bits", WIDTHS)
def test_dequantizer_is_hwmodel_dequant(bits):
    dut = Dequantizer(lanes=LANES, weight_bits=WIDTHS)
    assert dut.latency == 1
    assert (len(dut.m), len(dut.sh), len(dut.z), len(dut.q)) == (MULT_BITS, SHIFT_BITS, 8, 8 * LANES)
    plan = cases(bits, np.random.default_rng(bits))
    seen = set()

    async def bench(ctx):
        ctx.set(dut.wbits, wbits_code(bits))
        for q, m, sh, z in plan:
            ctx.set(dut.q, sum(int(v) << (k * bits) for k, v in enumerate(q)))
            ctx.set(dut.m, m)
            ctx.set(dut.sh, sh)
            ctx.set(dut.z, z)
            await ctx.tick()
            want = dequantize_codes(q, z, np.array([m, sh]))
            got = [ctx.get(dut.w[k]) for k in range(LANES)]
            assert got == want.tolist(), f"bits={bits} m={m} sh={sh} z={z} q={q.tolist()}"
            seen.update(want.tolist())

    run_testbench(dut, bench)
    assert {-127, 0, 127} <= seen                       # both saturations and exact zeros were exercised


def test_unsupported_width_gives_zero():
    dut = Dequantizer(lanes=2, weight_bits=(4, 8))

    async def bench(ctx):
        ctx.set(dut.wbits, 2)                          # 3 bits: not built
        ctx.set(dut.q, 0x0305)
        ctx.set(dut.m, M_MAX)
        ctx.set(dut.z, 1)
        await ctx.tick()
        assert [ctx.get(dut.w[k]) for k in range(2)] == [0, 0]

    run_testbench(dut, bench)


def test_dequantizer_rejects_bad_widths():
    with pytest.raises(ValueError, match="weight_bits"):
        Dequantizer(lanes=4, weight_bits=(1, 4))
