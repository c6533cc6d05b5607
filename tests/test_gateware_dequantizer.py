# amaranth: UnusedElaboratable=no
"""Dequantizer lanes: packed unsigned 2..8-bit codes minus the group's zero point,
wrapped to INT8; bit for bit hwmodel.dequant.code_diff."""
import itertools

import numpy as np
import pytest
from conftest import run_testbench

from hwmodel.dequant import code_diff
from hwmodel.gateware.dequantizer import Dequantizer
from hwmodel.isa import wbits_code

LANES = 8
WIDTHS = (2, 3, 4, 5, 8)


def cases(bits: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """(codes, z): every extreme zero point, then random ones. Each extreme row of
    codes holds 0, the top code, z itself and random codes."""
    top = (1 << bits) - 1
    out = [(np.array([0, top, z, z, *rng.integers(0, top + 1, LANES - 4)]), z) for z in (0, 1, top // 2 + 1, top)]
    out += [(rng.integers(0, top + 1, LANES), int(rng.integers(0, top + 1))) for _ in range(150)]
    return out


@pytest.mark.parametrize("bits", WIDTHS)
def test_dequantizer_is_hwmodel_dequant(bits):
    dut = Dequantizer(lanes=LANES, weight_bits=WIDTHS)
    assert dut.latency == 1
    assert (len(dut.z), len(dut.q)) == (8, 8 * LANES)
    plan = cases(bits, np.random.default_rng(bits))
    seen = set()

    async def bench(ctx):
        ctx.set(dut.wbits, wbits_code(bits))
        for q, z in plan:
            ctx.set(dut.q, sum(int(v) << (k * bits) for k, v in enumerate(q)))
            ctx.set(dut.z, z)
            await ctx.tick()
            want = code_diff(q, z)
            got = [ctx.get(dut.w[k]) for k in range(LANES)]
            assert got == want.tolist(), f"bits={bits} z={z} q={q.tolist()}"
            seen.update(want.tolist())

    run_testbench(dut, bench)
    top = (1 << bits) - 1
    assert {-top, 0, top} <= seen if bits < 8 else {-128, 127, 0, 1, -1} <= seen    # 8 bits: the wrap acts


def test_unsupported_width_gives_zero():
    dut = Dequantizer(lanes=2, weight_bits=(4, 8))

    async def bench(ctx):
        ctx.set(dut.wbits, 2)                          # 3 bits: not built
        ctx.set(dut.q, 0x0305)
        ctx.set(dut.z, 1)
        await ctx.tick()
        assert [ctx.get(dut.w[k]) for k in range(2)] == [0, 0]

    run_testbench(dut, bench)


def test_dequantizer_rejects_bad_widths():
    with pytest.raises(ValueError, match="weight_bits"):
        Dequantizer(lanes=4, weight_bits=(1, 4))
