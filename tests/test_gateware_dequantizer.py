# amaranth: UnusedElaboratable=no
"""Dequantizer lanes: unsigned 2..8-bit codes, as bit planes zero above the
beat's width, minus the group's zero point, wrapped to INT8; bit for bit
hwmodel.dequant.code_diff."""
import numpy as np
import pytest
from conftest import run_testbench

from hwmodel.dequant import code_diff
from hwmodel.gateware.dequantizer import Dequantizer
from hwmodel.weight_record import pack_planes

LANES = 8
WIDTHS = (2, 3, 4, 5, 8)


def cases(bits: int, rng: np.random.Generator) -> list[tuple[np.ndarray, int]]:
    """(codes, z): every extreme zero point, then random ones. Each extreme row of
    codes holds 0, the top code, z itself and random codes."""
    top = (1 << bits) - 1
    out = [(np.array([0, top, z, z, *rng.integers(0, top + 1, LANES - 4)]), z) for z in (0, 1, top // 2 + 1, top)]
    out += [(rng.integers(0, top + 1, LANES), int(rng.integers(0, top + 1))) for _ in range(150)]
    return out


def planes(q, bits: int) -> int:
    """The beat as the bus carries it: bit p of lane j at p*lanes + j."""
    q = np.asarray(q)
    return int.from_bytes(pack_planes(q[None], bits, q.size), "little")


def test_a_lane_reads_its_bit_of_every_plane():
    """Written out by hand: lane 1 holds 0b101 (planes 0 and 2), lane 6 holds 0b010."""
    assert planes(np.array([0, 5, 0, 0, 0, 0, 2, 0]), 3) == (1 << 1) | (1 << 2 * LANES + 1) | (1 << LANES + 6)


@pytest.mark.parametrize("bits", WIDTHS)
def test_dequantizer_is_hwmodel_dequant(bits):
    dut = Dequantizer(lanes=LANES, code_bits=8)
    assert dut.latency == 1
    assert (len(dut.z), len(dut.q)) == (8, 8 * LANES)
    plan = cases(bits, np.random.default_rng(bits))
    seen = set()

    async def bench(ctx):
        for q, z in plan:
            ctx.set(dut.q, planes(q, bits))
            ctx.set(dut.z, z)
            await ctx.tick()
            want = code_diff(q, z)
            got = [ctx.get(dut.w[k]) for k in range(LANES)]
            assert got == want.tolist(), f"bits={bits} z={z} q={q.tolist()}"
            seen.update(want.tolist())

    run_testbench(dut, bench)
    top = (1 << bits) - 1
    assert {-top, 0, top} <= seen if bits < 8 else {-128, 127, 0, 1, -1} <= seen    # 8 bits: the wrap acts


def test_the_register_holds_while_ce_is_low():
    dut = Dequantizer(lanes=2, code_bits=4)

    async def bench(ctx):
        ctx.set(dut.q, planes([3, 9], 4))
        ctx.set(dut.z, 1)
        await ctx.tick()
        ctx.set(dut.ce, 0)
        ctx.set(dut.q, 0)
        await ctx.tick()
        assert [ctx.get(dut.w[k]) for k in range(2)] == [2, 8]

    run_testbench(dut, bench)


def test_dequantizer_rejects_bad_widths():
    with pytest.raises(ValueError, match="weight_bits"):
        Dequantizer(lanes=4, code_bits=9)
