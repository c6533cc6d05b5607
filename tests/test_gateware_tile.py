# amaranth: UnusedElaboratable=no
"""Matrix-vector tile in the Amaranth simulator: results equal numpy (weights
from hwmodel.dequant) for every pattern and width, cycles equal the cost
formula; the beat format packs like lib.data."""
from dataclasses import replace

import numpy as np
import pytest
from conftest import run_testbench

from hwmodel.chain_timing import chain_latency
from hwmodel.costs import matrix_cycles
from hwmodel.errors import ConfigError
from hwmodel.gateware.dsp48 import DSP48E1, DSP48E2
from hwmodel.gateware.mv_tile import MatrixVectorTile
from hwmodel.gateware.tile_stream import expected_results, pack, tile_beats, unpack
from hwmodel.hwconfig import load_hw
from hwmodel.isa import Instr, Op, n_code, wbits_code
from rtl.benches.stimulus import EXTREMES, random_tile


def run_tile(tile, works):
    """Streams each work item without stalls; returns [(results, first in, last out)]."""
    out = []

    async def bench(ctx):
        ctx.set(tile.o.ready, 1)
        cycle = 0
        for work in works:
            ctx.set(tile.n_log2, n_code(work.n))
            beats = [pack(tile.beat_layout, b) for b in tile_beats(tile, work)]
            want = len(expected_results(tile, work))
            results, first, last, k = [], None, None, 0
            while len(results) < want:
                ctx.set(tile.i.valid, k < len(beats))
                if k < len(beats):
                    ctx.set(tile.i.payload.as_value(), beats[k])
                _, _, took, done, payload = await ctx.tick().sample(
                    tile.i.valid & tile.i.ready, tile.o.valid, tile.o.payload.as_value())
                if took:
                    first = cycle if first is None else first
                    k += 1
                if done:
                    last = cycle
                    results.append([[r["lo"], r["hi"]] for r in unpack(tile.result_layout, payload)])
                cycle += 1
            out.append((np.array(results), first, last))

    run_testbench(tile, bench)
    return out


@pytest.mark.parametrize("geometry, length", [(DSP48E2, 4), (DSP48E1, 4), (DSP48E1, 16)],
                         ids=["DSP48E2-L4", "DSP48E1-L4", "DSP48E1-L16"])   # one, two and eight cascade segments
def test_tile_matches_numpy_and_cost_formula(geometry, length):
    hw = replace(load_hw("u280"), chains=2, chain_length=length)
    tile = MatrixVectorTile.from_hw(hw, geometry=geometry)
    assert tile.latency == chain_latency(length)
    rng = np.random.default_rng(7)
    formats = [(n, bits) for n in hw.sparsity_n for bits in hw.weight_bits]
    works = [random_tile(rng, n=n, bits=bits, rows=3, kblk=length // 2, tokens=3, chain_length=length,
                         group=length * (1 + k % 2),
                         kind=EXTREMES[k % len(EXTREMES)]) for k, (n, bits) in enumerate(formats)]
    for work, (got, first, last) in zip(works, run_tile(tile, works)):
        assert np.array_equal(got, expected_results(tile, work)), f"N={work.n} bits={work.bits}"
        ins = Instr(Op.MM, f={"rows": work.rows, "kblk": work.kblk, "tokens": work.tokens,
                              "n_log2": n_code(work.n), "wbits": wbits_code(work.bits)})
        assert last - first + 1 == matrix_cycles(hw, ins)


def test_beats_need_whole_beats_per_group_and_codes_in_range():
    tile = MatrixVectorTile(chains=1, chain_length=4, weight_bits=(4,))
    work = random_tile(np.random.default_rng(0), n=4, bits=4, rows=1, kblk=2, tokens=1, chain_length=4, group=6)
    with pytest.raises(ValueError, match="multiple of the chain length"):
        tile_beats(tile, work)
    with pytest.raises(ValueError, match="unsigned 4-bit"):
        tile_beats(tile, replace(work, group=4, q=work.q + 16))


def test_pack_matches_amaranth_layouts():
    tile = MatrixVectorTile(chains=2, chain_length=4, weight_bits=(4, 8))
    work = random_tile(np.random.default_rng(1), n=4, bits=4, rows=2, kblk=1, tokens=2, chain_length=4)
    for beat in tile_beats(tile, work):
        assert pack(tile.beat_layout, beat) == tile.beat_layout.const(beat).as_bits()
        assert pack(tile.beat_layout, unpack(tile.beat_layout, pack(tile.beat_layout, beat))) == \
            pack(tile.beat_layout, beat)


def test_from_hw_names_the_field():
    hw = load_hw("u280")
    with pytest.raises(ConfigError, match="mpe.dsp_group"):
        MatrixVectorTile.from_hw(replace(hw, dsp_group=4))
    with pytest.raises(ConfigError, match="mpe.macs_per_dsp"):
        MatrixVectorTile.from_hw(replace(hw, macs_per_dsp=1))
