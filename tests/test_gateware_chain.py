# amaranth: UnusedElaboratable=no
"""Sparse DSP chain: a beat's sums through the sparse MUX as the running sum of
all cascade segments but the last and the last one's, latency L+3, and
back-pressure that holds the pipeline."""
import numpy as np
import pytest
from conftest import run_testbench

from hwmodel.gateware.dsp48 import DSP48E1, DSP48E2
from hwmodel.gateware.sparse_chain import SparseDspChain
from hwmodel.gateware.tile_stream import pack, unpack
from hwmodel.isa import n_code


def random_beat(rng, chain, n):
    acts = rng.integers(-128, 128, size=(chain.slots, chain.block, 2))
    weights = rng.integers(-128, 128, size=chain.length)
    index = rng.integers(0, chain.block, size=chain.length)
    return weights, index, acts


def expected_partials(chain, n, weights, index, acts):
    """With seg = min(L, max_terms) whatever the pattern: the sum of the
    products of lanes 0 .. L - seg - 1 and that of the last seg lanes, or
    only the latter if L = seg."""
    seg = min(chain.length, chain.geometry.max_terms)
    slot = np.arange(chain.length) // n
    picked = acts[slot, index]                       # (L, 2): the sparse MUX
    products = weights[:, None] * picked
    last = products[-seg:].sum(axis=0)
    return np.array([products[:-seg].sum(axis=0), last] if chain.length > seg else [last])


@pytest.mark.parametrize("geometry", [DSP48E2, DSP48E1], ids=lambda g: g.name)
@pytest.mark.parametrize("length", [4, 16])
def test_chain_partials_every_pattern(length, geometry):
    chain = SparseDspChain(length=length, geometry=geometry)
    assert chain.latency == length + 3
    rng = np.random.default_rng(length)
    plan = []
    for n in chain.patterns:
        beats = [random_beat(rng, chain, n) for _ in range(6)]
        w, i, a = beats[0]
        beats.append((np.full_like(w, -128), np.zeros_like(i), np.full_like(a, -128)))   # extremes, equal indices
        plan.append((n, beats))
    got = {}

    async def bench(ctx):
        ctx.set(chain.o.ready, 1)
        for n, beats in plan:
            ctx.set(chain.n_log2, n_code(n))
            results, sent_at = [], []
            cycle = 0
            for k, beat in enumerate(beats + [None] * (chain.latency + 2)):
                if beat is not None:
                    w, i, a = beat
                    ctx.set(chain.i.payload.as_value(), pack(chain.beat_layout, {
                        "weights": w.tolist(), "index": i.tolist(), "last": int(k == len(beats) - 1),
                        "acts": [[{"lo": int(x[0]), "hi": int(x[1])} for x in blk] for blk in a]}))
                ctx.set(chain.i.valid, beat is not None)
                _, _, in_ok, out_ok, payload = await ctx.tick().sample(
                    chain.i.valid & chain.i.ready, chain.o.valid, chain.o.payload.as_value())
                if in_ok:
                    sent_at.append(cycle)
                if out_ok:
                    results.append((cycle, unpack(chain.partials_layout, payload)))
                cycle += 1
            got[n] = (beats, sent_at, results)

    run_testbench(chain, bench)
    for n, (beats, sent_at, results) in got.items():
        assert len(results) == len(beats)
        assert [c for c, _ in results] == [s + chain.latency for s in sent_at]
        assert results[-1][1]["last"] == 1
        for (w, i, a), (_, r) in zip(beats, results):
            parts = np.array([[p["lo"], p["hi"]] for p in r["partials"]])
            assert np.array_equal(parts, expected_partials(chain, n, w, i, a)), f"N={n}"


def test_chain_back_pressure_holds_results():
    chain = SparseDspChain(length=4)
    rng = np.random.default_rng(0)
    w, i, a = random_beat(rng, chain, 2)
    want = expected_partials(chain, 2, w, i, a)

    async def bench(ctx):
        ctx.set(chain.n_log2, n_code(2))
        ctx.set(chain.o.ready, 0)
        ctx.set(chain.i.payload.as_value(), pack(chain.beat_layout, {
            "weights": w.tolist(), "index": i.tolist(), "last": 1,
            "acts": [[{"lo": int(x[0]), "hi": int(x[1])} for x in blk] for blk in a]}))
        ctx.set(chain.i.valid, 1)
        await ctx.tick()
        ctx.set(chain.i.valid, 0)
        for _ in range(chain.latency + 5):
            await ctx.tick()
        assert ctx.get(chain.o.valid) and not ctx.get(chain.i.ready)   # stalled: full and not taken
        parts = unpack(chain.partials_layout, ctx.get(chain.o.payload.as_value()))["partials"]
        assert np.array_equal([[p["lo"], p["hi"]] for p in parts], want)
        ctx.set(chain.o.ready, 1)
        await ctx.tick()
        assert not ctx.get(chain.o.valid)

    run_testbench(chain, bench)


def test_chain_rejects_bad_parameters():
    with pytest.raises(ValueError, match="power of two"):
        SparseDspChain(length=6)
    with pytest.raises(ValueError, match="dividing block"):
        SparseDspChain(length=4, patterns=(2, 3))
