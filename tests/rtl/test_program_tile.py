"""Cross-level check: one MV tile of the compiled program runs on the RTL tile
unit (cocotb on Icarus Verilog) and gives the executor's INT32 sums.

The seeded tiny model is compiled, compressed and packed for the VHK158 design
(tests/test_functional.py `compressed_tiny`), and the functional executor runs
the prompt and one decode step. Its `on_matrix` hook captures what layer 0's
`down` projection (an MV: 64 rows x 32 dense 16-blocks, 5-bit weights, the only
K part) consumes and produces on core 0: the INT8 activation vector, the weights
as the executor dequantizes them to INT8, and the INT32 sums before
requantization. The exported MV tile (2 chains of the design's 16 DSP48s) gets
those INT8 weights as 8-bit codes w8 + 128 with zero point 128, multiplier 1
and shift 0, so its dequantizer passes them through.
Asserted: every INT32 result equals the executor's, element for element, and
the cycles from the first beat to the last result equal
`hwmodel.costs.matrix_cycles` for the same instruction on the 2 x 16 tile.

This module is also the cocotb test module (`program_tile` runs inside the
simulator; it only drives the tile and records what came out).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import cocotb
import numpy as np
import pytest
from rtl_tools import icarus, yosys  # noqa: F401 (fixtures)

from hwmodel.chain_timing import row_cycles
from hwmodel.costs import matrix_cycles, sparsity_n, weight_bits
from hwmodel.gateware.dsp48 import FAMILY_DSP
from hwmodel.hwconfig import load_hw
from hwmodel.isa import MatMode, Op
from rtl.export import tile_for, tile_hw, write_verilog
from rtl.runner import SIM_BUILD, bench_params, run_bench

pytestmark = pytest.mark.rtl

HW = "vhk158"            # the design compressed_tiny compiles for
CHAINS = 2               # the tile instantiated: 2 chains of the design's chain length
LAYER, OP = 0, "down"    # the MV taken from the decode step
CORE = 0


# ---- inside the simulator ------------------------------------------------------
@cocotb.test()
async def program_tile(dut):
    """Stream the captured tile through the MV tile, no idle cycles or back-pressure;
    record the results (stream order) and the edges of accepted beats and results."""
    from hwmodel.gateware.tile_stream import SparseTile
    from rtl.benches.tile_bench import TileTB

    params = bench_params()
    tb = TileTB(dut, params)
    await tb.start()
    with np.load(params["operands"]) as z:
        q, x = z["q"], z["x"]
    rows, kblk, n = q.shape
    beats = row_cycles(kblk, n, tb.tile.chain_length)
    groups = np.ones((rows, beats), np.int64)         # one group per beat: m = 1, sh = 0, z = 128
    work = SparseTile(n=n, bits=8, group=tb.tile.chain_length, q=q + 128,
                      index=np.broadcast_to(np.arange(n), q.shape).copy(), m=groups, sh=0 * groups,
                      z=128 * groups, x=x)
    got, ins, outs = await tb.run(work)
    Path(params["record"]).write_text(json.dumps({"results": got.tolist(), "in_edges": ins, "out_edges": outs}))


# ---- pytest ------------------------------------------------------------------------
def executor_tile(tmp_path: Path) -> dict:
    """Compile, compress, pack and execute the tiny model (prompt of 16, one decode
    step); what layer LAYER's OP MV consumed and produced on core CORE."""
    from test_functional import compressed_tiny

    from compiler.checkpoint import write_random_llama
    from compiler.model_config import load_model
    from compiler.pack import pack
    from sim.functional import Executor, Image

    tiny_dir = write_random_llama(tmp_path / "tiny", load_model("tiny"), seed=0)
    hw, _, cm, prog = compressed_tiny(tiny_dir, 1)
    assert hw.name == HW
    step = next(s for s in prog.steps if s.phase == "decode")
    call = next(c for c in step.calls if c.layer == LAYER)
    sec = prog.sections[call.section]
    labels = sec.label_of()
    target = next(ins for ins, label in zip(sec.instrs, labels) if label == OP and ins.op == Op.MV)
    assert target["acc"] == 0 and MatMode(target["mode"]) == MatMode.LINEAR    # the first (here only) K part
    # layers share the decode section: the first time the target runs in the decode step is layer 0
    assert [c.layer for c in step.calls if c.section == call.section][0] == LAYER
    captured = []

    def on_matrix(core, ins, act, w, sums):
        if core == CORE and ins is target and not captured:
            captured.append({"act": act.copy(), "w": w.copy(), "sums": sums.copy()})

    image = pack(cm, prog, hw)
    Executor(prog, hw, Image(image.hbm, image.embed, image.meta), on_matrix=on_matrix).generate(list(range(16)), 1)
    assert captured, "the executor never ran the chosen MV"
    return {"hw": hw, "ins": target, **captured[0]}


def test_program_mv_tile_on_rtl_equals_executor(icarus, tmp_path, monkeypatch):
    got = executor_tile(tmp_path)
    ins, act, w, sums = got["ins"], got["act"], got["w"], got["sums"]
    rows, kblk, n = ins["rows"], ins["kblk"], sparsity_n(ins)
    assert (n, weight_bits(ins)) == (16, 5)              # flightllm keeps layer 0's down dense at 5 bits
    assert act.shape == (1, kblk * 16) and w.shape == (rows, kblk * 16) and sums.shape == (1, rows)
    assert np.abs(act).max() <= 127 and np.abs(w).max() <= 127 and np.abs(act).max() > 0
    assert np.count_nonzero(w) > w.size // 2 and np.count_nonzero(sums) > rows // 2   # real data, not zeros

    hw = tile_hw(load_hw(HW), chains=CHAINS)
    name = f"mv_tile_{CHAINS}x{hw.chain_length}_{HW}"
    tile = tile_for(load_hw(HW), chains=CHAINS, geometry=FAMILY_DSP["xcup"])
    verilog = write_verilog(tile, name, SIM_BUILD / "verilog")
    operands, record = tmp_path / "program_tile.npz", tmp_path / "program_tile.json"
    np.savez(operands, q=w.reshape(rows, kblk, 16), x=act)
    params = {"hw": HW, "chains": CHAINS, "chain_length": hw.chain_length, "family": "xcup", "seed": 0,
              "operands": str(operands), "record": str(record)}
    # the simulator imports this file as its cocotb test module (and rtl_tools with it)
    here = str(Path(__file__).resolve().parent)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([here, os.environ.get("PYTHONPATH", "")]))
    ran, failed = run_bench(sim="icarus", verilog=verilog, toplevel=name, test_module=Path(__file__).stem,
                            params=params, testcase="program_tile")
    assert (ran, failed) == (1, 0)
    rtl = json.loads(record.read_text())

    # results leave per step of CHAINS rows, each a (token 0, token 1) pair; an MV's token 1 is zero padding
    results = np.array(rtl["results"], dtype=np.int64)              # (steps, chains, 2)
    steps = -(-rows // CHAINS)
    assert results.shape == (steps, CHAINS, 2)
    assert not results[..., 1].any()
    rtl_sums = results[..., 0].reshape(-1)[:rows]
    mismatch = np.flatnonzero(rtl_sums != sums[0])
    assert mismatch.size == 0, f"{mismatch.size} of {rows} sums differ (rows {mismatch[:4].tolist()}): " \
                               f"RTL {rtl_sums[mismatch[:4]].tolist()}, executor {sums[0][mismatch[:4]].tolist()}"

    measured = rtl["out_edges"][-1] - rtl["in_edges"][0] + 1
    formula = matrix_cycles(hw, ins)
    assert len(rtl["in_edges"]) == steps * row_cycles(kblk, n, hw.chain_length)
    assert measured == formula, f"RTL took {measured} cycles, matrix_cycles says {formula}"
