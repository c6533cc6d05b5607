# amaranth: UnusedElaboratable=no
"""cocotb bench of the exported matrix-vector tile: bit-exactness against the
numpy reference (weights from hwmodel.dequant) for every pattern and weight
width (random codes, multipliers, shifts and zero points with idle cycles and
back-pressure, extremes included), and cycle counts against the cost formulas
the cycle simulator uses."""
from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, ReadOnly

from hwmodel.chain_timing import chain_latency, row_cycles
from hwmodel.costs import matrix_cycles
from hwmodel.gateware.dsp48 import FAMILY_DSP
from hwmodel.gateware.mv_tile import MatrixVectorTile
from hwmodel.gateware.tile_stream import SparseTile, expected_results, pack, tile_beats, unpack
from hwmodel.hwconfig import load_hw
from hwmodel.isa import Instr, Op, n_code, wbits_code
from rtl.benches.stimulus import EXTREMES, random_tile
from rtl.runner import bench_params


class TileTB:
    """Drives beats into `i`, takes results from `o`, counts clock edges."""

    def __init__(self, dut, params: dict):
        self.dut = dut
        hw = load_hw(params["hw"])
        self.hw = replace(hw, chains=params["chains"], chain_length=params["chain_length"])
        self.tile = MatrixVectorTile.from_hw(self.hw, geometry=FAMILY_DSP[params["family"]])
        self.rng = np.random.default_rng(params["seed"])
        for port, layout in (("i__payload", self.tile.beat_layout), ("o__payload", self.tile.result_layout)):
            width = len(getattr(dut, port))
            assert width == layout.size, f"{port}: design has {width} bits, the layout {layout.size}"
        self.cycle = 0

    async def start(self) -> None:
        Clock(self.dut.clk, 10, unit="ns").start()
        self.dut.rst.value = 1
        self.dut.i__valid.value = 0
        self.dut.o__ready.value = 0
        for _ in range(3):
            await FallingEdge(self.dut.clk)
        self.dut.rst.value = 0

    async def run(self, work: SparseTile, *, idle: float = 0.0, backpressure: float = 0.0):
        """Stream one tile through; returns (results, input edges, output edges).
        An edge number counts rising clock edges since the bench started."""
        self.dut.n_log2.value = n_code(work.n)
        beats = [pack(self.tile.beat_layout, b) for b in tile_beats(self.tile, work)]
        expected = len(expected_results(self.tile, work))
        results, in_edges, out_edges = [], [], []
        sent, progress = 0, self.cycle
        while len(results) < expected:
            await FallingEdge(self.dut.clk)
            valid = sent < len(beats) and self.rng.random() >= idle
            self.dut.i__valid.value = int(valid)
            if valid:
                self.dut.i__payload.value = beats[sent]
            ready = self.rng.random() >= backpressure
            self.dut.o__ready.value = int(ready)
            await ReadOnly()
            if valid and self.dut.i__ready.value:
                in_edges.append(self.cycle)
                sent, progress = sent + 1, self.cycle
            if ready and self.dut.o__valid.value:
                out_edges.append(self.cycle)
                progress = self.cycle
                results.append(unpack(self.tile.result_layout, self.dut.o__payload.value.to_unsigned()))
            self.cycle += 1
            if self.cycle - progress > 10 * self.tile.latency + 100:
                raise AssertionError("the tile stopped producing results")
        await FallingEdge(self.dut.clk)
        self.dut.i__valid.value = 0
        got = np.array([[[r["lo"], r["hi"]] for r in res] for res in results], dtype=np.int64)
        return got, in_edges, out_edges

    def instr(self, work: SparseTile) -> Instr:
        """The MV/MM instruction this tile is."""
        return Instr(Op.MV if work.tokens == 1 else Op.MM,
                     f={"rows": work.rows, "kblk": work.kblk, "tokens": work.tokens,
                        "n_log2": n_code(work.n), "wbits": wbits_code(work.bits)})


def _record(params: dict, name: str, value) -> None:
    """Leave measured figures next to the build for the report."""
    path = Path(params["record"])
    data = json.loads(path.read_text()) if path.exists() else {}
    data[name] = value
    path.write_text(json.dumps(data, indent=1, sort_keys=True))


@cocotb.test()
async def bit_exact(dut):
    """Every pattern x weight width, >= `vectors` results each, with idle and back-pressure."""
    params = bench_params()
    tb = TileTB(dut, params)
    await tb.start()
    counts = {}
    for n in tb.tile.patterns:
        for bits in tb.tile.weight_bits:
            done, kinds = 0, list(EXTREMES)
            while done < params["vectors"]:
                kind = kinds.pop(0) if kinds else "random"
                rows = int(tb.rng.integers(1, params["max_rows"] + 1))
                L = tb.tile.chain_length
                work = random_tile(tb.rng, n=n, bits=bits, rows=rows, kblk=int(tb.rng.integers(1, 4)),
                                   tokens=int(tb.rng.integers(1, 5)), chain_length=L,
                                   group=L * int(tb.rng.integers(1, 3)), kind=kind)
                got, _, _ = await tb.run(work, idle=params["idle"], backpressure=params["backpressure"])
                want = expected_results(tb.tile, work)
                assert np.array_equal(got, want), f"N={n} bits={bits} kind={kind}: results differ from numpy"
                done += work.rows * -(-work.tokens // 2)
            counts[f"N{n}_b{bits}"] = done
    _record(params, "vectors", counts)


@cocotb.test()
async def cycles(dut):
    """Latency, throughput and whole-tile cycles equal the cost formulas, for every N."""
    params = bench_params()
    tb = TileTB(dut, params)
    await tb.start()
    L, C = tb.tile.chain_length, tb.tile.chains
    measured = {}
    for n in tb.tile.patterns:
        for rows, kblk, tokens in ((1, 1, 1), (3 * C, 2, 1), (2 * C + 1, 3, 4)):
            work = random_tile(tb.rng, n=n, bits=tb.tile.weight_bits[-1], rows=rows, kblk=kblk, tokens=tokens,
                               chain_length=L)
            got, ins, outs = await tb.run(work)
            assert np.array_equal(got, expected_results(tb.tile, work))
            total = outs[-1] - ins[0] + 1
            formula = matrix_cycles(tb.hw, tb.instr(work))
            assert total == formula, f"N={n} rows={rows} kblk={kblk} tokens={tokens}: " \
                                     f"measured {total} cycles, matrix_cycles says {formula}"
            per_row = row_cycles(kblk, n, L)
            latency = outs[0] - ins[per_row - 1]
            assert latency == chain_latency(L), f"N={n}: latency {latency}, chain_latency says {chain_latency(L)}"
            gaps = set(np.diff(outs).tolist())
            assert gaps <= {per_row}, f"N={n}: results every {gaps} cycles, row_cycles says {per_row}"
            measured[f"N{n}_r{rows}_k{kblk}_t{tokens}"] = {"cycles": total, "formula": formula, "latency": latency}
    _record(params, "cycles", measured)
