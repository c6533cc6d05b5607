"""DSP48 slice: two INT8 MACs share one weight, and the overflow adjust
recovers both sums exactly up to the geometry's `max_terms` products."""
import numpy as np
import pytest
from conftest import run_testbench
from amaranth import Module

from hwmodel.dequant import ACC_BITS, MULT_BITS, wrap_acc
from hwmodel.gateware.dsp48 import DSP48E1, DSP48E2, INT8_PRODUCT_MAX, INT8_PRODUCT_MIN, Dsp48Accumulator, \
    Dsp48Slice, OverflowAdjust, geometry_for
from hwmodel.errors import ConfigError


def test_geometry_packing_limits():
    assert (DSP48E2.pack_shift, DSP48E2.max_terms) == (18, 8)
    assert (DSP48E1.pack_shift, DSP48E1.max_terms) == (16, 2)
    for g in (DSP48E1, DSP48E2):
        lo, hi = -(1 << (g.a_width - 1)), (1 << (g.a_width - 1)) - 1
        assert lo <= -128 * 2**g.pack_shift - 128 and 127 * 2**g.pack_shift + 127 <= hi
        # twice as many terms no longer fit the 2**s window: the chain must break
        assert 2 * g.max_terms * (INT8_PRODUCT_MAX - INT8_PRODUCT_MIN) >= 2**g.pack_shift
    with pytest.raises(ConfigError, match="family"):
        geometry_for("ecp5")


def run_cascade(geometry, terms, vectors):
    """`terms` slices cascaded (the first restarts), split by OverflowAdjust;
    returns the (lo, hi) sums for each vector of (acts_lo, acts_hi, weights)."""
    m = Module()
    slices = [Dsp48Slice(geometry=geometry) for _ in range(terms)]
    adjust = OverflowAdjust(geometry=geometry, terms=terms)
    for k, s in enumerate(slices):
        m.submodules[f"s{k}"] = s
        m.d.comb += s.restart.eq(k == 0)
        if k:
            m.d.comb += s.pcin.eq(slices[k - 1].pcout)
    m.submodules.adjust = adjust
    m.d.comb += adjust.p.eq(slices[-1].p)
    out = []

    async def bench(ctx):
        for lo, hi, w in vectors:
            # systolic: slice k sees its operands k cycles after slice 0
            for step in range(terms + 3):
                for k, s in enumerate(slices):
                    if step == k:
                        ctx.set(s.acts, {"lo": int(lo[k]), "hi": int(hi[k])})
                        ctx.set(s.weight, int(w[k]))
                await ctx.tick()
            out.append((ctx.get(adjust.sums.lo), ctx.get(adjust.sums.hi)))

    run_testbench(m, bench)
    return out


@pytest.mark.parametrize("geometry", [DSP48E2, DSP48E1], ids=lambda g: g.name)
def test_packed_cascade_is_exact(geometry):
    terms = geometry.max_terms
    rng = np.random.default_rng(3)
    vectors = [(np.full(terms, -128), np.full(terms, -128), np.full(terms, -128)),   # largest low sum
               (np.full(terms, 127), np.full(terms, -128), np.full(terms, -128)),    # most negative
               (np.full(terms, -128), np.full(terms, 127), np.full(terms, 127)),
               (np.zeros(terms), np.zeros(terms), np.zeros(terms))]
    vectors += [tuple(rng.integers(-128, 128, size=(3, terms))) for _ in range(40)]
    got = run_cascade(geometry, terms, vectors)
    for (lo, hi, w), (glo, ghi) in zip(vectors, got):
        assert (glo, ghi) == (int(np.dot(lo, w)), int(np.dot(hi, w)))


def test_slice_latency_and_restart():
    s = Dsp48Slice()
    assert s.latency == 3

    async def bench(ctx):
        ctx.set(s.acts, {"lo": 3, "hi": -2})
        ctx.set(s.weight, 5)
        ctx.set(s.pcin, 1000)
        ctx.set(s.restart, 0)
        for _ in range(2):
            await ctx.tick()
        assert ctx.get(s.p) == 1000                   # only the cascade: the product is still in M
        await ctx.tick()
        assert ctx.get(s.p) == 5 * (-2 * 2**18 + 3) + 1000
        ctx.set(s.restart, 1)
        await ctx.tick()
        assert ctx.get(s.p) == 5 * (-2 * 2**18 + 3)   # the Z-mux dropped the cascade
        ctx.set(s.ce, 0)
        ctx.set(s.restart, 0)
        await ctx.tick()
        assert ctx.get(s.p) == 5 * (-2 * 2**18 + 3)   # clock enable holds P

    run_testbench(s, bench)


def test_input_register_adds_one_cycle():
    """The A/D/B1 registers of a lane's slice: the same product, one cycle later."""
    s = Dsp48Slice(input_register=True)
    assert s.latency == 4

    async def bench(ctx):
        ctx.set(s.acts, {"lo": -7, "hi": 100})
        ctx.set(s.weight, -128)
        ctx.set(s.restart, 1)
        for _ in range(3):
            await ctx.tick()
        assert ctx.get(s.p) == 0                      # still in the M register
        await ctx.tick()
        assert ctx.get(s.p) == -128 * (100 * 2**18 - 7)

    run_testbench(s, bench)


@pytest.mark.parametrize("geometry", [DSP48E2, DSP48E1], ids=lambda g: g.name)
def test_accumulator_scales_adds_and_wraps_like_the_reference(geometry):
    """p <= (restart ? 0 : p) + (a + d) * b, one register, 48-bit wrap, held while ce is low."""
    width = geometry.a_width - 1
    acc = Dsp48Accumulator(geometry=geometry, width=width, b_bits=MULT_BITS)
    assert acc.LATENCY == 1
    rng = np.random.default_rng(9)
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    steps = [(hi, hi, 255, 1, 1)] + [(hi, hi, 255, 0, 1)] * 9000     # runs past 2**47: the wrap
    steps += [(lo, lo, 255, 1, 1), (lo, lo, 255, 0, 1), (5, -3, 7, 0, 0)]
    steps += [tuple(int(v) for v in (rng.integers(lo, hi + 1), rng.integers(lo, hi + 1), rng.integers(0, 256),
                                     rng.random() < 0.1, rng.random() < 0.8)) for _ in range(400)]

    async def bench(ctx):
        want = 0
        for a, d, b, restart, ce in steps:
            for port, v in ((acc.a, a), (acc.d, d), (acc.b, b), (acc.restart, restart), (acc.ce, ce)):
                ctx.set(port, v)
            await ctx.tick()
            if ce:
                want = int(wrap_acc(np.int64(0 if restart else want) + (a + d) * b))
            assert ctx.get(acc.p) == want

    run_testbench(acc, bench)
    assert ACC_BITS == geometry.p_width
